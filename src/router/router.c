#include "router/router.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/container.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/htab.h"
#include "util/log.h"

#define LOG "router"

/* Live entries (reservations and rules) per router: bounds what a setup
 * node can make a visor spend (about 270 heap bytes a rule, 75 a
 * reservation: hw-bench-router). */
#ifndef HW_ROUTER_MAX_ENTRIES
#define HW_ROUTER_MAX_ENTRIES 1000000
#endif

#define RESERVE_MAX 16
#define FULL_LOG_MS 10000
/* A rule passes on at most one route-failure packet this often: a hop
 * that keeps sending them (or a stream of packets for a dead next hop)
 * costs one packet per period. */
#define FAIL_EVERY_MS 1000

/* Expiry: a timer wheel of TICK_MS slots. An entry sits in the slot of
 * the earliest moment it could expire; a packet only moves its last_ms
 * forward (the hot path touches no list), and the sweep re-slots an entry
 * that turns out to have been used since. Each rule is thus looked at
 * about once per keepalive period, however many packets it carries, and
 * a tick costs only the entries due in its slot. Deadlines beyond the
 * wheel's span (512 s) park in the farthest slot and are re-slotted when
 * it comes round. */
#define TICK_MS 500
#define WHEEL_SLOTS 1024 /* a power of two */

/* A transport read again by force (hops feeding each other in a loop,
 * all paused) may fill what it feeds up to FORCED_MARK for FORCED_MS
 * before it pauses again: one record per forced read would drain the
 * loop only a record at a time. Half the forwarding limit, so a second
 * forced read still finds room. */
#define FORCED_MARK (HW_CONN_FORWARD_MAX / 2)
#define FORCED_MS 1000

/* Packet types that travel on routes; the rest belong to route 0. */
#define ROUTE_TYPES                                                       \
	(1u << HW_PKT_DATA | 1u << HW_PKT_CLOSE | 1u << HW_PKT_KEEPALIVE |  \
	 1u << HW_PKT_HANDSHAKE | 1u << HW_PKT_ERROR |                    \
	 1u << HW_PKT_ROUTE_FAIL)

/* What reservations and rules share; kind 0 is a reservation. */
struct ent {
	struct hw_hnode hn; /* in r->ids */
	uint32_t id;
	uint8_t kind;
	struct ent *w_next, **w_pprev; /* wheel slot, or the slot in sweep */
};

struct resv {
	struct ent e;
	uint64_t expires_ms;
};

struct rent {
	struct ent e;
	struct hw_tp *prev, *next; /* NULL where the kind has none */
	uint64_t last_ms, bytes, packets;
	uint64_t created_ms;
	uint64_t fail_ms; /* when it last passed on a route failure */
	/* In r->bynext, by (next, next_id): where a ROUTE_FAIL_BACK from
	 * the next hop finds it (FORWARD, INTERMEDIARY). */
	struct hw_hnode nn;
	/* On the lists of the transports it uses (struct tpr). */
	struct rent *p_next, **p_pprev;
	struct rent *n_next, **n_pprev;
	struct hw_rule rule;
};

/* The rules using one transport, so that losing it costs only them; and
 * its part in backpressure: a transport whose packets a rule forwards to
 * a congested one is paused (its reading stops) and waits on that one's
 * list of feeders until it drained (docs/routing.md, "Backpressure"). */
struct tpr {
	struct hw_hnode hn; /* in r->tps */
	struct hw_tp *tp;
	struct rent *by_prev, *by_next;
	/* Paused: the list it waits on (the feeders of a congested
	 * transport, or the list being woken), and since when. */
	struct tpr *f_next, **f_pprev;
	uint64_t paused_ms;
	/* Read again by force (feeders_force) at forced_ms: until the
	 * transport it waited on drains or FORCED_MS pass, it pauses only
	 * at FORCED_MARK. */
	uint64_t forced_ms;
	struct tpr *feeders; /* paused transports waiting for this one */
};

struct hw_router {
	struct hw_router_params p;
	uv_timer_t timer;
	struct hw_htab ids; /* struct ent by ID */
	struct hw_htab tps; /* struct tpr by transport */
	struct hw_htab bynext; /* struct rent (nn) by next hop */
	/* Secret hash key: IDs are ours and random already, but nobody who
	 * learns some should be able to tell which share a bucket. */
	uint64_t k0, k1;
	unsigned nrules, nreserved;
	/* Entries freed so far: a caller that ran a callback learns from it
	 * whether its entry may have gone meanwhile. */
	uint64_t frees;
	uint64_t base_ms, cur_tick;
	struct ent *wheel[WHEEL_SLOTS];
	struct ent *sweep; /* the slot being swept */
	struct hw_router_stats st;
	uint64_t full_log_ms;
	int full_logged;
	struct hw_router_waiter *waiters; /* newest first */
	uint64_t drop_log_ms, force_log_ms;
};

