#include "transport/conn.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/noise.h"
#include "util/err.h"
#include "wire/record.h"

#define HS_MIN_RECORD 48  /* e + tag */
#define HS_MAX_RECORD 256 /* our largest handshake message is 97 bytes */
#define MSG3_PAYLOAD (1 + HW_PK_LEN)
/* Record buffers kept for reuse by a busy connection: allocating and
 * freeing 64 KiB buffers per record makes the allocator hand pages back
 * and fault them in again. */
#define MAX_SPARES 8

enum conn_state { ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN,
		  ST_CLOSING };

/* One record on its way out: header, plaintext sealed in place, tag, and
 * the detached payload that may follow it. */
struct chunk {
	struct chunk *next;
	uv_write_t req;
	struct hw_conn *conn;
	size_t len;   /* plaintext bytes so far */
	size_t total; /* bytes on the wire once written */
	uint8_t buf[HW_RECORD_HDR + HW_RECORD_MAX + HW_RECORD_MAX];
};

struct hw_conn {
	uv_tcp_t tcp; /* unused (never initialised) over a carrier */
	/* Set when the connection runs over a carrier instead of TCP. */
	const struct hw_conn_carrier_ops *cops;
	void *carrier;
	int carrier_gone;   /* the carrier closed: no more calls into it */
	int graceful_wait;  /* closing once the writes in flight are done */
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	uv_connect_t connect_req;
	uv_shutdown_t shutdown_req;
	enum conn_state state;
	int dialer;
	int pending; /* handles and requests that still call back */
	int reason;
	int blocked; /* a send failed with -ENOBUFS */
	int closed_called;
	struct hw_conn_params p;
	struct hw_noise_hs *hs;
	struct hw_cipher *tx, *rx;
	struct hw_record_reader *reader;
	struct chunk *cur;    /* the record being filled */
	struct chunk *spares; /* reusable chunks, at most MAX_SPARES */
	unsigned nspares;
	size_t queued;        /* sealed bytes not yet written */
	size_t detached;      /* announced bytes still to come in */
	unsigned writes;      /* uv_write requests in flight */
	uint8_t remote_pk[HW_PK_LEN];
	uint8_t remote_x[32];
	char peer[64];
};

static void conn_maybe_free(struct hw_conn *c)
{
	if (c->pending > 0)
		return;
	if (!c->closed_called) {
		c->closed_called = 1;
		c->p.ops->closed(c, c->reason, c->p.ud);
	}
	hw_noise_hs_free(c->hs);
	hw_cipher_free(c->tx);
	hw_cipher_free(c->rx);
	hw_record_reader_free(c->reader);
	free(c->cur);
	while (c->spares) {
		struct chunk *k = c->spares;
		c->spares = k->next;
		free(k);
	}
	free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct hw_conn *c = h->data;
	c->pending--;
	conn_maybe_free(c);
}

static void close_carrier(struct hw_conn *c)
{
	if (c->carrier_gone)
		return;
	c->carrier_gone = 1;
	/* The carrier completes our writes in flight from inside close:
	 * hold the connection until it returns. */
	c->pending++;
	c->cops->close(c->carrier, c->reason);
	c->pending--;
}

static void close_handles(struct hw_conn *c)
{
	if (c->cops)
		close_carrier(c);
	else if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct hw_conn *c = req->data;
	c->pending--;
	close_handles(c);
}

static int flush(struct hw_conn *c);

/* How long a graceful close waits for the peer to take queued data. */
#define GRACEFUL_CLOSE_MS 2000

static void on_close_timeout(uv_timer_t *t)
{
	close_handles(t->data);
}

void hw_conn_close(struct hw_conn *c, int reason, int graceful)
{
	if (c->state == ST_CLOSING)
		return;
	c->reason = reason;
	graceful = graceful && c->state == ST_OPEN;
	c->state = ST_CLOSING;
	uv_timer_stop(&c->timer);
	if (c->cops) {
		if (graceful) {
			flush(c);
			if (c->writes > 0 && !c->carrier_gone) {
				c->graceful_wait = 1;
				uv_timer_start(&c->timer, on_close_timeout,
					       GRACEFUL_CLOSE_MS, 0);
				return;
			}
		}
		close_handles(c);
		return;
	}
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_read_stop((uv_stream_t *)&c->tcp);
	if (graceful) {
		flush(c);
		c->shutdown_req.data = c;
		if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp,
				on_shutdown) == 0) {
			c->pending++;
			uv_timer_start(&c->timer, on_close_timeout,
				       GRACEFUL_CLOSE_MS, 0);
			return;
		}
	}
	close_handles(c);
}

