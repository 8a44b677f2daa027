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
#include <sodium.h>

#include "crypto/identity.h"
#include "crypto/noise.h"
#include "util/err.h"

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/hw-test-identity-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static void path_of(char *out, const char *name)
{
	snprintf(out, 128, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *data, size_t len,
		       mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_save_load(void **state)
{
	struct hw_identity a, b;
	char path[128];
	struct stat st;

	path_of(path, "a.key");
	assert_int_equal(hw_identity_generate(&a), 0);
	assert_int_equal(hw_identity_save(&a, path, 0), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(hw_identity_load(&b, path), 0);
	assert_memory_equal(a.pk, b.pk, 32);
	assert_memory_equal(a.sk, b.sk, 64);

	/* No overwrite without force; with force, a new key and 0600. */
	struct hw_identity c;
	assert_int_equal(hw_identity_generate(&c), 0);
	assert_int_equal(hw_identity_save(&c, path, 0), HW_EKEYEXISTS);
	assert_int_equal(hw_identity_load(&b, path), 0);
	assert_memory_equal(a.pk, b.pk, 32);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(hw_identity_save(&c, path, 1), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(hw_identity_load(&b, path), 0);
	assert_memory_equal(c.pk, b.pk, 32);
}

static void test_load_refusals(void **state)
{
	static const char good[] =
		"HOPWIRE ED25519 SECRET KEY\n"
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
	struct hw_identity id;
	char path[128], buf[256];

	path_of(path, "k");
	write_file(path, good, strlen(good), 0600);
	assert_int_equal(hw_identity_load(&id, path), 0);
	/* Without the final newline it is still a key. */
	write_file(path, good, strlen(good) - 1, 0600);
	assert_int_equal(hw_identity_load(&id, path), 0);

	write_file(path, good, strlen(good), 0644);
	assert_int_equal(hw_identity_load(&id, path), HW_EKEYPERM);
	write_file(path, good, strlen(good), 0640);
	assert_int_equal(hw_identity_load(&id, path), HW_EKEYPERM);

	write_file(path, good, 40, 0600);
	assert_int_equal(hw_identity_load(&id, path), HW_EKEYTRUNC);
	write_file(path, good, 10, 0600);
	assert_int_equal(hw_identity_load(&id, path), HW_EKEYTRUNC);
	write_file(path, "", 0, 0600);
	assert_int_equal(hw_identity_load(&id, path), HW_EKEYTRUNC);

	write_file(path, "-----BEGIN OPENSSH PRIVATE KEY-----\n", 36, 0600);
	assert_int_equal(hw_identity_load(&id, path), HW_EKEYFORMAT);
	memcpy(buf, good, sizeof(good));
	buf[30] = 'z';
	write_file(path, buf, strlen(good), 0600);
	assert_int_equal(hw_identity_load(&id, path), HW_EKEYFORMAT);
	memcpy(buf, good, sizeof(good));
	strcat(buf, "extra\n");
	write_file(path, buf, strlen(buf), 0600);
	assert_int_equal(hw_identity_load(&id, path), HW_EKEYFORMAT);

	path_of(path, "missing");
	assert_int_equal(hw_identity_load(&id, path), -ENOENT);
	assert_int_equal(hw_identity_load(&id, dir), HW_EKEYFORMAT);
}

static void test_pk_parse(void **state)
{
	struct hw_identity id;
	uint8_t pk[32];
	char hex[65];

	assert_int_equal(hw_identity_generate(&id), 0);
	hw_pk_format(id.pk, hex);
	assert_int_equal(strlen(hex), 64);
	assert_int_equal(hw_pk_parse(hex, 64, pk), 0);
	assert_memory_equal(pk, id.pk, 32);
	assert_int_equal(hw_pk_parse(hex, 63, pk), HW_EHEXLEN);
	hex[5] = 'x';
	assert_int_equal(hw_pk_parse(hex, 64, pk), HW_EHEXCHAR);
	/* Hex of the right length that is no curve point. */
	memset(hex, 'f', 64);
	assert_int_equal(hw_pk_parse(hex, 64, pk), HW_EBADKEY);
	/* The identity point has small order. */
	memset(hex, '0', 64);
	hex[0] = '0';
	hex[1] = '1';
	assert_int_equal(hw_pk_parse(hex, 64, pk), HW_EBADKEY);
}

static void test_x25519_agrees(void **state)
{
	struct hw_identity a, b;
	uint8_t apriv[32], apub[32], bpriv[32], bpub[32], x[32];
	uint8_t s1[32], s2[32];

	assert_int_equal(hw_identity_generate(&a), 0);
	assert_int_equal(hw_identity_generate(&b), 0);
	assert_int_equal(hw_identity_x25519(&a, apriv, apub), 0);
	assert_int_equal(hw_identity_x25519(&b, bpriv, bpub), 0);
	/* The derived private key's public key is the mapped public key. */
	assert_int_equal(hw_noise_public_key(apriv, x), 0);
	assert_memory_equal(x, apub, 32);
	assert_int_equal(hw_pk_to_x25519(a.pk, x), 0);
	assert_memory_equal(x, apub, 32);
	/* DH agrees both ways. */
	assert_int_equal(crypto_scalarmult(s1, apriv, bpub), 0);
	assert_int_equal(crypto_scalarmult(s2, bpriv, apub), 0);
	assert_memory_equal(s1, s2, 32);
	hw_identity_wipe(&a);
	hw_identity_wipe(&b);
}

static void test_sign_verify(void **state)
{
	struct hw_identity id;
	uint8_t sig[64];

	assert_int_equal(hw_identity_generate(&id), 0);
	hw_identity_sign(&id, (const uint8_t *)"entry", 5, sig);
	assert_int_equal(hw_sig_verify(id.pk, (const uint8_t *)"entry", 5,
				       sig),
			 0);
	assert_int_equal(hw_sig_verify(id.pk, (const uint8_t *)"Entry", 5,
				       sig),
			 HW_EAUTH);
	sig[0] ^= 1;
	assert_int_equal(hw_sig_verify(id.pk, (const uint8_t *)"entry", 5,
				       sig),
			 HW_EAUTH);
	hw_identity_wipe(&id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_load_refusals),
		cmocka_unit_test(test_pk_parse),
		cmocka_unit_test(test_x25519_agrees),
		cmocka_unit_test(test_sign_verify),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
