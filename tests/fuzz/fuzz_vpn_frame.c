/* Fuzzes the VPN loop's frame decoder (src/apps/vpn/proto.c): the input
 * is a loop's byte stream, walked as hw_vpn_read_frames walks it, once
 * as a client reads a server (ASSIGN first, then packets) and once with
 * each fixed mask. Every frame handed out must lie inside the input and
 * satisfy what proto.h promises; control frames must rebuild to the
 * same bytes; every refusal must come with a NUL-terminated reason. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/apps/vpn/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void check_frame(const uint8_t *p, size_t n, unsigned mask,
			const struct hw_vpn_frame *f, size_t used)
{
	uint8_t out[HW_VPN_HDR + HW_VPN_REASON_MAX];
	const uint8_t *b = f->body;
	size_t len = f->len, k;

	if (used > n || used != HW_VPN_HDR + len || b != p + HW_VPN_HDR)
		abort();
	if (f->type < HW_VPN_ASSIGN || f->type > HW_VPN_CLOSE ||
	    !(mask & HW_VPN_M(f->type)) || f->type != p[0] ||
	    len != ((size_t)p[1] << 8 | p[2]))
		abort();
	for (k = 0; k < len; k++)
		sink ^= b[k];
	switch (f->type) {
	case HW_VPN_ASSIGN:
		if (len != HW_VPN_ASSIGN_LEN || f->assign.mtu < HW_VPN_MTU_MIN ||
		    f->assign.mtu > HW_VPN_MTU || f->assign.prefix4 < 8 ||
		    f->assign.prefix4 > 30 ||
		    (f->assign.prefix6 && (f->assign.prefix6 < 64 ||
					   f->assign.prefix6 > 126)))
			abort();
		if (hw_vpn_build_assign(out, &f->assign) != used ||
		    memcmp(out, p, used))
			abort();
		break;
	case HW_VPN_REFUSE:
	case HW_VPN_CLOSE:
		if (strlen(f->reason) != len ||
		    (f->type == HW_VPN_REFUSE && !len))
			abort();
		for (k = 0; k < len; k++)
			if ((uint8_t)f->reason[k] < 0x20 ||
			    f->reason[k] == 0x7f)
				abort();
		if (hw_vpn_build_reason(out, f->type, f->reason) != used ||
		    memcmp(out, p, used))
			abort();
		break;
	case HW_VPN_PACKET:
		if (len > HW_VPN_MTU)
			abort();
		if (f->family == 4) {
			if (len < 20 || b[0] >> 4 != 4 ||
			    (size_t)(b[0] & 15) * 4 < 20 ||
			    (size_t)(b[0] & 15) * 4 > len ||
			    ((size_t)b[2] << 8 | b[3]) != len)
				abort();
			if (hw_vpn_ip_src(b, 4) + 4 > b + len ||
			    hw_vpn_ip_dst(b, 4) + 4 > b + len)
				abort();
		} else if (f->family == 6) {
			if (len < 40 || b[0] >> 4 != 6 ||
			    ((size_t)b[4] << 8 | b[5]) + 40 != len)
				abort();
			if (hw_vpn_ip_src(b, 6) + 16 > b + len ||
			    hw_vpn_ip_dst(b, 6) + 16 > b + len)
				abort();
		} else {
			abort();
		}
		sink ^= hw_vpn_ip_src(b, f->family)[0] ^
			hw_vpn_ip_dst(b, f->family)[0];
		break;
	}
}

/* Walks data with mask, or as a client (first frame from the server,
 * then running) when conversation is set. */
static void walk(const uint8_t *data, size_t size, unsigned mask,
		 int conversation, size_t whylen)
{
	struct hw_vpn_frame f;
	char why[300];
	size_t off = 0, used;
	int rc;

	if (conversation)
		mask = HW_VPN_FIRST_FROM_SERVER;
	while (off < size) {
		memset(why, 'x', sizeof(why));
		used = (size_t)-1;
		rc = hw_vpn_parse(data + off, size - off, mask, &f, &used,
				  why, whylen);
		if (rc == -EAGAIN) {
			/* Only an incomplete frame may wait. */
			if (size - off >= HW_VPN_HDR &&
			    size - off >= HW_VPN_HDR +
			    ((size_t)data[off + 1] << 8 | data[off + 2]))
				abort();
			return;
		}
		if (rc == -EPROTO) {
			/* A sentence, NUL-terminated within whylen, and
			 * nothing written past it. */
			if (whylen && (!memchr(why, '\0', whylen) || !why[0]))
				abort();
			for (size_t k = whylen; k < sizeof(why); k++)
				if (why[k] != 'x')
					abort();
			return;
		}
		if (rc)
			abort();
		check_frame(data + off, size - off, mask, &f, used);
		off += used;
		if (conversation && f.type == HW_VPN_ASSIGN)
			mask = HW_VPN_RUNNING;
		if (conversation && f.type != HW_VPN_PACKET &&
		    mask == HW_VPN_FIRST_FROM_SERVER)
			return; /* a REFUSE or CLOSE ends it */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned masks[] = {
		HW_VPN_FIRST_FROM_SERVER, HW_VPN_RUNNING,
		HW_VPN_FIRST_FROM_SERVER | HW_VPN_RUNNING, 0, ~0u,
	};

	walk(data, size, 0, 1, 256);
	for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++)
		walk(data, size, masks[i], 0, 256);
	/* Reasons cut to a small buffer, and no buffer at all. */
	walk(data, size, ~0u, 0, 8);
	walk(data, size, ~0u, 0, 0);
	return 0;
}
