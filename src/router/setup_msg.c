#include "router/setup_msg.h"

#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "wire/packet.h"

_Static_assert(HW_SETUP_PKT_TYPE == HW_PKT_SETUP, "packet.h's SETUP");
_Static_assert(HW_SETUP_MSG_MAX <= HW_PACKET_MAX_PAYLOAD,
	       "a setup message must fit one packet");
_Static_assert(HW_SETUP_MSG_MAX == 2639, "docs/routing.md says 2639");
/* BUILD is the largest body; the others, at their maximum counts: */
_Static_assert(1 + HW_SETUP_RULES_MAX * HW_RULE_ENC_LEN <= HW_SETUP_BUILD_MAX,
	       "ADD_RULES");
_Static_assert(1 + HW_SETUP_DEL_MAX * 4 <= HW_SETUP_BUILD_MAX, "DEL_RULES");
_Static_assert(2 + HW_SETUP_TEXT_MAX + 8 <= HW_SETUP_BUILD_MAX, "BUILT");
_Static_assert(HW_SETUP_TEXT_MAX <= 255, "BUILT's text length is a u8");

/* A bounded reader: running past the end sets bad instead of reading, so
 * the decoder checks once at the end. */
struct rd {
	const uint8_t *p;
	size_t left;
	int bad;
};

static const uint8_t *take(struct rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || r->left < n) {
		r->bad = 1;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static uint8_t get_u8(struct rd *r)
{
	const uint8_t *p = take(r, 1);
	return p ? p[0] : 0;
}

static uint16_t get_u16(struct rd *r)
{
	const uint8_t *p = take(r, 2);
	return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

static uint32_t get_u32(struct rd *r)
{
	const uint8_t *p = take(r, 4);
	return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
			   (uint32_t)p[2] << 8 | p[3]
		 : 0;
}

static void get_bytes(struct rd *r, void *dst, size_t n)
{
	const uint8_t *p = take(r, n);

	if (p)
		memcpy(dst, p, n);
}

struct wr {
	uint8_t *p;
	size_t left;
	int bad;
};

static void put_bytes(struct wr *w, const void *src, size_t n)
{
	if (w->bad || w->left < n) {
		w->bad = 1;
		return;
	}
	if (n)
		memcpy(w->p, src, n);
	w->p += n;
	w->left -= n;
}

static void put_u8(struct wr *w, uint8_t v)
{
	put_bytes(w, &v, 1);
}

static void put_u16(struct wr *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put_bytes(w, b, 2);
}

static void put_u32(struct wr *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16),
			(uint8_t)(v >> 8), (uint8_t)v};
	put_bytes(w, b, 4);
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF) without control characters (C0, DEL, C1): peer text ends up
 * in logs and CLI output, where controls could forge lines or move the
 * cursor. */
static int text_ok(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t c = p[i], min;
		size_t k;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return 0;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1, c &= 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2, c &= 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3, c &= 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i - 1 < k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return 0;
			c = c << 6 | (p[i + j] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) ||
		    c <= 0x9f)
			return 0;
		i += k + 1;
	}
	return 1;
}

static int text_valid(const char *text)
{
	size_t n = strnlen(text, HW_SETUP_TEXT_MAX + 1);

	return n <= HW_SETUP_TEXT_MAX && text_ok((const uint8_t *)text, n);
}

/* n non-zero IDs, no two alike: a repeated ID in a RESERVED would hand
 * one ID to two rules. n <= 64, so the quadratic scan is cheap. */
static int ids_valid(const uint32_t *ids, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (ids[i] == 0)
			return 0;
		for (unsigned j = 0; j < i; j++)
			if (ids[j] == ids[i])
				return 0;
	}
	return 1;
}

static int desc_valid(const struct hw_route_desc *d)
{
	return d->src_port != 0 && d->dst_port != 0;
}

/* The rules of the protocol on a decoded (or to-be-encoded) message,
 * apart from the rules themselves, which hw_rule_decode checks. */
