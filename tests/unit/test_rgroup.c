/* Route groups end to end on one loop: two visors (A, B) with real
 * transport managers linked over loopback TCP, a router each, and rules
 * installed by hand:
 *
 *   A: FORWARD a_fwd -> B's CONSUME b_cons   (the forward route)
 *   B: FORWARD b_fwd -> A's CONSUME a_cons   (the reverse route)
 *
 * A's group is the initiator (the source), B's the responder. Each
 * router's deliver callback hands packets for the CONSUME rule to the
 * group, and can capture or hold back DATA packets on the way. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "e2e/rgroup.h"
#include "router/router.h"
#include "transport/manager.h"
#include "util/err.h"
#include "hwtest.h"
#include "hwtest_assert.h"

#define GROUP_KA_MS 1000
#define RULE_KA_MS 30000
#define NCAP 8
#define BULK (5u * 1000 * 1000)

struct env;
struct visor;

/* One end of a group and its test traffic. */
struct end {
	struct env *env;
	struct visor *v;
	struct hw_rgroup *g;
	int ready, closed, reason, writables, blocked;
	uint64_t closed_ms;
	uint64_t total, sent, recv;
	uint8_t seed_tx, seed_rx;
	int bad;
	/* Write no more than hw_rgroup_room allows, and check that the
	 * group then never queues (copies) anything. */
	int by_room;
};

struct visor {
	struct env *env;
	struct hw_identity id;
	uint8_t x_priv[32];
	struct hw_tp_manager *tpm;
	struct hw_router *router;
	struct hw_tp *tp; /* to the other visor */
	uint32_t fwd_id, cons_id;
	struct end end;
	/* DATA packets seen by deliver for cons_id. */
	int capture, ncap;
	uint8_t *cap[NCAP];
	uint16_t caplen[NCAP];
	/* Drop every packet (a route that died). */
	int lossy;
	/* Hold back the next DATA packet instead of delivering it. */
	int hold_next;
	uint8_t held[HW_PACKET_MAX_PAYLOAD];
	uint16_t held_len;
	int have_held;
};

struct env {
	uv_loop_t loop;
	uv_timer_t tick;
	struct visor a, b;
	struct hw_route_desc desc;
	int added, add_status;
	/* What the source's broken callback does. */
	enum { HEAL_REBUILD, HEAL_RETRY, HEAL_FINAL } heal;
	int brokens[2]; /* broken callbacks at A, B */
};

static uint8_t gen_buf[1u << 20];

/* Runs the loop until cond(arg) holds or ms pass; returns cond. */
static int run_until(struct env *e, int (*cond)(void *), void *arg,
		     unsigned ms)
{
	return hw_test_run_until(&e->loop, &e->tick, cond, arg, ms);
}

static void run_for(struct env *e, unsigned ms)
{
	hw_test_run_for(&e->loop, &e->tick, ms);
}

/* ---- group callbacks ---- */

/* Writes random-sized chunks of the pattern until total or -ENOBUFS. */
static void pump_writes(struct end *x)
{
	while (x->g && x->sent < x->total) {
		size_t n = randombytes_uniform(4) == 0
				   ? 1 + randombytes_uniform(100)
				   : 1 + randombytes_uniform(300000);
		int rc;

		if (n > x->total - x->sent)
			n = (size_t)(x->total - x->sent);
		if (x->by_room) {
			size_t room = hw_rgroup_room(x->g);

			if (room == 0) {
				x->blocked++;
				return;
			}
			if (n > room)
				n = room;
		}
		for (size_t k = 0; k < n; k++)
			gen_buf[k] = hw_test_pattern(x->seed_tx, x->sent + k);
		rc = hw_rgroup_write(x->g, gen_buf, n);
		if (rc == -ENOBUFS) {
			x->blocked++;
			return;
		}
		assert_int_equal(rc, 0);
		x->sent += n;
		if (x->by_room) {
			json_t *j = hw_rgroup_json(x->g);

			assert_int_equal(json_integer_value(json_object_get(
						 j, "queued")), 0);
			json_decref(j);
		}
	}
}

static void g_ready(struct hw_rgroup *g, void *ud)
{
	struct end *x = ud;

	x->ready++;
	pump_writes(x);
}

