/* The control API's routes (documented in docs/api.md). Handlers run on
 * the loop; the ones that wait (add, ping, throughput) keep a job that
 * replies when the work finishes, unless the visor stopped meanwhile. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "discovery/client.h"
#include "router/setup_msg.h"
#include "setup/service.h"
#include "util/err.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/version.h"
#include "visor/visor_priv.h"

#define TP_PREFIX "/v1/transports/"
#define MAX_PINGS 100

/* ---- jobs: requests answered later ---- */

/* The start of every job: the request to answer and a reference that
 * keeps the visor alive until the job ends. */
struct job {
	struct hw_visor *v;
	struct hw_api_req *req;
};

/* Allocates a zeroed job of size bytes (a struct that starts with struct
 * job). Answers 500 and returns NULL when out of memory. */
static void *job_new(struct hw_visor *v, struct hw_api_req *req, size_t size)
{
	struct job *j = calloc(1, size);

	if (!j) {
		hw_api_reply_error(req, 500, "out of memory");
		return NULL;
	}
	j->v = v;
	j->req = req;
	hw_visor_ref(v);
	return j;
}

static void job_free(void *job)
{
	struct job *j = job;
	hw_visor_unref(j->v);
	free(j);
}

/* ---- GET /v1/info ---- */

/* The process's resident memory and what its heap holds allocated, for
 * operators and for the per-route-group memory figure of `make bench`. */
static json_t *memory_json(void)
{
	struct mallinfo2 mi = mallinfo2();
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return json_pack("{s:I, s:I}", "rss_bytes",
			 (json_int_t)rss * sysconf(_SC_PAGESIZE), "heap_in_use",
			 (json_int_t)mi.uordblks);
}

static void get_info(struct hw_visor *v, struct hw_api_req *req)
{
	struct hw_tp_manager_stats st;
	json_t *tps = hw_tp_manager_list_json(v->tpm), *o;
	size_t up = 0, i;
	json_t *e;

	json_array_foreach(tps, i, e)
		up += !strcmp(json_string_value(json_object_get(e, "state")),
			      "up");
	hw_tp_manager_stats(v->tpm, &st);
	o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I,"
		      " s:{s:I, s:I, s:I, s:I}}",
		      "pk", v->pk_hex, "version", HW_VERSION, "uptime_ms",
		      (json_int_t)(uv_now(v->loop) - v->start_ms),
		      "tcp_listen", v->cfg.tcp_listen, "tcp_addr",
		      hw_tp_manager_listen_addr(v->tpm), "local_dir",
		      v->cfg.local_dir, "control_socket",
		      v->cfg.control_socket, "transports",
		      (json_int_t)json_array_size(tps), "transports_up",
		      (json_int_t)up, "stats", "dropped_packets",
		      (json_int_t)st.dropped_packets, "handshakes_failed",
		      (json_int_t)st.handshakes_failed, "inbound_refused",
		      (json_int_t)st.inbound_refused, "pending_handshakes",
		      (json_int_t)st.pending_handshakes);
	json_decref(tps);
	json_object_set_new(o, "network", hw_presence_json(v->presence));
	if (v->mesh)
		json_object_set_new(o, "mesh", hw_mesh_json(v->mesh));
	if (v->routing)
		json_object_set_new(o, "router",
				    hw_routing_stats_json(v->routing));
	if (v->setup)
		json_object_set_new(o, "setup", hw_setup_service_json(v->setup));
	{
		char sock[PATH_MAX + 16];
		snprintf(sock, sizeof(sock), "%s/streams.sock",
			 v->cfg.local_dir);
		json_object_set_new(o, "streams_socket", json_string(sock));
		snprintf(sock, sizeof(sock), "%s/apps.sock",
			 v->cfg.local_dir);
		json_object_set_new(o, "apps_socket", json_string(sock));
	}
	json_object_set_new(o, "memory", memory_json());
	hw_api_reply(req, 200, o);
	json_decref(o);
}

/* ---- POST /v1/transports ---- */

struct add_job {
	struct job job;
	uint8_t pk[32];
	int persistent;
	/* No type was asked for and tcp is being tried: a relay follows if
	 * it fails. */
	int fallback;
	char tried[8];
};

static void add_resolved(int status, const char *type, const char *addr,
			 const char *msg, void *ud);

