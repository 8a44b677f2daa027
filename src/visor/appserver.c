#include "visor/appserver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdk/proto.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"

#define LOG "apps"
/* Channels at once (launched and by hand). */
#define MAX_APPS 256
/* Loops one app may hold. */
#define MAX_LOOPS 1024
/* Requests of ours an app may leave unanswered before we wait (a Send's
 * credit goes back to the far end only once it is answered, so this also
 * bounds what a slow JSON-mode app has queued). */
#define MAX_OUTSTANDING 128
/* Bytes written to an app that it has not taken: beyond this it is not
 * reading and is disconnected. The credit of its loops keeps a
 * well-behaved app far below. */
#define MAX_QUEUED (64u << 20)
#define CONFIRM_TIMEOUT_MS 10000
#define TICK_MS 1000

enum loop_state { L_DIALING, L_CONFIRMING, L_OPEN };

struct app;

struct loop {
	struct loop *next;
	struct app *app;
	enum loop_state state;
	uint16_t lport;
	struct hw_app_addr remote;
	struct hw_route_end *end; /* NULL until ready */
	int fdmode;
	int announced;      /* the app knows of it (CreateLoop answered or
			       ConfirmLoop sent) */
	uint8_t create_id;  /* the CreateLoop to answer (L_DIALING) */
	uint8_t *pend;      /* a Send the full group refused */
	size_t pend_len;
	uint8_t pend_id;
	/* loop-fd: a duplicate of the visor's end of the socketpair. While
	 * it is open the app cannot read end of file, so the Close frame
	 * that says how the loop ended goes first: it is closed once that
	 * frame is in the kernel (or when the loop ends without one). */
	int hold;
};

/* A frame of ours waiting for a free message ID. */
struct qframe {
	struct qframe *next;
	struct loop *loop;
	size_t credit;
	int fd; /* sent with it (loop-fd), or -1 */
	int hold; /* closed once it is written (a loop's hold), or -1 */
	size_t len;
	uint8_t *buf;
};

struct req {
	uint8_t busy, type;
	struct loop *loop;
	size_t credit; /* Send: bytes to give back once answered */
	uint64_t sent_ms;
};

struct app {
	uv_pipe_t pipe; /* ipc: frames may carry descriptors */
	struct app *next;
	struct hw_appserver *as;
	char name[HW_APP_NAME_MAX + 1];
	uint16_t port;
	int launched;
	int inited;
	unsigned ext;
	uint8_t *rbuf;
	size_t rlen;
	int blocked; /* a Send waits for its group: frames wait in rbuf */
	size_t queued;
	struct loop *loops;
	unsigned nloops;
	struct req reqs[256];
	unsigned nreqs;
	uint8_t next_id;
	struct qframe *wq, *wq_tail;
	int closing;
	uint8_t sendbuf[HW_APP_BODY_MAX];
};

struct hw_appserver {
	uv_loop_t *loop;
	const struct hw_appserver_ops *ops;
	void *ud;
	uint8_t pk[HW_PK_LEN];
	char pk_hex[HW_PK_HEXLEN + 1];
	uv_pipe_t server;
	uv_timer_t tick;
	char path[PATH_MAX + 16];
	struct app *apps;
	unsigned napps;
	int listening;
	int closing;
	int handles; /* freed at zero after hw_appserver_free */
};

/* A write to an app: the frame, and the descriptor handle sent with it. */
struct awrite {
	uv_write_t req;
	struct app *app;          /* valid until the write's callback */
	struct hw_appserver *as;  /* valid until the handle is closed */
	size_t len;
	uv_pipe_t fdh;
	int has_fd;
	int hold; /* closed in the write's callback, or -1 */
	uint8_t *buf;
};

static void app_close(struct app *a, const char *why);
static void process(struct app *a);
static void loop_free(struct loop *l);
static void app_read_start(struct app *a);

static void handle_unref(struct hw_appserver *as)
{
	if (--as->handles == 0)
		free(as);
}

/* ---- writing frames ---- */

static void on_fdh_closed(uv_handle_t *h)
{
	struct awrite *w = h->data;
	struct hw_appserver *as = w->as;
	free(w->buf);
	free(w);
	handle_unref(as);
}

