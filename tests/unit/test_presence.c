/* The visor's presence (visor/presence.c) alone: its params and ops are
 * filled by the test, with a real transport manager and relay client on
 * the test's loop, and discovery either a URL nobody answers or a real
 * discovery server (discovery/server.h over sqlite::memory:) in the test
 * process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <unistd.h>

#include "crypto/identity.h"
#include "discovery/client.h"
#include "discovery/entry.h"
#include "discovery/server.h"
#include "discovery/store.h"
#include "hwtest.h"
#include "relay/client.h"
#include "transport/manager.h"
#include "util/err.h"
#include "util/version.h"
#include "visor/presence.h"

#define WAIT_MS 5000

struct fx {
	uv_loop_t loop;
	uv_timer_t tick;
	char dir[64], seq[128], listen[64], url[96];
	struct hw_identity id;
	uint8_t x_priv[32];
	struct hw_relay_client *relays;
	struct hw_tp_manager *tpm;
	struct hw_disc_server *srv;
	struct hw_presence *p;
	int setup_node; /* what the is_setup_node op says */
	/* other signers, writing to discovery through their own clients */
	struct hw_identity peer, relay;
	struct hw_disc_client *peer_dc, *relay_dc;
};

/* The outcome of a discovery request or a resolution. */
struct call {
	int done, status, http;
	json_t *resp;
	char type[16], addr[400], msg[400];
};

/* ---- ops ---- */

static struct hw_tp_manager *fake_tp_manager(void *ud)
{
	struct fx *fx = ud;
	return fx->tpm;
}

static int fake_is_setup_node(void *ud)
{
	struct fx *fx = ud;
	return fx->setup_node;
}

static const struct hw_presence_ops ops = {
	.tp_manager = fake_tp_manager,
	.is_setup_node = fake_is_setup_node,
};

static int refuse_stream(struct hw_relay_client *rc, const uint8_t relay[32],
			 const uint8_t from[32], struct hw_relay_stream *s,
			 void *ud)
{
	return -ECONNREFUSED;
}

/* ---- fixture ---- */

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct hw_relay_client_params rp = {0};
	struct hw_tp_manager_params tp = {0};
	uint8_t xpub[32];
	char err[256];

	assert_non_null(fx);
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	assert_int_equal(uv_timer_init(&fx->loop, &fx->tick), 0);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/hw-presence-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->seq, sizeof(fx->seq), "%s/discovery-seq", fx->dir);
	assert_int_equal(hw_identity_generate(&fx->id), 0);
	assert_int_equal(hw_identity_generate(&fx->peer), 0);
	assert_int_equal(hw_identity_generate(&fx->relay), 0);
	assert_int_equal(hw_identity_x25519(&fx->id, fx->x_priv, xpub), 0);
	rp.loop = &fx->loop;
	rp.id = &fx->id;
	rp.x_priv = fx->x_priv;
	rp.keepalive_ms = 5000;
	rp.handshake_timeout_ms = 3000;
	rp.redial_min_ms = 200;
	rp.redial_max_ms = 1000;
	rp.accept = refuse_stream;
	assert_int_equal(hw_relay_client_new(&fx->relays, &rp), 0);
	snprintf(fx->listen, sizeof(fx->listen), "127.0.0.1:%d",
		 hw_test_free_port());
	tp.loop = &fx->loop;
	tp.id = &fx->id;
	tp.tcp_listen = fx->listen;
	tp.keepalive_ms = 5000;
	tp.handshake_timeout_ms = 3000;
	tp.max_pending_handshakes = 8;
	tp.redial_min_ms = 200;
	tp.redial_max_ms = 1000;
	tp.relays = fx->relays;
	assert_int_equal(hw_tp_manager_new(&fx->tpm, &tp, err, sizeof(err)),
			 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	hw_presence_free(fx->p);
	hw_disc_client_free(fx->peer_dc);
	hw_disc_client_free(fx->relay_dc);
	hw_tp_manager_free(fx->tpm);
	hw_relay_client_free(fx->relays);
	uv_close((uv_handle_t *)&fx->tick, NULL);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	/* Nothing is left on the loop. */
	assert_int_equal(hw_test_loop_close(&fx->loop), 0);
	hw_disc_server_free(fx->srv);
	unlink(fx->seq);
	assert_int_equal(rmdir(fx->dir), 0);
	hw_identity_wipe(&fx->id);
	hw_identity_wipe(&fx->peer);
	hw_identity_wipe(&fx->relay);
	free(fx);
	return 0;
}

