/* hopwire-forward's stream header and settings (src/apps/forward/proto.c,
 * settings.c; compiled into this test: apps are not part of hwcore). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/apps/forward/proto.h"
#include "../../src/apps/forward/settings.h"

#define PK1 "1111111111111111111111111111111111111111111111111111111111111111"
#define PK2 "2222222222222222222222222222222222222222222222222222222222222222"

static void test_request(void **state)
{
	const uint8_t ok[] = {1, 0xd2, 0x4f, 3, 's', 's', 'h', 0xaa};
	struct hw_fwd_request r = {.client_port = 53839};
	uint8_t out[HW_FWD_REQUEST_MAX];
	size_t used;

	(void)state;
	for (size_t n = 0; n < 7; n++)
		assert_int_equal(hw_fwd_parse_request(ok, n, &r, &used),
				 n == 0 ? -EAGAIN : -EAGAIN);
	assert_int_equal(hw_fwd_parse_request(ok, sizeof(ok), &r, &used), 0);
	assert_int_equal(used, 7);
	assert_int_equal(r.client_port, 53839);
	assert_string_equal(r.name, "ssh");
	assert_int_equal(hw_fwd_build_request(out, &r), 7);
	assert_memory_equal(out, ok, 7);
	/* Another version; a name of length 0, 33, with a NUL, uppercase. */
	assert_int_equal(hw_fwd_parse_request((const uint8_t *)"\2", 1, &r,
					      &used), -EPROTO);
	assert_int_equal(hw_fwd_parse_request((const uint8_t *)"\1\0\0\0", 4,
					      &r, &used), -EINVAL);
	assert_int_equal(hw_fwd_parse_request((const uint8_t *)"\1\0\0\41", 4,
					      &r, &used), -EINVAL);
	assert_int_equal(hw_fwd_parse_request((const uint8_t *)"\1\0\0\2a\0",
					      6, &r, &used), -EINVAL);
	assert_int_equal(hw_fwd_parse_request((const uint8_t *)"\1\0\0\2aB",
					      6, &r, &used), -EINVAL);
	snprintf(r.name, sizeof(r.name), "Bad");
	assert_int_equal(hw_fwd_build_request(out, &r), 0);
}