static void on_app_write(uv_write_t *req, int status)
{
	struct awrite *w = (struct awrite *)req;
	struct app *a = w->app;

	a->queued -= w->len;
	/* The frame is the kernel's (or the channel is gone): the loop's
	 * descriptor may read end of file now. */
	if (w->hold >= 0)
		close(w->hold);
	if (w->has_fd) {
		/* Keeps a (and as) until the handle is closed. */
		uv_close((uv_handle_t *)&w->fdh, on_fdh_closed);
		return;
	}
	free(w->buf);
	free(w);
	handle_unref(a->as);
}

/* Writes buf (len bytes, taken over) to the app, with fd (taken over,
 * closed here once sent) when fd >= 0; hold (taken over, when >= 0) is
 * closed once the frame has been written. */
static void app_write(struct app *a, uint8_t *buf, size_t len, int fd,
		      int hold)
{
	struct awrite *w = NULL;
	uv_buf_t b;
	int rc;

	if (a->closing || !(w = calloc(1, sizeof(*w))))
		goto fail;
	w->hold = -1; /* set once the write is under way */
	w->app = a;
	w->as = a->as;
	w->len = len;
	w->buf = buf;
	b = uv_buf_init((char *)buf, (unsigned)len);
	if (fd >= 0) {
		if (uv_pipe_init(a->as->loop, &w->fdh, 0))
			goto fail;
		w->fdh.data = w;
		if (uv_pipe_open(&w->fdh, fd)) {
			/* The handle exists: it must be closed. */
			w->has_fd = 1;
			a->as->handles++;
			uv_close((uv_handle_t *)&w->fdh, on_fdh_closed);
			close(fd);
			if (hold >= 0)
				close(hold);
			app_close(a, "cannot pass a descriptor");
			return;
		}
		w->has_fd = 1;
		fd = -1; /* the handle owns it */
		rc = uv_write2(&w->req, (uv_stream_t *)&a->pipe, &b, 1,
			       (uv_stream_t *)&w->fdh, on_app_write);
	} else {
		rc = uv_write(&w->req, (uv_stream_t *)&a->pipe, &b, 1,
			      on_app_write);
	}
	a->as->handles++;
	if (rc) {
		if (w->has_fd) {
			uv_close((uv_handle_t *)&w->fdh, on_fdh_closed);
		} else {
			free(w->buf);
			free(w);
			handle_unref(a->as);
		}
		if (hold >= 0)
			close(hold);
		app_close(a, uv_strerror(rc));
		return;
	}
	w->hold = hold; /* its callback closes it */
	a->queued += len;
	if (a->queued > MAX_QUEUED)
		app_close(a, "not reading its channel");
	return;
fail:
	free(buf);
	free(w);
	if (fd >= 0)
		close(fd);
	if (hold >= 0)
		close(hold);
	if (!a->closing)
		app_close(a, "out of memory");
}

static void respond(struct app *a, uint8_t type, uint8_t id, json_t *body)
{
	uint8_t *buf;
	size_t len;

	if (a->closing)
		return;
	if (hw_app_frame_json(type, id, body, &buf, &len)) {
		app_close(a, "cannot encode a response");
		return;
	}
	app_write(a, buf, len, -1, -1);
}

static void fail(struct app *a, uint8_t id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct app *a, uint8_t id, const char *fmt, ...)
{
	char msg[HW_APP_ERROR_MAX];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hw_log(HW_LOG_DEBUG, LOG, "app %s: refused: %s",
	       a->name[0] ? a->name : "(new)", msg);
	o = hw_app_error_json(msg);
	respond(a, HW_APP_FAILURE, id, o);
	json_decref(o);
}

static void succeed(struct app *a, uint8_t id, json_t *body)
{
	respond(a, HW_APP_SUCCESS, id, body);
}

/* Sends a request of ours (buf: a whole frame; its ID byte is set here). */
static void request_now(struct app *a, struct qframe *q)
{
	uint8_t id = a->next_id;

	while (a->reqs[id].busy)
		id++;
	a->next_id = (uint8_t)(id + 1);
	a->reqs[id].busy = 1;
	a->reqs[id].type = q->buf[2];
	a->reqs[id].loop = q->loop;
	a->reqs[id].credit = q->credit;
	a->reqs[id].sent_ms = uv_now(a->as->loop);
	a->nreqs++;
	q->buf[3] = id;
	app_write(a, q->buf, q->len, q->fd, q->hold);
	free(q);
}

/* fd rides with the frame; hold is closed once it is written (both taken
 * over, -1: none). */
