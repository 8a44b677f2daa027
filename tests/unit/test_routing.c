/* The routing module's parts that run without a network: the stream
 * socket's request parser, the setup answers (fake ops, no transports),
 * the stream socket's answers to bad requests, dial refusals, and the tap
 * file's writer. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>
#include <uv.h>

#include "router/setup_msg.h"
#include "hwtest.h"
#include "visor/routing.h"
#include "visor/routing_priv.h"
#include "visor/routing_tap.h"
#include "visor/stream_req.h"

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/hw-test-routing-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/streams.sock", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/tap", dir);
	unlink(path);
	return rmdir(dir);
}

/* ---- the request line ---- */

static void new_pk(uint8_t pk[HW_PK_LEN])
{
	struct hw_identity id;

	assert_int_equal(hw_identity_generate(&id), 0);
	memcpy(pk, id.pk, HW_PK_LEN);
	hw_identity_wipe(&id);
}

static int parse(const char *line, struct hw_stream_req *r, char *err)
{
	return hw_stream_req_parse(line, strlen(line), r, err, 300);
}

static void test_req_good(void **state)
{
	struct hw_stream_req r;
	char err[300], line[600], k[HW_PK_HEXLEN + 1];
	uint8_t pk[HW_PK_LEN];

	assert_int_equal(parse("{\"op\": \"listen\", \"port\": 7}", &r, err),
			 0);
	assert_int_equal(r.op, HW_STREAM_LISTEN);
	assert_int_equal(r.port, 7);
	assert_int_equal(r.discard, 0);
	assert_int_equal(parse("{\"op\": \"listen\", \"port\": 65535, "
			       "\"discard\": true}", &r, err), 0);
	assert_int_equal(r.port, 65535);
	assert_int_equal(r.discard, 1);

	new_pk(pk);
	hw_pk_format(pk, k);
	snprintf(line, sizeof(line), "{\"op\": \"dial\", \"pk\": \"%s\", "
		 "\"port\": 9, \"send\": 1099511627776, \"via\": [\"%s\"]}",
		 k, k);
	assert_int_equal(parse(line, &r, err), 0);
	assert_int_equal(r.op, HW_STREAM_DIAL);
	assert_int_equal(r.port, 9);
	assert_memory_equal(r.pk, pk, HW_PK_LEN);
	assert_true(r.send == (1ull << 40));
	assert_int_equal(r.nvia, 1);
	assert_memory_equal(r.via[0], pk, HW_PK_LEN);
	/* "via" that is no array is no hops, as it always was. */
	snprintf(line, sizeof(line), "{\"op\": \"dial\", \"pk\": \"%s\", "
		 "\"port\": 9, \"via\": \"x\"}", k);
	assert_int_equal(parse(line, &r, err), 0);
	assert_int_equal(r.nvia, 0);
	assert_true(r.send == 0);
}

static void expect_err(const char *line, const char *msg, int late)
{
	struct hw_stream_req r;
	char err[300];

	assert_int_equal(hw_stream_req_parse(line, strlen(line), &r, err,
					     sizeof(err)), -EINVAL);
	assert_string_equal(err, msg);
	assert_int_equal(r.late, late);
}

