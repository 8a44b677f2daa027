/* The Noise stream engine (wire/nstream.c) on its own, with a framing of
 * the test's: type u8 | length u16 BE | body, where type 'S' is a sealed
 * frame written by the engine and 'R' a raw one written through
 * hw_nstream_write_raw. What its users (transport/conn.c, relay/wire.c)
 * add is tested with them. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "hwtest.h"
#include "util/err.h"
#include "wire/nstream.h"

#define HDR 3
#define MAX_MSGS 64

struct end {
	struct hw_nstream *s;
	int ready, closed, reason, ticks;
	char err[160];
	/* What arrived, in order: type and body length of each frame, and
	 * the bodies' bytes one after another. */
	unsigned nmsgs;
	char types[MAX_MSGS];
	size_t lens[MAX_MSGS];
	uint8_t *got;
	size_t ngot;
	int close_on_ready;
};

static void put_header(uint8_t *hdr, size_t ctlen)
{
	hdr[0] = 'S';
	hdr[1] = (uint8_t)(ctlen >> 8);
	hdr[2] = (uint8_t)ctlen;
}

static void keep(struct end *e, char type, const uint8_t *p, size_t n)
{
	assert_true(e->nmsgs < MAX_MSGS);
	e->types[e->nmsgs] = type;
	e->lens[e->nmsgs++] = n;
	e->got = realloc(e->got, e->ngot + n + 1);
	assert_non_null(e->got);
	memcpy(e->got + e->ngot, p, n);
	e->ngot += n;
}

static void on_ready(struct hw_nstream *s, void *ud)
{
	struct end *e = ud;
	e->ready = 1;
	if (e->close_on_ready)
		hw_nstream_close(s, 0, 0);
}

static size_t on_input(struct hw_nstream *s, uint8_t *p, size_t n,
		       size_t *need, void *ud)
{
	struct end *e = ud;
	size_t len, ptlen;

	if (n < HDR) {
		*need = HDR;
		return 0;
	}
	len = (size_t)p[1] << 8 | p[2];
	if (n < HDR + len) {
		*need = HDR + len;
		return 0;
	}
	if (p[0] == 'S') {
		if (hw_nstream_unseal(s, p + HDR, len, &ptlen)) {
			hw_nstream_close(s, HW_EAUTH, 0);
			return 0;
		}
		keep(e, 'S', p + HDR, ptlen);
	} else if (p[0] == 'R') {
		keep(e, 'R', p + HDR, len);
	} else {
		hw_nstream_set_error(s, "bad type 0x%02x", p[0]);
		hw_nstream_close(s, HW_EPROTO, 0);
		return 0;
	}
	return HDR + len;
}

static void on_tick(struct hw_nstream *s, void *ud)
{
	struct end *e = ud;
	e->ticks++;
	hw_nstream_trim(s);
}

static void on_closed(struct hw_nstream *s, int reason, void *ud)
{
	struct end *e = ud;
	e->closed++;
	e->reason = reason;
	snprintf(e->err, sizeof(e->err), "%s", hw_nstream_error(s));
	e->s = NULL;
}

static const struct hw_nstream_ops ops = {
	.ready = on_ready,
	.input = on_input,
	.tick = on_tick,
	.closed = on_closed,
};

/* Small buffers that have to grow, and a trailer. */
static const struct hw_nstream_kind kind = {
	.ops = &ops,
	.version = 1,
	.frame_hdr = HDR,
	.put_header = put_header,
	.frame_min = 32,
	.frame_max = 65535 - 16,
	.trail_max = 1024,
	.max_spares = 2,
	.rbuf_small = 64,
	.rbuf_big = 2 * (HDR + 65535),
	.low_water = 1024,
};

/* The same framing, another version byte. */
static const struct hw_nstream_kind kind_v2 = {
	.ops = &ops,
	.version = 2,
	.frame_hdr = HDR,
	.put_header = put_header,
	.frame_min = 32,
	.frame_max = 1000,
	.rbuf_big = 4096,
};

/* A reader that takes no frame larger than its 4 KiB buffer. */
static const struct hw_nstream_kind kind_small = {
	.ops = &ops,
	.version = 1,
	.frame_hdr = HDR,
	.put_header = put_header,
	.frame_min = 32,
	.frame_max = 1000,
	.rbuf_big = 4096,
};