static void request(struct app *a, struct loop *l, uint8_t *buf, size_t len,
		    size_t credit, int fd, int hold)
{
	struct qframe *q = calloc(1, sizeof(*q));

	if (!q || a->closing) {
		free(q);
		free(buf);
		if (fd >= 0)
			close(fd);
		if (hold >= 0)
			close(hold);
		if (!a->closing)
			app_close(a, "out of memory");
		return;
	}
	q->loop = l;
	q->credit = credit;
	q->fd = fd;
	q->hold = hold;
	q->buf = buf;
	q->len = len;
	if (a->nreqs < MAX_OUTSTANDING && !a->wq) {
		request_now(a, q);
		return;
	}
	if (a->wq_tail)
		a->wq_tail->next = q;
	else
		a->wq = q;
	a->wq_tail = q;
}

static void request_json(struct app *a, struct loop *l, uint8_t type,
			 json_t *body, int fd, int hold)
{
	uint8_t *buf;
	size_t len;

	if (hw_app_frame_json(type, 0, body, &buf, &len)) {
		if (fd >= 0)
			close(fd);
		if (hold >= 0)
			close(hold);
		app_close(a, "cannot encode a request");
		return;
	}
	request(a, l, buf, len, 0, fd, hold);
}

static void drain_waiting(struct app *a)
{
	while (a->wq && a->nreqs < MAX_OUTSTANDING && !a->closing) {
		struct qframe *q = a->wq;
		a->wq = q->next;
		if (!a->wq)
			a->wq_tail = NULL;
		request_now(a, q);
	}
}

/* ---- loops ---- */

static struct loop *loop_find(struct app *a, uint16_t lport,
			      const struct hw_app_addr *r)
{
	for (struct loop *l = a->loops; l; l = l->next)
		if (l->lport == lport && l->remote.port == r->port &&
		    !memcmp(l->remote.pk, r->pk, HW_APP_PK_LEN))
			return l;
	return NULL;
}

static int port_in_use(struct hw_appserver *as, uint16_t port)
{
	for (struct app *a = as->apps; a; a = a->next) {
		if (a->port == port)
			return 1;
		for (struct loop *l = a->loops; l; l = l->next)
			if (l->lport == port)
				return 1;
	}
	return 0;
}

static struct loop *loop_new(struct app *a, uint16_t lport,
			     const struct hw_app_addr *remote,
			     enum loop_state st)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->app = a;
	l->state = st;
	l->lport = lport;
	l->remote = *remote;
	l->fdmode = !!(a->ext & HW_APP_EXT_LOOP_FD);
	l->hold = -1;
	l->next = a->loops;
	a->loops = l;
	a->nloops++;
	return l;
}

