/* The SOCKS5 codec, the exit policy and the client's credentials file of
 * src/apps/socks/ (compiled into this test: apps are not part of
 * hwcore). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

#include "../../src/apps/socks/client_auth.h"
#include "../../src/apps/socks/policy.h"
#include "../../src/apps/socks/socks5.h"

static void test_greeting(void **state)
{
	struct hw_s5_greeting g;
	size_t used = 0;
	const uint8_t ok[] = {5, 2, 0, 2, 0xaa};

	(void)state;
	/* Every prefix needs more; the whole parses and leaves the rest. */
	for (size_t n = 0; n < 4; n++)
		assert_int_equal(hw_s5_parse_greeting(ok, n, &g, &used),
				 -EAGAIN);
	assert_int_equal(hw_s5_parse_greeting(ok, sizeof(ok), &g, &used), 0);
	assert_int_equal(used, 4);
	assert_int_equal(g.nmethods, 2);
	assert_true(hw_s5_greeting_has(&g, HW_S5_METHOD_NONE));
	assert_true(hw_s5_greeting_has(&g, HW_S5_METHOD_USERPASS));
	assert_false(hw_s5_greeting_has(&g, 1));
	/* Version 4, and no methods at all. */
	assert_int_equal(hw_s5_parse_greeting((uint8_t[]){4, 1, 0}, 3, &g,
					      &used), -EPROTO);
	assert_int_equal(hw_s5_parse_greeting((uint8_t[]){4}, 1, &g, &used),
			 -EPROTO);
	assert_int_equal(hw_s5_parse_greeting((uint8_t[]){5, 0}, 2, &g,
					      &used), -EPROTO);
	{
		uint8_t big[257] = {5, 255};
		assert_int_equal(hw_s5_parse_greeting(big, 256, &g, &used),
				 -EAGAIN);
		assert_int_equal(hw_s5_parse_greeting(big, 257, &g, &used), 0);
		assert_int_equal(used, 257);
	}
}

