/* libhopwire-app against a fake visor: a thread holding the other end of
 * the channel, speaking the protocol through sdk/proto.c and passing loop
 * descriptors with SCM_RIGHTS as the real visor does. The fake visor
 * records its own failures (cmocka's asserts belong to the main thread);
 * each test checks them after joining it, and that no descriptor leaked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sdk/proto.h"
#include "hopwire/app.h"
#include "util/err.h"

#define PK_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define PK_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define PK_B_UPPER                                                             \
	"FFEEDDCCBBAA99887766554433221100FFEEDDCCBBAA99887766554433221100"

#define SDK_TEST_MANY 129 /* one more ConfirmLoop than the SDK queues */

struct fv {
	int fd;        /* the visor's end of the channel */
	int listen_fd; /* when >= 0: accept the channel on it first */
	void (*script)(struct fv *);
	int arg;
	char fail[512];
	pthread_t th;
	int go[2];   /* main -> visor */
	int done[2]; /* visor -> main */
	uint8_t id;  /* the visor's next request ID */
	size_t len, used;
	uint8_t buf[2 * HW_APP_FRAME_MAX];
};

#define VCHECK(v, c)                                                           \
	do {                                                                   \
		if (!(c)) {                                                    \
			if (!(v)->fail[0])                                     \
				snprintf((v)->fail, sizeof((v)->fail),         \
					 "fake visor, line %d: %s", __LINE__, \
					 #c);                                  \
			return;                                                \
		}                                                              \
	} while (0)

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* --- the fake visor's tools --- */

/* The next frame from the app within ms: 1, 0 at end of file or timeout,
 * -1 on a framing error. The body stays valid until the next call. */
static int fv_next(struct fv *v, struct hw_app_frame *f, int ms)
{
	struct pollfd p = {.fd = v->fd, .events = POLLIN};
	ssize_t n;
	int rc;

	memmove(v->buf, v->buf + v->used, v->len - v->used);
	v->len -= v->used;
	v->used = 0;
	for (;;) {
		rc = hw_app_frame_next(v->buf, v->len, f, &v->used);
		if (rc)
			return rc == 1 ? 1 : -1;
		if (poll(&p, 1, ms) <= 0)
			return 0;
		n = read(v->fd, v->buf + v->len, sizeof(v->buf) - v->len);
		if (n <= 0)
			return 0;
		v->len += (size_t)n;
	}
}

static int send_with_fd(int fd, const void *buf, size_t len, int pass)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cb;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *c;

	if (pass >= 0) {
		memset(&cb, 0, sizeof(cb));
		msg.msg_control = cb.b;
		msg.msg_controllen = sizeof(cb.b);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass, sizeof(int));
	}
	return sendmsg(fd, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Sends a frame (body stolen; NULL: empty), with descriptor pass (-1:
 * none) on its first byte. */
static int fv_send(struct fv *v, uint8_t type, uint8_t id, json_t *body,
		   int pass)
{
	uint8_t *out;
	size_t len;
	int rc;

	rc = hw_app_frame_json(type, id, body, &out, &len);
	json_decref(body);
	if (rc)
		return -1;
	rc = send_with_fd(v->fd, out, len, pass);
	free(out);
	return rc;
}

static int fv_failure(struct fv *v, uint8_t id, const char *msg)
{
	return fv_send(v, HW_APP_FAILURE, id, hw_app_error_json(msg), -1);
}

/* Waits for the app's end of file on fd (the channel or a loop). */
static int wait_eof(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char b[256];

	for (;;) {
		if (poll(&p, 1, ms) <= 0)
			return 0;
		ssize_t n = read(fd, b, sizeof(b));
		if (n == 0)
			return 1;
		if (n < 0)
			return errno == ECONNRESET;
	}
}

static void fv_signal(int fd)
{
	if (write(fd, "x", 1) != 1)
		abort();
}

static int fv_wait_signal(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	return poll(&p, 1, ms) == 1 && read(fd, &c, 1) == 1;
}

/* Reads the Init and answers it as a visor with loop-fd does. */
static int fv_init(struct fv *v, uint16_t port)
{
	struct hw_app_frame f;
	struct hw_app_init in;
	char err[HW_APP_ERROR_MAX];

	if (fv_next(v, &f, 5000) != 1 || f.type != HW_APP_INIT ||
	    hw_app_parse_init(f.body, f.len, &in, err, sizeof(err)) ||
	    strcmp(in.protocol, "0.0.1") || !(in.ext & HW_APP_EXT_LOOP_FD))
		return -1;
	return fv_send(v, HW_APP_SUCCESS, f.id,
		       json_pack("{s:i, s:s, s:[s]}", "port", port, "pk", PK_A,
				 "extensions", "loop-fd"),
		       -1);
}

/* Answers the next CreateLoop with a loop: returns the visor's end of
 * the loop's socketpair, or -1. */
static int fv_give_loop(struct fv *v, uint8_t *id_out, uint16_t *port_out)
{
	struct hw_app_frame f;
	struct hw_app_addr a = {.port = 49152};
	char err[HW_APP_ERROR_MAX];
	struct hw_app_addr remote;
	int sp[2];

	if (fv_next(v, &f, 5000) != 1 || f.type != HW_APP_CREATE_LOOP ||
	    hw_app_parse_addr(f.body, f.len, &remote, err, sizeof(err)))
		return -1;
	if (id_out)
		*id_out = f.id;
	if (port_out)
		*port_out = remote.port;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp))
		return -1;
	/* The SDK must hand the loop out blocking whatever it got. */
	fcntl(sp[1], F_SETFL, O_NONBLOCK);
	hw_app_pk_parse(PK_A, a.pk);
	if (fv_send(v, HW_APP_SUCCESS, f.id, hw_app_addr_json(&a), sp[1])) {
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	close(sp[1]);
	return sp[0];
}

