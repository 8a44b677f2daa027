/* libhopwire-app's streams over one loop (src/sdk/mux.c): two muxes over
 * a socketpair standing in for a loop, or one mux and a raw peer writing
 * frames by hand. Threads drive the stream descriptors; every test
 * checks that the mux leaves no descriptor behind. */
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
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hopwire/app.h"
#include "sdk/muxframe.h"

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Waits up to 3 s for the descriptor count to fall to want. */
static void wait_fds(int want)
{
	for (int i = 0; i < 300 && count_fds() != want; i++)
		usleep(10000);
	assert_int_equal(count_fds(), want);
}

static void pair(struct hw_app_mux **a, struct hw_app_mux **b)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(hw_app_mux_new(a, sv[0], 1), 0);
	assert_int_equal(hw_app_mux_new(b, sv[1], 0), 0);
}

static uint8_t pat(uint32_t seed, size_t i)
{
	return (uint8_t)((i * 131 + seed * 7 + (i >> 12)) & 0xff);
}

struct job {
	int fd;
	uint32_t seed;
	size_t len;
	size_t skip; /* reader: the pattern starts at this offset */
	int ok;
	pthread_t th;
};

/* Writes len pattern bytes, then shuts the stream down for writing. */
static void *writer(void *arg)
{
	struct job *j = arg;
	uint8_t buf[8192];
	size_t off = 0;

	while (off < j->len) {
		size_t n = j->len - off < sizeof(buf) ? j->len - off
						      : sizeof(buf);
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(j->seed, off + i);
		if (hw_app_write(j->fd, buf, n) != (ssize_t)n)
			return NULL;
		off += n;
	}
	j->ok = shutdown(j->fd, SHUT_WR) == 0;
	return NULL;
}

