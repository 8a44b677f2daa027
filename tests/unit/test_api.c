/* Tests of the control API: the visor's server (src/visor/api_server.c,
 * in hwcore) driven by the CLI's client (src/cli/api_client.c).
 *
 * The client belongs to the hopwire program, not to hwcore, so this test
 * compiles it in by including its .c file; this is the only test that
 * does so.
 *
 * Each test runs a libuv loop with a server on the main thread and the
 * clients on their own threads; a client that is done tells the loop with
 * a uv_async. cmocka's assertions are only used on the main thread. */
#include "../../src/cli/api_client.c"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>
#include <uv.h>

#include "visor/api_server.h"
#include "hwtest.h"

#define MAX_CLIENTS 16

enum mode {
	MODE_ECHO,   /* answer at once with what was asked */
	MODE_DEFER,  /* hold the request, answer from a timer */
	MODE_NEVER,  /* hold the request, free the server from a timer */
	MODE_FREE,   /* free the server from inside the handler */
};

struct fx;

struct client {
	struct fx *fx;
	uv_thread_t thread;
	/* Request. */
	const char *method;
	const char *path;
	json_t *body;
	const char *raw;        /* sent as is instead of body, raw_len bytes */
	size_t raw_len, raw_off;
	bool chunked;           /* raw is sent chunked, without a length */
	long timeout_ms;
	/* Result. */
	int rc;
	long status;
	json_t *resp;
	char err[512];
	uint64_t elapsed_ms;
};

struct fx {
	char dir[64];
	char path[128];
	uv_loop_t loop;
	uv_timer_t timer;
	uv_async_t done;
	struct hw_api_server *srv;

	enum mode mode;
	unsigned delay_ms;      /* MODE_DEFER, MODE_NEVER: timer delay */
	unsigned free_ms;       /* MODE_DEFER: free the server this long
				   after the reply instead of on done */
	bool freeing;           /* the timer's next step frees the server */
	int calls;
	struct hw_api_req *held[MAX_CLIENTS];
	int nheld;

	struct client clients[MAX_CLIENTS];
	int nclients;
	atomic_int finished;
};

static void on_timer(uv_timer_t *t);
static void server_stop(struct fx *fx);

static void handler(struct hw_api_req *req, const char *method,
		    const char *path, json_t *body, void *ud)
{
	struct fx *fx = ud;
	const char *name;
	json_t *o;

	fx->calls++;
	switch (fx->mode) {
	case MODE_ECHO:
		name = hw_api_query(req, "name");
		assert_null(hw_api_query(req, "absent"));
		o = json_pack("{s:s, s:s, s:o?, s:O?}", "method", method,
			      "path", path, "name",
			      name ? json_string(name) : NULL, "body", body);
		assert_non_null(o);
		hw_api_reply(req, 200, o);
		json_decref(o);
		break;
	case MODE_DEFER:
	case MODE_NEVER:
		assert_true(fx->nheld < MAX_CLIENTS);
		fx->held[fx->nheld++] = req;
		if (!uv_is_active((uv_handle_t *)&fx->timer))
			uv_timer_start(&fx->timer, on_timer, fx->delay_ms, 0);
		break;
	case MODE_FREE:
		server_stop(fx);
		break;
	}
}

static void server_stop(struct fx *fx)
{
	hw_api_server_free(fx->srv);
	fx->srv = NULL;
}

static void on_timer(uv_timer_t *t)
{
	struct fx *fx = t->data;

	if (fx->mode == MODE_NEVER || fx->freeing) {
		/* Requests still held become invalid here. */
		fx->nheld = 0;
		server_stop(fx);
		uv_close((uv_handle_t *)t, NULL);
		return;
	}
	for (int i = 0; i < fx->nheld; i++) {
		json_t *o = json_pack("{s:b}", "late", 1);

		hw_api_reply(fx->held[i], 202, o);
		json_decref(o);
	}
	fx->nheld = 0;
	if (fx->free_ms) {
		fx->freeing = true;
		uv_timer_start(t, on_timer, fx->free_ms, 0);
	} else {
		uv_close((uv_handle_t *)t, NULL);
	}
}

