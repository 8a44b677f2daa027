#include "visor/presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "discovery/client.h"
#include "discovery/entry.h"
#include "relay/client.h"
#include "util/addr.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/version.h"

#define LOG "presence"
/* After a relay session changes, the entry is re-signed this soon (so a
 * burst of changes costs one write). */
#define SOON_MS 200

struct held {
	uint8_t pk[HW_PK_LEN];
	char addr[HW_DISC_ADDR_MAX + 1];
};

struct resolve {
	struct resolve *next;
	struct hw_presence *p;
	uint8_t pk[HW_PK_LEN];
	char type[8]; /* "" for either */
	char relay_hex[HW_PK_HEXLEN + 1];
	hw_presence_resolve_cb cb;
	void *ud;
};

struct hw_presence {
	uv_loop_t *loop;
	const struct hw_identity *id;
	struct hw_relay_client *relays;
	const struct hw_presence_ops *ops;
	void *ud;
	char public_addr[HW_ADDR_MAX];
	char observed[HW_ADDR_MAX]; /* from the mesh: hw_presence_set_observed */
	unsigned refresh_ms;
	unsigned relay_sessions;
	uint8_t setup_nodes[HW_MAX_SETUP_NODES][HW_PK_LEN];
	unsigned nsetup_nodes;
	struct hw_disc_client *dc;
	uv_timer_t refresh, soon;
	int handles;
	struct held held[HW_MAX_RELAY_SESSIONS];
	unsigned nheld;
	int picking;        /* a relay list request is out */
	json_t *registered; /* transport ID -> true, as registered */
	struct resolve *resolves;
	int entry_ok;       /* the last entry write was accepted */
	char last_error[400];
};

static void set_error(struct hw_presence *p, const char *what,
		      const char *msg)
{
	char e[400];

	snprintf(e, sizeof(e), "%s: %s", what, msg);
	/* Logged when it changes, not every refresh. */
	if (strcmp(e, p->last_error))
		hw_log(HW_LOG_WARN, LOG, "%s", e);
	snprintf(p->last_error, sizeof(p->last_error), "%s", e);
}

/* ---- our entry ---- */

static int is_wildcard(const char *hostport)
{
	char host[HW_HOST_MAX];
	uint16_t port;

	if (hw_addr_split(hostport, host, &port))
		return 1;
	return !host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
}

static void on_entry_put(struct hw_disc_client *c, int status, int http,
			 json_t *resp, const char *msg, void *ud)
{
	struct hw_presence *p = ud;

	if (status) {
		p->entry_ok = 0;
		set_error(p, "registering in discovery", msg);
		return;
	}
	if (!p->entry_ok)
		hw_log(HW_LOG_INFO, LOG, "registered in discovery at %s",
		       hw_disc_client_url(c));
	p->entry_ok = 1;
	/* Other errors (no relay to pick, ...) stand until they clear. */
	if (!strncmp(p->last_error, "registering", 11))
		p->last_error[0] = '\0';
}

static struct hw_tp_manager *tp_manager(const struct hw_presence *p)
{
	return p->ops && p->ops->tp_manager ? p->ops->tp_manager(p->ud)
					    : NULL;
}

static int is_setup_node(const struct hw_presence *p)
{
	return p->ops && p->ops->is_setup_node &&
	       p->ops->is_setup_node(p->ud);
}

static void put_entry(struct hw_presence *p)
{
	struct hw_tp_manager *m = tp_manager(p);
	struct hw_disc_visor e;
	const char *addr = p->public_addr[0]
				   ? p->public_addr
				   : m ? hw_tp_manager_listen_addr(m) : "";

	if (!p->public_addr[0] && is_wildcard(addr) && p->observed[0])
		addr = p->observed;

	memset(&e, 0, sizeof(e));
	snprintf(e.version, sizeof(e.version), "%s", HW_VERSION);
	for (unsigned i = 0; i < p->nheld; i++)
		if (hw_relay_client_is_up(p->relays, p->held[i].pk))
			memcpy(e.relays[e.nrelays++], p->held[i].pk,
			       HW_PK_LEN);
	if (addr[0] && !is_wildcard(addr) &&
	    strlen(addr) <= HW_DISC_ADDR_MAX)
		memcpy(e.addrs[e.naddrs++], addr, strlen(addr) + 1);
	hw_disc_put_visor(p->dc, &e, on_entry_put, p);
}

/* ---- transports in the registry ---- */

static void on_tp_written(struct hw_disc_client *c, int status, int http,
			  json_t *resp, const char *msg, void *ud)
{
	struct hw_presence *p = ud;
	/* A transport the peer deleted first is not an error. */
	if (status && http != 404)
		set_error(p, "transport registry", msg);
}

