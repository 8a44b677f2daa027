/* Route groups at this visor and route ends, the interface through which
 * the app server drives groups (hw_routing_dial, hw_route_end_*, the
 * incoming hook). A group belongs to a stream client (streams.c does its
 * half of each callback here), to a route end's ops, or, briefly, to
 * neither. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "visor/routing_priv.h"

static uint64_t id_hash(uint32_t id)
{
	return (uint64_t)id * 0x9e3779b97f4a7c15ull;
}

struct group *hw_routing_group_find(struct hw_routing *rt, uint32_t recv_id)
{
	uint64_t h = id_hash(recv_id);
	for (struct hw_hnode *x = hw_htab_bucket(&rt->groups, h); x;
	     x = x->next)
		if (x->h == h && ((struct group *)x)->recv_id == recv_id)
			return (struct group *)x;
	return NULL;
}

static void group_ready(struct hw_rgroup *g, void *ud)
{
	struct group *gr = ud;
	struct client *c = gr->client;
	const struct hw_route_desc *d = hw_rgroup_desc(g);
	char src[HW_PK_HEXLEN + 1], dst[HW_PK_HEXLEN + 1];

	hw_pk_format(d->src_pk, src);
	hw_pk_format(d->dst_pk, dst);
	hw_log(HW_LOG_INFO, LOG, "route group %s:%u -> %s:%u ready", src,
	       d->src_port, dst, d->dst_port);
	if (!c) {
		if (gr->eops && gr->eops->ready)
			gr->eops->ready(gr->eud, (struct hw_route_end *)gr);
		return;
	}
	hw_streams_ready(c, d, !memcmp(d->src_pk, gr->rt->id->pk, HW_PK_LEN));
}

static void group_data(struct hw_rgroup *g, const uint8_t *p, size_t len,
		       void *ud)
{
	struct group *gr = ud;

	if (gr->client)
		hw_streams_data(gr->client, g, p, len);
	else if (gr->eops && gr->eops->data)
		gr->eops->data(gr->eud, p, len);
}

static void group_writable(struct hw_rgroup *g, void *ud)
{
	struct group *gr = ud;
	struct client *c = gr->client;

	if (!c && gr->eops && gr->eops->writable)
		gr->eops->writable(gr->eud);
	if (c)
		hw_streams_writable(c, g);
}

/* Moves gr to the key of its CONSUME rule id (0: none). */
static void group_rekey(struct hw_routing *rt, struct group *gr,
			uint32_t recv_id)
{
	hw_htab_remove(&rt->groups, &gr->node);
	gr->recv_id = recv_id;
	gr->node.h = id_hash(recv_id);
	hw_htab_insert(&rt->groups, &gr->node);
}

struct group *hw_routing_group_by_desc(struct hw_routing *rt,
				       const struct hw_route_desc *d)
{
	for (size_t b = 0; b < rt->groups.nb; b++)
		for (struct hw_hnode *x = rt->groups.b[b]; x; x = x->next) {
			struct group *gr = (struct group *)x;

			if (!hw_rgroup_initiator(gr->g) &&
			    !memcmp(hw_rgroup_desc(gr->g), d, sizeof(*d)))
				return gr;
		}
	return NULL;
}

/* The group's routes are broken: their rules go, and new ones are
 * looked for. */
static void group_broken(struct hw_rgroup *g, const uint8_t *tp_id, void *ud)
{
	struct group *gr = ud;
	struct hw_routing *rt = gr->rt;

	if (rt->closing) {
		hw_rgroup_heal_failed(g, 1, -ECANCELED, "the visor is stopping");
		return;
	}
	if (gr->recv_id)
		hw_router_remove(rt->router, gr->recv_id);
	if (gr->send_id)
		hw_router_remove(rt->router, gr->send_id);
	gr->send_id = 0;
	group_rekey(rt, gr, 0);
	hw_routing_heal_start(rt, gr, tp_id);
}

void hw_routing_group_resumed(struct hw_routing *rt, struct group *gr,
			      uint32_t send_id, uint32_t recv_id)
{
	int rc;

	if (gr->recv_id && gr->recv_id != recv_id)
		hw_router_remove(rt->router, gr->recv_id);
	if (gr->send_id && gr->send_id != send_id)
		hw_router_remove(rt->router, gr->send_id);
	gr->send_id = send_id;
	group_rekey(rt, gr, recv_id);
	if ((rc = hw_rgroup_resume(gr->g, send_id, recv_id)))
		hw_rgroup_abort(gr->g, rc);
}

