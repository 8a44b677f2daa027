#include "visor/visor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "setup/service.h"
#include "transport/relay.h"
#include "util/err.h"
#include "util/log.h"
#include "util/version.h"
#include "visor/visor_priv.h"

#define LOG "visor"

void hw_visor_ref(struct hw_visor *v)
{
	v->refs++;
}

void hw_visor_unref(struct hw_visor *v)
{
	if (--v->refs == 0) {
		hw_identity_wipe(&v->id);
		hw_config_free(&v->cfg);
		free(v);
	}
}

static void on_tp_event(struct hw_tp *tp, enum hw_tp_event ev, void *ud)
{
	struct hw_visor *v = ud;
	if (v->mesh)
		hw_mesh_tp_event(v->mesh, tp, ev);
	hw_presence_tp_event(v->presence, tp, ev);
	hw_routing_tp_event(v->routing, tp, ev);
	if (v->setup)
		hw_setup_service_tp_event(v->setup, tp, ev);
}

static void on_tp_room(struct hw_tp *tp, void *ud)
{
	struct hw_visor *v = ud;
	hw_routing_tp_room(v->routing, tp);
}

static void on_packet(struct hw_tp *tp, const struct hw_packet *pkt,
		      void *ud)
{
	struct hw_visor *v = ud;

	if (pkt->type == HW_PKT_MESH && pkt->route_id == 0) {
		if (v->mesh)
			hw_mesh_on_packet(v->mesh, tp, pkt);
	} else if (v->setup && pkt->type == HW_PKT_SETUP)
		hw_setup_service_on_packet(v->setup, tp, pkt);
	else
		hw_routing_on_packet(v->routing, tp, pkt);
}

_Static_assert(HW_MAX_SETUP_NODES <= HW_ROUTING_SETUP_NODES_MAX,
	       "routing takes every configured setup node");

/* What routing asks of the other modules. */
static int routing_resolve(void *ud, const uint8_t pk[HW_PK_LEN],
			   hw_routing_resolve_cb cb, void *cb_ud)
{
	struct hw_visor *v = ud;
	return hw_presence_resolve(v->presence, pk, NULL, cb, cb_ud);
}

static struct hw_disc_client *routing_discovery(void *ud)
{
	struct hw_visor *v = ud;
	return hw_presence_discovery(v->presence);
}

static const struct hw_routing_ops routing_ops = {
	.resolve = routing_resolve,
	.discovery = routing_discovery,
};

static void on_app_started(void *ud, const char *name, uint16_t port, int fd,
			   int pid)
{
	struct hw_visor *v = ud;
	hw_appserver_adopt(v->apps, name, port, fd);
}

static const struct hw_launcher_ops launcher_ops = {
	.started = on_app_started,
};

/* ---- the app server's loops are route ends of routing ---- */

static const struct hw_route_end_ops app_end_ops = {
	.ready = hw_appserver_end_ready,
	.data = hw_appserver_end_data,
	.writable = hw_appserver_end_writable,
	.closed = hw_appserver_end_closed,
};

static int app_dial(void *ud, const uint8_t pk[HW_PK_LEN], uint16_t port,
		    uint16_t src_port, void *loop, char *err, size_t errlen)
{
	struct hw_visor *v = ud;
	return hw_routing_dial(v->routing, pk, port, src_port, &app_end_ops,
			       loop, err, errlen);
}

static void app_dial_cancel(void *ud, void *loop)
{
	struct hw_visor *v = ud;
	hw_routing_dial_cancel(v->routing, loop);
}

static uint16_t app_ephemeral_port(void *ud)
{
	struct hw_visor *v = ud;
	return hw_routing_ephemeral_port(v->routing);
}

static int app_port(void *ud, const char *name, uint16_t *port)
{
	struct hw_visor *v = ud;
	const struct hw_config_app *c =
		v->launcher ? hw_launcher_app(v->launcher, name) : NULL;

	if (c)
		*port = c->port;
	return c != NULL;
}

static const char *app_port_owner(void *ud, uint16_t port)
{
	struct hw_visor *v = ud;
	const struct hw_config_app *c =
		v->launcher ? hw_launcher_app_by_port(v->launcher, port) : NULL;
	return c ? c->name : NULL;
}