/* ---- sending ---- */

static struct chunk *chunk_get(struct hw_conn *c)
{
	struct chunk *k = c->spares;
	if (k) {
		c->spares = k->next;
		c->nspares--;
	} else if (!(k = malloc(sizeof(*k)))) {
		return NULL;
	}
	k->next = NULL;
	k->conn = c;
	k->len = 0;
	return k;
}

static void chunk_put(struct hw_conn *c, struct chunk *k)
{
	if (c->nspares < MAX_SPARES) {
		k->next = c->spares;
		c->spares = k;
		c->nspares++;
	} else {
		free(k);
	}
}

static void write_done(struct chunk *k, int status)
{
	struct hw_conn *c = k->conn;

	c->pending--;
	c->writes--;
	c->queued -= k->total;
	chunk_put(c, k);
	if (status < 0 && c->state != ST_CLOSING) {
		hw_conn_close(c, status, 0);
	} else if (c->state == ST_OPEN) {
		/* Whatever gathered while this write was out goes now. */
		if (c->writes == 0 && c->cur && c->cur->len)
			flush(c);
		if (c->blocked && c->queued < HW_CONN_LOW_WATER) {
			c->blocked = 0;
			if (c->p.ops->drained)
				c->p.ops->drained(c, c->p.ud);
		}
	} else if (c->graceful_wait && c->writes == 0) {
		c->graceful_wait = 0;
		close_handles(c);
	}
	conn_maybe_free(c);
}

static void on_write(uv_write_t *req, int status)
{
	write_done(req->data, status);
}

static void on_carrier_write(void *arg, int status)
{
	write_done(arg, status);
}

/* Writes a raw record (handshake messages) or a sealed chunk. */
static int write_chunk(struct hw_conn *c, struct chunk *k, size_t total)
{
	uv_buf_t b = uv_buf_init((char *)k->buf, (unsigned)total);
	int rc;

	k->req.data = k;
	k->total = total;
	if (c->cops)
		rc = c->carrier_gone ? -ENOTCONN
				     : c->cops->write(c->carrier, k->buf, total,
						      on_carrier_write, k);
	else
		rc = uv_write(&k->req, (uv_stream_t *)&c->tcp, &b, 1,
			      on_write);
	if (rc < 0) {
		chunk_put(c, k);
		return rc;
	}
	c->pending++;
	c->writes++;
	c->queued += total;
	return 0;
}

/* Seals the open record and writes it, followed by plen bytes of
 * detached payload already in place behind the record's tag. */
static int flush_with(struct hw_conn *c, size_t plen)
{
	struct chunk *k = c->cur;
	size_t ctlen;
	int rc;

	if (!k || k->len == 0)
		return 0;
	c->cur = NULL;
	rc = hw_cipher_encrypt(c->tx, NULL, 0, k->buf + HW_RECORD_HDR, k->len,
			       k->buf + HW_RECORD_HDR, &ctlen);
	if (rc) {
		chunk_put(c, k);
		hw_conn_close(c, rc, 0);
		return rc;
	}
	hw_record_put_header(k->buf, ctlen);
	rc = write_chunk(c, k, HW_RECORD_HDR + ctlen + plen);
	if (rc)
		hw_conn_close(c, rc, 0);
	return rc;
}

static int flush(struct hw_conn *c)
{
	return flush_with(c, 0);
}

