#include "relay/wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/client.h"
#include "util/err.h"
#include "wire/nstream.h"

/* A relay session is a Noise stream (wire/nstream.c) framed as units:
 * SEALED units carry control frames sealed by the engine, DATA units the
 * owner's payload written zero-copy. This file is that framing, the
 * wire's own frames (PING, PONG, ERROR) and the keepalive. */
#define CTL_MIN 256 /* plaintext room of a fresh control frame buffer */

/* Lives in its stream's private area (one allocation per session). */
struct hw_relay_wire {
	struct hw_nstream *s;
	const struct hw_relay_wire_ops *ops;
	void *ud;
	uint64_t last_rx, last_tx, pings;
	unsigned keepalive_ms;
};

static uint64_t now_ms(const struct hw_relay_wire *w)
{
	return uv_now(hw_nstream_loop(w->s));
}

void hw_relay_wire_close(struct hw_relay_wire *w, int reason, int graceful)
{
	hw_nstream_close(w->s, reason, graceful);
}

void hw_relay_wire_fail(struct hw_relay_wire *w, int reason,
			const char *fmt, ...)
{
	char msg[160];
	size_t n;
	va_list ap;

	if (hw_nstream_is_closing(w->s))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hw_nstream_set_error(w->s, "%s", msg);
	if (hw_nstream_is_ready(w->s)) {
		n = strlen(msg);
		if (n > HW_RELAY_TEXT_MAX)
			n = HW_RELAY_TEXT_MAX;
		/* Best effort: the session ends either way. */
		hw_relay_wire_send_control(w, HW_RELAY_ERROR, 0,
					   (const uint8_t *)msg, n);
	}
	hw_relay_wire_close(w, reason, 1);
}

/* ---- sending ---- */

int hw_relay_wire_send_control(struct hw_relay_wire *w, uint8_t type,
			       uint32_t stream, const uint8_t *body,
			       size_t len)
{
	size_t n = HW_RELAY_HDR + len;
	uint8_t *dst;
	int rc;

	if (!hw_nstream_is_ready(w->s))
		return -ENOTCONN;
	if (len > 1 + HW_RELAY_TEXT_MAX)
		return -EINVAL;
	if (hw_nstream_queued_sealed(w->s) + n > HW_RELAY_WIRE_MAX_QUEUED)
		return -ENOBUFS;
	if ((rc = hw_nstream_reserve(w->s, n, 0, &dst)))
		return rc;
	hw_relay_put_header(dst, type, stream, (uint16_t)len);
	if (len)
		memcpy(dst + HW_RELAY_HDR, body, len);
	w->last_tx = now_ms(w);
	/* Idle wire: sealed and sent now. Busy wire: frames gather until
	 * the write in flight completes. */
	return hw_nstream_commit(w->s, n, 0);
}

int hw_relay_wire_send_data(struct hw_relay_wire *w, uint32_t stream,
			    const uv_buf_t *bufs, unsigned nbufs,
			    void (*done)(void *arg, int status), void *arg)
{
	uint8_t hdr[HW_RELAY_HDR];
	size_t total = 0;
	int rc;

	if (!hw_nstream_is_ready(w->s))
		return -ENOTCONN;
	if (stream == 0 || nbufs < 1 || nbufs > HW_RELAY_WIRE_MAX_BUFS)
		return -EINVAL;
	for (unsigned i = 0; i < nbufs; i++)
		total += bufs[i].len;
	if (total < 1 || total > HW_RELAY_BODY_MAX)
		return -EINVAL;
	hw_relay_put_header(hdr, HW_RELAY_DATA, stream, (uint16_t)total);
	/* Control frames queued before this unit go before it. */
	rc = hw_nstream_write_raw(w->s, hdr, sizeof(hdr), bufs, nbufs, done,
				  arg);
	if (rc == 0)
		w->last_tx = now_ms(w);
	return rc;
}

static void free_raw(void *arg, int status)
{
	(void)status;
	free(arg);
}

int hw_relay_wire_send_raw_for_test(struct hw_relay_wire *w,
				    const uint8_t *p, size_t len)
{
	uint8_t *copy;
	uv_buf_t b;
	int rc;

	if (!hw_nstream_is_ready(w->s))
		return -ENOTCONN;
	if (!(copy = malloc(len ? len : 1)))
		return -ENOMEM;
	memcpy(copy, p, len);
	b = uv_buf_init((char *)copy, (unsigned)len);
	rc = hw_nstream_write_raw(w->s, NULL, 0, &b, 1, free_raw, copy);
	if (rc)
		free(copy);
	return rc;
}