static void on_done(uv_async_t *h)
{
	struct fx *fx = h->data;

	if (atomic_load(&fx->finished) < fx->nclients)
		return;
	uv_close((uv_handle_t *)h, NULL);
	if (!fx->free_ms && fx->mode != MODE_NEVER)
		server_stop(fx);
}

struct raw_buf {
	char data[4096];
	size_t len;
};

static size_t raw_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct raw_buf *b = ud;

	if (nmemb > sizeof(b->data) - 1 - b->len)
		return 0;
	memcpy(b->data + b->len, ptr, nmemb);
	b->len += nmemb;
	b->data[b->len] = '\0';
	return nmemb;
}

static size_t raw_read(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct client *c = ud;
	size_t n = c->raw_len - c->raw_off;

	/* Small pieces: several chunks even for a small body. */
	if (n > 4000)
		n = 4000;
	if (n > size * nmemb)
		n = size * nmemb;
	memcpy(ptr, c->raw + c->raw_off, n);
	c->raw_off += n;
	return n;
}

/* A request whose body hw_api_call would not send: not JSON, or chunked. */
static void raw_call(struct client *c)
{
	struct curl_slist *hdrs = NULL;
	struct raw_buf b = {.len = 0};
	json_error_t jerr;
	CURL *h;

	c->rc = -1;
	pthread_once(&curl_once, curl_init);
	h = curl_easy_init();
	if (!h)
		return;
	hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->fx->path);
	curl_easy_setopt(h, CURLOPT_URL, "http://localhost/v1/raw");
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (c->chunked) {
		/* No size: curl sends it chunked. */
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, raw_read);
		curl_easy_setopt(h, CURLOPT_READDATA, c);
	} else {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->raw);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)c->raw_len);
	}
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, raw_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (curl_easy_perform(h) == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
		c->resp = json_loadb(b.data, b.len, 0, &jerr);
		c->rc = 0;
	} else {
		snprintf(c->err, sizeof(c->err), "raw request failed");
	}
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
}

static void client_main(void *arg)
{
	struct client *c = arg;
	uint64_t t0 = uv_hrtime();

	if (c->raw)
		raw_call(c);
	else
		c->rc = hw_api_call(c->fx->path, c->method, c->path, c->body,
				    c->timeout_ms, &c->status, &c->resp,
				    c->err, sizeof(c->err));
	c->elapsed_ms = (uv_hrtime() - t0) / 1000000;
	atomic_fetch_add(&c->fx->finished, 1);
	uv_async_send(&c->fx->done);
}

static struct client *add_client(struct fx *fx, const char *method,
				 const char *path, json_t *body)
{
	struct client *c = &fx->clients[fx->nclients++];

	c->fx = fx;
	c->method = method;
	c->path = path;
	c->body = body;
	c->timeout_ms = 5000;
	return c;
}

static void start_server(struct fx *fx)
{
	assert_int_equal(hw_api_server_new(&fx->srv, &fx->loop, fx->path,
					   handler, fx),
			 0);
}

/* Runs the loop until every client is done and the server is freed. */
static void run(struct fx *fx)
{
	assert_int_equal(uv_async_init(&fx->loop, &fx->done, on_done), 0);
	fx->done.data = fx;
	for (int i = 0; i < fx->nclients; i++)
		assert_int_equal(uv_thread_create(&fx->clients[i].thread,
						  client_main,
						  &fx->clients[i]),
				 0);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	for (int i = 0; i < fx->nclients; i++)
		uv_thread_join(&fx->clients[i].thread);
	assert_null(fx->srv);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	strcpy(fx->dir, "/tmp/hw-test-api-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/api.sock", fx->dir);
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	assert_int_equal(uv_timer_init(&fx->loop, &fx->timer), 0);
	fx->timer.data = fx;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	server_stop(fx);
	if (!uv_is_closing((uv_handle_t *)&fx->timer))
		uv_close((uv_handle_t *)&fx->timer, NULL);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(hw_test_loop_close(&fx->loop), 0);
	for (int i = 0; i < fx->nclients; i++) {
		json_decref(fx->clients[i].resp);
		json_decref(fx->clients[i].body);
	}
	unlink(fx->path);
	assert_int_equal(rmdir(fx->dir), 0);
	free(fx);
	return 0;
}

