/* The mesh messages' codec (mesh/msg.c): round trips, every malformed
 * field, every truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "mesh/msg.h"
#include "util/err.h"

static uint8_t buf[HW_MESH_MSG_MAX];

static void test_addr_check(void **state)
{
	(void)state;
	assert_int_equal(hw_mesh_addr_check(""), 0);
	assert_int_equal(hw_mesh_addr_check("tcp://127.0.0.1:7777"), 0);
	assert_int_equal(hw_mesh_addr_check("tcp://[::1]:7777"), 0);
	assert_int_equal(hw_mesh_addr_check("tcp://host.example:1"), 0);
	const char *bad[] = {"127.0.0.1:7777", "udp://1.2.3.4:5",
			     "tcp://1.2.3.4", "tcp://1.2.3.4:0",
			     "tcp://1.2.3.4:65536", "tcp://:7777",
			     "tcp://a b:1", "tcp://x:1\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hw_mesh_addr_check(bad[i]) != HW_EPROTO)
			fail_msg("'%s' passed", bad[i]);
}

static void test_hello_round_trip(void **state)
{
	struct hw_mesh_msg m = {.kind = HW_MESH_HELLO, .state = HW_MESH_INIT},
			   got;
	char why[200];
	size_t n;

	(void)state;
	snprintf(m.me, sizeof(m.me), "tcp://0.0.0.0:7777");
	snprintf(m.you, sizeof(m.you), "tcp://127.0.0.1:40000");
	n = hw_mesh_build(&m, buf);
	assert_int_equal(n, 3 + 1 + 18 + 1 + 21);
	assert_int_equal(hw_mesh_parse(buf, n, &got, why, sizeof(why)), 0);
	assert_int_equal(got.kind, HW_MESH_HELLO);
	assert_int_equal(got.state, HW_MESH_INIT);
	assert_string_equal(got.me, m.me);
	assert_string_equal(got.you, m.you);
	/* Every truncation and one byte too many. */
	for (size_t k = 0; k < n; k++)
		assert_int_equal(hw_mesh_parse(buf, k, &got, why, sizeof(why)),
				 HW_EPROTO);
	buf[n] = 0;
	assert_int_equal(hw_mesh_parse(buf, n + 1, &got, why, sizeof(why)),
			 HW_EPROTO);
	assert_non_null(strstr(why, "1 bytes after"));
	/* Empty addresses are fine (a visor that does not listen). */
	m.me[0] = m.you[0] = '\0';
	m.state = HW_MESH_FINAL;
	n = hw_mesh_build(&m, buf);
	assert_int_equal(n, 5);
	assert_int_equal(hw_mesh_parse(buf, n, &got, why, sizeof(why)), 0);
	assert_string_equal(got.me, "");
	/* Bad fields. */
	uint8_t v2[] = {2, 1, 1, 0, 0}, st[] = {1, 1, 3, 0, 0},
		kind[] = {1, 9, 1, 0, 0}, junk[] = {1, 1, 1, 3, 'a', 'b', 'c',
						    0},
		nul[] = {1, 1, 1, 2, 'a', 0, 0};
	assert_int_equal(hw_mesh_parse(v2, sizeof(v2), &got, why, 200),
			 HW_EPROTO);
	assert_non_null(strstr(why, "version 2"));
	assert_int_equal(hw_mesh_parse(st, sizeof(st), &got, why, 200),
			 HW_EPROTO);
	assert_non_null(strstr(why, "state 3"));
	assert_int_equal(hw_mesh_parse(kind, sizeof(kind), &got, why, 200),
			 HW_EPROTO);
	assert_non_null(strstr(why, "kind 9"));
	assert_int_equal(hw_mesh_parse(junk, sizeof(junk), &got, why, 200),
			 HW_EPROTO);
	assert_non_null(strstr(why, "not tcp://"));
	assert_int_equal(hw_mesh_parse(nul, sizeof(nul), &got, why, 200),
			 HW_EPROTO);
	/* An address longer than allowed, claimed or real. */
	uint8_t big[4 + 255] = {1, 1, 1, 255};
	assert_int_equal(hw_mesh_parse(big, sizeof(big), &got, why, 200),
			 HW_EPROTO);
	assert_non_null(strstr(why, "255 bytes"));
	/* The builder refuses what the parser would. */
	snprintf(m.me, sizeof(m.me), "0.0.0.0:1");
	assert_int_equal(hw_mesh_build(&m, buf), 0);
	m.me[0] = '\0';
	m.state = 7;
	assert_int_equal(hw_mesh_build(&m, buf), 0);
}

static void test_peers_round_trip(void **state)
{
	static struct hw_mesh_msg m, got;
	char why[200];
	size_t n;

	(void)state;
	m.kind = HW_MESH_PEERS;
	m.npeers = HW_MESH_PEERS_MAX;
	for (unsigned i = 0; i < m.npeers; i++) {
		memset(m.peers[i].pk, (int)i + 1, HW_PK_LEN);
		snprintf(m.peers[i].addr, sizeof(m.peers[i].addr),
			 "tcp://10.0.%u.1:%u", i, 1000 + i);
	}
	n = hw_mesh_build(&m, buf);
	assert_true(n > 3 && n <= HW_MESH_MSG_MAX);
	assert_int_equal(hw_mesh_parse(buf, n, &got, why, sizeof(why)), 0);
	assert_int_equal(got.npeers, HW_MESH_PEERS_MAX);
	for (unsigned i = 0; i < got.npeers; i++) {
		assert_memory_equal(got.peers[i].pk, m.peers[i].pk, HW_PK_LEN);
		assert_string_equal(got.peers[i].addr, m.peers[i].addr);
	}
	for (size_t k = 0; k < n; k += 7)
		assert_int_equal(hw_mesh_parse(buf, k, &got, why, sizeof(why)),
				 HW_EPROTO);
	/* Over the count, an entry without an address. */
	buf[2] = HW_MESH_PEERS_MAX + 1;
	assert_int_equal(hw_mesh_parse(buf, n, &got, why, sizeof(why)),
			 HW_EPROTO);
	assert_non_null(strstr(why, "at most 64"));
	m.npeers = 1;
	m.peers[0].addr[0] = '\0';
	assert_int_equal(hw_mesh_build(&m, buf), 0);
	uint8_t empty[3 + HW_PK_LEN + 1] = {1, 2, 1};
	assert_int_equal(hw_mesh_parse(empty, sizeof(empty), &got, why,
				       sizeof(why)), HW_EPROTO);
	assert_non_null(strstr(why, "without an address"));
	/* None at all is a valid message. */
	uint8_t none[] = {1, 2, 0};
	assert_int_equal(hw_mesh_parse(none, sizeof(none), &got, why,
				       sizeof(why)), 0);
	assert_int_equal(got.npeers, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_check),
		cmocka_unit_test(test_hello_round_trip),
		cmocka_unit_test(test_peers_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
