#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "router/setup_msg.h"
#include "util/err.h"

static void pk_fill(uint8_t pk[HW_PK_LEN], uint8_t v)
{
	memset(pk, v, HW_PK_LEN);
}

static void desc_fill(struct hw_route_desc *d)
{
	pk_fill(d->src_pk, 0xa1);
	d->src_port = 1;
	pk_fill(d->dst_pk, 0xb2);
	d->dst_port = 65535;
}

/* A rule of each kind as the spec allows it, cycling on i. */
static void rule_fill(struct hw_rule *r, unsigned i)
{
	memset(r, 0, sizeof(*r));
	r->id = 0x10000000u + i;
	r->keepalive_ms = i % 2 ? HW_RULE_KEEPALIVE_MIN_MS
				: HW_RULE_KEEPALIVE_MAX_MS;
	switch (i % 3) {
	case 0:
		r->kind = HW_RULE_CONSUME;
		memset(r->prev_tp, 0x11, HW_TP_ID_LEN);
		desc_fill(&r->desc);
		break;
	case 1:
		r->kind = HW_RULE_FORWARD;
		r->next_id = 0xfffffff0u - i;
		memset(r->next_tp, 0x22, HW_TP_ID_LEN);
		desc_fill(&r->desc);
		break;
	default:
		r->kind = HW_RULE_INTERMEDIARY;
		memset(r->prev_tp, 0x33, HW_TP_ID_LEN);
		r->next_id = 7 + i;
		memset(r->next_tp, 0x44, HW_TP_ID_LEN);
		break;
	}
}

/* A hop of a line of visors 1, 2, 3, ...: hop i goes from visor i + 1 to
 * visor i + 2. */
static void hop_fill(struct hw_setup_hop *h, unsigned i)
{
	memset(h->tp_id, (int)(0x80 + i), HW_TP_ID_LEN);
	pk_fill(h->from, (uint8_t)(i + 1));
	pk_fill(h->to, (uint8_t)(i + 2));
}

/* A valid message of type with its counts at their minimum or maximum
 * (big). */
static void msg_fill(struct hw_setup_msg *m, uint8_t type, int big)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->req = big ? 0xffffffffu : 0;
	switch (type) {
	case HW_SETUP_RESERVE:
		m->u.reserve.count = big ? HW_SETUP_RESERVE_MAX : 1;
		break;
	case HW_SETUP_RESERVED:
		m->u.reserved.count = big ? HW_SETUP_RESERVE_MAX : 1;
		for (unsigned i = 0; i < m->u.reserved.count; i++)
			m->u.reserved.ids[i] = 0xfffffff0u + i;
		break;
	case HW_SETUP_ADD_RULES:
		m->u.add_rules.count = big ? HW_SETUP_RULES_MAX : 1;
		for (unsigned i = 0; i < m->u.add_rules.count; i++)
			rule_fill(&m->u.add_rules.rules[i], i);
		break;
	case HW_SETUP_RESULT:
		m->u.result.status = big ? HW_SETUP_INTERNAL : HW_SETUP_OK;
		if (big) /* 200 bytes: 2-byte, 3-byte and 4-byte characters */
			snprintf(m->u.result.text, sizeof(m->u.result.text),
				 "%s%s%s%0*d", "\xc3\xa9", "\xe2\x82\xac",
				 "\xf0\x9f\x98\x80", 200 - 9, 0);
		break;
	case HW_SETUP_DEL_RULES:
		m->u.del_rules.count = big ? HW_SETUP_DEL_MAX : 1;
		for (unsigned i = 0; i < m->u.del_rules.count; i++)
			m->u.del_rules.ids[i] = 1 + i * 0x01010101u;
		break;
	case HW_SETUP_BUILD:
		desc_fill(&m->u.build.desc);
		m->u.build.keepalive_ms = big ? HW_RULE_KEEPALIVE_MAX_MS
					      : HW_RULE_KEEPALIVE_MIN_MS;
		m->u.build.fwd_n = m->u.build.rev_n =
			big ? HW_SETUP_HOPS_MAX : 1;
		for (unsigned i = 0; i < m->u.build.fwd_n; i++) {
			hop_fill(&m->u.build.fwd[i], i);
			hop_fill(&m->u.build.rev[i], 100 + i);
		}
		break;
	case HW_SETUP_BUILT:
		if (big) {
			m->u.built.status = HW_SETUP_LIMIT;
			memset(m->u.built.text, 'x', HW_SETUP_TEXT_MAX);
		} else {
			m->u.built.fwd_send_id = 1;
			m->u.built.rev_recv_id = 0xffffffffu;
		}
		break;
	case HW_SETUP_INCOMING:
		desc_fill(&m->u.incoming.desc);
		m->u.incoming.fwd_recv_id = big ? 0xffffffffu : 1;
		m->u.incoming.rev_send_id = 2;
		break;
	}
}