/* ---- the rule codec ---- */

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static int is_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static int desc_is_zero(const struct hw_route_desc *d)
{
	return is_zero(d->src_pk, HW_PK_LEN) && is_zero(d->dst_pk, HW_PK_LEN) &&
	       d->src_port == 0 && d->dst_port == 0;
}

/* The checks of docs/routing.md, plus what its "all zero" and "set"
 * imply: a CONSUME rule has no next hop, the others have a next
 * transport. */
static int rule_ok(const struct hw_rule *r)
{
	int has_prev = !is_zero(r->prev_tp, HW_TP_ID_LEN);
	int has_next_tp = !is_zero(r->next_tp, HW_TP_ID_LEN);
	int ports = r->desc.src_port != 0 && r->desc.dst_port != 0;

	if (r->id == 0 || r->keepalive_ms < HW_RULE_KEEPALIVE_MIN_MS ||
	    r->keepalive_ms > HW_RULE_KEEPALIVE_MAX_MS)
		return 0;
	switch (r->kind) {
	case HW_RULE_CONSUME:
		return has_prev && r->next_id == 0 && !has_next_tp && ports;
	case HW_RULE_FORWARD:
		return !has_prev && r->next_id != 0 && has_next_tp && ports;
	case HW_RULE_INTERMEDIARY:
		return has_prev && r->next_id != 0 && has_next_tp &&
		       desc_is_zero(&r->desc);
	}
	return 0;
}

void hw_rule_encode(const struct hw_rule *r, uint8_t out[HW_RULE_ENC_LEN])
{
	uint8_t *p = out;

	put32(p, r->id);
	p += 4;
	*p++ = (uint8_t)r->kind;
	put32(p, r->keepalive_ms);
	p += 4;
	memcpy(p, r->prev_tp, HW_TP_ID_LEN);
	p += HW_TP_ID_LEN;
	put32(p, r->next_id);
	p += 4;
	memcpy(p, r->next_tp, HW_TP_ID_LEN);
	p += HW_TP_ID_LEN;
	memcpy(p, r->desc.src_pk, HW_PK_LEN);
	p += HW_PK_LEN;
	put16(p, r->desc.src_port);
	p += 2;
	memcpy(p, r->desc.dst_pk, HW_PK_LEN);
	p += HW_PK_LEN;
	put16(p, r->desc.dst_port);
}

int hw_rule_decode(const uint8_t *in, size_t len, struct hw_rule *r)
{
	struct hw_rule t;
	const uint8_t *p = in;

	if (len != HW_RULE_ENC_LEN)
		return HW_EPROTO;
	memset(&t, 0, sizeof(t));
	t.id = get32(p);
	p += 4;
	/* Range-checked before it becomes an enum. */
	if (*p < HW_RULE_CONSUME || *p > HW_RULE_INTERMEDIARY)
		return HW_EPROTO;
	t.kind = (enum hw_rule_kind)*p++;
	t.keepalive_ms = get32(p);
	p += 4;
	memcpy(t.prev_tp, p, HW_TP_ID_LEN);
	p += HW_TP_ID_LEN;
	t.next_id = get32(p);
	p += 4;
	memcpy(t.next_tp, p, HW_TP_ID_LEN);
	p += HW_TP_ID_LEN;
	memcpy(t.desc.src_pk, p, HW_PK_LEN);
	p += HW_PK_LEN;
	t.desc.src_port = get16(p);
	p += 2;
	memcpy(t.desc.dst_pk, p, HW_PK_LEN);
	p += HW_PK_LEN;
	t.desc.dst_port = get16(p);
	if (!rule_ok(&t))
		return HW_EPROTO;
	*r = t;
	return 0;
}

/* ---- tables ---- */

/* Keyed multiply-shift: the high half of the product depends on every
 * bit of the key and of a 32-bit input, and the table takes the low bits
 * of the result. Cheaper than SipHash on the hot path;
 * the inputs are our own random IDs and our own pointers, not chosen by
 * peers, so the key only has to hide bucket positions. */
static uint64_t mix(const struct hw_router *r, uint64_t v)
{
	uint64_t x = (v ^ r->k0) * r->k1;

	return x >> 32;
}

static struct ent *ent_find(const struct hw_router *r, uint32_t id)
{
	struct hw_hnode *n = hw_htab_bucket(&r->ids, mix(r, id));

	for (; n; n = n->next)
		if (((struct ent *)n)->id == id)
			return (struct ent *)n;
	return NULL;
}

static int ent_insert(struct hw_router *r, struct ent *e)
{
	e->hn.h = mix(r, e->id);
	hw_htab_insert(&r->ids, &e->hn);
	/* The table only fails to take a node when it could not allocate
	 * its first bucket array. */
	return r->ids.nb ? 0 : -ENOMEM;
}

static uint64_t next_hash(const struct hw_router *r, const struct hw_tp *tp,
			  uint32_t next_id)
{
	return mix(r, (uintptr_t)tp ^ ((uint64_t)next_id << 32 | next_id));
}

