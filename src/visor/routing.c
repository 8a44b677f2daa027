#include "visor/routing.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "discovery/client.h"
#include "router/rgroup.h"
#include "router/router.h"
#include "router/setup_msg.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/htab.h"
#include "util/log.h"
#include "visor/visor_priv.h"

#define LOG "routing"
#define LINE_MAX_LEN 1024
/* How long a dial may take: paths from discovery, a transport to the
 * setup node, the build and the end-to-end handshake. */
#define DIAL_TIMEOUT_MS 30000
/* Bytes a stream client may have unread before its group is dropped. The
 * group's credit (HW_RGROUP_WINDOW) keeps a well-behaved sender below it;
 * this only bounds one that ignores credit. */
#define CLIENT_MAX_QUEUED (2 * HW_RGROUP_WINDOW + (1u << 20))
/* Local ports of dialing ends come from here up. */
#define EPHEMERAL_FIRST 49152
/* Stream socket connections at once (the socket is the owner's only). */
#define MAX_CLIENTS 16384
/* The most a throughput test sends (1 TiB). */
#define TEST_MAX_BYTES (1ll << 40)

enum client_state { C_LINE, C_LISTEN, C_DIAL, C_PIPE, C_DONE };

struct group;

/* A connection to the stream socket. */
struct client {
	uv_pipe_t pipe;
	struct client *next; /* rt->clients */
	struct hw_routing *rt;
	enum client_state state;
	char *line; /* the request line (LINE_MAX_LEN), until it is read */
	size_t linelen;
	struct group *grp;
	uv_shutdown_t shutdown_req;
	uint16_t port;      /* listen */
	size_t queued;      /* bytes written to it, not yet taken */
	uint8_t *pend;      /* read from it, refused by a full group */
	size_t pend_len;
	int read_stopped;
	int closing;
	/* A throughput test (docs/api.md): the visor itself discards what
	 * the group brings (listen with "discard"), or sends send_total
	 * bytes of zeros into it and closes it (dial with "send"); the
	 * connection only carries the answer lines. */
	int discard;
	uint64_t send_total, send_left;
	uint64_t test_bytes;
	uint64_t test_t0; /* uv_hrtime of the first byte (discard) or of
			     ready (send); 0 before */
};

/* A route group at this visor. */
struct group {
	struct hw_hnode node; /* rt->groups, by recv_id */
	struct hw_routing *rt;
	struct hw_rgroup *g;
	uint32_t recv_id, send_id;
	struct client *client;
	/* A route end driven by another module (hw_route_end_*). */
	const struct hw_route_end_ops *eops;
	void *eud;
};

/* A dial under way (this visor is the source). */
struct dial {
	struct dial *next;
	struct hw_routing *rt;
	struct client *client;
	const struct hw_route_end_ops *eops; /* or a route end's */
	void *eud;
	struct hw_setup_msg build; /* filled as paths arrive */
	uint8_t via[HW_SETUP_HOPS_MAX][HW_PK_LEN];
	unsigned nvia;
	uint32_t req;
	uint8_t setup_pk[HW_PK_LEN];
	uv_timer_t timer;
	int stage; /* 0 paths, 1 setup transport, 2 built, 3 handshake */
	int done;         /* finished: callbacks still due only free it */
	int waiting;      /* callbacks of other modules still due */
	int timer_closed;
};

struct hw_routing {
	struct hw_visor *v;
	struct hw_router *router;
	struct hw_htab groups;
	struct dial *dials;
	struct client *clients;
	uv_pipe_t server;
	char sock_path[PATH_MAX + 16];
	int listening;
	uint32_t next_req;
	uint16_t next_port;
	unsigned nclients;
	uint32_t keepalive_ms;
	uint64_t setup_refused, setup_bad, unknown_group;
	FILE *tap; /* routing.tap_file */
	hw_routing_incoming_fn incoming;
	void *incoming_ud;
	int closing;
	int handles; /* open handles; freed at zero after hw_routing_free */
};

