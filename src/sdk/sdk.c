/* libhopwire-app: the SDK side of the app protocol (docs/app-protocol.md).
 *
 * Threads: app->mu guards the shared state (requests in flight, the
 * accept queue, the broken flag); app->wmu serialises whole frames onto
 * the channel. Whichever waiting thread finds nobody reading becomes the
 * reader: it polls and reads the channel with mu released, dispatches what
 * arrives, and wakes the others through app->cv. The receive buffer and
 * the descriptor FIFO belong to the reader of the moment. Lock order: wmu
 * before mu before reg_mu (the loop registry's, taken last and never
 * held across anything else); mu is never held across I/O on the
 * channel.
 *
 * The loop registry: every loop descriptor the SDK took from the visor,
 * process-wide (hw_app_read knows a descriptor only), with how its loop
 * ended once the visor's Close said so. */
#include "hopwire/app.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sdk/proto.h"

#define SDK_ACCEPT_MAX 128 /* loops waiting for hw_app_accept */
/* Descriptors received ahead of their frames. One frame carries one and
 * it arrives with the frame's first byte, so a few is already generous. */
#define SDK_FDQ_MAX 16
#define SDK_RBUF (HW_APP_FRAME_MAX + 4096)
#define SDK_SETUP_TIMEOUT_MS 5000
#define SDK_DIAL_TIMEOUT_MS 10000
/* How long an answer to the visor may wait for room on the channel. */
#define SDK_ANSWER_TIMEOUT_MS 10000

enum pend_state { PEND_FREE, PEND_WAIT, PEND_DONE, PEND_ABANDONED };

/* One of this side's requests, indexed by message ID. */
struct pend {
	uint8_t state;
	uint8_t type; /* HW_APP_INIT or HW_APP_CREATE_LOOP */
	int rc;       /* 0, -ECONNREFUSED, -EPERM, -EPROTONOSUPPORT */
	struct hw_app_loop loop;
	char err[HW_APP_ERROR_MAX];
};

struct hw_app {
	int fd;
	/* hw_app_fd: an epoll set of the channel and wake, so it is readable
	 * both when frames arrive and when another thread's read queued a
	 * loop for accept. wake is readable while the queue is not empty. */
	int epfd, wake;
	pthread_mutex_t mu;
	pthread_mutex_t wmu;
	pthread_cond_t cv;
	int reading;
	int broken; /* 0, or what every call returns from now on */
	char why[HW_APP_ERROR_MAX];
	int ready; /* Init answered with loop-fd */
	uint16_t port;
	char local_pk[HW_APP_PK_HEX + 1];
	uint8_t next_id;
	struct pend pend[256];
	struct hw_app_loop acq[SDK_ACCEPT_MAX];
	size_t acq_head, acq_n;
	/* The reader's. */
	int fdq[SDK_FDQ_MAX];
	size_t fdq_head, fdq_n;
	size_t rlen;
	uint8_t rbuf[SDK_RBUF];
};

/* How long hw_app_read waits for another thread that is reading the
 * channel to take a loop's Close off it (it is there already: the visor
 * sends it before the loop can read end of file). */
#define SDK_CLOSE_WAIT_MS 1000

/* Each thread sees the reason for its own last refused request, and the
 * reason of the last failed loop it asked about. */
static __thread char thread_error[HW_APP_ERROR_MAX];
static __thread char thread_loop_error[HW_APP_ERROR_MAX];

enum loop_end { LOOP_OPEN, LOOP_CLOSED, LOOP_FAILED };

