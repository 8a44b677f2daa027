/* The visor's side of the setup protocol (docs/routing.md): what it
 * answers to the trusted setup nodes (RESERVE, ADD_RULES, DEL_RULES,
 * INCOMING) and to anyone else, and where BUILT answers to its own dials
 * go. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "visor/routing_priv.h"

static int trusted(const struct hw_routing *rt, const uint8_t pk[HW_PK_LEN])
{
	for (unsigned i = 0; i < rt->nsetup_nodes; i++)
		if (!memcmp(rt->setup_nodes[i], pk, HW_PK_LEN))
			return 1;
	return 0;
}

static int result(struct hw_setup_msg *a, uint32_t req, uint8_t status,
		  const char *text)
{
	memset(a, 0, sizeof(*a));
	a->type = HW_SETUP_RESULT;
	a->req = req;
	a->u.result.status = status;
	hw_setup_text_set(a->u.result.text, text);
	return 1;
}

static int on_reserve(struct hw_routing *rt, const struct hw_setup_msg *m,
		      struct hw_setup_msg *a)
{
	memset(a, 0, sizeof(*a));
	a->type = HW_SETUP_RESERVED;
	a->req = m->req;
	if (hw_router_reserve(rt->router, m->u.reserve.count,
			      a->u.reserved.ids)) {
		a->u.reserved.status = HW_SETUP_LIMIT;
	} else {
		a->u.reserved.status = HW_SETUP_OK;
		a->u.reserved.count = m->u.reserve.count;
	}
	return 1;
}

static int on_add_rules(struct hw_routing *rt, const struct hw_setup_msg *m,
			struct hw_setup_msg *a)
{
	unsigned i;
	int rc = 0;
	char text[HW_SETUP_TEXT_MAX + 1];

	for (i = 0; i < m->u.add_rules.count; i++)
		if ((rc = hw_router_add(rt->router, &m->u.add_rules.rules[i])))
			break;
	if (rc == 0)
		return result(a, m->req, HW_SETUP_OK, "");
	/* All or nothing: what this message installed goes again. */
	snprintf(text, sizeof(text), "rule %u (id %u): %s", i,
		 m->u.add_rules.rules[i].id,
		 rc == -ENOTCONN ? "no such transport here"
		 : rc == -ENOENT ? "route ID not reserved"
				 : hw_strerror(rc));
	while (i-- > 0)
		hw_router_remove(rt->router, m->u.add_rules.rules[i].id);
	return result(a, m->req, rc == -ENOTCONN ? HW_SETUP_NO_TP
						 : HW_SETUP_REFUSED, text);
}

static int on_del_rules(struct hw_routing *rt, const struct hw_setup_msg *m,
			struct hw_setup_msg *a)
{
	for (unsigned i = 0; i < m->u.del_rules.count; i++) {
		struct group *gr = hw_routing_group_find(rt,
							 m->u.del_rules.ids[i]);
		if (gr)
			hw_rgroup_abort(gr->g, -ECONNRESET);
		hw_router_remove(rt->router, m->u.del_rules.ids[i]);
	}
	return result(a, m->req, HW_SETUP_OK, "");
}

static int on_incoming(struct hw_routing *rt, const struct hw_setup_msg *m,
		       struct hw_setup_msg *a)
{
	const struct hw_route_desc *d = &m->u.incoming.desc;
	const struct hw_route_end_ops *eops = NULL;
	struct client *c;
	struct group *gr;
	void *eud = NULL;
	char text[HW_SETUP_TEXT_MAX];
	int rc;

