/* hopwire-discovery's HTTP server (docs/discovery.md).
 *
 * Requests are handled synchronously on the libmicrohttpd worker thread
 * that read them: GETs on the first call of the access handler (there is
 * no body to wait for), writes once the body is in. A handler borrows a
 * store connection from the pool and gives it back before it returns, so
 * the pool never holds more connections than there are threads working
 * at once (the workers and the sweeper).
 *
 * A write goes through the checks of the spec in their order, and only
 * the last step touches the store: one atomic hw_dstore_write() that does
 * the sequence check-and-set and the change together, so nothing is
 * stored, and no sequence number used up, when any check fails. */
#include "discovery/server.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "discovery/entry.h"
#include "discovery/routefind.h"
#include "util/addr.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/version.h"

/* A body over HW_DISC_MAX_BODY is read and dropped up to this many bytes
 * so that the client gets its 413 (one announced bigger is answered at
 * once and the connection closed). */
#define MAX_DISCARD (16 * HW_DISC_MAX_BODY)
#define MAX_CONNECTIONS 1000
#define CONN_TIMEOUT_S 30
/* Store connections: one per worker, the sweeper, and slack. */
#define POOL_MAX (HW_DISC_MAX_THREADS + 4)
#define ERROR_MAX 512
/* A list answer's bytes; far above limit x the largest entry. */
#define LIST_BYTES_MAX (64u * 1024 * 1024)
/* Transports loaded for one route query (all of them, for now). */
#define ROUTE_MAX_EDGES 200000
/* Characters of a peer's input quoted in an error message. */
#define QUOTE_MAX 80

enum route {
	R_HEALTH,
	R_METRICS,
	R_VISORS,
	R_VISOR,
	R_RELAYS,
	R_RELAY,
	R_TRANSPORTS,
	R_TRANSPORT,
	R_SERVICES,
	R_SERVICE,
	R_ROUTES,
	R_OTHER,
	R_COUNT
};

/* The endpoint label of hw_discovery_requests_total. */
static const char *const route_names[R_COUNT] = {
	[R_HEALTH] = "/health",
	[R_METRICS] = "/metrics",
	[R_VISORS] = "/v1/visors",
	[R_VISOR] = "/v1/visors/{pk}",
	[R_RELAYS] = "/v1/relays",
	[R_RELAY] = "/v1/relays/{pk}",
	[R_TRANSPORTS] = "/v1/transports",
	[R_TRANSPORT] = "/v1/transports/{id}",
	[R_SERVICES] = "/v1/services",
	[R_SERVICE] = "/v1/services/{pk}/{type}",
	[R_ROUTES] = "/v1/routes",
	[R_OTHER] = "other",
};

enum { M_GET = 1, M_PUT = 2, M_POST = 4, M_DELETE = 8 };

static const unsigned route_methods[R_COUNT] = {
	[R_HEALTH] = M_GET,
	[R_METRICS] = M_GET,
	[R_VISORS] = M_GET,
	[R_VISOR] = M_GET | M_PUT,
	[R_RELAYS] = M_GET,
	[R_RELAY] = M_GET | M_PUT,
	[R_TRANSPORTS] = M_GET | M_POST,
	[R_TRANSPORT] = M_GET | M_DELETE,
	[R_SERVICES] = M_GET,
	[R_SERVICE] = M_GET | M_PUT | M_DELETE,
	[R_ROUTES] = M_GET,
};

/* Statuses counted one by one; anything else is counted as "other". */
static const unsigned statuses[] = {200, 400, 401, 403, 404,
				    405, 409, 413, 500, 503};
#define S_COUNT (sizeof(statuses) / sizeof(statuses[0]) + 1)

static const enum hw_disc_kind stored_kinds[] = {
	HW_DISC_VISOR, HW_DISC_RELAY, HW_DISC_TRANSPORT, HW_DISC_SERVICE,
};
#define NKINDS (sizeof(stored_kinds) / sizeof(stored_kinds[0]))

struct hw_disc_server {
	struct MHD_Daemon *mhd;
	uint16_t port;
	unsigned ttl_s, window_s, sweep_ms;
	time_t started;
	const char *store_name;

	/* Store connections: all[0] is the one we were given. */
	pthread_mutex_t pool_mu;
	struct hw_dstore *all[POOL_MAX];
	struct hw_dstore *idle[POOL_MAX];
	unsigned nall, nidle, nopening;

	pthread_t sweeper;
	bool sweeper_started;
	pthread_mutex_t sweep_mu;
	pthread_cond_t sweep_cond; /* CLOCK_MONOTONIC */
	bool stopping;             /* under sweep_mu */

	atomic_uint_fast64_t requests[R_COUNT][S_COUNT];
	atomic_uint_fast64_t expired, store_errors;
};

/* A request's path parameters, pointing into the URL. */
struct params {
	const char *p[2];
	size_t n[2];
};

struct ctx {
	struct hw_disc_server *srv;
	struct MHD_Connection *conn;
	enum route route;
	struct params par;
};

/* What a write request keeps between calls of the access handler. */
struct upload {
	struct hw_capped body; /* capped at HW_DISC_MAX_BODY */
};

/* ---- store pool ---- */

static struct hw_dstore *pool_get(struct hw_disc_server *srv)
{
	struct hw_dstore *s = NULL;
	char err[256];
	bool open = false;

	pthread_mutex_lock(&srv->pool_mu);
	if (srv->nidle) {
		s = srv->idle[--srv->nidle];
	} else if (srv->nall + srv->nopening < POOL_MAX) {
		srv->nopening++;
		open = true;
	}
	pthread_mutex_unlock(&srv->pool_mu);
	if (!open)
		return s;
	/* Outside the lock: a Redis connect may take a while. all[0] is
	 * never freed before the server, and cloning only reads it. */
	if (hw_dstore_clone(srv->all[0], &s, err, sizeof(err))) {
		hw_log(HW_LOG_WARN, "discovery", "%s", err);
		s = NULL;
	}
	pthread_mutex_lock(&srv->pool_mu);
	srv->nopening--;
	if (s)
		srv->all[srv->nall++] = s;
	pthread_mutex_unlock(&srv->pool_mu);
	return s;
}

