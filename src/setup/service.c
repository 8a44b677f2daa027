#include "setup/service.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "crypto/identity.h"
#include "router/router.h"
#include "router/setup_msg.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/htab.h"
#include "util/log.h"

#define LOG "setup"
/* Two paths of 16 hops visit 17 visors each and share both ends. */
#define SLOTS_MAX (2 * (HW_SETUP_HOPS_MAX + 1) - 2)
/* Rollback requests (DEL_RULES) carry this bit in their req: their
 * answers are expected, but belong to no build any more. Build requests
 * count in the other 31 bits. */
#define REQ_DEL_BIT 0x80000000u
/* "ab12cd34..." */
#define NAME_LEN 12

enum phase { PH_RESERVE, PH_RULES, PH_INCOMING };

struct build;

/* A resolve or dial under way for a slot. Neither can be cancelled, so
 * the callback always gets the ticket; a build that ended sets slot to
 * NULL and the callback only frees it. */
struct ticket {
	struct slot *slot;
};

/* One visor of a build. */
struct slot {
	struct hw_hnode node; /* in s->reqs while req != 0 */
	struct build *b;
	uint8_t pk[HW_PK_LEN];
	char name[NAME_LEN];
	uint32_t req;  /* the request outstanding, 0 for none */
	uint8_t asked; /* its type: RESERVE, ADD_RULES or INCOMING */
	int has_tp;    /* tp_hex names the transport it was asked on */
	char tp_hex[HW_TP_ID_HEXLEN + 1];
	struct ticket *ticket;
	int fwd_pos, rev_pos; /* its place on each path, -1 when not on it */
	int fwd_id, rev_id;   /* index into ids of its rule on each path */
	unsigned nids;        /* 1 or 2 */
	uint32_t ids[2];
	int held; /* ids are reserved (or carry rules) on the visor */
};

struct build {
	struct build *next;
	struct hw_setup_service *s;
	uv_timer_t timer;
	int done; /* answered; the memory goes when the timer has closed */
	enum phase phase;
	unsigned waiting; /* slots that have not finished this phase */
	unsigned timeout_ms;
	uint64_t start_ms;
	uint32_t req; /* the source's BUILD */
	char src_tp_hex[HW_TP_ID_HEXLEN + 1];
	struct hw_route_desc desc;
	uint32_t keepalive_ms;
	unsigned fwd_n, rev_n;
	struct hw_setup_hop fwd[HW_SETUP_HOPS_MAX], rev[HW_SETUP_HOPS_MAX];
	/* The slot of the visor at each place on each path. */
	uint8_t fwd_slot[HW_SETUP_HOPS_MAX + 1], rev_slot[HW_SETUP_HOPS_MAX + 1];
	unsigned nslots; /* slot 0 is the source */
	struct slot slots[SLOTS_MAX];
};

struct hw_setup_service {
	uv_loop_t *loop;
	uint8_t pk[HW_PK_LEN]; /* its own */
	struct hw_tp_manager *tpm;
	const struct hw_setup_service_ops *ops;
	void *ud;
	struct build *builds; /* in progress */
	unsigned nbuilds;
	unsigned nclosing; /* ended builds whose timer is closing */
	int freed;
	struct hw_htab reqs; /* slot by outstanding req */
	uint32_t last_req;
	unsigned timeout_ms;
	uint64_t ok, failed, rollbacks, unexpected, malformed;
};

static void build_end(struct build *b, uint8_t status, const char *text);

/* ---- helpers ---- */

static void pk_name(const uint8_t pk[HW_PK_LEN], char out[NAME_LEN])
{
	char hex[HW_PK_HEXLEN + 1];

	hw_pk_format(pk, hex);
	snprintf(out, NAME_LEN, "%.8s...", hex);
}

/* Formats a BUILT or RESULT text: at most HW_SETUP_TEXT_MAX bytes, cut
 * on a UTF-8 character boundary, control characters replaced. */
