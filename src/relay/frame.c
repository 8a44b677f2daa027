#include "relay/frame.h"

#include <sodium.h>
#include <string.h>

#include "util/err.h"

void hw_relay_put_header(uint8_t out[HW_RELAY_HDR], uint8_t type,
			 uint32_t stream, uint16_t len)
{
	out[0] = type;
	out[1] = (uint8_t)(stream >> 24);
	out[2] = (uint8_t)(stream >> 16);
	out[3] = (uint8_t)(stream >> 8);
	out[4] = (uint8_t)stream;
	out[5] = (uint8_t)(len >> 8);
	out[6] = (uint8_t)len;
}

void hw_relay_get_header(const uint8_t in[HW_RELAY_HDR],
			 struct hw_relay_frame *f)
{
	f->type = in[0];
	f->stream = (uint32_t)in[1] << 24 | (uint32_t)in[2] << 16 |
		    (uint32_t)in[3] << 8 | in[4];
	f->len = (uint16_t)(in[5] << 8 | in[6]);
	f->body = NULL;
}

int hw_relay_check_unit(const struct hw_relay_frame *f)
{
	switch (f->type) {
	case HW_RELAY_SEALED:
		return f->stream == 0 && f->len >= HW_RELAY_SEALED_MIN
			       ? 0
			       : HW_EPROTO;
	case HW_RELAY_DATA:
		return f->stream != 0 && f->len >= 1 ? 0 : HW_EPROTO;
	default:
		return HW_EPROTO;
	}
}

int hw_relay_check_control(const struct hw_relay_frame *f)
{
	int need_stream = 1, ok;

	switch (f->type) {
	case HW_RELAY_OPEN:
		ok = f->len == HW_RELAY_OPEN_LEN;
		break;
	case HW_RELAY_ACCEPT:
		ok = f->len == 0;
		break;
	case HW_RELAY_REFUSE:
		ok = f->len >= 1 && f->len <= 1 + HW_RELAY_TEXT_MAX &&
		     f->body[0] >= 1 && f->body[0] <= HW_RELAY_REFUSE_MAX;
		break;
	case HW_RELAY_CREDIT:
		ok = f->len == 4 && (f->body[0] | f->body[1] | f->body[2] |
				     f->body[3]) != 0;
		break;
	case HW_RELAY_CLOSE:
		ok = f->len == 1 && f->body[0] <= HW_RELAY_CLOSE_MAX;
		break;
	case HW_RELAY_PING:
	case HW_RELAY_PONG:
		need_stream = 0;
		ok = f->len == HW_RELAY_PING_LEN;
		break;
	case HW_RELAY_ERROR:
		need_stream = 0;
		ok = f->len <= HW_RELAY_TEXT_MAX;
		break;
	default:
		return HW_EPROTO;
	}
	if (!ok || (need_stream ? f->stream == 0 : f->stream != 0))
		return HW_EPROTO;
	return 0;
}

int hw_relay_next_control(const uint8_t *buf, size_t len, size_t *off,
			  struct hw_relay_frame *f)
{
	size_t avail;

	if (*off >= len)
		return 0;
	avail = len - *off;
	if (avail < HW_RELAY_HDR)
		return HW_EPROTO;
	hw_relay_get_header(buf + *off, f);
	if (avail - HW_RELAY_HDR < f->len)
		return HW_EPROTO;
	f->body = buf + *off + HW_RELAY_HDR;
	if (hw_relay_check_control(f))
		return HW_EPROTO;
	*off += HW_RELAY_HDR + f->len;
	return 1;
}

uint32_t hw_relay_credit_value(const struct hw_relay_frame *f)
{
	const uint8_t *b = f->body;
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	       (uint32_t)b[2] << 8 | b[3];
}

const char *hw_relay_type_name(uint8_t type)
{
	switch (type) {
	case HW_RELAY_SEALED: return "sealed";
	case HW_RELAY_DATA: return "data";
	case HW_RELAY_OPEN: return "open";
	case HW_RELAY_ACCEPT: return "accept";
	case HW_RELAY_REFUSE: return "refuse";
	case HW_RELAY_CREDIT: return "credit";
	case HW_RELAY_CLOSE: return "close";
	case HW_RELAY_PING: return "ping";
	case HW_RELAY_PONG: return "pong";
	case HW_RELAY_ERROR: return "error";
	default: return "unknown";
	}
}

