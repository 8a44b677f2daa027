#include "wire/nstream.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/noise.h"
#include "util/err.h"
#include "wire/record.h"

#define HS_MIN_RECORD 48  /* e + tag */
#define HS_MAX_RECORD 256 /* our largest handshake message is 97 bytes */
#define MSG3_PAYLOAD (1 + HW_PK_LEN)
#define MAX_SPARE_RAW 16  /* raw write requests kept for reuse */

enum ns_state { ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN,
		ST_CLOSING };

/* Bytes written as one piece: a handshake record or a sealed frame
 * (header | plaintext sealed in place | tag | trailer). */
struct chunk {
	struct chunk *next; /* spare list */
	uv_write_t req;
	struct hw_nstream *s;
	size_t len;   /* plaintext gathered */
	size_t cap;   /* plaintext room */
	size_t total; /* bytes on the wire once written */
	uint8_t buf[];
};

/* A raw write in flight: the header is copied, the buffers are the
 * caller's. */
struct rawreq {
	struct rawreq *next; /* spare list */
	uv_write_t req;
	struct hw_nstream *s;
	void (*done)(void *arg, int status);
	void *arg;
	size_t total;
	uint8_t hdr[HW_NSTREAM_MAX_HDR];
};

struct dial {
	uv_getaddrinfo_t gai;
	uv_connect_t connect;
};

struct hw_nstream {
	uv_tcp_t tcp; /* unused (never initialised) over a carrier */
	uv_timer_t timer; /* handshake timeout, tick, graceful close cap */
	struct dial *dial;
	/* Set when the stream runs over a carrier instead of TCP. */
	const struct hw_nstream_carrier_ops *cops;
	void *carrier;
	/* What the stream keeps of its params. */
	struct {
		const struct hw_nstream_kind *kind;
		const struct hw_identity *id;
		const uint8_t *x_priv;
		const char *prologue;
		void *ud;
		unsigned tick_ms;
	} p;
	enum ns_state state;
	unsigned dialer : 1;
	unsigned carrier_gone : 1;  /* no more calls into the carrier */
	unsigned graceful_wait : 1; /* closing once writes in flight end */
	unsigned blocked : 1;       /* hw_nstream_blocked was called */
	unsigned rgrow : 1;         /* reads fill the small buffer */
	unsigned closed_called : 1;
	unsigned has_priv : 1;
	unsigned paused : 1;     /* hw_nstream_pause: frames wait unread */
	unsigned processing : 1; /* process() is on the stack */
	int pending; /* handles and requests that still call back */
	int reason;
	struct hw_noise_hs *hs;
	struct hw_cipher *tx, *rx;
	uint8_t *rbuf; /* unread bytes are rbuf[rstart..rend) */
	size_t rcap, rstart, rend;
	struct chunk *cur;    /* the open frame */
	struct chunk *spares; /* at most kind->max_spares */
	struct rawreq *rspares;
	unsigned nspares, nrspares;
	unsigned writes;      /* writes in flight */
	size_t queued;        /* bytes written and not taken */
	size_t queued_sealed; /* of those, handshake records and frames */
	uint8_t remote_pk[HW_PK_LEN];
	char peer[64];
	char err[160];
};

/* Where the user's private area starts behind the stream. */
#define PRIV_OFF ((sizeof(struct hw_nstream) + 7) & ~(size_t)7)

/* ---- lifetime ---- */

static void free_spares(struct hw_nstream *s)
{
	while (s->spares) {
		struct chunk *k = s->spares;
		s->spares = k->next;
		free(k);
	}
	while (s->rspares) {
		struct rawreq *r = s->rspares;
		s->rspares = r->next;
		free(r);
	}
	s->nspares = s->nrspares = 0;
}

static void maybe_free(struct hw_nstream *s)
{
	if (s->pending > 0)
		return;
	if (!s->closed_called) {
		s->closed_called = 1;
		s->p.kind->ops->closed(s, s->reason, s->p.ud);
	}
	hw_noise_hs_free(s->hs);
	hw_cipher_free(s->tx);
	hw_cipher_free(s->rx);
	free(s->rbuf);
	free(s->cur);
	free_spares(s);
	free(s->dial);
	free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct hw_nstream *s = h->data;
	s->pending--;
	maybe_free(s);
}

static void close_carrier(struct hw_nstream *s)
{
	if (s->carrier_gone)
		return;
	s->carrier_gone = 1;
	/* The carrier completes our writes in flight from inside close:
	 * hold the stream until it returns. */
	s->pending++;
	s->cops->close(s->carrier, s->reason);
	s->pending--;
}

