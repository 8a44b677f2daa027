#include "crypto/noise.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

#define BLOCKLEN 128 /* BLAKE2b block length, for HMAC */
#define MAX_TOKENS 6
#define MAX_MESSAGES 3

enum token { T_END = 0, T_E, T_S, T_EE, T_ES, T_SE, T_SS };

struct pattern_def {
	const char *name;
	uint8_t pre_initiator_s; /* initiator's static is pre-shared */
	uint8_t pre_responder_s; /* responder's static is pre-shared */
	uint8_t initiator_has_s;
	uint8_t responder_has_s;
	uint8_t nmessages;
	uint8_t messages[MAX_MESSAGES][MAX_TOKENS];
};

/* Message i is sent by the initiator when i is even. */
static const struct pattern_def patterns[] = {
	[HW_NOISE_NN] = {"Noise_NN_25519_ChaChaPoly_BLAKE2b", 0, 0, 0, 0, 2,
			 {{T_E}, {T_E, T_EE}}},
	[HW_NOISE_XK] = {"Noise_XK_25519_ChaChaPoly_BLAKE2b", 0, 1, 1, 1, 3,
			 {{T_E, T_ES}, {T_E, T_EE}, {T_S, T_SE}}},
	[HW_NOISE_KK] = {"Noise_KK_25519_ChaChaPoly_BLAKE2b", 1, 1, 1, 1, 2,
			 {{T_E, T_ES, T_SS}, {T_E, T_EE, T_SE}}},
	[HW_NOISE_IK] = {"Noise_IK_25519_ChaChaPoly_BLAKE2b", 0, 1, 1, 1, 2,
			 {{T_E, T_ES, T_S, T_SS}, {T_E, T_EE, T_SE}}},
	[HW_NOISE_XX] = {"Noise_XX_25519_ChaChaPoly_BLAKE2b", 0, 0, 1, 1, 3,
			 {{T_E}, {T_E, T_EE, T_S, T_ES}, {T_S, T_SE}}},
};

struct hw_noise_hs {
	const struct pattern_def *def;
	enum hw_noise_role role;
	enum hw_noise_state state;
	unsigned msg_index;
	uint8_t ck[HW_NOISE_HASHLEN];
	uint8_t h[HW_NOISE_HASHLEN];
	struct hw_cipher *cs;
	uint8_t s_priv[HW_NOISE_DHLEN], s_pub[HW_NOISE_DHLEN];
	uint8_t e_priv[HW_NOISE_DHLEN], e_pub[HW_NOISE_DHLEN];
	uint8_t rs[HW_NOISE_DHLEN], re[HW_NOISE_DHLEN];
	uint8_t has_s, has_e, has_rs, has_re, fixed_e;
};

/* ---- hash, HMAC and HKDF over BLAKE2b ---- */

static void hash2(uint8_t out[HW_NOISE_HASHLEN], const uint8_t *a, size_t alen,
		  const uint8_t *b, size_t blen)
{
	crypto_generichash_blake2b_state st;
	crypto_generichash_blake2b_init(&st, NULL, 0, HW_NOISE_HASHLEN);
	crypto_generichash_blake2b_update(&st, a, alen);
	if (blen)
		crypto_generichash_blake2b_update(&st, b, blen);
	crypto_generichash_blake2b_final(&st, out, HW_NOISE_HASHLEN);
	sodium_memzero(&st, sizeof(st));
}

