/* The setup node's build orchestration against scripted visors: a setup
 * "visor" holding only a transport manager and the service, and fake
 * visors (transport managers on the same loop) that answer setup messages
 * as a test says and record what they were told. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
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
#include "visor/visor_priv.h"

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

static uv_loop_t loop;
static struct hw_visor sv; /* the setup node */
static struct hw_setup_service *svc;
static struct fake fakes[NFAKES];
static char setup_addr[128];

/* ---- fake visors ---- */

static void fake_send(struct fake *f, const struct hw_setup_msg *m)
{
	uint8_t buf[HW_SETUP_MSG_MAX];
	struct hw_tp *tp = hw_tp_manager_find(f->tpm, sv.id.pk, NULL);
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
		tp = hw_tp_manager_find(sv.tpm, fakes[i].id.pk, NULL);
		if (!fakes[i].up || !tp || !hw_tp_is_up(tp))
			return 0;
	}
	return 1;
}

static int a_built(void)
{
	return fakes[0].built > 0;
}

/* A loopback port nothing listens on (the manager wants a real one). */
static unsigned free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static int setup_world(void **state)
{
	struct hw_tp_manager_params p;
	char err[256], listen[64];

	uv_loop_init(&loop);
	memset(&sv, 0, sizeof(sv));
	memset(fakes, 0, sizeof(fakes));
	sv.loop = &loop;
	assert_int_equal(hw_identity_generate(&sv.id), 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", free_port());
	tpm_params(&p, &sv.id, listen);
	p.on_packet = setup_packet;
	p.on_event = setup_event;
	assert_int_equal(hw_tp_manager_new(&sv.tpm, &p, err, sizeof(err)), 0);
	snprintf(setup_addr, sizeof(setup_addr), "%s",
		 hw_tp_manager_listen_addr(sv.tpm));
	assert_int_equal(hw_setup_service_new(&svc, &sv), 0);
	for (int i = 0; i < NFAKES; i++) {
		struct fake *f = &fakes[i];
		assert_int_equal(hw_identity_generate(&f->id), 0);
		f->next_id = 1000u * (unsigned)(i + 1);
		tpm_params(&p, &f->id, "");
		p.on_packet = fake_packet;
		p.ud = f;
		assert_int_equal(hw_tp_manager_new(&f->tpm, &p, err,
						   sizeof(err)), 0);
		if (i == 3)
			continue;
		assert_int_equal(hw_tp_manager_add(f->tpm, sv.id.pk, "tcp",
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
	for (int i = 0; i < NFAKES; i++) {
		hw_tp_manager_free(fakes[i].tpm);
		hw_identity_wipe(&fakes[i].id);
	}
	hw_tp_manager_free(sv.tpm);
	hw_identity_wipe(&sv.id);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
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
}

static void test_bad_builds(void **state)
{
	static const int fwd[] = {0, 1, 2};
	static const int broken[] = {1, 0}; /* does not start at C */
	struct fake *a = &fakes[0];
	struct hw_setup_msg m;
	uint8_t junk[] = {HW_SETUP_BUILD, 0, 0, 0, 42, 1, 2};
	struct hw_tp *tp = hw_tp_manager_find(a->tpm, sv.id.pk, NULL);

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

/* Stopping with a build in progress: rolled back and answered. */
static void test_free_pending(void **state)
{
	static const int fwd[] = {0, 1, 2}, rev[] = {2, 1, 0};
	struct fake *a = &fakes[0], *b = &fakes[1], *c = &fakes[2];

	b->silent_reserve = 1;
	send_build(16, fwd, 2, rev, 2);
	while (!a->nreserved || !c->nreserved || !b->last_req)
		assert_true(run_until(NULL, 20));
	assert_true(run_until(NULL, 50)); /* RESERVED answers in */
	assert_int_equal(counter("in_progress"), 1);
	hw_setup_service_free(svc);
	svc = NULL;
	assert_true(run_until(a_built, 5000));
	assert_int_equal(a->built_msg.u.built.status, HW_SETUP_INTERNAL);
	assert_string_equal(a->built_msg.u.built.text, "setup node stopping");
	assert_true(run_until(all_fakes_released, 2000));
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
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
