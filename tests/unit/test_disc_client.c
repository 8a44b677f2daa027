/* Tests of the discovery client (src/discovery/client.c) against a small
 * HTTP server in the test: libmicrohttpd on a free loopback port, one
 * thread per connection, recording every request it gets.
 *
 * Paths the server treats specially:
 *   .../conflict    409 {"error": "replayed sequence number 5 (last accepted 9)"}
 *   .../plain500    500 with a text body
 *   /v1/notjson     200 with a body that is not JSON
 *   /v1/big         200 with a body over the client's 4 MiB bound
 *   /v1/empty       200 with no body
 *   /v1/slow        200 after SLOW_MS
 * Anything else: 200 {"ok": true, "seq": <the body's seq>} for writes,
 * {"path": <url>} for reads. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <microhttpd.h>

#include "discovery/client.h"
#include "transport/manager.h"
#include "util/buf.h"
#include "util/err.h"
#include "hwtest.h"

#define MAX_RECS 64
#define MAX_CALLS 300
#define SLOW_MS 300
#define BIG_BYTES (5 * 1024 * 1024)

/* ---- the server ---- */

struct rec {
	char method[16];
	char url[256];
	char ctype[64];
	char *body; /* NUL-terminated */
};

static struct {
	struct MHD_Daemon *d;
	uint16_t port;
	pthread_mutex_t mu;
	struct rec recs[MAX_RECS];
	int nrecs;
	atomic_bool slow_started;
} srv;

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
			     const char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, (void *)body,
					    MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
				 const char *url, const char *method,
				 const char *version, const char *upload,
				 size_t *upload_size, void **con_cls)
{
	struct hw_buf *b = *con_cls;
	char out[512];
	const char *ct;
	json_t *j;

	if (!b) {
		if (!(b = calloc(1, sizeof(*b))))
			return MHD_NO;
		*con_cls = b;
		return MHD_YES;
	}
	if (*upload_size) {
		if (hw_buf_append(b, upload, *upload_size, 1 << 20))
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	if (hw_buf_append(b, "", 1, (1 << 20) + 1))
		return MHD_NO;

	pthread_mutex_lock(&srv.mu);
	if (srv.nrecs < MAX_RECS) {
		struct rec *r = &srv.recs[srv.nrecs++];
		snprintf(r->method, sizeof(r->method), "%s", method);
		snprintf(r->url, sizeof(r->url), "%s", url);
		ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						 "Content-Type");
		snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
		r->body = strdup(b->data);
	}
	pthread_mutex_unlock(&srv.mu);

	if (strstr(url, "/conflict")) {
		snprintf(out, sizeof(out), "{\"error\":\"replayed sequence "
					   "number 5 (last accepted 9)\"}");
		return reply(conn, 409, out, strlen(out));
	}
	if (strstr(url, "/plain500"))
		return reply(conn, 500, "oops\n", 5);
	if (!strcmp(url, "/v1/notjson"))
		return reply(conn, 200, "hello", 5);
	if (!strcmp(url, "/v1/empty"))
		return reply(conn, 200, "", 0);
	if (!strcmp(url, "/v1/big")) {
		char *big = malloc(BIG_BYTES);
		enum MHD_Result ret;
		if (!big)
			return MHD_NO;
		memset(big, ' ', BIG_BYTES);
		big[0] = '[';
		big[BIG_BYTES - 1] = ']';
		ret = reply(conn, 200, big, BIG_BYTES);
		free(big);
		return ret;
	}
	if (!strcmp(url, "/v1/slow")) {
		srv.slow_started = true;
		usleep(SLOW_MS * 1000);
	}
	if (!strcmp(method, "GET")) {
		j = json_pack("{s:s}", "path", url);
	} else {
		json_t *in = json_loads(b->data, 0, NULL);
		j = json_pack("{s:b, s:O}", "ok", 1, "seq",
			      json_object_get(in, "seq"));
		json_decref(in);
	}
	if (!j)
		return reply(conn, 500, "{\"error\":\"test server\"}", 23);
	{
		char *text = json_dumps(j, JSON_COMPACT);
		enum MHD_Result ret = reply(conn, 200, text, strlen(text));
		free(text);
		json_decref(j);
		return ret;
	}
}