/* HMAC-BLAKE2b(key, a || b) with a HASHLEN key, per RFC 2104. */
static void hmac(uint8_t out[HW_NOISE_HASHLEN],
		 const uint8_t key[HW_NOISE_HASHLEN], const uint8_t *a,
		 size_t alen, const uint8_t *b, size_t blen)
{
	uint8_t pad[BLOCKLEN], inner[HW_NOISE_HASHLEN];
	crypto_generichash_blake2b_state st;

	memset(pad, 0x36, sizeof(pad));
	for (size_t i = 0; i < HW_NOISE_HASHLEN; i++)
		pad[i] ^= key[i];
	crypto_generichash_blake2b_init(&st, NULL, 0, HW_NOISE_HASHLEN);
	crypto_generichash_blake2b_update(&st, pad, sizeof(pad));
	crypto_generichash_blake2b_update(&st, a, alen);
	if (blen)
		crypto_generichash_blake2b_update(&st, b, blen);
	crypto_generichash_blake2b_final(&st, inner, sizeof(inner));

	memset(pad, 0x5c, sizeof(pad));
	for (size_t i = 0; i < HW_NOISE_HASHLEN; i++)
		pad[i] ^= key[i];
	hash2(out, pad, sizeof(pad), inner, sizeof(inner));
	sodium_memzero(pad, sizeof(pad));
	sodium_memzero(inner, sizeof(inner));
	sodium_memzero(&st, sizeof(st));
}

/* Noise HKDF with two outputs (all this suite's patterns need). */
static void hkdf2(const uint8_t ck[HW_NOISE_HASHLEN], const uint8_t *ikm,
		  size_t ikm_len, uint8_t out1[HW_NOISE_HASHLEN],
		  uint8_t out2[HW_NOISE_HASHLEN])
{
	uint8_t temp[HW_NOISE_HASHLEN];
	const uint8_t one = 0x01, two = 0x02;

	hmac(temp, ck, ikm, ikm_len, NULL, 0);
	hmac(out1, temp, &one, 1, NULL, 0);
	hmac(out2, temp, out1, HW_NOISE_HASHLEN, &two, 1);
	sodium_memzero(temp, sizeof(temp));
}

/* ---- SymmetricState ---- */

static void mix_hash(struct hw_noise_hs *hs, const uint8_t *data, size_t len)
{
	hash2(hs->h, hs->h, HW_NOISE_HASHLEN, data, len);
}

static int mix_key(struct hw_noise_hs *hs, const uint8_t *ikm, size_t len)
{
	uint8_t k[HW_NOISE_HASHLEN];
	int rc;

	hkdf2(hs->ck, ikm, len, hs->ck, k);
	rc = hw_cipher_set_key(hs->cs, k); /* first 32 bytes of the output */
	sodium_memzero(k, sizeof(k));
	return rc;
}

static size_t tag_len(const struct hw_noise_hs *hs)
{
	return hw_cipher_has_key(hs->cs) ? HW_CIPHER_TAGLEN : 0;
}

static int encrypt_and_hash(struct hw_noise_hs *hs, const uint8_t *pt,
			    size_t len, uint8_t *out, size_t *outlen)
{
	int rc = hw_cipher_encrypt(hs->cs, hs->h, HW_NOISE_HASHLEN, pt, len,
				   out, outlen);
	if (rc)
		return rc;
	mix_hash(hs, out, *outlen);
	return 0;
}

static int decrypt_and_hash(struct hw_noise_hs *hs, const uint8_t *ct,
			    size_t len, uint8_t *out, size_t *outlen)
{
	uint8_t h[HW_NOISE_HASHLEN];
	int rc;

	/* h is mixed with the ciphertext, which out may overwrite. */
	hash2(h, hs->h, HW_NOISE_HASHLEN, ct, len);
	rc = hw_cipher_decrypt(hs->cs, hs->h, HW_NOISE_HASHLEN, ct, len, out,
			       outlen);
	if (rc == 0)
		memcpy(hs->h, h, sizeof(h));
	return rc;
}

static int dh(const uint8_t priv[HW_NOISE_DHLEN],
	      const uint8_t pub[HW_NOISE_DHLEN], uint8_t out[HW_NOISE_DHLEN])
{
	/* libsodium refuses low-order points (an all-zero result). */
	return crypto_scalarmult(out, priv, pub) == 0 ? 0 : HW_EAUTH;
}