/* Encoded length of msg_fill's messages: header + body. */
static size_t expect_len(uint8_t type, int big)
{
	switch (type) {
	case HW_SETUP_RESERVE: return 5 + 1;
	case HW_SETUP_RESERVED: return 5 + 2 + 4 * (big ? 16 : 1);
	case HW_SETUP_ADD_RULES: return 5 + 1 + 113 * (big ? 16 : 1);
	case HW_SETUP_RESULT: return 5 + 1 + (big ? 200 : 0);
	case HW_SETUP_DEL_RULES: return 5 + 1 + 4 * (big ? 64 : 1);
	case HW_SETUP_BUILD: return 5 + 68 + 4 + 2 * (1 + 80 * (big ? 16 : 1));
	case HW_SETUP_BUILT: return 5 + 2 + (big ? 200 : 0) + 8;
	case HW_SETUP_INCOMING: return 5 + 68 + 8;
	default: return 0;
	}
}

static void check_roundtrip(const struct hw_setup_msg *m, size_t want)
{
	uint8_t buf[HW_SETUP_MSG_MAX + 1], again[HW_SETUP_MSG_MAX];
	struct hw_setup_msg d;
	size_t len = 0, len2 = 0;

	assert_int_equal(hw_setup_msg_encode(m, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, want);
	assert_int_equal(hw_setup_msg_decode(buf, len, &d), 0);
	assert_int_equal(d.type, m->type);
	assert_int_equal(d.req, m->req);
	assert_memory_equal(&d.u, &m->u, sizeof(d.u));
	assert_int_equal(hw_setup_msg_encode(&d, again, sizeof(again), &len2),
			 0);
	assert_int_equal(len2, len);
	assert_memory_equal(again, buf, len);

	/* Exactly the needed room is enough, one byte less is not. */
	assert_int_equal(hw_setup_msg_encode(m, again, len, &len2), 0);
	assert_int_equal(hw_setup_msg_encode(m, again, len - 1, &len2),
			 -ENOBUFS);

	/* Truncated at every byte; the header survives from 5 bytes on.
	 * RESULT's text runs to the end of the payload, so a RESULT cut
	 * between characters is a shorter RESULT (the packet's length is
	 * what guards it). */
	for (size_t n = 0; n < len; n++) {
		if (m->type == HW_SETUP_RESULT && n > HW_SETUP_HDR &&
		    hw_setup_msg_decode(buf, n, &d) == 0) {
			assert_int_equal(strlen(d.u.result.text), n - 6);
			continue;
		}
		assert_int_equal(hw_setup_msg_decode(buf, n, &d), HW_EPROTO);
		assert_int_equal(d.type, n >= HW_SETUP_HDR ? m->type : 0);
		assert_int_equal(d.req, n >= HW_SETUP_HDR ? m->req : 0);
	}
	/* One trailing byte. */
	buf[len] = 0;
	assert_int_equal(hw_setup_msg_decode(buf, len + 1, &d), HW_EPROTO);
}

static void test_roundtrip_all(void **state)
{
	struct hw_setup_msg m;

	for (uint8_t t = 1; t <= HW_SETUP_TYPE_MAX; t++) {
		for (int big = 0; big <= 1; big++) {
			msg_fill(&m, t, big);
			check_roundtrip(&m, expect_len(t, big));
		}
	}
	assert_int_equal(expect_len(HW_SETUP_BUILD, 1), HW_SETUP_MSG_MAX);

	/* The failure forms: RESERVED without IDs, BUILT without IDs. */
	msg_fill(&m, HW_SETUP_RESERVED, 0);
	m.u.reserved.status = HW_SETUP_LIMIT;
	m.u.reserved.count = 0;
	m.u.reserved.ids[0] = 0;
	check_roundtrip(&m, 7);
	msg_fill(&m, HW_SETUP_BUILT, 0);
	m.u.built.status = HW_SETUP_NO_TP;
	m.u.built.fwd_send_id = m.u.built.rev_recv_id = 0;
	strcpy(m.u.built.text, "forward path: hop 2: no such transport");
	check_roundtrip(&m, 15 + strlen(m.u.built.text));
}

static void test_exact_bytes(void **state)
{
	struct hw_setup_msg m;
	uint8_t buf[HW_SETUP_MSG_MAX];
	size_t len;
	static const uint8_t reserve[] = {1, 0x01, 0x02, 0x03, 0x04, 3};
	static const uint8_t reserved[] = {2,    0,    0,    0,    9, 0,
					   2,    0xde, 0xad, 0xbe, 0xef,
					   0x00, 0x00, 0x00, 0x01};
	static const uint8_t result[] = {4, 0, 0, 0, 7, 1, 'n', 'o'};

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_RESERVE;
	m.req = 0x01020304;
	m.u.reserve.count = 3;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, sizeof(reserve));
	assert_memory_equal(buf, reserve, len);

	assert_int_equal(hw_setup_msg_decode(reserved, sizeof(reserved), &m),
			 0);
	assert_int_equal(m.req, 9);
	assert_int_equal(m.u.reserved.count, 2);
	assert_int_equal(m.u.reserved.ids[0], 0xdeadbeef);
	assert_int_equal(m.u.reserved.ids[1], 1);

	assert_int_equal(hw_setup_msg_decode(result, sizeof(result), &m), 0);
	assert_int_equal(m.u.result.status, HW_SETUP_REFUSED);
	assert_string_equal(m.u.result.text, "no");
}

