#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "util/addr.h"
#include "visor/config.h"

static char dir[64], path[128];

static int setup(void **state)
{
	strcpy(dir, "/tmp/hw-test-config-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/hopwire.json", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	return rmdir(dir);
}

static void test_addr_split(void **state)
{
	char host[HW_HOST_MAX];
	uint16_t port;

	assert_int_equal(hw_addr_split("127.0.0.1:7777", host, &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 7777);
	assert_int_equal(hw_addr_split("[::1]:80", host, &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(hw_addr_split(":9", host, &port), 0);
	assert_string_equal(host, "");
	assert_int_equal(hw_addr_split("example.org:65535", host, &port), 0);
	assert_int_equal(hw_addr_split("h:0", host, &port), -EINVAL);
	assert_int_equal(hw_addr_split("h:65536", host, &port), -EINVAL);
	assert_int_equal(hw_addr_split("h:-1", host, &port), -EINVAL);
	assert_int_equal(hw_addr_split("h:12x", host, &port), -EINVAL);
	assert_int_equal(hw_addr_split("h", host, &port), -EINVAL);
	assert_int_equal(hw_addr_split("h:", host, &port), -EINVAL);
	assert_int_equal(hw_addr_split("::1:80", host, &port), -EINVAL);
	assert_int_equal(hw_addr_split("[::1]80", host, &port), -EINVAL);
}

static void write_cfg(const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Loads text and expects failure with a message containing want. */
static void expect_error(const char *text, const char *want)
{
	struct hw_config cfg;
	char err[512];

	write_cfg(text);
	assert_int_not_equal(hw_config_load(&cfg, path, err, sizeof(err)), 0);
	if (!strstr(err, want))
		fail_msg("error '%s' does not contain '%s'", err, want);
	hw_config_free(&cfg);
}

static void test_default_roundtrip(void **state)
{
	json_t *d = hw_config_default("/k/visor.key", "/l", NULL, NULL);
	struct hw_config cfg;
	char err[512];

	assert_int_equal(json_dump_file(d, path, 0), 0);
	json_decref(d);
	assert_int_equal(hw_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_string_equal(cfg.key_file, "/k/visor.key");
	assert_string_equal(cfg.control_socket, "/l/visor.sock");
	assert_string_equal(cfg.tcp_listen, "0.0.0.0:7777");
	assert_int_equal(cfg.keepalive_ms, 5000);
	assert_int_equal(cfg.npersistent, 0);
	hw_config_free(&cfg);
}

static void test_relative_paths_and_persistent(void **state)
{
	struct hw_config cfg;
	char err[512], want[256];

	write_cfg("{\"version\":1,\"key_file\":\"visor.key\",\"local_dir\":"
		  "\"local\",\"transport\":{\"persistent\":[{\"pk\":"
		  "\"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68"
		  "f707511a\",\"addr\":\"10.0.0.1:7777\"}]}}");
	assert_int_equal(hw_config_load(&cfg, path, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/visor.key", dir);
	assert_string_equal(cfg.key_file, want);
	assert_int_equal(cfg.npersistent, 1);
	assert_string_equal(cfg.persistent[0].type, "tcp");
	assert_string_equal(cfg.persistent[0].addr, "10.0.0.1:7777");
	hw_config_free(&cfg);
}

static void test_errors_name_the_field(void **state)
{
	expect_error("{", "line 1");
	expect_error("[]", "must be a JSON object");
	expect_error("{\"version\":2}", "version: must be 1");
	expect_error("{\"version\":1}", "key_file: missing");
	expect_error("{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\","
		     "\"colour\":1}",
		     "colour: unknown setting");
	expect_error("{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\","
		     "\"transport\":{\"tcp_listen\":\"x:99999\"}}",
		     "transport.tcp_listen: 'x:99999' is not HOST:PORT");
	expect_error("{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\","
		     "\"transport\":{\"keepalive_interval_ms\":5}}",
		     "transport.keepalive_interval_ms: 5 is out of range");
	expect_error("{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\","
		     "\"transport\":{\"keepalive_interval_ms\":\"5\"}}",
		     "must be a whole number");
	expect_error("{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\","
		     "\"log_level\":\"loud\"}",
		     "log_level: 'loud' is not");
	expect_error("{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\","
		     "\"transport\":{\"persistent\":[{\"pk\":\"00\"}]}}",
		     "transport.persistent[0].pk: hex string has the wrong "
		     "length");
	expect_error("{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\","
		     "\"transport\":{\"redial_min_ms\":5000,"
		     "\"redial_max_ms\":1000}}",
		     "transport.redial_max_ms: 1000 is below");
	expect_error("{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\","
		     "\"version\":1}",
		     "duplicate");
}

#define APPS_HEAD "{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\"," \
	"\"apps\":["

static void test_apps(void **state)
{
	struct hw_config cfg;
	char err[512], want[256];
	FILE *f;

	write_cfg(APPS_HEAD "{\"name\":\"chat\",\"binary\":\"hopwire-chat\","
		  "\"args\":[\"--http\",\"127.0.0.1:8001\"],\"port\":1},"
		  "{\"name\":\"my_app-2\",\"binary\":\"bin/app\",\"port\":"
		  "65535,\"autostart\":false}]}");
	assert_int_equal(hw_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_int_equal(cfg.napps, 2);
	assert_string_equal(cfg.apps[0].binary, "hopwire-chat");
	assert_int_equal(cfg.apps[0].nargs, 2);
	assert_string_equal(cfg.apps[0].args[1], "127.0.0.1:8001");
	assert_null(cfg.apps[0].args[2]);
	assert_int_equal(cfg.apps[0].port, 1);
	assert_true(cfg.apps[0].autostart);
	snprintf(want, sizeof(want), "%s/bin/app", dir);
	assert_string_equal(cfg.apps[1].binary, want);
	assert_false(cfg.apps[1].autostart);
	assert_int_equal(cfg.apps[1].nargs, 0);
	hw_config_free(&cfg);

	/* Autostart is written back; the rest of the file stays. */
	assert_int_equal(hw_config_set_autostart(path, "chat", 0, err,
						 sizeof(err)), 0);
	assert_int_equal(hw_config_set_autostart(path, "nope", 1, err,
						 sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no app named 'nope'"));
	assert_int_equal(hw_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_false(cfg.apps[0].autostart);
	assert_string_equal(cfg.apps[0].args[0], "--http");
	hw_config_free(&cfg);
	assert_null(f = fopen(strcat(strcpy(want, path), ".tmp"), "r"));

	expect_error(APPS_HEAD "{\"name\":\"a b\",\"binary\":\"x\","
		     "\"port\":1}]}", "apps[0].name: 'a b' is not");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":65536}]}", "apps[0].port: 65536 is out of range");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\"}]}",
		     "apps[0].port: missing");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"\","
		     "\"port\":1}]}", "apps[0].binary: must not be empty");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1,\"args\":[1]}]}",
		     "apps[0].args[0]: must be a string");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1},{\"name\":\"a\",\"binary\":\"y\","
		     "\"port\":2}]}", "apps[1].name: 'a' is used twice");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1},{\"name\":\"b\",\"binary\":\"y\","
		     "\"port\":1}]}", "apps[1].port: 1 is also a's port");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1,\"autostart\":1}]}",
		     "apps[0].autostart: must be true or false");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1,\"colour\":1}]}",
		     "apps[0].colour: unknown setting");
}

/* capabilities and cleanup_args (docs/apps.md), and port 0 (none). */
static void test_app_caps_cleanup(void **state)
{
	struct hw_config cfg;
	char err[512], big[2048];
	size_t n;

	write_cfg(APPS_HEAD "{\"name\":\"vpn-client\",\"binary\":\"v\","
		  "\"port\":0,\"capabilities\":[\"CAP_NET_ADMIN\"],"
		  "\"cleanup_args\":[\"--cleanup\",\"-v\"]},"
		  "{\"name\":\"other\",\"binary\":\"o\",\"port\":0,"
		  "\"capabilities\":[],\"cleanup_args\":[]},"
		  "{\"name\":\"plain\",\"binary\":\"p\",\"port\":5}]}");
	assert_int_equal(hw_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_int_equal(cfg.napps, 3);
	assert_int_equal(cfg.apps[0].port, 0);
	assert_true(cfg.apps[0].caps == HW_APP_CAP_NET_ADMIN);
	assert_int_equal(cfg.apps[0].ncleanup_args, 2);
	assert_string_equal(cfg.apps[0].cleanup_args[0], "--cleanup");
	assert_string_equal(cfg.apps[0].cleanup_args[1], "-v");
	assert_null(cfg.apps[0].cleanup_args[2]);
	/* Two apps without a port do not clash. */
	assert_int_equal(cfg.apps[1].port, 0);
	assert_true(cfg.apps[1].caps == 0);
	assert_int_equal(cfg.apps[1].ncleanup_args, 0);
	assert_non_null(cfg.apps[1].cleanup_args);
	assert_true(cfg.apps[2].caps == 0);
	assert_int_equal(cfg.apps[2].ncleanup_args, 0);
	hw_config_free(&cfg);
	assert_string_equal(hw_config_cap_name(HW_APP_CAP_NET_ADMIN),
			    "CAP_NET_ADMIN");
	assert_null(hw_config_cap_name(1));

	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1,\"capabilities\":[\"CAP_SYS_ADMIN\"]}]}",
		     "apps[0].capabilities[0]: 'CAP_SYS_ADMIN' is not a "
		     "capability an app may have (only CAP_NET_ADMIN)");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1,\"capabilities\":[\"CAP_NET_ADMIN\","
		     "\"cap_net_admin\"]}]}",
		     "apps[0].capabilities[1]: 'cap_net_admin' is not");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1,\"capabilities\":[12]}]}",
		     "apps[0].capabilities[0]: '(not a string)' is not");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1,\"capabilities\":\"CAP_NET_ADMIN\"}]}",
		     "apps[0].capabilities: must be a list");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1,\"cleanup_args\":\"--cleanup\"}]}",
		     "apps[0].cleanup_args: must be a list of strings");
	expect_error(APPS_HEAD "{\"name\":\"a\",\"binary\":\"x\","
		     "\"port\":1,\"cleanup_args\":[\"a\",null]}]}",
		     "apps[0].cleanup_args[1]: must be a string");
	n = (size_t)snprintf(big, sizeof(big), APPS_HEAD "{\"name\":\"a\","
			     "\"binary\":\"x\",\"port\":1,"
			     "\"cleanup_args\":[");
	for (int i = 0; i <= HW_APP_MAX_ARGS; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"a\"",
				      i ? "," : "");
	snprintf(big + n, sizeof(big) - n, "]}]}");
	expect_error(big, "apps[0].cleanup_args: more than 32");
}

