/* The relay server and client together on one loop over loopback: a relay
 * and three visors (A, B, C), plus raw sessions (hw_relay_wire driven by
 * hand) that misbehave on purpose. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "relay/client.h"
#include "relay/frame.h"
#include "relay/server.h"
#include "relay/wire.h"
#include "util/err.h"
#include "hwtest.h"

/* Full DATA units that fit one window of credit. */
#define WINDOW_UNITS ((int)(HW_RELAY_WINDOW / HW_RELAY_BODY_MAX))

#define KEEPALIVE_MS 200
#define NVISORS 3

struct env;

/* One direction of test traffic on a stream, and the stream's events. */
struct flow {
	struct env *env;
	struct hw_relay_stream *s;
	int opened, open_status;
	char open_msg[256];
	int closed, close_reason;
	uint64_t total; /* bytes to send */
	uint64_t queued, written, failed;
	uint64_t recv;
	uint8_t seed_tx, seed_rx;
	int bad;
};

struct visor {
	struct env *env;
	struct hw_identity id;
	uint8_t x_priv[32];
	struct hw_relay_client *rc;
	int ups, downs;
	int refuse;
	int accepted;
	struct flow *inbound; /* flow for the next accepted stream */
};

/* A session driven by hand. */
struct raw {
	struct hw_relay_wire *w;
	struct hw_identity id;
	uint8_t x_priv[32];
	int ready, closed, reason;
	char err[200];
	int opens, accepts, refuses, closes;
	uint32_t last_open_id, last_close_id;
	uint8_t last_refuse;
	uint64_t data;
};

struct env {
	uv_loop_t loop;
	uv_timer_t tick;
	struct hw_identity relay_id;
	struct hw_relay_server_params sp;
	struct hw_relay_server *srv;
	uint16_t port;
	char addr[32];
	struct visor v[NVISORS];
};

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

/* ---- flows ---- */

struct wbuf {
	struct flow *f;
	size_t n;
	uint8_t data[];
};

static void pump_writes(struct flow *f);

static void on_wdone(void *arg, int status)
{
	struct wbuf *b = arg;
	struct flow *f = b->f;

	if (status == 0)
		f->written += b->n;
	else
		f->failed += b->n;
	free(b);
	pump_writes(f);
}

/* Keeps up to two windows of writes of random sizes queued until total
 * (more than the credit allows, so some always wait for it). */
static void pump_writes(struct flow *f)
{
	while (f->s && f->queued < f->total &&
	       f->queued - f->written - f->failed < 2u * HW_RELAY_WINDOW) {
		size_t n = 1 + randombytes_uniform(150000);
		struct wbuf *b;

		if (n > f->total - f->queued)
			n = (size_t)(f->total - f->queued);
		b = malloc(sizeof(*b) + n);
		assert_non_null(b);
		b->f = f;
		b->n = n;
		for (size_t k = 0; k < n; k++)
			b->data[k] = hw_test_pattern(f->seed_tx, f->queued + k);
		if (hw_relay_stream_write(f->s, b->data, n, on_wdone, b)) {
			free(b);
			return;
		}
		f->queued += n;
	}
}

static void flow_opened(struct hw_relay_stream *s, int status,
			const char *msg, void *ud)
{
	struct flow *f = ud;

	f->opened = 1;
	f->open_status = status;
	snprintf(f->open_msg, sizeof(f->open_msg), "%s", msg ? msg : "");
	if (status) {
		f->s = NULL;
		return;
	}
	pump_writes(f);
}

static void flow_data(struct hw_relay_stream *s, const uint8_t *p,
		      size_t len, void *ud)
{
	struct flow *f = ud;

	for (size_t k = 0; k < len; k++)
		if (p[k] != hw_test_pattern(f->seed_rx, f->recv + k))
			f->bad++;
	f->recv += len;
}

static void flow_closed(struct hw_relay_stream *s, int reason, void *ud)
{
	struct flow *f = ud;

	f->closed = 1;
	f->close_reason = reason;
	f->s = NULL;
}

static const struct hw_relay_stream_ops flow_ops = {
	.opened = flow_opened,
	.data = flow_data,
	.closed = flow_closed,
};

