/* The discovery HTTP server (src/discovery/server.c) on a loopback port
 * over a SQLite file in a temporary directory, as hopwire-discovery runs
 * it. Raw requests go through libcurl (blocking: the server has its own
 * threads), so that the tests can send what no client of ours would;
 * signed writes also go through the project's client (discovery/client.h)
 * on a libuv loop. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "discovery/client.h"
#include "discovery/entry.h"
#include "discovery/server.h"
#include "discovery/store.h"
#include "util/err.h"
#include "wire/tpid.h"
#include "hwtest.h"
#include "hwtest_assert.h"

#define NIDS 4
#define TS_WINDOW_S 300

static struct hw_identity ids[NIDS];
static char dir[64], url[64];

/* One fresh server and store per test. */
static struct hw_disc_server *srv;

/* An answer: status, body (NUL-terminated), the Allow header. */
struct answer {
	long status;
	char *body;
	size_t len;
	char allow[128];
	CURLcode rc;
};

/* ---- fixtures ---- */

static int group_setup(void **state)
{
	for (int i = 0; i < NIDS; i++)
		if (hw_test_identity_seeded(&ids[i], (uint8_t)(0x60 + i)))
			return -1;
	strcpy(dir, "/tmp/hw-test-disc-server-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	return curl_global_init(CURL_GLOBAL_DEFAULT) ? -1 : 0;
}

static int group_teardown(void **state)
{
	for (int i = 0; i < NIDS; i++)
		hw_identity_wipe(&ids[i]);
	hw_test_rm_tree(dir);
	curl_global_cleanup();
	return 0;
}

static void server_start(void)
{
	struct hw_disc_server_config cfg = {
		.ttl_s = HW_DISC_DEFAULT_TTL_S,
		.ts_window_s = TS_WINDOW_S,
		.threads = 2,
	};
	struct hw_dstore *store = NULL;
	char listen[32], spec[128], err[512];
	int port = hw_test_free_port();

	assert_true(port > 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	cfg.listen = listen;
	snprintf(spec, sizeof(spec), "sqlite:%s/discovery.db", dir);
	if (hw_dstore_new(&store, spec, err, sizeof(err)))
		fail_msg("store %s: %s", spec, err);
	if (hw_disc_server_new(&srv, &cfg, store, err, sizeof(err)))
		fail_msg("server on %s: %s", listen, err);
	assert_int_equal(hw_disc_server_port(srv), port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
}

static int before(void **state)
{
	server_start();
	return 0;
}

static int after(void **state)
{
	static const char *const files[] = {
		"discovery.db", "discovery.db-wal", "discovery.db-shm",
		"discovery.db-journal",
	};
	char path[128];

	hw_disc_server_free(srv);
	srv = NULL;
	/* Each test starts from an empty store. */
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	return 0;
}

/* ---- raw HTTP ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct answer *a = ud;
	char *b = realloc(a->body, a->len + size * n + 1);

	if (!b)
		return 0;
	memcpy(b + a->len, p, size * n);
	a->body = b;
	a->len += size * n;
	b[a->len] = '\0';
	return size * n;
}

/* What an announced upload would send, if the server asked for it. */
static size_t on_read(char *p, size_t size, size_t n, void *ud)
{
	memset(p, ' ', size * n);
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct answer *a = ud;
	size_t len = size * n;

	if (len > 6 && !strncasecmp(p, "Allow:", 6)) {
		size_t k = 6;

		while (k < len && p[k] == ' ')
			k++;
		while (len > k && (p[len - 1] == '\r' || p[len - 1] == '\n'))
			len--;
		snprintf(a->allow, sizeof(a->allow), "%.*s", (int)(len - k),
			 p + k);
	}
	return size * n;
}

/* Sends method path with body (NULL: none); announce, when nonzero, is
 * the Content-Length sent instead of the body (none of it goes out: the
 * client waits for "100 Continue"). */
static void http_ex(const char *method, const char *path, const char *body,
		    size_t len, curl_off_t announce, struct answer *a)
{
	struct curl_slist *h = NULL;
	char full[256];
	CURL *c = curl_easy_init();

	assert_non_null(c);
	memset(a, 0, sizeof(*a));
	snprintf(full, sizeof(full), "%s%s", url, path);
	h = curl_slist_append(h, "Content-Type: application/json");
	assert_non_null(h);
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
	if (announce) {
		h = curl_slist_append(h, "Expect: 100-continue");
		assert_non_null(h);
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, announce);
		curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 10000L);
	} else if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)len);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	a->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
}