static void on_completed(void *cls, struct MHD_Connection *conn,
			 void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct hw_buf *b = *con_cls;

	if (b) {
		hw_buf_reset(b);
		free(b);
	}
	*con_cls = NULL;
}

static void srv_start(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const union MHD_DaemonInfo *info;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	pthread_mutex_init(&srv.mu, NULL);
	srv.nrecs = 0;
	srv.slow_started = false;
	srv.d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
		0, NULL, NULL, on_access, NULL, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
		on_completed, NULL, MHD_OPTION_END);
	assert_non_null(srv.d);
	info = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_BIND_PORT);
	assert_non_null(info);
	srv.port = info->port;
	assert_int_not_equal(srv.port, 0);
}

static void srv_stop(void)
{
	MHD_stop_daemon(srv.d);
	srv.d = NULL;
	for (int i = 0; i < srv.nrecs; i++)
		free(srv.recs[i].body);
	srv.nrecs = 0;
	pthread_mutex_destroy(&srv.mu);
}

/* ---- fixture ---- */

struct result {
	bool called;
	int status;
	int http_status;
	char msg[1024];
	char *resp; /* the JSON text of resp, NULL without one */
};

static struct result res[MAX_CALLS];
static int order[MAX_CALLS];
static int ncalls;
static bool free_in_cb;

static struct hw_identity ids[3];
static char dir[64], seq_path[128], url[64];
static uv_loop_t loop;

static void on_done(struct hw_disc_client *c, int status, int http_status,
		    json_t *resp, const char *msg, void *ud)
{
	int i = (int)(intptr_t)ud;
	struct result *r = &res[i];

	assert_false(r->called);
	r->called = true;
	r->status = status;
	r->http_status = http_status;
	snprintf(r->msg, sizeof(r->msg), "%s", msg ? msg : "(null)");
	r->resp = resp ? json_dumps(resp, JSON_COMPACT | JSON_ENCODE_ANY)
		       : NULL;
	order[ncalls++] = i;
	if (free_in_cb)
		hw_disc_client_free(c);
}

#define UD(i) ((void *)(intptr_t)(i))