size_t hw_relay_wire_queued(const struct hw_relay_wire *w)
{
	return hw_nstream_queued(w->s);
}

/* ---- receiving ---- */

/* Decrypts one SEALED unit in place and hands out its control frames.
 * Returns 0, or non-zero once the wire is closing. */
static int unseal(struct hw_relay_wire *w, uint8_t *ct, size_t len)
{
	struct hw_relay_frame f;
	char text[HW_RELAY_TEXT_MAX + 1];
	size_t ptlen, off = 0;
	int rc;

	rc = hw_nstream_unseal(w->s, ct, len, &ptlen);
	if (rc) {
		hw_relay_wire_fail(w, rc, "SEALED unit does not decrypt");
		return rc;
	}
	while ((rc = hw_relay_next_control(ct, ptlen, &off, &f)) == 1) {
		switch (f.type) {
		case HW_RELAY_PING:
			rc = hw_relay_wire_send_control(w, HW_RELAY_PONG, 0,
							f.body, f.len);
			if (rc == -ENOBUFS)
				hw_relay_wire_fail(w, HW_EPROTO,
						   "peer does not read "
						   "(control queue full)");
			break;
		case HW_RELAY_PONG:
			break;
		case HW_RELAY_ERROR:
			hw_relay_text_sanitize(f.body, f.len, text,
					       sizeof(text));
			hw_nstream_set_error(w->s, "peer error: %s", text);
			hw_relay_wire_close(w, HW_ECLOSED, 0);
			break;
		default:
			w->ops->control(w, &f, w->ud);
		}
		if (!hw_nstream_is_ready(w->s))
			return -1;
	}
	if (rc < 0) {
		if (ptlen - off >= 1)
			hw_relay_wire_fail(w, HW_EPROTO,
					   "bad %s control frame",
					   hw_relay_type_name(ct[off]));
		return rc;
	}
	return 0;
}

/* One unit from the front of p. */
static size_t on_input(struct hw_nstream *s, uint8_t *p, size_t n,
		       size_t *need, void *ud)
{
	struct hw_relay_wire *w = ud;
	struct hw_relay_frame f;

	w->last_rx = now_ms(w);
	if (n < HW_RELAY_HDR) {
		*need = HW_RELAY_HDR;
		return 0;
	}
	hw_relay_get_header(p, &f);
	if (hw_relay_check_unit(&f)) {
		hw_relay_wire_fail(w, HW_EPROTO,
				   "bad unit: type 0x%02x stream %u length %u",
				   f.type, f.stream, f.len);
		return 0;
	}
	if (n < HW_RELAY_HDR + (size_t)f.len) {
		*need = HW_RELAY_HDR + (size_t)f.len;
		return 0;
	}
	if (f.type == HW_RELAY_DATA)
		w->ops->data(w, f.stream, p + HW_RELAY_HDR, f.len, w->ud);
	else if (unseal(w, p + HW_RELAY_HDR, f.len))
		return 0;
	return HW_RELAY_HDR + (size_t)f.len;
}

/* ---- keepalive ---- */

static void on_tick(struct hw_nstream *s, void *ud)
{
	struct hw_relay_wire *w = ud;
	uint64_t now = now_ms(w), ka = w->keepalive_ms;
	uint8_t ping[HW_RELAY_PING_LEN];
	int rc;

	if (now - w->last_rx >= 3 * ka) {
		hw_nstream_set_error(s, "silent for %llu ms",
				     (unsigned long long)(now - w->last_rx));
		hw_relay_wire_close(w, -ETIMEDOUT, 0);
		return;
	}
	/* The tick period is the interval itself, so ping a little early
	 * rather than a whole period late. */
	if (now - w->last_tx >= ka - ka / 4) {
		uint64_t v = ++w->pings;
		for (int i = 7; i >= 0; i--, v >>= 8)
			ping[i] = (uint8_t)v;
		rc = hw_relay_wire_send_control(w, HW_RELAY_PING, 0, ping,
						sizeof(ping));
		if (rc == -ENOBUFS) {
			hw_relay_wire_fail(w, HW_EPROTO,
					   "peer does not read (control "
					   "queue full)");
			return;
		}
	}
	/* Idle: give the memory back. */
	hw_nstream_trim(s);
}