static void close_handles(struct hw_nstream *s)
{
	if (s->cops)
		close_carrier(s);
	else if (!uv_is_closing((uv_handle_t *)&s->tcp))
		uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->timer))
		uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct hw_nstream *s = req->data;
	(void)status;
	free(req); /* allocated by the close: most streams never need one */
	s->pending--;
	close_handles(s);
	maybe_free(s);
}

static void on_close_timeout(uv_timer_t *t)
{
	close_handles(t->data);
}

void hw_nstream_close(struct hw_nstream *s, int reason, int graceful)
{
	if (s->state == ST_CLOSING)
		return;
	s->reason = reason;
	graceful = graceful && s->state == ST_OPEN;
	s->state = ST_CLOSING;
	uv_timer_stop(&s->timer);
	if (graceful)
		hw_nstream_flush(s);
	if (s->cops) {
		if (graceful && s->writes > 0 && !s->carrier_gone) {
			s->graceful_wait = 1;
			uv_timer_start(&s->timer, on_close_timeout,
				       HW_NSTREAM_GRACEFUL_MS, 0);
			return;
		}
		close_handles(s);
		return;
	}
	if (!uv_is_closing((uv_handle_t *)&s->tcp))
		uv_read_stop((uv_stream_t *)&s->tcp);
	if (graceful) {
		uv_shutdown_t *req = malloc(sizeof(*req));
		if (req) {
			req->data = s;
			if (uv_shutdown(req, (uv_stream_t *)&s->tcp,
					on_shutdown) == 0) {
				s->pending++;
				uv_timer_start(&s->timer, on_close_timeout,
					       HW_NSTREAM_GRACEFUL_MS, 0);
				return;
			}
			free(req);
		}
	}
	close_handles(s);
}

