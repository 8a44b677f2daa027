/* Dialing routes (this visor is the source): paths from discovery's route
 * finder, a transport to the first setup node, BUILD, and on BUILT the
 * route group that does the end-to-end handshake. A dial is for a stream
 * client (streams.c) or a route end (routing_ends.c). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "discovery/client.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "visor/routing_priv.h"

/* How long a dial may take: paths from discovery, a transport to the
 * setup node, the build and the end-to-end handshake. */
#define DIAL_TIMEOUT_MS 30000

static void dial_fail(struct dial *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void dial_timer_closed(uv_handle_t *h)
{
	struct dial *d = h->data;
	d->timer_closed = 1;
	if (!d->waiting)
		free(d);
}

void hw_routing_dial_free(struct dial *d)
{
	struct hw_routing *rt = d->rt;
	for (struct dial **pp = &rt->dials; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	d->done = 1;
	uv_close((uv_handle_t *)&d->timer, dial_timer_closed);
}

/* A callback of another module reached d. Returns 0 when d is finished
 * (and frees it if nothing else is due): the callback must stop. */
static int dial_back(struct dial *d)
{
	d->waiting--;
	if (!d->done)
		return 1;
	if (!d->waiting && d->timer_closed)
		free(d);
	return 0;
}

/* A heal that found no route: final when no path is left. */
static void heal_fail(struct dial *d, int final, const char *msg)
{
	struct group *gr = d->resume;

	d->resume = NULL;
	hw_routing_dial_free(d);
	if (gr)
		hw_rgroup_heal_failed(gr->g, final, -ENETUNREACH, msg);
}

static void dial_fail(struct dial *d, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (d->heal) {
		heal_fail(d, 0, msg);
		return;
	}
	hw_log(HW_LOG_WARN, LOG, "dial failed: %s", msg);
	if (d->eops) {
		const struct hw_route_end_ops *ops = d->eops;
		void *eud = d->eud;
		d->eops = NULL;
		hw_routing_dial_free(d);
		ops->closed(eud, -EHOSTUNREACH, msg);
		return;
	}
	if (d->client) {
		json_t *o = json_pack("{s:s}", "error", msg);
		hw_streams_reply(d->client, o);
		json_decref(o);
		hw_streams_client_close(d->client);
		d->client = NULL;
	}
	hw_routing_dial_free(d);
}

static void on_dial_timeout(uv_timer_t *t)
{
	dial_fail(t->data, "timed out after %d ms", DIAL_TIMEOUT_MS);
}

/* Whether path p (from discovery) visits exactly the visors in via. */
static int path_matches(json_t *tps, const struct dial *d)
{
	if (d->nvia == 0)
		return 1;
	if (json_array_size(tps) != d->nvia + 1)
		return 0;
	for (unsigned i = 0; i < d->nvia; i++) {
		const char *to = json_string_value(
			json_object_get(json_array_get(tps, i), "to"));
		uint8_t pk[HW_PK_LEN];
		if (!to || hw_pk_parse(to, strlen(to), pk) ||
		    memcmp(pk, d->via[i], HW_PK_LEN))
			return 0;
	}
	return 1;
}

/* Fills hops from the route finder's answer; 0, or -ENOENT. */
static int take_path(json_t *resp, const struct dial *d, int reverse,
		     struct hw_setup_hop *hops, uint8_t *n)
{
	json_t *paths = json_object_get(resp, "paths"), *p;
	size_t i;

	json_array_foreach(paths, i, p) {
		json_t *tps = json_object_get(p, "transports"), *t;
		size_t k;
		int ok = 1;

		if (reverse ? 0 : !path_matches(tps, d))
			continue;
		if (json_array_size(tps) == 0 ||
		    json_array_size(tps) > HW_SETUP_HOPS_MAX)
			continue;
		json_array_foreach(tps, k, t) {
			const char *id = json_string_value(json_object_get(t, "id"));
			const char *from = json_string_value(json_object_get(t, "from"));
			const char *to = json_string_value(json_object_get(t, "to"));
			if (!id || !from || !to ||
			    hw_hex_decode(id, strlen(id), hops[k].tp_id,
					  HW_TP_ID_LEN) ||
			    hw_pk_parse(from, strlen(from), hops[k].from) ||
			    hw_pk_parse(to, strlen(to), hops[k].to))
				ok = 0;
		}
		if (ok) {
			*n = (uint8_t)json_array_size(tps);
			return 0;
		}
	}
	return -ENOENT;
}

/* The reverse path walks the forward path's transports backwards, so
 * both directions go through the same visors (and source routing holds
 * both ways). */
static void reverse_of(struct hw_setup_msg *b)
{
	unsigned n = b->u.build.fwd_n;

	b->u.build.rev_n = (uint8_t)n;
	for (unsigned i = 0; i < n; i++) {
		const struct hw_setup_hop *f = &b->u.build.fwd[n - 1 - i];
		struct hw_setup_hop *r = &b->u.build.rev[i];
		memcpy(r->tp_id, f->tp_id, HW_TP_ID_LEN);
		memcpy(r->from, f->to, HW_PK_LEN);
		memcpy(r->to, f->from, HW_PK_LEN);
	}
}

static void send_build(struct dial *d, struct hw_tp *tp)
{
	d->stage = 2;
	d->req = ++d->rt->next_req;
	d->build.req = d->req;
	hw_setup_msg_send(tp, &d->build);
}

static void setup_tp_added(struct hw_tp_manager *m, struct hw_tp *tp,
			   int status, const char *msg, void *ud)
{
	struct dial *d = ud;

	if (!dial_back(d))
		return;
	if (!tp) {
		dial_fail(d, "cannot reach the setup node: %s",
			  msg ? msg : hw_strerror(status));
		return;
	}
	send_build(d, tp);
}

static void setup_resolved(int status, const char *type, const char *addr,
			   const char *msg, void *ud)
{
	struct dial *d = ud;
	char err[300];

	if (!dial_back(d))
		return;
	if (status) {
		dial_fail(d, "cannot find the setup node in discovery: %s",
			  msg);
		return;
	}
	d->waiting++;
	if (hw_tp_manager_add(d->rt->tpm, d->setup_pk, type, addr, 0,
			      setup_tp_added, d, err, sizeof(err)) == -EINVAL) {
		d->waiting--;
		dial_fail(d, "setup node: %s", err);
	}
}

static void to_setup_node(struct dial *d)
{
	struct hw_routing *rt = d->rt;
	struct hw_tp *tp;
	int rc;

	d->stage = 1;
	memcpy(d->setup_pk, rt->setup_nodes[0], HW_PK_LEN);
	tp = hw_tp_manager_find(rt->tpm, d->setup_pk, NULL);
	if (tp && hw_tp_is_up(tp)) {
		send_build(d, tp);
		return;
	}
	d->waiting++;
	if ((rc = rt->ops->resolve(rt->ops_ud, d->setup_pk, setup_resolved,
				   d))) {
		d->waiting--;
		dial_fail(d, "cannot look up the setup node: %s",
			  hw_strerror(rc));
	}
}

static void on_paths(struct hw_disc_client *c, int status, int http,
		     json_t *resp, const char *msg, void *ud)
{
	struct dial *d = ud;

	if (!dial_back(d))
		return;
	if (status) {
		dial_fail(d, "route finder: %s", msg);
		return;
	}
	if (take_path(resp, d, 0, d->build.u.build.fwd,
		      &d->build.u.build.fwd_n)) {
		if (d->heal) {
			char pk[HW_PK_HEXLEN + 1], why[200];

			hw_pk_format(d->check_only
					     ? d->build.u.build.desc.src_pk
					     : d->build.u.build.desc.dst_pk,
				     pk);
			snprintf(why, sizeof(why), "route failed and discovery "
				 "knows no other path to %s", pk);
			heal_fail(d, 1, why);
			return;
		}
		dial_fail(d, "discovery knows no path to the peer%s",
			  d->nvia ? " through the hops given" : "");
		return;
	}
	if (d->check_only) {
		/* A path is left: the source builds on it. */
		hw_routing_dial_free(d);
		return;
	}
	reverse_of(&d->build);
	hw_log(HW_LOG_DEBUG, LOG, "dial: %u-hop path from discovery",
	       d->build.u.build.fwd_n);
	to_setup_node(d);
}

int hw_routing_on_built(struct hw_routing *rt, const uint8_t from_pk[HW_PK_LEN],
			const struct hw_setup_msg *m)
{
	struct group *gr;
	struct dial *d;
	int rc;

	for (d = rt->dials; d; d = d->next)
		if (d->stage == 2 && d->req == m->req &&
		    !memcmp(from_pk, d->setup_pk, HW_PK_LEN))
			break;
	if (!d)
		return -ENOENT;
	if (m->u.built.status != HW_SETUP_OK) {
		dial_fail(d, "setup node: %s: %s",
			  hw_setup_status_name(m->u.built.status),
			  m->u.built.text);
		return 0;
	}
	d->stage = 3;
	if (d->heal) {
		gr = d->resume;

		/* A group that closed meanwhile leaves rules that expire. */
		d->resume = NULL;
		hw_routing_dial_free(d);
		if (gr) {
			hw_log(HW_LOG_DEBUG, LOG, "heal: built; resuming");
			hw_routing_group_set_hops(gr, d->build.u.build.fwd,
						  d->build.u.build.fwd_n);
			hw_routing_group_resumed(rt, gr, m->u.built.fwd_send_id,
						 m->u.built.rev_recv_id);
		}
		return 0;
	}
	hw_log(HW_LOG_DEBUG, LOG, "dial: built; starting the handshake");
	rc = hw_routing_group_start(rt, &d->build.u.build.desc, 1,
				    m->u.built.fwd_send_id,
				    m->u.built.rev_recv_id, d->client, d->eops,
				    d->eud);
	if (rc) {
		dial_fail(d, "route group: %s", hw_strerror(rc));
		return 0;
	}
	if ((gr = hw_routing_group_find(rt, m->u.built.rev_recv_id)))
		hw_routing_group_set_hops(gr, d->build.u.build.fwd,
					  d->build.u.build.fwd_n);
	/* The group answers the client from here on (ready or closed). */
	d->client = NULL;
	d->eops = NULL;
	hw_routing_dial_free(d);
	return 0;
}

static struct hw_disc_client *discovery(struct hw_routing *rt)
{
	return rt->ops->discovery ? rt->ops->discovery(rt->ops_ud) : NULL;
}

int hw_routing_dial_check(struct hw_routing *rt, const uint8_t pk[HW_PK_LEN],
			  char *err, size_t errlen)
{
	if (!rt->nsetup_nodes) {
		snprintf(err, errlen, "no setup node configured "
			 "(routing.setup_nodes)");
		return -EINVAL;
	}
	if (!discovery(rt)) {
		snprintf(err, errlen, "no discovery to find paths "
			 "(discovery.url)");
		return -EINVAL;
	}
	if (!memcmp(pk, rt->id->pk, HW_PK_LEN)) {
		snprintf(err, errlen, "that is this visor's own key");
		return -EINVAL;
	}
	return 0;
}

/* Puts a dial whose BUILD has its descriptor on the list, its timeout
 * running. */
static void dial_list(struct hw_routing *rt, struct dial *d)
{
	d->build.u.build.keepalive_ms = rt->keepalive_ms;
	uv_timer_init(rt->loop, &d->timer);
	d->timer.data = d;
	uv_timer_start(&d->timer, on_dial_timeout, DIAL_TIMEOUT_MS, 0);
	d->next = rt->dials;
	rt->dials = d;
}

int hw_routing_dial_start(struct hw_routing *rt, struct client *c,
			  const struct hw_route_end_ops *eops, void *eud,
			  const uint8_t pk[HW_PK_LEN], uint16_t port,
			  uint16_t src_port, const uint8_t (*via)[HW_PK_LEN],
			  unsigned nvia, char *err, size_t errlen)
{
	struct hw_disc_client *dc = discovery(rt);
	char path[512], me[HW_PK_HEXLEN + 1], them[HW_PK_HEXLEN + 1];
	struct hw_route_desc *desc;
	struct dial *d;
	int rc;

	if ((rc = hw_routing_dial_check(rt, pk, err, errlen)))
		return rc;
	if (nvia >= HW_SETUP_HOPS_MAX) {
		snprintf(err, errlen, "via: at most %d hops",
			 HW_SETUP_HOPS_MAX - 1);
		return -EINVAL;
	}
	if (!(d = calloc(1, sizeof(*d))))
		return -ENOMEM;
	if (nvia)
		memcpy(d->via, via, nvia * sizeof(*via));
	d->nvia = nvia;
	d->rt = rt;
	d->client = c;
	d->eops = eops;
	d->eud = eud;
	d->build.type = HW_SETUP_BUILD;
	desc = &d->build.u.build.desc;
	memcpy(desc->src_pk, rt->id->pk, HW_PK_LEN);
	memcpy(desc->dst_pk, pk, HW_PK_LEN);
	desc->dst_port = port;
	desc->src_port = src_port;
	dial_list(rt, d);
	hw_pk_format(rt->id->pk, me);
	hw_pk_format(pk, them);
	if (d->nvia)
		snprintf(path, sizeof(path), "/v1/routes?src=%s&dst=%s&k=16&"
			 "min_hops=%u&max_hops=%u", me, them, d->nvia + 1,
			 d->nvia + 1);
	else
		snprintf(path, sizeof(path), "/v1/routes?src=%s&dst=%s&k=1&"
			 "min_hops=1&max_hops=%d", me, them, HW_SETUP_HOPS_MAX);
	d->waiting++;
	if ((rc = hw_disc_get(dc, path, on_paths, d))) {
		d->waiting--;
		d->client = NULL;
		d->eops = NULL;
		hw_routing_dial_free(d);
		snprintf(err, errlen, "discovery: %s", hw_strerror(rc));
		return rc;
	}
	return 0;
}

void hw_routing_heal_start(struct hw_routing *rt, struct group *gr,
			   const uint8_t *avoid_tp)
{
	const struct hw_route_desc *gd = hw_rgroup_desc(gr->g);
	int initiator = hw_rgroup_initiator(gr->g);
	struct hw_disc_client *dc = discovery(rt);
	char path[600], me[HW_PK_HEXLEN + 1], them[HW_PK_HEXLEN + 1];
	char avoid[HW_TP_ID_HEXLEN + 16];
	struct hw_route_desc *desc;
	struct dial *d;
	int rc;

	if (!dc || (initiator && !rt->nsetup_nodes)) {
		hw_rgroup_heal_failed(gr->g, 1, -ENETUNREACH, "route failed "
				      "and this visor cannot build routes "
				      "(no discovery or setup node)");
		return;
	}
	if (!(d = calloc(1, sizeof(*d)))) {
		hw_rgroup_heal_failed(gr->g, 0, -ENOMEM, "out of memory");
		return;
	}
	d->rt = rt;
	d->heal = 1;
	d->resume = gr;
	d->check_only = !initiator;
	d->build.type = HW_SETUP_BUILD;
	desc = &d->build.u.build.desc;
	*desc = *gd;
	dial_list(rt, d);
	hw_pk_format(rt->id->pk, me);
	hw_pk_format(initiator ? gd->dst_pk : gd->src_pk, them);
	avoid[0] = 0;
	if (avoid_tp) {
		memcpy(d->avoid, avoid_tp, HW_TP_ID_LEN);
		d->has_avoid = 1;
		memcpy(avoid, "&avoid=", 7);
		hw_hex_encode(avoid_tp, HW_TP_ID_LEN, avoid + 7);
	}
	snprintf(path, sizeof(path), "/v1/routes?src=%s&dst=%s&k=1&"
		 "min_hops=1&max_hops=%d%s", me, them, HW_SETUP_HOPS_MAX,
		 avoid);
	d->waiting++;
	if ((rc = hw_disc_get(dc, path, on_paths, d))) {
		d->waiting--;
		heal_fail(d, 0, hw_strerror(rc));
	}
}

uint16_t hw_routing_ephemeral_port(struct hw_routing *rt)
{
	uint16_t p = rt->next_port++;
	if (rt->next_port < EPHEMERAL_FIRST)
		rt->next_port = EPHEMERAL_FIRST;
	return p;
}
