/* The setup node's build orchestration against scripted visors: the
 * service built from its parameters (a key, a transport manager and a
 * fake resolver standing in for the visor's discovery), and fake visors
 * (transport managers on the same loop) that answer setup messages as a
 * test says and record what they were told. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "crypto/identity.h"
#include "router/router.h"
#include "router/setup_msg.h"
#include "setup/service.h"
#include "transport/manager.h"
#include "util/err.h"
#include "hwtest.h"

#define NFAKES 4
#define MAXREC 64

struct fake {
	struct hw_identity id;
	struct hw_tp_manager *tpm;
	int up;
	/* What it answers. */
	int silent_reserve, silent_rules;
	int untrusted;               /* RESULT refused to everything */
	uint8_t rules_status;        /* ADD_RULES answer */
	uint8_t incoming_status;     /* INCOMING answer */
	uint8_t reserve_extra;       /* IDs handed out beyond the count */
	uint32_t next_id;
	/* What it was told. */
	uint32_t reserved[MAXREC];
	unsigned nreserved;
	struct hw_rule rules[MAXREC];
	unsigned nrules;
	uint32_t deleted[MAXREC];
	unsigned ndeleted;
	int incoming;
	struct hw_setup_msg incoming_msg;
	int built;
	struct hw_setup_msg built_msg;
	int results;
	struct hw_setup_msg result_msg;
	uint32_t last_req; /* of the last request received */
};

/* What the service asks of the visor, scripted: how (and whether) a
 * resolve answers, and what it was asked. */
struct resolver {
	int can;      /* can_resolve's answer */
	int start_rc; /* resolve's return: 0 starts one */
	int sync;     /* answers before resolve returns */
	int hold;     /* answers wait for resolver_answer */
	int status;   /* the answer: 0 with type and addr, or msg */
	char type[16], addr[128];
	const char *msg;
	unsigned calls;
	uint8_t asked[HW_PK_LEN]; /* the last key looked up */
	struct {
		hw_setup_resolve_cb cb;
		void *cb_ud;
	} pending[16];
	unsigned npending;
	uv_timer_t timer; /* answers on the loop, as discovery does */
};

static uv_loop_t loop;
static struct hw_identity sid; /* the setup node */
static struct hw_tp_manager *stpm;
static struct hw_setup_service *svc;
static struct resolver res;
static struct fake fakes[NFAKES];
static char setup_addr[128];
static char fake3_addr[128]; /* fakes[3] listens, but never dials */

/* ---- fake visors ---- */

static void fake_send(struct fake *f, const struct hw_setup_msg *m)
{
	uint8_t buf[HW_SETUP_MSG_MAX];
	struct hw_tp *tp = hw_tp_manager_find(f->tpm, sid.pk, NULL);
	size_t len;

	assert_non_null(tp);
	assert_int_equal(hw_setup_msg_encode(m, buf, sizeof(buf), &len), 0);
	assert_int_equal(hw_tp_send(tp, HW_PKT_SETUP, 0, buf, (uint16_t)len),
			 0);
}

static void fake_result(struct fake *f, uint32_t req, uint8_t status,
			const char *text)
{
	struct hw_setup_msg m;

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_RESULT;
	m.req = req;
	m.u.result.status = status;
	snprintf(m.u.result.text, sizeof(m.u.result.text), "%s", text);
	fake_send(f, &m);
}

static void fake_packet(struct hw_tp *tp, const struct hw_packet *pkt,
			void *ud)
{
	struct fake *f = ud;
	struct hw_setup_msg m, a;

	assert_int_equal(pkt->type, HW_PKT_SETUP);
	assert_int_equal(hw_setup_msg_decode(pkt->payload, pkt->len, &m), 0);
	if (m.type != HW_SETUP_BUILT && m.type != HW_SETUP_RESULT)
		f->last_req = m.req;
	if (f->untrusted && m.type != HW_SETUP_BUILT &&
	    m.type != HW_SETUP_RESULT) {
		fake_result(f, m.req, HW_SETUP_REFUSED,
			    "not a trusted setup node");
		return;
	}
	memset(&a, 0, sizeof(a));
	a.req = m.req;
	switch (m.type) {
	case HW_SETUP_RESERVE:
		if (f->silent_reserve)
			return;
		a.type = HW_SETUP_RESERVED;
		a.u.reserved.count = m.u.reserve.count + f->reserve_extra;
		for (unsigned i = 0; i < a.u.reserved.count; i++) {
			a.u.reserved.ids[i] = ++f->next_id;
			f->reserved[f->nreserved++] = f->next_id;
		}
		fake_send(f, &a);
		break;
	case HW_SETUP_ADD_RULES:
		for (unsigned i = 0; i < m.u.add_rules.count; i++)
			f->rules[f->nrules++] = m.u.add_rules.rules[i];
		if (!f->silent_rules)
			fake_result(f, m.req, f->rules_status,
				    f->rules_status ? "no such transport"
						    : "");
		break;
	case HW_SETUP_DEL_RULES:
		for (unsigned i = 0; i < m.u.del_rules.count; i++)
			f->deleted[f->ndeleted++] = m.u.del_rules.ids[i];
		fake_result(f, m.req, HW_SETUP_OK, "");
		break;
	case HW_SETUP_INCOMING:
		f->incoming++;
		f->incoming_msg = m;
		fake_result(f, m.req, f->incoming_status,
			    f->incoming_status ? "no listener on port 80" : "");
		break;
	case HW_SETUP_BUILT:
		f->built++;
		f->built_msg = m;
		break;
	case HW_SETUP_RESULT:
		f->results++;
		f->result_msg = m;
		break;
	default:
		fail_msg("unexpected message %u", m.type);
	}
}