int hw_noise_public_key(const uint8_t priv[HW_NOISE_DHLEN],
			uint8_t pub[HW_NOISE_DHLEN])
{
	return crypto_scalarmult_base(pub, priv) == 0 ? 0 : HW_ECRYPTO;
}

/* ---- HandshakeState ---- */

static int is_initiator(const struct hw_noise_hs *hs)
{
	return hs->role == HW_NOISE_INITIATOR;
}

static enum hw_noise_state next_state(const struct hw_noise_hs *hs)
{
	int initiator_turn;

	if (hs->msg_index >= hs->def->nmessages)
		return HW_NOISE_SPLIT;
	initiator_turn = hs->msg_index % 2 == 0;
	return initiator_turn == is_initiator(hs) ? HW_NOISE_WRITE
						  : HW_NOISE_READ;
}

static void wipe_secrets(struct hw_noise_hs *hs)
{
	sodium_memzero(hs->ck, sizeof(hs->ck));
	sodium_memzero(hs->s_priv, sizeof(hs->s_priv));
	sodium_memzero(hs->e_priv, sizeof(hs->e_priv));
	hw_cipher_free(hs->cs);
	hs->cs = NULL;
}

static int fail(struct hw_noise_hs *hs, int rc)
{
	wipe_secrets(hs);
	sodium_memzero(hs->h, sizeof(hs->h));
	hs->state = HW_NOISE_FAILED;
	return rc;
}

int hw_noise_hs_new(struct hw_noise_hs **out, enum hw_noise_pattern pattern,
		    enum hw_noise_role role, const uint8_t *prologue,
		    size_t prologue_len, const uint8_t *s_priv,
		    const uint8_t *rs)
{
	struct hw_noise_hs *hs = NULL;
	const struct pattern_def *def;
	int need_s, need_rs, rc = 0;
	size_t name_len;

	*out = NULL;
	if ((unsigned)pattern >= sizeof(patterns) / sizeof(patterns[0]))
		return -EINVAL;
	def = &patterns[pattern];
	if (role == HW_NOISE_INITIATOR) {
		need_s = def->initiator_has_s;
		need_rs = def->pre_responder_s;
	} else {
		need_s = def->responder_has_s;
		need_rs = def->pre_initiator_s;
	}
	if ((need_s && !s_priv) || (need_rs && !rs))
		return -EINVAL;
	if (sodium_init() < 0)
		return HW_ECRYPTO;

	hs = calloc(1, sizeof(*hs));
	if (!hs)
		return -ENOMEM;
	hs->cs = hw_cipher_new();
	if (!hs->cs) {
		rc = -ENOMEM;
		goto out;
	}
	hs->def = def;
	hs->role = role;
	if (need_s) {
		memcpy(hs->s_priv, s_priv, HW_NOISE_DHLEN);
		if ((rc = hw_noise_public_key(hs->s_priv, hs->s_pub)))
			goto out;
		hs->has_s = 1;
	}
	if (need_rs) {
		memcpy(hs->rs, rs, HW_NOISE_DHLEN);
		hs->has_rs = 1;
	}

	name_len = strlen(def->name);
	if (name_len <= HW_NOISE_HASHLEN)
		memcpy(hs->h, def->name, name_len); /* zero-padded by calloc */
	else
		hash2(hs->h, (const uint8_t *)def->name, name_len, NULL, 0);
	memcpy(hs->ck, hs->h, HW_NOISE_HASHLEN);
	mix_hash(hs, prologue, prologue_len);

	/* Pre-messages: the initiator's keys are hashed first. */
	if (def->pre_initiator_s)
		mix_hash(hs, is_initiator(hs) ? hs->s_pub : hs->rs,
			 HW_NOISE_DHLEN);
	if (def->pre_responder_s)
		mix_hash(hs, is_initiator(hs) ? hs->rs : hs->s_pub,
			 HW_NOISE_DHLEN);

	hs->state = next_state(hs);
	*out = hs;
	hs = NULL;
out:
	hw_noise_hs_free(hs);
	return rc;
}

