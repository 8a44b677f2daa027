#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/err.h"
#include "wire/packet.h"

static void test_roundtrip_many(void **state)
{
	uint8_t buf[100];
	struct hw_packet p;
	size_t off = 0;

	hw_packet_put_header(buf, HW_PKT_DATA, 0xdeadbeef, 3);
	memcpy(buf + 7, "abc", 3);
	hw_packet_put_header(buf + 10, HW_PKT_KEEPALIVE, 0, 0);
	assert_int_equal(hw_packet_next(buf, 17, &off, &p), 1);
	assert_int_equal(p.type, HW_PKT_DATA);
	assert_int_equal(p.route_id, 0xdeadbeef);
	assert_int_equal(p.len, 3);
	assert_memory_equal(p.payload, "abc", 3);
	assert_int_equal(hw_packet_next(buf, 17, &off, &p), 1);
	assert_int_equal(p.type, HW_PKT_KEEPALIVE);
	assert_int_equal(p.len, 0);
	assert_int_equal(hw_packet_next(buf, 17, &off, &p), 0);
	assert_int_equal(off, 17);
	assert_string_equal(hw_packet_type_name(HW_PKT_PONG), "pong");
	assert_string_equal(hw_packet_type_name(200), "unknown");
}

static void test_malformed(void **state)
{
	uint8_t buf[32] = {0};
	struct hw_packet p;
	size_t off;

	/* Shorter than a header. */
	off = 0;
	assert_int_equal(hw_packet_next(buf, 6, &off, &p), HW_EPROTO);
	/* Length running past the record. */
	hw_packet_put_header(buf, HW_PKT_DATA, 1, 20);
	off = 0;
	assert_int_equal(hw_packet_next(buf, 26, &off, &p), HW_EPROTO);
	off = 0;
	assert_int_equal(hw_packet_next(buf, 27, &off, &p), 1);
	/* Unknown type. */
	hw_packet_put_header(buf, HW_PKT_TYPE_MAX + 1, 1, 0);
	off = 0;
	assert_int_equal(hw_packet_next(buf, 7, &off, &p), HW_EPROTO);
	/* A good packet followed by a stray byte. */
	hw_packet_put_header(buf, HW_PKT_PING, 0, 0);
	off = 0;
	assert_int_equal(hw_packet_next(buf, 8, &off, &p), 1);
	assert_int_equal(hw_packet_next(buf, 8, &off, &p), HW_EPROTO);
}

static void test_detached(void **state)
{
	uint8_t buf[32] = {0};
	struct hw_packet p;
	size_t off;

	/* A small packet, then a detached DATA header closing the record. */
	hw_packet_put_header(buf, HW_PKT_KEEPALIVE, 0, 0);
	hw_packet_put_header(buf + 7, HW_PKT_DATA | HW_PKT_F_DETACHED, 9,
			     60000);
	off = 0;
	assert_int_equal(hw_packet_next(buf, 14, &off, &p), 1);
	assert_int_equal(hw_packet_next(buf, 14, &off, &p), 1);
	assert_int_equal(p.type, HW_PKT_DATA | HW_PKT_F_DETACHED);
	assert_int_equal(p.route_id, 9);
	assert_int_equal(p.len, 60000);
	assert_null(p.payload);
	assert_int_equal(hw_packet_next(buf, 14, &off, &p), 0);
	/* Not last in its record, on route 0, empty, or another type. */
	off = 7;
	assert_int_equal(hw_packet_next(buf, 15, &off, &p), HW_EPROTO);
	hw_packet_put_header(buf, HW_PKT_DATA | HW_PKT_F_DETACHED, 0, 10);
	off = 0;
	assert_int_equal(hw_packet_next(buf, 7, &off, &p), HW_EPROTO);
	hw_packet_put_header(buf, HW_PKT_DATA | HW_PKT_F_DETACHED, 1, 0);
	off = 0;
	assert_int_equal(hw_packet_next(buf, 7, &off, &p), HW_EPROTO);
	hw_packet_put_header(buf, HW_PKT_PING | HW_PKT_F_DETACHED, 1, 10);
	off = 0;
	assert_int_equal(hw_packet_next(buf, 7, &off, &p), HW_EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_many),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_detached),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