void hw_nstream_set_error(struct hw_nstream *s, const char *fmt, ...)
{
	va_list ap;

	if (s->err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

/* Closes now for rc, keeping why in words. */
static void fail(struct hw_nstream *s, int rc, const char *what)
{
	hw_nstream_set_error(s, "%s: %s", what, hw_strerror(rc));
	hw_nstream_close(s, rc, 0);
}

/* ---- writing ---- */

static struct chunk *chunk_get(struct hw_nstream *s, size_t cap)
{
	struct chunk *k = s->spares;

	if (k && k->cap >= cap) {
		s->spares = k->next;
		s->nspares--;
	} else if ((k = malloc(sizeof(*k) + s->p.kind->frame_hdr + cap +
			       HW_CIPHER_TAGLEN + s->p.kind->trail_max))) {
		k->cap = cap;
	} else {
		return NULL;
	}
	k->next = NULL;
	k->s = s;
	k->len = 0;
	return k;
}

static void chunk_put(struct hw_nstream *s, struct chunk *k)
{
	if (s->nspares < s->p.kind->max_spares) {
		k->next = s->spares;
		s->spares = k;
		s->nspares++;
	} else {
		free(k);
	}
}

/* A write finished: the accounting every kind of write shares. */
static void write_finished(struct hw_nstream *s, size_t total, int sealed,
			   int status)
{
	s->writes--;
	s->queued -= total;
	if (sealed)
		s->queued_sealed -= total;
	if (status < 0 && s->state != ST_CLOSING) {
		hw_nstream_set_error(s, "write: %s", uv_strerror(status));
		hw_nstream_close(s, status, 0);
	} else if (s->state == ST_OPEN) {
		/* Whatever gathered while this write was out goes now. */
		if (s->writes == 0 && s->cur && s->cur->len)
			hw_nstream_flush(s);
		if (s->blocked && s->queued < s->p.kind->low_water) {
			s->blocked = 0;
			if (s->p.kind->ops->drained)
				s->p.kind->ops->drained(s, s->p.ud);
		}
	} else if (s->graceful_wait && s->writes == 0) {
		s->graceful_wait = 0;
		close_handles(s);
	}
	s->pending--;
	maybe_free(s);
}

static void chunk_written(struct chunk *k, int status)
{
	struct hw_nstream *s = k->s;
	size_t total = k->total;

	chunk_put(s, k);
	write_finished(s, total, 1, status);
}

static void on_chunk_write(uv_write_t *req, int status)
{
	chunk_written(req->data, status);
}

static void on_carrier_write(void *arg, int status)
{
	chunk_written(arg, status);
}

static void count_write(struct hw_nstream *s, size_t total, int sealed)
{
	s->pending++;
	s->writes++;
	s->queued += total;
	if (sealed)
		s->queued_sealed += total;
}

/* Writes the first total bytes of k (a handshake record or a sealed
 * frame); k is the engine's again on failure. */
static int write_chunk(struct hw_nstream *s, struct chunk *k, size_t total)
{
	uv_buf_t b = uv_buf_init((char *)k->buf, (unsigned)total);
	int rc;

	k->req.data = k;
	k->total = total;
	if (s->cops)
		rc = s->carrier_gone ? -ENOTCONN
				     : s->cops->write(s->carrier, k->buf, total,
						      on_carrier_write, k);
	else
		rc = uv_write(&k->req, (uv_stream_t *)&s->tcp, &b, 1,
			      on_chunk_write);
	if (rc < 0) {
		chunk_put(s, k);
		return rc;
	}
	count_write(s, total, 1);
	return 0;
}

/* Seals the open frame and writes it, followed by trail bytes already in
 * place behind the tag. A failure closes the stream. */
static int flush_with(struct hw_nstream *s, size_t trail)
{
	struct chunk *k = s->cur;
	uint8_t *pt;
	size_t ctlen;
	int rc;

	if (!k || k->len == 0)
		return 0;
	s->cur = NULL;
	pt = k->buf + s->p.kind->frame_hdr;
	rc = hw_cipher_encrypt(s->tx, NULL, 0, pt, k->len, pt, &ctlen);
	if (rc) {
		chunk_put(s, k);
		fail(s, rc, "seal");
		return rc;
	}
	s->p.kind->put_header(k->buf, ctlen);
	rc = write_chunk(s, k, s->p.kind->frame_hdr + ctlen + trail);
	if (rc) {
		hw_nstream_set_error(s, "write: %s", uv_strerror(rc));
		hw_nstream_close(s, rc, 0);
	}
	return rc;
}

int hw_nstream_flush(struct hw_nstream *s)
{
	return flush_with(s, 0);
}

int hw_nstream_reserve(struct hw_nstream *s, size_t n, size_t trail,
		       uint8_t **dst)
{
	const struct hw_nstream_kind *kd = s->p.kind;
	struct chunk *k;
	int rc;

	if (s->state != ST_OPEN)
		return -ENOTCONN;
	if (n > kd->frame_max || trail > kd->trail_max)
		return HW_ETOOBIG;
	if (s->cur && s->cur->len + n > kd->frame_max &&
	    (rc = hw_nstream_flush(s)))
		return rc;
	k = s->cur;
	if (!k) {
		if (!(k = chunk_get(s, n > kd->frame_min ? n : kd->frame_min)))
			return -ENOMEM;
		s->cur = k;
	} else if (k->len + n > k->cap) {
		size_t cap = k->cap * 2;
		struct chunk *nk;
		if (cap < k->len + n)
			cap = k->len + n;
		if (cap > kd->frame_max)
			cap = kd->frame_max;
		nk = realloc(k, sizeof(*k) + kd->frame_hdr + cap +
					HW_CIPHER_TAGLEN + kd->trail_max);
		if (!nk)
			return -ENOMEM;
		k = s->cur = nk;
		k->cap = cap;
	}
	*dst = k->buf + kd->frame_hdr + k->len;
	return 0;
}

int hw_nstream_commit(struct hw_nstream *s, size_t n, size_t trail)
{
	if (s->state != ST_OPEN || !s->cur)
		return -ENOTCONN;
	s->cur->len += n;
	/* Trailing bytes must follow their frame on the wire, so the frame
	 * closes now. Otherwise: an idle stream sends now, a busy one lets
	 * the frame fill up until the write in flight completes. */
	if (trail || s->writes == 0)
		return flush_with(s, trail);
	return 0;
}

static struct rawreq *rawreq_get(struct hw_nstream *s)
{
	struct rawreq *r = s->rspares;

	if (r) {
		s->rspares = r->next;
		s->nrspares--;
		return r;
	}
	return malloc(sizeof(*r));
}

static void rawreq_put(struct hw_nstream *s, struct rawreq *r)
{
	if (s->nrspares < MAX_SPARE_RAW) {
		r->next = s->rspares;
		s->rspares = r;
		s->nrspares++;
	} else {
		free(r);
	}
}

static void on_raw_write(uv_write_t *req, int status)
{
	struct rawreq *r = req->data;
	struct hw_nstream *s = r->s;
	size_t total = r->total;

	r->done(r->arg, status < 0 ? status : 0);
	rawreq_put(s, r);
	write_finished(s, total, 0, status);
}

int hw_nstream_write_raw(struct hw_nstream *s, const uint8_t *hdr,
			 size_t hlen, const uv_buf_t *bufs, unsigned nbufs,
			 void (*done)(void *arg, int status), void *arg)
{
	uv_buf_t b[1 + HW_NSTREAM_MAX_BUFS];
	struct rawreq *r;
	size_t total = hlen;
	int rc;

	if (s->state != ST_OPEN)
		return -ENOTCONN;
	if (s->cops)
		return -EOPNOTSUPP;
	if (hlen > HW_NSTREAM_MAX_HDR || nbufs > HW_NSTREAM_MAX_BUFS ||
	    hlen + nbufs == 0)
		return -EINVAL;
	for (unsigned i = 0; i < nbufs; i++) {
		total += bufs[i].len;
		b[i + 1] = bufs[i];
	}
	/* What was queued before this goes before it. */
	if (s->cur && s->cur->len && hw_nstream_flush(s))
		return -ENOTCONN;
	if (!(r = rawreq_get(s)))
		return -ENOMEM;
	if (hlen)
		memcpy(r->hdr, hdr, hlen);
	b[0] = uv_buf_init((char *)r->hdr, (unsigned)hlen);
	r->s = s;
	r->done = done;
	r->arg = arg;
	r->total = total;
	r->req.data = r;
	rc = uv_write(&r->req, (uv_stream_t *)&s->tcp, hlen ? b : b + 1,
		      hlen ? nbufs + 1 : nbufs, on_raw_write);
	if (rc < 0) {
		rawreq_put(s, r);
		return rc;
	}
	count_write(s, total, 0);
	return 0;
}

void hw_nstream_blocked(struct hw_nstream *s)
{
	s->blocked = 1;
}

size_t hw_nstream_queued(const struct hw_nstream *s)
{
	return s->queued + (s->cur ? s->cur->len : 0);
}

size_t hw_nstream_queued_sealed(const struct hw_nstream *s)
{
	return s->queued_sealed + (s->cur ? s->cur->len : 0);
}

void hw_nstream_trim(struct hw_nstream *s)
{
	if (s->rbuf && s->rstart == s->rend) {
		free(s->rbuf);
		s->rbuf = NULL;
		s->rcap = s->rstart = s->rend = 0;
		s->rgrow = 0;
	}
	if (s->writes == 0)
		free_spares(s);
}

/* ---- handshake ---- */

static int send_handshake(struct hw_nstream *s, const uint8_t *payload,
			  size_t plen)
{
	struct chunk *k = chunk_get(s, HS_MAX_RECORD);
	size_t len;
	int rc;

	if (!k)
		return -ENOMEM;
	rc = hw_noise_hs_write(s->hs, payload, plen, k->buf + HW_RECORD_HDR,
			       HS_MAX_RECORD, &len);
	if (rc) {
		chunk_put(s, k);
		return rc;
	}
	hw_record_put_header(k->buf, len);
	return write_chunk(s, k, HW_RECORD_HDR + len);
}

static void on_tick(uv_timer_t *t)
{
	struct hw_nstream *s = t->data;
	s->p.kind->ops->tick(s, s->p.ud);
}

static int finish_handshake(struct hw_nstream *s)
{
	int rc = hw_noise_hs_split(s->hs, &s->tx, &s->rx);

	if (rc)
		return rc;
	hw_noise_hs_free(s->hs);
	s->hs = NULL;
	uv_timer_stop(&s->timer);
	s->state = ST_OPEN;
	/* Paused during the handshake: the pause starts now. */
	if (s->paused) {
		if (s->cops && s->cops->pause)
			s->cops->pause(s->carrier, 1);
		else if (!s->cops)
			uv_read_stop((uv_stream_t *)&s->tcp);
	}
	if (s->p.tick_ms && s->p.kind->ops->tick)
		uv_timer_start(&s->timer, on_tick, s->p.tick_ms, s->p.tick_ms);
	s->p.kind->ops->ready(s, s->p.ud);
	return 0;
}

static int handshake_record(struct hw_nstream *s, uint8_t *rec, size_t len)
{
	uint8_t payload[HS_MAX_RECORD], x[32], self[MSG3_PAYLOAD];
	size_t plen;
	int rc;

	rc = hw_noise_hs_read(s->hs, rec, len, payload, sizeof(payload),
			      &plen);
	if (rc)
		return rc;
	if (plen < 1 || payload[0] != s->p.kind->version)
		return HW_EPROTO;
	self[0] = s->p.kind->version;
	if (s->dialer) {
		/* Message 2 read: answer with message 3 and our identity. */
		if (plen != 1)
			return HW_EPROTO;
		memcpy(self + 1, s->p.id->pk, HW_PK_LEN);
		if ((rc = send_handshake(s, self, sizeof(self))))
			return rc;
		return finish_handshake(s);
	}
	if (hw_noise_hs_state(s->hs) == HW_NOISE_WRITE) {
		/* Message 1 read: answer with message 2. */
		if (plen != 1)
			return HW_EPROTO;
		return send_handshake(s, self, 1);
	}
	/* Message 3: the dialer's Ed25519 key must match its Noise key. */
	if (plen != MSG3_PAYLOAD)
		return HW_EPROTO;
	if (hw_pk_to_x25519(payload + 1, x) ||
	    sodium_memcmp(x, hw_noise_hs_remote_static(s->hs), 32))
		return HW_EAUTH;
	memcpy(s->remote_pk, payload + 1, HW_PK_LEN);
	return finish_handshake(s);
}

static void on_hs_timeout(uv_timer_t *t)
{
	struct hw_nstream *s = t->data;
	hw_nstream_set_error(s, "handshake timed out");
	hw_nstream_close(s, -ETIMEDOUT, 0);
}

/* ---- reading ---- */

static int rbuf_resize(struct hw_nstream *s, size_t cap)
{
	uint8_t *nb;

	if (s->rstart > 0) {
		memmove(s->rbuf, s->rbuf + s->rstart, s->rend - s->rstart);
		s->rend -= s->rstart;
		s->rstart = 0;
	}
	if (cap == s->rcap)
		return 0;
	if (!(nb = realloc(s->rbuf, cap)))
		return -ENOMEM;
	s->rbuf = nb;
	s->rcap = cap;
	return 0;
}

/* Room to read into at rbuf + rend: *len 0 when out of memory. */
static void rbuf_space(struct hw_nstream *s, uint8_t **buf, size_t *len)
{
	const struct hw_nstream_kind *kd = s->p.kind;
	size_t want = (s->rgrow || !kd->rbuf_small) ? kd->rbuf_big
						     : kd->rbuf_small;

	*len = 0;
	if (s->rcap < want && rbuf_resize(s, want))
		return;
	/* Move the unread tail to the front once less than half the buffer
	 * (a whole frame, for a buffer of two) fits behind it. */
	if (s->rstart > 0 && s->rcap - s->rend < s->rcap / 2)
		rbuf_resize(s, s->rcap);
	*buf = s->rbuf + s->rend;
	*len = s->rcap - s->rend;
}

/* Frames or handshake records out of the read buffer. Returns when more
 * bytes are needed or the stream is closing. */
static void process_frames(struct hw_nstream *s)
{
	size_t avail, need = 0, took;
	uint8_t *p;
	int rc;

	while (s->state == ST_HANDSHAKE || s->state == ST_OPEN) {
		avail = s->rend - s->rstart;
		p = s->rbuf + s->rstart;
		if (avail == 0)
			return;
		if (s->state == ST_OPEN) {
			/* Paused: the frames stay in the buffer (and the
			 * bytes behind them in the kernel or the carrier)
			 * until hw_nstream_pause(s, 0). */
			if (s->paused)
				return;
			need = 0;
			took = s->p.kind->ops->input(s, p, avail, &need, s->p.ud);
			if (took > 0) {
				s->rstart += took;
				continue;
			}
			if (s->state != ST_OPEN)
				return;
			break;
		}
		if (avail < HW_RECORD_HDR) {
			need = HW_RECORD_HDR;
			break;
		}
		need = (size_t)p[0] << 8 | p[1];
		if (need < HS_MIN_RECORD || need > HS_MAX_RECORD) {
			hw_nstream_set_error(s, "handshake: bad record length "
						"%zu", need);
			hw_nstream_close(s, HW_EPROTO, 0);
			return;
		}
		need += HW_RECORD_HDR;
		if (avail < need)
			break;
		s->rstart += need;
		if ((rc = handshake_record(s, p + HW_RECORD_HDR,
					   need - HW_RECORD_HDR))) {
			fail(s, rc, "handshake");
			return;
		}
	}
	/* The next frame needs need bytes from rstart. */
	if (s->state == ST_CLOSING)
		return;
	if (need > s->p.kind->rbuf_big) {
		hw_nstream_set_error(s, "frame of %zu bytes is too large",
				     need);
		hw_nstream_close(s, HW_EPROTO, 0);
	} else if (s->rstart + need > s->rcap &&
		   rbuf_resize(s, need <= s->rcap ? s->rcap : s->p.kind->rbuf_big)) {
		hw_nstream_set_error(s, "out of memory");
		hw_nstream_close(s, -ENOMEM, 0);
	}
}

/* Not re-entered: a resume from inside an input callback only clears
 * the flag, and the loop on the stack goes on. */
static void process(struct hw_nstream *s)
{
	if (s->processing)
		return;
	s->processing = 1;
	process_frames(s);
	s->processing = 0;
}

int hw_nstream_unseal(struct hw_nstream *s, uint8_t *ct, size_t len,
		      size_t *ptlen)
{
	return hw_cipher_decrypt(s->rx, NULL, 0, ct, len, ct, ptlen);
}

/* n bytes arrived at rbuf + rend; full: they filled the space offered. */
static void received(struct hw_nstream *s, size_t n, int full)
{
	if (full && s->rcap < s->p.kind->rbuf_big)
		s->rgrow = 1;
	s->rend += n;
	process(s);
	if (s->rstart == s->rend) {
		s->rstart = s->rend = 0;
		/* Small, or grown past rbuf_big while paused: given back. */
		if (s->rcap != s->p.kind->rbuf_big) {
			free(s->rbuf);
			s->rbuf = NULL;
			s->rcap = 0;
		}
	}
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct hw_nstream *s = h->data;
	uint8_t *space = NULL;
	size_t len;

	(void)hint;
	rbuf_space(s, &space, &len);
	*buf = uv_buf_init((char *)space, (unsigned)len);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct hw_nstream *s = st->data;

	if (n < 0) {
		if (n == UV_ENOBUFS) {
			hw_nstream_set_error(s, "out of memory");
			hw_nstream_close(s, -ENOMEM, 0);
		} else if (n == UV_EOF) {
			hw_nstream_set_error(s, "connection closed by peer");
			hw_nstream_close(s, HW_ECLOSED, 0);
		} else {
			hw_nstream_set_error(s, "read: %s",
					     uv_strerror((int)n));
			hw_nstream_close(s, (int)n, 0);
		}
		return;
	}
	if (n > 0)
		received(s, (size_t)n, (size_t)n == buf->len);
}

/* A paused stream over a carrier keeps what the carrier delivers, up to
 * HW_NSTREAM_HELD_MAX beyond a full read buffer. */
static void hold_input(struct hw_nstream *s, const uint8_t *data, size_t len)
{
	size_t unread = s->rend - s->rstart;

	if (unread + len > s->p.kind->rbuf_big + HW_NSTREAM_HELD_MAX) {
		hw_nstream_set_error(s, "%zu bytes arrived while input was "
				     "paused, more than the carrier may send",
				     unread + len);
		hw_nstream_close(s, HW_EPROTO, 0);
		return;
	}
	if (s->rend + len > s->rcap &&
	    rbuf_resize(s, unread + len > s->rcap ? unread + len : s->rcap)) {
		hw_nstream_set_error(s, "out of memory");
		hw_nstream_close(s, -ENOMEM, 0);
		return;
	}
	memcpy(s->rbuf + s->rend, data, len);
	s->rend += len;
}

void hw_nstream_carrier_input(struct hw_nstream *s, const uint8_t *data,
			      size_t len)
{
	uint8_t *space;
	size_t room, n;

	if (s->paused && s->state == ST_OPEN) {
		hold_input(s, data, len);
		return;
	}
	/* Held across the callbacks, which may close the stream. */
	s->pending++;
	while (len > 0 &&
	       (s->state == ST_HANDSHAKE || s->state == ST_OPEN)) {
		if (s->paused && s->state == ST_OPEN) {
			/* An input callback paused the stream. */
			hold_input(s, data, len);
			break;
		}
		rbuf_space(s, &space, &room);
		if (room == 0) {
			/* Out of memory, or a buffer full of a frame that
			 * process() would have refused: never spin. */
			hw_nstream_set_error(s, "cannot buffer input");
			hw_nstream_close(s, -ENOMEM, 0);
			break;
		}
		n = len < room ? len : room;
		memcpy(space, data, n);
		data += n;
		len -= n;
		received(s, n, n == room);
	}
	s->pending--;
	maybe_free(s);
}

void hw_nstream_carrier_closed(struct hw_nstream *s, int reason)
{
	s->carrier_gone = 1;
	s->pending++;
	if (s->graceful_wait) {
		/* A graceful close was waiting for writes the carrier will
		 * not finish: it ends now, for the carrier's reason. */
		s->graceful_wait = 0;
		s->reason = reason ? reason : HW_ECLOSED;
		uv_timer_stop(&s->timer);
		close_handles(s);
	}
	hw_nstream_close(s, reason ? reason : HW_ECLOSED, 0);
	s->pending--;
	maybe_free(s);
}

void hw_nstream_pause(struct hw_nstream *s, int paused)
{
	if (!paused == !s->paused)
		return;
	s->paused = paused ? 1 : 0;
	if (s->state != ST_OPEN)
		return;
	if (s->cops) {
		if (s->cops->pause && !s->carrier_gone)
			s->cops->pause(s->carrier, s->paused);
	} else if (s->paused) {
		uv_read_stop((uv_stream_t *)&s->tcp);
	} else if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read)) {
		hw_nstream_set_error(s, "read: cannot resume");
		hw_nstream_close(s, -EIO, 0);
		return;
	}
	if (s->paused || s->processing || s->rstart == s->rend)
		return;
	/* What arrived before the pause goes on now. */
	s->pending++;
	received(s, 0, 0);
	s->pending--;
	maybe_free(s);
}