/* Sends a ConfirmLoop with a loop; returns the visor's end or -1. */
static int fv_confirm(struct fv *v, uint16_t remote_port)
{
	struct hw_app_addr l = {.port = 10}, r = {.port = remote_port};
	int sp[2];

	hw_app_pk_parse(PK_A, l.pk);
	hw_app_pk_parse(PK_B, r.pk);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp))
		return -1;
	if (fv_send(v, HW_APP_CONFIRM_LOOP, v->id++, hw_app_confirm_json(&l, &r),
		    sp[1])) {
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	close(sp[1]);
	return sp[0];
}

static void *fv_main(void *arg)
{
	struct fv *v = arg;

	if (v->listen_fd >= 0) {
		v->fd = accept(v->listen_fd, NULL, NULL);
		if (v->fd < 0) {
			snprintf(v->fail, sizeof(v->fail), "accept failed");
			return NULL;
		}
	}
	v->script(v);
	close(v->fd);
	v->fd = -1;
	return NULL;
}

static struct fv *fv_new(void (*script)(struct fv *), int arg)
{
	struct fv *v = calloc(1, sizeof(*v));

	assert_non_null(v);
	assert_int_equal(pipe(v->go), 0);
	assert_int_equal(pipe(v->done), 0);
	v->fd = -1;
	v->listen_fd = -1;
	v->script = script;
	v->arg = arg;
	return v;
}

static void fv_run(struct fv *v)
{
	assert_int_equal(pthread_create(&v->th, NULL, fv_main, v), 0);
}

/* Starts the fake visor on a socketpair whose app end is in
 * HOPWIRE_APP_FD. */
static struct fv *fv_start(void (*script)(struct fv *), int arg)
{
	struct fv *v = fv_new(script, arg);
	int sp[2];
	char num[16];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp),
			 0);
	v->fd = sp[0];
	snprintf(num, sizeof(num), "%d", sp[1]);
	setenv("HOPWIRE_APP_FD", num, 1);
	fv_run(v);
	return v;
}

static void fv_finish(struct fv *v)
{
	pthread_join(v->th, NULL);
	unsetenv("HOPWIRE_APP_FD");
	unsetenv("HOPWIRE_APP_SOCKET");
	close(v->go[0]);
	close(v->go[1]);
	close(v->done[0]);
	close(v->done[1]);
	if (v->listen_fd >= 0)
		close(v->listen_fd);
	if (v->fail[0]) {
		char msg[sizeof(v->fail)];
		memcpy(msg, v->fail, sizeof(msg));
		free(v);
		fail_msg("%s", msg);
	}
	free(v);
}

static struct hw_app *setup_ok(const char *name)
{
	struct hw_app_config cfg = {.name = name, .version = "1.0"};
	struct hw_app *app = NULL;
	char err[256];
	int rc = hw_app_setup(&app, &cfg, err, sizeof(err));

	if (rc)
		fail_msg("hw_app_setup: %d: %s", rc, err);
	return app;
}

static void check_loop_fd(int fd)
{
	int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);

	assert_true(fl >= 0 && !(fl & O_NONBLOCK));
	assert_true(fdfl >= 0 && (fdfl & FD_CLOEXEC));
}

/* --- setup --- */

static void script_init_then_eof(struct fv *v)
{
	struct hw_app_frame f;
	struct hw_app_init in;
	char err[HW_APP_ERROR_MAX];

	VCHECK(v, fv_next(v, &f, 5000) == 1);
	VCHECK(v, f.type == HW_APP_INIT);
	VCHECK(v, hw_app_parse_init(f.body, f.len, &in, err, sizeof(err)) ==
			  0);
	VCHECK(v, !strcmp(in.name, "hello"));
	VCHECK(v, !strcmp(in.version, "1.0"));
	VCHECK(v, !strcmp(in.protocol, "0.0.1"));
	VCHECK(v, in.ext == HW_APP_EXT_LOOP_FD);
	VCHECK(v, in.extended);
	VCHECK(v, in.port == (uint16_t)v->arg);
	VCHECK(v, fv_send(v, HW_APP_SUCCESS, f.id,
			  json_pack("{s:i, s:s, s:[s, s]}", "port", 10, "pk",
				    "FFEEDDCCBBAA99887766554433221100FFEEDDCCBB"
				    "AA99887766554433221100",
				    "extensions", "other", "loop-fd"),
			  -1) == 0);
	VCHECK(v, wait_eof(v->fd, 5000));
}

static void test_setup_env(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_init_then_eof, 0);
	struct hw_app *app = setup_ok("hello");

	assert_int_equal(hw_app_port(app), 10);
	assert_string_equal(hw_app_local_pk(app), PK_B);
	assert_string_equal(hw_app_last_error(app), "");
	assert_true(hw_app_fd(app) >= 0);
	/* The channel is not handed to programs the app runs. */
	assert_true(fcntl(hw_app_fd(app), F_GETFD) & FD_CLOEXEC);
	hw_app_close(app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

static int listen_unix(char *path, size_t cap)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[] = "/tmp/hw-app-test-XXXXXX";
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, cap, "%s/apps.sock", dir);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static void remove_unix(const char *path)
{
	char dir[256];

	unlink(path);
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	rmdir(dir);
}