void hw_noise_hs_free(struct hw_noise_hs *hs)
{
	if (!hs)
		return;
	wipe_secrets(hs);
	sodium_memzero(hs, sizeof(*hs));
	free(hs);
}

enum hw_noise_state hw_noise_hs_state(const struct hw_noise_hs *hs)
{
	return hs->state;
}

void hw_noise_hs_set_ephemeral_for_test(struct hw_noise_hs *hs,
					const uint8_t e_priv[HW_NOISE_DHLEN])
{
	memcpy(hs->e_priv, e_priv, HW_NOISE_DHLEN);
	hs->fixed_e = 1;
}

/* The DH for a token from our side's point of view. */
static int token_dh(struct hw_noise_hs *hs, enum token t)
{
	uint8_t out[HW_NOISE_DHLEN];
	const uint8_t *priv, *pub;
	int local_e, remote_e, rc;

	/* Token XY: the initiator's X key with the responder's Y key. */
	switch (t) {
	case T_EE: local_e = 1; remote_e = 1; break;
	case T_SS: local_e = 0; remote_e = 0; break;
	case T_ES:
		local_e = is_initiator(hs);
		remote_e = !is_initiator(hs);
		break;
	case T_SE:
		local_e = !is_initiator(hs);
		remote_e = is_initiator(hs);
		break;
	default:
		return HW_ESTATE;
	}
	if ((local_e ? !hs->has_e : !hs->has_s) ||
	    (remote_e ? !hs->has_re : !hs->has_rs))
		return HW_ESTATE;
	priv = local_e ? hs->e_priv : hs->s_priv;
	pub = remote_e ? hs->re : hs->rs;
	rc = dh(priv, pub, out);
	if (rc == 0)
		rc = mix_key(hs, out, sizeof(out));
	sodium_memzero(out, sizeof(out));
	return rc;
}

int hw_noise_hs_write(struct hw_noise_hs *hs, const uint8_t *payload,
		      size_t payload_len, uint8_t *out, size_t outcap,
		      size_t *outlen)
{
	const uint8_t *tokens;
	size_t pos = 0, n;
	int rc;

	if (hs->state != HW_NOISE_WRITE)
		return HW_ESTATE;
	if (outcap > HW_NOISE_MAX_MSG)
		outcap = HW_NOISE_MAX_MSG;
	tokens = hs->def->messages[hs->msg_index];
	for (int i = 0; i < MAX_TOKENS && tokens[i] != T_END; i++) {
		switch (tokens[i]) {
		case T_E:
			if (pos + HW_NOISE_DHLEN > outcap)
				return fail(hs, HW_ETOOBIG);
			if (!hs->fixed_e)
				randombytes_buf(hs->e_priv, HW_NOISE_DHLEN);
			if ((rc = hw_noise_public_key(hs->e_priv, hs->e_pub)))
				return fail(hs, rc);
			hs->has_e = 1;
			memcpy(out + pos, hs->e_pub, HW_NOISE_DHLEN);
			mix_hash(hs, hs->e_pub, HW_NOISE_DHLEN);
			pos += HW_NOISE_DHLEN;
			break;
		case T_S:
			if (pos + HW_NOISE_DHLEN + tag_len(hs) > outcap)
				return fail(hs, HW_ETOOBIG);
			rc = encrypt_and_hash(hs, hs->s_pub, HW_NOISE_DHLEN,
					      out + pos, &n);
			if (rc)
				return fail(hs, rc);
			pos += n;
			break;
		default:
			if ((rc = token_dh(hs, tokens[i])))
				return fail(hs, rc);
		}
	}
	if (payload_len > outcap - pos ||
	    payload_len + tag_len(hs) > outcap - pos)
		return fail(hs, HW_ETOOBIG);
	if ((rc = encrypt_and_hash(hs, payload, payload_len, out + pos, &n)))
		return fail(hs, rc);
	*outlen = pos + n;
	hs->msg_index++;
	hs->state = next_state(hs);
	return 0;
}

