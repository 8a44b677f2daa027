/* The VPN apps' JSON files (src/apps/vpn/status.c, compiled into this
 * test: apps are not part of hwcore): written atomically, read only from
 * a regular file of bounded size. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
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
#include "../../src/apps/vpn/status.h"

static char dir[64], path[128], tmp[160];
static char err[512];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/hw-test-vpnfiles-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/status.json", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	hw_test_rm_tree(dir);
	return 0;
}

static void write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void load_bad(size_t max, const char *want)
{
	json_t *doc = (json_t *)1;

	err[0] = '\0';
	assert_int_equal(hw_vpn_json_load(path, max, &doc, err, sizeof(err)),
			 -EINVAL);
	assert_null(doc);
	if (!strstr(err, want) || !strstr(err, path))
		fail_msg("error '%s' does not say '%s' of %s", err, want,
			 path);
}

static void test_round_trip(void **state)
{
	json_t *doc, *back = NULL;
	struct stat st;

	(void)state;
	doc = json_pack("{s:s, s:b, s:[{s:s, s:I}], s:n}", "role", "server",
			"nat", 1, "clients", "pk", "ab", "bytes_in",
			(json_int_t)1 << 40, "error");
	assert_non_null(doc);
	for (int sync = 0; sync <= 1; sync++) {
		assert_int_equal(hw_vpn_json_save(path, doc, sync), 0);
		assert_int_equal(access(tmp, F_OK), -1);
		assert_int_equal(stat(path, &st), 0);
		assert_true(S_ISREG(st.st_mode));
		assert_int_equal(st.st_mode & 0777, 0600);
		assert_int_equal(hw_vpn_json_load(path, 1 << 20, &back, err,
						  sizeof(err)), 0);
		assert_true(json_equal(doc, back));
		json_decref(back);
		back = NULL;
	}
	/* Saved over a bigger file: the new document only. */
	json_object_del(doc, "clients");
	assert_int_equal(hw_vpn_json_save(path, doc, 1), 0);
	assert_int_equal(hw_vpn_json_load(path, 1 << 20, &back, err,
					  sizeof(err)), 0);
	assert_true(json_equal(doc, back));
	json_decref(back);
	/* Exactly max bytes is fine, one fewer is not. */
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(hw_vpn_json_load(path, (size_t)st.st_size, &back,
					  err, sizeof(err)), 0);
	json_decref(back);
	load_bad((size_t)st.st_size - 1, "more than");
	/* A folder that is not there. */
	assert_int_equal(hw_vpn_json_save("/nonexistent/x/status.json", doc,
					  0), -ENOENT);
	json_decref(doc);
}

static void test_load_refuses(void **state)
{
	char target[160];
	json_t *doc = (json_t *)1;
	int fd;

	(void)state;
	/* No file. */
	assert_int_equal(hw_vpn_json_load(path, 100, &doc, err, sizeof(err)),
			 -ENOENT);
	assert_null(doc);
	/* A link to a good file. */
	snprintf(target, sizeof(target), "%s/real.json", dir);
	write_file(target, "{\"a\": 1}");
	assert_int_equal(symlink(target, path), 0);
	load_bad(100, "");
	assert_int_equal(unlink(path), 0);
	/* A folder, a FIFO (not opened for writing by anyone: must not
	 * block). */
	assert_int_equal(mkdir(path, 0700), 0);
	load_bad(100, "not a regular file");
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(mkfifo(path, 0600), 0);
	load_bad(100, "not a regular file");
	assert_int_equal(unlink(path), 0);
	/* Too big, empty, not JSON, not an object, a key twice, trailing
	 * text. */
	write_file(path, "{\"a\": \"0123456789\"}");
	load_bad(10, "19 bytes, more than 10");
	write_file(path, "");
	load_bad(100, "line");
	write_file(path, "{\"a\": ");
	load_bad(100, "line 1");
	write_file(path, "[1, 2]");
	load_bad(100, "not a JSON object");
	write_file(path, "\"text\"");
	load_bad(100, "");
	write_file(path, "{\"a\": 1, \"a\": 2}");
	load_bad(100, "duplicate");
	write_file(path, "{\"a\": 1} {}");
	load_bad(100, "line 1");
	/* An object as it should be. */
	write_file(path, "{}");
	assert_int_equal(hw_vpn_json_load(path, 100, &doc, err, sizeof(err)),
			 0);
	json_decref(doc);
	/* A link where NAME.tmp goes: the save does not follow it. */
	assert_int_equal(symlink(target, tmp), 0);
	doc = json_pack("{s:i}", "b", 2);
	assert_int_equal(hw_vpn_json_save(path, doc, 0), -ELOOP);
	json_decref(doc);
	fd = open(target, O_RDONLY);
	assert_true(fd >= 0);
	{
		char buf[32] = {0};

		assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
		assert_string_equal(buf, "{\"a\": 1}");
	}
	close(fd);
}

static void test_clocks(void **state)
{
	long long w = hw_vpn_wall_ms(), m = hw_vpn_now_ms();

	(void)state;
	/* After 2020 and moving forward. */
	assert_true(w > 1577836800000LL);
	hw_test_sleep_ms(20);
	assert_true(hw_vpn_now_ms() - m >= 19);
	assert_true(hw_vpn_wall_ms() >= w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_load_refuses, setup,
						teardown),
		cmocka_unit_test(test_clocks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