static void add_done(struct hw_tp_manager *m, struct hw_tp *tp, int status,
		     const char *msg, void *ud)
{
	struct add_job *j = ud;
	struct hw_visor *v = j->job.v;

	if (v->closing) {
		job_free(j);
		return;
	}
	if (tp) {
		json_t *o = hw_tp_to_json(tp);
		hw_api_reply(j->job.req, 201, o);
		json_decref(o);
	} else if (j->fallback && !strcmp(j->tried, "tcp") &&
		   hw_presence_resolve(v->presence, j->pk, "relay",
				       add_resolved, j) == 0) {
		hw_log(HW_LOG_INFO, "api", "tcp failed (%s); trying a relay",
		       msg ? msg : hw_strerror(status));
		j->fallback = 0;
		return;
	} else {
		hw_api_reply_error(j->job.req, 502, "%s",
				   msg ? msg : hw_strerror(status));
	}
	job_free(j);
}

static void add_start(struct add_job *j, const char *type, const char *addr)
{
	char err[400];
	int rc;

	snprintf(j->tried, sizeof(j->tried), "%s", type);
	rc = hw_tp_manager_add(j->job.v->tpm, j->pk, type, addr, j->persistent,
			       add_done, j, err, sizeof(err));
	if (rc == -EINVAL) {
		/* Refused before anything started: the callback never runs. */
		hw_api_reply_error(j->job.req, 400, "%s", err);
		job_free(j);
	}
	/* Any other outcome reached add_done already or will. */
}

static void add_resolved(int status, const char *type, const char *addr,
			 const char *msg, void *ud)
{
	struct add_job *j = ud;

	if (j->job.v->closing) {
		job_free(j);
		return;
	}
	if (status) {
		hw_api_reply_error(j->job.req, 502, "no way to reach the peer "
				   "found in discovery: %s", msg);
		job_free(j);
		return;
	}
	add_start(j, type, addr);
}

static int parse_pk(struct hw_api_req *req, json_t *body, uint8_t pk[32])
{
	const char *s = json_string_value(json_object_get(body, "pk"));
	int rc;

	if (!s) {
		hw_api_reply_error(req, 400, "pk: missing (64 hex characters)");
		return -1;
	}
	if ((rc = hw_pk_parse(s, strlen(s), pk))) {
		hw_api_reply_error(req, 400, "pk: '%.80s': %s", s,
				   hw_strerror(rc));
		return -1;
	}
	return 0;
}

static void post_transport(struct hw_visor *v, struct hw_api_req *req,
			   json_t *body)
{
	const char *type, *addr;
	struct add_job *j;
	uint8_t pk[32];
	json_t *pers;
	int rc;

	if (!json_is_object(body)) {
		hw_api_reply_error(req, 400, "body must be a JSON object");
		return;
	}
	if (parse_pk(req, body, pk))
		return;
	type = json_string_value(json_object_get(body, "type"));
	addr = json_string_value(json_object_get(body, "addr"));
	pers = json_object_get(body, "persistent");
	if (pers && !json_is_boolean(pers)) {
		hw_api_reply_error(req, 400, "persistent: must be true or false");
		return;
	}
	if (type && strcmp(type, "tcp") && strcmp(type, "relay")) {
		hw_api_reply_error(req, 400, "type: '%.40s' is not a transport "
				   "type (tcp, relay)", type);
		return;
	}
	if (!(j = job_new(v, req, sizeof(*j))))
		return;
	memcpy(j->pk, pk, 32);
	j->persistent = json_is_true(pers);
	if ((addr && addr[0]) || !hw_presence_has_discovery(v->presence)) {
		/* Without an address and without discovery the manager
		 * explains what is missing. */
		add_start(j, type ? type : "tcp", addr ? addr : "");
		return;
	}
	j->fallback = !type;
	if ((rc = hw_presence_resolve(v->presence, pk, type, add_resolved,
				      j))) {
		hw_api_reply_error(req, 500, "discovery: %s", hw_strerror(rc));
		job_free(j);
	}
}

/* ---- POST /v1/ping ---- */

struct ping_job {
	struct job job;
	uint8_t pk[32];
	char tp_id[HW_TP_ID_HEXLEN + 1];
	unsigned count, sent, interval_ms, timeout_ms;
	json_t *rtts;
	unsigned lost;
	uv_timer_t timer;
};

static void ping_job_closed(uv_handle_t *h)
{
	struct ping_job *j = h->data;
	json_decref(j->rtts);
	job_free(j);
}