static void pool_put(struct hw_disc_server *srv, struct hw_dstore *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&srv->pool_mu);
	srv->idle[srv->nidle++] = s;
	pthread_mutex_unlock(&srv->pool_mu);
}

/* ---- answers ---- */

static void count(struct hw_disc_server *srv, enum route r, unsigned status)
{
	size_t i;

	for (i = 0; i < S_COUNT - 1; i++)
		if (statuses[i] == status)
			break;
	atomic_fetch_add_explicit(&srv->requests[r][i], 1,
				  memory_order_relaxed);
}

/* Queues buf (len bytes) as the answer. mode says who owns buf; with
 * MUST_FREE it is freed here on failure too. */
static enum MHD_Result respond(struct ctx *c, unsigned status,
			       const char *type, void *buf, size_t len,
			       enum MHD_ResponseMemoryMode mode,
			       const char *allow, bool close)
{
	struct MHD_Response *r;
	enum MHD_Result ret = MHD_NO;

	r = MHD_create_response_from_buffer(len, buf, mode);
	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(buf);
		return MHD_NO;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) !=
		    MHD_YES ||
	    (allow && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
					      allow) != MHD_YES) ||
	    (close && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION,
					      "close") != MHD_YES))
		goto out;
	ret = MHD_queue_response(c->conn, status, r);
	if (ret == MHD_YES)
		count(c->srv, c->route, status);
out:
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result respond_json_text(struct ctx *c, unsigned status,
					 char *text, size_t len)
{
	return respond(c, status, "application/json", text, len,
		       MHD_RESPMEM_MUST_FREE, NULL, false);
}

/* Serialises o (a reference is dropped) and queues it. */
static enum MHD_Result respond_json(struct ctx *c, unsigned status, json_t *o)
{
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (!text) {
		static const char oom[] = "{\"error\":\"out of memory\"}";

		return respond(c, 500, "application/json", (void *)oom,
			       sizeof(oom) - 1, MHD_RESPMEM_PERSISTENT, NULL,
			       false);
	}
	return respond_json_text(c, status, text, strlen(text));
}

/* {"error": msg}. Messages quote the peer's input; jansson refuses
 * strings that are not UTF-8, so such bytes become '?'. */
static char *error_text(const char *msg, size_t *len)
{
	json_t *o = NULL, *s = json_string(msg);
	char *text = NULL;

	if (!s) {
		char clean[ERROR_MAX];
		size_t i;

		for (i = 0; msg[i] && i < sizeof(clean) - 1; i++)
			clean[i] = (unsigned char)msg[i] < 0x80 ? msg[i] : '?';
		clean[i] = '\0';
		s = json_string(clean);
	}
	if (s)
		o = json_pack("{s:o}", "error", s);
	if (o)
		text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	*len = text ? strlen(text) : 0;
	return text;
}

static enum MHD_Result respond_error_v(struct ctx *c, unsigned status,
				       const char *allow, bool close,
				       const char *fmt, va_list ap)
{
	static const char oom[] = "{\"error\":\"out of memory\"}";
	char msg[ERROR_MAX];
	size_t len;
	char *text;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	text = error_text(msg, &len);
	if (!text)
		return respond(c, 500, "application/json", (void *)oom,
			       sizeof(oom) - 1, MHD_RESPMEM_PERSISTENT, NULL,
			       close);
	return respond(c, status, "application/json", text, len,
		       MHD_RESPMEM_MUST_FREE, allow, close);
}

static enum MHD_Result respond_error(struct ctx *c, unsigned status,
				     const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum MHD_Result respond_error(struct ctx *c, unsigned status,
				     const char *fmt, ...)
{
	enum MHD_Result ret;
	va_list ap;

	va_start(ap, fmt);
	ret = respond_error_v(c, status, NULL, false, fmt, ap);
	va_end(ap);
	return ret;
}

static enum MHD_Result respond_error_ex(struct ctx *c, unsigned status,
					const char *allow, bool close,
					const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result respond_error_ex(struct ctx *c, unsigned status,
					const char *allow, bool close,
					const char *fmt, ...)
{
	enum MHD_Result ret;
	va_list ap;

	va_start(ap, fmt);
	ret = respond_error_v(c, status, allow, close, fmt, ap);
	va_end(ap);
	return ret;
}

static enum MHD_Result respond_store_error(struct ctx *c, int rc)
{
	atomic_fetch_add_explicit(&c->srv->store_errors, 1,
				  memory_order_relaxed);
	if (rc == -ENOMEM)
		return respond_error(c, 500, "out of memory");
	return respond_error(c, 503, "store unavailable: %s", hw_strerror(rc));
}

/* ---- routing ---- */

static unsigned method_bit(const char *m)
{
	if (!strcmp(m, "GET") || !strcmp(m, "HEAD"))
		return M_GET;
	if (!strcmp(m, "PUT"))
		return M_PUT;
	if (!strcmp(m, "POST"))
		return M_POST;
	if (!strcmp(m, "DELETE"))
		return M_DELETE;
	return 0;
}

static enum route match(const char *url, struct params *par)
{
	static const struct {
		const char *name;
		enum route list, one;
		unsigned nparams;
	} colls[] = {
		{"visors", R_VISORS, R_VISOR, 1},
		{"relays", R_RELAYS, R_RELAY, 1},
		{"transports", R_TRANSPORTS, R_TRANSPORT, 1},
		{"services", R_SERVICES, R_SERVICE, 2},
		{"routes", R_ROUTES, R_OTHER, 0},
	};

	memset(par, 0, sizeof(*par));
	if (!strcmp(url, "/health"))
		return R_HEALTH;
	if (!strcmp(url, "/metrics"))
		return R_METRICS;
	if (strncmp(url, "/v1/", 4))
		return R_OTHER;
	url += 4;
	for (size_t i = 0; i < sizeof(colls) / sizeof(colls[0]); i++) {
		size_t n = strlen(colls[i].name);
		const char *rest = url + n;
		unsigned k;

		if (strncmp(url, colls[i].name, n) || (*rest && *rest != '/'))
			continue;
		if (!*rest)
			return colls[i].list;
		if (!colls[i].nparams)
			return R_OTHER;
		/* Exactly nparams segments, none empty. */
		for (k = 0; k < colls[i].nparams; k++) {
			const char *seg = rest + 1;
			size_t len = strcspn(seg, "/");

			if (*rest != '/' || len == 0)
				return R_OTHER;
			par->p[k] = seg;
			par->n[k] = len;
			rest = seg + len;
		}
		return *rest ? R_OTHER : colls[i].one;
	}
	return R_OTHER;
}

static void allow_header(enum route r, char *out, size_t outlen)
{
	static const struct { unsigned bit; const char *name; } names[] = {
		{M_GET, "GET, HEAD"}, {M_PUT, "PUT"}, {M_POST, "POST"},
		{M_DELETE, "DELETE"},
	};
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(route_methods[r] & names[i].bit))
			continue;
		used += (size_t)snprintf(out + used, outlen - used, "%s%s",
					 used ? ", " : "", names[i].name);
		if (used >= outlen)
			break;
	}
}