static void test_request(void **state)
{
	struct hw_s5_request r;
	size_t used = 0;
	const uint8_t v4[] = {5, 1, 0, 1, 192, 0, 2, 1, 0x01, 0xbb, 'x'};
	const uint8_t dom[] = {5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l',
			       'e', '.', 'o', 'r', 'g', 0, 80};
	uint8_t v6[22] = {5, 3, 0, 4};

	(void)state;
	for (size_t n = 0; n < 10; n++)
		assert_int_equal(hw_s5_parse_request(v4, n, &r, &used),
				 -EAGAIN);
	assert_int_equal(hw_s5_parse_request(v4, sizeof(v4), &r, &used), 0);
	assert_int_equal(used, 10);
	assert_int_equal(r.cmd, HW_S5_CMD_CONNECT);
	assert_int_equal(r.atyp, HW_S5_ATYP_IPV4);
	assert_memory_equal(r.addr, ((uint8_t[]){192, 0, 2, 1}), 4);
	assert_int_equal(r.port, 443);

	for (size_t n = 0; n < sizeof(dom); n++)
		assert_int_equal(hw_s5_parse_request(dom, n, &r, &used),
				 -EAGAIN);
	assert_int_equal(hw_s5_parse_request(dom, sizeof(dom), &r, &used), 0);
	assert_string_equal(r.host, "example.org");
	assert_int_equal(r.port, 80);
	assert_int_equal(used, sizeof(dom));

	v6[19] = 1;
	v6[20] = 0x1f;
	v6[21] = 0x90;
	assert_int_equal(hw_s5_parse_request(v6, 21, &r, &used), -EAGAIN);
	assert_int_equal(hw_s5_parse_request(v6, 22, &r, &used), 0);
	assert_int_equal(r.cmd, HW_S5_CMD_UDP);
	assert_int_equal(r.atyp, HW_S5_ATYP_IPV6);
	assert_int_equal(r.addr[15], 1);
	assert_int_equal(r.port, 8080);

	/* Malformed: version, reserved byte, empty or NUL-holding names,
	 * unknown address type. */
	assert_int_equal(hw_s5_parse_request((uint8_t[]){4, 1, 0, 1}, 4, &r,
					     &used), -EPROTO);
	assert_int_equal(hw_s5_parse_request((uint8_t[]){5, 1, 1, 1}, 4, &r,
					     &used), -EPROTO);
	assert_int_equal(hw_s5_parse_request((uint8_t[]){5, 1, 0, 3, 0, 0, 80},
					     7, &r, &used), -EPROTO);
	assert_int_equal(hw_s5_parse_request((uint8_t[]){5, 1, 0, 3, 2, 'a', 0,
							 0, 80}, 9, &r, &used),
			 -EPROTO);
	assert_int_equal(hw_s5_parse_request((uint8_t[]){5, 1, 0, 9, 0, 80}, 6,
					     &r, &used), -EAFNOSUPPORT);
	assert_int_equal(hw_s5_parse_request((uint8_t[]){5, 1, 0, 0}, 4, &r,
					     &used), -EAFNOSUPPORT);
	/* An unknown command parses: the exit answers 0x07. */
	assert_int_equal(hw_s5_parse_request((uint8_t[]){5, 9, 0, 1, 1, 2, 3,
							 4, 0, 1}, 10, &r,
					     &used), 0);
	assert_int_equal(r.cmd, 9);

	/* A longest domain name (255) round-trips through build. */
	{
		struct hw_s5_request q = {.cmd = 1, .atyp = 3, .port = 65535};
		uint8_t out[HW_S5_REQUEST_MAX];
		size_t n;

		memset(q.host, 'a', 255);
		n = hw_s5_build_request(out, &q);
		assert_int_equal(n, HW_S5_REQUEST_MAX);
		assert_int_equal(hw_s5_parse_request(out, n, &r, &used), 0);
		assert_int_equal(strlen(r.host), 255);
		assert_int_equal(r.port, 65535);
		q.atyp = 7;
		assert_int_equal(hw_s5_build_request(out, &q), 0);
	}
}

static void test_reply(void **state)
{
	uint8_t out[HW_S5_REPLY_MAX], rep = 0xee;
	struct sockaddr_in s4 = {.sin_family = AF_INET,
				 .sin_port = htons(1080)};
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6,
				  .sin6_port = htons(443)};
	size_t n, used;

	(void)state;
	inet_pton(AF_INET, "127.0.0.1", &s4.sin_addr);
	n = hw_s5_build_reply(out, HW_S5_OK, (struct sockaddr *)&s4);
	assert_int_equal(n, 10);
	assert_memory_equal(out, ((uint8_t[]){5, 0, 0, 1, 127, 0, 0, 1, 4,
					      0x38}), 10);
	assert_int_equal(hw_s5_parse_reply(out, n - 1, &rep, &used), -EAGAIN);
	assert_int_equal(hw_s5_parse_reply(out, n, &rep, &used), 0);
	assert_int_equal(rep, 0);
	n = hw_s5_build_reply(out, HW_S5_HOST_UNREACH, (struct sockaddr *)&s6);
	assert_int_equal(n, 22);
	assert_int_equal(out[3], HW_S5_ATYP_IPV6);
	assert_int_equal(hw_s5_parse_reply(out, n, &rep, &used), 0);
	assert_int_equal(rep, HW_S5_HOST_UNREACH);
	n = hw_s5_build_reply(out, HW_S5_CMD_UNSUPPORTED, NULL);
	assert_memory_equal(out, ((uint8_t[]){5, 7, 0, 1, 0, 0, 0, 0, 0, 0}),
			    10);
	out[0] = 4;
	assert_int_equal(hw_s5_parse_reply(out, n, &rep, &used), -EPROTO);
	assert_string_equal(hw_s5_reply_str(HW_S5_NOT_ALLOWED),
			    "not allowed by the exit policy");
	assert_string_equal(hw_s5_reply_str(200), "unknown reply code");
}