static void client_close(struct client *c);
static void client_reply(struct client *c, json_t *o);
static void client_read_start(struct client *c);
static void dial_fail(struct dial *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static uint64_t id_hash(uint32_t id)
{
	return (uint64_t)id * 0x9e3779b97f4a7c15ull;
}

static struct group *group_find(struct hw_routing *rt, uint32_t recv_id)
{
	uint64_t h = id_hash(recv_id);
	for (struct hw_hnode *x = hw_htab_bucket(&rt->groups, h); x;
	     x = x->next)
		if (x->h == h && ((struct group *)x)->recv_id == recv_id)
			return (struct group *)x;
	return NULL;
}

static void handle_unref(struct hw_routing *rt)
{
	if (--rt->handles == 0) {
		hw_htab_free(&rt->groups);
		free(rt);
	}
}

/* ---- route groups and their stream clients ---- */

/* Sends the rest of a throughput test's zeros, as far as the group takes
 * them, then closes the group: its closed callback reports. */
static void test_send(struct client *c)
{
	static const uint8_t zeros[HW_RGROUP_MAX_PLAINTEXT];

	while (c->send_left > 0 && c->grp) {
		/* No more than the group sends at once: it never copies. */
		size_t n = hw_rgroup_room(c->grp->g);
		int rc;

		if (n == 0)
			return; /* group_writable goes on */
		if (n > sizeof(zeros))
			n = sizeof(zeros);
		if (n > c->send_left)
			n = (size_t)c->send_left;
		if ((rc = hw_rgroup_write(c->grp->g, zeros, n)))
			return; /* the group ended: group_closed reports */
		c->send_left -= n;
		c->test_bytes += n;
	}
	if (c->grp)
		hw_rgroup_close(c->grp->g);
}

/* The answer line of a throughput test whose group ended. */
static void test_report(struct client *c, int reason)
{
	double s = c->test_t0 ? (double)(uv_hrtime() - c->test_t0) / 1e9 : 0;
	char msg[200];
	json_t *o;

	if (reason || (c->send_total && c->test_bytes < c->send_total)) {
		snprintf(msg, sizeof(msg), "route group ended after %llu "
			 "bytes: %s", (unsigned long long)c->test_bytes,
			 reason ? hw_strerror(reason) : "closed early");
		o = json_pack("{s:s}", "error", msg);
	} else {
		o = json_pack("{s:b, s:I, s:f, s:f}", "ok", 1,
			      c->send_total ? "sent" : "received",
			      (json_int_t)c->test_bytes, "seconds", s,
			      "mbytes_per_s",
			      s > 0 ? (double)c->test_bytes / s / 1e6 : 0.0);
	}
	client_reply(c, o);
	json_decref(o);
}

static void group_ready(struct hw_rgroup *g, void *ud)
{
	struct group *gr = ud;
	struct client *c = gr->client;
	const struct hw_route_desc *d = hw_rgroup_desc(g);
	char src[HW_PK_HEXLEN + 1], dst[HW_PK_HEXLEN + 1], peer[96];
	int source = !memcmp(d->src_pk, gr->rt->v->id.pk, HW_PK_LEN);

	hw_pk_format(d->src_pk, src);
	hw_pk_format(d->dst_pk, dst);
	hw_log(HW_LOG_INFO, LOG, "route group %s:%u -> %s:%u ready", src,
	       d->src_port, dst, d->dst_port);
	if (!c) {
		if (gr->eops && gr->eops->ready)
			gr->eops->ready(gr->eud, (struct hw_route_end *)gr);
		return;
	}
	if (source)
		snprintf(peer, sizeof(peer), "%s:%u", dst, d->dst_port);
	else
		snprintf(peer, sizeof(peer), "%s:%u", src, d->src_port);
	json_t *o = json_pack("{s:b, s:s}", "ok", 1, source ? "connected"
							    : "accepted",
			      peer);
	client_reply(c, o);
	json_decref(o);
	c->state = C_PIPE;
	if (c->send_total) {
		c->test_t0 = uv_hrtime();
		test_send(c);
	}
}

/* A write to a stream client: the request, then the byte count and
 * whether they are group data (whose credit goes back to the sender once
 * the client took them), then the bytes. */
struct cwrite {
	uv_write_t req;
	size_t n;
	int data;
	uint8_t bytes[];
};

static void on_client_write(uv_write_t *w, int status)
{
	struct cwrite *cw = (struct cwrite *)w;
	struct client *c = w->data;

	c->queued -= cw->n;
	if (cw->data && status == 0 && c->grp)
		hw_rgroup_consumed(c->grp->g, cw->n);
	free(cw);
}

static void client_write(struct client *c, const uint8_t *p, size_t len,
			 int data)
{
	struct cwrite *cw;
	uv_buf_t b;

	if (c->closing)
		return;
	if (c->queued == 0) {
		/* Nothing waits before these bytes: hand them to the kernel
		 * straight away, and copy only what it does not take. */
		int n;

		b = uv_buf_init((char *)p, (unsigned)len);
		n = uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
		if (n > 0) {
			if (data && c->grp)
				hw_rgroup_consumed(c->grp->g, (size_t)n);
			p += n;
			len -= (size_t)n;
			if (len == 0 || c->closing)
				return;
		}
	}
	if (!(cw = malloc(sizeof(*cw) + len))) {
		client_close(c);
		return;
	}
	cw->n = len;
	cw->data = data;
	memcpy(cw->bytes, p, len);
	b = uv_buf_init((char *)cw->bytes, (unsigned)len);
	cw->req.data = c;
	if (uv_write(&cw->req, (uv_stream_t *)&c->pipe, &b, 1,
		     on_client_write)) {
		free(cw);
		client_close(c);
		return;
	}
	c->queued += len;
}

static void client_send(struct client *c, const uint8_t *p, size_t len)
{
	client_write(c, p, len, 0);
}

static void group_data(struct hw_rgroup *g, const uint8_t *p, size_t len,
		       void *ud)
{
	struct group *gr = ud;
	struct client *c = gr->client;

	if (!c) {
		if (gr->eops && gr->eops->data)
			gr->eops->data(gr->eud, p, len);
		return;
	}
	if (c->discard) {
		if (!c->test_t0)
			c->test_t0 = uv_hrtime();
		c->test_bytes += len;
		hw_rgroup_consumed(g, len);
		return;
	}
	if (c->queued + len > CLIENT_MAX_QUEUED) {
		hw_log(HW_LOG_WARN, LOG, "stream client not reading: dropping "
		       "its route group");
		hw_rgroup_abort(g, -ENOBUFS);
		return;
	}
	client_write(c, p, len, 1);
}

static void on_client_shutdown(uv_shutdown_t *req, int status)
{
	client_close(req->data);
}

/* The group is gone: close c once what was written to it has been taken,
 * so the far end's last bytes are not lost. */
static void client_finish(struct client *c)
{
	if (c->closing)
		return;
	c->state = C_DONE;
	if (c->queued && !c->grp) {
		c->shutdown_req.data = c;
		uv_read_stop((uv_stream_t *)&c->pipe);
		if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->pipe,
				on_client_shutdown) == 0)
			return;
	}
	client_close(c);
}