/* A discovery server on a free port, with its URL in fx->url. */
static void server_start(struct fx *fx)
{
	struct hw_disc_server_config cfg = {0};
	struct hw_dstore *st;
	char listen[64], err[256];
	int port = hw_test_free_port();

	assert_true(port > 0);
	assert_int_equal(hw_dstore_new(&st, "sqlite::memory:", err,
				       sizeof(err)),
			 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	cfg.listen = listen;
	cfg.ttl_s = HW_DISC_DEFAULT_TTL_S;
	cfg.ts_window_s = HW_DISC_DEFAULT_TS_WINDOW_S;
	cfg.threads = 2;
	if (hw_disc_server_new(&fx->srv, &cfg, st, err, sizeof(err)))
		fail_msg("discovery server: %s", err);
	snprintf(fx->url, sizeof(fx->url), "http://%s", listen);
	assert_int_equal(hw_disc_client_new(&fx->peer_dc, &fx->loop, fx->url,
					    &fx->peer, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(hw_disc_client_new(&fx->relay_dc, &fx->loop,
					    fx->url, &fx->relay, NULL, err,
					    sizeof(err)),
			 0);
}

/* A URL where nothing answers. */
static void url_refusing(struct fx *fx)
{
	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d",
		 hw_test_free_port());
}

static void presence_start(struct fx *fx, const char *url,
			   unsigned relay_sessions, const uint8_t *setup_node)
{
	struct hw_presence_params pp = {0};
	uint8_t nodes[1][HW_PK_LEN];
	char err[256];

	if (setup_node)
		memcpy(nodes[0], setup_node, HW_PK_LEN);
	pp.loop = &fx->loop;
	pp.id = &fx->id;
	pp.discovery_url = url;
	pp.seq_path = fx->seq;
	pp.public_addr = "";
	pp.refresh_ms = 100;
	pp.relay_sessions = relay_sessions;
	pp.setup_nodes = (const uint8_t(*)[HW_PK_LEN])nodes;
	pp.nsetup_nodes = setup_node ? 1 : 0;
	pp.relays = fx->relays;
	pp.ops = &ops;
	pp.ud = fx;
	if (hw_presence_new(&fx->p, &pp, err, sizeof(err)))
		fail_msg("presence: %s", err);
}

/* ---- waiting ---- */

static int call_done(void *arg)
{
	return ((struct call *)arg)->done;
}

static void call_wait(struct fx *fx, struct call *c)
{
	if (!hw_test_run_until(&fx->loop, &fx->tick, call_done, c, WAIT_MS))
		fail_msg("no answer");
}

static void on_disc(struct hw_disc_client *dc, int status, int http,
		    json_t *resp, const char *msg, void *ud)
{
	struct call *c = ud;

	c->done = 1;
	c->status = status;
	c->http = http;
	c->resp = json_incref(resp);
	snprintf(c->msg, sizeof(c->msg), "%s", msg ? msg : "");
}

static void on_resolved(int status, const char *type, const char *addr,
			const char *msg, void *ud)
{
	struct call *c = ud;

	c->done = 1;
	c->status = status;
	snprintf(c->type, sizeof(c->type), "%s", type ? type : "");
	snprintf(c->addr, sizeof(c->addr), "%s", addr ? addr : "");
	snprintf(c->msg, sizeof(c->msg), "%s", msg ? msg : "");
}

/* GET path from discovery (as the peer): its status, *resp (new
 * reference or NULL). */
static int disc_get(struct fx *fx, const char *path, json_t **resp)
{
	struct call c = {0};

	assert_int_equal(hw_disc_get(fx->peer_dc, path, on_disc, &c), 0);
	call_wait(fx, &c);
	if (resp)
		*resp = c.resp;
	else
		json_decref(c.resp);
	return c.status;
}

/* Runs the loop until GET path answers want (0 or a negative status). */
static void wait_get(struct fx *fx, const char *path, int want)
{
	uint64_t end = uv_now(&fx->loop) + WAIT_MS;
	int rc;

	while ((rc = disc_get(fx, path, NULL)) != want &&
	       uv_now(&fx->loop) < end) {
		usleep(20000);
		uv_run(&fx->loop, UV_RUN_NOWAIT);
	}
	if (rc != want)
		fail_msg("GET %s: %d, wanted %d", path, rc, want);
}

static void resolve(struct fx *fx, const struct hw_identity *who,
		    const char *type, struct call *c)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(hw_presence_resolve(fx->p, who->pk, type, on_resolved,
					     c),
			 0);
	call_wait(fx, c);
}

static int has_error(void *arg)
{
	struct fx *fx = arg;
	json_t *o = hw_presence_json(fx->p);
	int r = json_object_get(o, "last_error") != NULL;

	json_decref(o);
	return r;
}

static int is_registered(void *arg)
{
	struct fx *fx = arg;
	json_t *o = hw_presence_json(fx->p);
	int r = json_is_true(json_object_get(o, "registered"));

	json_decref(o);
	return r;
}

static int holds_relay(void *arg)
{
	struct fx *fx = arg;
	json_t *o = hw_presence_json(fx->p);
	int r = json_array_size(json_object_get(o, "relays")) == 1;

	json_decref(o);
	return r;
}

static uint64_t seq_now(struct fx *fx)
{
	char buf[64] = {0};
	FILE *f = fopen(fx->seq, "r");

	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return strtoull(buf, NULL, 10);
}

struct seq_wait {
	struct fx *fx;
	uint64_t above;
};

static int seq_above(void *arg)
{
	struct seq_wait *w = arg;
	return seq_now(w->fx) > w->above;
}

/* A transport to pk in the manager (persistent, so it stays while it
 * redials an address nobody answers). */
static struct hw_tp *tp_to(struct fx *fx, const uint8_t pk[HW_PK_LEN])
{
	char addr[64], err[256];
	struct hw_tp *tp;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", hw_test_free_port());
	assert_int_equal(hw_tp_manager_add(fx->tpm, pk, "tcp", addr, 1, NULL,
					   NULL, err, sizeof(err)),
			 0);
	assert_non_null(tp = hw_tp_manager_find(fx->tpm, pk, "tcp"));
	return tp;
}

static void put_visor(struct fx *fx, const char *addr,
		      const struct hw_identity *relay)
{
	struct hw_disc_visor v = {0};
	struct call c = {0};

	snprintf(v.version, sizeof(v.version), "test");
	if (addr)
		snprintf(v.addrs[v.naddrs++], sizeof(v.addrs[0]), "%s", addr);
	if (relay)
		memcpy(v.relays[v.nrelays++], relay->pk, HW_PK_LEN);
	assert_int_equal(hw_disc_put_visor(fx->peer_dc, &v, on_disc, &c), 0);
	call_wait(fx, &c);
	assert_int_equal(c.status, 0);
	json_decref(c.resp);
}

/* ---- tests ---- */

static void test_no_discovery(void **state)
{
	struct fx *fx = *state;
	struct hw_tp *tp;
	json_t *o;

	presence_start(fx, "", 1, NULL);
	assert_false(hw_presence_has_discovery(fx->p));
	assert_null(hw_presence_discovery(fx->p));
	assert_int_equal(hw_presence_resolve(fx->p, fx->peer.pk, NULL,
					     on_resolved, NULL),
			 -ENOTSUP);
	tp = tp_to(fx, fx->peer.pk);
	hw_presence_tp_event(fx->p, tp, HW_TP_UP);
	assert_false(hw_presence_registered(fx->p, hw_tp_id_hex(tp)));
	hw_presence_relay_session(fx->p, fx->relay.pk, 1);
	o = hw_presence_json(fx->p);
	assert_string_equal(json_string_value(json_object_get(o, "discovery")),
			    "");
	assert_true(json_is_false(json_object_get(o, "registered")));
	assert_null(json_object_get(o, "last_error"));
	assert_int_equal(json_array_size(json_object_get(o, "relays")), 0);
	json_decref(o);
	/* Nothing runs: no timer, no request. */
	for (int i = 0; i < 10; i++)
		uv_run(&fx->loop, UV_RUN_NOWAIT);
	assert_int_equal(access(fx->seq, F_OK), -1);
	/* NULL is accepted where the visor may have none yet. */
	hw_presence_tp_event(NULL, tp, HW_TP_UP);
	hw_presence_relay_session(NULL, fx->relay.pk, 1);
	hw_presence_free(NULL);
}

static void test_refused(void **state)
{
	struct fx *fx = *state;
	struct seq_wait w = {fx, 0};
	struct call c = {0};
	struct hw_tp *tp;
	json_t *o;
	const char *e;

	url_refusing(fx);
	presence_start(fx, fx->url, 1, NULL);
	assert_true(hw_presence_has_discovery(fx->p));
	assert_non_null(hw_presence_discovery(fx->p));

	/* The entry is signed at once and re-signed every refresh_ms, each
	 * write with a higher sequence number; failures stand in the
	 * JSON. */
	assert_true(hw_test_run_until(&fx->loop, &fx->tick, seq_above, &w,
				      WAIT_MS));
	w.above = seq_now(fx);
	assert_true(hw_test_run_until(&fx->loop, &fx->tick, seq_above, &w,
				      WAIT_MS));
	w.above = seq_now(fx);
	assert_true(hw_test_run_until(&fx->loop, &fx->tick, seq_above, &w,
				      WAIT_MS));
	assert_true(hw_test_run_until(&fx->loop, &fx->tick, has_error, fx,
				      WAIT_MS));
	o = hw_presence_json(fx->p);
	assert_string_equal(json_string_value(json_object_get(o, "discovery")),
			    fx->url);
	assert_true(json_is_false(json_object_get(o, "registered")));
	e = json_string_value(json_object_get(o, "last_error"));
	assert_non_null(strstr(e, "cannot reach"));
	json_decref(o);

	/* Transports: registered when they come up, deleted when they
	 * leave; links to setup nodes and a setup node's links are not. */
	tp = tp_to(fx, fx->peer.pk);
	hw_presence_tp_event(fx->p, tp, HW_TP_UP);
	assert_true(hw_presence_registered(fx->p, hw_tp_id_hex(tp)));
	hw_presence_tp_event(fx->p, tp, HW_TP_REMOVED);
	assert_false(hw_presence_registered(fx->p, hw_tp_id_hex(tp)));
	fx->setup_node = 1;
	hw_presence_tp_event(fx->p, tp, HW_TP_UP);
	assert_false(hw_presence_registered(fx->p, hw_tp_id_hex(tp)));
	fx->setup_node = 0;

	/* A peer cannot be resolved; one pending when presence stops is
	 * cancelled. */
	resolve(fx, &fx->peer, NULL, &c);
	assert_int_equal(c.status, -ECONNREFUSED);
	assert_non_null(strstr(c.msg, "cannot reach"));
	memset(&c, 0, sizeof(c));
	assert_int_equal(hw_presence_resolve(fx->p, fx->peer.pk, "tcp",
					     on_resolved, &c),
			 0);
	hw_presence_free(fx->p);
	fx->p = NULL;
	assert_true(c.done);
	assert_int_equal(c.status, -ECANCELED);
	assert_string_equal(c.msg, "the visor is stopping");
}

static void test_setup_node_links(void **state)
{
	struct fx *fx = *state;
	struct hw_tp *tp;

	url_refusing(fx);
	presence_start(fx, fx->url, 0, fx->peer.pk);
	tp = tp_to(fx, fx->peer.pk);
	hw_presence_tp_event(fx->p, tp, HW_TP_UP);
	assert_false(hw_presence_registered(fx->p, hw_tp_id_hex(tp)));
	tp = tp_to(fx, fx->relay.pk);
	hw_presence_tp_event(fx->p, tp, HW_TP_UP);
	assert_true(hw_presence_registered(fx->p, hw_tp_id_hex(tp)));
}

static void test_entry_and_transports(void **state)
{
	struct fx *fx = *state;
	char path[128], hex[HW_PK_HEXLEN + 1];
	struct hw_tp *tp;
	json_t *o, *edges;

	server_start(fx);
	presence_start(fx, fx->url, 0, NULL);
	assert_true(hw_test_run_until(&fx->loop, &fx->tick, is_registered, fx,
				      WAIT_MS));
	/* Our entry: the version and the listen address. */
	hw_pk_format(fx->id.pk, hex);
	snprintf(path, sizeof(path), "/v1/visors/%s", hex);
	assert_int_equal(disc_get(fx, path, &o), 0);
	assert_string_equal(json_string_value(json_object_get(o, "version")),
			    HW_VERSION);
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(o, "addrs"), 0)),
			    fx->listen);
	json_decref(o);

	/* A transport that comes up is in the registry with both edges,
	 * and goes when it leaves. */
	tp = tp_to(fx, fx->peer.pk);
	hw_presence_tp_event(fx->p, tp, HW_TP_UP);
	snprintf(path, sizeof(path), "/v1/transports/%s", hw_tp_id_hex(tp));
	wait_get(fx, path, 0);
	assert_int_equal(disc_get(fx, path, &o), 0);
	edges = json_object_get(o, "edges");
	assert_string_equal(json_string_value(json_array_get(edges, 0)), hex);
	hw_pk_format(fx->peer.pk, hex);
	assert_string_equal(json_string_value(json_array_get(edges, 1)), hex);
	assert_string_equal(json_string_value(json_object_get(o, "type")),
			    "tcp");
	json_decref(o);
	hw_presence_tp_event(fx->p, tp, HW_TP_REMOVED);
	wait_get(fx, path, -ENOENT);
	assert_false(hw_presence_registered(fx->p, hw_tp_id_hex(tp)));
}

