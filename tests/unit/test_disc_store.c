/* Discovery storage: both backends through the same operation table.
 *
 * The Redis group starts a real redis-server (Debian package redis-server)
 * on a free loopback port in a temporary directory, gives every test its
 * own database, and stops the server at the end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "discovery/store.h"
#include "hwtest.h"

#define REDIS_DATABASES 64

struct env {
	char spec[128];
	struct hw_dstore *s;
};

static struct {
	pid_t pid;
	int port;
	int next_db;
	char dir[64];
} redis = {.pid = -1};

/* ---- fixtures ---- */

static int sqlite_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	char err[256];

	if (!e)
		return -1;
	snprintf(e->spec, sizeof(e->spec), "sqlite::memory:");
	if (hw_dstore_new(&e->s, e->spec, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		free(e);
		return -1;
	}
	*state = e;
	return 0;
}

static int redis_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	char err[256];

	if (!e)
		return -1;
	if (redis.next_db >= REDIS_DATABASES) {
		free(e);
		return -1;
	}
	snprintf(e->spec, sizeof(e->spec), "redis://127.0.0.1:%d/%d",
		 redis.port, redis.next_db++);
	if (hw_dstore_new(&e->s, e->spec, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		free(e);
		return -1;
	}
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	hw_dstore_free(e->s);
	free(e);
	return 0;
}

static int find_in_path(const char *name, char *out, size_t outlen)
{
	const char *path = getenv("PATH");
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s:/usr/bin:/usr/sbin",
		 path ? path : "");
	for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, outlen, "%s/%s", dir, name);
		if (access(out, X_OK) == 0)
			return 0;
	}
	return -1;
}

