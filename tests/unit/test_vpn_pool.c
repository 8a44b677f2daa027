/* The VPN server's address pool and leases.json, and the subnet and route
 * parsers (src/apps/vpn/pool.c with status.c, compiled into this test:
 * apps are not part of hwcore). */
#include <arpa/inet.h>
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

#include "hwtest.h"
#include "../../src/apps/vpn/pool.h"

static char dir[64], path[128];
static char err[512];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/hw-test-vpnpool-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/leases.json", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	hw_test_rm_tree(dir);
	return 0;
}

/* Key number i: 64 lowercase hex digits, different for each i. */
static const char *key(unsigned i)
{
	static char k[8][65];
	static unsigned next;
	char *p = k[next++ % 8];

	for (int j = 0; j < 64; j++)
		p[j] = "0123456789abcdef"[(i >> (4 * (j % 8))) & 15];
	p[64] = '\0';
	return p;
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static struct hw_vpn_pool *pool(const char *c4, const char *c6)
{
	struct hw_vpn_pool *p;

	err[0] = '\0';
	if (hw_vpn_pool_new(&p, c4, c6, err, sizeof(err)))
		fail_msg("pool %s %s: %s", c4, c6 ? c6 : "-", err);
	return p;
}

static int leased(const struct hw_vpn_pool *p)
{
	int n = 0;

	for (uint32_t i = 0; i <= hw_vpn_pool_last(p) + 1; i++)
		n += hw_vpn_pool_holder(p, i) != NULL;
	return n;
}

static void cidr_ok(const char *s, int family, const char *want, int prefix)
{
	uint8_t a[16], w[16];
	int pre = -1;

	memset(a, 0xee, sizeof(a));
	err[0] = '\0';
	if (hw_vpn_cidr_parse(s, family, a, &pre, err, sizeof(err)))
		fail_msg("'%s': %s", s, err);
	assert_int_equal(inet_pton(family == 4 ? AF_INET : AF_INET6, want,
				   w), 1);
	assert_memory_equal(a, w, family == 4 ? 4 : 16);
	assert_int_equal(pre, prefix);
}

static void cidr_bad(const char *s, int family, const char *want)
{
	uint8_t a[16];
	int pre = -1;

	err[0] = '\0';
	assert_int_equal(hw_vpn_cidr_parse(s, family, a, &pre, err,
					   sizeof(err)), -EINVAL);
	assert_int_equal(pre, -1);
	if (!strstr(err, want))
		fail_msg("'%s': error '%s' does not say '%s'", s, err, want);
}

static void test_cidr_parse(void **state)
{
	char longer[200];

	(void)state;
	cidr_ok("10.44.0.0/24", 4, "10.44.0.0", 24);
	cidr_ok("10.44.0.77/24", 4, "10.44.0.0", 24);
	cidr_ok("10.255.255.255/8", 4, "10.0.0.0", 8);
	cidr_ok("192.168.7.7/30", 4, "192.168.7.4", 30);
	cidr_ok("172.16.0.0/12", 4, "172.16.0.0", 12);
	cidr_ok("fd44::/64", 6, "fd44::", 64);
	cidr_ok("fd44::1:2:3:4/64", 6, "fd44::", 64);
	cidr_ok("fd44::1:2:3:4/112", 6, "fd44::1:2:3:0", 112);
	cidr_ok("fd44:0:0:1::ff/80", 6, "fd44:0:0:1::", 80);

	cidr_bad("10.44.0.0/7", 4, "'10.44.0.0/7': prefix /7 is outside "
		 "/8../30");
	cidr_bad("10.44.0.0/31", 4, "prefix /31");
	cidr_bad("10.44.0.0/32", 4, "prefix /32");
	cidr_bad("fd44::/63", 6, "prefix /63 is outside /64../112");
	cidr_bad("fd44::/113", 6, "prefix /113");
	cidr_bad("10.44.0.0", 4, "'10.44.0.0' is not an IPv4 subnet");
	cidr_bad("10.44.0.0/", 4, "not an IPv4 subnet");
	cidr_bad("/24", 4, "not an IPv4 subnet");
	cidr_bad("", 4, "not an IPv4 subnet");
	cidr_bad("10.44.0/24", 4, "not an IPv4 subnet");
	cidr_bad("10.44.0.256/24", 4, "not an IPv4 subnet");
	cidr_bad("10.44.0.0/24x", 4, "not an IPv4 subnet");
	cidr_bad("10.44.0.0/+24", 4, "not an IPv4 subnet");
	cidr_bad("10.44.0.0/-24", 4, "not an IPv4 subnet");
	cidr_bad("10.44.0.0/ 24", 4, "not an IPv4 subnet");
	cidr_bad("10.44.0.0/24/24", 4, "not an IPv4 subnet");
	cidr_bad("10.44.0.0/99999999999999999999", 4, "not an IPv4 subnet");
	cidr_bad(" 10.44.0.0/24", 4, "not an IPv4 subnet");
	cidr_bad("fd44::/64", 4, "not an IPv4 subnet");
	cidr_bad("10.44.0.0/24", 6, "'10.44.0.0/24' is not an IPv6 subnet");
	cidr_bad("fd44:::/64", 6, "not an IPv6 subnet");
	cidr_bad("fd44::", 6, "not an IPv6 subnet");
	memset(longer, '1', sizeof(longer) - 4);
	strcpy(longer + sizeof(longer) - 4, "/24");
	cidr_bad(longer, 4, "not an IPv4 subnet");
}

static void route_ok(const char *s, int family, const char *want,
		     int prefix)
{
	uint8_t a[16], w[16] = {0};
	int fam = -1, pre = -1;

	memset(a, 0xee, sizeof(a));
	err[0] = '\0';
	if (hw_vpn_route_parse(s, &fam, a, &pre, err, sizeof(err)))
		fail_msg("'%s': %s", s, err);
	assert_int_equal(fam, family);
	assert_int_equal(inet_pton(family == 4 ? AF_INET : AF_INET6, want,
				   w), 1);
	/* An IPv4 route leaves the rest of addr zero. */
	assert_memory_equal(a, w, 16);
	assert_int_equal(pre, prefix);
}

static void route_bad(const char *s, const char *want)
{
	uint8_t a[16];
	int fam, pre = -1;

	err[0] = '\0';
	assert_int_equal(hw_vpn_route_parse(s, &fam, a, &pre, err,
					    sizeof(err)), -EINVAL);
	assert_int_equal(pre, -1);
	if (!strstr(err, want))
		fail_msg("'%s': error '%s' does not say '%s'", s, err, want);
}

static void test_route_parse(void **state)
{
	(void)state;
	route_ok("0.0.0.0/0", 4, "0.0.0.0", 0);
	route_ok("1.2.3.4/0", 4, "0.0.0.0", 0);
	route_ok("128.0.0.0/1", 4, "128.0.0.0", 1);
	route_ok("200.0.0.0/1", 4, "128.0.0.0", 1);
	route_ok("192.0.2.7/32", 4, "192.0.2.7", 32);
	route_ok("192.0.2.7/31", 4, "192.0.2.6", 31);
	route_ok("10.1.2.3/8", 4, "10.0.0.0", 8);
	route_ok("::/0", 6, "::", 0);
	route_ok("2001:db8::1/0", 6, "::", 0);
	route_ok("2001:db8::1/128", 6, "2001:db8::1", 128);
	route_ok("2001:db8::1ff/120", 6, "2001:db8::100", 120);
	route_ok("2001:db8:ffff::/33", 6, "2001:db8:8000::", 33);
	route_ok("::ffff:1.2.3.4/128", 6, "::ffff:1.2.3.4", 128);

	route_bad("garbage", "'garbage' is not an IPv4 subnet");
	route_bad("garbage/24", "not an IPv4 subnet");
	route_bad("1.2.3.4", "not an IPv4 subnet");
	route_bad("1.2.3.4/", "not an IPv4 subnet");
	route_bad("1.2.3.4/33", "'1.2.3.4/33': prefix /33 is outside /0../32");
	route_bad("1.2.3.4/-1", "not an IPv4 subnet");
	route_bad("1.2.3.4/1e1", "not an IPv4 subnet");
	route_bad("1.2.3.256/8", "not an IPv4 subnet");
	route_bad("::/129", "prefix /129 is outside /0../128");
	route_bad("2001:db8::1/999", "prefix /999");
	route_bad("::1/", "not an IPv6 subnet");
	route_bad("::g/64", "not an IPv6 subnet");
	route_bad(":/8", "not an IPv6 subnet");
	route_bad("", "not an IPv4 subnet");
}

static void test_pool_new(void **state)
{
	struct hw_vpn_pool *p = (struct hw_vpn_pool *)1;

	(void)state;
	assert_int_equal(hw_vpn_pool_new(&p, "10.44.0.0/31", NULL, err,
					 sizeof(err)), -EINVAL);
	assert_null(p);
	assert_non_null(strstr(err, "10.44.0.0/31"));
	assert_int_equal(hw_vpn_pool_new(&p, "10.44.0.0/24", "fd44::/120",
					 err, sizeof(err)), -EINVAL);
	assert_null(p);
	assert_non_null(strstr(err, "fd44::/120"));
	hw_vpn_pool_free(NULL);

	p = pool("10.44.0.9/24", NULL);
	assert_string_equal(hw_vpn_pool_subnet4(p), "10.44.0.0/24");
	assert_string_equal(hw_vpn_pool_subnet6(p), "");
	assert_int_equal(hw_vpn_pool_prefix4(p), 24);
	assert_int_equal(hw_vpn_pool_prefix6(p), 0);
	assert_int_equal(hw_vpn_pool_last(p), 254);
	hw_vpn_pool_free(p);

	p = pool("10.44.0.0/16", "fd44::/64");
	assert_string_equal(hw_vpn_pool_subnet4(p), "10.44.0.0/16");
	assert_string_equal(hw_vpn_pool_subnet6(p), "fd44::/64");
	assert_int_equal(hw_vpn_pool_prefix6(p), 64);
	/* 65536 addresses less network and broadcast. */
	assert_int_equal(hw_vpn_pool_last(p), 65534);
	hw_vpn_pool_free(p);

	p = pool("10.0.0.0/8", NULL);
	assert_int_equal(hw_vpn_pool_last(p), HW_VPN_POOL_MAX + 1);
	hw_vpn_pool_free(p);
	p = pool("10.44.0.0/30", NULL);
	assert_int_equal(hw_vpn_pool_last(p), 2);
	hw_vpn_pool_free(p);
	p = pool("10.44.0.0/29", NULL);
	assert_int_equal(hw_vpn_pool_last(p), 6);
	hw_vpn_pool_free(p);
}

static void test_lease(void **state)
{
	struct hw_vpn_pool *p = pool("10.44.0.0/29", NULL);
	uint32_t idx;
	int is_new;

	(void)state;
	/* Lowest free index first, from 2. */
	for (unsigned i = 0; i < 5; i++) {
		idx = 0;
		is_new = -1;
		assert_int_equal(hw_vpn_pool_lease(p, key(i), &idx, &is_new),
				 0);
		assert_int_equal(idx, 2 + i);
		assert_int_equal(is_new, 1);
		assert_string_equal(hw_vpn_pool_holder(p, idx), key(i));
	}
	/* The same key keeps its index. */
	assert_int_equal(hw_vpn_pool_lease(p, key(3), &idx, &is_new), 0);
	assert_int_equal(idx, 5);
	assert_int_equal(is_new, 0);
	/* Full: -ENOSPC, and known keys still get theirs. */
	assert_int_equal(hw_vpn_pool_lease(p, key(5), &idx, &is_new),
			 -ENOSPC);
	assert_int_equal(hw_vpn_pool_lease(p, key(0), &idx, &is_new), 0);
	assert_int_equal(idx, 2);
	assert_int_equal(leased(p), 5);
	assert_null(hw_vpn_pool_holder(p, 0));
	assert_null(hw_vpn_pool_holder(p, 1));
	assert_null(hw_vpn_pool_holder(p, 7));
	assert_null(hw_vpn_pool_holder(p, UINT32_MAX));
	hw_vpn_pool_free(p);

	/* A /30 has room for one client. */
	p = pool("10.44.0.0/30", NULL);
	assert_int_equal(hw_vpn_pool_lease(p, key(1), &idx, &is_new), 0);
	assert_int_equal(idx, 2);
	assert_int_equal(hw_vpn_pool_lease(p, key(2), &idx, &is_new),
			 -ENOSPC);
	hw_vpn_pool_free(p);
}

static void test_lease_bad_keys(void **state)
{
	struct hw_vpn_pool *p = pool("10.44.0.0/24", NULL);
	char k[80];
	uint32_t idx = 77;
	int is_new = 77;

	(void)state;
	strcpy(k, key(1));
	k[63] = '\0';
	assert_int_equal(hw_vpn_pool_lease(p, k, &idx, &is_new), -EINVAL);
	strcpy(k, key(1));
	strcat(k, "0");
	assert_int_equal(hw_vpn_pool_lease(p, k, &idx, &is_new), -EINVAL);
	strcpy(k, key(1));
	k[10] = 'A';
	assert_int_equal(hw_vpn_pool_lease(p, k, &idx, &is_new), -EINVAL);
	k[10] = 'g';
	assert_int_equal(hw_vpn_pool_lease(p, k, &idx, &is_new), -EINVAL);
	k[10] = ' ';
	assert_int_equal(hw_vpn_pool_lease(p, k, &idx, &is_new), -EINVAL);
	assert_int_equal(hw_vpn_pool_lease(p, "", &idx, &is_new), -EINVAL);
	assert_int_equal(idx, 77);
	assert_int_equal(is_new, 77);
	assert_int_equal(leased(p), 0);
	hw_vpn_pool_free(p);
}

static void test_save_load(void **state)
{
	struct hw_vpn_pool *p = pool("10.44.0.0/24", "fd44::/64"), *q;
	struct stat st;
	uint32_t idx;
	int is_new, skipped = -1;

	(void)state;
	/* No file: no lease. */
	q = pool("10.44.0.0/24", NULL);
	assert_int_equal(hw_vpn_pool_load(q, path, &skipped, err,
					  sizeof(err)), 0);
	assert_int_equal(skipped, 0);
	assert_int_equal(leased(q), 0);
	hw_vpn_pool_free(q);

	for (unsigned i = 0; i < 40; i++)
		assert_int_equal(hw_vpn_pool_lease(p, key(i * 7), &idx,
						   &is_new), 0);
	assert_int_equal(hw_vpn_pool_save(p, path), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Nothing left beside it. */
	{
		char tmp[160];

		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		assert_int_equal(access(tmp, F_OK), -1);
	}
	q = pool("10.44.0.0/24", "fd44::/64");
	skipped = -1;
	assert_int_equal(hw_vpn_pool_load(q, path, &skipped, err,
					  sizeof(err)), 0);
	assert_int_equal(skipped, 0);
	assert_int_equal(leased(q), 40);
	for (uint32_t i = 0; i <= 255; i++) {
		const char *a = hw_vpn_pool_holder(p, i);
		const char *b = hw_vpn_pool_holder(q, i);

		if (!a || !b)
			assert_ptr_equal(a, b);
		else
			assert_string_equal(a, b);
	}
	/* The same keys get the same indexes after the restart; a new one
	 * the next free index. */
	assert_int_equal(hw_vpn_pool_lease(q, key(7 * 13), &idx, &is_new), 0);
	assert_int_equal(idx, 2 + 13);
	assert_int_equal(is_new, 0);
	assert_int_equal(hw_vpn_pool_lease(q, key(5), &idx, &is_new), 0);
	assert_int_equal(idx, 42);
	assert_int_equal(is_new, 1);
	/* Saved again over the first file and read back: 41 leases. */
	assert_int_equal(hw_vpn_pool_save(q, path), 0);
	hw_vpn_pool_free(p);
	p = pool("10.44.0.0/24", NULL);
	assert_int_equal(hw_vpn_pool_load(p, path, &skipped, err,
					  sizeof(err)), 0);
	assert_int_equal(leased(p), 41);
	assert_string_equal(hw_vpn_pool_holder(p, 42), key(5));
	hw_vpn_pool_free(p);
	hw_vpn_pool_free(q);

	/* An empty pool saves an empty list. */
	p = pool("10.44.0.0/24", NULL);
	assert_int_equal(hw_vpn_pool_save(p, path), 0);
	hw_vpn_pool_free(p);
	p = pool("10.44.0.0/24", NULL);
	assert_int_equal(hw_vpn_pool_load(p, path, &skipped, err,
					  sizeof(err)), 0);
	assert_int_equal(leased(p), 0);
	hw_vpn_pool_free(p);

	/* Into a folder that is not there: an error, not a crash. */
	p = pool("10.44.0.0/24", NULL);
	assert_int_equal(hw_vpn_pool_save(p, "/nonexistent/x/leases.json"),
			 -ENOENT);
	hw_vpn_pool_free(p);
}

/* Loads text into a /24 pool that already holds a lease (10.44.0.2),
 * expecting -EINVAL with err naming want, and no lease left. */
static void load_bad(const char *text, const char *want)
{
	struct hw_vpn_pool *p = pool("10.44.0.0/24", NULL);
	uint32_t idx;
	int is_new, skipped;

	write_file(text);
	assert_int_equal(hw_vpn_pool_lease(p, key(99), &idx, &is_new), 0);
	err[0] = '\0';
	assert_int_equal(hw_vpn_pool_load(p, path, &skipped, err,
					  sizeof(err)), -EINVAL);
	if (!strstr(err, want))
		fail_msg("'%s': error '%s' does not say '%s'", text, err,
			 want);
	if (!strstr(err, path))
		fail_msg("error '%s' does not name %s", err, path);
	assert_int_equal(leased(p), 0);
	hw_vpn_pool_free(p);
}

static void test_load_malformed(void **state)
{
	char text[1024];
	char k1[65], k2[65];

	(void)state;
	strcpy(k1, key(1));
	strcpy(k2, key(2));
	load_bad("", "line");
	load_bad("not json", "line 1");
	load_bad("{\"leases\": [", "line 1");
	load_bad("[]", "not a JSON object");
	load_bad("{}", "\"leases\" is not an array");
	load_bad("{\"leases\": {}}", "\"leases\" is not an array");
	load_bad("{\"leases\": \"x\"}", "\"leases\" is not an array");
	load_bad("{\"leases\": [1]}", "leases[0].pk");
	load_bad("{\"leases\": [{\"pk\": 5, \"address\": \"10.44.0.20\"}]}",
		 "leases[0].pk is not 64 lowercase hex digits");
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"address\": \"10.44.0.20\"}, {\"pk\": \"%s\"}]}", k1, k2);
	load_bad(text, "leases[1].address is not an IPv4 address");
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"address\": 167510018}]}", k1);
	load_bad(text, "leases[0].address is not an IPv4 address");
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"address\": \"10.44.0.2/24\"}]}", k1);
	load_bad(text, "leases[0].address");
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"address\": \"fd44::2\"}]}", k1);
	load_bad(text, "leases[0].address");
	/* Keys: uppercase, short, not hex. */
	strcpy(k2, k1);
	k2[0] = 'A';
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"address\": \"10.44.0.20\"}]}", k2);
	load_bad(text, "leases[0].pk");
	k2[0] = '\0';
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"address\": \"10.44.0.20\"}]}", k1 + 1);
	load_bad(text, "leases[0].pk");
	strcpy(k2, key(2));
	/* One key twice, one address twice. */
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"address\": \"10.44.0.20\"}, {\"pk\": \"%s\", "
		 "\"address\": \"10.44.0.30\"}]}", k1, k1);
	load_bad(text, "leases[1]: key ");
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"address\": \"10.44.0.20\"}, {\"pk\": \"%s\", "
		 "\"address\": \"10.44.0.20\"}]}", k1, k2);
	load_bad(text, "leases[1]: address 10.44.0.20 is leased twice");
	/* The server's, network and broadcast addresses. */
	snprintf(text, sizeof(text), "{\"subnet\": \"10.44.0.0/24\", "
		 "\"leases\": [{\"pk\": \"%s\", \"address\": \"10.44.0.1\"}]}",
		 k1);
	load_bad(text, "10.44.0.1 is the server's address");
	snprintf(text, sizeof(text), "{\"subnet\": \"10.44.0.0/24\", "
		 "\"leases\": [{\"pk\": \"%s\", \"address\": \"10.44.0.0\"}]}",
		 k1);
	load_bad(text, "10.44.0.0 is the network address");
	snprintf(text, sizeof(text), "{\"subnet\": \"10.44.0.0/24\", "
		 "\"leases\": [{\"pk\": \"%s\", \"address\": "
		 "\"10.44.0.255\"}]}", k1);
	load_bad(text, "10.44.0.255 is the broadcast address");
	load_bad("{\"subnet\": 5, \"leases\": []}",
		 "\"subnet\" is not a string");
	/* A JSON object with a key twice. */
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"pk\": \"%s\", \"address\": \"10.44.0.20\"}]}", k1, k2);
	load_bad(text, "duplicate");
	/* A good lease before the bad one is not kept either. */
	snprintf(text, sizeof(text), "{\"leases\": [{\"pk\": \"%s\", "
		 "\"address\": \"10.44.0.9\"}, 7]}", k1);
	load_bad(text, "leases[1].pk");
}

