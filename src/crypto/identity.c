#include "crypto/identity.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/hex.h"

#define KEYFILE_HEADER "HOPWIRE ED25519 SECRET KEY\n"
#define KEYFILE_HEADER_LEN (sizeof(KEYFILE_HEADER) - 1)
#define KEYFILE_LEN (KEYFILE_HEADER_LEN + 2 * HW_SEED_LEN + 1)

int hw_identity_from_seed(struct hw_identity *id,
			  const uint8_t seed[HW_SEED_LEN])
{
	if (sodium_init() < 0)
		return HW_ECRYPTO;
	if (crypto_sign_ed25519_seed_keypair(id->pk, id->sk, seed) != 0)
		return HW_ECRYPTO;
	return 0;
}

int hw_identity_generate(struct hw_identity *id)
{
	uint8_t seed[HW_SEED_LEN];
	int rc;

	if (sodium_init() < 0)
		return HW_ECRYPTO;
	randombytes_buf(seed, sizeof(seed));
	rc = hw_identity_from_seed(id, seed);
	sodium_memzero(seed, sizeof(seed));
	return rc;
}

void hw_identity_wipe(struct hw_identity *id)
{
	sodium_memzero(id, sizeof(*id));
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int hw_identity_save(const struct hw_identity *id, const char *path,
		     int force)
{
	char text[KEYFILE_LEN + 1];
	int fd, rc;

	memcpy(text, KEYFILE_HEADER, KEYFILE_HEADER_LEN);
	hw_hex_encode(id->sk, HW_SEED_LEN, text + KEYFILE_HEADER_LEN);
	text[KEYFILE_LEN - 1] = '\n';

	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
				(force ? O_TRUNC : O_EXCL),
		  0600);
	if (fd < 0) {
		rc = errno == EEXIST ? HW_EKEYEXISTS : -errno;
		goto out;
	}
	/* An overwritten file keeps its old mode unless we set it. */
	rc = fchmod(fd, 0600) < 0 ? -errno : 0;
	if (rc == 0)
		rc = write_all(fd, text, KEYFILE_LEN);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
out:
	sodium_memzero(text, sizeof(text));
	return rc;
}

int hw_identity_load(struct hw_identity *id, const char *path)
{
	/* One byte more than a key file, to tell a longer file apart. */
	char text[KEYFILE_LEN + 2];
	uint8_t seed[HW_SEED_LEN];
	struct stat st;
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = HW_EKEYFORMAT;
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		rc = HW_EKEYPERM;
		goto out;
	}
	while (len < sizeof(text)) {
		ssize_t n = read(fd, text + len, sizeof(text) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}

	rc = HW_EKEYFORMAT;
	if (len == 0)
		rc = HW_EKEYTRUNC;
	else if (memcmp(text, KEYFILE_HEADER,
			len < KEYFILE_HEADER_LEN ? len : KEYFILE_HEADER_LEN))
		rc = HW_EKEYFORMAT;
	else if (len < KEYFILE_LEN - 1)
		rc = HW_EKEYTRUNC;
	else if (len > KEYFILE_LEN ||
		 (len == KEYFILE_LEN && text[KEYFILE_LEN - 1] != '\n'))
		rc = HW_EKEYFORMAT;
	else if (hw_hex_decode(text + KEYFILE_HEADER_LEN, 2 * HW_SEED_LEN,
			       seed, sizeof(seed)) == 0)
		rc = hw_identity_from_seed(id, seed);
out:
	close(fd);
	sodium_memzero(text, sizeof(text));
	sodium_memzero(seed, sizeof(seed));
	return rc;
}

int hw_identity_x25519(const struct hw_identity *id, uint8_t priv[32],
		       uint8_t pub[32])
{
	if (crypto_sign_ed25519_sk_to_curve25519(priv, id->sk) != 0 ||
	    crypto_sign_ed25519_pk_to_curve25519(pub, id->pk) != 0)
		return HW_ECRYPTO;
	return 0;
}

int hw_pk_to_x25519(const uint8_t pk[HW_PK_LEN], uint8_t x25519_pub[32])
{
	if (sodium_init() < 0)
		return HW_ECRYPTO;
	return crypto_sign_ed25519_pk_to_curve25519(x25519_pub, pk) == 0
		       ? 0
		       : HW_EBADKEY;
}

int hw_pk_parse(const char *str, size_t len, uint8_t pk[HW_PK_LEN])
{
	uint8_t x[32];
	int rc = hw_hex_decode(str, len, pk, HW_PK_LEN);
	if (rc)
		return rc;
	return hw_pk_to_x25519(pk, x);
}

void hw_pk_format(const uint8_t pk[HW_PK_LEN], char out[HW_PK_HEXLEN + 1])
{
	hw_hex_encode(pk, HW_PK_LEN, out);
}

void hw_identity_sign(const struct hw_identity *id, const uint8_t *msg,
		      size_t len, uint8_t sig[HW_SIG_LEN])
{
	crypto_sign_ed25519_detached(sig, NULL, msg, len, id->sk);
}

int hw_sig_verify(const uint8_t pk[HW_PK_LEN], const uint8_t *msg,
		  size_t len, const uint8_t sig[HW_SIG_LEN])
{
	return crypto_sign_ed25519_verify_detached(sig, msg, len, pk) == 0
		       ? 0
		       : HW_EAUTH;
}
