/* The visor's routing module (docs/routing.md): creates and frees the
 * router and what hangs off it, takes the transport manager's packets
 * and events, and lists rules and groups. The jobs live next door:
 * routing_setup.c answers setup nodes, routing_dial.c dials routes,
 * routing_ends.c runs route groups and route ends, streams.c serves the
 * stream socket, routing_tap.c writes routing.tap_file. */
#include "visor/routing.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "visor/routing_priv.h"

void hw_routing_unref(struct hw_routing *rt)
{
	if (--rt->handles == 0) {
		hw_htab_free(&rt->groups);
		free(rt);
	}
}

/* ---- the router's callbacks ---- */

/* The group whose FORWARD rule is id. Rare (a rule expired, its
 * transport left, a hop reported a failure, each at most once a second
 * per rule): a scan. */
static struct group *group_by_send_id(struct hw_routing *rt, uint32_t id)
{
	for (size_t b = 0; b < rt->groups.nb; b++)
		for (struct hw_hnode *x = rt->groups.b[b]; x; x = x->next)
			if (((struct group *)x)->send_id == id)
				return (struct group *)x;
	return NULL;
}

static void on_deliver(struct hw_router *r, uint32_t rule_id,
		       const struct hw_packet *pkt, void *ud)
{
	struct hw_routing *rt = ud;
	struct group *gr = pkt->type == HW_PKT_ROUTE_FAIL_BACK
				   ? group_by_send_id(rt, rule_id)
				   : hw_routing_group_find(rt, rule_id);

	if (!gr) {
		rt->unknown_group++;
		return;
	}
	hw_rgroup_on_packet(gr->g, pkt);
}

static void on_rule_gone(struct hw_router *r, const struct hw_rule *rule,
			 int reason, void *ud)
{
	struct hw_routing *rt = ud;
	struct group *gr = NULL;
	const uint8_t *tp = NULL;

	if (rule->kind == HW_RULE_CONSUME) {
		gr = hw_routing_group_find(rt, rule->id);
		tp = rule->prev_tp;
	} else if (rule->kind == HW_RULE_FORWARD) {
		gr = group_by_send_id(rt, rule->id);
		tp = rule->next_tp;
	}
	/* Our own rule: no hint, the route is broken. Only a lost
	 * transport names one to avoid (an expired rule does not). */
	if (gr)
		hw_rgroup_route_failed(gr->g, 1, reason == -ENOTCONN ? tp
								     : NULL);
}

void hw_routing_on_packet(struct hw_routing *rt, struct hw_tp *tp,
			  const struct hw_packet *pkt)
{
	if (!rt || rt->closing)
		return;
	if (pkt->type == HW_PKT_SETUP) {
		/* Setup messages belong to the transport (route 0). */
		if (pkt->route_id == 0)
			hw_routing_on_setup(rt, tp, pkt);
		else
			rt->setup_bad++;
		return;
	}
	if (rt->tap) {
		const struct hw_rule *r = hw_router_find(rt->router,
							 pkt->route_id);
		if (r && r->kind == HW_RULE_INTERMEDIARY)
			hw_routing_tap_write(rt->tap, pkt->payload, pkt->len);
	}
	hw_router_on_packet(rt->router, tp, pkt);
}

void hw_routing_tp_event(struct hw_routing *rt, struct hw_tp *tp,
			 enum hw_tp_event ev)
{
	if (rt && !rt->closing && ev != HW_TP_UP)
		hw_router_tp_removed(rt->router, tp);
}

void hw_routing_tp_room(struct hw_routing *rt, struct hw_tp *tp)
{
	if (rt && !rt->closing)
		hw_router_tp_room(rt->router, tp);
}

/* ---- lifecycle and listings ---- */

json_t *hw_routing_rules_json(const struct hw_routing *rt)
{
	return hw_router_rules_json(rt->router);
}

/* The hops of a group this visor dialed: [{"from", "to", "tp"}], or
 * null at the responder (it does not know the route). */