static void test_req_hostile(void **state)
{
	char line[2000], k[HW_PK_HEXLEN + 1], *p;
	uint8_t pk[HW_PK_LEN];
	struct hw_stream_req r;
	char err[300];

	expect_err("", "expected one line of JSON with \"op\"", 0);
	expect_err("{", "expected one line of JSON with \"op\"", 0);
	expect_err("[\"op\"]", "expected one line of JSON with \"op\"", 0);
	expect_err("{\"op\": 1}", "expected one line of JSON with \"op\"", 0);
	expect_err("{\"op\": \"connect\"}", "op: must be listen or dial", 0);
	expect_err("{\"op\": \"listen\"}", "port: must be 1..65535", 0);
	expect_err("{\"op\": \"listen\", \"port\": 0}",
		   "port: must be 1..65535", 0);
	expect_err("{\"op\": \"listen\", \"port\": 65536}",
		   "port: must be 1..65535", 0);
	expect_err("{\"op\": \"listen\", \"port\": \"7\"}",
		   "port: must be 1..65535", 0);
	expect_err("{\"op\": \"listen\", \"port\": 7.0}",
		   "port: must be 1..65535", 0);
	expect_err("{\"op\": \"listen\", \"port\": 7, \"discard\": 1}",
		   "discard: must be true or false", 1);
	expect_err("{\"op\": \"dial\", \"port\": 7}",
		   "pk: not a 64-character hex public key", 0);
	expect_err("{\"op\": \"dial\", \"pk\": \"abab\", \"port\": 7}",
		   "pk: not a 64-character hex public key", 0);

	new_pk(pk);
	hw_pk_format(pk, k);
	snprintf(line, sizeof(line), "{\"op\": \"dial\", \"pk\": \"%s\"}", k);
	expect_err(line, "port: must be 1..65535", 0);
	snprintf(line, sizeof(line), "{\"op\": \"dial\", \"pk\": \"%s\", "
		 "\"port\": 7, \"send\": 0}", k);
	expect_err(line, "send: must be a byte count, 1..2^40", 0);
	snprintf(line, sizeof(line), "{\"op\": \"dial\", \"pk\": \"%s\", "
		 "\"port\": 7, \"send\": 1099511627777}", k);
	expect_err(line, "send: must be a byte count, 1..2^40", 0);
	snprintf(line, sizeof(line), "{\"op\": \"dial\", \"pk\": \"%s\", "
		 "\"port\": 7, \"via\": [\"%s\", 5]}", k, k);
	expect_err(line, "via[1]: not a public key", 1);
	/* One hop too many. */
	p = line + snprintf(line, sizeof(line), "{\"op\": \"dial\", \"pk\": "
			    "\"%s\", \"port\": 7, \"via\": [", k);
	for (int i = 0; i < HW_SETUP_HOPS_MAX; i++)
		p += sprintf(p, "%s1", i ? ", " : "");
	strcpy(p, "]}");
	snprintf(err, sizeof(err), "via: at most %d hops",
		 HW_SETUP_HOPS_MAX - 1);
	expect_err(line, err, 1);
	/* A NUL inside the line is not JSON. */
	assert_int_equal(hw_stream_req_parse("{\"op\": \"listen\"\0}", 17, &r,
					     err, sizeof(err)), -EINVAL);
	/* A tiny error buffer is cut, not overrun. */
	assert_int_equal(hw_stream_req_parse("{", 1, &r, err, 4), -EINVAL);
	assert_string_equal(err, "exp");
}

/* ---- a routing module with fake ops ---- */

struct fx {
	uv_loop_t loop;
	struct hw_identity id;
	uint8_t x_priv[32];
	uint8_t nodes[2][HW_PK_LEN];
	struct hw_routing *rt;
	int resolves, discoveries;
};

static int fake_resolve(void *ud, const uint8_t pk[HW_PK_LEN],
			hw_routing_resolve_cb cb, void *cb_ud)
{
	struct fx *fx = ud;
	fx->resolves++;
	return -ENOTSUP;
}

static struct hw_disc_client *fake_discovery(void *ud)
{
	struct fx *fx = ud;
	fx->discoveries++;
	return NULL;
}

static const struct hw_routing_ops fake_ops = {
	.resolve = fake_resolve,
	.discovery = fake_discovery,
};

static void fx_params(struct fx *fx, struct hw_routing_params *p,
		      unsigned nnodes, const char *tap)
{
	memset(p, 0, sizeof(*p));
	p->loop = &fx->loop;
	p->id = &fx->id;
	p->x_priv = fx->x_priv;
	p->setup_nodes = (const uint8_t(*)[HW_PK_LEN])fx->nodes;
	p->nsetup_nodes = nnodes;
	p->keepalive_ms = 1000;
	p->local_dir = dir;
	p->tap_file = tap;
	p->ops = &fake_ops;
	p->ud = fx;
}

static void fx_init(struct fx *fx, unsigned nnodes)
{
	struct hw_routing_params p;
	uint8_t xpub[32];
	char err[300];

	memset(fx, 0, sizeof(*fx));
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	assert_int_equal(hw_identity_generate(&fx->id), 0);
	assert_int_equal(hw_identity_x25519(&fx->id, fx->x_priv, xpub), 0);
	memset(fx->nodes[0], 0x51, HW_PK_LEN);
	memset(fx->nodes[1], 0x52, HW_PK_LEN);
	fx_params(fx, &p, nnodes, NULL);
	assert_int_equal(hw_routing_new(&fx->rt, &p, err, sizeof(err)), 0);
}

