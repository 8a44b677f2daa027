/* Hex encoding of keys and IDs (lowercase out, either case in). */
#ifndef HW_UTIL_HEX_H
#define HW_UTIL_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*len lowercase hex characters and a NUL to out (size 2*len+1). */
void hw_hex_encode(const uint8_t *in, size_t len, char *out);

/* Decodes exactly 2*outlen hex characters from str (length slen) into out.
 * Returns 0, HW_EHEXLEN when slen != 2*outlen, HW_EHEXCHAR on a character
 * that is not hex. out is left unspecified on error. */
int hw_hex_decode(const char *str, size_t slen, uint8_t *out, size_t outlen);

#endif
