#include "util/err.h"

#include <string.h>

static const char *const hw_messages[] = {
	[HW_EHEXLEN - HW_EBASE] = "hex string has the wrong length",
	[HW_EHEXCHAR - HW_EBASE] = "hex string has a character that is not hex",
	[HW_EBADKEY - HW_EBASE] = "not a valid public key",
	[HW_EKEYPERM - HW_EBASE] =
		"key file is readable by group or others (run: chmod 600 FILE)",
	[HW_EKEYTRUNC - HW_EBASE] = "key file is truncated",
	[HW_EKEYFORMAT - HW_EBASE] = "not a Hopwire key file",
	[HW_EKEYEXISTS - HW_EBASE] =
		"key file already exists (use --force to overwrite)",
	[HW_ESTATE - HW_EBASE] = "operation not valid in this state",
	[HW_ESHORT - HW_EBASE] = "message too short",
	[HW_ETOOBIG - HW_EBASE] = "message too long",
	[HW_EAUTH - HW_EBASE] = "authentication failed",
	[HW_ENONCE - HW_EBASE] = "nonce space exhausted",
	[HW_EPROTO - HW_EBASE] = "protocol violation",
	[HW_ECLOSED - HW_EBASE] = "connection closed by peer",
	[HW_ECRYPTO - HW_EBASE] = "crypto library failure",
};

const char *hw_strerror(int code)
{
	if (code == 0)
		return "success";
	if (code > HW_EBASE && code < HW_ELAST) {
		const char *m = hw_messages[code - HW_EBASE];
		return m ? m : "unknown error";
	}
	if (code < 0 && code > -4096) /* the errno range */
		return strerror(-code);
	return "unknown error";
}