static int msg_valid(const struct hw_setup_msg *m)
{
	const unsigned ka_min = HW_RULE_KEEPALIVE_MIN_MS,
		       ka_max = HW_RULE_KEEPALIVE_MAX_MS;
	uint32_t ids[HW_SETUP_RULES_MAX];

	switch (m->type) {
	case HW_SETUP_RESERVE:
		return m->u.reserve.count >= 1 &&
		       m->u.reserve.count <= HW_SETUP_RESERVE_MAX;
	case HW_SETUP_RESERVED:
		if (m->u.reserved.status > HW_SETUP_STATUS_MAX)
			return 0;
		if (m->u.reserved.status != HW_SETUP_OK)
			return m->u.reserved.count == 0;
		return m->u.reserved.count >= 1 &&
		       m->u.reserved.count <= HW_SETUP_RESERVE_MAX &&
		       ids_valid(m->u.reserved.ids, m->u.reserved.count);
	case HW_SETUP_ADD_RULES:
		if (m->u.add_rules.count < 1 ||
		    m->u.add_rules.count > HW_SETUP_RULES_MAX)
			return 0;
		for (unsigned i = 0; i < m->u.add_rules.count; i++)
			ids[i] = m->u.add_rules.rules[i].id;
		return ids_valid(ids, m->u.add_rules.count);
	case HW_SETUP_RESULT:
		return m->u.result.status <= HW_SETUP_STATUS_MAX &&
		       text_valid(m->u.result.text);
	case HW_SETUP_DEL_RULES:
		return m->u.del_rules.count >= 1 &&
		       m->u.del_rules.count <= HW_SETUP_DEL_MAX &&
		       ids_valid(m->u.del_rules.ids, m->u.del_rules.count);
	case HW_SETUP_BUILD:
		return desc_valid(&m->u.build.desc) &&
		       m->u.build.keepalive_ms >= ka_min &&
		       m->u.build.keepalive_ms <= ka_max &&
		       m->u.build.fwd_n >= 1 &&
		       m->u.build.fwd_n <= HW_SETUP_HOPS_MAX &&
		       m->u.build.rev_n >= 1 &&
		       m->u.build.rev_n <= HW_SETUP_HOPS_MAX;
	case HW_SETUP_BUILT:
		if (m->u.built.status > HW_SETUP_STATUS_MAX ||
		    !text_valid(m->u.built.text))
			return 0;
		/* IDs only with success, so a failure cannot be mistaken for
		 * a route. */
		if (m->u.built.status != HW_SETUP_OK)
			return m->u.built.fwd_send_id == 0 &&
			       m->u.built.rev_recv_id == 0;
		return m->u.built.fwd_send_id != 0 &&
		       m->u.built.rev_recv_id != 0;
	case HW_SETUP_INCOMING:
		return desc_valid(&m->u.incoming.desc) &&
		       m->u.incoming.fwd_recv_id != 0 &&
		       m->u.incoming.rev_send_id != 0;
	default:
		return 0;
	}
}

static void put_desc(struct wr *w, const struct hw_route_desc *d)
{
	put_bytes(w, d->src_pk, HW_PK_LEN);
	put_u16(w, d->src_port);
	put_bytes(w, d->dst_pk, HW_PK_LEN);
	put_u16(w, d->dst_port);
}

static void get_desc(struct rd *r, struct hw_route_desc *d)
{
	get_bytes(r, d->src_pk, HW_PK_LEN);
	d->src_port = get_u16(r);
	get_bytes(r, d->dst_pk, HW_PK_LEN);
	d->dst_port = get_u16(r);
}

static void put_hops(struct wr *w, const struct hw_setup_hop *h, unsigned n)
{
	put_u8(w, (uint8_t)n);
	for (unsigned i = 0; i < n; i++) {
		put_bytes(w, h[i].tp_id, HW_TP_ID_LEN);
		put_bytes(w, h[i].from, HW_PK_LEN);
		put_bytes(w, h[i].to, HW_PK_LEN);
	}
}

