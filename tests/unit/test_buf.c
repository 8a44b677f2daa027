#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/buf.h"

static void test_grows_to_max(void **state)
{
	struct hw_buf b = {0};
	char chunk[1000];

	memset(chunk, 'x', sizeof(chunk));
	assert_int_equal(hw_buf_append(&b, chunk, 700, 3000), 0);
	assert_int_equal(hw_buf_append(&b, chunk, 700, 3000), 0);
	assert_int_equal(hw_buf_append(&b, chunk, 700, 3000), 0);
	assert_int_equal(b.len, 2100);
	assert_true(b.cap >= b.len && b.cap <= 3000);
	/* Exactly up to the maximum is fine, one byte more is not. */
	assert_int_equal(hw_buf_append(&b, chunk, 900, 3000), 0);
	assert_int_equal(b.len, 3000);
	assert_int_equal(hw_buf_append(&b, chunk, 1, 3000), -E2BIG);
	assert_int_equal(b.len, 3000);
	assert_int_equal(hw_buf_append(&b, chunk, 0, 3000), 0);
	hw_buf_reset(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
}

static void test_refuses_without_overflow(void **state)
{
	struct hw_buf b = {0};
	char c = 'y';

	/* A huge length must not wrap around the check. */
	assert_int_equal(hw_buf_append(&b, &c, SIZE_MAX, 100), -E2BIG);
	assert_int_equal(hw_buf_append(&b, &c, 1, 100), 0);
	/* A buffer already past a smaller maximum refuses cleanly. */
	assert_int_equal(hw_buf_append(&b, &c, 1, 0), -E2BIG);
	assert_int_equal(b.data[0], 'y');
	hw_buf_reset(&b);
	hw_buf_reset(&b);
}

/* Past max the body is dropped and counted up to max_discard. */
static void test_capped(void **state)
{
	struct hw_capped c = {.max = 10, .max_discard = 30};
	struct hw_capped stop = {.max = 10};

	assert_true(hw_capped_append(&c, "0123456789", 10));
	assert_false(c.too_big);
	assert_int_equal(c.body.len, 10);
	assert_true(hw_capped_append(&c, "x", 1));
	assert_true(c.too_big);
	assert_int_equal(c.body.len, 0);
	assert_int_equal(c.discarded, 11);
	assert_true(hw_capped_append(&c, "0123456789012345678", 19));
	assert_false(hw_capped_append(&c, "x", 1));
	hw_buf_reset(&c.body);

	/* max_discard 0: the first byte past max stops it. */
	assert_int_equal(hw_capped_curl_write("0123456789", 1, 10, &stop), 10);
	assert_int_equal(hw_capped_curl_write("x", 1, 1, &stop), 0);
	assert_true(stop.too_big);
	assert_false(stop.oom);
	hw_buf_reset(&stop.body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grows_to_max),
		cmocka_unit_test(test_refuses_without_overflow),
		cmocka_unit_test(test_capped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