struct pair {
	uv_loop_t loop;
	uv_timer_t tick;
	uv_tcp_t server;
	struct hw_identity id_a, id_b;
	uint8_t xa[32], xb[32];
	struct end a, b; /* a dials, b accepts */
	const struct hw_nstream_kind *kind_b;
	unsigned tick_ms;
};

static void on_conn(uv_stream_t *server, int status)
{
	struct pair *t = server->data;
	struct hw_nstream_params p = {
		.kind = t->kind_b,
		.id = &t->id_b,
		.x_priv = t->xb,
		.prologue = "hopwire test nstream",
		.handshake_timeout_ms = 2000,
		.tick_ms = t->tick_ms,
		.ud = &t->b,
	};

	assert_int_equal(status, 0);
	assert_null(t->b.s);
	assert_int_equal(hw_nstream_accept(&t->b.s, server, &p), 0);
}

static void pair_open(struct pair *t, const struct hw_nstream_kind *ka,
		      const struct hw_nstream_kind *kb, int expect_ready)
{
	struct sockaddr_in sa;
	int len = sizeof(sa);
	struct hw_nstream_params p;

	memset(t, 0, sizeof(*t));
	t->kind_b = kb;
	t->tick_ms = 20;
	assert_int_equal(hw_test_identity(&t->id_a, t->xa), 0);
	assert_int_equal(hw_test_identity(&t->id_b, t->xb), 0);
	assert_int_equal(uv_loop_init(&t->loop), 0);
	uv_timer_init(&t->loop, &t->tick);
	uv_tcp_init(&t->loop, &t->server);
	t->server.data = t;
	uv_ip4_addr("127.0.0.1", 0, &sa);
	assert_int_equal(uv_tcp_bind(&t->server, (struct sockaddr *)&sa, 0),
			 0);
	assert_int_equal(uv_listen((uv_stream_t *)&t->server, 8, on_conn),
			 0);
	uv_tcp_getsockname(&t->server, (struct sockaddr *)&sa, &len);
	p = (struct hw_nstream_params){
		.kind = ka,
		.id = &t->id_a,
		.x_priv = t->xa,
		.prologue = "hopwire test nstream",
		.handshake_timeout_ms = 2000,
		.tick_ms = t->tick_ms,
		.ud = &t->a,
	};
	assert_int_equal(hw_nstream_dial(&t->a.s, &t->loop, &p, t->id_b.pk,
					 "127.0.0.1", ntohs(sa.sin_port)),
			 0);
	if (expect_ready)
		assert_true(HW_TEST_RUN_UNTIL(&t->loop, &t->tick,
					      t->a.ready && t->b.ready, 5000));
}

static void pair_close(struct pair *t)
{
	if (t->a.s)
		hw_nstream_close(t->a.s, 0, 0);
	if (t->b.s)
		hw_nstream_close(t->b.s, 0, 0);
	assert_true(HW_TEST_RUN_UNTIL(&t->loop, &t->tick,
				      !t->a.s && !t->b.s, 5000));
	assert_int_equal(t->a.closed, 1);
	assert_int_equal(t->b.closed, 1);
	uv_close((uv_handle_t *)&t->server, NULL);
	uv_close((uv_handle_t *)&t->tick, NULL);
	assert_int_equal(hw_test_loop_close(&t->loop), 0);
	free(t->a.got);
	free(t->b.got);
}

/* Appends n pattern bytes (seed) to the open frame. */
static void put(struct hw_nstream *s, uint8_t seed, size_t n)
{
	uint8_t *dst;

	assert_int_equal(hw_nstream_reserve(s, n, 0, &dst), 0);
	for (size_t i = 0; i < n; i++)
		dst[i] = hw_test_pattern(seed, i);
	assert_int_equal(hw_nstream_commit(s, n, 0), 0);
}