/* Reads a hop count and the hops; a count out of range marks the reader
 * bad before any hop is read into the fixed array. */
static uint8_t get_hops(struct rd *r, struct hw_setup_hop *h)
{
	uint8_t n = get_u8(r);

	if (n < 1 || n > HW_SETUP_HOPS_MAX) {
		r->bad = 1;
		return 0;
	}
	for (unsigned i = 0; i < n; i++) {
		get_bytes(r, h[i].tp_id, HW_TP_ID_LEN);
		get_bytes(r, h[i].from, HW_PK_LEN);
		get_bytes(r, h[i].to, HW_PK_LEN);
	}
	return n;
}

/* Reads n text bytes into dst (HW_SETUP_TEXT_MAX + 1 bytes) as a C
 * string; n was bounded by the caller. */
static void get_text(struct rd *r, char *dst, size_t n)
{
	const uint8_t *p = take(r, n);

	if (!p)
		return;
	if (!text_ok(p, n)) { /* also refuses NUL, which would cut dst */
		r->bad = 1;
		return;
	}
	memcpy(dst, p, n);
	dst[n] = '\0';
}

int hw_setup_msg_encode(const struct hw_setup_msg *m, uint8_t *out,
			size_t cap, size_t *len)
{
	struct wr w = {out, cap, 0};
	uint8_t rule[HW_RULE_ENC_LEN];
	struct hw_rule back;
	size_t n;

	if (!msg_valid(m))
		return -EINVAL;
	put_u8(&w, m->type);
	put_u32(&w, m->req);
	switch (m->type) {
	case HW_SETUP_RESERVE:
		put_u8(&w, m->u.reserve.count);
		break;
	case HW_SETUP_RESERVED:
		put_u8(&w, m->u.reserved.status);
		put_u8(&w, m->u.reserved.count);
		for (unsigned i = 0; i < m->u.reserved.count; i++)
			put_u32(&w, m->u.reserved.ids[i]);
		break;
	case HW_SETUP_ADD_RULES:
		put_u8(&w, m->u.add_rules.count);
		for (unsigned i = 0; i < m->u.add_rules.count; i++) {
			hw_rule_encode(&m->u.add_rules.rules[i], rule);
			/* The receiver decodes with hw_rule_decode: a rule it
			 * would refuse is not sent. */
			if (hw_rule_decode(rule, sizeof(rule), &back))
				return -EINVAL;
			put_bytes(&w, rule, sizeof(rule));
		}
		break;
	case HW_SETUP_RESULT:
		n = strlen(m->u.result.text);
		put_u8(&w, m->u.result.status);
		put_bytes(&w, m->u.result.text, n);
		break;
	case HW_SETUP_DEL_RULES:
		put_u8(&w, m->u.del_rules.count);
		for (unsigned i = 0; i < m->u.del_rules.count; i++)
			put_u32(&w, m->u.del_rules.ids[i]);
		break;
	case HW_SETUP_BUILD:
		put_desc(&w, &m->u.build.desc);
		put_u32(&w, m->u.build.keepalive_ms);
		put_hops(&w, m->u.build.fwd, m->u.build.fwd_n);
		put_hops(&w, m->u.build.rev, m->u.build.rev_n);
		break;
	case HW_SETUP_BUILT:
		n = strlen(m->u.built.text);
		put_u8(&w, m->u.built.status);
		put_u8(&w, (uint8_t)n);
		put_bytes(&w, m->u.built.text, n);
		put_u32(&w, m->u.built.fwd_send_id);
		put_u32(&w, m->u.built.rev_recv_id);
		break;
	case HW_SETUP_INCOMING:
		put_desc(&w, &m->u.incoming.desc);
		put_u32(&w, m->u.incoming.fwd_recv_id);
		put_u32(&w, m->u.incoming.rev_send_id);
		break;
	}
	if (w.bad)
		return -ENOBUFS;
	*len = cap - w.left;
	return 0;
}