static void http(const char *method, const char *path, const char *body,
		 struct answer *a)
{
	http_ex(method, path, body, body ? strlen(body) : 0, 0, a);
	assert_int_equal(a->rc, CURLE_OK);
}

/* Asserts the answer's status and, for an error, that its JSON "error"
 * contains want (NULL: any). Frees the answer. */
static void expect(struct answer *a, long status, const char *want)
{
	json_t *j;

	if (a->status != status)
		fail_msg("HTTP %ld (wanted %ld): %s", a->status, status,
			 a->body ? a->body : "(no body)");
	if (want) {
		j = json_loads(a->body ? a->body : "", 0, NULL);
		assert_non_null(j);
		if (!strstr(hw_test_jstr(j, "error"), want))
			fail_msg("error '%s' does not say '%s'",
				 hw_test_jstr(j, "error"), want);
		json_decref(j);
	}
	free(a->body);
	a->body = NULL;
}

/* ---- entries ---- */

static uint64_t now_s(void)
{
	return (uint64_t)time(NULL);
}

/* The header of an entry of kind by ids[i] with seq, dated now. */
static void entry_head(struct hw_disc_entry *e, enum hw_disc_kind kind,
		       int i, uint64_t seq)
{
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	memcpy(e->signer, ids[i].pk, HW_PK_LEN);
	e->seq = seq;
	e->ts = now_s();
}

/* A signed visor entry of ids[i] with seq. */
static void visor_entry(struct hw_disc_entry *e, int i, uint64_t seq)
{
	entry_head(e, HW_DISC_VISOR, i, seq);
	strcpy(e->u.visor.version, "0.1.0");
	strcpy(e->u.visor.addrs[0], "127.0.0.1:7000");
	e->u.visor.naddrs = 1;
	memcpy(e->u.visor.relays[0], ids[3].pk, HW_PK_LEN);
	e->u.visor.nrelays = 1;
	assert_int_equal(hw_disc_entry_sign(e, &ids[i]), 0);
}

/* A signed TCP transport between ids[a] and ids[b], signed by ids[a]. */
static void tp_entry(struct hw_disc_entry *e, int a, int b, uint32_t rtt,
		     uint64_t seq)
{
	entry_head(e, HW_DISC_TRANSPORT, a, seq);
	strcpy(e->u.tp.type, "tcp");
	memcpy(e->u.tp.edges[0], ids[a].pk, HW_PK_LEN);
	memcpy(e->u.tp.edges[1], ids[b].pk, HW_PK_LEN);
	hw_tp_id(ids[a].pk, ids[b].pk, e->u.tp.type, e->u.tp.id);
	e->u.tp.rtt_us = rtt;
	assert_int_equal(hw_disc_entry_sign(e, &ids[a]), 0);
}

/* The JSON text of e (free it). */
static char *entry_text(const struct hw_disc_entry *e)
{
	json_t *j = hw_disc_entry_to_json(e);
	char *t;

	assert_non_null(j);
	t = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	assert_non_null(t);
	return t;
}

static void path_of(char *out, size_t len, const char *coll, int i)
{
	char pk[HW_PK_HEXLEN + 1];

	hw_pk_format(ids[i].pk, pk);
	snprintf(out, len, "/v1/%s/%s", coll, pk);
}

/* PUTs e to its visor path and checks the status. */
static void put_visor(const struct hw_disc_entry *e, int i, long status,
		      const char *want)
{
	char path[128], *text = entry_text(e);
	struct answer a;

	path_of(path, sizeof(path), "visors", i);
	http("PUT", path, text, &a);
	expect(&a, status, want);
	free(text);
}