const char *hw_relay_refuse_text(uint8_t reason)
{
	switch (reason) {
	case HW_RELAY_REFUSE_NO_SESSION:
		return "relay has no session with the peer";
	case HW_RELAY_REFUSE_REFUSED: return "peer refused";
	case HW_RELAY_REFUSE_STREAM_LIMIT: return "relay stream limit";
	case HW_RELAY_REFUSE_BUFFER_LIMIT: return "relay buffer limit";
	case HW_RELAY_REFUSE_BAD_REQUEST: return "bad request";
	case HW_RELAY_REFUSE_TIMEOUT: return "timed out";
	case HW_RELAY_REFUSE_SHUTDOWN: return "relay shutting down";
	default: return "refused";
	}
}

void hw_relay_text_sanitize(const uint8_t *p, size_t n, char *out,
			    size_t cap)
{
	size_t i;

	if (cap == 0)
		return;
	for (i = 0; i < n && i + 1 < cap; i++)
		out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	out[i] = '\0';
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Body offsets. */
#define OFF_INITIATOR 0
#define OFF_TARGET 32
#define OFF_RELAY 64
#define OFF_TS 96
#define OFF_NONCE 104
#define OFF_SIG 120

void hw_relay_open_encode(const struct hw_relay_open *o,
			  uint8_t out[HW_RELAY_OPEN_LEN])
{
	memcpy(out + OFF_INITIATOR, o->initiator, HW_PK_LEN);
	memcpy(out + OFF_TARGET, o->target, HW_PK_LEN);
	memcpy(out + OFF_RELAY, o->relay, HW_PK_LEN);
	put_u64(out + OFF_TS, o->ts_ms);
	memcpy(out + OFF_NONCE, o->nonce, HW_RELAY_NONCE_LEN);
	memcpy(out + OFF_SIG, o->sig, HW_SIG_LEN);
}

int hw_relay_open_decode(struct hw_relay_open *o, const uint8_t *in,
			 size_t len)
{
	if (len != HW_RELAY_OPEN_LEN)
		return HW_EPROTO;
	memcpy(o->initiator, in + OFF_INITIATOR, HW_PK_LEN);
	memcpy(o->target, in + OFF_TARGET, HW_PK_LEN);
	memcpy(o->relay, in + OFF_RELAY, HW_PK_LEN);
	o->ts_ms = get_u64(in + OFF_TS);
	memcpy(o->nonce, in + OFF_NONCE, HW_RELAY_NONCE_LEN);
	memcpy(o->sig, in + OFF_SIG, HW_SIG_LEN);
	return 0;
}

void hw_relay_open_signing_bytes(const struct hw_relay_open *o, uint8_t *out)
{
	uint8_t body[HW_RELAY_OPEN_LEN];

	hw_relay_open_encode(o, body);
	memcpy(out, HW_RELAY_OPEN_CONTEXT, HW_RELAY_OPEN_CONTEXT_LEN);
	memcpy(out + HW_RELAY_OPEN_CONTEXT_LEN, body,
	       HW_RELAY_OPEN_SIGNED_LEN);
}

void hw_relay_open_sign(struct hw_relay_open *o, const struct hw_identity *id)
{
	uint8_t msg[HW_RELAY_OPEN_CONTEXT_LEN + HW_RELAY_OPEN_SIGNED_LEN];

	hw_relay_open_signing_bytes(o, msg);
	hw_identity_sign(id, msg, sizeof(msg), o->sig);
}

int hw_relay_open_verify(const struct hw_relay_open *o)
{
	uint8_t msg[HW_RELAY_OPEN_CONTEXT_LEN + HW_RELAY_OPEN_SIGNED_LEN];

	hw_relay_open_signing_bytes(o, msg);
	return hw_sig_verify(o->initiator, msg, sizeof(msg), o->sig)
		       ? HW_EAUTH
		       : 0;
}

int hw_relay_open_check(const struct hw_relay_open *o,
			const uint8_t self[HW_PK_LEN],
			const uint8_t relay[HW_PK_LEN], uint64_t now_ms)
{
	uint64_t skew;

	if (!memcmp(o->initiator, self, HW_PK_LEN) ||
	    memcmp(o->target, self, HW_PK_LEN) ||
	    memcmp(o->relay, relay, HW_PK_LEN))
		return HW_EPROTO;
	skew = o->ts_ms > now_ms ? o->ts_ms - now_ms : now_ms - o->ts_ms;
	if (skew > HW_RELAY_OPEN_SKEW_MS)
		return HW_EPROTO;
	return hw_relay_open_verify(o);
}