static void flow_init(struct flow *f, struct env *e, uint64_t total,
		      uint8_t seed_tx, uint8_t seed_rx)
{
	memset(f, 0, sizeof(*f));
	f->env = e;
	f->total = total;
	f->seed_tx = seed_tx;
	f->seed_rx = seed_rx;
}

/* ---- visors ---- */

static int v_accept(struct hw_relay_client *rc, const uint8_t relay_pk[32],
		    const uint8_t from_pk[32], struct hw_relay_stream *s,
		    void *ud)
{
	struct visor *v = ud;
	struct flow *f = v->inbound;

	assert_memory_equal(relay_pk, v->env->relay_id.pk, 32);
	assert_memory_equal(hw_relay_stream_remote_pk(s), from_pk, 32);
	if (v->refuse || !f)
		return -ECONNREFUSED;
	v->accepted++;
	v->inbound = NULL;
	f->s = s;
	f->opened = 1;
	hw_relay_stream_set_ops(s, &flow_ops, f);
	/* Writes made inside accept wait for the ACCEPT to go out. */
	pump_writes(f);
	return 0;
}

static void v_session(struct hw_relay_client *rc, const uint8_t relay_pk[32],
		      int up, void *ud)
{
	struct visor *v = ud;
	if (up)
		v->ups++;
	else
		v->downs++;
}

static void visor_start(struct env *e, struct visor *v)
{
	struct hw_relay_client_params p = {
		.loop = &e->loop,
		.id = &v->id,
		.x_priv = v->x_priv,
		.keepalive_ms = KEEPALIVE_MS,
		.handshake_timeout_ms = 3000,
		.redial_min_ms = 50,
		.redial_max_ms = 400,
		.accept = v_accept,
		.session = v_session,
		.ud = v,
	};

	v->env = e;
	assert_int_equal(hw_test_identity(&v->id, v->x_priv), 0);
	assert_int_equal(hw_relay_client_new(&v->rc, &p), 0);
	assert_int_equal(hw_relay_client_hold(v->rc, e->relay_id.pk, e->addr),
			 0);
}

static int all_up(void *arg)
{
	struct env *e = arg;
	for (int i = 0; i < NVISORS; i++)
		if (!hw_relay_client_is_up(e->v[i].rc, e->relay_id.pk))
			return 0;
	return 1;
}

/* The relay registers a session when it reads message 3, a moment after
 * the visor counts it up. */
static int relay_has_all(void *arg)
{
	struct env *e = arg;
	json_t *j;
	int n;

	if (!all_up(e))
		return 0;
	j = hw_relay_server_stats_json(e->srv);
	n = (int)json_integer_value(json_object_get(j, "sessions"));
	json_decref(j);
	return n == NVISORS;
}

static void server_start(struct env *e)
{
	char err[256];

	e->sp.loop = &e->loop;
	e->sp.id = &e->relay_id;
	assert_int_equal(hw_relay_server_new(&e->srv, &e->sp), 0);
	assert_int_equal(hw_relay_server_listen(e->srv, "127.0.0.1", e->port,
						err, sizeof(err)),
			 0);
	e->port = hw_relay_server_port(e->srv);
}

/* A relay (params from tweak, if any) and three visors holding sessions
 * to it. */
static struct env *env_new(void (*tweak)(struct hw_relay_server_params *))
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	assert_int_equal(uv_loop_init(&e->loop), 0);
	uv_timer_init(&e->loop, &e->tick);
	assert_int_equal(hw_identity_generate(&e->relay_id), 0);
	hw_relay_server_defaults(&e->sp);
	e->sp.keepalive_ms = KEEPALIVE_MS;
	if (tweak)
		tweak(&e->sp);
	server_start(e);
	snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%u", e->port);
	for (int i = 0; i < NVISORS; i++)
		visor_start(e, &e->v[i]);
	assert_true(run_until(e, relay_has_all, e, 5000));
	return e;
}

static void env_free(struct env *e)
{
	for (int i = 0; i < NVISORS; i++) {
		hw_relay_client_free(e->v[i].rc);
		hw_identity_wipe(&e->v[i].id);
	}
	hw_relay_server_free(e->srv);
	uv_close((uv_handle_t *)&e->tick, NULL);
	assert_int_equal(hw_test_loop_close(&e->loop), 0);
	hw_identity_wipe(&e->relay_id);
	free(e);
}