static int setup(void **state)
{
	for (int i = 0; i < 3; i++)
		if (hw_test_identity_seeded(&ids[i], (uint8_t)(0x40 + i)))
			return -1;
	strcpy(dir, "/tmp/hw-test-disc-client-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(seq_path, sizeof(seq_path), "%s/seq", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(seq_path);
	return rmdir(dir);
}

static int before(void **state)
{
	for (int i = 0; i < MAX_CALLS; i++)
		res[i] = (struct result){0};
	ncalls = 0;
	free_in_cb = false;
	unlink(seq_path);
	srv_start();
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", srv.port);
	return uv_loop_init(&loop);
}

static int after(void **state)
{
	for (int i = 0; i < MAX_CALLS; i++)
		free(res[i].resp);
	srv_stop();
	/* Every request's work and after_work is done: nothing is left. */
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	return hw_test_loop_close(&loop);
}

static struct hw_disc_client *client(const char *path)
{
	struct hw_disc_client *c = NULL;
	char err[256];

	if (hw_disc_client_new(&c, &loop, url, &ids[0], path, err,
			       sizeof(err)))
		fail_msg("hw_disc_client_new: %s", err);
	return c;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t read_seq_file(void)
{
	char buf[64] = "";
	FILE *f = fopen(seq_path, "r");
	assert_non_null(f);
	assert_true(fread(buf, 1, sizeof(buf) - 1, f) > 0);
	fclose(f);
	return strtoull(buf, NULL, 10);
}

static void write_seq_file(const char *text)
{
	FILE *f = fopen(seq_path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Decodes recorded request i as an entry of kind and checks it is a valid
 * signature of ids[0]; returns its seq. */
static uint64_t check_rec(int i, const char *method, const char *path,
			  enum hw_disc_kind kind, struct hw_disc_entry *e)
{
	struct rec *r = &srv.recs[i];
	char err[256];
	json_t *j;

	assert_string_equal(r->method, method);
	assert_string_equal(r->url, path);
	assert_string_equal(r->ctype, "application/json");
	j = json_loads(r->body, 0, NULL);
	assert_non_null(j);
	if (hw_disc_entry_from_json(e, kind, j, err, sizeof(err)))
		fail_msg("request %d: %s", i, err);
	json_decref(j);
	assert_int_equal(hw_disc_entry_verify(e), 0);
	assert_memory_equal(e->signer, ids[0].pk, HW_PK_LEN);
	assert_true(llabs((long long)e->ts - (long long)time(NULL)) < 5);
	return e->seq;
}

/* ---- tests ---- */

static void test_writes_in_order(void **state)
{
	struct hw_disc_client *c = client(seq_path);
	struct hw_disc_visor v = {.version = "0.1.0"};
	struct hw_disc_relay rl = {.addr = "127.0.0.1:9000", .capacity = 7};
	struct hw_disc_transport t = {.type = "tcp", .rtt_us = 1234};
	struct hw_disc_service s = {.type = "socks", .port = 1080};
	struct hw_disc_entry e;
	char pk[HW_PK_HEXLEN + 1], path[256], idhex[33];
	uint64_t seq[6], t0 = now_us();

	hw_pk_format(ids[0].pk, pk);
	memcpy(v.relays[0], ids[1].pk, HW_PK_LEN);
	v.nrelays = 1;
	strcpy(v.addrs[0], "10.0.0.1:7000");
	v.naddrs = 1;
	memcpy(t.edges[0], ids[1].pk, HW_PK_LEN);
	memcpy(t.edges[1], ids[0].pk, HW_PK_LEN);
	hw_tp_id(ids[0].pk, ids[1].pk, "tcp", t.id);
	for (int i = 0; i < 16; i++)
		snprintf(idhex + 2 * i, 3, "%02x", t.id[i]);

	assert_int_equal(hw_disc_put_visor(c, &v, on_done, UD(0)), 0);
	assert_int_equal(hw_disc_put_relay(c, &rl, on_done, UD(1)), 0);
	assert_int_equal(hw_disc_put_transport(c, &t, on_done, UD(2)), 0);
	assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(3)), 0);
	assert_int_equal(hw_disc_del_service(c, "socks", on_done, UD(4)), 0);
	assert_int_equal(hw_disc_del_transport(c, t.id, on_done, UD(5)), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(ncalls, 6);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(order[i], i);
		if (res[i].status)
			fail_msg("write %d: %s", i, res[i].msg);
		assert_int_equal(res[i].http_status, 200);
		assert_string_equal(res[i].msg, "");
	}
	assert_int_equal(srv.nrecs, 6);
	snprintf(path, sizeof(path), "/v1/visors/%s", pk);
	seq[0] = check_rec(0, "PUT", path, HW_DISC_VISOR, &e);
	assert_string_equal(e.u.visor.addrs[0], "10.0.0.1:7000");
	snprintf(path, sizeof(path), "/v1/relays/%s", pk);
	seq[1] = check_rec(1, "PUT", path, HW_DISC_RELAY, &e);
	assert_int_equal(e.u.relay.capacity, 7);
	seq[2] = check_rec(2, "POST", "/v1/transports", HW_DISC_TRANSPORT, &e);
	assert_int_equal(e.u.tp.rtt_us, 1234);
	snprintf(path, sizeof(path), "/v1/services/%s/socks", pk);
	seq[3] = check_rec(3, "PUT", path, HW_DISC_SERVICE, &e);
	assert_int_equal(e.u.svc.port, 1080);
	seq[4] = check_rec(4, "DELETE", path, HW_DISC_SERVICE_DEL, &e);
	snprintf(path, sizeof(path), "/v1/transports/%s", idhex);
	seq[5] = check_rec(5, "DELETE", path, HW_DISC_TRANSPORT_DEL, &e);
	assert_memory_equal(e.u.tp_id, t.id, HW_DISC_TP_ID_LEN);

	/* Microsecond clock or above, strictly rising, the last on disk. */
	assert_true(seq[0] >= t0);
	for (int i = 1; i < 6; i++)
		assert_true(seq[i] > seq[i - 1]);
	assert_int_equal(read_seq_file(), seq[5]);
	/* The server's answer reaches the callback. */
	snprintf(path, sizeof(path), "{\"ok\":true,\"seq\":%" PRIu64 "}",
		 seq[3]);
	assert_string_equal(res[3].resp, path);
	hw_disc_client_free(c);
}

static void test_http_errors(void **state)
{
	struct hw_disc_client *c = client(NULL);
	struct hw_disc_service s = {.type = "conflict", .port = 1};
	struct hw_disc_service ok = {.type = "socks", .port = 1};

	assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(0)), 0);
	/* A refused write does not stop the queue. */
	assert_int_equal(hw_disc_put_service(c, &ok, on_done, UD(1)), 0);
	assert_int_equal(hw_disc_get(c, "/v1/plain500", on_done, UD(2)), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

	assert_true(res[0].status < 0);
	assert_int_equal(res[0].http_status, 409);
	assert_string_equal(
		res[0].msg,
		"discovery: 409: replayed sequence number 5 (last accepted 9)");
	assert_null(res[0].resp);
	assert_int_equal(res[1].status, 0);
	assert_int_equal(res[2].status, -EPROTO);
	assert_int_equal(res[2].http_status, 500);
	assert_string_equal(res[2].msg, "discovery: 500: oops");
	hw_disc_client_free(c);
}

static void test_reads(void **state)
{
	struct hw_disc_client *c;
	char err[256];

	/* A trailing '/' on the base URL does not double. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%u//", srv.port);
	c = client(NULL);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", srv.port);
	assert_string_equal(hw_disc_client_url(c), url);

	assert_int_equal(hw_disc_get(c, "/v1/visors?limit=5", on_done, UD(0)),
			 0);
	assert_int_equal(hw_disc_get(c, "/v1/notjson", on_done, UD(1)), 0);
	assert_int_equal(hw_disc_get(c, "/v1/big", on_done, UD(2)), 0);
	assert_int_equal(hw_disc_get(c, "/v1/empty", on_done, UD(3)), 0);
	assert_int_equal(hw_disc_get(c, "v1/visors", on_done, UD(4)), -EINVAL);
	assert_int_equal(hw_disc_get(c, "/v1/a b", on_done, UD(4)), -EINVAL);
	assert_int_equal(hw_disc_get(c, "/v1/x", NULL, UD(4)), -EINVAL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(ncalls, 4);
	assert_int_equal(res[0].status, 0);
	assert_string_equal(res[0].resp, "{\"path\":\"/v1/visors\"}");
	assert_int_equal(res[1].status, -EPROTO);
	assert_non_null(strstr(res[1].msg, "answer is not JSON"));
	assert_int_equal(res[2].status, -EMSGSIZE);
	assert_non_null(strstr(res[2].msg, "answer over 4194304 bytes"));
	assert_int_equal(res[3].status, 0);
	assert_null(res[3].resp);
	hw_disc_client_free(c);

	/* Construction errors name what is wrong. */
	assert_int_equal(hw_disc_client_new(&c, &loop, "ftp://x", &ids[0],
					    NULL, err, sizeof(err)),
			 -EINVAL);
	assert_null(c);
	assert_non_null(strstr(err, "'ftp://x' is not an http://"));
}

static void test_seq_persists(void **state)
{
	struct hw_disc_service s = {.type = "socks", .port = 1};
	struct hw_disc_client *c;
	struct hw_disc_entry e;
	uint64_t base = now_us() + 1000000000000ull; /* far ahead */
	uint64_t last1, first2;
	char text[64], err[256];

	/* The file's number wins over the clock when it is ahead. */
	snprintf(text, sizeof(text), "%" PRIu64 "\n", base);
	write_seq_file(text);
	c = client(seq_path);
	for (int i = 0; i < 3; i++)
		assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(i)), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	hw_disc_client_free(c);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(res[i].status, 0);
		assert_int_equal(check_rec(i, "PUT", srv.recs[i].url,
					   HW_DISC_SERVICE, &e),
				 base + 1 + (uint64_t)i);
	}
	last1 = e.seq;
	assert_int_equal(read_seq_file(), last1);

	/* A second client on the same file goes on from there. */
	c = client(seq_path);
	assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(3)), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	hw_disc_client_free(c);
	assert_int_equal(res[3].status, 0);
	first2 = check_rec(3, "PUT", srv.recs[3].url, HW_DISC_SERVICE, &e);
	assert_true(first2 > last1);
	assert_int_equal(read_seq_file(), first2);

	/* Garbage in the file is an error naming it. */
	write_seq_file("12abc\n");
	assert_int_equal(hw_disc_client_new(&c, &loop, url, &ids[0], seq_path,
					    err, sizeof(err)),
			 -EINVAL);
	assert_null(c);
	assert_non_null(strstr(err, seq_path));
	assert_non_null(strstr(err, "not a sequence number"));
	write_seq_file("99999999999999999999\n"); /* over 2^63 - 1 */
	assert_int_equal(hw_disc_client_new(&c, &loop, url, &ids[0], seq_path,
					    err, sizeof(err)),
			 -EINVAL);
	write_seq_file("");
	assert_int_equal(hw_disc_client_new(&c, &loop, url, &ids[0], seq_path,
					    err, sizeof(err)),
			 -EINVAL);
}