/* ---- parameters ---- */

/* 64 hex characters -> the lowercase key of a public key. */
static int pk_key(const char *s, size_t n, char out[HW_PK_HEXLEN + 1],
		  uint8_t pk[HW_PK_LEN])
{
	uint8_t tmp[HW_PK_LEN];

	if (!pk)
		pk = tmp;
	if (hw_hex_decode(s, n, pk, HW_PK_LEN))
		return -EINVAL;
	hw_hex_encode(pk, HW_PK_LEN, out);
	return 0;
}

static int tp_key(const char *s, size_t n, char out[2 * HW_DISC_TP_ID_LEN + 1],
		  uint8_t id[HW_DISC_TP_ID_LEN])
{
	uint8_t tmp[HW_DISC_TP_ID_LEN];

	if (!id)
		id = tmp;
	if (hw_hex_decode(s, n, id, HW_DISC_TP_ID_LEN))
		return -EINVAL;
	hw_hex_encode(id, HW_DISC_TP_ID_LEN, out);
	return 0;
}

/* [a-z0-9_-]{1,63}, as entry.h wants service types. */
static int type_ok(const char *s, size_t n)
{
	if (n == 0 || n > HW_DISC_STR_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '-'))
			return 0;
	return 1;
}

static const char *query(struct ctx *c, const char *name)
{
	return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND,
					   name);
}

/* An unsigned decimal in lo..hi, or def when absent. */
static int query_uint(struct ctx *c, const char *name, unsigned def,
		      unsigned lo, unsigned hi, unsigned *out)
{
	const char *v = query(c, name);
	unsigned long x = 0;
	size_t i;

	if (!v) {
		*out = def;
		return 0;
	}
	for (i = 0; v[i]; i++) {
		if (v[i] < '0' || v[i] > '9' || i >= 9)
			return -EINVAL;
		x = x * 10 + (unsigned long)(v[i] - '0');
	}
	if (i == 0 || x < lo || x > hi)
		return -EINVAL;
	*out = (unsigned)x;
	return 0;
}

/* ---- reads ---- */

static enum MHD_Result h_health(struct ctx *c)
{
	char *text = malloc(256);
	int n;

	if (!text)
		return MHD_NO;
	n = snprintf(text, 256,
		     "{\"status\":\"ok\",\"version\":\"%s\",\"store\":\"%s\","
		     "\"uptime_s\":%lld}",
		     HW_VERSION, c->srv->store_name,
		     (long long)(time(NULL) - c->srv->started));
	return respond_json_text(c, 200, text, (size_t)n);
}