static int flow_opened_cond(void *arg)
{
	return ((struct flow *)arg)->opened;
}

static int flow_closed_cond(void *arg)
{
	return ((struct flow *)arg)->closed;
}

/* Opens a stream from a to b carrying fa (a's side) and fb (b's). */
static void open_pair(struct env *e, struct visor *a, struct visor *b,
		      struct flow *fa, struct flow *fb)
{
	b->inbound = fb;
	assert_int_equal(hw_relay_stream_open(a->rc, e->relay_id.pk, b->id.pk,
					      &flow_ops, fa, &fa->s),
			 0);
	assert_true(run_until(e, flow_opened_cond, fa, 5000));
	assert_int_equal(fa->open_status, 0);
	assert_int_equal(fb->opened, 1);
	assert_memory_equal(hw_relay_stream_remote_pk(fa->s), b->id.pk, 32);
	assert_memory_equal(hw_relay_stream_relay_pk(fa->s), e->relay_id.pk,
			    32);
}

struct two {
	struct flow *a, *b;
};

static int exchanged(void *arg)
{
	struct two *t = arg;
	return t->a->recv == t->b->total && t->b->recv == t->a->total &&
	       t->a->written == t->a->total && t->b->written == t->b->total;
}

/* Sends n more bytes each way on an open pair and checks them. */
static void exchange(struct env *e, struct flow *fa, struct flow *fb,
		     uint64_t n)
{
	struct two t = {fa, fb};

	fa->total += n;
	fb->total += n;
	pump_writes(fa);
	pump_writes(fb);
	assert_true(run_until(e, exchanged, &t, 60000));
	assert_int_equal(fa->bad, 0);
	assert_int_equal(fb->bad, 0);
	assert_int_equal(fa->failed + fb->failed, 0);
}

/* ---- raw sessions ---- */

static void raw_ready(struct hw_relay_wire *w, void *ud)
{
	((struct raw *)ud)->ready = 1;
}

static void raw_control(struct hw_relay_wire *w,
			const struct hw_relay_frame *f, void *ud)
{
	struct raw *r = ud;

	switch (f->type) {
	case HW_RELAY_OPEN:
		r->opens++;
		r->last_open_id = f->stream;
		break;
	case HW_RELAY_ACCEPT:
		r->accepts++;
		break;
	case HW_RELAY_REFUSE:
		r->refuses++;
		r->last_refuse = f->body[0];
		break;
	case HW_RELAY_CLOSE:
		r->closes++;
		r->last_close_id = f->stream;
		break;
	}
}

static void raw_data(struct hw_relay_wire *w, uint32_t stream,
		     const uint8_t *p, size_t len, void *ud)
{
	((struct raw *)ud)->data += len;
}

static void raw_closed(struct hw_relay_wire *w, int reason, void *ud)
{
	struct raw *r = ud;

	r->closed = 1;
	r->reason = reason;
	r->w = NULL;
	snprintf(r->err, sizeof(r->err), "%s", hw_relay_wire_error(w));
}

static const struct hw_relay_wire_ops raw_ops = {
	.ready = raw_ready,
	.control = raw_control,
	.data = raw_data,
	.closed = raw_closed,
};

static int raw_ready_cond(void *arg)
{
	struct raw *r = arg;
	return r->ready || r->closed;
}

static int raw_closed_cond(void *arg)
{
	return ((struct raw *)arg)->closed;
}

/* Dials the relay as id (a fresh identity when NULL). */
static void raw_dial(struct env *e, struct raw *r,
		     const struct hw_identity *id)
{
	uint8_t xpub[32];
	struct hw_relay_wire_params p = {
		.handshake_timeout_ms = 3000,
		.keepalive_ms = 0,
		.ops = &raw_ops,
	};

	memset(r, 0, sizeof(*r));
	if (id)
		r->id = *id;
	else
		assert_int_equal(hw_identity_generate(&r->id), 0);
	assert_int_equal(hw_identity_x25519(&r->id, r->x_priv, xpub), 0);
	p.id = &r->id;
	p.x_priv = r->x_priv;
	p.ud = r;
	assert_int_equal(hw_relay_wire_dial(&r->w, &e->loop, &p,
					    e->relay_id.pk, "127.0.0.1",
					    e->port),
			 0);
	assert_true(run_until(e, raw_ready_cond, r, 5000));
}

