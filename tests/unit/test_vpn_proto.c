/* The VPN loop's frames (src/apps/vpn/proto.c, compiled into this test:
 * apps are not part of hwcore), and the MTU arithmetic proto.h promises
 * against the transport and route-group constants. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "crypto/cipher.h"
#include "e2e/rgroup.h"
#include "wire/packet.h"
#include "wire/record.h"
#include "../../src/apps/vpn/proto.h"

#define ALL (HW_VPN_M(HW_VPN_ASSIGN) | HW_VPN_M(HW_VPN_REFUSE) | \
	     HW_VPN_M(HW_VPN_PACKET) | HW_VPN_M(HW_VPN_CLOSE))

static uint8_t frame[HW_VPN_FRAME_MAX + 16];
static char why[256];

static int parse(const uint8_t *p, size_t n, unsigned allowed,
		 struct hw_vpn_frame *f, size_t *used)
{
	why[0] = '\0';
	return hw_vpn_parse(p, n, allowed, f, used, why, sizeof(why));
}

/* Parses p[0..n) expecting -EPROTO with a reason containing want. */
static void refused(const uint8_t *p, size_t n, unsigned allowed,
		    const char *want)
{
	struct hw_vpn_frame f;
	size_t used = 12345;

	assert_int_equal(parse(p, n, allowed, &f, &used), -EPROTO);
	assert_int_equal(used, 12345);
	if (!strstr(why, want))
		fail_msg("reason '%s' does not say '%s'", why, want);
}

/* Every proper prefix of the frame p[0..n) is -EAGAIN. */
static void partial(const uint8_t *p, size_t n, unsigned allowed)
{
	struct hw_vpn_frame f;
	size_t used;

	for (size_t k = 0; k < n; k++)
		assert_int_equal(parse(p, k, allowed, &f, &used), -EAGAIN);
}

static struct hw_vpn_assign sample_assign(int v6)
{
	struct hw_vpn_assign a = {
		.mtu = HW_VPN_MTU,
		.addr4 = {10, 44, 0, 2},
		.prefix4 = 24,
		.server4 = {10, 44, 0, 1},
	};

	if (v6) {
		static const uint8_t net[16] = {0xfd, 0x44};

		a.prefix6 = 64;
		memcpy(a.addr6, net, 16);
		memcpy(a.server6, net, 16);
		a.addr6[15] = 2;
		a.server6[15] = 1;
	}
	return a;
}

/* An IPv4 packet of len bytes (len >= 20) from src to dst. */
static size_t ip4(uint8_t *p, size_t len, const uint8_t src[4],
		  const uint8_t dst[4])
{
	memset(p, 0xab, len);
	p[0] = 0x45;
	p[1] = 0;
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	p[9] = 17;
	memcpy(p + 12, src, 4);
	memcpy(p + 16, dst, 4);
	return len;
}

/* An IPv6 packet of len bytes (len >= 40). */
static size_t ip6(uint8_t *p, size_t len, const uint8_t src[16],
		  const uint8_t dst[16])
{
	memset(p, 0xcd, len);
	p[0] = 0x60;
	p[1] = p[2] = p[3] = 0;
	p[4] = (uint8_t)((len - 40) >> 8);
	p[5] = (uint8_t)(len - 40);
	p[6] = 17;
	p[7] = 64;
	memcpy(p + 8, src, 16);
	memcpy(p + 24, dst, 16);
	return len;
}

/* A PACKET frame around the packet of len bytes already at frame + 3. */
static size_t packet_frame(size_t len)
{
	hw_vpn_put_hdr(frame, HW_VPN_PACKET, (uint16_t)len);
	return HW_VPN_HDR + len;
}

static void test_mtu_arithmetic(void **state)
{
	(void)state;
	/* A frame fills the stream bytes of one route-group DATA packet... */
	assert_int_equal(HW_VPN_HDR, 3);
	assert_int_equal(HW_VPN_FRAME_MAX, HW_VPN_HDR + HW_VPN_MTU);
	assert_int_equal(HW_VPN_MTU + HW_VPN_HDR, HW_RGROUP_MAX_PLAINTEXT);
	/* ...which, sealed, is one packet payload; the packet header and
	 * the transport's tag make one whole record. */
	assert_int_equal(HW_RGROUP_MAX_PLAINTEXT + HW_CIPHER_TAGLEN,
			 HW_PACKET_MAX_PAYLOAD);
	assert_int_equal(HW_PACKET_MAX_PAYLOAD + HW_PACKET_HDR,
			 HW_RECORD_MAX_PLAINTEXT);
	assert_int_equal(HW_RECORD_MAX_PLAINTEXT + HW_CIPHER_TAGLEN,
			 HW_RECORD_MAX);
	assert_int_equal(HW_VPN_MTU + HW_VPN_HDR + HW_CIPHER_TAGLEN +
			 HW_PACKET_HDR + HW_CIPHER_TAGLEN, HW_RECORD_MAX);
	/* The frame length field holds the largest packet. */
	assert_true(HW_VPN_MTU <= 0xffff);
	assert_true(HW_VPN_MTU_MIN <= HW_VPN_MTU);
	assert_true(HW_VPN_ASSIGN_LEN <= HW_VPN_REASON_MAX);
}

