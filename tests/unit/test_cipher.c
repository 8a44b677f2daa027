#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "crypto/cipher.h"
#include "util/err.h"

static const uint8_t key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

static void make_pair(struct hw_cipher **a, struct hw_cipher **b)
{
	*a = hw_cipher_new();
	*b = hw_cipher_new();
	assert_non_null(*a);
	assert_non_null(*b);
	assert_int_equal(hw_cipher_set_key(*a, key), 0);
	assert_int_equal(hw_cipher_set_key(*b, key), 0);
}

static void test_no_key_passthrough(void **state)
{
	struct hw_cipher *c = hw_cipher_new();
	uint8_t out[8];
	size_t n;

	assert_false(hw_cipher_has_key(c));
	assert_int_equal(hw_cipher_encrypt(c, NULL, 0, (const uint8_t *)"abc",
					   3, out, &n),
			 0);
	assert_int_equal(n, 3);
	assert_memory_equal(out, "abc", 3);
	assert_int_equal(hw_cipher_rekey(c), HW_ESTATE);
	hw_cipher_free(c);
	hw_cipher_free(NULL);
}

static void test_roundtrip_in_place_and_ad(void **state)
{
	struct hw_cipher *a, *b;
	uint8_t buf[64 + 16];
	size_t n;

	make_pair(&a, &b);
	for (int i = 0; i < 64; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(hw_cipher_encrypt(a, (const uint8_t *)"ad", 2, buf,
					   64, buf, &n),
			 0);
	assert_int_equal(n, 80);
	assert_int_equal(hw_cipher_nonce(a), 1);
	/* Wrong associated data fails and leaves the counter alone. */
	uint8_t copy[80];
	memcpy(copy, buf, 80);
	assert_int_equal(hw_cipher_decrypt(b, (const uint8_t *)"AD", 2, copy,
					   80, copy, &n),
			 HW_EAUTH);
	assert_int_equal(hw_cipher_nonce(b), 0);
	assert_int_equal(hw_cipher_decrypt(b, (const uint8_t *)"ad", 2, buf,
					   80, buf, &n),
			 0);
	assert_int_equal(n, 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(buf[i], i);
	/* Too short to hold a tag. */
	assert_int_equal(hw_cipher_decrypt(b, NULL, 0, buf, 15, buf, &n),
			 HW_ESHORT);
	hw_cipher_free(a);
	hw_cipher_free(b);
}

static void test_replay_fails(void **state)
{
	struct hw_cipher *a, *b;
	uint8_t m[32], c1[32], out[32];
	size_t n;

	make_pair(&a, &b);
	memset(m, 7, 16);
	assert_int_equal(hw_cipher_encrypt(a, NULL, 0, m, 16, c1, &n), 0);
	assert_int_equal(hw_cipher_decrypt(b, NULL, 0, c1, n, out, &n), 0);
	/* The same ciphertext again is under the next nonce: refused. */
	assert_int_equal(hw_cipher_decrypt(b, NULL, 0, c1, 32, out, &n),
			 HW_EAUTH);
	hw_cipher_free(a);
	hw_cipher_free(b);
}

static void test_auto_rekey(void **state)
{
	struct hw_cipher *a, *b, *plain;
	uint8_t m[16] = {0}, c[32], c_plain[32], out[32];
	size_t n, np;

	make_pair(&a, &b);
	plain = hw_cipher_new();
	assert_int_equal(hw_cipher_set_key(plain, key), 0);
	hw_cipher_set_rekey_interval(a, 4);
	hw_cipher_set_rekey_interval(b, 4);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(hw_cipher_encrypt(a, NULL, 0, m, 16, c, &n),
				 0);
		assert_int_equal(
			hw_cipher_encrypt(plain, NULL, 0, m, 16, c_plain, &np),
			0);
		/* Before the first rekey both agree; after it they differ. */
		if (i < 4)
			assert_memory_equal(c, c_plain, n);
		else
			assert_memory_not_equal(c, c_plain, n);
		assert_int_equal(hw_cipher_decrypt(b, NULL, 0, c, n, out, &n),
				 0);
	}
	/* Rekey keeps the counter (Noise 11.3). */
	assert_int_equal(hw_cipher_nonce(a), 10);
	hw_cipher_free(a);
	hw_cipher_free(b);
	hw_cipher_free(plain);
}

static void test_nonce_exhaustion(void **state)
{
	struct hw_cipher *a, *b;
	uint8_t m[16] = {0}, c[32], out[32];
	size_t n;

	make_pair(&a, &b);
	hw_cipher_set_rekey_interval(a, HW_CIPHER_REKEY_INTERVAL);
	hw_cipher_set_nonce_for_test(a, HW_CIPHER_NONCE_LIMIT - 1);
	hw_cipher_set_nonce_for_test(b, HW_CIPHER_NONCE_LIMIT - 1);
	/* The last nonce below 2^64-1 still works... */
	assert_int_equal(hw_cipher_encrypt(a, NULL, 0, m, 16, c, &n), 0);
	assert_int_equal(hw_cipher_decrypt(b, NULL, 0, c, n, out, &n), 0);
	/* ...then the state stops for good. */
	assert_int_equal(hw_cipher_encrypt(a, NULL, 0, m, 16, c, &n),
			 HW_ENONCE);
	assert_int_equal(hw_cipher_encrypt(a, NULL, 0, m, 16, c, &n),
			 HW_ENONCE);
	assert_int_equal(hw_cipher_decrypt(b, NULL, 0, c, 32, out, &n),
			 HW_ENONCE);
	hw_cipher_free(a);
	hw_cipher_free(b);
}

static void test_explicit_rekey_matches(void **state)
{
	struct hw_cipher *a, *b;
	uint8_t m[16] = {0}, c[32], out[32];
	size_t n;

	make_pair(&a, &b);
	assert_int_equal(hw_cipher_rekey(a), 0);
	assert_int_equal(hw_cipher_encrypt(a, NULL, 0, m, 16, c, &n), 0);
	assert_int_equal(hw_cipher_decrypt(b, NULL, 0, c, n, out, &n),
			 HW_EAUTH);
	assert_int_equal(hw_cipher_rekey(b), 0);
	assert_int_equal(hw_cipher_decrypt(b, NULL, 0, c, 32, out, &n), 0);
	hw_cipher_free(a);
	hw_cipher_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_key_passthrough),
		cmocka_unit_test(test_roundtrip_in_place_and_ad),
		cmocka_unit_test(test_replay_fails),
		cmocka_unit_test(test_auto_rekey),
		cmocka_unit_test(test_nonce_exhaustion),
		cmocka_unit_test(test_explicit_rekey_matches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