static void test_auth(void **state)
{
	struct hw_s5_auth a;
	const uint8_t ok[] = {1, 3, 'b', 'o', 'b', 2, 'p', 'w'};
	size_t used;

	(void)state;
	for (size_t n = 0; n < sizeof(ok); n++)
		assert_int_equal(hw_s5_parse_auth(ok, n, &a, &used), -EAGAIN);
	assert_int_equal(hw_s5_parse_auth(ok, sizeof(ok), &a, &used), 0);
	assert_string_equal(a.user, "bob");
	assert_string_equal(a.pass, "pw");
	assert_int_equal(used, sizeof(ok));
	assert_int_equal(hw_s5_parse_auth((uint8_t[]){5, 1, 'a', 1, 'b'}, 5,
					  &a, &used), -EPROTO);
	assert_int_equal(hw_s5_parse_auth((uint8_t[]){1, 0, 1, 'b'}, 4, &a,
					  &used), -EPROTO);
	assert_int_equal(hw_s5_parse_auth((uint8_t[]){1, 1, 'a', 0}, 4, &a,
					  &used), -EPROTO);
}

static int allows(const struct hw_policy *p, const char *addr, int port)
{
	struct sockaddr_in s4 = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6,
				  .sin6_port = htons((uint16_t)port)};

	if (inet_pton(AF_INET, addr, &s4.sin_addr) == 1)
		return hw_policy_allows(p, (struct sockaddr *)&s4);
	assert_int_equal(inet_pton(AF_INET6, addr, &s6.sin6_addr), 1);
	return hw_policy_allows(p, (struct sockaddr *)&s6);
}

static void test_policy_default(void **state)
{
	struct hw_policy p = {0};
	static const char *const denied[] = {
		"127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1",
		"172.31.255.255", "192.168.1.1", "169.254.1.1", "100.64.0.1",
		"100.127.255.254", "0.0.0.0", "0.1.2.3", "224.0.0.1",
		"255.255.255.255", "::1", "::", "fe80::1", "febf::1", "fc00::1",
		"fdff::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "ff02::1"};
	static const char *const allowed[] = {
		"8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255",
		"100.128.0.1", "11.0.0.1", "192.169.0.1", "2001:4860::8888",
		"::ffff:8.8.8.8", "fec0::1"};

	(void)state;
	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++)
		assert_false(allows(&p, denied[i], 80));
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		assert_true(allows(&p, allowed[i], 80));
	p.allow_loopback = 1;
	assert_true(allows(&p, "127.0.0.1", 8080));
	assert_true(allows(&p, "::1", 8080));
	assert_false(allows(&p, "10.0.0.1", 8080));
}

static void test_policy_rules(void **state)
{
	struct hw_policy p = {0};
	char err[256];

	(void)state;
	assert_int_equal(hw_policy_add(&p, "10.0.0.0/8", err, sizeof(err)), 0);
	assert_int_equal(hw_policy_add(&p, "192.0.2.1:443", err, sizeof(err)),
			 0);
	assert_int_equal(hw_policy_add(&p, "0.0.0.0/0:80-81", err,
				       sizeof(err)), 0);
	assert_int_equal(hw_policy_add(&p, "[2001:db8::/32]:22", err,
				       sizeof(err)), 0);
	/* Rules allow exactly what they say, private ranges included. */
	assert_true(allows(&p, "10.9.9.9", 5));
	assert_true(allows(&p, "192.0.2.1", 443));
	assert_false(allows(&p, "192.0.2.1", 444));
	assert_false(allows(&p, "192.0.2.2", 443));
	assert_true(allows(&p, "8.8.8.8", 81));
	assert_false(allows(&p, "8.8.8.8", 82));
	assert_true(allows(&p, "2001:db8:ffff::1", 22));
	assert_false(allows(&p, "2001:db9::1", 22));
	assert_false(allows(&p, "2001:db8::1", 23));
	/* 0.0.0.0/0 means all of it, loopback too; not other ports. */
	assert_true(allows(&p, "127.0.0.1", 80));
	assert_false(allows(&p, "127.0.0.1", 82));
	assert_int_equal(hw_policy_add(&p, "::/0", err, sizeof(err)), 0);
	assert_true(allows(&p, "fe80::1", 9));

	static const char *const bad[] = {
		"", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0:0", "10.0.0.0:65536",
		"10.0.0.0:90-80", "::/129", "[::1", "[::1]x", "nonsense",
		"10.0.0.0/8:", "10.0.0.0/8:1-", "1.2.3.4:5:6"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(hw_policy_add(&p, bad[i], err, sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "is not CIDR[:PORTS]"));
	}
	while (p.nrules < HW_POLICY_RULES_MAX)
		assert_int_equal(hw_policy_add(&p, "::1", err, sizeof(err)), 0);
	assert_int_equal(hw_policy_add(&p, "::1", err, sizeof(err)), -ENOSPC);
}

