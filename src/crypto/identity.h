/* A visor's identity: an Ed25519 key pair, stored in one key file.
 *
 * The public key, as 64 lowercase hex characters, is the visor's address.
 * The X25519 keys used in Noise are derived from the Ed25519 ones with the
 * standard birational map, so the key file is the whole identity.
 *
 * Key file format (text, 0600):
 *   line 1: "HOPWIRE ED25519 SECRET KEY"
 *   line 2: the 32-byte Ed25519 seed as 64 hex characters
 * The public key is derived from the seed; nothing else is stored. */
#ifndef HW_CRYPTO_IDENTITY_H
#define HW_CRYPTO_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#define HW_PK_LEN 32
#define HW_PK_HEXLEN 64
#define HW_SIG_LEN 64
#define HW_SEED_LEN 32

struct hw_identity {
	uint8_t pk[HW_PK_LEN];  /* Ed25519 public key */
	uint8_t sk[64];         /* Ed25519 secret key (seed || pk) */
};

/* Creates a new random identity. Returns 0 or HW_ECRYPTO. */
int hw_identity_generate(struct hw_identity *id);

/* Derives the identity of a 32-byte seed. Returns 0 or HW_ECRYPTO. */
int hw_identity_from_seed(struct hw_identity *id,
			  const uint8_t seed[HW_SEED_LEN]);

/* Wipes the secret key. */
void hw_identity_wipe(struct hw_identity *id);

/* Writes id to path with mode 0600. Without force an existing file is
 * left alone and HW_EKEYEXISTS returned. Returns 0 or a negative errno. */
int hw_identity_save(const struct hw_identity *id, const char *path,
		     int force);

/* Loads path into id. Returns 0; HW_EKEYPERM when group or others can read
 * it; HW_EKEYTRUNC when it ends early; HW_EKEYFORMAT when it is not a key
 * file; a negative errno when it cannot be opened or read. */
int hw_identity_load(struct hw_identity *id, const char *path);

/* The Noise static key pair of an identity. Returns 0 or HW_ECRYPTO. */
int hw_identity_x25519(const struct hw_identity *id, uint8_t priv[32],
		       uint8_t pub[32]);

/* The X25519 public key of an Ed25519 public key. Returns 0 or
 * HW_EBADKEY when pk is not a valid Ed25519 point. */
int hw_pk_to_x25519(const uint8_t pk[HW_PK_LEN], uint8_t x25519_pub[32]);

/* Parses a public key written as 64 hex characters (str, len bytes) and
 * checks it is a valid Ed25519 point. Returns 0, HW_EHEXLEN, HW_EHEXCHAR
 * or HW_EBADKEY. */
int hw_pk_parse(const char *str, size_t len, uint8_t pk[HW_PK_LEN]);

/* Writes pk as 64 lowercase hex characters and a NUL. */
void hw_pk_format(const uint8_t pk[HW_PK_LEN], char out[HW_PK_HEXLEN + 1]);

/* Ed25519 signature over msg. */
void hw_identity_sign(const struct hw_identity *id, const uint8_t *msg,
		      size_t len, uint8_t sig[HW_SIG_LEN]);

/* Returns 0 when sig is pk's signature over msg, HW_EAUTH otherwise. */
int hw_sig_verify(const uint8_t pk[HW_PK_LEN], const uint8_t *msg,
		  size_t len, const uint8_t sig[HW_SIG_LEN]);

#endif