static void test_assign_round_trip(void **state)
{
	uint8_t out[HW_VPN_HDR + HW_VPN_ASSIGN_LEN];
	struct hw_vpn_frame f;
	size_t n, used;

	(void)state;
	for (int v6 = 0; v6 <= 1; v6++) {
		struct hw_vpn_assign a = sample_assign(v6);

		n = hw_vpn_build_assign(out, &a);
		assert_int_equal(n, HW_VPN_HDR + HW_VPN_ASSIGN_LEN);
		assert_int_equal(out[0], HW_VPN_ASSIGN);
		assert_int_equal(out[1] << 8 | out[2], HW_VPN_ASSIGN_LEN);
		assert_int_equal(out[3], HW_VPN_VERSION);
		partial(out, n, HW_VPN_FIRST_FROM_SERVER);
		assert_int_equal(parse(out, n, HW_VPN_FIRST_FROM_SERVER, &f,
				       &used), 0);
		assert_int_equal(used, n);
		assert_int_equal(f.type, HW_VPN_ASSIGN);
		assert_int_equal(f.len, HW_VPN_ASSIGN_LEN);
		assert_ptr_equal(f.body, out + HW_VPN_HDR);
		assert_memory_equal(&f.assign, &a, sizeof(a));
		/* Bytes after the frame are not its. */
		memcpy(frame, out, n);
		memset(frame + n, 0xff, 5);
		assert_int_equal(parse(frame, n + 5, HW_VPN_FIRST_FROM_SERVER,
				       &f, &used), 0);
		assert_int_equal(used, n);
	}
}

/* Builds a with change applied and expects -EPROTO saying want. */
static void bad_assign(const struct hw_vpn_assign *a, const char *want)
{
	uint8_t out[HW_VPN_HDR + HW_VPN_ASSIGN_LEN];
	size_t n = hw_vpn_build_assign(out, a);

	refused(out, n, HW_VPN_FIRST_FROM_SERVER, want);
}

