/* The VPN loop's frames and buffers (src/apps/vpn/proto.c, pump.c;
 * compiled into this test: apps are not part of hwcore), and the MTU
 * arithmetic of docs/vpn.md against the wire and route-group constants. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/apps/vpn/proto.h"
#include "../../src/apps/vpn/pump.h"
#include "crypto/cipher.h"
#include "wire/packet.h"
#include "wire/record.h"

static const unsigned ALL = HW_VPN_M(HW_VPN_ASSIGN) |
			    HW_VPN_M(HW_VPN_REFUSE) |
			    HW_VPN_M(HW_VPN_PACKET) | HW_VPN_M(HW_VPN_CLOSE);

/* A whole IPv4 packet of n bytes (n >= 20) from src to dst. */
static void ip4(uint8_t *p, size_t n, const uint8_t src[4],
		const uint8_t dst[4])
{
	memset(p, 0xab, n);
	p[0] = 0x45;
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
	memcpy(p + 12, src, 4);
	memcpy(p + 16, dst, 4);
}

static int parse(const uint8_t *p, size_t n, unsigned allowed,
		 struct hw_vpn_frame *f, size_t *used, char *why)
{
	return hw_vpn_parse(p, n, allowed, f, used, why, 200);
}

static void test_mtu_fits_one_data_packet(void **state)
{
	(void)state;
	/* A frame fills the stream bytes of one route-group DATA packet
	 * (its plaintext: the packet payload less the group's tag), and a
	 * packet fills one transport record. */
	assert_int_equal(HW_VPN_MTU + HW_VPN_HDR,
			 HW_PACKET_MAX_PAYLOAD - HW_CIPHER_TAGLEN);
	assert_int_equal(HW_PACKET_MAX_PAYLOAD + HW_PACKET_HDR +
				 HW_CIPHER_TAGLEN,
			 HW_RECORD_MAX);
	assert_int_equal(HW_VPN_MTU, 65493);
	assert_true(HW_VPN_IN_CAP >= HW_VPN_FRAME_MAX);
	assert_true(HW_VPN_OUT_CAP >= 2 * HW_VPN_FRAME_MAX);
}