int hw_conn_send_fill(struct hw_conn *c, const uint8_t *hdr, size_t hlen,
		      size_t plen, int detached, hw_conn_fill_fn fill,
		      void *arg)
{
	/* What joins the open record: the whole packet, or only the header
	 * of a detached one. */
	size_t n = detached ? hlen : hlen + plen;
	uint8_t *dst;
	int rc;

	if (c->state != ST_OPEN)
		return -ENOTCONN;
	if (n > HW_RECORD_MAX_PLAINTEXT || (detached && plen > HW_RECORD_MAX))
		return HW_ETOOBIG;
	if (c->queued >= HW_CONN_MAX_QUEUED) {
		c->blocked = 1;
		return -ENOBUFS;
	}
	if (c->cur && c->cur->len + n > HW_RECORD_MAX_PLAINTEXT &&
	    flush(c) < 0)
		return -ENOTCONN;
	if (!c->cur && !(c->cur = chunk_get(c)))
		return -ENOMEM;
	/* A detached payload goes right behind the record's tag. */
	dst = c->cur->buf + HW_RECORD_HDR + c->cur->len + hlen +
	      (detached ? HW_CIPHER_TAGLEN : 0);
	if (plen && (rc = fill(arg, dst, plen)))
		return rc;
	memcpy(c->cur->buf + HW_RECORD_HDR + c->cur->len, hdr, hlen);
	c->cur->len += n;
	/* A detached payload must follow its header on the wire, so the
	 * record closes now. Otherwise: an idle link sends now, a busy one
	 * lets the record fill up until the write in flight completes (see
	 * on_write). */
	if (detached)
		return flush_with(c, plen) < 0 ? -ENOTCONN : 0;
	if (c->writes == 0)
		return flush(c) < 0 ? -ENOTCONN : 0;
	return 0;
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
	return c->queued + (c->cur ? c->cur->len : 0);
}

/* ---- handshake ---- */

static int send_handshake(struct hw_conn *c, const uint8_t *payload,
			  size_t plen)
{
	struct chunk *k = chunk_get(c);
	size_t len;
	int rc;

	if (!k)
		return -ENOMEM;
	rc = hw_noise_hs_write(c->hs, payload, plen, k->buf + HW_RECORD_HDR,
			       HS_MAX_RECORD, &len);
	if (rc) {
		chunk_put(c, k);
		return rc;
	}
	hw_record_put_header(k->buf, len);
	return write_chunk(c, k, HW_RECORD_HDR + len);
}

static int finish_handshake(struct hw_conn *c)
{
	int rc = hw_noise_hs_split(c->hs, &c->tx, &c->rx);
	if (rc)
		return rc;
	hw_noise_hs_free(c->hs);
	c->hs = NULL;
	uv_timer_stop(&c->timer);
	hw_record_reader_set_bounds(c->reader, HW_CIPHER_TAGLEN,
				    HW_RECORD_MAX);
	c->state = ST_OPEN;
	c->p.ops->ready(c, c->p.ud);
	return 0;
}

static int handshake_record(struct hw_conn *c, uint8_t *rec, size_t len)
{
	uint8_t payload[HS_MAX_RECORD], x[32], self[MSG3_PAYLOAD];
	size_t plen;
	int rc;

	rc = hw_noise_hs_read(c->hs, rec, len, payload, sizeof(payload),
			      &plen);
	if (rc)
		return rc;
	if (plen < 1 || payload[0] != HW_CONN_VERSION)
		return HW_EPROTO;
	if (c->dialer) {
		/* Message 2 read: answer with message 3 and our identity. */
		self[0] = HW_CONN_VERSION;
		memcpy(self + 1, c->p.id->pk, HW_PK_LEN);
		if ((rc = send_handshake(c, self, sizeof(self))))
			return rc;
		return finish_handshake(c);
	}
	if (hw_noise_hs_state(c->hs) == HW_NOISE_WRITE) {
		/* Message 1 read: answer with message 2. */
		self[0] = HW_CONN_VERSION;
		return send_handshake(c, self, 1);
	}
	/* Message 3: the dialer's Ed25519 key must match its Noise key. */
	if (plen != MSG3_PAYLOAD)
		return HW_EPROTO;
	if (hw_pk_to_x25519(payload + 1, x) ||
	    sodium_memcmp(x, hw_noise_hs_remote_static(c->hs), 32))
		return HW_EAUTH;
	memcpy(c->remote_pk, payload + 1, HW_PK_LEN);
	return finish_handshake(c);
}

static void on_timeout(uv_timer_t *t)
{
	struct hw_conn *c = t->data;
	hw_conn_close(c, -ETIMEDOUT, 0);
}