/* A seq file that cannot be written fails the write before it is sent. */
static void test_seq_unwritable(void **state)
{
	struct hw_disc_service s = {.type = "socks", .port = 1};
	struct hw_disc_client *c;
	char path[160];

	snprintf(path, sizeof(path), "%s/missing/seq", dir);
	c = client(path);
	assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(0)), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(res[0].status, -ENOENT);
	assert_non_null(strstr(res[0].msg, "cannot save the sequence number"));
	assert_int_equal(srv.nrecs, 0);
	hw_disc_client_free(c);
}

static uint16_t closed_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void test_refused(void **state)
{
	struct hw_disc_service s = {.type = "socks", .port = 1};
	struct hw_disc_client *c;
	char want[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", closed_port());
	c = client(NULL);
	assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(0)), 0);
	assert_int_equal(hw_disc_get(c, "/v1/relays", on_done, UD(1)), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(res[i].status, -ECONNREFUSED);
		assert_int_equal(res[i].http_status, 0);
		assert_null(res[i].resp);
	}
	snprintf(want, sizeof(want), "discovery: cannot reach %s/v1/relays: ",
		 url);
	if (strncmp(res[1].msg, want, strlen(want)))
		fail_msg("'%s' does not start with '%s'", res[1].msg, want);
	assert_non_null(strstr(res[0].msg, "discovery: cannot reach "));
	hw_disc_client_free(c);
}