/* Encodes m (valid), lets patch change the bytes, expects decode to
 * refuse them. */
static void encode_ok(const struct hw_setup_msg *m, uint8_t *buf,
		      size_t *len)
{
	assert_int_equal(hw_setup_msg_encode(m, buf, HW_SETUP_MSG_MAX + 300,
					     len),
			 0);
}

static void expect_bad(const uint8_t *buf, size_t len)
{
	struct hw_setup_msg d;

	assert_int_equal(hw_setup_msg_decode(buf, len, &d), HW_EPROTO);
}

static void test_counts(void **state)
{
	uint8_t buf[HW_SETUP_MSG_MAX + 300];
	struct hw_setup_msg m;
	size_t len;

	/* RESERVE: 0 and 17, as bytes and as a struct. */
	msg_fill(&m, HW_SETUP_RESERVE, 0);
	encode_ok(&m, buf, &len);
	buf[5] = 0;
	expect_bad(buf, len);
	buf[5] = 17;
	expect_bad(buf, len);
	m.u.reserve.count = 0;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	m.u.reserve.count = 17;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);

	/* RESERVED: ok with 0 IDs, 17 IDs (with the 17th present), a
	 * failure that carries IDs. */
	msg_fill(&m, HW_SETUP_RESERVED, 1);
	encode_ok(&m, buf, &len);
	buf[6] = 17;
	memset(buf + len, 0x55, 4);
	expect_bad(buf, len + 4);
	buf[6] = 0;
	expect_bad(buf, 7);
	buf[5] = HW_SETUP_LIMIT;
	buf[6] = 1;
	expect_bad(buf, 11);
	m.u.reserved.count = 0;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);

	/* ADD_RULES: 0 and 17 rules. */
	msg_fill(&m, HW_SETUP_ADD_RULES, 1);
	encode_ok(&m, buf, &len);
	buf[5] = 17;
	memcpy(buf + len, buf + 6, HW_RULE_ENC_LEN);
	buf[len + 3] ^= 0x40; /* a fresh ID */
	expect_bad(buf, len + HW_RULE_ENC_LEN);
	buf[5] = 0;
	expect_bad(buf, 6);
	m.u.add_rules.count = 17;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);

	/* DEL_RULES: 0 and 65 IDs. */
	msg_fill(&m, HW_SETUP_DEL_RULES, 1);
	encode_ok(&m, buf, &len);
	buf[5] = 65;
	memcpy(buf + len, "\x7f\x00\x00\x01", 4);
	expect_bad(buf, len + 4);
	buf[5] = 0;
	expect_bad(buf, 6);
	m.u.del_rules.count = 65;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	m.u.del_rules.count = 0;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);

	/* BUILD: forward or reverse hop count 0 or 17. */
	msg_fill(&m, HW_SETUP_BUILD, 0);
	encode_ok(&m, buf, &len);
	{
		const size_t fwd_n = 5 + 68 + 4, rev_n = fwd_n + 1 + 80;
		uint8_t big[HW_SETUP_MSG_MAX + 300];

		buf[fwd_n] = 0;
		expect_bad(buf, len);
		buf[fwd_n] = 1;
		buf[rev_n] = 0;
		expect_bad(buf, len);
		buf[rev_n] = 1;
		/* 17 forward hops, all present. */
		memcpy(big, buf, fwd_n);
		big[fwd_n] = 17;
		for (unsigned i = 0; i < 17; i++)
			memcpy(big + fwd_n + 1 + 80 * i, buf + fwd_n + 1, 80);
		memcpy(big + fwd_n + 1 + 80 * 17, buf + rev_n, 81);
		expect_bad(big, fwd_n + 1 + 80 * 17 + 81);
		big[fwd_n] = 1;
		expect_bad(big, fwd_n + 1 + 80 * 17 + 81);
	}
	m.u.build.rev_n = 0;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	m.u.build.rev_n = 17;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
}

