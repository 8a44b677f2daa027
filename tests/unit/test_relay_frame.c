#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "relay/frame.h"
#include "util/err.h"

static struct hw_relay_frame hdr(uint8_t type, uint32_t stream, uint16_t len,
				 const uint8_t *body)
{
	struct hw_relay_frame f = {type, stream, len, body};
	return f;
}

static void test_header_round_trip(void **state)
{
	static const uint32_t streams[] = {0, 1, 2, 0x7fffffff, 0x80000000,
					   0xfffffffe, 0xffffffff};
	static const uint16_t lens[] = {0, 1, 255, 256, 65534, 65535};
	uint8_t b[HW_RELAY_HDR];
	struct hw_relay_frame f;

	for (unsigned t = 0; t < 256; t += 17)
		for (size_t i = 0; i < sizeof(streams) / sizeof(*streams); i++)
			for (size_t j = 0; j < sizeof(lens) / sizeof(*lens);
			     j++) {
				hw_relay_put_header(b, (uint8_t)t, streams[i],
						    lens[j]);
				hw_relay_get_header(b, &f);
				assert_int_equal(f.type, t);
				assert_int_equal(f.stream, streams[i]);
				assert_int_equal(f.len, lens[j]);
				assert_null(f.body);
			}
	/* Byte order is big-endian. */
	hw_relay_put_header(b, 0x13, 0x01020304, 0x0506);
	assert_memory_equal(b, "\x13\x01\x02\x03\x04\x05\x06", 7);
}

static void test_units(void **state)
{
	struct hw_relay_frame f;

	f = hdr(HW_RELAY_SEALED, 0, 17, NULL);
	assert_int_equal(hw_relay_check_unit(&f), 0);
	f = hdr(HW_RELAY_SEALED, 0, 65535, NULL);
	assert_int_equal(hw_relay_check_unit(&f), 0);
	f = hdr(HW_RELAY_SEALED, 0, 16, NULL); /* a tag and nothing */
	assert_int_equal(hw_relay_check_unit(&f), HW_EPROTO);
	f = hdr(HW_RELAY_SEALED, 0, 0, NULL);
	assert_int_equal(hw_relay_check_unit(&f), HW_EPROTO);
	f = hdr(HW_RELAY_SEALED, 1, 100, NULL);
	assert_int_equal(hw_relay_check_unit(&f), HW_EPROTO);
	f = hdr(HW_RELAY_DATA, 1, 1, NULL);
	assert_int_equal(hw_relay_check_unit(&f), 0);
	f = hdr(HW_RELAY_DATA, 0xffffffff, 65535, NULL);
	assert_int_equal(hw_relay_check_unit(&f), 0);
	f = hdr(HW_RELAY_DATA, 0, 10, NULL);
	assert_int_equal(hw_relay_check_unit(&f), HW_EPROTO);
	f = hdr(HW_RELAY_DATA, 3, 0, NULL);
	assert_int_equal(hw_relay_check_unit(&f), HW_EPROTO);
	/* Control types never travel as units; unknown types are errors. */
	for (unsigned t = 2; t < 256; t++) {
		f = hdr((uint8_t)t, 1, 10, NULL);
		assert_int_equal(hw_relay_check_unit(&f), HW_EPROTO);
		f = hdr((uint8_t)t, 0, 10, NULL);
		assert_int_equal(hw_relay_check_unit(&f), HW_EPROTO);
	}
}

/* Every control type at every length 0..300 with stream 0 and 5: only
 * the lengths and streams the spec allows pass. */