	if (memcmp(d->dst_pk, rt->id->pk, HW_PK_LEN))
		return result(a, m->req, HW_SETUP_REFUSED,
			      "this visor is not the destination");
	/* New routes for a group we have: the source heals it (the
	 * resumption handshake proves it is the same group). */
	if ((gr = hw_routing_group_by_desc(rt, d))) {
		if (hw_rgroup_can_resume(gr->g)) {
			hw_routing_group_resumed(rt, gr,
						 m->u.incoming.rev_send_id,
						 m->u.incoming.fwd_recv_id);
			return result(a, m->req, HW_SETUP_OK, "");
		}
		/* One that cannot be resumed is replaced. */
		hw_rgroup_abort(gr->g, -ECONNRESET);
	}
	text[0] = 0;
	rc = rt->incoming ? rt->incoming(rt->incoming_ud, d, &eops, &eud, text,
					 sizeof(text))
			  : -ENOENT;
	if (rc == 0) {
		rc = hw_routing_group_start(rt, d, 0, m->u.incoming.rev_send_id,
					    m->u.incoming.fwd_recv_id, NULL,
					    eops, eud);
		if (rc && eops->closed)
			eops->closed(eud, rc, hw_strerror(rc));
		return result(a, m->req, rc ? HW_SETUP_INTERNAL : HW_SETUP_OK,
			      rc ? hw_strerror(rc) : "");
	}
	if (rc != -ENOENT)
		return result(a, m->req, HW_SETUP_REFUSED, text);
	if (!(c = hw_streams_take_listener(rt, d->dst_port))) {
		snprintf(text, sizeof(text), "nothing listens on port %u",
			 d->dst_port);
		return result(a, m->req, HW_SETUP_REFUSED, text);
	}
	rc = hw_routing_group_start(rt, d, 0, m->u.incoming.rev_send_id,
				    m->u.incoming.fwd_recv_id, c, NULL, NULL);
	if (rc) {
		c->state = C_LISTEN; /* still listening */
		return result(a, m->req, HW_SETUP_INTERNAL, hw_strerror(rc));
	}
	return result(a, m->req, HW_SETUP_OK, "");
}

int hw_routing_setup_answer(struct hw_routing *rt,
			    const uint8_t from_pk[HW_PK_LEN],
			    const struct hw_setup_msg *m,
			    struct hw_setup_msg *a)
{
	char pk[HW_PK_HEXLEN + 1];

	if (m->type == HW_SETUP_BUILT) {
		if (hw_routing_on_built(rt, from_pk, m))
			rt->setup_bad++;
		return 0;
	}
	if (m->type == HW_SETUP_BUILD)
		return result(a, m->req, HW_SETUP_REFUSED,
			      "this visor is not a setup node");
	if (m->type == HW_SETUP_RESULT || m->type == HW_SETUP_RESERVED) {
		rt->setup_bad++; /* answers to nothing we asked */
		return 0;
	}
	if (!trusted(rt, from_pk)) {
		rt->setup_refused++;
		hw_pk_format(from_pk, pk);
		hw_log(HW_LOG_WARN, LOG, "refused %s from %s: not a trusted "
		       "setup node (routing.setup_nodes)",
		       hw_setup_msg_name(m->type), pk);
		return result(a, m->req, HW_SETUP_REFUSED,
			      "not a trusted setup node");
	}
	switch (m->type) {
	case HW_SETUP_RESERVE: return on_reserve(rt, m, a);
	case HW_SETUP_ADD_RULES: return on_add_rules(rt, m, a);
	case HW_SETUP_DEL_RULES: return on_del_rules(rt, m, a);
	case HW_SETUP_INCOMING: return on_incoming(rt, m, a);
	}
	return 0;
}

void hw_routing_on_setup(struct hw_routing *rt, struct hw_tp *tp,
			 const struct hw_packet *pkt)
{
	struct hw_setup_msg m, a;

	if (hw_setup_msg_decode(pkt->payload, pkt->len, &m)) {
		rt->setup_bad++;
		if (pkt->len >= HW_SETUP_HDR && m.type != HW_SETUP_RESULT &&
		    m.type != HW_SETUP_RESERVED && m.type != HW_SETUP_BUILT)
			hw_setup_result_send(tp, m.req, HW_SETUP_REFUSED,
					     "bad request");
		return;
	}
	if (hw_routing_setup_answer(rt, hw_tp_pk(tp), &m, &a))
		hw_setup_msg_send(tp, &a);
}
