/* The chat protocol between hopwire-chat apps, over Hopwire loops
 * (docs/chat.md has the same text for people writing other chat apps).
 *
 * Where: the chat app listens on port 1 of its visor. A loop is a
 * reliable, ordered byte stream between two apps (the SDK's loop
 * descriptor); the visor authenticates both ends, so the sender of
 * everything read from a loop is the loop's remote public key.
 *
 * Messages: each message is one line of JSON, UTF-8, ending in "\n":
 *
 *     {"message": TEXT}\n
 *
 * TEXT is a JSON string of 1..4096 bytes once decoded (UTF-8, no U+0000).
 * A line is at most 32768 bytes with its "\n" (room for 4096 bytes
 * escaped as \u00XX). Other members of the object are ignored (room for
 * later versions); lines holding only white space are ignored. A line
 * that is too long, is not a JSON object with a "message" string, or
 * whose text is empty or longer than 4096 bytes breaks the protocol: the
 * receiver logs it, closes that loop and stores nothing from that line
 * (lines before it were stored). A line cut off by the end of the stream
 * is dropped. There are no acknowledgements: a message counts as sent
 * once written to the loop.
 *
 * Loops: a sender keeps one loop per peer that it dialed itself: it dials
 * on the first message to that peer, reuses the loop for later ones, and
 * when writing fails (or the loop is already closed) dials once more and
 * writes the message again. Both ends read and store messages from every
 * loop, the ones they accepted and the ones they dialed, so a reply may
 * come back on either. Nobody has to close a loop; either end may at any
 * time (the other sees end of file).
 *
 * Limits on what a peer can make this app hold: at most 256 open loops in
 * all and 4 accepted loops per peer (a fifth closes that peer's oldest);
 * 32 KiB of buffered input per loop; 50 messages per second per loop
 * (beyond that the loop is simply read more slowly).
 *
 * Threads: the main thread (hw_chat_net_run) polls the channel and every
 * loop and is the only reader. HTTP threads dial and write
 * (hw_chat_net_send); one send per peer at a time. A loop is reference
 * counted under net->mu: the list holds one reference, the main thread
 * holds one on every loop it polls, a sender one on the loop it writes;
 * the descriptor is closed when the last goes, so nobody ever reads or
 * writes a descriptor number that was closed and reused. */
#define _GNU_SOURCE /* pipe2, POLLRDHUP */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat.h"

#define NET_MAX_LOOPS 256
#define NET_MAX_ACCEPTED_PER_PEER 4
#define NET_DIAL_TIMEOUT_MS 10000
#define NET_WRITE_TIMEOUT_MS 5000
/* How often a sender blocked on a full loop checks for shutdown. */
#define NET_WRITE_SLICE_MS 200
#define NET_RATE_WINDOW_MS 1000
#define NET_RATE_MAX 50
/* Loops accepted per turn of the main loop, so a flood of loops cannot
 * starve reading. */
#define NET_ACCEPT_BATCH 32
#define NET_ERR_MAX 512
/* The longest the main thread sleeps without asking the SDK for loops
 * (a safety net; senders wake it after each dial). */
#define NET_IDLE_MS 1000

struct chat_loop {
	struct chat_loop *next; /* on net->loops */
	int fd;
	char pk[HW_APP_PK_HEX + 1]; /* remote visor */
	uint16_t remote_port;
	bool dialed;
	bool dead;     /* off the list; closed when refs reaches 0 */
	unsigned refs; /* under net->mu */

	/* Main thread only. */
	char *buf; /* HW_CHAT_LINE_MAX bytes of input not yet a line */
	size_t len;
	bool eof;  /* nothing more to read; close once buf holds no line */
	int64_t win_start;
	unsigned win_count;
};

/* A send in progress to pk: the others to pk wait for it. */
struct chat_sending {
	struct chat_sending *next;
	char pk[HW_APP_PK_HEX + 1];
};

struct hw_chat_net {
	struct hw_app *app;
	struct hw_chat_store *st;
	int wake[2]; /* senders wake the main thread to poll new loops */

	pthread_mutex_t mu;
	pthread_cond_t cv; /* a send ended, or stopping */
	/* Under mu: */
	struct chat_loop *loops;
	size_t nloops;
	struct chat_sending *sending;
	bool stopping;