static void put_transport(struct hw_presence *p, const char *id_hex,
			  const uint8_t *id, const char *type,
			  const uint8_t *pk, int64_t rtt_us)
{
	struct hw_disc_transport t;

	/* A link to a setup node carries setup messages, not routes: the
	 * route finder must not offer it as a path. */
	for (unsigned i = 0; i < p->nsetup_nodes; i++)
		if (!memcmp(p->setup_nodes[i], pk, HW_PK_LEN))
			return;

	memset(&t, 0, sizeof(t));
	memcpy(t.id, id, HW_DISC_TP_ID_LEN);
	snprintf(t.type, sizeof(t.type), "%s", type);
	memcpy(t.edges[0], p->id->pk, HW_PK_LEN);
	memcpy(t.edges[1], pk, HW_PK_LEN);
	t.rtt_us = rtt_us > 0 && rtt_us < UINT32_MAX ? (uint32_t)rtt_us : 0;
	if (hw_disc_put_transport(p->dc, &t, on_tp_written, p) == 0)
		json_object_set_new(p->registered, id_hex, json_true());
}

void hw_presence_tp_event(struct hw_presence *p, struct hw_tp *tp,
			  enum hw_tp_event ev)
{
	/* A setup node forwards nothing: its links to the visors it builds
	 * for must not look like paths to the route finder. */
	if (!p || !p->dc || is_setup_node(p))
		return;
	if (ev == HW_TP_UP) {
		put_transport(p, hw_tp_id_hex(tp), hw_tp_id_bytes(tp),
			      hw_tp_type(tp), hw_tp_pk(tp), hw_tp_rtt_us(tp));
	} else if (json_object_get(p->registered, hw_tp_id_hex(tp))) {
		json_object_del(p->registered, hw_tp_id_hex(tp));
		hw_disc_del_transport(p->dc, hw_tp_id_bytes(tp),
				      on_tp_written, p);
	}
}

static void refresh_transports(struct hw_presence *p)
{
	struct hw_tp_manager *m = tp_manager(p);
	json_t *list, *e;
	size_t i;

	if (!m || is_setup_node(p))
		return;
	list = hw_tp_manager_list_json(m);

	json_array_foreach(list, i, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		struct hw_tp *tp;

		if (strcmp(json_string_value(json_object_get(e, "state")),
			   "up") ||
		    !(tp = hw_tp_manager_find_id(m, id)))
			continue;
		put_transport(p, id, hw_tp_id_bytes(tp), hw_tp_type(tp),
			      hw_tp_pk(tp), hw_tp_rtt_us(tp));
	}
	json_decref(list);
}

/* ---- relays to hold ---- */

static int holds(const struct hw_presence *p, const uint8_t pk[HW_PK_LEN])
{
	for (unsigned i = 0; i < p->nheld; i++)
		if (!memcmp(p->held[i].pk, pk, HW_PK_LEN))
			return 1;
	return 0;
}

static void on_relay_list(struct hw_disc_client *c, int status, int http,
			  json_t *resp, const char *msg, void *ud)
{
	struct hw_presence *p = ud;
	json_t *list = json_object_get(resp, "relays");
	size_t n = json_array_size(list), start, i;
	char err[200];

	p->picking = 0;
	if (status) {
		set_error(p, "listing relays", msg);
		return;
	}
	if (n == 0) {
		set_error(p, "listing relays", "discovery knows no relay");
		return;
	}
	if (!strncmp(p->last_error, "listing relays", 14))
		p->last_error[0] = '\0';
	/* Start at a random place so visors spread over the relays. */
	start = randombytes_uniform((uint32_t)n);
	for (i = 0; i < n && p->nheld < p->relay_sessions; i++) {
		json_t *j = json_array_get(list, (start + i) % n);
		struct hw_disc_entry e;
		struct held *h;

		if (hw_disc_entry_from_json(&e, HW_DISC_RELAY, j, err,
					    sizeof(err)) ||
		    hw_disc_entry_verify(&e) || holds(p, e.signer))
			continue;
		h = &p->held[p->nheld];
		memcpy(h->pk, e.signer, HW_PK_LEN);
		snprintf(h->addr, sizeof(h->addr), "%s", e.u.relay.addr);
		if (hw_relay_client_hold(p->relays, h->pk, h->addr) == 0) {
			char hex[HW_PK_HEXLEN + 1];
			hw_pk_format(h->pk, hex);
			hw_log(HW_LOG_INFO, LOG, "holding a session with "
			       "relay %s at %s", hex, h->addr);
			p->nheld++;
		}
	}
}

static void pick_relays(struct hw_presence *p)
{
	if (p->picking || p->nheld >= p->relay_sessions)
		return;
	if (hw_disc_get(p->dc, "/v1/relays", on_relay_list, p) == 0)
		p->picking = 1;
}

