#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/err.h"
#include "wire/record.h"

static void test_seal_open(void **state)
{
	static const uint8_t key[32] = {9};
	struct hw_cipher *a = hw_cipher_new(), *b = hw_cipher_new();
	static uint8_t pt[HW_RECORD_MAX], out[HW_RECORD_MAX + 2];
	uint8_t *rec = out + HW_RECORD_HDR;
	size_t len, n;

	assert_int_equal(hw_cipher_set_key(a, key), 0);
	assert_int_equal(hw_cipher_set_key(b, key), 0);
	memset(pt, 0x5a, sizeof(pt));
	assert_int_equal(hw_record_seal(a, pt, HW_RECORD_MAX_PLAINTEXT + 1,
					out),
			 HW_ETOOBIG);
	int total = hw_record_seal(a, pt, HW_RECORD_MAX_PLAINTEXT, out);
	assert_int_equal(total, HW_RECORD_MAX + 2);
	len = (size_t)out[0] << 8 | out[1];
	assert_int_equal(len, HW_RECORD_MAX);
	assert_int_equal(hw_cipher_decrypt(b, NULL, 0, rec, len, rec, &n), 0);
	assert_int_equal(n, HW_RECORD_MAX_PLAINTEXT);
	assert_memory_equal(rec, pt, n);
	hw_cipher_free(a);
	hw_cipher_free(b);
}

static void test_fd_helpers(void **state)
{
	int sv[2];
	uint8_t buf[100];
	size_t len;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(hw_record_write_fd(sv[0], (const uint8_t *)"hello", 5),
			 0);
	assert_int_equal(hw_record_read_fd(sv[1], buf, sizeof(buf), 0, &len),
			 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "hello", 5);
	/* Longer than the caller's buffer. */
	assert_int_equal(hw_record_write_fd(sv[0], buf, 100), 0);
	assert_int_equal(hw_record_read_fd(sv[1], buf, 50, 0, &len),
			 HW_EPROTO);
	close(sv[0]);
	close(sv[1]);

	/* EOF before a record, and inside one. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[0]);
	assert_int_equal(hw_record_read_fd(sv[1], buf, sizeof(buf), 0, &len),
			 HW_ECLOSED);
	close(sv[1]);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[0], "\x00\x09" "abc", 5), 5);
	close(sv[0]);
	assert_int_equal(hw_record_read_fd(sv[1], buf, sizeof(buf), 0, &len),
			 HW_EPROTO);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_open),
		cmocka_unit_test(test_fd_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