static char *read_all(const char *p)
{
	FILE *f = fopen(p, "r");
	char *buf = calloc(1, 65536);

	assert_non_null(f);
	assert_non_null(buf);
	assert_true(fread(buf, 1, 65535, f) > 0);
	fclose(f);
	return buf;
}

static void put_error(const char *name, const char *spec, const char *want)
{
	char err[512], *before = read_all(path), *after;
	json_t *j = json_loads(spec, 0, NULL);

	assert_non_null(j);
	assert_int_equal(hw_config_put_app(path, name, j, err, sizeof(err)),
			 -EINVAL);
	if (!strstr(err, want))
		fail_msg("error '%s' does not contain '%s'", err, want);
	after = read_all(path);
	assert_string_equal(before, after); /* not written */
	free(before);
	free(after);
	json_decref(j);
}

/* PUT /v1/apps/NAME's writer: adds or replaces one entry of "apps", the
 * rest of the file as it was; nothing is written when the entry or the
 * resulting file would not load. */
static void test_put_app(void **state)
{
	struct hw_config cfg;
	struct hw_config_app a;
	char err[512], want[256];
	json_t *j;

	write_cfg("{\"version\":1,\"key_file\":\"k\",\"local_dir\":\"l\","
		  "\"log_level\":\"debug\",\"routing\":{\"heal_timeout_ms\":"
		  "1234},\"apps\":[{\"name\":\"chat\",\"binary\":"
		  "\"hopwire-chat\",\"port\":1}]}");
	j = json_pack("{s:s, s:[s, s], s:i}", "binary",
		      "hopwire-socks-client", "args", "--exit", "ab", "port", 4);
	assert_int_equal(hw_config_put_app(path, "socks-client", j, err,
					   sizeof(err)), 0);
	json_decref(j);
	assert_int_equal(hw_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_int_equal(cfg.napps, 2);
	assert_string_equal(cfg.apps[0].name, "chat");
	assert_string_equal(cfg.apps[1].name, "socks-client");
	assert_int_equal(cfg.apps[1].port, 4);
	assert_true(cfg.apps[1].autostart);
	assert_int_equal(cfg.apps[1].nargs, 2);
	assert_string_equal(cfg.apps[1].args[1], "ab");
	assert_int_equal(cfg.log_level, HW_LOG_DEBUG);
	assert_int_equal(cfg.heal_timeout_ms, 1234);
	hw_config_free(&cfg);

	/* Replacing keeps the entry's place. */
	j = json_pack("{s:s, s:[s], s:i, s:b}", "binary", "bin/chat", "args",
		      "--quiet", "port", 11, "autostart", 0);
	assert_int_equal(hw_config_put_app(path, "chat", j, err, sizeof(err)),
			 0);
	json_decref(j);
	assert_int_equal(hw_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_int_equal(cfg.napps, 2);
	assert_string_equal(cfg.apps[0].name, "chat");
	assert_int_equal(cfg.apps[0].port, 11);
	assert_false(cfg.apps[0].autostart);
	assert_string_equal(cfg.apps[0].args[0], "--quiet");
	snprintf(want, sizeof(want), "%s/bin/chat", dir);
	assert_string_equal(cfg.apps[0].binary, want);
	hw_config_free(&cfg);
	snprintf(want, sizeof(want), "%s.tmp", path);
	assert_int_equal(access(want, F_OK), -1);

	/* One app alone: fields named as in the object. */
	j = json_pack("{s:s, s:i}", "binary", "bin/x", "port", 9);
	assert_int_equal(hw_config_app_parse(path, "x", j, &a, err,
					     sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/bin/x", dir);
	assert_string_equal(a.binary, want);
	assert_string_equal(a.name, "x");
	assert_int_equal(a.nargs, 0);
	assert_non_null(a.args);
	hw_config_app_clear(&a);
	assert_null(a.args);
	json_decref(j);

	put_error("b", "{\"binary\":\"x\"}", "port: missing");
	put_error("b", "{\"port\":2}", "binary: missing");
	put_error("b", "{\"binary\":\"x\",\"port\":\"2\"}",
		  "port: must be a whole number");
	put_error("b", "{\"binary\":\"x\",\"port\":70000}",
		  "port: 70000 is out of range 0..65535");
	put_error("b", "{\"binary\":\"x\",\"port\":2,\"args\":\"-v\"}",
		  "args: must be a list of strings");
	put_error("b", "{\"binary\":\"x\",\"port\":2,\"name\":\"b\"}",
		  "name: unknown setting");
	put_error("a b", "{\"binary\":\"x\",\"port\":2}",
		  "'a b' is not an app name");
	put_error("b", "[]", "must be a JSON object");
	put_error("b", "{\"binary\":\"x\",\"port\":2,\"capabilities\":"
		  "[\"CAP_SYS_PTRACE\"]}", "capabilities[0]: 'CAP_SYS_PTRACE' "
		  "is not a capability");

	/* The writer keeps the new fields; two apps may have no port. */
	j = json_pack("{s:s, s:i, s:[s], s:[s], s:b}", "binary", "v",
		      "port", 0, "capabilities", "CAP_NET_ADMIN",
		      "cleanup_args", "--cleanup", "autostart", 1);
	assert_int_equal(hw_config_put_app(path, "vpn-client", j, err,
					   sizeof(err)), 0);
	assert_int_equal(hw_config_put_app(path, "vpn-2", j, err,
					   sizeof(err)), 0);
	json_decref(j);
	assert_int_equal(hw_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_int_equal(cfg.napps, 4);
	assert_string_equal(cfg.apps[2].name, "vpn-client");
	assert_true(cfg.apps[2].caps == HW_APP_CAP_NET_ADMIN);
	assert_string_equal(cfg.apps[2].cleanup_args[0], "--cleanup");
	assert_int_equal(cfg.apps[3].port, 0);
	hw_config_free(&cfg);
	/* The entry is fine, the file would not be: another app's port. */
	put_error("b", "{\"binary\":\"x\",\"port\":4}",
		  "apps[4].port: 4 is also socks-client's port");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_split),
		cmocka_unit_test(test_default_roundtrip),
		cmocka_unit_test(test_relative_paths_and_persistent),
		cmocka_unit_test(test_errors_name_the_field),
		cmocka_unit_test(test_apps),
		cmocka_unit_test(test_put_app),
		cmocka_unit_test(test_app_caps_cleanup),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