int hw_setup_msg_decode(const uint8_t *in, size_t len,
			struct hw_setup_msg *m)
{
	struct rd r = {in, len, 0};
	const uint8_t *p;
	unsigned n;

	memset(m, 0, sizeof(*m));
	if (len < HW_SETUP_HDR || len > HW_SETUP_MSG_MAX)
		goto bad_hdr;
	m->type = get_u8(&r);
	m->req = get_u32(&r);
	switch (m->type) {
	case HW_SETUP_RESERVE:
		m->u.reserve.count = get_u8(&r);
		break;
	case HW_SETUP_RESERVED:
		m->u.reserved.status = get_u8(&r);
		n = m->u.reserved.count = get_u8(&r);
		if (n > HW_SETUP_RESERVE_MAX)
			return HW_EPROTO;
		for (unsigned i = 0; i < n; i++)
			m->u.reserved.ids[i] = get_u32(&r);
		break;
	case HW_SETUP_ADD_RULES:
		n = m->u.add_rules.count = get_u8(&r);
		if (n > HW_SETUP_RULES_MAX)
			return HW_EPROTO;
		for (unsigned i = 0; i < n; i++) {
			p = take(&r, HW_RULE_ENC_LEN);
			if (!p)
				return HW_EPROTO;
			if (hw_rule_decode(p, HW_RULE_ENC_LEN,
					   &m->u.add_rules.rules[i]))
				return HW_EPROTO;
		}
		break;
	case HW_SETUP_RESULT:
		m->u.result.status = get_u8(&r);
		if (r.left > HW_SETUP_TEXT_MAX)
			return HW_EPROTO;
		get_text(&r, m->u.result.text, r.left);
		break;
	case HW_SETUP_DEL_RULES:
		n = m->u.del_rules.count = get_u8(&r);
		if (n > HW_SETUP_DEL_MAX)
			return HW_EPROTO;
		for (unsigned i = 0; i < n; i++)
			m->u.del_rules.ids[i] = get_u32(&r);
		break;
	case HW_SETUP_BUILD:
		get_desc(&r, &m->u.build.desc);
		m->u.build.keepalive_ms = get_u32(&r);
		m->u.build.fwd_n = get_hops(&r, m->u.build.fwd);
		m->u.build.rev_n = get_hops(&r, m->u.build.rev);
		break;
	case HW_SETUP_BUILT:
		m->u.built.status = get_u8(&r);
		n = get_u8(&r);
		if (n > HW_SETUP_TEXT_MAX)
			return HW_EPROTO;
		get_text(&r, m->u.built.text, n);
		m->u.built.fwd_send_id = get_u32(&r);
		m->u.built.rev_recv_id = get_u32(&r);
		break;
	case HW_SETUP_INCOMING:
		get_desc(&r, &m->u.incoming.desc);
		m->u.incoming.fwd_recv_id = get_u32(&r);
		m->u.incoming.rev_send_id = get_u32(&r);
		break;
	default:
		return HW_EPROTO;
	}
	if (r.bad || r.left != 0 || !msg_valid(m))
		return HW_EPROTO;
	return 0;

bad_hdr:
	/* Still report a header that is there, so an oversized request
	 * gets its "bad request". */
	if (len >= HW_SETUP_HDR) {
		m->type = in[0];
		m->req = (uint32_t)in[1] << 24 | (uint32_t)in[2] << 16 |
			 (uint32_t)in[3] << 8 | in[4];
	}
	return HW_EPROTO;
}

const char *hw_setup_msg_name(uint8_t type)
{
	static const char *const names[] = {
		"unknown", "reserve", "reserved", "add_rules", "result",
		"del_rules", "build", "built", "incoming",
	};
	return type <= HW_SETUP_TYPE_MAX ? names[type] : "unknown";
}