/* GETs ids[i]'s visor entry: its text (free it), or NULL on a 404. */
static char *get_visor(int i)
{
	char path[128];
	struct answer a;

	path_of(path, sizeof(path), "visors", i);
	http("GET", path, NULL, &a);
	if (a.status == 404) {
		free(a.body);
		return NULL;
	}
	assert_int_equal(a.status, 200);
	return a.body;
}

/* ---- through the project's client ---- */

struct outcome {
	int called, status, http_status;
	char *resp;
};

static void on_done(struct hw_disc_client *c, int status, int http_status,
		    json_t *resp, const char *msg, void *ud)
{
	struct outcome *o = ud;

	o->called++;
	o->status = status;
	o->http_status = http_status;
	o->resp = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
}

/* A visor entry PUT by the client, then read back by the client: the
 * same entry, signed, with the client's sequence number. */
static void test_put_get_client(void **state)
{
	struct hw_disc_client *c = NULL;
	struct hw_disc_visor v = {.naddrs = 1, .nrelays = 1};
	struct outcome put = {0}, get = {0};
	struct hw_disc_entry e;
	char path[128], err[256];
	uv_loop_t loop;
	json_t *j;

	assert_int_equal(uv_loop_init(&loop), 0);
	if (hw_disc_client_new(&c, &loop, url, &ids[0], NULL, err,
			       sizeof(err)))
		fail_msg("client: %s", err);
	strcpy(v.version, "0.1.0");
	strcpy(v.addrs[0], "10.0.0.1:7000");
	memcpy(v.relays[0], ids[3].pk, HW_PK_LEN);
	assert_int_equal(hw_disc_put_visor(c, &v, on_done, &put), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(put.called, 1);
	assert_int_equal(put.status, 0);
	assert_non_null(strstr(put.resp, "\"ok\":true"));

	path_of(path, sizeof(path), "visors", 0);
	assert_int_equal(hw_disc_get(c, path, on_done, &get), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(get.called, 1);
	assert_int_equal(get.status, 0);
	j = json_loads(get.resp, 0, NULL);
	assert_non_null(j);
	assert_int_equal(hw_disc_entry_from_json(&e, HW_DISC_VISOR, j, err,
						 sizeof(err)), 0);
	json_decref(j);
	assert_int_equal(hw_disc_entry_verify(&e), 0);
	assert_memory_equal(e.signer, ids[0].pk, HW_PK_LEN);
	assert_string_equal(e.u.visor.addrs[0], "10.0.0.1:7000");
	assert_int_equal(e.u.visor.nrelays, 1);
	assert_memory_equal(e.u.visor.relays[0], ids[3].pk, HW_PK_LEN);
	/* The put's answer named the sequence number that was stored. */
	snprintf(err, sizeof(err), "\"seq\":%" PRIu64 "}", e.seq);
	assert_non_null(strstr(put.resp, err));

	hw_disc_client_free(c);
	free(put.resp);
	free(get.resp);
	assert_int_equal(hw_test_loop_close(&loop), 0);
}

/* A raw PUT is stored in the server's own spelling and read back byte
 * for byte; an older or equal sequence number is refused with 409 and
 * changes nothing; a newer one replaces the entry. */
static void test_put_get_seq(void **state)
{
	struct hw_disc_entry e, old;
	char *text, *got;

	assert_null(get_visor(1));
	visor_entry(&e, 1, 1000);
	put_visor(&e, 1, 200, NULL);
	text = entry_text(&e);
	got = get_visor(1);
	assert_non_null(got);
	assert_string_equal(got, text);
	free(got);

	visor_entry(&old, 1, 1000);
	strcpy(old.u.visor.version, "0.0.9");
	assert_int_equal(hw_disc_entry_sign(&old, &ids[1]), 0);
	put_visor(&old, 1, 409, "replayed sequence number 1000");
	old.seq = 999;
	assert_int_equal(hw_disc_entry_sign(&old, &ids[1]), 0);
	put_visor(&old, 1, 409, "last accepted 1000");
	got = get_visor(1);
	assert_string_equal(got, text);
	free(got);
	free(text);

	/* Sequence numbers are per signer across kinds: a transport with a
	 * used number is refused too. */
	tp_entry(&old, 1, 2, 100, 1000);
	text = entry_text(&old);
	{
		struct answer a;

		http("POST", "/v1/transports", text, &a);
		expect(&a, 409, "replayed");
	}
	free(text);

	e.seq = 1001;
	strcpy(e.u.visor.version, "0.2.0");
	assert_int_equal(hw_disc_entry_sign(&e, &ids[1]), 0);
	put_visor(&e, 1, 200, NULL);
	got = get_visor(1);
	assert_non_null(strstr(got, "0.2.0"));
	free(got);
}

/* A signature that does not verify is 401 and stores nothing, nor uses
 * up the sequence number. */
static void test_forged_signature(void **state)
{
	struct hw_disc_entry e;
	char path[128], *text;
	struct answer a;
	json_t *j;
	char sig[2 * HW_SIG_LEN + 1];

	/* ids[2] signs an entry that claims to be ids[1]'s. */
	visor_entry(&e, 2, 50);
	memcpy(e.signer, ids[1].pk, HW_PK_LEN);
	put_visor(&e, 1, 401, "bad signature");

	/* A genuine entry with one bit of its signature flipped. */
	visor_entry(&e, 1, 60);
	j = hw_disc_entry_to_json(&e);
	snprintf(sig, sizeof(sig), "%s",
		 json_string_value(json_object_get(j, "sig")));
	sig[5] = sig[5] == '0' ? '1' : '0';
	json_object_set_new(j, "sig", json_string(sig));
	text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	path_of(path, sizeof(path), "visors", 1);
	http("PUT", path, text, &a);
	expect(&a, 401, "bad signature");
	free(text);

	/* Any change after signing breaks it as well. */
	visor_entry(&e, 1, 70);
	strcpy(e.u.visor.addrs[0], "6.6.6.6:7000");
	put_visor(&e, 1, 401, "bad signature");
	assert_null(get_visor(1));

	/* The number was not used up. */
	visor_entry(&e, 1, 60);
	put_visor(&e, 1, 200, NULL);
}

/* Writes that fail a check before the signature. */
static void test_bad_writes(void **state)
{
	struct hw_disc_entry e;
	char path[128], other[128];
	struct answer a;

	path_of(path, sizeof(path), "visors", 0);
	http("PUT", path, "{\"pk\":", &a);
	expect(&a, 400, "bad JSON");
	http("PUT", path, "", &a);
	expect(&a, 400, "bad JSON");
	http("PUT", path, "[1,2,3]", &a);
	expect(&a, 400, NULL);
	http("PUT", path, "{\"a\":1,\"a\":2}", &a);
	expect(&a, 400, "bad JSON");
	http("PUT", path, "{\"seq\":\"x\"}", &a);
	expect(&a, 400, NULL);
	/* Bytes that are not UTF-8 come back as clean JSON. */
	http("PUT", path, "{\"\xff\xfe\":1}", &a);
	expect(&a, 400, "bad JSON");

	/* The path must name the signer. */
	visor_entry(&e, 0, 10);
	put_visor(&e, 1, 400, "does not match the public key in the path");
	{
		char *text = entry_text(&e);

		http("PUT", "/v1/visors/nothex", text, &a);
		expect(&a, 400, "not a 64-character hex public key");
		free(text);
	}

	/* A timestamp outside the window. */
	visor_entry(&e, 0, 11);
	e.ts = now_s() - TS_WINDOW_S - 60;
	assert_int_equal(hw_disc_entry_sign(&e, &ids[0]), 0);
	put_visor(&e, 0, 400, "stale timestamp");
	e.ts = now_s() + TS_WINDOW_S + 60;
	assert_int_equal(hw_disc_entry_sign(&e, &ids[0]), 0);
	put_visor(&e, 0, 400, "stale timestamp");
	assert_null(get_visor(0));

	/* A body of the wrong kind: a visor entry on the relay path. */
	visor_entry(&e, 0, 12);
	{
		char *text = entry_text(&e);

		path_of(other, sizeof(other), "relays", 0);
		http("PUT", other, text, &a);
		expect(&a, 400, NULL);
		free(text);
	}
	assert_null(get_visor(0));
}

/* A body over HW_DISC_MAX_BODY is 413, whether it is sent or only
 * announced; the server then still answers. */
static void test_oversized_body(void **state)
{
	size_t n = HW_DISC_MAX_BODY + 1;
	char *big = malloc(n + 1), path[128];
	struct answer a;

	assert_non_null(big);
	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	big[n] = '\0';
	path_of(path, sizeof(path), "visors", 0);
	http("PUT", path, big, &a);
	expect(&a, 413, "request body exceeds");
	/* Exactly the limit is read (and then refused as an entry). */
	big[n - 2] = '}';
	http_ex("PUT", path, big, n - 1, 0, &a);
	assert_int_equal(a.rc, CURLE_OK);
	expect(&a, 400, NULL);
	free(big);

	/* Far more than it would read: refused before any of it is sent. */
	http_ex("PUT", path, NULL, 0, (curl_off_t)1 << 30, &a);
	assert_int_equal(a.status, 413);
	free(a.body);

	http("GET", "/health", NULL, &a);
	expect(&a, 200, NULL);
}

/* Unknown paths are 404, known ones with the wrong method 405 with an
 * Allow header. */
static void test_unknown_paths(void **state)
{
	static const char *const nowhere[] = {
		"/", "/v2/visors", "/v1/", "/v1/visor", "/v1/visorsx",
		"/v1/visors/", "/v1/services/abc", "/v1/routes/x",
		"/health/x",
	};
	char path[160];
	struct answer a;

	for (size_t i = 0; i < sizeof(nowhere) / sizeof(nowhere[0]); i++) {
		http("GET", nowhere[i], NULL, &a);
		expect(&a, 404, "no such endpoint");
	}
	path_of(path, sizeof(path), "visors", 0);
	strcat(path, "/extra");
	http("GET", path, NULL, &a);
	expect(&a, 404, "no such endpoint");

	path_of(path, sizeof(path), "visors", 0);
	http("DELETE", path, NULL, &a);
	assert_string_equal(a.allow, "GET, HEAD, PUT");
	expect(&a, 405, "not allowed");
	http("PUT", "/v1/visors", "{}", &a);
	assert_string_equal(a.allow, "GET, HEAD");
	expect(&a, 405, "not allowed");
	http("POST", "/health", "{}", &a);
	expect(&a, 405, "not allowed");
	http("BREW", "/v1/transports", NULL, &a);
	assert_string_equal(a.allow, "GET, HEAD, POST");
	expect(&a, 405, "not allowed");

	http("GET", "/v1/visors?limit=0", NULL, &a);
	expect(&a, 400, "limit");
	http("GET", "/v1/visors?limit=abc", NULL, &a);
	expect(&a, 400, "limit");
	http("GET", "/v1/visors", NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(a.body, "{\"visors\":[]}");
	expect(&a, 200, NULL);
}

static void post_tp(int from, int to, uint32_t rtt, uint64_t seq)
{
	struct hw_disc_entry e;
	char *text;
	struct answer a;

	tp_entry(&e, from, to, rtt, seq);
	text = entry_text(&e);
	http("POST", "/v1/transports", text, &a);
	expect(&a, 200, NULL);
	free(text);
}

static void routes_query(char *out, size_t len, int src, int dst,
			 const char *extra)
{
	char s[HW_PK_HEXLEN + 1], d[HW_PK_HEXLEN + 1];

	hw_pk_format(ids[src].pk, s);
	hw_pk_format(ids[dst].pk, d);
	snprintf(out, len, "/v1/routes?src=%s&dst=%s%s", s, d, extra);
}

/* The route finder over stored transports: 0-1-2 (two hops) and 0-2
 * (one), in order; bad queries are 400. */
static void test_routes(void **state)
{
	char q[300], pk0[HW_PK_HEXLEN + 1], pk2[HW_PK_HEXLEN + 1];
	struct answer a;
	json_t *j, *paths, *p0, *tps;

	post_tp(0, 1, 1000, 10);
	post_tp(1, 2, 2000, 10);
	post_tp(2, 0, 0, 11);
	routes_query(q, sizeof(q), 0, 2, "&k=4");
	http("GET", q, NULL, &a);
	assert_int_equal(a.status, 200);
	j = json_loads(a.body, 0, NULL);
	assert_non_null(j);
	paths = json_object_get(j, "paths");
	assert_int_equal(json_array_size(paths), 2);
	p0 = json_array_get(paths, 0);
	assert_int_equal(hw_test_jint(p0, "hops"), 1);
	/* The direct transport's RTT is not known. */
	assert_true(json_is_null(json_object_get(p0, "rtt_us")));
	tps = json_object_get(p0, "transports");
	hw_pk_format(ids[0].pk, pk0);
	hw_pk_format(ids[2].pk, pk2);
	/* Transport 3 was written 2 -> 0: the path takes it backwards. */
	assert_string_equal(hw_test_jstr(json_array_get(tps, 0), "from"),
			    pk0);
	assert_string_equal(hw_test_jstr(json_array_get(tps, 0), "to"), pk2);
	assert_string_equal(hw_test_jstr(json_array_get(tps, 0), "type"),
			    "tcp");
	assert_int_equal(hw_test_jint(json_array_get(paths, 1), "hops"), 2);
	assert_int_equal(hw_test_jint(json_array_get(paths, 1), "rtt_us"),
			 3000);
	json_decref(j);
	expect(&a, 200, NULL);

	routes_query(q, sizeof(q), 0, 2, "&min_hops=2");
	http("GET", q, NULL, &a);
	assert_non_null(strstr(a.body, "\"hops\":2"));
	assert_null(strstr(a.body, "\"hops\":1"));
	expect(&a, 200, NULL);
	/* Nobody reaches ids[3]. */
	routes_query(q, sizeof(q), 0, 3, "");
	http("GET", q, NULL, &a);
	assert_string_equal(a.body, "{\"paths\":[]}");
	expect(&a, 200, NULL);

	routes_query(q, sizeof(q), 0, 0, "");
	http("GET", q, NULL, &a);
	expect(&a, 400, "the same visor");
	routes_query(q, sizeof(q), 0, 2, "&k=0");
	http("GET", q, NULL, &a);
	expect(&a, 400, "k:");
	routes_query(q, sizeof(q), 0, 2, "&min_hops=3&max_hops=2");
	http("GET", q, NULL, &a);
	expect(&a, 400, "above max_hops");
	http("GET", "/v1/routes?dst=00", NULL, &a);
	expect(&a, 400, "src: missing");
	snprintf(q, sizeof(q), "/v1/routes?src=%064d&dst=%s", 0, pk2);
	http("GET", q, NULL, &a);
	expect(&a, 400, "src:");
}

/* Freeing the server stops it: nothing answers on its port any more,
 * and a new server over the same file sees what was stored. */
static void test_restart(void **state)
{
	struct hw_disc_entry e;
	struct answer a;
	char *got, *text;

	visor_entry(&e, 2, 77);
	put_visor(&e, 2, 200, NULL);
	hw_disc_server_free(srv);
	srv = NULL;
	http_ex("GET", "/health", NULL, 0, 0, &a);
	assert_int_equal(a.rc, CURLE_COULDNT_CONNECT);
	free(a.body);

	server_start();
	got = get_visor(2);
	text = entry_text(&e);
	assert_non_null(got);
	assert_string_equal(got, text);
	free(got);
	free(text);
	/* The sequence number survived too. */
	put_visor(&e, 2, 409, "replayed");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_client, before,
						after),
		cmocka_unit_test_setup_teardown(test_put_get_seq, before,
						after),
		cmocka_unit_test_setup_teardown(test_forged_signature, before,
						after),
		cmocka_unit_test_setup_teardown(test_bad_writes, before,
						after),
		cmocka_unit_test_setup_teardown(test_oversized_body, before,
						after),
		cmocka_unit_test_setup_teardown(test_unknown_paths, before,
						after),
		cmocka_unit_test_setup_teardown(test_routes, before, after),
		cmocka_unit_test_setup_teardown(test_restart, before, after),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