/* Unlinks and frees l; its route end must be closed already. */
static void loop_free(struct loop *l)
{
	struct app *a = l->app;

	for (struct loop **pp = &a->loops; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	a->nloops--;
	for (unsigned i = 0; i < 256; i++)
		if (a->reqs[i].loop == l)
			a->reqs[i].loop = NULL;
	for (struct qframe *q = a->wq; q; q = q->next)
		if (q->loop == l)
			q->loop = NULL;
	if (l->pend) {
		/* The Send it held is answered: the loop is gone. */
		free(l->pend);
		fail(a, l->pend_id, "loop closed");
		a->blocked = 0;
	}
	if (l->hold >= 0)
		close(l->hold);
	free(l);
}

/* Ends l from our side: closes its route (or cancels its dial). */
static void loop_end(struct loop *l)
{
	struct hw_appserver *as = l->app->as;

	if (l->end)
		as->ops->end_close(l->end);
	else
		as->ops->dial_cancel(as->ud, l);
	l->end = NULL;
	loop_free(l);
}

/* A socketpair for a loop-fd loop: our end goes to the route (and its
 * duplicate to l->hold), *theirs to the app. */
static int loop_pipe(struct loop *l, int *theirs)
{
	int sv[2], hold, rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if ((hold = fcntl(sv[0], F_DUPFD_CLOEXEC, 0)) < 0) {
		rc = -errno;
		close(sv[0]);
		close(sv[1]);
		return rc;
	}
	if ((rc = l->app->as->ops->end_pipe(l->end, sv[0]))) {
		close(hold);
		close(sv[0]);
		close(sv[1]);
		return rc;
	}
	l->hold = hold;
	*theirs = sv[1];
	return 0;
}

void hw_appserver_end_ready(void *ud, struct hw_route_end *e)
{
	struct loop *l = ud;
	struct app *a = l->app;
	struct hw_app_addr me;
	int fd = -1, rc;

	l->end = e;
	memcpy(me.pk, a->as->pk, HW_APP_PK_LEN);
	me.port = l->lport;
	if (l->fdmode && (rc = loop_pipe(l, &fd))) {
		if (l->state == L_DIALING)
			fail(a, l->create_id, "cannot make the loop's "
			     "descriptor: %s", hw_strerror(rc));
		loop_end(l);
		return;
	}
	if (l->state == L_DIALING) {
		json_t *o = hw_app_addr_json(&me);
		uint8_t *buf;
		size_t len;

		l->state = L_OPEN;
		l->announced = 1;
		if (hw_app_frame_json(HW_APP_SUCCESS, l->create_id, o, &buf,
				      &len)) {
			json_decref(o);
			if (fd >= 0)
				close(fd);
			loop_end(l);
			app_close(a, "cannot encode a response");
			return;
		}
		json_decref(o);
		app_write(a, buf, len, fd, -1);
		return;
	}
	/* Incoming: the app confirms (or refuses) it. */
	json_t *o = hw_app_confirm_json(&me, &l->remote);
	l->announced = 1;
	request_json(a, l, HW_APP_CONFIRM_LOOP, o, fd, -1);
	json_decref(o);
}

void hw_appserver_end_data(void *ud, const uint8_t *p, size_t len)
{
	struct loop *l = ud;
	struct app *a = l->app;
	struct hw_app_loop_addr la = {.port = l->lport, .remote = l->remote};

	while (len && !a->closing) {
		size_t n = len > HW_APP_SEND_CHUNK ? HW_APP_SEND_CHUNK : len;
		uint8_t *buf;
		size_t blen;

		if (hw_app_frame_send(0, &la, p, n, &buf, &blen)) {
			app_close(a, "out of memory");
			return;
		}
		request(a, l, buf, blen, n, -1, -1);
		p += n;
		len -= n;
	}
}

void hw_appserver_end_writable(void *ud)
{
	struct loop *l = ud;
	struct app *a = l->app;
	int rc;

	if (!l->pend)
		return;
	rc = a->as->ops->end_write(l->end, l->pend, l->pend_len);
	if (rc == -ENOBUFS)
		return;
	free(l->pend);
	l->pend = NULL;
	if (rc)
		fail(a, l->pend_id, "loop closed: %s", hw_strerror(rc));
	else
		succeed(a, l->pend_id, NULL);
	a->blocked = 0;
	process(a);
}

void hw_appserver_end_closed(void *ud, int reason, const char *msg)
{
	struct loop *l = ud;
	struct app *a = l->app;
	char pk[2 * HW_APP_PK_LEN + 1];

	l->end = NULL;
	if (l->state == L_DIALING) {
		hw_app_pk_hex(l->remote.pk, pk);
		fail(a, l->create_id, "cannot reach %s port %u: %s", pk,
		     l->remote.port, msg);
	} else if (l->announced) {
		struct hw_app_loop_addr la = {.port = l->lport,
					      .remote = l->remote};
		char why[HW_APP_ERROR_MAX];
		json_t *o;

		/* Any end but an acknowledged close is a failure, and the
		 * app learns why (docs/app-protocol.md, Close). */
		if (reason)
			snprintf(why, sizeof(why), "route failed: %s",
				 msg && msg[0] ? msg : hw_strerror(reason));
		o = hw_app_close_json(&la, reason ? why : NULL);
		request_json(a, NULL, HW_APP_CLOSE, o, -1, l->hold);
		l->hold = -1;
		json_decref(o);
	}
	loop_free(l);
}

static struct app *app_by_port(struct hw_appserver *as, uint16_t port)
{
	for (struct app *a = as->apps; a; a = a->next)
		if (a->inited && a->port == port && !a->closing)
			return a;
	return NULL;
}

int hw_appserver_incoming(struct hw_appserver *as,
			  const uint8_t src_pk[HW_PK_LEN], uint16_t src_port,
			  uint16_t dst_port, void **ud, char *msg,
			  size_t msglen)
{
	struct app *a = app_by_port(as, dst_port);
	struct hw_app_addr remote;
	struct loop *l;

	if (!a)
		return -ENOENT;
	memcpy(remote.pk, src_pk, HW_APP_PK_LEN);
	remote.port = src_port;
	if (a->nloops >= MAX_LOOPS) {
		snprintf(msg, msglen, "the app on port %u has too many loops",
			 dst_port);
		return -EBUSY;
	}
	if (loop_find(a, dst_port, &remote)) {
		snprintf(msg, msglen, "a loop from that port is open already");
		return -EEXIST;
	}
	if (!(l = loop_new(a, dst_port, &remote, L_CONFIRMING))) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	*ud = l;
	return 0;
}

/* ---- requests from the app ---- */

static void on_init(struct app *a, const struct hw_app_frame *f)
{
	struct hw_appserver *as = a->as;
	const struct hw_appserver_ops *ops = as->ops;
	struct hw_app_init in;
	char err[HW_APP_ERROR_MAX];
	uint16_t port = 0, conf_port;

	if (a->inited) {
		fail(a, f->id, "already initialised");
		return;
	}
	if (hw_app_parse_init(f->body, f->len, &in, err, sizeof(err))) {
		fail(a, f->id, "%s", err);
		return;
	}
	if (in.protocol[0] && strcmp(in.protocol, HW_APP_PROTOCOL_VERSION)) {
		fail(a, f->id, "protocol-version %s: this visor speaks %s",
		     in.protocol, HW_APP_PROTOCOL_VERSION);
		return;
	}
	if (a->launched) {
		port = a->port;
		if (in.port && in.port != port) {
			fail(a, f->id, "port %u: this app's port is %u "
			     "(config)", in.port, port);
			return;
		}
	} else {
		if (ops->app_port &&
		    ops->app_port(as->ud, in.name, &conf_port)) {
			if (hw_appserver_connected(as, in.name) ||
			    (ops->app_running &&
			     ops->app_running(as->ud, in.name))) {
				fail(a, f->id, "app '%s' is already running",
				     in.name);
				return;
			}
			if (in.port && in.port != conf_port) {
				fail(a, f->id, "port %u: app '%s' has port %u "
				     "(config)", in.port, in.name, conf_port);
				return;
			}
			port = conf_port;
		} else if (in.port) {
			const char *owner =
				ops->port_owner
					? ops->port_owner(as->ud, in.port)
					: NULL;
			if (owner) {
				fail(a, f->id, "port %u belongs to app '%s'",
				     in.port, owner);
				return;
			}
			port = in.port;
		}
		if (port && port_in_use(as, port)) {
			fail(a, f->id, "port %u is in use", port);
			return;
		}
		snprintf(a->name, sizeof(a->name), "%s", in.name);
	}
	a->port = port;
	a->inited = 1;
	a->ext = in.ext & HW_APP_EXT_LOOP_FD;
	hw_log(HW_LOG_INFO, LOG, "app %s connected (%s, port %u%s)", a->name,
	       a->launched ? "launched" : "by hand", port,
	       a->ext ? ", loop-fd" : "");
	if (!in.extended) {
		succeed(a, f->id, NULL);
		return;
	}
	json_t *o = json_pack("{s:i, s:s, s:[]}", "port", (int)port, "pk",
			      as->pk_hex, "extensions");
	if (o && a->ext)
		json_array_append_new(json_object_get(o, "extensions"),
				      json_string("loop-fd"));
	succeed(a, f->id, o);
	json_decref(o);
}

static void on_create_loop(struct app *a, const struct hw_app_frame *f)
{
	struct hw_appserver *as = a->as;
	struct hw_app_addr r;
	char err[HW_APP_ERROR_MAX];
	struct loop *l;
	uint16_t lport;
	unsigned tries = 0;

	if (hw_app_parse_addr(f->body, f->len, &r, err, sizeof(err))) {
		fail(a, f->id, "CreateLoop: %s", err);
		return;
	}
	if (!memcmp(r.pk, as->pk, HW_APP_PK_LEN)) {
		fail(a, f->id, "CreateLoop: pk: that is this visor's own key");
		return;
	}
	if (a->nloops >= MAX_LOOPS) {
		fail(a, f->id, "too many loops (%d)", MAX_LOOPS);
		return;
	}
	do
		lport = as->ops->ephemeral_port(as->ud);
	while (port_in_use(as, lport) && ++tries < 16384);
	if (tries >= 16384) {
		fail(a, f->id, "no free local port");
		return;
	}
	if (!(l = loop_new(a, lport, &r, L_DIALING))) {
		fail(a, f->id, "out of memory");
		return;
	}
	l->create_id = f->id;
	if (as->ops->dial(as->ud, r.pk, r.port, lport, l, err, sizeof(err))) {
		l->end = NULL;
		loop_free(l);
		fail(a, f->id, "%s", err);
	}
}

/* The app's loop la names, or NULL after answering the request id. */
static struct loop *loop_or_fail(struct app *a, uint8_t id,
				 const struct hw_app_loop_addr *la)
{
	char pk[2 * HW_APP_PK_LEN + 1];
	struct loop *l = loop_find(a, la->port, &la->remote);

	if (!l) {
		hw_app_pk_hex(la->remote.pk, pk);
		fail(a, id, "no loop %u -> %s:%u", la->port, pk,
		     la->remote.port);
	}
	return l;
}

static void on_send(struct app *a, const struct hw_app_frame *f)
{
	struct hw_app_loop_addr la;
	char err[HW_APP_ERROR_MAX];
	struct loop *l;
	size_t n;
	int rc;

	if (hw_app_parse_send(f->body, f->len, &la, a->sendbuf,
			      sizeof(a->sendbuf), &n, err, sizeof(err))) {
		fail(a, f->id, "%s", err);
		return;
	}
	if (!(l = loop_or_fail(a, f->id, &la)))
		return;
	if (l->fdmode) {
		fail(a, f->id, "loop data goes through its descriptor "
		     "(loop-fd)");
		return;
	}
	if (!l->end) {
		fail(a, f->id, "the loop is not open yet");
		return;
	}
	if (n == 0) {
		succeed(a, f->id, NULL);
		return;
	}
	rc = a->as->ops->end_write(l->end, a->sendbuf, n);
	if (rc == -ENOBUFS) {
		/* The group is full: hold this Send, and read nothing more
		 * from the app until the group takes it. */
		if (!(l->pend = malloc(n))) {
			app_close(a, "out of memory");
			return;
		}
		memcpy(l->pend, a->sendbuf, n);
		l->pend_len = n;
		l->pend_id = f->id;
		a->blocked = 1;
		return;
	}
	if (rc)
		fail(a, f->id, "loop closed: %s", hw_strerror(rc));
	else
		succeed(a, f->id, NULL);
}

static void on_close(struct app *a, const struct hw_app_frame *f)
{
	struct hw_app_loop_addr la;
	char err[HW_APP_ERROR_MAX];
	struct loop *l;

	if (hw_app_parse_loop(f->body, f->len, &la, err, sizeof(err))) {
		fail(a, f->id, "Close: %s", err);
		return;
	}
	if (!(l = loop_or_fail(a, f->id, &la)))
		return;
	if (l->state == L_DIALING)
		fail(a, l->create_id, "closed by the app while dialing");
	loop_end(l);
	succeed(a, f->id, NULL);
}

static void on_response(struct app *a, const struct hw_app_frame *f)
{
	struct req *r = &a->reqs[f->id];
	struct loop *l = r->loop;

	if (!r->busy) {
		hw_log(HW_LOG_DEBUG, LOG, "app %s: response to no request "
		       "(id %u)", a->name, f->id);
		return;
	}
	r->busy = 0;
	r->loop = NULL;
	a->nreqs--;
	if (l && r->type == HW_APP_CONFIRM_LOOP) {
		if (f->type == HW_APP_SUCCESS) {
			l->state = L_OPEN;
		} else {
			char msg[HW_APP_ERROR_MAX];
			hw_app_parse_error(f->body, f->len, msg, sizeof(msg));
			hw_log(HW_LOG_INFO, LOG, "app %s refused a loop: %s",
			       a->name, msg);
			loop_end(l);
		}
	} else if (l && r->type == HW_APP_SEND && l->end) {
		a->as->ops->end_consumed(l->end, r->credit);
	}
	drain_waiting(a);
}

static void on_frame(struct app *a, const struct hw_app_frame *f)
{
	const char *name = hw_app_type_name(f->type);

	if (f->type == HW_APP_SUCCESS || f->type == HW_APP_FAILURE) {
		on_response(a, f);
		return;
	}
	if (!name) {
		fail(a, f->id, "unknown frame type 0x%02x", f->type);
		return;
	}
	if (!a->inited && f->type != HW_APP_INIT) {
		fail(a, f->id, "init first: send Init before %s", name);
		return;
	}
	switch (f->type) {
	case HW_APP_INIT: on_init(a, f); break;
	case HW_APP_CREATE_LOOP: on_create_loop(a, f); break;
	case HW_APP_SEND: on_send(a, f); break;
	case HW_APP_CLOSE: on_close(a, f); break;
	default:
		fail(a, f->id, "%s is sent by the visor, not by apps", name);
	}
}

/* Handles the whole frames in a->rbuf until one blocks. */
static void process(struct app *a)
{
	struct hw_app_frame f;
	size_t off = 0, used;
	int rc;

	while (!a->closing && !a->blocked &&
	       (rc = hw_app_frame_next(a->rbuf + off, a->rlen - off, &f,
				       &used)) != 0) {
		if (rc < 0) {
			app_close(a, "frame length below 2");
			return;
		}
		on_frame(a, &f);
		off += used;
	}
	if (a->closing)
		return;
	memmove(a->rbuf, a->rbuf + off, a->rlen - off);
	a->rlen -= off;
	if (a->blocked)
		uv_read_stop((uv_stream_t *)&a->pipe);
	else
		app_read_start(a);
}

/* ---- channels ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct app *a = h->data;
	*b = uv_buf_init((char *)a->rbuf + a->rlen,
			 (unsigned)(HW_APP_FRAME_MAX - a->rlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct app *a = s->data;

	if (n < 0) {
		app_close(a, n == UV_EOF ? NULL : uv_strerror((int)n));
		return;
	}
	if (uv_pipe_pending_count(&a->pipe) > 0) {
		app_close(a, "sent a descriptor to the visor");
		return;
	}
	a->rlen += (size_t)n;
	process(a);
}

static void on_app_closed(uv_handle_t *h)
{
	struct app *a = h->data;
	struct hw_appserver *as = a->as;

	free(a->rbuf);
	free(a);
	handle_unref(as);
}

static void app_close(struct app *a, const char *why)
{
	struct hw_appserver *as = a->as;

	if (a->closing)
		return;
	a->closing = 1;
	if (why)
		hw_log(HW_LOG_WARN, LOG, "app %s: channel closed: %s",
		       a->name[0] ? a->name : "(not initialised)", why);
	else if (a->inited)
		hw_log(HW_LOG_INFO, LOG, "app %s disconnected", a->name);
	while (a->loops)
		loop_end(a->loops);
	while (a->wq) {
		struct qframe *q = a->wq;
		a->wq = q->next;
		if (q->fd >= 0)
			close(q->fd);
		if (q->hold >= 0)
			close(q->hold);
		free(q->buf);
		free(q);
	}
	a->wq_tail = NULL;
	for (struct app **pp = &as->apps; *pp; pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	as->napps--;
	uv_close((uv_handle_t *)&a->pipe, on_app_closed);
}

static void app_read_start(struct app *a)
{
	uv_read_start((uv_stream_t *)&a->pipe, on_alloc, on_read);
}

static struct app *app_new(struct hw_appserver *as)
{
	struct app *a;

	if (as->napps >= MAX_APPS) {
		hw_log(HW_LOG_WARN, LOG, "%u apps connected: refusing more",
		       as->napps);
		return NULL;
	}
	if (!(a = calloc(1, sizeof(*a))))
		return NULL;
	if (!(a->rbuf = malloc(HW_APP_FRAME_MAX))) {
		free(a);
		return NULL;
	}
	a->as = as;
	uv_pipe_init(as->loop, &a->pipe, 1);
	a->pipe.data = a;
	as->handles++;
	a->next = as->apps;
	as->apps = a;
	as->napps++;
	return a;
}

int hw_appserver_adopt(struct hw_appserver *as, const char *name,
		       uint16_t port, int fd)
{
	struct app *a;
	int rc;

	if (as->closing || !(a = app_new(as))) {
		close(fd);
		return as->closing ? -ECANCELED : -ENOMEM;
	}
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->port = port;
	a->launched = 1;
	if ((rc = uv_pipe_open(&a->pipe, fd))) {
		close(fd);
		app_close(a, uv_strerror(rc));
		return rc;
	}
	app_read_start(a);
	return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
	struct hw_appserver *as = server->data;
	struct app *a;

	if (status < 0 || as->closing)
		return;
	if (!(a = app_new(as))) {
		/* Accept and drop, so the backlog drains. */
		uv_pipe_t *tmp = malloc(sizeof(*tmp));
		if (tmp && uv_pipe_init(as->loop, tmp, 0) == 0) {
			uv_accept(server, (uv_stream_t *)tmp);
			uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
		} else {
			free(tmp);
		}
		return;
	}
	if (uv_accept(server, (uv_stream_t *)&a->pipe)) {
		app_close(a, "accept failed");
		return;
	}
	app_read_start(a);
}

