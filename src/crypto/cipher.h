/* Noise CipherState with ChaChaPoly (OpenSSL EVP ChaCha20-Poly1305).
 *
 * One state per direction after a handshake; during a handshake the single
 * state of the SymmetricState is used both ways. Nonces are 64-bit counters
 * (Noise: 32 zero bits then the counter, little-endian). The state rekeys
 * itself every rekey interval messages (Noise section 11.3), and refuses to
 * work once the counter reaches 2^64-1, the value Noise reserves. */
#ifndef HW_CRYPTO_CIPHER_H
#define HW_CRYPTO_CIPHER_H

#include <stddef.h>
#include <stdint.h>

#define HW_CIPHER_KEYLEN 32
#define HW_CIPHER_TAGLEN 16
/* Messages between automatic rekeys on transport states. Both ends count
 * the same messages, so they rekey at the same point without signalling. */
#define HW_CIPHER_REKEY_INTERVAL (UINT64_C(1) << 20)
/* The counter value at which a state stops for good. */
#define HW_CIPHER_NONCE_LIMIT UINT64_MAX

struct hw_cipher;

/* Allocates a state with no key (encrypt/decrypt then copy plaintext, as
 * Noise specifies). Returns NULL when out of memory. */
struct hw_cipher *hw_cipher_new(void);

/* Wipes the key and frees. Accepts NULL. */
void hw_cipher_free(struct hw_cipher *c);

/* Sets key k and resets the counter to 0. Returns 0 or HW_ECRYPTO. */
int hw_cipher_set_key(struct hw_cipher *c, const uint8_t k[HW_CIPHER_KEYLEN]);

int hw_cipher_has_key(const struct hw_cipher *c);

/* Rekey automatically after this many messages; 0 turns it off (the
 * default; hw_noise_hs_split turns it on for transport states). */
void hw_cipher_set_rekey_interval(struct hw_cipher *c, uint64_t interval);

/* Encrypts pt (ptlen bytes) with associated data ad into out, which may be
 * pt itself; out must hold ptlen + HW_CIPHER_TAGLEN bytes when a key is set.
 * *outlen receives the length written. Returns 0, HW_ENONCE when the
 * counter is exhausted, HW_ECRYPTO on a library failure. */
int hw_cipher_encrypt(struct hw_cipher *c, const uint8_t *ad, size_t adlen,
		      const uint8_t *pt, size_t ptlen, uint8_t *out,
		      size_t *outlen);

/* Decrypts and authenticates ct into out (may be ct). Returns 0, HW_ESHORT
 * when ct is shorter than a tag, HW_EAUTH when authentication fails (the
 * counter does not advance), HW_ENONCE, HW_ECRYPTO. */
int hw_cipher_decrypt(struct hw_cipher *c, const uint8_t *ad, size_t adlen,
		      const uint8_t *ct, size_t ctlen, uint8_t *out,
		      size_t *outlen);

/* Noise REKEY(): k = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros(32)).
 * The counter is unchanged. Returns 0 or HW_ESTATE/HW_ECRYPTO. */
int hw_cipher_rekey(struct hw_cipher *c);

uint64_t hw_cipher_nonce(const struct hw_cipher *c);

/* Test hook: sets the counter, to reach the rekey and exhaustion edges. */
void hw_cipher_set_nonce_for_test(struct hw_cipher *c, uint64_t n);

#endif