static const char *str_at(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void test_get_query(void **state)
{
	struct fx *fx = *state;
	struct client *c;

	start_server(fx);
	c = add_client(fx, "GET", "/v1/info?name=al%20ice&x=1", NULL);
	run(fx);
	assert_int_equal(c->rc, 0);
	assert_int_equal(c->status, 200);
	assert_string_equal(str_at(c->resp, "method"), "GET");
	assert_string_equal(str_at(c->resp, "path"), "/v1/info");
	assert_string_equal(str_at(c->resp, "name"), "al ice");
	assert_true(json_is_null(json_object_get(c->resp, "body")));
	assert_int_equal(fx->calls, 1);
}

static void test_post_echo(void **state)
{
	struct fx *fx = *state;
	struct client *c;

	start_server(fx);
	c = add_client(fx, "POST", "/v1/echo",
		       json_pack("{s:[i,i], s:s, s:n}", "a", 1, 2, "s",
				 "h\xc3\xa9llo", "z"));
	run(fx);
	assert_int_equal(c->rc, 0);
	assert_int_equal(c->status, 200);
	assert_string_equal(str_at(c->resp, "method"), "POST");
	assert_true(json_equal(json_object_get(c->resp, "body"), c->body));
	assert_true(json_is_null(json_object_get(c->resp, "name")));
}

static void test_many_clients(void **state)
{
	struct fx *fx = *state;

	start_server(fx);
	for (int i = 0; i < MAX_CLIENTS; i++)
		add_client(fx, i % 2 ? "DELETE" : "PUT", "/v1/x?name=n",
			   i % 2 ? NULL : json_pack("{s:i}", "i", i));
	run(fx);
	assert_int_equal(fx->calls, MAX_CLIENTS);
	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &fx->clients[i];

		assert_int_equal(c->rc, 0);
		assert_int_equal(c->status, 200);
		assert_string_equal(str_at(c->resp, "method"),
				    i % 2 ? "DELETE" : "PUT");
		assert_true(json_equal(json_object_get(c->resp, "body"),
				       c->body ? c->body : json_null()));
	}
}

static void test_deferred(void **state)
{
	struct fx *fx = *state;
	struct client *c;

	fx->mode = MODE_DEFER;
	fx->delay_ms = 50;
	start_server(fx);
	c = add_client(fx, "GET", "/v1/ping", NULL);
	run(fx);
	assert_int_equal(c->rc, 0);
	assert_int_equal(c->status, 202);
	assert_true(json_is_true(json_object_get(c->resp, "late")));
	assert_true(c->elapsed_ms >= 45);
}

static void test_invalid_json(void **state)
{
	struct fx *fx = *state;
	struct client *c;
	const char *e;

	start_server(fx);
	c = add_client(fx, "POST", "/v1/raw", NULL);
	c->raw = "{\"a\": nope}";
	c->raw_len = strlen(c->raw);
	run(fx);
	assert_int_equal(c->rc, 0);
	assert_int_equal(c->status, 400);
	assert_non_null(c->resp);
	e = str_at(c->resp, "error");
	assert_non_null(e);
	assert_true(!strncmp(e, "request body is not JSON: ", 26));
	assert_int_equal(fx->calls, 0);
}

