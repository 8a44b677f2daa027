/* The chat's web interface and JSON API (docs/chat.md), served by
 * libmicrohttpd with one thread per connection.
 *
 *   GET  /          the page (page.c)
 *   GET  /info      {"pk": LOCAL_HEX, "port": N}
 *   GET  /peers     [{pk, last_time_ms, count}], most recent first
 *   GET  /messages  [?peer=PK][&after=ID][&limit=N] -> [{id, peer,
 *                   direction, text, time_ms[, state]}], oldest first
 *   POST /message   {"recipient": PK, "message": TEXT} -> {"id": N,
 *                   "state": "pending"} (net.c delivers it)
 *   GET  /events    text/event-stream of new messages
 *
 * A thread per connection because /events blocks: its content callback
 * waits for new messages (hw_chat_store_wait) and sends a keepalive
 * comment every 15 s. Connections are bounded (64), event streams too (32; more get
 * 503), and so are bodies (16 KiB; 413 beyond).
 *
 * The server listens on loopback by default, where any web page the user
 * visits could also send requests to it. So: a Host header must name an
 * IP address, "localhost" or the --http host (a DNS-rebinding page cannot
 * read our answers), and a POST carrying an Origin header must come from
 * this server's own origin (another page cannot send messages as the
 * user). Clients that are not browsers send no Origin and are not
 * affected. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "chat.h"

#define HTTP_MAX_CONNECTIONS 64
#define HTTP_MAX_EVENT_CLIENTS 32
#define HTTP_TIMEOUT_S 60
/* A body over HW_CHAT_BODY_MAX is read and dropped up to this size so
 * that a client still sending gets its 413 rather than a reset; past it
 * (or announced past it) the connection is closed after the answer. */
#define HTTP_MAX_DISCARD (16 * HW_CHAT_BODY_MAX)
#define HTTP_KEEPALIVE_MS 15000
#define HTTP_EVENT_BATCH 32
#define HTTP_EVENT_BLOCK 4096
#define HTTP_MESSAGES_DEFAULT 500
#define HTTP_MESSAGES_MAX 1000
#define HTTP_HOST_MAX 256
#define HTTP_ERROR_MAX 768

struct hw_chat_http {
	struct MHD_Daemon *mhd;
	struct hw_chat_net *net;
	struct hw_chat_store *st;
	char pk[HW_APP_PK_HEX + 1];
	uint16_t app_port;
	uint16_t port;
	char host[HTTP_HOST_MAX]; /* of --http, for the Host check */

	pthread_mutex_t mu;
	/* Under mu: */
	unsigned nevents;
	bool stopping;
};

/* One request (MHD's con_cls); its connection's thread only. */
struct http_req {
	char *body; /* HW_CHAT_BODY_MAX bytes once something arrived */
	size_t len;
	size_t seen; /* body bytes received, kept or not */
	bool too_big;
};

/* One /events stream: the response's content callback state. */
struct event_client {
	struct hw_chat_http *h;
	int64_t last_id;
	int64_t keepalive_at;
	bool started;
	char *out; /* text not yet handed to MHD: out[off..len) */
	size_t off, len, cap;
};

static const char oom_body[] = "{\"error\":\"out of memory\"}";

static void add_common_headers(struct MHD_Response *r)
{
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
}