static void ping_job_finish(struct ping_job *j, const char *error)
{
	if (!j->job.v->closing) {
		if (error) {
			hw_api_reply_error(j->job.req, 502, "%s", error);
		} else {
			double min = 0, max = 0, sum = 0;
			size_t i, n = json_array_size(j->rtts);
			json_t *e, *o;
			json_array_foreach(j->rtts, i, e) {
				double r = json_real_value(e);
				if (i == 0 || r < min)
					min = r;
				if (r > max)
					max = r;
				sum += r;
			}
			char pk[HW_PK_HEXLEN + 1];
			hw_pk_format(j->pk, pk);
			o = json_pack("{s:s, s:s, s:O, s:i, s:i}", "pk", pk,
				      "transport", j->tp_id, "rtt_ms", j->rtts,
				      "sent", j->sent, "lost", j->lost);
			if (n) {
				json_object_set_new(o, "min_ms",
						    json_real(min));
				json_object_set_new(o, "avg_ms",
						    json_real(sum / (double)n));
				json_object_set_new(o, "max_ms",
						    json_real(max));
			}
			hw_api_reply(j->job.req, 200, o);
			json_decref(o);
		}
	}
	uv_close((uv_handle_t *)&j->timer, ping_job_closed);
}

static void ping_next(uv_timer_t *t);

static void ping_result(struct hw_tp_manager *m, int64_t rtt_us, void *ud)
{
	struct ping_job *j = ud;

	if (j->job.v->closing) {
		ping_job_finish(j, NULL);
		return;
	}
	if (rtt_us >= 0)
		json_array_append_new(j->rtts,
				      json_real((double)rtt_us / 1000.0));
	else
		j->lost++;
	if (j->sent >= j->count)
		ping_job_finish(j, NULL);
	else
		uv_timer_start(&j->timer, ping_next, j->interval_ms, 0);
}

static void ping_next(uv_timer_t *t)
{
	struct ping_job *j = t->data;
	struct hw_tp *tp = hw_tp_manager_find(j->job.v->tpm, j->pk, NULL);
	int rc;

	if (!tp || !hw_tp_is_up(tp)) {
		ping_job_finish(j, "the transport went down");
		return;
	}
	j->sent++;
	if ((rc = hw_tp_ping(tp, j->timeout_ms, ping_result, j))) {
		ping_job_finish(j, hw_strerror(rc));
		return;
	}
}

static int get_uint_field(struct hw_api_req *req, json_t *body,
			  const char *key, unsigned def, unsigned min,
			  unsigned max, unsigned *out)
{
	json_t *f = json_object_get(body, key);

	*out = def;
	if (!f)
		return 0;
	if (!json_is_integer(f) || json_integer_value(f) < min ||
	    json_integer_value(f) > max) {
		hw_api_reply_error(req, 400, "%s: must be a whole number in "
				   "%u..%u", key, min, max);
		return -1;
	}
	*out = (unsigned)json_integer_value(f);
	return 0;
}

static void post_ping(struct hw_visor *v, struct hw_api_req *req,
		      json_t *body)
{
	struct ping_job *j;
	struct hw_tp *tp;
	uint8_t pk[32];
	unsigned count, interval, timeout;

	if (!json_is_object(body)) {
		hw_api_reply_error(req, 400, "body must be a JSON object");
		return;
	}
	if (parse_pk(req, body, pk) ||
	    get_uint_field(req, body, "count", 4, 1, MAX_PINGS, &count) ||
	    get_uint_field(req, body, "interval_ms", 200, 0, 60000,
			   &interval) ||
	    get_uint_field(req, body, "timeout_ms", 2000, 1, 60000, &timeout))
		return;
	tp = hw_tp_manager_find(v->tpm, pk, NULL);
	if (!tp || !hw_tp_is_up(tp)) {
		hw_api_reply_error(req, 404, "no transport up to %s",
				   json_string_value(
					   json_object_get(body, "pk")));
		return;
	}
	if (!(j = job_new(v, req, sizeof(*j))))
		return;
	memcpy(j->pk, pk, 32);
	snprintf(j->tp_id, sizeof(j->tp_id), "%s", hw_tp_id_hex(tp));
	j->count = count;
	j->interval_ms = interval;
	j->timeout_ms = timeout;
	j->rtts = json_array();
	uv_timer_init(v->loop, &j->timer);
	j->timer.data = j;
	ping_next(&j->timer);
}