/* A loop descriptor the SDK took from the visor. */
struct reg {
	int fd;
	dev_t dev; /* the socket's identity: a descriptor number closed */
	ino_t ino; /* with close(2) and reused is not this loop */
	struct hw_app *app;
	struct hw_app_loop_addr addr;
	enum loop_end end;
	char error[HW_APP_ERROR_MAX];
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct reg *regs;
static size_t nregs, regcap;

static void fmt(char *dst, size_t cap, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

static void fmt(char *dst, size_t cap, const char *f, ...)
{
	va_list ap;

	if (!dst || !cap)
		return;
	va_start(ap, f);
	vsnprintf(dst, cap, f, ap);
	va_end(ap);
}

/* --- the loop registry --- */

static void reg_drop_locked(size_t i)
{
	regs[i] = regs[--nregs];
	if (nregs == 0) {
		free(regs);
		regs = NULL;
		regcap = 0;
	}
}

static ssize_t reg_find_locked(int fd)
{
	for (size_t i = 0; i < nregs; i++)
		if (regs[i].fd == fd)
			return (ssize_t)i;
	return -1;
}

/* Records loop fd of app. Returns 0 or -ENOMEM. */
static int reg_add(struct hw_app *app, int fd, const struct hw_app_addr *local,
		   const struct hw_app_addr *remote)
{
	struct stat st;
	struct reg *r;
	ssize_t i;
	int rc = 0;

	if (fstat(fd, &st))
		return -errno;
	pthread_mutex_lock(&reg_mu);
	/* The number was closed with close(2): that loop is gone. */
	if ((i = reg_find_locked(fd)) >= 0)
		reg_drop_locked((size_t)i);
	if (nregs == regcap) {
		size_t cap = regcap ? 2 * regcap : 16;
		if (!(r = realloc(regs, cap * sizeof(*r)))) {
			rc = -ENOMEM;
			goto out;
		}
		regs = r;
		regcap = cap;
	}
	r = &regs[nregs++];
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	r->app = app;
	r->addr.port = local->port;
	r->addr.remote = *remote;
out:
	pthread_mutex_unlock(&reg_mu);
	return rc;
}

static void reg_remove(int fd)
{
	ssize_t i;

	pthread_mutex_lock(&reg_mu);
	if ((i = reg_find_locked(fd)) >= 0)
		reg_drop_locked((size_t)i);
	pthread_mutex_unlock(&reg_mu);
}

static void reg_remove_app(struct hw_app *app)
{
	pthread_mutex_lock(&reg_mu);
	for (size_t i = nregs; i-- > 0;)
		if (regs[i].app == app)
			reg_drop_locked(i);
	pthread_mutex_unlock(&reg_mu);
}

/* The visor's Close for loop la of app: how it ended. */
static void reg_closed(struct hw_app *app, const struct hw_app_loop_addr *la,
		       int failed, const char *error)
{
	pthread_mutex_lock(&reg_mu);
	for (size_t i = 0; i < nregs; i++) {
		struct reg *r = &regs[i];
		if (r->app != app || r->end != LOOP_OPEN ||
		    r->addr.port != la->port ||
		    r->addr.remote.port != la->remote.port ||
		    memcmp(r->addr.remote.pk, la->remote.pk, HW_APP_PK_LEN))
			continue;
		r->end = failed ? LOOP_FAILED : LOOP_CLOSED;
		fmt(r->error, sizeof(r->error), "%s", failed ? error : "");
		break;
	}
	pthread_mutex_unlock(&reg_mu);
}

/* How fd's loop ended as far as the SDK knows; its app in *app (NULL:
 * not a loop of the SDK's). With LOOP_FAILED the reason is copied into
 * why. */
static enum loop_end reg_state(int fd, struct hw_app **app, char *why,
			       size_t cap)
{
	enum loop_end end = LOOP_OPEN;
	struct stat st;
	ssize_t i;
	int known = fstat(fd, &st) == 0;

	*app = NULL;
	pthread_mutex_lock(&reg_mu);
	if ((i = reg_find_locked(fd)) >= 0) {
		struct reg *r = &regs[i];
		if (!known || r->dev != st.st_dev || r->ino != st.st_ino) {
			reg_drop_locked((size_t)i); /* stale: see reg_add */
		} else {
			*app = r->app;
			end = r->end;
			if (end == LOOP_FAILED)
				fmt(why, cap, "%s", r->error);
		}
	}
	pthread_mutex_unlock(&reg_mu);
	return end;
}

/* The channel is gone before the visor said how fd's loop ended: that is
 * a failure too. */
static void reg_orphaned(int fd, const char *why)
{
	ssize_t i;

	pthread_mutex_lock(&reg_mu);
	if ((i = reg_find_locked(fd)) >= 0 && regs[i].end == LOOP_OPEN) {
		regs[i].end = LOOP_FAILED;
		fmt(regs[i].error, sizeof(regs[i].error), "%s", why);
	}
	pthread_mutex_unlock(&reg_mu);
}

/* --- time --- */

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Milliseconds left until deadline (rounded up), 0 when passed, -1 when
 * there is no deadline. */
static int remaining_ms(const struct timespec *deadline)
{
	struct timespec now;
	long long ns;

	if (!deadline)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (long long)(deadline->tv_sec - now.tv_sec) * 1000000000LL +
	     (deadline->tv_nsec - now.tv_nsec);
	if (ns <= 0)
		return 0;
	if (ns / 1000000LL >= INT_MAX)
		return INT_MAX;
	return (int)((ns + 999999LL) / 1000000LL);
}

/* --- channel state --- */

static void set_broken_locked(struct hw_app *app, int rc, const char *why)
{
	if (!app->broken) {
		app->broken = rc;
		fmt(app->why, sizeof(app->why), "%s", why);
		/* The visor sees the app gone and closes its loops; pollers
		 * of hw_app_fd wake up. */
		shutdown(app->fd, SHUT_RDWR);
	}
	pthread_cond_broadcast(&app->cv);
}

static void set_broken(struct hw_app *app, int rc, const char *why)
{
	pthread_mutex_lock(&app->mu);
	set_broken_locked(app, rc, why);
	pthread_mutex_unlock(&app->mu);
}

/* Writes a whole frame, waiting for room until deadline (NULL: no limit).
 * Returns 0; -ETIMEDOUT when nothing was written (the channel is intact);
 * otherwise the channel is broken and its error returned. */
static int write_frame(struct hw_app *app, const uint8_t *buf, size_t len,
		       const struct timespec *deadline)
{
	struct pollfd p = {.fd = app->fd, .events = POLLOUT};
	size_t off = 0;
	ssize_t n;
	int rc = 0, ms;

	pthread_mutex_lock(&app->wmu);
	while (off < len) {
		n = send(app->fd, buf + off, len - off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if ((ms = remaining_ms(deadline)) == 0) {
				rc = -ETIMEDOUT;
				if (off) /* half a frame: no way back */
					set_broken(app, -EPIPE,
						   "writing to the visor timed "
						   "out inside a frame");
				break;
			}
			if (poll(&p, 1, ms) < 0 && errno != EINTR) {
				rc = -EPIPE;
				set_broken(app, rc, "poll on the channel failed");
				break;
			}
			continue;
		}
		rc = -EPIPE;
		set_broken(app, rc, "the visor closed the channel");
		break;
	}
	pthread_mutex_unlock(&app->wmu);
	return rc;
}

/* An answer to one of the visor's requests. */
static int answer(struct hw_app *app, uint8_t id, const char *failure)
{
	struct timespec deadline;
	uint8_t hdr[HW_APP_HDR], *frame = NULL;
	size_t len;
	json_t *body;
	int rc;

	deadline_in(&deadline, SDK_ANSWER_TIMEOUT_MS);
	if (!failure) {
		hw_app_frame_header(hdr, HW_APP_SUCCESS, id, 0);
		rc = write_frame(app, hdr, sizeof(hdr), &deadline);
	} else {
		if (!(body = hw_app_error_json(failure)))
			return -ENOMEM;
		rc = hw_app_frame_json(HW_APP_FAILURE, id, body, &frame, &len);
		json_decref(body);
		if (rc == 0)
			rc = write_frame(app, frame, len, &deadline);
		free(frame);
	}
	if (rc == -ETIMEDOUT) {
		/* The visor's request stays unanswered for good. */
		set_broken(app, -EPIPE, "the visor stopped reading");
		rc = -EPIPE;
	}
	return rc;
}

/* --- reading and dispatching --- */

static int fdq_pop(struct hw_app *app)
{
	int fd;

	if (!app->fdq_n)
		return -1;
	fd = app->fdq[app->fdq_head];
	app->fdq_head = (app->fdq_head + 1) % SDK_FDQ_MAX;
	app->fdq_n--;
	return fd;
}

/* The Success body of Init: {"port", "pk", "extensions"}. Fills p. Returns
 * 0 or -EPROTO with why. */
static int init_answer(struct hw_app *app, struct pend *p,
		       const struct hw_app_frame *f, char *why, size_t wlen)
{
	static const char what[] = "the visor's answer to Init";
	json_t *root = NULL, *v, *e;
	uint8_t pk[HW_APP_PK_LEN];
	unsigned loop_fd = 0;
	json_int_t port;
	size_t i;
	int rc = -EPROTO;

	if (f->type == HW_APP_FAILURE) {
		p->rc = -EPERM;
		hw_app_parse_error(f->body, f->len, p->err, sizeof(p->err));
		return 0;
	}
	if (f->len &&
	    !(root = json_loadb((const char *)f->body, f->len,
				JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
				NULL))) {
		fmt(why, wlen, "%s: not JSON", what);
		goto out;
	}
	if (root && !json_is_object(root) && !json_is_null(root)) {
		fmt(why, wlen, "%s: must be a JSON object", what);
		goto out;
	}
	if ((v = json_object_get(root, "extensions"))) {
		if (!json_is_array(v) && !json_is_null(v)) {
			fmt(why, wlen, "%s: extensions: must be a list", what);
			goto out;
		}
		json_array_foreach(v, i, e) {
			if (!json_is_string(e)) {
				fmt(why, wlen,
				    "%s: extensions[%zu]: must be a string",
				    what, i);
				goto out;
			}
			if (!strcmp(json_string_value(e), "loop-fd"))
				loop_fd = 1;
		}
	}
	if (!loop_fd) {
		p->rc = -EPROTONOSUPPORT;
		fmt(p->err, sizeof(p->err), "the visor does not offer loop-fd");
		rc = 0;
		goto out;
	}
	v = json_object_get(root, "port");
	if (!json_is_integer(v) || (port = json_integer_value(v)) < 0 ||
	    port > 65535) {
		fmt(why, wlen, "%s: port: must be a whole number 0..65535",
		    what);
		goto out;
	}
	v = json_object_get(root, "pk");
	if (!json_is_string(v) || json_string_length(v) != HW_APP_PK_HEX ||
	    hw_app_pk_parse(json_string_value(v), pk)) {
		fmt(why, wlen, "%s: pk: must be 64 hex characters", what);
		goto out;
	}
	app->port = (uint16_t)port;
	hw_app_pk_hex(pk, app->local_pk);
	app->ready = 1;
	p->rc = 0;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* A response (Success/Failure) from the visor. */
static int on_response(struct hw_app *app, const struct hw_app_frame *f,
		       char *why, size_t wlen)
{
	struct hw_app_addr local;
	struct pend *p;
	int rc = 0, fd;

	pthread_mutex_lock(&app->mu);
	p = &app->pend[f->id];
	if (p->state != PEND_WAIT && p->state != PEND_ABANDONED)
		goto out; /* answers nothing of ours: ignored */
	if (p->type == HW_APP_INIT) {
		if ((rc = init_answer(app, p, f, why, wlen)) == 0)
			p->state = PEND_DONE;
		goto out;
	}
	if (f->type == HW_APP_FAILURE) {
		p->rc = -ECONNREFUSED;
		hw_app_parse_error(f->body, f->len, p->err, sizeof(p->err));
	} else {
		if (hw_app_parse_addr(f->body, f->len, &local, why, wlen)) {
			rc = -EPROTO;
			goto out;
		}
		if ((fd = fdq_pop(app)) < 0) {
			fmt(why, wlen,
			    "the visor's answer to CreateLoop came without "
			    "a descriptor");
			rc = -EPROTO;
			goto out;
		}
		if (p->state == PEND_ABANDONED) {
			close(fd); /* the dialer gave up: the loop closes */
		} else {
			struct hw_app_addr remote = {
				.port = p->loop.remote_port};
			p->rc = 0;
			p->loop.fd = fd;
			hw_app_pk_hex(local.pk, p->loop.local_pk);
			p->loop.local_port = local.port;
			hw_app_pk_parse(p->loop.remote_pk, remote.pk);
			/* Out of memory here costs only the reason of a
			 * failure: the loop then reads end of file. */
			(void)reg_add(app, fd, &local, &remote);
		}
	}
	p->state = p->state == PEND_ABANDONED ? PEND_FREE : PEND_DONE;
out:
	pthread_cond_broadcast(&app->cv);
	pthread_mutex_unlock(&app->mu);
	return rc;
}

static int on_confirm(struct hw_app *app, const struct hw_app_frame *f,
		      char *why, size_t wlen)
{
	struct hw_app_addr local, remote;
	struct hw_app_loop *l;
	int full, fd, rc;

	if (hw_app_parse_confirm(f->body, f->len, &local, &remote, why, wlen))
		return -EPROTO;
	if ((fd = fdq_pop(app)) < 0) {
		fmt(why, wlen, "the visor's ConfirmLoop came without a "
			       "descriptor");
		return -EPROTO;
	}
	pthread_mutex_lock(&app->mu);
	full = app->acq_n >= SDK_ACCEPT_MAX;
	pthread_mutex_unlock(&app->mu);
	if (full) {
		close(fd);
		return answer(app, f->id, "app is not accepting");
	}
	if ((rc = answer(app, f->id, NULL))) {
		close(fd);
		return rc;
	}
	/* Only the reader adds to the queue, so there is still room. */
	pthread_mutex_lock(&app->mu);
	l = &app->acq[(app->acq_head + app->acq_n) % SDK_ACCEPT_MAX];
	l->fd = fd;
	hw_app_pk_hex(local.pk, l->local_pk);
	l->local_port = local.port;
	hw_app_pk_hex(remote.pk, l->remote_pk);
	l->remote_port = remote.port;
	(void)reg_add(app, fd, &local, &remote); /* as in on_response */
	if (app->acq_n++ == 0)
		(void)!eventfd_write(app->wake, 1);
	pthread_cond_broadcast(&app->cv);
	pthread_mutex_unlock(&app->mu);
	return 0;
}

/* One frame from the visor. Returns 0, or a negative value with why when
 * the channel must end. */
static int dispatch(struct hw_app *app, const struct hw_app_frame *f,
		    char *why, size_t wlen)
{
	struct hw_app_loop_addr la;
	char text[HW_APP_ERROR_MAX];
	const char *name = hw_app_type_name(f->type);

	if (f->type == HW_APP_SUCCESS || f->type == HW_APP_FAILURE)
		return on_response(app, f, why, wlen);
	if (!app->ready) {
		fmt(why, wlen, "the visor sent %s before answering Init",
		    name ? name : "an unknown frame");
		return -EPROTO;
	}
	switch (f->type) {
	case HW_APP_CONFIRM_LOOP:
		return on_confirm(app, f, why, wlen);
	case HW_APP_CLOSE: {
		/* The visor sends it before the loop's descriptor can read
		 * end of file: hw_app_read finds the outcome recorded. */
		int failed;

		if (hw_app_parse_close(f->body, f->len, &la, &failed, text,
				       sizeof(text), why, wlen))
			return -EPROTO;
		reg_closed(app, &la, failed, text);
		return answer(app, f->id, NULL);
	}
	case HW_APP_SEND:
		return answer(app, f->id,
			      "loop data goes through its descriptor "
			      "(loop-fd)");
	case HW_APP_INIT:
	case HW_APP_CREATE_LOOP:
		fmt(text, sizeof(text), "%s is sent by apps, not by visors",
		    name);
		return answer(app, f->id, text);
	default:
		fmt(text, sizeof(text), "unknown frame type 0x%02x", f->type);
		return answer(app, f->id, text);
	}
}

/* Takes the descriptors of msg into the FIFO. Returns 0 or -EPROTO. */
static int take_fds(struct hw_app *app, struct msghdr *msg, char *why,
		    size_t wlen)
{
	struct cmsghdr *c;
	int rc = 0, fd, fl;

	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t k;
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (app->fdq_n == SDK_FDQ_MAX) {
				close(fd);
				rc = -EPROTO;
				continue;
			}
			/* Handed out blocking, whatever the visor set. */
			if ((fl = fcntl(fd, F_GETFL)) >= 0 && (fl & O_NONBLOCK))
				fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
			app->fdq[(app->fdq_head + app->fdq_n) % SDK_FDQ_MAX] =
				fd;
			app->fdq_n++;
		}
	}
	if (rc)
		fmt(why, wlen, "the visor sent descriptors without frames");
	if (msg->msg_flags & MSG_CTRUNC) {
		fmt(why, wlen, "the visor sent more descriptors than a frame "
			       "carries");
		rc = -EPROTO;
	}
	return rc;
}

/* One poll (up to ms; -1: no limit) and read of the channel, and the
 * frames it completes. Called as the reader, mu released. Returns 1 when
 * something was read, 0 when nothing was, or the channel's error (the
 * channel is then broken). */
static int read_pass(struct hw_app *app, int ms)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * SDK_FDQ_MAX)];
	} cbuf;
	struct pollfd p = {.fd = app->fd, .events = POLLIN};
	struct msghdr msg;
	struct iovec iov;
	struct hw_app_frame f;
	char why[HW_APP_ERROR_MAX] = "";
	size_t off = 0, used;
	ssize_t n;
	int rc;

	rc = poll(&p, 1, ms);
	if (rc < 0 && errno != EINTR) {
		set_broken(app, -EPIPE, "poll on the channel failed");
		return -EPIPE;
	}
	if (rc <= 0)
		return 0;
	iov.iov_base = app->rbuf + app->rlen;
	iov.iov_len = sizeof(app->rbuf) - app->rlen;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf.buf;
	msg.msg_controllen = sizeof(cbuf.buf);
	n = recvmsg(app->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EINTR || errno == EAGAIN ||
		      errno == EWOULDBLOCK))
		return 0;
	if (n <= 0) {
		set_broken(app, -EPIPE, "the visor closed the channel");
		return -EPIPE;
	}
	if ((rc = take_fds(app, &msg, why, sizeof(why))))
		goto out;
	app->rlen += (size_t)n;
	while ((rc = hw_app_frame_next(app->rbuf + off, app->rlen - off, &f,
				       &used)) == 1) {
		if ((rc = dispatch(app, &f, why, sizeof(why))) < 0)
			goto out;
		off += used;
	}
	if (rc < 0) {
		fmt(why, sizeof(why), "the visor sent a frame length below 2");
		rc = -EPROTO;
		goto out;
	}
	memmove(app->rbuf, app->rbuf + off, app->rlen - off);
	app->rlen -= off;
	/* A descriptor comes with a byte of its own frame: once the whole
	 * frames are dispatched, only the unfinished one may own one. */
	if (app->fdq_n > (app->rlen ? 1u : 0u)) {
		fmt(why, sizeof(why),
		    "the visor sent descriptors without frames");
		rc = -EPROTO;
		goto out;
	}
	rc = 1;