/* Queues text (malloc'ed, taken over; NULL: out of memory). */
static enum MHD_Result reply_text(struct MHD_Connection *conn,
				  unsigned status, const char *ctype,
				  char *text, bool close, const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (text)
		r = MHD_create_response_from_buffer(strlen(text), text,
						    MHD_RESPMEM_MUST_FREE);
	else
		r = NULL;
	if (!r) {
		free(text);
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		ctype = "application/json";
		r = MHD_create_response_from_buffer(
			sizeof(oom_body) - 1, (void *)oom_body,
			MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
	}
	add_common_headers(r);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (close)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Answers body (reference taken over) as JSON. */
static enum MHD_Result reply_json(struct MHD_Connection *conn,
				  unsigned status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY)
			  : NULL;

	json_decref(body);
	return reply_text(conn, status, "application/json", text, false,
			  NULL);
}

/* {"error": msg}; text from the network that is not UTF-8 becomes '?'
 * (jansson refuses it). */
static char *error_text(const char *msg)
{
	json_t *s = json_string(msg), *o;
	char *text;

	if (!s) {
		char clean[HTTP_ERROR_MAX];
		size_t i;

		for (i = 0; msg[i] && i < sizeof(clean) - 1; i++)
			clean[i] = (unsigned char)msg[i] < 0x80 ? msg[i] : '?';
		clean[i] = '\0';
		s = json_string(clean);
	}
	o = s ? json_pack("{s:o}", "error", s) : NULL;
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

static enum MHD_Result reply_error(struct MHD_Connection *conn,
				   unsigned status, bool close,
				   const char *allow, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result reply_error(struct MHD_Connection *conn,
				   unsigned status, bool close,
				   const char *allow, const char *fmt, ...)
{
	char msg[HTTP_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return reply_text(conn, status, "application/json", error_text(msg),
			  close, allow);
}

static bool stopping(struct hw_chat_http *h)
{
	bool s;

	pthread_mutex_lock(&h->mu);
	s = h->stopping;
	pthread_mutex_unlock(&h->mu);
	return s;
}

/* --- checks on the request ------------------------------------------- */

/* Whether the Host header names this server in a way a DNS-rebinding
 * page cannot: an IP address, localhost, or the --http host. */
static bool host_ok(const struct hw_chat_http *h, const char *host)
{
	char name[HTTP_HOST_MAX];
	unsigned char addr[sizeof(struct in6_addr)];
	const char *end;
	size_t n;

	if (!host)
		return true; /* HTTP/1.0 */
	if (host[0] == '[') {
		end = strchr(host, ']');
		if (!end || (end[1] && end[1] != ':'))
			return false;
		n = (size_t)(end - host - 1);
		if (n == 0 || n >= sizeof(name))
			return false;
		memcpy(name, host + 1, n);
		name[n] = '\0';
		return inet_pton(AF_INET6, name, addr) == 1;
	}
	end = strrchr(host, ':');
	n = end ? (size_t)(end - host) : strlen(host);
	if (n == 0 || n >= sizeof(name))
		return false;
	memcpy(name, host, n);
	name[n] = '\0';
	return inet_pton(AF_INET, name, addr) == 1 ||
	       !strcasecmp(name, "localhost") || !strcasecmp(name, h->host);
}

/* Whether a POST comes from our own page or from a client that is not a
 * browser (no Origin). */
static bool origin_ok(struct MHD_Connection *conn)
{
	const char *origin, *host;

	origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
	if (!origin)
		return true;
	host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					   MHD_HTTP_HEADER_HOST);
	return host && !strncasecmp(origin, "http://", 7) &&
	       !strcasecmp(origin + 7, host);
}

/* Whether a Content-Length value (MHD checked it is a number) is over
 * max. */
static bool length_over(const char *cl, unsigned long max)
{
	size_t digits = 0;

	while (*cl == '0')
		cl++;
	while (cl[digits] >= '0' && cl[digits] <= '9')
		digits++;
	return digits > 9 || strtoul(cl, NULL, 10) > max;
}

/* Parses a decimal number in min..max (digits only). */
static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *v)
{
	int64_t x = 0;
	size_t i;

	if (!s || !*s || strlen(s) > 18)
		return false;
	for (i = 0; s[i]; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		x = x * 10 + (s[i] - '0');
	}
	if (x < min || x > max)
		return false;
	*v = x;
	return true;
}

static const char *query(struct MHD_Connection *conn, const char *name)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
						    name);

	return v && *v ? v : NULL;
}

/* --- handlers ---------------------------------------------------------- */

