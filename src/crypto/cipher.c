#include "crypto/cipher.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

struct hw_cipher {
	/* Made at the first AEAD operation: OpenSSL's context is most of a
	 * cipher state's memory, and many sessions (idle route groups) never
	 * encrypt anything. */
	EVP_CIPHER_CTX *ctx;
	uint8_t k[HW_CIPHER_KEYLEN];
	uint64_t n;
	uint64_t rekey_interval;
	int has_key;
};

struct hw_cipher *hw_cipher_new(void)
{
	return calloc(1, sizeof(struct hw_cipher));
}

void hw_cipher_free(struct hw_cipher *c)
{
	if (!c)
		return;
	EVP_CIPHER_CTX_free(c->ctx);
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
}

int hw_cipher_set_key(struct hw_cipher *c, const uint8_t k[HW_CIPHER_KEYLEN])
{
	if (k != c->k)
		memcpy(c->k, k, HW_CIPHER_KEYLEN);
	c->n = 0;
	c->has_key = 0;
	if (c->ctx && EVP_CipherInit_ex(c->ctx, EVP_chacha20_poly1305(), NULL,
					c->k, NULL, 1) != 1)
		return HW_ECRYPTO;
	c->has_key = 1;
	return 0;
}

static int ensure_ctx(struct hw_cipher *c)
{
	if (c->ctx)
		return 0;
	if (!(c->ctx = EVP_CIPHER_CTX_new()))
		return -ENOMEM;
	if (EVP_CipherInit_ex(c->ctx, EVP_chacha20_poly1305(), NULL, c->k,
			      NULL, 1) != 1) {
		EVP_CIPHER_CTX_free(c->ctx);
		c->ctx = NULL;
		return HW_ECRYPTO;
	}
	return 0;
}

int hw_cipher_has_key(const struct hw_cipher *c)
{
	return c->has_key;
}

void hw_cipher_set_rekey_interval(struct hw_cipher *c, uint64_t interval)
{
	c->rekey_interval = interval;
}

uint64_t hw_cipher_nonce(const struct hw_cipher *c)
{
	return c->n;
}

void hw_cipher_set_nonce_for_test(struct hw_cipher *c, uint64_t n)
{
	c->n = n;
}

static void nonce_bytes(uint64_t n, uint8_t iv[12])
{
	memset(iv, 0, 4);
	for (int i = 0; i < 8; i++)
		iv[4 + i] = (uint8_t)(n >> (8 * i));
}

/* One AEAD operation at nonce n, without touching the counter. */
static int aead(struct hw_cipher *c, int enc, uint64_t n, const uint8_t *ad,
		size_t adlen, const uint8_t *in, size_t inlen, uint8_t *out,
		uint8_t tag[HW_CIPHER_TAGLEN])
{
	uint8_t iv[12];
	int len, rc;

	if (inlen > INT32_MAX || adlen > INT32_MAX)
		return HW_ETOOBIG;
	if ((rc = ensure_ctx(c)))
		return rc;
	nonce_bytes(n, iv);
	if (EVP_CipherInit_ex(c->ctx, NULL, NULL, NULL, iv, enc) != 1)
		return HW_ECRYPTO;
	if (!enc && EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_SET_TAG,
					HW_CIPHER_TAGLEN, tag) != 1)
		return HW_ECRYPTO;
	if (adlen && EVP_CipherUpdate(c->ctx, NULL, &len, ad, (int)adlen) != 1)
		return HW_ECRYPTO;
	if (inlen && EVP_CipherUpdate(c->ctx, out, &len, in, (int)inlen) != 1)
		return HW_ECRYPTO;
	if (EVP_CipherFinal_ex(c->ctx, out + inlen, &len) != 1)
		return enc ? HW_ECRYPTO : HW_EAUTH;
	if (enc && EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_GET_TAG,
				       HW_CIPHER_TAGLEN, tag) != 1)
		return HW_ECRYPTO;
	return 0;
}

static int advance(struct hw_cipher *c)
{
	c->n++;
	if (c->rekey_interval && c->n % c->rekey_interval == 0 &&
	    c->n != HW_CIPHER_NONCE_LIMIT)
		return hw_cipher_rekey(c);
	return 0;
}

int hw_cipher_encrypt(struct hw_cipher *c, const uint8_t *ad, size_t adlen,
		      const uint8_t *pt, size_t ptlen, uint8_t *out,
		      size_t *outlen)
{
	int rc;

	if (!c->has_key) {
		if (out != pt)
			memmove(out, pt, ptlen);
		*outlen = ptlen;
		return 0;
	}
	if (c->n >= HW_CIPHER_NONCE_LIMIT)
		return HW_ENONCE;
	rc = aead(c, 1, c->n, ad, adlen, pt, ptlen, out, out + ptlen);
	if (rc)
		return rc;
	*outlen = ptlen + HW_CIPHER_TAGLEN;
	return advance(c);
}

int hw_cipher_decrypt(struct hw_cipher *c, const uint8_t *ad, size_t adlen,
		      const uint8_t *ct, size_t ctlen, uint8_t *out,
		      size_t *outlen)
{
	uint8_t tag[HW_CIPHER_TAGLEN];
	size_t ptlen;
	int rc;

	if (!c->has_key) {
		if (out != ct)
			memmove(out, ct, ctlen);
		*outlen = ctlen;
		return 0;
	}
	if (ctlen < HW_CIPHER_TAGLEN)
		return HW_ESHORT;
	if (c->n >= HW_CIPHER_NONCE_LIMIT)
		return HW_ENONCE;
	ptlen = ctlen - HW_CIPHER_TAGLEN;
	/* The tag is copied out first: with out == ct the plaintext would
	 * overwrite nothing of it, but a caller may pass overlapping
	 * buffers shifted by a few bytes. */
	memcpy(tag, ct + ptlen, HW_CIPHER_TAGLEN);
	rc = aead(c, 0, c->n, ad, adlen, ct, ptlen, out, tag);
	if (rc) {
		OPENSSL_cleanse(out, ptlen);
		return rc;
	}
	*outlen = ptlen;
	return advance(c);
}

int hw_cipher_rekey(struct hw_cipher *c)
{
	uint8_t zeros[HW_CIPHER_KEYLEN] = {0};
	uint8_t newk[HW_CIPHER_KEYLEN];
	uint8_t tag[HW_CIPHER_TAGLEN];
	uint64_t n = c->n;
	int rc;

	if (!c->has_key)
		return HW_ESTATE;
	rc = aead(c, 1, UINT64_MAX, NULL, 0, zeros, sizeof(zeros), newk, tag);
	if (rc == 0)
		rc = hw_cipher_set_key(c, newk);
	c->n = n;
	OPENSSL_cleanse(newk, sizeof(newk));
	return rc;
}