static int app_running(void *ud, const char *name)
{
	struct hw_visor *v = ud;
	return v->launcher && hw_launcher_is_running(v->launcher, name);
}

static const struct hw_appserver_ops appserver_ops = {
	.dial = app_dial,
	.dial_cancel = app_dial_cancel,
	.ephemeral_port = app_ephemeral_port,
	.end_write = hw_route_end_write,
	.end_consumed = hw_route_end_consumed,
	.end_pipe = hw_route_end_pipe,
	.end_close = hw_route_end_close,
	.app_port = app_port,
	.port_owner = app_port_owner,
	.app_running = app_running,
};

/* Incoming route groups for a port no stream-socket client listens on
 * go to the app holding it. */
static int on_app_incoming(void *hook_ud, const struct hw_route_desc *d,
			   const struct hw_route_end_ops **ops, void **ud,
			   char *msg, size_t msglen)
{
	struct hw_visor *v = hook_ud;
	int rc;

	if (!v->apps)
		return -ENOENT;
	rc = hw_appserver_incoming(v->apps, d->src_pk, d->src_port,
				   d->dst_port, ud, msg, msglen);
	if (rc == 0)
		*ops = &app_end_ops;
	return rc;
}

void hw_visor_set_setup(struct hw_visor *v, struct hw_setup_service *s)
{
	v->setup = s;
}

/* The setup service finds visors through the presence's discovery. */
static int setup_can_resolve(void *ud)
{
	struct hw_visor *v = ud;
	return v->presence && hw_presence_has_discovery(v->presence);
}

static int setup_resolve(void *ud, const uint8_t pk[HW_PK_LEN],
			 hw_setup_resolve_cb cb, void *cb_ud)
{
	struct hw_visor *v = ud;
	return hw_presence_resolve(v->presence, pk, NULL, cb, cb_ud);
}

static const struct hw_setup_service_ops setup_ops = {
	.can_resolve = setup_can_resolve,
	.resolve = setup_resolve,
};

void hw_visor_setup_params(struct hw_visor *v,
			   struct hw_setup_service_params *p)
{
	memset(p, 0, sizeof(*p));
	p->loop = v->loop;
	memcpy(p->pk, v->id.pk, HW_PK_LEN);
	p->tpm = v->tpm;
	p->ops = &setup_ops;
	p->ud = v;
}

static int on_relay_accept(struct hw_relay_client *rc,
			   const uint8_t relay_pk[32], const uint8_t from_pk[32],
			   struct hw_relay_stream *s, void *ud)
{
	struct hw_visor *v = ud;
	if (!v->tpm)
		return -ECANCELED;
	return hw_tp_manager_accept_relay(v->tpm, relay_pk, from_pk, s);
}

static void on_relay_session(struct hw_relay_client *rc,
			     const uint8_t relay_pk[32], int up, void *ud)
{
	struct hw_visor *v = ud;
	char hex[HW_PK_HEXLEN + 1];

	hw_pk_format(relay_pk, hex);
	hw_log(up ? HW_LOG_INFO : HW_LOG_WARN, LOG, "relay %s: session %s",
	       hex, up ? "up" : "down");
	if (up && v->tpm)
		hw_tp_manager_relay_up(v->tpm, relay_pk);
	hw_presence_relay_session(v->presence, relay_pk, up);
}

/* ---- what presence needs ---- */

static struct hw_tp_manager *presence_tp_manager(void *ud)
{
	struct hw_visor *v = ud;
	return v->tpm;
}

static int presence_is_setup_node(void *ud)
{
	struct hw_visor *v = ud;
	return v->setup != NULL;
}

static const struct hw_presence_ops presence_ops = {
	.tp_manager = presence_tp_manager,
	.is_setup_node = presence_is_setup_node,
};

/* A persistent relay transport from the config without an address: its
 * relay comes from discovery. */
struct config_tp {
	struct hw_visor *v;
	uint8_t pk[HW_PK_LEN];
	size_t index;
};

static void config_tp_resolved(int status, const char *type,
			       const char *addr, const char *msg, void *ud)
{
	struct config_tp *c = ud;
	char err[400];

	if (status == 0 && !c->v->closing &&
	    hw_tp_manager_add(c->v->tpm, c->pk, type, addr, 1, NULL, NULL,
			      err, sizeof(err)))
		msg = err, status = -EINVAL;
	if (status && status != -ECANCELED)
		hw_log(HW_LOG_WARN, LOG, "transport.persistent[%zu]: %s",
		       c->index, msg);
	free(c);
}

