/* Streams over one loop (include/hopwire/app.h, docs/app-sdk.md "Streams
 * over one loop", framing in docs/app-protocol.md).
 *
 * One thread per mux owns the loop descriptor (non-blocking) and the mux
 * end of every stream's socketpair, in one poll loop. Data frames are
 * read from a stream's socket straight into the loop's output buffer and
 * written from the loop's input buffer straight into the stream's socket;
 * only bytes a stream's socket refuses are kept, in that stream's ring
 * (at most the window, allocated the first time it is needed). A stream
 * is read only while it has credit and the output buffer has room, so a
 * stream nobody reads stops only itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hopwire/app.h"
#include "sdk/muxframe.h"

/* Room for data up to MUX_DATA_FILL, control up to MUX_READ_ROOM, then
 * what one read of the loop can ask for (a RESET per 7-byte OPEN) and an
 * OPEN per stream: the output buffer never overflows. */
#define MUX_OUT_MAX (384 * 1024)
#define MUX_DATA_FILL (128 * 1024) /* data stops here: room for control */
#define MUX_READ_ROOM (192 * 1024) /* the loop is read below this */
#define MUX_IN_MAX (64 * 1024)
#define MUX_ACCEPT_MAX 128
#define MUX_ERR_MAX 256

struct stream {
	uint32_t id;
	int sock;          /* the mux's end; the app has the other */
	int64_t credit;    /* bytes we may still send */
	int64_t allow;     /* bytes the peer may still send */
	uint32_t owed;     /* delivered, not credited back yet */
	uint8_t *ring;     /* HW_MUX_WINDOW bytes when allocated */
	size_t rhead, rlen;
	unsigned fin_sent : 1, local_eof : 1, remote_fin : 1,
		shut : 1, app_gone : 1;
	struct stream *next; /* new-stream list / accept queue */
};

struct hw_app_mux {
	int loop;
	int initiator;
	int wake;   /* eventfd: the app's thread -> the mux thread */
	int ready;  /* eventfd: readable while accept has something */
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* Under mu: */
	int stop, ended;
	char why[MUX_ERR_MAX]; /* set once ended by anything but free */
	struct stream *fresh;  /* opened by the app, not yet in the table */
	int acc[MUX_ACCEPT_MAX]; /* the app's ends, waiting for accept */
	size_t acc_head, nacc, nstreams;
	uint32_t next_id;
	/* The mux thread's own: */
	struct stream **tab; /* open addressing on id */
	size_t tabcap;
	struct stream **list; /* the streams, for poll */
	size_t nlist;
	struct pollfd *pfd;
	int hello_in;
	int64_t peer_window;
	uint32_t peer_last; /* highest stream ID the peer opened */
	uint8_t out[MUX_OUT_MAX];
	size_t out_len;
	uint8_t in[MUX_IN_MAX];
	size_t in_len;
};

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* ---- the stream table (mux thread only) ---- */

static size_t slot_of(const struct hw_app_mux *m, uint32_t id)
{
	return (id * 2654435761u) & (m->tabcap - 1);
}

static struct stream *tab_find(struct hw_app_mux *m, uint32_t id)
{
	for (size_t i = slot_of(m, id);; i = (i + 1) & (m->tabcap - 1)) {
		if (!m->tab[i] || m->tab[i]->id == id)
			return m->tab[i];
	}
}

static void tab_add(struct hw_app_mux *m, struct stream *s)
{
	size_t i = slot_of(m, s->id);

	while (m->tab[i])
		i = (i + 1) & (m->tabcap - 1);
	m->tab[i] = s;
	m->list[m->nlist++] = s;
}

static void tab_del(struct hw_app_mux *m, struct stream *s)
{
	size_t i = slot_of(m, s->id), j, k;

	while (m->tab[i] != s)
		i = (i + 1) & (m->tabcap - 1);
	m->tab[i] = NULL;
	/* Backward shift keeps every probe chain unbroken. */
	for (j = (i + 1) & (m->tabcap - 1); m->tab[j];
	     j = (j + 1) & (m->tabcap - 1)) {
		k = slot_of(m, m->tab[j]->id);
		if ((j > i && (k <= i || k > j)) ||
		    (j < i && (k <= i && k > j))) {
			m->tab[i] = m->tab[j];
			m->tab[j] = NULL;
			i = j;
		}
	}
	for (size_t n = 0; n < m->nlist; n++)
		if (m->list[n] == s) {
			m->list[n] = m->list[--m->nlist];
			break;
		}
}