/* ---- POST /v1/transports/ID/throughput ---- */

struct tput_job {
	struct job job;
	uint64_t bytes;
	unsigned pkt_size;
};

static void tput_done(struct hw_tp_manager *m, int64_t us, void *ud)
{
	struct tput_job *j = ud;

	if (!j->job.v->closing) {
		if (us < 0) {
			hw_api_reply_error(j->job.req, 502, "throughput test "
					   "failed: %s", hw_strerror((int)us));
		} else {
			double s = (double)us / 1e6;
			json_t *o = json_pack(
				"{s:I, s:i, s:f, s:f}", "bytes",
				(json_int_t)j->bytes, "packet_size",
				j->pkt_size, "seconds", s, "mbytes_per_s",
				s > 0 ? (double)j->bytes / s / 1e6 : 0.0);
			hw_api_reply(j->job.req, 200, o);
			json_decref(o);
		}
	}
	job_free(j);
}

static void post_throughput(struct hw_visor *v, struct hw_api_req *req,
			    struct hw_tp *tp, json_t *body)
{
	struct tput_job *j;
	json_t *b = json_object_get(body, "bytes");
	unsigned size;
	int rc;

	if (!json_is_integer(b) || json_integer_value(b) < 1 ||
	    json_integer_value(b) > ((json_int_t)1 << 40)) {
		hw_api_reply_error(req, 400, "bytes: must be a whole number "
				   "from 1 to 2^40");
		return;
	}
	if (get_uint_field(req, body, "packet_size", 16384, 1,
			   HW_PACKET_MAX_PAYLOAD, &size))
		return;
	if (!(j = job_new(v, req, sizeof(*j))))
		return;
	j->bytes = (uint64_t)json_integer_value(b);
	j->pkt_size = size;
	if ((rc = hw_tp_throughput(tp, j->bytes, size, tput_done, j))) {
		hw_api_reply_error(req, rc == -EBUSY ? 409 : 502,
				   "throughput test: %s", hw_strerror(rc));
		job_free(j);
	}
}

/* ---- GET /v1/paths?pk=PK[&k=N&min_hops=N&max_hops=N] ---- */

static void paths_done(struct hw_disc_client *c, int status, int http,
		       json_t *resp, const char *msg, void *ud)
{
	struct job *j = ud;

	if (!j->v->closing) {
		if (status)
			hw_api_reply_error(j->req, 502, "%s", msg);
		else
			hw_api_reply(j->req, 200, resp);
	}
	job_free(j);
}

static void get_paths(struct hw_visor *v, struct hw_api_req *req)
{
	struct hw_disc_client *dc = hw_presence_discovery(v->presence);
	const char *pk = hw_api_query(req, "pk");
	const char *k = hw_api_query(req, "k");
	const char *minh = hw_api_query(req, "min_hops");
	const char *maxh = hw_api_query(req, "max_hops");
	char path[512], deep[8];
	uint8_t key[32];
	struct job *j;

	/* Unless told, as deep as a route can be: what `route dial` asks
	 * for, so find never says "no path" where dial finds one. */
	snprintf(deep, sizeof(deep), "%d", HW_SETUP_HOPS_MAX);
	if (!dc) {
		hw_api_reply_error(req, 409, "no discovery configured "
				   "(discovery.url)");
		return;
	}
	if (!pk || hw_pk_parse(pk, strlen(pk), key)) {
		hw_api_reply_error(req, 400, "pk: missing or not a public key");
		return;
	}
	/* The numbers go to discovery, which checks them; keep them
	 * digits only so they cannot reshape the query. */
	for (const char *q = k ? k : ""; *q; q++)
		if (*q < '0' || *q > '9') k = NULL;
	for (const char *q = minh ? minh : ""; *q; q++)
		if (*q < '0' || *q > '9') minh = NULL;
	for (const char *q = maxh ? maxh : ""; *q; q++)
		if (*q < '0' || *q > '9') maxh = NULL;
	snprintf(path, sizeof(path),
		 "/v1/routes?src=%s&dst=%s&k=%.4s&min_hops=%.4s&max_hops=%.4s",
		 v->pk_hex, pk, k && k[0] ? k : "3",
		 minh && minh[0] ? minh : "1", maxh && maxh[0] ? maxh : deep);
	if (!(j = job_new(v, req, sizeof(*j))))
		return;
	if (hw_disc_get(dc, path, paths_done, j)) {
		hw_api_reply_error(req, 500, "discovery request failed");
		job_free(j);
	}
}