static void add_config_tp(struct hw_visor *v, const struct hw_config_tp *p,
			  size_t i)
{
	struct config_tp *c;
	char msg[400];
	int rc;

	if (p->addr[0]) {
		if (hw_tp_manager_add(v->tpm, p->pk, p->type, p->addr, 1, NULL,
				      NULL, msg, sizeof(msg)))
			hw_log(HW_LOG_WARN, LOG,
			       "transport.persistent[%zu]: %s", i, msg);
		return;
	}
	if (!(c = calloc(1, sizeof(*c))))
		return;
	c->v = v;
	c->index = i;
	memcpy(c->pk, p->pk, HW_PK_LEN);
	if ((rc = hw_presence_resolve(v->presence, p->pk, p->type,
				      config_tp_resolved, c))) {
		hw_log(HW_LOG_WARN, LOG, "transport.persistent[%zu]: no "
		       "address, and %s", i, rc == -ENOTSUP
		       ? "no discovery to find one (discovery.url)"
		       : hw_strerror(rc));
		free(c);
	}
}

static int make_local_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST) {
		snprintf(err, errlen, "local_dir %s: %s", dir,
			 strerror(errno));
		return -errno;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "local_dir %s: not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
}

static int start_presence(struct hw_visor *v, const struct hw_config *cfg,
			  char *err, size_t errlen)
{
	struct hw_presence_params pp = {0};
	char seq[PATH_MAX + 32], msg[512];
	int rc;

	snprintf(seq, sizeof(seq), "%s/discovery-seq", cfg->local_dir);
	pp.loop = v->loop;
	pp.id = &v->id;
	pp.discovery_url = cfg->discovery_url;
	pp.seq_path = seq;
	pp.public_addr = cfg->public_addr;
	pp.refresh_ms = cfg->discovery_refresh_ms;
	pp.relay_sessions = cfg->relay_sessions;
	pp.setup_nodes = (const uint8_t(*)[HW_PK_LEN])cfg->setup_nodes;
	pp.nsetup_nodes = cfg->nsetup_nodes;
	pp.relays = v->relays;
	pp.ops = &presence_ops;
	pp.ud = v;
	if ((rc = hw_presence_new(&v->presence, &pp, msg, sizeof(msg))))
		snprintf(err, errlen, "discovery.url: %s", msg);
	return rc;
}

/* A persistent transport's dial failed: the manager asks where the peer
 * is now, and presence reads its entry in discovery. The answer goes back
 * by pk and type, so one for a transport removed meanwhile is harmless. */
struct tp_lookup {
	struct hw_visor *v;
	uint8_t pk[HW_PK_LEN];
	char type[16];
};

static void tp_lookup_done(int status, const char *type, const char *addr,
			   const char *msg, void *ud)
{
	struct tp_lookup *q = ud;

	if (!q->v->closing && q->v->tpm)
		hw_tp_manager_addr_found(q->v->tpm, q->pk, q->type,
					 "discovery", status, addr, msg);
	free(q);
}

static int tp_lookup(const uint8_t pk[HW_PK_LEN], const char *type,
		     void *ud)
{
	struct hw_visor *v = ud;
	struct tp_lookup *q;
	int rc;

	/* Presence goes first when the visor stops. */
	if (v->closing || !v->presence)
		return -ECANCELED;
	if (!(q = calloc(1, sizeof(*q))))
		return -ENOMEM;
	q->v = v;
	memcpy(q->pk, pk, HW_PK_LEN);
	snprintf(q->type, sizeof(q->type), "%s", type);
	if ((rc = hw_presence_resolve(v->presence, pk, type, tp_lookup_done,
				      q)))
		free(q);
	return rc;
}

/* Peers agree on where this visor is: discovery hears it too. */
static void mesh_observed(void *ud, const char *hostport)
{
	struct hw_visor *v = ud;

	(void)hostport;
	hw_presence_set_observed(v->presence, hw_mesh_advertised(v->mesh));
}