static void fmt_text(char out[HW_SETUP_TEXT_MAX + 1], const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fmt_text(char out[HW_SETUP_TEXT_MAX + 1], const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	hw_setup_text_set(out, tmp);
}

/* Texts from local sources (a resolver's or dialer's message) may hold
 * bytes that are not UTF-8; the encoder refuses those, so they go. */
static void text_to_ascii(char *t)
{
	for (; *t; t++)
		if ((uint8_t)*t >= 0x80)
			*t = '?';
}



/* Answers a BUILD that never became a build. */
static int send_built(struct hw_tp *tp, uint32_t req, uint8_t status,
		      const char *text, uint32_t fwd_send_id,
		      uint32_t rev_recv_id)
{
	struct hw_setup_msg m;
	int rc;

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_BUILT;
	m.req = req;
	m.u.built.status = status;
	fmt_text(m.u.built.text, "%s", text);
	m.u.built.fwd_send_id = fwd_send_id;
	m.u.built.rev_recv_id = rev_recv_id;
	if ((rc = hw_setup_msg_send(tp, &m)) == -EINVAL) {
		text_to_ascii(m.u.built.text);
		rc = hw_setup_msg_send(tp, &m);
	}
	return rc;
}

static uint32_t next_req(struct hw_setup_service *s)
{
	/* 2^31 requests before a req comes back, while one is outstanding
	 * for seconds at most: reqs in flight never collide. */
	s->last_req = (s->last_req + 1) & ~REQ_DEL_BIT;
	if (s->last_req == 0)
		s->last_req = 1;
	return s->last_req;
}

static uint64_t req_hash(uint32_t req)
{
	return (uint64_t)req * 0x9e3779b97f4a7c15ull;
}

static struct slot *find_req(struct hw_setup_service *s, uint32_t req)
{
	uint64_t h = req_hash(req);

	for (struct hw_hnode *x = hw_htab_bucket(&s->reqs, h); x; x = x->next)
		if (x->h == h && ((struct slot *)x)->req == req)
			return (struct slot *)x;
	return NULL;
}

static void drop_req(struct slot *sl)
{
	if (!sl->req)
		return;
	hw_htab_remove(&sl->b->s->reqs, &sl->node);
	sl->req = 0;
}

/* The live transport a slot was asked on, or NULL. */
static struct hw_tp *slot_tp(struct slot *sl)
{
	struct hw_tp *tp;

	if (!sl->has_tp)
		return NULL;
	tp = hw_tp_manager_find_id(sl->b->s->tpm, sl->tp_hex);
	return tp && hw_tp_is_up(tp) ? tp : NULL;
}

static const char *send_error(int rc)
{
	if (rc == -EINVAL)
		return "the request did not encode";
	return rc == -ENOBUFS ? "its transport's send queue is full"
			      : "its transport is down";
}

static uint8_t send_status(int rc)
{
	if (rc == -ENOBUFS)
		return HW_SETUP_LIMIT;
	return rc == -EINVAL ? HW_SETUP_INTERNAL : HW_SETUP_NO_TP;
}

static void build_fail(struct build *b, uint8_t status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void build_fail(struct build *b, uint8_t status, const char *fmt, ...)
{
	char tmp[1024], text[HW_SETUP_TEXT_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	fmt_text(text, "%s", tmp);
	build_end(b, status, text);
}

/* Sends a request to a slot's visor and records it as outstanding. */
static int slot_ask(struct slot *sl, struct hw_tp *tp, struct hw_setup_msg *m)
{
	struct hw_setup_service *s = sl->b->s;
	int rc;

	m->req = next_req(s);
	if ((rc = hw_setup_msg_send(tp, m)))
		return rc;
	sl->req = m->req;
	sl->asked = m->type;
	sl->has_tp = 1;
	snprintf(sl->tp_hex, sizeof(sl->tp_hex), "%s", hw_tp_id_hex(tp));
	sl->node.h = req_hash(sl->req);
	hw_htab_insert(&s->reqs, &sl->node);
	return 0;
}

/* The route ID of the visor at place k on a path (rev: the reverse). */
static uint32_t path_id(const struct build *b, int rev, unsigned k)
{
	const struct slot *sl =
		&b->slots[rev ? b->rev_slot[k] : b->fwd_slot[k]];
	return sl->ids[rev ? sl->rev_id : sl->fwd_id];
}

/* The rule for place k of a path: FORWARD at the start, CONSUME at the
 * end, INTERMEDIARY between. Both ends' rules carry the BUILD's
 * descriptor as it came, so the two ends name the route group alike. */
static void path_rule(const struct build *b, int rev, unsigned k,
		      struct hw_rule *r)
{
	const struct hw_setup_hop *hops = rev ? b->rev : b->fwd;
	unsigned n = rev ? b->rev_n : b->fwd_n;

	memset(r, 0, sizeof(*r));
	r->id = path_id(b, rev, k);
	r->keepalive_ms = b->keepalive_ms;
	if (k == 0) {
		r->kind = HW_RULE_FORWARD;
		r->next_id = path_id(b, rev, 1);
		memcpy(r->next_tp, hops[0].tp_id, HW_TP_ID_LEN);
		r->desc = b->desc;
	} else if (k == n) {
		r->kind = HW_RULE_CONSUME;
		memcpy(r->prev_tp, hops[n - 1].tp_id, HW_TP_ID_LEN);
		r->desc = b->desc;
	} else {
		r->kind = HW_RULE_INTERMEDIARY;
		memcpy(r->prev_tp, hops[k - 1].tp_id, HW_TP_ID_LEN);
		r->next_id = path_id(b, rev, k + 1);
		memcpy(r->next_tp, hops[k].tp_id, HW_TP_ID_LEN);
	}
}

/* ---- steps ---- */

static void start_timer(struct build *b);

static void phase_incoming(struct build *b)
{
	struct slot *d = &b->slots[b->fwd_slot[b->fwd_n]];
	struct hw_setup_msg m;
	struct hw_tp *tp;
	int rc;

	b->phase = PH_INCOMING;
	b->waiting = 1;
	start_timer(b);
	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_INCOMING;
	m.u.incoming.desc = b->desc;
	m.u.incoming.fwd_recv_id = path_id(b, 0, b->fwd_n);
	m.u.incoming.rev_send_id = path_id(b, 1, 0);
	if (!(tp = slot_tp(d)))
		build_fail(b, HW_SETUP_NO_TP, "visor %s: %s", d->name,
			   send_error(-ENOTCONN));
	else if ((rc = slot_ask(d, tp, &m)))
		build_fail(b, send_status(rc), "visor %s: %s", d->name,
			   send_error(rc));
}

static void phase_rules(struct build *b)
{
	struct hw_setup_msg m;

	b->phase = PH_RULES;
	b->waiting = b->nslots;
	start_timer(b);
	for (unsigned i = 0; i < b->nslots && !b->done; i++) {
		struct slot *sl = &b->slots[i];
		struct hw_tp *tp = slot_tp(sl);
		int rc = -ENOTCONN;

		memset(&m, 0, sizeof(m));
		m.type = HW_SETUP_ADD_RULES;
		if (sl->fwd_pos >= 0)
			path_rule(b, 0, (unsigned)sl->fwd_pos,
				  &m.u.add_rules.rules[m.u.add_rules.count++]);
		if (sl->rev_pos >= 0)
			path_rule(b, 1, (unsigned)sl->rev_pos,
				  &m.u.add_rules.rules[m.u.add_rules.count++]);
		if (!tp || (rc = slot_ask(sl, tp, &m)))
			build_fail(b, send_status(rc), "visor %s: %s",
				   sl->name, send_error(rc));
	}
}

static void slot_reserve(struct slot *sl, struct hw_tp *tp)
{
	struct hw_setup_msg m;
	int rc;

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_RESERVE;
	m.u.reserve.count = (uint8_t)sl->nids;
	if ((rc = slot_ask(sl, tp, &m)))
		build_fail(sl->b, send_status(rc), "visor %s: %s", sl->name,
			   send_error(rc));
}

static void on_added(struct hw_tp_manager *m, struct hw_tp *tp, int status,
		     const char *msg, void *ud)
{
	struct ticket *t = ud;
	struct slot *sl = t->slot;

	free(t);
	if (!sl)
		return;
	sl->ticket = NULL;
	if (status)
		build_fail(sl->b, HW_SETUP_NO_TP, "visor %s: no transport: %s",
			   sl->name, msg ? msg : hw_strerror(status));
	else
		slot_reserve(sl, tp);
}

static void on_resolved(int status, const char *type, const char *addr,
			const char *msg, void *ud)
{
	struct ticket *t = ud;
	struct slot *sl = t->slot;
	char err[512];
	int rc;

	if (!sl) {
		free(t);
		return;
	}
	if (status) {
		sl->ticket = NULL;
		free(t);
		build_fail(sl->b, HW_SETUP_NO_TP, "visor %s: not reachable: %s",
			   sl->name, msg ? msg : hw_strerror(status));
		return;
	}
	err[0] = '\0';
	/* Not persistent: the setup node keeps no link it does not use;
	 * with a cb, on_added gets the ticket (maybe before this returns)
	 * unless the arguments were refused. */
	rc = hw_tp_manager_add(sl->b->s->tpm, sl->pk, type, addr, 0,
			       on_added, t, err, sizeof(err));
	if (rc) {
		sl->ticket = NULL;
		free(t);
		build_fail(sl->b, HW_SETUP_NO_TP, "visor %s: no transport: %s",
			   sl->name, err[0] ? err : hw_strerror(rc));
	}
}

static int can_resolve(const struct hw_setup_service *s)
{
	return s->ops && s->ops->resolve && s->ops->can_resolve &&
	       s->ops->can_resolve(s->ud);
}

/* Makes sure of a transport to the slot's visor, then reserves. */
static void slot_start(struct slot *sl)
{
	struct hw_setup_service *s = sl->b->s;
	struct hw_tp *tp = hw_tp_manager_find(s->tpm, sl->pk, NULL);
	struct ticket *t;
	int rc;

	if (tp && hw_tp_is_up(tp)) {
		slot_reserve(sl, tp);
		return;
	}
	if (!can_resolve(s)) {
		build_fail(sl->b, HW_SETUP_NO_TP, "visor %s: no transport to "
			   "it, and no discovery to find it", sl->name);
		return;
	}
	if (!(t = calloc(1, sizeof(*t)))) {
		build_fail(sl->b, HW_SETUP_INTERNAL, "out of memory");
		return;
	}
	t->slot = sl;
	sl->ticket = t;
	if ((rc = s->ops->resolve(s->ud, sl->pk, on_resolved, t))) {
		sl->ticket = NULL;
		free(t);
		build_fail(sl->b, HW_SETUP_NO_TP, "visor %s: cannot look it "
			   "up in discovery: %s", sl->name, hw_strerror(rc));
	}
}

/* ---- timeouts ---- */

static const char *asked_name(uint8_t type)
{
	switch (type) {
	case HW_SETUP_RESERVE: return "reserve";
	case HW_SETUP_ADD_RULES: return "add rules";
	default: return "incoming";
	}
}

static void on_timeout(uv_timer_t *timer)
{
	struct build *b = timer->data;

	for (unsigned i = 0; i < b->nslots; i++) {
		struct slot *sl = &b->slots[i];
		if (sl->ticket) {
			build_fail(b, HW_SETUP_NO_TP, "visor %s: no transport "
				   "within %u ms", sl->name, b->timeout_ms);
			return;
		}
		if (sl->req) {
			build_fail(b, HW_SETUP_INTERNAL, "visor %s: no answer "
				   "to %s within %u ms", sl->name,
				   asked_name(sl->asked), b->timeout_ms);
			return;
		}
	}
	build_fail(b, HW_SETUP_INTERNAL, "timed out");
}

static void start_timer(struct build *b)
{
	uv_timer_start(&b->timer, on_timeout, b->timeout_ms, 0);
}

/* ---- the end of a build ---- */

static void build_closed(uv_handle_t *h)
{
	struct build *b = h->data;
	struct hw_setup_service *s = b->s;

	free(b);
	if (--s->nclosing == 0 && s->freed) {
		hw_htab_free(&s->reqs);
		free(s);
	}
}

/* DEL_RULES of every ID held on every visor that answered: rules go,
 * reservations are released. A visor whose transport is down keeps its
 * reservations until they lapse and its rules until they expire. */
static void rollback(struct build *b)
{
	struct hw_setup_service *s = b->s;
	struct hw_setup_msg m;
	int any = 0, rc;

	for (unsigned i = 0; i < b->nslots; i++) {
		struct slot *sl = &b->slots[i];
		struct hw_tp *tp;

		if (!sl->held)
			continue;
		any = 1;
		memset(&m, 0, sizeof(m));
		m.type = HW_SETUP_DEL_RULES;
		m.req = next_req(s) | REQ_DEL_BIT;
		m.u.del_rules.count = (uint8_t)sl->nids;
		memcpy(m.u.del_rules.ids, sl->ids, sl->nids * sizeof(uint32_t));
		if (!(tp = slot_tp(sl)))
			rc = -ENOTCONN;
		else
			rc = hw_setup_msg_send(tp, &m);
		if (rc)
			hw_log(HW_LOG_WARN, LOG, "visor %s: rollback not sent "
			       "(%s); its rules expire on their own",
			       sl->name, send_error(rc));
		sl->held = 0;
	}
	if (any)
		s->rollbacks++;
}

/* The transport to answer the source on: the BUILD's, else any live one
 * to it. */
static struct hw_tp *source_tp(struct build *b)
{
	struct hw_tp_manager *tpm = b->s->tpm;
	struct hw_tp *tp = hw_tp_manager_find_id(tpm, b->src_tp_hex);

	if (!tp || !hw_tp_is_up(tp))
		tp = hw_tp_manager_find(tpm, b->slots[0].pk, NULL);
	return tp && hw_tp_is_up(tp) ? tp : NULL;
}

/* Answers the source (status ok: the route is built; else after rolling
 * back), logs, and lets the build go. */
static void build_end(struct build *b, uint8_t status, const char *text)
{
	struct hw_setup_service *s = b->s;
	uint64_t ms = uv_now(s->loop) - b->start_ms;
	char src[NAME_LEN], dst[NAME_LEN];
	struct hw_tp *tp;
	int rc = -ENOTCONN;

	if (b->done)
		return;
	b->done = 1;
	for (struct build **pp = &s->builds; *pp; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	s->nbuilds--;
	uv_timer_stop(&b->timer);
	for (unsigned i = 0; i < b->nslots; i++) {
		drop_req(&b->slots[i]);
		if (b->slots[i].ticket) {
			b->slots[i].ticket->slot = NULL;
			b->slots[i].ticket = NULL;
		}
	}
	pk_name(b->desc.src_pk, src);
	pk_name(b->desc.dst_pk, dst);
	tp = source_tp(b);
	if (status == HW_SETUP_OK) {
		if (tp)
			rc = send_built(tp, b->req, HW_SETUP_OK, "",
					path_id(b, 0, 0),
					path_id(b, 1, b->rev_n));
		if (rc) {
			status = HW_SETUP_NO_TP;
			text = rc == -ENOBUFS
				       ? "the source's send queue is full"
				       : "the source's transport is down";
		}
	}
	if (status == HW_SETUP_OK) {
		s->ok++;
		hw_log(HW_LOG_INFO, LOG, "build %s:%u -> %s:%u: ok, %u+%u hops, "
		       "%llu ms", src, b->desc.src_port, dst, b->desc.dst_port,
		       b->fwd_n, b->rev_n, (unsigned long long)ms);
	} else {
		rollback(b);
		if (tp)
			send_built(tp, b->req, status, text, 0, 0);
		s->failed++;
		hw_log(HW_LOG_INFO, LOG, "build %s:%u -> %s:%u: %s: %s "
		       "(%llu ms)", src, b->desc.src_port, dst,
		       b->desc.dst_port, hw_setup_status_name(status), text,
		       (unsigned long long)ms);
	}
	s->nclosing++;
	uv_close((uv_handle_t *)&b->timer, build_closed);
}

/* ---- messages ---- */

static int slot_of(struct build *b, const uint8_t pk[HW_PK_LEN])
{
	unsigned i;

	for (i = 0; i < b->nslots; i++)
		if (!memcmp(b->slots[i].pk, pk, HW_PK_LEN))
			return (int)i;
	/* No visor twice on a path (hw_setup_path_check), so at most
	 * SLOTS_MAX visors. */
	if (i == SLOTS_MAX)
		return -1;
	memset(&b->slots[i], 0, sizeof(b->slots[i]));
	b->slots[i].b = b;
	memcpy(b->slots[i].pk, pk, HW_PK_LEN);
	pk_name(pk, b->slots[i].name);
	b->slots[i].fwd_pos = b->slots[i].rev_pos = -1;
	b->slots[i].fwd_id = b->slots[i].rev_id = -1;
	b->nslots++;
	return (int)i;
}

static const uint8_t *path_pk(const struct hw_setup_hop *hops, unsigned n,
			      unsigned k)
{
	return k < n ? hops[k].from : hops[n - 1].to;
}

/* Lays the two paths out over slots. Returns 0 or -1 (cannot happen for
 * checked paths). */
static int place_visors(struct build *b)
{
	int i;

	b->nslots = 0;
	for (unsigned k = 0; k <= b->fwd_n; k++) {
		if ((i = slot_of(b, path_pk(b->fwd, b->fwd_n, k))) < 0)
			return -1;
		b->fwd_slot[k] = (uint8_t)i;
		b->slots[i].fwd_pos = (int)k;
	}
	for (unsigned k = 0; k <= b->rev_n; k++) {
		if ((i = slot_of(b, path_pk(b->rev, b->rev_n, k))) < 0)
			return -1;
		b->rev_slot[k] = (uint8_t)i;
		b->slots[i].rev_pos = (int)k;
	}
	for (unsigned j = 0; j < b->nslots; j++) {
		struct slot *sl = &b->slots[j];
		if (sl->fwd_pos >= 0)
			sl->fwd_id = (int)sl->nids++;
		if (sl->rev_pos >= 0)
			sl->rev_id = (int)sl->nids++;
	}
	return 0;
}

static void on_build(struct hw_setup_service *s, struct hw_tp *tp,
		     const struct hw_setup_msg *m)
{
	const uint8_t *src = hw_tp_pk(tp), *own = s->pk;
	char err[256], name[NAME_LEN];
	unsigned from_src = 0;
	struct build *b = NULL;

	pk_name(src, name);
	for (struct build *x = s->builds; x; x = x->next)
		from_src += !memcmp(x->slots[0].pk, src, HW_PK_LEN);
	if (s->nbuilds >= HW_SETUP_BUILDS_MAX ||
	    from_src >= HW_SETUP_BUILDS_PER_SRC_MAX) {
		snprintf(err, sizeof(err), "setup node busy: %u builds in "
			 "progress%s", from_src >= HW_SETUP_BUILDS_PER_SRC_MAX
			 ? from_src : s->nbuilds,
			 from_src >= HW_SETUP_BUILDS_PER_SRC_MAX
			 ? " for this visor" : "");
		send_built(tp, m->req, HW_SETUP_LIMIT, err, 0, 0);
		goto refused;
	}
	if (memcmp(m->u.build.desc.src_pk, src, HW_PK_LEN)) {
		send_built(tp, m->req, HW_SETUP_REFUSED, "a visor builds only "
			   "its own routes: src_pk is not the sender's key",
			   0, 0);
		goto refused;
	}
	if (hw_setup_path_check(m->u.build.fwd, m->u.build.fwd_n, src,
				m->u.build.desc.dst_pk, err, sizeof(err))) {
		char text[HW_SETUP_TEXT_MAX + 1];
		fmt_text(text, "forward path: %s", err);
		send_built(tp, m->req, HW_SETUP_REFUSED, text, 0, 0);
		goto refused;
	}
	if (hw_setup_path_check(m->u.build.rev, m->u.build.rev_n,
				m->u.build.desc.dst_pk, src, err,
				sizeof(err))) {
		char text[HW_SETUP_TEXT_MAX + 1];
		fmt_text(text, "reverse path: %s", err);
		send_built(tp, m->req, HW_SETUP_REFUSED, text, 0, 0);
		goto refused;
	}
	if (!(b = calloc(1, sizeof(*b)))) {
		send_built(tp, m->req, HW_SETUP_INTERNAL, "out of memory", 0,
			   0);
		goto refused;
	}
	b->s = s;
	b->req = m->req;
	snprintf(b->src_tp_hex, sizeof(b->src_tp_hex), "%s",
		 hw_tp_id_hex(tp));
	b->desc = m->u.build.desc;
	b->keepalive_ms = m->u.build.keepalive_ms;
	b->fwd_n = m->u.build.fwd_n;
	b->rev_n = m->u.build.rev_n;
	memcpy(b->fwd, m->u.build.fwd, b->fwd_n * sizeof(b->fwd[0]));
	memcpy(b->rev, m->u.build.rev, b->rev_n * sizeof(b->rev[0]));
	if (place_visors(b)) {
		send_built(tp, m->req, HW_SETUP_INTERNAL, "too many visors", 0,
			   0);
		free(b);
		goto refused;
	}
	for (unsigned i = 0; i < b->nslots; i++)
		if (!memcmp(b->slots[i].pk, own, HW_PK_LEN)) {
			send_built(tp, m->req, HW_SETUP_REFUSED, "the setup "
				   "node cannot be a hop of a route", 0, 0);
			free(b);
			goto refused;
		}
	b->timeout_ms = s->timeout_ms;
	b->start_ms = uv_now(s->loop);
	uv_timer_init(s->loop, &b->timer);
	b->timer.data = b;
	b->next = s->builds;
	s->builds = b;
	s->nbuilds++;
	b->phase = PH_RESERVE;
	b->waiting = b->nslots;
	start_timer(b);
	hw_log(HW_LOG_DEBUG, LOG, "build from %s: %u+%u hops, %u visors",
	       name, b->fwd_n, b->rev_n, b->nslots);
	for (unsigned i = 0; i < b->nslots && !b->done; i++)
		slot_start(&b->slots[i]);
	return;
refused:
	/* Refused at the door: counted, logged quietly, since a peer can
	 * send these as fast as its transport goes. */
	s->failed++;
	hw_log(HW_LOG_DEBUG, LOG, "build from %s refused before it started",
	       name);
}

/* DEL_RULES for IDs a visor reserved for no build of ours. */
static void release_ids(struct hw_setup_service *s, struct hw_tp *tp,
			const uint32_t *ids, unsigned n)
{
	struct hw_setup_msg del;

	memset(&del, 0, sizeof(del));
	del.type = HW_SETUP_DEL_RULES;
	del.req = next_req(s) | REQ_DEL_BIT;
	del.u.del_rules.count = (uint8_t)n;
	memcpy(del.u.del_rules.ids, ids, n * sizeof(uint32_t));
	hw_setup_msg_send(tp, &del);
}

/* A RESERVED or RESULT for one of our requests. */
static void on_answer(struct hw_setup_service *s, struct hw_tp *tp,
		      const struct hw_setup_msg *m)
{
	struct slot *sl;
	struct build *b;

	if (m->req & REQ_DEL_BIT) {
		if (m->type == HW_SETUP_RESULT &&
		    m->u.result.status != HW_SETUP_OK) {
			char name[NAME_LEN];
			pk_name(hw_tp_pk(tp), name);
			hw_log(HW_LOG_WARN, LOG, "visor %s: rollback: %s: %s",
			       name, hw_setup_status_name(m->u.result.status),
			       m->u.result.text);
		} else if (m->type != HW_SETUP_RESULT) {
			s->unexpected++;
		}
		return;
	}
	sl = find_req(s, m->req);
	/* Only the transport the request went out on may answer it, so no
	 * visor answers for another. */
	if (!sl || strcmp(hw_tp_id_hex(tp), sl->tp_hex)) {
		s->unexpected++;
		/* Most often the answer to a RESERVE of a build that ended
		 * meanwhile: the IDs go back now rather than lapse. They
		 * are the sender's own, so releasing them can only touch
		 * the sender. */
		if (m->type == HW_SETUP_RESERVED &&
		    m->u.reserved.status == HW_SETUP_OK)
			release_ids(s, tp, m->u.reserved.ids,
				    m->u.reserved.count);
		return;
	}
	b = sl->b;
	drop_req(sl);
	if (m->type == HW_SETUP_RESULT) {
		uint8_t st = m->u.result.status;
		if (st != HW_SETUP_OK) {
			build_fail(b, st, "visor %s: %s", sl->name,
				   m->u.result.text[0]
					   ? m->u.result.text
					   : hw_setup_status_name(st));
			return;
		}
		if (sl->asked == HW_SETUP_RESERVE) {
			build_fail(b, HW_SETUP_INTERNAL, "visor %s: answered "
				   "reserve with result ok", sl->name);
			return;
		}
	} else {
		uint8_t st = m->u.reserved.status;
		if (sl->asked != HW_SETUP_RESERVE) {
			build_fail(b, HW_SETUP_INTERNAL, "visor %s: answered "
				   "%s with reserved", sl->name,
				   asked_name(sl->asked));
			return;
		}
		if (st != HW_SETUP_OK) {
			build_fail(b, st, "visor %s: reserve: %s", sl->name,
				   hw_setup_status_name(st));
			return;
		}
		if (m->u.reserved.count != sl->nids) {
			release_ids(s, tp, m->u.reserved.ids,
				    m->u.reserved.count);
			build_fail(b, HW_SETUP_INTERNAL, "visor %s: reserved "
				   "%u route IDs, asked for %u", sl->name,
				   m->u.reserved.count, sl->nids);
			return;
		}
		memcpy(sl->ids, m->u.reserved.ids, sl->nids * sizeof(uint32_t));
		sl->held = 1;
	}
	if (--b->waiting > 0)
		return;
	switch (b->phase) {
	case PH_RESERVE: phase_rules(b); break;
	case PH_RULES: phase_incoming(b); break;
	case PH_INCOMING: build_end(b, HW_SETUP_OK, ""); break;
	}
}

static int is_request(uint8_t type)
{
	return type == HW_SETUP_RESERVE || type == HW_SETUP_ADD_RULES ||
	       type == HW_SETUP_DEL_RULES || type == HW_SETUP_BUILD ||
	       type == HW_SETUP_INCOMING;
}

void hw_setup_service_on_packet(struct hw_setup_service *s, struct hw_tp *tp,
				const struct hw_packet *pkt)
{
	struct hw_setup_msg m;
	struct slot *sl;

	if (s->freed || pkt->type != HW_PKT_SETUP)
		return;
	/* Setup messages belong to the transport itself (route 0). */
	if (pkt->route_id != 0) {
		s->malformed++;
		return;
	}
	if (hw_setup_msg_decode(pkt->payload, pkt->len, &m)) {
		s->malformed++;
		if (pkt->len < HW_SETUP_HDR)
			return;
		if (is_request(m.type)) {
			hw_setup_result_send(tp, m.req, HW_SETUP_REFUSED, "bad request");
			return;
		}
		/* A garbled answer to a request of ours fails its build
		 * now rather than at the timeout. */
		if ((m.type == HW_SETUP_RESERVED ||
		     m.type == HW_SETUP_RESULT) &&
		    !(m.req & REQ_DEL_BIT) && (sl = find_req(s, m.req)) &&
		    !strcmp(hw_tp_id_hex(tp), sl->tp_hex))
			build_fail(sl->b, HW_SETUP_INTERNAL, "visor %s: "
				   "malformed answer to %s", sl->name,
				   asked_name(sl->asked));
		return;
	}
	switch (m.type) {
	case HW_SETUP_BUILD:
		on_build(s, tp, &m);
		break;
	case HW_SETUP_RESERVED:
	case HW_SETUP_RESULT:
		on_answer(s, tp, &m);
		break;
	case HW_SETUP_BUILT:
		s->unexpected++;
		break;
	default:
		s->unexpected++;
		hw_setup_result_send(tp, m.req, HW_SETUP_REFUSED, "this is a setup "
			    "node: it holds no rules");
		break;
	}
}

void hw_setup_service_tp_event(struct hw_setup_service *s, struct hw_tp *tp,
			       enum hw_tp_event ev)
{
	const char *id = hw_tp_id_hex(tp);
	struct build *b, *next;

	if (s->freed || ev != HW_TP_REMOVED)
		return;
	for (b = s->builds; b; b = next) {
		next = b->next;
		for (unsigned i = 0; i < b->nslots && !b->done; i++) {
			struct slot *sl = &b->slots[i];
			if (sl->req && !strcmp(sl->tp_hex, id))
				build_fail(b, HW_SETUP_NO_TP, "visor %s: its "
					   "transport went away", sl->name);
		}
		/* The source can still be answered on another transport;
		 * without one, building on is for nothing. */
		if (!b->done && !strcmp(b->src_tp_hex, id) && !source_tp(b))
			build_fail(b, HW_SETUP_NO_TP, "the source's transport "
				   "went away");
	}
}

/* ---- lifecycle ---- */

int hw_setup_service_new(struct hw_setup_service **out,
			 const struct hw_setup_service_params *p)
{
	struct hw_setup_service *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->loop = p->loop;
	memcpy(s->pk, p->pk, HW_PK_LEN);
	s->tpm = p->tpm;
	s->ops = p->ops;
	s->ud = p->ud;
	s->timeout_ms = HW_SETUP_STEP_TIMEOUT_MS;
	*out = s;
	return 0;
}

void hw_setup_service_set_timeout(struct hw_setup_service *s, unsigned ms)
{
	s->timeout_ms = ms ? ms : 1;
}

void hw_setup_service_free(struct hw_setup_service *s)
{
	if (!s)
		return;
	while (s->builds)
		build_end(s->builds, HW_SETUP_INTERNAL, "setup node stopping");
	s->freed = 1;
	if (s->nclosing == 0) {
		hw_htab_free(&s->reqs);
		free(s);
	}
}

json_t *hw_setup_service_json(const struct hw_setup_service *s)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "builds_ok",
			 (json_int_t)s->ok, "builds_failed",
			 (json_int_t)s->failed, "rollbacks",
			 (json_int_t)s->rollbacks, "in_progress",
			 (json_int_t)s->nbuilds, "unexpected",
			 (json_int_t)s->unexpected, "malformed",
			 (json_int_t)s->malformed);
}
