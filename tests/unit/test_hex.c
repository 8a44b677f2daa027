#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/err.h"
#include "util/hex.h"

static void test_roundtrip(void **state)
{
	uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
	char hex[9];

	hw_hex_encode(in, 4, hex);
	assert_string_equal(hex, "00ab7fff");
	assert_int_equal(hw_hex_decode(hex, 8, out, 4), 0);
	assert_memory_equal(in, out, 4);
	assert_int_equal(hw_hex_decode("00AB7FFF", 8, out, 4), 0);
	assert_memory_equal(in, out, 4);
}

static void test_rejects(void **state)
{
	uint8_t out[4];
	assert_int_equal(hw_hex_decode("00ab7ff", 7, out, 4), HW_EHEXLEN);
	assert_int_equal(hw_hex_decode("00ab7fff00", 10, out, 4), HW_EHEXLEN);
	assert_int_equal(hw_hex_decode("", 0, out, 4), HW_EHEXLEN);
	assert_int_equal(hw_hex_decode("00ab7fgf", 8, out, 4), HW_EHEXCHAR);
	assert_int_equal(hw_hex_decode("00ab 7ff", 8, out, 4), HW_EHEXCHAR);
	assert_int_equal(hw_hex_decode("0x00ab7f", 8, out, 4), HW_EHEXCHAR);
	/* A NUL inside the counted length is not hex either. */
	assert_int_equal(hw_hex_decode("00ab\0fff", 8, out, 4), HW_EHEXCHAR);
}

static void test_strerror(void **state)
{
	assert_string_equal(hw_strerror(0), "success");
	assert_string_equal(hw_strerror(HW_EHEXLEN),
			    "hex string has the wrong length");
	assert_string_equal(hw_strerror(-ENOENT), strerror(ENOENT));
	assert_string_equal(hw_strerror(HW_ELAST), "unknown error");
	assert_string_equal(hw_strerror(-20000), "unknown error");
	/* Every code has its own message. */
	for (int c = HW_EBASE + 1; c < HW_ELAST; c++)
		assert_string_not_equal(hw_strerror(c), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