static void on_soon(uv_timer_t *t)
{
	put_entry(t->data);
}

void hw_presence_relay_session(struct hw_presence *p,
			       const uint8_t relay_pk[HW_PK_LEN], int up)
{
	if (!p || !p->dc)
		return;
	/* Our entry lists the relays we are up at. */
	if (holds(p, relay_pk) && !uv_is_active((uv_handle_t *)&p->soon))
		uv_timer_start(&p->soon, on_soon, SOON_MS, 0);
}

static void on_refresh(uv_timer_t *t)
{
	struct hw_presence *p = t->data;

	pick_relays(p);
	put_entry(p);
	refresh_transports(p);
}

void hw_presence_set_observed(struct hw_presence *p, const char *hostport)
{
	if (!p || !strcmp(p->observed, hostport))
		return;
	snprintf(p->observed, sizeof(p->observed), "%s", hostport);
	if (p->dc && !uv_is_active((uv_handle_t *)&p->soon))
		uv_timer_start(&p->soon, on_soon, SOON_MS, 0);
}

/* ---- resolving a peer ---- */

static void resolve_end(struct resolve *r, int status, const char *type,
			const char *addr, const char *msg)
{
	struct hw_presence *p = r->p;

	for (struct resolve **pp = &p->resolves; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	r->cb(status, type, addr, msg, r->ud);
	free(r);
}

static void on_relay_entry(struct hw_disc_client *c, int status, int http,
			   json_t *resp, const char *msg, void *ud)
{
	struct resolve *r = ud;
	struct hw_disc_entry e;
	char err[300], addr[HW_PK_HEXLEN + 2 + HW_DISC_ADDR_MAX];

	if (status) {
		snprintf(err, sizeof(err), "relay %.16s...: %s", r->relay_hex,
			 http == 404 ? "not in discovery" : msg);
		resolve_end(r, status, NULL, NULL, err);
		return;
	}
	if (hw_disc_entry_from_json(&e, HW_DISC_RELAY, resp, err,
				    sizeof(err)) ||
	    hw_disc_entry_verify(&e)) {
		resolve_end(r, HW_EAUTH, NULL, NULL,
			    "discovery returned a relay entry that does not "
			    "verify");
		return;
	}
	snprintf(addr, sizeof(addr), "%s@%s", r->relay_hex, e.u.relay.addr);
	resolve_end(r, 0, "relay", addr, NULL);
}

static void resolve_relay(struct resolve *r, const struct hw_disc_visor *e)
{
	struct hw_presence *p = r->p;
	const struct held *best = NULL;
	char path[128], addr[HW_PK_HEXLEN + 2 + HW_DISC_ADDR_MAX];
	int rc;

	if (e->nrelays == 0) {
		resolve_end(r, -ENOENT, NULL, NULL,
			    e->naddrs ? "the peer advertises no relay"
				      : "the peer advertises no address and "
					"no relay");
		return;
	}
	/* A relay we hold a session with (up first) saves a session. */
	for (unsigned i = 0; i < e->nrelays; i++)
		for (unsigned k = 0; k < p->nheld; k++)
			if (!memcmp(e->relays[i], p->held[k].pk, HW_PK_LEN) &&
			    (!best || hw_relay_client_is_up(p->relays,
							    p->held[k].pk)))
				best = &p->held[k];
	if (best) {
		hw_pk_format(best->pk, r->relay_hex);
		snprintf(addr, sizeof(addr), "%s@%s", r->relay_hex,
			 best->addr);
		resolve_end(r, 0, "relay", addr, NULL);
		return;
	}
	hw_pk_format(e->relays[0], r->relay_hex);
	snprintf(path, sizeof(path), "/v1/relays/%s", r->relay_hex);
	if ((rc = hw_disc_get(p->dc, path, on_relay_entry, r)))
		resolve_end(r, rc, NULL, NULL, hw_strerror(rc));
}

static void on_visor_entry(struct hw_disc_client *c, int status, int http,
			   json_t *resp, const char *msg, void *ud)
{
	struct resolve *r = ud;
	struct hw_disc_entry e;
	char err[300];

	if (status) {
		resolve_end(r, status, NULL, NULL,
			    http == 404 ? "the peer is not in discovery" : msg);
		return;
	}
	if (hw_disc_entry_from_json(&e, HW_DISC_VISOR, resp, err,
				    sizeof(err)) ||
	    hw_disc_entry_verify(&e) ||
	    memcmp(e.signer, r->pk, HW_PK_LEN)) {
		resolve_end(r, HW_EAUTH, NULL, NULL,
			    "discovery returned an entry for the peer that "
			    "does not verify");
		return;
	}
	if (strcmp(r->type, "relay") && e.u.visor.naddrs > 0) {
		resolve_end(r, 0, "tcp", e.u.visor.addrs[0], NULL);
		return;
	}
	if (!strcmp(r->type, "tcp")) {
		resolve_end(r, -ENOENT, NULL, NULL,
			    "the peer advertises no TCP address");
		return;
	}
	resolve_relay(r, &e.u.visor);
}

int hw_presence_resolve(struct hw_presence *p, const uint8_t pk[HW_PK_LEN],
			const char *type, hw_presence_resolve_cb cb, void *ud)
{
	char path[128], hex[HW_PK_HEXLEN + 1];
	struct resolve *r;
	int rc;

	if (!p->dc)
		return -ENOTSUP;
	if (!(r = calloc(1, sizeof(*r))))
		return -ENOMEM;
	r->p = p;
	memcpy(r->pk, pk, HW_PK_LEN);
	snprintf(r->type, sizeof(r->type), "%s", type ? type : "");
	r->cb = cb;
	r->ud = ud;
	hw_pk_format(pk, hex);
	snprintf(path, sizeof(path), "/v1/visors/%s", hex);
	if ((rc = hw_disc_get(p->dc, path, on_visor_entry, r))) {
		free(r);
		return rc;
	}
	r->next = p->resolves;
	p->resolves = r;
	return 0;
}

/* ---- lifecycle ---- */

int hw_presence_has_discovery(const struct hw_presence *p)
{
	return p && p->dc;
}

struct hw_disc_client *hw_presence_discovery(struct hw_presence *p)
{
	return p ? p->dc : NULL;
}

json_t *hw_presence_json(const struct hw_presence *p)
{
	json_t *o = json_object();

	json_object_set_new(o, "discovery",
			    json_string(p->dc ? hw_disc_client_url(p->dc)
					      : ""));
	json_object_set_new(o, "registered", json_boolean(p->entry_ok));
	if (p->last_error[0])
		json_object_set_new(o, "last_error",
				    json_string(p->last_error));
	json_object_set_new(o, "relays",
			    hw_relay_client_sessions_json(p->relays));
	return o;
}

int hw_presence_registered(const struct hw_presence *p, const char *id_hex)
{
	return json_object_get(p->registered, id_hex) != NULL;
}

int hw_presence_new(struct hw_presence **out,
		    const struct hw_presence_params *params, char *err,
		    size_t errlen)
{
	struct hw_presence *p = calloc(1, sizeof(*p));
	int rc;

	*out = NULL;
	if (!p || !(p->registered = json_object())) {
		free(p);
		return -ENOMEM;
	}
	p->loop = params->loop;
	p->id = params->id;
	p->relays = params->relays;
	p->ops = params->ops;
	p->ud = params->ud;
	snprintf(p->public_addr, sizeof(p->public_addr), "%s",
		 params->public_addr ? params->public_addr : "");
	p->refresh_ms = params->refresh_ms;
	p->relay_sessions = params->relay_sessions < HW_MAX_RELAY_SESSIONS
				    ? params->relay_sessions
				    : HW_MAX_RELAY_SESSIONS;
	p->nsetup_nodes = params->nsetup_nodes < HW_MAX_SETUP_NODES
				  ? params->nsetup_nodes
				  : HW_MAX_SETUP_NODES;
	if (p->nsetup_nodes)
		memcpy(p->setup_nodes, params->setup_nodes,
		       p->nsetup_nodes * HW_PK_LEN);
	uv_timer_init(p->loop, &p->refresh);
	uv_timer_init(p->loop, &p->soon);
	p->refresh.data = p->soon.data = p;
	p->handles = 2;
	*out = p;
	if (!params->discovery_url || !params->discovery_url[0])
		return 0;
	if ((rc = hw_disc_client_new(&p->dc, p->loop, params->discovery_url,
				     p->id, params->seq_path, err, errlen)))
		return rc; /* the caller frees p */
	uv_timer_start(&p->refresh, on_refresh, 0, p->refresh_ms);
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct hw_presence *p = h->data;
	if (--p->handles == 0)
		free(p);
}

void hw_presence_free(struct hw_presence *p)
{
	if (!p)
		return;
	/* No discovery callback runs after this. */
	hw_disc_client_free(p->dc);
	p->dc = NULL;
	while (p->resolves)
		resolve_end(p->resolves, -ECANCELED, NULL, NULL,
			    "the visor is stopping");
	json_decref(p->registered);
	uv_close((uv_handle_t *)&p->refresh, on_timer_closed);
	uv_close((uv_handle_t *)&p->soon, on_timer_closed);
}
