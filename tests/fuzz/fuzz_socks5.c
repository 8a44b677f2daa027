/* The SOCKS5 request parser of the exit (src/apps/socks/socks5.c), with
 * the greeting and RFC 1929 parsers on the same bytes. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/apps/socks/socks5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_s5_greeting g;
	struct hw_s5_request r;
	struct hw_s5_auth a;
	uint8_t out[HW_S5_REQUEST_MAX];
	size_t used = 0;

	if (hw_s5_parse_request(data, size, &r, &used) == 0) {
		size_t n;

		if (used > size || used > HW_S5_REQUEST_MAX)
			__builtin_trap();
		/* What parsed builds back to the same bytes. */
		n = hw_s5_build_request(out, &r);
		if (n != used || memcmp(out + 4, data + 4, n - 4) ||
		    out[1] != data[1])
			__builtin_trap();
	}
	if (hw_s5_parse_greeting(data, size, &g, &used) == 0 &&
	    (used > size || g.nmethods == 0))
		__builtin_trap();
	if (hw_s5_parse_auth(data, size, &a, &used) == 0 &&
	    (used > size || !a.user[0] || !a.pass[0]))
		__builtin_trap();
	return 0;
}
