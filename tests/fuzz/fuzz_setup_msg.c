/* Fuzzes the setup message decoder: the input is one SETUP packet's
 * payload. A message that decodes must encode back to exactly the same
 * bytes (one encoding per message, so a peer cannot smuggle meaning into
 * alternative forms); a failure must still report the header when there
 * is one. The paths of a decoded BUILD go through the path check. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/setup_msg.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hw_setup_msg m;
	static uint8_t again[HW_SETUP_MSG_MAX];
	char err[HW_SETUP_TEXT_MAX + 1];
	size_t len = 0;
	int rc;

	rc = hw_setup_msg_decode(data, size, &m);
	if (rc != 0) {
		if (rc != HW_EPROTO)
			abort();
		if (size >= HW_SETUP_HDR &&
		    (m.type != data[0] ||
		     m.req != ((uint32_t)data[1] << 24 |
			       (uint32_t)data[2] << 16 |
			       (uint32_t)data[3] << 8 | data[4])))
			abort();
		return 0;
	}
	if (size > HW_SETUP_MSG_MAX)
		abort();
	if (hw_setup_msg_encode(&m, again, sizeof(again), &len) != 0 ||
	    len != size || memcmp(again, data, size) != 0)
		abort();
	if (m.type == HW_SETUP_BUILD) {
		hw_setup_path_check(m.u.build.fwd, m.u.build.fwd_n,
				    m.u.build.desc.src_pk,
				    m.u.build.desc.dst_pk, err, sizeof(err));
		hw_setup_path_check(m.u.build.rev, m.u.build.rev_n,
				    m.u.build.desc.dst_pk,
				    m.u.build.desc.src_pk, err, sizeof(err));
	}
	return 0;
}
