/* Numbers from the command line: whole decimals in a range and byte
 * counts with a binary unit. Strict: only digits (then the unit), no sign,
 * no spaces, nothing after; the programs name the flag and the range in
 * their own error messages. */
#ifndef HW_UTIL_PARSE_H
#define HW_UTIL_PARSE_H

/* Parses s, a whole decimal number in lo..hi. Returns 0 and *out, -EINVAL
 * when s is not digits only (empty, a sign, trailing characters), or
 * -ERANGE when the number is outside lo..hi (also when it overflows).
 * *out is left alone on failure. */
int hw_parse_uint(const char *s, unsigned long long lo, unsigned long long hi,
		  unsigned long long *out);

/* Parses s, a byte count: digits and an optional unit, K, k or KiB (2^10),
 * M, m or MiB (2^20), G, g or GiB (2^30), in lo..hi bytes. Returns 0 and
 * *out, -EINVAL when s is not that, or -ERANGE when the count is outside
 * lo..hi (also when it overflows). *out is left alone on failure. */
int hw_parse_bytes(const char *s, unsigned long long lo, unsigned long long hi,
		   unsigned long long *out);

#endif