static void g_data(struct hw_rgroup *g, const uint8_t *p, size_t len,
		   void *ud)
{
	struct end *x = ud;

	assert_true(len > 0);
	for (size_t k = 0; k < len; k++)
		if (p[k] != hw_test_pattern(x->seed_rx, x->recv + k))
			x->bad++;
	x->recv += len;
	hw_rgroup_consumed(g, len);
}

static void g_writable(struct hw_rgroup *g, void *ud)
{
	struct end *x = ud;

	x->writables++;
	pump_writes(x);
}

static void g_closed(struct hw_rgroup *g, int reason, void *ud)
{
	struct end *x = ud;

	assert_ptr_equal(g, x->g);
	x->closed++;
	x->reason = reason;
	x->closed_ms = uv_now(&x->env->loop);
	x->g = NULL;
}

static const struct hw_rgroup_ops g_ops = {
	.ready = g_ready,
	.data = g_data,
	.writable = g_writable,
	.closed = g_closed,
};

static void new_routes(struct env *e);

/* What a visor's routing does for a broken group: the source builds new
 * routes (the destination's INCOMING comes first, then BUILT at the
 * source), or says it could not. */
static void g_broken(struct hw_rgroup *g, const uint8_t *tp_id, void *ud)
{
	struct end *x = ud;
	struct env *e = x->env;
	int initiator = x == &e->a.end;

	e->brokens[!initiator]++;
	if (!initiator)
		return; /* the source builds */
	switch (e->heal) {
	case HEAL_REBUILD:
		e->a.lossy = e->b.lossy = 0;
		new_routes(e);
		assert_int_equal(hw_rgroup_resume(e->b.end.g, e->b.fwd_id,
						  e->b.cons_id), 0);
		assert_int_equal(hw_rgroup_resume(g, e->a.fwd_id,
						  e->a.cons_id), 0);
		break;
	case HEAL_RETRY:
		hw_rgroup_heal_failed(g, 0, -ENETUNREACH, "setup node down");
		break;
	case HEAL_FINAL:
		hw_rgroup_heal_failed(g, 1, -ENETUNREACH, "no other path");
		break;
	}
}

static const struct hw_rgroup_ops g_heal_ops = {
	.ready = g_ready,
	.data = g_data,
	.writable = g_writable,
	.closed = g_closed,
	.broken = g_broken,
};

/* ---- visors ---- */

static void tp_packet(struct hw_tp *tp, const struct hw_packet *pkt,
		      void *ud)
{
	struct visor *v = ud;

	if (v->router)
		hw_router_on_packet(v->router, tp, pkt);
}

static void tp_room(struct hw_tp *tp, void *ud)
{
	struct visor *v = ud;

	if (v->router)
		hw_router_tp_room(v->router, tp);
}

static void deliver(struct hw_router *r, uint32_t rule_id,
		    const struct hw_packet *pkt, void *ud)
{
	struct visor *v = ud;

	if (rule_id != v->cons_id || v->lossy)
		return;
	if (pkt->type == HW_PKT_DATA) {
		if (v->capture && v->ncap < NCAP) {
			v->cap[v->ncap] = malloc(pkt->len);
			assert_non_null(v->cap[v->ncap]);
			memcpy(v->cap[v->ncap], pkt->payload, pkt->len);
			v->caplen[v->ncap++] = pkt->len;
		}
		if (v->hold_next) {
			v->hold_next = 0;
			memcpy(v->held, pkt->payload, pkt->len);
			v->held_len = pkt->len;
			v->have_held = 1;
			return;
		}
	}
	if (v->end.g)
		hw_rgroup_on_packet(v->end.g, pkt);
}