static enum MHD_Result get_page(struct MHD_Connection *conn)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(strlen(hw_chat_page),
					    (void *)hw_chat_page,
					    MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	add_common_headers(r);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/html; charset=utf-8");
	/* Everything is inline; nothing may load from elsewhere, and no
	 * other site may frame the page (clicking Send for the user). */
	MHD_add_response_header(r, "Content-Security-Policy",
				"default-src 'none'; "
				"script-src 'unsafe-inline'; "
				"style-src 'unsafe-inline'; "
				"connect-src 'self'; img-src data:; "
				"base-uri 'none'; form-action 'none'; "
				"frame-ancestors 'none'");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result get_info(struct hw_chat_http *h,
				struct MHD_Connection *conn)
{
	return reply_json(conn, MHD_HTTP_OK,
			  json_pack("{s:s, s:i}", "pk", h->pk, "port",
				    (int)h->app_port));
}

static enum MHD_Result get_peers(struct hw_chat_http *h,
				 struct MHD_Connection *conn)
{
	json_t *peers = hw_chat_store_peers(h->st);

	if (!peers)
		return reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, false,
				   NULL, "cannot read the history");
	return reply_json(conn, MHD_HTTP_OK, peers);
}

static enum MHD_Result get_messages(struct hw_chat_http *h,
				    struct MHD_Connection *conn)
{
	const char *peer_s = query(conn, "peer"), *after_s = query(conn, "after"),
		   *limit_s = query(conn, "limit");
	char peer[HW_APP_PK_HEX + 1];
	int64_t after = -1, limit = HTTP_MESSAGES_DEFAULT;
	json_t *msgs;

	if (peer_s && !hw_chat_pk_ok(peer_s, peer))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				   "peer: must be 64 hex characters (a "
				   "visor's public key)");
	if (after_s && !parse_int(after_s, 0, INT64_MAX, &after))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				   "after: must be a message id (0 or more)");
	if (limit_s && !parse_int(limit_s, 1, HTTP_MESSAGES_MAX, &limit))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				   "limit: must be 1..%d", HTTP_MESSAGES_MAX);
	msgs = hw_chat_store_messages(h->st, peer_s ? peer : NULL, after,
				      (int)limit);
	if (!msgs)
		return reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, false,
				   NULL, "cannot read the history");
	return reply_json(conn, MHD_HTTP_OK, msgs);
}

static enum MHD_Result post_message(struct hw_chat_http *h,
				    struct MHD_Connection *conn,
				    struct http_req *r)
{
	char err[HTTP_ERROR_MAX], pk[HW_APP_PK_HEX + 1];
	json_error_t jerr;
	json_t *root = NULL, *v;
	const char *key, *text;
	enum MHD_Result ret;
	unsigned status;
	size_t tlen;
	int64_t id;
	int rc;

	if (!origin_ok(conn))
		return reply_error(conn, MHD_HTTP_FORBIDDEN, false, NULL,
				   "Origin: requests from other web pages "
				   "are refused");
	if (!r->len)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				   "request body must be JSON: {\"recipient\": "
				   "PK, \"message\": TEXT}");
	root = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				   "request body is not JSON: %s", jerr.text);
	if (!json_is_object(root)) {
		ret = reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				  "request body must be a JSON object");
		goto out;
	}
	json_object_foreach(root, key, v) {
		if (strcmp(key, "recipient") && strcmp(key, "message")) {
			ret = reply_error(conn, MHD_HTTP_BAD_REQUEST, false,
					  NULL, "unknown field '%.64s' (only "
					  "recipient and message)", key);
			goto out;
		}
	}
	v = json_object_get(root, "recipient");
	if (!json_is_string(v) || !hw_chat_pk_ok(json_string_value(v), pk)) {
		ret = reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				  "recipient: must be 64 hex characters (a "
				  "visor's public key)");
		goto out;
	}
	if (!strcmp(pk, h->pk)) {
		ret = reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				  "recipient: that is this visor's own key");
		goto out;
	}
	v = json_object_get(root, "message");
	if (!json_is_string(v)) {
		ret = reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				  "message: must be a string");
		goto out;
	}
	text = json_string_value(v);
	tlen = json_string_length(v);
	if (tlen == 0) {
		ret = reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				  "message: must not be empty");
		goto out;
	}
	if (tlen > HW_CHAT_TEXT_MAX) {
		ret = reply_error(conn, MHD_HTTP_BAD_REQUEST, false, NULL,
				  "message: %zu bytes, at most %d", tlen,
				  HW_CHAT_TEXT_MAX);
		goto out;
	}
	rc = hw_chat_net_queue(h->net, pk, text, &id, err, sizeof(err));
	if (rc == 0) {
		ret = reply_json(conn, MHD_HTTP_OK,
				 json_pack("{s:I, s:s}", "id", (json_int_t)id,
					   "state", "pending"));
		goto out;
	}
	switch (rc) {
	case -EDQUOT:
		status = MHD_HTTP_TOO_MANY_REQUESTS;
		break;
	case -EINVAL:
		status = MHD_HTTP_BAD_REQUEST;
		break;
	default:
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		break;
	}
	ret = reply_error(conn, status, false, NULL, "%s", err);