static void test_assign_fields(void **state)
{
	uint8_t out[HW_VPN_HDR + HW_VPN_ASSIGN_LEN + 1];
	struct hw_vpn_assign a;
	struct hw_vpn_frame f;
	size_t n, used;

	(void)state;
	/* MTU: the edges pass, one past them does not. */
	a = sample_assign(0);
	a.mtu = HW_VPN_MTU_MIN;
	n = hw_vpn_build_assign(out, &a);
	assert_int_equal(parse(out, n, ALL, &f, &used), 0);
	assert_int_equal(f.assign.mtu, HW_VPN_MTU_MIN);
	a.mtu = HW_VPN_MTU_MIN - 1;
	bad_assign(&a, "MTU 1279");
	a.mtu = HW_VPN_MTU + 1;
	bad_assign(&a, "MTU 65494");
	a.mtu = 0;
	bad_assign(&a, "MTU 0");

	/* IPv4 prefix 8..30. */
	for (int p = 0; p <= 32; p++) {
		a = sample_assign(0);
		a.prefix4 = (uint8_t)p;
		n = hw_vpn_build_assign(out, &a);
		assert_int_equal(parse(out, n, ALL, &f, &used),
				 p >= 8 && p <= 30 ? 0 : -EPROTO);
	}
	a.prefix4 = 31;
	bad_assign(&a, "IPv4 prefix /31");
	/* The client is not given the server's address. */
	a = sample_assign(0);
	memcpy(a.addr4, a.server4, 4);
	bad_assign(&a, "server's own address");

	/* IPv6 prefix 0 (none) or 64..126. */
	for (int p = 0; p <= 128; p++) {
		a = sample_assign(1);
		a.prefix6 = (uint8_t)p;
		if (!p) {
			memset(a.addr6, 0, 16);
			memset(a.server6, 0, 16);
		}
		n = hw_vpn_build_assign(out, &a);
		assert_int_equal(parse(out, n, ALL, &f, &used),
				 !p || (p >= 64 && p <= 126) ? 0 : -EPROTO);
	}
	a = sample_assign(1);
	a.prefix6 = 63;
	bad_assign(&a, "bad IPv6 part (prefix /63)");
	a.prefix6 = 127;
	bad_assign(&a, "prefix /127");
	a = sample_assign(1);
	memcpy(a.addr6, a.server6, 16);
	bad_assign(&a, "bad IPv6 part");
	a = sample_assign(1);
	memset(a.addr6, 0, 16);
	bad_assign(&a, "bad IPv6 part");
	/* Prefix 0 with addresses is a contradiction. */
	a = sample_assign(1);
	a.prefix6 = 0;
	bad_assign(&a, "IPv6 addresses but prefix 0");
	a = sample_assign(0);
	a.server6[3] = 1;
	bad_assign(&a, "IPv6 addresses but prefix 0");

	/* Another version, another length. */
	a = sample_assign(0);
	n = hw_vpn_build_assign(out, &a);
	out[3] = HW_VPN_VERSION + 1;
	refused(out, n, ALL, "version 2");
	n = hw_vpn_build_assign(out, &a);
	hw_vpn_put_hdr(out, HW_VPN_ASSIGN, HW_VPN_ASSIGN_LEN - 1);
	refused(out, n - 1, ALL, "ASSIGN of 44 bytes");
	n = hw_vpn_build_assign(out, &a);
	out[n] = 0;
	hw_vpn_put_hdr(out, HW_VPN_ASSIGN, HW_VPN_ASSIGN_LEN + 1);
	refused(out, n + 1, ALL, "ASSIGN of 46 bytes");
	hw_vpn_put_hdr(out, HW_VPN_ASSIGN, 0);
	refused(out, HW_VPN_HDR, ALL, "ASSIGN of 0 bytes");
	/* Longer than any control frame: refused from the header alone. */
	hw_vpn_put_hdr(out, HW_VPN_ASSIGN, 256);
	refused(out, HW_VPN_HDR, ALL, "ASSIGN frame of 256 bytes");
}

static void test_reasons(void **state)
{
	uint8_t out[HW_VPN_HDR + HW_VPN_REASON_MAX];
	char longer[400], want[HW_VPN_REASON_MAX + 1];
	struct hw_vpn_frame f;
	size_t n, used;

	(void)state;
	for (int t = HW_VPN_REFUSE; t <= HW_VPN_CLOSE; t += 2) {
		n = hw_vpn_build_reason(out, (uint8_t)t, "not in the allow "
					"list");
		assert_int_equal(n, HW_VPN_HDR + 21);
		assert_int_equal(out[0], t);
		partial(out, n, ALL);
		assert_int_equal(parse(out, n, ALL, &f, &used), 0);
		assert_int_equal(used, n);
		assert_int_equal(f.type, t);
		assert_int_equal(f.len, 21);
		assert_string_equal(f.reason, "not in the allow list");

		/* Control characters become '?'; UTF-8 stays. */
		n = hw_vpn_build_reason(out, (uint8_t)t, "a\nb\tc\x7f"
					"d\x01 \xc3\xa9");
		assert_int_equal(parse(out, n, ALL, &f, &used), 0);
		assert_string_equal(f.reason, "a?b?c?d? \xc3\xa9");

		/* Cut at 255 bytes. */
		memset(longer, 'x', sizeof(longer) - 1);
		longer[sizeof(longer) - 1] = '\0';
		n = hw_vpn_build_reason(out, (uint8_t)t, longer);
		assert_int_equal(n, HW_VPN_HDR + HW_VPN_REASON_MAX);
		assert_int_equal(parse(out, n, ALL, &f, &used), 0);
		memset(want, 'x', HW_VPN_REASON_MAX);
		want[HW_VPN_REASON_MAX] = '\0';
		assert_string_equal(f.reason, want);
		assert_int_equal(strlen(f.reason), HW_VPN_REASON_MAX);

		/* 256 bytes on the wire: refused from the header. */
		hw_vpn_put_hdr(out, (uint8_t)t, 256);
		refused(out, HW_VPN_HDR, ALL, "frame of 256 bytes");
		hw_vpn_put_hdr(out, (uint8_t)t, 0xffff);
		refused(out, HW_VPN_HDR, ALL, "frame of 65535 bytes");

		/* A control character on the wire. */
		n = hw_vpn_build_reason(out, (uint8_t)t, "abc");
		out[HW_VPN_HDR + 1] = '\n';
		refused(out, n, ALL, "control character 0x0a at byte 1");
		out[HW_VPN_HDR + 1] = 0x7f;
		refused(out, n, ALL, "control character 0x7f");
		out[HW_VPN_HDR + 1] = 0;
		refused(out, n, ALL, "control character 0x00");
	}
	/* An empty CLOSE is fine; an empty REFUSE is built as "?" and
	 * refused on the wire. */
	n = hw_vpn_build_reason(out, HW_VPN_CLOSE, "");
	assert_int_equal(n, HW_VPN_HDR);
	assert_int_equal(parse(out, n, ALL, &f, &used), 0);
	assert_int_equal(used, HW_VPN_HDR);
	assert_string_equal(f.reason, "");
	n = hw_vpn_build_reason(out, HW_VPN_REFUSE, "");
	assert_int_equal(n, HW_VPN_HDR + 1);
	assert_int_equal(parse(out, n, ALL, &f, &used), 0);
	assert_string_equal(f.reason, "?");
	hw_vpn_put_hdr(out, HW_VPN_REFUSE, 0);
	refused(out, HW_VPN_HDR, ALL, "REFUSE reason of 0 bytes");
}