/* Reads to end of file and checks every byte against the pattern. */
static void *reader(void *arg)
{
	struct job *j = arg;
	uint8_t buf[8192];
	size_t off = j->skip;
	ssize_t n;

	while ((n = hw_app_read(j->fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pat(j->seed, off + (size_t)i))
				return NULL;
		off += (size_t)n;
	}
	j->ok = n == 0 && off == j->len;
	return NULL;
}

static void start(struct job *j, int fd, uint32_t seed, size_t len,
		  void *(*fn)(void *))
{
	*j = (struct job){.fd = fd, .seed = seed, .len = len};
	assert_int_equal(pthread_create(&j->th, NULL, fn, j), 0);
}

#define MANY 64
#define MANY_LEN (1024 * 1024)

static void test_many_both_ways(void **state)
{
	struct hw_app_mux *a, *b;
	static struct job jobs[4 * MANY];
	int afd[MANY], bfd[MANY], base;

	(void)state;
	base = count_fds();
	pair(&a, &b);
	for (int i = 0; i < MANY; i++)
		assert_int_equal(hw_app_mux_open(a, &afd[i]), 0);
	for (int i = 0; i < MANY; i++) {
		/* Streams arrive in the order they were opened. */
		assert_int_equal(hw_app_mux_accept(b, &bfd[i], 5000), 0);
	}
	for (int i = 0; i < MANY; i++) {
		start(&jobs[4 * i], afd[i], i, MANY_LEN, writer);
		start(&jobs[4 * i + 1], bfd[i], i, MANY_LEN, reader);
		start(&jobs[4 * i + 2], bfd[i], 1000 + i, MANY_LEN, writer);
		start(&jobs[4 * i + 3], afd[i], 1000 + i, MANY_LEN, reader);
	}
	for (int i = 0; i < 4 * MANY; i++) {
		pthread_join(jobs[i].th, NULL);
		assert_true(jobs[i].ok);
	}
	for (int i = 0; i < MANY; i++) {
		close(afd[i]);
		close(bfd[i]);
	}
	assert_null(hw_app_mux_error(a));
	hw_app_mux_free(a);
	hw_app_mux_free(b);
	wait_fds(base);
}

static void test_stalled_stream(void **state)
{
	struct hw_app_mux *a, *b;
	struct job jobs[16];
	int stall_a, stall_b, afd[8], bfd[8], base;
	uint8_t buf[4096];
	size_t sent = 0;
	ssize_t n;

	(void)state;
	memset(buf, 'x', sizeof(buf));
	base = count_fds();
	pair(&a, &b);
	assert_int_equal(hw_app_mux_open(a, &stall_a), 0);
	assert_int_equal(hw_app_mux_accept(b, &stall_b, 5000), 0);
	/* Fill the stalled stream until it takes nothing more. */
	fcntl(stall_a, F_SETFL, O_NONBLOCK);
	for (int idle = 0; idle < 20;) {
		n = send(stall_a, buf, sizeof(buf), MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			idle = 0;
		} else {
			assert_int_equal(errno, EAGAIN);
			idle++;
			usleep(10000);
		}
	}
	assert_true(sent >= HW_MUX_WINDOW);
	/* The others go through in full while it stays stalled. */
	for (int i = 0; i < 8; i++) {
		assert_int_equal(hw_app_mux_open(a, &afd[i]), 0);
		assert_int_equal(hw_app_mux_accept(b, &bfd[i], 5000), 0);
		start(&jobs[2 * i], afd[i], i, MANY_LEN, writer);
		start(&jobs[2 * i + 1], bfd[i], i, MANY_LEN, reader);
	}
	for (int i = 0; i < 16; i++) {
		pthread_join(jobs[i].th, NULL);
		assert_true(jobs[i].ok);
	}
	/* And the stalled one still delivers all it took, once read. */
	shutdown(stall_a, SHUT_WR);
	{
		size_t got = 0;
		while ((n = hw_app_read(stall_b, buf, sizeof(buf))) > 0)
			got += (size_t)n;
		assert_int_equal(n, 0);
		assert_int_equal(got, sent);
	}
	close(stall_a);
	close(stall_b);
	for (int i = 0; i < 8; i++) {
		close(afd[i]);
		close(bfd[i]);
	}
	hw_app_mux_free(a);
	hw_app_mux_free(b);
	wait_fds(base);
}

/* A request, its end, the answer: both ways of opening. */
static void request_response(struct hw_app_mux *from, struct hw_app_mux *to)
{
	char buf[64];
	int c, s;
	ssize_t n;

	assert_int_equal(hw_app_mux_open(from, &c), 0);
	assert_int_equal(hw_app_write(c, "GET\n", 4), 4);
	shutdown(c, SHUT_WR);
	assert_int_equal(hw_app_mux_accept(to, &s, 5000), 0);
	n = hw_app_read(s, buf, sizeof(buf));
	assert_int_equal(n, 4);
	assert_memory_equal(buf, "GET\n", 4);
	assert_int_equal(hw_app_read(s, buf, sizeof(buf)), 0);
	assert_int_equal(hw_app_write(s, "200\n", 4), 4);
	close(s);
	assert_int_equal(hw_app_read(c, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "200\n", 4);
	assert_int_equal(hw_app_read(c, buf, sizeof(buf)), 0);
	close(c);
}

static void test_half_close(void **state)
{
	struct hw_app_mux *a, *b;
	int base;

	(void)state;
	base = count_fds();
	pair(&a, &b);
	request_response(a, b);
	request_response(b, a);
	hw_app_mux_free(a);
	hw_app_mux_free(b);
	wait_fds(base);
}

static void test_reset(void **state)
{
	struct hw_app_mux *a, *b;
	char buf[64];
	int c, s, base;
	ssize_t n;

	(void)state;
	base = count_fds();
	pair(&a, &b);
	assert_int_equal(hw_app_mux_open(a, &c), 0);
	assert_int_equal(hw_app_write(c, "hello", 5), 5);
	assert_int_equal(hw_app_mux_accept(b, &s, 5000), 0);
	/* Closed without reading: the far end's stream is reset. */
	usleep(50000);
	close(s);
	n = hw_app_read(c, buf, sizeof(buf));
	assert_true(n == 0 || n == -ECONNRESET);
	close(c);
	/* The mux goes on. */
	request_response(a, b);
	hw_app_mux_free(a);
	hw_app_mux_free(b);
	wait_fds(base);
}

struct done_rec {
	struct hw_app_mux_watch w; /* first: done finds the record */
	atomic_int called;
};

static void on_done(struct hw_app_mux_watch *w)
{
	atomic_fetch_add(&((struct done_rec *)w)->called, 1);
}

/* A stream handed over to a socket mid-way: what the app's end held and
 * what the app wrote keep their order, both directions carry on, each
 * end of file passes, and the mux closes the socket at the end. */
static void test_relay(void **state)
{
	struct hw_app_mux *a, *b;
	struct hw_app_mux_stats st;
	struct job w1, r1, w2, r2;
	static struct done_rec done = {.w.done = on_done};
	uint8_t buf[16];
	int c, s, t[2], u[2], base;

	(void)state;
	base = count_fds();
	pair(&a, &b);
	assert_int_equal(hw_app_mux_open(a, &c), 0);
	assert_int_equal(hw_app_mux_accept(b, &s, 5000), 0);
	/* a sends 2 MiB; b's app reads 10 bytes of it and answers before
	 * handing the stream over: the rest waits in its end and ring. */
	start(&w1, c, 1, 2 << 20, writer);
	usleep(100000);
	assert_int_equal(hw_app_read(s, buf, 10), 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(buf[i], pat(1, (size_t)i));
	assert_int_equal(hw_app_write(s, "hello from b", 12), 12);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, t), 0);
	assert_int_equal(hw_app_mux_relay(b, s, t[0], &done.w), 0);
	/* The socket's peer gets a's bytes from offset 10 on. */
	r1 = (struct job){.fd = t[1], .seed = 1, .len = 2 << 20, .skip = 10};
	assert_int_equal(pthread_create(&r1.th, NULL, reader, &r1), 0);
	/* a reads the answer, then what the socket's peer sends. */
	assert_int_equal(hw_app_read(c, buf, 12), 12);
	assert_memory_equal(buf, "hello from b", 12);
	start(&w2, t[1], 2, 1 << 20, writer);
	start(&r2, c, 2, 1 << 20, reader);
	pthread_join(w1.th, NULL);
	pthread_join(r1.th, NULL);
	pthread_join(w2.th, NULL);
	pthread_join(r2.th, NULL);
	assert_true(w1.ok && r1.ok && w2.ok && r2.ok);
	hw_app_mux_stats(b, &st);
	assert_true(st.received == 2u << 20 && st.sent == 12 + (1u << 20));
	close(c);
	close(t[1]);
	/* Both ends closed: the relayed stream ends and says what it moved. */
	for (int i = 0; i < 300 && !atomic_load(&done.called); i++)
		usleep(10000);
	assert_int_equal(atomic_load(&done.called), 1);
	assert_true(done.w.sent == 12 + (1u << 20) &&
		    done.w.received == 2u << 20);
	/* Not a stream of b: -ENOENT, and the descriptor is taken. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, u), 0);
	assert_int_equal(hw_app_mux_relay(b, u[0], u[1], NULL), -ENOENT);
	close(u[1]);
	/* A mux that ended: -EPIPE, fd taken, the socket still ours. */
	hw_app_mux_free(a);
	assert_int_equal(hw_app_mux_accept(b, &s, 2000), -EPIPE);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, u), 0);
	assert_int_equal(hw_app_mux_relay(b, u[0], u[1], NULL), -EPIPE);
	assert_int_equal(close(u[1]), 0);
	hw_app_mux_free(b);
	wait_fds(base);
}

