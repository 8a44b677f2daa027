#include "relay/wire.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/noise.h"
#include "relay/client.h"
#include "util/err.h"

#define REC_HDR 2         /* handshake records: u16 BE length */
#define HS_MIN_RECORD 48  /* e + tag */
#define HS_MAX_RECORD 256 /* our largest handshake message is 97 bytes */
#define MSG3_PAYLOAD (1 + HW_PK_LEN)
/* Read buffer: small for the occasional control unit of an idle session,
 * two whole units while large units stream, so a read ending inside the
 * second never waits for the first one's bytes to move. */
#define RBUF_SMALL 1024
#define RBUF_BIG (2 * (HW_RELAY_HDR + HW_RELAY_BODY_MAX))
#define CTL_MIN 256 /* plaintext room of a fresh control chunk */
#define GRACEFUL_CLOSE_MS 2000
#define MAX_SPARE_REQS 16

enum wire_state { ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN,
		  ST_CLOSING };

/* Bytes written as one piece: a handshake record, a SEALED unit (control
 * frames gathered in the plaintext, sealed in place) or a test's raw
 * bytes. */
struct chunk {
	uv_write_t req;
	struct hw_relay_wire *w;
	size_t len;   /* plaintext gathered */
	size_t cap;   /* plaintext room */
	size_t total; /* bytes on the wire once written */
	uint8_t buf[]; /* unit header | plaintext | tag */
};

/* One DATA unit in flight: the header is ours, the payload the caller's. */
struct dreq {
	uv_write_t req;
	struct dreq *next; /* spare list */
	struct hw_relay_wire *w;
	void (*done)(void *arg, int status);
	void *arg;
	size_t total;
	uint8_t hdr[HW_RELAY_HDR];
};

struct dial {
	uv_getaddrinfo_t gai;
	uv_connect_t connect;
};

struct hw_relay_wire {
	uv_tcp_t tcp;
	uv_timer_t timer; /* handshake timeout, keepalive tick, close cap */
	uv_shutdown_t shutdown_req;
	struct dial *dial;
	enum wire_state state;
	int dialer;
	int pending; /* handles and requests that still call back */
	int reason;
	int closed_called;
	struct hw_relay_wire_params p;
	struct hw_noise_hs *hs;
	struct hw_cipher *tx, *rx;
	uint8_t *rbuf; /* unread bytes are rbuf[rstart..rend) */
	size_t rcap, rstart, rend;
	int rgrow; /* reads fill the small buffer: use the big one */
	struct chunk *cur; /* control frames not sealed yet */
	struct dreq *spares;
	unsigned nspares;
	size_t queued_ctl;  /* sealed bytes written but not taken */
	size_t queued_data; /* DATA bytes likewise */
	unsigned writes;    /* uv_write requests in flight */
	uint64_t last_rx, last_tx, pings;
	uint8_t remote_pk[HW_PK_LEN];
	uint8_t remote_x[32];
	char peer[64];
	char err[160];
};

static void wire_maybe_free(struct hw_relay_wire *w)
{
	if (w->pending > 0)
		return;
	if (!w->closed_called) {
		w->closed_called = 1;
		w->p.ops->closed(w, w->reason, w->p.ud);
	}
	hw_noise_hs_free(w->hs);
	hw_cipher_free(w->tx);
	hw_cipher_free(w->rx);
	free(w->rbuf);
	free(w->cur);
	while (w->spares) {
		struct dreq *d = w->spares;
		w->spares = d->next;
		free(d);
	}
	free(w->dial);
	free(w);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct hw_relay_wire *w = h->data;
	w->pending--;
	wire_maybe_free(w);
}

static void close_handles(struct hw_relay_wire *w)
{
	if (!uv_is_closing((uv_handle_t *)&w->tcp))
		uv_close((uv_handle_t *)&w->tcp, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&w->timer))
		uv_close((uv_handle_t *)&w->timer, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct hw_relay_wire *w = req->data;
	w->pending--;
	close_handles(w);
	wire_maybe_free(w);
}

static void on_close_timeout(uv_timer_t *t)
{
	close_handles(t->data);
}