static json_t *hops_json(const struct group *gr)
{
	char from[HW_PK_HEXLEN + 1], to[HW_PK_HEXLEN + 1];
	char tp[2 * HW_TP_ID_LEN + 1];
	json_t *a;

	if (!gr->nhops)
		return json_null();
	if (!(a = json_array()))
		return NULL;
	for (unsigned i = 0; i < gr->nhops; i++) {
		const struct hw_setup_hop *h = &gr->hops[i];
		hw_hex_encode(h->from, HW_PK_LEN, from);
		hw_hex_encode(h->to, HW_PK_LEN, to);
		hw_hex_encode(h->tp_id, HW_TP_ID_LEN, tp);
		if (json_array_append_new(a, json_pack("{s:s, s:s, s:s}",
						       "from", from, "to", to,
						       "tp", tp))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

json_t *hw_routing_groups_json(const struct hw_routing *rt)
{
	json_t *a = json_array(), *o;
	for (size_t b = 0; b < rt->groups.nb; b++)
		for (struct hw_hnode *x = rt->groups.b[b]; x; x = x->next) {
			const struct group *gr = (const struct group *)x;
			if ((o = hw_rgroup_json(gr->g)))
				json_object_set_new(o, "hops", hops_json(gr));
			json_array_append_new(a, o);
		}
	return a;
}

int hw_routing_new(struct hw_routing **out, const struct hw_routing_params *p,
		   char *err, size_t errlen)
{
	struct hw_router_params rp;
	struct hw_routing *rt;
	int rc;

	*out = NULL;
	if (p->nsetup_nodes > HW_ROUTING_SETUP_NODES_MAX) {
		snprintf(err, errlen, "routing.setup_nodes: more than %d",
			 HW_ROUTING_SETUP_NODES_MAX);
		return -EINVAL;
	}
	if (!(rt = calloc(1, sizeof(*rt))))
		return -ENOMEM;
	rt->loop = p->loop;
	rt->id = p->id;
	rt->x_priv = p->x_priv;
	rt->tpm = p->tpm;
	if (p->nsetup_nodes)
		memcpy(rt->setup_nodes, p->setup_nodes,
		       p->nsetup_nodes * sizeof(*p->setup_nodes));
	rt->nsetup_nodes = p->nsetup_nodes;
	rt->ops = p->ops;
	rt->ops_ud = p->ud;
	rt->handles = 1; /* released by hw_routing_free */
	rt->next_port = EPHEMERAL_FIRST + (uint16_t)randombytes_uniform(8192);
	/* Rules on a route live as long as packets (keepalives included)
	 * cross them: a few transport keepalive intervals. */
	rt->keepalive_ms = 4 * p->keepalive_ms;
	rt->heal_ms = p->heal_ms;
	if (rt->keepalive_ms < HW_RULE_KEEPALIVE_MIN_MS)
		rt->keepalive_ms = HW_RULE_KEEPALIVE_MIN_MS;
	memset(&rp, 0, sizeof(rp));
	rp.loop = p->loop;
	rp.tpm = p->tpm;
	rp.deliver = on_deliver;
	rp.rule_gone = on_rule_gone;
	rp.ud = rt;
	if ((rc = hw_router_new(&rt->router, &rp))) {
		snprintf(err, errlen, "router: %s", hw_strerror(rc));
		free(rt);
		return rc;
	}
	*out = rt;
	/* From here on the caller frees rt on failure, which closes this. */
	hw_streams_init(rt);
	if (p->tap_file && p->tap_file[0]) {
		if ((rc = hw_routing_tap_new(&rt->tap, p->loop, p->tap_file,
					     HW_ROUTING_TAP_BUF))) {
			snprintf(err, errlen, "routing.tap_file %s: %s",
				 p->tap_file, strerror(-rc));
			return rc;
		}
		hw_log(HW_LOG_WARN, LOG, "routing.tap_file: writing what this "
		       "visor forwards to %s", p->tap_file);
	}
	return hw_streams_listen(rt, p->local_dir, err, errlen);
}

void hw_routing_free(struct hw_routing *rt)
{
	if (!rt)
		return;
	rt->closing = 1;
	while (rt->dials) {
		struct dial *d = rt->dials;
		/* Discovery is gone by now (freed first) and calls no one
		 * back: nothing else is due for a dial still finding paths. */
		if (d->stage == 0)
			d->waiting = 0;
		if (d->client) {
			hw_streams_client_close(d->client);
			d->client = NULL;
		}
		hw_routing_dial_free(d);
	}
	hw_streams_close(rt);
	for (size_t b = 0; b < rt->groups.nb; b++)
		for (struct hw_hnode *x = rt->groups.b[b]; x; x = x->next)
			hw_rgroup_abort(((struct group *)x)->g, -ECANCELED);
	hw_router_free(rt->router);
	hw_routing_tap_free(rt->tap);
	rt->tap = NULL;
	hw_routing_unref(rt);
}
