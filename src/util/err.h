/* Error codes shared by every Hopwire module.
 *
 * Functions return 0 on success and a negative code on failure: either a
 * negated errno value (-ENOMEM, -EINVAL, ...) or one of the HW_E* codes
 * below, which sit outside the errno range. hw_strerror() names both. */
#ifndef HW_UTIL_ERR_H
#define HW_UTIL_ERR_H

#include <errno.h>

enum {
	HW_EBASE = -10000,
	HW_EHEXLEN,     /* hex string has the wrong length */
	HW_EHEXCHAR,    /* hex string has a non-hex character */
	HW_EBADKEY,     /* not a valid Ed25519 / X25519 public key */
	HW_EKEYPERM,    /* key file readable by group or others */
	HW_EKEYTRUNC,   /* key file truncated */
	HW_EKEYFORMAT,  /* not a Hopwire key file */
	HW_EKEYEXISTS,  /* key file exists and overwriting was not asked */
	HW_ESTATE,      /* operation not valid in the current state */
	HW_ESHORT,      /* message too short */
	HW_ETOOBIG,     /* message or buffer too long */
	HW_EAUTH,       /* authentication failed (AEAD tag, bad DH) */
	HW_ENONCE,      /* nonce space exhausted: the session must end */
	HW_EPROTO,      /* peer broke the protocol */
	HW_ECLOSED,     /* peer closed the connection */
	HW_ECRYPTO,     /* crypto library failure */
	HW_ELAST
};

/* Returns a static, human-readable description of code (0 or negative). */
const char *hw_strerror(int code);

#endif