/* ---- GET /v1/groups/ended ---- */

static void get_ended(struct hw_visor *v, struct hw_api_req *req)
{
	const char *q = hw_api_query(req, "id");
	unsigned long long id = 0;
	json_t *o;

	if (q && (hw_parse_uint(q, 1, UINT64_MAX, &id))) {
		hw_api_reply_error(req, 400, "id: '%.32s' is not a group ID "
				   "(a whole number from 1)", q);
		return;
	}
	if (!(o = hw_routing_ended_json(v->routing, id))) {
		if (id)
			hw_api_reply_error(req, 404, "no ended group %llu "
					   "(the visor keeps the last %d)", id,
					   HW_ROUTING_ENDED_KEPT);
		else
			hw_api_reply_error(req, 500, "out of memory");
		return;
	}
	hw_api_reply(req, 200, o);
	json_decref(o);
}

/* ---- dispatch ---- */

void hw_visor_api_handle(struct hw_api_req *req, const char *method,
			 const char *path, json_t *body, void *ud)
{
	struct hw_visor *v = ud;
	int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");

	if (!strcmp(path, "/v1/info")) {
		if (get)
			return get_info(v, req);
	} else if (!strcmp(path, "/v1/transports")) {
		if (get) {
			json_t *a = hw_tp_manager_list_json(v->tpm);
			hw_api_reply(req, 200, a);
			json_decref(a);
			return;
		}
		if (post)
			return post_transport(v, req, body);
	} else if (!strcmp(path, "/v1/rules")) {
		if (get) {
			json_t *a = hw_routing_rules_json(v->routing);
			hw_api_reply(req, 200, a);
			json_decref(a);
			return;
		}
	} else if (!strcmp(path, "/v1/groups")) {
		if (get) {
			json_t *a = hw_routing_groups_json(v->routing);
			hw_api_reply(req, 200, a);
			json_decref(a);
			return;
		}
	} else if (!strcmp(path, "/v1/groups/ended")) {
		if (get)
			return get_ended(v, req);
	} else if (!strcmp(path, "/v1/paths")) {
		if (get)
			return get_paths(v, req);
	} else if (!strcmp(path, "/v1/relays")) {
		if (get) {
			json_t *a = hw_relay_client_sessions_json(v->relays);
			hw_api_reply(req, 200, a);
			json_decref(a);
			return;
		}
	} else if (!strncmp(path, "/v1/apps", 8) &&
		   (path[8] == '\0' || path[8] == '/')) {
		return hw_visor_api_apps(v, req, method, path, body);
	} else if (!strcmp(path, "/v1/ping")) {
		if (post)
			return post_ping(v, req, body);
	} else if (!strncmp(path, TP_PREFIX, strlen(TP_PREFIX))) {
		const char *rest = path + strlen(TP_PREFIX);
		char id[HW_TP_ID_HEXLEN + 1];
		const char *slash = strchr(rest, '/');
		size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
		struct hw_tp *tp;

		if (n != HW_TP_ID_HEXLEN) {
			hw_api_reply_error(req, 404, "no transport '%.*s' "
					   "(IDs are 32 hex characters)",
					   (int)(n > 64 ? 64 : n), rest);
			return;
		}
		memcpy(id, rest, n);
		id[n] = '\0';
		tp = hw_tp_manager_find_id(v->tpm, id);
		if (!tp) {
			hw_api_reply_error(req, 404, "no transport %s", id);
			return;
		}
		if (!slash) {
			if (get) {
				json_t *o = hw_tp_to_json(tp);
				hw_api_reply(req, 200, o);
				json_decref(o);
				return;
			}
			if (!strcmp(method, "DELETE")) {
				hw_tp_manager_remove(v->tpm, id);
				json_t *o = json_pack("{s:s}", "removed", id);
				hw_api_reply(req, 200, o);
				json_decref(o);
				return;
			}
		} else if (!strcmp(slash, "/throughput")) {
			if (post)
				return post_throughput(v, req, tp, body);
		} else {
			hw_api_reply_error(req, 404, "no such endpoint: %s",
					   path);
			return;
		}
	} else {
		hw_api_reply_error(req, 404, "no such endpoint: %s", path);
		return;
	}
	hw_api_reply_error(req, 405, "%s is not allowed on %s", method, path);
}