static void test_packet_ipv4(void **state)
{
	static const uint8_t src[4] = {10, 44, 0, 2}, dst[4] = {1, 2, 3, 4};
	uint8_t *pkt = frame + HW_VPN_HDR;
	struct hw_vpn_frame f;
	size_t n, used;
	const size_t sizes[] = {20, 21, 60, 1280, 1500, HW_VPN_MTU};

	(void)state;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		n = packet_frame(ip4(pkt, sizes[k], src, dst));
		assert_int_equal(parse(frame, n, HW_VPN_RUNNING, &f, &used),
				 0);
		assert_int_equal(used, n);
		assert_int_equal(f.type, HW_VPN_PACKET);
		assert_int_equal(f.len, sizes[k]);
		assert_int_equal(f.family, 4);
		assert_ptr_equal(f.body, pkt);
		assert_memory_equal(hw_vpn_ip_src(f.body, 4), src, 4);
		assert_memory_equal(hw_vpn_ip_dst(f.body, 4), dst, 4);
	}
	n = packet_frame(ip4(pkt, 100, src, dst));
	partial(frame, n, HW_VPN_RUNNING);
	/* Options: a header of 60 bytes in a packet of 60 passes, one of
	 * 64 bytes in it does not. */
	n = packet_frame(ip4(pkt, 60, src, dst));
	pkt[0] = 0x4f;
	assert_int_equal(parse(frame, n, HW_VPN_RUNNING, &f, &used), 0);
	n = packet_frame(ip4(pkt, 40, src, dst));
	pkt[0] = 0x4f;
	refused(frame, n, HW_VPN_RUNNING, "IPv4 PACKET of 40 bytes with a "
		"header of 60");
	/* IHL below 5. */
	n = packet_frame(ip4(pkt, 40, src, dst));
	pkt[0] = 0x44;
	refused(frame, n, HW_VPN_RUNNING, "header of 16");
	/* Too short for a header. */
	n = packet_frame(ip4(pkt, 20, src, dst) - 1);
	pkt[3] = 19;
	refused(frame, n, HW_VPN_RUNNING, "IPv4 PACKET of 19 bytes");
	n = packet_frame(1);
	pkt[0] = 0x45;
	refused(frame, n, HW_VPN_RUNNING, "IPv4 PACKET of 1 bytes");
	/* Total length one off either way. */
	n = packet_frame(ip4(pkt, 100, src, dst));
	pkt[3] = 99;
	refused(frame, n, HW_VPN_RUNNING, "IPv4 PACKET of 100 bytes says "
		"it has 99");
	pkt[3] = 101;
	refused(frame, n, HW_VPN_RUNNING, "says it has 101");
	pkt[2] = 1;
	pkt[3] = 100;
	refused(frame, n, HW_VPN_RUNNING, "says it has 356");
	/* Versions other than 4 and 6, and nothing at all. */
	for (int v = 0; v < 16; v++) {
		char want[32];

		if (v == 4 || v == 6)
			continue;
		n = packet_frame(ip4(pkt, 60, src, dst));
		pkt[0] = (uint8_t)(v << 4 | 5);
		snprintf(want, sizeof(want), "PACKET of IP version %d", v);
		refused(frame, n, HW_VPN_RUNNING, want);
	}
	n = packet_frame(0);
	refused(frame, n, HW_VPN_RUNNING, "empty PACKET");
}

