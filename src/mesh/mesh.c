/* The mesh handshake, observed addresses and peer sharing (mesh.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/mesh.h"
#include "util/addr.h"
#include "util/err.h"
#include "util/log.h"

#define LOG "mesh"

/* A link's handshake, in the order the seed's steps take it. */
enum link_state {
	L_NEW,       /* responder: waiting for the initiator's INIT */
	L_WAIT,      /* initiator: INIT sent, waiting for the answer's */
	L_REPLIED,   /* responder: INIT sent back, waiting for FINAL */
	L_CONFIRMED, /* initiator: FINAL sent, waiting for FINAL */
	L_DONE,
};

static const char *const state_names[] = {"waiting", "waiting", "replied",
					  "confirmed", "done"};

struct link {
	struct link *next;
	struct hw_tp *tp;
	uint8_t pk[HW_PK_LEN];
	int initiator;
	enum link_state state;
	uint64_t since_ms;
	char said_me[HW_MESH_ADDR_MAX + 1];  /* the peer's own, as it said */
	char said_you[HW_MESH_ADDR_MAX + 1]; /* us, as the peer sees us */
	char seen[HW_MESH_ADDR_MAX + 1];     /* the peer, as we see it */
	char sent_you[HW_MESH_ADDR_MAX + 1]; /* what we told it of itself */
	/* Peers (by key) already shared with this one. */
	uint8_t (*shared)[HW_PK_LEN];
	unsigned nshared, capshared;
};

struct learned {
	uint8_t pk[HW_PK_LEN], from[HW_PK_LEN];
	char addr[HW_MESH_ADDR_MAX + 1];
};

struct hw_mesh {
	struct hw_mesh_params p;
	uint8_t self[HW_PK_LEN];
	char listen[HW_MESH_ADDR_MAX + 1];
	char me[HW_MESH_ADDR_MAX + 1]; /* tcp://LISTEN or "" */
	int wildcard;
	uint16_t port;
	char observed[HW_MESH_ADDR_MAX + 1];   /* HOST:PORT or "" */
	char advertised[HW_MESH_ADDR_MAX + 1]; /* HOST:PORT or "" */
	struct link *links;
	struct learned *learned;
	unsigned nlearned;
	uv_timer_t share;
};

static struct link *find(struct hw_mesh *m, struct hw_tp *tp)
{
	for (struct link *l = m->links; l; l = l->next)
		if (l->tp == tp)
			return l;
	return NULL;
}

static void link_free(struct link *l)
{
	free(l->shared);
	free(l);
}

static uint64_t now_ms(struct hw_mesh *m)
{
	return uv_now(m->p.loop);
}

static void send_msg(struct hw_mesh *m, struct link *l,
		     const struct hw_mesh_msg *msg)
{
	static uint8_t buf[HW_MESH_MSG_MAX];
	size_t n = hw_mesh_build(msg, buf);
	int rc;

	(void)m;
	if (!n)
		return;
	if ((rc = hw_tp_send(l->tp, HW_PKT_MESH, 0, buf, (uint16_t)n)))
		hw_log(HW_LOG_WARN, LOG, "transport %s: cannot send a mesh "
		       "message: %s", hw_tp_id_hex(l->tp), hw_strerror(rc));
}

/* "tcp://HOST:PORT" from host and port (IPv6 hosts in brackets). */
static void tcp_addr(char out[HW_MESH_ADDR_MAX + 1], const char *host,
		     uint16_t port)
{
	int v6 = strchr(host, ':') != NULL;

	if ((size_t)snprintf(out, HW_MESH_ADDR_MAX + 1, "tcp://%s%s%s:%u",
			     v6 ? "[" : "", host, v6 ? "]" : "", port) >
	    HW_MESH_ADDR_MAX)
		out[0] = '\0';
}

/* What we see of l's peer: the initiator dialed an address; a responder
 * sees the connection's source and takes the port the peer says it
 * listens on. Relay links show no address. */
static void see_peer(struct link *l)
{
	char host[HW_HOST_MAX], mh[HW_HOST_MAX];
	uint16_t port, mport;

	l->seen[0] = '\0';
	if (strcmp(hw_tp_type(l->tp), "tcp") ||
	    hw_addr_split(hw_tp_remote_addr(l->tp), host, &port))
		return;
	if (l->initiator) {
		tcp_addr(l->seen, host, port);
		return;
	}
	if (l->said_me[0] && !hw_addr_split(l->said_me + 6, mh, &mport))
		tcp_addr(l->seen, host, mport);
}