static void fx_done(struct fx *fx)
{
	hw_routing_free(fx->rt);
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(hw_test_loop_close(&fx->loop), 0);
	hw_identity_wipe(&fx->id);
}

/* Answers m from from_pk; checks a RESULT with status and text. */
static void expect_result(struct fx *fx, const uint8_t *from,
			  const struct hw_setup_msg *m, uint8_t status,
			  const char *text)
{
	struct hw_setup_msg a;

	assert_int_equal(hw_routing_setup_answer(fx->rt, from, m, &a), 1);
	assert_int_equal(a.type, HW_SETUP_RESULT);
	assert_int_equal(a.req, m->req);
	assert_int_equal(a.u.result.status, status);
	assert_string_equal(a.u.result.text, text);
}

static int refuse_incoming(void *hook_ud, const struct hw_route_desc *d,
			   const struct hw_route_end_ops **ops, void **ud,
			   char *msg, size_t msglen)
{
	int *calls = hook_ud;
	(*calls)++;
	snprintf(msg, msglen, "no app on port %u", d->dst_port);
	return -EPERM;
}

static void test_setup_answers(void **state)
{
	struct fx fx;
	struct hw_setup_msg m, a;
	uint8_t stranger[HW_PK_LEN];
	char text[100];
	int calls = 0;

	fx_init(&fx, 2);
	memset(stranger, 0x77, sizeof(stranger));

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_BUILD;
	m.req = 1;
	expect_result(&fx, fx.nodes[0], &m, HW_SETUP_REFUSED,
		      "this visor is not a setup node");

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_RESERVE;
	m.req = 2;
	m.u.reserve.count = 2;
	expect_result(&fx, stranger, &m, HW_SETUP_REFUSED,
		      "not a trusted setup node");
	assert_true(fx.rt->setup_refused == 1);
	/* The second trusted node counts as much as the first. */
	assert_int_equal(hw_routing_setup_answer(fx.rt, fx.nodes[1], &m, &a),
						 1);
	assert_int_equal(a.type, HW_SETUP_RESERVED);
	assert_int_equal(a.req, 2);
	assert_int_equal(a.u.reserved.status, HW_SETUP_OK);
	assert_int_equal(a.u.reserved.count, 2);
	assert_true(a.u.reserved.ids[0] && a.u.reserved.ids[1] &&
		    a.u.reserved.ids[0] != a.u.reserved.ids[1]);

	/* A rule on an ID nobody reserved is refused, and the rules before
	 * it in the message go again. */
	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_ADD_RULES;
	m.req = 3;
	m.u.add_rules.count = 1;
	m.u.add_rules.rules[0].id = a.u.reserved.ids[1] + 1000;
	m.u.add_rules.rules[0].kind = HW_RULE_CONSUME;
	m.u.add_rules.rules[0].keepalive_ms = HW_RULE_KEEPALIVE_MIN_MS;
	m.u.add_rules.rules[0].prev_tp[0] = 1;
	m.u.add_rules.rules[0].desc.src_port = 1;
	m.u.add_rules.rules[0].desc.dst_port = 2;
	snprintf(text, sizeof(text), "rule 0 (id %u): route ID not reserved",
		 m.u.add_rules.rules[0].id);
	expect_result(&fx, fx.nodes[0], &m, HW_SETUP_REFUSED, text);
	/* On a reserved ID, over a transport this visor does not have. */
	m.u.add_rules.rules[0].id = a.u.reserved.ids[1];
	snprintf(text, sizeof(text), "rule 0 (id %u): no such transport here",
		 m.u.add_rules.rules[0].id);
	expect_result(&fx, fx.nodes[0], &m, HW_SETUP_NO_TP, text);
	m.u.add_rules.rules[0].keepalive_ms = 0;
	snprintf(text, sizeof(text), "rule 0 (id %u): Invalid argument",
		 m.u.add_rules.rules[0].id);
	expect_result(&fx, fx.nodes[0], &m, HW_SETUP_REFUSED, text);

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_DEL_RULES;
	m.req = 4;
	m.u.del_rules.count = 2;
	m.u.del_rules.ids[0] = a.u.reserved.ids[0];
	m.u.del_rules.ids[1] = 12345;
	expect_result(&fx, fx.nodes[0], &m, HW_SETUP_OK, "");

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_INCOMING;
	m.req = 5;
	memcpy(m.u.incoming.desc.src_pk, stranger, HW_PK_LEN);
	memcpy(m.u.incoming.desc.dst_pk, stranger, HW_PK_LEN);
	m.u.incoming.desc.dst_port = 80;
	expect_result(&fx, fx.nodes[0], &m, HW_SETUP_REFUSED,
		      "this visor is not the destination");
	memcpy(m.u.incoming.desc.dst_pk, fx.id.pk, HW_PK_LEN);
	expect_result(&fx, fx.nodes[0], &m, HW_SETUP_REFUSED,
		      "nothing listens on port 80");
	hw_routing_set_incoming(fx.rt, refuse_incoming, &calls);
	expect_result(&fx, fx.nodes[0], &m, HW_SETUP_REFUSED,
		      "no app on port 80");
	assert_int_equal(calls, 1);
	hw_routing_set_incoming(fx.rt, NULL, NULL);

	/* Answers to nothing asked, and a BUILT no dial waits for, get no
	 * answer and are counted. */
	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_RESULT;
	assert_int_equal(hw_routing_setup_answer(fx.rt, fx.nodes[0], &m, &a),
						 0);
	m.type = HW_SETUP_RESERVED;
	assert_int_equal(hw_routing_setup_answer(fx.rt, fx.nodes[0], &m, &a),
						 0);
	m.type = HW_SETUP_BUILT;
	m.req = 9;
	assert_int_equal(hw_routing_setup_answer(fx.rt, fx.nodes[0], &m, &a),
						 0);
	assert_true(fx.rt->setup_bad == 3);
	assert_int_equal(fx.resolves, 0);
	fx_done(&fx);
}

