/* The router: the rule codec, ID reservation and its limits, and
 * forwarding over three real transport managers on loopback
 * (A FORWARD -> B INTERMEDIARY -> C CONSUME), with drops, expiry and
 * transport loss. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "crypto/identity.h"
#include "router/router.h"
#include "transport/manager.h"
#include "util/container.h"
#include "util/err.h"
#include "util/hex.h"
#include "hwtest.h"
#include "hwtest_assert.h"

#ifndef HW_ROUTER_MAX_ENTRIES
#define HW_ROUTER_MAX_ENTRIES 1000000 /* router.c's limit */
#endif

/* ---- codec ---- */

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 13 + 1) | 1;
}

static struct hw_rule valid_rule(enum hw_rule_kind kind)
{
	struct hw_rule r;

	memset(&r, 0, sizeof(r));
	r.id = 0xa1b2c3d4;
	r.kind = kind;
	r.keepalive_ms = 30000;
	if (kind != HW_RULE_FORWARD)
		fill(r.prev_tp, sizeof(r.prev_tp), 1);
	if (kind != HW_RULE_CONSUME) {
		r.next_id = 0x01020304;
		fill(r.next_tp, sizeof(r.next_tp), 2);
	}
	if (kind != HW_RULE_INTERMEDIARY) {
		fill(r.desc.src_pk, HW_PK_LEN, 3);
		r.desc.src_port = 0x1234;
		fill(r.desc.dst_pk, HW_PK_LEN, 4);
		r.desc.dst_port = 0xfedc;
	}
	return r;
}

static void assert_rule_equal(const struct hw_rule *a, const struct hw_rule *b)
{
	assert_int_equal(a->id, b->id);
	assert_int_equal(a->kind, b->kind);
	assert_int_equal(a->keepalive_ms, b->keepalive_ms);
	assert_memory_equal(a->prev_tp, b->prev_tp, HW_TP_ID_LEN);
	assert_int_equal(a->next_id, b->next_id);
	assert_memory_equal(a->next_tp, b->next_tp, HW_TP_ID_LEN);
	assert_memory_equal(a->desc.src_pk, b->desc.src_pk, HW_PK_LEN);
	assert_int_equal(a->desc.src_port, b->desc.src_port);
	assert_memory_equal(a->desc.dst_pk, b->desc.dst_pk, HW_PK_LEN);
	assert_int_equal(a->desc.dst_port, b->desc.dst_port);
}

/* Offsets of the encoding (docs/routing.md). */
enum {
	O_ID = 0, O_KIND = 4, O_KA = 5, O_PREV = 9, O_NEXT_ID = 25,
	O_NEXT_TP = 29, O_SRC_PK = 45, O_SRC_PORT = 77, O_DST_PK = 79,
	O_DST_PORT = 111,
};

static void test_codec_roundtrip(void **state)
{
	static const enum hw_rule_kind kinds[] = {
		HW_RULE_CONSUME, HW_RULE_FORWARD, HW_RULE_INTERMEDIARY,
	};
	static const uint32_t kas[] = {
		HW_RULE_KEEPALIVE_MIN_MS, 30000, HW_RULE_KEEPALIVE_MAX_MS,
	};

	for (size_t k = 0; k < 3; k++) {
		for (size_t j = 0; j < 3; j++) {
			struct hw_rule r = valid_rule(kinds[k]), d;
			uint8_t enc[HW_RULE_ENC_LEN], enc2[HW_RULE_ENC_LEN];

			r.keepalive_ms = kas[j];
			hw_rule_encode(&r, enc);
			/* Layout: big-endian fields at fixed places. */
			assert_int_equal(enc[O_ID], 0xa1);
			assert_int_equal(enc[O_ID + 3], 0xd4);
			assert_int_equal(enc[O_KIND], kinds[k]);
			assert_int_equal((uint32_t)enc[O_KA] << 24 |
					 (uint32_t)enc[O_KA + 1] << 16 |
					 (uint32_t)enc[O_KA + 2] << 8 |
					 enc[O_KA + 3], kas[j]);
			assert_memory_equal(enc + O_PREV, r.prev_tp, 16);
			assert_memory_equal(enc + O_NEXT_TP, r.next_tp, 16);
			assert_memory_equal(enc + O_SRC_PK, r.desc.src_pk, 32);
			assert_memory_equal(enc + O_DST_PK, r.desc.dst_pk, 32);
			if (kinds[k] != HW_RULE_CONSUME) {
				assert_int_equal(enc[O_NEXT_ID + 3], 0x04);
			}
			if (kinds[k] != HW_RULE_INTERMEDIARY) {
				assert_int_equal(enc[O_SRC_PORT], 0x12);
				assert_int_equal(enc[O_SRC_PORT + 1], 0x34);
				assert_int_equal(enc[O_DST_PORT], 0xfe);
				assert_int_equal(enc[O_DST_PORT + 1], 0xdc);
			}
			memset(&d, 0x5a, sizeof(d));
			assert_int_equal(hw_rule_decode(enc, sizeof(enc), &d),
					 0);
			assert_rule_equal(&r, &d);
			hw_rule_encode(&d, enc2);
			assert_memory_equal(enc, enc2, HW_RULE_ENC_LEN);
		}
	}
}

/* One rejection: valid encoding of kind with bytes [off, off+n) set to
 * v. */