out:
	if (rc < 0) {
		/* A failed write already said why. */
		set_broken(app, rc == -EPROTO ? -EPROTO : -EPIPE,
			   why[0] ? why : "the visor closed the channel");
		pthread_mutex_lock(&app->mu);
		rc = app->broken;
		pthread_mutex_unlock(&app->mu);
	}
	return rc;
}

/* Waits, reading the channel when nobody else is, until ready(app, arg),
 * the channel breaks or deadline (NULL: none) passes. Called and returns
 * with mu held. Returns 0, -ETIMEDOUT or the channel's error. */
static int wait_for(struct hw_app *app, int (*ready)(struct hw_app *, void *),
		    void *arg, const struct timespec *deadline)
{
	int ms, rc;

	for (;;) {
		if (ready(app, arg))
			return 0;
		if (app->broken)
			return app->broken;
		ms = remaining_ms(deadline);
		if (!app->reading) {
			app->reading = 1;
			pthread_mutex_unlock(&app->mu);
			rc = read_pass(app, ms);
			pthread_mutex_lock(&app->mu);
			app->reading = 0;
			pthread_cond_broadcast(&app->cv);
			if (rc == 0 && ms == 0)
				return ready(app, arg) ? 0 : -ETIMEDOUT;
			continue;
		}
		if (ms == 0)
			return -ETIMEDOUT;
		if (deadline)
			pthread_cond_timedwait(&app->cv, &app->mu, deadline);
		else
			pthread_cond_wait(&app->cv, &app->mu);
	}
}

