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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#define MUX_PEND_IOV 64 /* DATA frames handed to a stream in one call */
#define MUX_IN_BURST (64 * 1024) /* what one stream gives per wake-up */
#define MUX_ACCEPT_MAX 512 /* like a listen backlog: bursts wait */
#define MUX_ERR_MAX 256

struct stream {
	uint32_t id;
	int sock;          /* the mux's end; the app has the other */
	int64_t credit;    /* bytes we may still send */
	int64_t allow;     /* bytes the peer may still send */
	uint32_t owed;     /* delivered, not credited back yet */
	uint8_t *ring;     /* HW_MUX_WINDOW bytes when allocated */
	size_t rhead, rlen;
	ino_t app_ino;     /* the app's end, to find s by descriptor */
	/* After hw_app_mux_relay: what the app's end held, for sock before
	 * the ring (pre), and what the app wrote that had not gone out yet,
	 * sent before sock is read (post). */
	uint8_t *pre, *post;
	size_t pre_off, pre_len, post_off, post_len;
	struct hw_app_mux_watch *watch; /* a relayed stream's, or NULL */
	unsigned long long sent, received; /* DATA payload bytes */
	unsigned fin_sent : 1, local_eof : 1, remote_fin : 1,
		shut : 1, app_gone : 1, relayed : 1;
	struct stream *next; /* new-stream list / accept queue */
};