int hw_nstream_is_paused(const struct hw_nstream *s)
{
	return s->paused;
}

/* ---- setup ---- */

static int ns_new(struct hw_nstream **out, uv_loop_t *loop,
		  const struct hw_nstream_params *p, int dialer,
		  const struct hw_nstream_carrier_ops *cops, void *carrier)
{
	struct hw_nstream *s = calloc(1, PRIV_OFF + p->priv_size);
	int rc;

	if (!s)
		return -ENOMEM;
	s->p.kind = p->kind;
	s->p.id = p->id;
	s->p.x_priv = p->x_priv;
	s->p.prologue = p->prologue;
	s->p.tick_ms = p->tick_ms;
	s->p.ud = p->ud;
	if (p->priv_size) {
		s->has_priv = 1;
		s->p.ud = (char *)s + PRIV_OFF;
	}
	s->dialer = dialer ? 1 : 0;
	s->cops = cops;
	s->carrier = carrier;
	if (!cops && (rc = uv_tcp_init(loop, &s->tcp)) < 0) {
		free(s);
		return rc;
	}
	uv_timer_init(loop, &s->timer);
	s->tcp.data = s->timer.data = s;
	s->pending = cops ? 1 : 2;
	*out = s;
	return 0;
}

/* Ends a stream that never started: no callback. */
static int abandon(struct hw_nstream *s, int rc)
{
	s->closed_called = 1;
	hw_nstream_close(s, rc, 0);
	return rc;
}