static void raw_free(struct env *e, struct raw *r)
{
	if (r->w)
		hw_relay_wire_close(r->w, 0, 0);
	assert_true(run_until(e, raw_closed_cond, r, 5000));
	hw_identity_wipe(&r->id);
}

static void raw_open(struct env *e, struct raw *r, uint32_t id,
		     const uint8_t target[32])
{
	struct hw_relay_open o;
	uint8_t body[HW_RELAY_OPEN_LEN];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	memcpy(o.initiator, r->id.pk, 32);
	memcpy(o.target, target, 32);
	memcpy(o.relay, e->relay_id.pk, 32);
	o.ts_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	randombytes_buf(o.nonce, sizeof(o.nonce));
	hw_relay_open_sign(&o, &r->id);
	hw_relay_open_encode(&o, body);
	assert_int_equal(hw_relay_wire_send_control(r->w, HW_RELAY_OPEN, id,
						    body, sizeof(body)),
			 0);
}

static uint64_t sstat(struct env *e, const char *key)
{
	json_t *j = hw_relay_server_stats_json(e->srv);
	uint64_t v = (uint64_t)json_integer_value(json_object_get(j, key));
	json_decref(j);
	return v;
}

static uint64_t refusals(struct env *e, const char *key)
{
	json_t *j = hw_relay_server_stats_json(e->srv);
	uint64_t v = (uint64_t)json_integer_value(
		json_object_get(json_object_get(j, "refusals"), key));
	json_decref(j);
	return v;
}

/* ---- tests ---- */

/* Several MB both ways in random-sized writes, in order, intact; then
 * many streams at once; sessions stay up across idle keepalive periods. */
static void test_data_both_ways(void **state)
{
	struct env *e = env_new(NULL);
	struct visor *a = &e->v[0], *b = &e->v[1];
	struct flow fa, fb, g[8], h[8];
	json_t *j;

	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	open_pair(e, a, b, &fa, &fb);
	exchange(e, &fa, &fb, 6u << 20);
	assert_true(sstat(e, "bytes_forwarded") >= 12u << 20);
	assert_int_equal(sstat(e, "streams"), 1);
	/* No credit leaks: after the idle flush the relay sees a full
	 * window each way again, so more data flows. */
	run_for(e, 3 * KEEPALIVE_MS);
	exchange(e, &fa, &fb, 1u << 20);
	assert_int_equal(a->downs + b->downs, 0);

	/* Eight more streams between the same visors, all at once. */
	for (int i = 0; i < 8; i++) {
		flow_init(&g[i], e, 0, (uint8_t)(10 + i), (uint8_t)(20 + i));
		flow_init(&h[i], e, 0, (uint8_t)(20 + i), (uint8_t)(10 + i));
		open_pair(e, a, b, &g[i], &h[i]);
	}
	for (int i = 0; i < 8; i++) {
		g[i].total = h[i].total = 300000;
		pump_writes(&g[i]);
		pump_writes(&h[i]);
	}
	for (int i = 0; i < 8; i++) {
		struct two t = {&g[i], &h[i]};
		assert_true(run_until(e, exchanged, &t, 30000));
		assert_int_equal(g[i].bad + h[i].bad, 0);
	}
	assert_int_equal(sstat(e, "streams"), 9);

	j = hw_relay_client_sessions_json(a->rc);
	assert_int_equal(json_array_size(j), 1);
	assert_true(json_is_true(json_object_get(json_array_get(j, 0), "up")));
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(j, 0), "streams")),
			 9);
	json_decref(j);
	/* Freeing the clients with open streams closes them. */
	env_free(e);
	assert_true(fa.closed && fb.closed);
	for (int i = 0; i < 8; i++)
		assert_true(g[i].closed && h[i].closed);
}

/* A held stream gets no more than one window past what it credited:
 * the sender waits; released, the rest flows, every byte once. */
static int got_total(void *arg)
{
	struct two *t = arg;
	return t->b->recv == t->a->total && t->a->written == t->a->total;
}

