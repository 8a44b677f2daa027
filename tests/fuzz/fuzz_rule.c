/* Fuzzes the rule decoder: whatever it accepts must be a rule the
 * contract allows and must encode back to exactly the input bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/router.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_rule r;
	uint8_t out[HW_RULE_ENC_LEN];
	int rc = hw_rule_decode(data, size, &r);

	if (rc != 0) {
		if (rc != HW_EPROTO)
			abort();
		return 0;
	}
	if (size != HW_RULE_ENC_LEN || r.id == 0 ||
	    r.keepalive_ms < HW_RULE_KEEPALIVE_MIN_MS ||
	    r.keepalive_ms > HW_RULE_KEEPALIVE_MAX_MS)
		abort();
	switch (r.kind) {
	case HW_RULE_CONSUME:
		if (zero(r.prev_tp, HW_TP_ID_LEN) || r.next_id != 0 ||
		    !zero(r.next_tp, HW_TP_ID_LEN) || !r.desc.src_port ||
		    !r.desc.dst_port)
			abort();
		break;
	case HW_RULE_FORWARD:
		if (!zero(r.prev_tp, HW_TP_ID_LEN) || r.next_id == 0 ||
		    zero(r.next_tp, HW_TP_ID_LEN) || !r.desc.src_port ||
		    !r.desc.dst_port)
			abort();
		break;
	case HW_RULE_INTERMEDIARY:
		if (zero(r.prev_tp, HW_TP_ID_LEN) || r.next_id == 0 ||
		    zero(r.next_tp, HW_TP_ID_LEN) || r.desc.src_port ||
		    r.desc.dst_port ||
		    !zero(r.desc.src_pk, HW_PK_LEN) ||
		    !zero(r.desc.dst_pk, HW_PK_LEN))
			abort();
		break;
	default:
		abort();
	}
	hw_rule_encode(&r, out);
	if (memcmp(out, data, HW_RULE_ENC_LEN) != 0)
		abort();
	return 0;
}