	/* Main thread only: the loops of the current poll. */
	struct pollfd pfd[3 + NET_MAX_LOOPS];
	struct chat_loop *polled[NET_MAX_LOOPS];
};

static void loop_free(struct chat_loop *l)
{
	if (l->fd >= 0)
		close(l->fd);
	free(l->buf);
	free(l);
}

/* Drops a reference; the last one closes the loop. */
static void loop_unref(struct hw_chat_net *net, struct chat_loop *l)
{
	bool last;

	pthread_mutex_lock(&net->mu);
	last = --l->refs == 0;
	pthread_mutex_unlock(&net->mu);
	if (last)
		loop_free(l);
}

static void unlink_locked(struct hw_chat_net *net, struct chat_loop *l)
{
	struct chat_loop **pp;

	for (pp = &net->loops; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	l->next = NULL;
	l->dead = true;
	net->nloops--;
}

/* Takes l out of service (once); the caller still holds its own
 * reference. */
static void loop_kill(struct hw_chat_net *net, struct chat_loop *l)
{
	bool last = false;

	pthread_mutex_lock(&net->mu);
	if (!l->dead) {
		unlink_locked(net, l);
		last = --l->refs == 0;
	}
	pthread_mutex_unlock(&net->mu);
	if (last)
		loop_free(l);
}

static struct chat_loop *loop_new(const struct hw_app_loop *hl, bool dialed)
{
	struct chat_loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->buf = malloc(HW_CHAT_LINE_MAX);
	if (!l->buf) {
		free(l);
		return NULL;
	}
	l->fd = hl->fd;
	/* The SDK writes lower-case hex; hw_chat_pk_ok makes sure. */
	if (!hw_chat_pk_ok(hl->remote_pk, l->pk))
		snprintf(l->pk, sizeof(l->pk), "%s", hl->remote_pk);
	l->remote_port = hl->remote_port;
	l->dialed = dialed;
	return l;
}

static void wake_main(struct hw_chat_net *net)
{
	char c = 1;

	/* A full pipe already means "wake up". */
	if (write(net->wake[1], &c, 1) < 0 && errno != EAGAIN)
		hw_chat_log("wake: %s", strerror(errno));
}

int hw_chat_net_new(struct hw_chat_net **out, struct hw_app *app,
		    struct hw_chat_store *st)
{
	struct hw_chat_net *net;
	int rc;

	*out = NULL;
	net = calloc(1, sizeof(*net));
	if (!net)
		return -ENOMEM;
	net->app = app;
	net->st = st;
	if (pipe2(net->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
		rc = -errno;
		free(net);
		return rc;
	}
	if ((rc = -pthread_mutex_init(&net->mu, NULL))) {
		close(net->wake[0]);
		close(net->wake[1]);
		free(net);
		return rc;
	}
	if ((rc = -pthread_cond_init(&net->cv, NULL))) {
		pthread_mutex_destroy(&net->mu);
		close(net->wake[0]);
		close(net->wake[1]);
		free(net);
		return rc;
	}
	*out = net;
	return 0;
}

void hw_chat_net_free(struct hw_chat_net *net)
{
	struct chat_loop *l, *next;

	if (!net)
		return;
	/* Nobody else runs now: every loop holds only the list's
	 * reference. */
	for (l = net->loops; l; l = next) {
		next = l->next;
		loop_free(l);
	}
	close(net->wake[0]);
	close(net->wake[1]);
	pthread_cond_destroy(&net->cv);
	pthread_mutex_destroy(&net->mu);
	free(net);
}

void hw_chat_net_stop(struct hw_chat_net *net)
{
	pthread_mutex_lock(&net->mu);
	net->stopping = true;
	pthread_cond_broadcast(&net->cv);
	pthread_mutex_unlock(&net->mu);
}

static bool stopping(struct hw_chat_net *net)
{
	bool s;

	pthread_mutex_lock(&net->mu);
	s = net->stopping;
	pthread_mutex_unlock(&net->mu);
	return s;
}

/* --- receiving --------------------------------------------------------- */

/* Checks one line (without its '\n') and stores its message. Returns NULL
 * or why the line breaks the protocol (in why). */
static const char *take_line(struct hw_chat_net *net, struct chat_loop *l,
			     const char *line, size_t n, char *why,
			     size_t whylen)
{
	char err[NET_ERR_MAX];
	json_t *root;
	const char *text;
	int64_t id;

	if (hw_chat_line_parse(line, n, &root, &text, why, whylen))
		return why;
	if (text && hw_chat_store_add(net->st, l->pk, "in", text,
				      hw_chat_now_ms(), &id, err, sizeof(err)))
		hw_chat_log("peer %s: message not stored: %s", l->pk, err);
	json_decref(root);
	return NULL;
}

static bool has_quota(struct chat_loop *l, int64_t now)
{
	if (now - l->win_start >= NET_RATE_WINDOW_MS) {
		l->win_start = now;
		l->win_count = 0;
	}
	return l->win_count < NET_RATE_MAX;
}

/* Stores the complete lines in l's buffer while the rate allows. Returns
 * NULL or the protocol violation. */
static const char *take_lines(struct hw_chat_net *net, struct chat_loop *l,
			      int64_t now, char *why, size_t whylen)
{
	size_t off = 0;
	const char *bad = NULL;
	char *nl;

	while (off < l->len && has_quota(l, now)) {
		nl = memchr(l->buf + off, '\n', l->len - off);
		if (!nl)
			break;
		l->win_count++;
		bad = take_line(net, l, l->buf + off,
				(size_t)(nl - (l->buf + off)), why, whylen);
		off = (size_t)(nl - l->buf) + 1;
		if (bad)
			break;
	}
	if (off) {
		memmove(l->buf, l->buf + off, l->len - off);
		l->len -= off;
	}
	if (!bad && l->len == HW_CHAT_LINE_MAX &&
	    !memchr(l->buf, '\n', l->len)) {
		snprintf(why, whylen, "line longer than %d bytes",
			 HW_CHAT_LINE_MAX);
		bad = why;
	}
	return bad;
}

/* Reads what the loop has (non-blocking). Returns NULL or why the loop is
 * done with ("closed by the peer" is normal). */
static const char *read_loop(struct chat_loop *l, char *why, size_t whylen)
{
	ssize_t n;

	if (l->len == HW_CHAT_LINE_MAX)
		return NULL; /* lines wait for quota; take_lines checks */
	n = read(l->fd, l->buf + l->len, HW_CHAT_LINE_MAX - l->len);
	if (n > 0) {
		l->len += (size_t)n;
		return NULL;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return NULL;
	l->eof = true;
	if (n < 0) {
		snprintf(why, whylen, "read: %s", strerror(errno));
		return why;
	}
	return NULL;
}

/* Whether l has a complete line and the rate lets it be taken now. */
static bool line_ready(struct chat_loop *l, int64_t now)
{
	return has_quota(l, now) && memchr(l->buf, '\n', l->len);
}

static void on_loop_event(struct hw_chat_net *net, struct chat_loop *l,
			  short revents, int64_t now)
{
	char why[NET_ERR_MAX];
	const char *bad = NULL;
	bool dead;

	pthread_mutex_lock(&net->mu);
	dead = l->dead; /* a sender saw it fail */
	pthread_mutex_unlock(&net->mu);
	if (dead)
		return;
	if (!l->eof && (revents & (POLLIN | POLLHUP | POLLERR)))
		bad = read_loop(l, why, sizeof(why));
	if (!bad)
		bad = take_lines(net, l, now, why, sizeof(why));
	if (bad) {
		hw_chat_log("peer %s: closing loop (%s port %u): %s", l->pk,
			    l->dialed ? "dialed," : "accepted, from",
			    l->remote_port, bad);
		loop_kill(net, l);
	} else if (l->eof && !memchr(l->buf, '\n', l->len)) {
		if (l->len)
			hw_chat_log("peer %s: loop closed in the middle of a "
				    "line (%zu bytes dropped)", l->pk, l->len);
		loop_kill(net, l);
	}
}

/* Adds an accepted loop, within the limits. */
static void add_accepted(struct hw_chat_net *net, struct hw_app_loop *hl)
{
	struct chat_loop *l = NULL, *it, *oldest = NULL;
	unsigned same = 0;
	bool full, last = false;
	int fl;

	fl = fcntl(hl->fd, F_GETFL);
	if (fl < 0 || fcntl(hl->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		hw_chat_log("peer %s: loop: %s", hl->remote_pk,
			    strerror(errno));
		close(hl->fd);
		return;
	}
	l = loop_new(hl, false);
	if (!l) {
		hw_chat_log("peer %s: out of memory: loop closed",
			    hl->remote_pk);
		close(hl->fd);
		return;
	}
	pthread_mutex_lock(&net->mu);
	for (it = net->loops; it; it = it->next) {
		if (!it->dialed && !strcmp(it->pk, l->pk)) {
			same++;
			oldest = it; /* the list is newest first */
		}
	}
	if (same >= NET_MAX_ACCEPTED_PER_PEER) {
		unlink_locked(net, oldest);
		last = --oldest->refs == 0;
	}
	full = net->nloops >= NET_MAX_LOOPS;
	if (!full) {
		l->refs = 1;
		l->next = net->loops;
		net->loops = l;
		net->nloops++;
	}
	pthread_mutex_unlock(&net->mu);
	if (same >= NET_MAX_ACCEPTED_PER_PEER)
		hw_chat_log("peer %s: more than %d loops open: closed its "
			    "oldest", l->pk, NET_MAX_ACCEPTED_PER_PEER);
	if (last)
		loop_free(oldest);
	if (full) {
		hw_chat_log("peer %s: %d loops open: refused a new one",
			    l->pk, NET_MAX_LOOPS);
		loop_free(l);
	}
}

/* Accepts what the channel has. Returns 0, or HW_CHAT_RUN_CLOSED / a
 * negative errno when the channel is gone. */
static int accept_loops(struct hw_chat_net *net)
{
	struct hw_app_loop hl;
	int i, rc;

	for (i = 0; i < NET_ACCEPT_BATCH; i++) {
		rc = hw_app_accept(net->app, &hl, 0);
		if (rc == -EAGAIN || rc == -EINTR)
			return 0;
		if (rc == -EPIPE)
			return HW_CHAT_RUN_CLOSED;
		if (rc < 0)
			return rc;
		add_accepted(net, &hl);
	}
	return 0;
}

static void drain(int fd)
{
	char b[64];

	while (read(fd, b, sizeof(b)) > 0)
		;
}

int hw_chat_net_run(struct hw_chat_net *net, int stop_fd)
{
	struct chat_loop *l;
	int64_t now;
	size_t n, i;
	int timeout, rc = 0;

	for (;;) {
		now = hw_chat_mono_ms();
		timeout = -1;
		net->pfd[0] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
		net->pfd[1] = (struct pollfd){.fd = net->wake[0],
					      .events = POLLIN};
		net->pfd[2] = (struct pollfd){.fd = hw_app_fd(net->app),
					      .events = POLLIN};
		n = 0;
		pthread_mutex_lock(&net->mu);
		for (l = net->loops; l && n < NET_MAX_LOOPS; l = l->next) {
			struct pollfd *p = &net->pfd[3 + n];

			l->refs++;
			net->polled[n++] = l;
			*p = (struct pollfd){.fd = l->fd, .events = POLLIN};
			if (line_ready(l, now) ||
			    (l->eof && !memchr(l->buf, '\n', l->len))) {
				timeout = 0;
			} else if (!has_quota(l, now)) {
				/* Throttled: not polled until its window
				 * ends (a hang-up would wake poll at once,
				 * again and again). */
				int64_t wait = l->win_start +
					       NET_RATE_WINDOW_MS - now;

				p->fd = -1;
				if (timeout < 0 || wait < timeout)
					timeout = (int)(wait > 0 ? wait : 0);
			}
			if (l->eof)
				p->fd = -1;
		}
		pthread_mutex_unlock(&net->mu);

		if (timeout < 0 || timeout > NET_IDLE_MS)
			timeout = NET_IDLE_MS;
		if (poll(net->pfd, 3 + n, timeout) < 0 && errno != EINTR) {
			rc = -errno;
			hw_chat_log("poll: %s", strerror(errno));
		}
		now = hw_chat_mono_ms();
		for (i = 0; i < n && rc >= 0; i++)
			on_loop_event(net, net->polled[i],
				      net->pfd[3 + i].revents, now);
		for (i = 0; i < n; i++)
			loop_unref(net, net->polled[i]);
		if (rc < 0)
			return rc;
		if (net->pfd[0].revents)
			return HW_CHAT_RUN_STOPPED;
		if (net->pfd[1].revents)
			drain(net->wake[0]);
		/* Every turn, not only when the channel is readable: a
		 * sender's hw_app_dial may have read the channel and queued
		 * a loop for accept (it wakes us afterwards), leaving
		 * nothing to read. */
		if ((rc = accept_loops(net)))
			return rc;
	}
}

/* --- sending ----------------------------------------------------------- */

/* Whether the far end of l is gone already (end of file or error
 * pending): writing there would vanish into a closed loop. */
static bool hung_up(struct chat_loop *l)
{
	struct pollfd p = {.fd = l->fd, .events = POLLRDHUP};

	if (poll(&p, 1, 0) < 0)
		return false;
	return p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL);
}

/* Writes all of buf within NET_WRITE_TIMEOUT_MS. */
static int write_all(struct hw_chat_net *net, struct chat_loop *l,
		     const char *buf, size_t len)
{
	int64_t deadline = hw_chat_mono_ms() + NET_WRITE_TIMEOUT_MS;
	struct pollfd p = {.fd = l->fd, .events = POLLOUT};
	ssize_t n;

	while (len) {
		n = send(l->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		for (;;) {
			int64_t left = deadline - hw_chat_mono_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			if (stopping(net))
				return -ESHUTDOWN;
			n = poll(&p, 1, left < NET_WRITE_SLICE_MS ?
					    (int)left : NET_WRITE_SLICE_MS);
			if (n > 0)
				break;
			if (n < 0 && errno != EINTR)
				return -errno;
		}
	}
	return 0;
}

/* Dials pk and puts the loop on the list; *out holds a reference for the
 * caller. */
static int dial(struct hw_chat_net *net, const char *pk,
		struct chat_loop **out, char *err, size_t errlen)
{
	struct hw_app_loop hl;
	struct chat_loop *l;
	bool full;
	int rc, fl;

	rc = hw_app_dial(net->app, pk, HW_CHAT_PORT, &hl,
			 NET_DIAL_TIMEOUT_MS);
	/* While dialing, this thread may have read loops of other apps
	 * off the channel into the SDK's accept queue. */
	wake_main(net);
	if (rc == -ECONNREFUSED) {
		const char *why = hw_app_last_error(net->app);

		/* The visor's reason often names the key already. */
		if (!*why) /* another thread's request reset it */
			snprintf(err, errlen, "cannot reach %s: the visor "
				 "refused the loop", pk);
		else if (strstr(why, pk))
			snprintf(err, errlen, "%s", why);
		else
			snprintf(err, errlen, "cannot reach %s: %s", pk, why);
		return -EHOSTUNREACH;
	}
	if (rc == -ETIMEDOUT) {
		snprintf(err, errlen, "cannot reach %s: no answer within "
			 "%d s", pk, NET_DIAL_TIMEOUT_MS / 1000);
		return -EHOSTUNREACH;
	}
	if (rc == -EPIPE) {
		snprintf(err, errlen, "cannot reach %s: the visor closed "
			 "the app channel", pk);
		return -EHOSTUNREACH;
	}
	if (rc < 0) {
		snprintf(err, errlen, "cannot reach %s: %s", pk,
			 strerror(-rc));
		return -EHOSTUNREACH;
	}
	fl = fcntl(hl.fd, F_GETFL);
	if (fl < 0 || fcntl(hl.fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		rc = -errno;
		snprintf(err, errlen, "loop to %s: %s", pk, strerror(-rc));
		close(hl.fd);
		return rc;
	}
	l = loop_new(&hl, true);
	if (!l) {
		snprintf(err, errlen, "out of memory");
		close(hl.fd);
		return -ENOMEM;
	}
	/* The visor answers for the key we asked; keep that one. */
	snprintf(l->pk, sizeof(l->pk), "%s", pk);
	pthread_mutex_lock(&net->mu);
	full = net->nloops >= NET_MAX_LOOPS;
	if (!full) {
		l->refs = 2;
		l->next = net->loops;
		net->loops = l;
		net->nloops++;
	}
	pthread_mutex_unlock(&net->mu);
	if (full) {
		snprintf(err, errlen, "%d loops are open: no room for one "
			 "more", NET_MAX_LOOPS);
		loop_free(l);
		return -EMFILE;
	}
	wake_main(net); /* to poll the new loop */
	*out = l;
	return 0;
}

/* The open loop this app dialed to pk, with a reference, or NULL. */
static struct chat_loop *find_dialed(struct hw_chat_net *net, const char *pk)
{
	struct chat_loop *l;

	pthread_mutex_lock(&net->mu);
	for (l = net->loops; l; l = l->next)
		if (l->dialed && !strcmp(l->pk, pk))
			break;
	if (l)
		l->refs++;
	pthread_mutex_unlock(&net->mu);
	return l;
}

static bool sending_locked(struct hw_chat_net *net, const char *pk)
{
	struct chat_sending *s;

	for (s = net->sending; s; s = s->next)
		if (!strcmp(s->pk, pk))
			return true;
	return false;
}

/* Writes line to pk: on the loop there is, else a new one; once more on
 * a new loop when that fails. */
static int deliver(struct hw_chat_net *net, const char *pk, const char *line,
		   size_t len, char *err, size_t errlen)
{
	struct chat_loop *l;
	int attempt, rc = 0;

	for (attempt = 0; attempt < 2; attempt++) {
		l = attempt == 0 ? find_dialed(net, pk) : NULL;
		if (l && hung_up(l)) {
			loop_kill(net, l);
			loop_unref(net, l);
			l = NULL;
		}
		if (!l && (rc = dial(net, pk, &l, err, errlen)))
			return rc;
		rc = write_all(net, l, line, len);
		if (rc == 0) {
			loop_unref(net, l);
			return 0;
		}
		if (rc == -ESHUTDOWN) {
			snprintf(err, errlen, "hopwire-chat is stopping");
		} else {
			snprintf(err, errlen, "writing to %s failed: %s", pk,
				 strerror(-rc));
			hw_chat_log("peer %s: %s%s", pk, err,
				    attempt ? "" : "; dialing again");
			rc = -EHOSTUNREACH;
		}
		loop_kill(net, l);
		loop_unref(net, l);
		if (stopping(net))
			break;
	}
	return rc;
}

int hw_chat_net_send(struct hw_chat_net *net, const char *pk,
		     const char *text, int64_t *id, char *err, size_t errlen)
{
	struct chat_sending me = {0}, **pp;
	json_t *o = NULL;
	char *line = NULL, *grown;
	size_t len;
	int rc;

	if (!hw_chat_pk_ok(pk, me.pk) || !text || !*text ||
	    strlen(text) > HW_CHAT_TEXT_MAX) {
		snprintf(err, errlen, "invalid recipient or message");
		return -EINVAL;
	}
	o = json_pack("{s:s}", "message", text);
	line = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!line) {
		snprintf(err, errlen, "message is not UTF-8, or out of "
			 "memory");
		return -EINVAL;
	}
	len = strlen(line);
	grown = realloc(line, len + 2);
	if (!grown) {
		free(line);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	line = grown;
	line[len++] = '\n';
	line[len] = '\0';

	pthread_mutex_lock(&net->mu);
	while (!net->stopping && sending_locked(net, me.pk))
		pthread_cond_wait(&net->cv, &net->mu);
	if (net->stopping) {
		pthread_mutex_unlock(&net->mu);
		snprintf(err, errlen, "hopwire-chat is stopping");
		free(line);
		return -ESHUTDOWN;
	}
	me.next = net->sending;
	net->sending = &me;
	pthread_mutex_unlock(&net->mu);

	rc = deliver(net, me.pk, line, len, err, errlen);
	if (rc == 0 && hw_chat_store_add(net->st, me.pk, "out", text,
					 hw_chat_now_ms(), id, err, errlen))
		rc = -EIO;

	pthread_mutex_lock(&net->mu);
	for (pp = &net->sending; *pp; pp = &(*pp)->next) {
		if (*pp == &me) {
			*pp = me.next;
			break;
		}
	}
	pthread_cond_broadcast(&net->cv);
	pthread_mutex_unlock(&net->mu);
	free(line);
	return rc;
}