static void test_body_too_big(void **state)
{
	struct fx *fx = *state;
	char *big = malloc(HW_API_MAX_BODY + 1);
	struct client *c;

	assert_non_null(big);
	memset(big, 'a', HW_API_MAX_BODY);
	big[HW_API_MAX_BODY] = '\0';
	start_server(fx);
	/* A JSON string of HW_API_MAX_BODY letters plus its quotes. */
	c = add_client(fx, "POST", "/v1/echo", json_string(big));
	free(big);
	run(fx);
	assert_int_equal(c->rc, 0);
	assert_int_equal(c->status, 413);
	assert_string_equal(str_at(c->resp, "error"),
			    "request body exceeds 65536 bytes");
	assert_int_equal(fx->calls, 0);
}

/* A body announced far over the cap is refused before it is read. */
static void test_body_far_too_big(void **state)
{
	struct fx *fx = *state;
	size_t n = 4 * 1024 * 1024;
	char *big = malloc(n);
	struct client *c;

	assert_non_null(big);
	memset(big, ' ', n);
	start_server(fx);
	c = add_client(fx, "POST", "/v1/raw", NULL);
	c->raw = big;
	c->raw_len = n;
	run(fx);
	free(big);
	/* Answered before the body is read: the client, still sending,
	 * may see the connection close before it reads the 413. */
	if (c->rc == 0) {
		assert_int_equal(c->status, 413);
		assert_string_equal(str_at(c->resp, "error"),
				    "request body exceeds 65536 bytes");
	}
	assert_int_equal(fx->calls, 0);
}

/* Chunked bodies have no announced length: a small one reaches the
 * handler, one over the cap is read, dropped and answered 413, and one
 * far over it gets the connection closed. */
static void test_body_chunked(void **state)
{
	struct fx *fx = *state;
	size_t big_n = HW_API_MAX_BODY + 5000, huge_n = 4 * 1024 * 1024;
	char *big = malloc(big_n), *huge = malloc(huge_n);
	struct client *ok, *c413, *cut;
	char small[9000];

	assert_non_null(big);
	assert_non_null(huge);
	memset(big, ' ', big_n);
	memset(huge, ' ', huge_n);
	memset(small, ' ', sizeof(small));
	memcpy(small + sizeof(small) - 8, "{\"k\":1}", 7);
	start_server(fx);
	ok = add_client(fx, "POST", "/v1/raw", NULL);
	ok->raw = small;
	ok->raw_len = sizeof(small) - 1;
	ok->chunked = true;
	c413 = add_client(fx, "POST", "/v1/raw", NULL);
	c413->raw = big;
	c413->raw_len = big_n;
	c413->chunked = true;
	cut = add_client(fx, "POST", "/v1/raw", NULL);
	cut->raw = huge;
	cut->raw_len = huge_n;
	cut->chunked = true;
	run(fx);
	free(big);
	free(huge);
	assert_int_equal(fx->calls, 1);
	assert_int_equal(ok->rc, 0);
	assert_int_equal(ok->status, 200);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(ok->resp, "body"), "k")),
			 1);
	assert_int_equal(c413->rc, 0);
	assert_int_equal(c413->status, 413);
	assert_string_equal(str_at(c413->resp, "error"),
			    "request body exceeds 65536 bytes");
	assert_int_equal(cut->rc, -1);
}

static void test_missing_socket(void **state)
{
	struct fx *fx = *state;
	char want[256];
	long status = 1;
	json_t *resp = (json_t *)1;
	char err[256];

	snprintf(want, sizeof(want), "cannot reach visor at %s: is it running?",
		 fx->path);
	assert_int_equal(hw_api_call(fx->path, "GET", "/v1/info", NULL, 1000,
				     &status, &resp, err, sizeof(err)),
			 -1);
	assert_string_equal(err, want);
	assert_null(resp);
	assert_int_equal(status, 0);
}