static void test_handshake_and_peers(void **state)
{
	struct pair t;

	pair_open(&t, &kind, &kind, 1);
	assert_memory_equal(hw_nstream_remote_pk(t.a.s), t.id_b.pk, 32);
	assert_memory_equal(hw_nstream_remote_pk(t.b.s), t.id_a.pk, 32);
	assert_true(hw_nstream_is_dialer(t.a.s));
	assert_false(hw_nstream_is_dialer(t.b.s));
	assert_non_null(strstr(hw_nstream_peer(t.a.s), "127.0.0.1:"));
	assert_non_null(strstr(hw_nstream_peer(t.b.s), "127.0.0.1:"));
	pair_close(&t);
}

/* Small frames first (the read buffer starts at 64 bytes), then large
 * ones (it grows), each intact; frames queued while a write is in
 * flight share one sealed frame. */
static void test_frames_grow_and_coalesce(void **state)
{
	static const size_t sizes[] = {1, 10, 50, 61, 200, 4000, 30000,
				       65535 - 16, 7};
	struct pair t;
	size_t want = 0, off = 0;

	pair_open(&t, &kind, &kind, 1);
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		put(t.a.s, (uint8_t)i, sizes[i]);
		want += sizes[i];
	}
	assert_true(HW_TEST_RUN_UNTIL(&t.loop, &t.tick, t.b.ngot == want,
				      5000));
	/* In order and intact, whatever the frames were. */
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (size_t j = 0; j < sizes[i]; j++, off++)
			assert_int_equal(t.b.got[off],
					 hw_test_pattern((uint8_t)i, j));
	/* The first went alone (nothing in flight); later ones gathered. */
	assert_true(t.b.nmsgs < sizeof(sizes) / sizeof(sizes[0]));
	assert_int_equal(hw_nstream_queued(t.a.s), 0);
	pair_close(&t);
}

static void raw_done(void *arg, int status)
{
	int *st = arg;
	*st = status == 0 ? 1 : status;
}

/* Raw writes go after what was queued before them and before what comes
 * after; their buffers are the caller's until done. */
static void test_raw_keeps_order(void **state)
{
	struct pair t;
	uint8_t hdr[HDR] = {'R', 0, 5}, body[5] = "hello";
	uv_buf_t b = uv_buf_init((char *)body, sizeof(body));
	int st = 0;

	pair_open(&t, &kind, &kind, 1);
	put(t.a.s, 1, 100);
	put(t.a.s, 2, 100); /* gathers behind the first */
	assert_int_equal(hw_nstream_write_raw(t.a.s, hdr, sizeof(hdr), &b, 1,
					      raw_done, &st),
			 0);
	assert_int_equal(st, 0); /* never before write_raw returns */
	put(t.a.s, 3, 10);
	assert_int_equal(hw_nstream_write_raw(t.a.s, hdr, HW_NSTREAM_MAX_HDR + 1,
					      &b, 1, raw_done, &st),
			 -EINVAL);
	assert_true(HW_TEST_RUN_UNTIL(&t.loop, &t.tick,
				      t.b.ngot == 215 && st == 1, 5000));
	assert_true(t.b.nmsgs >= 3);
	/* Frame(s) of 200 bytes, the raw one, then 10 bytes. */
	assert_int_equal(t.b.types[t.b.nmsgs - 2], 'R');
	assert_int_equal(t.b.lens[t.b.nmsgs - 2], 5);
	assert_memory_equal(t.b.got + 200, "hello", 5);
	assert_int_equal(t.b.types[t.b.nmsgs - 1], 'S');
	assert_int_equal(t.b.got[205], hw_test_pattern(3, 0));
	pair_close(&t);
}

/* A frame with trailing bytes: sealed and sent at once, the trailer
 * right behind the tag. The test's reader sees it as the frame's length
 * plus what follows, so it checks the bytes on the wire in place. */