static void test_control_lengths(void **state)
{
	static uint8_t body[300];
	struct {
		uint8_t type;
		int need_stream;
		size_t lo, hi;
	} spec[] = {
		{HW_RELAY_OPEN, 1, 184, 184},  {HW_RELAY_ACCEPT, 1, 0, 0},
		{HW_RELAY_REFUSE, 1, 1, 201},  {HW_RELAY_CREDIT, 1, 4, 4},
		{HW_RELAY_CLOSE, 1, 1, 1},     {HW_RELAY_PING, 0, 8, 8},
		{HW_RELAY_PONG, 0, 8, 8},      {HW_RELAY_ERROR, 0, 0, 200},
	};

	memset(body, 1, sizeof(body)); /* valid reasons, non-zero credit */
	for (size_t i = 0; i < sizeof(spec) / sizeof(*spec); i++) {
		for (size_t len = 0; len < sizeof(body); len++) {
			for (int st = 0; st < 2; st++) {
				struct hw_relay_frame f =
					hdr(spec[i].type, st ? 5 : 0,
					    (uint16_t)len, body);
				int ok = len >= spec[i].lo &&
					 len <= spec[i].hi &&
					 st == spec[i].need_stream;
				assert_int_equal(hw_relay_check_control(&f),
						 ok ? 0 : HW_EPROTO);
			}
		}
	}
	/* Units and unknown types are not control frames. */
	for (unsigned t = 0; t < 256; t++) {
		struct hw_relay_frame f = hdr((uint8_t)t, 5, 0, body);
		if (t >= HW_RELAY_OPEN && t <= HW_RELAY_ERROR)
			continue;
		assert_int_equal(hw_relay_check_control(&f), HW_EPROTO);
	}
}

static void test_control_values(void **state)
{
	uint8_t b[8] = {0};
	struct hw_relay_frame f;

	/* REFUSE reasons 1..7. */
	for (unsigned r = 0; r < 256; r++) {
		b[0] = (uint8_t)r;
		f = hdr(HW_RELAY_REFUSE, 3, 1, b);
		assert_int_equal(hw_relay_check_control(&f),
				 r >= 1 && r <= 7 ? 0 : HW_EPROTO);
	}
	/* CLOSE reasons 0..2. */
	for (unsigned r = 0; r < 256; r++) {
		b[0] = (uint8_t)r;
		f = hdr(HW_RELAY_CLOSE, 3, 1, b);
		assert_int_equal(hw_relay_check_control(&f),
				 r <= 2 ? 0 : HW_EPROTO);
	}
	/* CREDIT must be positive. */
	memset(b, 0, 4);
	f = hdr(HW_RELAY_CREDIT, 3, 4, b);
	assert_int_equal(hw_relay_check_control(&f), HW_EPROTO);
	b[3] = 1;
	assert_int_equal(hw_relay_check_control(&f), 0);
	assert_int_equal(hw_relay_credit_value(&f), 1);
	memcpy(b, "\x00\x04\x00\x00", 4);
	assert_int_equal(hw_relay_credit_value(&f), 262144);
	memcpy(b, "\xff\xff\xff\xff", 4);
	assert_int_equal(hw_relay_credit_value(&f), 0xffffffffu);
}

static size_t put(uint8_t *out, uint8_t type, uint32_t stream,
		  const void *body, uint16_t len)
{
	hw_relay_put_header(out, type, stream, len);
	memcpy(out + HW_RELAY_HDR, body, len);
	return HW_RELAY_HDR + len;
}