static void visor_start(struct env *e, struct visor *v)
{
	char listen[32];
	struct hw_tp_manager_params tp = {
		.loop = &e->loop,
		.id = &v->id,
		.tcp_listen = listen,
		.keepalive_ms = 5000,
		.handshake_timeout_ms = 5000,
		.max_pending_handshakes = 16,
		.redial_min_ms = 100,
		.redial_max_ms = 1000,
		.on_packet = tp_packet,
		.on_room = tp_room,
		.ud = v,
	};
	struct hw_router_params rp = {
		.loop = &e->loop,
		.deliver = deliver,
		.ud = v,
	};
	char err[256];
	int port = hw_test_free_port();

	/* The listener takes the port a moment later; a port that is taken
	 * in between fails the test loudly. */
	assert_true(port > 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	v->env = e;
	v->end.env = e;
	v->end.v = v;
	assert_int_equal(hw_test_identity(&v->id, v->x_priv), 0);
	assert_int_equal(hw_tp_manager_new(&v->tpm, &tp, err, sizeof(err)), 0);
	rp.tpm = v->tpm;
	assert_int_equal(hw_router_new(&v->router, &rp), 0);
}

static void added(struct hw_tp_manager *m, struct hw_tp *tp, int status,
		  const char *msg, void *ud)
{
	struct env *e = ud;

	e->added = 1;
	e->add_status = status;
}

static int both_up(void *arg)
{
	struct env *e = arg;

	e->a.tp = hw_tp_manager_find(e->a.tpm, e->b.id.pk, "tcp");
	e->b.tp = hw_tp_manager_find(e->b.tpm, e->a.id.pk, "tcp");
	return e->added && e->a.tp && e->b.tp && hw_tp_is_up(e->a.tp) &&
	       hw_tp_is_up(e->b.tp);
}

static void add_rule(struct visor *v, uint32_t id, enum hw_rule_kind kind,
		     uint32_t next_id, const struct hw_route_desc *d)
{
	struct hw_rule r;

	memset(&r, 0, sizeof(r));
	r.id = id;
	r.kind = kind;
	r.keepalive_ms = RULE_KA_MS;
	if (kind == HW_RULE_CONSUME)
		memcpy(r.prev_tp, hw_tp_id_bytes(v->tp), HW_TP_ID_LEN);
	else
		memcpy(r.next_tp, hw_tp_id_bytes(v->tp), HW_TP_ID_LEN);
	r.next_id = next_id;
	r.desc = *d;
	assert_int_equal(hw_router_add(v->router, &r), 0);
}

/* A fresh forward and reverse route: new IDs on both visors. */
static void new_routes(struct env *e)
{
	uint32_t ids[2];

	assert_int_equal(hw_router_reserve(e->a.router, 2, ids), 0);
	e->a.fwd_id = ids[0];
	e->a.cons_id = ids[1];
	assert_int_equal(hw_router_reserve(e->b.router, 2, ids), 0);
	e->b.fwd_id = ids[0];
	e->b.cons_id = ids[1];
	add_rule(&e->a, e->a.fwd_id, HW_RULE_FORWARD, e->b.cons_id, &e->desc);
	add_rule(&e->a, e->a.cons_id, HW_RULE_CONSUME, 0, &e->desc);
	add_rule(&e->b, e->b.cons_id, HW_RULE_CONSUME, 0, &e->desc);
	add_rule(&e->b, e->b.fwd_id, HW_RULE_FORWARD, e->a.cons_id, &e->desc);
}

/* Two visors linked by a transport, with the rules of one group. */
static struct env *env_new(void)
{
	struct env *e = calloc(1, sizeof(*e));
	char err[256];

	assert_non_null(e);
	assert_int_equal(uv_loop_init(&e->loop), 0);
	uv_timer_init(&e->loop, &e->tick);
	visor_start(e, &e->a);
	visor_start(e, &e->b);
	assert_int_equal(hw_tp_manager_add(e->a.tpm, e->b.id.pk, "tcp",
					   hw_tp_manager_listen_addr(e->b.tpm),
					   0, added, e, err, sizeof(err)),
			 0);
	assert_true(run_until(e, both_up, e, 5000));
	assert_int_equal(e->add_status, 0);

	memcpy(e->desc.src_pk, e->a.id.pk, HW_PK_LEN);
	e->desc.src_port = 1000;
	memcpy(e->desc.dst_pk, e->b.id.pk, HW_PK_LEN);
	e->desc.dst_port = 10;
	new_routes(e);
	e->a.end.seed_tx = e->b.end.seed_rx = 0x11;
	e->b.end.seed_tx = e->a.end.seed_rx = 0x77;
	return e;
}

static void params_for(struct env *e, struct visor *v, int initiator,
		       struct hw_rgroup_params *p)
{
	memset(p, 0, sizeof(*p));
	p->loop = &e->loop;
	p->router = v->router;
	p->id = &v->id;
	p->x_priv = v->x_priv;
	p->desc = e->desc;
	p->initiator = initiator;
	p->send_id = v->fwd_id;
	p->recv_id = v->cons_id;
	p->keepalive_ms = GROUP_KA_MS;
	p->ops = &g_ops;
	p->ud = &v->end;
}

/* The destination's group first, as in the visor (INCOMING comes before
 * BUILT), then the source's; healing for heal_ms when not 0. */
static void groups_new_healing(struct env *e, uint32_t heal_ms)
{
	struct hw_rgroup_params p;

	params_for(e, &e->b, 0, &p);
	if (heal_ms) {
		p.heal_ms = heal_ms;
		p.ops = &g_heal_ops;
	}
	assert_int_equal(hw_rgroup_new(&e->b.end.g, &p), 0);
	params_for(e, &e->a, 1, &p);
	if (heal_ms) {
		p.heal_ms = heal_ms;
		p.ops = &g_heal_ops;
	}
	assert_int_equal(hw_rgroup_new(&e->a.end.g, &p), 0);
}

static void groups_new(struct env *e)
{
	groups_new_healing(e, 0);
}

static int both_ready(void *arg)
{
	struct env *e = arg;
	return e->a.end.ready && e->b.end.ready;
}

static int both_closed(void *arg)
{
	struct env *e = arg;
	return e->a.end.closed && e->b.end.closed;
}

static int end_closed(void *arg)
{
	return ((struct end *)arg)->closed;
}

static void env_free(struct env *e)
{
	struct visor *vs[2] = {&e->a, &e->b};

	for (int i = 0; i < 2; i++)
		if (vs[i]->end.g)
			hw_rgroup_abort(vs[i]->end.g, -ECANCELED);
	assert_true(run_until(e, both_closed, e, 1000));
	assert_int_equal(e->a.end.closed, 1);
	assert_int_equal(e->b.end.closed, 1);
	for (int i = 0; i < 2; i++) {
		hw_tp_manager_free(vs[i]->tpm);
		hw_router_free(vs[i]->router);
		vs[i]->router = NULL;
		for (int k = 0; k < vs[i]->ncap; k++)
			free(vs[i]->cap[k]);
	}
	uv_close((uv_handle_t *)&e->tick, NULL);
	assert_int_equal(hw_test_loop_close(&e->loop), 0);
	hw_identity_wipe(&e->a.id);
	hw_identity_wipe(&e->b.id);
	free(e);
}

static int exchanged(void *arg)
{
	struct env *e = arg;
	return e->a.end.recv == e->b.end.total &&
	       e->b.end.recv == e->a.end.total &&
	       e->a.end.sent == e->a.end.total &&
	       e->b.end.sent == e->b.end.total;
}

/* Sends n more bytes each way and checks them. */
static void exchange(struct env *e, uint64_t n)
{
	e->a.end.total += n;
	e->b.end.total += n;
	pump_writes(&e->a.end);
	pump_writes(&e->b.end);
	assert_true(run_until(e, exchanged, e, 60000));
	assert_int_equal(e->a.end.bad, 0);
	assert_int_equal(e->b.end.bad, 0);
}

/* ---- tests ---- */

static void test_bulk_both_ways(void **state)
{
	struct env *e = env_new();
	uint8_t one = 1;
	json_t *j;

	e->a.end.total = e->b.end.total = BULK;
	groups_new(e);
	/* Nothing goes before the handshake. */
	assert_int_equal(hw_rgroup_write(e->a.end.g, &one, 1), -ENOTCONN);
	assert_true(run_until(e, both_ready, e, 5000));
	assert_int_equal(hw_rgroup_write(e->a.end.g, gen_buf,
					 HW_RGROUP_MAX_QUEUED + 1),
			 -EMSGSIZE);
	assert_true(run_until(e, exchanged, e, 60000));
	assert_int_equal(e->a.end.bad, 0);
	assert_int_equal(e->b.end.bad, 0);
	assert_int_equal(e->a.end.recv, BULK);
	assert_int_equal(e->b.end.recv, BULK);
	/* The writers ran into the 1 MiB bound and were told when to go
	 * on. */
	assert_true(e->a.end.blocked > 0);
	assert_true(e->a.end.writables > 0);
	assert_true(e->b.end.blocked > 0);
	assert_true(e->b.end.writables > 0);

	j = hw_rgroup_json(e->a.end.g);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")),
			    "open");
	assert_string_equal(json_string_value(json_object_get(j, "role")),
			    "initiator");
	assert_int_equal(hw_test_jint(j, "bytes_in"), BULK);
	assert_int_equal(hw_test_jint(j, "bytes_out"), BULK);
	assert_int_equal(hw_test_jint(j, "send_id"), e->a.fwd_id);
	assert_int_equal(hw_test_jint(j, "recv_id"), e->a.cons_id);
	assert_int_equal(hw_test_jint(j, "queued"), 0);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "src"))),
			 64 + 5);
	json_decref(j);
	assert_memory_equal(hw_rgroup_desc(e->b.end.g), &e->desc,
			    sizeof(e->desc));

	/* The groups outlive several keepalive periods of silence. */
	run_for(e, 2500);
	assert_int_equal(e->a.end.closed + e->b.end.closed, 0);
	exchange(e, 1000);
	env_free(e);
}