static int buf_printf(struct hw_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int buf_printf(struct hw_buf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -EINVAL;
	return hw_buf_append(b, line, (size_t)n, LIST_BYTES_MAX);
}

static enum MHD_Result h_metrics(struct ctx *c)
{
	struct hw_disc_server *srv = c->srv;
	struct hw_buf b = {0};
	struct hw_dstore *s = pool_get(srv);
	uint64_t counts[NKINDS];
	bool store_up = s != NULL;
	int rc = 0;

	for (size_t k = 0; k < NKINDS && store_up; k++)
		if (hw_dstore_count(s, stored_kinds[k], &counts[k]))
			store_up = false;
	pool_put(srv, s);

	rc |= buf_printf(&b, "# HELP hw_discovery_requests_total HTTP "
			     "requests answered, by endpoint and status.\n"
			     "# TYPE hw_discovery_requests_total counter\n");
	for (size_t r = 0; r < R_COUNT; r++) {
		for (size_t i = 0; i < S_COUNT; i++) {
			uint64_t n = atomic_load_explicit(
				&srv->requests[r][i], memory_order_relaxed);
			char st[16];

			if (!n)
				continue;
			if (i < S_COUNT - 1)
				snprintf(st, sizeof(st), "%u", statuses[i]);
			else
				snprintf(st, sizeof(st), "other");
			rc |= buf_printf(&b, "hw_discovery_requests_total{"
					     "endpoint=\"%s\",status=\"%s\"} "
					     "%" PRIu64 "\n",
					 route_names[r], st, n);
		}
	}
	if (store_up) {
		rc |= buf_printf(&b, "# HELP hw_discovery_entries Live "
				     "entries in the store, by kind.\n"
				     "# TYPE hw_discovery_entries gauge\n");
		for (size_t k = 0; k < NKINDS; k++)
			rc |= buf_printf(&b,
					 "hw_discovery_entries{kind=\"%s\"} "
					 "%" PRIu64 "\n",
					 hw_dstore_kind_name(stored_kinds[k]),
					 counts[k]);
	}
	rc |= buf_printf(
		&b,
		"# HELP hw_discovery_store_up Whether the store answered "
		"this scrape.\n# TYPE hw_discovery_store_up gauge\n"
		"hw_discovery_store_up %d\n"
		"# HELP hw_discovery_store_errors_total Requests that failed "
		"in the store.\n"
		"# TYPE hw_discovery_store_errors_total counter\n"
		"hw_discovery_store_errors_total %" PRIu64 "\n",
		store_up ? 1 : 0,
		(uint64_t)atomic_load(&srv->store_errors));
	rc |= buf_printf(
		&b,
		"# HELP hw_discovery_expired_total Entries deleted by the "
		"expiry sweep.\n# TYPE hw_discovery_expired_total counter\n"
		"hw_discovery_expired_total %" PRIu64 "\n"
		"# HELP hw_discovery_uptime_seconds Seconds since start.\n"
		"# TYPE hw_discovery_uptime_seconds gauge\n"
		"hw_discovery_uptime_seconds %lld\n",
		(uint64_t)atomic_load(&srv->expired),
		(long long)(time(NULL) - srv->started));
	if (rc) {
		hw_buf_reset(&b);
		return respond_error(c, 500, "out of memory");
	}
	/* b.data is malloc'ed and handed over. */
	return respond(c, 200, "text/plain; version=0.0.4", b.data, b.len,
		       MHD_RESPMEM_MUST_FREE, NULL, false);
}

/* The store key of the entry a single-entry path names, or a 400. */
static enum MHD_Result path_key(struct ctx *c, char key[HW_DSTORE_KEY_MAX],
				enum hw_disc_kind *kind, bool *bad)
{
	const struct params *p = &c->par;
	char pk[HW_PK_HEXLEN + 1];

	*bad = true;
	switch (c->route) {
	case R_VISOR:
	case R_RELAY:
	case R_SERVICE:
		if (pk_key(p->p[0], p->n[0], pk, NULL))
			return respond_error(c, 400, "path: '%.*s' is not a "
					     "64-character hex public key",
					     (int)(p->n[0] > QUOTE_MAX
						   ? QUOTE_MAX : p->n[0]),
					     p->p[0]);
		if (c->route == R_SERVICE) {
			if (!type_ok(p->p[1], p->n[1]))
				return respond_error(
					c, 400, "path: '%.*s' is not a service "
					"type ([a-z0-9_-]{1,63})",
					(int)(p->n[1] > QUOTE_MAX ? QUOTE_MAX
								  : p->n[1]),
					p->p[1]);
			snprintf(key, HW_DSTORE_KEY_MAX, "%s/%.*s", pk,
				 (int)p->n[1], p->p[1]);
			*kind = HW_DISC_SERVICE;
		} else {
			memcpy(key, pk, sizeof(pk));
			*kind = c->route == R_VISOR ? HW_DISC_VISOR
						    : HW_DISC_RELAY;
		}
		break;
	case R_TRANSPORT:
		if (tp_key(p->p[0], p->n[0], key, NULL))
			return respond_error(c, 400, "path: '%.*s' is not a "
					     "32-character hex transport ID",
					     (int)(p->n[0] > QUOTE_MAX
						   ? QUOTE_MAX : p->n[0]),
					     p->p[0]);
		*kind = HW_DISC_TRANSPORT;
		break;
	default:
		return respond_error(c, 500, "internal error: no key");
	}
	*bad = false;
	return MHD_YES;
}

static enum MHD_Result h_get_one(struct ctx *c)
{
	char key[HW_DSTORE_KEY_MAX];
	enum hw_disc_kind kind;
	enum MHD_Result ret;
	struct hw_dstore *s;
	char *json = NULL;
	size_t len = 0;
	bool bad;
	int rc;

	ret = path_key(c, key, &kind, &bad);
	if (bad)
		return ret;
	if (!(s = pool_get(c->srv)))
		return respond_store_error(c, -EIO);
	rc = hw_dstore_get(s, kind, key, &json, &len);
	pool_put(c->srv, s);
	if (rc == -ENOENT)
		return respond_error(c, 404, "no %s %s",
				     hw_dstore_kind_name(kind), key);
	if (rc)
		return respond_store_error(c, rc);
	return respond_json_text(c, 200, json, len);
}

struct list_out {
	struct hw_buf b;
	size_t n;
};

static int list_each(const char *json, size_t len, void *ud)
{
	struct list_out *lo = ud;
	int rc;

	if (lo->n++ && (rc = hw_buf_append(&lo->b, ",", 1, LIST_BYTES_MAX)))
		return rc;
	return hw_buf_append(&lo->b, json, len, LIST_BYTES_MAX);
}

static enum MHD_Result h_list(struct ctx *c)
{
	struct list_out lo = {0};
	char filter[HW_PK_HEXLEN + 1], head[32];
	const char *f = NULL, *name;
	enum hw_disc_kind kind;
	struct hw_dstore *s;
	unsigned limit;
	int rc;

	switch (c->route) {
	case R_VISORS: kind = HW_DISC_VISOR; name = "visors"; break;
	case R_RELAYS: kind = HW_DISC_RELAY; name = "relays"; break;
	case R_TRANSPORTS: kind = HW_DISC_TRANSPORT; name = "transports"; break;
	default: kind = HW_DISC_SERVICE; name = "services"; break;
	}
	if (query_uint(c, "limit", HW_DISC_LIST_DEFAULT, 1, HW_DISC_LIST_MAX,
		       &limit))
		return respond_error(c, 400, "limit: not a number in 1..%d",
				     HW_DISC_LIST_MAX);
	if (kind == HW_DISC_TRANSPORT && (f = query(c, "edge"))) {
		if (pk_key(f, strlen(f), filter, NULL))
			return respond_error(c, 400, "edge: '%.*s' is not a "
					     "64-character hex public key",
					     QUOTE_MAX, f);
		f = filter;
	} else if (kind == HW_DISC_SERVICE && (f = query(c, "type"))) {
		if (!type_ok(f, strlen(f)))
			return respond_error(c, 400, "type: '%.*s' is not a "
					     "service type ([a-z0-9_-]{1,63})",
					     QUOTE_MAX, f);
	}
	snprintf(head, sizeof(head), "{\"%s\":[", name);
	if (hw_buf_append(&lo.b, head, strlen(head), LIST_BYTES_MAX))
		return respond_error(c, 500, "out of memory");
	if (!(s = pool_get(c->srv))) {
		hw_buf_reset(&lo.b);
		return respond_store_error(c, -EIO);
	}
	rc = hw_dstore_list(s, kind, f, limit, list_each, &lo);
	pool_put(c->srv, s);
	if (!rc)
		rc = hw_buf_append(&lo.b, "]}", 2, LIST_BYTES_MAX);
	if (rc) {
		hw_buf_reset(&lo.b);
		if (rc == -E2BIG)
			return respond_error(c, 500, "answer too large; use a "
					     "smaller limit");
		return respond_store_error(c, rc);
	}
	return respond_json_text(c, 200, lo.b.data, lo.b.len);
}

struct edges {
	struct hw_rf_edge *v;
	size_t n, cap;
	size_t skipped;
};

/* Loads one stored transport into the route finder's edge list. */
static int edge_each(const char *json, size_t len, void *ud)
{
	struct edges *es = ud;
	struct hw_disc_entry e;
	struct hw_rf_edge *edge;
	json_error_t jerr;
	json_t *j;
	int rc;

	if (es->n == es->cap) {
		size_t cap = es->cap ? 2 * es->cap : 256;
		void *v;

		if (cap > ROUTE_MAX_EDGES)
			cap = ROUTE_MAX_EDGES;
		if (cap == es->cap)
			return -E2BIG;
		v = realloc(es->v, cap * sizeof(*es->v));
		if (!v)
			return -ENOMEM;
		es->v = v;
		es->cap = cap;
	}
	j = json_loadb(json, len, 0, &jerr);
	rc = j ? hw_disc_entry_from_json(&e, HW_DISC_TRANSPORT, j, NULL, 0)
	       : -EINVAL;
	json_decref(j);
	if (rc) {
		/* Only what we validated was stored; skip, do not fail. */
		es->skipped++;
		return 0;
	}
	edge = &es->v[es->n++];
	memset(edge, 0, sizeof(*edge));
	memcpy(edge->id, e.u.tp.id, sizeof(edge->id));
	memcpy(edge->a, e.u.tp.edges[0], sizeof(edge->a));
	memcpy(edge->b, e.u.tp.edges[1], sizeof(edge->b));
	edge->rtt_us = e.u.tp.rtt_us;
	snprintf(edge->type, sizeof(edge->type), "%s", e.u.tp.type);
	return 0;
}

static json_t *path_json(const struct hw_rf_path *p,
			 const struct hw_rf_edge *edges)
{
	json_t *o = NULL, *tps = json_array();
	char id[2 * HW_DISC_TP_ID_LEN + 1], from[HW_PK_HEXLEN + 1],
		to[HW_PK_HEXLEN + 1];

	for (unsigned i = 0; tps && i < p->nhops; i++) {
		const struct hw_rf_edge *e = &edges[p->hops[i].edge];

		hw_hex_encode(e->id, sizeof(e->id), id);
		hw_pk_format(p->hops[i].forward ? e->a : e->b, from);
		hw_pk_format(p->hops[i].forward ? e->b : e->a, to);
		if (json_array_append_new(tps, json_pack("{s:s,s:s,s:s,s:s}",
							 "id", id, "type",
							 e->type, "from", from,
							 "to", to))) {
			json_decref(tps);
			return NULL;
		}
	}
	if (tps)
		o = json_pack("{s:I,s:o,s:o}", "hops", (json_int_t)p->nhops,
			      "rtt_us",
			      p->rtt_known ? json_integer((json_int_t)p->rtt_us)
					   : json_null(),
			      "transports", tps);
	return o;
}

static enum MHD_Result pk_param(struct ctx *c, const char *name,
				uint8_t pk[HW_PK_LEN], bool *bad)
{
	const char *v = query(c, name);
	int rc;

	*bad = true;
	if (!v)
		return respond_error(c, 400, "%s: missing", name);
	rc = hw_pk_parse(v, strlen(v), pk);
	if (rc == HW_EBADKEY)
		return respond_error(c, 400, "%s: not a valid Ed25519 public "
				     "key", name);
	if (rc)
		return respond_error(c, 400, "%s: '%.*s' is not a "
				     "64-character hex public key",
				     name, QUOTE_MAX, v);
	*bad = false;
	return MHD_YES;
}

/* Transports a route query leaves out (avoid=ID,ID,...). */
#define ROUTE_MAX_AVOID 16

/* Parses avoid: up to ROUTE_MAX_AVOID transport IDs (hex), comma
 * separated. Returns the count, or -1 when malformed. */
static int avoid_param(struct ctx *c, uint8_t ids[][HW_DISC_TP_ID_LEN])
{
	const char *v = query(c, "avoid");
	int n = 0;

	if (!v)
		return 0;
	for (;;) {
		const char *end = strchr(v, ',');
		size_t len = end ? (size_t)(end - v) : strlen(v);

		if (n == ROUTE_MAX_AVOID || len != 2 * HW_DISC_TP_ID_LEN ||
		    hw_hex_decode(v, len, ids[n], HW_DISC_TP_ID_LEN))
			return -1;
		n++;
		if (!end)
			return n;
		v = end + 1;
	}
}

/* Drops the edges named in avoid, keeping the order of the rest. */
static void edges_avoid(struct edges *es, uint8_t ids[][HW_DISC_TP_ID_LEN],
			int navoid)
{
	size_t keep = 0;

	for (size_t i = 0; i < es->n; i++) {
		int drop = 0;

		for (int k = 0; k < navoid && !drop; k++)
			drop = !memcmp(es->v[i].id, ids[k], HW_DISC_TP_ID_LEN);
		if (!drop)
			es->v[keep++] = es->v[i];
	}
	es->n = keep;
}

static enum MHD_Result h_routes(struct ctx *c)
{
	uint8_t avoid[ROUTE_MAX_AVOID][HW_DISC_TP_ID_LEN];
	int navoid;
	uint8_t src[HW_PK_LEN], dst[HW_PK_LEN];
	struct hw_rf_path paths[HW_RF_MAX_K];
	struct edges es = {0};
	unsigned k, min_hops, max_hops, npaths = 0;
	json_t *list = NULL;
	enum MHD_Result ret;
	struct hw_dstore *s;
	bool bad;
	int rc;

	ret = pk_param(c, "src", src, &bad);
	if (bad)
		return ret;
	ret = pk_param(c, "dst", dst, &bad);
	if (bad)
		return ret;
	if (query_uint(c, "k", 3, 1, HW_RF_MAX_K, &k))
		return respond_error(c, 400, "k: not a number in 1..%d",
				     HW_RF_MAX_K);
	if (query_uint(c, "min_hops", 1, 1, HW_RF_MAX_HOPS, &min_hops))
		return respond_error(c, 400, "min_hops: not a number in 1..%d",
				     HW_RF_MAX_HOPS);
	if (query_uint(c, "max_hops", 8, 1, HW_RF_MAX_HOPS, &max_hops))
		return respond_error(c, 400, "max_hops: not a number in 1..%d",
				     HW_RF_MAX_HOPS);
	if (min_hops > max_hops)
		return respond_error(c, 400, "min_hops %u is above max_hops %u",
				     min_hops, max_hops);
	if (!memcmp(src, dst, HW_PK_LEN))
		return respond_error(c, 400, "src and dst are the same visor");
	if ((navoid = avoid_param(c, avoid)) < 0)
		return respond_error(c, 400, "avoid: not a list of at most %d "
				     "transport IDs (hex, comma separated)",
				     ROUTE_MAX_AVOID);

	if (!(s = pool_get(c->srv)))
		return respond_store_error(c, -EIO);
	rc = hw_dstore_list(s, HW_DISC_TRANSPORT, NULL, ROUTE_MAX_EDGES,
			    edge_each, &es);
	pool_put(c->srv, s);
	if (rc) {
		free(es.v);
		return respond_store_error(c, rc);
	}
	if (es.skipped)
		hw_log(HW_LOG_WARN, "discovery", "routes: %zu stored "
		       "transports do not decode", es.skipped);
	edges_avoid(&es, avoid, navoid);
	rc = hw_rf_find(es.v, es.n, src, dst, k, min_hops, max_hops, paths,
			&npaths);
	if (rc) {
		free(es.v);
		if (rc == -EINVAL)
			return respond_error(c, 400, "bad route query");
		return respond_error(c, 500, "route finder: %s",
				     hw_strerror(rc));
	}
	list = json_array();
	for (unsigned i = 0; list && i < npaths; i++) {
		if (json_array_append_new(list, path_json(&paths[i], es.v))) {
			json_decref(list);
			list = NULL;
		}
	}
	free(es.v);
	if (!list)
		return respond_error(c, 500, "out of memory");
	return respond_json(c, 200, json_pack("{s:o}", "paths", list));
}

static enum MHD_Result handle_get(struct ctx *c)
{
	switch (c->route) {
	case R_HEALTH: return h_health(c);
	case R_METRICS: return h_metrics(c);
	case R_VISOR:
	case R_RELAY:
	case R_TRANSPORT:
	case R_SERVICE: return h_get_one(c);
	case R_ROUTES: return h_routes(c);
	default: return h_list(c);
	}
}

/* ---- writes ---- */

static enum hw_disc_kind write_kind(enum route r, unsigned m)
{
	switch (r) {
	case R_VISOR: return HW_DISC_VISOR;
	case R_RELAY: return HW_DISC_RELAY;
	case R_TRANSPORTS: return HW_DISC_TRANSPORT;
	case R_TRANSPORT: return HW_DISC_TRANSPORT_DEL;
	default: return m == M_PUT ? HW_DISC_SERVICE : HW_DISC_SERVICE_DEL;
	}
}

/* Check 4 of the spec: the path names what the body is about. */
static enum MHD_Result check_path(struct ctx *c, const struct hw_disc_entry *e,
				  bool *bad)
{
	const struct params *p = &c->par;
	uint8_t pk[HW_PK_LEN], id[HW_DISC_TP_ID_LEN];
	char hex[HW_PK_HEXLEN + 1];

	*bad = true;
	switch (e->kind) {
	case HW_DISC_VISOR:
	case HW_DISC_RELAY:
	case HW_DISC_SERVICE:
	case HW_DISC_SERVICE_DEL:
		if (pk_key(p->p[0], p->n[0], hex, pk))
			return respond_error(c, 400, "path: '%.*s' is not a "
					     "64-character hex public key",
					     (int)(p->n[0] > QUOTE_MAX
						   ? QUOTE_MAX : p->n[0]),
					     p->p[0]);
		if (memcmp(pk, e->signer, HW_PK_LEN))
			return respond_error(c, 400, "pk: does not match the "
					     "public key in the path");
		if ((e->kind == HW_DISC_SERVICE ||
		     e->kind == HW_DISC_SERVICE_DEL) &&
		    (p->n[1] != strlen(e->u.svc.type) ||
		     memcmp(p->p[1], e->u.svc.type, p->n[1])))
			return respond_error(c, 400, "type: does not match "
					     "the service type in the path");
		break;
	case HW_DISC_TRANSPORT_DEL:
		if (tp_key(p->p[0], p->n[0], hex, id))
			return respond_error(c, 400, "path: '%.*s' is not a "
					     "32-character hex transport ID",
					     (int)(p->n[0] > QUOTE_MAX
						   ? QUOTE_MAX : p->n[0]),
					     p->p[0]);
		if (memcmp(id, e->u.tp_id, HW_DISC_TP_ID_LEN))
			return respond_error(c, 400, "id: does not match the "
					     "transport ID in the path");
		break;
	default:
		break;
	}
	*bad = false;
	return MHD_YES;
}

static enum MHD_Result handle_write(struct ctx *c, unsigned m,
				    const char *body, size_t len)
{
	struct hw_disc_server *srv = c->srv;
	char err[ERROR_MAX], key[HW_DSTORE_KEY_MAX], signer[HW_PK_HEXLEN + 1],
		idx[2][HW_PK_HEXLEN + 1], ok[64];
	struct hw_dstore_write w = {0};
	struct hw_dstore_result res;
	struct hw_disc_entry e;
	struct hw_dstore *s;
	enum MHD_Result ret;
	json_error_t jerr;
	json_t *j, *o;
	char *text = NULL;
	uint64_t now;
	bool bad;
	int rc, n;

	j = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return respond_error(c, 400, "bad JSON: %s", jerr.text);
	rc = hw_disc_entry_from_json(&e, write_kind(c->route, m), j, err,
				     sizeof(err));
	json_decref(j);
	if (rc)
		return respond_error(c, 400, "%s", err[0] ? err : "bad entry");
	ret = check_path(c, &e, &bad);
	if (bad)
		return ret;
	now = (uint64_t)time(NULL);
	if ((e.ts > now ? e.ts - now : now - e.ts) > srv->window_s)
		return respond_error(c, 400, "stale timestamp: ts %" PRIu64
				     " is outside +-%u s of the server clock "
				     "%" PRIu64, e.ts, srv->window_s, now);
	if (hw_disc_entry_verify(&e))
		return respond_error(c, 401, "bad signature");

	hw_pk_format(e.signer, signer);
	w.signer = e.signer;
	w.seq = e.seq;
	w.key = key;
	switch (e.kind) {
	case HW_DISC_VISOR:
	case HW_DISC_RELAY:
		memcpy(key, signer, sizeof(signer));
		break;
	case HW_DISC_TRANSPORT:
		hw_hex_encode(e.u.tp.id, HW_DISC_TP_ID_LEN, key);
		hw_pk_format(e.u.tp.edges[0], idx[0]);
		hw_pk_format(e.u.tp.edges[1], idx[1]);
		w.idx[0] = idx[0];
		w.idx[1] = idx[1];
		break;
	case HW_DISC_TRANSPORT_DEL:
		hw_hex_encode(e.u.tp_id, HW_DISC_TP_ID_LEN, key);
		w.need_idx = signer;
		break;
	case HW_DISC_SERVICE:
	case HW_DISC_SERVICE_DEL:
		snprintf(key, sizeof(key), "%s/%s", signer, e.u.svc.type);
		if (e.kind == HW_DISC_SERVICE)
			w.idx[0] = e.u.svc.type;
		break;
	}
	if (e.kind == HW_DISC_TRANSPORT_DEL || e.kind == HW_DISC_SERVICE_DEL) {
		w.op = HW_DSTORE_DEL;
		w.kind = e.kind == HW_DISC_TRANSPORT_DEL ? HW_DISC_TRANSPORT
							 : HW_DISC_SERVICE;
	} else {
		/* Stored in our own serialisation: one spelling per
		 * entry, whatever whitespace or key order came in. */
		o = hw_disc_entry_to_json(&e);
		text = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (!text)
			return respond_error(c, 500, "out of memory");
		w.op = HW_DSTORE_PUT;
		w.kind = e.kind;
		w.json = text;
		w.json_len = strlen(text);
		w.expires_ms = hw_dstore_now_ms() + (int64_t)srv->ttl_s * 1000;
	}

	if (!(s = pool_get(srv))) {
		free(text);
		return respond_store_error(c, -EIO);
	}
	rc = hw_dstore_write(s, &w, &res);
	pool_put(srv, s);
	free(text);
	if (rc)
		return respond_store_error(c, rc);
	switch (res.outcome) {
	case HW_DSTORE_OK:
		break;
	case HW_DSTORE_REPLAY:
		return respond_error(c, 409, "replayed sequence number %" PRIu64
				     " (last accepted %" PRIu64 ")",
				     e.seq, res.last_seq);
	case HW_DSTORE_NOENT:
		if (e.kind == HW_DISC_TRANSPORT_DEL)
			return respond_error(c, 404, "no transport %s", key);
		return respond_error(c, 404, "no service %s of %s",
				     e.u.svc.type, signer);
	case HW_DSTORE_DENIED:
		return respond_error(c, 403, "signer %s is not an edge of "
				     "transport %s", signer, key);
	}
	hw_log(HW_LOG_DEBUG, "discovery", "%s %s by %s seq %" PRIu64,
	       w.op == HW_DSTORE_DEL ? "deleted" : "stored",
	       hw_dstore_kind_name(w.kind), signer, e.seq);
	n = snprintf(ok, sizeof(ok), "{\"ok\":true,\"seq\":%" PRIu64 "}",
		     e.seq);
	text = malloc((size_t)n + 1);
	if (!text)
		return MHD_NO;
	memcpy(text, ok, (size_t)n + 1);
	return respond_json_text(c, 200, text, (size_t)n);
}

/* ---- libmicrohttpd callbacks ---- */

/* Whether a Content-Length value (MHD checked it is a number) is over
 * max. */
static bool body_length_over(const char *cl, unsigned long max)
{
	size_t digits = 0;

	while (*cl == '0')
		cl++;
	while (cl[digits] >= '0' && cl[digits] <= '9')
		digits++;
	if (digits > 9)
		return true;
	return strtoul(cl, NULL, 10) > max;
}

/* A GET's request state: there is no body to keep. */
static char get_marker;

/* MHD calls this once when the headers are in, once per piece of body,
 * and once more at the end. The answer is queued on that last call: one
 * queued earlier makes MHD close the connection (it cannot know the
 * request was read through), which would defeat keep-alive. */
static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
				 const char *url, const char *method,
				 const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct ctx c = {.srv = cls, .conn = conn};
	struct upload *u = *con_cls;
	unsigned m = method_bit(method);
	const char *cl;
	char allow[64];

	if (!u) {
		if (m == M_GET) {
			*con_cls = &get_marker;
			return MHD_YES;
		}
		u = calloc(1, sizeof(*u));
		if (!u)
			return MHD_NO;
		u->body.max = HW_DISC_MAX_BODY;
		u->body.max_discard = MAX_DISCARD;
		*con_cls = u;
		/* Far too big to read: refused at once, and MHD closes the
		 * connection after the answer. */
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && body_length_over(cl, MAX_DISCARD)) {
			c.route = match(url, &c.par);
			return respond_error_ex(&c, 413, NULL, true,
						"request body exceeds %d bytes",
						HW_DISC_MAX_BODY);
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		/* A GET with a body is not something our clients send. */
		if ((void *)u == (void *)&get_marker ||
		    !hw_capped_append(&u->body, upload_data,
				      *upload_data_size))
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	c.route = match(url, &c.par);
	if (c.route == R_OTHER)
		return respond_error(&c, 404, "no such endpoint: %.*s",
				     QUOTE_MAX, url);
	if (!(route_methods[c.route] & m)) {
		allow_header(c.route, allow, sizeof(allow));
		return respond_error_ex(&c, 405, allow, false,
					"method %.*s not allowed on %s "
					"(allowed: %s)",
					16, method, route_names[c.route],
					allow);
	}
	if (m == M_GET)
		return handle_get(&c);
	if (u->body.too_big)
		return respond_error(&c, 413, "request body exceeds %d bytes",
				     HW_DISC_MAX_BODY);
	return handle_write(&c, m, u->body.body.data, u->body.body.len);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
			 void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct upload *u = *con_cls;

	*con_cls = NULL;
	if (!u || (void *)u == (void *)&get_marker)
		return;
	hw_buf_reset(&u->body.body);
	free(u);
}

/* ---- sweeper ---- */

int hw_disc_server_sweep(struct hw_disc_server *srv, uint64_t *removed)
{
	struct hw_dstore *s;
	uint64_t n = 0;
	int rc;

	if (!srv)
		return -EINVAL;
	if (!(s = pool_get(srv)))
		return -EIO;
	rc = hw_dstore_sweep(s, &n);
	pool_put(srv, s);
	if (rc == 0) {
		atomic_fetch_add(&srv->expired, n);
		if (n)
			hw_log(HW_LOG_DEBUG, "discovery",
			       "sweep: %" PRIu64 " expired entries deleted",
			       n);
	}
	if (removed)
		*removed = n;
	return rc;
}

static void *sweep_main(void *arg)
{
	struct hw_disc_server *srv = arg;
	struct timespec next;

	pthread_mutex_lock(&srv->sweep_mu);
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		next.tv_sec += srv->sweep_ms / 1000;
		next.tv_nsec += (long)(srv->sweep_ms % 1000) * 1000000;
		if (next.tv_nsec >= 1000000000) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000;
		}
		while (!srv->stopping &&
		       pthread_cond_timedwait(&srv->sweep_cond, &srv->sweep_mu,
					      &next) != ETIMEDOUT)
			;
		if (srv->stopping)
			break;
		pthread_mutex_unlock(&srv->sweep_mu);
		if (hw_disc_server_sweep(srv, NULL))
			hw_log(HW_LOG_WARN, "discovery",
			       "sweep: the store failed; retrying later");
		pthread_mutex_lock(&srv->sweep_mu);
	}
	pthread_mutex_unlock(&srv->sweep_mu);
	return NULL;
}