static int pend_done(struct hw_app *app, void *arg)
{
	return ((struct pend *)arg)->state == PEND_DONE;
}

static int acq_ready(struct hw_app *app, void *arg)
{
	return app->acq_n > 0;
}

/* --- setup --- */

static int connect_path(const char *path, const char *from, char *err,
			size_t errlen)
{
	struct sockaddr_un sa;
	struct pollfd p;
	socklen_t sl = sizeof(int);
	int fd, rc, soerr = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (!path[0] || strlen(path) >= sizeof(sa.sun_path)) {
		fmt(err, errlen, "%s '%s': not a usable socket path", from,
		    path);
		return -EINVAL;
	}
	strcpy(sa.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		rc = -errno;
		fmt(err, errlen, "socket: %s", strerror(-rc));
		return rc;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	rc = -errno;
	if (rc == -EINTR || rc == -EINPROGRESS) {
		/* The connection goes on; wait for its outcome. */
		p.fd = fd;
		p.events = POLLOUT;
		while ((rc = poll(&p, 1, -1)) < 0 && errno == EINTR)
			;
		if (rc > 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
		    soerr == 0)
			return fd;
		rc = soerr ? -soerr : -ECONNREFUSED;
	}
	close(fd);
	fmt(err, errlen, "cannot reach the visor's app socket %s (%s): %s",
	    path, from, strerror(-rc));
	return rc;
}

static int inherited_fd(const char *s, char *err, size_t errlen)
{
	socklen_t sl = sizeof(int);
	char *end;
	long v;
	int type = 0;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > INT_MAX ||
	    (s[0] < '0' || s[0] > '9')) {
		fmt(err, errlen, "HOPWIRE_APP_FD '%s': not a descriptor number",
		    s);
		return -EINVAL;
	}
	if (fcntl((int)v, F_GETFD) < 0) {
		fmt(err, errlen, "HOPWIRE_APP_FD %ld: not an open descriptor",
		    v);
		return -EBADF;
	}
	if (getsockopt((int)v, SOL_SOCKET, SO_TYPE, &type, &sl) ||
	    type != SOCK_STREAM) {
		fmt(err, errlen, "HOPWIRE_APP_FD %ld: not a stream socket", v);
		return -ENOTSOCK;
	}
	/* Programs this app runs must not hold the channel open. */
	fcntl((int)v, F_SETFD, FD_CLOEXEC);
	return (int)v;
}