static void test_load_changed_subnet(void **state)
{
	struct hw_vpn_pool *p = pool("10.44.0.0/16", NULL), *q;
	uint8_t a[4];
	uint32_t idx;
	int is_new, skipped;

	(void)state;
	/* Leases of a /24 read by a pool of another /24: all forgotten. */
	q = pool("10.44.0.0/24", NULL);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(hw_vpn_pool_lease(q, key(i), &idx, &is_new),
				 0);
	assert_int_equal(hw_vpn_pool_save(q, path), 0);
	hw_vpn_pool_free(q);
	q = pool("10.45.0.0/24", NULL);
	assert_int_equal(hw_vpn_pool_load(q, path, &skipped, err,
					  sizeof(err)), 0);
	assert_int_equal(skipped, 3);
	assert_int_equal(leased(q), 0);
	hw_vpn_pool_free(q);

	/* A /16's leases at 10.44.1.0, .1, .5 and .255 and 10.44.2.9 read
	 * by a pool of 10.44.1.0/24: .5 stays; the others are outside the
	 * new pool (its network, server and broadcast addresses, another
	 * /24), forgotten. */
	for (uint32_t i = 2; i <= 521; i++)
		assert_int_equal(hw_vpn_pool_lease(p, key(i), &idx, &is_new),
				 0);
	assert_int_equal(hw_vpn_pool_save(p, path), 0);
	q = pool("10.44.1.0/24", NULL);
	assert_int_equal(hw_vpn_pool_load(q, path, &skipped, err,
					  sizeof(err)), 0);
	/* 520 leases, 253 of them (10.44.1.2 to .254) in the new pool. */
	assert_int_equal(skipped, 520 - 253);
	assert_int_equal(leased(q), 253);
	inet_pton(AF_INET, "10.44.1.5", a);
	idx = hw_vpn_pool_index4(q, a);
	assert_int_equal(idx, 5);
	assert_string_equal(hw_vpn_pool_holder(q, 5), key(261));
	/* Its clients keep their addresses. */
	assert_int_equal(hw_vpn_pool_lease(q, key(300), &idx, &is_new), 0);
	assert_int_equal(idx, 300 - 256);
	assert_int_equal(is_new, 0);
	/* And the pool is full. */
	assert_int_equal(hw_vpn_pool_lease(q, key(256), &idx, &is_new),
			 -ENOSPC);
	hw_vpn_pool_free(q);
	hw_vpn_pool_free(p);
}

