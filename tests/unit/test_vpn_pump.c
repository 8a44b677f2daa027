/* Moving frames between a loop and the VPN apps (src/apps/vpn/pump.c with
 * proto.c, compiled into this test: apps are not part of hwcore): buffer
 * room, frame reading over a socketpair, partial writes, TUN batches
 * (a datagram socketpair keeps packet boundaries as a TUN does). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "hwtest.h"
#include "../../src/apps/vpn/pump.h"

static char why[256];

static void test_buf_room(void **state)
{
	struct hw_vpn_buf b;
	uint8_t *r;

	(void)state;
	/* A loop's buffers hold the largest frame (in) and two (out). */
	assert_true(HW_VPN_IN_CAP >= HW_VPN_FRAME_MAX);
	assert_true(HW_VPN_OUT_CAP >= 2 * HW_VPN_FRAME_MAX);
	assert_int_equal(hw_vpn_buf_init(&b, 100), 0);
	assert_int_equal(b.cap, 100);
	/* Empty: all of it. */
	assert_ptr_equal(hw_vpn_buf_room(&b, 100), b.p);
	assert_null(hw_vpn_buf_room(&b, 101));
	/* 60 written, 40 left at the end. */
	memset(b.p, 'a', 60);
	b.len = 60;
	assert_ptr_equal(hw_vpn_buf_room(&b, 40), b.p + 60);
	assert_null(hw_vpn_buf_room(&b, 41));
	/* 50 of them consumed: 41 fit once the 10 left move to the front. */
	memset(b.p + 50, 'b', 10);
	b.off = 50;
	r = hw_vpn_buf_room(&b, 41);
	assert_ptr_equal(r, b.p + 10);
	assert_int_equal(b.off, 0);
	assert_int_equal(b.len, 10);
	assert_memory_equal(b.p, "bbbbbbbbbb", 10);
	/* Full with 10 waiting: 90 fit, 91 do not, nothing moves. */
	assert_ptr_equal(hw_vpn_buf_room(&b, 90), b.p + 10);
	assert_null(hw_vpn_buf_room(&b, 91));
	assert_int_equal(b.len, 10);
	/* Room without compaction does not move what waits. */
	b.off = 5;
	assert_ptr_equal(hw_vpn_buf_room(&b, 20), b.p + 10);
	assert_int_equal(b.off, 5);
	/* Everything consumed: back to the start. */
	b.off = b.len = 10;
	assert_ptr_equal(hw_vpn_buf_room(&b, 100), b.p);
	assert_int_equal(b.off, 0);
	assert_int_equal(b.len, 0);
	/* Full and nothing consumed: no room at all. */
	b.len = 100;
	assert_null(hw_vpn_buf_room(&b, 1));
	assert_ptr_equal(hw_vpn_buf_room(&b, 0), b.p + 100);
	hw_vpn_buf_free(&b);
	assert_null(b.p);
	assert_int_equal(b.cap, 0);
	hw_vpn_buf_free(&b);
}

struct reader {
	unsigned mask;
	int frames, packets, stop_after;
	uint8_t types[64];
	size_t lens[64];
	char reason[HW_VPN_REASON_MAX + 1];
};

static unsigned allowed(void *ud)
{
	return ((struct reader *)ud)->mask;
}

static int on_frame(const struct hw_vpn_frame *f, void *ud)
{
	struct reader *r = ud;

	assert_true(r->frames < 64);
	r->types[r->frames] = f->type;
	r->lens[r->frames] = f->len;
	r->frames++;
	if (f->type == HW_VPN_ASSIGN)
		r->mask = HW_VPN_RUNNING;
	if (f->type == HW_VPN_PACKET)
		r->packets++;
	if (f->type == HW_VPN_CLOSE)
		strcpy(r->reason, f->reason);
	return r->stop_after && r->frames == r->stop_after ? 42 : 0;
}