static int open_channel(const struct hw_app_config *cfg, char *err,
			size_t errlen)
{
	const char *s;

	if (cfg->socket_path)
		return connect_path(cfg->socket_path, "socket_path", err,
				    errlen);
	if ((s = getenv("HOPWIRE_APP_FD")) && s[0])
		return inherited_fd(s, err, errlen);
	if ((s = getenv("HOPWIRE_APP_SOCKET")) && s[0])
		return connect_path(s, "HOPWIRE_APP_SOCKET", err, errlen);
	fmt(err, errlen,
	    "HOPWIRE_APP_FD and HOPWIRE_APP_SOCKET are unset: start this app "
	    "from a visor or name the visor's app socket");
	return -ENOENT;
}

static int check_name(const char *what, const char *s, char *err,
		      size_t errlen)
{
	size_t n = strlen(s);

	if (n < 1 || n > HW_APP_NAME_MAX) {
		fmt(err, errlen, "%s must be 1..%d bytes", what,
		    HW_APP_NAME_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			fmt(err, errlen, "%s must not hold control characters",
			    what);
			return -EINVAL;
		}
	return 0;
}

static struct hw_app *app_new(void)
{
	pthread_condattr_t ca;
	struct hw_app *app = calloc(1, sizeof(*app));

	if (!app)
		return NULL;
	app->fd = -1;
	app->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	app->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (app->wake < 0 || app->epfd < 0 || pthread_condattr_init(&ca)) {
		if (app->wake >= 0)
			close(app->wake);
		if (app->epfd >= 0)
			close(app->epfd);
		free(app);
		return NULL;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&app->cv, &ca)) {
		pthread_condattr_destroy(&ca);
		free(app);
		return NULL;
	}
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&app->mu, NULL);
	pthread_mutex_init(&app->wmu, NULL);
	return app;
}

