/* The VPN loop's frames (proto.h, docs/vpn.md "Protocol"). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

static int fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (whylen)
		vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return -EPROTO;
}

const char *hw_vpn_type_name(uint8_t type, char buf[16])
{
	static const char *const names[] = {
		[HW_VPN_ASSIGN] = "ASSIGN", [HW_VPN_REFUSE] = "REFUSE",
		[HW_VPN_PACKET] = "PACKET", [HW_VPN_CLOSE] = "CLOSE",
	};

	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	snprintf(buf, 16, "type %u", type);
	return buf;
}

static int get_reason(const uint8_t *b, size_t len, int may_be_empty,
		      char *out, char *why, size_t whylen, const char *what)
{
	if (len > HW_VPN_REASON_MAX || (!len && !may_be_empty))
		return fail(why, whylen, "%s reason of %zu bytes (1..255)",
			    what, len);
	for (size_t i = 0; i < len; i++)
		if (b[i] < 0x20 || b[i] == 0x7f)
			return fail(why, whylen, "%s reason has control "
				    "character 0x%02x at byte %zu", what,
				    b[i], i);
	memcpy(out, b, len);
	out[len] = '\0';
	return 0;
}

/* 1 when the 16 bytes are all zero. */
static int zero16(const uint8_t *a)
{
	uint8_t z = 0;

	for (int i = 0; i < 16; i++)
		z |= a[i];
	return !z;
}

static int get_assign(const uint8_t *b, size_t len, struct hw_vpn_assign *a,
		      char *why, size_t whylen)
{
	if (len != HW_VPN_ASSIGN_LEN)
		return fail(why, whylen, "ASSIGN of %zu bytes (%d)", len,
			    HW_VPN_ASSIGN_LEN);
	if (b[0] != HW_VPN_VERSION)
		return fail(why, whylen, "ASSIGN of version %u (this client "
			    "speaks %d)", b[0], HW_VPN_VERSION);
	a->mtu = (uint16_t)(b[1] << 8 | b[2]);
	memcpy(a->addr4, b + 3, 4);
	a->prefix4 = b[7];
	memcpy(a->server4, b + 8, 4);
	a->prefix6 = b[12];
	memcpy(a->addr6, b + 13, 16);
	memcpy(a->server6, b + 29, 16);
	if (a->mtu < HW_VPN_MTU_MIN || a->mtu > HW_VPN_MTU)
		return fail(why, whylen, "ASSIGN with MTU %u (%d..%d)", a->mtu,
			    HW_VPN_MTU_MIN, HW_VPN_MTU);
	if (a->prefix4 < 8 || a->prefix4 > 30)
		return fail(why, whylen, "ASSIGN with IPv4 prefix /%u "
			    "(8..30)", a->prefix4);
	if (!memcmp(a->addr4, a->server4, 4))
		return fail(why, whylen, "ASSIGN gives the server's own "
			    "address");
	if (a->prefix6 &&
	    (a->prefix6 < 64 || a->prefix6 > 126 ||
	     !memcmp(a->addr6, a->server6, 16) || zero16(a->addr6)))
		return fail(why, whylen, "ASSIGN with a bad IPv6 part "
			    "(prefix /%u)", a->prefix6);
	if (!a->prefix6 && (!zero16(a->addr6) || !zero16(a->server6)))
		return fail(why, whylen, "ASSIGN with IPv6 addresses but "
			    "prefix 0");
	return 0;
}

static int get_packet(const uint8_t *b, size_t len, int *family,
		      char *why, size_t whylen)
{
	size_t ihl, total;

	if (len > HW_VPN_MTU)
		return fail(why, whylen, "PACKET of %zu bytes, over the MTU "
			    "(%d)", len, HW_VPN_MTU);
	if (len < 1)
		return fail(why, whylen, "empty PACKET");
	switch (b[0] >> 4) {
	case 4:
		ihl = (size_t)(b[0] & 15) * 4;
		if (len < 20 || ihl < 20 || ihl > len)
			return fail(why, whylen, "IPv4 PACKET of %zu bytes "
				    "with a header of %zu", len, ihl);
		total = (size_t)b[2] << 8 | b[3];
		if (total != len)
			return fail(why, whylen, "IPv4 PACKET of %zu bytes "
				    "says it has %zu", len, total);
		*family = 4;
		return 0;
	case 6:
		if (len < 40)
			return fail(why, whylen, "IPv6 PACKET of %zu bytes",
				    len);
		total = ((size_t)b[4] << 8 | b[5]) + 40;
		if (total != len)
			return fail(why, whylen, "IPv6 PACKET of %zu bytes "
				    "says it has %zu", len, total);
		*family = 6;
		return 0;
	default:
		return fail(why, whylen, "PACKET of IP version %u", b[0] >> 4);
	}
}