/* The far end's FIN came before the relay: the socket gets the bytes,
 * then its end of file. */
static void test_relay_after_fin(void **state)
{
	struct hw_app_mux *a, *b;
	char buf[8];
	int c, s, t[2], base;

	(void)state;
	base = count_fds();
	pair(&a, &b);
	assert_int_equal(hw_app_mux_open(a, &c), 0);
	assert_int_equal(hw_app_write(c, "abc", 3), 3);
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	assert_int_equal(hw_app_mux_accept(b, &s, 5000), 0);
	usleep(100000); /* DATA and FIN are in */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, t), 0);
	/* A missing end of file fails the test instead of hanging it. */
	assert_int_equal(setsockopt(t[1], SOL_SOCKET, SO_RCVTIMEO,
				    &(struct timeval){.tv_sec = 5},
				    sizeof(struct timeval)), 0);
	assert_int_equal(hw_app_mux_relay(b, s, t[0], NULL), 0);
	assert_int_equal(hw_app_read(t[1], buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "abc", 3);
	assert_int_equal(hw_app_read(t[1], buf, sizeof(buf)), 0);
	/* And the other way, then the stream ends at both. */
	assert_int_equal(hw_app_write(t[1], "ok", 2), 2);
	assert_int_equal(shutdown(t[1], SHUT_WR), 0);
	assert_int_equal(hw_app_read(c, buf, sizeof(buf)), 2);
	assert_int_equal(hw_app_read(c, buf, sizeof(buf)), 0);
	close(c);
	close(t[1]);
	hw_app_mux_free(a);
	hw_app_mux_free(b);
	wait_fds(base);
}