static void test_setup_socket_path(void **state)
{
	int before = count_fds();
	struct hw_app_config cfg = {.name = "hello", .version = "1.0",
				    .port = 4000};
	struct hw_app *app = NULL;
	char path[256], err[256];
	struct fv *v;

	for (int pass = 0; pass < 2; pass++) {
		v = fv_new(script_init_then_eof, 4000);
		v->listen_fd = listen_unix(path, sizeof(path));
		if (pass == 0) {
			/* socket_path wins over the environment. */
			cfg.socket_path = path;
			setenv("HOPWIRE_APP_FD", "999", 1);
			setenv("HOPWIRE_APP_SOCKET", "/nonexistent", 1);
		} else {
			cfg.socket_path = NULL;
			unsetenv("HOPWIRE_APP_FD");
			setenv("HOPWIRE_APP_SOCKET", path, 1);
		}
		fv_run(v);
		assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)),
				 0);
		assert_int_equal(hw_app_port(app), 10);
		hw_app_close(app);
		fv_finish(v);
		remove_unix(path);
	}
	assert_int_equal(count_fds(), before);
}

static void test_setup_no_channel(void **state)
{
	struct hw_app_config cfg = {.name = "hello"};
	struct hw_app *app = (struct hw_app *)&cfg;
	char err[256];
	int p[2], before = count_fds();

	unsetenv("HOPWIRE_APP_FD");
	unsetenv("HOPWIRE_APP_SOCKET");
	assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)), -ENOENT);
	assert_null(app);
	assert_string_equal(err,
			    "HOPWIRE_APP_FD and HOPWIRE_APP_SOCKET are unset: "
			    "start this app from a visor or name the visor's "
			    "app socket");
	setenv("HOPWIRE_APP_FD", "12x", 1);
	assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "HOPWIRE_APP_FD '12x': not a descriptor number");
	setenv("HOPWIRE_APP_FD", "-3", 1);
	assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)), -EINVAL);
	setenv("HOPWIRE_APP_FD", "999", 1);
	assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)), -EBADF);
	assert_int_equal(pipe(p), 0);
	{
		char num[16];
		snprintf(num, sizeof(num), "%d", p[0]);
		setenv("HOPWIRE_APP_FD", num, 1);
	}
	assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)),
			 -ENOTSOCK);
	close(p[0]);
	close(p[1]);
	unsetenv("HOPWIRE_APP_FD");
	cfg.socket_path = "/nonexistent/apps.sock";
	assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/apps.sock"));
	/* A bad config is refused before any I/O. */
	cfg.name = "";
	assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)), -EINVAL);
	cfg.name = NULL;
	assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)), -EINVAL);
	assert_int_equal(hw_app_setup(&app, NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(count_fds(), before);
}

/* arg: 0 refuse, 1 no extensions, 2 extensions without loop-fd, 3 broken
 * answer, 4 no answer, 5 a ConfirmLoop before the answer, 6 close. */
static void script_init_variants(struct fv *v)
{
	struct hw_app_frame f;

	VCHECK(v, fv_next(v, &f, 5000) == 1 && f.type == HW_APP_INIT);
	switch (v->arg) {
	case 0:
		VCHECK(v, fv_failure(v, f.id,
				     "port 1 belongs to app 'chat'") == 0);
		break;
	case 1:
		VCHECK(v, fv_send(v, HW_APP_SUCCESS, f.id, NULL, -1) == 0);
		break;
	case 2:
		VCHECK(v, fv_send(v, HW_APP_SUCCESS, f.id,
				  json_pack("{s:i, s:s, s:[]}", "port", 0, "pk",
					    PK_A, "extensions"),
				  -1) == 0);
		break;
	case 3:
		VCHECK(v, fv_send(v, HW_APP_SUCCESS, f.id,
				  json_pack("{s:s, s:s, s:[s]}", "port", "x",
					    "pk", PK_A, "extensions",
					    "loop-fd"),
				  -1) == 0);
		break;
	case 4:
		break;
	case 5: {
		int l = fv_confirm(v, 5);
		VCHECK(v, l >= 0);
		close(l);
		break;
	}
	case 6:
		return;
	}
	VCHECK(v, wait_eof(v->fd, 5000));
}

static void test_setup_failures(void **state)
{
	static const struct {
		int rc;
		const char *err;
	} want[] = {
		{-EPERM, "visor refused: port 1 belongs to app 'chat'"},
		{-EPROTONOSUPPORT, "the visor does not offer loop-fd"},
		{-EPROTONOSUPPORT, "the visor does not offer loop-fd"},
		{-EPROTO, "the visor broke the app protocol: the visor's "
			  "answer to Init: port: must be a whole number "
			  "0..65535"},
		{-ETIMEDOUT, "the visor did not answer Init within 300 ms"},
		{-EPROTO, "the visor broke the app protocol: the visor sent "
			  "ConfirmLoop before answering Init"},
		{-EPIPE, "the visor closed the channel before answering Init"},
	};
	struct hw_app_config cfg = {.name = "hello", .timeout_ms = 300};
	int before = count_fds();

	for (int i = 0; i < 7; i++) {
		struct fv *v = fv_start(script_init_variants, i);
		struct hw_app *app = (struct hw_app *)v;
		char err[256];

		assert_int_equal(hw_app_setup(&app, &cfg, err, sizeof(err)),
				 want[i].rc);
		assert_null(app);
		assert_string_equal(err, want[i].err);
		fv_finish(v);
		/* The inherited channel was closed: no leak either way. */
		assert_int_equal(count_fds(), before);
	}
}

/* --- dial --- */

/* arg 0: give a loop and exchange data on it; 1: refuse; 2: answer late
 * (after the dial timed out), then give a second loop. */
static void script_dial(struct fv *v)
{
	struct hw_app_frame f;
	uint8_t id1 = 0, id2 = 0;
	uint16_t port = 0;
	char b[16];
	int lfd, late;

	VCHECK(v, fv_init(v, 10) == 0);
	if (v->arg == 0) {
		VCHECK(v, (lfd = fv_give_loop(v, NULL, &port)) >= 0);
		VCHECK(v, port == 7);
		VCHECK(v, read(lfd, b, 5) == 5 && !memcmp(b, "hello", 5));
		VCHECK(v, write(lfd, "world", 5) == 5);
		/* The app closing its descriptor closes the loop. */
		VCHECK(v, wait_eof(lfd, 5000));
		close(lfd);
	} else if (v->arg == 1) {
		VCHECK(v, fv_next(v, &f, 5000) == 1 &&
				  f.type == HW_APP_CREATE_LOOP);
		VCHECK(v, fv_failure(v, f.id, "no route to " PK_B) == 0);
	} else {
		VCHECK(v, fv_next(v, &f, 5000) == 1 &&
				  f.type == HW_APP_CREATE_LOOP);
		id1 = f.id;
		VCHECK(v, fv_wait_signal(v->go[0], 5000)); /* it timed out */
		/* The late answer: the SDK closes that loop at once. */
		{
			struct hw_app_addr a = {.port = 49999};
			int sp[2];
			VCHECK(v, socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
			hw_app_pk_parse(PK_A, a.pk);
			VCHECK(v, fv_send(v, HW_APP_SUCCESS, id1,
					  hw_app_addr_json(&a), sp[1]) == 0);
			close(sp[1]);
			late = sp[0];
		}
		VCHECK(v, (lfd = fv_give_loop(v, &id2, NULL)) >= 0);
		VCHECK(v, id2 != id1);
		VCHECK(v, wait_eof(late, 5000));
		close(late);
		close(lfd);
	}
	VCHECK(v, wait_eof(v->fd, 5000));
}

static void test_dial(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_dial, 0);
	struct hw_app *app = setup_ok("hello");
	struct hw_app_loop loop;
	char b[16];

	assert_int_equal(hw_app_dial(app, PK_B_UPPER, 7, &loop, 2000), 0);
	assert_true(loop.fd >= 0);
	check_loop_fd(loop.fd);
	assert_string_equal(loop.local_pk, PK_A);
	assert_int_equal(loop.local_port, 49152);
	assert_string_equal(loop.remote_pk, PK_B);
	assert_int_equal(loop.remote_port, 7);
	assert_int_equal(hw_app_write(loop.fd, "hello", 5), 5);
	assert_int_equal(hw_app_read(loop.fd, b, 5), 5);
	assert_memory_equal(b, "world", 5);
	assert_int_equal(hw_app_loop_close(loop.fd), 0);
	hw_app_close(app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

static void test_dial_refused(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_dial, 1);
	struct hw_app *app = setup_ok("hello");
	struct hw_app_loop loop;

	assert_int_equal(hw_app_dial(app, PK_B, 7, &loop, 2000),
			 -ECONNREFUSED);
	assert_string_equal(hw_app_last_error(app), "no route to " PK_B);
	/* Bad arguments never reach the visor. */
	assert_int_equal(hw_app_dial(app, "abc", 7, &loop, 2000), -EINVAL);
	assert_string_equal(hw_app_last_error(app), "no route to " PK_B);
	assert_int_equal(hw_app_dial(app, PK_B, 0, &loop, 2000), -EINVAL);
	assert_int_equal(hw_app_dial(app, NULL, 7, &loop, 2000), -EINVAL);
	assert_int_equal(hw_app_dial(app, PK_B "0", 7, &loop, 2000), -EINVAL);
	assert_int_equal(hw_app_dial(NULL, PK_B, 7, &loop, 2000), -EINVAL);
	hw_app_close(app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

static void test_dial_timeout(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_dial, 2);
	struct hw_app *app = setup_ok("hello");
	struct hw_app_loop loop;

	assert_int_equal(hw_app_dial(app, PK_B, 7, &loop, 200), -ETIMEDOUT);
	fv_signal(v->go[1]);
	/* This dial reads the late answer too and closes its loop. */
	assert_int_equal(hw_app_dial(app, PK_B, 7, &loop, 5000), 0);
	assert_int_equal(loop.local_port, 49152);
	hw_app_loop_close(loop.fd);
	hw_app_close(app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

/* --- accept --- */

/* arg 0: one ConfirmLoop when told, data both ways; 1: 129 ConfirmLoops
 * while the app waits for a dial (the last one refused). */
static void script_accept(struct fv *v)
{
	struct hw_app_frame f;
	char b[16];
	int lfd, fds[SDK_TEST_MANY];
	uint8_t dial_id;

	VCHECK(v, fv_init(v, 10) == 0);
	if (v->arg == 0) {
		VCHECK(v, fv_wait_signal(v->go[0], 5000));
		VCHECK(v, (lfd = fv_confirm(v, 49160)) >= 0);
		VCHECK(v, fv_next(v, &f, 5000) == 1);
		VCHECK(v, f.type == HW_APP_SUCCESS && f.id == 0 && f.len == 0);
		VCHECK(v, write(lfd, "ping\n", 5) == 5);
		VCHECK(v, read(lfd, b, 5) == 5 && !memcmp(b, "pong\n", 5));
		VCHECK(v, wait_eof(lfd, 5000));
		close(lfd);
	} else {
		VCHECK(v, fv_next(v, &f, 5000) == 1 &&
				  f.type == HW_APP_CREATE_LOOP);
		dial_id = f.id;
		for (int i = 0; i < SDK_TEST_MANY; i++) {
			fds[i] = fv_confirm(v, (uint16_t)(50000 + i));
			VCHECK(v, fds[i] >= 0);
			close(fds[i]);
		}
		for (int i = 0; i < SDK_TEST_MANY; i++) {
			char err[HW_APP_ERROR_MAX];
			VCHECK(v, fv_next(v, &f, 5000) == 1);
			VCHECK(v, f.id == (uint8_t)i);
			if (i < 128) {
				VCHECK(v, f.type == HW_APP_SUCCESS);
				continue;
			}
			VCHECK(v, f.type == HW_APP_FAILURE);
			hw_app_parse_error(f.body, f.len, err, sizeof(err));
			VCHECK(v, !strcmp(err, "app is not accepting"));
		}
		VCHECK(v, fv_failure(v, dial_id, "done") == 0);
	}
	VCHECK(v, wait_eof(v->fd, 5000));
}

static void test_accept(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_accept, 0);
	struct hw_app *app = setup_ok("hello");
	struct hw_app_loop loop;
	struct pollfd p = {.fd = hw_app_fd(app), .events = POLLIN};
	int rc = -EAGAIN;
	char b[16];

	assert_int_equal(hw_app_accept(app, &loop, 0), -EAGAIN);
	assert_int_equal(hw_app_accept(app, &loop, 50), -EAGAIN);
	assert_int_equal(poll(&p, 1, 0), 0);
	fv_signal(v->go[1]);
	for (int i = 0; i < 100 && rc == -EAGAIN; i++) {
		assert_int_equal(poll(&p, 1, 5000), 1);
		rc = hw_app_accept(app, &loop, 0);
	}
	assert_int_equal(rc, 0);
	check_loop_fd(loop.fd);
	assert_string_equal(loop.local_pk, PK_A);
	assert_int_equal(loop.local_port, 10);
	assert_string_equal(loop.remote_pk, PK_B);
	assert_int_equal(loop.remote_port, 49160);
	assert_int_equal(hw_app_read(loop.fd, b, 5), 5);
	assert_memory_equal(b, "ping\n", 5);
	assert_int_equal(hw_app_write(loop.fd, "pong\n", 5), 5);
	hw_app_loop_close(loop.fd);
	hw_app_close(app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

static void test_accept_queue_full(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_accept, 1);
	struct hw_app *app = setup_ok("hello");
	struct hw_app_loop loop;

	/* While the dial waits, its thread reads all the ConfirmLoops. */
	assert_int_equal(hw_app_dial(app, PK_B, 7, &loop, 10000),
			 -ECONNREFUSED);
	assert_string_equal(hw_app_last_error(app), "done");
	/* The channel holds nothing now, yet hw_app_fd tells a poller that
	 * loops wait, until the last is taken. */
	struct pollfd pfd = {.fd = hw_app_fd(app), .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 0), 1);
	for (int i = 0; i < 128; i++) {
		assert_int_equal(hw_app_accept(app, &loop, 0), 0);
		assert_int_equal(loop.remote_port, 50000 + i);
		/* The far end is already gone. */
		char c;
		assert_int_equal(hw_app_read(loop.fd, &c, 1), 0);
		assert_int_equal(hw_app_write(loop.fd, "x", 1), -EPIPE);
		hw_app_loop_close(loop.fd);
	}
	assert_int_equal(hw_app_accept(app, &loop, 0), -EAGAIN);
	assert_int_equal(poll(&pfd, 1, 0), 0);
	hw_app_close(app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

/* --- threads --- */

struct acceptor {
	struct hw_app *app;
	struct hw_app_loop loop;
	int rc;
};

static void *accept_thread(void *arg)
{
	struct acceptor *a = arg;

	a->rc = hw_app_accept(a->app, &a->loop, -1);
	return NULL;
}

static void script_concurrent(struct fv *v)
{
	int l1, l2;

	VCHECK(v, fv_init(v, 10) == 0);
	/* The dial is answered while an accept blocks in another thread. */
	VCHECK(v, (l1 = fv_give_loop(v, NULL, NULL)) >= 0);
	VCHECK(v, fv_wait_signal(v->go[0], 5000));
	VCHECK(v, (l2 = fv_confirm(v, 49170)) >= 0);
	close(l1);
	close(l2);
	VCHECK(v, wait_eof(v->fd, 5000));
}

static void test_concurrent(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_concurrent, 0);
	struct acceptor a = {.app = setup_ok("hello"), .rc = 1};
	struct hw_app_loop loop;
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, accept_thread, &a), 0);
	usleep(100 * 1000); /* let the accept become the reader */
	assert_int_equal(hw_app_dial(a.app, PK_B, 7, &loop, 5000), 0);
	hw_app_loop_close(loop.fd);
	fv_signal(v->go[1]);
	pthread_join(th, NULL);
	assert_int_equal(a.rc, 0);
	assert_int_equal(a.loop.remote_port, 49170);
	hw_app_loop_close(a.loop.fd);
	hw_app_close(a.app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

/* Many threads dialling at once, one accepting: every dial gets its own
 * loop and the IDs never collide. */
static void script_many_dials(struct fv *v)
{
	VCHECK(v, fv_init(v, 10) == 0);
	for (int i = 0; i < 8 * 20; i++) {
		int lfd = fv_give_loop(v, NULL, NULL);
		VCHECK(v, lfd >= 0);
		close(lfd);
	}
	VCHECK(v, wait_eof(v->fd, 10000));
}

static void *dial_thread(void *arg)
{
	struct acceptor *a = arg;

	for (int i = 0; i < 20 && a->rc == 0; i++) {
		a->rc = hw_app_dial(a->app, PK_B, (uint16_t)(1 + i), &a->loop,
				    10000);
		if (a->rc == 0)
			hw_app_loop_close(a->loop.fd);
	}
	return NULL;
}

static void test_many_dials(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_many_dials, 0);
	struct hw_app *app = setup_ok("hello");
	struct acceptor d[8];
	struct acceptor acc = {.app = app};
	pthread_t th[8], ath;

	assert_int_equal(pthread_create(&ath, NULL, accept_thread, &acc), 0);
	for (int i = 0; i < 8; i++) {
		d[i].app = app;
		d[i].rc = 0;
		assert_int_equal(pthread_create(&th[i], NULL, dial_thread,
						&d[i]),
				 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(d[i].rc, 0);
	}
	/* The visor ends the channel: the blocked accept sees the end. */
	shutdown(v->fd, SHUT_WR);
	pthread_join(ath, NULL);
	assert_int_equal(acc.rc, -EPIPE);
	hw_app_close(app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

/* --- the visor ending or breaking the channel --- */

static void script_close(struct fv *v)
{
	VCHECK(v, fv_init(v, 10) == 0);
	VCHECK(v, fv_wait_signal(v->go[0], 5000));
}

static void test_visor_closes(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_close, 0);
	struct hw_app *app = setup_ok("hello");
	struct hw_app_loop loop;
	struct pollfd p = {.fd = hw_app_fd(app), .events = POLLIN};

	fv_signal(v->go[1]);
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(hw_app_accept(app, &loop, 5000), -EPIPE);
	assert_int_equal(hw_app_accept(app, &loop, 0), -EPIPE);
	assert_int_equal(hw_app_accept(app, &loop, -1), -EPIPE);
	assert_int_equal(hw_app_dial(app, PK_B, 7, &loop, 1000), -EPIPE);
	hw_app_close(app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

/* Garbage of several kinds (arg), each after a good Init. */
static void script_garbage(struct fv *v)
{
	static const uint8_t short_len[] = {0x00, 0x01, 0xff};
	struct hw_app_frame f;
	int sp[2];

	VCHECK(v, fv_init(v, 10) == 0);
	switch (v->arg) {
	case 0: /* a length below 2 */
		VCHECK(v, send_with_fd(v->fd, short_len, 3, -1) == 0);
		break;
	case 1: /* a ConfirmLoop that is not JSON */
		VCHECK(v, send_with_fd(v->fd, "\x00\x05\x02\x00[{]", 7, -1) ==
				  0);
		break;
	case 2: /* a ConfirmLoop without its descriptor */
	{
		struct hw_app_addr a = {.port = 1};
		VCHECK(v, fv_send(v, HW_APP_CONFIRM_LOOP, 0,
				  hw_app_confirm_json(&a, &a), -1) == 0);
		break;
	}
	case 3: /* the answer to CreateLoop is not an address */
		VCHECK(v, fv_next(v, &f, 5000) == 1);
		VCHECK(v, socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
		VCHECK(v, fv_send(v, HW_APP_SUCCESS, f.id,
				  json_pack("{s:i}", "port", 3), sp[1]) == 0);
		close(sp[0]);
		close(sp[1]);
		break;
	case 4: /* descriptors with frames that carry none */
		for (int i = 0; i < 20; i++) {
			VCHECK(v, socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
			struct hw_app_loop_addr la = {.port = 1,
						      .remote = {.port = 1}};
			/* The SDK gives up at the first: sends may fail. */
			int rc = fv_send(v, HW_APP_CLOSE, (uint8_t)i,
					 hw_app_loop_json(&la), sp[1]);
			close(sp[0]);
			close(sp[1]);
			if (rc)
				break;
		}
		break;
	case 5: /* random bytes */
	{
		uint8_t junk[4096];
		unsigned s = 12345;
		for (size_t i = 0; i < sizeof(junk); i++) {
			s = s * 1103515245u + 12345u;
			junk[i] = (uint8_t)(s >> 16);
		}
		junk[0] = 0x00; /* a 2..255-byte frame first */
		VCHECK(v, send_with_fd(v->fd, junk, sizeof(junk), -1) == 0);
		/* What the SDK makes of it, the channel then ends. */
		return;
	}
	case 6: /* a ConfirmLoop with two descriptors in one message */
	{
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(2 * sizeof(int))];
		} cb;
		uint8_t *out;
		size_t len;
		struct hw_app_addr a = {.port = 1};
		json_t *j = hw_app_confirm_json(&a, &a);
		struct iovec iov;
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		struct cmsghdr *c;
		int two[2];

		VCHECK(v, socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
		two[0] = sp[0];
		two[1] = sp[1];
		hw_app_frame_json(HW_APP_CONFIRM_LOOP, 0, j, &out, &len);
		json_decref(j);
		iov.iov_base = out;
		iov.iov_len = len;
		memset(&cb, 0, sizeof(cb));
		msg.msg_control = cb.b;
		msg.msg_controllen = sizeof(cb.b);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(2 * sizeof(int));
		memcpy(CMSG_DATA(c), two, sizeof(two));
		VCHECK(v, sendmsg(v->fd, &msg, 0) == (ssize_t)len);
		free(out);
		close(sp[0]);
		close(sp[1]);
		/* The ConfirmLoop is taken (one descriptor), then the extra
		 * one is refused at the end of the pass. */
		break;
	}
	}
	/* The SDK ends the channel. */
	VCHECK(v, wait_eof(v->fd, 5000));
}

static void test_garbage(void **state)
{
	int before = count_fds();

	for (int i = 0; i < 7; i++) {
		struct fv *v = fv_start(script_garbage, i);
		struct hw_app *app = setup_ok("hello");
		struct hw_app_loop loop;
		int rc;

		if (i == 3) {
			rc = hw_app_dial(app, PK_B, 7, &loop, 5000);
			assert_int_equal(rc, -EPROTO);
		} else {
			do
				rc = hw_app_accept(app, &loop, 5000);
			while (rc == 0 && hw_app_loop_close(loop.fd) == 0);
			if (i == 5)
				assert_true(rc == -EPROTO || rc == -EPIPE);
			else
				assert_int_equal(rc, -EPROTO);
		}
		/* Every later call sees the same. */
		assert_int_equal(hw_app_accept(app, &loop, 0), rc);
		assert_int_equal(hw_app_dial(app, PK_B, 7, &loop, 100), rc);
		hw_app_close(app);
		fv_finish(v);
		assert_int_equal(count_fds(), before);
	}
}

/* Requests from the visor the SDK answers without breaking anything. */
static void script_requests(struct fv *v)
{
	struct hw_app_loop_addr la = {.port = 49152, .remote = {.port = 7}};
	struct hw_app_frame f;
	char err[HW_APP_ERROR_MAX];
	uint8_t *out;
	size_t len;
	int lfd;

	VCHECK(v, fv_init(v, 10) == 0);
	hw_app_pk_parse(PK_B, la.remote.pk);
	VCHECK(v, fv_send(v, HW_APP_CLOSE, 1, hw_app_loop_json(&la), -1) == 0);
	VCHECK(v, hw_app_frame_send(2, &la, (const uint8_t *)"x", 1, &out,
				    &len) == 0);
	VCHECK(v, send_with_fd(v->fd, out, len, -1) == 0);
	free(out);
	VCHECK(v, send_with_fd(v->fd, "\x00\x04\x07\x03{}", 6, -1) == 0);
	VCHECK(v, send_with_fd(v->fd, "\x00\x02\x00\x04", 4, -1) == 0);
	/* A response to nothing the app asked: ignored. */
	VCHECK(v, send_with_fd(v->fd, "\x00\x02\xff\x63", 4, -1) == 0);

	VCHECK(v, fv_next(v, &f, 5000) == 1);
	VCHECK(v, f.type == HW_APP_SUCCESS && f.id == 1 && f.len == 0);
	VCHECK(v, fv_next(v, &f, 5000) == 1);
	VCHECK(v, f.type == HW_APP_FAILURE && f.id == 2);
	hw_app_parse_error(f.body, f.len, err, sizeof(err));
	VCHECK(v, !strcmp(err, "loop data goes through its descriptor "
			       "(loop-fd)"));
	VCHECK(v, fv_next(v, &f, 5000) == 1);
	VCHECK(v, f.type == HW_APP_FAILURE && f.id == 3);
	hw_app_parse_error(f.body, f.len, err, sizeof(err));
	VCHECK(v, !strcmp(err, "unknown frame type 0x07"));
	VCHECK(v, fv_next(v, &f, 5000) == 1);
	VCHECK(v, f.type == HW_APP_FAILURE && f.id == 4);
	hw_app_parse_error(f.body, f.len, err, sizeof(err));
	VCHECK(v, !strcmp(err, "Init is sent by apps, not by visors"));
	/* Still in business. */
	VCHECK(v, (lfd = fv_give_loop(v, NULL, NULL)) >= 0);
	close(lfd);
	VCHECK(v, wait_eof(v->fd, 5000));
}

static void test_visor_requests(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_requests, 0);
	struct hw_app *app = setup_ok("hello");
	struct hw_app_loop loop;

	assert_int_equal(hw_app_accept(app, &loop, 300), -EAGAIN);
	assert_int_equal(hw_app_dial(app, PK_B, 7, &loop, 5000), 0);
	hw_app_loop_close(loop.fd);
	hw_app_close(app);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

/* Three loops end three ways, each Close before the loop's end of file
 * as the real visor sends it: a route failure (Close with "error"), an
 * orderly end (Close without), and the channel's end before any Close. */
static void script_loop_ends(struct fv *v)
{
	struct hw_app_loop_addr la = {.port = 49152};
	int lfd[3] = {-1, -1, -1};

	hw_app_pk_parse(PK_B, la.remote.pk);
	VCHECK(v, fv_init(v, 0) == 0);
	for (int i = 0; i < 3; i++)
		VCHECK(v, (lfd[i] = fv_give_loop(v, NULL, NULL)) >= 0);
	VCHECK(v, fv_wait_signal(v->go[0], 5000));
	la.remote.port = 7;
	VCHECK(v, fv_send(v, HW_APP_CLOSE, v->id++,
			  hw_app_close_json(&la, "route failed: test"),
			  -1) == 0);
	close(lfd[0]);
	la.remote.port = 8;
	VCHECK(v, fv_send(v, HW_APP_CLOSE, v->id++,
			  hw_app_close_json(&la, NULL), -1) == 0);
	close(lfd[1]);
	VCHECK(v, fv_wait_signal(v->go[0], 5000));
	close(v->fd);
	v->fd = -1;
	close(lfd[2]);
}

static void *accept_briefly(void *arg)
{
	struct hw_app_loop loop;

	return (void *)(intptr_t)hw_app_accept(arg, &loop, 500);
}

static void test_loop_ends(void **state)
{
	int before = count_fds();
	struct fv *v = fv_start(script_loop_ends, 0);
	struct hw_app *app = setup_ok("hello");
	struct hw_app_loop loop[3];
	pthread_t th;
	void *res;
	char b[8];

	for (int i = 0; i < 3; i++)
		assert_int_equal(hw_app_dial(app, PK_B, (uint16_t)(7 + i),
					     &loop[i], 2000),
				 0);
	for (int i = 0; i < 3; i++)
		assert_null(hw_app_loop_error(loop[i].fd)); /* still open */
	/* Another thread reads the channel meanwhile: the reads below wait
	 * for it to take the Close. */
	assert_int_equal(pthread_create(&th, NULL, accept_briefly, app), 0);
	usleep(50 * 1000);
	fv_signal(v->go[1]);

	/* The failure: a distinct error, from read and write, with why. */
	assert_int_equal(hw_app_read(loop[0].fd, b, sizeof(b)), -ENETRESET);
	assert_string_equal(hw_app_loop_error(loop[0].fd),
			    "route failed: test");
	assert_int_equal(hw_app_write(loop[0].fd, "x", 1), -ENETRESET);
	assert_int_equal(hw_app_read(loop[0].fd, b, sizeof(b)), -ENETRESET);
	/* The orderly end reads 0; plain read(2) and then asking works. */
	assert_int_equal(read(loop[1].fd, b, sizeof(b)), 0);
	assert_null(hw_app_loop_error(loop[1].fd));
	assert_int_equal(hw_app_read(loop[1].fd, b, sizeof(b)), 0);
	assert_int_equal(pthread_join(th, &res), 0);
	assert_int_equal((intptr_t)res, -EAGAIN);

	/* The visor gone before saying: that is no orderly end either. */
	fv_signal(v->go[1]);
	assert_int_equal(hw_app_read(loop[2].fd, b, sizeof(b)), -ENETRESET);
	assert_string_equal(hw_app_loop_error(loop[2].fd),
			    "the visor closed the channel");

	/* Closed loops are forgotten. */
	assert_int_equal(hw_app_loop_close(loop[0].fd), 0);
	assert_null(hw_app_loop_error(loop[0].fd));
	hw_app_loop_close(loop[1].fd);
	hw_app_close(app); /* forgets loop[2] */
	assert_null(hw_app_loop_error(loop[2].fd));
	hw_app_loop_close(loop[2].fd);
	fv_finish(v);
	assert_int_equal(count_fds(), before);
}

static void test_io_helpers(void **state)
{
	int sp[2], fl;
	char b[8];
	static char big[1 << 20];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	assert_int_equal(hw_app_write(sp[0], "abc", 3), 3);
	assert_int_equal(hw_app_read(sp[1], b, sizeof(b)), 3);
	/* Non-blocking: as much as fits, then -EAGAIN. */
	fl = fcntl(sp[0], F_GETFL);
	fcntl(sp[0], F_SETFL, fl | O_NONBLOCK);
	ssize_t n = hw_app_write(sp[0], big, sizeof(big));
	assert_true(n > 0 && n < (ssize_t)sizeof(big));
	assert_int_equal(hw_app_write(sp[0], big, sizeof(big)), -EAGAIN);
	assert_int_equal(hw_app_loop_close(sp[1]), 0);
	/* The far end gone: -EPIPE, not SIGPIPE. */
	assert_int_equal(hw_app_write(sp[0], "x", 1), -EPIPE);
	assert_int_equal(hw_app_loop_close(sp[0]), 0);
	assert_int_equal(hw_app_loop_close(sp[0]), -EBADF);
	assert_int_equal(hw_app_read(-1, b, 1), -EBADF);
	/* NULL apps. */
	hw_app_close(NULL);
	assert_int_equal(hw_app_port(NULL), 0);
	assert_int_equal(hw_app_fd(NULL), -1);
	assert_string_equal(hw_app_last_error(NULL), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_setup_env),
		cmocka_unit_test(test_setup_socket_path),
		cmocka_unit_test(test_setup_no_channel),
		cmocka_unit_test(test_setup_failures),
		cmocka_unit_test(test_dial),
		cmocka_unit_test(test_dial_refused),
		cmocka_unit_test(test_dial_timeout),
		cmocka_unit_test(test_accept),
		cmocka_unit_test(test_accept_queue_full),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_many_dials),
		cmocka_unit_test(test_visor_closes),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_visor_requests),
		cmocka_unit_test(test_loop_ends),
		cmocka_unit_test(test_io_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