/* A hw_app_mux_relay call waiting for the mux thread. */
struct relay_req {
	ino_t ino;
	int fd, sock;
	struct hw_app_mux_watch *watch;
	int rc, done;
	struct relay_req *next;
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
	struct relay_req *relays; /* waiting hw_app_mux_relay calls */
	_Atomic unsigned long long sent, received; /* DATA payload bytes */
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
	/* DATA of one stream from the current read of the loop, not yet
	 * handed to its socket (pointers into in). */
	struct stream *pend;
	struct iovec piov[MUX_PEND_IOV];
	size_t npiov;
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
	if (s->watch && s->watch->done)
		s->watch->done(s->watch);
	free(s->ring);
	free(s->pre);
	free(s->post);
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
	{
		struct stat st;
		if (fstat(sv[1], &st) == 0)
			s->app_ino = st.st_ino;
	}
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

/* Sends what s->sock takes of p[0..n) now: the count (0: nothing now),
 * or -1 when the stream ended (the app or the relayed socket is gone). */
static ssize_t sock_send(struct hw_app_mux *m, struct stream *s,
			 const uint8_t *p, size_t n)
{
	ssize_t w;

	do
		w = send(s->sock, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (w < 0 && errno == EINTR);
	if (w < 0 && errno == EAGAIN)
		return 0;
	if (w < 0) {
		stream_end(m, s, HW_MUX_R_CLOSED);
		return -1;
	}
	return w;
}

/* Moves what the stream holds (from before a relay, then its ring) into
 * its socket; 0, or -1 when the stream ended. */
static int ring_flush(struct hw_app_mux *m, struct stream *s)
{
	ssize_t w;

	while (s->pre_len) {
		if ((w = sock_send(m, s, s->pre + s->pre_off, s->pre_len)) <= 0)
			return (int)w;
		s->pre_off += (size_t)w;
		s->pre_len -= (size_t)w;
	}
	if (s->pre) {
		free(s->pre);
		s->pre = NULL;
	}
	while (s->rlen) {
		size_t n = HW_MUX_WINDOW - s->rhead;

		if (n > s->rlen)
			n = s->rlen;
		if ((w = sock_send(m, s, s->ring + s->rhead, n)) <= 0)
			return (int)w;
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

/* Keeps len bytes of s in its ring, for when its socket takes them.
 * Credit bounds ring bytes by the window: they always fit. Returns 0, or
 * -1 when s ended (no memory for its ring). */
static int ring_put(struct hw_app_mux *m, struct stream *s, const uint8_t *p,
		    size_t len)
{
	size_t tail, n;

	if (!s->ring && !(s->ring = malloc(HW_MUX_WINDOW))) {
		stream_end(m, s, HW_MUX_R_REFUSED);
		return -1;
	}
	tail = (s->rhead + s->rlen) % HW_MUX_WINDOW;
	n = HW_MUX_WINDOW - tail;
	if (n > len)
		n = len;
	memcpy(s->ring + tail, p, n);
	memcpy(s->ring, p + n, len - n);
	s->rlen += len;
	return 0;
}

/* Hands the DATA payloads gathered for one stream (consecutive frames of
 * one read of the loop) to its socket in one call; what the socket does
 * not take goes to the ring. */
static void pend_flush(struct hw_app_mux *m)
{
	struct stream *s = m->pend;
	struct msghdr msg = {.msg_iov = m->piov, .msg_iovlen = m->npiov};
	ssize_t w = 0;

	if (!s)
		return;
	m->pend = NULL;
	m->npiov = 0;
	if (!s->rlen && !s->pre_len) {
		do
			w = sendmsg(s->sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN) {
			stream_end(m, s, HW_MUX_R_CLOSED);
			return;
		}
		if (w < 0)
			w = 0;
		s->owed += (uint32_t)w;
	}
	for (size_t i = 0; i < msg.msg_iovlen; i++) {
		size_t len = m->piov[i].iov_len, skip;

		skip = (size_t)w < len ? (size_t)w : len;
		w -= (ssize_t)skip;
		if (len > skip &&
		    ring_put(m, s, (uint8_t *)m->piov[i].iov_base + skip,
			     len - skip) < 0)
			return;
	}
}

/* A DATA payload for s: gathered, handed over by pend_flush. */
static void on_data(struct hw_app_mux *m, struct stream *s, const uint8_t *p,
		    size_t len)
{
	if (m->pend != s || m->npiov == MUX_PEND_IOV)
		pend_flush(m);
	m->pend = s;
	m->piov[m->npiov++] = (struct iovec){.iov_base = (void *)p,
					     .iov_len = len};
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

/* A relayed stream that ends before its time resets its socket
 * (SO_LINGER 0: a TCP RST), so the program behind it sees an error, not
 * an end of file. */
static void relay_reset(struct stream *s)
{
	struct linger lg = {1, 0};

	if (s->relayed)
		setsockopt(s->sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
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
		m->received += f->len;
		s->received += f->len;
		if (s->watch)
			__atomic_fetch_add(&s->watch->received, f->len,
					   __ATOMIC_RELAXED);
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
		relay_reset(s);
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

/* The loop ended (n: 0, an end of file, or a negative errno from reading
 * or writing it): says why; -1. */
static int loop_gone(struct hw_app_mux *m, ssize_t n)
{
	const char *why;

	if (n == 0 || n == -ECONNRESET || n == -EPIPE) {
		mux_fail(m, "the far end closed the loop");
	} else {
		why = hw_app_loop_error(m->loop);
		mux_fail(m, "the loop failed: %s",
			 why ? why : strerror((int)-n));
	}
	return -1;
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
	if (n <= 0)
		return loop_gone(m, n);
	m->in_len += (size_t)n;
	while ((rc = hw_mux_frame_next(m->in + off, m->in_len - off, &f, &used,
				       err, sizeof(err))) == 1) {
		/* Gathered DATA goes out before any other frame acts: a FIN
		 * or RESET must follow the bytes before it. */
		if (m->pend && (f.type != HW_MUX_DATA ||
				f.stream != m->pend->id))
			pend_flush(m);
		if (on_frame(m, &f, err, sizeof(err)) < 0) {
			rc = -EPROTO;
			break;
		}
		off += used;
	}
	pend_flush(m);
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
	if (n < 0)
		return loop_gone(m, n);
	memmove(m->out, m->out + n, m->out_len - (size_t)n);
	m->out_len -= (size_t)n;
	return 0;
}

/* DATA frames of up to budget bytes from what the app wrote before a
 * relay (s->post). */
static void post_out(struct hw_app_mux *m, struct stream *s, size_t budget)
{
	while (budget && s->post_len) {
		size_t len = s->post_len;

		if (len > HW_MUX_DATA_MAX)
			len = HW_MUX_DATA_MAX;
		if (len > budget)
			len = budget;
		hw_mux_frame_hdr(m->out + m->out_len, HW_MUX_DATA, s->id,
				 (uint16_t)len);
		memcpy(m->out + m->out_len + HW_MUX_HDR, s->post + s->post_off,
		       len);
		m->out_len += HW_MUX_HDR + len;
		s->post_off += len;
		s->post_len -= len;
		s->credit -= (int64_t)len;
		m->sent += len;
		s->sent += len;
		if (s->watch)
			__atomic_fetch_add(&s->watch->sent, len,
					   __ATOMIC_RELAXED);
		budget -= len;
	}
	if (!s->post_len) {
		free(s->post);
		s->post = NULL;
	}
}

/* The app's side of s is readable: DATA frames of what it holds (up to
 * MUX_IN_BURST, read in one call into frame-sized slots between their
 * headers), or its FIN. */
static void stream_in(struct hw_app_mux *m, struct stream *s)
{
	struct iovec iov[MUX_IN_BURST / HW_MUX_DATA_MAX];
	struct msghdr msg = {.msg_iov = iov};
	size_t budget = MUX_IN_BURST, left;
	uint8_t *slot = m->out + m->out_len;
	ssize_t n;

	/* Called below MUX_DATA_FILL; data stays within MUX_READ_ROOM. */
	if (budget > MUX_READ_ROOM - m->out_len -
			     MUX_IN_BURST / HW_MUX_DATA_MAX * HW_MUX_HDR)
		budget = MUX_READ_ROOM - m->out_len -
			 MUX_IN_BURST / HW_MUX_DATA_MAX * HW_MUX_HDR;
	if ((int64_t)budget > s->credit)
		budget = (size_t)s->credit;
	if (s->post_len) {
		post_out(m, s, budget);
		return;
	}
	for (left = budget; left; msg.msg_iovlen++) {
		size_t len = left < HW_MUX_DATA_MAX ? left : HW_MUX_DATA_MAX;

		iov[msg.msg_iovlen] = (struct iovec){
			.iov_base = slot + msg.msg_iovlen *
				   (HW_MUX_HDR + HW_MUX_DATA_MAX) + HW_MUX_HDR,
			.iov_len = len};
		left -= len;
	}
	do
		n = recvmsg(s->sock, &msg, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n > 0) {
		s->credit -= n;
		m->sent += (unsigned long long)n;
		s->sent += (unsigned long long)n;
		if (s->watch)
			__atomic_fetch_add(&s->watch->sent,
					   (unsigned long long)n,
					   __ATOMIC_RELAXED);
		for (size_t i = 0; n > 0; i++) {
			size_t len = (size_t)n < HW_MUX_DATA_MAX
					     ? (size_t)n : HW_MUX_DATA_MAX;

			hw_mux_frame_hdr(m->out + m->out_len, HW_MUX_DATA,
					 s->id, (uint16_t)len);
			m->out_len += HW_MUX_HDR + len;
			n -= (ssize_t)len;
		}
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
	/* A quarter of the window at a time: the sender still holds three
	 * quarters, so it never waits on what we owe, and small messages
	 * (an echo, a request) cost no CREDIT frame each. */
	if (s->owed >= HW_MUX_WINDOW / 4) {
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

/* Reads what fd holds now, without waiting, into a new buffer (*buf
 * NULL when it held nothing). 0, or -ENOMEM. A hang-up or an error ends
 * the reading as an end of file would. */
static int drain(int fd, uint8_t **buf, size_t *len)
{
	size_t cap = 0;
	ssize_t n;

	*buf = NULL;
	*len = 0;
	for (;;) {
		if (*len == cap) {
			uint8_t *nb = realloc(*buf, cap ? 2 * cap : 65536);
			if (!nb) {
				free(*buf);
				*buf = NULL;
				return -ENOMEM;
			}
			*buf = nb;
			cap = cap ? 2 * cap : 65536;
		}
		n = recv(fd, *buf + *len, cap - *len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		*len += (size_t)n;
	}
	if (!*len) {
		free(*buf);
		*buf = NULL;
	}
	return 0;
}

/* Moves stream s from the app's end (r->fd, closed here in every case)
 * to r->sock: what the app's end held goes to sock first, what the app
 * wrote goes to the peer first. 0, or a negative errno with sock left
 * to the caller (-ENOMEM: s was reset, its bytes could not be kept). */
static int relay_switch(struct hw_app_mux *m, struct stream *s,
			struct relay_req *r)
{
	uint8_t *pre, *post;
	size_t pre_len, post_len;
	int rc;

	if (s->local_eof || s->fin_sent || s->app_gone) {
		close(r->fd);
		return -EINVAL;
	}
	if ((rc = set_nonblock(r->sock))) {
		close(r->fd);
		return rc;
	}
	/* The app waits in hw_app_mux_relay: its end holds what we sent
	 * and it did not read; once it is closed, ours reads what the app
	 * wrote, then end of file. */
	rc = drain(r->fd, &pre, &pre_len);
	close(r->fd);
	if (rc < 0 || drain(s->sock, &post, &post_len) < 0) {
		free(pre);
		stream_end(m, s, HW_MUX_R_CLOSED);
		return -ENOMEM;
	}
	close(s->sock);
	s->sock = r->sock;
	s->relayed = 1;
	/* The watch counts from the stream's start. */
	if ((s->watch = r->watch)) {
		__atomic_store_n(&s->watch->sent, s->sent, __ATOMIC_RELAXED);
		__atomic_store_n(&s->watch->received, s->received,
				 __ATOMIC_RELAXED);
	}
	s->pre = pre;
	s->pre_off = 0;
	s->pre_len = pre_len;
	s->post = post;
	s->post_off = 0;
	s->post_len = post_len;
	/* A FIN that came before the relay shut the app's end, not sock:
	 * sock is shut once what it is owed went out. */
	if (s->shut) {
		s->shut = 0;
		ring_flush(m, s); /* may end s */
	}
	return 0;
}

/* The waiting relay calls: each finds its stream by the inode of the
 * app's end. */
static void take_relays(struct hw_app_mux *m)
{
	struct relay_req *r, *next;

	pthread_mutex_lock(&m->mu);
	r = m->relays;
	m->relays = NULL;
	pthread_mutex_unlock(&m->mu);
	for (; r; r = next) {
		struct stream *s = NULL;
		int rc = -ENOENT;

		next = r->next;
		for (size_t i = 0; i < m->nlist && !s; i++)
			if (m->list[i]->app_ino == r->ino && !m->list[i]->pre &&
			    !m->list[i]->post)
				s = m->list[i];
		if (s)
			rc = relay_switch(m, s, r);
		else
			close(r->fd);
		pthread_mutex_lock(&m->mu);
		r->rc = rc;
		r->done = 1;
		pthread_cond_broadcast(&m->cv);
		pthread_mutex_unlock(&m->mu);
	}
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

		/* Bytes held from before a relay and control first, then
		 * poll what is wanted. */
		for (size_t i = m->nlist; i-- > 0;) {
			struct stream *s = m->list[i];

			if (s->post_len && s->credit > 0 &&
			    m->out_len < MUX_DATA_FILL)
				stream_in(m, s);
			stream_ctl(m, s);
		}
		m->pfd[0] = (struct pollfd){.fd = m->wake, .events = POLLIN};
		m->pfd[1] = (struct pollfd){
			.fd = m->loop,
			.events = (m->out_len <= MUX_READ_ROOM ? POLLIN : 0) |
				  (m->out_len ? POLLOUT : 0)};
		for (size_t i = 0; i < m->nlist; i++) {
			struct stream *s = m->list[i];
			short ev = 0;

			if (!s->local_eof && !s->post_len && s->credit > 0 &&
			    m->out_len < MUX_DATA_FILL)
				ev |= POLLIN;
			if (s->rlen || s->pre_len)
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
		if (m->pfd[0].revents) {
			take_fresh(m);
			take_relays(m);
		}
		pthread_mutex_lock(&m->mu);
		stop = m->stop;
		pthread_mutex_unlock(&m->mu);
		if (!stop && loop_out(m) < 0)
			break;
	}
	/* The end: every stream reads end of file, accept says -EPIPE;
	 * a relayed socket is reset. */
	while (m->nlist) {
		relay_reset(m->list[0]);
		stream_end(m, m->list[0], 0);
	}
	pthread_mutex_lock(&m->mu);
	m->ended = 1;
	/* Streams opened since the last wake-up end too. */
	while (m->fresh) {
		struct stream *s = m->fresh;

		m->fresh = s->next;
		stream_free(s);
	}
	while (m->relays) {
		close(m->relays->fd);
		m->relays->rc = -EPIPE;
		m->relays->done = 1;
		m->relays = m->relays->next;
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

HW_APP_API int hw_app_mux_relay(struct hw_app_mux *m, int fd, int sock,
				struct hw_app_mux_watch *watch)
{
	struct relay_req r = {.fd = fd, .sock = sock, .watch = watch};
	struct stat st;
	uint64_t one = 1;

	if (fd < 0)
		return -EINVAL;
	if (!m || sock < 0 || fd == sock) {
		close(fd);
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	r.ino = st.st_ino;
	pthread_mutex_lock(&m->mu);
	if (m->ended || m->stop) {
		pthread_mutex_unlock(&m->mu);
		close(fd);
		return -EPIPE;
	}
	r.next = m->relays;
	m->relays = &r;
	if (write(m->wake, &one, sizeof(one)) < 0) {
		/* cannot overflow */
	}
	while (!r.done)
		pthread_cond_wait(&m->cv, &m->mu);
	pthread_mutex_unlock(&m->mu);
	return r.rc;
}

HW_APP_API void hw_app_mux_stats(struct hw_app_mux *m,
				 struct hw_app_mux_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	st->sent = atomic_load_explicit(&m->sent, memory_order_relaxed);
	st->received = atomic_load_explicit(&m->received,
					    memory_order_relaxed);
	st->streams = (unsigned)m->nstreams;
	pthread_mutex_unlock(&m->mu);
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