static void test_hold(void **state)
{
	struct env *e = env_new(NULL);
	struct visor *a = &e->v[0], *b = &e->v[1];
	struct flow fa, fb;
	struct two t = {&fa, &fb};
	uint64_t at_hold;

	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	open_pair(e, a, b, &fa, &fb);
	exchange(e, &fa, &fb, 1u << 20);
	at_hold = fb.recv;
	hw_relay_stream_hold(fb.s, 1);
	hw_relay_stream_hold(fb.s, 1);
	fa.total += 4u * HW_RELAY_WINDOW;
	pump_writes(&fa);
	run_for(e, 4 * KEEPALIVE_MS);
	/* What was credited before the hold, and not a byte more. */
	assert_true(fb.recv > at_hold);
	assert_true(fb.recv - at_hold <= HW_RELAY_WINDOW);
	assert_true(fa.written < fa.total);
	run_for(e, 2 * KEEPALIVE_MS);
	assert_true(fb.recv - at_hold <= HW_RELAY_WINDOW);
	hw_relay_stream_hold(fb.s, 0);
	assert_true(run_until(e, got_total, &t, 30000));
	assert_int_equal(fb.bad, 0);
	assert_int_equal(fa.failed, 0);
	assert_int_equal(a->downs + b->downs, 0);
	env_free(e);
}

static int closed_both(void *arg)
{
	struct two *t = arg;
	return t->a->closed && t->b->closed;
}

/* A close reaches the other side, with its reason. */
static void test_close(void **state)
{
	struct env *e = env_new(NULL);
	struct visor *a = &e->v[0], *b = &e->v[1];
	struct flow fa, fb;
	struct two t = {&fa, &fb};

	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	open_pair(e, a, b, &fa, &fb);
	exchange(e, &fa, &fb, 100000);
	hw_relay_stream_close(fa.s, 0);
	hw_relay_stream_close(fa.s, 0); /* safe twice */
	assert_true(run_until(e, closed_both, &t, 5000));
	assert_int_equal(fa.close_reason, 0);
	assert_int_equal(fb.close_reason, HW_ECLOSED);
	assert_int_equal(sstat(e, "streams"), 0);

	/* The other way round, with an error. */
	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	open_pair(e, b, a, &fb, &fa);
	hw_relay_stream_close(fb.s, -EIO);
	assert_true(run_until(e, closed_both, &t, 5000));
	assert_int_equal(fb.close_reason, -EIO);
	assert_int_equal(fa.close_reason, -ECONNRESET);

	/* Writes queued beyond the credit when the stream closes complete
	 * with an error; those that went out complete with 0. */
	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	open_pair(e, a, b, &fa, &fb);
	fa.total = 4u * HW_RELAY_WINDOW;
	pump_writes(&fa);
	hw_relay_stream_close(fa.s, 0);
	assert_true(run_until(e, closed_both, &t, 5000));
	assert_int_equal(fa.written + fa.failed, fa.queued);
	assert_true(fa.failed > 0);
	/* A write cut short counts as failed though part of it arrived. */
	assert_true(fb.recv <= fa.written + fa.failed);
	env_free(e);
}

