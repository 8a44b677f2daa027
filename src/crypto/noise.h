/* Noise Protocol Framework (revision 34) handshakes with the suite
 * 25519_ChaChaPoly_BLAKE2b, for the patterns NN, XK, KK, IK and XX.
 *
 * A handshake state is an explicit state machine: it is either waiting to
 * write, waiting to read, ready to split, done, or failed. Any error (a
 * message in the wrong turn, too short, too long, failing authentication)
 * moves it to FAILED for good and wipes its secrets; every later call then
 * returns HW_ESTATE. Nothing here allocates per message. */
#ifndef HW_CRYPTO_NOISE_H
#define HW_CRYPTO_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/cipher.h"

#define HW_NOISE_DHLEN 32
#define HW_NOISE_HASHLEN 64
/* Largest Noise message, handshake or transport. */
#define HW_NOISE_MAX_MSG 65535
/* Largest transport payload: one message less the AEAD tag. */
#define HW_NOISE_MAX_PAYLOAD (HW_NOISE_MAX_MSG - HW_CIPHER_TAGLEN)

enum hw_noise_pattern {
	HW_NOISE_NN,
	HW_NOISE_XK,
	HW_NOISE_KK,
	HW_NOISE_IK,
	HW_NOISE_XX,
};

enum hw_noise_role {
	HW_NOISE_INITIATOR,
	HW_NOISE_RESPONDER,
};

enum hw_noise_state {
	HW_NOISE_WRITE, /* our turn to send the next handshake message */
	HW_NOISE_READ,  /* waiting for the peer's next handshake message */
	HW_NOISE_SPLIT, /* handshake complete: call hw_noise_hs_split */
	HW_NOISE_DONE,  /* split done; only the hash and remote key remain */
	HW_NOISE_FAILED,
};

struct hw_noise_hs;

/* Starts a handshake.
 * s_priv: our static X25519 private key, required when the pattern sends
 *   or pre-shares our static key (all but NN); NULL otherwise.
 * rs: the peer's static X25519 public key, required when the pattern
 *   pre-shares it (XK and IK as initiator, KK both sides); NULL otherwise.
 * prologue: bytes both sides must agree on (names protocol and purpose).
 * Returns 0 and *out, -EINVAL when a required key is missing, -ENOMEM. */
int hw_noise_hs_new(struct hw_noise_hs **out, enum hw_noise_pattern pattern,
		    enum hw_noise_role role, const uint8_t *prologue,
		    size_t prologue_len, const uint8_t *s_priv,
		    const uint8_t *rs);

/* Wipes and frees. Accepts NULL. */
void hw_noise_hs_free(struct hw_noise_hs *hs);

enum hw_noise_state hw_noise_hs_state(const struct hw_noise_hs *hs);

/* Writes the next handshake message carrying payload into out (capacity
 * outcap). Returns 0 and *outlen; HW_ESTATE when it is not our turn;
 * HW_ETOOBIG when the message would exceed HW_NOISE_MAX_MSG or outcap. */
int hw_noise_hs_write(struct hw_noise_hs *hs, const uint8_t *payload,
		      size_t payload_len, uint8_t *out, size_t outcap,
		      size_t *outlen);

/* Reads the peer's next handshake message msg and writes its payload to
 * payload (capacity cap, at most msg_len bytes are ever needed). Returns 0
 * and *payload_len; HW_ESTATE out of turn; HW_ESHORT/HW_ETOOBIG for a
 * message of impossible length; HW_EAUTH when decryption or a DH fails. */
int hw_noise_hs_read(struct hw_noise_hs *hs, const uint8_t *msg,
		     size_t msg_len, uint8_t *payload, size_t cap,
		     size_t *payload_len);

/* In state SPLIT: creates the two transport cipher states (rekeying every
 * HW_CIPHER_REKEY_INTERVAL messages), owned by the caller, and moves to
 * DONE. Returns 0, HW_ESTATE, -ENOMEM. */
int hw_noise_hs_split(struct hw_noise_hs *hs, struct hw_cipher **send,
		      struct hw_cipher **recv);

/* The handshake hash (HW_NOISE_HASHLEN bytes), valid in SPLIT and DONE:
 * a channel binding both ends share. */
const uint8_t *hw_noise_hs_hash(const struct hw_noise_hs *hs);

/* The peer's static public key once it is known (pre-shared or received),
 * or NULL. */
const uint8_t *hw_noise_hs_remote_static(const struct hw_noise_hs *hs);

/* Test hook: use this X25519 private key as our ephemeral instead of a
 * random one, to reproduce test vectors. Call before the first write. */
void hw_noise_hs_set_ephemeral_for_test(struct hw_noise_hs *hs,
					const uint8_t e_priv[HW_NOISE_DHLEN]);

/* The X25519 public key of a private key. Returns 0 or HW_ECRYPTO. */
int hw_noise_public_key(const uint8_t priv[HW_NOISE_DHLEN],
			uint8_t pub[HW_NOISE_DHLEN]);

#endif
