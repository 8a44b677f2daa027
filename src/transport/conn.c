#include "transport/conn.h"

#include <string.h>

#include "util/err.h"
#include "wire/record.h"

/* A connection is a Noise stream (wire/nstream.c) framed as records:
 *   u16 BE length | ciphertext [| detached payload]
 * This file is that framing and the connection's API over the engine. */
struct hw_conn {
	struct hw_nstream *s;
	struct hw_conn_params p;
	size_t detached; /* announced bytes still to come in */
};

static void put_header(uint8_t *hdr, size_t ctlen)
{
	hw_record_put_header(hdr, ctlen);
}

static void on_ready(struct hw_nstream *s, void *ud)
{
	struct hw_conn *c = ud;
	(void)s;
	c->p.ops->ready(c, c->p.ud);
}

/* One record, or the detached bytes announced after one. */
static size_t on_input(struct hw_nstream *s, uint8_t *p, size_t n,
		       size_t *need, void *ud)
{
	struct hw_conn *c = ud;
	size_t len, ptlen;
	int rc;

	if (c->detached) {
		len = c->detached;
		if (n < len) {
			*need = len;
			return 0;
		}
		c->detached = 0;
		if (!c->p.ops->detached) {
			hw_nstream_close(s, HW_EPROTO, 0);
			return 0;
		}
		c->p.ops->detached(c, p, len, c->p.ud);
		return len;
	}
	if (n < HW_RECORD_HDR) {
		*need = HW_RECORD_HDR;
		return 0;
	}
	len = (size_t)p[0] << 8 | p[1];
	if (len < HW_CIPHER_TAGLEN) {
		hw_nstream_close(s, HW_EPROTO, 0);
		return 0;
	}
	if (n < HW_RECORD_HDR + len) {
		*need = HW_RECORD_HDR + len;
		return 0;
	}
	rc = hw_nstream_unseal(s, p + HW_RECORD_HDR, len, &ptlen);
	if (rc) {
		hw_nstream_close(s, rc, 0);
		return 0;
	}
	c->p.ops->record(c, p + HW_RECORD_HDR, ptlen, c->p.ud);
	return HW_RECORD_HDR + len;
}

static void on_drained(struct hw_nstream *s, void *ud)
{
	struct hw_conn *c = ud;
	(void)s;
	if (c->p.ops->drained)
		c->p.ops->drained(c, c->p.ud);
}

static void on_closed(struct hw_nstream *s, int reason, void *ud)
{
	struct hw_conn *c = ud;
	(void)s;
	c->p.ops->closed(c, reason, c->p.ud);
}

static const struct hw_nstream_ops conn_ops = {
	.ready = on_ready,
	.input = on_input,
	.drained = on_drained,
	.closed = on_closed,
};

/* Records hold up to a whole record's plaintext; a detached payload of up
 * to a record follows; the read buffer holds two records, so a read that
 * ends inside the second never waits for the first one's bytes to move.
 * Busy connections keep 8 record buffers: allocating and freeing 128 KiB
 * buffers per record makes the allocator hand pages back and fault them
 * in again. */
static const struct hw_nstream_kind conn_kind = {
	.ops = &conn_ops,
	.version = HW_CONN_VERSION,
	.frame_hdr = HW_RECORD_HDR,
	.put_header = put_header,
	.frame_min = HW_RECORD_MAX_PLAINTEXT,
	.frame_max = HW_RECORD_MAX_PLAINTEXT,
	.trail_max = HW_RECORD_MAX,
	.max_spares = 8,
	.rbuf_small = 0,
	.rbuf_big = 2 * (HW_RECORD_HDR + HW_RECORD_MAX),
	.low_water = HW_CONN_LOW_WATER,
};

static void conn_params(struct hw_nstream_params *np,
			const struct hw_conn_params *p)
{
	*np = (struct hw_nstream_params){
		.kind = &conn_kind,
		.id = p->id,
		.x_priv = p->x_priv,
		.prologue = p->prologue,
		.handshake_timeout_ms = p->handshake_timeout_ms,
		.priv_size = sizeof(struct hw_conn),
	};
}

/* The connection lives in the stream's private area. */
static int conn_started(struct hw_conn **out, struct hw_nstream *s,
			const struct hw_conn_params *p, int rc)
{
	struct hw_conn *c;

	*out = NULL;
	if (rc)
		return rc;
	c = hw_nstream_priv(s);
	c->s = s;
	c->p = *p;
	*out = c;
	return 0;
}

int hw_conn_dial(struct hw_conn **out, uv_loop_t *loop,
		 const struct hw_conn_params *p, const uint8_t remote_pk[32],
		 const char *host, uint16_t port)
{
	struct hw_nstream_params np;
	struct hw_nstream *s = NULL;
	int rc;

	conn_params(&np, p);
	rc = hw_nstream_dial(&s, loop, &np, remote_pk, host, port);
	return conn_started(out, s, p, rc);
}