static int a_got_third(void *arg)
{
	struct env *e = arg;
	return e->a.end.recv >= BULK / 3 && e->b.end.recv >= BULK / 3;
}

static json_t *jget(struct hw_rgroup *g, const char *key)
{
	json_t *j = hw_rgroup_json(g), *v;

	assert_non_null(j);
	v = json_deep_copy(json_object_get(j, key));
	json_decref(j);
	return v;
}

static int jint(struct hw_rgroup *g, const char *key)
{
	json_t *v = jget(g, key);
	int n = (int)json_integer_value(v);

	json_decref(v);
	return n;
}

/* The routes die in the middle of a transfer both ways, with packets
 * lost in flight: the groups resume on new routes and every byte
 * arrives once, in order. */
static void test_heal_mid_transfer(void **state)
{
	struct env *e = env_new();
	uint32_t old_a_fwd;

	e->a.end.total = e->b.end.total = BULK;
	groups_new_healing(e, 5000);
	assert_true(run_until(e, both_ready, e, 5000));
	assert_true(run_until(e, a_got_third, e, 60000));
	/* What is under way from here on is lost. */
	e->a.lossy = e->b.lossy = 1;
	old_a_fwd = e->a.fwd_id;
	assert_true(jint(e->a.end.g, "unacked") > 0);
	assert_true(jint(e->a.end.g, "unacked") <= (int)HW_RGROUP_UNACKED_MAX);
	hw_rgroup_route_failed(e->a.end.g, 1, NULL);
	assert_true(run_until(e, exchanged, e, 60000));
	assert_int_equal(e->a.end.bad, 0);
	assert_int_equal(e->b.end.bad, 0);
	assert_int_equal(e->a.end.recv, BULK);
	assert_int_equal(e->b.end.recv, BULK);
	assert_int_equal(e->brokens[0], 1);
	assert_int_equal(e->a.end.closed + e->b.end.closed, 0);
	assert_int_equal(jint(e->a.end.g, "heals"), 1);
	assert_int_equal(jint(e->b.end.g, "heals"), 1);
	assert_int_equal((uint32_t)jint(e->a.end.g, "send_id"), e->a.fwd_id);
	assert_true(e->a.fwd_id != old_a_fwd);
	/* And the healed group closes cleanly. */
	hw_rgroup_close(e->a.end.g);
	assert_true(run_until(e, both_closed, e, 10000));
	assert_int_equal(e->a.end.reason, 0);
	assert_int_equal(e->b.end.reason, 0);
	env_free(e);
}