static void expect_reject(enum hw_rule_kind kind, size_t off, size_t n,
			  uint8_t v)
{
	struct hw_rule r = valid_rule(kind), d;
	uint8_t enc[HW_RULE_ENC_LEN];

	hw_rule_encode(&r, enc);
	memset(enc + off, v, n);
	if (hw_rule_decode(enc, sizeof(enc), &d) != HW_EPROTO)
		fail_msg("kind %d, bytes %zu+%zu = %u accepted", kind, off, n,
			 v);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void test_codec_reject(void **state)
{
	static const enum hw_rule_kind all[] = {
		HW_RULE_CONSUME, HW_RULE_FORWARD, HW_RULE_INTERMEDIARY,
	};
	static const uint32_t bad_ka[] = {
		0, 1, HW_RULE_KEEPALIVE_MIN_MS - 1,
		HW_RULE_KEEPALIVE_MAX_MS + 1, 0xffffffff,
	};
	uint8_t enc[HW_RULE_ENC_LEN + 1];
	struct hw_rule r = valid_rule(HW_RULE_CONSUME), d;

	/* Length: exactly one rule. */
	hw_rule_encode(&r, enc);
	enc[HW_RULE_ENC_LEN] = 0;
	assert_int_equal(hw_rule_decode(enc, 0, &d), HW_EPROTO);
	assert_int_equal(hw_rule_decode(enc, HW_RULE_ENC_LEN - 1, &d),
			 HW_EPROTO);
	assert_int_equal(hw_rule_decode(enc, HW_RULE_ENC_LEN + 1, &d),
			 HW_EPROTO);
	for (size_t k = 0; k < 3; k++) {
		enum hw_rule_kind kind = all[k];

		/* Unknown kinds, id 0. */
		expect_reject(kind, O_KIND, 1, 0);
		expect_reject(kind, O_KIND, 1, 4);
		expect_reject(kind, O_KIND, 1, 0xff);
		expect_reject(kind, O_ID, 4, 0);
		for (size_t j = 0; j < sizeof(bad_ka) / sizeof(*bad_ka); j++) {
			struct hw_rule b = valid_rule(kind);
			uint8_t e[HW_RULE_ENC_LEN];

			hw_rule_encode(&b, e);
			put32(e + O_KA, bad_ka[j]);
			assert_int_equal(hw_rule_decode(e, sizeof(e), &d),
					 HW_EPROTO);
		}
	}
	/* CONSUME: prev needed, no next hop, ports needed. */
	expect_reject(HW_RULE_CONSUME, O_PREV, 16, 0);
	expect_reject(HW_RULE_CONSUME, O_NEXT_ID + 3, 1, 1);
	expect_reject(HW_RULE_CONSUME, O_NEXT_TP + 15, 1, 1);
	expect_reject(HW_RULE_CONSUME, O_SRC_PORT, 2, 0);
	expect_reject(HW_RULE_CONSUME, O_DST_PORT, 2, 0);
	/* FORWARD: no prev, a next hop, ports needed. */
	expect_reject(HW_RULE_FORWARD, O_PREV + 7, 1, 1);
	expect_reject(HW_RULE_FORWARD, O_NEXT_ID, 4, 0);
	expect_reject(HW_RULE_FORWARD, O_NEXT_TP, 16, 0);
	expect_reject(HW_RULE_FORWARD, O_SRC_PORT, 2, 0);
	expect_reject(HW_RULE_FORWARD, O_DST_PORT, 2, 0);
	/* INTERMEDIARY: prev and next hop, and no descriptor at all. */
	expect_reject(HW_RULE_INTERMEDIARY, O_PREV, 16, 0);
	expect_reject(HW_RULE_INTERMEDIARY, O_NEXT_ID, 4, 0);
	expect_reject(HW_RULE_INTERMEDIARY, O_NEXT_TP, 16, 0);
	expect_reject(HW_RULE_INTERMEDIARY, O_SRC_PK, 1, 1);
	expect_reject(HW_RULE_INTERMEDIARY, O_SRC_PK + 31, 1, 0x80);
	expect_reject(HW_RULE_INTERMEDIARY, O_SRC_PORT + 1, 1, 1);
	expect_reject(HW_RULE_INTERMEDIARY, O_DST_PK + 5, 1, 1);
	expect_reject(HW_RULE_INTERMEDIARY, O_DST_PORT, 1, 1);
	/* A port 0 alone is enough to refuse; a zero key is not checked
	 * (the spec asks ports only). */
	{
		struct hw_rule b = valid_rule(HW_RULE_FORWARD);
		uint8_t e[HW_RULE_ENC_LEN];

		b.desc.src_port = 0;
		hw_rule_encode(&b, e);
		assert_int_equal(hw_rule_decode(e, sizeof(e), &d), HW_EPROTO);
	}
}

/* ---- reservations, without transports ---- */

static void on_never(struct hw_router *r, uint32_t rule_id,
		     const struct hw_packet *pkt, void *ud)
{
	fail_msg("unexpected delivery");
}

static struct hw_router *bare_router(uv_loop_t *loop)
{
	struct hw_router_params p = {.loop = loop, .deliver = on_never};
	struct hw_router *r;

	assert_int_equal(hw_router_new(&r, &p), 0);
	return r;
}

static void bare_done(uv_loop_t *loop, struct hw_router *r)
{
	hw_router_free(r);
	assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(hw_test_loop_close(loop), 0);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

#define NRES 100000

static void test_reserve(void **state)
{
	uv_loop_t loop;
	struct hw_router *r;
	struct hw_router_stats st;
	uint32_t *ids = calloc(NRES, sizeof(*ids)), *sorted;
	uint32_t one[17];
	unsigned seq = 0, high = 0;
	struct hw_rule rule;

	assert_non_null(ids);
	uv_loop_init(&loop);
	r = bare_router(&loop);
	assert_int_equal(hw_router_reserve(r, 0, one), -EINVAL);
	assert_int_equal(hw_router_reserve(r, 17, one), -EINVAL);
	for (unsigned i = 0; i < NRES; i += 16)
		assert_int_equal(hw_router_reserve(r, 16, ids + i), 0);
	hw_router_stats(r, &st);
	assert_int_equal(st.reserved, NRES);
	assert_int_equal(st.rules, 0);
	for (unsigned i = 0; i < NRES; i++) {
		assert_int_not_equal(ids[i], 0);
		if (i && ids[i] == ids[i - 1] + 1)
			seq++;
		high += ids[i] >> 31;
	}
	/* Random, not counted up: neighbours are not consecutive and the
	 * top bit is set about half the time. */
	assert_true(seq < 3);
	assert_true(high > NRES / 2 - NRES / 50 && high < NRES / 2 + NRES / 50);
	sorted = malloc(NRES * sizeof(*sorted));
	assert_non_null(sorted);
	memcpy(sorted, ids, NRES * sizeof(*sorted));
	qsort(sorted, NRES, sizeof(*sorted), cmp_u32);
	for (unsigned i = 1; i < NRES; i++)
		assert_int_not_equal(sorted[i], sorted[i - 1]);
	free(sorted);

	/* A reservation is not a rule. */
	assert_null(hw_router_find(r, ids[5]));
	assert_null(hw_router_find(r, 0));

	/* Release, twice. */
	assert_int_equal(hw_router_remove(r, ids[0]), 0);
	assert_int_equal(hw_router_remove(r, ids[0]), -ENOENT);
	hw_router_stats(r, &st);
	assert_int_equal(st.reserved, NRES - 1);

	/* Adding: on a released ID, a bad rule, no such transport (this
	 * router has no manager). */
	rule = valid_rule(HW_RULE_CONSUME);
	rule.id = ids[0];
	assert_int_equal(hw_router_add(r, &rule), -ENOENT);
	rule.id = ids[1];
	rule.keepalive_ms = 999;
	assert_int_equal(hw_router_add(r, &rule), -EINVAL);
	rule.keepalive_ms = 1000;
	rule.id = 0;
	assert_int_equal(hw_router_add(r, &rule), -EINVAL);
	rule.id = ids[1];
	assert_int_equal(hw_router_add(r, &rule), -ENOTCONN);
	rule = valid_rule(HW_RULE_FORWARD);
	rule.id = ids[1];
	assert_int_equal(hw_router_add(r, &rule), -ENOTCONN);
	/* ... which left the reservation in place. */
	assert_int_equal(hw_router_remove(r, ids[1]), 0);

	/* Sending needs a FORWARD rule; unknown IDs are counted. */
	assert_int_equal(hw_router_send(r, ids[2], HW_PKT_DATA, NULL, 0),
			 -ENOENT);
	{
		struct hw_packet pkt = {.type = HW_PKT_DATA,
					.route_id = ids[2]};
		hw_router_on_packet(r, NULL, &pkt);
		pkt.route_id = 0;
		hw_router_on_packet(r, NULL, &pkt);
	}
	hw_router_stats(r, &st);
	assert_int_equal(st.dropped_unknown, 2);
	hw_router_tp_removed(r, (struct hw_tp *)&loop); /* no rules: no-op */
	{
		json_t *a = hw_router_rules_json(r);
		assert_non_null(a);
		assert_int_equal(json_array_size(a), 0);
		json_decref(a);
	}
	free(ids);
	bare_done(&loop, r);
}

static void test_limits(void **state)
{
	uv_loop_t loop;
	struct hw_router *r;
	struct hw_router_stats st;
	uint32_t ids[16], keep = 0;
	unsigned n = 0;

	uv_loop_init(&loop);
	r = bare_router(&loop);
	while (n + 16 <= HW_ROUTER_MAX_ENTRIES) {
		assert_int_equal(hw_router_reserve(r, 16, ids), 0);
		n += 16;
		keep = ids[3];
	}
	if (n < HW_ROUTER_MAX_ENTRIES) {
		assert_int_equal(hw_router_reserve(r, HW_ROUTER_MAX_ENTRIES - n,
						   ids), 0);
		n = HW_ROUTER_MAX_ENTRIES;
	}
	assert_int_equal(hw_router_reserve(r, 1, ids), -ENOSPC);
	assert_int_equal(hw_router_remove(r, keep), 0);
	/* All or nothing. */
	assert_int_equal(hw_router_reserve(r, 2, ids), -ENOSPC);
	hw_router_stats(r, &st);
	assert_int_equal(st.reserved, HW_ROUTER_MAX_ENTRIES - 1);
	assert_int_equal(hw_router_reserve(r, 1, ids), 0);
	assert_int_not_equal(ids[0], 0);
	assert_int_equal(hw_router_reserve(r, 1, ids), -ENOSPC);
	bare_done(&loop, r);
}

/* Reservations lapse after HW_ROUTER_RESERVE_MS (one real wait). */
static void test_reserve_lapse(void **state)
{
	uv_loop_t loop;
	uv_timer_t t;
	struct hw_router *r;
	struct hw_router_stats st;
	uint32_t ids[3];

	uv_loop_init(&loop);
	uv_timer_init(&loop, &t);
	r = bare_router(&loop);
	assert_int_equal(hw_router_reserve(r, 3, ids), 0);
	hw_test_run_for(&loop, &t, HW_ROUTER_RESERVE_MS - 1000);
	hw_router_stats(r, &st);
	assert_int_equal(st.reserved, 3);
	hw_test_run_for(&loop, &t, 1000 + 800); /* a tick past the deadline */
	hw_router_stats(r, &st);
	assert_int_equal(st.reserved, 0);
	assert_int_equal(hw_router_remove(r, ids[1]), -ENOENT);
	uv_close((uv_handle_t *)&t, NULL);
	bare_done(&loop, r);
}

/* ---- forwarding over real transports ---- */

#define MAX_GONE 32
#define A 0
#define B 1
#define C 2

struct fx;

struct node {
	struct fx *fx;
	struct hw_identity id;
	struct hw_tp_manager *tpm;
	struct hw_router *rt;
	char addr[80];
	int ups, removed;
	unsigned rooms; /* the manager's room-again signals */
	/* deliveries */
	unsigned delivered, bad;
	/* With check_order: DATA must come with sequence numbers 0, 1, ...
	 * per rule pair slot (order_rule[i] counts in order_next[i]). */
	int check_order;
	uint32_t order_rule[2];
	unsigned order_next[2], misordered;
	uint32_t last_rule;
	uint8_t last_type;
	uint64_t rx_bytes;
	/* route failures delivered, and the last one's payload */
	unsigned fails;
	uint8_t fail_payload[HW_ROUTE_FAIL_LEN];
	/* rule_gone; when one of pair goes, the callback removes the
	 * other (as a route group would its other direction). */
	unsigned ngone;
	uint32_t pair[2];
	int pair_rc;
	uint32_t gone_id[MAX_GONE];
	int gone_reason[MAX_GONE];
};

struct fx {
	uv_loop_t loop;
	uv_timer_t tick;
	struct node n[3];
	int adds, add_fail;
};

static uint8_t pat(unsigned seq, size_t k)
{
	return (uint8_t)(seq * 31 + k * 7 + (k >> 8));
}

static void on_packet(struct hw_tp *tp, const struct hw_packet *pkt,
		      void *ud)
{
	struct node *n = ud;

	if (pkt->route_id != 0)
		hw_router_on_packet(n->rt, tp, pkt);
}

static void on_room(struct hw_tp *tp, void *ud)
{
	struct node *n = ud;

	n->rooms++;
	hw_router_tp_room(n->rt, tp);
}

static void on_event(struct hw_tp *tp, enum hw_tp_event ev, void *ud)
{
	struct node *n = ud;

	if (ev == HW_TP_UP) {
		n->ups++;
	} else {
		n->removed++;
		hw_router_tp_removed(n->rt, tp);
	}
}

/* Payloads: u32 BE sequence number, then pat(seq, k). */
static void on_deliver(struct hw_router *r, uint32_t rule_id,
		       const struct hw_packet *pkt, void *ud)
{
	struct node *n = ud;

	n->delivered++;
	n->last_rule = rule_id;
	n->last_type = pkt->type;
	n->rx_bytes += pkt->len;
	if (pkt->type == HW_PKT_ROUTE_FAIL ||
	    pkt->type == HW_PKT_ROUTE_FAIL_BACK) {
		assert_int_equal(pkt->len, HW_ROUTE_FAIL_LEN);
		memcpy(n->fail_payload, pkt->payload, HW_ROUTE_FAIL_LEN);
		n->fails++;
		return;
	}
	if (pkt->len >= 4) {
		unsigned seq = (unsigned)pkt->payload[0] << 24 |
			       (unsigned)pkt->payload[1] << 16 |
			       (unsigned)pkt->payload[2] << 8 | pkt->payload[3];
		for (size_t k = 4; k < pkt->len; k++)
			if (pkt->payload[k] != pat(seq, k)) {
				n->bad++;
				break;
			}
		for (int i = 0; n->check_order && i < 2; i++)
			if (rule_id == n->order_rule[i] &&
			    seq != n->order_next[i]++)
				n->misordered++;
	}
}

static void on_gone(struct hw_router *r, const struct hw_rule *rule,
		    int reason, void *ud)
{
	struct node *n = ud;

	assert_null(hw_router_find(r, rule->id));
	for (int i = 0; i < 2; i++)
		if (n->pair[i] && rule->id == n->pair[i]) {
			n->pair_rc = hw_router_remove(r, n->pair[!i]);
			n->pair[0] = n->pair[1] = 0;
			break;
		}
	if (n->ngone < MAX_GONE) {
		n->gone_id[n->ngone] = rule->id;
		n->gone_reason[n->ngone] = reason;
	}
	n->ngone++;
}

static int gone_with(const struct node *n, uint32_t id, int reason)
{
	for (unsigned i = 0; i < n->ngone && i < MAX_GONE; i++)
		if (n->gone_id[i] == id && n->gone_reason[i] == reason)
			return 1;
	return 0;
}

/* Runs the loop until cond holds or ms pass; returns cond. */
#define RUN_UNTIL(fx, cond, ms)                                          \
	HW_TEST_RUN_UNTIL(&(fx)->loop, &(fx)->tick, cond, ms)

static void on_added(struct hw_tp_manager *m, struct hw_tp *tp, int status,
		     const char *msg, void *ud)
{
	struct fx *fx = ud;

	fx->adds++;
	if (status)
		fx->add_fail++;
}

static struct hw_tp *tp_to(struct fx *fx, int from, int to)
{
	return hw_tp_manager_find(fx->n[from].tpm, fx->n[to].id.pk, "tcp");
}

static const uint8_t *tpid(struct fx *fx, int a, int b)
{
	return hw_tp_id_bytes(tp_to(fx, a, b));
}

static void link_nodes(struct fx *fx, int from, int to)
{
	char err[256];

	assert_int_equal(hw_tp_manager_add(fx->n[from].tpm, fx->n[to].id.pk,
					   "tcp", fx->n[to].addr, 0, on_added,
					   fx, err, sizeof(err)), 0);
}

static void fx_init(struct fx *fx)
{
	memset(fx, 0, sizeof(*fx));
	uv_loop_init(&fx->loop);
	uv_timer_init(&fx->loop, &fx->tick);
	for (int i = 0; i < 3; i++) {
		struct node *n = &fx->n[i];
		struct hw_tp_manager_params mp = {0};
		struct hw_router_params rp = {0};
		char err[256], listen[32];

		n->fx = fx;
		assert_int_equal(hw_identity_generate(&n->id), 0);
		mp.loop = &fx->loop;
		mp.id = &n->id;
		snprintf(listen, sizeof(listen), "127.0.0.1:%d", hw_test_free_port());
		mp.tcp_listen = listen;
		mp.keepalive_ms = 5000;
		mp.handshake_timeout_ms = 5000;
		mp.max_pending_handshakes = 16;
		mp.redial_min_ms = 100;
		mp.redial_max_ms = 1000;
		mp.on_packet = on_packet;
		mp.on_event = on_event;
		mp.on_room = on_room;
		mp.ud = n;
		if (hw_tp_manager_new(&n->tpm, &mp, err, sizeof(err)))
			fail_msg("manager: %s", err);
		snprintf(n->addr, sizeof(n->addr), "%s",
			 hw_tp_manager_listen_addr(n->tpm));
		rp.loop = &fx->loop;
		rp.tpm = n->tpm;
		rp.deliver = on_deliver;
		rp.rule_gone = on_gone;
		rp.ud = n;
		assert_int_equal(hw_router_new(&n->rt, &rp), 0);
	}
	link_nodes(fx, A, B);
	link_nodes(fx, B, C);
	link_nodes(fx, A, C);
	assert_true(RUN_UNTIL(fx, fx->adds == 3 && fx->n[A].ups == 2 &&
				      fx->n[B].ups == 2 && fx->n[C].ups == 2,
			      10000));
	assert_int_equal(fx->add_fail, 0);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				assert_non_null(tp_to(fx, i, j));
}

static void fx_free(struct fx *fx)
{
	for (int i = 0; i < 3; i++)
		hw_router_free(fx->n[i].rt);
	for (int i = 0; i < 3; i++)
		hw_tp_manager_free(fx->n[i].tpm);
	uv_close((uv_handle_t *)&fx->tick, NULL);
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(hw_test_loop_close(&fx->loop), 0);
}

static uint32_t reserve1(struct node *n)
{
	uint32_t id;

	assert_int_equal(hw_router_reserve(n->rt, 1, &id), 0);
	return id;
}

struct route {
	uint32_t a, b, c; /* A's FORWARD, B's INTERMEDIARY, C's CONSUME */
};

/* A -> B -> C with keepalive ka. */
static struct route route_make(struct fx *fx, uint32_t ka)
{
	struct route rt;
	struct hw_rule c, b, a;
	const struct hw_rule *got;

	memset(&c, 0, sizeof(c));
	c.id = rt.c = reserve1(&fx->n[C]);
	c.kind = HW_RULE_CONSUME;
	c.keepalive_ms = ka;
	memcpy(c.prev_tp, tpid(fx, C, B), HW_TP_ID_LEN);
	memcpy(c.desc.src_pk, fx->n[A].id.pk, HW_PK_LEN);
	c.desc.src_port = 100;
	memcpy(c.desc.dst_pk, fx->n[C].id.pk, HW_PK_LEN);
	c.desc.dst_port = 200;
	assert_int_equal(hw_router_add(fx->n[C].rt, &c), 0);
	/* Once only: the reservation is used up. */
	assert_int_equal(hw_router_add(fx->n[C].rt, &c), -ENOENT);

	memset(&b, 0, sizeof(b));
	b.id = rt.b = reserve1(&fx->n[B]);
	b.kind = HW_RULE_INTERMEDIARY;
	b.keepalive_ms = ka;
	memcpy(b.prev_tp, tpid(fx, B, A), HW_TP_ID_LEN);
	b.next_id = rt.c;
	memcpy(b.next_tp, tpid(fx, B, C), HW_TP_ID_LEN);
	assert_int_equal(hw_router_add(fx->n[B].rt, &b), 0);

	memset(&a, 0, sizeof(a));
	a.id = rt.a = reserve1(&fx->n[A]);
	a.kind = HW_RULE_FORWARD;
	a.keepalive_ms = ka;
	a.next_id = rt.b;
	memcpy(a.next_tp, tpid(fx, A, B), HW_TP_ID_LEN);
	a.desc = c.desc;
	assert_int_equal(hw_router_add(fx->n[A].rt, &a), 0);

	assert_non_null(got = hw_router_find(fx->n[C].rt, rt.c));
	assert_rule_equal(got, &c);
	assert_non_null(got = hw_router_find(fx->n[B].rt, rt.b));
	assert_rule_equal(got, &b);
	assert_non_null(got = hw_router_find(fx->n[A].rt, rt.a));
	assert_rule_equal(got, &a);
	return rt;
}

static uint8_t big[HW_PACKET_MAX_PAYLOAD];

/* Sends packet seq of len bytes on node n's FORWARD rule id. */
static int send_seq_from(struct node *n, uint32_t id, unsigned seq,
			 size_t len)
{
	if (len < 4)
		len = 4;
	big[0] = (uint8_t)(seq >> 24);
	big[1] = (uint8_t)(seq >> 16);
	big[2] = (uint8_t)(seq >> 8);
	big[3] = (uint8_t)seq;
	for (size_t k = 4; k < len; k++)
		big[k] = pat(seq, k);
	return hw_router_send(n->rt, id, HW_PKT_DATA, big, (uint16_t)len);
}

static int send_seq(struct fx *fx, uint32_t id, unsigned seq, size_t len)
{
	return send_seq_from(&fx->n[A], id, seq, len);
}

static void check_json(struct fx *fx, struct route rt, uint64_t bytes,
		       unsigned packets)
{
	char hex[HW_TP_ID_HEXLEN + 1], end[HW_PK_HEXLEN + 16];
	json_t *a, *o;

	/* B: intermediary, next transport, no descriptor. */
	a = hw_router_rules_json(fx->n[B].rt);
	assert_int_equal(json_array_size(a), 1);
	o = json_array_get(a, 0);
	assert_int_equal(hw_test_jint(o, "id"), rt.b);
	assert_string_equal(hw_test_jstr(o, "kind"), "intermediary");
	hw_hex_encode(tpid(fx, B, C), HW_TP_ID_LEN, hex);
	assert_string_equal(hw_test_jstr(o, "transport"), hex);
	assert_int_equal(hw_test_jint(o, "next_id"), rt.c);
	assert_int_equal(hw_test_jint(o, "packets"), packets);
	assert_int_equal(hw_test_jint(o, "bytes"), bytes);
	assert_true(hw_test_jint(o, "age_ms") >= hw_test_jint(o, "idle_ms"));
	assert_null(json_object_get(o, "src"));
	assert_null(json_object_get(o, "dst"));
	json_decref(a);

	/* A: forward, with the descriptor. */
	a = hw_router_rules_json(fx->n[A].rt);
	assert_int_equal(json_array_size(a), 1);
	o = json_array_get(a, 0);
	assert_string_equal(hw_test_jstr(o, "kind"), "forward");
	hw_hex_encode(tpid(fx, A, B), HW_TP_ID_LEN, hex);
	assert_string_equal(hw_test_jstr(o, "transport"), hex);
	assert_int_equal(hw_test_jint(o, "next_id"), rt.b);
	assert_int_equal(hw_test_jint(o, "packets"), packets);
	hw_pk_format(fx->n[A].id.pk, end);
	strcat(end, ":100");
	assert_string_equal(hw_test_jstr(o, "src"), end);
	hw_pk_format(fx->n[C].id.pk, end);
	strcat(end, ":200");
	assert_string_equal(hw_test_jstr(o, "dst"), end);
	json_decref(a);

	/* C: consume, named by its previous transport. */
	a = hw_router_rules_json(fx->n[C].rt);
	assert_int_equal(json_array_size(a), 1);
	o = json_array_get(a, 0);
	assert_string_equal(hw_test_jstr(o, "kind"), "consume");
	hw_hex_encode(tpid(fx, C, B), HW_TP_ID_LEN, hex);
	assert_string_equal(hw_test_jstr(o, "transport"), hex);
	assert_int_equal(hw_test_jint(o, "packets"), packets);
	assert_int_equal(hw_test_jint(o, "bytes"), bytes);
	json_decref(a);
}

#define NPKT 60

static void test_forwarding(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct node *na, *nb, *nc;
	struct hw_router_stats sa, sb, sc;
	struct route rt, rk;
	struct hw_rule bad;
	uint64_t bytes = 0;
	uint32_t spare;

	assert_non_null(fx);
	fx_init(fx);
	na = &fx->n[A];
	nb = &fx->n[B];
	nc = &fx->n[C];
	rt = route_make(fx, 60000);

	/* A rule naming a transport this visor does not have. */
	memset(&bad, 0, sizeof(bad));
	bad.id = spare = reserve1(nc);
	bad.kind = HW_RULE_CONSUME;
	bad.keepalive_ms = 1000;
	memset(bad.prev_tp, 0x77, HW_TP_ID_LEN);
	bad.desc.src_port = bad.desc.dst_port = 1;
	assert_int_equal(hw_router_add(nc->rt, &bad), -ENOTCONN);
	assert_int_equal(hw_router_remove(nc->rt, spare), 0);

	/* Data A -> B -> C, sizes up to a full packet. */
	for (unsigned i = 0; i < NPKT; i++) {
		size_t len = i == NPKT - 1 ? HW_PACKET_MAX_PAYLOAD
					   : 4 + (i * 97) % 1500;
		assert_int_equal(send_seq(fx, rt.a, i, len), 0);
		bytes += len;
	}
	assert_true(RUN_UNTIL(fx, nc->delivered == NPKT, 5000));
	assert_int_equal(nc->bad, 0);
	assert_int_equal(nc->last_rule, rt.c);
	assert_int_equal(nc->last_type, HW_PKT_DATA);
	assert_int_equal(nc->rx_bytes, bytes);
	hw_router_stats(na->rt, &sa);
	hw_router_stats(nb->rt, &sb);
	hw_router_stats(nc->rt, &sc);
	assert_int_equal(sa.forwarded, NPKT);
	assert_int_equal(sb.forwarded, NPKT);
	assert_int_equal(sc.delivered, NPKT);
	assert_int_equal(sb.dropped_unknown + sb.dropped_wrong_tp +
			 sb.dropped_down, 0);
	assert_int_equal(sb.rules, 1);
	assert_int_equal(sb.reserved, 0);
	check_json(fx, rt, bytes, NPKT);

	/* Sending: only on FORWARD rules, only route packet types. */
	assert_int_equal(hw_router_send(nc->rt, rt.c, HW_PKT_DATA, big, 4),
			 -ENOENT);
	assert_int_equal(hw_router_send(na->rt, rt.a, HW_PKT_PING, big, 4),
			 -EINVAL);
	assert_int_equal(hw_router_send(na->rt, rt.a, HW_PKT_CLOSE, NULL, 0),
			 0);
	assert_true(RUN_UNTIL(fx, nc->delivered == NPKT + 1, 5000));
	assert_int_equal(nc->last_type, HW_PKT_CLOSE);

	/* The right ID on the wrong transport: A -> C directly, and C ->
	 * B for B's rule. */
	assert_int_equal(hw_tp_send(tp_to(fx, A, C), HW_PKT_DATA, rt.c, big,
				    8), 0);
	assert_int_equal(hw_tp_send(tp_to(fx, C, B), HW_PKT_DATA, rt.b, big,
				    8), 0);
	hw_router_stats(nc->rt, &sc);
	hw_router_stats(nb->rt, &sb);
	assert_true(RUN_UNTIL(fx, (hw_router_stats(nc->rt, &sc),
				   hw_router_stats(nb->rt, &sb),
				   sc.dropped_wrong_tp == 1 &&
					   sb.dropped_wrong_tp == 1),
			      5000));
	assert_int_equal(nc->delivered, NPKT + 1);
	assert_int_equal(sb.forwarded, NPKT + 1);

	/* Unknown IDs: never given out, reserved without a rule, a FORWARD
	 * rule's ID (A's), and a type that is not for routes. */
	spare = reserve1(nb);
	assert_int_equal(hw_tp_send(tp_to(fx, A, B), HW_PKT_DATA,
				    rt.b ^ 0x80000000u, big, 4), 0);
	assert_int_equal(hw_tp_send(tp_to(fx, A, B), HW_PKT_DATA, spare, big,
				    4), 0);
	assert_int_equal(hw_tp_send(tp_to(fx, B, A), HW_PKT_DATA, rt.a, big,
				    4), 0);
	assert_int_equal(hw_tp_send(tp_to(fx, B, C), HW_PKT_PING, rt.c, big,
				    4), 0);
	assert_true(RUN_UNTIL(fx, (hw_router_stats(na->rt, &sa),
				   hw_router_stats(nb->rt, &sb),
				   hw_router_stats(nc->rt, &sc),
				   sb.dropped_unknown == 2 &&
					   sa.dropped_unknown == 1 &&
					   sc.dropped_unknown == 1),
			      5000));
	assert_int_equal(nc->delivered, NPKT + 1);
	assert_int_equal(hw_router_remove(nb->rt, spare), 0);

	/* Removing a rule says nothing to rule_gone. */
	{
		struct hw_rule c = *hw_router_find(nc->rt, rt.c);

		c.id = spare = reserve1(nc);
		assert_int_equal(hw_router_add(nc->rt, &c), 0);
		assert_non_null(hw_router_find(nc->rt, spare));
		assert_int_equal(hw_router_remove(nc->rt, spare), 0);
		assert_null(hw_router_find(nc->rt, spare));
		assert_int_equal(hw_router_remove(nc->rt, spare), -ENOENT);
		assert_int_equal(nc->ngone, 0);
	}

	/* Expiry: a route with keepalive 1 s lives while it carries
	 * packets, then expires everywhere. */
	rk = route_make(fx, 1000);
	{
		unsigned before = nc->delivered;
		for (unsigned i = 0; i < 12; i++) {
			assert_int_equal(send_seq(fx, rk.a, 1000 + i, 32), 0);
			RUN_UNTIL(fx, 0, 200);
		}
		assert_true(RUN_UNTIL(fx, nc->delivered == before + 12, 2000));
		assert_int_equal(nc->last_rule, rk.c);
	}
	assert_non_null(hw_router_find(na->rt, rk.a));
	assert_non_null(hw_router_find(nb->rt, rk.b));
	assert_non_null(hw_router_find(nc->rt, rk.c));
	assert_int_equal(na->ngone + nb->ngone + nc->ngone, 0);
	/* Two idle rules due in the same sweep, the first of which takes
	 * the other with it from its callback. */
	{
		struct hw_rule c = *hw_router_find(nc->rt, rk.c);

		for (int i = 0; i < 2; i++) {
			c.id = nc->pair[i] = reserve1(nc);
			assert_int_equal(hw_router_add(nc->rt, &c), 0);
		}
		nc->pair_rc = 1;
	}
	assert_true(RUN_UNTIL(fx, na->ngone == 1 && nb->ngone == 1 &&
				      nc->ngone == 2,
			      3000));
	RUN_UNTIL(fx, 0, 600); /* a sweep more: nothing else goes */
	assert_int_equal(nc->ngone, 2);
	assert_int_equal(nc->pair_rc, 0);
	hw_router_stats(nc->rt, &sc);
	assert_int_equal(sc.rules, 1);
	assert_true(gone_with(na, rk.a, -ETIMEDOUT));
	assert_true(gone_with(nb, rk.b, -ETIMEDOUT));
	assert_true(gone_with(nc, rk.c, -ETIMEDOUT));
	assert_int_equal(send_seq(fx, rk.a, 0, 4), -ENOENT);
	/* The long-lived route is untouched. */
	assert_non_null(hw_router_find(na->rt, rt.a));
	assert_non_null(hw_router_find(nb->rt, rt.b));
	assert_non_null(hw_router_find(nc->rt, rt.c));

	/* Losing B-C takes B's rule and, once C hears the close, C's. */
	{
		char hex[HW_TP_ID_HEXLEN + 1];

		hw_hex_encode(tpid(fx, B, C), HW_TP_ID_LEN, hex);
		assert_int_equal(hw_tp_manager_remove(nb->tpm, hex), 0);
	}
	assert_int_equal(nb->ngone, 2);
	assert_true(gone_with(nb, rt.b, -ENOTCONN));
	assert_null(hw_router_find(nb->rt, rt.b));
	assert_true(RUN_UNTIL(fx, nc->ngone == 3, 5000));
	assert_true(gone_with(nc, rt.c, -ENOTCONN));
	assert_non_null(hw_router_find(na->rt, rt.a));
	hw_router_stats(nb->rt, &sb);
	assert_int_equal(sb.rules, 0);
	/* A still sends; B no longer knows the ID. */
	assert_int_equal(send_seq(fx, rt.a, 7, 16), 0);
	assert_true(RUN_UNTIL(fx, (hw_router_stats(nb->rt, &sb),
				   sb.dropped_unknown == 3),
			      5000));

	fx_free(fx);
	free(fx);
}

/* C -> B -> A, the reverse of route_make's. */
static struct route reverse_make(struct fx *fx, uint32_t ka)
{
	struct route rt;
	struct hw_rule r;

	memset(&r, 0, sizeof(r));
	r.id = rt.a = reserve1(&fx->n[A]);
	r.kind = HW_RULE_CONSUME;
	r.keepalive_ms = ka;
	memcpy(r.prev_tp, tpid(fx, A, B), HW_TP_ID_LEN);
	memcpy(r.desc.src_pk, fx->n[A].id.pk, HW_PK_LEN);
	r.desc.src_port = 100;
	memcpy(r.desc.dst_pk, fx->n[C].id.pk, HW_PK_LEN);
	r.desc.dst_port = 200;
	assert_int_equal(hw_router_add(fx->n[A].rt, &r), 0);
	r.id = rt.c = reserve1(&fx->n[C]);
	r.kind = HW_RULE_FORWARD;
	memset(r.prev_tp, 0, HW_TP_ID_LEN);
	memcpy(r.next_tp, tpid(fx, C, B), HW_TP_ID_LEN);
	rt.b = reserve1(&fx->n[B]);
	r.next_id = rt.b;
	assert_int_equal(hw_router_add(fx->n[C].rt, &r), 0);
	memset(&r, 0, sizeof(r));
	r.id = rt.b;
	r.kind = HW_RULE_INTERMEDIARY;
	r.keepalive_ms = ka;
	memcpy(r.prev_tp, tpid(fx, B, C), HW_TP_ID_LEN);
	memcpy(r.next_tp, tpid(fx, B, A), HW_TP_ID_LEN);
	r.next_id = rt.a;
	assert_int_equal(hw_router_add(fx->n[B].rt, &r), 0);
	return rt;
}

static uint64_t stat_of(struct node *n, int which)
{
	struct hw_router_stats st;

	hw_router_stats(n->rt, &st);
	switch (which) {
	case 0: return st.dropped_wrong_tp;
	case 1: return st.dropped_unknown;
	case 2: return st.failures_limited;
	}
	return st.failures_sent;
}

/* Route failures: only a hop of the route can send one; a lost
 * transport tells both routes' start A, the forward route's against
 * its direction and the reverse route's along it. */
static void test_route_failure(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	uint8_t fake[HW_ROUTE_FAIL_LEN] = {HW_ROUTE_FAIL_TP_LOST};
	struct node *na, *nb, *nc;
	struct route fw, rv, other;
	char hex[HW_TP_ID_HEXLEN + 1];

	assert_non_null(fx);
	fx_init(fx);
	na = &fx->n[A];
	nb = &fx->n[B];
	nc = &fx->n[C];
	fw = route_make(fx, 60000);
	rv = reverse_make(fx, 60000);
	other = route_make(fx, 60000);

	/* Off the path: A straight to C for C's CONSUME rule, C straight
	 * to A naming the ID A's FORWARD rule sends to. Neither counts. */
	assert_int_equal(hw_tp_send(tp_to(fx, A, C), HW_PKT_ROUTE_FAIL, fw.c,
				    fake, sizeof(fake)), 0);
	assert_int_equal(hw_tp_send(tp_to(fx, C, A), HW_PKT_ROUTE_FAIL_BACK,
				    fw.b, fake, sizeof(fake)), 0);
	/* On the path but malformed. */
	assert_int_equal(hw_tp_send(tp_to(fx, B, C), HW_PKT_ROUTE_FAIL, fw.c,
				    fake, 5), 0);
	assert_true(RUN_UNTIL(fx, stat_of(nc, 0) == 1 && stat_of(na, 1) == 1 &&
				      stat_of(nc, 1) == 1, 5000));
	assert_int_equal(na->fails + nc->fails, 0);

	/* C, B's next hop on route other, reports twice: A hears once. */
	for (int i = 0; i < 2; i++)
		assert_int_equal(hw_tp_send(tp_to(fx, C, B),
					    HW_PKT_ROUTE_FAIL_BACK, other.c,
					    fake, sizeof(fake)), 0);
	assert_true(RUN_UNTIL(fx, na->fails == 1 && stat_of(nb, 2) == 1,
			      5000));
	assert_int_equal(na->last_rule, other.a);
	assert_int_equal(na->last_type, HW_PKT_ROUTE_FAIL_BACK);

	/* B loses B-C: A hears of both routes, with the transport. */
	hw_hex_encode(tpid(fx, B, C), HW_TP_ID_LEN, hex);
	assert_int_equal(hw_tp_manager_remove(nb->tpm, hex), 0);
	assert_true(RUN_UNTIL(fx, na->fails == 3, 5000));
	assert_int_equal(na->fail_payload[0], HW_ROUTE_FAIL_TP_LOST);
	{
		uint8_t want[HW_TP_ID_LEN];

		assert_int_equal(hw_hex_decode(hex, strlen(hex), want,
					       HW_TP_ID_LEN), 0);
		assert_memory_equal(na->fail_payload + 1, want, HW_TP_ID_LEN);
	}
	assert_true(stat_of(nb, 3) >= 2);
	/* A's rules stay: the ends decide (route groups probe and heal). */
	assert_non_null(hw_router_find(na->rt, fw.a));
	assert_non_null(hw_router_find(na->rt, rv.a));
	fx_free(fx);
	free(fx);
}

/* ---- backpressure ---- */

/* Sends total packets of PUMP_LEN bytes from node from on its FORWARD
 * rule id, waiting for room whenever the router says -ENOBUFS. */
#define PUMP_LEN 60000

struct pump {
	struct fx *fx;
	int from;
	uint32_t id;
	unsigned seq, total;
	int err;
	struct hw_router_waiter w;
};

static void pump_run(struct pump *p)
{
	struct node *n = &p->fx->n[p->from];
	int rc;

	while (p->seq < p->total) {
		rc = send_seq_from(n, p->id, p->seq, PUMP_LEN);
		if (rc == -ENOBUFS) {
			assert_int_equal(hw_router_wait_room(n->rt, p->id,
							     &p->w), 0);
			return;
		}
		if (rc) {
			p->err = rc;
			return;
		}
		p->seq++;
	}
}

static void on_pump_room(struct hw_router_waiter *w)
{
	pump_run(HW_CONTAINER_OF(w, struct pump, w));
}

static void pump_start(struct pump *p, struct fx *fx, int from, uint32_t id,
		       unsigned total)
{
	memset(p, 0, sizeof(*p));
	p->fx = fx;
	p->from = from;
	p->id = id;
	p->total = total;
	p->w.cb = on_pump_room;
	pump_run(p);
}

static struct hw_router_stats stats(struct node *n)
{
	struct hw_router_stats st;

	hw_router_stats(n->rt, &st);
	return st;
}

/* A hop whose next transport is congested pauses the one that feeds it
 * instead of dropping: C stops reading, A sends far more than every
 * queue and socket buffer on the way holds, B pauses its transport from
 * A (and, since C does not drain, reads it again after
 * HW_ROUTER_PAUSE_MAX_MS, only to pause again), and once C reads every
 * packet arrives, in order. Then both directions at once through B:
 * each of B's transports feeds the other, and nothing is lost or stuck. */
static void test_backpressure(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct node *nb, *nc, *na;
	struct pump p1, p2;
	struct route fw, rv;
	struct hw_router_stats st;
	uint64_t t0;

	assert_non_null(fx);
	fx_init(fx);
	na = &fx->n[A];
	nb = &fx->n[B];
	nc = &fx->n[C];
	fw = route_make(fx, 60000);
	rv = reverse_make(fx, 60000);
	nc->check_order = na->check_order = 1;
	nc->order_rule[0] = fw.c;
	na->order_rule[0] = rv.a;

	hw_tp_pause(tp_to(fx, C, B), 1);
	assert_int_equal(hw_tp_is_paused(tp_to(fx, C, B)), 1);
	pump_start(&p1, fx, A, fw.a, 400); /* 24 MB */
	assert_true(RUN_UNTIL(fx, stats(nb).paused == 1, 10000));
	assert_int_equal(hw_tp_is_paused(tp_to(fx, B, A)), 1);
	assert_int_equal(hw_tp_is_paused(tp_to(fx, B, C)), 0);
	assert_int_equal(nc->delivered, 0);
	/* C still does not read: B reads A again now and then. */
	t0 = uv_now(&fx->loop);
	assert_true(RUN_UNTIL(fx, stats(nb).pauses_forced >= 2, 5000));
	assert_true(uv_now(&fx->loop) - t0 >= HW_ROUTER_PAUSE_MAX_MS);
	assert_true(p1.seq < p1.total); /* A is held back too */
	st = stats(nb);
	assert_int_equal(st.dropped_full, 0);
	assert_int_equal(st.dropped_down, 0);
	assert_true(st.pauses >= 3);
	/* The transports stay up through the pause. */
	assert_int_equal(nb->removed, 0);
	assert_int_equal(nc->removed, 0);

	hw_tp_pause(tp_to(fx, C, B), 0);
	assert_true(RUN_UNTIL(fx, nc->delivered == 400, 20000));
	assert_int_equal(p1.err, 0);
	assert_int_equal(nc->bad, 0);
	assert_int_equal(nc->misordered, 0);
	assert_int_equal(nc->order_next[0], 400);
	assert_true(RUN_UNTIL(fx, stats(nb).paused == 0, 5000));
	assert_int_equal(hw_tp_is_paused(tp_to(fx, B, A)), 0);

	/* Both ways at once. */
	nc->delivered = 0;
	nc->order_next[0] = 0;
	pump_start(&p1, fx, A, fw.a, 300);
	pump_start(&p2, fx, C, rv.c, 300);
	assert_true(RUN_UNTIL(fx, nc->delivered == 300 &&
				      na->delivered == 300, 30000));
	assert_int_equal(p1.err, 0);
	assert_int_equal(p2.err, 0);
	assert_int_equal(nc->misordered + na->misordered, 0);
	assert_int_equal(nc->bad + na->bad, 0);
	assert_int_equal(nc->order_next[0], 300);
	assert_int_equal(na->order_next[0], 300);
	st = stats(nb);
	assert_int_equal(st.dropped_full, 0);
	assert_int_equal(st.dropped_down, 0);
	assert_int_equal(st.forwarded, 1000);
	assert_true(RUN_UNTIL(fx, stats(nb).paused == 0, 5000));
	hw_router_unwait(&p1.w);
	hw_router_unwait(&p2.w);
	fx_free(fx);
	free(fx);
}

/* s -> m -> d, any three nodes; the route's IDs in a (s's FORWARD), b
 * (m's INTERMEDIARY), c (d's CONSUME). */
static struct route route3(struct fx *fx, int s, int m, int d, uint32_t ka)
{
	struct route rt;
	struct hw_rule r;

	memset(&r, 0, sizeof(r));
	r.id = rt.c = reserve1(&fx->n[d]);
	r.kind = HW_RULE_CONSUME;
	r.keepalive_ms = ka;
	memcpy(r.prev_tp, tpid(fx, d, m), HW_TP_ID_LEN);
	memcpy(r.desc.src_pk, fx->n[s].id.pk, HW_PK_LEN);
	r.desc.src_port = 300;
	memcpy(r.desc.dst_pk, fx->n[d].id.pk, HW_PK_LEN);
	r.desc.dst_port = 400;
	assert_int_equal(hw_router_add(fx->n[d].rt, &r), 0);
	rt.b = reserve1(&fx->n[m]);
	r.id = rt.a = reserve1(&fx->n[s]);
	r.kind = HW_RULE_FORWARD;
	memset(r.prev_tp, 0, HW_TP_ID_LEN);
	memcpy(r.next_tp, tpid(fx, s, m), HW_TP_ID_LEN);
	r.next_id = rt.b;
	assert_int_equal(hw_router_add(fx->n[s].rt, &r), 0);
	memset(&r, 0, sizeof(r));
	r.id = rt.b;
	r.kind = HW_RULE_INTERMEDIARY;
	r.keepalive_ms = ka;
	memcpy(r.prev_tp, tpid(fx, m, s), HW_TP_ID_LEN);
	memcpy(r.next_tp, tpid(fx, m, d), HW_TP_ID_LEN);
	r.next_id = rt.c;
	assert_int_equal(hw_router_add(fx->n[m].rt, &r), 0);
	return rt;
}

/* Three hops that feed each other in a ring: A -> B -> C, B -> C -> A and
 * C -> A -> B, all bulk at once. Each hop may pause the transport from
 * the previous one because the one to the next is full, which can make
 * all three wait on each other; reading again after
 * HW_ROUTER_PAUSE_MAX_MS breaks that. Every packet arrives, in order,
 * and none is dropped. */
static void test_backpressure_ring(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct pump p[3];
	struct route rt[3];
	unsigned total = 250;
	uint64_t t0;

	assert_non_null(fx);
	fx_init(fx);
	for (int i = 0; i < 3; i++) {
		int s = i, m = (i + 1) % 3, d = (i + 2) % 3;

		rt[i] = route3(fx, s, m, d, 60000);
		fx->n[d].check_order = 1;
		fx->n[d].order_rule[0] = rt[i].c;
	}
	for (int i = 0; i < 3; i++)
		pump_start(&p[i], fx, i, rt[i].a, total);
	t0 = uv_now(&fx->loop);
	assert_true(RUN_UNTIL(fx, fx->n[A].delivered == total &&
				      fx->n[B].delivered == total &&
				      fx->n[C].delivered == total, 60000));
	for (int i = 0; i < 3; i++) {
		struct hw_router_stats st = stats(&fx->n[i]);

		assert_int_equal(p[i].err, 0);
		assert_int_equal(fx->n[i].bad, 0);
		assert_int_equal(fx->n[i].misordered, 0);
		assert_int_equal(fx->n[i].order_next[0], total);
		assert_int_equal(st.dropped_full, 0);
		assert_int_equal(st.dropped_down, 0);
		/* Its own packets and the ones it passed on. */
		assert_int_equal(st.forwarded, 2 * total);
		assert_int_equal(fx->n[i].removed, 0);
	}
	print_message("ring of three hops, 3 x %u packets: %llu ms\n", total,
		      (unsigned long long)(uv_now(&fx->loop) - t0));
	for (int i = 0; i < 3; i++)
		assert_true(RUN_UNTIL(fx, stats(&fx->n[i]).paused == 0, 5000));
	fx_free(fx);
	free(fx);
}

/* ---- waiting for room ---- */

struct waiter {
	struct hw_router_waiter w;
	struct hw_router *rt;
	uint32_t rule;
	int rewait;     /* waits again from its callback, once */
	unsigned woken; /* times its callback ran */
	unsigned order; /* the wake-up's number among all */
};

static unsigned wakes;

static void on_waiter(struct hw_router_waiter *w)
{
	struct waiter *x = HW_CONTAINER_OF(w, struct waiter, w);

	assert_null(w->pprev); /* no longer waiting while it runs */
	x->woken++;
	x->order = ++wakes;
	if (x->rewait) {
		x->rewait = 0;
		assert_int_equal(hw_router_wait_room(x->rt, x->rule, w), 0);
	}
}

static void waiter_init(struct waiter *x, struct hw_router *rt, uint32_t rule)
{
	memset(x, 0, sizeof(*x));
	x->w.cb = on_waiter;
	x->rt = rt;
	x->rule = rule;
}

static void test_room(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct waiter w1, w2, w3, w4;
	struct node *na;
	struct route rt;
	int rc = 0;

	assert_non_null(fx);
	fx_init(fx);
	na = &fx->n[A];
	rt = route_make(fx, 60000);
	wakes = 0;
	waiter_init(&w1, na->rt, rt.a);
	waiter_init(&w2, na->rt, rt.a);
	waiter_init(&w3, na->rt, rt.a);
	waiter_init(&w4, fx->n[C].rt, rt.c);

	/* Only a FORWARD rule names a transport to wait on. */
	assert_int_equal(hw_router_wait_room(fx->n[C].rt, rt.c, &w4.w),
			 -ENOENT);
	assert_int_equal(hw_router_wait_room(na->rt, rt.a ^ 1, &w4.w),
			 -ENOENT);
	assert_null(w4.w.pprev);

	/* Woken oldest first, once each, even when waiting twice; one
	 * that stopped waiting is not woken; one that waits again from
	 * its callback waits for the next signal. */
	assert_int_equal(hw_router_wait_room(na->rt, rt.a, &w1.w), 0);
	assert_int_equal(hw_router_wait_room(na->rt, rt.a, &w2.w), 0);
	assert_int_equal(hw_router_wait_room(na->rt, rt.a, &w1.w), 0);
	assert_int_equal(hw_router_wait_room(na->rt, rt.a, &w3.w), 0);
	hw_router_unwait(&w3.w);
	hw_router_unwait(&w3.w);
	w1.rewait = 1;
	/* Another transport's signal wakes nobody. */
	hw_router_tp_room(na->rt, tp_to(fx, A, C));
	assert_int_equal(wakes, 0);
	hw_router_tp_room(na->rt, tp_to(fx, A, B));
	assert_int_equal(w1.woken, 1);
	assert_int_equal(w1.order, 1);
	assert_int_equal(w2.woken, 1);
	assert_int_equal(w2.order, 2);
	assert_int_equal(w3.woken, 0);
	assert_non_null(w1.w.pprev);
	assert_null(w2.w.pprev);
	hw_router_tp_room(na->rt, tp_to(fx, A, B));
	assert_int_equal(w1.woken, 2);
	assert_null(w1.w.pprev);

	/* The real signal: fill A->B until the router says -ENOBUFS, wait,
	 * and the manager's drain wakes the waiter from the loop. */
	for (unsigned seq = 0; seq < 10000; seq++)
		if ((rc = send_seq(fx, rt.a, seq, HW_PACKET_MAX_PAYLOAD)))
			break;
	assert_int_equal(rc, -ENOBUFS);
	na->rooms = 0;
	assert_int_equal(hw_router_wait_room(na->rt, rt.a, &w2.w), 0);
	assert_int_equal(w2.woken, 1);
	assert_true(RUN_UNTIL(fx, w2.woken == 2, 10000));
	assert_true(na->rooms >= 1);
	assert_int_equal(send_seq(fx, rt.a, 0, 64), 0);

	/* Freeing the router lets go of whoever still waits, without a
	 * callback; stopping is safe afterwards. */
	assert_int_equal(hw_router_wait_room(na->rt, rt.a, &w3.w), 0);
	fx_free(fx);
	assert_null(w3.w.pprev);
	assert_int_equal(w3.woken, 0);
	hw_router_unwait(&w3.w);
	free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec_roundtrip),
		cmocka_unit_test(test_codec_reject),
		cmocka_unit_test(test_reserve),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_forwarding),
		cmocka_unit_test(test_reserve_lapse),
		cmocka_unit_test(test_room),
		cmocka_unit_test(test_route_failure),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_backpressure_ring),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