static void hello(struct hw_mesh *m, struct link *l, uint8_t state)
{
	struct hw_mesh_msg msg = {.kind = HW_MESH_HELLO, .state = state};

	memcpy(msg.me, m->me, sizeof(msg.me));
	see_peer(l);
	memcpy(msg.you, l->seen, sizeof(msg.you));
	memcpy(l->sent_you, l->seen, sizeof(l->sent_you));
	send_msg(m, l, &msg);
}

/* ---- the observed address ---- */

static int is_wildcard_host(const char *host)
{
	return !host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
}

static void set_advertised(struct hw_mesh *m)
{
	char host[HW_HOST_MAX];
	uint16_t port;

	if (!m->listen[0])
		m->advertised[0] = '\0';
	else if (!m->wildcard)
		snprintf(m->advertised, sizeof(m->advertised), "%s",
			 m->listen);
	else if (m->observed[0] &&
		 !hw_addr_split(m->observed, host, &port) &&
		 strlen(host) < HW_MESH_ADDR_MAX - 8)
		snprintf(m->advertised, sizeof(m->advertised), "%s%.*s%s:%u",
			 strchr(host, ':') ? "[" : "", HW_MESH_ADDR_MAX - 8,
			 host, strchr(host, ':') ? "]" : "", m->port);
	else
		m->advertised[0] = '\0';
}

/* The address the most finished links say we have, if HW_MESH_QUORUM
 * distinct peers say so; else the one found before stays. */
static void tally(struct hw_mesh *m)
{
	const char *best = NULL;
	unsigned best_n = 0;

	for (struct link *a = m->links; a; a = a->next) {
		unsigned n = 0;

		if (a->state != L_DONE || !a->said_you[0])
			continue;
		for (struct link *b = m->links; b; b = b->next)
			if (b->state == L_DONE &&
			    !strcmp(a->said_you, b->said_you) &&
			    (b == a || memcmp(a->pk, b->pk, HW_PK_LEN)))
				n++;
		if (n > best_n) {
			best = a->said_you;
			best_n = n;
		}
	}
	if (!best || best_n < HW_MESH_QUORUM || !strcmp(best + 6,
							 m->observed))
		return;
	snprintf(m->observed, sizeof(m->observed), "%s", best + 6);
	set_advertised(m);
	hw_log(HW_LOG_INFO, LOG, "%u peers see this visor at %s%s%s",
	       best_n, m->observed, m->advertised[0] ? "; advertising " : "",
	       m->advertised);
	if (m->p.ops && m->p.ops->observed)
		m->p.ops->observed(m->p.ud, m->observed);
}

/* ---- peers ---- */

static int was_shared(const struct link *l, const uint8_t pk[HW_PK_LEN])
{
	for (unsigned i = 0; i < l->nshared; i++)
		if (!memcmp(l->shared[i], pk, HW_PK_LEN))
			return 1;
	return 0;
}

static int note_shared(struct link *l, const uint8_t pk[HW_PK_LEN])
{
	if (l->nshared == l->capshared) {
		unsigned cap = l->capshared ? 2 * l->capshared : 16;
		void *p = realloc(l->shared, cap * sizeof(*l->shared));

		if (!p)
			return -ENOMEM;
		l->shared = p;
		l->capshared = cap;
	}
	memcpy(l->shared[l->nshared++], pk, HW_PK_LEN);
	return 0;
}

/* Sends l the finished peers it was not told of yet (the seed's
 * ActivePeers and SetSharedPeers), at most one message's worth. */
static void share(struct hw_mesh *m, struct link *l)
{
	static struct hw_mesh_msg msg;

	msg.kind = HW_MESH_PEERS;
	msg.npeers = 0;
	for (struct link *o = m->links; o; o = o->next) {
		if (o == l || o->state != L_DONE || !o->seen[0] ||
		    !memcmp(o->pk, l->pk, HW_PK_LEN) || was_shared(l, o->pk))
			continue;
		if (msg.npeers == HW_MESH_PEERS_MAX)
			break;
		if (note_shared(l, o->pk))
			break;
		memcpy(msg.peers[msg.npeers].pk, o->pk, HW_PK_LEN);
		memcpy(msg.peers[msg.npeers].addr, o->seen,
		       sizeof(msg.peers[0].addr));
		msg.npeers++;
	}
	if (msg.npeers)
		send_msg(m, l, &msg);
}

static void on_share(uv_timer_t *t)
{
	struct hw_mesh *m = t->data;

	for (struct link *l = m->links; l; l = l->next)
		if (l->state == L_DONE)
			share(m, l);
}