static int a_broken(void *arg)
{
	return ((struct env *)arg)->brokens[0] > 0;
}

/* A hop's word alone changes nothing when the route answers the probe;
 * when it does not, the group takes the route as broken. */
static void test_hint_probed(void **state)
{
	struct env *e = env_new();
	uint8_t tp[HW_TP_ID_LEN] = {1};
	json_t *why;

	e->heal = HEAL_FINAL;
	groups_new_healing(e, 5000);
	assert_true(run_until(e, both_ready, e, 5000));
	hw_rgroup_route_failed(e->a.end.g, 0, tp);
	run_for(e, 2 * HW_RGROUP_PROBE_MS);
	assert_true(jint(e->a.end.g, "rtt_ms") > 0);
	assert_int_equal(e->brokens[0], 0);
	why = jget(e->a.end.g, "state");
	assert_string_equal(json_string_value(why), "open");
	json_decref(why);
	exchange(e, 100000);

	/* Now the route is dead: the probe goes unanswered. */
	e->b.lossy = 1;
	hw_rgroup_route_failed(e->a.end.g, 0, tp);
	assert_true(run_until(e, a_broken, e, 5 * HW_RGROUP_PROBE_MS));
	/* The owner found no other path: the group ends with why. */
	assert_true(run_until(e, end_closed, &e->a.end, 1000));
	assert_int_equal(e->a.end.reason, -ENETUNREACH);
	env_free(e);
}