static void test_answer(void **state)
{
	uint8_t out[HW_FWD_ANSWER_MAX], big[300];
	struct hw_fwd_answer a;
	size_t n, used;

	(void)state;
	n = hw_fwd_build_answer(out, HW_FWD_REFUSED, 0, "127.0.0.1:1: refused");
	assert_int_equal(n, 5 + 20);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(hw_fwd_parse_answer(out, k, &a, &used),
				 k >= 2 || k == 0 ? -EAGAIN : -EAGAIN);
	assert_int_equal(hw_fwd_parse_answer(out, n, &a, &used), 0);
	assert_int_equal(used, n);
	assert_int_equal(a.status, HW_FWD_REFUSED);
	assert_string_equal(a.msg, "127.0.0.1:1: refused");
	assert_string_equal(hw_fwd_status_str(a.status), "refused");
	/* An unknown status, another version, a NUL in the message. */
	out[1] = 8;
	assert_int_equal(hw_fwd_parse_answer(out, n, &a, &used), -EPROTO);
	out[1] = 0;
	out[0] = 2;
	assert_int_equal(hw_fwd_parse_answer(out, n, &a, &used), -EPROTO);
	out[0] = 1;
	out[6] = 0;
	assert_int_equal(hw_fwd_parse_answer(out, n, &a, &used), -EPROTO);
	/* A long message is cut at 255 bytes. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(hw_fwd_build_answer(out, HW_FWD_OK, 22,
					     (const char *)big), 5 + 255);
	assert_int_equal(hw_fwd_parse_answer(out, 5 + 255, &a, &used), 0);
	assert_int_equal(a.service_port, 22);
	assert_int_equal(strlen(a.msg), 255);
}

static void test_settings(void **state)
{
	static struct fwd_settings s;
	static const struct {
		const char *doc, *why;
	} bad[] = {
		{"[]", "not a JSON object"},
		{"{\"expose\": {}}", "expose: must be a list"},
		{"{\"expose\": [{\"name\": \"Ssh\", \"target\": \"h:22\", "
		 "\"allow\": [\"any\"]}]}", "expose[0].name: 'Ssh' is not"},
		{"{\"expose\": [{\"name\": \"ssh\", \"target\": \"h\", "
		 "\"allow\": [\"any\"]}]}", "expose[0].target: 'h' is not"},
		{"{\"expose\": [{\"name\": \"ssh\", \"target\": \"h:22\"}]}",
		 "expose[0].allow: must list"},
		{"{\"expose\": [{\"name\": \"ssh\", \"target\": \"h:22\", "
		 "\"allow\": [\"abc\"]}]}", "expose[0].allow[0]: not 64"},
		{"{\"expose\": [{\"name\": \"a\", \"target\": \"h:1\", "
		 "\"allow\": [\"any\"]}, {\"name\": \"a\", \"target\": "
		 "\"h:2\", \"allow\": [\"any\"]}]}", "'a' is exposed twice"},
		{"{\"map\": [{\"listen\": \"127.0.0.1:99999\", \"pk\": \"" PK1
		 "\", \"service\": \"ssh\"}]}", "map[0].listen:"},
		{"{\"map\": [{\"listen\": \"127.0.0.1:22\", \"pk\": \"xx\", "
		 "\"service\": \"ssh\"}]}", "map[0].pk: not 64"},
		{"{\"map\": [{\"listen\": \"127.0.0.1:22\", \"pk\": \"" PK1
		 "\"}]}", "map[0].service: missing"},
		{"{\"map\": [{\"listen\": \"127.0.0.1:22\", \"pk\": \"" PK1
		 "\", \"service\": \"a\"}, {\"listen\": \"127.0.0.1:22\", "
		 "\"pk\": \"" PK2 "\", \"service\": \"b\"}]}",
		 "127.0.0.1:22 is mapped twice"},
	};
	const char *good =
		"{\"revision\": 7, \"expose\": [{\"name\": \"ssh\", \"target\": "
		"\"127.0.0.1:22\", \"allow\": [\"" PK1 "\"]}, {\"name\": "
		"\"web\", \"target\": \"[::1]:8080\", \"allow\": [\"any\"]}], "
		"\"map\": [{\"listen\": \"127.0.0.1:2200\", \"pk\": \"" PK2
		"\", \"service\": \"ssh\"}]}";
	char err[256], host[64], port[8];
	const struct fwd_service *v;

	(void)state;
	assert_int_equal(fwd_settings_parse(good, strlen(good), &s, err,
					    sizeof(err)), 0);
	assert_int_equal(s.revision, 7);
	assert_int_equal(s.nservices, 2);
	assert_int_equal(s.nmaps, 1);
	assert_non_null(v = fwd_service_find(&s, "ssh"));
	assert_true(fwd_service_allows(v, PK1));
	assert_false(fwd_service_allows(v, PK2));
	assert_non_null(v = fwd_service_find(&s, "web"));
	assert_string_equal(v->host, "::1");
	assert_string_equal(v->port, "8080");
	assert_true(fwd_service_allows(v, PK2));
	assert_null(fwd_service_find(&s, "nope"));
	assert_string_equal(s.maps[0].pk, PK2);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(fwd_settings_parse(bad[i].doc,
						    strlen(bad[i].doc), &s, err,
						    sizeof(err)), -1);
		if (!strstr(err, bad[i].why))
			fail_msg("%s: got '%s'", bad[i].doc, err);
	}
	assert_int_equal(fwd_split_addr("localhost:22", host, sizeof(host),
					port), 0);
	assert_int_equal(fwd_split_addr("::1:22", host, sizeof(host), port),
			 -1);
	assert_int_equal(fwd_split_addr("[::1]22", host, sizeof(host), port),
			 -1);
	assert_int_equal(fwd_split_addr(":22", host, sizeof(host), port), -1);
	/* No file: empty settings. */
	assert_int_equal(fwd_settings_load("/nonexistent/settings.json", &s,
					   err, sizeof(err)), 0);
	assert_int_equal(s.nservices + s.nmaps, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_answer),
		cmocka_unit_test(test_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