HW_APP_API int hw_app_setup(struct hw_app **out,
			    const struct hw_app_config *cfg, char *err,
			    size_t errlen)
{
	const char *version;
	struct hw_app *app = NULL;
	struct timespec deadline;
	uint8_t *frame = NULL;
	size_t len;
	json_t *body = NULL;
	int rc, ms;

	fmt(err, errlen, "%s", "");
	if (out)
		*out = NULL;
	if (!out || !cfg || !cfg->name) {
		fmt(err, errlen, "hw_app_setup needs a config with a name");
		return -EINVAL;
	}
	version = cfg->version ? cfg->version : "0.0.0";
	if ((rc = check_name("the app's name", cfg->name, err, errlen)) ||
	    (rc = check_name("the app's version", version, err, errlen)))
		return rc;
	body = json_pack("{s:s, s:s, s:s, s:[s]}", "app-name", cfg->name,
			 "app-version", version, "protocol-version",
			 HW_APP_PROTOCOL_VERSION, "extensions", "loop-fd");
	if (!body) {
		fmt(err, errlen, "the app's name and version must be UTF-8");
		return -EINVAL;
	}
	if (cfg->port &&
	    json_object_set_new(body, "port", json_integer(cfg->port))) {
		rc = -ENOMEM;
		goto fail;
	}
	if (!(app = app_new())) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = hw_app_frame_json(HW_APP_INIT, 0, body, &frame, &len)))
		goto fail;
	if ((rc = open_channel(cfg, err, errlen)) < 0)
		goto out;
	app->fd = rc;
	{
		struct epoll_event ev = {.events = EPOLLIN};
		ev.data.fd = app->fd;
		epoll_ctl(app->epfd, EPOLL_CTL_ADD, app->fd, &ev);
		ev.data.fd = app->wake;
		epoll_ctl(app->epfd, EPOLL_CTL_ADD, app->wake, &ev);
	}
	app->pend[0].state = PEND_WAIT;
	app->pend[0].type = HW_APP_INIT;
	app->next_id = 1;
	ms = cfg->timeout_ms ? cfg->timeout_ms : SDK_SETUP_TIMEOUT_MS;
	if (ms > 0)
		deadline_in(&deadline, ms);
	rc = write_frame(app, frame, len, ms > 0 ? &deadline : NULL);
	pthread_mutex_lock(&app->mu);
	if (rc == 0)
		rc = wait_for(app, pend_done, &app->pend[0],
			      ms > 0 ? &deadline : NULL);
	if (rc == 0 && (rc = app->pend[0].rc) == -EPERM) {
		fmt(thread_error, sizeof(thread_error), "%s",
		    app->pend[0].err);
		fmt(err, errlen, "visor refused: %s", app->pend[0].err);
	} else if (rc == -EPROTONOSUPPORT) {
		fmt(err, errlen, "%s", app->pend[0].err);
	} else if (rc == -ETIMEDOUT) {
		fmt(err, errlen, "the visor did not answer Init within %d ms",
		    ms);
	} else if (rc == -EPROTO) {
		fmt(err, errlen, "the visor broke the app protocol: %s",
		    app->why);
	} else if (rc) {
		fmt(err, errlen, "%s before answering Init", app->why);
	}
	app->pend[0].state = PEND_FREE;
	pthread_mutex_unlock(&app->mu);
	if (rc)
		goto out;
	*out = app;
	app = NULL;
	goto out;