static void on_end_closed(void *ud, int reason, const char *msg)
{
	fail(); /* a refused dial calls nothing back */
}

static const struct hw_route_end_ops end_ops = {
	.closed = on_end_closed,
};

static void test_dial_refused(void **state)
{
	struct fx fx;
	uint8_t peer[HW_PK_LEN];
	char err[300];

	memset(peer, 0x33, sizeof(peer));
	fx_init(&fx, 0);
	assert_int_equal(hw_routing_dial(fx.rt, peer, 5, 50000, &end_ops, &fx,
					 err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "no setup node configured "
			    "(routing.setup_nodes)");
	fx_done(&fx);

	fx_init(&fx, 1);
	assert_int_equal(hw_routing_dial(fx.rt, peer, 5, 50000, &end_ops, &fx,
					 err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "no discovery to find paths "
			    "(discovery.url)");
	assert_true(fx.discoveries > 0);
	assert_true(hw_routing_ephemeral_port(fx.rt) >= EPHEMERAL_FIRST);
	fx_done(&fx);
}

/* ---- the stream socket ---- */

struct conn {
	int fd;
	char buf[1024];
	size_t len;
};

static void conn_open(struct conn *c)
{
	struct sockaddr_un sa;

	memset(c, 0, sizeof(*c));
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/streams.sock", dir);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static int conn_has_line(void *arg)
{
	struct conn *c = arg;
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len,
			 0);
	if (n > 0)
		c->len += (size_t)n;
	c->buf[c->len] = 0;
	return memchr(c->buf, '\n', c->len) != NULL;
}

/* Sends line, runs the loop until an answer line arrives, checks it. */
static void ask(struct fx *fx, uv_timer_t *tick, struct conn *c,
		const char *line, const char *answer)
{
	assert_int_equal(send(c->fd, line, strlen(line), 0),
			 (ssize_t)strlen(line));
	assert_true(hw_test_run_until(&fx->loop, tick, conn_has_line, c,
				      5000));
	assert_string_equal(c->buf, answer);
	c->len = 0;
}

static void test_streams(void **state)
{
	struct fx fx;
	struct conn a, b, d;
	uv_timer_t tick;
	char line[300], k[HW_PK_HEXLEN + 1];

	fx_init(&fx, 1);
	uv_timer_init(&fx.loop, &tick);
	conn_open(&a);
	conn_open(&b);
	conn_open(&d);
	ask(&fx, &tick, &a, "{\"op\": \"listen\", \"port\": 7}\n",
	    "{\"ok\":true,\"listening\":7}\n");
	/* A taken port is reported before a bad "discard", as always. */
	ask(&fx, &tick, &b, "{\"op\": \"listen\", \"port\": 7, "
	    "\"discard\": 5}\n",
	    "{\"error\":\"something already listens on that port\"}\n");
	/* So is a visor that cannot dial before a bad hop. */
	hw_pk_format(fx.id.pk, k);
	snprintf(line, sizeof(line), "{\"op\": \"dial\", \"pk\": \"%s\", "
		 "\"port\": 7, \"via\": [1]}\n", k);
	ask(&fx, &tick, &d, line,
	    "{\"error\":\"no discovery to find paths (discovery.url)\"}\n");
	close(b.fd);
	close(d.fd);
	conn_open(&b);
	ask(&fx, &tick, &b, "not json\n",
	    "{\"error\":\"expected one line of JSON with \\\"op\\\"\"}\n");
	close(b.fd);
	close(a.fd);
	uv_close((uv_handle_t *)&tick, NULL);
	fx_done(&fx);
}

/* ---- the tap file ---- */

static size_t file_bytes(const char *path, uint8_t *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

static void test_tap(void **state)
{
	struct hw_routing_tap *t;
	uv_loop_t loop;
	uint8_t in[40], got[64];
	char path[128];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	snprintf(path, sizeof(path), "%s/tap", dir);
	assert_int_equal(uv_loop_init(&loop), 0);
	/* What is there already stays: the file is appended to. */
	assert_int_equal(hw_routing_tap_new(&t, &loop, path, 16), 0);
	hw_routing_tap_write(t, in, 4);
	hw_routing_tap_free(t);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(hw_routing_tap_new(&t, &loop, path, 16), 0);
	hw_routing_tap_write(t, in + 4, 10); /* goes to the pool at once */
	hw_routing_tap_write(t, in + 14, 10); /* waits in the buffer */
	hw_routing_tap_write(t, in + 24, 10); /* does not fit: dropped */
	hw_routing_tap_write(t, in + 24, 6);  /* fits */
	assert_true(hw_routing_tap_dropped(t) == 10);
	hw_routing_tap_free(t); /* writes out what is buffered */
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(hw_test_loop_close(&loop), 0);
	assert_int_equal(file_bytes(path, got, sizeof(got)), 30);
	assert_memory_equal(got, in, 30);
}

static void test_tap_routing(void **state)
{
	struct hw_routing_params p;
	struct fx fx;
	char err[300], path[128], want[300];

	/* A tap file that cannot be opened fails routing with its name; the
	 * caller frees what was started. */
	fx_init(&fx, 0);
	hw_routing_free(fx.rt);
	snprintf(path, sizeof(path), "%s/no/such/dir/tap", dir);
	fx_params(&fx, &p, 0, path);
	assert_int_equal(hw_routing_new(&fx.rt, &p, err, sizeof(err)),
			 -ENOENT);
	snprintf(want, sizeof(want), "routing.tap_file %s: %s", path,
		 strerror(ENOENT));
	assert_string_equal(err, want);
	assert_non_null(fx.rt);
	fx_done(&fx);

	fx_init(&fx, 0);
	hw_routing_free(fx.rt);
	snprintf(path, sizeof(path), "%s/tap", dir);
	fx_params(&fx, &p, 0, path);
	assert_int_equal(hw_routing_new(&fx.rt, &p, err, sizeof(err)), 0);
	assert_non_null(fx.rt->tap);
	assert_int_equal(access(path, F_OK), 0);
	fx_done(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req_good),
		cmocka_unit_test(test_req_hostile),
		cmocka_unit_test_setup_teardown(test_setup_answers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dial_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_streams, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_routing, setup,
						teardown),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