/* A PACKET frame with an IPv4 packet of len bytes into out; its size. */
static size_t packet(uint8_t *out, size_t len, uint8_t fill)
{
	uint8_t *p = out + HW_VPN_HDR;

	hw_vpn_put_hdr(out, HW_VPN_PACKET, (uint16_t)len);
	memset(p, fill, len);
	p[0] = 0x45;
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	return HW_VPN_HDR + len;
}

static size_t assign(uint8_t *out)
{
	struct hw_vpn_assign a = {
		.mtu = HW_VPN_MTU, .addr4 = {10, 44, 0, 2}, .prefix4 = 24,
		.server4 = {10, 44, 0, 1},
	};

	return hw_vpn_build_assign(out, &a);
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		assert_true(k > 0);
		p += k;
		n -= (size_t)k;
	}
}

static int read_frames(int fd, struct hw_vpn_buf *in, struct reader *r)
{
	why[0] = '\0';
	return hw_vpn_read_frames(fd, in, allowed, on_frame, r, why,
				  sizeof(why));
}

static void test_read_frames(void **state)
{
	struct reader r = {.mask = HW_VPN_FIRST_FROM_SERVER};
	struct hw_vpn_buf in;
	uint8_t *buf = malloc(4 * HW_VPN_FRAME_MAX);
	size_t n = 0, big;
	int sv[2];

	(void)state;
	assert_non_null(buf);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(hw_vpn_buf_init(&in, HW_VPN_IN_CAP), 0);

	/* Nothing there yet: 0, nothing handed out. */
	assert_int_equal(read_frames(sv[0], &in, &r), 0);
	assert_int_equal(r.frames, 0);

	/* ASSIGN and three packets in one read (the mask follows the
	 * ASSIGN). */
	n += assign(buf + n);
	n += packet(buf + n, 20, 1);
	n += packet(buf + n, 1500, 2);
	n += packet(buf + n, 100, 3);
	send_all(sv[1], buf, n);
	assert_int_equal(read_frames(sv[0], &in, &r), 0);
	assert_int_equal(r.frames, 4);
	assert_int_equal(r.types[0], HW_VPN_ASSIGN);
	assert_int_equal(r.lens[2], 1500);
	assert_int_equal(r.packets, 3);
	assert_int_equal(in.off, in.len);

	/* A frame split across reads, byte by byte at first, then the
	 * rest. */
	n = packet(buf, 700, 4);
	for (size_t k = 0; k < 5; k++) {
		send_all(sv[1], buf + k, 1);
		assert_int_equal(read_frames(sv[0], &in, &r), 0);
		assert_int_equal(r.frames, 4);
	}
	send_all(sv[1], buf + 5, n - 5 - 1);
	assert_int_equal(read_frames(sv[0], &in, &r), 0);
	assert_int_equal(r.frames, 4);
	/* The last byte and the start of the next frame. */
	big = packet(buf + n, HW_VPN_MTU, 5);
	send_all(sv[1], buf + n - 1, 1 + 10);
	assert_int_equal(read_frames(sv[0], &in, &r), 0);
	assert_int_equal(r.frames, 5);
	assert_int_equal(r.lens[4], 700);
	/* The largest frame's rest, and another whole one after it, sent
	 * at once: several reads may be needed, each handing out what is
	 * whole. */
	memcpy(buf + n + big, buf + n, big);
	send_all(sv[1], buf + n + 10, 2 * big - 10);
	while (r.frames < 7)
		assert_int_equal(read_frames(sv[0], &in, &r), 0);
	assert_int_equal(r.lens[5], HW_VPN_MTU);
	assert_int_equal(r.lens[6], HW_VPN_MTU);
	assert_int_equal(in.off, in.len);

	/* on_frame stops the walk: its value comes back and the frames
	 * after it wait for the next call. */
	r.stop_after = 8;
	n = packet(buf, 40, 6);
	n += packet(buf + n, 41, 7);
	send_all(sv[1], buf, n);
	assert_int_equal(read_frames(sv[0], &in, &r), 42);
	assert_int_equal(r.frames, 8);
	r.stop_after = 0;

	/* A CLOSE, then end of file. */
	n = hw_vpn_build_reason(buf, HW_VPN_CLOSE, "bye");
	send_all(sv[1], buf, n);
	assert_int_equal(read_frames(sv[0], &in, &r), 0);
	/* The waiting packet came first. */
	assert_int_equal(r.frames, 10);
	assert_int_equal(r.lens[8], 41);
	assert_string_equal(r.reason, "bye");
	close(sv[1]);
	assert_int_equal(read_frames(sv[0], &in, &r), -EPIPE);
	assert_int_equal(r.frames, 10);
	close(sv[0]);
	hw_vpn_buf_free(&in);
	free(buf);
}