static void test_bad_values(void **state)
{
	uint8_t buf[HW_SETUP_MSG_MAX + 300];
	struct hw_setup_msg m, d;
	size_t len;

	/* Unknown types. */
	static const uint8_t t0[] = {0, 0, 0, 0, 1, 1};
	static const uint8_t t9[] = {9, 0, 0, 0, 1, 1};
	expect_bad(t0, sizeof(t0));
	expect_bad(t9, sizeof(t9));
	assert_int_equal(hw_setup_msg_decode(t9, sizeof(t9), &d), HW_EPROTO);
	assert_int_equal(d.type, 9);
	assert_int_equal(d.req, 1);
	memset(&m, 0, sizeof(m));
	m.type = 9;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);

	/* Over the largest message: refused before anything else, the
	 * header still reported. */
	memset(buf, 0, sizeof(buf));
	buf[0] = HW_SETUP_RESULT;
	buf[4] = 77;
	assert_int_equal(hw_setup_msg_decode(buf, HW_SETUP_MSG_MAX + 1, &d),
			 HW_EPROTO);
	assert_int_equal(d.type, HW_SETUP_RESULT);
	assert_int_equal(d.req, 77);

	/* Unknown status in RESULT, RESERVED, BUILT. */
	msg_fill(&m, HW_SETUP_RESULT, 0);
	encode_ok(&m, buf, &len);
	buf[5] = HW_SETUP_STATUS_MAX + 1;
	expect_bad(buf, len);
	m.u.result.status = HW_SETUP_STATUS_MAX + 1;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	msg_fill(&m, HW_SETUP_RESERVED, 0);
	encode_ok(&m, buf, &len);
	buf[5] = 200;
	buf[6] = 0;
	expect_bad(buf, 7);
	msg_fill(&m, HW_SETUP_BUILT, 1);
	encode_ok(&m, buf, &len);
	buf[5] = 5;
	expect_bad(buf, len);

	/* Zero and repeated IDs. */
	msg_fill(&m, HW_SETUP_RESERVED, 1);
	m.u.reserved.ids[3] = 0;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	msg_fill(&m, HW_SETUP_RESERVED, 1);
	encode_ok(&m, buf, &len);
	memcpy(buf + 7 + 4 * 15, buf + 7, 4);
	expect_bad(buf, len);
	memset(buf + 7 + 4 * 15, 0, 4);
	expect_bad(buf, len);
	msg_fill(&m, HW_SETUP_DEL_RULES, 1);
	encode_ok(&m, buf, &len);
	memcpy(buf + 6 + 4 * 63, buf + 6 + 4 * 10, 4);
	expect_bad(buf, len);
	memset(buf + 6, 0, 4);
	expect_bad(buf, len);
	msg_fill(&m, HW_SETUP_ADD_RULES, 1);
	m.u.add_rules.rules[15].id = m.u.add_rules.rules[0].id;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);

	/* BUILT: IDs must match the status. */
	msg_fill(&m, HW_SETUP_BUILT, 0);
	m.u.built.rev_recv_id = 0;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	msg_fill(&m, HW_SETUP_BUILT, 0);
	encode_ok(&m, buf, &len);
	buf[5] = HW_SETUP_REFUSED; /* failure, yet IDs */
	expect_bad(buf, len);
	buf[5] = HW_SETUP_OK;
	memset(buf + len - 4, 0, 4); /* success without rev_recv_id */
	expect_bad(buf, len);

	/* INCOMING: zero IDs, zero ports. */
	msg_fill(&m, HW_SETUP_INCOMING, 0);
	encode_ok(&m, buf, &len);
	memset(buf + len - 8, 0, 4);
	expect_bad(buf, len);
	msg_fill(&m, HW_SETUP_INCOMING, 0);
	encode_ok(&m, buf, &len);
	memset(buf + 5 + 32, 0, 2); /* src_port */
	expect_bad(buf, len);
	m.u.incoming.desc.dst_port = 0;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);

	/* BUILD: keepalive out of range, zero port. */
	msg_fill(&m, HW_SETUP_BUILD, 1);
	m.u.build.keepalive_ms = HW_RULE_KEEPALIVE_MIN_MS - 1;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	m.u.build.keepalive_ms = HW_RULE_KEEPALIVE_MAX_MS + 1;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	msg_fill(&m, HW_SETUP_BUILD, 1);
	encode_ok(&m, buf, &len);
	memcpy(buf + 5 + 68, "\x00\x00\x03\xe7", 4); /* 999 */
	expect_bad(buf, len);
	memcpy(buf + 5 + 68, "\x00\x36\xee\x81", 4); /* 3600001 */
	expect_bad(buf, len);
	memcpy(buf + 5 + 68, "\x00\x36\xee\x80", 4); /* 3600000 */
	assert_int_equal(hw_setup_msg_decode(buf, len, &d), 0);
	memset(buf + 5 + 66, 0, 2); /* dst_port */
	expect_bad(buf, len);
}