static int start_noise(struct hw_nstream *s)
{
	uint8_t remote_x[32];
	int rc;

	s->state = ST_HANDSHAKE;
	if (s->dialer && (rc = hw_pk_to_x25519(s->remote_pk, remote_x)))
		return rc;
	rc = hw_noise_hs_new(&s->hs, HW_NOISE_XK,
			     s->dialer ? HW_NOISE_INITIATOR
				       : HW_NOISE_RESPONDER,
			     (const uint8_t *)s->p.prologue,
			     strlen(s->p.prologue), s->p.x_priv,
			     s->dialer ? remote_x : NULL);
	if (rc)
		return rc;
	if (!s->cops && (rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc,
					    on_read)))
		return rc;
	if (s->dialer) {
		uint8_t v = s->p.kind->version;
		return send_handshake(s, &v, 1);
	}
	return 0;
}

/* Names the peer and starts the handshake once TCP is up. */
static int start_tcp(struct hw_nstream *s)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0) {
		char ip[INET6_ADDRSTRLEN] = "?";
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			uv_ip6_name(a, ip, sizeof(ip));
			snprintf(s->peer, sizeof(s->peer), "[%s]:%d", ip,
				 ntohs(a->sin6_port));
		} else {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			uv_ip4_name(a, ip, sizeof(ip));
			snprintf(s->peer, sizeof(s->peer), "%s:%d", ip,
				 ntohs(a->sin_port));
		}
	}
	uv_tcp_nodelay(&s->tcp, 1);
	return start_noise(s);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct hw_nstream *s = req->data;
	int rc;

	s->pending--;
	if (s->state == ST_CLOSING) {
		maybe_free(s);
		return;
	}
	if (status < 0) {
		hw_nstream_set_error(s, "connect: %s", uv_strerror(status));
		hw_nstream_close(s, status, 0);
	} else if ((rc = start_tcp(s))) {
		fail(s, rc, "handshake");
	}
	maybe_free(s);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
			struct addrinfo *res)
{
	struct hw_nstream *s = req->data;
	int rc = status;