static void test_assign_round_trip(void **state)
{
	struct hw_vpn_assign a = {.mtu = HW_VPN_MTU, .addr4 = {10, 44, 0, 2},
				  .prefix4 = 24, .server4 = {10, 44, 0, 1},
				  .prefix6 = 64};
	uint8_t out[HW_VPN_HDR + HW_VPN_ASSIGN_LEN], bad[sizeof(out)];
	struct hw_vpn_frame f;
	size_t n, used;
	char why[200];

	(void)state;
	a.addr6[0] = a.server6[0] = 0xfd;
	a.addr6[15] = 2;
	a.server6[15] = 1;
	n = hw_vpn_build_assign(out, &a);
	assert_int_equal(n, 48);
	assert_int_equal(out[0], HW_VPN_ASSIGN);
	assert_int_equal(out[1] << 8 | out[2], 45);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(parse(out, k, ALL, &f, &used, why), -EAGAIN);
	assert_int_equal(parse(out, n, HW_VPN_FIRST_FROM_SERVER, &f, &used,
			       why), 0);
	assert_int_equal(used, n);
	assert_memory_equal(&f.assign, &a, sizeof(a));
	/* Not allowed once running. */
	assert_int_equal(parse(out, n, HW_VPN_RUNNING, &f, &used, why),
			 -EPROTO);
	assert_non_null(strstr(why, "unexpected ASSIGN"));

	/* Each field out of range. */
	struct {
		size_t off;
		uint8_t v;
		const char *why;
	} cases[] = {
		{3, 2, "version 2"},          /* version */
		{4, 0x04, "MTU"},             /* MTU 1024 + low byte */
		{10, 7, "prefix /7"},
		{10, 31, "prefix /31"},
		{14, 2, "server's own"},      /* server4 = addr4 */
		{15, 63, "IPv6 part"},
		{15, 127, "IPv6 part"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(bad, out, n);
		bad[cases[i].off] = cases[i].v;
		if (cases[i].off == 4)
			bad[5] = 0;
		assert_int_equal(parse(bad, n, ALL, &f, &used, why), -EPROTO);
		assert_non_null(strstr(why, cases[i].why));
	}
	/* No IPv6 but addresses given; a wrong length. */
	a.prefix6 = 0;
	hw_vpn_build_assign(bad, &a);
	assert_int_equal(parse(bad, n, ALL, &f, &used, why), -EPROTO);
	memset(a.addr6, 0, 16);
	memset(a.server6, 0, 16);
	hw_vpn_build_assign(bad, &a);
	assert_int_equal(parse(bad, n, ALL, &f, &used, why), 0);
	assert_int_equal(f.assign.prefix6, 0);
	bad[2] = 44;
	assert_int_equal(parse(bad, n - 1, ALL, &f, &used, why), -EPROTO);
	assert_non_null(strstr(why, "ASSIGN of 44 bytes"));
}

static void test_reasons(void **state)
{
	uint8_t out[HW_VPN_HDR + HW_VPN_REASON_MAX];
	char big[400];
	struct hw_vpn_frame f;
	size_t n, used;
	char why[200];

	(void)state;
	n = hw_vpn_build_reason(out, HW_VPN_REFUSE, "not\tallowed\n");
	assert_int_equal(n, 3 + 12);
	assert_int_equal(parse(out, n, ALL, &f, &used, why), 0);
	assert_string_equal(f.reason, "not?allowed?");
	/* Cut at 255. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = hw_vpn_build_reason(out, HW_VPN_CLOSE, big);
	assert_int_equal(n, 3 + 255);
	assert_int_equal(parse(out, n, ALL, &f, &used, why), 0);
	assert_int_equal(strlen(f.reason), 255);
	/* An empty CLOSE is fine, an empty REFUSE gets '?'. */
	n = hw_vpn_build_reason(out, HW_VPN_CLOSE, "");
	assert_int_equal(n, 3);
	assert_int_equal(parse(out, n, ALL, &f, &used, why), 0);
	assert_string_equal(f.reason, "");
	n = hw_vpn_build_reason(out, HW_VPN_REFUSE, "");
	assert_int_equal(n, 4);
	/* From a peer: control characters, an empty REFUSE, over 255. */
	const uint8_t ctl[] = {HW_VPN_CLOSE, 0, 2, 'a', 0x7f};
	const uint8_t empty[] = {HW_VPN_REFUSE, 0, 0};
	const uint8_t longer[] = {HW_VPN_CLOSE, 1, 0};
	assert_int_equal(parse(ctl, sizeof(ctl), ALL, &f, &used, why),
			 -EPROTO);
	assert_non_null(strstr(why, "control character 0x7f"));
	assert_int_equal(parse(empty, sizeof(empty), ALL, &f, &used, why),
			 -EPROTO);
	/* Refused from the header alone, before the body arrives. */
	assert_int_equal(parse(longer, sizeof(longer), ALL, &f, &used, why),
			 -EPROTO);
	assert_non_null(strstr(why, "at most 255"));
}

static void test_packets(void **state)
{
	static uint8_t buf[HW_VPN_FRAME_MAX + 8];
	const uint8_t a[4] = {10, 44, 0, 2}, b[4] = {1, 2, 3, 4};
	struct hw_vpn_frame f;
	size_t used;
	char why[200];
	uint8_t *p = buf + HW_VPN_HDR;

	(void)state;
	/* IPv4 of 20 bytes and of the MTU. */
	ip4(p, 20, a, b);
	hw_vpn_put_hdr(buf, HW_VPN_PACKET, 20);
	assert_int_equal(parse(buf, 23, HW_VPN_RUNNING, &f, &used, why), 0);
	assert_int_equal(f.family, 4);
	assert_int_equal(used, 23);
	assert_memory_equal(hw_vpn_ip_src(f.body, 4), a, 4);
	assert_memory_equal(hw_vpn_ip_dst(f.body, 4), b, 4);
	ip4(p, HW_VPN_MTU, a, b);
	hw_vpn_put_hdr(buf, HW_VPN_PACKET, HW_VPN_MTU);
	assert_int_equal(parse(buf, HW_VPN_FRAME_MAX, HW_VPN_RUNNING, &f,
			       &used, why), 0);
	assert_int_equal(used, HW_VPN_FRAME_MAX);
	/* One over the MTU: refused from the header alone. */
	hw_vpn_put_hdr(buf, HW_VPN_PACKET, HW_VPN_MTU + 1);
	assert_int_equal(parse(buf, 3, HW_VPN_RUNNING, &f, &used, why),
			 -EPROTO);
	assert_non_null(strstr(why, "over the MTU"));
	/* Before ASSIGN. */
	ip4(p, 20, a, b);
	hw_vpn_put_hdr(buf, HW_VPN_PACKET, 20);
	assert_int_equal(parse(buf, 23, HW_VPN_FIRST_FROM_SERVER, &f, &used,
			       why), -EPROTO);
	/* Total length disagreeing, IHL too short or past the end. */
	p[3] = 21;
	assert_int_equal(parse(buf, 23, ALL, &f, &used, why), -EPROTO);
	assert_non_null(strstr(why, "says it has 21"));
	ip4(p, 20, a, b);
	p[0] = 0x44;
	assert_int_equal(parse(buf, 23, ALL, &f, &used, why), -EPROTO);
	p[0] = 0x46;
	assert_int_equal(parse(buf, 23, ALL, &f, &used, why), -EPROTO);
	/* Too short for IPv4, version 0, empty. */
	hw_vpn_put_hdr(buf, HW_VPN_PACKET, 19);
	p[0] = 0x45;
	assert_int_equal(parse(buf, 22, ALL, &f, &used, why), -EPROTO);
	p[0] = 0x05;
	assert_int_equal(parse(buf, 22, ALL, &f, &used, why), -EPROTO);
	assert_non_null(strstr(why, "IP version 0"));
	hw_vpn_put_hdr(buf, HW_VPN_PACKET, 0);
	assert_int_equal(parse(buf, 3, ALL, &f, &used, why), -EPROTO);
	/* IPv6: payload length + 40. */
	memset(p, 0, 48);
	p[0] = 0x60;
	p[5] = 8;
	p[8 + 15] = 2;   /* source ::2 */
	p[24 + 15] = 9;  /* destination ::9 */
	hw_vpn_put_hdr(buf, HW_VPN_PACKET, 48);
	assert_int_equal(parse(buf, 51, ALL, &f, &used, why), 0);
	assert_int_equal(f.family, 6);
	assert_int_equal(hw_vpn_ip_src(f.body, 6)[15], 2);
	assert_int_equal(hw_vpn_ip_dst(f.body, 6)[15], 9);
	p[5] = 9;
	assert_int_equal(parse(buf, 51, ALL, &f, &used, why), -EPROTO);
	hw_vpn_put_hdr(buf, HW_VPN_PACKET, 39);
	assert_int_equal(parse(buf, 42, ALL, &f, &used, why), -EPROTO);
}

static void test_unknown_types(void **state)
{
	struct hw_vpn_frame f;
	size_t used;
	char why[200], tb[16];

	(void)state;
	for (unsigned t = 0; t < 256; t++) {
		uint8_t fr[3] = {(uint8_t)t, 0, 0};

		if (t >= HW_VPN_ASSIGN && t <= HW_VPN_CLOSE)
			continue;
		assert_int_equal(parse(fr, 3, ALL, &f, &used, why), -EPROTO);
		assert_non_null(strstr(why, "unexpected type"));
	}
	assert_string_equal(hw_vpn_type_name(9, tb), "type 9");
	assert_string_equal(hw_vpn_type_name(HW_VPN_PACKET, tb), "PACKET");
}

static void test_buf_room(void **state)
{
	struct hw_vpn_buf b;

	(void)state;
	assert_int_equal(hw_vpn_buf_init(&b, 100), 0);
	assert_ptr_equal(hw_vpn_buf_room(&b, 100), b.p);
	assert_null(hw_vpn_buf_room(&b, 101));
	b.len = 80;
	assert_null(hw_vpn_buf_room(&b, 30));
	b.off = 60; /* 20 wait: moved to the front to make room */
	b.p[60] = 'x';
	assert_ptr_equal(hw_vpn_buf_room(&b, 30), b.p + 20);
	assert_int_equal(b.off, 0);
	assert_int_equal(b.len, 20);
	assert_int_equal(b.p[0], 'x');
	b.off = b.len; /* all written: starts over */
	assert_ptr_equal(hw_vpn_buf_room(&b, 100), b.p);
	hw_vpn_buf_free(&b);
	assert_null(b.p);
}

struct got {
	int n, packets;
	char reason[300];
};

static unsigned running(void *ud)
{
	(void)ud;
	return HW_VPN_RUNNING;
}

static int on_frame(const struct hw_vpn_frame *f, void *ud)
{
	struct got *g = ud;

	g->n++;
	if (f->type == HW_VPN_PACKET)
		g->packets++;
	else
		snprintf(g->reason, sizeof(g->reason), "%s", f->reason);
	return 0;
}

static void test_read_frames(void **state)
{
	static uint8_t stream[4 * 1024];
	const uint8_t a[4] = {10, 44, 0, 2}, b[4] = {8, 8, 8, 8};
	struct hw_vpn_buf in;
	struct got g = {0};
	size_t n = 0, cut;
	char why[200];
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	assert_int_equal(hw_vpn_buf_init(&in, HW_VPN_IN_CAP), 0);
	/* Three packets and a CLOSE, the last split across two reads. */
	for (int i = 0; i < 3; i++) {
		hw_vpn_put_hdr(stream + n, HW_VPN_PACKET, 100);
		ip4(stream + n + 3, 100, a, b);
		n += 103;
	}
	n += hw_vpn_build_reason(stream + n, HW_VPN_CLOSE, "bye");
	cut = n - 2;
	assert_int_equal(write(sv[1], stream, cut), (ssize_t)cut);
	assert_int_equal(hw_vpn_read_frames(sv[0], &in, running, on_frame, &g,
					    why, sizeof(why)), 0);
	assert_int_equal(g.n, 3);
	/* Nothing to read: still open. */
	assert_int_equal(hw_vpn_read_frames(sv[0], &in, running, on_frame, &g,
					    why, sizeof(why)), 0);
	assert_int_equal(write(sv[1], stream + cut, 2), 2);
	assert_int_equal(hw_vpn_read_frames(sv[0], &in, running, on_frame, &g,
					    why, sizeof(why)), 0);
	assert_int_equal(g.n, 4);
	assert_int_equal(g.packets, 3);
	assert_string_equal(g.reason, "bye");
	/* A malformed frame, then the end. */
	assert_int_equal(write(sv[1], "\x09\0\0", 3), 3);
	assert_int_equal(hw_vpn_read_frames(sv[0], &in, running, on_frame, &g,
					    why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "type 9"));
	close(sv[1]);
	in.off = in.len = 0;
	assert_int_equal(hw_vpn_read_frames(sv[0], &in, running, on_frame, &g,
					    why, sizeof(why)), -EPIPE);
	close(sv[0]);
	hw_vpn_buf_free(&in);
}

static void test_flush_partial(void **state)
{
	struct hw_vpn_buf out;
	static uint8_t sink[1 << 20];
	int sv[2], size = 4096, rc;
	size_t got = 0;
	ssize_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	assert_int_equal(hw_vpn_buf_init(&out, HW_VPN_OUT_CAP), 0);
	memset(out.p, 7, HW_VPN_OUT_CAP);
	out.len = HW_VPN_OUT_CAP;
	/* The socket takes part: 1 (poll for POLLOUT), the rest waits. */
	assert_int_equal(hw_vpn_buf_flush(&out, sv[0]), 1);
	assert_true(out.off > 0 && out.off < out.len);
	do {
		while ((n = read(sv[1], sink, sizeof(sink))) > 0)
			got += (size_t)n;
		rc = hw_vpn_buf_flush(&out, sv[0]);
		assert_true(rc >= 0);
	} while (rc == 1);
	while ((n = read(sv[1], sink, sizeof(sink))) > 0)
		got += (size_t)n;
	assert_int_equal(got, HW_VPN_OUT_CAP);
	assert_int_equal(out.len, 0);
	/* The far end gone: an error, not a hang. */
	out.len = 10;
	close(sv[1]);
	assert_int_equal(hw_vpn_buf_flush(&out, sv[0]), -EPIPE);
	close(sv[0]);
	hw_vpn_buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mtu_fits_one_data_packet),
		cmocka_unit_test(test_assign_round_trip),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_packets),
		cmocka_unit_test(test_unknown_types),
		cmocka_unit_test(test_buf_room),
		cmocka_unit_test(test_read_frames),
		cmocka_unit_test(test_flush_partial),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
