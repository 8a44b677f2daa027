/* The app server (visor/appserver.c) alone: apps speak the app protocol
 * over a socketpair or apps.sock, and routing is a fake behind the ops
 * (fake route ends record what the app server asks of them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdk/proto.h"
#include "crypto/identity.h"
#include "hwtest.h"
#include "util/err.h"
#include "visor/appserver.h"

#define PK_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define WAIT_MS 3000

/* The fake route end: what routing would hand the app server. */
struct hw_route_end {
	int closed;
	int full;     /* writes say -ENOBUFS */
	int pipe_fd;  /* from end_pipe, or -1 */
	uint8_t written[256];
	size_t nwritten;
	int consumed; /* bytes given back */
};

struct fx {
	uv_loop_t loop;
	uv_timer_t tick;
	char dir[64];
	struct hw_identity id;
	struct hw_appserver *as;
	/* the fake routing */
	int ndials, ncancels, dial_fail;
	void *dial_loop, *cancel_loop;
	uint8_t dial_pk[HW_PK_LEN];
	uint16_t dial_port, dial_src, next_port;
	/* the fake launcher: app "conf" has port 7 */
	int conf_running;
};

/* A client app: its end of the channel and what it has read. */
struct client {
	struct fx *fx;
	int fd;
	int eof;
	int nfds; /* descriptors received (closed at once) */
	int loop_fd; /* but the last one is kept here (-1: none) */
	uint8_t buf[HW_APP_FRAME_MAX];
	size_t len;
};

/* ---- fake ops ---- */

static int fake_dial(void *ud, const uint8_t pk[HW_PK_LEN], uint16_t port,
		     uint16_t src_port, void *loop, char *err, size_t errlen)
{
	struct fx *fx = ud;

	if (fx->dial_fail) {
		snprintf(err, errlen, "no route to the peer");
		return -EHOSTUNREACH;
	}
	fx->ndials++;
	fx->dial_loop = loop;
	memcpy(fx->dial_pk, pk, HW_PK_LEN);
	fx->dial_port = port;
	fx->dial_src = src_port;
	return 0;
}

static void fake_dial_cancel(void *ud, void *loop)
{
	struct fx *fx = ud;
	fx->ncancels++;
	fx->cancel_loop = loop;
}

static uint16_t fake_ephemeral_port(void *ud)
{
	struct fx *fx = ud;
	return fx->next_port++;
}

static int fake_end_write(struct hw_route_end *e, const uint8_t *p,
			  size_t len)
{
	if (e->closed)
		return -ENOTCONN;
	if (e->full)
		return -ENOBUFS;
	assert_true(e->nwritten + len <= sizeof(e->written));
	memcpy(e->written + e->nwritten, p, len);
	e->nwritten += len;
	return 0;
}

static void fake_end_consumed(struct hw_route_end *e, size_t n)
{
	e->consumed += (int)n;
}

static int fake_end_pipe(struct hw_route_end *e, int fd)
{
	e->pipe_fd = fd;
	return 0;
}

static void fake_end_close(struct hw_route_end *e)
{
	assert_false(e->closed);
	e->closed = 1;
}

static int fake_app_port(void *ud, const char *name, uint16_t *port)
{
	if (strcmp(name, "conf"))
		return 0;
	*port = 7;
	return 1;
}

static const char *fake_port_owner(void *ud, uint16_t port)
{
	return port == 7 ? "conf" : NULL;
}

static int fake_app_running(void *ud, const char *name)
{
	struct fx *fx = ud;
	return fx->conf_running && !strcmp(name, "conf");
}

static const struct hw_appserver_ops fake_ops = {
	.dial = fake_dial,
	.dial_cancel = fake_dial_cancel,
	.ephemeral_port = fake_ephemeral_port,
	.end_write = fake_end_write,
	.end_consumed = fake_end_consumed,
	.end_pipe = fake_end_pipe,
	.end_close = fake_end_close,
	.app_port = fake_app_port,
	.port_owner = fake_port_owner,
	.app_running = fake_app_running,
};