static void test_resolve(void **state)
{
	struct fx *fx = *state;
	struct hw_disc_relay r = {0};
	struct hw_identity other;
	char relay_addr[64], want[200], hex[HW_PK_HEXLEN + 1];
	struct call c = {0};

	server_start(fx);
	/* A relay in discovery, which presence picks to hold. */
	snprintf(relay_addr, sizeof(relay_addr), "127.0.0.1:%d",
		 hw_test_free_port());
	snprintf(r.addr, sizeof(r.addr), "%s", relay_addr);
	r.capacity = 10;
	assert_int_equal(hw_disc_put_relay(fx->relay_dc, &r, on_disc, &c), 0);
	call_wait(fx, &c);
	assert_int_equal(c.status, 0);
	json_decref(c.resp);
	hw_pk_format(fx->relay.pk, hex);
	snprintf(want, sizeof(want), "%s@%s", hex, relay_addr);

	presence_start(fx, fx->url, 1, NULL);
	assert_true(hw_test_run_until(&fx->loop, &fx->tick, holds_relay, fx,
				      WAIT_MS));

	/* A peer not in discovery, then with a TCP address and the relay. */
	resolve(fx, &fx->peer, NULL, &c);
	assert_int_equal(c.status, -ENOENT);
	assert_string_equal(c.msg, "the peer is not in discovery");
	put_visor(fx, "10.1.2.3:7777", &fx->relay);
	resolve(fx, &fx->peer, NULL, &c);
	assert_int_equal(c.status, 0);
	assert_string_equal(c.type, "tcp");
	assert_string_equal(c.addr, "10.1.2.3:7777");
	resolve(fx, &fx->peer, "relay", &c);
	assert_int_equal(c.status, 0);
	assert_string_equal(c.type, "relay");
	assert_string_equal(c.addr, want);

	/* Only a relay: "tcp" cannot be had, either gives the relay. */
	put_visor(fx, NULL, &fx->relay);
	resolve(fx, &fx->peer, "tcp", &c);
	assert_int_equal(c.status, -ENOENT);
	assert_string_equal(c.msg, "the peer advertises no TCP address");
	resolve(fx, &fx->peer, NULL, &c);
	assert_int_equal(c.status, 0);
	assert_string_equal(c.addr, want);

	/* A relay we do not hold is looked up; one discovery does not know
	 * fails. */
	assert_int_equal(hw_identity_generate(&other), 0);
	put_visor(fx, NULL, &other);
	resolve(fx, &fx->peer, "relay", &c);
	assert_int_equal(c.status, -ENOENT);
	assert_non_null(strstr(c.msg, "not in discovery"));
	hw_identity_wipe(&other);

	/* Nothing at all. */
	put_visor(fx, NULL, NULL);
	resolve(fx, &fx->peer, NULL, &c);
	assert_int_equal(c.status, -ENOENT);
	assert_string_equal(c.msg,
			    "the peer advertises no address and no relay");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_no_discovery),
		T(test_refused),
		T(test_setup_node_links),
		T(test_entry_and_transports),
		T(test_resolve),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