static void test_address_in_use(void **state)
{
	struct fx *fx = *state;
	struct hw_api_server *other = (struct hw_api_server *)1;
	struct client *c;

	start_server(fx);
	assert_int_equal(hw_api_server_new(&other, &fx->loop, fx->path,
					   handler, fx),
			 -EADDRINUSE);
	assert_null(other);
	/* The first server still answers. */
	c = add_client(fx, "GET", "/v1/info", NULL);
	run(fx);
	assert_int_equal(c->rc, 0);
	assert_int_equal(c->status, 200);
}

static void test_stale_socket_and_mode(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char want[256], err[256];
	struct client *c;
	struct stat st;
	json_t *resp;
	long status;
	mode_t old;
	int fd;

	/* A socket file left by a process that is gone. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	strcpy(sa.sun_path, fx->path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(lstat(fx->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	/* Nobody listens: refused, the same message as a missing file. */
	snprintf(want, sizeof(want), "cannot reach visor at %s: is it running?",
		 fx->path);
	assert_int_equal(hw_api_call(fx->path, "GET", "/", NULL, 1000, &status,
				     &resp, err, sizeof(err)),
			 -1);
	assert_string_equal(err, want);

	/* The mode is 0600 whatever the umask. */
	old = umask(0);
	start_server(fx);
	umask(old);
	assert_int_equal(lstat(fx->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);

	c = add_client(fx, "GET", "/v1/info", NULL);
	run(fx);
	assert_int_equal(c->rc, 0);
	assert_int_equal(c->status, 200);
	/* Freeing the server removed its socket file. */
	assert_int_equal(lstat(fx->path, &st), -1);
}

static void test_bad_paths(void **state)
{
	struct fx *fx = *state;
	struct hw_api_server *srv = NULL;
	char longp[200];
	int fd;

	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(hw_api_server_new(&srv, &fx->loop, longp, handler,
					   fx),
			 -ENAMETOOLONG);
	/* A file that is not a socket is never replaced. */
	fd = open(fx->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(hw_api_server_new(&srv, &fx->loop, fx->path, handler,
					   fx),
			 -EEXIST);
	assert_null(srv);
	hw_api_server_free(NULL);
}

static void test_free_with_pending(void **state)
{
	struct fx *fx = *state;
	struct client *c;

	fx->mode = MODE_NEVER;
	fx->delay_ms = 30;
	start_server(fx);
	c = add_client(fx, "GET", "/v1/ping", NULL);
	run(fx);
	assert_int_equal(fx->calls, 1);
	/* The answer normally gets out before MHD stops; if not, the
	 * client sees a closed connection, not a hang. */
	if (c->rc == 0) {
		assert_int_equal(c->status, 503);
		assert_string_equal(str_at(c->resp, "error"),
				    "the visor is shutting down");
	} else {
		assert_true(c->elapsed_ms < 4000);
	}
}

/* The handler may free the server; its own request is answered 503. */
static void test_free_in_handler(void **state)
{
	struct fx *fx = *state;
	struct client *c;

	fx->mode = MODE_FREE;
	start_server(fx);
	c = add_client(fx, "POST", "/v1/stop", json_pack("{s:b}", "now", 1));
	run(fx);
	assert_int_equal(fx->calls, 1);
	if (c->rc == 0)
		assert_int_equal(c->status, 503);
}

static void test_client_gone(void **state)
{
	struct fx *fx = *state;
	char want[256];
	struct client *c;

	fx->mode = MODE_DEFER;
	fx->delay_ms = 100;
	fx->free_ms = 50;
	start_server(fx);
	c = add_client(fx, "GET", "/v1/ping", NULL);
	c->timeout_ms = 20;
	run(fx);
	assert_int_equal(fx->calls, 1);
	assert_int_equal(c->rc, -1);
	snprintf(want, sizeof(want), "visor at %s did not answer within 20 ms",
		 fx->path);
	assert_string_equal(c->err, want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_query, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_post_echo, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_many_clients, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_deferred, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_invalid_json, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_body_too_big, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_body_far_too_big, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_body_chunked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_missing_socket, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_address_in_use, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_and_mode,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_paths, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_with_pending, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_in_handler, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_client_gone, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