/* Open failures: no session, refused, self, unknown relay. */
static void test_open_failures(void **state)
{
	struct env *e = env_new(NULL);
	struct visor *a = &e->v[0], *b = &e->v[1];
	struct hw_identity nobody;
	struct hw_relay_stream *s;
	struct flow fa, fb;

	assert_int_equal(hw_identity_generate(&nobody), 0);
	flow_init(&fa, e, 0, 1, 2);
	assert_int_equal(hw_relay_stream_open(a->rc, e->relay_id.pk, nobody.pk,
					      &flow_ops, &fa, &fa.s),
			 0);
	assert_true(run_until(e, flow_opened_cond, &fa, 5000));
	assert_int_equal(fa.open_status, -EHOSTUNREACH);
	assert_non_null(strstr(fa.open_msg, "no session"));
	assert_int_equal(refusals(e, "no_session"), 1);

	b->refuse = 1;
	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	b->inbound = &fb;
	assert_int_equal(hw_relay_stream_open(a->rc, e->relay_id.pk, b->id.pk,
					      &flow_ops, &fa, &fa.s),
			 0);
	assert_true(run_until(e, flow_opened_cond, &fa, 5000));
	assert_int_equal(fa.open_status, -ECONNREFUSED);
	assert_non_null(strstr(fa.open_msg, "refused"));
	assert_int_equal(b->accepted, 0);
	b->refuse = 0;

	flow_init(&fa, e, 0, 1, 2);
	assert_int_equal(hw_relay_stream_open(a->rc, e->relay_id.pk, a->id.pk,
					      &flow_ops, &fa, &fa.s),
			 0);
	assert_true(run_until(e, flow_opened_cond, &fa, 5000));
	assert_int_equal(fa.open_status, -EPROTO);

	assert_int_equal(hw_relay_stream_open(a->rc, nobody.pk, b->id.pk,
					      &flow_ops, &fa, &s),
			 -ENOENT);
	assert_int_equal(hw_relay_client_hold(a->rc, e->relay_id.pk, "nope"),
			 -EINVAL);

	/* Closing a stream that is still opening fails its open. */
	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	b->inbound = &fb;
	assert_int_equal(hw_relay_stream_open(a->rc, e->relay_id.pk, b->id.pk,
					      &flow_ops, &fa, &fa.s),
			 0);
	hw_relay_stream_close(fa.s, 0);
	assert_true(run_until(e, flow_opened_cond, &fa, 5000));
	assert_int_equal(fa.open_status, -ECANCELED);
	run_for(e, 100);
	assert_int_equal(sstat(e, "streams") + sstat(e, "opening"), 0);
	/* The open went out before the close: B may have accepted it and
	 * then seen it closed. */
	assert_true(!fb.opened || run_until(e, flow_closed_cond, &fb, 2000));
	b->inbound = NULL;
	hw_identity_wipe(&nobody);
	env_free(e);
}

static void small_streams(struct hw_relay_server_params *p)
{
	p->max_streams = 4;
}

/* The per-session stream limit refuses the fifth stream. */
static void test_stream_limit(void **state)
{
	struct env *e = env_new(small_streams);
	struct visor *a = &e->v[0], *b = &e->v[1];
	struct flow fa[5], fb[5];
	int i;

	for (i = 0; i < 4; i++) {
		flow_init(&fa[i], e, 0, 1, 2);
		flow_init(&fb[i], e, 0, 2, 1);
		open_pair(e, a, b, &fa[i], &fb[i]);
	}
	flow_init(&fa[4], e, 0, 1, 2);
	flow_init(&fb[4], e, 0, 2, 1);
	b->inbound = &fb[4];
	assert_int_equal(hw_relay_stream_open(a->rc, e->relay_id.pk, b->id.pk,
					      &flow_ops, &fa[4], &fa[4].s),
			 0);
	assert_true(run_until(e, flow_opened_cond, &fa[4], 5000));
	assert_int_equal(fa[4].open_status, -EMFILE);
	assert_non_null(strstr(fa[4].open_msg, "stream limit"));
	assert_int_equal(refusals(e, "stream_limit"), 1);
	b->inbound = NULL;
	/* Closing one makes room again. */
	hw_relay_stream_close(fa[0].s, 0);
	assert_true(run_until(e, flow_closed_cond, &fb[0], 5000));
	flow_init(&fa[4], e, 0, 1, 2);
	flow_init(&fb[4], e, 0, 2, 1);
	open_pair(e, a, b, &fa[4], &fb[4]);
	exchange(e, &fa[4], &fb[4], 10000);
	env_free(e);
}