static void group_closed(struct hw_rgroup *g, int reason, void *ud)
{
	struct group *gr = ud;
	struct hw_routing *rt = gr->rt;
	struct client *c = gr->client;
	const char *why = hw_rgroup_why(g);

	hw_log(reason ? HW_LOG_WARN : HW_LOG_INFO, LOG,
	       "route group closed%s%s", reason ? ": " : "",
	       reason ? why : "");
	for (struct dial *d = rt->dials; d; d = d->next)
		if (d->resume == gr)
			d->resume = NULL;
	hw_htab_remove(&rt->groups, &gr->node);
	if (!rt->closing) {
		if (gr->recv_id)
			hw_router_remove(rt->router, gr->recv_id);
		if (gr->send_id)
			hw_router_remove(rt->router, gr->send_id);
	}
	if (c) {
		c->grp = NULL;
		hw_streams_closed(c, g, reason, why);
	}
	if (gr->eops && gr->eops->closed)
		gr->eops->closed(gr->eud, reason, reason ? why : "closed");
	free(gr->hops);
	free(gr);
	hw_routing_unref(rt);
}

static const struct hw_rgroup_ops group_ops = {
	.ready = group_ready,
	.data = group_data,
	.writable = group_writable,
	.closed = group_closed,
	.broken = group_broken,
};

int hw_routing_group_start(struct hw_routing *rt, const struct hw_route_desc *d,
			   int initiator, uint32_t send_id, uint32_t recv_id,
			   struct client *c,
			   const struct hw_route_end_ops *eops, void *eud)
{
	struct hw_rgroup_params p;
	struct group *gr = calloc(1, sizeof(*gr));
	int rc;

	if (!gr)
		return -ENOMEM;
	memset(&p, 0, sizeof(p));
	p.loop = rt->loop;
	p.router = rt->router;
	p.id = rt->id;
	p.x_priv = rt->x_priv;
	p.desc = *d;
	p.initiator = initiator;
	p.send_id = send_id;
	p.recv_id = recv_id;
	p.keepalive_ms = rt->keepalive_ms;
	p.heal_ms = rt->heal_ms;
	p.ops = &group_ops;
	p.ud = gr;
	gr->rt = rt;
	gr->recv_id = recv_id;
	gr->send_id = send_id;
	gr->client = c;
	gr->eops = eops;
	gr->eud = eud;
	gr->node.h = id_hash(recv_id);
	if ((rc = hw_rgroup_new(&gr->g, &p))) {
		free(gr);
		return rc;
	}
	hw_htab_insert(&rt->groups, &gr->node);
	rt->handles++; /* the group's closed callback still reaches rt */
	if (c)
		c->grp = gr;
	return 0;
}

/* ---- route ends for other modules ---- */

void hw_routing_set_incoming(struct hw_routing *rt, hw_routing_incoming_fn fn,
			     void *hook_ud)
{
	rt->incoming = fn;
	rt->incoming_ud = hook_ud;
}

int hw_routing_dial(struct hw_routing *rt, const uint8_t pk[HW_PK_LEN],
		    uint16_t port, uint16_t src_port,
		    const struct hw_route_end_ops *ops, void *ud, char *err,
		    size_t errlen)
{
	if (rt->closing) {
		snprintf(err, errlen, "the visor is stopping");
		return -ECANCELED;
	}
	return hw_routing_dial_start(rt, NULL, ops, ud, pk, port, src_port,
				     NULL, 0, err, errlen);
}

void hw_routing_dial_cancel(struct hw_routing *rt, void *ud)
{
	for (struct dial *d = rt->dials; d; d = d->next)
		if (d->eops && d->eud == ud) {
			d->eops = NULL;
			hw_routing_dial_free(d);
			return;
		}
	/* Built already: the group is in its handshake. */
	for (size_t b = 0; b < rt->groups.nb; b++)
		for (struct hw_hnode *x = rt->groups.b[b]; x; x = x->next) {
			struct group *gr = (struct group *)x;
			if (gr->eops && gr->eud == ud) {
				hw_route_end_close((struct hw_route_end *)gr);
				return;
			}
		}
}

int hw_route_end_write(struct hw_route_end *e, const uint8_t *p, size_t len)
{
	return hw_rgroup_write(((struct group *)e)->g, p, len);
}

void hw_route_end_consumed(struct hw_route_end *e, size_t n)
{
	hw_rgroup_consumed(((struct group *)e)->g, n);
}

const struct hw_route_desc *hw_route_end_desc(const struct hw_route_end *e)
{
	return hw_rgroup_desc(((const struct group *)e)->g);
}

int hw_route_end_pipe(struct hw_route_end *e, int fd)
{
	struct group *gr = (struct group *)e;

	if (gr->client)
		return HW_ESTATE;
	return hw_streams_open_fd(gr->rt, gr, fd);
}

void hw_route_end_close(struct hw_route_end *e)
{
	struct group *gr = (struct group *)e;

	gr->eops = NULL;
	if (gr->client)
		hw_streams_client_close(gr->client); /* closes the group too */
	else
		hw_rgroup_close(gr->g);
}

void hw_routing_group_set_hops(struct group *gr,
			       const struct hw_setup_hop *hops, unsigned n)
{
	struct hw_setup_hop *h = n ? realloc(gr->hops, n * sizeof(*h)) : NULL;

	if (!h) {
		free(gr->hops);
		gr->hops = NULL;
		gr->nhops = 0;
		return;
	}
	memcpy(h, hops, n * sizeof(*h));
	gr->hops = h;
	gr->nhops = n;
}