static int flush(struct hw_relay_wire *w);

void hw_relay_wire_close(struct hw_relay_wire *w, int reason, int graceful)
{
	if (w->state == ST_CLOSING)
		return;
	w->reason = reason;
	graceful = graceful && w->state == ST_OPEN;
	w->state = ST_CLOSING;
	uv_timer_stop(&w->timer);
	if (!uv_is_closing((uv_handle_t *)&w->tcp))
		uv_read_stop((uv_stream_t *)&w->tcp);
	if (graceful) {
		flush(w);
		w->shutdown_req.data = w;
		if (uv_shutdown(&w->shutdown_req, (uv_stream_t *)&w->tcp,
				on_shutdown) == 0) {
			w->pending++;
			uv_timer_start(&w->timer, on_close_timeout,
				       GRACEFUL_CLOSE_MS, 0);
			return;
		}
	}
	close_handles(w);
}

static void set_err(struct hw_relay_wire *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_err(struct hw_relay_wire *w, const char *fmt, ...)
{
	va_list ap;

	if (w->err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(w->err, sizeof(w->err), fmt, ap);
	va_end(ap);
}

void hw_relay_wire_fail(struct hw_relay_wire *w, int reason,
			const char *fmt, ...)
{
	char msg[sizeof(w->err)];
	size_t n;
	va_list ap;

	if (w->state == ST_CLOSING)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	set_err(w, "%s", msg);
	if (w->state == ST_OPEN) {
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

static struct chunk *chunk_new(size_t cap)
{
	struct chunk *k = malloc(sizeof(*k) + HW_RELAY_HDR + cap +
				 HW_CIPHER_TAGLEN);
	if (!k)
		return NULL;
	k->len = 0;
	k->cap = cap;
	return k;
}

static void on_chunk_write(uv_write_t *req, int status)
{
	struct chunk *k = req->data;
	struct hw_relay_wire *w = k->w;

	w->pending--;
	w->writes--;
	w->queued_ctl -= k->total;
	free(k);
	if (status < 0 && w->state != ST_CLOSING) {
		set_err(w, "write: %s", uv_strerror(status));
		hw_relay_wire_close(w, status, 0);
	} else if (w->state == ST_OPEN && w->writes == 0 && w->cur &&
		   w->cur->len) {
		/* What gathered while this write was out goes now. */
		flush(w);
	}
	wire_maybe_free(w);
}

static int write_chunk(struct hw_relay_wire *w, struct chunk *k,
		       size_t total)
{
	uv_buf_t b = uv_buf_init((char *)k->buf, (unsigned)total);
	int rc;

	k->w = w;
	k->req.data = k;
	k->total = total;
	rc = uv_write(&k->req, (uv_stream_t *)&w->tcp, &b, 1, on_chunk_write);
	if (rc < 0) {
		free(k);
		return rc;
	}
	w->pending++;
	w->writes++;
	w->queued_ctl += total;
	w->last_tx = uv_now(w->tcp.loop);
	return 0;
}

/* Seals the gathered control frames into one SEALED unit and writes it. */
static int flush(struct hw_relay_wire *w)
{
	struct chunk *k = w->cur;
	size_t ctlen;
	int rc;

	if (!k || k->len == 0)
		return 0;
	w->cur = NULL;
	rc = hw_cipher_encrypt(w->tx, NULL, 0, k->buf + HW_RELAY_HDR, k->len,
			       k->buf + HW_RELAY_HDR, &ctlen);
	if (rc) {
		free(k);
		set_err(w, "seal: %s", hw_strerror(rc));
		hw_relay_wire_close(w, rc, 0);
		return rc;
	}
	hw_relay_put_header(k->buf, HW_RELAY_SEALED, 0, (uint16_t)ctlen);
	rc = write_chunk(w, k, HW_RELAY_HDR + ctlen);
	if (rc) {
		set_err(w, "write: %s", uv_strerror(rc));
		hw_relay_wire_close(w, rc, 0);
	}
	return rc;
}

int hw_relay_wire_send_control(struct hw_relay_wire *w, uint8_t type,
			       uint32_t stream, const uint8_t *body,
			       size_t len)
{
	size_t n = HW_RELAY_HDR + len, gathered;
	struct chunk *k;
	int rc;

	if (w->state != ST_OPEN)
		return -ENOTCONN;
	if (len > 1 + HW_RELAY_TEXT_MAX)
		return -EINVAL;
	gathered = w->cur ? w->cur->len : 0;
	if (w->queued_ctl + gathered + n > HW_RELAY_WIRE_MAX_QUEUED)
		return -ENOBUFS;
	if (gathered + n > HW_RELAY_CTRL_MAX && (rc = flush(w)))
		return rc;
	k = w->cur;
	if (!k) {
		if (!(k = chunk_new(n > CTL_MIN ? n : CTL_MIN)))
			return -ENOMEM;
		w->cur = k;
	} else if (k->len + n > k->cap) {
		size_t cap = k->cap * 2;
		struct chunk *nk;
		if (cap < k->len + n)
			cap = k->len + n;
		if (cap > HW_RELAY_CTRL_MAX)
			cap = HW_RELAY_CTRL_MAX;
		nk = realloc(k, sizeof(*k) + HW_RELAY_HDR + cap +
					HW_CIPHER_TAGLEN);
		if (!nk)
			return -ENOMEM;
		k = w->cur = nk;
		k->cap = cap;
	}
	hw_relay_put_header(k->buf + HW_RELAY_HDR + k->len, type, stream,
			    (uint16_t)len);
	if (len)
		memcpy(k->buf + 2 * HW_RELAY_HDR + k->len, body, len);
	k->len += n;
	/* Idle wire: send now. Busy wire: frames gather until the write in
	 * flight completes. */
	if (w->writes == 0)
		return flush(w);
	return 0;
}

static struct dreq *dreq_get(struct hw_relay_wire *w)
{
	struct dreq *d = w->spares;

	if (d) {
		w->spares = d->next;
		w->nspares--;
		return d;
	}
	return malloc(sizeof(*d));
}

static void dreq_put(struct hw_relay_wire *w, struct dreq *d)
{
	if (w->nspares < MAX_SPARE_REQS) {
		d->next = w->spares;
		w->spares = d;
		w->nspares++;
	} else {
		free(d);
	}
}

static void on_data_write(uv_write_t *req, int status)
{
	struct dreq *d = req->data;
	struct hw_relay_wire *w = d->w;

	w->writes--;
	w->queued_data -= d->total;
	d->done(d->arg, status < 0 ? status : 0);
	dreq_put(w, d);
	if (status < 0 && w->state != ST_CLOSING) {
		set_err(w, "write: %s", uv_strerror(status));
		hw_relay_wire_close(w, status, 0);
	} else if (w->state == ST_OPEN && w->writes == 0 && w->cur &&
		   w->cur->len) {
		flush(w);
	}
	w->pending--;
	wire_maybe_free(w);
}

int hw_relay_wire_send_data(struct hw_relay_wire *w, uint32_t stream,
			    const uv_buf_t *bufs, unsigned nbufs,
			    void (*done)(void *arg, int status), void *arg)
{
	uv_buf_t b[1 + HW_RELAY_WIRE_MAX_BUFS];
	size_t total = 0;
	struct dreq *d;
	int rc;

	if (w->state != ST_OPEN)
		return -ENOTCONN;
	if (stream == 0 || nbufs < 1 || nbufs > HW_RELAY_WIRE_MAX_BUFS)
		return -EINVAL;
	for (unsigned i = 0; i < nbufs; i++) {
		total += bufs[i].len;
		b[i + 1] = bufs[i];
	}
	if (total < 1 || total > HW_RELAY_BODY_MAX)
		return -EINVAL;
	/* Control frames queued before this unit go before it. */
	if (w->cur && w->cur->len && flush(w))
		return -ENOTCONN;
	if (!(d = dreq_get(w)))
		return -ENOMEM;
	hw_relay_put_header(d->hdr, HW_RELAY_DATA, stream, (uint16_t)total);
	b[0] = uv_buf_init((char *)d->hdr, HW_RELAY_HDR);
	d->w = w;
	d->done = done;
	d->arg = arg;
	d->total = HW_RELAY_HDR + total;
	d->req.data = d;
	rc = uv_write(&d->req, (uv_stream_t *)&w->tcp, b, nbufs + 1,
		      on_data_write);
	if (rc < 0) {
		dreq_put(w, d);
		return rc;
	}
	w->pending++;
	w->writes++;
	w->queued_data += d->total;
	w->last_tx = uv_now(w->tcp.loop);
	return 0;
}

int hw_relay_wire_send_raw_for_test(struct hw_relay_wire *w,
				    const uint8_t *p, size_t len)
{
	struct chunk *k;
	int rc;

	if (w->state != ST_OPEN)
		return -ENOTCONN;
	if ((rc = flush(w)))
		return rc;
	if (!(k = chunk_new(len)))
		return -ENOMEM;
	memcpy(k->buf, p, len);
	return write_chunk(w, k, len);
}

size_t hw_relay_wire_queued(const struct hw_relay_wire *w)
{
	return w->queued_ctl + w->queued_data + (w->cur ? w->cur->len : 0);
}

/* ---- handshake ---- */

static int send_handshake(struct hw_relay_wire *w, const uint8_t *payload,
			  size_t plen)
{
	struct chunk *k = chunk_new(HS_MAX_RECORD);
	size_t len;
	int rc;

	if (!k)
		return -ENOMEM;
	rc = hw_noise_hs_write(w->hs, payload, plen, k->buf + REC_HDR,
			       HS_MAX_RECORD, &len);
	if (rc) {
		free(k);
		return rc;
	}
	k->buf[0] = (uint8_t)(len >> 8);
	k->buf[1] = (uint8_t)len;
	return write_chunk(w, k, REC_HDR + len);
}

static void on_tick(uv_timer_t *t);

static int finish_handshake(struct hw_relay_wire *w)
{
	int rc = hw_noise_hs_split(w->hs, &w->tx, &w->rx);
	uint64_t now = uv_now(w->tcp.loop);

	if (rc)
		return rc;
	hw_noise_hs_free(w->hs);
	w->hs = NULL;
	uv_timer_stop(&w->timer);
	w->state = ST_OPEN;
	w->last_rx = w->last_tx = now;
	if (w->p.keepalive_ms)
		uv_timer_start(&w->timer, on_tick, w->p.keepalive_ms,
			       w->p.keepalive_ms);
	w->p.ops->ready(w, w->p.ud);
	return 0;
}

static int handshake_record(struct hw_relay_wire *w, uint8_t *rec,
			    size_t len)
{
	uint8_t payload[HS_MAX_RECORD], x[32], self[MSG3_PAYLOAD];
	size_t plen;
	int rc;

	rc = hw_noise_hs_read(w->hs, rec, len, payload, sizeof(payload),
			      &plen);
	if (rc)
		return rc;
	if (plen < 1 || payload[0] != HW_RELAY_VERSION)
		return HW_EPROTO;
	if (w->dialer) {
		/* Message 2 read: answer with message 3 and our identity. */
		if (plen != 1)
			return HW_EPROTO;
		self[0] = HW_RELAY_VERSION;
		memcpy(self + 1, w->p.id->pk, HW_PK_LEN);
		if ((rc = send_handshake(w, self, sizeof(self))))
			return rc;
		return finish_handshake(w);
	}
	if (hw_noise_hs_state(w->hs) == HW_NOISE_WRITE) {
		/* Message 1 read: answer with message 2. */
		if (plen != 1)
			return HW_EPROTO;
		self[0] = HW_RELAY_VERSION;
		return send_handshake(w, self, 1);
	}
	/* Message 3: the dialer's Ed25519 key must match its Noise key. */
	if (plen != MSG3_PAYLOAD)
		return HW_EPROTO;
	if (hw_pk_to_x25519(payload + 1, x) ||
	    sodium_memcmp(x, hw_noise_hs_remote_static(w->hs), 32))
		return HW_EAUTH;
	memcpy(w->remote_pk, payload + 1, HW_PK_LEN);
	return finish_handshake(w);
}

static void on_hs_timeout(uv_timer_t *t)
{
	struct hw_relay_wire *w = t->data;
	set_err(w, "handshake timed out");
	hw_relay_wire_close(w, -ETIMEDOUT, 0);
}

/* ---- keepalive ---- */

static void on_tick(uv_timer_t *t)
{
	struct hw_relay_wire *w = t->data;
	uint64_t now = uv_now(w->tcp.loop), ka = w->p.keepalive_ms;
	uint8_t ping[HW_RELAY_PING_LEN];
	int rc;

	if (now - w->last_rx >= 3 * ka) {
		set_err(w, "silent for %llu ms",
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
	if (w->rstart == w->rend && w->rbuf) {
		free(w->rbuf);
		w->rbuf = NULL;
		w->rcap = w->rstart = w->rend = 0;
		w->rgrow = 0;
	}
	if (w->writes == 0) {
		while (w->spares) {
			struct dreq *d = w->spares;
			w->spares = d->next;
			free(d);
		}
		w->nspares = 0;
	}
}

/* ---- receiving ---- */

static int rbuf_resize(struct hw_relay_wire *w, size_t cap)
{
	uint8_t *nb;

	if (w->rstart > 0) {
		memmove(w->rbuf, w->rbuf + w->rstart, w->rend - w->rstart);
		w->rend -= w->rstart;
		w->rstart = 0;
	}
	if (cap == w->rcap)
		return 0;
	if (!(nb = realloc(w->rbuf, cap)))
		return -ENOMEM;
	w->rbuf = nb;
	w->rcap = cap;
	return 0;
}

/* Makes room for a unit of need bytes starting at rstart. */
static int rbuf_ensure(struct hw_relay_wire *w, size_t need)
{
	if (w->rstart + need <= w->rcap)
		return 0;
	return rbuf_resize(w, need <= w->rcap ? w->rcap : RBUF_BIG);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct hw_relay_wire *w = h->data;
	size_t want = w->rgrow ? RBUF_BIG : RBUF_SMALL;

	if (w->rcap < want && rbuf_resize(w, want)) {
		*buf = uv_buf_init(NULL, 0);
		return;
	}
	if (w->rstart > 0 && w->rcap - w->rend < w->rcap / 4)
		rbuf_resize(w, w->rcap);
	*buf = uv_buf_init((char *)w->rbuf + w->rend,
			   (unsigned)(w->rcap - w->rend));
}

/* Decrypts one SEALED unit in place and hands out its control frames.
 * Returns 0, or non-zero once the wire is closing. */
static int unseal(struct hw_relay_wire *w, uint8_t *ct, size_t len)
{
	struct hw_relay_frame f;
	char text[HW_RELAY_TEXT_MAX + 1];
	size_t ptlen, off = 0;
	int rc;

	rc = hw_cipher_decrypt(w->rx, NULL, 0, ct, len, ct, &ptlen);
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
			set_err(w, "peer error: %s", text);
			hw_relay_wire_close(w, HW_ECLOSED, 0);
			break;
		default:
			w->p.ops->control(w, &f, w->p.ud);
		}
		if (w->state != ST_OPEN)
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

static void process(struct hw_relay_wire *w)
{
	struct hw_relay_frame f;
	size_t avail, need;
	uint8_t *p;
	int rc;

	while (w->state == ST_HANDSHAKE || w->state == ST_OPEN) {
		avail = w->rend - w->rstart;
		p = w->rbuf + w->rstart;
		if (w->state == ST_HANDSHAKE) {
			if (avail < REC_HDR) {
				need = REC_HDR;
				goto more;
			}
			need = (size_t)p[0] << 8 | p[1];
			if (need < HS_MIN_RECORD || need > HS_MAX_RECORD) {
				set_err(w, "handshake: bad record length %zu",
					need);
				hw_relay_wire_close(w, HW_EPROTO, 0);
				return;
			}
			need += REC_HDR;
			if (avail < need)
				goto more;
			w->rstart += need;
			if ((rc = handshake_record(w, p + REC_HDR,
						   need - REC_HDR))) {
				set_err(w, "handshake: %s", hw_strerror(rc));
				hw_relay_wire_close(w, rc, 0);
				return;
			}
			continue;
		}
		if (avail < HW_RELAY_HDR) {
			need = HW_RELAY_HDR;
			goto more;
		}
		hw_relay_get_header(p, &f);
		if (hw_relay_check_unit(&f)) {
			hw_relay_wire_fail(w, HW_EPROTO,
					   "bad unit: type 0x%02x stream %u "
					   "length %u",
					   f.type, f.stream, f.len);
			return;
		}
		need = HW_RELAY_HDR + f.len;
		if (avail < need)
			goto more;
		w->rstart += need;
		if (f.type == HW_RELAY_DATA)
			w->p.ops->data(w, f.stream, p + HW_RELAY_HDR, f.len,
				       w->p.ud);
		else if (unseal(w, p + HW_RELAY_HDR, f.len))
			return;
	}
	return;
more:
	if (rbuf_ensure(w, need)) {
		set_err(w, "out of memory");
		hw_relay_wire_close(w, -ENOMEM, 0);
	}
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct hw_relay_wire *w = s->data;

	if (n < 0) {
		if (n == UV_ENOBUFS) {
			set_err(w, "out of memory");
			hw_relay_wire_close(w, -ENOMEM, 0);
		} else if (n == UV_EOF) {
			set_err(w, "connection closed by peer");
			hw_relay_wire_close(w, HW_ECLOSED, 0);
		} else {
			set_err(w, "read: %s", uv_strerror((int)n));
			hw_relay_wire_close(w, (int)n, 0);
		}
		return;
	}
	if (n == 0)
		return;
	if ((size_t)n == buf->len && w->rcap < RBUF_BIG)
		w->rgrow = 1;
	w->rend += (size_t)n;
	w->last_rx = uv_now(w->tcp.loop);
	process(w);
	if (w->rstart == w->rend) {
		w->rstart = w->rend = 0;
		if (w->rcap <= RBUF_SMALL) {
			free(w->rbuf);
			w->rbuf = NULL;
			w->rcap = 0;
		}
	}
}

/* ---- setup ---- */

static int wire_new(struct hw_relay_wire **out, uv_loop_t *loop,
		    const struct hw_relay_wire_params *p, int dialer)
{
	struct hw_relay_wire *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return -ENOMEM;
	w->p = *p;
	w->dialer = dialer;
	if ((rc = uv_tcp_init(loop, &w->tcp)) < 0) {
		free(w);
		return rc;
	}
	uv_timer_init(loop, &w->timer);
	w->tcp.data = w->timer.data = w;
	w->pending = 2;
	*out = w;
	return 0;
}

static int start_handshake(struct hw_relay_wire *w)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss), rc;

	if (uv_tcp_getpeername(&w->tcp, (struct sockaddr *)&ss, &len) == 0) {
		char ip[INET6_ADDRSTRLEN] = "?";
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			uv_ip6_name(a, ip, sizeof(ip));
			snprintf(w->peer, sizeof(w->peer), "[%s]:%d", ip,
				 ntohs(a->sin6_port));
		} else {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			uv_ip4_name(a, ip, sizeof(ip));
			snprintf(w->peer, sizeof(w->peer), "%s:%d", ip,
				 ntohs(a->sin_port));
		}
	}
	uv_tcp_nodelay(&w->tcp, 1);
	w->state = ST_HANDSHAKE;
	rc = hw_noise_hs_new(&w->hs, HW_NOISE_XK,
			     w->dialer ? HW_NOISE_INITIATOR
				       : HW_NOISE_RESPONDER,
			     (const uint8_t *)HW_RELAY_SESSION_PROLOGUE,
			     strlen(HW_RELAY_SESSION_PROLOGUE),
			     w->p.x_priv, w->dialer ? w->remote_x : NULL);
	if (rc)
		return rc;
	if ((rc = uv_read_start((uv_stream_t *)&w->tcp, on_alloc, on_read)))
		return rc;
	if (w->dialer) {
		uint8_t v = HW_RELAY_VERSION;
		return send_handshake(w, &v, 1);
	}
	return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
	struct hw_relay_wire *w = req->data;
	int rc;

	w->pending--;
	if (w->state == ST_CLOSING) {
		wire_maybe_free(w);
		return;
	}
	if (status < 0) {
		set_err(w, "connect: %s", uv_strerror(status));
		hw_relay_wire_close(w, status, 0);
	} else if ((rc = start_handshake(w))) {
		set_err(w, "handshake: %s", hw_strerror(rc));
		hw_relay_wire_close(w, rc, 0);
	}
	wire_maybe_free(w);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
			struct addrinfo *res)
{
	struct hw_relay_wire *w = req->data;
	int rc = status;

	w->pending--;
	if (w->state == ST_CLOSING) {
		uv_freeaddrinfo(res);
		wire_maybe_free(w);
		return;
	}
	if (rc == 0) {
		w->state = ST_CONNECTING;
		w->dial->connect.data = w;
		rc = uv_tcp_connect(&w->dial->connect, &w->tcp, res->ai_addr,
				    on_connect);
		if (rc == 0)
			w->pending++;
	}
	uv_freeaddrinfo(res);
	if (rc) {
		set_err(w, "%s: %s", status ? "resolve" : "connect",
			uv_strerror(rc));
		hw_relay_wire_close(w, rc, 0);
	}
	wire_maybe_free(w);
}

int hw_relay_wire_dial(struct hw_relay_wire **out, uv_loop_t *loop,
		       const struct hw_relay_wire_params *p,
		       const uint8_t remote_pk[HW_PK_LEN], const char *host,
		       uint16_t port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct hw_relay_wire *w = NULL;
	char service[8];
	int rc;

	*out = NULL;
	if ((rc = wire_new(&w, loop, p, 1)))
		return rc;
	memcpy(w->remote_pk, remote_pk, HW_PK_LEN);
	rc = hw_pk_to_x25519(remote_pk, w->remote_x);
	if (rc == 0 && !(w->dial = calloc(1, sizeof(*w->dial))))
		rc = -ENOMEM;
	if (rc == 0) {
		snprintf(service, sizeof(service), "%u", port);
		w->state = ST_RESOLVING;
		w->dial->gai.data = w;
		rc = uv_getaddrinfo(loop, &w->dial->gai, on_resolved,
				    host[0] ? host : NULL, service, &hints);
	}
	if (rc) {
		w->closed_called = 1; /* nothing started: no callback */
		hw_relay_wire_close(w, rc, 0);
		return rc;
	}
	w->pending++;
	uv_timer_start(&w->timer, on_hs_timeout, p->handshake_timeout_ms, 0);
	*out = w;
	return 0;
}

int hw_relay_wire_accept(struct hw_relay_wire **out, uv_stream_t *server,
			 const struct hw_relay_wire_params *p)
{
	struct hw_relay_wire *w = NULL;
	int rc;

	*out = NULL;
	if ((rc = wire_new(&w, server->loop, p, 0)))
		return rc;
	if ((rc = uv_accept(server, (uv_stream_t *)&w->tcp)) ||
	    (rc = start_handshake(w))) {
		w->closed_called = 1;
		hw_relay_wire_close(w, rc, 0);
		return rc;
	}
	uv_timer_start(&w->timer, on_hs_timeout, p->handshake_timeout_ms, 0);
	*out = w;
	return 0;
}

const char *hw_relay_wire_error(const struct hw_relay_wire *w)
{
	return w->err;
}

const uint8_t *hw_relay_wire_remote_pk(const struct hw_relay_wire *w)
{
	return w->remote_pk;
}

const char *hw_relay_wire_peer(const struct hw_relay_wire *w)
{
	return w->peer;
}

int hw_relay_wire_is_ready(const struct hw_relay_wire *w)
{
	return w->state == ST_OPEN;
}

int hw_relay_wire_is_closing(const struct hw_relay_wire *w)
{
	return w->state == ST_CLOSING;
}

void *hw_relay_wire_ud(const struct hw_relay_wire *w)
{
	return w->p.ud;
}

void hw_relay_wire_set_ud(struct hw_relay_wire *w, void *ud)
{
	w->p.ud = ud;
}