/* The owner keeps failing to find routes: asked again, and the group
 * ends when heal_ms has passed. */
static void test_heal_gives_up(void **state)
{
	struct env *e = env_new();
	uint64_t t0;

	e->heal = HEAL_RETRY;
	groups_new_healing(e, 2500);
	assert_true(run_until(e, both_ready, e, 5000));
	e->a.lossy = e->b.lossy = 1;
	t0 = uv_now(&e->loop);
	hw_rgroup_route_failed(e->a.end.g, 1, NULL);
	assert_true(run_until(e, end_closed, &e->a.end, 10000));
	assert_int_equal(e->a.end.reason, -ETIMEDOUT);
	assert_true(e->a.end.closed_ms - t0 >= 2500);
	assert_true(e->brokens[0] >= 2);
	/* Writes during the pause were accepted, not refused. */
	env_free(e);
}

static void test_room_sized_writes(void **state)
{
	struct env *e = env_new();

	e->a.end.by_room = 1;
	e->a.end.total = BULK;
	groups_new(e);
	/* No room before the handshake. */
	assert_int_equal(hw_rgroup_room(e->a.end.g), 0);
	assert_true(run_until(e, both_ready, e, 5000));
	assert_true(run_until(e, exchanged, e, 60000));
	assert_int_equal(e->b.end.recv, BULK);
	assert_int_equal(e->b.end.bad, 0);
	/* The window ran out and credit woke the writer each time. */
	assert_true(e->a.end.blocked > 0);
	assert_true(e->a.end.writables >= e->a.end.blocked - 1);
	/* No room once closing. */
	hw_rgroup_close(e->a.end.g);
	assert_int_equal(hw_rgroup_room(e->a.end.g), 0);
	assert_true(run_until(e, both_closed, e, 10000));
	assert_int_equal(e->a.end.reason, 0);
	env_free(e);
}

static void test_close_acknowledged(void **state)
{
	struct env *e = env_new();
	uint8_t one = 1;

	groups_new(e);
	assert_true(run_until(e, both_ready, e, 5000));
	exchange(e, 10000);
	/* Queued bytes go out before the CLOSE. */
	e->a.end.total += 2u << 20;
	pump_writes(&e->a.end);
	hw_rgroup_close(e->a.end.g);
	assert_int_equal(hw_rgroup_write(e->a.end.g, &one, 1), -ENOTCONN);
	assert_true(run_until(e, both_closed, e, 10000));
	assert_int_equal(e->a.end.reason, 0);
	assert_int_equal(e->b.end.reason, 0);
	assert_int_equal(e->b.end.recv, e->a.end.sent);
	assert_int_equal(e->b.end.bad, 0);
	env_free(e);
}

static void test_close_before_ready(void **state)
{
	struct env *e = env_new();

	groups_new(e);
	hw_rgroup_close(e->a.end.g);
	assert_true(run_until(e, both_closed, e, 5000));
	assert_int_equal(e->a.end.reason, 0);
	assert_int_equal(e->b.end.reason, 0);
	assert_int_equal(e->a.end.ready, 0);
	assert_int_equal(e->b.end.ready, 1);
	env_free(e);
}