static void group_writable(struct hw_rgroup *g, void *ud)
{
	struct group *gr = ud;
	struct client *c = gr->client;
	int rc;

	if (!c && gr->eops && gr->eops->writable)
		gr->eops->writable(gr->eud);
	if (c && c->send_total) {
		test_send(c);
		return;
	}
	if (!c || !c->read_stopped)
		return;
	if (c->pend) {
		rc = hw_rgroup_write(g, c->pend, c->pend_len);
		if (rc == -ENOBUFS)
			return;
		free(c->pend);
		c->pend = NULL;
		if (rc) {
			client_close(c);
			return;
		}
	}
	c->read_stopped = 0;
	client_read_start(c);
}

static void group_closed(struct hw_rgroup *g, int reason, void *ud)
{
	struct group *gr = ud;
	struct hw_routing *rt = gr->rt;
	struct client *c = gr->client;

	hw_log(reason ? HW_LOG_WARN : HW_LOG_INFO, LOG,
	       "route group closed%s%s", reason ? ": " : "",
	       reason ? hw_strerror(reason) : "");
	hw_htab_remove(&rt->groups, &gr->node);
	if (!rt->closing) {
		hw_router_remove(rt->router, gr->recv_id);
		hw_router_remove(rt->router, gr->send_id);
	}
	if (c) {
		c->grp = NULL;
		if (c->state != C_PIPE) {
			json_t *o = json_pack("{s:s}", "error",
					      reason ? hw_strerror(reason)
						     : "closed");
			client_reply(c, o);
			json_decref(o);
		} else if (c->discard || c->send_total) {
			test_report(c, reason);
		}
		client_finish(c);
	}
	if (gr->eops && gr->eops->closed)
		gr->eops->closed(gr->eud, reason,
				 reason ? hw_strerror(reason) : "closed");
	free(gr);
	handle_unref(rt);
}

static const struct hw_rgroup_ops group_ops = {
	.ready = group_ready,
	.data = group_data,
	.writable = group_writable,
	.closed = group_closed,
};