static void test_bad_arguments(void **state)
{
	struct hw_disc_client *c = client(NULL);
	struct hw_disc_visor v = {.version = "0.1.0", .nrelays = 9};
	struct hw_disc_relay rl = {.addr = "nope", .capacity = 1};
	struct hw_disc_transport t = {.type = "tcp"};
	struct hw_disc_service s = {.type = "BAD", .port = 1};

	assert_int_equal(hw_disc_put_visor(c, &v, on_done, UD(0)), -EINVAL);
	assert_int_equal(hw_disc_put_relay(c, &rl, on_done, UD(0)), -EINVAL);
	/* Not an edge of its own transport. */
	memcpy(t.edges[0], ids[1].pk, HW_PK_LEN);
	memcpy(t.edges[1], ids[2].pk, HW_PK_LEN);
	hw_tp_id(ids[1].pk, ids[2].pk, "tcp", t.id);
	assert_int_equal(hw_disc_put_transport(c, &t, on_done, UD(0)), -EINVAL);
	assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(0)), -EINVAL);
	assert_int_equal(hw_disc_del_service(c, "a/b", on_done, UD(0)),
			 -EINVAL);
	s.port = 0;
	strcpy(s.type, "socks");
	assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(0)), -EINVAL);
	s.port = 1;
	assert_int_equal(hw_disc_put_service(c, &s, NULL, UD(0)), -EINVAL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(ncalls, 0);
	assert_int_equal(srv.nrecs, 0);
	hw_disc_client_free(c);
}