static void end_init(struct hw_route_end *e)
{
	memset(e, 0, sizeof(*e));
	e->pipe_fd = -1;
}

/* ---- fixture ---- */

static int setup(void **state)
{
	struct hw_appserver_params p = {0};
	struct fx *fx = calloc(1, sizeof(*fx));
	char err[256];

	assert_non_null(fx);
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	assert_int_equal(uv_timer_init(&fx->loop, &fx->tick), 0);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/hw-apps-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	assert_int_equal(hw_identity_generate(&fx->id), 0);
	fx->next_port = 49152;
	p.loop = &fx->loop;
	p.id = &fx->id;
	p.local_dir = fx->dir;
	p.ops = &fake_ops;
	p.ud = fx;
	assert_int_equal(hw_appserver_new(&fx->as, &p, err, sizeof(err)), 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	char path[128];

	hw_appserver_free(fx->as);
	uv_close((uv_handle_t *)&fx->tick, NULL);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	/* Nothing is left on the loop. */
	assert_int_equal(hw_test_loop_close(&fx->loop), 0);
	snprintf(path, sizeof(path), "%s/apps.sock", fx->dir);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(rmdir(fx->dir), 0);
	hw_identity_wipe(&fx->id);
	free(fx);
	return 0;
}

/* ---- the client app ---- */

static struct client *client_new(struct fx *fx, int fd)
{
	struct client *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->fx = fx;
	c->fd = fd;
	c->loop_fd = -1;
	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK),
			 0);
	return c;
}

/* A launched app: the channel comes from the launcher. */
static struct client *client_adopt(struct fx *fx, const char *name,
				   uint16_t port)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(hw_appserver_adopt(fx->as, name, port, sv[0]), 0);
	return client_new(fx, sv[1]);
}

/* An app connected by hand to LOCAL_DIR/apps.sock. */
static struct client *client_connect(struct fx *fx)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/apps.sock", fx->dir);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return client_new(fx, fd);
}

static void client_free(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->loop_fd >= 0)
		close(c->loop_fd);
	free(c);
}

static void client_write(struct client *c, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(c->fd, p, len);
		if (n < 0 && errno == EAGAIN) {
			uv_run(&c->fx->loop, UV_RUN_NOWAIT);
			continue;
		}
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

/* A frame with body as it is (NULL: empty), even when it is not JSON. */
static void client_send(struct client *c, uint8_t type, uint8_t id,
			const char *body)
{
	size_t len = body ? strlen(body) : 0;
	uint8_t hdr[HW_APP_HDR];

	assert_int_equal(hw_app_frame_header(hdr, type, id, len), 0);
	client_write(c, hdr, sizeof(hdr));
	if (len)
		client_write(c, (const uint8_t *)body, len);
}

static void client_read(struct client *c)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))];

	while (!c->eof && c->len < sizeof(c->buf)) {
		struct iovec iov = {.iov_base = c->buf + c->len,
				    .iov_len = sizeof(c->buf) - c->len};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf)};
		ssize_t n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);

		if (n == 0)
			c->eof = 1;
		if (n <= 0)
			return;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
		     cm = CMSG_NXTHDR(&mh, cm)) {
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int),
				       sizeof(int));
				if (c->loop_fd >= 0)
					close(c->loop_fd);
				c->loop_fd = fd;
				c->nfds++;
			}
		}
		c->len += (size_t)n;
	}
}

static int has_frame(void *arg)
{
	struct client *c = arg;
	struct hw_app_frame f;
	size_t used;

	client_read(c);
	return hw_app_frame_next(c->buf, c->len, &f, &used) == 1;
}

static int has_eof(void *arg)
{
	struct client *c = arg;

	client_read(c);
	c->len = 0;
	return c->eof;
}

/* The next frame from the visor, which must be of type: its body (NULL
 * when empty), its id in *id. */