fail:
	fmt(err, errlen, "%s", strerror(-rc));
out:
	free(frame);
	json_decref(body);
	hw_app_close(app);
	return rc;
}

HW_APP_API void hw_app_close(struct hw_app *app)
{
	int fd;

	if (!app)
		return;
	reg_remove_app(app);
	if (app->fd >= 0)
		close(app->fd);
	close(app->epfd);
	close(app->wake);
	while ((fd = fdq_pop(app)) >= 0)
		close(fd);
	for (size_t i = 0; i < app->acq_n; i++)
		close(app->acq[(app->acq_head + i) % SDK_ACCEPT_MAX].fd);
	for (size_t i = 0; i < 256; i++)
		if (app->pend[i].state == PEND_DONE && app->pend[i].rc == 0 &&
		    app->pend[i].type == HW_APP_CREATE_LOOP)
			close(app->pend[i].loop.fd);
	pthread_cond_destroy(&app->cv);
	pthread_mutex_destroy(&app->wmu);
	pthread_mutex_destroy(&app->mu);
	free(app);
}

HW_APP_API uint16_t hw_app_port(const struct hw_app *app)
{
	return app ? app->port : 0;
}

HW_APP_API const char *hw_app_local_pk(const struct hw_app *app)
{
	return app ? app->local_pk : "";
}

HW_APP_API int hw_app_fd(const struct hw_app *app)
{
	return app ? app->epfd : -1;
}

HW_APP_API const char *hw_app_last_error(const struct hw_app *app)
{
	return app ? thread_error : "";
}

HW_APP_API int hw_app_accept(struct hw_app *app, struct hw_app_loop *loop,
			     int timeout_ms)
{
	struct timespec deadline;
	int rc;

	if (!app || !loop)
		return -EINVAL;
	if (timeout_ms >= 0)
		deadline_in(&deadline, timeout_ms);
	pthread_mutex_lock(&app->mu);
	rc = wait_for(app, acq_ready, NULL,
		      timeout_ms >= 0 ? &deadline : NULL);
	if (rc == 0) {
		*loop = app->acq[app->acq_head];
		app->acq_head = (app->acq_head + 1) % SDK_ACCEPT_MAX;
		if (--app->acq_n == 0) {
			eventfd_t v;
			(void)eventfd_read(app->wake, &v);
		}
	} else if (rc == -ETIMEDOUT) {
		rc = -EAGAIN;
	}
	pthread_mutex_unlock(&app->mu);
	return rc;
}

HW_APP_API int hw_app_dial(struct hw_app *app, const char *pk, uint16_t port,
			   struct hw_app_loop *loop, int timeout_ms)
{
	struct hw_app_addr remote;
	struct timespec deadline;
	struct pend *p = NULL;
	uint8_t *frame = NULL;
	size_t len;
	json_t *body;
	int rc, id = -1;

	if (!app || !loop || !pk || hw_app_pk_parse(pk, remote.pk) ||
	    port == 0)
		return -EINVAL;
	remote.port = port;
	if (timeout_ms == 0)
		timeout_ms = SDK_DIAL_TIMEOUT_MS;
	if (timeout_ms > 0)
		deadline_in(&deadline, timeout_ms);

	if (!(body = hw_app_addr_json(&remote)))
		return -ENOMEM;
	thread_error[0] = '\0';
	pthread_mutex_lock(&app->mu);
	if ((rc = app->broken))
		goto out;
	/* The visor never sees two requests of ours under one ID. */
	for (int k = 0; k < 256; k++) {
		uint8_t cand = (uint8_t)(app->next_id + k);
		if (app->pend[cand].state == PEND_FREE) {
			id = cand;
			break;
		}
	}
	if (id < 0) {
		rc = -EAGAIN;
		goto out;
	}
	app->next_id = (uint8_t)(id + 1);
	p = &app->pend[id];
	memset(p, 0, sizeof(*p));
	p->state = PEND_WAIT;
	p->type = HW_APP_CREATE_LOOP;
	p->loop.fd = -1;
	hw_app_pk_hex(remote.pk, p->loop.remote_pk);
	p->loop.remote_port = port;
	pthread_mutex_unlock(&app->mu);