out:
	json_decref(root);
	return ret;
}

/* Appends printf output to c->out. */
static int client_append(struct event_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int client_append(struct event_client *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(c->out + c->len, c->cap - c->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -EINVAL;
		if ((size_t)n < c->cap - c->len) {
			c->len += (size_t)n;
			return 0;
		}
		size_t cap = c->cap * 2 > c->len + (size_t)n + 1
				     ? c->cap * 2 : c->len + (size_t)n + 1;
		char *grown = realloc(c->out, cap);

		if (!grown)
			return -ENOMEM;
		c->out = grown;
		c->cap = cap;
	}
}

/* Waits for something to send (new messages, or a keepalive when the
 * stream was quiet for HTTP_KEEPALIVE_MS) and puts it in c->out. Returns
 * 0, -ECANCELED when the app is stopping, or another negative errno. */
static int client_fill(struct event_client *c)
{
	struct hw_chat_http *h = c->h;
	json_t *msgs, *m;
	int64_t now;
	size_t i;
	int rc;

	if (!c->started) {
		/* Something at once, so the client sees the stream open. */
		c->started = true;
		c->keepalive_at = hw_chat_mono_ms() + HTTP_KEEPALIVE_MS;
		return client_append(c, "retry: 3000\n\n");
	}
	for (;;) {
		if (stopping(h))
			return -ECANCELED;
		msgs = hw_chat_store_messages(h->st, NULL, c->last_id,
					      HTTP_EVENT_BATCH);
		if (!msgs)
			return -EIO;
		rc = 0;
		json_array_foreach(msgs, i, m) {
			char *text = json_dumps(m, JSON_COMPACT);
			int64_t id = json_integer_value(json_object_get(m, "id"));

			rc = text ? client_append(c, "id: %lld\ndata: %s\n\n",
						  (long long)id, text)
				  : -ENOMEM;
			free(text);
			if (rc)
				break;
			c->last_id = id;
		}
		i = json_array_size(msgs);
		json_decref(msgs);
		if (rc)
			return rc;
		now = hw_chat_mono_ms();
		if (i) {
			c->keepalive_at = now + HTTP_KEEPALIVE_MS;
			return 0;
		}
		if (now >= c->keepalive_at) {
			c->keepalive_at = now + HTTP_KEEPALIVE_MS;
			return client_append(c, ": keepalive\n\n");
		}
		rc = hw_chat_store_wait(h->st, c->last_id,
					c->keepalive_at - now);
		if (rc == -ECANCELED)
			return rc;
	}
}

static ssize_t event_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct event_client *c = cls;
	size_t n;
	int rc;

	if (c->off == c->len) {
		c->off = c->len = 0;
		rc = client_fill(c);
		if (rc == -ECANCELED)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (rc < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	n = c->len - c->off < max ? c->len - c->off : max;
	memcpy(buf, c->out + c->off, n);
	c->off += n;
	return (ssize_t)n;
}

static void event_free(void *cls)
{
	struct event_client *c = cls;

	pthread_mutex_lock(&c->h->mu);
	c->h->nevents--;
	pthread_mutex_unlock(&c->h->mu);
	free(c->out);
	free(c);
}

static enum MHD_Result get_events(struct hw_chat_http *h,
				  struct MHD_Connection *conn)
{
	struct event_client *c;
	struct MHD_Response *r;
	enum MHD_Result ret;
	const char *lei;
	int64_t last = hw_chat_store_last_id(h->st), v;
	bool full;

	pthread_mutex_lock(&h->mu);
	full = h->stopping || h->nevents >= HTTP_MAX_EVENT_CLIENTS;
	if (!full)
		h->nevents++;
	pthread_mutex_unlock(&h->mu);
	if (full)
		return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, false,
				   NULL, "%d event streams are open already",
				   HTTP_MAX_EVENT_CLIENTS);
	c = calloc(1, sizeof(*c));
	if (c)
		c->out = malloc(HTTP_EVENT_BLOCK);
	if (!c || !c->out) {
		if (c)
			free(c);
		pthread_mutex_lock(&h->mu);
		h->nevents--;
		pthread_mutex_unlock(&h->mu);
		return reply_text(conn, 0, NULL, NULL, false, NULL);
	}
	c->h = h;
	c->cap = HTTP_EVENT_BLOCK;
	/* A reconnecting EventSource names the last id it saw: it gets
	 * what it missed. Otherwise only messages from now on. */
	lei = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					  "Last-Event-ID");
	c->last_id = parse_int(lei, 0, INT64_MAX, &v) && v < last ? v : last;
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN,
					      HTTP_EVENT_BLOCK, event_read, c,
					      event_free);
	if (!r) {
		event_free(c);
		return reply_text(conn, 0, NULL, NULL, false, NULL);
	}
	add_common_headers(r);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/event-stream; charset=utf-8");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result route(struct hw_chat_http *h,
			     struct MHD_Connection *conn, const char *url,
			     const char *method, struct http_req *r)
{
	bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
	bool post = !strcmp(method, "POST");

	if (r->too_big)
		return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, false,
				   NULL, "request body exceeds %d bytes",
				   HW_CHAT_BODY_MAX);
	if (!strcmp(url, "/message")) {
		if (!post)
			goto not_post;
		return post_message(h, conn, r);
	}
	if (!strcmp(url, "/events")) {
		if (strcmp(method, "GET"))
			return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
					   false, "GET", "%.16s /events: use "
					   "GET", method);
		return get_events(h, conn);
	}
	if (strcmp(url, "/") && strcmp(url, "/info") &&
	    strcmp(url, "/peers") && strcmp(url, "/messages"))
		return reply_error(conn, MHD_HTTP_NOT_FOUND, false, NULL,
				   "not found: %.200s (the API: /info, "
				   "/peers, /messages, /message, /events)",
				   url);
	if (!get)
		return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, false,
				   "GET, HEAD", "%.16s %.200s: use GET", method,
				   url);
	if (!strcmp(url, "/"))
		return get_page(conn);
	if (!strcmp(url, "/info"))
		return get_info(h, conn);
	if (!strcmp(url, "/peers"))
		return get_peers(h, conn);
	return get_messages(h, conn);