static void test_iteration(void **state)
{
	uint8_t buf[1024], open_body[HW_RELAY_OPEN_LEN] = {0};
	struct hw_relay_frame f;
	size_t n = 0, off = 0;

	n += put(buf + n, HW_RELAY_PING, 0, "12345678", 8);
	n += put(buf + n, HW_RELAY_CREDIT, 7, "\x00\x01\x00\x00", 4);
	n += put(buf + n, HW_RELAY_ACCEPT, 9, "", 0);
	n += put(buf + n, HW_RELAY_OPEN, 11, open_body, sizeof(open_body));
	n += put(buf + n, HW_RELAY_REFUSE, 13, "\x02no", 3);
	n += put(buf + n, HW_RELAY_ERROR, 0, "", 0);

	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), 1);
	assert_int_equal(f.type, HW_RELAY_PING);
	assert_memory_equal(f.body, "12345678", 8);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), 1);
	assert_int_equal(f.type, HW_RELAY_CREDIT);
	assert_int_equal(f.stream, 7);
	assert_int_equal(hw_relay_credit_value(&f), 65536);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), 1);
	assert_int_equal(f.type, HW_RELAY_ACCEPT);
	assert_int_equal(f.len, 0);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), 1);
	assert_int_equal(f.type, HW_RELAY_OPEN);
	assert_int_equal(f.stream, 11);
	assert_ptr_equal(f.body, buf + off - HW_RELAY_OPEN_LEN);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), 1);
	assert_int_equal(f.type, HW_RELAY_REFUSE);
	assert_int_equal(f.len, 3);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), 1);
	assert_int_equal(f.type, HW_RELAY_ERROR);
	assert_int_equal(off, n);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), 0);

	/* Every truncation of the packed frames fails at the cut frame
	 * (or ends cleanly when the cut falls between frames). */
	for (size_t cut = 0; cut < n; cut++) {
		size_t o = 0, ends[6], k = 0, e = 0;
		int rc;
		for (size_t p = 0; p < n;) {
			struct hw_relay_frame g;
			hw_relay_get_header(buf + p, &g);
			p += HW_RELAY_HDR + g.len;
			ends[e++] = p;
		}
		while ((rc = hw_relay_next_control(buf, cut, &o, &f)) == 1)
			k++;
		if (cut == 0 || (k > 0 && ends[k - 1] == cut)) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, HW_EPROTO);
		}
		assert_true(o <= cut);
	}

	/* A unit type, a wrong stream, a bad length inside: errors. */
	off = 0;
	n = put(buf, HW_RELAY_DATA, 3, "x", 1);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), HW_EPROTO);
	n = put(buf, HW_RELAY_PING, 3, "12345678", 8);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), HW_EPROTO);
	n = put(buf, HW_RELAY_CLOSE, 0, "\x00", 1);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), HW_EPROTO);
	n = put(buf, HW_RELAY_CREDIT, 1, "\x00\x00\x01", 3);
	assert_int_equal(hw_relay_next_control(buf, n, &off, &f), HW_EPROTO);
	/* A length that runs past the buffer. */
	hw_relay_put_header(buf, HW_RELAY_ERROR, 0, 100);
	assert_int_equal(hw_relay_next_control(buf, 50, &off, &f), HW_EPROTO);
	assert_int_equal(off, 0);
}

static void make_open(struct hw_relay_open *o, const struct hw_identity *a,
		      const uint8_t target[32], const uint8_t relay[32],
		      uint64_t ts)
{
	memcpy(o->initiator, a->pk, 32);
	memcpy(o->target, target, 32);
	memcpy(o->relay, relay, 32);
	o->ts_ms = ts;
	memset(o->nonce, 0x5a, sizeof(o->nonce));
	hw_relay_open_sign(o, a);
}