	rc = hw_app_frame_json(HW_APP_CREATE_LOOP, (uint8_t)id, body, &frame,
			       &len);
	if (rc == 0)
		rc = write_frame(app, frame, len,
				 timeout_ms > 0 ? &deadline : NULL);

	pthread_mutex_lock(&app->mu);
	if (rc) {
		/* No whole CreateLoop reached the visor. */
		p->state = PEND_FREE;
		goto out;
	}
	rc = wait_for(app, pend_done, p, timeout_ms > 0 ? &deadline : NULL);
	if (rc == 0) {
		if ((rc = p->rc) == 0)
			*loop = p->loop;
		else
			fmt(thread_error, sizeof(thread_error), "%s", p->err);
		p->state = PEND_FREE;
	} else if (rc == -ETIMEDOUT) {
		/* The answer may still come: the reader closes its loop. */
		p->state = PEND_ABANDONED;
	} else {
		p->state = PEND_FREE;
	}
out:
	pthread_mutex_unlock(&app->mu);
	free(frame);
	json_decref(body);
	return rc;
}

/* Takes what the channel of app holds without waiting, until fd's loop
 * has its outcome: the visor's Close (in the channel before the loop can
 * read end of file), or the channel's end. */
static void drain(struct hw_app *app, int fd)
{
	struct timespec deadline;
	struct hw_app *cur;
	char why[1];
	int rc;

	deadline_in(&deadline, SDK_CLOSE_WAIT_MS);
	pthread_mutex_lock(&app->mu);
	while (reg_state(fd, &cur, why, sizeof(why)) == LOOP_OPEN && cur) {
		if (app->broken) {
			reg_orphaned(fd, app->why);
			break;
		}
		if (!app->reading) {
			app->reading = 1;
			pthread_mutex_unlock(&app->mu);
			rc = read_pass(app, 0);
			pthread_mutex_lock(&app->mu);
			app->reading = 0;
			pthread_cond_broadcast(&app->cv);
			if (rc == 0)
				break; /* nothing more: no Close came */
			continue;
		}
		/* Another thread reads: the Close is on its way to it. */
		if (pthread_cond_timedwait(&app->cv, &app->mu, &deadline) ==
		    ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&app->mu);
}

/* fd reached its end (rc: 0 or the error that said so): -ENETRESET when
 * its loop failed, else rc. */
static ssize_t loop_outcome(int fd, ssize_t rc)
{
	struct hw_app *app;
	char why[HW_APP_ERROR_MAX];
	enum loop_end end = reg_state(fd, &app, why, sizeof(why));

	if (end == LOOP_OPEN && app) {
		drain(app, fd);
		end = reg_state(fd, &app, why, sizeof(why));
	}
	return end == LOOP_FAILED ? -ENETRESET : rc;
}

HW_APP_API ssize_t hw_app_read(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	/* A UNIX socket says ECONNRESET when the visor's end went with
	 * bytes of ours unread: an end like end of file. */
	if (n == 0 || (n < 0 && errno == ECONNRESET))
		return loop_outcome(fd, n < 0 ? -ECONNRESET : 0);
	return n < 0 ? -errno : n;
}

HW_APP_API const char *hw_app_loop_error(int fd)
{
	struct hw_app *app;
	enum loop_end end;
	char c;

	end = reg_state(fd, &app, thread_loop_error,
			sizeof(thread_loop_error));
	if (end == LOOP_OPEN && app) {
		/* Only a loop at its end can have an outcome waiting. */
		ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == 0 || (n < 0 && (errno == ECONNRESET ||
					 errno == EPIPE))) {
			drain(app, fd);
			end = reg_state(fd, &app, thread_loop_error,
					sizeof(thread_loop_error));
		}
	}
	return end == LOOP_FAILED ? thread_loop_error : NULL;
}

HW_APP_API ssize_t hw_app_write(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t off = 0;
	ssize_t n;
	int sock = 1;

	while (off < len) {
		/* A loop is a socket: a far end gone must not raise
		 * SIGPIPE in the app. */
		if (sock) {
			n = send(fd, p + off, len - off, MSG_NOSIGNAL);
			if (n < 0 && errno == ENOTSOCK) {
				sock = 0;
				continue;
			}
		} else {
			n = write(fd, p + off, len - off);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if ((errno == EAGAIN || errno == EWOULDBLOCK) && off)
				break;
			if (errno == EPIPE || errno == ECONNRESET)
				return loop_outcome(fd, -errno);
			return -errno;
		}
		off += (size_t)n;
	}
	return (ssize_t)off;
}

HW_APP_API int hw_app_loop_close(int fd)
{
	reg_remove(fd);
	/* On Linux the descriptor is gone even when close says EINTR. */
	if (close(fd) < 0 && errno != EINTR)
		return -errno;
	return 0;
}