static void test_abort_times_out_peer(void **state)
{
	struct env *e = env_new();
	uint64_t t0;

	groups_new(e);
	assert_true(run_until(e, both_ready, e, 5000));
	exchange(e, 1000);
	t0 = uv_now(&e->loop);
	hw_rgroup_abort(e->a.end.g, -ECANCELED);
	/* Not from inside the call. */
	assert_int_equal(e->a.end.closed, 0);
	assert_true(run_until(e, end_closed, &e->a.end, 100));
	assert_int_equal(e->a.end.reason, -ECANCELED);
	assert_true(run_until(e, end_closed, &e->b.end, 3000));
	assert_int_equal(e->b.end.reason, -ETIMEDOUT);
	assert_true(e->b.end.closed_ms - t0 >= GROUP_KA_MS - 10);
	assert_true(e->b.end.closed_ms - t0 <= 2 * GROUP_KA_MS);
	env_free(e);
}

static void test_forged_data(void **state)
{
	struct env *e = env_new();
	uint8_t junk[200];

	groups_new(e);
	assert_true(run_until(e, both_ready, e, 5000));
	exchange(e, 5000);
	/* A's transport is B's CONSUME rule's previous hop: B's router
	 * takes the packet, the group must not. */
	randombytes_buf(junk, sizeof(junk));
	assert_int_equal(hw_tp_send(e->a.tp, HW_PKT_DATA, e->b.cons_id, junk,
				    sizeof(junk)),
			 0);
	assert_true(run_until(e, end_closed, &e->b.end, 2000));
	assert_int_equal(e->b.end.reason, -EPROTO);
	assert_int_equal(e->a.end.closed, 0);
	env_free(e);
}

/* A genuine packet with one bit flipped. */
static void test_tampered_data(void **state)
{
	struct env *e = env_new();
	uint8_t msg[300] = "hello";

	groups_new(e);
	assert_true(run_until(e, both_ready, e, 5000));
	e->b.hold_next = 1;
	assert_int_equal(hw_rgroup_write(e->a.end.g, msg, sizeof(msg)), 0);
	run_for(e, 100);
	assert_true(e->b.have_held);
	e->b.held[10] ^= 0x20;
	assert_int_equal(hw_tp_send(e->a.tp, HW_PKT_DATA, e->b.cons_id,
				    e->b.held, e->b.held_len),
			 0);
	assert_true(run_until(e, end_closed, &e->b.end, 2000));
	assert_int_equal(e->b.end.reason, -EPROTO);
	assert_int_equal(e->b.end.recv, 0);
	env_free(e);
}

/* A hop cannot turn a 1-byte DATA into a CLOSE (the type is bound into
 * the AEAD), nor replay a packet. */
static void test_retyped_and_replayed(void **state)
{
	struct env *e = env_new();
	uint8_t one = 'x';

	groups_new(e);
	assert_true(run_until(e, both_ready, e, 5000));
	e->b.hold_next = 1;
	assert_int_equal(hw_rgroup_write(e->a.end.g, &one, 1), 0);
	run_for(e, 100);
	assert_true(e->b.have_held);
	assert_int_equal(e->b.held_len, 1 + HW_CIPHER_TAGLEN);
	assert_int_equal(hw_tp_send(e->a.tp, HW_PKT_CLOSE, e->b.cons_id,
				    e->b.held, e->b.held_len),
			 0);
	assert_true(run_until(e, end_closed, &e->b.end, 2000));
	assert_int_equal(e->b.end.reason, -EPROTO);
	env_free(e);

	/* Replay: B gets the packet, then the same again. */
	e = env_new();
	groups_new(e);
	assert_true(run_until(e, both_ready, e, 5000));
	e->b.capture = 1;
	assert_int_equal(hw_rgroup_write(e->a.end.g, &one, 1), 0);
	run_for(e, 100);
	assert_int_equal(e->b.end.recv, 1);
	assert_int_equal(e->b.ncap, 1);
	assert_int_equal(hw_tp_send(e->a.tp, HW_PKT_DATA, e->b.cons_id,
				    e->b.cap[0], e->b.caplen[0]),
			 0);
	assert_true(run_until(e, end_closed, &e->b.end, 2000));
	assert_int_equal(e->b.end.reason, -EPROTO);
	assert_int_equal(e->b.end.recv, 1);
	env_free(e);
}