static void learn(struct hw_mesh *m, struct link *from,
		  const struct hw_mesh_peer *p)
{
	struct learned *e = NULL;

	if (!memcmp(p->pk, hw_tp_pk(from->tp), HW_PK_LEN) ||
	    !memcmp(p->pk, m->self, HW_PK_LEN))
		return;
	for (unsigned i = 0; i < m->nlearned && !e; i++)
		if (!memcmp(m->learned[i].pk, p->pk, HW_PK_LEN))
			e = &m->learned[i];
	if (!e) {
		if (m->nlearned == HW_MESH_LEARNED_MAX)
			return;
		e = &m->learned[m->nlearned++];
		memcpy(e->pk, p->pk, HW_PK_LEN);
	}
	memcpy(e->from, from->pk, HW_PK_LEN);
	memcpy(e->addr, p->addr, sizeof(e->addr));
}

/* ---- the handshake ---- */

static void broke(struct hw_mesh *m, struct link *l, const char *why)
{
	char msg[300];

	(void)m;
	snprintf(msg, sizeof(msg), "mesh: %s", why);
	hw_tp_drop(l->tp, msg);
}

static void finished(struct hw_mesh *m, struct link *l)
{
	l->state = L_DONE;
	hw_log(HW_LOG_INFO, LOG, "transport %s: mesh handshake done (the "
	       "peer says it listens on %s and sees this visor at %s)",
	       hw_tp_id_hex(l->tp), l->said_me[0] ? l->said_me : "nothing",
	       l->said_you[0] ? l->said_you : "no address");
	tally(m);
	share(m, l);
}

void hw_mesh_on_packet(struct hw_mesh *m, struct hw_tp *tp,
		       const struct hw_packet *pkt)
{
	static struct hw_mesh_msg msg;
	struct link *l = find(m, tp);
	char why[200];

	if (!l)
		return;
	if (hw_mesh_parse(pkt->payload, pkt->len, &msg, why, sizeof(why))) {
		broke(m, l, why);
		return;
	}
	if (msg.kind == HW_MESH_PEERS) {
		if (l->state != L_DONE) {
			broke(m, l, "PEERS before the handshake finished");
			return;
		}
		for (unsigned i = 0; i < msg.npeers; i++)
			learn(m, l, &msg.peers[i]);
		return;
	}
	if (msg.state == HW_MESH_INIT &&
	    (l->state == L_NEW || l->state == L_WAIT)) {
		memcpy(l->said_me, msg.me, sizeof(l->said_me));
		memcpy(l->said_you, msg.you, sizeof(l->said_you));
		if (l->state == L_NEW) {
			hello(m, l, HW_MESH_INIT);
			l->state = L_REPLIED;
		} else {
			hello(m, l, HW_MESH_FINAL);
			l->state = L_CONFIRMED;
		}
		return;
	}
	if (msg.state == HW_MESH_FINAL &&
	    (l->state == L_REPLIED || l->state == L_CONFIRMED)) {
		/* FINAL confirms what the peer's INIT said. */
		if (strcmp(msg.me, l->said_me) || strcmp(msg.you, l->said_you)) {
			broke(m, l, "FINAL does not confirm the INIT's "
			      "addresses");
			return;
		}
		if (l->state == L_REPLIED)
			hello(m, l, HW_MESH_FINAL);
		finished(m, l);
		return;
	}
	snprintf(why, sizeof(why), "HELLO %s while the handshake is %s",
		 msg.state == HW_MESH_INIT ? "INIT" : "FINAL",
		 state_names[l->state]);
	broke(m, l, why);
}

void hw_mesh_tp_event(struct hw_mesh *m, struct hw_tp *tp,
		      enum hw_tp_event ev)
{
	struct link **pp, *l;

	for (pp = &m->links; *pp && (*pp)->tp != tp; pp = &(*pp)->next)
		;
	if ((l = *pp)) {
		/* Any change: a new connection starts a new handshake. */
		*pp = l->next;
		link_free(l);
		if (ev != HW_TP_UP)
			tally(m);
	}
	if (ev != HW_TP_UP)
		return;
	if (!(l = calloc(1, sizeof(*l)))) {
		hw_log(HW_LOG_WARN, LOG, "out of memory");
		return;
	}
	l->tp = tp;
	memcpy(l->pk, hw_tp_pk(tp), HW_PK_LEN);
	l->initiator = hw_tp_is_initiator(tp);
	l->since_ms = now_ms(m);
	l->state = L_NEW;
	l->next = m->links;
	m->links = l;
	if (l->initiator) {
		hello(m, l, HW_MESH_INIT);
		l->state = L_WAIT;
	}
}

