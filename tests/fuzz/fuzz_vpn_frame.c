/* The VPN loop's frames (src/apps/vpn/proto.c): what a server reads from
 * any allowed visor and a client from its server. The input is walked
 * frame by frame as hw_vpn_read_frames does, once with each point of the
 * conversation's allowed types; what parses must be consistent and build
 * back to the same bytes. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/apps/vpn/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct hw_vpn_frame *f, const uint8_t *at,
		  size_t used)
{
	uint8_t out[HW_VPN_HDR + HW_VPN_REASON_MAX];
	size_t n;

	if (used != HW_VPN_HDR + (size_t)f->len || f->body != at + HW_VPN_HDR)
		__builtin_trap();
	switch (f->type) {
	case HW_VPN_PACKET:
		if (f->len > HW_VPN_MTU ||
		    (f->family == 4 &&
		     (size_t)(f->body[2] << 8 | f->body[3]) != f->len) ||
		    (f->family == 6 &&
		     (size_t)(f->body[4] << 8 | f->body[5]) + 40 != f->len) ||
		    (f->family != 4 && f->family != 6))
			__builtin_trap();
		hw_vpn_ip_src(f->body, f->family);
		break;
	case HW_VPN_ASSIGN:
		n = hw_vpn_build_assign(out, &f->assign);
		if (n != used || memcmp(out, at, n))
			__builtin_trap();
		break;
	case HW_VPN_REFUSE:
	case HW_VPN_CLOSE:
		if (strlen(f->reason) != f->len)
			__builtin_trap();
		n = hw_vpn_build_reason(out, f->type, f->reason);
		if ((f->len && (n != used || memcmp(out, at, n))))
			__builtin_trap();
		break;
	default:
		__builtin_trap();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned masks[] = {HW_VPN_FIRST_FROM_SERVER,
					 HW_VPN_RUNNING, 0x1e};
	struct hw_vpn_frame f;
	char why[200];

	for (size_t m = 0; m < sizeof(masks) / sizeof(masks[0]); m++) {
		size_t off = 0, used;
		unsigned allowed = masks[m];
		int rc;

		while (off < size) {
			why[0] = '\0';
			rc = hw_vpn_parse(data + off, size - off, allowed, &f,
					  &used, why, sizeof(why));
			if (rc == -EAGAIN)
				break;
			if (rc) {
				if (rc != -EPROTO || !why[0] ||
				    strlen(why) >= sizeof(why))
					__builtin_trap();
				break;
			}
			if (used > size - off || !(allowed & HW_VPN_M(f.type)))
				__builtin_trap();
			check(&f, data + off, used);
			off += used;
			if (allowed == HW_VPN_FIRST_FROM_SERVER)
				allowed = HW_VPN_RUNNING;
		}
	}
	return 0;
}