/* The rule that sends on tp with route ID next_id, or NULL. */
static struct rent *next_find(const struct hw_router *r,
			      const struct hw_tp *tp, uint32_t next_id)
{
	uint64_t h = next_hash(r, tp, next_id);

	for (struct hw_hnode *n = hw_htab_bucket(&r->bynext, h); n;
	     n = n->next) {
		struct rent *x = HW_CONTAINER_OF(n, struct rent, nn);

		if (n->h == h && x->next == tp && x->rule.next_id == next_id)
			return x;
	}
	return NULL;
}

static struct tpr *tpr_find(const struct hw_router *r,
			    const struct hw_tp *tp)
{
	struct hw_hnode *n = hw_htab_bucket(&r->tps, mix(r, (uintptr_t)tp));

	for (; n; n = n->next)
		if (((struct tpr *)n)->tp == tp)
			return (struct tpr *)n;
	return NULL;
}

static struct tpr *tpr_get(struct hw_router *r, struct hw_tp *tp)
{
	struct tpr *t = tpr_find(r, tp);

	if (t)
		return t;
	if (!(t = calloc(1, sizeof(*t))))
		return NULL;
	t->tp = tp;
	t->hn.h = mix(r, (uintptr_t)tp);
	hw_htab_insert(&r->tps, &t->hn);
	if (!r->tps.nb) {
		free(t);
		return NULL;
	}
	return t;
}

/* Frees t once no rule uses its transport and it takes no part in
 * backpressure. */
static void tpr_put(struct hw_router *r, struct tpr *t)
{
	if (t && !t->by_prev && !t->by_next && !t->f_pprev && !t->feeders) {
		hw_htab_remove(&r->tps, &t->hn);
		free(t);
	}
}

/* ---- backpressure ---- */

static void feeder_unlink(struct tpr *f)
{
	if (!f->f_pprev)
		return;
	*f->f_pprev = f->f_next;
	if (f->f_next)
		f->f_next->f_pprev = f->f_pprev;
	f->f_next = NULL;
	f->f_pprev = NULL;
}

static void feeder_link(struct tpr **head, struct tpr *f)
{
	f->f_next = *head;
	if (f->f_next)
		f->f_next->f_pprev = &f->f_next;
	*head = f;
	f->f_pprev = head;
}

/* A rule forwarded a packet from in to the congested out: in stops
 * reading until out drained. A transport never waits on itself (a hop
 * that did could never drain it), and one already paused stays on the
 * list it waits on. */
static void feeder_pause(struct hw_router *r, struct hw_tp *in,
			 struct hw_tp *out)
{
	struct tpr *f, *o;

	if (in == out || !(f = tpr_get(r, in)) || f->f_pprev)
		return;
	if (!(o = tpr_get(r, out))) {
		tpr_put(r, f);
		return;
	}
	feeder_link(&o->feeders, f);
	f->paused_ms = uv_now(r->p.loop);
	r->st.pauses++;
	r->st.paused++;
	hw_tp_pause(in, 1);
}

/* Lets f read again: off its list, and maybe freed, before the resume,
 * which may hand on packets at once (and so pause f again). */
static void feeder_resume(struct hw_router *r, struct tpr *f)
{
	struct hw_tp *tp = f->tp;

	if (!f->f_pprev)
		return;
	feeder_unlink(f);
	r->st.paused--;
	tpr_put(r, f);
	hw_tp_pause(tp, 0);
}

/* tp drained (or went down): every transport waiting on it reads again,
 * in turn. They are moved to a list of their own first, so one that
 * pauses on tp again at once waits for the next signal. */
static void feeders_wake(struct hw_router *r, struct hw_tp *tp)
{
	struct tpr *o = tpr_find(r, tp), *woken = NULL, *f;

	if (!o || !o->feeders)
		return;
	while ((f = o->feeders)) {
		feeder_unlink(f);
		f->forced_ms = 0; /* it drained: the usual mark again */
		feeder_link(&woken, f);
	}
	tpr_put(r, o);
	while ((f = woken))
		feeder_resume(r, f);
}

/* Paused longer than HW_ROUTER_PAUSE_MAX_MS: the transport it waits on
 * is not draining, maybe because its own peer waits on us (hops feeding
 * each other in a loop). Reading anyway breaks such a wait; what it
 * brings is bounded by HW_CONN_FORWARD_MAX on the congested transport. */
static void feeders_force(struct hw_router *r, uint64_t now)
{
	for (;;) {
		struct tpr *late = NULL;

		for (size_t i = 0; i < r->tps.nb && !late; i++)
			for (struct hw_hnode *n = r->tps.b[i]; n && !late;
			     n = n->next) {
				struct tpr *t = (struct tpr *)n;

				if (t->f_pprev &&
				    now - t->paused_ms >= HW_ROUTER_PAUSE_MAX_MS)
					late = t;
			}
		if (!late)
			return;
		r->st.pauses_forced++;
		if (!r->force_log_ms || now - r->force_log_ms >= FULL_LOG_MS) {
			r->force_log_ms = now;
			hw_log(HW_LOG_WARN, LOG, "transport %s paused for %llu "
			       "ms without the one it feeds draining; reading "
			       "it again", hw_tp_id_hex(late->tp),
			       (unsigned long long)(now - late->paused_ms));
		}
		late->forced_ms = now;
		feeder_resume(r, late);
	}
}