/* ---- lifecycle and listing ---- */

int hw_mesh_new(struct hw_mesh **out, const struct hw_mesh_params *p,
		char *err, size_t errlen)
{
	struct hw_mesh *m = calloc(1, sizeof(*m));
	char host[HW_HOST_MAX];

	*out = NULL;
	if (!m || !(m->learned = calloc(HW_MESH_LEARNED_MAX,
					sizeof(*m->learned)))) {
		free(m);
		snprintf(err, errlen, "mesh: out of memory");
		return -ENOMEM;
	}
	m->p = *p;
	memcpy(m->self, p->self_pk, HW_PK_LEN);
	snprintf(m->listen, sizeof(m->listen), "%s", p->listen);
	if (m->listen[0]) {
		if (hw_addr_split(m->listen, host, &m->port)) {
			snprintf(err, errlen, "mesh: listen address '%s' is "
				 "not HOST:PORT", m->listen);
			free(m->learned);
			free(m);
			return -EINVAL;
		}
		m->wildcard = is_wildcard_host(host);
		tcp_addr(m->me, host, m->port);
	}
	set_advertised(m);
	uv_timer_init(p->loop, &m->share);
	m->share.data = m;
	uv_timer_start(&m->share, on_share, HW_MESH_SHARE_MS,
		       HW_MESH_SHARE_MS);
	*out = m;
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	struct hw_mesh *m = h->data;

	free(m->learned);
	free(m);
}

void hw_mesh_free(struct hw_mesh *m)
{
	struct link *l, *next;

	if (!m)
		return;
	for (l = m->links; l; l = next) {
		next = l->next;
		link_free(l);
	}
	m->links = NULL;
	uv_close((uv_handle_t *)&m->share, on_closed);
}

const char *hw_mesh_advertised(const struct hw_mesh *m)
{
	return m->advertised;
}

static json_t *str_or_null(const char *s)
{
	return s[0] ? json_string(s) : json_null();
}

json_t *hw_mesh_json(const struct hw_mesh *m)
{
	json_t *o = json_object(), *votes = json_array(),
	       *learned = json_array(), *links = json_array();
	char pk[HW_PK_HEXLEN + 1], from[HW_PK_HEXLEN + 1];
	uint64_t now = uv_now(m->p.loop);

	for (const struct link *l = m->links; l; l = l->next) {
		const char *st = state_names[l->state];

		if (l->state != L_DONE &&
		    now - l->since_ms >= HW_MESH_HELLO_WAIT_MS)
			st = "unanswered";
		hw_pk_format(l->pk, pk);
		json_array_append_new(links, json_pack(
			"{s:s, s:s, s:s, s:o, s:o, s:o}", "pk", pk,
			"transport", hw_tp_id_hex(l->tp), "state", st, "me",
			str_or_null(l->said_me), "you",
			str_or_null(l->said_you), "seen",
			str_or_null(l->seen)));
		if (l->state != L_DONE || !l->said_you[0])
			continue;
		/* One vote per distinct address (counted once). */
		json_t *v;
		size_t i;
		int have = 0;

		json_array_foreach(votes, i, v)
			if (!strcmp(json_string_value(json_object_get(
					    v, "addr")), l->said_you)) {
				json_object_set_new(v, "peers", json_integer(
					json_integer_value(json_object_get(
						v, "peers")) + 1));
				have = 1;
			}
		if (!have)
			json_array_append_new(votes, json_pack(
				"{s:s, s:i}", "addr", l->said_you, "peers", 1));
	}
	for (unsigned i = 0; i < m->nlearned; i++) {
		hw_pk_format(m->learned[i].pk, pk);
		hw_pk_format(m->learned[i].from, from);
		json_array_append_new(learned, json_pack(
			"{s:s, s:s, s:s}", "pk", pk, "addr",
			m->learned[i].addr, "from", from));
	}
	json_object_set_new(o, "configured", str_or_null(m->me));
	json_object_set_new(o, "observed", str_or_null(m->observed));
	json_object_set_new(o, "advertised", str_or_null(m->advertised));
	json_object_set_new(o, "quorum", json_integer(HW_MESH_QUORUM));
	json_object_set_new(o, "votes", votes);
	json_object_set_new(o, "learned", learned);
	json_object_set_new(o, "links", links);
	return o;
}