static json_t *client_expect(struct client *c, uint8_t type, uint8_t *id)
{
	struct hw_app_frame f;
	size_t used;
	json_t *body = NULL;

	if (!hw_test_run_until(&c->fx->loop, &c->fx->tick, has_frame, c,
			       WAIT_MS))
		fail_msg("no frame from the visor (wanted type 0x%02x)", type);
	assert_int_equal(hw_app_frame_next(c->buf, c->len, &f, &used), 1);
	if (f.type != type)
		fail_msg("frame type 0x%02x (%.*s), wanted 0x%02x", f.type,
			 (int)f.len, (const char *)f.body, type);
	if (f.len)
		assert_non_null(body = json_loadb((const char *)f.body, f.len,
						  0, NULL));
	if (id)
		*id = f.id;
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
	return body;
}

static void expect_success(struct client *c, uint8_t want_id)
{
	uint8_t id;
	json_t *b = client_expect(c, HW_APP_SUCCESS, &id);

	assert_int_equal(id, want_id);
	json_decref(b);
}

/* A ResponseFailure to want_id whose error starts with want. */
static void expect_failure(struct client *c, uint8_t want_id,
			   const char *want)
{
	uint8_t id;
	json_t *b = client_expect(c, HW_APP_FAILURE, &id);
	const char *e = json_string_value(json_object_get(b, "error"));

	assert_int_equal(id, want_id);
	assert_non_null(e);
	if (strncmp(e, want, strlen(want)))
		fail_msg("error '%s', wanted '%s'", e, want);
	json_decref(b);
}

static void expect_closed(struct client *c)
{
	if (!hw_test_run_until(&c->fx->loop, &c->fx->tick, has_eof, c,
			       WAIT_MS))
		fail_msg("the visor did not close the channel");
}

struct count {
	const int *p;
	int n;
};

static int count_reached(void *arg)
{
	struct count *w = arg;
	return *w->p >= w->n;
}

/* Runs the loop until *p >= n. */
static void wait_count(struct fx *fx, const int *p, int n)
{
	struct count w = {p, n};

	if (!hw_test_run_until(&fx->loop, &fx->tick, count_reached, &w,
			       WAIT_MS))
		fail_msg("waited for %d, have %d", n, *p);
}

struct napps {
	struct hw_appserver *as;
	size_t n;
};

static int napps_is(void *arg)
{
	struct napps *w = arg;
	json_t *a = hw_appserver_json(w->as);
	size_t n = json_array_size(a);

	json_decref(a);
	return n == w->n;
}

static void wait_napps(struct fx *fx, size_t n)
{
	struct napps w = {fx->as, n};

	if (!hw_test_run_until(&fx->loop, &fx->tick, napps_is, &w, WAIT_MS))
		fail_msg("not %zu apps connected", n);
}

/* The loop address a Send or Close names: local port, PK_B:rport. */
static void loop_addr(char *out, size_t cap, uint16_t lport, uint16_t rport)
{
	snprintf(out, cap,
		 "{\"port\": %u, \"remote\": {\"pk\": \"%s\", \"port\": %u}}",
		 lport, PK_B, rport);
}

/* An app connected by hand that sent Init init (it must succeed). */
static struct client *app_with(struct fx *fx, const char *init)
{
	struct client *c = client_connect(fx);

	client_send(c, HW_APP_INIT, 1, init);
	json_decref(client_expect(c, HW_APP_SUCCESS, NULL));
	return c;
}

/* A route group from PK_B port rport arrives for port 9 and comes up on
 * e: returns its loop, with the id of the app's ConfirmLoop in *id. */
static void *incoming_up(struct fx *fx, struct client *c, uint16_t rport,
			 struct hw_route_end *e, uint8_t *id)
{
	uint8_t pk_b[HW_PK_LEN];
	char msg[128];
	void *l;