static int redis_group_setup(void **state)
{
	char exe[512], port[16], dbs[16], log[128];
	struct hw_dstore *probe = NULL;
	char err[256], spec[64];

	if (find_in_path("redis-server", exe, sizeof(exe))) {
		fprintf(stderr, "test_disc_store: redis-server is missing: "
				"install the Debian package redis-server\n");
		return -1;
	}
	snprintf(redis.dir, sizeof(redis.dir), "/tmp/hw-disc-redis-XXXXXX");
	if (!mkdtemp(redis.dir)) {
		fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	redis.port = hw_test_free_port();
	if (redis.port < 0)
		return -1;
	snprintf(port, sizeof(port), "%d", redis.port);
	snprintf(dbs, sizeof(dbs), "%d", REDIS_DATABASES);
	snprintf(log, sizeof(log), "%s/redis.log", redis.dir);
	redis.pid = fork();
	if (redis.pid < 0)
		return -1;
	if (redis.pid == 0) {
		char *argv[] = {exe, "--port", port, "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir",
				redis.dir, "--databases", dbs, "--logfile",
				log, NULL};
		execv(exe, argv);
		_exit(127);
	}
	/* Ready when a store can connect (5 s at most). */
	snprintf(spec, sizeof(spec), "redis://127.0.0.1:%d", redis.port);
	for (int i = 0; i < 100; i++) {
		int status;

		if (waitpid(redis.pid, &status, WNOHANG) == redis.pid) {
			fprintf(stderr, "redis-server exited at start "
					"(see %s)\n", log);
			redis.pid = -1;
			return -1;
		}
		if (hw_dstore_new(&probe, spec, err, sizeof(err)) == 0) {
			hw_dstore_free(probe);
			return 0;
		}
		hw_test_sleep_ms(50);
	}
	fprintf(stderr, "redis-server did not answer: %s\n", err);
	return -1;
}

static int redis_group_teardown(void **state)
{
	if (redis.pid > 0) {
		kill(redis.pid, SIGTERM);
		waitpid(redis.pid, NULL, 0);
		redis.pid = -1;
	}
	if (redis.dir[0])
		hw_test_rm_tree(redis.dir);
	return 0;
}

/* ---- helpers ---- */

static void pk_hex(int n, char out[65])
{
	snprintf(out, 65, "%064x", n);
}

static char *get_text(struct hw_dstore *s, enum hw_disc_kind kind,
		      const char *key, int *rc)
{
	char *json = NULL;
	size_t len = 0;

	*rc = hw_dstore_get(s, kind, key, &json, &len);
	if (*rc == 0)
		assert_int_equal(strlen(json), len);
	return json;
}

struct seen {
	char *texts[32];
	size_t n;
};

static int collect(const char *json, size_t len, void *ud)
{
	struct seen *seen = ud;

	assert_true(seen->n < 32);
	seen->texts[seen->n] = strndup(json, len);
	assert_non_null(seen->texts[seen->n]);
	seen->n++;
	return 0;
}

static int stop_after_one(const char *json, size_t len, void *ud)
{
	(*(int *)ud)++;
	return 7;
}

static void seen_reset(struct seen *seen)
{
	for (size_t i = 0; i < seen->n; i++)
		free(seen->texts[i]);
	seen->n = 0;
}

static int seen_has(const struct seen *seen, const char *text)
{
	for (size_t i = 0; i < seen->n; i++)
		if (!strcmp(seen->texts[i], text))
			return 1;
	return 0;
}

static uint64_t count(struct hw_dstore *s, enum hw_disc_kind kind)
{
	uint64_t n = 99;

	assert_int_equal(hw_dstore_count(s, kind, &n), 0);
	return n;
}

static int64_t later(void)
{
	return hw_dstore_now_ms() + 60000;
}

/* ---- tests ---- */

static void test_put_get(void **state)
{
	struct hw_dstore *s = ((struct env *)*state)->s;
	char k[65], *json;
	int rc;

	pk_hex(1, k);
	json = get_text(s, HW_DISC_VISOR, k, &rc);
	assert_int_equal(rc, -ENOENT);
	assert_null(json);

	assert_int_equal(hw_dstore_put(s, HW_DISC_VISOR, k, "{\"v\":1}", 7,
				       NULL, NULL, later()), 0);
	json = get_text(s, HW_DISC_VISOR, k, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(json, "{\"v\":1}");
	free(json);

	/* Kinds are separate name spaces. */
	json = get_text(s, HW_DISC_RELAY, k, &rc);
	assert_int_equal(rc, -ENOENT);

	/* A put replaces. */
	assert_int_equal(hw_dstore_put(s, HW_DISC_VISOR, k, "{\"v\":2}", 7,
				       NULL, NULL, later()), 0);
	json = get_text(s, HW_DISC_VISOR, k, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(json, "{\"v\":2}");
	free(json);
	assert_int_equal(count(s, HW_DISC_VISOR), 1);
	assert_int_equal(count(s, HW_DISC_RELAY), 0);

	/* Malformed requests never reach the backend. */
	assert_int_equal(hw_dstore_put(s, HW_DISC_TRANSPORT_DEL, k, "{}", 2,
				       NULL, NULL, later()), -EINVAL);
	assert_int_equal(hw_dstore_put(s, HW_DISC_VISOR, "a b", "{}", 2,
				       NULL, NULL, later()), -EINVAL);
	assert_int_equal(hw_dstore_put(s, HW_DISC_VISOR, "", "{}", 2, NULL,
				       NULL, later()), -EINVAL);
	assert_int_equal(hw_dstore_put(s, HW_DISC_VISOR, k, "", 0, NULL,
				       NULL, later()), -EINVAL);
	assert_int_equal(hw_dstore_put(s, HW_DISC_VISOR, k, "{}", 2,
				       "with space", NULL, later()),
			 -EINVAL);
}

static void test_list_filter(void **state)
{
	struct hw_dstore *s = ((struct env *)*state)->s;
	char a[65], b[65], c[65], key[128];
	struct seen seen = {0};
	int calls = 0;

	pk_hex(0xa, a);
	pk_hex(0xb, b);
	pk_hex(0xc, c);
	assert_int_equal(hw_dstore_put(s, HW_DISC_TRANSPORT, "t1", "{\"t\":1}",
				       7, a, b, later()), 0);
	assert_int_equal(hw_dstore_put(s, HW_DISC_TRANSPORT, "t2", "{\"t\":2}",
				       7, b, c, later()), 0);
	assert_int_equal(hw_dstore_put(s, HW_DISC_TRANSPORT, "t3", "{\"t\":3}",
				       7, a, c, later()), 0);
	snprintf(key, sizeof(key), "%s/socks", a);
	assert_int_equal(hw_dstore_put(s, HW_DISC_SERVICE, key, "{\"s\":1}",
				       7, "socks", NULL, later()), 0);
	snprintf(key, sizeof(key), "%s/vpn", a);
	assert_int_equal(hw_dstore_put(s, HW_DISC_SERVICE, key, "{\"s\":2}",
				       7, "vpn", NULL, later()), 0);
	snprintf(key, sizeof(key), "%s/socks", b);
	assert_int_equal(hw_dstore_put(s, HW_DISC_SERVICE, key, "{\"s\":3}",
				       7, "socks", NULL, later()), 0);

	assert_int_equal(hw_dstore_list(s, HW_DISC_TRANSPORT, NULL, 100,
					collect, &seen), 0);
	assert_int_equal(seen.n, 3);
	seen_reset(&seen);

	assert_int_equal(hw_dstore_list(s, HW_DISC_TRANSPORT, a, 100, collect,
					&seen), 0);
	assert_int_equal(seen.n, 2);
	assert_true(seen_has(&seen, "{\"t\":1}"));
	assert_true(seen_has(&seen, "{\"t\":3}"));
	seen_reset(&seen);

	/* Matches either edge. */
	assert_int_equal(hw_dstore_list(s, HW_DISC_TRANSPORT, c, 100, collect,
					&seen), 0);
	assert_int_equal(seen.n, 2);
	assert_true(seen_has(&seen, "{\"t\":2}"));
	assert_true(seen_has(&seen, "{\"t\":3}"));
	seen_reset(&seen);

	assert_int_equal(hw_dstore_list(s, HW_DISC_TRANSPORT, a, 1, collect,
					&seen), 0);
	assert_int_equal(seen.n, 1);
	seen_reset(&seen);
	assert_int_equal(hw_dstore_list(s, HW_DISC_TRANSPORT, NULL, 2,
					collect, &seen), 0);
	assert_int_equal(seen.n, 2);
	seen_reset(&seen);
	assert_int_equal(hw_dstore_list(s, HW_DISC_TRANSPORT, NULL, 0,
					collect, &seen), 0);
	assert_int_equal(seen.n, 0);

	assert_int_equal(hw_dstore_list(s, HW_DISC_SERVICE, "socks", 100,
					collect, &seen), 0);
	assert_int_equal(seen.n, 2);
	assert_true(seen_has(&seen, "{\"s\":1}"));
	assert_true(seen_has(&seen, "{\"s\":3}"));
	seen_reset(&seen);
	assert_int_equal(hw_dstore_list(s, HW_DISC_SERVICE, "vpn", 100,
					collect, &seen), 0);
	assert_int_equal(seen.n, 1);
	seen_reset(&seen);
	assert_int_equal(hw_dstore_list(s, HW_DISC_SERVICE, "chat", 100,
					collect, &seen), 0);
	assert_int_equal(seen.n, 0);

	/* Kinds do not leak into each other's lists. */
	assert_int_equal(hw_dstore_list(s, HW_DISC_VISOR, NULL, 100, collect,
					&seen), 0);
	assert_int_equal(seen.n, 0);
	assert_int_equal(hw_dstore_list(s, HW_DISC_SERVICE, a, 100, collect,
					&seen), 0);
	assert_int_equal(seen.n, 0);

	/* The callback can stop the listing. */
	assert_int_equal(hw_dstore_list(s, HW_DISC_TRANSPORT, NULL, 100,
					stop_after_one, &calls), 7);
	assert_int_equal(calls, 1);

	assert_int_equal(count(s, HW_DISC_TRANSPORT), 3);
	assert_int_equal(count(s, HW_DISC_SERVICE), 3);
}

static void test_delete(void **state)
{
	struct hw_dstore *s = ((struct env *)*state)->s;
	char a[65], b[65], *json;
	struct seen seen = {0};
	int rc;

	pk_hex(0xa, a);
	pk_hex(0xb, b);
	assert_int_equal(hw_dstore_put(s, HW_DISC_TRANSPORT, "t1", "{\"t\":1}",
				       7, a, b, later()), 0);
	assert_int_equal(hw_dstore_put(s, HW_DISC_TRANSPORT, "t2", "{\"t\":2}",
				       7, a, b, later()), 0);
	assert_int_equal(hw_dstore_del(s, HW_DISC_TRANSPORT, "t1"), 0);
	json = get_text(s, HW_DISC_TRANSPORT, "t1", &rc);
	assert_int_equal(rc, -ENOENT);
	assert_int_equal(hw_dstore_del(s, HW_DISC_TRANSPORT, "t1"), -ENOENT);
	assert_int_equal(hw_dstore_del(s, HW_DISC_VISOR, "t2"), -ENOENT);

	assert_int_equal(hw_dstore_list(s, HW_DISC_TRANSPORT, b, 100, collect,
					&seen), 0);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.texts[0], "{\"t\":2}");
	seen_reset(&seen);
	assert_int_equal(count(s, HW_DISC_TRANSPORT), 1);
	json = get_text(s, HW_DISC_TRANSPORT, "t2", &rc);
	assert_int_equal(rc, 0);
	free(json);
}

static void test_expiry_sweep(void **state)
{
	struct hw_dstore *s = ((struct env *)*state)->s;
	char a[65], *json;
	struct seen seen = {0};
	uint64_t removed = 0;
	int rc;

	pk_hex(0xa, a);
	/* Already expired: never returned. */
	assert_int_equal(hw_dstore_put(s, HW_DISC_VISOR, a, "{\"old\":1}", 9,
				       NULL, NULL, hw_dstore_now_ms() - 1000),
			 0);
	json = get_text(s, HW_DISC_VISOR, a, &rc);
	assert_int_equal(rc, -ENOENT);
	assert_int_equal(count(s, HW_DISC_VISOR), 0);
	assert_int_equal(hw_dstore_del(s, HW_DISC_VISOR, a), -ENOENT);

	/* Expires while we wait. */
	assert_int_equal(hw_dstore_put(s, HW_DISC_TRANSPORT, "t1", "{\"t\":1}",
				       7, a, "x", hw_dstore_now_ms() + 300), 0);
	assert_int_equal(hw_dstore_put(s, HW_DISC_TRANSPORT, "t2", "{\"t\":2}",
				       7, a, "x", later()), 0);
	assert_int_equal(count(s, HW_DISC_TRANSPORT), 2);
	hw_test_sleep_ms(450);
	json = get_text(s, HW_DISC_TRANSPORT, "t1", &rc);
	assert_int_equal(rc, -ENOENT);
	assert_int_equal(count(s, HW_DISC_TRANSPORT), 1);
	assert_int_equal(hw_dstore_list(s, HW_DISC_TRANSPORT, a, 100, collect,
					&seen), 0);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.texts[0], "{\"t\":2}");
	seen_reset(&seen);

	assert_int_equal(hw_dstore_sweep(s, &removed), 0);
	/* The expired visor and transport (SQLite rows; Redis index
	 * members). */
	assert_int_equal(removed, 2);
	assert_int_equal(hw_dstore_sweep(s, &removed), 0);
	assert_int_equal(removed, 0);
	assert_int_equal(hw_dstore_sweep(s, NULL), 0);
	json = get_text(s, HW_DISC_TRANSPORT, "t2", &rc);
	assert_int_equal(rc, 0);
	free(json);

	/* A put revives an expired key. */
	assert_int_equal(hw_dstore_put(s, HW_DISC_VISOR, a, "{\"new\":1}", 9,
				       NULL, NULL, later()), 0);
	json = get_text(s, HW_DISC_VISOR, a, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(json, "{\"new\":1}");
	free(json);
}

static void test_seq_cas(void **state)
{
	struct hw_dstore *s = ((struct env *)*state)->s;
	uint8_t p1[HW_PK_LEN] = {1}, p2[HW_PK_LEN] = {2};
	uint64_t last = 0;

	assert_int_equal(hw_dstore_seq_cas(s, p1, 5, &last), 0);
	assert_int_equal(hw_dstore_seq_cas(s, p1, 5, &last), -EALREADY);
	assert_int_equal(last, 5);
	assert_int_equal(hw_dstore_seq_cas(s, p1, 4, &last), -EALREADY);
	assert_int_equal(last, 5);
	assert_int_equal(hw_dstore_seq_cas(s, p1, 6, NULL), 0);
	/* Signers are independent. */
	assert_int_equal(hw_dstore_seq_cas(s, p2, 1, &last), 0);
	assert_int_equal(hw_dstore_seq_cas(s, p2, 1, &last), -EALREADY);
	assert_int_equal(last, 1);

	/* Exact beyond double precision (2^53 + 1 vs 2^53), and up to
	 * INT64_MAX; 0 and larger are not sequence numbers. */
	assert_int_equal(hw_dstore_seq_cas(s, p1, 9007199254740993ull, NULL),
			 0);
	assert_int_equal(hw_dstore_seq_cas(s, p1, 9007199254740992ull, &last),
			 -EALREADY);
	assert_int_equal(last, 9007199254740993ull);
	assert_int_equal(hw_dstore_seq_cas(s, p1, 9007199254740994ull, NULL),
			 0);
	assert_int_equal(hw_dstore_seq_cas(s, p1, INT64_MAX, NULL), 0);
	assert_int_equal(hw_dstore_seq_cas(s, p1, INT64_MAX, &last),
			 -EALREADY);
	assert_int_equal(last, (uint64_t)INT64_MAX);
	assert_int_equal(hw_dstore_seq_cas(s, p2, 0, NULL), -EINVAL);
	assert_int_equal(hw_dstore_seq_cas(s, p2, (uint64_t)INT64_MAX + 1,
					   NULL), -EINVAL);
}

static void test_write_atomic(void **state)
{
	struct hw_dstore *s = ((struct env *)*state)->s;
	uint8_t signer[HW_PK_LEN] = {0xa};
	char a[65], b[65], c[65], *json;
	struct hw_dstore_write w = {0};
	struct hw_dstore_result res;
	int rc;

	pk_hex(0xa, a);
	pk_hex(0xb, b);
	pk_hex(0xc, c);
	w.signer = signer;
	w.seq = 10;
	w.op = HW_DSTORE_PUT;
	w.kind = HW_DISC_TRANSPORT;
	w.key = "t1";
	w.json = "{\"seq\":10}";
	w.json_len = strlen(w.json);
	w.idx[0] = a;
	w.idx[1] = b;
	w.expires_ms = later();
	assert_int_equal(hw_dstore_write(s, &w, &res), 0);
	assert_int_equal(res.outcome, HW_DSTORE_OK);

	/* A replay changes nothing. */
	w.json = "{\"seq\":9}";
	w.json_len = strlen(w.json);
	w.seq = 9;
	assert_int_equal(hw_dstore_write(s, &w, &res), 0);
	assert_int_equal(res.outcome, HW_DSTORE_REPLAY);
	assert_int_equal(res.last_seq, 10);
	json = get_text(s, HW_DISC_TRANSPORT, "t1", &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(json, "{\"seq\":10}");
	free(json);

	/* A delete by a non-edge is denied and does not use up the
	 * sequence number. */
	memset(&w, 0, sizeof(w));
	w.signer = signer;
	w.seq = 11;
	w.op = HW_DSTORE_DEL;
	w.kind = HW_DISC_TRANSPORT;
	w.key = "t1";
	w.need_idx = c;
	assert_int_equal(hw_dstore_write(s, &w, &res), 0);
	assert_int_equal(res.outcome, HW_DSTORE_DENIED);
	/* Unknown key: NOENT, and again nothing used up. */
	w.key = "t9";
	w.need_idx = a;
	assert_int_equal(hw_dstore_write(s, &w, &res), 0);
	assert_int_equal(res.outcome, HW_DSTORE_NOENT);
	/* A replayed delete is refused before anything else. */
	w.key = "t1";
	w.seq = 10;
	assert_int_equal(hw_dstore_write(s, &w, &res), 0);
	assert_int_equal(res.outcome, HW_DSTORE_REPLAY);
	json = get_text(s, HW_DISC_TRANSPORT, "t1", &rc);
	assert_int_equal(rc, 0);
	free(json);
	/* By an edge (either one), with 11 still unused. */
	w.seq = 11;
	w.need_idx = b;
	assert_int_equal(hw_dstore_write(s, &w, &res), 0);
	assert_int_equal(res.outcome, HW_DSTORE_OK);
	json = get_text(s, HW_DISC_TRANSPORT, "t1", &rc);
	assert_int_equal(rc, -ENOENT);
	assert_int_equal(hw_dstore_seq_cas(s, signer, 11, NULL), -EALREADY);

	/* Malformed writes. */
	memset(&w, 0, sizeof(w));
	w.op = HW_DSTORE_NONE;
	assert_int_equal(hw_dstore_write(s, &w, &res), -EINVAL);
	w.op = 7;
	assert_int_equal(hw_dstore_write(s, &w, &res), -EINVAL);
}

static void test_clones_share(void **state)
{
	struct env *e = *state;
	struct hw_dstore *other = NULL;
	uint8_t signer[HW_PK_LEN] = {0x42};
	char err[256], *json;
	uint64_t last = 0;
	int rc;

	assert_int_equal(hw_dstore_clone(e->s, &other, err, sizeof(err)), 0);
	assert_string_equal(hw_dstore_name(other), hw_dstore_name(e->s));
	assert_int_equal(hw_dstore_put(other, HW_DISC_RELAY, "r1", "{\"r\":1}",
				       7, NULL, NULL, later()), 0);
	json = get_text(e->s, HW_DISC_RELAY, "r1", &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(json, "{\"r\":1}");
	free(json);
	assert_int_equal(hw_dstore_seq_cas(e->s, signer, 3, NULL), 0);
	assert_int_equal(hw_dstore_seq_cas(other, signer, 3, &last),
			 -EALREADY);
	assert_int_equal(last, 3);
	hw_dstore_free(other);

	/* A separate store is separate data for sqlite::memory:, the same
	 * data for the same Redis database. */
	assert_int_equal(hw_dstore_new(&other, e->spec, err, sizeof(err)), 0);
	json = get_text(other, HW_DISC_RELAY, "r1", &rc);
	if (!strcmp(hw_dstore_name(other), "sqlite"))
		assert_int_equal(rc, -ENOENT);
	else
		assert_int_equal(rc, 0);
	free(json);
	hw_dstore_free(other);
}

static void test_bad_specs(void **state)
{
	struct hw_dstore *s = (struct hw_dstore *)1;
	char err[256];

	assert_int_equal(hw_dstore_new(&s, "mysql://x", err, sizeof(err)),
			 -EINVAL);
	assert_null(s);
	assert_non_null(strstr(err, "mysql://x"));
	assert_int_equal(hw_dstore_new(&s, "sqlite:", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(hw_dstore_new(&s, "redis://nohost", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "redis://nohost"));
	assert_int_equal(hw_dstore_new(&s, "redis://127.0.0.1:6379/x", err,
				       sizeof(err)), -EINVAL);
	assert_int_equal(hw_dstore_new(&s, "redis://127.0.0.1:6379/-1", err,
				       sizeof(err)), -EINVAL);
	assert_int_equal(hw_dstore_new(&s, "redis://:6379", err, sizeof(err)),
			 -EINVAL);
	/* Nothing listens on port 1. */
	assert_int_equal(hw_dstore_new(&s, "redis://127.0.0.1:1", err,
				       sizeof(err)), -EIO);
	assert_non_null(strstr(err, "cannot connect"));
	assert_null(s);
	assert_int_equal(hw_dstore_new(&s, "sqlite:/nonexistent-dir/x/y.db",
				       err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "/nonexistent-dir/x/y.db"));
	hw_dstore_free(NULL);
}

static int user_version_of(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int v = -1;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) ==
		    SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) ==
		    SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void test_sqlite_file_reopen(void **state)
{
	char dir[] = "/tmp/hw-disc-store-XXXXXX", path[128], spec[160];
	char err[256], *json, *jm;
	struct hw_dstore *s = NULL, *c = NULL;
	uint8_t signer[HW_PK_LEN] = {7};
	uint64_t last = 0;
	sqlite3 *db = NULL;
	int rc;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/d.db", dir);
	snprintf(spec, sizeof(spec), "sqlite:%s", path);
	assert_int_equal(hw_dstore_new(&s, spec, err, sizeof(err)), 0);
	assert_string_equal(hw_dstore_name(s), "sqlite");
	assert_int_equal(hw_dstore_put(s, HW_DISC_VISOR, "v1", "{\"v\":1}", 7,
				       NULL, NULL, later()), 0);
	assert_int_equal(hw_dstore_seq_cas(s, signer, 12, NULL), 0);
	/* A clone sees the same file. */
	assert_int_equal(hw_dstore_clone(s, &c, err, sizeof(err)), 0);
	json = get_text(c, HW_DISC_VISOR, "v1", &rc);
	assert_int_equal(rc, 0);
	free(json);
	hw_dstore_free(c);
	hw_dstore_free(s);
	assert_int_equal(user_version_of(path), 1);

	/* Reopened: schema kept, data and sequence numbers still there. */
	assert_int_equal(hw_dstore_new(&s, spec, err, sizeof(err)), 0);
	json = get_text(s, HW_DISC_VISOR, "v1", &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(json, "{\"v\":1}");
	free(json);
	assert_int_equal(hw_dstore_seq_cas(s, signer, 12, &last), -EALREADY);
	assert_int_equal(last, 12);
	hw_dstore_free(s);
	assert_int_equal(user_version_of(path), 1);

	/* A file from a newer program is refused, and left as it was. */
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL,
				      NULL, &jm), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(hw_dstore_new(&s, spec, err, sizeof(err)), -EPROTO);
	assert_null(s);
	assert_non_null(strstr(err, "schema version 99"));
	assert_int_equal(user_version_of(path), 99);

	/* A file that is not a database. */
	snprintf(path, sizeof(path), "%s/junk.db", dir);
	{
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		fputs("this is not an SQLite database, not even close to one, "
		      "but it is long enough to have a header\n", f);
		fclose(f);
	}
	snprintf(spec, sizeof(spec), "sqlite:%s", path);
	assert_true(hw_dstore_new(&s, spec, err, sizeof(err)) < 0);
	assert_null(s);
	hw_test_rm_tree(dir);
}

#define BOTH(setup, f) cmocka_unit_test_setup_teardown(f, setup, env_teardown)

int main(void)
{
	const struct CMUnitTest sqlite_tests[] = {
		BOTH(sqlite_setup, test_put_get),
		BOTH(sqlite_setup, test_list_filter),
		BOTH(sqlite_setup, test_delete),
		BOTH(sqlite_setup, test_expiry_sweep),
		BOTH(sqlite_setup, test_seq_cas),
		BOTH(sqlite_setup, test_write_atomic),
		BOTH(sqlite_setup, test_clones_share),
		cmocka_unit_test(test_sqlite_file_reopen),
		cmocka_unit_test(test_bad_specs),
	};
	const struct CMUnitTest redis_tests[] = {
		BOTH(redis_setup, test_put_get),
		BOTH(redis_setup, test_list_filter),
		BOTH(redis_setup, test_delete),
		BOTH(redis_setup, test_expiry_sweep),
		BOTH(redis_setup, test_seq_cas),
		BOTH(redis_setup, test_write_atomic),
		BOTH(redis_setup, test_clones_share),
	};
	int failed;

	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL,
					     NULL);
	failed += cmocka_run_group_tests_name("redis", redis_tests,
					      redis_group_setup,
					      redis_group_teardown);
	return failed ? 1 : 0;
}
