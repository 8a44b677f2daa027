/* The stream socket's request line (src/visor/stream_req.c): whatever a
 * local client sends first, within the line limit streams.c keeps. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "visor/stream_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_stream_req r;
	char err[300];
	int rc;

	if (size >= HW_STREAM_REQ_MAX)
		return 0;
	err[0] = 0;
	rc = hw_stream_req_parse((const char *)data, size, &r, err,
				 sizeof(err));
	if (rc == 0) {
		if (r.op != HW_STREAM_LISTEN && r.op != HW_STREAM_DIAL)
			__builtin_trap();
		if (r.port == 0 || r.nvia >= HW_SETUP_HOPS_MAX ||
		    r.send > HW_STREAM_TEST_MAX_BYTES)
			__builtin_trap();
	} else if (!err[0] || strlen(err) >= sizeof(err) ||
		   r.nvia >= HW_SETUP_HOPS_MAX) {
		__builtin_trap();
	}
	return 0;
}