static void fake_up(struct hw_tp_manager *m, struct hw_tp *tp, int status,
		    const char *msg, void *ud)
{
	struct fake *f = ud;

	assert_int_equal(status, 0);
	f->up = 1;
}

static void setup_packet(struct hw_tp *tp, const struct hw_packet *pkt,
			 void *ud)
{
	if (svc)
		hw_setup_service_on_packet(svc, tp, pkt);
}

static void setup_event(struct hw_tp *tp, enum hw_tp_event ev, void *ud)
{
	if (svc)
		hw_setup_service_tp_event(svc, tp, ev);
}

static void tpm_params(struct hw_tp_manager_params *p,
		       const struct hw_identity *id, const char *listen)
{
	memset(p, 0, sizeof(*p));
	p->loop = &loop;
	p->id = id;
	p->tcp_listen = listen;
	p->keepalive_ms = 5000;
	p->handshake_timeout_ms = 5000;
	p->max_pending_handshakes = 64;
	p->redial_min_ms = 500;
	p->redial_max_ms = 30000;
}

/* ---- the fake resolver ---- */

/* Answers every resolve waiting, with the given outcome. */
static void resolver_answer(int status, const char *type, const char *addr,
			    const char *msg)
{
	while (res.npending) {
		unsigned i = --res.npending;
		res.pending[i].cb(status, type, addr, msg,
				  res.pending[i].cb_ud);
	}
}

static void resolver_answer_set(void)
{
	resolver_answer(res.status, res.status ? NULL : res.type,
			res.status ? NULL : res.addr, res.msg);
}

static void on_resolver_timer(uv_timer_t *t)
{
	resolver_answer_set();
}

static int fake_can_resolve(void *ud)
{
	assert_ptr_equal(ud, &res);
	return res.can;
}

static int fake_resolve(void *ud, const uint8_t pk[HW_PK_LEN],
			hw_setup_resolve_cb cb, void *cb_ud)
{
	assert_ptr_equal(ud, &res);
	/* The service asks only when it may. */
	assert_true(res.can);
	res.calls++;
	memcpy(res.asked, pk, HW_PK_LEN);
	if (res.start_rc)
		return res.start_rc;
	assert_true(res.npending < 16);
	res.pending[res.npending].cb = cb;
	res.pending[res.npending].cb_ud = cb_ud;
	res.npending++;
	if (res.sync)
		resolver_answer_set();
	else if (!res.hold)
		uv_timer_start(&res.timer, on_resolver_timer, 0, 0);
	return 0;
}

static const struct hw_setup_service_ops fake_ops = {
	.can_resolve = fake_can_resolve,
	.resolve = fake_resolve,
};

static void service_params(struct hw_setup_service_params *p,
			   const struct hw_setup_service_ops *ops)
{
	memset(p, 0, sizeof(*p));
	p->loop = &loop;
	memcpy(p->pk, sid.pk, HW_PK_LEN);
	p->tpm = stpm;
	p->ops = ops;
	p->ud = &res;
}

/* ---- running the loop ---- */

static int expired;

static void on_guard(uv_timer_t *t)
{
	expired = 1;
}

/* Runs the loop until cond holds (or for ms when cond is NULL). */
static int run_until(int (*cond)(void), unsigned ms)
{
	uv_timer_t guard;

	expired = 0;
	uv_timer_init(&loop, &guard);
	uv_timer_start(&guard, on_guard, ms, 0);
	while (!expired && !(cond && cond()))
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return cond ? cond() : 1;
}

