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

/* Writes header+body of a record with len bytes of value v into out. */
static size_t make_record(uint8_t *out, size_t len, uint8_t v)
{
	hw_record_put_header(out, len);
	memset(out + 2, v, len);
	return len + 2;
}

static void test_byte_by_byte(void **state)
{
	struct hw_record_reader *r = hw_record_reader_new(1, HW_RECORD_MAX);
	static uint8_t stream[3 * (HW_RECORD_MAX + 2)];
	size_t lens[3] = {1, HW_RECORD_MAX, 300}, total = 0, got = 0;
	uint8_t *rec;
	size_t len;

	for (int i = 0; i < 3; i++)
		total += make_record(stream + total, lens[i], (uint8_t)(i + 1));
	/* Feed one byte at a time: records come out whole and in order. */
	for (size_t i = 0; i < total; i++) {
		assert_int_equal(hw_record_reader_feed(r, stream + i, 1), 1);
		int rc;
		while ((rc = hw_record_reader_next(r, &rec, &len)) == 1) {
			assert_int_equal(len, lens[got]);
			for (size_t k = 0; k < len; k++)
				assert_int_equal(rec[k], got + 1);
			got++;
		}
		assert_int_equal(rc, 0);
	}
	assert_int_equal(got, 3);
	assert_int_equal(hw_record_reader_pending(r), 0);
	hw_record_reader_free(r);
}

/* Records with bytes between them that are not records (detached
 * payloads): fed in odd pieces, both come out whole. */
static void test_take_between_records(void **state)
{
	struct hw_record_reader *r = hw_record_reader_new(1, HW_RECORD_MAX);
	static uint8_t stream[4 * (HW_RECORD_MAX + 2)];
	size_t total = 0, fed = 0, step = 7001;
	int stage = 0;
	uint8_t *p;
	size_t len;

	total += make_record(stream, 10, 1);
	memset(stream + total, 2, HW_RECORD_MAX);
	total += HW_RECORD_MAX;
	total += make_record(stream + total, HW_RECORD_MAX, 3);
	memset(stream + total, 4, 5);
	total += 5;
	while (stage < 4) {
		if (fed < total) {
			size_t n = total - fed < step ? total - fed : step;
			fed += hw_record_reader_feed(r, stream + fed, n);
		}
		for (;;) {
			int got;
			if (stage == 1 || stage == 3) {
				size_t want = stage == 1 ? HW_RECORD_MAX : 5;
				got = hw_record_reader_take(r, want, &p);
				len = want;
			} else {
				got = hw_record_reader_next(r, &p, &len);
			}
			if (!got)
				break;
			assert_int_equal(got, 1);
			for (size_t k = 0; k < len; k++)
				assert_int_equal(p[k], stage + 1);
			stage++;
			if (stage == 4)
				break;
		}
		assert_true(fed < total || stage == 4);
	}
	assert_int_equal(hw_record_reader_pending(r), 0);
	hw_record_reader_free(r);
}

static void test_big_reads(void **state)
{
	struct hw_record_reader *r = hw_record_reader_new(16, HW_RECORD_MAX);
	static uint8_t stream[64 * 1024 * 4];
	size_t total = 0, off = 0, got = 0, bytes = 0;
	uint8_t *space, *rec;
	size_t cap, len;

	/* Many records of varied sizes, read in chunks as large as the
	 * reader offers. */
	for (int i = 0; total + 5000 + 2 < sizeof(stream); i++)
		total += make_record(stream + total, 16 + (size_t)i * 97 % 5000,
				     (uint8_t)i);
	while (off < total) {
		hw_record_reader_space(r, &space, &cap);
		assert_true(cap > 0);
		size_t n = total - off < cap ? total - off : cap;
		memcpy(space, stream + off, n);
		hw_record_reader_commit(r, n);
		off += n;
		while (hw_record_reader_next(r, &rec, &len) == 1) {
			assert_int_equal(rec[0], (uint8_t)got);
			got++;
			bytes += len + 2;
		}
	}
	assert_int_equal(bytes, total);
	hw_record_reader_free(r);
}

static void test_bounds(void **state)
{
	struct hw_record_reader *r = hw_record_reader_new(16, 1000);
	uint8_t buf[2000], *rec;
	size_t len;

	assert_null(hw_record_reader_new(10, 5));
	assert_null(hw_record_reader_new(0, HW_RECORD_MAX + 1));
	/* Shorter than a tag: impossible for an encrypted record. */
	make_record(buf, 15, 0);
	hw_record_reader_feed(r, buf, 2);
	assert_int_equal(hw_record_reader_next(r, &rec, &len), HW_EPROTO);
	hw_record_reader_free(r);

	r = hw_record_reader_new(16, 1000);
	make_record(buf, 1001, 0);
	hw_record_reader_feed(r, buf, 2);
	/* Refused at once, from the header alone. */
	assert_int_equal(hw_record_reader_next(r, &rec, &len), HW_EPROTO);
	hw_record_reader_set_bounds(r, 0, 2000);
	assert_int_equal(hw_record_reader_next(r, &rec, &len), 0);
	hw_record_reader_free(r);

	r = hw_record_reader_new(0, HW_RECORD_MAX);
	make_record(buf, 0, 0);
	hw_record_reader_feed(r, buf, 2);
	assert_int_equal(hw_record_reader_next(r, &rec, &len), 1);
	assert_int_equal(len, 0);
	hw_record_reader_free(r);
	hw_record_reader_free(NULL);
}

static void test_seal_open(void **state)
{
	static const uint8_t key[32] = {9};
	struct hw_cipher *a = hw_cipher_new(), *b = hw_cipher_new();
	struct hw_record_reader *r = hw_record_reader_new(16, HW_RECORD_MAX);
	static uint8_t pt[HW_RECORD_MAX], out[HW_RECORD_MAX + 2];
	uint8_t *rec;
	size_t len, n;

	assert_int_equal(hw_cipher_set_key(a, key), 0);
	assert_int_equal(hw_cipher_set_key(b, key), 0);
	memset(pt, 0x5a, sizeof(pt));
	assert_int_equal(hw_record_seal(a, pt, HW_RECORD_MAX_PLAINTEXT + 1,
					out),
			 HW_ETOOBIG);
	int total = hw_record_seal(a, pt, HW_RECORD_MAX_PLAINTEXT, out);
	assert_int_equal(total, HW_RECORD_MAX + 2);
	hw_record_reader_feed(r, out, (size_t)total);
	assert_int_equal(hw_record_reader_next(r, &rec, &len), 1);
	assert_int_equal(hw_cipher_decrypt(b, NULL, 0, rec, len, rec, &n), 0);
	assert_int_equal(n, HW_RECORD_MAX_PLAINTEXT);
	assert_memory_equal(rec, pt, n);
	hw_cipher_free(a);
	hw_cipher_free(b);
	hw_record_reader_free(r);
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
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_big_reads),
		cmocka_unit_test(test_take_between_records),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_seal_open),
		cmocka_unit_test(test_fd_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