/* A burst the app does not accept yet: 512 streams wait, the rest are
 * reset, and the mux goes on. */
#define BURST 600
static void test_accept_backlog(void **state)
{
	struct hw_app_mux *a, *b;
	static int c[BURST];
	int s, base, waited = 0, reset = 0;
	char ch;

	(void)state;
	base = count_fds();
	pair(&a, &b);
	for (int i = 0; i < BURST; i++)
		assert_int_equal(hw_app_mux_open(a, &c[i]), 0);
	/* The refused ones read end of file (or a reset) at a. */
	for (int i = 0; i < BURST; i++) {
		struct pollfd p = {.fd = c[i], .events = POLLIN};
		if (poll(&p, 1, i < 512 ? 0 : 5000) == 1 &&
		    hw_app_read(c[i], &ch, 1) <= 0)
			reset++;
	}
	while (hw_app_mux_accept(b, &s, 0) == 0) {
		waited++;
		close(s);
	}
	assert_int_equal(waited, 512);
	assert_int_equal(reset, BURST - 512);
	for (int i = 0; i < BURST; i++)
		close(c[i]);
	request_response(a, b);
	hw_app_mux_free(a);
	hw_app_mux_free(b);
	wait_fds(base);
}

static void test_short_streams(void **state)
{
	struct hw_app_mux *a, *b;
	int base;

	(void)state;
	pair(&a, &b);
	base = count_fds();
	for (int i = 0; i < 2000; i++)
		request_response(i & 1 ? a : b, i & 1 ? b : a);
	/* Every stream's socket is gone in the muxes too. */
	wait_fds(base);
	hw_app_mux_free(a);
	hw_app_mux_free(b);
}

/* A raw peer (the acceptor) says HELLO then frames; the mux must end
 * with an error naming what was wrong. */
static void raw_case(const uint8_t *frames, size_t len, const char *want)
{
	struct hw_app_mux *m;
	uint8_t hello[HW_MUX_HDR + 5] = {0, 0, 0, 0, 0, 0, 5, 1, 0, 4, 0, 0};
	uint8_t sink[65536];
	int sv[2], fd, s, base, rc, held = -1;
	char buf[16];

	base = count_fds();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(hw_app_mux_new(&m, sv[0], 1), 0);
	assert_int_equal(hw_app_mux_open(m, &s), 0);
	assert_int_equal(write(sv[1], hello, sizeof(hello)), sizeof(hello));
	for (size_t off = 0; off < len;) {
		ssize_t n = send(sv[1], frames + off, len - off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN) {
			(void)!recv(sv[1], sink, sizeof(sink), MSG_DONTWAIT);
			continue;
		}
		if (n < 0)
			break; /* the mux closed the loop already */
		off += (size_t)n;
	}
	/* A stream the peer opened may come first; then the end. */
	rc = hw_app_mux_accept(m, &held, 5000);
	if (rc == 0) /* held, never read: its data fills the window */
		rc = hw_app_mux_accept(m, &fd, 5000);
	if (rc != -EPIPE)
		print_error("case '%s': accept %d\n", want, rc);
	assert_int_equal(rc, -EPIPE);
	assert_non_null(hw_app_mux_error(m));
	if (!strstr(hw_app_mux_error(m), want))
		print_error("mux error: %s\n", hw_app_mux_error(m));
	assert_non_null(strstr(hw_app_mux_error(m), want));
	assert_int_equal(hw_app_mux_open(m, &fd), -EPIPE);
	assert_true(hw_app_read(s, buf, sizeof(buf)) <= 0);
	close(s);
	if (held >= 0)
		close(held);
	hw_app_mux_free(m);
	close(sv[1]);
	wait_fds(base);
}