int hw_appserver_connected(const struct hw_appserver *as, const char *name)
{
	for (struct app *a = as->apps; a; a = a->next)
		if (a->inited && !a->closing && !strcmp(a->name, name))
			return 1;
	return 0;
}

json_t *hw_appserver_json(const struct hw_appserver *as)
{
	json_t *arr = json_array();

	for (struct app *a = as->apps; a && arr; a = a->next) {
		json_t *o = json_pack("{s:s, s:i, s:b, s:b, s:i, s:[]}",
				      "name", a->name, "port", (int)a->port,
				      "launched", a->launched, "initialised",
				      a->inited, "loops", (int)a->nloops,
				      "extensions");
		if (o && (a->ext & HW_APP_EXT_LOOP_FD))
			json_array_append_new(json_object_get(o, "extensions"),
					      json_string("loop-fd"));
		json_array_append_new(arr, o);
	}
	return arr;
}

json_t *hw_appserver_loops_json(const struct hw_appserver *as,
				const char *name)
{
	static const char *const states[] = {"dialing", "confirming", "open"};
	char remote[2 * HW_APP_PK_LEN + 8];
	json_t *arr = NULL;

	for (struct app *a = as->apps; a; a = a->next) {
		if (strcmp(a->name, name) || a->closing)
			continue;
		if (!(arr = json_array()))
			return NULL;
		for (struct loop *l = a->loops; l; l = l->next) {
			hw_hex_encode(l->remote.pk, HW_APP_PK_LEN, remote);
			snprintf(remote + 2 * HW_APP_PK_LEN,
				 sizeof(remote) - 2 * HW_APP_PK_LEN, ":%u",
				 l->remote.port);
			if (json_array_append_new(
				    arr, json_pack("{s:i, s:s, s:s}", "port",
						   (int)l->lport, "remote",
						   remote, "state",
						   states[l->state]))) {
				json_decref(arr);
				return NULL;
			}
		}
		return arr;
	}
	return NULL;
}

