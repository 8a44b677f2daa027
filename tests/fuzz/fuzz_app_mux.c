/* Fuzzes the mux's frame decoder (src/sdk/muxframe.c): the input is a
 * loop's byte stream. Every frame it cuts must lie inside the input, have
 * the length its type allows, and come out the same when its header is
 * written again; a refusal must say why. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdk/muxframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_mux_frame f;
	char err[128];
	size_t off = 0, used;
	uint8_t hdr[HW_MUX_HDR];
	int rc;

	err[0] = '\0';
	while ((rc = hw_mux_frame_next(data + off, size - off, &f, &used, err,
				       sizeof(err))) == 1) {
		if (used != HW_MUX_HDR + (size_t)f.len || used > size - off ||
		    f.payload != data + off + HW_MUX_HDR ||
		    f.type > HW_MUX_RESET ||
		    (f.type == HW_MUX_DATA &&
		     (!f.len || f.len > HW_MUX_DATA_MAX)) ||
		    ((f.type == HW_MUX_HELLO) != (f.stream == 0)))
			abort();
		hw_mux_frame_hdr(hdr, f.type, f.stream, f.len);
		if (memcmp(hdr, data + off, HW_MUX_HDR))
			abort();
		off += used;
	}
	if (rc == -EPROTO && !err[0])
		abort();
	if (rc == 0 && size - off >= HW_MUX_HDR + HW_MUX_DATA_MAX)
		abort();
	return 0;
}