static void test_read_malformed(void **state)
{
	struct reader r = {.mask = HW_VPN_FIRST_FROM_SERVER};
	struct hw_vpn_buf in;
	uint8_t buf[2048];
	size_t n;
	int sv[2];

	(void)state;
	assert_int_equal(hw_vpn_buf_init(&in, HW_VPN_IN_CAP), 0);
	/* A PACKET before the ASSIGN. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	n = packet(buf, 20, 0);
	send_all(sv[1], buf, n);
	assert_int_equal(read_frames(sv[0], &in, &r), -EPROTO);
	assert_non_null(strstr(why, "unexpected PACKET frame"));
	assert_int_equal(r.frames, 0);
	close(sv[0]);
	close(sv[1]);

	/* Good frames, then one whose IPv4 length lies: the good ones
	 * are handed out first. */
	in.off = in.len = 0;
	r.mask = HW_VPN_RUNNING;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	n = packet(buf, 20, 0);
	n += packet(buf + n, 60, 0);
	n += packet(buf + n, 30, 0);
	buf[n - 30 + 3] = 31;
	send_all(sv[1], buf, n);
	assert_int_equal(read_frames(sv[0], &in, &r), -EPROTO);
	assert_int_equal(r.frames, 2);
	assert_non_null(strstr(why, "IPv4 PACKET of 30 bytes says it has 31"));
	close(sv[0]);
	close(sv[1]);

	/* An oversize header is refused without waiting for its body. */
	in.off = in.len = 0;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	hw_vpn_put_hdr(buf, HW_VPN_PACKET, HW_VPN_MTU + 1);
	send_all(sv[1], buf, HW_VPN_HDR);
	assert_int_equal(read_frames(sv[0], &in, &r), -EPROTO);
	assert_non_null(strstr(why, "over the MTU"));
	close(sv[0]);
	close(sv[1]);

	/* Not a socket that can be read: its errno. */
	assert_int_equal(hw_vpn_read_frames(-1, &in, allowed, on_frame, &r,
					    why, sizeof(why)), -EBADF);
	hw_vpn_buf_free(&in);
}

static void test_flush(void **state)
{
	struct hw_vpn_buf out;
	uint8_t *got = malloc(HW_VPN_OUT_CAP);
	size_t total = 0, rounds = 0;
	int sv[2], sz = 4096, rc;

	(void)state;
	assert_non_null(got);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz,
				    sizeof(sz)), 0);
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz,
				    sizeof(sz)), 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(hw_vpn_buf_init(&out, HW_VPN_OUT_CAP), 0);
	/* Nothing waiting: done. */
	assert_int_equal(hw_vpn_buf_flush(&out, sv[0]), 0);
	for (size_t i = 0; i < out.cap; i++)
		out.p[i] = hw_test_pattern(7, i);
	out.len = out.cap;
	/* The socket takes some: 1, with what was sent consumed. */
	rc = hw_vpn_buf_flush(&out, sv[0]);
	assert_int_equal(rc, 1);
	assert_true(out.off > 0 && out.off < out.len);
	assert_int_equal(out.len, out.cap);
	/* The peer reads, the writer flushes again, until all is there. */
	while (rc == 1) {
		ssize_t k;

		while ((k = read(sv[1], got + total, out.cap - total)) > 0)
			total += (size_t)k;
		assert_true(k < 0 && errno == EAGAIN);
		rc = hw_vpn_buf_flush(&out, sv[0]);
		assert_true(rc == 0 || rc == 1);
		assert_true(++rounds < 100000);
	}
	assert_int_equal(out.off, 0);
	assert_int_equal(out.len, 0);
	while (total < HW_VPN_OUT_CAP) {
		ssize_t k = read(sv[1], got + total, HW_VPN_OUT_CAP - total);

		assert_true(k > 0);
		total += (size_t)k;
	}
	for (size_t i = 0; i < total; i++)
		if (got[i] != hw_test_pattern(7, i))
			fail_msg("byte %zu differs", i);
	/* The peer gone: -EPIPE, no signal. */
	out.len = 10;
	close(sv[1]);
	assert_int_equal(hw_vpn_buf_flush(&out, sv[0]), -EPIPE);
	close(sv[0]);
	hw_vpn_buf_free(&out);
	free(got);
}