/* ---- receiving ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct hw_conn *c = h->data;
	uint8_t *space;
	size_t len;

	hw_record_reader_space(c->reader, &space, &len);
	*buf = uv_buf_init((char *)space, (unsigned)len);
}

static void process_records(struct hw_conn *c);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct hw_conn *c = s->data;

	if (n < 0) {
		hw_conn_close(c, n == UV_EOF ? HW_ECLOSED : (int)n, 0);
		return;
	}
	hw_record_reader_commit(c->reader, (size_t)n);
	process_records(c);
}

void hw_conn_carrier_input(struct hw_conn *c, const uint8_t *data,
			   size_t len)
{
	/* Held across the callbacks, which may close the connection. */
	c->pending++;
	while (len > 0 &&
	       (c->state == ST_HANDSHAKE || c->state == ST_OPEN)) {
		size_t n = hw_record_reader_feed(c->reader, data, len);
		if (n == 0) {
			/* Cannot happen with a reader sized for its largest
			 * record; never spin if it does. */
			hw_conn_close(c, HW_EPROTO, 0);
			break;
		}
		data += n;
		len -= n;
		process_records(c);
	}
	c->pending--;
	conn_maybe_free(c);
}

void hw_conn_carrier_closed(struct hw_conn *c, int reason)
{
	c->carrier_gone = 1;
	c->pending++;
	hw_conn_close(c, reason ? reason : HW_ECLOSED, 0);
	c->pending--;
	conn_maybe_free(c);
}

static void process_records(struct hw_conn *c)
{
	uint8_t *rec;
	size_t len, ptlen;
	int rc;

	while (c->state == ST_HANDSHAKE || c->state == ST_OPEN) {
		if (c->detached) {
			if (!hw_record_reader_take(c->reader, c->detached,
						   &rec))
				return;
			len = c->detached;
			c->detached = 0;
			if (!c->p.ops->detached) {
				hw_conn_close(c, HW_EPROTO, 0);
				return;
			}
			c->p.ops->detached(c, rec, len, c->p.ud);
			continue;
		}
		rc = hw_record_reader_next(c->reader, &rec, &len);
		if (rc == 0)
			return;
		if (rc < 0) {
			hw_conn_close(c, rc, 0);
			return;
		}
		if (c->state == ST_HANDSHAKE) {
			if ((rc = handshake_record(c, rec, len))) {
				hw_conn_close(c, rc, 0);
				return;
			}
			continue;
		}
		rc = hw_cipher_decrypt(c->rx, NULL, 0, rec, len, rec, &ptlen);
		if (rc) {
			hw_conn_close(c, rc, 0);
			return;
		}
		c->p.ops->record(c, rec, ptlen, c->p.ud);
	}
}

/* ---- setup ---- */

static int conn_new(struct hw_conn **out, uv_loop_t *loop,
		    const struct hw_conn_params *p, int dialer,
		    const struct hw_conn_carrier_ops *cops, void *carrier)
{
	struct hw_conn *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	c->p = *p;
	c->dialer = dialer;
	c->reader = hw_record_reader_new(HS_MIN_RECORD, HS_MAX_RECORD);
	if (!c->reader) {
		free(c);
		return -ENOMEM;
	}
	c->cops = cops;
	c->carrier = carrier;
	if (!cops && (rc = uv_tcp_init(loop, &c->tcp)) < 0) {
		hw_record_reader_free(c->reader);
		free(c);
		return rc;
	}
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->pending = cops ? 1 : 2;
	*out = c;
	return 0;
}

static int start_noise(struct hw_conn *c)
{
	int rc;

	c->state = ST_HANDSHAKE;
	rc = hw_noise_hs_new(&c->hs, HW_NOISE_XK,
			     c->dialer ? HW_NOISE_INITIATOR
				       : HW_NOISE_RESPONDER,
			     (const uint8_t *)c->p.prologue,
			     strlen(c->p.prologue), c->p.x_priv,
			     c->dialer ? c->remote_x : NULL);
	if (rc)
		return rc;
	if (!c->cops && (rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc,
					    on_read)))
		return rc;
	if (c->dialer) {
		uint8_t v = HW_CONN_VERSION;
		return send_handshake(c, &v, 1);
	}
	return 0;
}

/* Starts the handshake once TCP is up. */
static int start_handshake(struct hw_conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		char ip[INET6_ADDRSTRLEN] = "?";
		int port = 0;
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			uv_ip6_name(a, ip, sizeof(ip));
			port = ntohs(a->sin6_port);
			snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip, port);
		} else {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			uv_ip4_name(a, ip, sizeof(ip));
			port = ntohs(a->sin_port);
			snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
		}
	}
	uv_tcp_nodelay(&c->tcp, 1);
	return start_noise(c);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct hw_conn *c = req->data;
	int rc;

	c->pending--;
	if (c->state == ST_CLOSING) {
		conn_maybe_free(c);
		return;
	}
	if (status < 0)
		hw_conn_close(c, status, 0);
	else if ((rc = start_handshake(c)))
		hw_conn_close(c, rc, 0);
	conn_maybe_free(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
			struct addrinfo *res)
{
	struct hw_conn *c = req->data;
	int rc = status;