static int all_up(void)
{
	for (int i = 0; i < NFAKES; i++) {
		struct hw_tp *tp;
		if (i == 3)
			continue; /* fake 3 never connects */
		tp = hw_tp_manager_find(stpm, fakes[i].id.pk, NULL);
		if (!fakes[i].up || !tp || !hw_tp_is_up(tp))
			return 0;
	}
	return 1;
}

static int a_built(void)
{
	return fakes[0].built > 0;
}

static int setup_world(void **state)
{
	struct hw_setup_service_params sp;
	struct hw_tp_manager_params p;
	char err[256], listen[64];

	assert_int_equal(uv_loop_init(&loop), 0);
	memset(&res, 0, sizeof(res));
	memset(fakes, 0, sizeof(fakes));
	assert_int_equal(uv_timer_init(&loop, &res.timer), 0);
	assert_int_equal(hw_identity_generate(&sid), 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", hw_test_free_port());
	tpm_params(&p, &sid, listen);
	p.on_packet = setup_packet;
	p.on_event = setup_event;
	assert_int_equal(hw_tp_manager_new(&stpm, &p, err, sizeof(err)), 0);
	snprintf(setup_addr, sizeof(setup_addr), "%s",
		 hw_tp_manager_listen_addr(stpm));
	service_params(&sp, &fake_ops);
	assert_int_equal(hw_setup_service_new(&svc, &sp), 0);
	for (int i = 0; i < NFAKES; i++) {
		struct fake *f = &fakes[i];
		assert_int_equal(hw_identity_generate(&f->id), 0);
		f->next_id = 1000u * (unsigned)(i + 1);
		if (i == 3)
			snprintf(listen, sizeof(listen), "127.0.0.1:%d",
				 hw_test_free_port());
		tpm_params(&p, &f->id, i == 3 ? listen : "");
		p.on_packet = fake_packet;
		p.ud = f;
		assert_int_equal(hw_tp_manager_new(&f->tpm, &p, err,
						   sizeof(err)), 0);
		if (i == 3) {
			snprintf(fake3_addr, sizeof(fake3_addr), "%s",
				 hw_tp_manager_listen_addr(f->tpm));
			continue;
		}
		assert_int_equal(hw_tp_manager_add(f->tpm, sid.pk, "tcp",
						   setup_addr, 0, fake_up, f,
						   err, sizeof(err)), 0);
	}
	assert_true(run_until(all_up, 5000));
	return 0;
}

static int teardown_world(void **state)
{
	hw_setup_service_free(svc);
	svc = NULL;
	/* As the visor's presence does when it stops after the service. */
	resolver_answer(-ECANCELED, NULL, NULL, "the visor is stopping");
	uv_close((uv_handle_t *)&res.timer, NULL);
	for (int i = 0; i < NFAKES; i++) {
		hw_tp_manager_free(fakes[i].tpm);
		hw_identity_wipe(&fakes[i].id);
	}
	hw_tp_manager_free(stpm);
	stpm = NULL;
	hw_identity_wipe(&sid);
	uv_run(&loop, UV_RUN_DEFAULT);
	/* Nothing is left on the loop. */
	assert_int_equal(hw_test_loop_close(&loop), 0);
	return 0;
}

/* ---- building ---- */

static void hop(struct hw_setup_hop *h, const struct fake *from,
		const struct fake *to)
{
	hw_tp_id(from->id.pk, to->id.pk, "tcp", h->tp_id);
	memcpy(h->from, from->id.pk, HW_PK_LEN);
	memcpy(h->to, to->id.pk, HW_PK_LEN);
}

/* A BUILD from fakes[0] along fwd (fakes by index) and rev. */
static void send_build(uint32_t req, const int *fwd, unsigned nf,
		       const int *rev, unsigned nr)
{
	struct hw_setup_msg m;

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_BUILD;
	m.req = req;
	memcpy(m.u.build.desc.src_pk, fakes[fwd[0]].id.pk, HW_PK_LEN);
	m.u.build.desc.src_port = 1000;
	memcpy(m.u.build.desc.dst_pk, fakes[fwd[nf]].id.pk, HW_PK_LEN);
	m.u.build.desc.dst_port = 80;
	m.u.build.keepalive_ms = 30000;
	m.u.build.fwd_n = (uint8_t)nf;
	for (unsigned i = 0; i < nf; i++)
		hop(&m.u.build.fwd[i], &fakes[fwd[i]], &fakes[fwd[i + 1]]);
	m.u.build.rev_n = (uint8_t)nr;
	for (unsigned i = 0; i < nr; i++)
		hop(&m.u.build.rev[i], &fakes[rev[i]], &fakes[rev[i + 1]]);
	fake_send(&fakes[0], &m);
}

static const struct hw_rule *rule_of(const struct fake *f,
				     enum hw_rule_kind kind, uint32_t id)
{
	for (unsigned i = 0; i < f->nrules; i++)
		if (f->rules[i].kind == kind && (!id || f->rules[i].id == id))
			return &f->rules[i];
	return NULL;
}

static void tp_of(const struct fake *a, const struct fake *b,
		  uint8_t id[HW_TP_ID_LEN])
{
	hw_tp_id(a->id.pk, b->id.pk, "tcp", id);
}

static int has_id(const uint32_t *ids, unsigned n, uint32_t id)
{
	for (unsigned i = 0; i < n; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

/* Every ID f reserved came back in a DEL_RULES. */
static int all_released(const struct fake *f)
{
	for (unsigned i = 0; i < f->nreserved; i++)
		if (!has_id(f->deleted, f->ndeleted, f->reserved[i]))
			return 0;
	return 1;
}

static int all_fakes_released(void)
{
	for (int i = 0; i < 3; i++)
		if (!all_released(&fakes[i]))
			return 0;
	return 1;
}

static json_int_t counter(const char *name)
{
	json_t *j = hw_setup_service_json(svc);
	json_int_t v = json_integer_value(json_object_get(j, name));
	json_decref(j);
	return v;
}

static void expect_text_names(const struct fake *f, const char *text,
			      const char *reason)
{
	char hex[HW_PK_HEXLEN + 1], want[64];

	hw_pk_format(f->id.pk, hex);
	snprintf(want, sizeof(want), "visor %.8s...: ", hex);
	assert_non_null(strstr(text, want));
	assert_non_null(strstr(text, reason));
}

static void test_build_ok(void **state)
{
	static const int fwd[] = {0, 1, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *b = &fakes[1], *c = &fakes[2];
	const struct hw_rule *af, *ac, *bf, *br, *cc, *cf;
	uint8_t ab[HW_TP_ID_LEN], bc[HW_TP_ID_LEN];

	send_build(77, fwd, 2, rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.req, 77);
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_OK);
	tp_of(a, b, ab);
	tp_of(b, c, bc);
	/* Each visor got one ID per rule, in one RESERVE. */
	assert_int_equal(a->nreserved, 2);
	assert_int_equal(b->nreserved, 2);
	assert_int_equal(c->nreserved, 2);
	assert_int_equal(a->nrules, 2);
	assert_int_equal(b->nrules, 2);
	assert_int_equal(c->nrules, 2);

	af = rule_of(a, HW_RULE_FORWARD, a->built_msg.u.built.fwd_send_id);
	ac = rule_of(a, HW_RULE_CONSUME, a->built_msg.u.built.rev_recv_id);
	assert_non_null(af);
	assert_non_null(ac);
	cc = rule_of(c, HW_RULE_CONSUME, 0);
	cf = rule_of(c, HW_RULE_FORWARD, 0);
	assert_non_null(cc);
	assert_non_null(cf);
	/* Forward path: A -> B -> C. */
	bf = rule_of(b, HW_RULE_INTERMEDIARY, af->next_id);
	assert_non_null(bf);
	assert_memory_equal(af->next_tp, ab, HW_TP_ID_LEN);
	assert_memory_equal(bf->prev_tp, ab, HW_TP_ID_LEN);
	assert_memory_equal(bf->next_tp, bc, HW_TP_ID_LEN);
	assert_int_equal(bf->next_id, cc->id);
	assert_memory_equal(cc->prev_tp, bc, HW_TP_ID_LEN);
	/* Reverse path: C -> B -> A. */
	br = rule_of(b, HW_RULE_INTERMEDIARY, cf->next_id);
	assert_non_null(br);
	assert_ptr_not_equal(br, bf);
	assert_memory_equal(cf->next_tp, bc, HW_TP_ID_LEN);
	assert_memory_equal(br->prev_tp, bc, HW_TP_ID_LEN);
	assert_memory_equal(br->next_tp, ab, HW_TP_ID_LEN);
	assert_int_equal(br->next_id, ac->id);
	assert_memory_equal(ac->prev_tp, ab, HW_TP_ID_LEN);
	/* The ends carry the descriptor; the middle does not learn it. */
	assert_memory_equal(af->desc.dst_pk, c->id.pk, HW_PK_LEN);
	assert_int_equal(af->desc.dst_port, 80);
	assert_memory_equal(cc->desc.src_pk, a->id.pk, HW_PK_LEN);
	assert_int_equal(cf->desc.src_port, 1000);
	assert_int_equal(bf->desc.src_port, 0);
	assert_int_equal(af->keepalive_ms, 30000);
	assert_int_equal(br->keepalive_ms, 30000);
	/* The destination was told its two rules. */
	assert_int_equal(c->incoming, 1);
	assert_int_equal(c->incoming_msg.u.incoming.fwd_recv_id, cc->id);
	assert_int_equal(c->incoming_msg.u.incoming.rev_send_id, cf->id);
	assert_int_equal(a->incoming + b->incoming, 0);
	assert_int_equal(a->ndeleted + b->ndeleted + c->ndeleted, 0);
	assert_int_equal(counter("builds_ok"), 1);
	assert_int_equal(counter("in_progress"), 0);
	assert_int_equal(counter("rollbacks"), 0);
}

/* The forward path direct, the reverse one through B: B needs one ID. */
static void test_build_asymmetric(void **state)
{
	static const int fwd[] = {0, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *b = &fakes[1], *c = &fakes[2];
	const struct hw_rule *af;
	uint8_t ac_tp[HW_TP_ID_LEN];

	send_build(5, fwd, 1, rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_OK);
	assert_int_equal(b->nreserved, 1);
	assert_int_equal(b->nrules, 1);
	assert_int_equal(b->rules[0].kind, HW_RULE_INTERMEDIARY);
	af = rule_of(a, HW_RULE_FORWARD, a->built_msg.u.built.fwd_send_id);
	assert_non_null(af);
	tp_of(a, c, ac_tp);
	assert_memory_equal(af->next_tp, ac_tp, HW_TP_ID_LEN);
	assert_int_equal(af->next_id,
			 c->incoming_msg.u.incoming.fwd_recv_id);
}

static void test_rules_refused(void **state)
{
	static const int fwd[] = {0, 1, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *b = &fakes[1], *c = &fakes[2];

	b->rules_status = HW_SETUP_NO_TP;
	send_build(9, fwd, 2, rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_NO_TP);
	assert_int_equal(a->built_msg.u.built.fwd_send_id, 0);
	expect_text_names(b, a->built_msg.u.built.text, "no such transport");
	assert_true(run_until(all_fakes_released, 2000));
	assert_int_equal(c->incoming, 0);
	assert_int_equal(counter("builds_failed"), 1);
	assert_int_equal(counter("rollbacks"), 1);
}

static void test_untrusted(void **state)
{
	static const int fwd[] = {0, 1, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *b = &fakes[1];

	b->untrusted = 1;
	send_build(10, fwd, 2, rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_REFUSED);
	expect_text_names(b, a->built_msg.u.built.text,
			  "not a trusted setup node");
	/* A and C answered (before or after the refusal): released. */
	assert_true(run_until(all_fakes_released, 2000));
	assert_int_equal(b->nreserved, 0);
	assert_int_equal(fakes[2].nrules, 0);
}

static void test_incoming_refused(void **state)
{
	static const int fwd[] = {0, 1, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *c = &fakes[2];

	c->incoming_status = HW_SETUP_REFUSED;
	send_build(11, fwd, 2, rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_REFUSED);
	expect_text_names(c, a->built_msg.u.built.text, "no listener");
	assert_true(run_until(all_fakes_released, 2000));
	/* The rules were installed, then removed. */
	assert_int_equal(c->nrules, 2);
	assert_int_equal(c->incoming, 1);
}

static void test_reserve_timeout(void **state)
{
	static const int fwd[] = {0, 1, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *b = &fakes[1], *c = &fakes[2];

	hw_setup_service_set_timeout(svc, 200);
	b->silent_reserve = 1;
	send_build(12, fwd, 2, rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_INTERNAL);
	expect_text_names(b, a->built_msg.u.built.text,
			  "no answer to reserve within 200 ms");
	assert_true(run_until(all_fakes_released, 2000));
	assert_int_equal(b->ndeleted, 0);
	assert_int_equal(a->nrules + c->nrules, 0);
}

/* An answer from another visor's transport does not count. */
static void test_answer_wrong_transport(void **state)
{
	static const int fwd[] = {0, 1, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *b = &fakes[1], *c = &fakes[2];

	hw_setup_service_set_timeout(svc, 300);
	b->silent_rules = 1;
	send_build(13, fwd, 2, rev, 2);
	while (!b->nrules)
		assert_true(run_until(NULL, 20));
	/* C answers the ADD_RULES that B holds back. */
	fake_result(c, b->last_req, HW_SETUP_OK, "");
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_INTERNAL);
	expect_text_names(b, a->built_msg.u.built.text,
			  "no answer to add rules");
	assert_int_equal(c->incoming, 0);
	assert_true(counter("unexpected") >= 1);
	assert_true(run_until(all_fakes_released, 2000));
}

static void test_reserve_wrong_count(void **state)
{
	static const int fwd[] = {0, 1, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *b = &fakes[1];

	b->reserve_extra = 1;
	send_build(14, fwd, 2, rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_INTERNAL);
	expect_text_names(b, a->built_msg.u.built.text,
			  "reserved 3 route IDs, asked for 2");
	assert_true(run_until(all_fakes_released, 2000));
}

/* fakes[3] has no transport, and there is no discovery. */
static void test_unreachable(void **state)
{
	static const int fwd[] = {0, 1, 3}, rev[] = {3, 1, 0};
	struct fake *a = &fakes[0];

	send_build(15, fwd, 2, rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_NO_TP);
	expect_text_names(&fakes[3], a->built_msg.u.built.text,
			  "no discovery");
	/* A and B answered after the end: released at once. */
	assert_true(run_until(all_fakes_released, 2000));
	assert_true(counter("unexpected") >= 1);
	/* Without discovery nothing is looked up. */
	assert_int_equal(res.calls, 0);
}

static void test_bad_builds(void **state)
{
	static const int fwd[] = {0, 1, 2};
	static const int broken[] = {1, 0}; /* does not start at C */
	struct fake *a = &fakes[0];
	struct hw_setup_msg m;
	uint8_t junk[] = {HW_SETUP_BUILD, 0, 0, 0, 42, 1, 2};
	struct hw_tp *tp = hw_tp_manager_find(a->tpm, sid.pk, NULL);

	/* Not the sender's own route. */
	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_BUILD;
	m.req = 1;
	memcpy(m.u.build.desc.src_pk, fakes[1].id.pk, HW_PK_LEN);
	memcpy(m.u.build.desc.dst_pk, fakes[2].id.pk, HW_PK_LEN);
	m.u.build.desc.src_port = m.u.build.desc.dst_port = 1;
	m.u.build.keepalive_ms = 5000;
	m.u.build.fwd_n = m.u.build.rev_n = 1;
	hop(&m.u.build.fwd[0], &fakes[1], &fakes[2]);
	hop(&m.u.build.rev[0], &fakes[2], &fakes[1]);
	fake_send(a, &m);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_REFUSED);
	assert_non_null(strstr(a->built_msg.u.built.text, "its own routes"));

	/* A reverse path that does not start at the destination. */
	a->built = 0;
	send_build(2, fwd, 2, broken, 1);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.req, 2);
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_REFUSED);
	assert_true(!strncmp(a->built_msg.u.built.text, "reverse path: ",
			     14));

	/* Garbage with a header: RESULT bad request. */
	assert_int_equal(hw_tp_send(tp, HW_PKT_SETUP, 0, junk, sizeof(junk)),
			 0);
	while (!a->results)
		assert_true(run_until(NULL, 20));
	assert_int_equal(a->result_msg.req, 42);
	assert_int_equal(a->result_msg.u.result.status, HW_SETUP_REFUSED);
	assert_string_equal(a->result_msg.u.result.text, "bad request");
	assert_int_equal(counter("malformed"), 1);

	/* A visor's request to a setup node is refused. */
	a->results = 0;
	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_RESERVE;
	m.req = 43;
	m.u.reserve.count = 1;
	fake_send(a, &m);
	while (!a->results)
		assert_true(run_until(NULL, 20));
	assert_int_equal(a->result_msg.req, 43);
	assert_int_equal(a->result_msg.u.result.status, HW_SETUP_REFUSED);

	/* An answer nobody asked for is counted and dropped. */
	fake_result(a, 12345, HW_SETUP_OK, "");
	assert_true(run_until(NULL, 50));
	assert_int_equal(counter("unexpected"), 2);
	assert_int_equal(a->nreserved, 0);
}

/* Frees the service while its one build waits, once the answers it got
 * are in: the build is answered and rolled back. */
static void stop_building(void)
{
	struct fake *a = &fakes[0];

	assert_true(run_until(NULL, 50)); /* RESERVED answers in */
	assert_int_equal(counter("in_progress"), 1);
	hw_setup_service_free(svc);
	svc = NULL;
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_INTERNAL);
	assert_string_equal(a->built_msg.u.built.text, "setup node stopping");
	assert_true(run_until(all_fakes_released, 2000));
}

/* Stopping with a build in progress: rolled back and answered. */
static void test_free_pending(void **state)
{
	static const int fwd[] = {0, 1, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *b = &fakes[1], *c = &fakes[2];

	b->silent_reserve = 1;
	send_build(16, fwd, 2, rev, 2);
	while (!a->nreserved || !c->nreserved || !b->last_req)
		assert_true(run_until(NULL, 20));
	stop_building();
}

/* ---- reaching visors through the resolver ---- */

static const int via3_fwd[] = {0, 1, 3}, via3_rev[] = {3, 1, 0};

static void resolve_to(const char *type, const char *addr)
{
	res.can = 1;
	res.status = 0;
	snprintf(res.type, sizeof(res.type), "%s", type);
	snprintf(res.addr, sizeof(res.addr), "%s", addr);
}

static void resolve_fails(int status, const char *msg)
{
	res.can = 1;
	res.status = status;
	res.msg = msg;
}

/* A build through fakes[3] fails as expected, and nothing is kept of it:
 * no transport to fakes[3], every ID released, no resolve waiting. */
static void expect_via3_fails(uint32_t req, uint8_t status,
			      const char *reason)
{
	struct fake *a = &fakes[0];

	a->built = 0;
	send_build(req, via3_fwd, 2, via3_rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.req, req);
	assert_int_equal(a->built_msg.u.built.status, status);
	assert_int_equal(a->built_msg.u.built.fwd_send_id, 0);
	expect_text_names(&fakes[3], a->built_msg.u.built.text, reason);
	assert_true(run_until(all_fakes_released, 2000));
	assert_int_equal(res.npending, 0);
	assert_null(hw_tp_manager_find(stpm, fakes[3].id.pk, NULL));
	assert_int_equal(fakes[3].nreserved, 0);
	assert_int_equal(counter("in_progress"), 0);
}

/* The visor with no transport is looked up, dialed and built on. */
static void build_via3(int sync)
{
	struct fake *a = &fakes[0], *d = &fakes[3];
	struct hw_tp *tp;

	resolve_to("tcp", fake3_addr);
	res.sync = sync;
	send_build(20, via3_fwd, 2, via3_rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.req, 20);
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_OK);
	/* Only the visor without a transport was looked up. */
	assert_int_equal(res.calls, 1);
	assert_memory_equal(res.asked, d->id.pk, HW_PK_LEN);
	assert_int_equal(res.npending, 0);
	assert_non_null(tp = hw_tp_manager_find(stpm, d->id.pk, NULL));
	assert_true(hw_tp_is_up(tp));
	assert_int_equal(d->nreserved, 2);
	assert_int_equal(d->nrules, 2);
	assert_int_equal(d->incoming, 1);
	assert_non_null(rule_of(d, HW_RULE_CONSUME,
				d->incoming_msg.u.incoming.fwd_recv_id));
	assert_int_equal(counter("builds_ok"), 1);
	assert_int_equal(counter("rollbacks"), 0);
}

static void test_resolve_and_dial(void **state)
{
	build_via3(0);
}

/* A resolver may answer before resolve returns. */
static void test_resolve_sync(void **state)
{
	build_via3(1);
}

/* The resolver cannot start: the build fails at once with its reason. */
static void test_resolve_cannot_start(void **state)
{
	char want[128];

	res.can = 1;
	res.start_rc = -EMFILE;
	snprintf(want, sizeof(want), "cannot look it up in discovery: %s",
		 hw_strerror(-EMFILE));
	expect_via3_fails(21, HW_SETUP_NO_TP, want);
	assert_int_equal(res.calls, 1);
	assert_int_equal(counter("builds_failed"), 1);
	/* It failed before A and B answered RESERVE: nothing to roll back,
	 * their answers came after the end and their IDs went back. */
	assert_int_equal(counter("rollbacks"), 0);
	assert_int_equal(counter("unexpected"), 2);
}

/* The resolver answers that the visor cannot be found: its message, or
 * without one its status, reaches the source, made fit to send. */
static void test_resolve_fails(void **state)
{
	char want[128];

	snprintf(want, sizeof(want), "not reachable: %s",
		 hw_strerror(-ENOENT));
	resolve_fails(-ENOENT, NULL);
	expect_via3_fails(22, HW_SETUP_NO_TP, want);
	resolve_fails(-EIO, "no entry\x01 for it \xff\xfe");
	expect_via3_fails(23, HW_SETUP_NO_TP,
			  "not reachable: no entry? for it ??");
	resolve_fails(-EIO, "same, sync");
	res.sync = 1;
	expect_via3_fails(24, HW_SETUP_NO_TP, "not reachable: same, sync");
	assert_int_equal(res.calls, 3);
	assert_int_equal(counter("builds_failed"), 3);
}

/* Found, but nothing answers at its address. */
static void test_resolved_peer_unreachable(void **state)
{
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", hw_test_free_port());
	resolve_to("tcp", addr);
	expect_via3_fails(25, HW_SETUP_NO_TP, "no transport: ");
	assert_int_equal(res.calls, 1);
}

/* Found with an address the transport manager refuses. */
static void test_resolved_bad_address(void **state)
{
	resolve_to("pigeon", fake3_addr);
	expect_via3_fails(26, HW_SETUP_NO_TP,
			  "no transport: transport type 'pigeon' is not "
			  "available");
	resolve_to("tcp", "");
	expect_via3_fails(27, HW_SETUP_NO_TP,
			  "no transport: a tcp transport needs an address");
}

/* A resolve that does not answer within the step; its late answer (even
 * one naming a good address) dials nothing. */
static void test_resolve_timeout(void **state)
{
	struct fake *a = &fakes[0];

	hw_setup_service_set_timeout(svc, 200);
	resolve_to("tcp", fake3_addr);
	res.hold = 1;
	send_build(28, via3_fwd, 2, via3_rev, 2);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_NO_TP);
	expect_text_names(&fakes[3], a->built_msg.u.built.text,
			  "no transport within 200 ms");
	assert_true(run_until(all_fakes_released, 2000));
	assert_int_equal(res.npending, 1);
	resolver_answer(0, "tcp", fake3_addr, NULL);
	assert_true(run_until(NULL, 100));
	assert_null(hw_tp_manager_find(stpm, fakes[3].id.pk, NULL));
	assert_int_equal(fakes[3].nreserved, 0);
	assert_int_equal(counter("builds_failed"), 1);
	assert_int_equal(counter("in_progress"), 0);
}

/* Stopping while a resolve is under way: answered, and the resolve's
 * answer afterwards finds nothing to do. */
static void test_free_resolving(void **state)
{
	struct fake *a = &fakes[0], *b = &fakes[1];

	resolve_to("tcp", fake3_addr);
	res.hold = 1;
	send_build(29, via3_fwd, 2, via3_rev, 2);
	while (!res.npending || !a->nreserved || !b->nreserved)
		assert_true(run_until(NULL, 20));
	stop_building();
	resolver_answer(0, "tcp", fake3_addr, NULL);
	assert_true(run_until(NULL, 100));
	assert_null(hw_tp_manager_find(stpm, fakes[3].id.pk, NULL));
}

/* A service without ops reaches only visors it has a transport to. */
static void test_no_ops(void **state)
{
	struct hw_setup_service_params sp;

	hw_setup_service_free(svc);
	service_params(&sp, NULL);
	assert_int_equal(hw_setup_service_new(&svc, &sp), 0);
	res.can = 1; /* not asked: there are no ops */
	expect_via3_fails(30, HW_SETUP_NO_TP, "no discovery");
	assert_int_equal(res.calls, 0);
}

/* The key in the params is the setup node's own: it is no hop. */
static void test_own_key_not_a_hop(void **state)
{
	struct fake *a = &fakes[0], *c = &fakes[2];
	struct hw_setup_msg m;

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_BUILD;
	m.req = 31;
	memcpy(m.u.build.desc.src_pk, a->id.pk, HW_PK_LEN);
	memcpy(m.u.build.desc.dst_pk, c->id.pk, HW_PK_LEN);
	m.u.build.desc.src_port = m.u.build.desc.dst_port = 1;
	m.u.build.keepalive_ms = 5000;
	m.u.build.fwd_n = 2;
	hw_tp_id(a->id.pk, sid.pk, "tcp", m.u.build.fwd[0].tp_id);
	memcpy(m.u.build.fwd[0].from, a->id.pk, HW_PK_LEN);
	memcpy(m.u.build.fwd[0].to, sid.pk, HW_PK_LEN);
	hw_tp_id(sid.pk, c->id.pk, "tcp", m.u.build.fwd[1].tp_id);
	memcpy(m.u.build.fwd[1].from, sid.pk, HW_PK_LEN);
	memcpy(m.u.build.fwd[1].to, c->id.pk, HW_PK_LEN);
	m.u.build.rev_n = 1;
	hop(&m.u.build.rev[0], c, a);
	fake_send(a, &m);
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.req, 31);
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_REFUSED);
	assert_string_equal(a->built_msg.u.built.text,
			    "the setup node cannot be a hop of a route");
	assert_int_equal(a->nreserved + fakes[1].nreserved + c->nreserved, 0);
	assert_int_equal(counter("builds_failed"), 1);
	assert_int_equal(counter("in_progress"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup_world, teardown_world)
		T(test_build_ok),
		T(test_build_asymmetric),
		T(test_rules_refused),
		T(test_untrusted),
		T(test_incoming_refused),
		T(test_reserve_timeout),
		T(test_answer_wrong_transport),
		T(test_reserve_wrong_count),
		T(test_unreachable),
		T(test_bad_builds),
		T(test_free_pending),
		T(test_resolve_and_dial),
		T(test_resolve_sync),
		T(test_resolve_cannot_start),
		T(test_resolve_fails),
		T(test_resolved_peer_unreachable),
		T(test_resolved_bad_address),
		T(test_resolve_timeout),
		T(test_free_resolving),
		T(test_no_ops),
		T(test_own_key_not_a_hop),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