static const struct hw_mesh_ops mesh_ops = {.observed = mesh_observed};

/* The transport manager, the relay client it carries relay transports
 * through, and the mesh handshake on its transports. */
static int start_transports(struct hw_visor *v, const struct hw_config *cfg,
			    char *err, size_t errlen)
{
	struct hw_tp_manager_params tp = {0};
	struct hw_relay_client_params rp = {0};
	struct hw_mesh_params mp = {0};
	char state[PATH_MAX + 32], msg[512];
	int rc;

	rp.loop = v->loop;
	rp.id = &v->id;
	rp.x_priv = v->x_priv;
	rp.keepalive_ms = cfg->keepalive_ms;
	rp.handshake_timeout_ms = cfg->handshake_timeout_ms;
	rp.redial_min_ms = cfg->redial_min_ms;
	rp.redial_max_ms = cfg->redial_max_ms;
	rp.accept = on_relay_accept;
	rp.session = on_relay_session;
	rp.ud = v;
	if ((rc = hw_relay_client_new(&v->relays, &rp))) {
		snprintf(err, errlen, "relay client: %s", hw_strerror(rc));
		return rc;
	}
	/* Presence hears of relay sessions from the client: it comes first. */
	if ((rc = start_presence(v, cfg, err, errlen)))
		return rc;
	snprintf(state, sizeof(state), "%s/transports.json", cfg->local_dir);
	tp.loop = v->loop;
	tp.id = &v->id;
	tp.relays = v->relays;
	tp.tcp_listen = cfg->tcp_listen;
	tp.state_path = state;
	tp.keepalive_ms = cfg->keepalive_ms;
	tp.handshake_timeout_ms = cfg->handshake_timeout_ms;
	tp.max_pending_handshakes = cfg->max_pending_handshakes;
	tp.redial_min_ms = cfg->redial_min_ms;
	tp.redial_max_ms = cfg->redial_max_ms;
	tp.on_event = on_tp_event;
	tp.on_room = on_tp_room;
	tp.on_packet = on_packet;
	/* Without discovery there is nobody to ask. */
	if (hw_presence_has_discovery(v->presence))
		tp.lookup = tp_lookup;
	tp.ud = v;
	if ((rc = hw_tp_manager_new(&v->tpm, &tp, msg, sizeof(msg)))) {
		snprintf(err, errlen, "transport.tcp_listen: %s", msg);
		return rc;
	}
	mp.loop = v->loop;
	mp.tpm = v->tpm;
	mp.self_pk = v->id.pk;
	mp.listen = hw_tp_manager_listen_addr(v->tpm); /* port 0 bound */
	mp.ops = &mesh_ops;
	mp.ud = v;
	if ((rc = hw_mesh_new(&v->mesh, &mp, msg, sizeof(msg)))) {
		snprintf(err, errlen, "%s", msg);
		return rc;
	}
	return 0;
}

/* Routing, then the app server whose loops are its route ends, then the
 * launcher whose apps connect to the app server. */
static int start_routing_and_apps(struct hw_visor *v,
				  const struct hw_config *cfg, char *err,
				  size_t errlen)
{
	struct hw_routing_params rtp = {0};
	struct hw_appserver_params ap = {0};
	struct hw_launcher_params lp = {0};
	char msg[512];
	int rc;

	rtp.loop = v->loop;
	rtp.id = &v->id;
	rtp.x_priv = v->x_priv;
	rtp.tpm = v->tpm;
	rtp.setup_nodes = (const uint8_t(*)[HW_PK_LEN])v->cfg.setup_nodes;
	rtp.nsetup_nodes = v->cfg.nsetup_nodes;
	rtp.keepalive_ms = v->cfg.keepalive_ms;
	rtp.local_dir = v->cfg.local_dir;
	rtp.tap_file = v->cfg.tap_file;
	rtp.heal_ms = v->cfg.heal_timeout_ms;
	rtp.ops = &routing_ops;
	rtp.ud = v;
	if ((rc = hw_routing_new(&v->routing, &rtp, msg, sizeof(msg)))) {
		snprintf(err, errlen, "%s", msg);
		return rc;
	}
	ap.loop = v->loop;
	ap.id = &v->id;
	ap.local_dir = cfg->local_dir;
	ap.ops = &appserver_ops;
	ap.ud = v;
	if ((rc = hw_appserver_new(&v->apps, &ap, msg, sizeof(msg)))) {
		snprintf(err, errlen, "%s", msg);
		return rc;
	}
	hw_routing_set_incoming(v->routing, on_app_incoming, v);
	lp.loop = v->loop;
	lp.apps = cfg->apps;
	lp.napps = cfg->napps;
	lp.local_dir = cfg->local_dir;
	lp.visor_pk_hex = v->pk_hex;
	lp.visor_api = cfg->control_socket;
	lp.ops = &launcher_ops;
	lp.ud = v;
	if ((rc = hw_launcher_new(&v->launcher, &lp, msg, sizeof(msg)))) {
		snprintf(err, errlen, "apps: %s", msg);
		return rc;
	}
	return 0;
}

