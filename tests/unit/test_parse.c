#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/parse.h"

#define UNSET 4242ull

static void test_uint_good(void **state)
{
	unsigned long long v = UNSET;

	assert_int_equal(hw_parse_uint("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(hw_parse_uint("7", 1, 10, &v), 0);
	assert_int_equal(v, 7);
	/* Leading zeros are still decimal, not octal. */
	assert_int_equal(hw_parse_uint("010", 0, 100, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(hw_parse_uint("18446744073709551615", 0, ULLONG_MAX,
				       &v), 0);
	assert_true(v == ULLONG_MAX);
}

static void test_uint_bounds(void **state)
{
	unsigned long long v = UNSET;

	assert_int_equal(hw_parse_uint("1", 1, 1000000, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(hw_parse_uint("1000000", 1, 1000000, &v), 0);
	assert_int_equal(v, 1000000);
	v = UNSET;
	assert_int_equal(hw_parse_uint("0", 1, 1000000, &v), -ERANGE);
	assert_int_equal(hw_parse_uint("1000001", 1, 1000000, &v), -ERANGE);
	assert_int_equal(hw_parse_uint("99", 100, 3600000, &v), -ERANGE);
	assert_true(v == UNSET);
}

static void test_uint_overflow(void **state)
{
	unsigned long long v = UNSET;

	assert_int_equal(hw_parse_uint("18446744073709551616", 0, ULLONG_MAX,
				       &v), -ERANGE);
	assert_int_equal(hw_parse_uint("99999999999999999999999999", 0,
				       ULLONG_MAX, &v), -ERANGE);
	/* Too many digits and garbage after them: not a number at all. */
	assert_int_equal(hw_parse_uint("99999999999999999999999x", 0,
				       ULLONG_MAX, &v), -EINVAL);
	assert_true(v == UNSET);
}

static void test_uint_malformed(void **state)
{
	static const char *const bad[] = {
		"", " ", " 5", "5 ", "+5", "-5", "-0", "5x", "0x10", "1e3",
		"1.5", "5\n", "1K", "\t5", "--", "abc",
	};
	unsigned long long v = UNSET;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(hw_parse_uint(bad[i], 0, ULLONG_MAX, &v),
				 -EINVAL);
		assert_true(v == UNSET);
	}
	/* "-1" must not wrap around to ULLONG_MAX as strtoull does. */
	assert_int_equal(hw_parse_uint("-1", 0, ULLONG_MAX, &v), -EINVAL);
	assert_true(v == UNSET);
}

static void test_bytes_units(void **state)
{
	static const struct {
		const char *s;
		unsigned long long v;
	} good[] = {
		{"0", 0},
		{"512", 512},
		{"1K", 1ull << 10},  {"1k", 1ull << 10},  {"1KiB", 1ull << 10},
		{"512KiB", 512ull << 10},
		{"3M", 3ull << 20},  {"3m", 3ull << 20},
		{"256MiB", 256ull << 20},
		{"1G", 1ull << 30},  {"2g", 2ull << 30},  {"1GiB", 1ull << 30},
		{"1024G", 1ull << 40},
	};
	unsigned long long v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = UNSET;
		assert_int_equal(hw_parse_bytes(good[i].s, 0, ULLONG_MAX, &v),
				 0);
		assert_true(v == good[i].v);
	}
}

static void test_bytes_bounds(void **state)
{
	unsigned long long v = UNSET;

	/* The relay's --max-buffered: at least 512KiB. */
	assert_int_equal(hw_parse_bytes("512K", 512u << 10, ULLONG_MAX, &v),
			 0);
	assert_true(v == 512u << 10);
	v = UNSET;
	assert_int_equal(hw_parse_bytes("524287", 512u << 10, ULLONG_MAX, &v),
			 -ERANGE);
	assert_int_equal(hw_parse_bytes("511KiB", 512u << 10, ULLONG_MAX, &v),
			 -ERANGE);
	/* The CLI's --bytes: 1 to 1 TiB. */
	assert_int_equal(hw_parse_bytes("0", 1, 1ull << 40, &v), -ERANGE);
	assert_int_equal(hw_parse_bytes("1025G", 1, 1ull << 40, &v), -ERANGE);
	assert_true(v == UNSET);
	assert_int_equal(hw_parse_bytes("1099511627776", 1, 1ull << 40, &v), 0);
	assert_true(v == 1ull << 40);
}

static void test_bytes_overflow(void **state)
{
	unsigned long long v = UNSET;

	/* Fits as a number, not once the unit multiplies it. */
	assert_int_equal(hw_parse_bytes("18014398509481984K", 0, ULLONG_MAX,
					&v), -ERANGE);
	assert_int_equal(hw_parse_bytes("17179869184G", 0, ULLONG_MAX, &v),
			 -ERANGE);
	assert_int_equal(hw_parse_bytes("99999999999999999999999", 0,
					ULLONG_MAX, &v), -ERANGE);
	assert_int_equal(hw_parse_bytes("99999999999999999999999M", 0,
					ULLONG_MAX, &v), -ERANGE);
	assert_true(v == UNSET);
	/* The largest count each unit allows. */
	assert_int_equal(hw_parse_bytes("18014398509481983K", 0, ULLONG_MAX,
					&v), 0);
	assert_true(v == (ULLONG_MAX >> 10) << 10);
}

static void test_bytes_malformed(void **state)
{
	static const char *const bad[] = {
		"", "K", "KiB", " 1K", "1K ", "+1K", "-1K", "-1", "1 K",
		"1KB", "1kb", "1kib", "1Ki", "1T", "1KK", "1.5M", "0x10",
		"1MiBx", "abc",
	};
	unsigned long long v = UNSET;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(hw_parse_bytes(bad[i], 0, ULLONG_MAX, &v),
				 -EINVAL);
		assert_true(v == UNSET);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uint_good),
		cmocka_unit_test(test_uint_bounds),
		cmocka_unit_test(test_uint_overflow),
		cmocka_unit_test(test_uint_malformed),
		cmocka_unit_test(test_bytes_units),
		cmocka_unit_test(test_bytes_bounds),
		cmocka_unit_test(test_bytes_overflow),
		cmocka_unit_test(test_bytes_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