int hw_vpn_parse(const uint8_t *p, size_t n, unsigned allowed,
		 struct hw_vpn_frame *f, size_t *used, char *why,
		 size_t whylen)
{
	char tb[16];
	size_t len;
	uint8_t t;

	if (n < HW_VPN_HDR)
		return -EAGAIN;
	t = p[0];
	len = (size_t)p[1] << 8 | p[2];
	if (t < HW_VPN_ASSIGN || t > HW_VPN_CLOSE ||
	    !(allowed & HW_VPN_M(t)))
		return fail(why, whylen, "unexpected %s frame (%zu bytes)",
			    hw_vpn_type_name(t, tb), len);
	/* Checked before waiting for the body: a reader never buffers
	 * more than one frame's worth for nothing. */
	if (t == HW_VPN_PACKET && len > HW_VPN_MTU)
		return fail(why, whylen, "PACKET of %zu bytes, over the MTU "
			    "(%d)", len, HW_VPN_MTU);
	if (t != HW_VPN_PACKET && len > HW_VPN_REASON_MAX)
		return fail(why, whylen, "%s frame of %zu bytes (at most %d)",
			    hw_vpn_type_name(t, tb), len, HW_VPN_REASON_MAX);
	if (n - HW_VPN_HDR < len)
		return -EAGAIN;
	f->type = t;
	f->len = (uint16_t)len;
	f->body = p + HW_VPN_HDR;
	f->family = 0;
	f->reason[0] = '\0';
	switch (t) {
	case HW_VPN_ASSIGN:
		if (get_assign(f->body, len, &f->assign, why, whylen))
			return -EPROTO;
		break;
	case HW_VPN_REFUSE:
	case HW_VPN_CLOSE:
		if (get_reason(f->body, len, t == HW_VPN_CLOSE, f->reason, why,
			       whylen, hw_vpn_type_name(t, tb)))
			return -EPROTO;
		break;
	default:
		if (get_packet(f->body, len, &f->family, why, whylen))
			return -EPROTO;
	}
	*used = HW_VPN_HDR + len;
	return 0;
}

void hw_vpn_put_hdr(uint8_t out[HW_VPN_HDR], uint8_t type, uint16_t len)
{
	out[0] = type;
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)len;
}

size_t hw_vpn_build_assign(uint8_t out[HW_VPN_HDR + HW_VPN_ASSIGN_LEN],
			   const struct hw_vpn_assign *a)
{
	uint8_t *b = out + HW_VPN_HDR;

	hw_vpn_put_hdr(out, HW_VPN_ASSIGN, HW_VPN_ASSIGN_LEN);
	b[0] = HW_VPN_VERSION;
	b[1] = (uint8_t)(a->mtu >> 8);
	b[2] = (uint8_t)a->mtu;
	memcpy(b + 3, a->addr4, 4);
	b[7] = a->prefix4;
	memcpy(b + 8, a->server4, 4);
	b[12] = a->prefix6;
	memcpy(b + 13, a->addr6, 16);
	memcpy(b + 29, a->server6, 16);
	return HW_VPN_HDR + HW_VPN_ASSIGN_LEN;
}

size_t hw_vpn_build_reason(uint8_t out[HW_VPN_HDR + HW_VPN_REASON_MAX],
			   uint8_t type, const char *reason)
{
	size_t n = strnlen(reason, HW_VPN_REASON_MAX);

	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)reason[i];

		out[HW_VPN_HDR + i] = c < 0x20 || c == 0x7f ? '?' : c;
	}
	if (!n && type == HW_VPN_REFUSE)
		out[HW_VPN_HDR + n++] = '?';
	hw_vpn_put_hdr(out, type, (uint16_t)n);
	return HW_VPN_HDR + n;
}

const uint8_t *hw_vpn_ip_src(const uint8_t *pkt, int family)
{
	return pkt + (family == 4 ? 12 : 8);
}

const uint8_t *hw_vpn_ip_dst(const uint8_t *pkt, int family)
{
	return pkt + (family == 4 ? 16 : 24);
}