const char *hw_setup_status_name(uint8_t status)
{
	static const char *const names[] = {
		"ok", "refused", "no such transport", "limit", "internal",
	};
	return status <= HW_SETUP_STATUS_MAX ? names[status] : "unknown";
}

static int is_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

int hw_setup_path_check(const struct hw_setup_hop *hops, unsigned n,
			const uint8_t from[HW_PK_LEN],
			const uint8_t to[HW_PK_LEN], char *err, size_t errlen)
{
	char a[HW_PK_HEXLEN + 1], b[HW_PK_HEXLEN + 1];

	if (n < 1 || n > HW_SETUP_HOPS_MAX) {
		if (errlen)
			snprintf(err, errlen, "path has %u hops, not 1..%d", n,
				 HW_SETUP_HOPS_MAX);
		return -EINVAL;
	}
	if (memcmp(from, to, HW_PK_LEN) == 0) {
		hw_pk_format(from, a);
		if (errlen)
			snprintf(err, errlen, "path starts and ends at %s", a);
		return -EINVAL;
	}
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *start = i ? hops[i - 1].to : from;

		if (is_zero(hops[i].tp_id, HW_TP_ID_LEN)) {
			if (errlen)
				snprintf(err, errlen,
					 "hop %u: transport ID is all zero",
					 i + 1);
			return -EINVAL;
		}
		if (memcmp(hops[i].from, start, HW_PK_LEN) != 0) {
			hw_pk_format(hops[i].from, a);
			hw_pk_format(start, b);
			if (errlen && i == 0)
				snprintf(err, errlen,
					 "hop 1: starts at %s, not at the "
					 "path's start %s",
					 a, b);
			else if (errlen)
				snprintf(err, errlen,
					 "hop %u: starts at %s, not where hop "
					 "%u ended (%s)",
					 i + 1, a, i, b);
			return -EINVAL;
		}
		/* Loopless: the hop's end is none of the visors before it
		 * (the start and every earlier hop's end). */
		for (unsigned j = 0; j <= i; j++) {
			const uint8_t *seen = j ? hops[j - 1].to : from;

			if (memcmp(hops[i].to, seen, HW_PK_LEN) == 0) {
				hw_pk_format(hops[i].to, a);
				if (errlen)
					snprintf(err, errlen,
						 "hop %u: returns to %s, "
						 "already on the path (a "
						 "loop)",
						 i + 1, a);
				return -EINVAL;
			}
		}
	}
	if (memcmp(hops[n - 1].to, to, HW_PK_LEN) != 0) {
		hw_pk_format(hops[n - 1].to, a);
		hw_pk_format(to, b);
		if (errlen)
			snprintf(err, errlen,
				 "hop %u: ends at %s, not at the path's end %s",
				 n, a, b);
		return -EINVAL;
	}
	return 0;
}

void hw_setup_text_set(char out[HW_SETUP_TEXT_MAX + 1], const char *text)
{
	size_t n = strlen(text);

	if (n > HW_SETUP_TEXT_MAX)
		n = HW_SETUP_TEXT_MAX;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)text[i];
		out[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
	}
	out[n] = '\0';
}

int hw_setup_msg_send(struct hw_tp *tp, const struct hw_setup_msg *m)
{
	uint8_t buf[HW_SETUP_MSG_MAX];
	size_t len;
	int rc;

	if ((rc = hw_setup_msg_encode(m, buf, sizeof(buf), &len)))
		return rc;
	return hw_tp_send(tp, HW_PKT_SETUP, 0, buf, (uint16_t)len);
}

int hw_setup_result_send(struct hw_tp *tp, uint32_t req, uint8_t status,
			 const char *text)
{
	struct hw_setup_msg m;

	memset(&m, 0, sizeof(m));
	m.type = HW_SETUP_RESULT;
	m.req = req;
	m.u.result.status = status;
	hw_setup_text_set(m.u.result.text, text);
	return hw_setup_msg_send(tp, &m);
}