int hw_visor_new(struct hw_visor **out, uv_loop_t *loop,
		 const struct hw_config *cfg, char *err, size_t errlen)
{
	struct hw_visor *v = calloc(1, sizeof(*v));
	uint8_t xpub[32];
	int rc;

	*out = NULL;
	if (!v)
		return -ENOMEM;
	v->loop = loop;
	v->refs = 1;
	v->cfg = *cfg;
	/* The copy owns the persistent list from here on. */
	v->cfg.persistent = NULL;
	v->cfg.npersistent = 0;
	/* The launcher keeps its own copy of the apps. */
	v->cfg.apps = NULL;
	v->cfg.napps = 0;
	v->start_ms = uv_now(loop);

	if ((rc = hw_identity_load(&v->id, cfg->key_file))) {
		snprintf(err, errlen, "key_file %s: %s", cfg->key_file,
			 hw_strerror(rc));
		goto fail;
	}
	hw_pk_format(v->id.pk, v->pk_hex);
	if ((rc = hw_identity_x25519(&v->id, v->x_priv, xpub))) {
		snprintf(err, errlen, "key_file %s: %s", cfg->key_file,
			 hw_strerror(rc));
		goto fail;
	}
	if ((rc = make_local_dir(cfg->local_dir, err, errlen)) ||
	    (rc = start_transports(v, cfg, err, errlen)) ||
	    (rc = start_routing_and_apps(v, cfg, err, errlen)))
		goto fail;
	for (size_t i = 0; i < cfg->npersistent; i++)
		add_config_tp(v, &cfg->persistent[i], i);
	if ((rc = hw_api_server_new(&v->api, loop, cfg->control_socket,
				    hw_visor_api_handle, v))) {
		snprintf(err, errlen, "control socket %s: %s%s",
			 cfg->control_socket, hw_strerror(rc),
			 rc == -EADDRINUSE ? " (is another visor running?)"
					   : "");
		goto fail;
	}
	hw_log(HW_LOG_INFO, LOG, "hopwire-visor %s started: pk %s", HW_VERSION,
	       v->pk_hex);
	if (hw_tp_manager_listen_addr(v->tpm)[0])
		hw_log(HW_LOG_INFO, LOG, "listening for transports on tcp %s",
		       hw_tp_manager_listen_addr(v->tpm));
	hw_log(HW_LOG_INFO, LOG, "control API on %s", cfg->control_socket);
	hw_launcher_autostart(v->launcher);
	*out = v;
	return 0;
fail:
	hw_visor_free(v);
	return rc;
}

void hw_visor_free(struct hw_visor *v)
{
	if (!v)
		return;
	v->closing = 1;
	hw_api_server_free(v->api);
	v->api = NULL;
	hw_launcher_free(v->launcher);
	v->launcher = NULL;
	if (v->routing)
		hw_routing_set_incoming(v->routing, NULL, NULL);
	hw_appserver_free(v->apps);
	v->apps = NULL;
	hw_mesh_free(v->mesh);
	v->mesh = NULL;
	hw_presence_free(v->presence);
	v->presence = NULL;
	hw_routing_free(v->routing);
	v->routing = NULL;
	hw_tp_manager_free(v->tpm);
	v->tpm = NULL;
	hw_relay_client_free(v->relays);
	v->relays = NULL;
	sodium_memzero(v->x_priv, sizeof(v->x_priv));
	hw_visor_unref(v);
}