not_post:
	return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, false, "POST",
			   "%.16s /message: use POST", method);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
				 const char *url, const char *method,
				 const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct hw_chat_http *h = cls;
	struct http_req *r = *con_cls;
	const char *host, *cl;
	size_t n;

	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*con_cls = r;
		host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						   MHD_HTTP_HEADER_HOST);
		if (!host_ok(h, host))
			return reply_error(conn, MHD_HTTP_FORBIDDEN, true, NULL,
					   "Host '%.200s' is not this server: "
					   "use its IP address or localhost",
					   host);
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && length_over(cl, HTTP_MAX_DISCARD))
			return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE,
					   true, NULL,
					   "request body exceeds %d bytes",
					   HW_CHAT_BODY_MAX);
		return MHD_YES;
	}
	if (*upload_data_size) {
		n = *upload_data_size;
		*upload_data_size = 0;
		r->seen += n;
		if (r->seen > HTTP_MAX_DISCARD)
			return MHD_NO;
		if (r->too_big || r->seen > HW_CHAT_BODY_MAX) {
			r->too_big = true;
			return MHD_YES;
		}
		if (!r->body && !(r->body = malloc(HW_CHAT_BODY_MAX)))
			return MHD_NO;
		memcpy(r->body + r->len, upload_data, n);
		r->len += n;
		return MHD_YES;
	}
	return route(h, conn, url, method, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
			 void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct http_req *r = *con_cls;

	if (!r)
		return;
	*con_cls = NULL;
	free(r->body);
	free(r);
}