static void test_trailer_follows_frame(void **state)
{
	struct pair t;
	uint8_t *dst;

	pair_open(&t, &kind, &kind, 1);
	assert_int_equal(hw_nstream_reserve(t.a.s, 4, 1025, &dst), HW_ETOOBIG);
	assert_int_equal(hw_nstream_reserve(t.a.s, 65535, 0, &dst),
			 HW_ETOOBIG);
	/* A raw frame announcing the trailer, then the sealed frame with
	 * it: the reader takes the trailer as one more raw frame. */
	assert_int_equal(hw_nstream_reserve(t.a.s, 4, HDR + 3, &dst), 0);
	memcpy(dst, "abcd", 4);
	memcpy(dst + 4 + 16, "R\0\3xyz", HDR + 3);
	assert_int_equal(hw_nstream_commit(t.a.s, 4, HDR + 3), 0);
	assert_true(HW_TEST_RUN_UNTIL(&t.loop, &t.tick, t.b.nmsgs == 2,
				      5000));
	assert_int_equal(t.b.types[0], 'S');
	assert_int_equal(t.b.types[1], 'R');
	assert_memory_equal(t.b.got, "abcdxyz", 7);
	pair_close(&t);
}

/* Different version bytes: no ready on either side, both closed with a
 * reason. */
static void test_version_mismatch(void **state)
{
	struct pair t;

	pair_open(&t, &kind, &kind_v2, 0);
	assert_true(HW_TEST_RUN_UNTIL(&t.loop, &t.tick,
				      t.a.closed && t.b.closed, 5000));
	assert_false(t.a.ready);
	assert_false(t.b.ready);
	assert_int_not_equal(t.a.reason, 0);
	assert_int_equal(t.b.reason, HW_EPROTO);
	pair_close(&t);
}

/* A frame larger than the reader's buffer closes the reader with a
 * reason in words; the sender learns the end. */
static void test_oversized_frame(void **state)
{
	struct pair t;
	static uint8_t body[10000];
	uint8_t hdr[HDR] = {'R', 10000 >> 8, 10000 & 0xff};
	uv_buf_t b = uv_buf_init((char *)body, sizeof(body));
	int st = 0;

	pair_open(&t, &kind, &kind_small, 1);
	assert_int_equal(hw_nstream_write_raw(t.a.s, hdr, sizeof(hdr), &b, 1,
					      raw_done, &st),
			 0);
	assert_true(HW_TEST_RUN_UNTIL(&t.loop, &t.tick,
				      t.a.closed && t.b.closed, 5000));
	assert_int_equal(t.b.reason, HW_EPROTO);
	assert_non_null(strstr(t.b.err, "too large"));
	assert_int_not_equal(st, 0);
	/* EOF or a reset, as the kernel has it. */
	assert_int_not_equal(t.a.reason, 0);
	pair_close(&t);
}

/* The tick runs while open (and trims); a graceful close delivers what
 * was queued before the end. */
static void test_tick_and_graceful_close(void **state)
{
	struct pair t;

	pair_open(&t, &kind, &kind, 1);
	assert_true(HW_TEST_RUN_UNTIL(&t.loop, &t.tick, t.a.ticks >= 3,
				      5000));
	put(t.a.s, 9, 30000);
	put(t.a.s, 9, 30000);
	hw_nstream_close(t.a.s, 0, 1);
	hw_nstream_close(t.a.s, 5, 0); /* no effect once closing */
	assert_int_equal(hw_nstream_reserve(t.a.s, 1, 0, &(uint8_t *){0}),
			 -ENOTCONN);
	assert_true(HW_TEST_RUN_UNTIL(&t.loop, &t.tick, t.b.closed, 5000));
	assert_int_equal(t.b.ngot, 60000);
	assert_int_equal(t.b.reason, HW_ECLOSED);
	assert_int_equal(t.a.reason, 0);
	pair_close(&t);
}

/* Closing from the ready callback is safe and reported once. */
static void test_close_in_ready(void **state)
{
	struct pair t;

	pair_open(&t, &kind, &kind, 0);
	t.a.close_on_ready = 1;
	assert_true(HW_TEST_RUN_UNTIL(&t.loop, &t.tick,
				      t.a.closed && t.b.closed, 5000));
	assert_true(t.a.ready);
	assert_int_equal(t.a.reason, 0);
	pair_close(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_peers),
		cmocka_unit_test(test_frames_grow_and_coalesce),
		cmocka_unit_test(test_raw_keeps_order),
		cmocka_unit_test(test_trailer_follows_frame),
		cmocka_unit_test(test_version_mismatch),
		cmocka_unit_test(test_oversized_frame),
		cmocka_unit_test(test_tick_and_graceful_close),
		cmocka_unit_test(test_close_in_ready),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
