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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grows_to_max),
		cmocka_unit_test(test_refuses_without_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