struct batch {
	uint8_t *slots;
	int placed, done, limit;
	size_t lens[HW_VPN_BATCH * 2];
};

static uint8_t *place(void *ud)
{
	struct batch *b = ud;

	if (b->placed == b->limit)
		return NULL;
	return b->slots + (size_t)b->placed++ * HW_VPN_MTU;
}

static void done(void *ud, uint8_t *pkt, size_t n)
{
	struct batch *b = ud;

	assert_ptr_equal(pkt, b->slots + (size_t)(b->placed - 1) *
			 HW_VPN_MTU);
	assert_int_equal(pkt[0], (uint8_t)b->done);
	b->lens[b->done++] = n;
}

static void test_tun_batch(void **state)
{
	struct batch b = {.limit = HW_VPN_BATCH * 2};
	uint8_t pkt[1500];
	int sv[2];

	(void)state;
	b.slots = malloc((size_t)b.limit * HW_VPN_MTU);
	assert_non_null(b.slots);
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	/* Nothing to read: 0. */
	assert_int_equal(hw_vpn_tun_batch(sv[0], place, done, &b), 0);
	/* Three packets: three, each its own size. */
	for (int i = 0; i < 3; i++) {
		pkt[0] = (uint8_t)i;
		assert_int_equal(send(sv[1], pkt, 100 + (size_t)i, 0),
				 100 + i);
	}
	b.placed = 0;
	assert_int_equal(hw_vpn_tun_batch(sv[0], place, done, &b), 3);
	assert_int_equal(b.done, 3);
	assert_int_equal(b.lens[2], 102);
	/* More than a batch waits: HW_VPN_BATCH at a time. */
	b.placed = b.done = 0;
	for (int i = 0; i < HW_VPN_BATCH + 6; i++) {
		pkt[0] = (uint8_t)i;
		assert_int_equal(send(sv[1], pkt, 60, 0), 60);
	}
	assert_int_equal(hw_vpn_tun_batch(sv[0], place, done, &b),
			 HW_VPN_BATCH);
	/* The rest at the next call. */
	assert_int_equal(b.placed, HW_VPN_BATCH);
	assert_int_equal(hw_vpn_tun_batch(sv[0], place, done, &b), 6);
	assert_int_equal(b.done, HW_VPN_BATCH + 6);
	/* No place to put one: stops before reading. */
	pkt[0] = 0;
	assert_int_equal(send(sv[1], pkt, 60, 0), 60);
	b.placed = b.limit;
	assert_int_equal(hw_vpn_tun_batch(sv[0], place, done, &b), 0);
	b.placed = b.done = 0;
	assert_int_equal(hw_vpn_tun_batch(sv[0], place, done, &b), 1);
	/* A bad descriptor: its errno. */
	assert_int_equal(hw_vpn_tun_batch(-1, place, done, &b), -EBADF);
	close(sv[0]);
	close(sv[1]);
	free(b.slots);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_room),
		cmocka_unit_test(test_read_frames),
		cmocka_unit_test(test_read_malformed),
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_tun_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
