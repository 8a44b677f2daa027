/* The VPN server's address pool and leases.json, the networks parser,
 * and the apps' JSON files (src/apps/vpn/pool.c, status.c; compiled into
 * this test: apps are not part of hwcore). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/apps/vpn/pool.h"
#include "../../src/apps/vpn/status.h"
#include "hwtest.h"

#define PK(c) c c c c c c c c c c c c c c c c
#define PKA PK("aaaa")
#define PKB PK("bbbb")
#define PKC PK("cccc")

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/hw-test-vpn-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	hw_test_rm_tree(dir);
	return 0;
}

static const char *file(const char *name)
{
	static char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void put(const char *name, const char *text)
{
	FILE *f = fopen(file(name), "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_cidr(void **state)
{
	uint8_t a[16];
	int prefix, family;
	char err[160];

	(void)state;
	assert_int_equal(hw_vpn_cidr_parse("10.44.0.77/24", 4, a, &prefix,
					   err, sizeof(err)), 0);
	assert_int_equal(prefix, 24);
	assert_int_equal(a[3], 0); /* host bits cleared */
	assert_int_equal(hw_vpn_cidr_parse("10.44.0.0/31", 4, a, &prefix,
					   err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "/8../30"));
	assert_int_equal(hw_vpn_cidr_parse("10.44.0.0/7", 4, a, &prefix, err,
					   sizeof(err)), -EINVAL);
	const char *bad4[] = {"10.44.0.0", "10.44.0.0/", "10.44.0.0/x",
			      "10.44.0/24", "10.44.0.0/24 ", "/24",
			      "10.44.0.0/+24", "fd44::/64"};
	for (size_t i = 0; i < sizeof(bad4) / sizeof(bad4[0]); i++) {
		assert_int_equal(hw_vpn_cidr_parse(bad4[i], 4, a, &prefix,
						   err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, bad4[i][0] ? bad4[i] : "''"));
	}
	assert_int_equal(hw_vpn_cidr_parse("fd44::1/64", 6, a, &prefix, err,
					   sizeof(err)), 0);
	assert_int_equal(a[15], 0);
	assert_int_equal(hw_vpn_cidr_parse("fd44::/63", 6, a, &prefix, err,
					   sizeof(err)), -EINVAL);
	assert_int_equal(hw_vpn_cidr_parse("fd44::/113", 6, a, &prefix, err,
					   sizeof(err)), -EINVAL);
	/* Networks to route: any prefix of either family. */
	assert_int_equal(hw_vpn_route_parse("0.0.0.0/0", &family, a, &prefix,
					    err, sizeof(err)), 0);
	assert_int_equal(family, 4);
	assert_int_equal(prefix, 0);
	assert_int_equal(hw_vpn_route_parse("192.0.2.9/32", &family, a,
					    &prefix, err, sizeof(err)), 0);
	assert_int_equal(a[3], 9);
	assert_int_equal(hw_vpn_route_parse("2001:db8::1/128", &family, a,
					    &prefix, err, sizeof(err)), 0);
	assert_int_equal(family, 6);
	assert_int_equal(a[15], 1);
	assert_int_equal(hw_vpn_route_parse("10.0.0.0/33", &family, a,
					    &prefix, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(hw_vpn_route_parse("::/129", &family, a, &prefix,
					    err, sizeof(err)), -EINVAL);
	assert_int_equal(hw_vpn_route_parse("everything", &family, a,
					    &prefix, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(hw_vpn_route_parse("10.0.0.0/-1", &family, a,
					    &prefix, err, sizeof(err)),
			 -EINVAL);
}

static void test_leases_in_order_and_stable(void **state)
{
	struct hw_vpn_pool *p;
	uint32_t i;
	uint8_t a[4], a6[16];
	int is_new;
	char err[160];

	(void)state;
	assert_int_equal(hw_vpn_pool_new(&p, "10.44.0.0/24", "fd44::/64", err,
					 sizeof(err)), 0);
	assert_int_equal(hw_vpn_pool_last(p), 254);
	assert_string_equal(hw_vpn_pool_subnet4(p), "10.44.0.0/24");
	assert_string_equal(hw_vpn_pool_subnet6(p), "fd44::/64");
	assert_int_equal(hw_vpn_pool_prefix6(p), 64);
	assert_int_equal(hw_vpn_pool_lease(p, PKA, &i, &is_new), 0);
	assert_int_equal(i, 2);
	assert_true(is_new);
	assert_int_equal(hw_vpn_pool_lease(p, PKB, &i, &is_new), 0);
	assert_int_equal(i, 3);
	assert_int_equal(hw_vpn_pool_lease(p, PKA, &i, &is_new), 0);
	assert_int_equal(i, 2);
	assert_false(is_new);
	assert_string_equal(hw_vpn_pool_holder(p, 3), PKB);
	assert_null(hw_vpn_pool_holder(p, 4));
	assert_null(hw_vpn_pool_holder(p, 1));
	assert_int_equal(hw_vpn_pool_lease(p, "AAAA", &i, &is_new), -EINVAL);
	assert_int_equal(hw_vpn_pool_lease(p, PK("AAAA"), &i, &is_new),
			 -EINVAL);
	/* Addresses and back. */
	hw_vpn_pool_addr4(p, 3, a);
	assert_memory_equal(a, ((uint8_t[]){10, 44, 0, 3}), 4);
	assert_int_equal(hw_vpn_pool_index4(p, a), 3);
	hw_vpn_pool_addr4(p, 1, a);
	assert_memory_equal(a, ((uint8_t[]){10, 44, 0, 1}), 4);
	assert_int_equal(hw_vpn_pool_index4(p, (uint8_t[]){10, 44, 1, 3}), 0);
	assert_int_equal(hw_vpn_pool_index4(p, (uint8_t[]){10, 44, 0, 0}), 0);
	hw_vpn_pool_addr6(p, 3, a6);
	assert_int_equal(a6[0], 0xfd);
	assert_int_equal(a6[15], 3);
	assert_int_equal(hw_vpn_pool_index6(p, a6), 3);
	a6[7] = 1; /* another /64 */
	assert_int_equal(hw_vpn_pool_index6(p, a6), 0);
	/* Saved and read back into a new pool: the same addresses. */
	assert_int_equal(hw_vpn_pool_save(p, file("leases.json")), 0);
	hw_vpn_pool_free(p);
	int skipped;

	assert_int_equal(hw_vpn_pool_new(&p, "10.44.0.0/24", NULL, err,
					 sizeof(err)), 0);
	assert_int_equal(hw_vpn_pool_load(p, file("leases.json"), &skipped,
					  err, sizeof(err)), 0);
	assert_int_equal(skipped, 0);
	assert_int_equal(hw_vpn_pool_lease(p, PKB, &i, &is_new), 0);
	assert_int_equal(i, 3);
	assert_false(is_new);
	assert_int_equal(hw_vpn_pool_lease(p, PKC, &i, &is_new), 0);
	assert_int_equal(i, 4);
	assert_int_equal(hw_vpn_pool_prefix6(p), 0);
	assert_string_equal(hw_vpn_pool_subnet6(p), "");
	hw_vpn_pool_free(p);
	/* A changed subnet forgets what lies outside it. */
	assert_int_equal(hw_vpn_pool_new(&p, "10.45.0.0/24", NULL, err,
					 sizeof(err)), 0);
	assert_int_equal(hw_vpn_pool_load(p, file("leases.json"), &skipped,
					  err, sizeof(err)), 0);
	assert_int_equal(skipped, 2);
	hw_vpn_pool_free(p);
	/* No file: no lease. */
	assert_int_equal(hw_vpn_pool_new(&p, "10.45.0.0/24", NULL, err,
					 sizeof(err)), 0);
	assert_int_equal(hw_vpn_pool_load(p, file("none.json"), &skipped,
					  err, sizeof(err)), 0);
	hw_vpn_pool_free(p);
}

static void test_full_pool(void **state)
{
	struct hw_vpn_pool *p;
	char pk[65], err[160];
	uint32_t i;
	int is_new;

	(void)state;
	/* A /29: 6 hosts, the server's and 5 for clients. */
	assert_int_equal(hw_vpn_pool_new(&p, "10.9.0.8/29", NULL, err,
					 sizeof(err)), 0);
	assert_int_equal(hw_vpn_pool_last(p), 6);
	for (int k = 0; k < 5; k++) {
		snprintf(pk, sizeof(pk), "%064x", k + 1);
		assert_int_equal(hw_vpn_pool_lease(p, pk, &i, &is_new), 0);
		assert_int_equal(i, (uint32_t)k + 2);
	}
	assert_int_equal(hw_vpn_pool_lease(p, PKA, &i, &is_new), -ENOSPC);
	hw_vpn_pool_free(p);
	/* A /16 stops at the pool's limit. */
	assert_int_equal(hw_vpn_pool_new(&p, "10.9.0.0/16", NULL, err,
					 sizeof(err)), 0);
	assert_int_equal(hw_vpn_pool_last(p), 65534);
	hw_vpn_pool_free(p);
	assert_int_equal(hw_vpn_pool_new(&p, "10.9.0.0/33", NULL, err,
					 sizeof(err)), -EINVAL);
	assert_null(p);
	assert_int_equal(hw_vpn_pool_new(&p, "10.9.0.0/24", "fd::/40", err,
					 sizeof(err)), -EINVAL);
	assert_null(p);
}

static void test_malformed_leases(void **state)
{
	const char *bad[][2] = {
		{"not json", "leases.json"},
		{"[]", "leases.json"},
		{"{\"leases\": 3}", "not an array"},
		{"{\"leases\": [{\"pk\": 3, \"address\": \"10.44.0.2\"}]}",
		 "pk is not"},
		{"{\"leases\": [{\"pk\": \"" PK("AAAA") "\", \"address\": "
		 "\"10.44.0.2\"}]}", "pk is not"},
		{"{\"leases\": [{\"pk\": \"" PKA "\", \"address\": \"x\"}]}",
		 "not an IPv4"},
		{"{\"leases\": [{\"pk\": \"" PKA "\", \"address\": "
		 "\"10.44.0.1\"}]}", "server's"},
		{"{\"leases\": [{\"pk\": \"" PKA "\", \"address\": "
		 "\"10.44.0.0\"}]}", "network"},
		{"{\"leases\": [{\"pk\": \"" PKA "\", \"address\": "
		 "\"10.44.0.255\"}]}", "broadcast"},
		{"{\"leases\": [{\"pk\": \"" PKA "\", \"address\": "
		 "\"10.44.0.2\"}, {\"pk\": \"" PKB "\", \"address\": "
		 "\"10.44.0.2\"}]}", "leased twice"},
		{"{\"leases\": [{\"pk\": \"" PKA "\", \"address\": "
		 "\"10.44.0.2\"}, {\"pk\": \"" PKA "\", \"address\": "
		 "\"10.44.0.3\"}]}", "two leases"},
	};
	struct hw_vpn_pool *p;
	char err[300];
	uint32_t i;
	int skipped, is_new;

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		assert_int_equal(hw_vpn_pool_new(&p, "10.44.0.0/24", NULL,
						 err, sizeof(err)), 0);
		put("leases.json", bad[k][0]);
		err[0] = '\0';
		assert_int_equal(hw_vpn_pool_load(p, file("leases.json"),
						  &skipped, err, sizeof(err)),
				 -EINVAL);
		if (!strstr(err, bad[k][1]))
			fail_msg("case %zu: '%s' lacks '%s'", k, err,
				 bad[k][1]);
		/* Left without leases: the first key gets .2. */
		assert_int_equal(hw_vpn_pool_lease(p, PKC, &i, &is_new), 0);
		assert_int_equal(i, 2);
		hw_vpn_pool_free(p);
	}
}

static void test_json_files(void **state)
{
	json_t *doc = json_pack("{s:i, s:s}", "version", 1, "a", "b"), *got;
	char err[300], big[200];
	struct stat st;

	(void)state;
	assert_int_equal(hw_vpn_json_save(file("s.json"), doc, 1), 0);
	assert_int_equal(stat(file("s.json.tmp"), &st), -1);
	assert_int_equal(stat(file("s.json"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(hw_vpn_json_load(file("s.json"), 1000, &got, err,
					  sizeof(err)), 0);
	assert_true(json_equal(doc, got));
	json_decref(got);
	/* Too big, a link, not an object, no file, a folder. */
	assert_int_equal(hw_vpn_json_load(file("s.json"), 5, &got, err,
					  sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "more than 5"));
	snprintf(big, sizeof(big), "%s", file("s.json"));
	assert_int_equal(symlink(big, file("link.json")), 0);
	assert_int_equal(hw_vpn_json_load(file("link.json"), 1000, &got, err,
					  sizeof(err)), -EINVAL);
	assert_null(got);
	put("arr.json", "[1, 2]");
	assert_int_equal(hw_vpn_json_load(file("arr.json"), 1000, &got, err,
					  sizeof(err)), -EINVAL);
	assert_int_equal(hw_vpn_json_load(file("none.json"), 1000, &got, err,
					  sizeof(err)), -ENOENT);
	assert_int_equal(mkdir(file("d.json"), 0700), 0);
	assert_int_equal(hw_vpn_json_load(file("d.json"), 1000, &got, err,
					  sizeof(err)), -EINVAL);
	rmdir(file("d.json"));
	json_decref(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr),
		cmocka_unit_test_setup_teardown(test_leases_in_order_and_stable,
						setup, teardown),
		cmocka_unit_test(test_full_pool),
		cmocka_unit_test_setup_teardown(test_malformed_leases, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_json_files, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