	s->pending--;
	if (s->state == ST_CLOSING) {
		uv_freeaddrinfo(res);
		maybe_free(s);
		return;
	}
	if (rc == 0) {
		s->state = ST_CONNECTING;
		s->dial->connect.data = s;
		rc = uv_tcp_connect(&s->dial->connect, &s->tcp, res->ai_addr,
				    on_connect);
		if (rc == 0)
			s->pending++;
	}
	uv_freeaddrinfo(res);
	if (rc) {
		hw_nstream_set_error(s, "%s: %s", status ? "resolve" : "connect",
				     uv_strerror(rc));
		hw_nstream_close(s, rc, 0);
	}
	maybe_free(s);
}

int hw_nstream_dial(struct hw_nstream **out, uv_loop_t *loop,
		    const struct hw_nstream_params *p,
		    const uint8_t remote_pk[HW_PK_LEN], const char *host,
		    uint16_t port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct hw_nstream *s = NULL;
	char service[8];
	uint8_t x[32];
	int rc;

	*out = NULL;
	if ((rc = ns_new(&s, loop, p, 1, NULL, NULL)))
		return rc;
	memcpy(s->remote_pk, remote_pk, HW_PK_LEN);
	/* A key that is no key fails now, with nothing started. */
	rc = hw_pk_to_x25519(remote_pk, x);
	if (rc == 0 && !(s->dial = calloc(1, sizeof(*s->dial))))
		rc = -ENOMEM;
	if (rc == 0) {
		snprintf(service, sizeof(service), "%u", port);
		s->state = ST_RESOLVING;
		s->dial->gai.data = s;
		rc = uv_getaddrinfo(loop, &s->dial->gai, on_resolved,
				    host[0] ? host : NULL, service, &hints);
	}
	if (rc)
		return abandon(s, rc);
	s->pending++;
	uv_timer_start(&s->timer, on_hs_timeout, p->handshake_timeout_ms, 0);
	*out = s;
	return 0;
}