static void test_bad_rule(void **state)
{
	uint8_t buf[HW_SETUP_MSG_MAX];
	struct hw_setup_msg m;
	size_t len, second = 6 + HW_RULE_ENC_LEN;

	msg_fill(&m, HW_SETUP_ADD_RULES, 1);
	encode_ok(&m, buf, &len);
	buf[second + 4] = 9; /* unknown kind */
	expect_bad(buf, len);
	encode_ok(&m, buf, &len);
	memset(buf + second, 0, 4); /* id 0 */
	expect_bad(buf, len);
	encode_ok(&m, buf, &len);
	memset(buf + second + 5, 0, 4); /* keepalive 0 */
	expect_bad(buf, len);
	/* The encoder will not send a rule the receiver refuses. */
	m.u.add_rules.rules[5].kind = (enum hw_rule_kind)9;
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	msg_fill(&m, HW_SETUP_ADD_RULES, 1);
	m.u.add_rules.rules[1].next_id = 0; /* a FORWARD rule */
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
}

static void result_bytes(uint8_t *buf, const char *text, size_t n)
{
	buf[0] = HW_SETUP_RESULT;
	memset(buf + 1, 0, 4);
	buf[5] = HW_SETUP_REFUSED;
	memcpy(buf + 6, text, n);
}

