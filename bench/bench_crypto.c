/* Crypto figures: AEAD throughput of the Noise cipher state at 1400-byte and
 * 16 KiB records, beside two baselines measured in the same run: OpenSSL's
 * raw ChaCha20-Poly1305 stream (one endless message, no per-record nonce or
 * tag: what `openssl speed -evp` reports, the ceiling of this CPU) and
 * libsodium's per-record AEAD; then the XK handshake rate with both sides
 * in one process, beside the raw X25519 rate. */
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/cipher.h"
#include "crypto/noise.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define SECONDS 1.0

static double bench_ours(size_t size)
{
	static uint8_t buf[16384 + 16];
	static const uint8_t key[32] = {1};
	struct hw_cipher *c = hw_cipher_new();
	size_t n, bytes = 0;
	double t0, t;

	hw_cipher_set_key(c, key);
	hw_cipher_set_rekey_interval(c, HW_CIPHER_REKEY_INTERVAL);
	t0 = now();
	do {
		for (int i = 0; i < 256; i++) {
			if (hw_cipher_encrypt(c, NULL, 0, buf, size, buf, &n)) {
				fprintf(stderr, "encrypt failed\n");
				exit(1);
			}
			bytes += size;
		}
		t = now() - t0;
	} while (t < SECONDS);
	hw_cipher_free(c);
	return (double)bytes / t / 1e9;
}

static double bench_ceiling(size_t size)
{
	static uint8_t buf[16384 + 16];
	static const uint8_t key[32] = {1}, iv[12] = {0};
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	size_t bytes = 0;
	double t0, t;
	int len;

	EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key, iv);
	t0 = now();
	do {
		for (int i = 0; i < 256; i++) {
			EVP_EncryptUpdate(ctx, buf, &len, buf, (int)size);
			bytes += size;
		}
		t = now() - t0;
	} while (t < SECONDS);
	EVP_CIPHER_CTX_free(ctx);
	return (double)bytes / t / 1e9;
}

static double bench_sodium(size_t size)
{
	static uint8_t buf[16384 + 16];
	static const uint8_t key[32] = {1};
	uint8_t nonce[12] = {0};
	unsigned long long n;
	size_t bytes = 0;
	double t0, t;

	t0 = now();
	do {
		for (int i = 0; i < 256; i++) {
			nonce[4]++;
			crypto_aead_chacha20poly1305_ietf_encrypt(
				buf, &n, buf, size, NULL, 0, NULL, nonce, key);
			bytes += size;
		}
		t = now() - t0;
	} while (t < SECONDS);
	return (double)bytes / t / 1e9;
}

static int one_xk(const uint8_t is[32], const uint8_t rs[32],
		  const uint8_t rs_pub[32])
{
	struct hw_noise_hs *i = NULL, *r = NULL;
	struct hw_cipher *a, *b, *c, *d;
	uint8_t msg[128], pt[128];
	size_t len, n;
	int rc = 1;
	static const uint8_t prologue[] = "hopwire/1 bench";

	if (hw_noise_hs_new(&i, HW_NOISE_XK, HW_NOISE_INITIATOR, prologue,
			    sizeof(prologue), is, rs_pub) ||
	    hw_noise_hs_new(&r, HW_NOISE_XK, HW_NOISE_RESPONDER, prologue,
			    sizeof(prologue), rs, NULL))
		goto out;
	if (hw_noise_hs_write(i, NULL, 0, msg, sizeof(msg), &len) ||
	    hw_noise_hs_read(r, msg, len, pt, sizeof(pt), &n) ||
	    hw_noise_hs_write(r, NULL, 0, msg, sizeof(msg), &len) ||
	    hw_noise_hs_read(i, msg, len, pt, sizeof(pt), &n) ||
	    hw_noise_hs_write(i, NULL, 0, msg, sizeof(msg), &len) ||
	    hw_noise_hs_read(r, msg, len, pt, sizeof(pt), &n) ||
	    hw_noise_hs_split(i, &a, &b) || hw_noise_hs_split(r, &c, &d))
		goto out;
	hw_cipher_free(a);
	hw_cipher_free(b);
	hw_cipher_free(c);
	hw_cipher_free(d);
	rc = 0;
out:
	hw_noise_hs_free(i);
	hw_noise_hs_free(r);
	return rc;
}

int main(void)
{
	uint8_t is[32], rs[32], rs_pub[32], out[32];
	double t0, t, ours, base, ceiling;
	long count;

	if (sodium_init() < 0)
		return 1;
	printf("== crypto (one core)\n");
	for (int k = 0; k < 2; k++) {
		size_t size = k ? 16384 : 1400;
		ours = bench_ours(size);
		ceiling = bench_ceiling(size);
		base = bench_sodium(size);
		printf("aead %5zu B records: %.2f GB/s  = %.0f%% of raw OpenSSL "
		       "stream %.2f GB/s, %.2fx libsodium %.2f GB/s\n",
		       size, ours, 100 * ours / ceiling, ceiling, ours / base,
		       base);
	}

	randombytes_buf(is, 32);
	randombytes_buf(rs, 32);
	crypto_scalarmult_base(rs_pub, rs);
	count = 0;
	t0 = now();
	do {
		for (int i = 0; i < 50; i++, count++)
			if (one_xk(is, rs, rs_pub)) {
				fprintf(stderr, "handshake failed\n");
				return 1;
			}
		t = now() - t0;
	} while (t < SECONDS);
	double hs = (double)count / t;

	count = 0;
	t0 = now();
	do {
		for (int i = 0; i < 200; i++, count++)
			if (crypto_scalarmult(out, is, rs_pub))
				return 1;
		t = now() - t0;
	} while (t < SECONDS);
	double dh = (double)count / t;
	/* Each side of XK runs 3 variable-base X25519 multiplications and 2
	 * fixed-base ones (its ephemeral and static public keys), so about
	 * 10 scalar multiplications in all bound the rate. */
	printf("noise XK handshakes: %.0f /s (both sides in one process)  "
	       "baseline X25519 %.0f /s  ratio %.1f DH per handshake\n",
	       hs, dh, dh / hs);
	return 0;
}