static void test_packet_ipv6(void **state)
{
	static const uint8_t src[16] = {0xfd, 0x44, [15] = 2};
	static const uint8_t dst[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 9};
	uint8_t *pkt = frame + HW_VPN_HDR;
	struct hw_vpn_frame f;
	size_t n, used;
	const size_t sizes[] = {40, 41, 1280, 9000, HW_VPN_MTU};

	(void)state;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		n = packet_frame(ip6(pkt, sizes[k], src, dst));
		assert_int_equal(parse(frame, n, HW_VPN_RUNNING, &f, &used),
				 0);
		assert_int_equal(used, n);
		assert_int_equal(f.len, sizes[k]);
		assert_int_equal(f.family, 6);
		assert_memory_equal(hw_vpn_ip_src(f.body, 6), src, 16);
		assert_memory_equal(hw_vpn_ip_dst(f.body, 6), dst, 16);
	}
	n = packet_frame(ip6(pkt, 80, src, dst));
	partial(frame, n, HW_VPN_RUNNING);
	/* Payload length one off either way, too short. */
	pkt[5] = 39;
	refused(frame, n, HW_VPN_RUNNING, "IPv6 PACKET of 80 bytes says it "
		"has 79");
	pkt[5] = 41;
	refused(frame, n, HW_VPN_RUNNING, "says it has 81");
	pkt[4] = 0xff;
	pkt[5] = 0xff;
	refused(frame, n, HW_VPN_RUNNING, "says it has 65575");
	n = packet_frame(ip6(pkt, 40, src, dst) - 1);
	refused(frame, n, HW_VPN_RUNNING, "IPv6 PACKET of 39 bytes");
}

static void test_oversize(void **state)
{
	uint8_t *pkt = frame + HW_VPN_HDR;
	static const uint8_t a4[4];

	(void)state;
	/* Over the MTU: refused from the header, before the body came. */
	hw_vpn_put_hdr(frame, HW_VPN_PACKET, HW_VPN_MTU + 1);
	refused(frame, HW_VPN_HDR, HW_VPN_RUNNING, "PACKET of 65494 bytes, "
		"over the MTU");
	hw_vpn_put_hdr(frame, HW_VPN_PACKET, 0xffff);
	refused(frame, HW_VPN_HDR, HW_VPN_RUNNING, "PACKET of 65535 bytes");
	/* With the whole body there too. */
	ip4(pkt, HW_VPN_MTU + 1, a4, a4);
	hw_vpn_put_hdr(frame, HW_VPN_PACKET, HW_VPN_MTU + 1);
	refused(frame, HW_VPN_HDR + HW_VPN_MTU + 1, HW_VPN_RUNNING,
		"over the MTU");
}