	assert_int_equal(hw_app_pk_parse(PK_B, pk_b), 0);
	end_init(e);
	assert_int_equal(hw_appserver_incoming(fx->as, pk_b, rport, 9, &l,
					       msg, sizeof(msg)),
			 0);
	hw_appserver_end_ready(l, e);
	json_decref(client_expect(c, HW_APP_CONFIRM_LOOP, id));
	return l;
}

/* ---- tests ---- */

static void test_init(void **state)
{
	struct fx *fx = *state;
	struct client *a = client_connect(fx), *b = client_connect(fx);
	char hex[HW_PK_HEXLEN + 1];
	json_t *body, *arr;
	uint8_t id;

	/* Nothing before Init. */
	client_send(a, HW_APP_CREATE_LOOP, 1, "{}");
	expect_failure(a, 1, "init first: send Init before CreateLoop");
	client_send(a, HW_APP_INIT, 2, "{\"app-name\": \"x\", \"port\": 9, "
		    "\"extensions\": [\"loop-fd\", \"later\"]}");
	body = client_expect(a, HW_APP_SUCCESS, &id);
	assert_int_equal(id, 2);
	hw_pk_format(fx->id.pk, hex);
	assert_int_equal(json_integer_value(json_object_get(body, "port")), 9);
	assert_string_equal(json_string_value(json_object_get(body, "pk")),
			    hex);
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(body, "extensions"), 0)),
			    "loop-fd");
	json_decref(body);
	assert_true(hw_appserver_connected(fx->as, "x"));
	assert_false(hw_appserver_connected(fx->as, "y"));
	client_send(a, HW_APP_INIT, 3, "{\"app-name\": \"x\"}");
	expect_failure(a, 3, "already initialised");

	/* Ports: one app each, and configured ones belong to their app. */
	client_send(b, HW_APP_INIT, 1, "{\"app-name\": \"y\", \"port\": 9}");
	expect_failure(b, 1, "port 9 is in use");
	client_send(b, HW_APP_INIT, 2, "{\"app-name\": \"y\", \"port\": 7}");
	expect_failure(b, 2, "port 7 belongs to app 'conf'");
	client_send(b, HW_APP_INIT, 3, "{\"app-name\": \"conf\", \"port\": 8}");
	expect_failure(b, 3, "port 8: app 'conf' has port 7 (config)");
	fx->conf_running = 1;
	client_send(b, HW_APP_INIT, 4, "{\"app-name\": \"conf\"}");
	expect_failure(b, 4, "app 'conf' is already running");
	fx->conf_running = 0;
	client_send(b, HW_APP_INIT, 5, "{\"app-name\": \"conf\", "
		    "\"protocol-version\": \"9.9\"}");
	expect_failure(b, 5, "protocol-version 9.9: this visor speaks");
	/* A configured app connected by hand gets its port (no extension
	 * asked for: an empty success). */
	client_send(b, HW_APP_INIT, 6, "{\"app-name\": \"conf\"}");
	expect_success(b, 6);

	arr = hw_appserver_json(fx->as);
	assert_int_equal(json_array_size(arr), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *o = json_array_get(arr, i);
		const char *n = json_string_value(json_object_get(o, "name"));
		assert_int_equal(json_integer_value(json_object_get(o, "port")),
				 !strcmp(n, "conf") ? 7 : 9);
		assert_true(json_is_false(json_object_get(o, "launched")));
		assert_true(json_is_true(json_object_get(o, "initialised")));
	}
	json_decref(arr);
	client_free(a);
	client_free(b);
	wait_napps(fx, 0);
}

