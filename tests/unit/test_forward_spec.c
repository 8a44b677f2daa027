/* Tests of what `hopwire forward` checks before it changes the forward
 * app's settings (src/cli/forward_spec.c and cli_util.c, compiled into
 * this test: the CLI is not in hwcore). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/cli.h"
#include "cli/forward_spec.h"
#include "crypto/identity.h"

static char pk1[HW_PK_HEXLEN + 1], pk2[HW_PK_HEXLEN + 1];

static void make_pk(char out[HW_PK_HEXLEN + 1])
{
	struct hw_identity id;

	assert_int_equal(hw_identity_generate(&id), 0);
	hw_pk_format(id.pk, out);
	hw_identity_wipe(&id);
}

static int setup(void **state)
{
	(void)state;
	make_pk(pk1);
	make_pk(pk2);
	return 0;
}

static void test_names(void **state)
{
	(void)state;
	assert_true(hw_fwd_name_ok("ssh"));
	assert_true(hw_fwd_name_ok("a.b_c-9"));
	assert_true(hw_fwd_name_ok("abcdefghijklmnopqrstuvwxyz012345"));
	assert_false(hw_fwd_name_ok("abcdefghijklmnopqrstuvwxyz0123456"));
	assert_false(hw_fwd_name_ok(""));
	assert_false(hw_fwd_name_ok("SSH"));
	assert_false(hw_fwd_name_ok("a b"));
	assert_false(hw_fwd_name_ok("a/b"));
	assert_false(hw_fwd_name_ok("é"));
}

static void test_keys(void **state)
{
	char up[HW_PK_HEXLEN + 1];

	(void)state;
	assert_null(hw_cli_pk_bad(pk1));
	for (int i = 0; pk1[i]; i++)
		up[i] = (char)(pk1[i] >= 'a' ? pk1[i] - 32 : pk1[i]);
	up[HW_PK_HEXLEN] = '\0';
	assert_null(hw_cli_pk_bad(up));
	assert_string_equal(hw_cli_pk_bad("abc"), "not 64 hex characters");
	up[3] = 'g';
	assert_string_equal(hw_cli_pk_bad(up), "not hex");
}

static void test_targets(void **state)
{
	static const char *const good[] = {
		"127.0.0.1:22", "localhost:8080", "db.internal:5432",
		"[::1]:22", "[2001:db8::1]:443", "a-b.c:1", "10.0.0.1:65535",
	};
	static const char *const bad[] = {
		"127.0.0.1", ":22", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:-1", "::1:22", "[::1]", "[::g]:22", "[1.2.3.4]:22",
		"300.1.1.1:22", "1.2.3:22", "bad_host:22", "-a.b:22", "a-.b:22",
		"a..b:22", "a b:22", "host:22x", "",
	};
	char err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		err[0] = '\0';
		if (hw_fwd_target_check(good[i], err, sizeof(err)))
			fail_msg("%s: %s", good[i], err);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (hw_fwd_target_check(bad[i], err, sizeof(err)) != -EINVAL)
			fail_msg("%s passed", bad[i]);
		assert_non_null(strstr(err, bad[i]));
	}
}

static void test_listen(void **state)
{
	static const char *const pairs[][2] = {
		{"2200", "127.0.0.1:2200"},
		{"127.0.0.1:2200", "127.0.0.1:2200"},
		{"0.0.0.0:80", "0.0.0.0:80"},
		{"[::1]:2200", "[::1]:2200"},
		{"[0:0::1]:2200", "[::1]:2200"},
		{"[::]:1", "[::]:1"},
	};
	static const char *const bad[] = {
		"0", "65536", "abc", "localhost:22", ":22", "1.2.3.4:", "[::1]",
		"::1:22", "300.0.0.1:22", "[x]:22", "-1", "",
	};
	char out[HW_FWD_ADDR_MAX], err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		assert_int_equal(hw_fwd_listen_parse(pairs[i][0], out, err,
						     sizeof(err)), 0);
		assert_string_equal(out, pairs[i][1]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (hw_fwd_listen_parse(bad[i], out, err, sizeof(err)) !=
		    -EINVAL)
			fail_msg("%s passed", bad[i]);
		assert_non_null(strstr(err, bad[i]));
	}
}

static void test_expose_and_unexpose(void **state)
{
	const char *two[] = {pk1, pk2, pk1}, *any[] = {"any"};
	const char *mixed[] = {"any", pk1}, *bad[] = {"nobody"};
	char err[512];
	json_t *doc = json_pack("{s:i}", "revision", 3), *e;

	(void)state;
	assert_int_equal(hw_fwd_expose(doc, "ssh", "127.0.0.1:22", two, 3, err,
				       sizeof(err)), 0);
	assert_int_equal(hw_fwd_expose(doc, "web", "localhost:80", any, 1, err,
				       sizeof(err)), 0);
	assert_int_equal(hw_fwd_doc_check(doc, err, sizeof(err)), 0);
	e = json_array_get(json_object_get(doc, "expose"), 0);
	/* Duplicates dropped. */
	assert_int_equal(json_array_size(json_object_get(e, "allow")), 2);
	/* Replaced in place. */
	assert_int_equal(hw_fwd_expose(doc, "ssh", "127.0.0.1:2222", any, 1,
				       err, sizeof(err)), 0);
	assert_int_equal(json_array_size(json_object_get(doc, "expose")), 2);
	e = json_array_get(json_object_get(doc, "expose"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "target")),
			    "127.0.0.1:2222");
	/* Refused, doc untouched. */
	assert_int_equal(hw_fwd_expose(doc, "x", "127.0.0.1:1", mixed, 2, err,
				       sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "choose one"));
	assert_int_equal(hw_fwd_expose(doc, "x", "127.0.0.1:1", bad, 1, err,
				       sizeof(err)), -EINVAL);
	assert_int_equal(hw_fwd_expose(doc, "x", "127.0.0.1:1", any, 0, err,
				       sizeof(err)), -EINVAL);
	assert_int_equal(hw_fwd_expose(doc, "X", "127.0.0.1:1", any, 1, err,
				       sizeof(err)), -EINVAL);
	assert_int_equal(json_array_size(json_object_get(doc, "expose")), 2);

	assert_int_equal(hw_fwd_unexpose(doc, "nope", err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "nope"));
	assert_int_equal(hw_fwd_unexpose(doc, "ssh", err, sizeof(err)), 0);
	assert_int_equal(json_array_size(json_object_get(doc, "expose")), 1);
	json_decref(doc);
}