/* ---- setup ---- */

static void on_ready(struct hw_nstream *s, void *ud)
{
	struct hw_relay_wire *w = ud;
	(void)s;
	w->last_rx = w->last_tx = now_ms(w);
	w->ops->ready(w, w->ud);
}

static void on_closed(struct hw_nstream *s, int reason, void *ud)
{
	struct hw_relay_wire *w = ud;
	(void)s;
	w->ops->closed(w, reason, w->ud);
}

static void put_header(uint8_t *hdr, size_t ctlen)
{
	hw_relay_put_header(hdr, HW_RELAY_SEALED, 0, (uint16_t)ctlen);
}

static const struct hw_nstream_ops wire_ops = {
	.ready = on_ready,
	.input = on_input,
	.tick = on_tick,
	.closed = on_closed,
};

/* Control frames gather in a buffer that starts small and grows to one
 * unit; the read buffer is small for the occasional control unit of an
 * idle session and two whole units while large units stream. Nothing is
 * kept spare: the relay holds thousands of idle sessions. */
static const struct hw_nstream_kind wire_kind = {
	.ops = &wire_ops,
	.version = HW_RELAY_VERSION,
	.frame_hdr = HW_RELAY_HDR,
	.put_header = put_header,
	.frame_min = CTL_MIN,
	.frame_max = HW_RELAY_CTRL_MAX,
	.trail_max = 0,
	.max_spares = 0,
	.rbuf_small = 1024,
	.rbuf_big = 2 * (HW_RELAY_HDR + HW_RELAY_BODY_MAX),
	.low_water = 0,
};

static void wire_params(struct hw_nstream_params *np,
			const struct hw_relay_wire_params *p)
{
	*np = (struct hw_nstream_params){
		.kind = &wire_kind,
		.id = p->id,
		.x_priv = p->x_priv,
		.prologue = HW_RELAY_SESSION_PROLOGUE,
		.handshake_timeout_ms = p->handshake_timeout_ms,
		.tick_ms = p->keepalive_ms,
		.priv_size = sizeof(struct hw_relay_wire),
	};
}

static int wire_started(struct hw_relay_wire **out, struct hw_nstream *s,
			const struct hw_relay_wire_params *p, int rc)
{
	struct hw_relay_wire *w;

	*out = NULL;
	if (rc)
		return rc;
	w = hw_nstream_priv(s);
	w->s = s;
	w->ops = p->ops;
	w->ud = p->ud;
	w->keepalive_ms = p->keepalive_ms;
	*out = w;
	return 0;
}

int hw_relay_wire_dial(struct hw_relay_wire **out, uv_loop_t *loop,
		       const struct hw_relay_wire_params *p,
		       const uint8_t remote_pk[HW_PK_LEN], const char *host,
		       uint16_t port)
{
	struct hw_nstream_params np;
	struct hw_nstream *s = NULL;
	int rc;

	wire_params(&np, p);
	rc = hw_nstream_dial(&s, loop, &np, remote_pk, host, port);
	return wire_started(out, s, p, rc);
}

int hw_relay_wire_accept(struct hw_relay_wire **out, uv_stream_t *server,
			 const struct hw_relay_wire_params *p)
{
	struct hw_nstream_params np;
	struct hw_nstream *s = NULL;
	int rc;

	wire_params(&np, p);
	rc = hw_nstream_accept(&s, server, &np);
	return wire_started(out, s, p, rc);
}

const char *hw_relay_wire_error(const struct hw_relay_wire *w)
{
	return hw_nstream_error(w->s);
}

const uint8_t *hw_relay_wire_remote_pk(const struct hw_relay_wire *w)
{
	return hw_nstream_remote_pk(w->s);
}

const char *hw_relay_wire_peer(const struct hw_relay_wire *w)
{
	return hw_nstream_peer(w->s);
}

int hw_relay_wire_is_ready(const struct hw_relay_wire *w)
{
	return hw_nstream_is_ready(w->s);
}

int hw_relay_wire_is_closing(const struct hw_relay_wire *w)
{
	return hw_nstream_is_closing(w->s);
}

void *hw_relay_wire_ud(const struct hw_relay_wire *w)
{
	return w->ud;
}

void hw_relay_wire_set_ud(struct hw_relay_wire *w, void *ud)
{
	w->ud = ud;
}