/* Garbage after the handshake drops that session only. */
static void test_garbage_session(void **state)
{
	struct env *e = env_new(NULL);
	struct visor *a = &e->v[0], *b = &e->v[1];
	static const uint8_t junk[] = "\x42\x00\x00\x00\x01\x00\x10garbage!";
	struct flow fa, fb;
	struct raw g;

	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	open_pair(e, a, b, &fa, &fb);
	raw_dial(e, &g, NULL);
	assert_true(g.ready);
	run_for(e, 50); /* the relay reads message 3 after g is ready */
	assert_int_equal(sstat(e, "sessions"), 4);
	assert_int_equal(hw_relay_wire_send_raw_for_test(g.w, junk,
							 sizeof(junk) - 1),
			 0);
	assert_true(run_until(e, raw_closed_cond, &g, 5000));
	assert_non_null(strstr(g.err, "bad unit"));
	assert_int_equal(sstat(e, "dropped"), 1);
	exchange(e, &fa, &fb, 200000);
	assert_int_equal(sstat(e, "sessions"), 3);
	raw_free(e, &g);

	/* A frame for a stream that was never opened, sealed properly. */
	raw_dial(e, &g, NULL);
	assert_int_equal(hw_relay_wire_send_control(g.w, HW_RELAY_CREDIT, 7,
						    (const uint8_t *)"\0\0\0\1",
						    4),
			 0);
	assert_true(run_until(e, raw_closed_cond, &g, 5000));
	assert_non_null(strstr(g.err, "never opened"));
	raw_free(e, &g);

	/* An OPEN with an even id. */
	raw_dial(e, &g, NULL);
	raw_open(e, &g, 2, b->id.pk);
	assert_true(run_until(e, raw_closed_cond, &g, 5000));
	assert_non_null(strstr(g.err, "odd"));
	raw_free(e, &g);
	exchange(e, &fa, &fb, 10000);
	env_free(e);
}

static void ignore_done(void *arg, int status)
{
}

static int flow_recv_at_least(void *arg)
{
	struct flow *f = arg;
	return f->recv >= f->total && f->closed;
}

/* A session sending beyond its credit is dropped; the stream's other end
 * sees it closed, peer gone. */
static void test_credit_enforced(void **state)
{
	struct env *e = env_new(NULL);
	struct visor *b = &e->v[1];
	static uint8_t junk[HW_RELAY_BODY_MAX];
	uv_buf_t ub = uv_buf_init((char *)junk, sizeof(junk));
	struct flow fb, fa2, fb2;
	struct raw m;
	int i;

	flow_init(&fb, e, 0, 0, 0);
	b->inbound = &fb;
	raw_dial(e, &m, NULL);
	raw_open(e, &m, 1, b->id.pk);
	assert_true(run_until(e, flow_opened_cond, &fb, 5000));
	run_for(e, 50);
	assert_int_equal(m.accepts, 1);
	for (int k = 0; k < (int)sizeof(junk); k++)
		junk[k] = hw_test_pattern(0, (uint64_t)k);
	/* WINDOW_UNITS units fit the window, the next one not. */
	for (i = 0; i < WINDOW_UNITS + 1; i++)
		assert_int_equal(hw_relay_wire_send_data(m.w, 1, &ub, 1,
							 ignore_done, NULL),
				 0);
	fb.total = WINDOW_UNITS * sizeof(junk);
	assert_true(run_until(e, raw_closed_cond, &m, 5000));
	assert_non_null(strstr(m.err, "beyond credit"));
	/* Only the first unit matches the pattern at its offsets: count
	 * bytes. */
	assert_true(run_until(e, flow_recv_at_least, &fb, 5000));
	assert_int_equal(fb.recv, WINDOW_UNITS * sizeof(junk));
	assert_int_equal(fb.close_reason, -EHOSTDOWN);
	raw_free(e, &m);

	/* Everyone else is fine. */
	flow_init(&fa2, e, 0, 1, 2);
	flow_init(&fb2, e, 0, 2, 1);
	open_pair(e, &e->v[0], &e->v[2], &fa2, &fb2);
	exchange(e, &fa2, &fb2, 500000);
	env_free(e);
}

static void short_open(struct hw_relay_server_params *p)
{
	p->open_timeout_ms = 300;
}

/* A target that never answers: the opener gets REFUSE 6, the target a
 * CLOSE. */
static void test_open_timeout(void **state)
{
	struct env *e = env_new(short_open);
	struct visor *a = &e->v[0];
	struct flow fa;
	struct raw t;

	raw_dial(e, &t, NULL);
	flow_init(&fa, e, 0, 1, 2);
	assert_int_equal(hw_relay_stream_open(a->rc, e->relay_id.pk, t.id.pk,
					      &flow_ops, &fa, &fa.s),
			 0);
	assert_true(run_until(e, flow_opened_cond, &fa, 5000));
	assert_int_equal(fa.open_status, -ETIMEDOUT);
	assert_int_equal(t.opens, 1);
	assert_int_equal(t.last_open_id, 2);
	run_for(e, 50);
	assert_int_equal(t.closes, 1);
	assert_int_equal(t.last_close_id, 2);
	assert_int_equal(refusals(e, "timed_out"), 1);
	/* Its late answer is ignored (the id is known, closed). */
	assert_int_equal(hw_relay_wire_send_control(t.w, HW_RELAY_ACCEPT, 2,
						    NULL, 0),
			 0);
	run_for(e, 100);
	assert_false(t.closed);
	raw_free(e, &t);
	env_free(e);
}