static int group_start(struct hw_routing *rt, const struct hw_route_desc *d,
		       int initiator, uint32_t send_id, uint32_t recv_id,
		       struct client *c, const struct hw_route_end_ops *eops,
		       void *eud)
{
	struct hw_rgroup_params p;
	struct group *gr = calloc(1, sizeof(*gr));
	int rc;

	if (!gr)
		return -ENOMEM;
	memset(&p, 0, sizeof(p));
	p.loop = rt->v->loop;
	p.router = rt->router;
	p.id = &rt->v->id;
	p.x_priv = rt->v->x_priv;
	p.desc = *d;
	p.initiator = initiator;
	p.send_id = send_id;
	p.recv_id = recv_id;
	p.keepalive_ms = rt->keepalive_ms;
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

/* ---- the router's callbacks ---- */

static void on_deliver(struct hw_router *r, uint32_t rule_id,
		       const struct hw_packet *pkt, void *ud)
{
	struct hw_routing *rt = ud;
	struct group *gr = group_find(rt, rule_id);

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

	if (rule->kind == HW_RULE_CONSUME) {
		gr = group_find(rt, rule->id);
	} else if (rule->kind == HW_RULE_FORWARD) {
		/* Rare (a rule expired or its transport left): a scan. */
		for (size_t b = 0; !gr && b < rt->groups.nb; b++)
			for (struct hw_hnode *x = rt->groups.b[b]; x;
			     x = x->next)
				if (((struct group *)x)->send_id == rule->id)
					gr = (struct group *)x;
	}
	if (gr)
		hw_rgroup_abort(gr->g, reason);
}

/* ---- answering setup nodes ---- */

static int trusted(const struct hw_routing *rt, const uint8_t pk[HW_PK_LEN])
{
	const struct hw_config *cfg = &rt->v->cfg;
	for (unsigned i = 0; i < cfg->nsetup_nodes; i++)
		if (!memcmp(cfg->setup_nodes[i], pk, HW_PK_LEN))
			return 1;
	return 0;
}

static void on_reserve(struct hw_routing *rt, struct hw_tp *tp,
		       const struct hw_setup_msg *m)
{
	struct hw_setup_msg a;
	int rc;

	memset(&a, 0, sizeof(a));
	a.type = HW_SETUP_RESERVED;
	a.req = m->req;
	rc = hw_router_reserve(rt->router, m->u.reserve.count,
			       a.u.reserved.ids);
	if (rc) {
		a.u.reserved.status = HW_SETUP_LIMIT;
	} else {
		a.u.reserved.status = HW_SETUP_OK;
		a.u.reserved.count = m->u.reserve.count;
	}
	hw_setup_msg_send(tp, &a);
}

static void on_add_rules(struct hw_routing *rt, struct hw_tp *tp,
			 const struct hw_setup_msg *m)
{
	unsigned i;
	int rc = 0;
	char text[HW_SETUP_TEXT_MAX + 1];

	for (i = 0; i < m->u.add_rules.count; i++)
		if ((rc = hw_router_add(rt->router, &m->u.add_rules.rules[i])))
			break;
	if (rc == 0) {
		hw_setup_result_send(tp, m->req, HW_SETUP_OK, "");
		return;
	}
	/* All or nothing: what this message installed goes again. */
	snprintf(text, sizeof(text), "rule %u (id %u): %s", i,
		 m->u.add_rules.rules[i].id,
		 rc == -ENOTCONN ? "no such transport here"
		 : rc == -ENOENT ? "route ID not reserved"
				 : hw_strerror(rc));
	while (i-- > 0)
		hw_router_remove(rt->router, m->u.add_rules.rules[i].id);
	hw_setup_result_send(tp, m->req,
		    rc == -ENOTCONN ? HW_SETUP_NO_TP : HW_SETUP_REFUSED, text);
}

static void on_del_rules(struct hw_routing *rt, struct hw_tp *tp,
			 const struct hw_setup_msg *m)
{
	for (unsigned i = 0; i < m->u.del_rules.count; i++) {
		struct group *gr = group_find(rt, m->u.del_rules.ids[i]);
		if (gr)
			hw_rgroup_abort(gr->g, -ECONNRESET);
		hw_router_remove(rt->router, m->u.del_rules.ids[i]);
	}
	hw_setup_result_send(tp, m->req, HW_SETUP_OK, "");
}

static struct client *take_listener(struct hw_routing *rt, uint16_t port);

static void on_incoming(struct hw_routing *rt, struct hw_tp *tp,
			const struct hw_setup_msg *m)
{
	const struct hw_route_desc *d = &m->u.incoming.desc;
	const struct hw_route_end_ops *eops = NULL;
	struct client *c;
	void *eud = NULL;
	char text[HW_SETUP_TEXT_MAX];
	int rc;

	if (memcmp(d->dst_pk, rt->v->id.pk, HW_PK_LEN)) {
		hw_setup_result_send(tp, m->req, HW_SETUP_REFUSED,
			    "this visor is not the destination");
		return;
	}
	text[0] = 0;
	rc = rt->incoming ? rt->incoming(rt->incoming_ud, d, &eops, &eud, text,
					 sizeof(text))
			  : -ENOENT;
	if (rc == 0) {
		rc = group_start(rt, d, 0, m->u.incoming.rev_send_id,
				 m->u.incoming.fwd_recv_id, NULL, eops, eud);
		if (rc && eops->closed)
			eops->closed(eud, rc, hw_strerror(rc));
		hw_setup_result_send(tp, m->req, rc ? HW_SETUP_INTERNAL
						    : HW_SETUP_OK,
				     rc ? hw_strerror(rc) : "");
		return;
	}
	if (rc != -ENOENT) {
		hw_setup_result_send(tp, m->req, HW_SETUP_REFUSED, text);
		return;
	}
	if (!(c = take_listener(rt, d->dst_port))) {
		snprintf(text, sizeof(text), "nothing listens on port %u",
			 d->dst_port);
		hw_setup_result_send(tp, m->req, HW_SETUP_REFUSED, text);
		return;
	}
	rc = group_start(rt, d, 0, m->u.incoming.rev_send_id,
			 m->u.incoming.fwd_recv_id, c, NULL, NULL);
	if (rc) {
		c->state = C_LISTEN; /* still listening */
		hw_setup_result_send(tp, m->req, HW_SETUP_INTERNAL, hw_strerror(rc));
		return;
	}
	hw_setup_result_send(tp, m->req, HW_SETUP_OK, "");
}

static void on_built(struct hw_routing *rt, struct hw_tp *tp,
		     const struct hw_setup_msg *m);

static void on_setup(struct hw_routing *rt, struct hw_tp *tp,
		     const struct hw_packet *pkt)
{
	const uint8_t *from = hw_tp_pk(tp);
	char pk[HW_PK_HEXLEN + 1];
	struct hw_setup_msg m;

	if (hw_setup_msg_decode(pkt->payload, pkt->len, &m)) {
		rt->setup_bad++;
		if (pkt->len >= HW_SETUP_HDR && m.type != HW_SETUP_RESULT &&
		    m.type != HW_SETUP_RESERVED && m.type != HW_SETUP_BUILT)
			hw_setup_result_send(tp, m.req, HW_SETUP_REFUSED, "bad request");
		return;
	}
	if (m.type == HW_SETUP_BUILT) {
		on_built(rt, tp, &m);
		return;
	}
	if (m.type == HW_SETUP_BUILD) {
		hw_setup_result_send(tp, m.req, HW_SETUP_REFUSED,
			    "this visor is not a setup node");
		return;
	}
	if (m.type == HW_SETUP_RESULT || m.type == HW_SETUP_RESERVED) {
		rt->setup_bad++; /* answers to nothing we asked */
		return;
	}
	if (!trusted(rt, from)) {
		rt->setup_refused++;
		hw_pk_format(from, pk);
		hw_log(HW_LOG_WARN, LOG, "refused %s from %s: not a trusted "
		       "setup node (routing.setup_nodes)",
		       hw_setup_msg_name(m.type), pk);
		hw_setup_result_send(tp, m.req, HW_SETUP_REFUSED,
			    "not a trusted setup node");
		return;
	}
	switch (m.type) {
	case HW_SETUP_RESERVE: on_reserve(rt, tp, &m); break;
	case HW_SETUP_ADD_RULES: on_add_rules(rt, tp, &m); break;
	case HW_SETUP_DEL_RULES: on_del_rules(rt, tp, &m); break;
	case HW_SETUP_INCOMING: on_incoming(rt, tp, &m); break;
	}
}

void hw_routing_on_packet(struct hw_routing *rt, struct hw_tp *tp,
			  const struct hw_packet *pkt)
{
	if (!rt || rt->closing)
		return;
	if (pkt->type == HW_PKT_SETUP) {
		/* Setup messages belong to the transport (route 0). */
		if (pkt->route_id == 0)
			on_setup(rt, tp, pkt);
		else
			rt->setup_bad++;
		return;
	}
	if (rt->tap) {
		const struct hw_rule *r = hw_router_find(rt->router,
							 pkt->route_id);
		if (r && r->kind == HW_RULE_INTERMEDIARY) {
			fwrite(pkt->payload, 1, pkt->len, rt->tap);
			fflush(rt->tap);
		}
	}
	hw_router_on_packet(rt->router, tp, pkt);
}

void hw_routing_tp_event(struct hw_routing *rt, struct hw_tp *tp,
			 enum hw_tp_event ev)
{
	if (rt && !rt->closing && ev == HW_TP_REMOVED)
		hw_router_tp_removed(rt->router, tp);
}

void hw_routing_tp_room(struct hw_routing *rt, struct hw_tp *tp)
{
	if (rt && !rt->closing)
		hw_router_tp_room(rt->router, tp);
}

/* ---- dialing: paths, the setup node, BUILD ---- */

static void dial_timer_closed(uv_handle_t *h)
{
	struct dial *d = h->data;
	d->timer_closed = 1;
	if (!d->waiting)
		free(d);
}

static void dial_free(struct dial *d)
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

static void dial_fail(struct dial *d, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hw_log(HW_LOG_WARN, LOG, "dial failed: %s", msg);
	if (d->eops) {
		const struct hw_route_end_ops *ops = d->eops;
		void *eud = d->eud;
		d->eops = NULL;
		dial_free(d);
		ops->closed(eud, -EHOSTUNREACH, msg);
		return;
	}
	if (d->client) {
		json_t *o = json_pack("{s:s}", "error", msg);
		client_reply(d->client, o);
		json_decref(o);
		client_close(d->client);
		d->client = NULL;
	}
	dial_free(d);
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
	if (hw_tp_manager_add(d->rt->v->tpm, d->setup_pk, type, addr, 0,
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
	memcpy(d->setup_pk, rt->v->cfg.setup_nodes[0], HW_PK_LEN);
	tp = hw_tp_manager_find(rt->v->tpm, d->setup_pk, NULL);
	if (tp && hw_tp_is_up(tp)) {
		send_build(d, tp);
		return;
	}
	d->waiting++;
	if ((rc = hw_presence_resolve(rt->v->presence, d->setup_pk, NULL,
				      setup_resolved, d))) {
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
		dial_fail(d, "discovery knows no path to the peer%s",
			  d->nvia ? " through the hops given" : "");
		return;
	}
	reverse_of(&d->build);
	hw_log(HW_LOG_DEBUG, LOG, "dial: %u-hop path from discovery",
	       d->build.u.build.fwd_n);
	to_setup_node(d);
}

static void on_built(struct hw_routing *rt, struct hw_tp *tp,
		     const struct hw_setup_msg *m)
{
	struct dial *d;
	int rc;

	for (d = rt->dials; d; d = d->next)
		if (d->stage == 2 && d->req == m->req &&
		    !memcmp(hw_tp_pk(tp), d->setup_pk, HW_PK_LEN))
			break;
	if (!d) {
		rt->setup_bad++;
		return;
	}
	if (m->u.built.status != HW_SETUP_OK) {
		dial_fail(d, "setup node: %s: %s",
			  hw_setup_status_name(m->u.built.status),
			  m->u.built.text);
		return;
	}
	d->stage = 3;
	hw_log(HW_LOG_DEBUG, LOG, "dial: built; starting the handshake");
	rc = group_start(rt, &d->build.u.build.desc, 1,
			 m->u.built.fwd_send_id, m->u.built.rev_recv_id,
			 d->client, d->eops, d->eud);
	if (rc) {
		dial_fail(d, "route group: %s", hw_strerror(rc));
		return;
	}
	/* The group answers the client from here on (ready or closed). */
	d->client = NULL;
	d->eops = NULL;
	dial_free(d);
}

static int start_dial(struct hw_routing *rt, struct client *c,
		      const struct hw_route_end_ops *eops, void *eud,
		      const uint8_t pk[HW_PK_LEN], uint16_t port,
		      uint16_t src_port, json_t *via, char *err, size_t errlen)
{
	struct hw_disc_client *dc = hw_presence_discovery(rt->v->presence);
	char path[512], me[HW_PK_HEXLEN + 1], them[HW_PK_HEXLEN + 1];
	struct hw_route_desc *desc;
	struct dial *d;
	json_t *e;
	size_t i;
	int rc;

	if (!rt->v->cfg.nsetup_nodes) {
		snprintf(err, errlen, "no setup node configured "
			 "(routing.setup_nodes)");
		return -EINVAL;
	}
	if (!dc) {
		snprintf(err, errlen, "no discovery to find paths "
			 "(discovery.url)");
		return -EINVAL;
	}
	if (!memcmp(pk, rt->v->id.pk, HW_PK_LEN)) {
		snprintf(err, errlen, "that is this visor's own key");
		return -EINVAL;
	}
	if (json_array_size(via) >= HW_SETUP_HOPS_MAX) {
		snprintf(err, errlen, "via: at most %d hops",
			 HW_SETUP_HOPS_MAX - 1);
		return -EINVAL;
	}
	if (!(d = calloc(1, sizeof(*d))))
		return -ENOMEM;
	json_array_foreach(via, i, e) {
		const char *s = json_string_value(e);
		if (!s || hw_pk_parse(s, strlen(s), d->via[i])) {
			snprintf(err, errlen, "via[%zu]: not a public key", i);
			free(d);
			return -EINVAL;
		}
		d->nvia++;
	}
	d->rt = rt;
	d->client = c;
	d->eops = eops;
	d->eud = eud;
	d->build.type = HW_SETUP_BUILD;
	desc = &d->build.u.build.desc;
	memcpy(desc->src_pk, rt->v->id.pk, HW_PK_LEN);
	memcpy(desc->dst_pk, pk, HW_PK_LEN);
	desc->dst_port = port;
	desc->src_port = src_port;
	d->build.u.build.keepalive_ms = rt->keepalive_ms;
	uv_timer_init(rt->v->loop, &d->timer);
	d->timer.data = d;
	uv_timer_start(&d->timer, on_dial_timeout, DIAL_TIMEOUT_MS, 0);
	d->next = rt->dials;
	rt->dials = d;
	hw_pk_format(rt->v->id.pk, me);
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
		dial_free(d);
		snprintf(err, errlen, "discovery: %s", hw_strerror(rc));
		return rc;
	}
	return 0;
}

uint16_t hw_routing_ephemeral_port(struct hw_routing *rt)
{
	uint16_t p = rt->next_port++;
	if (rt->next_port < EPHEMERAL_FIRST)
		rt->next_port = EPHEMERAL_FIRST;
	return p;
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
	return start_dial(rt, NULL, ops, ud, pk, port, src_port, NULL, err,
			  errlen);
}

void hw_routing_dial_cancel(struct hw_routing *rt, void *ud)
{
	for (struct dial *d = rt->dials; d; d = d->next)
		if (d->eops && d->eud == ud) {
			d->eops = NULL;
			dial_free(d);
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

static void on_client_closed(uv_handle_t *h);

int hw_route_end_pipe(struct hw_route_end *e, int fd)
{
	struct group *gr = (struct group *)e;
	struct hw_routing *rt = gr->rt;
	struct client *c;
	int rc;

	if (gr->client)
		return HW_ESTATE;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	if ((rc = uv_pipe_init(rt->v->loop, &c->pipe, 0))) {
		free(c);
		return rc;
	}
	c->pipe.data = c;
	c->rt = rt;
	rt->handles++;
	rt->nclients++;
	if ((rc = uv_pipe_open(&c->pipe, fd))) {
		c->closing = 1;
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
		return rc;
	}
	c->next = rt->clients;
	rt->clients = c;
	c->state = C_PIPE;
	c->grp = gr;
	gr->client = c;
	client_read_start(c);
	return 0;
}

void hw_route_end_close(struct hw_route_end *e)
{
	struct group *gr = (struct group *)e;

	gr->eops = NULL;
	if (gr->client)
		client_close(gr->client); /* closes the group too */
	else
		hw_rgroup_close(gr->g);
}

/* ---- the stream socket ---- */

static void on_client_closed(uv_handle_t *h)
{
	struct client *c = h->data;
	struct hw_routing *rt = c->rt;

	for (struct client **pp = &rt->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	rt->nclients--;
	free(c->pend);
	free(c->line);
	free(c);
	handle_unref(rt);
}

static void client_close(struct client *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->state = C_DONE;
	if (c->grp) {
		struct group *gr = c->grp;
		gr->client = NULL;
		c->grp = NULL;
		hw_rgroup_close(gr->g);
	}
	for (struct dial *d = c->rt->dials; d; d = d->next)
		if (d->client == c)
			d->client = NULL;
	uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

static void client_reply(struct client *c, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	if (s) {
		size_t n = strlen(s);
		s[n] = '\n';
		client_send(c, (uint8_t *)s, n + 1);
		free(s);
	}
}

static void reply_error(struct client *c, const char *msg)
{
	json_t *o = json_pack("{s:s}", "error", msg);
	client_reply(c, o);
	json_decref(o);
	client_close(c);
}

static struct client *take_listener(struct hw_routing *rt, uint16_t port)
{
	for (struct client *c = rt->clients; c; c = c->next)
		if (c->state == C_LISTEN && c->port == port && !c->grp)
			return c;
	return NULL;
}

static int port_listened(struct hw_routing *rt, uint16_t port)
{
	for (struct client *c = rt->clients; c; c = c->next)
		if (c->state == C_LISTEN && c->port == port)
			return 1;
	return 0;
}

static int get_port(json_t *req, const char *key, uint16_t *port)
{
	json_t *p = json_object_get(req, key);
	if (!json_is_integer(p) || json_integer_value(p) < 1 ||
	    json_integer_value(p) > 65535)
		return -1;
	*port = (uint16_t)json_integer_value(p);
	return 0;
}

/* The request line of a client. */
static void client_request(struct client *c)
{
	struct hw_routing *rt = c->rt;
	json_error_t jerr;
	json_t *req = json_loadb(c->line, c->linelen, 0, &jerr);
	const char *op = json_string_value(json_object_get(req, "op"));
	char err[300];
	uint16_t port;

	if (!req || !op) {
		reply_error(c, "expected one line of JSON with \"op\"");
		goto out;
	}
	if (!strcmp(op, "listen")) {
		if (get_port(req, "port", &port)) {
			reply_error(c, "port: must be 1..65535");
			goto out;
		}
		if (port_listened(rt, port)) {
			reply_error(c, "something already listens on that "
				    "port");
			goto out;
		}
		json_t *dis = json_object_get(req, "discard");
		if (dis && !json_is_boolean(dis)) {
			reply_error(c, "discard: must be true or false");
			goto out;
		}
		c->discard = json_is_true(dis);
		c->state = C_LISTEN;
		c->port = port;
		json_t *o = json_pack("{s:b, s:i}", "ok", 1, "listening",
				      (int)port);
		client_reply(c, o);
		json_decref(o);
	} else if (!strcmp(op, "dial")) {
		const char *pk = json_string_value(json_object_get(req, "pk"));
		uint8_t key[HW_PK_LEN];

		if (!pk || hw_pk_parse(pk, strlen(pk), key)) {
			reply_error(c, "pk: not a 64-character hex public key");
			goto out;
		}
		if (get_port(req, "port", &port)) {
			reply_error(c, "port: must be 1..65535");
			goto out;
		}
		json_t *snd = json_object_get(req, "send");
		if (snd && (!json_is_integer(snd) ||
			    json_integer_value(snd) < 1 ||
			    json_integer_value(snd) > TEST_MAX_BYTES)) {
			reply_error(c, "send: must be a byte count, 1..2^40");
			goto out;
		}
		c->send_total = c->send_left =
			snd ? (uint64_t)json_integer_value(snd) : 0;
		c->state = C_DIAL;
		if (start_dial(rt, c, NULL, NULL, key, port,
			       hw_routing_ephemeral_port(rt),
			       json_object_get(req, "via"), err, sizeof(err)))
			reply_error(c, err);
	} else {
		reply_error(c, "op: must be listen or dial");
	}
out:
	json_decref(req);
}

static void on_client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char buf[65536]; /* one loop thread: consumed before reuse */
	struct client *c = h->data;
	size_t len = sizeof(buf);

	/* Read no more than the group seals at once, so the bytes go from
	 * here into the seal without a copy in between; the socket's own
	 * buffer holds the rest. */
	if (c->state == C_PIPE && c->grp) {
		size_t room = hw_rgroup_room(c->grp->g);
		if (room > 0 && room < len)
			len = room;
	}
	*b = uv_buf_init(buf, (unsigned)len);
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct client *c = s->data;
	const char *p = b->base;
	int rc;

	if (n < 0) {
		client_close(c);
		return;
	}
	if (c->state == C_LINE) {
		const char *nl = memchr(p, '\n', (size_t)n);
		size_t take = nl ? (size_t)(nl - p) : (size_t)n;

		if (c->linelen + take >= LINE_MAX_LEN) {
			reply_error(c, "request line too long");
			return;
		}
		memcpy(c->line + c->linelen, p, take);
		c->linelen += take;
		if (!nl)
			return;
		client_request(c);
		if (!c->closing && take + 1 < (size_t)n)
			reply_error(c, "data before the route group is up");
		/* Held only while the request is read: a thousand open
		 * groups should not carry a kilobyte each for it. */
		free(c->line);
		c->line = NULL;
		/* Bytes after the line before the group is up are not
		 * wanted: the client waits for the answer line. */
		return;
	}
	if (c->state != C_PIPE || !c->grp) {
		if (n > 0 && c->state != C_DONE)
			reply_error(c, "data before the route group is up");
		return;
	}
	if (c->discard || c->send_total) {
		if (n > 0)
			reply_error(c, "a throughput test takes no data on "
				    "its connection");
		return;
	}
	rc = hw_rgroup_write(c->grp->g, (const uint8_t *)p, (size_t)n);
	if (rc == -ENOBUFS) {
		/* The group is full and took nothing: keep the bytes and
		 * read no more until it is writable. */
		if (!(c->pend = malloc((size_t)n))) {
			client_close(c);
			return;
		}
		memcpy(c->pend, p, (size_t)n);
		c->pend_len = (size_t)n;
		uv_read_stop(s);
		c->read_stopped = 1;
	} else if (rc) {
		client_close(c);
	} else if (hw_rgroup_room(c->grp->g) == 0) {
		/* Out of credit: wait for it rather than queue a copy. */
		uv_read_stop(s);
		c->read_stopped = 1;
	}
}

static void client_read_start(struct client *c)
{
	uv_read_start((uv_stream_t *)&c->pipe, on_client_alloc,
		      on_client_read);
}

static void on_stream_connection(uv_stream_t *server, int status)
{
	struct hw_routing *rt = server->data;
	struct client *c;

	if (status < 0 || rt->closing || !(c = calloc(1, sizeof(*c))))
		return;
	if (rt->nclients >= MAX_CLIENTS) {
		/* Accepted and closed at once, so the backlog drains. */
		hw_log(HW_LOG_WARN, LOG, "stream socket: %u connections, "
		       "refusing more", rt->nclients);
		uv_pipe_init(rt->v->loop, &c->pipe, 0);
		c->pipe.data = c;
		c->rt = rt;
		c->closing = 1;
		rt->handles++;
		rt->nclients++; /* given back when its close completes */
		uv_accept(server, (uv_stream_t *)&c->pipe);
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
		return;
	}
	if (!(c->line = malloc(LINE_MAX_LEN))) {
		free(c);
		return;
	}
	c->rt = rt;
	uv_pipe_init(rt->v->loop, &c->pipe, 0);
	c->pipe.data = c;
	rt->handles++;
	rt->nclients++;
	if (uv_accept(server, (uv_stream_t *)&c->pipe)) {
		c->closing = 1;
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
		return;
	}
	c->next = rt->clients;
	rt->clients = c;
	client_read_start(c);
}

/* ---- lifecycle and listings ---- */

json_t *hw_routing_rules_json(const struct hw_routing *rt)
{
	return hw_router_rules_json(rt->router);
}

json_t *hw_routing_groups_json(const struct hw_routing *rt)
{
	json_t *a = json_array();
	for (size_t b = 0; b < rt->groups.nb; b++)
		for (struct hw_hnode *x = rt->groups.b[b]; x; x = x->next)
			json_array_append_new(
				a, hw_rgroup_json(((struct group *)x)->g));
	return a;
}

static void on_server_closed(uv_handle_t *h)
{
	handle_unref(h->data);
}

int hw_routing_new(struct hw_routing **out, struct hw_visor *v, char *err,
		   size_t errlen)
{
	struct hw_router_params rp;
	struct hw_routing *rt = calloc(1, sizeof(*rt));
	int rc;

	*out = NULL;
	if (!rt)
		return -ENOMEM;
	rt->v = v;
	rt->handles = 1; /* released by hw_routing_free */
	rt->next_port = EPHEMERAL_FIRST + (uint16_t)randombytes_uniform(8192);
	/* Rules on a route live as long as packets (keepalives included)
	 * cross them: a few transport keepalive intervals. */
	rt->keepalive_ms = 4 * v->cfg.keepalive_ms;
	if (rt->keepalive_ms < HW_RULE_KEEPALIVE_MIN_MS)
		rt->keepalive_ms = HW_RULE_KEEPALIVE_MIN_MS;
	memset(&rp, 0, sizeof(rp));
	rp.loop = v->loop;
	rp.tpm = v->tpm;
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
	uv_pipe_init(v->loop, &rt->server, 0);
	rt->server.data = rt;
	rt->handles++;
	if (v->cfg.tap_file[0]) {
		if (!(rt->tap = fopen(v->cfg.tap_file, "ab"))) {
			rc = -errno;
			snprintf(err, errlen, "routing.tap_file %s: %s",
				 v->cfg.tap_file, strerror(errno));
			return rc;
		}
		hw_log(HW_LOG_WARN, LOG, "routing.tap_file: writing what this "
		       "visor forwards to %s", v->cfg.tap_file);
	}
	snprintf(rt->sock_path, sizeof(rt->sock_path), "%s/streams.sock",
		 v->cfg.local_dir);
	unlink(rt->sock_path);
	if ((rc = uv_pipe_bind(&rt->server, rt->sock_path)) ||
	    (rc = uv_listen((uv_stream_t *)&rt->server, 16,
			    on_stream_connection))) {
		snprintf(err, errlen, "stream socket %s: %s", rt->sock_path,
			 uv_strerror(rc));
		return rc; /* the caller frees rt */
	}
	chmod(rt->sock_path, 0600);
	rt->listening = 1;
	return 0;
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
			client_close(d->client);
			d->client = NULL;
		}
		dial_free(d);
	}
	for (struct client *c = rt->clients; c; c = c->next)
		client_close(c);
	for (size_t b = 0; b < rt->groups.nb; b++)
		for (struct hw_hnode *x = rt->groups.b[b]; x; x = x->next)
			hw_rgroup_abort(((struct group *)x)->g, -ECANCELED);
	hw_router_free(rt->router);
	if (rt->tap)
		fclose(rt->tap);
	if (rt->listening)
		unlink(rt->sock_path);
	uv_close((uv_handle_t *)&rt->server, on_server_closed);
	handle_unref(rt);
}