/* Loops an app has not confirmed in time are closed. */
static void on_tick(uv_timer_t *t)
{
	struct hw_appserver *as = t->data;
	uint64_t now = uv_now(as->loop);

	for (struct app *a = as->apps; a; a = a->next)
		for (unsigned i = 0; i < 256; i++) {
			struct req *r = &a->reqs[i];
			if (r->busy && r->type == HW_APP_CONFIRM_LOOP &&
			    r->loop && now - r->sent_ms > CONFIRM_TIMEOUT_MS) {
				hw_log(HW_LOG_WARN, LOG, "app %s did not answer "
				       "ConfirmLoop: loop closed", a->name);
				loop_end(r->loop);
			}
		}
}

static void on_server_closed(uv_handle_t *h)
{
	handle_unref(h->data);
}

int hw_appserver_new(struct hw_appserver **out,
		     const struct hw_appserver_params *p, char *err,
		     size_t errlen)
{
	struct hw_appserver *as = calloc(1, sizeof(*as));
	int rc;

	*out = NULL;
	if (!as)
		return -ENOMEM;
	as->loop = p->loop;
	as->ops = p->ops;
	as->ud = p->ud;
	memcpy(as->pk, p->id->pk, HW_PK_LEN);
	hw_pk_format(as->pk, as->pk_hex);
	as->handles = 3; /* ours, the server, the timer */
	uv_pipe_init(as->loop, &as->server, 0);
	as->server.data = as;
	uv_timer_init(as->loop, &as->tick);
	as->tick.data = as;
	uv_timer_start(&as->tick, on_tick, TICK_MS, TICK_MS);
	uv_unref((uv_handle_t *)&as->tick);
	*out = as;
	/* From here on the caller frees as on failure. */
	snprintf(as->path, sizeof(as->path), "%s/apps.sock",
		 p->local_dir);
	unlink(as->path);
	if ((rc = uv_pipe_bind(&as->server, as->path)) ||
	    (rc = uv_listen((uv_stream_t *)&as->server, 16, on_connection))) {
		snprintf(err, errlen, "app socket %s: %s", as->path,
			 uv_strerror(rc));
		return rc;
	}
	chmod(as->path, 0600);
	as->listening = 1;
	return 0;
}

void hw_appserver_free(struct hw_appserver *as)
{
	if (!as)
		return;
	as->closing = 1;
	while (as->apps)
		app_close(as->apps, NULL);
	if (as->listening)
		unlink(as->path);
	uv_close((uv_handle_t *)&as->server, on_server_closed);
	uv_close((uv_handle_t *)&as->tick, on_server_closed);
	handle_unref(as);
}