int hw_conn_accept(struct hw_conn **out, uv_stream_t *server,
		   const struct hw_conn_params *p)
{
	struct hw_nstream_params np;
	struct hw_nstream *s = NULL;
	int rc;

	conn_params(&np, p);
	rc = hw_nstream_accept(&s, server, &np);
	return conn_started(out, s, p, rc);
}

int hw_conn_open_carrier(struct hw_conn **out, uv_loop_t *loop,
			 const struct hw_conn_params *p,
			 const struct hw_nstream_carrier_ops *cops, void *carrier,
			 const uint8_t *remote_pk, const char *peer)
{
	struct hw_nstream_params np;
	struct hw_nstream *s = NULL;
	int rc;

	conn_params(&np, p);
	rc = hw_nstream_open_carrier(&s, loop, &np, cops, carrier, remote_pk,
				     peer);
	return conn_started(out, s, p, rc);
}

void hw_conn_carrier_input(struct hw_conn *c, const uint8_t *data,
			   size_t len)
{
	hw_nstream_carrier_input(c->s, data, len);
}

void hw_conn_carrier_closed(struct hw_conn *c, int reason)
{
	hw_nstream_carrier_closed(c->s, reason);
}

/* ---- sending ---- */

int hw_conn_send_fill(struct hw_conn *c, const uint8_t *hdr, size_t hlen,
		      size_t plen, int detached, hw_conn_fill_fn fill,
		      void *arg)
{
	return hw_conn_send_fill_max(c, hdr, hlen, plen, detached, fill, arg,
				     HW_CONN_MAX_QUEUED);
}

int hw_conn_send_fill_max(struct hw_conn *c, const uint8_t *hdr,
			  size_t hlen, size_t plen, int detached,
			  hw_conn_fill_fn fill, void *arg, size_t max_queued)
{
	/* What joins the open record: the whole packet, or only the header
	 * of a detached one, whose payload goes right behind the tag. */
	size_t n = detached ? hlen : hlen + plen;
	size_t trail = detached ? plen : 0;
	uint8_t *dst;
	int rc;

	if (!hw_nstream_is_ready(c->s))
		return -ENOTCONN;
	if (n > HW_RECORD_MAX_PLAINTEXT || trail > HW_RECORD_MAX)
		return HW_ETOOBIG;
	if (hw_nstream_queued(c->s) >= max_queued) {
		hw_nstream_blocked(c->s);
		return -ENOBUFS;
	}
	if ((rc = hw_nstream_reserve(c->s, n, trail, &dst)))
		return rc == HW_ETOOBIG || rc == -ENOMEM ? rc : -ENOTCONN;
	if (plen && (rc = fill(arg, detached ? dst + hlen + HW_CIPHER_TAGLEN
					     : dst + hlen,
			       plen)))
		return rc;
	memcpy(dst, hdr, hlen);
	return hw_nstream_commit(c->s, n, trail) < 0 ? -ENOTCONN : 0;
}

int hw_conn_fill_copy(void *arg, uint8_t *dst, size_t n)
{
	memcpy(dst, arg, n);
	return 0;
}

int hw_conn_send(struct hw_conn *c, const uint8_t *hdr, size_t hlen,
		 const uint8_t *payload, size_t plen)
{
	return hw_conn_send_fill(c, hdr, hlen, plen, 0, hw_conn_fill_copy,
				 (void *)payload);
}

int hw_conn_send_detached(struct hw_conn *c, const uint8_t *hdr, size_t hlen,
			  const uint8_t *payload, size_t plen)
{
	return hw_conn_send_fill(c, hdr, hlen, plen, 1, hw_conn_fill_copy,
				 (void *)payload);
}

void hw_conn_expect_detached(struct hw_conn *c, size_t n)
{
	c->detached = n;
}

size_t hw_conn_queued(const struct hw_conn *c)
{
	return hw_nstream_queued(c->s);
}

int hw_conn_congested(struct hw_conn *c)
{
	if (hw_nstream_queued(c->s) < HW_CONN_MAX_QUEUED)
		return 0;
	hw_nstream_blocked(c->s);
	return 1;
}

void hw_conn_pause(struct hw_conn *c, int paused)
{
	hw_nstream_pause(c->s, paused);
}

void hw_conn_close(struct hw_conn *c, int reason, int graceful)
{
	hw_nstream_close(c->s, reason, graceful);
}

const uint8_t *hw_conn_remote_pk(const struct hw_conn *c)
{
	return hw_nstream_remote_pk(c->s);
}

const char *hw_conn_peer(const struct hw_conn *c)
{
	return hw_nstream_peer(c->s);
}

int hw_conn_is_dialer(const struct hw_conn *c)
{
	return hw_nstream_is_dialer(c->s);
}

int hw_conn_is_ready(const struct hw_conn *c)
{
	return hw_nstream_is_ready(c->s);
}

void *hw_conn_ud(const struct hw_conn *c)
{
	return c->p.ud;
}

void hw_conn_set_ud(struct hw_conn *c, void *ud)
{
	c->p.ud = ud;
}