/* Writes text to a new temporary file with mode; its path in path. */
static void auth_file(char path[64], const char *text, mode_t mode)
{
	int fd;

	snprintf(path, 64, "/tmp/hw-auth-XXXXXX");
	assert_true((fd = mkstemp(path)) >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_auth_file(void **state)
{
	static struct hw_auth a;
	struct hw_s5_auth c;
	char path[64], err[256], warn[256], longline[700];
	static const struct {
		const char *text, *why;
	} bad[] = {
		{"alice\n", "line 1: no ':' between"},
		{"# x\n:pw\n", "line 2: user and password must"},
		{"bob:\n", "line 1: user and password must"},
		{"# only a comment\n\n", "holds no USER:PASSWORD"},
	};

	(void)state;
	auth_file(path, "# users\nalice:s3cret:with:colons\r\n\nbob:pw",
		  0600);
	assert_int_equal(hw_auth_load(&a, path, err, sizeof(err), warn,
				      sizeof(warn)), 0);
	assert_string_equal(warn, "");
	assert_int_equal(a.n, 2);
	memset(&c, 0, sizeof(c));
	snprintf(c.user, sizeof(c.user), "alice");
	snprintf(c.pass, sizeof(c.pass), "s3cret:with:colons");
	assert_true(hw_auth_check(&a, &c));
	snprintf(c.pass, sizeof(c.pass), "s3cret:with:colon");
	assert_false(hw_auth_check(&a, &c));
	snprintf(c.user, sizeof(c.user), "bob");
	snprintf(c.pass, sizeof(c.pass), "pw");
	assert_true(hw_auth_check(&a, &c));
	/* One user's password does not open another's name. */
	snprintf(c.user, sizeof(c.user), "alice");
	assert_false(hw_auth_check(&a, &c));
	unlink(path);

	auth_file(path, "carol:pw\n", 0644);
	assert_int_equal(hw_auth_load(&a, path, err, sizeof(err), warn,
				      sizeof(warn)), 0);
	assert_non_null(strstr(warn, "may be read by others (mode 644)"));
	unlink(path);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		auth_file(path, bad[i].text, 0600);
		assert_int_equal(hw_auth_load(&a, path, err, sizeof(err), warn,
					      sizeof(warn)), -1);
		assert_non_null(strstr(err, bad[i].why));
		unlink(path);
	}
	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	longline[3] = ':';
	auth_file(path, longline, 0600);
	assert_int_equal(hw_auth_load(&a, path, err, sizeof(err), warn,
				      sizeof(warn)), -1);
	assert_non_null(strstr(err, "longer than 512 bytes"));
	unlink(path);
	assert_int_equal(hw_auth_load(&a, "/nonexistent/auth", err,
				      sizeof(err), warn, sizeof(warn)), -1);
	assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_policy_default),
		cmocka_unit_test(test_policy_rules),
		cmocka_unit_test(test_auth_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
