/* Tests of the files an app shares with its visor
 * (src/visor/api_app_files.c): the careful reading of status.json and
 * settings.json, and the settings' revision checked and incremented. */
#include <errno.h>
#include <fcntl.h>
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

#include "util/err.h"
#include "visor/api_app_files.h"
#include "hwtest.h"

static char dir[64], appdir[128], path[192];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/hw-test-appfiles-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(appdir, sizeof(appdir), "%s/apps/fwd", dir);
	snprintf(path, sizeof(path), "%s/" HW_APP_SETTINGS_FILE, appdir);
	return 0;
}

static int teardown(void **state)
{
	char apps[96];

	(void)state;
	hw_test_rm_tree(appdir);
	snprintf(apps, sizeof(apps), "%s/apps", dir);
	hw_test_rm_tree(apps);
	hw_test_rm_tree(dir);
	return 0;
}

static void write_text(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void make_appdir(void)
{
	char apps[96];

	snprintf(apps, sizeof(apps), "%s/apps", dir);
	assert_int_equal(mkdir(apps, 0700), 0);
	assert_int_equal(mkdir(appdir, 0700), 0);
}

static json_t *get(void)
{
	char err[512];
	json_t *o = NULL;

	assert_int_equal(hw_app_settings_get(dir, "fwd", &o, err,
					     sizeof(err)), 0);
	assert_true(json_is_object(o));
	return o;
}

static int put(const char *body_text, json_t **out, long long *cur,
	       char *err, size_t errlen)
{
	json_t *body = json_loads(body_text, JSON_DECODE_ANY, NULL);
	int rc;

	assert_non_null(body);
	rc = hw_app_settings_put(dir, "fwd", body, cur, out, err, errlen);
	json_decref(body);
	return rc;
}

static void test_none_is_revision_0(void **state)
{
	json_t *o;

	(void)state;
	o = get();
	assert_int_equal(json_object_size(o), 1);
	assert_int_equal(json_integer_value(json_object_get(o, "revision")),
			 0);
	json_decref(o);
}

static void test_put_creates_and_increments(void **state)
{
	char err[512];
	json_t *o = NULL;
	long long cur;
	struct stat st;

	(void)state;
	/* Neither apps/ nor apps/fwd/ exist yet: both made 0700. */
	assert_int_equal(put("{\"revision\": 0, \"expose\": [1, 2]}", &o,
			     &cur, err, sizeof(err)), 0);
	assert_int_equal(json_integer_value(json_object_get(o, "revision")),
			 1);
	assert_int_equal(json_array_size(json_object_get(o, "expose")), 2);
	json_decref(o);
	assert_int_equal(stat(appdir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	o = get();
	assert_int_equal(json_integer_value(json_object_get(o, "revision")),
			 1);
	assert_int_equal(json_array_size(json_object_get(o, "expose")), 2);
	json_decref(o);

	/* The next write names revision 1; anything else is stale. */
	assert_int_equal(put("{\"revision\": 0}", &o, &cur, err, sizeof(err)),
			 HW_ESTATE);
	assert_null(o);
	assert_int_equal(cur, 1);
	assert_string_equal(err, "the settings changed since they were read "
				 "(revision 1)");
	assert_int_equal(put("{\"revision\": 2}", &o, &cur, err, sizeof(err)),
			 HW_ESTATE);
	assert_int_equal(put("{\"revision\": 1, \"map\": []}", &o, &cur, err,
			     sizeof(err)), 0);
	assert_int_equal(json_integer_value(json_object_get(o, "revision")),
			 2);
	/* The whole document is replaced, not merged. */
	assert_null(json_object_get(o, "expose"));
	json_decref(o);
	/* No temporary file is left. */
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_int_equal(access(tmp, F_OK), -1);
}

static void test_put_bad_bodies(void **state)
{
	static const char *const bad[] = {
		"[]", "\"x\"", "3", "null", "{}", "{\"revision\": \"0\"}",
		"{\"revision\": 0.0}", "{\"revision\": -1}",
		"{\"revision\": null}", "{\"revision\": true}",
	};
	char err[512];
	json_t *o = NULL;
	long long cur;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(put(bad[i], &o, &cur, err, sizeof(err)),
				 -EINVAL);
		assert_null(o);
		assert_non_null(strstr(err, "revision"));
	}
	/* Nothing was written. */
	assert_int_equal(access(path, F_OK), -1);
}

static void test_put_too_big(void **state)
{
	char err[512];
	json_t *body, *o = NULL;
	long long cur;
	char *big;

	(void)state;
	big = malloc(HW_APP_FILE_MAX);
	assert_non_null(big);
	memset(big, 'a', HW_APP_FILE_MAX - 1);
	big[HW_APP_FILE_MAX - 1] = '\0';
	body = json_pack("{s:i, s:s}", "revision", 0, "x", big);
	assert_int_equal(hw_app_settings_put(dir, "fwd", body, &cur, &o, err,
					     sizeof(err)), HW_ETOOBIG);
	assert_null(o);
	assert_non_null(strstr(err, "over the 65536"));
	assert_int_equal(access(path, F_OK), -1);
	json_decref(body);
	/* Just under: written (compact when indented would not fit). */
	big[HW_APP_FILE_MAX - 64] = '\0';
	body = json_pack("{s:i, s:s}", "revision", 0, "x", big);
	assert_int_equal(hw_app_settings_put(dir, "fwd", body, &cur, &o, err,
					     sizeof(err)), 0);
	json_decref(o);
	json_decref(body);
	o = get();
	assert_int_equal(strlen(json_string_value(json_object_get(o, "x"))),
			 HW_APP_FILE_MAX - 64);
	json_decref(o);
	free(big);
}

static void test_hand_written_files(void **state)
{
	char err[512];
	json_t *o = NULL, *body;
	long long cur;

	(void)state;
	make_appdir();
	/* No revision, or a wrong one: counts as 0. */
	write_text(path, "{\"expose\": []}");
	o = get();
	assert_int_equal(json_integer_value(json_object_get(o, "revision")),
			 0);
	assert_non_null(json_object_get(o, "expose"));
	json_decref(o);
	write_text(path, "{\"revision\": \"seven\"}");
	o = get();
	assert_int_equal(json_integer_value(json_object_get(o, "revision")),
			 0);
	json_decref(o);

	/* Not JSON, not an object: an error naming the file, for GET and
	 * PUT alike (the PUT does not overwrite what it cannot read). */
	write_text(path, "{\"revision\": 1");
	assert_int_equal(hw_app_settings_get(dir, "fwd", &o, err,
					     sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is not JSON"));
	assert_non_null(strstr(err, path));
	body = json_pack("{s:i}", "revision", 0);
	assert_int_equal(hw_app_settings_put(dir, "fwd", body, &cur, &o, err,
					     sizeof(err)), -EIO);
	assert_non_null(strstr(err, "is not JSON"));
	write_text(path, "[1]");
	assert_int_equal(hw_app_settings_get(dir, "fwd", &o, err,
					     sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a JSON object"));
	json_decref(body);
}

static void test_read_refuses_links_fifos_and_big_files(void **state)
{
	char err[512], other[160];
	json_t *o = NULL;
	FILE *f;

	(void)state;
	make_appdir();
	assert_int_equal(hw_app_file_read(path, HW_APP_FILE_MAX, &o, err,
					  sizeof(err)), -ENOENT);
	snprintf(other, sizeof(other), "%s/other.json", dir);
	write_text(other, "{\"revision\": 5}");
	assert_int_equal(symlink(other, path), 0);
	assert_int_not_equal(hw_app_file_read(path, HW_APP_FILE_MAX, &o, err,
					      sizeof(err)), 0);
	assert_null(o);
	unlink(path);
	unlink(other);
	/* A FIFO nobody writes: refused at once, not waited on. */
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(hw_app_file_read(path, HW_APP_FILE_MAX, &o, err,
					  sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is not a file"));
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"a\": \"", f);
	for (int i = 0; i < HW_APP_FILE_MAX; i++)
		fputc('x', f);
	fputs("\"}", f);
	fclose(f);
	assert_int_equal(hw_app_file_read(path, HW_APP_FILE_MAX, &o, err,
					  sizeof(err)), HW_ETOOBIG);
	assert_non_null(strstr(err, "over the 65536"));
	unlink(path);
	write_text(path, "{\"ok\": true}\n");
	assert_int_equal(hw_app_file_read(path, HW_APP_FILE_MAX, &o, err,
					  sizeof(err)), 0);
	assert_true(json_is_true(json_object_get(o, "ok")));
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_none_is_revision_0, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_put_creates_and_increments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_bad_bodies, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_put_too_big, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hand_written_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_read_refuses_links_fifos_and_big_files, setup,
			teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