static void test_open(void **state)
{
	struct hw_identity a, b, r;
	struct hw_relay_open o, d;
	uint8_t body[HW_RELAY_OPEN_LEN], msg[140];
	uint64_t now = 1700000000000ull;

	assert_int_equal(hw_identity_generate(&a), 0);
	assert_int_equal(hw_identity_generate(&b), 0);
	assert_int_equal(hw_identity_generate(&r), 0);
	make_open(&o, &a, b.pk, r.pk, now);
	hw_relay_open_encode(&o, body);

	/* Layout: initiator | target | relay | ts_ms BE | nonce | sig. */
	assert_memory_equal(body, a.pk, 32);
	assert_memory_equal(body + 32, b.pk, 32);
	assert_memory_equal(body + 64, r.pk, 32);
	assert_memory_equal(body + 96, "\x00\x00\x01\x8b\xcf\xe5\x68\x00", 8);
	assert_memory_equal(body + 120, o.sig, 64);
	/* Signed: the 20-byte context, then the first 120 body bytes. */
	hw_relay_open_signing_bytes(&o, msg);
	assert_memory_equal(msg, "hopwire/1 relay open", 20);
	assert_memory_equal(msg + 20, body, 120);
	assert_int_equal(hw_sig_verify(a.pk, msg, sizeof(msg), o.sig), 0);

	assert_int_equal(hw_relay_open_decode(&d, body, sizeof(body)), 0);
	assert_memory_equal(&d, &o, sizeof(o));
	assert_int_equal(hw_relay_open_decode(&d, body, 183), HW_EPROTO);
	assert_int_equal(hw_relay_open_decode(&d, body, 185), HW_EPROTO);
	assert_int_equal(hw_relay_open_verify(&d), 0);
	assert_int_equal(hw_relay_open_check(&d, b.pk, r.pk, now), 0);

	/* Flipping any bit of the body breaks the signature (or, for the
	 * signature itself, its check). */
	for (size_t i = 0; i < sizeof(body); i++) {
		uint8_t t[HW_RELAY_OPEN_LEN];
		memcpy(t, body, sizeof(t));
		t[i] ^= 0x01;
		hw_relay_open_decode(&d, t, sizeof(t));
		assert_int_equal(hw_relay_open_verify(&d), HW_EAUTH);
	}

	/* The target's checks. */
	hw_relay_open_decode(&d, body, sizeof(body));
	assert_int_equal(hw_relay_open_check(&d, a.pk, r.pk, now), HW_EPROTO);
	assert_int_equal(hw_relay_open_check(&d, r.pk, r.pk, now), HW_EPROTO);
	assert_int_equal(hw_relay_open_check(&d, b.pk, b.pk, now), HW_EPROTO);
	assert_int_equal(hw_relay_open_check(&d, b.pk, r.pk, now + 60000), 0);
	assert_int_equal(hw_relay_open_check(&d, b.pk, r.pk, now - 60000), 0);
	assert_int_equal(hw_relay_open_check(&d, b.pk, r.pk, now + 60001),
			 HW_EPROTO);
	assert_int_equal(hw_relay_open_check(&d, b.pk, r.pk, now - 60001),
			 HW_EPROTO);
	/* Someone else signing for the initiator. */
	make_open(&o, &b, b.pk, r.pk, now);
	memcpy(o.initiator, a.pk, 32);
	assert_int_equal(hw_relay_open_check(&o, b.pk, r.pk, now), HW_EAUTH);
	/* A self-addressed request. */
	make_open(&o, &b, b.pk, r.pk, now);
	assert_int_equal(hw_relay_open_check(&o, b.pk, r.pk, now), HW_EPROTO);
	hw_identity_wipe(&a);
	hw_identity_wipe(&b);
	hw_identity_wipe(&r);
}

static void test_names_and_text(void **state)
{
	char out[16];

	assert_string_equal(hw_relay_type_name(HW_RELAY_DATA), "data");
	assert_string_equal(hw_relay_type_name(HW_RELAY_ERROR), "error");
	assert_string_equal(hw_relay_type_name(0x99), "unknown");
	assert_string_equal(hw_relay_refuse_text(1),
			    "relay has no session with the peer");
	assert_string_equal(hw_relay_refuse_text(6), "timed out");
	hw_relay_text_sanitize((const uint8_t *)"ok\n\x01\xffZ", 6, out,
			       sizeof(out));
	assert_string_equal(out, "ok???Z");
	hw_relay_text_sanitize((const uint8_t *)"abcdefghijklmnopqrstu", 21,
			       out, sizeof(out));
	assert_string_equal(out, "abcdefghijklmno");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_units),
		cmocka_unit_test(test_control_lengths),
		cmocka_unit_test(test_control_values),
		cmocka_unit_test(test_iteration),
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_names_and_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