/* Whether in, whose packet went to the congested out, pauses now. */
static int feeder_should_pause(struct hw_router *r, struct hw_tp *in,
			       struct hw_tp *out)
{
	struct tpr *f = tpr_find(r, in);

	if (!f || !f->forced_ms ||
	    uv_now(r->p.loop) - f->forced_ms >= FORCED_MS)
		return 1;
	return hw_tp_queued(out) >= FORCED_MARK;
}

/* ---- the wheel ---- */

static void wheel_link(struct ent **head, struct ent *e)
{
	e->w_next = *head;
	if (e->w_next)
		e->w_next->w_pprev = &e->w_next;
	*head = e;
	e->w_pprev = head;
}

static void wheel_unlink(struct ent *e)
{
	if (!e->w_pprev)
		return;
	*e->w_pprev = e->w_next;
	if (e->w_next)
		e->w_next->w_pprev = e->w_pprev;
	e->w_next = NULL;
	e->w_pprev = NULL;
}

/* Slots e into the first tick at or after deadline_ms (the slot is swept
 * no earlier than that moment), within the wheel's span. */
static void wheel_sched(struct hw_router *r, struct ent *e,
			uint64_t deadline_ms)
{
	uint64_t t = 0;

	if (deadline_ms > r->base_ms)
		t = (deadline_ms - r->base_ms + TICK_MS - 1) / TICK_MS;
	if (t <= r->cur_tick)
		t = r->cur_tick + 1;
	if (t > r->cur_tick + WHEEL_SLOTS)
		t = r->cur_tick + WHEEL_SLOTS;
	wheel_unlink(e);
	wheel_link(&r->wheel[t & (WHEEL_SLOTS - 1)], e);
}

/* ---- entries ---- */

static void resv_drop(struct hw_router *r, struct ent *e)
{
	wheel_unlink(e);
	hw_htab_remove(&r->ids, &e->hn);
	r->nreserved--;
	r->frees++;
	free(e);
}

/* Takes x out of every table and frees it; then tells the owner when
 * notify (the callback sees a copy: the rule is gone by then). */
static void rule_drop(struct hw_router *r, struct rent *x, int reason,
		      int notify)
{
	struct hw_rule copy = x->rule;

	wheel_unlink(&x->e);
	hw_htab_remove(&r->ids, &x->e.hn);
	if (x->next)
		hw_htab_remove(&r->bynext, &x->nn);
	if (x->p_pprev) {
		*x->p_pprev = x->p_next;
		if (x->p_next)
			x->p_next->p_pprev = x->p_pprev;
		tpr_put(r, tpr_find(r, x->prev));
	}
	if (x->n_pprev) {
		*x->n_pprev = x->n_next;
		if (x->n_next)
			x->n_next->n_pprev = x->n_pprev;
		tpr_put(r, tpr_find(r, x->next));
	}
	r->nrules--;
	r->frees++;
	free(x);
	if (notify && r->p.rule_gone)
		r->p.rule_gone(r, &copy, reason, r->p.ud);
}

static void ent_drop(struct hw_router *r, struct ent *e)
{
	if (e->kind == 0)
		resv_drop(r, e);
	else
		rule_drop(r, (struct rent *)e, 0, 0);
}

/* ---- expiry ---- */

/* Entries on r->sweep are popped one at a time, so a callback that
 * removes others (say the other direction of a route) only unlinks them
 * from the list being walked. */
static void sweep_slot(struct hw_router *r, unsigned slot, uint64_t now)
{
	struct ent *e;

	r->sweep = r->wheel[slot];
	r->wheel[slot] = NULL;
	if (r->sweep)
		r->sweep->w_pprev = &r->sweep;
	while ((e = r->sweep)) {
		wheel_unlink(e);
		if (e->kind == 0) {
			struct resv *v = (struct resv *)e;

			if (now >= v->expires_ms)
				resv_drop(r, e);
			else
				wheel_sched(r, e, v->expires_ms);
		} else {
			struct rent *x = (struct rent *)e;
			uint64_t due = x->last_ms + x->rule.keepalive_ms;
			struct tpr *in = x->prev ? tpr_find(r, x->prev) : NULL;

			/* Its packets wait unread because we paused their
			 * transport: the rule is not idle. */
			if (now >= due && in && in->f_pprev) {
				x->last_ms = now;
				due = now + x->rule.keepalive_ms;
			}
			if (now >= due) {
				hw_log(HW_LOG_DEBUG, LOG, "rule %u expired",
				       x->e.id);
				rule_drop(r, x, -ETIMEDOUT, 1);
			} else {
				wheel_sched(r, e, due);
			}
		}
	}
}