int hw_noise_hs_read(struct hw_noise_hs *hs, const uint8_t *msg,
		     size_t msg_len, uint8_t *payload, size_t cap,
		     size_t *payload_len)
{
	const uint8_t *tokens;
	size_t pos = 0, n, need;
	int rc;

	if (hs->state != HW_NOISE_READ)
		return HW_ESTATE;
	if (msg_len > HW_NOISE_MAX_MSG)
		return fail(hs, HW_ETOOBIG);
	tokens = hs->def->messages[hs->msg_index];
	for (int i = 0; i < MAX_TOKENS && tokens[i] != T_END; i++) {
		switch (tokens[i]) {
		case T_E:
			if (msg_len - pos < HW_NOISE_DHLEN)
				return fail(hs, HW_ESHORT);
			memcpy(hs->re, msg + pos, HW_NOISE_DHLEN);
			hs->has_re = 1;
			mix_hash(hs, hs->re, HW_NOISE_DHLEN);
			pos += HW_NOISE_DHLEN;
			break;
		case T_S:
			need = HW_NOISE_DHLEN + tag_len(hs);
			if (msg_len - pos < need)
				return fail(hs, HW_ESHORT);
			rc = decrypt_and_hash(hs, msg + pos, need, hs->rs, &n);
			if (rc)
				return fail(hs, rc);
			hs->has_rs = 1;
			pos += need;
			break;
		default:
			if ((rc = token_dh(hs, tokens[i])))
				return fail(hs, rc);
		}
	}
	need = msg_len - pos;
	if (need < tag_len(hs))
		return fail(hs, HW_ESHORT);
	if (need - tag_len(hs) > cap)
		return fail(hs, HW_ETOOBIG);
	/* Decrypt in place into the caller's buffer only after the tag
	 * checks: a failed decryption wipes what it wrote. */
	rc = decrypt_and_hash(hs, msg + pos, need, payload, payload_len);
	if (rc)
		return fail(hs, rc);
	hs->msg_index++;
	hs->state = next_state(hs);
	return 0;
}

int hw_noise_hs_split(struct hw_noise_hs *hs, struct hw_cipher **send,
		      struct hw_cipher **recv)
{
	uint8_t k1[HW_NOISE_HASHLEN], k2[HW_NOISE_HASHLEN];
	struct hw_cipher *c1 = NULL, *c2 = NULL;
	int rc = -ENOMEM;

	*send = *recv = NULL;
	if (hs->state != HW_NOISE_SPLIT)
		return HW_ESTATE;
	c1 = hw_cipher_new();
	c2 = hw_cipher_new();
	if (!c1 || !c2)
		goto out;
	hkdf2(hs->ck, NULL, 0, k1, k2);
	if ((rc = hw_cipher_set_key(c1, k1)) || (rc = hw_cipher_set_key(c2, k2)))
		goto out;
	hw_cipher_set_rekey_interval(c1, HW_CIPHER_REKEY_INTERVAL);
	hw_cipher_set_rekey_interval(c2, HW_CIPHER_REKEY_INTERVAL);
	if (is_initiator(hs)) {
		*send = c1;
		*recv = c2;
	} else {
		*send = c2;
		*recv = c1;
	}
	c1 = c2 = NULL;
	wipe_secrets(hs);
	hs->state = HW_NOISE_DONE;
out:
	sodium_memzero(k1, sizeof(k1));
	sodium_memzero(k2, sizeof(k2));
	hw_cipher_free(c1);
	hw_cipher_free(c2);
	return rc;
}

const uint8_t *hw_noise_hs_hash(const struct hw_noise_hs *hs)
{
	return hs->state == HW_NOISE_SPLIT || hs->state == HW_NOISE_DONE
		       ? hs->h
		       : NULL;
}

const uint8_t *hw_noise_hs_remote_static(const struct hw_noise_hs *hs)
{
	return hs->has_rs ? hs->rs : NULL;
}
