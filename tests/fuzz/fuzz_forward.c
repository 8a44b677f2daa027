/* hopwire-forward's stream header (src/apps/forward/proto.c): the open
 * request a server reads from any visor, and the answer a client reads;
 * what parses builds back to the same bytes. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/apps/forward/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_fwd_request r;
	struct hw_fwd_answer a;
	uint8_t out[HW_FWD_ANSWER_MAX];
	size_t used = 0, n;

	if (hw_fwd_parse_request(data, size, &r, &used) == 0) {
		if (used > size || used > HW_FWD_REQUEST_MAX ||
		    !hw_fwd_name_ok(r.name))
			__builtin_trap();
		n = hw_fwd_build_request(out, &r);
		if (n != used || memcmp(out, data, n))
			__builtin_trap();
	}
	if (hw_fwd_parse_answer(data, size, &a, &used) == 0) {
		if (used > size || used > HW_FWD_ANSWER_MAX ||
		    a.status > HW_FWD_BUSY)
			__builtin_trap();
		n = hw_fwd_build_answer(out, a.status, a.service_port, a.msg);
		if (n != used || memcmp(out, data, n))
			__builtin_trap();
	}
	return 0;
}