static void stream_free(struct stream *s)
{
	if (!s)
		return;
	if (s->sock >= 0)
		close(s->sock);
	free(s->ring);
	free(s);
}

static struct stream *stream_new(uint32_t id, int *app_fd)
{
	struct stream *s = calloc(1, sizeof(*s));
	int sv[2];

	if (!s)
		return NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		free(s);
		return NULL;
	}
	s->id = id;
	s->sock = sv[0];
	*app_fd = sv[1];
	s->allow = HW_MUX_WINDOW;
	if (set_nonblock(s->sock)) {
		close(sv[1]);
		stream_free(s);
		return NULL;
	}
	return s;
}

/* ---- output ---- */

static void out_u32(struct hw_app_mux *m, uint8_t type, uint32_t id,
		    uint32_t v)
{
	m->out_len += hw_mux_frame_u32(m->out + m->out_len, type, id, v);
}

static void out_hdr(struct hw_app_mux *m, uint8_t type, uint32_t id)
{
	hw_mux_frame_hdr(m->out + m->out_len, type, id, 0);
	m->out_len += HW_MUX_HDR;
}

/* Ends stream s here: the app's descriptor reads end of file (or
 * ECONNRESET when it left bytes unread), and RESET goes out when reason. */
static void stream_end(struct hw_app_mux *m, struct stream *s,
		       uint32_t reason)
{
	if (reason && m->out_len + HW_MUX_HDR + 4 <= MUX_OUT_MAX)
		out_u32(m, HW_MUX_RESET, s->id, reason);
	tab_del(m, s);
	stream_free(s);
	pthread_mutex_lock(&m->mu);
	m->nstreams--;
	pthread_mutex_unlock(&m->mu);
}

/* ---- input ---- */

/* Moves what the ring holds into the stream's socket; 0, or -1 when the
 * stream ended (the app is gone). */
