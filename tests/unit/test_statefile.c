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

#include "util/statefile.h"
#include "hwtest.h"

static char dir[64], path[128];

static int setup(void **state)
{
	strcpy(dir, "/tmp/hw-test-saver-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state.json", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	return rmdir(dir);
}

static void read_file(char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n;
	assert_non_null(f);
	n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void test_newest_wins(void **state)
{
	uv_loop_t loop;
	struct hw_statefile *s;
	struct stat st;
	char buf[160];

	uv_loop_init(&loop);
	s = hw_statefile_new(&loop, path);
	assert_non_null(s);
	/* Many saves while the first is in the pool: the last one lands,
	 * and after it nothing older. */
	for (int i = 0; i < 50; i++) {
		char *t = malloc(32);
		snprintf(t, 32, "state %d", i);
		hw_statefile_save(s, t);
	}
	hw_statefile_free(s); /* finishes the writes first */
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(hw_test_loop_close(&loop), 0);
	read_file(buf, sizeof(buf));
	assert_string_equal(buf, "state 49");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* No temporary file is left behind. */
	snprintf(buf, sizeof(buf), "%s.tmp", path);
	assert_int_not_equal(access(buf, F_OK), 0);
}

static void test_failed_write_keeps_old_state(void **state)
{
	uv_loop_t loop;
	struct hw_statefile *s;
	char buf[64], bad[160];

	assert_int_equal(hw_file_write_atomic(path, "old", 3), 0);
	snprintf(bad, sizeof(bad), "%s/missing-dir/state.json", dir);
	assert_int_equal(hw_file_write_atomic(bad, "x", 1), -ENOENT);
	uv_loop_init(&loop);
	s = hw_statefile_new(&loop, bad);
	hw_statefile_save(s, strdup("new"));
	hw_statefile_free(s);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(hw_test_loop_close(&loop), 0);
	read_file(buf, sizeof(buf));
	assert_string_equal(buf, "old");
	hw_statefile_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_newest_wins),
		cmocka_unit_test(test_failed_write_keeps_old_state),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