static void test_create_loop(void **state)
{
	struct fx *fx = *state;
	struct client *a = client_adopt(fx, "conf", 7);
	struct hw_route_end e;
	char body[512], addr[256], hex[HW_PK_HEXLEN + 1];
	uint8_t pk_b[HW_PK_LEN], id;
	json_t *j;

	end_init(&e);
	assert_int_equal(hw_app_pk_parse(PK_B, pk_b), 0);
	hw_pk_format(fx->id.pk, hex);
	/* A launched app keeps its configured port. */
	client_send(a, HW_APP_INIT, 1, "{\"app-name\": \"conf\", \"port\": 8}");
	expect_failure(a, 1, "port 8: this app's port is 7 (config)");
	client_send(a, HW_APP_INIT, 2, "{\"app-name\": \"conf\"}");
	expect_success(a, 2);

	/* Not to this visor itself; a dial that cannot start says why. */
	snprintf(body, sizeof(body), "{\"pk\": \"%s\", \"port\": 5}", hex);
	client_send(a, HW_APP_CREATE_LOOP, 3, body);
	expect_failure(a, 3, "CreateLoop: pk: that is this visor's own key");
	client_send(a, HW_APP_CREATE_LOOP, 4, "{\"pk\": \"zz\", \"port\": 5}");
	expect_failure(a, 4, "CreateLoop: ");
	fx->dial_fail = 1;
	snprintf(body, sizeof(body), "{\"pk\": \"%s\", \"port\": 5}", PK_B);
	client_send(a, HW_APP_CREATE_LOOP, 5, body);
	expect_failure(a, 5, "no route to the peer");
	fx->dial_fail = 0;

	/* CreateLoop is answered once the fake dial is ready; until then
	 * the loop takes no Send. */
	client_send(a, HW_APP_CREATE_LOOP, 6, body);
	wait_count(fx, &fx->ndials, 1);
	loop_addr(addr, sizeof(addr), 49153, 5);
	snprintf(body, sizeof(body), "{\"addr\": %s, \"payload\": \"\"}",
		 addr);
	client_send(a, HW_APP_SEND, 20, body);
	expect_failure(a, 20, "the loop is not open yet");
	assert_memory_equal(fx->dial_pk, pk_b, HW_PK_LEN);
	assert_int_equal(fx->dial_port, 5);
	assert_int_equal(fx->dial_src, 49153); /* 49152 went to the failure */
	hw_appserver_end_ready(fx->dial_loop, &e);
	j = client_expect(a, HW_APP_SUCCESS, &id);
	assert_int_equal(id, 6);
	assert_string_equal(json_string_value(json_object_get(j, "pk")), hex);
	assert_int_equal(json_integer_value(json_object_get(j, "port")),
			 49153);
	json_decref(j);

	/* The app's Send goes to the route end... */
	loop_addr(addr, sizeof(addr), 49153, 5);
	snprintf(body, sizeof(body), "{\"addr\": %s, \"payload\": \"aGVsbG8=\"}",
		 addr);
	client_send(a, HW_APP_SEND, 7, body);
	expect_success(a, 7);
	assert_int_equal(e.nwritten, 5);
	assert_memory_equal(e.written, "hello", 5);
	/* ...and a full group holds it until it is writable again. */
	e.full = 1;
	client_send(a, HW_APP_SEND, 8, body);
	client_send(a, HW_APP_SEND, 9, body);
	for (int i = 0; i < 20; i++)
		uv_run(&fx->loop, UV_RUN_NOWAIT);
	assert_false(has_frame(a));
	e.full = 0;
	hw_appserver_end_writable(fx->dial_loop);
	expect_success(a, 8);
	expect_success(a, 9);
	assert_int_equal(e.nwritten, 15);

	/* The far end's bytes reach the app as a Send; answering it gives
	 * the credit back. */
	hw_appserver_end_data(fx->dial_loop, (const uint8_t *)"abc", 3);
	j = client_expect(a, HW_APP_SEND, &id);
	assert_string_equal(json_string_value(json_object_get(j, "payload")),
			    "YWJj");
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(j, "addr"), "port")),
			 49153);
	json_decref(j);
	assert_int_equal(e.consumed, 0);
	client_send(a, HW_APP_SUCCESS, id, NULL);
	wait_count(fx, &e.consumed, 3);
	assert_int_equal(e.consumed, 3);

	/* Close from the app closes the route end. */
	client_send(a, HW_APP_CLOSE, 10, addr);
	expect_success(a, 10);
	assert_true(e.closed);
	client_send(a, HW_APP_CLOSE, 11, addr);
	expect_failure(a, 11, "no loop 49153 -> ");

	/* A dial the app closes before it is ready is cancelled, and so is
	 * one whose app goes away. */
	snprintf(body, sizeof(body), "{\"pk\": \"%s\", \"port\": 5}", PK_B);
	client_send(a, HW_APP_CREATE_LOOP, 12, body);
	wait_count(fx, &fx->ndials, 2);
	loop_addr(addr, sizeof(addr), fx->dial_src, 5);
	client_send(a, HW_APP_CLOSE, 13, addr);
	expect_failure(a, 12, "closed by the app while dialing");
	expect_success(a, 13);
	assert_int_equal(fx->ncancels, 1);
	assert_ptr_equal(fx->cancel_loop, fx->dial_loop);
	client_send(a, HW_APP_CREATE_LOOP, 14, body);
	wait_count(fx, &fx->ndials, 3);
	client_free(a);
	wait_napps(fx, 0);
	assert_int_equal(fx->ncancels, 2);
	assert_ptr_equal(fx->cancel_loop, fx->dial_loop);
}