/* ---- life cycle ---- */

static int listen_tcp(const char *listen_addr, int *out, uint16_t *bound,
		      char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
			*res = NULL, *ai;
	char host[HW_HOST_MAX], port[8];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	uint16_t p;
	int fd = -1, rc, one = 1, saved = 0;

	if (hw_addr_split(listen_addr, host, &p)) {
		snprintf(err, errlen, "'%s' is not HOST:PORT", listen_addr);
		return -EINVAL;
	}
	snprintf(port, sizeof(port), "%u", p);
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "%s: %s", listen_addr, gai_strerror(rc));
		return -EINVAL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 1024) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", listen_addr,
			 strerror(saved));
		return -saved;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		*bound = ntohs(ss.ss_family == AF_INET6
				       ? ((struct sockaddr_in6 *)&ss)->sin6_port
				       : ((struct sockaddr_in *)&ss)->sin_port);
	else
		*bound = p;
	*out = fd;
	return 0;
}

int hw_disc_server_new(struct hw_disc_server **out,
		       const struct hw_disc_server_config *cfg,
		       struct hw_dstore *store, char *err, size_t errlen)
{
	struct hw_disc_server *srv = NULL;
	pthread_condattr_t ca;
	int fd = -1, rc;

	if (!out || !cfg || !store || !cfg->listen) {
		hw_dstore_free(store);
		return -EINVAL;
	}
	*out = NULL;
	if (cfg->ttl_s == 0 || cfg->ts_window_s == 0 || cfg->threads == 0 ||
	    cfg->threads > HW_DISC_MAX_THREADS) {
		snprintf(err, errlen, "ttl, ts window and threads (1..%d) must "
			 "be positive", HW_DISC_MAX_THREADS);
		hw_dstore_free(store);
		return -EINVAL;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		hw_dstore_free(store);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	srv->all[srv->nall++] = store;
	srv->idle[srv->nidle++] = store;
	srv->store_name = hw_dstore_name(store);
	srv->ttl_s = cfg->ttl_s;
	srv->window_s = cfg->ts_window_s;
	srv->sweep_ms = cfg->sweep_interval_ms ? cfg->sweep_interval_ms
					       : HW_DISC_SWEEP_INTERVAL_MS;
	srv->started = time(NULL);
	pthread_mutex_init(&srv->pool_mu, NULL);
	pthread_mutex_init(&srv->sweep_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->sweep_cond, &ca);
	pthread_condattr_destroy(&ca);

	if ((rc = listen_tcp(cfg->listen, &fd, &srv->port, err, errlen)))
		goto out;
	/* No MHD_USE_ERROR_LOG: library code never prints. */
	srv->mhd = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			MHD_USE_TURBO,
		0, NULL, NULL, on_access, srv, MHD_OPTION_LISTEN_SOCKET,
		(MHD_socket)fd, MHD_OPTION_THREAD_POOL_SIZE,
		(unsigned int)cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned int)MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)CONN_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED,
		on_completed, srv, MHD_OPTION_END);
	if (!srv->mhd) {
		snprintf(err, errlen, "cannot start the HTTP server on %s",
			 cfg->listen);
		rc = -EIO;
		goto out;
	}
	fd = -1; /* MHD closes it when it stops */
	rc = pthread_create(&srv->sweeper, NULL, sweep_main, srv);
	if (rc) {
		snprintf(err, errlen, "cannot start the sweep thread: %s",
			 strerror(rc));
		rc = -rc;
		goto out;
	}
	srv->sweeper_started = true;
	*out = srv;
	srv = NULL;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	hw_disc_server_free(srv);
	return rc;
}

void hw_disc_server_free(struct hw_disc_server *srv)
{
	if (!srv)
		return;
	/* Joins the workers; requests under way finish first. */
	if (srv->mhd)
		MHD_stop_daemon(srv->mhd);
	if (srv->sweeper_started) {
		pthread_mutex_lock(&srv->sweep_mu);
		srv->stopping = true;
		pthread_cond_signal(&srv->sweep_cond);
		pthread_mutex_unlock(&srv->sweep_mu);
		pthread_join(srv->sweeper, NULL);
	}
	/* Clones first: all[0] is the store they were made from. */
	for (unsigned i = srv->nall; i-- > 0;)
		hw_dstore_free(srv->all[i]);
	pthread_cond_destroy(&srv->sweep_cond);
	pthread_mutex_destroy(&srv->sweep_mu);
	pthread_mutex_destroy(&srv->pool_mu);
	free(srv);
}

uint16_t hw_disc_server_port(const struct hw_disc_server *srv)
{
	return srv ? srv->port : 0;
}