static int ring_flush(struct hw_app_mux *m, struct stream *s)
{
	while (s->rlen) {
		size_t n = HW_MUX_WINDOW - s->rhead;
		ssize_t w;

		if (n > s->rlen)
			n = s->rlen;
		w = send(s->sock, s->ring + s->rhead, n,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return 0;
		if (w < 0) {
			stream_end(m, s, HW_MUX_R_CLOSED);
			return -1;
		}
		s->rhead = (s->rhead + (size_t)w) % HW_MUX_WINDOW;
		s->rlen -= (size_t)w;
		s->owed += (uint32_t)w;
	}
	if (s->remote_fin && !s->shut) {
		shutdown(s->sock, SHUT_WR);
		s->shut = 1;
	}
	if (s->shut && s->fin_sent) {
		stream_end(m, s, 0);
		return -1;
	}
	return 0;
}

static void on_data(struct hw_app_mux *m, struct stream *s, const uint8_t *p,
		    size_t len)
{
	ssize_t w = 0;

	if (!s->rlen) {
		do
			w = send(s->sock, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN) {
			stream_end(m, s, HW_MUX_R_CLOSED);
			return;
		}
		if (w < 0)
			w = 0;
		s->owed += (uint32_t)w;
	}
	p += w;
	len -= (size_t)w;
	if (!len)
		return;
	if (!s->ring && !(s->ring = malloc(HW_MUX_WINDOW))) {
		stream_end(m, s, HW_MUX_R_REFUSED);
		return;
	}
	/* Credit bounds ring bytes by the window: it always fits. */
	{
		size_t tail = (s->rhead + s->rlen) % HW_MUX_WINDOW;
		size_t n = HW_MUX_WINDOW - tail;

		if (n > len)
			n = len;
		memcpy(s->ring + tail, p, n);
		memcpy(s->ring, p + n, len - n);
		s->rlen += len;
	}
}

static void queue_accept(struct hw_app_mux *m, int app_fd)
{
	uint64_t one = 1;

	pthread_mutex_lock(&m->mu);
	if (!m->nacc && write(m->ready, &one, sizeof(one)) < 0) {
		/* an eventfd counter cannot overflow here */
	}
	m->acc[(m->acc_head + m->nacc++) % MUX_ACCEPT_MAX] = app_fd;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

/* One frame from the peer: 0, or -EPROTO with err set. */
static int on_frame(struct hw_app_mux *m, const struct hw_mux_frame *f,
		    char *err, size_t errlen)
{
	struct stream *s;
	int peers = (f->stream & 1) != (uint32_t)m->initiator;
	int app_fd, full;

	if (f->type == HW_MUX_HELLO) {
		if (m->hello_in) {
			snprintf(err, errlen, "a second HELLO");
			return -EPROTO;
		}
		if (f->version != HW_MUX_VERSION) {
			snprintf(err, errlen,
				 "the peer speaks mux version %u, not %u",
				 f->version, HW_MUX_VERSION);
			return -EPROTO;
		}
		m->hello_in = 1;
		m->peer_window = f->value;
		for (size_t i = 0; i < m->nlist; i++)
			m->list[i]->credit += f->value;
		return 0;
	}
	if (!m->hello_in) {
		snprintf(err, errlen, "frame type %u before HELLO", f->type);
		return -EPROTO;
	}
	s = tab_find(m, f->stream);
	if (f->type == HW_MUX_OPEN) {
		if (!peers || f->stream <= m->peer_last) {
			snprintf(err, errlen, "OPEN of stream %u, not the peer's "
				 "next", f->stream);
			return -EPROTO;
		}
		m->peer_last = f->stream;
		pthread_mutex_lock(&m->mu);
		full = m->nstreams >= HW_MUX_STREAMS_MAX ||
		       m->nacc >= MUX_ACCEPT_MAX || m->stop;
		if (!full)
			m->nstreams++;
		pthread_mutex_unlock(&m->mu);
		if (full || !(s = stream_new(f->stream, &app_fd))) {
			if (!full) {
				pthread_mutex_lock(&m->mu);
				m->nstreams--;
				pthread_mutex_unlock(&m->mu);
			}
			if (m->out_len + HW_MUX_HDR + 4 <= MUX_OUT_MAX)
				out_u32(m, HW_MUX_RESET, f->stream,
					HW_MUX_R_REFUSED);
			return 0;
		}
		s->credit = m->peer_window;
		tab_add(m, s);
		queue_accept(m, app_fd);
		return 0;
	}
	if (!s) {
		/* A stream that ended here (frames in flight are normal) or
		 * one that never was (the peer is broken). */
		uint32_t next;

		pthread_mutex_lock(&m->mu); /* the app's thread moves it */
		next = m->next_id;
		pthread_mutex_unlock(&m->mu);
		if ((peers && f->stream <= m->peer_last) ||
		    (!peers && f->stream < next))
			return 0;
		snprintf(err, errlen, "frame type %u on unknown stream %u",
			 f->type, f->stream);
		return -EPROTO;
	}
	switch (f->type) {
	case HW_MUX_DATA:
		if (s->remote_fin || f->len > s->allow) {
			snprintf(err, errlen, "DATA on stream %u %s", f->stream,
				 s->remote_fin ? "after FIN" : "beyond credit");
			return -EPROTO;
		}
		s->allow -= f->len;
		on_data(m, s, f->payload, f->len);
		break;
	case HW_MUX_CREDIT:
		if (s->credit + f->value > HW_MUX_WINDOW_MAX) {
			snprintf(err, errlen, "CREDIT beyond %u bytes on stream "
				 "%u", HW_MUX_WINDOW_MAX, f->stream);
			return -EPROTO;
		}
		s->credit += f->value;
		break;
	case HW_MUX_FIN:
		if (s->remote_fin) {
			snprintf(err, errlen, "a second FIN on stream %u",
				 f->stream);
			return -EPROTO;
		}
		s->remote_fin = 1;
		ring_flush(m, s);
		break;
	case HW_MUX_RESET:
		stream_end(m, s, 0);
		break;
	}
	return 0;
}

/* ---- the thread ---- */

static void mux_fail(struct hw_app_mux *m, const char *f, ...)
{
	va_list ap;

	pthread_mutex_lock(&m->mu);
	if (!m->why[0] && !m->stop) {
		va_start(ap, f);
		vsnprintf(m->why, sizeof(m->why), f, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&m->mu);
}

/* Reads the loop and acts on its frames; 0, or -1 when the mux ends. */
static int loop_in(struct hw_app_mux *m)
{
	struct hw_mux_frame f;
	char err[MUX_ERR_MAX];
	size_t off = 0, used;
	ssize_t n;
	int rc;

	n = hw_app_read(m->loop, m->in + m->in_len, MUX_IN_MAX - m->in_len);
	if (n == -EAGAIN)
		return 0;
	if (n == 0 || n == -ECONNRESET) {
		mux_fail(m, "the far end closed the loop");
		return -1;
	}
	if (n < 0) {
		const char *why = hw_app_loop_error(m->loop);
		mux_fail(m, "the loop failed: %s", why ? why : strerror(-n));
		return -1;
	}
	m->in_len += (size_t)n;
	while ((rc = hw_mux_frame_next(m->in + off, m->in_len - off, &f, &used,
				       err, sizeof(err))) == 1) {
		if (on_frame(m, &f, err, sizeof(err)) < 0) {
			rc = -EPROTO;
			break;
		}
		off += used;
	}
	if (rc < 0) {
		mux_fail(m, "the peer broke the stream framing: %s", err);
		return -1;
	}
	memmove(m->in, m->in + off, m->in_len - off);
	m->in_len -= off;
	return 0;
}

static int loop_out(struct hw_app_mux *m)
{
	ssize_t n;

	if (!m->out_len)
		return 0;
	n = hw_app_write(m->loop, m->out, m->out_len);
	if (n == -EAGAIN)
		return 0;
	if (n == -EPIPE || n == -ECONNRESET) {
		mux_fail(m, "the far end closed the loop");
		return -1;
	}
	if (n < 0) {
		const char *why = hw_app_loop_error(m->loop);
		mux_fail(m, "the loop failed: %s", why ? why : strerror(-n));
		return -1;
	}
	memmove(m->out, m->out + n, m->out_len - (size_t)n);
	m->out_len -= (size_t)n;
	return 0;
}

/* The app's side of s is readable: one DATA frame, or its FIN. */
static void stream_in(struct hw_app_mux *m, struct stream *s)
{
	size_t room = MUX_OUT_MAX - m->out_len - HW_MUX_HDR;
	ssize_t n;

	if (room > HW_MUX_DATA_MAX)
		room = HW_MUX_DATA_MAX;
	if ((int64_t)room > s->credit)
		room = (size_t)s->credit;
	do
		n = recv(s->sock, m->out + m->out_len + HW_MUX_HDR, room,
			 MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n > 0) {
		hw_mux_frame_hdr(m->out + m->out_len, HW_MUX_DATA, s->id,
				 (uint16_t)n);
		m->out_len += HW_MUX_HDR + (size_t)n;
		s->credit -= n;
		return;
	}
	if (n < 0) { /* ECONNRESET: the app closed without reading */
		stream_end(m, s, HW_MUX_R_CLOSED);
		return;
	}
	s->local_eof = 1;
}

/* Control frames due on s (OPEN, CREDIT, FIN) while there is room;
 * returns -1 when s ended. */
static int stream_ctl(struct hw_app_mux *m, struct stream *s)
{
	if (m->out_len + 3 * (HW_MUX_HDR + 4) > MUX_READ_ROOM)
		return 0;
	if (s->owed && (s->owed >= HW_MUX_WINDOW / 4 || !s->rlen)) {
		out_u32(m, HW_MUX_CREDIT, s->id, s->owed);
		s->allow += s->owed;
		s->owed = 0;
	}
	if (s->local_eof && !s->fin_sent) {
		out_hdr(m, HW_MUX_FIN, s->id);
		s->fin_sent = 1;
	}
	if (s->fin_sent && s->shut) {
		stream_end(m, s, 0);
		return -1;
	}
	return 0;
}

static void take_fresh(struct hw_app_mux *m)
{
	struct stream *s, *next;
	uint64_t v;

	if (read(m->wake, &v, sizeof(v)) < 0) {
		/* nothing to take: EAGAIN */
	}
	pthread_mutex_lock(&m->mu);
	s = m->fresh;
	m->fresh = NULL;
	pthread_mutex_unlock(&m->mu);
	/* The list is newest first: add oldest first, as OPENs go out. */
	{
		struct stream *rev = NULL;

		for (; s; s = next) {
			next = s->next;
			s->next = rev;
			rev = s;
		}
		for (s = rev; s; s = next) {
			next = s->next;
			s->next = NULL;
			s->credit = m->hello_in ? m->peer_window : 0;
			tab_add(m, s);
			/* OPEN now, in order: IDs only grow on the wire. */
			out_hdr(m, HW_MUX_OPEN, s->id);
		}
	}
}

static void *mux_main(void *arg)
{
	struct hw_app_mux *m = arg;
	int stop = 0;

	while (!stop) {
		size_t np = 2;

		/* Control first, then poll what is wanted. */
		for (size_t i = m->nlist; i-- > 0;)
			stream_ctl(m, m->list[i]);
		m->pfd[0] = (struct pollfd){.fd = m->wake, .events = POLLIN};
		m->pfd[1] = (struct pollfd){
			.fd = m->loop,
			.events = (m->out_len <= MUX_READ_ROOM ? POLLIN : 0) |
				  (m->out_len ? POLLOUT : 0)};
		for (size_t i = 0; i < m->nlist; i++) {
			struct stream *s = m->list[i];
			short ev = 0;

			if (!s->local_eof && s->credit > 0 &&
			    m->out_len < MUX_DATA_FILL)
				ev |= POLLIN;
			if (s->rlen)
				ev |= POLLOUT;
			/* A socket the app closed is always "hung up": poll it
			 * only for what it can still give. */
			m->pfd[np++] = (struct pollfd){
				.fd = (ev || !s->app_gone) ? s->sock : -1,
				.events = ev};
		}
		if (poll(m->pfd, np, -1) < 0) {
			if (errno == EINTR)
				continue;
			mux_fail(m, "poll: %s", strerror(errno));
			break;
		}
		if (m->pfd[1].revents & (POLLOUT | POLLERR | POLLHUP) &&
		    loop_out(m) < 0)
			break;
		/* Streams before the loop's input: that may end some. */
		{
			size_t n = m->nlist;
			struct stream **snap = m->list;

			for (size_t i = n; i-- > 0;) {
				struct stream *s = snap[i];
				short re = m->pfd[2 + i].revents;

				if (!re || i >= m->nlist || m->list[i] != s)
					continue;
				if (re & POLLOUT && ring_flush(m, s) < 0)
					continue;
				if (re & (POLLIN | POLLHUP | POLLERR) &&
				    !s->local_eof && s->credit > 0 &&
				    m->out_len < MUX_DATA_FILL) {
					stream_in(m, s);
					continue;
				}
				if (re & (POLLHUP | POLLERR))
					s->app_gone = 1;
			}
		}
		if (m->pfd[1].revents & (POLLIN | POLLHUP | POLLERR) &&
		    m->out_len <= MUX_READ_ROOM && loop_in(m) < 0)
			break;
		if (m->pfd[0].revents)
			take_fresh(m);
		pthread_mutex_lock(&m->mu);
		stop = m->stop;
		pthread_mutex_unlock(&m->mu);
		if (!stop && loop_out(m) < 0)
			break;
	}
	/* The end: every stream reads end of file, accept says -EPIPE. */
	while (m->nlist)
		stream_end(m, m->list[0], 0);
	pthread_mutex_lock(&m->mu);
	m->ended = 1;
	/* Streams opened since the last wake-up end too. */
	while (m->fresh) {
		struct stream *s = m->fresh;

		m->fresh = s->next;
		stream_free(s);
	}
	if (!m->why[0])
		snprintf(m->why, sizeof(m->why), "the mux was freed");
	{
		uint64_t one = 1;
		if (write(m->ready, &one, sizeof(one)) < 0) {
			/* cannot overflow */
		}
	}
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	close(m->loop);
	m->loop = -1;
	return NULL;
}

/* ---- the API ---- */

HW_APP_API int hw_app_mux_new(struct hw_app_mux **out, int loop_fd,
			      int initiator)
{
	struct hw_app_mux *m = NULL;
	int rc = -ENOMEM;

	if (!out || loop_fd < 0)
		return -EINVAL;
	*out = NULL;
	if (!(m = calloc(1, sizeof(*m))))
		return -ENOMEM;
	m->loop = loop_fd;
	m->initiator = !!initiator;
	m->next_id = initiator ? 1 : 2;
	m->wake = m->ready = -1;
	m->tabcap = 2 * HW_MUX_STREAMS_MAX;
	m->tab = calloc(m->tabcap, sizeof(*m->tab));
	m->list = calloc(HW_MUX_STREAMS_MAX, sizeof(*m->list));
	m->pfd = calloc(HW_MUX_STREAMS_MAX + 2, sizeof(*m->pfd));
	if (!m->tab || !m->list || !m->pfd)
		goto fail;
	m->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	m->ready = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (m->wake < 0 || m->ready < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = set_nonblock(loop_fd)))
		goto fail;
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	hw_mux_frame_hdr(m->out, HW_MUX_HELLO, 0, 5);
	m->out[HW_MUX_HDR] = HW_MUX_VERSION;
	m->out[HW_MUX_HDR + 1] = HW_MUX_WINDOW >> 24;
	m->out[HW_MUX_HDR + 2] = (HW_MUX_WINDOW >> 16) & 0xff;
	m->out[HW_MUX_HDR + 3] = (HW_MUX_WINDOW >> 8) & 0xff;
	m->out[HW_MUX_HDR + 4] = HW_MUX_WINDOW & 0xff;
	m->out_len = HW_MUX_HDR + 5;
	if ((rc = -pthread_create(&m->th, NULL, mux_main, m))) {
		pthread_mutex_destroy(&m->mu);
		pthread_cond_destroy(&m->cv);
		goto fail;
	}
	*out = m;
	return 0;
fail:
	if (m->wake >= 0)
		close(m->wake);
	if (m->ready >= 0)
		close(m->ready);
	free(m->tab);
	free(m->list);
	free(m->pfd);
	free(m);
	return rc;
}

HW_APP_API int hw_app_mux_open(struct hw_app_mux *m, int *fd)
{
	struct stream *s;
	uint64_t one = 1;
	int app_fd, rc = 0;

	if (!m || !fd)
		return -EINVAL;
	pthread_mutex_lock(&m->mu);
	if (m->ended || m->stop)
		rc = -EPIPE;
	else if (m->nstreams >= HW_MUX_STREAMS_MAX || m->next_id > 0xfffffffdu)
		rc = -EMFILE;
	else if (!(s = stream_new(m->next_id, &app_fd)))
		rc = errno ? -errno : -ENOMEM;
	if (!rc) {
		m->next_id += 2;
		m->nstreams++;
		s->next = m->fresh;
		m->fresh = s;
		*fd = app_fd;
		if (write(m->wake, &one, sizeof(one)) < 0) {
			/* cannot overflow */
		}
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

HW_APP_API int hw_app_mux_accept(struct hw_app_mux *m, int *fd,
				 int timeout_ms)
{
	struct timespec ts;
	uint64_t v;
	int rc = 0;

	if (!m || !fd)
		return -EINVAL;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (timeout_ms > 0) {
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&m->mu);
	while (!m->nacc && !m->ended && rc == 0) {
		if (timeout_ms == 0)
			rc = -EAGAIN;
		else if (timeout_ms < 0)
			pthread_cond_wait(&m->cv, &m->mu);
		else if (pthread_cond_timedwait(&m->cv, &m->mu, &ts) ==
			 ETIMEDOUT)
			rc = -EAGAIN;
	}
	if (m->nacc) {
		*fd = m->acc[m->acc_head];
		m->acc_head = (m->acc_head + 1) % MUX_ACCEPT_MAX;
		m->nacc--;
		rc = 0;
		if (!m->nacc && !m->ended &&
		    read(m->ready, &v, sizeof(v)) < 0) {
			/* already 0 */
		}
	} else if (m->ended) {
		rc = -EPIPE;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

HW_APP_API int hw_app_mux_fd(const struct hw_app_mux *m)
{
	return m ? m->ready : -EINVAL;
}

HW_APP_API const char *hw_app_mux_error(struct hw_app_mux *m)
{
	const char *why;

	if (!m)
		return NULL;
	pthread_mutex_lock(&m->mu);
	why = m->ended ? m->why : NULL;
	pthread_mutex_unlock(&m->mu);
	return why;
}

HW_APP_API void hw_app_mux_free(struct hw_app_mux *m)
{
	uint64_t one = 1;
	struct stream *s, *next;

	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->stop = 1;
	if (write(m->wake, &one, sizeof(one)) < 0) {
		/* cannot overflow */
	}
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->th, NULL);
	for (s = m->fresh; s; s = next) {
		next = s->next;
		stream_free(s);
	}
	while (m->nacc) {
		close(m->acc[m->acc_head]);
		m->acc_head = (m->acc_head + 1) % MUX_ACCEPT_MAX;
		m->nacc--;
	}
	close(m->wake);
	close(m->ready);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m->tab);
	free(m->list);
	free(m->pfd);
	free(m);
}