static void test_text(void **state)
{
	static const char *const bad[] = {
		"\x80",             /* lone continuation byte */
		"\xc0\xaf",         /* overlong '/' */
		"\xc1\xbf",         /* overlong */
		"\xe0\x80\xaf",     /* overlong, 3 bytes */
		"\xf0\x80\x80\xaf", /* overlong, 4 bytes */
		"\xed\xa0\x80",     /* surrogate U+D800 */
		"\xf4\x90\x80\x80", /* U+110000 */
		"\xf5\x80\x80\x80", /* not a lead byte */
		"\xff",
		"ok\xe2\x82",       /* truncated at the end */
		"\xe2\x28\xac",     /* bad continuation */
		"line\nbreak",      /* C0 control */
		"esc\x1b[2J",
		"del\x7f",
		"\xc2\x85",         /* C1 control NEL */
		"\xc2\x9b",         /* C1 CSI */
	};
	static const char *const good[] = {
		"", "bad request", "\xc2\xa0", "\xc3\xa9t\xc3\xa9",
		"\xe2\x82\xac", "\xef\xbf\xbd", "\xf0\x9f\x98\x80",
		"\xf4\x8f\xbf\xbf", "~",
	};
	uint8_t buf[HW_SETUP_MSG_MAX];
	struct hw_setup_msg m, d;
	size_t len;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		result_bytes(buf, bad[i], strlen(bad[i]));
		expect_bad(buf, 6 + strlen(bad[i]));
		memset(&m, 0, sizeof(m));
		m.type = HW_SETUP_RESULT;
		strcpy(m.u.result.text, bad[i]);
		assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf),
						     &len),
				 -EINVAL);
		/* The same text in BUILT. */
		memset(&m, 0, sizeof(m));
		m.type = HW_SETUP_BUILT;
		m.u.built.status = HW_SETUP_REFUSED;
		strcpy(m.u.built.text, bad[i]);
		assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf),
						     &len),
				 -EINVAL);
		strcpy(m.u.built.text, "x");
		encode_ok(&m, buf, &len);
		/* Swap the text for the bad one, byte by byte. */
		{
			uint8_t raw[64];
			size_t n = strlen(bad[i]);

			memcpy(raw, buf, 6);
			raw[6] = (uint8_t)n;
			memcpy(raw + 7, bad[i], n);
			memset(raw + 7 + n, 0, 8);
			expect_bad(raw, 15 + n);
		}
	}
	/* A NUL inside the text. */
	result_bytes(buf, "a\0b", 3);
	expect_bad(buf, 9);

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		result_bytes(buf, good[i], strlen(good[i]));
		assert_int_equal(hw_setup_msg_decode(buf, 6 + strlen(good[i]),
						     &d),
				 0);
		assert_string_equal(d.u.result.text, good[i]);
	}

	/* 201 bytes: too long in RESULT and in BUILT, both ways. */
	{
		char a201[201];

		memset(a201, 'a', sizeof(a201));
		result_bytes(buf, a201, sizeof(a201));
	}
	expect_bad(buf, 6 + 201);
	assert_int_equal(hw_setup_msg_decode(buf, 6 + 200, &d), 0);
	assert_int_equal(strlen(d.u.result.text), 200);
	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_RESULT;
	memset(m.u.result.text, 'a', sizeof(m.u.result.text)); /* no NUL */
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_BUILT;
	m.u.built.status = HW_SETUP_REFUSED;
	memset(m.u.built.text, 'a', sizeof(m.u.built.text));
	assert_int_equal(hw_setup_msg_encode(&m, buf, sizeof(buf), &len),
			 -EINVAL);
	{
		uint8_t raw[5 + 2 + 201 + 8] = {HW_SETUP_BUILT, 0, 0, 0, 0,
						HW_SETUP_REFUSED, 201};
		memset(raw + 7, 'a', 201);
		expect_bad(raw, sizeof(raw));
		/* Length 200 with one byte more before the IDs. */
		raw[6] = 200;
		expect_bad(raw, sizeof(raw));
		raw[207] = 0; /* now the 200 bytes, zero IDs, one byte over */
		expect_bad(raw, sizeof(raw));
		assert_int_equal(hw_setup_msg_decode(raw, sizeof(raw) - 1, &d),
				 0);
		assert_int_equal(strlen(d.u.built.text), 200);
	}
}

static void test_names(void **state)
{
	assert_string_equal(hw_setup_msg_name(HW_SETUP_RESERVE), "reserve");
	assert_string_equal(hw_setup_msg_name(HW_SETUP_ADD_RULES),
			    "add_rules");
	assert_string_equal(hw_setup_msg_name(HW_SETUP_INCOMING), "incoming");
	assert_string_equal(hw_setup_msg_name(0), "unknown");
	assert_string_equal(hw_setup_msg_name(9), "unknown");
	assert_string_equal(hw_setup_status_name(HW_SETUP_NO_TP),
			    "no such transport");
	assert_string_equal(hw_setup_status_name(5), "unknown");
	assert_int_equal(HW_SETUP_PKT_TYPE, 7);
}

/* A line of n hops over visors 1 .. n + 1. */
static void line(struct hw_setup_hop *h, unsigned n, uint8_t from[HW_PK_LEN],
		 uint8_t to[HW_PK_LEN])
{
	for (unsigned i = 0; i < n; i++)
		hop_fill(&h[i], i);
	pk_fill(from, 1);
	pk_fill(to, (uint8_t)(n + 1));
}