static void test_dial_fails_later(void **state)
{
	struct fx *fx = *state;
	struct client *a = client_connect(fx);
	char body[256];

	client_send(a, HW_APP_INIT, 1, "{\"app-name\": \"x\"}");
	expect_success(a, 1);
	snprintf(body, sizeof(body), "{\"pk\": \"%s\", \"port\": 5}", PK_B);
	client_send(a, HW_APP_CREATE_LOOP, 2, body);
	wait_count(fx, &fx->ndials, 1);
	hw_appserver_end_closed(fx->dial_loop, -ETIMEDOUT, "timed out");
	expect_failure(a, 2, "cannot reach " PK_B " port 5: timed out");
	client_free(a);
	wait_napps(fx, 0);
	assert_int_equal(fx->ncancels, 0);
}

static void test_incoming(void **state)
{
	struct fx *fx = *state;
	struct client *a = client_connect(fx);
	struct hw_route_end e1, e2;
	uint8_t pk_b[HW_PK_LEN], id;
	void *l1, *l2, *l3;
	char msg[128], addr[256], hex[HW_PK_HEXLEN + 1];
	json_t *j;

	end_init(&e1);
	end_init(&e2);
	assert_int_equal(hw_app_pk_parse(PK_B, pk_b), 0);
	hw_pk_format(fx->id.pk, hex);
	/* No app on port 9 yet (an app that has not sent Init holds no
	 * port). */
	assert_int_equal(hw_appserver_incoming(fx->as, pk_b, 77, 9, &l1, msg,
					       sizeof(msg)),
			 -ENOENT);
	client_send(a, HW_APP_INIT, 1, "{\"app-name\": \"x\", \"port\": 9}");
	j = client_expect(a, HW_APP_SUCCESS, NULL);
	json_decref(j);
	assert_int_equal(hw_appserver_incoming(fx->as, pk_b, 77, 10, &l1, msg,
					       sizeof(msg)),
			 -ENOENT);
	assert_int_equal(hw_appserver_incoming(fx->as, pk_b, 77, 9, &l1, msg,
					       sizeof(msg)),
			 0);
	assert_int_equal(hw_appserver_incoming(fx->as, pk_b, 77, 9, &l3, msg,
					       sizeof(msg)),
			 -EEXIST);
	assert_string_equal(msg, "a loop from that port is open already");

	/* Once the group is up the app confirms it. */
	hw_appserver_end_ready(l1, &e1);
	j = client_expect(a, HW_APP_CONFIRM_LOOP, &id);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(j, 0), "pk")),
			    hex);
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(j, 0), "port")),
			 9);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(j, 1), "pk")),
			    PK_B);
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(j, 1), "port")),
			 77);
	json_decref(j);
	client_send(a, HW_APP_SUCCESS, id, NULL);

	/* A second one the app refuses is closed. */
	assert_int_equal(hw_appserver_incoming(fx->as, pk_b, 78, 9, &l2, msg,
					       sizeof(msg)),
			 0);
	hw_appserver_end_ready(l2, &e2);
	j = client_expect(a, HW_APP_CONFIRM_LOOP, &id);
	json_decref(j);
	client_send(a, HW_APP_FAILURE, id, "{\"error\": \"not now\"}");
	wait_count(fx, &e2.closed, 1);
	assert_false(e1.closed);

	/* The far end closing the first is told to the app as a Close. */
	hw_appserver_end_closed(l1, 0, "closed");
	j = client_expect(a, HW_APP_CLOSE, &id);
	assert_int_equal(json_integer_value(json_object_get(j, "port")), 9);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(j, "remote"), "port")),
			 77);
	json_decref(j);
	client_send(a, HW_APP_SUCCESS, id, NULL);
	loop_addr(addr, sizeof(addr), 9, 77);
	client_send(a, HW_APP_CLOSE, 2, addr);
	expect_failure(a, 2, "no loop 9 -> ");
	assert_false(e1.closed); /* closed by the far end, not by us */
	client_free(a);
	wait_napps(fx, 0);
}

