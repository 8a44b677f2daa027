#include "util/hex.h"

#include "util/err.h"

void hw_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hw_hex_decode(const char *str, size_t slen, uint8_t *out, size_t outlen)
{
	if (slen != 2 * outlen)
		return HW_EHEXLEN;
	for (size_t i = 0; i < outlen; i++) {
		int hi = hex_value(str[2 * i]);
		int lo = hex_value(str[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return HW_EHEXCHAR;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