static void test_add_and_rm(void **state)
{
	char err[512], l1[HW_FWD_ADDR_MAX], l2[HW_FWD_ADDR_MAX];
	json_t *doc = json_object();
	int same;

	(void)state;
	assert_int_equal(hw_fwd_listen_parse("2200", l1, err, sizeof(err)), 0);
	assert_int_equal(hw_fwd_listen_parse("[::1]:2200", l2, err,
					     sizeof(err)), 0);
	assert_int_equal(hw_fwd_add(doc, l1, pk1, "ssh", &same, err,
				    sizeof(err)), 0);
	assert_false(same);
	assert_int_equal(hw_fwd_add(doc, l2, pk2, "ssh", &same, err,
				    sizeof(err)), 0);
	assert_int_equal(hw_fwd_add(doc, l1, pk1, "ssh", &same, err,
				    sizeof(err)), 0);
	assert_true(same);
	assert_int_equal(hw_fwd_add(doc, l1, pk2, "ssh", &same, err,
				    sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "mapped already"));
	assert_int_equal(json_array_size(json_object_get(doc, "map")), 2);
	assert_int_equal(hw_fwd_doc_check(doc, err, sizeof(err)), 0);
	assert_int_equal(hw_fwd_rm(doc, "127.0.0.1:9", err, sizeof(err)),
			 -ENOENT);
	assert_int_equal(hw_fwd_rm(doc, l2, err, sizeof(err)), 0);
	assert_int_equal(hw_fwd_rm(doc, l1, err, sizeof(err)), 0);
	assert_int_equal(json_array_size(json_object_get(doc, "map")), 0);
	json_decref(doc);
}

static void test_doc_check(void **state)
{
	char text[1024], err[512];
	/* %1$s: pk1. Each document is wrong in one way. */
	static const char *const bad[] = {
		"{\"expose\": {}}",
		"{\"map\": 3}",
		"{\"expose\": [3]}",
		"{\"expose\": [{\"name\": \"a\", \"target\": \"h:1\"}]}",
		"{\"expose\": [{\"name\": \"a\", \"target\": \"h\", "
		"\"allow\": [\"any\"]}]}",
		"{\"expose\": [{\"name\": \"a\", \"target\": \"h:1\", "
		"\"allow\": []}]}",
		"{\"expose\": [{\"name\": \"a\", \"target\": \"h:1\", "
		"\"allow\": [\"any\", \"%1$s\"]}]}",
		"{\"expose\": [{\"name\": \"a\", \"target\": \"h:1\", "
		"\"allow\": [\"any\"]}, {\"name\": \"a\", \"target\": \"h:2\", "
		"\"allow\": [\"any\"]}]}",
		"{\"map\": [{\"listen\": \"2200\", \"pk\": \"%1$s\", "
		"\"service\": \"s\"}, {\"listen\": \"127.0.0.1:2200\", "
		"\"pk\": \"%1$s\", \"service\": \"t\"}]}",
		"{\"map\": [{\"listen\": \"2200\", \"pk\": \"x\", "
		"\"service\": \"s\"}]}",
		"{\"map\": [{\"listen\": \"2200\", \"pk\": \"%1$s\"}]}",
		"{\"map\": [{\"pk\": \"%1$s\", \"service\": \"s\"}]}",
	};
	json_t *doc;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), bad[i], pk1);
		assert_non_null(doc = json_loads(text, 0, NULL));
		err[0] = '\0';
		if (hw_fwd_doc_check(doc, err, sizeof(err)) != -EINVAL)
			fail_msg("passed: %s", text);
		assert_true(err[0]);
		json_decref(doc);
	}
	/* One mapping too many. */
	doc = json_object();
	for (int i = 0; i <= HW_FWD_MAPS_MAX; i++) {
		char l[32];
		int same;
		snprintf(l, sizeof(l), "127.0.0.1:%d", 1000 + i);
		assert_int_equal(hw_fwd_add(doc, l, pk1, "s", &same, err,
					    sizeof(err)), 0);
		assert_int_equal(hw_fwd_doc_check(doc, err, sizeof(err)),
				 i < HW_FWD_MAPS_MAX ? 0 : -EINVAL);
	}
	assert_non_null(strstr(err, "at most 64"));
	json_decref(doc);
	snprintf(text, sizeof(text),
		 "{\"revision\": 4, \"other\": 1, \"expose\": [{\"name\": "
		 "\"a\", \"target\": \"h:1\", \"allow\": [\"%1$s\"]}], "
		 "\"map\": [{\"listen\": \"2200\", \"pk\": \"%1$s\", "
		 "\"service\": \"a\"}]}", pk1);
	assert_non_null(doc = json_loads(text, 0, NULL));
	assert_int_equal(hw_fwd_doc_check(doc, err, sizeof(err)), 0);
	json_decref(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_targets),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_expose_and_unexpose),
		cmocka_unit_test(test_add_and_rm),
		cmocka_unit_test(test_doc_check),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