static void expect_path_err(const struct hw_setup_hop *h, unsigned n,
			    const uint8_t *from, const uint8_t *to,
			    const char *want1, const char *want2)
{
	char err[201];

	memset(err, 0, sizeof(err));
	assert_int_equal(hw_setup_path_check(h, n, from, to, err, sizeof(err)),
			 -EINVAL);
	if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
		fail_msg("error '%s' lacks '%s' / '%s'", err, want1,
			 want2 ? want2 : "");
	/* Room for "reverse path: " in a BUILT text. */
	assert_true(strlen(err) <= 180);
	assert_int_equal(hw_setup_path_check(h, n, from, to, NULL, 0),
			 -EINVAL);
}

static void test_path(void **state)
{
	struct hw_setup_hop h[HW_SETUP_HOPS_MAX + 1];
	uint8_t from[HW_PK_LEN], to[HW_PK_LEN], other[HW_PK_LEN];
	char err[201], k[HW_PK_HEXLEN + 1];

	/* Good lines of 1, 3 and 16 hops. */
	line(h, 1, from, to);
	assert_int_equal(hw_setup_path_check(h, 1, from, to, err, sizeof(err)),
			 0);
	line(h, 3, from, to);
	assert_int_equal(hw_setup_path_check(h, 3, from, to, err, sizeof(err)),
			 0);
	line(h, 16, from, to);
	assert_int_equal(hw_setup_path_check(h, 16, from, to, NULL, 0), 0);

	/* Too short, too long. */
	expect_path_err(h, 0, from, to, "path has 0 hops, not 1..16", NULL);
	line(h, 17, from, to);
	expect_path_err(h, 17, from, to, "path has 17 hops", NULL);

	/* Broken chain: hop 16 of 16 starts at visor 0x63. */
	line(h, 16, from, to);
	pk_fill(h[15].from, 0x63);
	hw_pk_format(h[15].from, k);
	expect_path_err(h, 16, from, to, "hop 16: starts at ", k);
	expect_path_err(h, 16, from, to, "not where hop 15 ended (1010", NULL);
	line(h, 3, from, to);
	pk_fill(h[1].from, 0x63);
	expect_path_err(h, 3, from, to,
			"hop 2: starts at 6363", "not where hop 1 ended (0202");

	/* Wrong start, wrong end. */
	line(h, 3, from, to);
	pk_fill(other, 0x77);
	expect_path_err(h, 3, other, to, "hop 1: starts at 0101",
			"not at the path's start 7777");
	expect_path_err(h, 3, from, other, "hop 3: ends at 0404",
			"not at the path's end 7777");

	/* Loops: back to the start, back to a middle visor, a hop onto
	 * itself; and a path from a visor to itself. */
	line(h, 3, from, to);
	pk_fill(h[1].to, 1);
	pk_fill(h[2].from, 1);
	expect_path_err(h, 3, from, to, "hop 2: returns to 0101", "loop");
	line(h, 4, from, to);
	pk_fill(h[2].to, 2);
	pk_fill(h[3].from, 2);
	expect_path_err(h, 4, from, to, "hop 3: returns to 0202", "loop");
	line(h, 3, from, to);
	pk_fill(h[1].to, 2);
	pk_fill(h[2].from, 2);
	expect_path_err(h, 3, from, to, "hop 2: returns to 0202", NULL);
	line(h, 2, from, to);
	expect_path_err(h, 2, from, from, "path starts and ends at 0101",
			NULL);

	/* A transport ID of zeros. */
	line(h, 3, from, to);
	memset(h[2].tp_id, 0, HW_TP_ID_LEN);
	expect_path_err(h, 3, from, to, "hop 3: transport ID is all zero",
			NULL);

	/* A small error buffer is cut, not overrun. */
	line(h, 3, from, to);
	pk_fill(h[1].from, 0x63);
	memset(err, 'z', sizeof(err));
	assert_int_equal(hw_setup_path_check(h, 3, from, to, err, 8), -EINVAL);
	assert_string_equal(err, "hop 2: ");
	assert_int_equal(err[8], 'z');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_all),
		cmocka_unit_test(test_exact_bytes),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_bad_rule),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