/* App "x" on port 9 with loop-fd. */
static struct client *loop_fd_app(struct fx *fx)
{
	return app_with(fx, "{\"app-name\": \"x\", \"port\": 9, "
			"\"extensions\": [\"loop-fd\"]}");
}

static void test_loop_fd(void **state)
{
	struct fx *fx = *state;
	struct client *a = loop_fd_app(fx);
	struct hw_route_end e;
	uint8_t id;

	/* The route end gets one end of a socketpair, the app the other
	 * with ConfirmLoop. */
	incoming_up(fx, a, 77, &e, &id);
	assert_int_equal(a->nfds, 1);
	assert_true(e.pipe_fd >= 0);
	close(e.pipe_fd);
	client_free(a);
	wait_napps(fx, 0);
	assert_true(e.closed);
}

static int loop_fd_eof(void *arg)
{
	struct client *c = arg;
	char b;

	return recv(c->loop_fd, &b, 1, MSG_DONTWAIT) == 0;
}

/* A loop whose route fails: the Close says why, and the app's descriptor
 * reads end of file only once that Close is on the channel, even though
 * routing let go of its end first. */
static void test_loop_fd_failure_order(void **state)
{
	struct fx *fx = *state;
	struct client *a = loop_fd_app(fx);
	struct hw_route_end e;
	uint8_t id;
	char b;
	void *l;
	json_t *j;

	l = incoming_up(fx, a, 77, &e, &id);
	assert_true(a->loop_fd >= 0 && e.pipe_fd >= 0);
	client_send(a, HW_APP_SUCCESS, id, NULL);
	close(e.pipe_fd); /* routing closes its end as the group ends */
	assert_int_equal(recv(a->loop_fd, &b, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	hw_appserver_end_closed(l, -ENOTCONN, "Transport endpoint is not "
					      "connected");
	j = client_expect(a, HW_APP_CLOSE, &id);
	assert_string_equal(json_string_value(json_object_get(j, "error")),
			    "route failed: Transport endpoint is not "
			    "connected");
	assert_int_equal(json_integer_value(json_object_get(j, "port")), 9);
	json_decref(j);
	assert_true(hw_test_run_until(&fx->loop, &fx->tick, loop_fd_eof, a,
				      WAIT_MS));
	client_send(a, HW_APP_SUCCESS, id, NULL);
	client_free(a);
	wait_napps(fx, 0);
}

static void test_hostile(void **state)
{
	struct fx *fx = *state;
	struct client *a = client_connect(fx), *b, *c;
	static const uint8_t short_len[] = {0x00, 0x01, 0x00};
	char byte = 'x', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm;
	int devnull;

	/* Refused requests leave the channel open. */
	client_send(a, 0x55, 1, NULL);
	expect_failure(a, 1, "unknown frame type 0x55");
	client_send(a, HW_APP_INIT, 2, "[1, 2");
	expect_failure(a, 2, "");
	client_send(a, HW_APP_INIT, 3, "{\"app-name\": \"x\", \"port\": 9}");
	json_decref(client_expect(a, HW_APP_SUCCESS, NULL));
	client_send(a, HW_APP_CONFIRM_LOOP, 4, "[]");
	expect_failure(a, 4, "ConfirmLoop is sent by the visor, not by apps");
	client_send(a, HW_APP_SEND, 5, "{\"addr\": 1}");
	expect_failure(a, 5, "");
	client_send(a, HW_APP_SUCCESS, 77, NULL); /* answers nothing */
	client_send(a, HW_APP_CLOSE, 6, "{}");
	expect_failure(a, 6, "Close: ");

	/* A length below 2 ends the channel; the others go on. */
	b = client_connect(fx);
	client_send(b, HW_APP_INIT, 1, "{\"app-name\": \"y\"}");
	expect_success(b, 1);
	client_write(a, short_len, sizeof(short_len));
	expect_closed(a);
	assert_false(hw_appserver_connected(fx->as, "x"));
	assert_true(hw_appserver_connected(fx->as, "y"));

	/* So does a descriptor sent to the visor. */
	devnull = open("/dev/null", O_RDONLY);
	assert_true(devnull >= 0);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &devnull, sizeof(int));
	assert_int_equal(sendmsg(b->fd, &mh, 0), 1);
	close(devnull);
	expect_closed(b);
	assert_false(hw_appserver_connected(fx->as, "y"));

	/* Port 9 is free again. */
	c = app_with(fx, "{\"app-name\": \"z\", \"port\": 9}");
	client_free(a);
	client_free(b);
	client_free(c);
	wait_napps(fx, 0);
}

static void test_disconnect_releases(void **state)
{
	struct fx *fx = *state;
	struct client *a = app_with(fx, "{\"app-name\": \"x\", \"port\": 9}");
	struct hw_route_end e1, e2;
	uint8_t pk_b[HW_PK_LEN], id;
	char msg[128], body[256];
	void *l;

	/* An open loop, one waiting for its confirmation, and a dial. */
	incoming_up(fx, a, 77, &e1, &id);
	client_send(a, HW_APP_SUCCESS, id, NULL);
	incoming_up(fx, a, 78, &e2, &id);
	snprintf(body, sizeof(body), "{\"pk\": \"%s\", \"port\": 5}", PK_B);
	client_send(a, HW_APP_CREATE_LOOP, 2, body);
	wait_count(fx, &fx->ndials, 1);

	client_free(a);
	wait_napps(fx, 0);
	assert_true(e1.closed);
	assert_true(e2.closed);
	assert_int_equal(fx->ncancels, 1);
	assert_ptr_equal(fx->cancel_loop, fx->dial_loop);
	assert_int_equal(hw_app_pk_parse(PK_B, pk_b), 0);
	assert_int_equal(hw_appserver_incoming(fx->as, pk_b, 77, 9, &l, msg,
					       sizeof(msg)),
			 -ENOENT);
	/* The port is free for the next app. */
	client_free(app_with(fx, "{\"app-name\": \"y\", \"port\": 9}"));
	wait_napps(fx, 0);
}

static void test_free_with_apps(void **state)
{
	struct fx *fx = *state;
	struct client *a = app_with(fx, "{\"app-name\": \"x\", \"port\": 9}");
	struct hw_route_end e;
	uint8_t id;

	incoming_up(fx, a, 77, &e, &id);
	/* Freed with an app and a loop: both closed (teardown checks the
	 * loop is empty). */
	hw_appserver_free(fx->as);
	fx->as = NULL;
	assert_true(e.closed);
	expect_closed(a);
	client_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_loop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dial_fails_later, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_incoming, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_loop_fd_failure_order,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disconnect_releases, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_with_apps, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