static void test_malformed(void **state)
{
	/* 1 MiB: more than the window and the stream's socket take. */
	static uint8_t beyond[64 * (HW_MUX_HDR + HW_MUX_DATA_MAX) + 7];
	size_t off;
	const uint8_t unknown_type[] = {9, 0, 0, 0, 1, 0, 0};
	const uint8_t bad_len[] = {4, 0, 0, 0, 1, 0, 1, 0};
	const uint8_t unknown_stream[] = {2, 0, 0, 0, 9, 0, 1, 'x'};
	const uint8_t own_parity[] = {1, 0, 0, 0, 3, 0, 0};
	const uint8_t hello_twice[] = {0, 0, 0, 0, 0, 0, 5, 1, 0, 4, 0, 0};

	(void)state;
	raw_case(unknown_type, sizeof(unknown_type), "unknown frame type 9");
	raw_case(bad_len, sizeof(bad_len), "FIN frame of 1 bytes");
	raw_case(unknown_stream, sizeof(unknown_stream), "unknown stream 9");
	raw_case(own_parity, sizeof(own_parity), "OPEN of stream 3");
	raw_case(hello_twice, sizeof(hello_twice), "a second HELLO");
	/* A stream the peer opens, then more DATA than its window. */
	hw_mux_frame_hdr(beyond, HW_MUX_OPEN, 2, 0);
	off = HW_MUX_HDR;
	for (int i = 0; i < 64; i++) {
		hw_mux_frame_hdr(beyond + off, HW_MUX_DATA, 2,
				 HW_MUX_DATA_MAX);
		off += HW_MUX_HDR + HW_MUX_DATA_MAX;
	}
	raw_case(beyond, off, "beyond credit");
}

static void test_version(void **state)
{
	struct hw_app_mux *m;
	const uint8_t hello[] = {0, 0, 0, 0, 0, 0, 5, 2, 0, 4, 0, 0};
	int sv[2], fd;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(hw_app_mux_new(&m, sv[0], 0), 0);
	assert_int_equal(write(sv[1], hello, sizeof(hello)), sizeof(hello));
	assert_int_equal(hw_app_mux_accept(m, &fd, 5000), -EPIPE);
	assert_non_null(strstr(hw_app_mux_error(m), "mux version 2"));
	hw_app_mux_free(m);
	close(sv[1]);
}

static void test_loop_end(void **state)
{
	struct hw_app_mux *m;
	struct pollfd p;
	int sv[2], s, fd;
	char c;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(hw_app_mux_new(&m, sv[0], 0), 0);
	assert_int_equal(hw_app_mux_open(m, &s), 0);
	assert_null(hw_app_mux_error(m));
	close(sv[1]);
	/* The accept descriptor wakes, the stream reads end of file. */
	p = (struct pollfd){.fd = hw_app_mux_fd(m), .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(hw_app_mux_accept(m, &fd, 0), -EPIPE);
	assert_int_equal(hw_app_read(s, &c, 1), 0);
	assert_string_equal(hw_app_mux_error(m), "the far end closed the loop");
	close(s);
	hw_app_mux_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_loop_end),
		cmocka_unit_test(test_stalled_stream),
		cmocka_unit_test(test_many_both_ways),
		cmocka_unit_test(test_short_streams),
		cmocka_unit_test(test_relay),
		cmocka_unit_test(test_relay_after_fin),
		cmocka_unit_test(test_accept_backlog),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