static void test_types_and_masks(void **state)
{
	uint8_t out[HW_VPN_HDR + HW_VPN_REASON_MAX];
	struct hw_vpn_assign a = sample_assign(0);
	static const uint8_t src[4] = {10, 44, 0, 2};
	struct hw_vpn_frame f;
	char tb[16];
	size_t n, used;

	(void)state;
	/* A PACKET before ASSIGN. */
	n = packet_frame(ip4(frame + HW_VPN_HDR, 20, src, src));
	refused(frame, n, HW_VPN_FIRST_FROM_SERVER, "unexpected PACKET "
		"frame (20 bytes)");
	/* Refused from the header alone, before the body. */
	refused(frame, HW_VPN_HDR, HW_VPN_FIRST_FROM_SERVER,
		"unexpected PACKET");
	assert_int_equal(parse(frame, n, HW_VPN_RUNNING, &f, &used), 0);
	/* An ASSIGN or REFUSE while running. */
	n = hw_vpn_build_assign(out, &a);
	refused(out, n, HW_VPN_RUNNING, "unexpected ASSIGN");
	n = hw_vpn_build_reason(out, HW_VPN_REFUSE, "no");
	refused(out, n, HW_VPN_RUNNING, "unexpected REFUSE");
	/* CLOSE is accepted at both points, and nothing with mask 0. */
	n = hw_vpn_build_reason(out, HW_VPN_CLOSE, "bye");
	assert_int_equal(parse(out, n, HW_VPN_RUNNING, &f, &used), 0);
	assert_int_equal(parse(out, n, HW_VPN_FIRST_FROM_SERVER, &f, &used),
			 0);
	refused(out, n, 0, "unexpected CLOSE");
	/* Each type alone. */
	for (int t = HW_VPN_ASSIGN; t <= HW_VPN_CLOSE; t++) {
		for (int m = HW_VPN_ASSIGN; m <= HW_VPN_CLOSE; m++) {
			uint8_t h[HW_VPN_HDR];
			int rc;

			hw_vpn_put_hdr(h, (uint8_t)t, 1);
			rc = parse(h, sizeof(h), HW_VPN_M(m), &f, &used);
			assert_int_equal(rc, t == m ? -EAGAIN : -EPROTO);
		}
	}
	/* Unknown types, whatever the mask (even bits set for them). */
	for (int t = 0; t < 256; t++) {
		uint8_t h[HW_VPN_HDR + 4] = {0};
		char want[40];

		if (t >= HW_VPN_ASSIGN && t <= HW_VPN_CLOSE)
			continue;
		hw_vpn_put_hdr(h, (uint8_t)t, 4);
		snprintf(want, sizeof(want), "unexpected type %d frame", t);
		refused(h, sizeof(h), ~0u, want);
		refused(h, HW_VPN_HDR, ~0u, want);
	}
	/* Fewer bytes than a header: -EAGAIN, whatever they are. */
	assert_int_equal(parse((const uint8_t *)"\x09\xff", 2, ALL, &f, &used),
			 -EAGAIN);
	assert_int_equal(parse(frame, 0, ALL, &f, &used), -EAGAIN);
	/* No room for the reason: still -EPROTO. */
	hw_vpn_put_hdr(out, 9, 0);
	assert_int_equal(hw_vpn_parse(out, HW_VPN_HDR, ALL, &f, &used, why,
				      0), -EPROTO);
	assert_string_equal(hw_vpn_type_name(HW_VPN_ASSIGN, tb), "ASSIGN");
	assert_string_equal(hw_vpn_type_name(HW_VPN_REFUSE, tb), "REFUSE");
	assert_string_equal(hw_vpn_type_name(HW_VPN_PACKET, tb), "PACKET");
	assert_string_equal(hw_vpn_type_name(HW_VPN_CLOSE, tb), "CLOSE");
	assert_string_equal(hw_vpn_type_name(0, tb), "type 0");
	assert_string_equal(hw_vpn_type_name(255, tb), "type 255");
}

/* Frames back to back: each parse takes exactly one. */
static void test_stream(void **state)
{
	static const uint8_t s[4] = {10, 44, 0, 2}, d[4] = {8, 8, 8, 8};
	static const uint8_t s6[16] = {0xfd, 0x44, [15] = 2}, d6[16] = {1};
	struct hw_vpn_assign a = sample_assign(1);
	struct hw_vpn_frame f;
	size_t off = 0, used, n = 0;
	const uint8_t types[] = {HW_VPN_ASSIGN, HW_VPN_PACKET, HW_VPN_PACKET,
				 HW_VPN_CLOSE};
	uint8_t *buf = malloc(4096);

	(void)state;
	assert_non_null(buf);
	n += hw_vpn_build_assign(buf + n, &a);
	hw_vpn_put_hdr(buf + n, HW_VPN_PACKET, 60);
	n += HW_VPN_HDR + ip4(buf + n + HW_VPN_HDR, 60, s, d);
	hw_vpn_put_hdr(buf + n, HW_VPN_PACKET, 48);
	n += HW_VPN_HDR + ip6(buf + n + HW_VPN_HDR, 48, s6, d6);
	n += hw_vpn_build_reason(buf + n, HW_VPN_CLOSE, "done");
	for (size_t k = 0; k < sizeof(types); k++) {
		unsigned m = k ? HW_VPN_RUNNING : HW_VPN_FIRST_FROM_SERVER;

		assert_int_equal(parse(buf + off, n - off, m, &f, &used), 0);
		assert_int_equal(f.type, types[k]);
		assert_int_equal(used, HW_VPN_HDR + f.len);
		off += used;
	}
	assert_int_equal(off, n);
	assert_int_equal(f.type, HW_VPN_CLOSE);
	assert_string_equal(f.reason, "done");
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mtu_arithmetic),
		cmocka_unit_test(test_assign_round_trip),
		cmocka_unit_test(test_assign_fields),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_packet_ipv4),
		cmocka_unit_test(test_packet_ipv6),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_types_and_masks),
		cmocka_unit_test(test_stream),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