static void on_timer(uv_timer_t *t)
{
	struct hw_router *r = t->data;
	uint64_t now = uv_now(r->p.loop);
	uint64_t target = (now - r->base_ms) / TICK_MS;

	/* After a stall longer than the wheel, one round covers every
	 * slot; entries are checked against the clock, not the tick. */
	if (target > r->cur_tick + WHEEL_SLOTS)
		r->cur_tick = target - WHEEL_SLOTS;
	while (r->cur_tick < target) {
		r->cur_tick++;
		sweep_slot(r, (unsigned)(r->cur_tick & (WHEEL_SLOTS - 1)),
			   now);
	}
	if (r->st.paused)
		feeders_force(r, now);
}

/* ---- public ---- */

int hw_router_new(struct hw_router **out, const struct hw_router_params *p)
{
	struct hw_router *r;

	*out = NULL;
	if (!p || !p->loop)
		return -EINVAL;
	if (sodium_init() < 0)
		return HW_ECRYPTO;
	if (!(r = calloc(1, sizeof(*r))))
		return -ENOMEM;
	r->p = *p;
	randombytes_buf(&r->k0, sizeof(r->k0));
	randombytes_buf(&r->k1, sizeof(r->k1));
	r->k1 |= 1;
	r->base_ms = uv_now(p->loop);
	uv_timer_init(p->loop, &r->timer);
	r->timer.data = r;
	uv_timer_start(&r->timer, on_timer, TICK_MS, TICK_MS);
	*out = r;
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

void hw_router_free(struct hw_router *r)
{
	if (!r)
		return;
	uv_timer_stop(&r->timer);
	for (size_t i = 0; i < r->ids.nb; i++) {
		struct hw_hnode *n = r->ids.b[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(n); /* struct ent is first in resv and rent */
		}
	}
	for (size_t i = 0; i < r->tps.nb; i++) {
		struct hw_hnode *n = r->tps.b[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(n);
		}
	}
	hw_htab_free(&r->ids);
	hw_htab_free(&r->tps);
	hw_htab_free(&r->bynext);
	/* Waiters outlive the router as not waiting. */
	while (r->waiters)
		hw_router_unwait(r->waiters);
	uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

int hw_router_reserve(struct hw_router *r, unsigned n, uint32_t *ids)
{
	uint32_t draw[RESERVE_MAX];
	uint64_t now = uv_now(r->p.loop);
	unsigned i;
	int rc = 0;

	if (n < 1 || n > RESERVE_MAX)
		return -EINVAL;
	if ((uint64_t)r->nrules + r->nreserved + n > HW_ROUTER_MAX_ENTRIES) {
		if (!r->full_logged || now - r->full_log_ms >= FULL_LOG_MS) {
			hw_log(HW_LOG_WARN, LOG, "rule table full (%u rules, "
			       "%u reserved)", r->nrules, r->nreserved);
			r->full_logged = 1;
			r->full_log_ms = now;
		}
		return -ENOSPC;
	}
	randombytes_buf(draw, n * sizeof(draw[0]));
	for (i = 0; i < n; i++) {
		uint32_t id = draw[i];
		struct resv *v;

		while (id == 0 || ent_find(r, id))
			randombytes_buf(&id, sizeof(id));
		if (!(v = calloc(1, sizeof(*v)))) {
			rc = -ENOMEM;
			goto out;
		}
		v->e.id = id;
		v->expires_ms = now + HW_ROUTER_RESERVE_MS;
		if ((rc = ent_insert(r, &v->e))) {
			free(v);
			goto out;
		}
		wheel_sched(r, &v->e, v->expires_ms);
		r->nreserved++;
		ids[i] = id;
	}
out:
	if (rc)
		while (i-- > 0)
			resv_drop(r, ent_find(r, ids[i]));
	return rc;
}

static struct hw_tp *tp_lookup(struct hw_router *r,
			       const uint8_t id[HW_TP_ID_LEN])
{
	char hex[HW_TP_ID_HEXLEN + 1];

	if (!r->p.tpm)
		return NULL;
	hw_hex_encode(id, HW_TP_ID_LEN, hex);
	return hw_tp_manager_find_id(r->p.tpm, hex);
}

int hw_router_add(struct hw_router *r, const struct hw_rule *rule)
{
	struct ent *e = NULL;
	struct rent *x = NULL;
	struct hw_tp *prev = NULL, *next = NULL;
	struct tpr *tp_prev = NULL, *tp_next = NULL;
	uint64_t now = uv_now(r->p.loop);
	int rc = 0;

	if (!rule_ok(rule))
		return -EINVAL;
	e = ent_find(r, rule->id);
	if (!e || e->kind != 0)
		return -ENOENT;
	if (rule->kind != HW_RULE_FORWARD &&
	    !(prev = tp_lookup(r, rule->prev_tp)))
		return -ENOTCONN;
	if (rule->kind != HW_RULE_CONSUME &&
	    !(next = tp_lookup(r, rule->next_tp)))
		return -ENOTCONN;
	if (!(x = calloc(1, sizeof(*x))))
		return -ENOMEM;
	if (prev && !(tp_prev = tpr_get(r, prev))) {
		rc = -ENOMEM;
		goto out;
	}
	if (next && !(tp_next = tpr_get(r, next))) {
		rc = -ENOMEM;
		goto out;
	}
	if (next) {
		x->nn.h = next_hash(r, next, rule->next_id);
		hw_htab_insert(&r->bynext, &x->nn);
		if (!r->bynext.nb) {
			rc = -ENOMEM;
			goto out;
		}
	}
	/* The rule takes the reservation's place; the count stays, so the
	 * table does not grow and the insert cannot fail. */
	resv_drop(r, e);
	x->e.id = rule->id;
	x->e.kind = (uint8_t)rule->kind;
	ent_insert(r, &x->e);
	x->rule = *rule;
	x->prev = prev;
	x->next = next;
	x->created_ms = x->last_ms = now;
	if (tp_prev) {
		x->p_next = tp_prev->by_prev;
		if (x->p_next)
			x->p_next->p_pprev = &x->p_next;
		tp_prev->by_prev = x;
		x->p_pprev = &tp_prev->by_prev;
	}
	if (tp_next) {
		x->n_next = tp_next->by_next;
		if (x->n_next)
			x->n_next->n_pprev = &x->n_next;
		tp_next->by_next = x;
		x->n_pprev = &tp_next->by_next;
	}
	wheel_sched(r, &x->e, now + rule->keepalive_ms);
	r->nrules++;
	x = NULL;
out:
	if (x) {
		tpr_put(r, tp_prev);
		tpr_put(r, tp_next);
		free(x);
	}
	return rc;
}

int hw_router_remove(struct hw_router *r, uint32_t id)
{
	struct ent *e = ent_find(r, id);

	if (!e)
		return -ENOENT;
	ent_drop(r, e);
	return 0;
}

const struct hw_rule *hw_router_find(const struct hw_router *r, uint32_t id)
{
	struct ent *e = ent_find(r, id);

	return e && e->kind ? &((struct rent *)e)->rule : NULL;
}

/* ---- route failures ---- */

/* Whether x may pass on a route failure now (one per FAIL_EVERY_MS). */
static int fail_allowed(struct hw_router *r, struct rent *x)
{
	uint64_t now = uv_now(r->p.loop);

	if (x->fail_ms && now - x->fail_ms < FAIL_EVERY_MS) {
		r->st.failures_limited++;
		return 0;
	}
	x->fail_ms = now;
	return 1;
}

/* Tells the hops of x's route that it broke at the transport tp_id: a
 * ROUTE_FAIL along the route to its end when x still has a next hop, a
 * ROUTE_FAIL_BACK against it to its start when x still has a previous
 * hop (payload, when not NULL, is one received: passed on as it is). The
 * sends may remove rules (x too): callers compare r->frees. */
static void fail_send(struct hw_router *r, struct rent *x, int back,
		      const uint8_t *payload, uint8_t code,
		      const uint8_t tp_id[HW_TP_ID_LEN])
{
	uint8_t p[HW_ROUTE_FAIL_LEN];
	int rc;

	if (!payload) {
		p[0] = code;
		memcpy(p + 1, tp_id, HW_TP_ID_LEN);
		payload = p;
	}
	if (back)
		rc = hw_tp_send(x->prev, HW_PKT_ROUTE_FAIL_BACK, x->e.id,
				payload, HW_ROUTE_FAIL_LEN);
	else
		rc = hw_tp_send(x->next, HW_PKT_ROUTE_FAIL, x->rule.next_id,
				payload, HW_ROUTE_FAIL_LEN);
	if (rc == 0)
		r->st.failures_sent++;
}

/* tp went down or away under the INTERMEDIARY rule x: the hops on the
 * side that is left hear of it. */
static void fail_lost(struct hw_router *r, struct rent *x,
		      const struct hw_tp *tp)
{
	if (x->e.kind != HW_RULE_INTERMEDIARY || !fail_allowed(r, x))
		return;
	if (x->prev == tp)
		fail_send(r, x, 0, NULL, HW_ROUTE_FAIL_TP_LOST,
			  x->rule.prev_tp);
	else
		fail_send(r, x, 1, NULL, HW_ROUTE_FAIL_TP_LOST,
			  x->rule.next_tp);
}

/* A ROUTE_FAIL_BACK from the next hop tp: for the rule that sends on tp
 * with this packet's route ID, so only that next hop can send one. */
static void on_fail_back(struct hw_router *r, struct hw_tp *tp,
			 const struct hw_packet *pkt)
{
	struct rent *x = next_find(r, tp, pkt->route_id);

	if (!x || pkt->len != HW_ROUTE_FAIL_LEN) {
		r->st.dropped_unknown++;
		return;
	}
	if (!fail_allowed(r, x))
		return;
	if (x->e.kind == HW_RULE_FORWARD) {
		r->st.delivered++;
		if (r->p.deliver)
			r->p.deliver(r, x->e.id, pkt, r->p.ud);
		return;
	}
	fail_send(r, x, 1, pkt->payload, 0, NULL);
}

/* A packet past even the forwarding limit of x's next transport: lost,
 * counted and logged (at most every FULL_LOG_MS). Backpressure keeps
 * honest traffic below the limit (docs/routing.md). */
static void forward_full(struct hw_router *r, struct rent *x)
{
	uint64_t now = uv_now(r->p.loop);

	r->st.dropped_full++;
	if (r->drop_log_ms && now - r->drop_log_ms < FULL_LOG_MS)
		return;
	r->drop_log_ms = now;
	hw_log(HW_LOG_WARN, LOG, "rule %u: transport %s holds %u bytes "
	       "already; packet dropped (%llu so far)", x->e.id,
	       hw_tp_id_hex(x->next), HW_CONN_FORWARD_MAX,
	       (unsigned long long)r->st.dropped_full);
}

void hw_router_on_packet(struct hw_router *r, struct hw_tp *tp,
			 const struct hw_packet *pkt)
{
	struct ent *e;
	struct rent *x;
	struct hw_tp *next;
	uint64_t frees;
	int rc;

	if (pkt->type == HW_PKT_ROUTE_FAIL_BACK) {
		on_fail_back(r, tp, pkt);
		return;
	}
	e = ent_find(r, pkt->route_id);
	x = (struct rent *)e;
	/* A FORWARD rule's ID is only for sending; nothing arrives on it. */
	if (!e || e->kind == 0 || e->kind == HW_RULE_FORWARD ||
	    pkt->type >= 32 || !(ROUTE_TYPES & 1u << pkt->type)) {
		r->st.dropped_unknown++;
		return;
	}
	if (tp != x->prev) {
		r->st.dropped_wrong_tp++;
		return;
	}
	if (pkt->type == HW_PKT_ROUTE_FAIL &&
	    (pkt->len != HW_ROUTE_FAIL_LEN || !fail_allowed(r, x))) {
		if (pkt->len != HW_ROUTE_FAIL_LEN)
			r->st.dropped_unknown++;
		return;
	}
	if (e->kind == HW_RULE_CONSUME) {
		/* Before the callback, which may remove the rule. */
		x->last_ms = uv_now(r->p.loop);
		x->packets++;
		x->bytes += pkt->len;
		r->st.delivered++;
		if (r->p.deliver)
			r->p.deliver(r, e->id, pkt, r->p.ud);
		return;
	}
	/* A failed write may close the connection and, through the
	 * manager, remove this rule before hw_tp_forward returns. */
	frees = r->frees;
	next = x->next;
	if ((rc = hw_tp_forward(next, pkt->type, x->rule.next_id,
				pkt->payload, pkt->len))) {
		if (rc == -ENOBUFS) {
			forward_full(r, x);
		} else {
			r->st.dropped_down++;
			/* Nowhere to go: the start of the route hears of
			 * it. */
			if (rc == -ENOTCONN && r->frees == frees &&
			    pkt->type != HW_PKT_ROUTE_FAIL &&
			    fail_allowed(r, x))
				fail_send(r, x, 1, NULL,
					  HW_ROUTE_FAIL_NO_NEXT,
					  x->rule.next_tp);
			return;
		}
	} else {
		r->st.forwarded++;
		if (r->frees == frees) {
			x->last_ms = uv_now(r->p.loop);
			x->packets++;
			x->bytes += pkt->len;
		}
	}
	/* Backpressure: the next transport is over its high-water mark, so
	 * this one stops reading until it drained. */
	if (r->frees == frees && hw_tp_congested(next) &&
	    feeder_should_pause(r, tp, next))
		feeder_pause(r, tp, next);
}

int hw_router_send_fill(struct hw_router *r, uint32_t id, uint8_t type,
			uint16_t len, hw_conn_fill_fn fill, void *arg)
{
	struct ent *e = ent_find(r, id);
	struct rent *x = (struct rent *)e;
	uint64_t frees;
	int rc;

	if (!e || e->kind != HW_RULE_FORWARD)
		return -ENOENT;
	if (type >= 32 || !(ROUTE_TYPES & 1u << type))
		return -EINVAL;
	frees = r->frees;
	if ((rc = hw_tp_send_fill(x->next, type, x->rule.next_id, len, fill,
				  arg)))
		return rc;
	r->st.forwarded++;
	if (r->frees == frees) {
		x->last_ms = uv_now(r->p.loop);
		x->packets++;
		x->bytes += len;
	}
	return 0;
}

int hw_router_send(struct hw_router *r, uint32_t id, uint8_t type,
		   const uint8_t *payload, uint16_t len)
{
	return hw_router_send_fill(r, id, type, len, hw_conn_fill_copy,
				   (void *)payload);
}

void hw_router_tp_removed(struct hw_router *r, struct hw_tp *tp)
{
	struct tpr *t;

	/* It waits for nothing any more: a new connection reads. */
	if ((t = tpr_find(r, tp)) && t->f_pprev)
		feeder_resume(r, t);
	/* Looked up afresh each time: the last rule frees t, and a
	 * callback may remove other rules of this transport. */
	while ((t = tpr_find(r, tp)) && (t->by_prev || t->by_next)) {
		struct rent *x = t->by_prev ? t->by_prev : t->by_next;
		uint64_t frees = r->frees;

		hw_log(HW_LOG_DEBUG, LOG, "rule %u lost its transport",
		       x->e.id);
		fail_lost(r, x, tp);
		if (r->frees != frees)
			continue; /* the send removed rules, maybe x */
		rule_drop(r, x, -ENOTCONN, 1);
	}
	hw_router_tp_room(r, tp);
}

/* ---- waiting for room ---- */

int hw_router_wait_room(struct hw_router *r, uint32_t id,
			struct hw_router_waiter *w)
{
	struct ent *e = ent_find(r, id);

	if (!e || e->kind != HW_RULE_FORWARD)
		return -ENOENT;
	if (w->pprev)
		return 0;
	w->tp = ((struct rent *)e)->next;
	w->next = r->waiters;
	if (w->next)
		w->next->pprev = &w->next;
	w->pprev = &r->waiters;
	r->waiters = w;
	return 0;
}

void hw_router_unwait(struct hw_router_waiter *w)
{
	if (!w->pprev)
		return;
	*w->pprev = w->next;
	if (w->next)
		w->next->pprev = w->pprev;
	w->next = NULL;
	w->pprev = NULL;
}

void hw_router_tp_room(struct hw_router *r, struct hw_tp *tp)
{
	struct hw_router_waiter *woken = NULL, *w, *next;

	/* Moved to a list of their own first (the oldest at its head): a
	 * callback may wait again, which must not wake it twice, or stop
	 * another woken waiter, which then leaves this list. */
	for (w = r->waiters; w; w = next) {
		next = w->next;
		if (w->tp != tp)
			continue;
		hw_router_unwait(w);
		w->next = woken;
		if (woken)
			woken->pprev = &w->next;
		w->pprev = &woken;
		woken = w;
	}
	while ((w = woken)) {
		hw_router_unwait(w);
		w->cb(w);
	}
	feeders_wake(r, tp);
}

static const char *kind_name(enum hw_rule_kind k)
{
	switch (k) {
	case HW_RULE_CONSUME:
		return "consume";
	case HW_RULE_FORWARD:
		return "forward";
	case HW_RULE_INTERMEDIARY:
		return "intermediary";
	}
	return "unknown";
}

static int set_end(json_t *o, const char *key, const uint8_t pk[HW_PK_LEN],
		   uint16_t port)
{
	char s[HW_PK_HEXLEN + 16];

	hw_hex_encode(pk, HW_PK_LEN, s);
	snprintf(s + HW_PK_HEXLEN, sizeof(s) - HW_PK_HEXLEN, ":%u", port);
	return json_object_set_new(o, key, json_string(s));
}

static json_t *rule_json(const struct rent *x, uint64_t now)
{
	const struct hw_rule *ru = &x->rule;
	const struct {
		const char *key;
		uint64_t v;
	} ints[] = {
		{"next_id", ru->next_id},
		{"keepalive_ms", ru->keepalive_ms},
		{"age_ms", now - x->created_ms},
		{"idle_ms", now - x->last_ms},
		{"bytes", x->bytes},
		{"packets", x->packets},
	};
	char tp[HW_TP_ID_HEXLEN + 1];
	json_t *o = json_object();
	int bad;

	if (!o)
		return NULL;
	/* A CONSUME rule's only transport is the one it listens on. */
	hw_hex_encode(ru->kind == HW_RULE_CONSUME ? ru->prev_tp : ru->next_tp,
		      HW_TP_ID_LEN, tp);
	bad = json_object_set_new(o, "id", json_integer(ru->id)) |
	      json_object_set_new(o, "kind", json_string(kind_name(ru->kind))) |
	      json_object_set_new(o, "transport", json_string(tp));
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		bad |= json_object_set_new(o, ints[i].key,
					   json_integer((json_int_t)ints[i].v));
	if (ru->kind != HW_RULE_INTERMEDIARY)
		bad |= set_end(o, "src", ru->desc.src_pk, ru->desc.src_port) |
		       set_end(o, "dst", ru->desc.dst_pk, ru->desc.dst_port);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *hw_router_rules_json(const struct hw_router *r)
{
	uint64_t now = uv_now(r->p.loop);
	json_t *a = json_array();

	if (!a)
		return NULL;
	for (size_t i = 0; i < r->ids.nb; i++) {
		for (struct hw_hnode *n = r->ids.b[i]; n; n = n->next) {
			const struct ent *e = (const struct ent *)n;

			if (e->kind == 0)
				continue;
			json_t *o = rule_json((const struct rent *)e, now);

			if (json_array_append_new(a, o)) {
				json_decref(a);
				return NULL;
			}
		}
	}
	return a;
}

void hw_router_stats(const struct hw_router *r, struct hw_router_stats *st)
{
	*st = r->st;
	st->rules = r->nrules;
	st->reserved = r->nreserved;
}