static void test_ciphertext_only(void **state)
{
	static const char marker[] = "PLAINTEXT-MARKER-0123456789abcdef";
	struct env *e = env_new();
	uint8_t *msg = malloc(100000);
	size_t mlen = sizeof(marker) - 1;

	assert_non_null(msg);
	for (size_t k = 0; k < 100000; k++)
		msg[k] = (uint8_t)marker[k % mlen];
	groups_new(e);
	assert_true(run_until(e, both_ready, e, 5000));
	e->b.capture = 1;
	assert_int_equal(hw_rgroup_write(e->a.end.g, msg, 100000), 0);
	assert_int_equal(hw_rgroup_write(e->a.end.g, msg, 40), 0);
	run_for(e, 200);
	assert_int_equal(e->b.end.recv, 100040);
	assert_int_equal(e->b.ncap, 3);
	assert_int_equal(e->b.caplen[0],
			 HW_RGROUP_MAX_PLAINTEXT + HW_CIPHER_TAGLEN);
	assert_int_equal(e->b.caplen[2], 40 + HW_CIPHER_TAGLEN);
	for (int i = 0; i < e->b.ncap; i++) {
		assert_null(memmem(e->b.cap[i], e->b.caplen[i], marker, 16));
		assert_null(memmem(e->b.cap[i], e->b.caplen[i], marker + 16,
				   16));
	}
	free(msg);
	env_free(e);
}

/* The route's rule disappears under the group. */
static void test_route_gone(void **state)
{
	struct env *e = env_new();
	uint8_t one = 1;

	groups_new(e);
	assert_true(run_until(e, both_ready, e, 5000));
	assert_int_equal(hw_router_remove(e->a.router, e->a.fwd_id), 0);
	assert_int_equal(hw_rgroup_write(e->a.end.g, &one, 1), -ENOTCONN);
	assert_true(run_until(e, end_closed, &e->a.end, 100));
	assert_int_equal(e->a.end.reason, -ENOENT);
	env_free(e);
}

static void test_bad_params(void **state)
{
	struct env *e = env_new();
	struct hw_rgroup_params p;
	struct hw_rgroup *g = (struct hw_rgroup *)&p;

	/* A is not the destination. */
	params_for(e, &e->a, 0, &p);
	assert_int_equal(hw_rgroup_new(&g, &p), -EINVAL);
	assert_null(g);
	params_for(e, &e->a, 1, &p);
	p.keepalive_ms = 999;
	assert_int_equal(hw_rgroup_new(&g, &p), -EINVAL);
	params_for(e, &e->a, 1, &p);
	p.send_id = 0;
	assert_int_equal(hw_rgroup_new(&g, &p), -EINVAL);
	/* x_priv that is not the identity's. */
	params_for(e, &e->a, 1, &p);
	p.x_priv = e->b.x_priv;
	assert_int_equal(hw_rgroup_new(&g, &p), -EINVAL);
	/* A descriptor for another group: the handshake cannot complete. */
	params_for(e, &e->b, 0, &p);
	assert_int_equal(hw_rgroup_new(&e->b.end.g, &p), 0);
	params_for(e, &e->a, 1, &p);
	p.desc.dst_port = 11;
	assert_int_equal(hw_rgroup_new(&e->a.end.g, &p), 0);
	assert_true(run_until(e, end_closed, &e->b.end, 2000));
	assert_int_equal(e->b.end.reason, -EPROTO);
	assert_int_equal(e->b.end.ready, 0);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bulk_both_ways),
		cmocka_unit_test(test_heal_mid_transfer),
		cmocka_unit_test(test_hint_probed),
		cmocka_unit_test(test_heal_gives_up),
		cmocka_unit_test(test_room_sized_writes),
		cmocka_unit_test(test_close_acknowledged),
		cmocka_unit_test(test_close_before_ready),
		cmocka_unit_test(test_abort_times_out_peer),
		cmocka_unit_test(test_forged_data),
		cmocka_unit_test(test_tampered_data),
		cmocka_unit_test(test_retyped_and_replayed),
		cmocka_unit_test(test_ciphertext_only),
		cmocka_unit_test(test_route_gone),
		cmocka_unit_test(test_bad_params),
	};
	/* As in the daemons: a write to a closed peer is an error, not a
	 * signal. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