/* Splits "HOST:PORT" / "[V6]:PORT"; the port may be 0. */
static int split_hostport(const char *s, char *host, size_t hostlen,
			  char *port, size_t portlen)
{
	const char *h, *p, *end;
	size_t n;
	int64_t v;

	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		h = s + 1;
		n = (size_t)(end - h);
		p = end + 2;
	} else {
		end = strrchr(s, ':');
		if (!end)
			return -EINVAL;
		h = s;
		n = (size_t)(end - s);
		p = end + 1;
		if (memchr(h, ':', n))
			return -EINVAL; /* IPv6 needs brackets */
	}
	if (n == 0 || n >= hostlen || !parse_int(p, 0, 65535, &v) ||
	    strlen(p) >= portlen)
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	strcpy(port, p);
	return 0;
}

/* Binds and listens on host:port; *v6 tells the family. */
static int listen_tcp(const char *hostport, const char *host,
		      const char *port, int *out, bool *v6, uint16_t *bound,
		      char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, one = 1, rc;

	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "--http '%s': %s", hostport,
			 gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (ai->ai_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    listen(fd, HTTP_MAX_CONNECTIONS) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		goto fail;
	*v6 = ss.ss_family == AF_INET6;
	*bound = ntohs(*v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
			   : ((struct sockaddr_in *)&ss)->sin_port);
	freeaddrinfo(ai);
	*out = fd;
	return 0;
fail:
	rc = -errno;
	snprintf(err, errlen, "--http '%s': %s", hostport, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return rc;
}

int hw_chat_http_start(struct hw_chat_http **out, const char *hostport,
		       struct hw_app *app, struct hw_chat_net *net,
		       struct hw_chat_store *st, char *err, size_t errlen)
{
	struct hw_chat_http *h;
	char port[8];
	bool v6 = false;
	int fd = -1, rc;

	*out = NULL;
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((rc = -pthread_mutex_init(&h->mu, NULL))) {
		snprintf(err, errlen, "%s", strerror(-rc));
		free(h);
		return rc;
	}
	h->net = net;
	h->st = st;
	h->app_port = hw_app_port(app);
	snprintf(h->pk, sizeof(h->pk), "%s", hw_app_local_pk(app));
	if (split_hostport(hostport, h->host, sizeof(h->host), port,
			   sizeof(port))) {
		snprintf(err, errlen, "--http '%s': HOST:PORT expected (for "
			 "example 127.0.0.1:8001 or [::1]:8001)", hostport);
		rc = -EINVAL;
		goto out;
	}
	if ((rc = listen_tcp(hostport, h->host, port, &fd, &v6, &h->port, err,
			     errlen)))
		goto out;
	h->mhd = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD |
			MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
			(v6 ? MHD_USE_IPv6 : 0),
		0, NULL, NULL, on_access, h,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_CONNECTION_LIMIT,
		(unsigned int)HTTP_MAX_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_TIMEOUT_S,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		MHD_OPTION_END);
	if (!h->mhd) {
		snprintf(err, errlen, "--http '%s': cannot start the HTTP "
			 "server", hostport);
		rc = -EIO;
		goto out;
	}
	fd = -1; /* MHD's now; it closes it when stopped */
	*out = h;
	h = NULL;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (h) {
		pthread_mutex_destroy(&h->mu);
		free(h);
	}
	return rc;
}

uint16_t hw_chat_http_port(const struct hw_chat_http *h)
{
	return h->port;
}

void hw_chat_http_stop(struct hw_chat_http *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stopping = true;
	pthread_mutex_unlock(&h->mu);
	/* Event streams blocked in hw_chat_store_wait return, end their
	 * response, and MHD can join their threads. */
	hw_chat_store_cancel_waits(h->st);
	MHD_stop_daemon(h->mhd);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