static int visor_down(void *arg)
{
	return ((struct visor *)arg)->downs > 0;
}

static int raw_closed_and_up(void *arg)
{
	struct visor *v = arg;
	return hw_relay_client_is_up(v->rc, v->env->relay_id.pk) &&
	       v->ups >= 2;
}

/* A second session with the same key replaces the first; the visor's
 * held session comes back and replaces it in turn. */
static void test_replace(void **state)
{
	struct env *e = env_new(NULL);
	struct visor *a = &e->v[0], *b = &e->v[1];
	struct flow fa, fb;
	struct raw r;

	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	open_pair(e, b, a, &fb, &fa);
	raw_dial(e, &r, &a->id);
	assert_true(r.ready);
	assert_true(run_until(e, visor_down, a, 5000));
	/* B's stream to A ended: its peer's session went away. */
	assert_true(run_until(e, closed_both, &(struct two){&fa, &fb}, 5000));
	assert_int_equal(fb.close_reason, -EHOSTDOWN);
	assert_true(run_until(e, raw_closed_and_up, a, 5000));
	assert_true(run_until(e, raw_closed_cond, &r, 5000));
	assert_non_null(strstr(r.err, "replaced"));
	assert_int_equal(sstat(e, "replaced"), 2);
	raw_free(e, &r);
	env_free(e);
}

static void three_sessions(struct hw_relay_server_params *p)
{
	p->max_sessions = 3;
}

static void test_relay_full(void **state)
{
	struct env *e = env_new(three_sessions);
	struct raw f;

	raw_dial(e, &f, NULL);
	assert_true(run_until(e, raw_closed_cond, &f, 5000));
	assert_non_null(strstr(f.err, "relay full: 3 sessions"));
	assert_int_equal(sstat(e, "rejected_full"), 1);
	raw_free(e, &f);
	env_free(e);
}

static int all_down(void *arg)
{
	struct env *e = arg;
	for (int i = 0; i < NVISORS; i++)
		if (e->v[i].downs < 1)
			return 0;
	return 1;
}

/* The relay restarts: held sessions come back by themselves, streams
 * work again. */
static void test_relay_restart(void **state)
{
	struct env *e = env_new(NULL);
	struct visor *a = &e->v[0], *b = &e->v[1];
	struct flow fa, fb;

	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	open_pair(e, a, b, &fa, &fb);
	hw_relay_server_free(e->srv);
	e->srv = NULL;
	assert_true(run_until(e, all_down, e, 5000));
	assert_true(run_until(e, closed_both, &(struct two){&fa, &fb}, 5000));
	assert_false(hw_relay_client_is_up(a->rc, e->relay_id.pk));
	run_for(e, 200); /* a few failed re-dials */
	server_start(e);
	assert_true(run_until(e, relay_has_all, e, 5000));
	flow_init(&fa, e, 0, 1, 2);
	flow_init(&fb, e, 0, 2, 1);
	open_pair(e, a, b, &fa, &fb);
	exchange(e, &fa, &fb, 1u << 20);
	/* Releasing the session closes its streams and stops re-dials. */
	hw_relay_client_release(a->rc, e->relay_id.pk);
	assert_true(run_until(e, closed_both, &(struct two){&fa, &fb}, 5000));
	assert_false(hw_relay_client_is_up(a->rc, e->relay_id.pk));
	run_for(e, 300);
	assert_int_equal(sstat(e, "sessions"), 2);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_both_ways),
		cmocka_unit_test(test_hold),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_open_failures),
		cmocka_unit_test(test_stream_limit),
		cmocka_unit_test(test_garbage_session),
		cmocka_unit_test(test_credit_enforced),
		cmocka_unit_test(test_open_timeout),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_relay_full),
		cmocka_unit_test(test_relay_restart),
	};
	/* As in the daemons: a write to a closed peer is an error, not a
	 * signal. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