	c->pending--;
	if (c->state == ST_CLOSING) {
		uv_freeaddrinfo(res);
		conn_maybe_free(c);
		return;
	}
	if (rc == 0) {
		c->state = ST_CONNECTING;
		c->connect_req.data = c;
		rc = uv_tcp_connect(&c->connect_req, &c->tcp, res->ai_addr,
				    on_connect);
		if (rc == 0)
			c->pending++;
	}
	uv_freeaddrinfo(res);
	if (rc)
		hw_conn_close(c, rc, 0);
	conn_maybe_free(c);
}

int hw_conn_dial(struct hw_conn **out, uv_loop_t *loop,
		 const struct hw_conn_params *p, const uint8_t remote_pk[32],
		 const char *host, uint16_t port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct hw_conn *c = NULL;
	char service[8];
	int rc;

	*out = NULL;
	if ((rc = conn_new(&c, loop, p, 1, NULL, NULL)))
		return rc;
	memcpy(c->remote_pk, remote_pk, HW_PK_LEN);
	if ((rc = hw_pk_to_x25519(remote_pk, c->remote_x))) {
		c->closed_called = 1; /* nothing started: no callback */
		hw_conn_close(c, rc, 0);
		return rc;
	}
	snprintf(service, sizeof(service), "%u", port);
	c->state = ST_RESOLVING;
	c->gai.data = c;
	rc = uv_getaddrinfo(loop, &c->gai, on_resolved, host[0] ? host : NULL,
			    service, &hints);
	if (rc) {
		c->closed_called = 1;
		hw_conn_close(c, rc, 0);
		return rc;
	}
	c->pending++;
	uv_timer_start(&c->timer, on_timeout, p->handshake_timeout_ms, 0);
	*out = c;
	return 0;
}

int hw_conn_accept(struct hw_conn **out, uv_stream_t *server,
		   const struct hw_conn_params *p)
{
	struct hw_conn *c = NULL;
	int rc;

	*out = NULL;
	if ((rc = conn_new(&c, server->loop, p, 0, NULL, NULL)))
		return rc;
	if ((rc = uv_accept(server, (uv_stream_t *)&c->tcp)) ||
	    (rc = start_handshake(c))) {
		c->closed_called = 1;
		hw_conn_close(c, rc, 0);
		return rc;
	}
	uv_timer_start(&c->timer, on_timeout, p->handshake_timeout_ms, 0);
	*out = c;
	return 0;
}

int hw_conn_open_carrier(struct hw_conn **out, uv_loop_t *loop,
			 const struct hw_conn_params *p,
			 const struct hw_conn_carrier_ops *cops, void *carrier,
			 const uint8_t *remote_pk, const char *peer)
{
	struct hw_conn *c = NULL;
	int rc;

	*out = NULL;
	if ((rc = conn_new(&c, loop, p, remote_pk != NULL, cops, carrier)))
		return rc;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	if (remote_pk) {
		memcpy(c->remote_pk, remote_pk, HW_PK_LEN);
		rc = hw_pk_to_x25519(remote_pk, c->remote_x);
	}
	/* A failure here leaves the carrier to the caller. */
	if (rc || (rc = start_noise(c))) {
		c->closed_called = 1;
		c->carrier_gone = 1;
		hw_conn_close(c, rc, 0);
		return rc;
	}
	uv_timer_start(&c->timer, on_timeout, p->handshake_timeout_ms, 0);
	*out = c;
	return 0;
}

const uint8_t *hw_conn_remote_pk(const struct hw_conn *c)
{
	return c->remote_pk;
}

const char *hw_conn_peer(const struct hw_conn *c)
{
	return c->peer;
}

int hw_conn_is_dialer(const struct hw_conn *c)
{
	return c->dialer;
}

int hw_conn_is_ready(const struct hw_conn *c)
{
	return c->state == ST_OPEN;
}

void *hw_conn_ud(const struct hw_conn *c)
{
	return c->p.ud;
}

void hw_conn_set_ud(struct hw_conn *c, void *ud)
{
	c->p.ud = ud;
}