/* Queued writes are dropped without callbacks; the queue is bounded. */
static void test_free_with_queue(void **state)
{
	struct hw_disc_service s = {.type = "socks", .port = 1};
	struct hw_disc_client *c = client(seq_path);
	int i, rc = 0;

	/* One in the pool, HW_DISC_MAX_QUEUED_WRITES (256) waiting. */
	for (i = 0; i < MAX_CALLS && !rc; i++)
		rc = hw_disc_put_service(c, &s, on_done, UD(i));
	assert_int_equal(rc, -ENOBUFS);
	assert_int_equal(i, 258);
	assert_int_equal(hw_disc_get(c, "/v1/a", on_done, UD(0)), 0);
	hw_disc_client_free(c);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(ncalls, 0);
	/* At most the write and the read that were in the pool went out. */
	assert_true(srv.nrecs <= 2);
}

/* A request running in the pool when the client is freed finishes there
 * and is freed without a callback. */
static void test_free_while_running(void **state)
{
	struct hw_disc_service s = {.type = "socks", .port = 1};
	struct hw_disc_client *c = client(NULL);

	assert_int_equal(hw_disc_get(c, "/v1/slow", on_done, UD(0)), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(1 + i)),
				 0);
	for (int i = 0; i < 5000 && !srv.slow_started; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_true(srv.slow_started);
	hw_disc_client_free(c);
	hw_disc_client_free(NULL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_false(res[0].called);
	/* Writes that finished before the free were answered; none after. */
	for (int i = 0; i < ncalls; i++)
		assert_true(order[i] >= 1 && order[i] <= 5);
}

/* A callback may free its client: the rest is dropped quietly. */
static void test_free_in_callback(void **state)
{
	struct hw_disc_service s = {.type = "socks", .port = 1};
	struct hw_disc_client *c = client(NULL);

	free_in_cb = true;
	for (int i = 0; i < 4; i++)
		assert_int_equal(hw_disc_put_service(c, &s, on_done, UD(i)), 0);
	assert_int_equal(hw_disc_get(c, "/v1/slow", on_done, UD(4)), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(ncalls, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_writes_in_order, before,
						after),
		cmocka_unit_test_setup_teardown(test_http_errors, before, after),
		cmocka_unit_test_setup_teardown(test_reads, before, after),
		cmocka_unit_test_setup_teardown(test_seq_persists, before,
						after),
		cmocka_unit_test_setup_teardown(test_seq_unwritable, before,
						after),
		cmocka_unit_test_setup_teardown(test_refused, before, after),
		cmocka_unit_test_setup_teardown(test_bad_arguments, before,
						after),
		cmocka_unit_test_setup_teardown(test_free_with_queue, before,
						after),
		cmocka_unit_test_setup_teardown(test_free_while_running,
						before, after),
		cmocka_unit_test_setup_teardown(test_free_in_callback, before,
						after),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