static void test_addresses(void **state)
{
	struct hw_vpn_pool *p = pool("10.44.0.0/24", "fd44::/64");
	uint8_t a[4], a6[16], w[16];

	(void)state;
	hw_vpn_pool_addr4(p, 1, a);
	assert_int_equal(inet_pton(AF_INET, "10.44.0.1", w), 1);
	assert_memory_equal(a, w, 4);
	hw_vpn_pool_addr4(p, 254, a);
	assert_int_equal(inet_pton(AF_INET, "10.44.0.254", w), 1);
	assert_memory_equal(a, w, 4);
	hw_vpn_pool_addr6(p, 1, a6);
	assert_int_equal(inet_pton(AF_INET6, "fd44::1", w), 1);
	assert_memory_equal(a6, w, 16);
	hw_vpn_pool_addr6(p, 254, a6);
	assert_int_equal(inet_pton(AF_INET6, "fd44::fe", w), 1);
	assert_memory_equal(a6, w, 16);
	for (uint32_t i = 1; i <= 254; i++) {
		hw_vpn_pool_addr4(p, i, a);
		assert_int_equal(hw_vpn_pool_index4(p, a), i);
		hw_vpn_pool_addr6(p, i, a6);
		assert_int_equal(hw_vpn_pool_index6(p, a6), i);
	}
	/* Network, broadcast, outside. */
	inet_pton(AF_INET, "10.44.0.0", a);
	assert_int_equal(hw_vpn_pool_index4(p, a), 0);
	inet_pton(AF_INET, "10.44.0.255", a);
	assert_int_equal(hw_vpn_pool_index4(p, a), 0);
	inet_pton(AF_INET, "10.44.1.2", a);
	assert_int_equal(hw_vpn_pool_index4(p, a), 0);
	inet_pton(AF_INET, "10.45.0.2", a);
	assert_int_equal(hw_vpn_pool_index4(p, a), 0);
	inet_pton(AF_INET, "0.0.0.2", a);
	assert_int_equal(hw_vpn_pool_index4(p, a), 0);
	inet_pton(AF_INET6, "fd44::", a6);
	assert_int_equal(hw_vpn_pool_index6(p, a6), 0);
	inet_pton(AF_INET6, "fd44::ff", a6);
	assert_int_equal(hw_vpn_pool_index6(p, a6), 0);
	inet_pton(AF_INET6, "fd44::1:2", a6);
	assert_int_equal(hw_vpn_pool_index6(p, a6), 0);
	inet_pton(AF_INET6, "fd45::2", a6);
	assert_int_equal(hw_vpn_pool_index6(p, a6), 0);
	inet_pton(AF_INET6, "fd44:0:0:1::2", a6);
	assert_int_equal(hw_vpn_pool_index6(p, a6), 0);
	hw_vpn_pool_free(p);

	/* A /16 and a /112: indexes past one byte. */
	p = pool("10.44.0.0/16", "fd44:1:2:3::ab:0/112");
	assert_string_equal(hw_vpn_pool_subnet6(p), "fd44:1:2:3::ab:0/112");
	hw_vpn_pool_addr4(p, 300, a);
	assert_int_equal(inet_pton(AF_INET, "10.44.1.44", w), 1);
	assert_memory_equal(a, w, 4);
	assert_int_equal(hw_vpn_pool_index4(p, a), 300);
	hw_vpn_pool_addr6(p, 300, a6);
	assert_int_equal(inet_pton(AF_INET6, "fd44:1:2:3::ab:12c", w), 1);
	assert_memory_equal(a6, w, 16);
	assert_int_equal(hw_vpn_pool_index6(p, a6), 300);
	hw_vpn_pool_addr4(p, 65534, a);
	assert_int_equal(inet_pton(AF_INET, "10.44.255.254", w), 1);
	assert_memory_equal(a, w, 4);
	assert_int_equal(hw_vpn_pool_index4(p, a), 65534);
	inet_pton(AF_INET, "10.44.255.255", a);
	assert_int_equal(hw_vpn_pool_index4(p, a), 0);
	hw_vpn_pool_free(p);

	/* Without IPv6 no IPv6 address is in the pool. */
	p = pool("10.44.0.0/24", NULL);
	memset(a6, 0, sizeof(a6));
	a6[15] = 2;
	assert_int_equal(hw_vpn_pool_index6(p, a6), 0);
	hw_vpn_pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr_parse),
		cmocka_unit_test(test_route_parse),
		cmocka_unit_test(test_pool_new),
		cmocka_unit_test(test_lease),
		cmocka_unit_test(test_lease_bad_keys),
		cmocka_unit_test_setup_teardown(test_save_load, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_load_malformed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_load_changed_subnet,
						setup, teardown),
		cmocka_unit_test(test_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