int hw_nstream_accept(struct hw_nstream **out, uv_stream_t *server,
		      const struct hw_nstream_params *p)
{
	struct hw_nstream *s = NULL;
	int rc;

	*out = NULL;
	if ((rc = ns_new(&s, server->loop, p, 0, NULL, NULL)))
		return rc;
	if ((rc = uv_accept(server, (uv_stream_t *)&s->tcp)) ||
	    (rc = start_tcp(s)))
		return abandon(s, rc);
	uv_timer_start(&s->timer, on_hs_timeout, p->handshake_timeout_ms, 0);
	*out = s;
	return 0;
}

int hw_nstream_open_carrier(struct hw_nstream **out, uv_loop_t *loop,
			    const struct hw_nstream_params *p,
			    const struct hw_nstream_carrier_ops *cops,
			    void *carrier, const uint8_t *remote_pk,
			    const char *peer)
{
	struct hw_nstream *s = NULL;
	uint8_t x[32];
	int rc = 0;

	*out = NULL;
	if ((rc = ns_new(&s, loop, p, remote_pk != NULL, cops, carrier)))
		return rc;
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
	if (remote_pk) {
		memcpy(s->remote_pk, remote_pk, HW_PK_LEN);
		/* A key that is no key fails now, with nothing started. */
	rc = hw_pk_to_x25519(remote_pk, x);
	}
	/* A failure here leaves the carrier to the caller. */
	if (rc || (rc = start_noise(s))) {
		s->carrier_gone = 1;
		return abandon(s, rc);
	}
	uv_timer_start(&s->timer, on_hs_timeout, p->handshake_timeout_ms, 0);
	*out = s;
	return 0;
}

const char *hw_nstream_error(const struct hw_nstream *s)
{
	return s->err;
}

const uint8_t *hw_nstream_remote_pk(const struct hw_nstream *s)
{
	return s->remote_pk;
}

const char *hw_nstream_peer(const struct hw_nstream *s)
{
	return s->peer;
}

uv_loop_t *hw_nstream_loop(const struct hw_nstream *s)
{
	return s->timer.loop;
}

int hw_nstream_is_dialer(const struct hw_nstream *s)
{
	return s->dialer;
}

int hw_nstream_is_ready(const struct hw_nstream *s)
{
	return s->state == ST_OPEN;
}

int hw_nstream_is_closing(const struct hw_nstream *s)
{
	return s->state == ST_CLOSING;
}

void *hw_nstream_priv(struct hw_nstream *s)
{
	return s->has_priv ? (char *)s + PRIV_OFF : NULL;
}

