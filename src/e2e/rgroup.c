#include "e2e/rgroup.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/noise.h"
#include "util/container.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"

#define LOG "rgroup"

/* KK messages with our payloads are 50..82 bytes; anything outside these
 * bounds cannot be one. */
#define HS_MIN (HW_NOISE_DHLEN + HW_CIPHER_TAGLEN)
#define HS_MAX 128
/* Handshake payloads: version u8 | flags u8, then in message 1 the token,
 * then on a resumption received u64 | limit u64 (docs/routing.md). */
#define HSF_RESUME 0x01
#define HS_RESUME_LEN 16
#define HS_P1_LEN (2 + HW_RGROUP_TOKEN_LEN)
#define HS_P2_LEN 2
/* Encrypted KEEPALIVE plaintexts: 4 bytes give credit; 9 bytes are a
 * probe (op | cookie u64). */
#define CREDIT_LEN 4
#define PROBE_LEN 9
#define PROBE_ASK 1
#define PROBE_ANSWER 2
#define RETX_CHUNK HW_RGROUP_RETX_CHUNK
/* Queue chunks are at least this big, so that many small writes while
 * blocked do not cost an allocation each. */
#define QCHUNK_MIN 16384
/* Liveness is checked this many times per keepalive period, so a
 * keepalive goes out between 1/2 and 5/8 of the period after the last
 * packet, well before rules (and the peer) give up at one period. */
#define TICKS_PER_PERIOD 8

enum rg_state { ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_DEAD,
		ST_BROKEN_NAME /* in JSON only: open or closing, and broken */ };

struct qchunk {
	struct qchunk *next;
	size_t off, len, cap;
	uint8_t data[];
};

/* What a group needs only while it probes or heals, so that an idle
 * group does not carry it. */
struct heal {
	uint64_t broken_ms, deadline_ms, retry_ms;
	uint64_t probe_deadline_ms, probe_cookie, probe_sent_ms;
	uint64_t hs_sent_ms; /* our resumption message 1 went out */
	uint8_t fail_tp[HW_TP_ID_LEN];
	int has_fail_tp;
};

/* Stream bytes sent and not yet credited back: rbase is the offset of
 * rhead->data[0], the chunks run on to sent_max. */
struct rchunk {
	struct rchunk *next;
	size_t len;
	uint8_t data[RETX_CHUNK];
};

struct hw_rgroup {
	struct hw_rgroup_params p;
	uv_timer_t tick;  /* keepalives, liveness, deadlines */
	uv_timer_t later; /* the writer's wake-up from the loop; then the
			     deferred closed callback */
	/* Waiting for room on the transport after a send met -ENOBUFS. */
	struct hw_router_waiter room;
	int handles;      /* open uv handles; freed when none */
	int reason;
	uint8_t state;    /* enum rg_state */
	uint8_t pend_type;
	unsigned want_writable : 1;
	unsigned want_room : 1; /* hw_rgroup_room returned 0 */
	unsigned close_wanted : 1, close_sealed : 1, close_sent : 1,
		close_received : 1;
	/* The routes are broken: no keys, nothing sent until a resumption
	 * handshake (resuming) finished on new routes; broken_due: ops.
	 * broken is to be called from the loop. */
	unsigned broken : 1, resuming : 1, broken_due : 1;
	struct hw_noise_hs *hs;
	struct hw_cipher *tx, *rx;
	/* Stream bytes accepted, not yet sealed. */
	struct qchunk *qhead, *qtail;
	size_t queued;
	/* One packet already sealed (its nonce spent) that the router
	 * refused with -ENOBUFS: it goes before anything else. */
	uint8_t *pend;
	size_t pend_len;
	uint64_t deadline_ms; /* handshake or close; 0 when none */
	uint64_t created_ms, last_rx_ms, last_tx_ms;
	uint64_t bytes_in, bytes_out;
	/* Flow control: we may have sealed stream bytes up to peer_credit
	 * (HW_RGROUP_WINDOW, plus what the peer's credits gave back); bytes
	 * our side consumed and not yet credited to the peer. */
	uint64_t peer_credit;
	uint64_t owed;
	uint64_t credited; /* consumed bytes credited to the peer so far */
	/* Healing: bytes ever sealed (bytes_out is below while sending
	 * again), what is kept to send again, the deadlines. */
	uint64_t sent_max;
	uint64_t rbase;
	struct rchunk *rhead, *rtail;
	struct heal *h; /* while probing or broken, else NULL */
	uint32_t rtt_ms;     /* smallest round trip seen; 0: none yet */
	unsigned heals;
	uint8_t token[HW_RGROUP_TOKEN_LEN];
	/* Why the group ended or would (heap; NULL: not said). Short-lived
	 * and rare, so idle groups do not carry the bytes. */
	char *why;
};

/* Per-thread scratch (one loop per thread): the packet being sealed, and
 * the plaintext of the packet being delivered. Separate, so a data
 * callback may write what it got into another group. */
static _Thread_local uint8_t tx_buf[HW_PACKET_MAX_PAYLOAD];
static _Thread_local uint8_t rx_buf[HW_PACKET_MAX_PAYLOAD];

static void pump(struct hw_rgroup *g);
static void on_tick(uv_timer_t *t);
static void rtt_sample(struct hw_rgroup *g, uint64_t sent_ms);
static void set_why(struct hw_rgroup *g, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static uint64_t now_ms(const struct hw_rgroup *g)
{
	return uv_now(g->p.loop);
}

/* ---- ending ---- */

static void rg_free(struct hw_rgroup *g)
{
	hw_noise_hs_free(g->hs);
	hw_cipher_free(g->tx);
	hw_cipher_free(g->rx);
	while (g->qhead) {
		struct qchunk *k = g->qhead;
		g->qhead = k->next;
		free(k);
	}
	while (g->rhead) {
		struct rchunk *k = g->rhead;
		g->rhead = k->next;
		free(k);
	}
	free(g->pend);
	free(g->why);
	free(g->h);
	free(g);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct hw_rgroup *g = h->data;

	if (--g->handles == 0)
		rg_free(g);
}

static void on_finish(uv_timer_t *t)
{
	struct hw_rgroup *g = t->data;

	if (!g->why && g->reason)
		set_why(g, "%s", hw_strerror(g->reason));

	g->p.ops->closed(g, g->reason, g->p.ud);
	uv_close((uv_handle_t *)&g->tick, on_handle_closed);
	uv_close((uv_handle_t *)&g->later, on_handle_closed);
}

/* Ends the group: nothing more is sent or taken, and closed runs from
 * the loop. The router is never touched again, so it may go first. */
static void finish(struct hw_rgroup *g, int reason)
{
	if (g->state == ST_DEAD)
		return;
	g->state = ST_DEAD;
	g->reason = reason;
	/* The keys are of no more use; wipe them now. */
	hw_noise_hs_free(g->hs);
	hw_cipher_free(g->tx);
	hw_cipher_free(g->rx);
	g->hs = NULL;
	g->tx = g->rx = NULL;
	uv_timer_stop(&g->tick);
	hw_router_unwait(&g->room);
	uv_timer_stop(&g->later);
	uv_timer_start(&g->later, on_finish, 0, 0);
}

static void bad_packet(struct hw_rgroup *g, const char *what)
{
	hw_log(HW_LOG_WARN, LOG, "route group %u/%u: %s; ended",
	       g->p.send_id, g->p.recv_id, what);
	finish(g, -EPROTO);
}

static void set_why(struct hw_rgroup *g, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(g->why);
	g->why = strdup(buf); /* NULL when out of memory: "" is said */
}

static void later(struct hw_rgroup *g);

/* Forgets the keys and whatever was sealed for the old routes. */
static void drop_session(struct hw_rgroup *g)
{
	hw_noise_hs_free(g->hs);
	hw_cipher_free(g->tx);
	hw_cipher_free(g->rx);
	g->hs = NULL;
	g->tx = g->rx = NULL;
	g->pend_len = 0;
	if (g->h)
		g->h->probe_deadline_ms = 0;
	hw_router_unwait(&g->room);
}

/* The heal state, made on first use; NULL when out of memory. */
static struct heal *heal_get(struct hw_rgroup *g)
{
	if (!g->h)
		g->h = calloc(1, sizeof(*g->h));
	return g->h;
}

static void heal_put(struct hw_rgroup *g)
{
	free(g->h);
	g->h = NULL;
}

/* Whether a broken route may be healed rather than end the group: after
 * the first handshake, before our CLOSE went out, with healing on. */
static int may_heal(const struct hw_rgroup *g)
{
	return g->p.heal_ms && g->p.ops->broken && !g->close_sent &&
	       (g->state == ST_OPEN || g->state == ST_CLOSING);
}

/* The routes are broken (what: why, for the log): heal, or end. */
static void broke(struct hw_rgroup *g, int rc, const char *what)
{
	uint64_t now = now_ms(g);

	if (g->state == ST_DEAD)
		return;
	if (may_heal(g) && !heal_get(g)) {
		finish(g, -ENOMEM);
		return;
	}
	if (!may_heal(g)) {
		hw_log(HW_LOG_INFO, LOG, "route group %u/%u: route lost (%s)",
		       g->p.send_id, g->p.recv_id, what);
		set_why(g, "route failed: %s", what);
		finish(g, rc);
		return;
	}
	if (!g->broken) {
		hw_log(HW_LOG_INFO, LOG, "route group %u/%u: route broken (%s);"
		       " healing for up to %u ms", g->p.send_id, g->p.recv_id,
		       what, g->p.heal_ms);
		g->broken = 1;
		g->h->broken_ms = now;
		g->h->deadline_ms = now + g->p.heal_ms;
		set_why(g, "route failed (%s) and no new route was found "
			"within %u s", what, g->p.heal_ms / 1000);
	}
	drop_session(g);
	g->resuming = 0;
	g->deadline_ms = 0;
	/* A CLOSE sealed for the old routes may be lost: seal it again. */
	g->close_sealed = 0;
	g->broken_due = 1;
	later(g);
}

static void route_failed(struct hw_rgroup *g, int rc)
{
	broke(g, rc, hw_strerror(rc));
}

/* ---- sending ---- */

static void on_later(uv_timer_t *t);

/* Runs on_later from the loop: it sends what can go and tells a waiting
 * writer. */
static void later(struct hw_rgroup *g)
{
	/* Once ended, the timer carries the closed callback. */
	if (g->state != ST_DEAD && !uv_is_active((uv_handle_t *)&g->later))
		uv_timer_start(&g->later, on_later, 0, 0);
}

/* The router refused a send with -ENOBUFS: pump runs again when the
 * transport has room (on_room). */
static void wait_room(struct hw_rgroup *g)
{
	if (g->state != ST_DEAD &&
	    hw_router_wait_room(g->p.router, g->p.send_id, &g->room))
		later(g); /* the rule is gone: the next send says so */
}

static int route_send(struct hw_rgroup *g, uint8_t type, const uint8_t *p,
		      size_t len)
{
	int rc = hw_router_send(g->p.router, g->p.send_id, type, p,
				(uint16_t)len);

	if (rc == 0)
		g->last_tx_ms = now_ms(g);
	return rc;
}

/* A packet handed to the router. */
static void sent(struct hw_rgroup *g, uint8_t type)
{
	if (type != HW_PKT_CLOSE)
		return;
	g->close_sent = 1;
	if (g->close_received)
		finish(g, 0);
}

/* Sends the len bytes sealed in tx_buf. Returns 0; -ENOBUFS when the
 * packet was kept for a retry; another code when the group ended. */
static int send_sealed(struct hw_rgroup *g, uint8_t type, size_t len)
{
	int rc = route_send(g, type, tx_buf, len);

	if (rc == -ENOBUFS) {
		if (!g->pend && !(g->pend = malloc(HW_PACKET_MAX_PAYLOAD))) {
			/* The nonce is spent: the stream has a hole. */
			finish(g, -ENOMEM);
			return -ENOMEM;
		}
		memcpy(g->pend, tx_buf, len);
		g->pend_len = len;
		g->pend_type = type;
		wait_room(g);
		return -ENOBUFS;
	}
	if (rc) {
		route_failed(g, rc);
		return rc;
	}
	sent(g, type);
	return 0;
}

/* Seals n bytes of src (which may be tx_buf) into tx_buf; the packet
 * type is the associated data, so a hop cannot turn DATA into CLOSE. */
static int seal(struct hw_rgroup *g, uint8_t type, const uint8_t *src,
		size_t n, size_t *outlen)
{
	int rc = hw_cipher_encrypt(g->tx, &type, 1, src, n, tx_buf, outlen);

	if (rc) {
		hw_log(HW_LOG_WARN, LOG, "route group %u/%u: cannot seal (%s)",
		       g->p.send_id, g->p.recv_id, hw_strerror(rc));
		finish(g, rc);
	}
	return rc;
}

static void queue_consume(struct hw_rgroup *g, size_t n)
{
	g->queued -= n;
	while (n > 0) {
		struct qchunk *k = g->qhead;
		size_t take = k->len - k->off;

		if (take > n)
			take = n;
		k->off += take;
		n -= take;
		if (k->off == k->len) {
			g->qhead = k->next;
			if (!g->qhead)
				g->qtail = NULL;
			free(k);
		}
	}
}

/* Stream bytes the peer's credit lets us seal now. */
static size_t credit_left(const struct hw_rgroup *g)
{
	return g->peer_credit > g->bytes_out
		       ? (size_t)(g->peer_credit - g->bytes_out)
		       : 0;
}

/* ---- the bytes kept to send again ---- */

static int retx_append(struct hw_rgroup *g, const uint8_t *src, size_t n)
{
	while (n > 0) {
		struct rchunk *k = g->rtail;
		size_t take;

		if (!k || k->len == RETX_CHUNK) {
			if (!(k = malloc(sizeof(*k))))
				return -ENOMEM;
			k->next = NULL;
			k->len = 0;
			if (g->rtail)
				g->rtail->next = k;
			else
				g->rhead = k;
			g->rtail = k;
		}
		take = RETX_CHUNK - k->len;
		if (take > n)
			take = n;
		memcpy(k->data + k->len, src, take);
		k->len += take;
		src += take;
		n -= take;
	}
	return 0;
}

/* Frees the chunks below the stream offset acked. */
static void retx_trim(struct hw_rgroup *g, uint64_t acked)
{
	while (g->rhead && g->rbase + g->rhead->len <= acked) {
		struct rchunk *k = g->rhead;

		g->rbase += k->len;
		g->rhead = k->next;
		if (!g->rhead)
			g->rtail = NULL;
		free(k);
	}
}

/* Copies n kept bytes from stream offset off (in the buffer) to dst. */
static void retx_read(const struct hw_rgroup *g, uint64_t off, uint8_t *dst,
		      size_t n)
{
	uint64_t base = g->rbase;
	const struct rchunk *k = g->rhead;

	while (base + k->len <= off) {
		base += k->len;
		k = k->next;
	}
	while (n > 0) {
		size_t at = (size_t)(off - base), take = k->len - at;

		if (take > n)
			take = n;
		memcpy(dst, k->data + at, take);
		dst += take;
		off += take;
		n -= take;
		base += k->len;
		k = k->next;
	}
}

/* The stream offset up to which the peer gave credit back, so has
 * received (and its app taken) every byte. */
static uint64_t peer_acked(const struct hw_rgroup *g)
{
	return g->peer_credit - HW_RGROUP_WINDOW;
}

/* A DATA packet being sealed straight into the transport's buffer. */
struct data_seal {
	struct hw_rgroup *g;
	const uint8_t *src;
	size_t n;
};

static int fill_sealed(void *arg, uint8_t *dst, size_t len)
{
	struct data_seal *d = arg;
	uint8_t type = HW_PKT_DATA;
	size_t out;
	int rc = hw_cipher_encrypt(d->g->tx, &type, 1, d->src, d->n, dst,
				   &out);

	if (rc) {
		hw_log(HW_LOG_WARN, LOG, "route group %u/%u: cannot seal (%s)",
		       d->g->p.send_id, d->g->p.recv_id, hw_strerror(rc));
		finish(d->g, rc);
	}
	return rc;
}

/* Sends n stream bytes of src as the next DATA packet, sealed in place in
 * the transport's outgoing buffer (no copy on the way). Returns 0; -ENOBUFS
 * when the transport is full and nothing was sealed; another code when the
 * group ended. */
static int send_data(struct hw_rgroup *g, const uint8_t *src, size_t n)
{
	struct data_seal d = {g, src, n};
	int rc = hw_router_send_fill(g->p.router, g->p.send_id, HW_PKT_DATA,
				     (uint16_t)(n + HW_CIPHER_TAGLEN),
				     fill_sealed, &d);

	if (rc == 0) {
		g->last_tx_ms = now_ms(g);
		/* New bytes are kept until the peer credits them back. */
		if (g->bytes_out == g->sent_max) {
			if (retx_append(g, src, n)) {
				finish(g, -ENOMEM);
				return -ENOMEM;
			}
			g->sent_max += n;
		}
		g->bytes_out += n;
	} else if (rc == -ENOBUFS) {
		wait_room(g);
	} else if (g->state != ST_DEAD) {
		route_failed(g, rc);
	}
	return rc;
}

/* Sends the next DATA packet from the queue. Returns as send_data. */
static int send_queued(struct hw_rgroup *g)
{
	struct qchunk *k = g->qhead;
	size_t n = g->queued;
	const uint8_t *src = k->data + k->off;
	int rc;

	if (n > HW_RGROUP_MAX_PLAINTEXT)
		n = HW_RGROUP_MAX_PLAINTEXT;
	if (n > credit_left(g))
		n = credit_left(g);
	if (k->len - k->off < n) {
		/* Spans chunks: gather, then seal in place. */
		size_t got = 0;

		for (; got < n; k = k->next) {
			size_t take = k->len - k->off;

			if (take > n - got)
				take = n - got;
			memcpy(tx_buf + got, k->data + k->off, take);
			got += take;
		}
		src = tx_buf;
	}
	if ((rc = send_data(g, src, n)))
		return rc;
	queue_consume(g, n);
	return 0;
}

/* Sends the next DATA packet of the bytes the peer has not received
 * (after a resumption), from the kept bytes. Returns as send_data. */
static int send_again(struct hw_rgroup *g)
{
	size_t n = (size_t)(g->sent_max - g->bytes_out);

	if (n > HW_RGROUP_MAX_PLAINTEXT)
		n = HW_RGROUP_MAX_PLAINTEXT;
	if (n > credit_left(g))
		n = credit_left(g);
	retx_read(g, g->bytes_out, tx_buf, n);
	return send_data(g, tx_buf, n);
}

/* Gives the peer back the credit for what our side consumed: an
 * encrypted KEEPALIVE whose plaintext is the byte count (u32 BE). Returns
 * 0, or non-zero when the packet waits (-ENOBUFS) or the group ended. */
static int send_credit(struct hw_rgroup *g)
{
	uint8_t v[4];
	uint32_t n = g->owed > UINT32_MAX ? UINT32_MAX : (uint32_t)g->owed;
	size_t len;

	/* Nothing may follow our CLOSE: the peer stops sending anyway. */
	if (g->close_sealed) {
		g->owed = 0;
		return 0;
	}
	v[0] = (uint8_t)(n >> 24);
	v[1] = (uint8_t)(n >> 16);
	v[2] = (uint8_t)(n >> 8);
	v[3] = (uint8_t)n;
	if (seal(g, HW_PKT_KEEPALIVE, v, 4, &len))
		return -1;
	g->owed -= n;
	g->credited += n;
	return send_sealed(g, HW_PKT_KEEPALIVE, len);
}

void hw_rgroup_consumed(struct hw_rgroup *g, size_t n)
{
	if (g->state == ST_DEAD)
		return;
	g->owed += n;
	if (g->owed >= HW_RGROUP_WINDOW / 4 && !g->pend_len && g->tx &&
	    !g->resuming)
		send_credit(g);
}

/* Sends what can go, in order: the packet held back, credit owed to the
 * peer, queued stream bytes as far as the peer's credit allows, then the
 * CLOSE once nothing is left before it. */
static void pump(struct hw_rgroup *g)
{
	size_t len;
	int rc;

	if (g->state == ST_DEAD)
		return;
	if (g->pend_len) {
		rc = route_send(g, g->pend_type, g->pend, g->pend_len);
		if (rc == -ENOBUFS) {
			wait_room(g);
			return;
		}
		if (rc) {
			route_failed(g, rc);
			return;
		}
		g->pend_len = 0;
		sent(g, g->pend_type);
	}
	if (g->resuming)
		return; /* the handshake's messages only */
	if (g->state != ST_DEAD && g->tx && g->owed >= HW_RGROUP_WINDOW / 4 &&
	    send_credit(g))
		return;
	while (g->state != ST_DEAD && g->tx && g->bytes_out < g->sent_max &&
	       credit_left(g) > 0) {
		if (send_again(g))
			return;
	}
	while (g->state != ST_DEAD && g->tx && g->bytes_out == g->sent_max &&
	       g->queued > 0 && credit_left(g) > 0) {
		if (send_queued(g))
			return; /* waiting for room, or ended */
	}
	if (g->state != ST_DEAD && g->tx && g->close_wanted &&
	    !g->close_sealed && g->queued == 0 &&
	    g->bytes_out == g->sent_max) {
		uint8_t reason = HW_RGROUP_CLOSE_NORMAL;

		if (seal(g, HW_PKT_CLOSE, &reason, 1, &len))
			return;
		g->close_sealed = 1;
		send_sealed(g, HW_PKT_CLOSE, len);
	}
}

/* Whether a writer waits for what it can have now: room in the queue
 * (hw_rgroup_write's -ENOBUFS), or to seal straight away
 * (hw_rgroup_room's 0). */
static int writer_may_go(const struct hw_rgroup *g)
{
	return (g->want_writable && g->queued <= HW_RGROUP_LOW_WATER) ||
	       (g->want_room && g->state == ST_OPEN && g->queued == 0 &&
		!g->pend_len && !g->broken && g->bytes_out == g->sent_max &&
		credit_left(g) > 0);
}

static void on_later(uv_timer_t *t)
{
	struct hw_rgroup *g = t->data;

	if (g->broken_due && g->broken && !g->resuming &&
	    g->state != ST_DEAD) {
		g->broken_due = 0;
		g->h->retry_ms = 0;
		g->p.ops->broken(g, g->h->has_fail_tp ? g->h->fail_tp : NULL,
				 g->p.ud);
		if (g->state == ST_DEAD)
			return;
	}
	pump(g);
	if (g->state != ST_DEAD && writer_may_go(g)) {
		g->want_writable = 0;
		g->want_room = 0;
		if (g->p.ops->writable)
			g->p.ops->writable(g, g->p.ud);
	}
}

/* The transport has room again (or went down: pump hears which). */
static void on_room(struct hw_router_waiter *w)
{
	struct hw_rgroup *g = HW_CONTAINER_OF(w, struct hw_rgroup, room);

	pump(g);
	/* The writer hears of it from the loop, not from inside the
	 * transport's callback. */
	if (g->state != ST_DEAD && writer_may_go(g))
		later(g);
}

/* Appends to the queue; all or nothing. */
static int queue_append(struct hw_rgroup *g, const uint8_t *buf, size_t len)
{
	struct qchunk *t = g->qtail, *k = NULL;
	size_t room = t ? t->cap - t->len : 0;

	if (len > room) {
		size_t cap = len - room > QCHUNK_MIN ? len - room : QCHUNK_MIN;

		if (!(k = malloc(sizeof(*k) + cap)))
			return -ENOMEM;
		k->next = NULL;
		k->off = k->len = 0;
		k->cap = cap;
	}
	if (room > len)
		room = len;
	if (room) {
		memcpy(t->data + t->len, buf, room);
		t->len += room;
	}
	if (k) {
		memcpy(k->data, buf + room, len - room);
		k->len = len - room;
		if (t)
			t->next = k;
		else
			g->qhead = k;
		g->qtail = k;
	}
	g->queued += len;
	return 0;
}

size_t hw_rgroup_room(struct hw_rgroup *g)
{
	size_t room;

	if (g->state != ST_OPEN)
		return 0;
	if (g->queued || g->pend_len || g->broken ||
	    g->bytes_out < g->sent_max) {
		g->want_room = 1; /* credit or room drains them */
		return 0;
	}
	room = credit_left(g);
	if (room == 0)
		g->want_room = 1;
	return room;
}

int hw_rgroup_write(struct hw_rgroup *g, const uint8_t *buf, size_t len)
{
	int rc, sent_some = 0;

	if (g->state != ST_OPEN)
		return -ENOTCONN;
	if (len > HW_RGROUP_MAX_QUEUED)
		return -EMSGSIZE;
	if (len == 0)
		return 0;
	if (g->queued + len > HW_RGROUP_MAX_QUEUED) {
		pump(g);
		if (g->state != ST_OPEN)
			return -ENOTCONN;
		if (g->queued + len > HW_RGROUP_MAX_QUEUED) {
			/* Credit or room drains the queue; on_later tells. */
			g->want_writable = 1;
			if (writer_may_go(g))
				later(g);
			return -ENOBUFS;
		}
	}
	/* Nothing waiting: seal straight from the caller's buffer. */
	while (len > 0 && g->queued == 0 && g->pend_len == 0 && !g->broken &&
	       g->bytes_out == g->sent_max && credit_left(g) > 0) {
		size_t n = len;

		if (n > HW_RGROUP_MAX_PLAINTEXT)
			n = HW_RGROUP_MAX_PLAINTEXT;
		if (n > credit_left(g))
			n = credit_left(g);
		rc = send_data(g, buf, n);
		if (rc == -ENOBUFS || (rc && g->broken && g->state == ST_OPEN))
			break; /* queued below; sent when there is room, or
				  on the new routes */
		if (rc || g->state != ST_OPEN)
			return -ENOTCONN;
		buf += n;
		len -= n;
		sent_some = 1;
	}
	if (len > 0 && (rc = queue_append(g, buf, len))) {
		/* Part of the write went out: the stream would have a
		 * hole. */
		if (sent_some)
			finish(g, rc);
		return rc;
	}
	return 0;
}

/* ---- receiving ---- */

static void become_open(struct hw_rgroup *g)
{
	if (g->state == ST_DEAD)
		return;
	g->deadline_ms = 0;
	if (g->close_wanted) {
		g->state = ST_CLOSING;
		g->deadline_ms = now_ms(g) + 2 * (uint64_t)g->p.keepalive_ms;
		pump(g);
		return;
	}
	g->state = ST_OPEN;
	g->p.ops->ready(g, g->p.ud);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Our handshake payload: version, flags, the token in message 1, and on
 * a resumption what we received and the credit limit we give. */
static size_t hs_payload(struct hw_rgroup *g, uint8_t *out)
{
	size_t n = 0;

	out[n++] = HW_RGROUP_VERSION;
	out[n++] = g->resuming ? HSF_RESUME : 0;
	if (g->p.initiator) {
		memcpy(out + n, g->token, HW_RGROUP_TOKEN_LEN);
		n += HW_RGROUP_TOKEN_LEN;
	}
	if (g->resuming) {
		/* Everything consumed is credited by the limit itself. */
		g->credited += g->owed;
		g->owed = 0;
		put64(out + n, g->bytes_in);
		put64(out + n + 8,
		      g->credited + (uint64_t)HW_RGROUP_WINDOW);
		n += HS_RESUME_LEN;
	}
	return n;
}

/* The peer's part of a resumption: it received everything below recv,
 * and lets us send up to limit. From recv on, we send again. Returns 0,
 * or HW_EPROTO for numbers no honest peer sends. */
static int hs_resume_take(struct hw_rgroup *g, const uint8_t *p)
{
	uint64_t recv = get64(p), limit = get64(p + 8);

	if (limit < g->peer_credit || limit - HW_RGROUP_WINDOW > recv ||
	    recv > g->sent_max || recv < g->rbase ||
	    limit - recv > 2 * (uint64_t)HW_RGROUP_WINDOW)
		return HW_EPROTO;
	g->peer_credit = limit;
	g->bytes_out = recv;
	retx_trim(g, peer_acked(g));
	return 0;
}

/* Checks the peer's handshake payload. Returns NULL or what is wrong. */
static const char *hs_take(struct hw_rgroup *g, const uint8_t *p, size_t n)
{
	size_t want = g->p.initiator ? HS_P2_LEN : HS_P1_LEN;

	if (n < 2 || p[0] != HW_RGROUP_VERSION)
		return "handshake with an unknown version";
	if (!(p[1] & HSF_RESUME) && g->resuming)
		return NULL; /* a new group in this one's place: caller */
	if (p[1] & ~HSF_RESUME || (p[1] & HSF_RESUME) != (g->resuming ? HSF_RESUME : 0))
		return "handshake with unknown flags";
	if (g->resuming)
		want += HS_RESUME_LEN;
	if (n != want)
		return "handshake payload of the wrong length";
	if (!g->p.initiator) {
		if (g->resuming) {
			if (sodium_memcmp(p + 2, g->token, HW_RGROUP_TOKEN_LEN))
				return "resumption for another group";
		} else {
			memcpy(g->token, p + 2, HW_RGROUP_TOKEN_LEN);
		}
	}
	if (g->resuming &&
	    hs_resume_take(g, p + (g->p.initiator ? HS_P2_LEN : HS_P1_LEN)))
		return "resumption with impossible byte counts";
	return NULL;
}

/* The resumption handshake finished: the stream goes on. */
static void resumed(struct hw_rgroup *g)
{
	uint64_t now = now_ms(g);

	hw_log(HW_LOG_INFO, LOG, "route group %u/%u: healed after %llu ms; "
	       "sending again from byte %llu", g->p.send_id, g->p.recv_id,
	       (unsigned long long)(now - g->h->broken_ms),
	       (unsigned long long)g->bytes_out);
	g->broken = g->resuming = g->broken_due = 0;
	heal_put(g);
	g->heals++;
	g->deadline_ms = 0;
	free(g->why);
	g->why = NULL;
	g->last_rx_ms = g->last_tx_ms = now;
	if (g->close_wanted)
		g->deadline_ms = now + 2 * (uint64_t)g->p.keepalive_ms;
	pump(g);
	if (g->state != ST_DEAD && writer_may_go(g))
		later(g);
}

static void on_handshake(struct hw_rgroup *g, const struct hw_packet *pkt)
{
	uint8_t payload[HS_MAX], mine[HS_MAX];
	size_t plen, len = 0, mlen;
	const char *bad;
	char what[64];
	int rc;

	if (!g->hs || hw_noise_hs_state(g->hs) != HW_NOISE_READ) {
		bad_packet(g, "handshake message out of turn");
		return;
	}
	if (pkt->len < HS_MIN || pkt->len > HS_MAX) {
		snprintf(what, sizeof(what), "handshake message of %u bytes",
			 pkt->len);
		bad_packet(g, what);
		return;
	}
	rc = hw_noise_hs_read(g->hs, pkt->payload, pkt->len, payload,
			      sizeof(payload), &plen);
	if (rc) {
		snprintf(what, sizeof(what), "handshake failed (%s)",
			 hw_strerror(rc));
		bad_packet(g, what);
		return;
	}
	if ((bad = hs_take(g, payload, plen))) {
		bad_packet(g, bad);
		return;
	}
	if (g->resuming && plen >= 2 && !(payload[1] & HSF_RESUME)) {
		hw_log(HW_LOG_INFO, LOG, "route group %u/%u: the peer started "
		       "a new group on this port; this one ends",
		       g->p.send_id, g->p.recv_id);
		set_why(g, "the peer started a new group in this one's place");
		finish(g, -ECONNRESET);
		return;
	}
	mlen = hs_payload(g, mine);
	if (!g->p.initiator && (rc = hw_noise_hs_write(g->hs, mine, mlen,
						       tx_buf, HS_MAX, &len))) {
		finish(g, rc);
		return;
	}
	if ((rc = hw_noise_hs_split(g->hs, &g->tx, &g->rx))) {
		finish(g, rc);
		return;
	}
	hw_noise_hs_free(g->hs);
	g->hs = NULL;
	if (!g->p.initiator) {
		rc = send_sealed(g, HW_PKT_HANDSHAKE, len);
		if (rc && rc != -ENOBUFS)
			return;
	}
	if (g->p.initiator)
		rtt_sample(g, g->resuming ? g->h->hs_sent_ms : g->created_ms);
	if (g->resuming)
		resumed(g);
	else
		become_open(g);
}

/* DATA and CLOSE are taken while open, and while closing until the
 * peer's CLOSE: nothing may follow that. */
static int may_receive(const struct hw_rgroup *g)
{
	return (g->state == ST_OPEN || g->state == ST_CLOSING) &&
	       !g->close_received && g->rx;
}

static void on_data(struct hw_rgroup *g, const struct hw_packet *pkt)
{
	uint8_t ad = HW_PKT_DATA;
	size_t len;

	if (!may_receive(g)) {
		bad_packet(g, "data out of turn");
		return;
	}
	if (pkt->len <= HW_CIPHER_TAGLEN) {
		bad_packet(g, "empty data packet");
		return;
	}
	if (hw_cipher_decrypt(g->rx, &ad, 1, pkt->payload, pkt->len, rx_buf,
			      &len)) {
		bad_packet(g, "data packet failed to decrypt");
		return;
	}
	g->bytes_in += len;
	g->p.ops->data(g, rx_buf, len, g->p.ud);
}

static void on_close(struct hw_rgroup *g, const struct hw_packet *pkt)
{
	uint8_t ad = HW_PKT_CLOSE, reason;
	size_t len;

	if (!may_receive(g)) {
		bad_packet(g, "close out of turn");
		return;
	}
	if (pkt->len != 1 + HW_CIPHER_TAGLEN ||
	    hw_cipher_decrypt(g->rx, &ad, 1, pkt->payload, pkt->len, &reason,
			      &len)) {
		bad_packet(g, "bad close packet");
		return;
	}
	if (reason != HW_RGROUP_CLOSE_NORMAL)
		hw_log(HW_LOG_DEBUG, LOG, "route group %u/%u: peer closed "
		       "with reason %u", g->p.send_id, g->p.recv_id, reason);
	g->close_received = 1;
	if (!g->close_wanted) {
		/* Answer after whatever we still have queued. */
		g->close_wanted = 1;
		g->want_writable = 0;
		g->state = ST_CLOSING;
		g->deadline_ms = now_ms(g) + 2 * (uint64_t)g->p.keepalive_ms;
	}
	if (g->close_sent)
		finish(g, 0);
	else
		pump(g);
}

/* Sends a probe (op PROBE_ASK) or its answer, sealed. */
static int send_probe(struct hw_rgroup *g, uint8_t op, uint64_t cookie)
{
	uint8_t v[PROBE_LEN];
	size_t len;

	v[0] = op;
	put64(v + 1, cookie);
	if (seal(g, HW_PKT_KEEPALIVE, v, PROBE_LEN, &len))
		return -1;
	return send_sealed(g, HW_PKT_KEEPALIVE, len);
}

static void on_probe(struct hw_rgroup *g, const uint8_t *v)
{
	uint64_t cookie = get64(v + 1);

	if (v[0] == PROBE_ASK) {
		/* Nothing may follow our CLOSE. */
		if (!g->close_sealed)
			send_probe(g, PROBE_ANSWER, cookie);
	} else if (v[0] == PROBE_ANSWER && g->h && !g->broken &&
		   g->h->probe_deadline_ms && cookie == g->h->probe_cookie) {
		hw_log(HW_LOG_INFO, LOG, "route group %u/%u: the route "
		       "answers: the route failure reported was not ours",
		       g->p.send_id, g->p.recv_id);
		rtt_sample(g, g->h->probe_sent_ms);
		heal_put(g);
	}
}

/* An encrypted KEEPALIVE: the peer consumed that many of our bytes, or a
 * probe. */
static void on_credit(struct hw_rgroup *g, const struct hw_packet *pkt)
{
	uint8_t ad = HW_PKT_KEEPALIVE, v[PROBE_LEN];
	size_t len;

	if (!may_receive(g) ||
	    (pkt->len != CREDIT_LEN + HW_CIPHER_TAGLEN &&
	     pkt->len != PROBE_LEN + HW_CIPHER_TAGLEN) ||
	    hw_cipher_decrypt(g->rx, &ad, 1, pkt->payload, pkt->len, v,
			      &len)) {
		bad_packet(g, "bad credit packet");
		return;
	}
	if (len == PROBE_LEN) {
		on_probe(g, v);
		return;
	}
	g->peer_credit += ((uint32_t)v[0] << 24) | ((uint32_t)v[1] << 16) |
			  ((uint32_t)v[2] << 8) | v[3];
	if (g->peer_credit - g->bytes_out > 2 * (uint64_t)HW_RGROUP_WINDOW) {
		bad_packet(g, "credit beyond the window");
		return;
	}
	retx_trim(g, peer_acked(g));
	pump(g);
	/* A writer that found no room hears of it from the loop. */
	if (g->state != ST_DEAD && writer_may_go(g))
		later(g);
}

void hw_rgroup_on_packet(struct hw_rgroup *g, const struct hw_packet *pkt)
{
	if (g->state == ST_DEAD)
		return;
	/* Between routes only the resumption handshake counts: packets
	 * still under way on the old routes are of no use. */
	if (g->broken && pkt->type != HW_PKT_HANDSHAKE)
		return;
	g->last_rx_ms = now_ms(g);
	switch (pkt->type) {
	case HW_PKT_HANDSHAKE:
		on_handshake(g, pkt);
		break;
	case HW_PKT_DATA:
		on_data(g, pkt);
		break;
	case HW_PKT_CLOSE:
		on_close(g, pkt);
		break;
	case HW_PKT_KEEPALIVE:
		if (pkt->len)
			on_credit(g, pkt);
		break;
	case HW_PKT_ROUTE_FAIL:
	case HW_PKT_ROUTE_FAIL_BACK:
		hw_rgroup_route_failed(g, 0, pkt->len == HW_ROUTE_FAIL_LEN
						     ? pkt->payload + 1
						     : NULL);
		break;
	default:
		/* ERROR is not authenticated end to end: the keepalive,
		 * not a hop's word, decides that a route is dead. */
		break;
	}
}

/* A round trip measured: the smallest is what the route can do. */
static void rtt_sample(struct hw_rgroup *g, uint64_t sent_ms)
{
	uint64_t rtt = now_ms(g) - sent_ms;

	if (rtt == 0)
		rtt = 1;
	if (!g->rtt_ms || rtt < g->rtt_ms)
		g->rtt_ms = rtt > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
}

static uint64_t probe_timeout(const struct hw_rgroup *g)
{
	uint64_t t = 4 * (uint64_t)g->rtt_ms + 25;

	if (!g->rtt_ms || t > HW_RGROUP_PROBE_MS)
		return HW_RGROUP_PROBE_MS;
	return t < HW_RGROUP_PROBE_MIN_MS ? HW_RGROUP_PROBE_MIN_MS : t;
}

void hw_rgroup_route_failed(struct hw_rgroup *g, int certain,
			    const uint8_t *tp_id)
{
	uint64_t now = now_ms(g);

	if (g->state == ST_DEAD || (g->broken && !g->resuming))
		return;
	if (!heal_get(g)) {
		finish(g, -ENOMEM);
		return;
	}
	if (tp_id) {
		memcpy(g->h->fail_tp, tp_id, HW_TP_ID_LEN);
		g->h->has_fail_tp = 1;
	}
	if (certain || !g->tx || g->resuming) {
		broke(g, -ENOTCONN, "a rule or transport of the route is gone");
		return;
	}
	if (g->h->probe_deadline_ms)
		return; /* a probe is out already */
	/* A hop's word is a hint: the peer's answer decides. */
	randombytes_buf(&g->h->probe_cookie, sizeof(g->h->probe_cookie));
	g->h->probe_sent_ms = now;
	g->h->probe_deadline_ms = now + probe_timeout(g);
	hw_log(HW_LOG_INFO, LOG, "route group %u/%u: a hop reports the route "
	       "failed; probing", g->p.send_id, g->p.recv_id);
	/* A send that fails breaks the route by itself. */
	send_probe(g, PROBE_ASK, g->h->probe_cookie);
	/* The tick looks at the deadline: run it then. */
	if (g->state != ST_DEAD && !g->broken)
		uv_timer_start(&g->tick, on_tick, probe_timeout(g),
			       g->p.keepalive_ms / TICKS_PER_PERIOD);
}

/* ---- timers ---- */

/* The tick of a broken group: give up, ask again, or retry a
 * resumption that got no answer. */
static void tick_broken(struct hw_rgroup *g, uint64_t now)
{
	if (now >= g->h->deadline_ms) {
		hw_log(HW_LOG_WARN, LOG, "route group %u/%u: %s",
		       g->p.send_id, g->p.recv_id, hw_rgroup_why(g));
		finish(g, -ETIMEDOUT);
		return;
	}
	if (g->resuming && g->p.initiator && g->deadline_ms &&
	    now >= g->deadline_ms) {
		broke(g, -ETIMEDOUT, "the resumption handshake got no answer");
		return;
	}
	if (!g->resuming && g->h->retry_ms && now >= g->h->retry_ms) {
		g->h->retry_ms = 0;
		g->broken_due = 1;
		later(g);
	}
}

static void on_tick(uv_timer_t *t)
{
	struct hw_rgroup *g = t->data;
	uint64_t now = now_ms(g);
	char what[64];
	int rc;

	if (g->broken) {
		tick_broken(g, now);
		return;
	}
	if (g->h && g->h->probe_deadline_ms &&
	    now >= g->h->probe_deadline_ms) {
		broke(g, -ETIMEDOUT, "a hop reported it and the probe got no "
		      "answer");
		return;
	}
	if (now - g->last_rx_ms >= g->p.keepalive_ms) {
		hw_log(HW_LOG_INFO, LOG, "route group %u/%u: nothing heard "
		       "for %u ms; route dead", g->p.send_id, g->p.recv_id,
		       g->p.keepalive_ms);
		snprintf(what, sizeof(what), "nothing heard for %u ms",
			 g->p.keepalive_ms);
		broke(g, -ETIMEDOUT, what);
		return;
	}
	if (g->deadline_ms && now >= g->deadline_ms) {
		hw_log(HW_LOG_INFO, LOG, "route group %u/%u: %s timed out",
		       g->p.send_id, g->p.recv_id,
		       g->state == ST_HANDSHAKE ? "handshake" : "close");
		set_why(g, "the %s timed out",
			g->state == ST_HANDSHAKE ? "handshake" : "close");
		finish(g, -ETIMEDOUT);
		return;
	}
	if (now - g->last_tx_ms >= g->p.keepalive_ms / 2) {
		/* A full transport will carry our queued packets soon;
		 * the keepalive is not needed then. */
		rc = route_send(g, HW_PKT_KEEPALIVE, NULL, 0);
		if (rc && rc != -ENOBUFS)
			route_failed(g, rc);
	}
}

/* ---- setup ---- */

static void desc_encode(const struct hw_route_desc *d,
			uint8_t out[HW_RGROUP_DESC_LEN])
{
	memcpy(out, d->src_pk, HW_PK_LEN);
	out[32] = (uint8_t)(d->src_port >> 8);
	out[33] = (uint8_t)d->src_port;
	memcpy(out + 34, d->dst_pk, HW_PK_LEN);
	out[66] = (uint8_t)(d->dst_port >> 8);
	out[67] = (uint8_t)d->dst_port;
}

/* A KK handshake in our role, for the first routes or for new ones. */
static int hs_start(struct hw_rgroup *g)
{
	uint8_t prologue[sizeof(HW_RGROUP_PROLOGUE) - 1 + HW_RGROUP_DESC_LEN];
	uint8_t remote_x[HW_NOISE_DHLEN];
	int rc;

	/* The peer's key comes from the descriptor each time: idle groups
	 * do not keep it. */
	if ((rc = hw_pk_to_x25519(g->p.initiator ? g->p.desc.dst_pk
						 : g->p.desc.src_pk,
				  remote_x)))
		return rc;
	memcpy(prologue, HW_RGROUP_PROLOGUE, sizeof(HW_RGROUP_PROLOGUE) - 1);
	desc_encode(&g->p.desc, prologue + sizeof(HW_RGROUP_PROLOGUE) - 1);
	return hw_noise_hs_new(&g->hs, HW_NOISE_KK,
			       g->p.initiator ? HW_NOISE_INITIATOR
					      : HW_NOISE_RESPONDER,
			       prologue, sizeof(prologue), g->p.x_priv,
			       remote_x);
}

static int params_ok(const struct hw_rgroup_params *p)
{
	return p && p->loop && p->router && p->id && p->x_priv && p->ops &&
	       p->ops->ready && p->ops->data && p->ops->closed &&
	       p->send_id && p->recv_id &&
	       p->keepalive_ms >= HW_RULE_KEEPALIVE_MIN_MS &&
	       p->keepalive_ms <= HW_RULE_KEEPALIVE_MAX_MS &&
	       p->desc.src_port && p->desc.dst_port;
}

int hw_rgroup_new(struct hw_rgroup **out, const struct hw_rgroup_params *p)
{
	uint8_t xpub_mine[32], xpub_id[32], payload[HS_MAX];
	const uint8_t *self;
	struct hw_rgroup *g = NULL;
	size_t len, plen;
	uint64_t tick;
	int rc;

	*out = NULL;
	if (!params_ok(p))
		return -EINVAL;
	self = p->initiator ? p->desc.src_pk : p->desc.dst_pk;
	/* Our end must be us, and x_priv our key: a mix-up would only
	 * show as a handshake that never completes. */
	if (memcmp(self, p->id->pk, HW_PK_LEN) ||
	    hw_noise_public_key(p->x_priv, xpub_mine) ||
	    hw_pk_to_x25519(p->id->pk, xpub_id) ||
	    sodium_memcmp(xpub_mine, xpub_id, sizeof(xpub_id)))
		return -EINVAL;
	if (!(g = calloc(1, sizeof(*g))))
		return -ENOMEM;
	g->p = *p;
	g->p.id = NULL; /* read here only */
	if (p->initiator)
		randombytes_buf(g->token, sizeof(g->token));
	if ((rc = hs_start(g)))
		goto out;
	if (p->initiator) {
		plen = hs_payload(g, payload);
		if ((rc = hw_noise_hs_write(g->hs, payload, plen, tx_buf,
					    HS_MAX, &len)))
			goto out;
	}
	uv_timer_init(p->loop, &g->tick);
	uv_timer_init(p->loop, &g->later);
	g->tick.data = g->later.data = g;
	g->room.cb = on_room;
	g->handles = 2;
	g->state = ST_HANDSHAKE;
	g->created_ms = g->last_rx_ms = g->last_tx_ms = now_ms(g);
	g->peer_credit = HW_RGROUP_WINDOW;
	g->deadline_ms = g->created_ms + 2 * (uint64_t)p->keepalive_ms;
	tick = p->keepalive_ms / TICKS_PER_PERIOD;
	uv_timer_start(&g->tick, on_tick, tick, tick);
	*out = g;
	/* A failure ends the group and reaches closed later. */
	if (p->initiator)
		send_sealed(g, HW_PKT_HANDSHAKE, len);
	return 0;
out:
	hw_noise_hs_free(g->hs);
	free(g);
	return rc;
}

void hw_rgroup_close(struct hw_rgroup *g)
{
	if (g->state == ST_DEAD || g->close_wanted)
		return;
	g->close_wanted = 1;
	g->want_writable = 0;
	g->deadline_ms = now_ms(g) + 2 * (uint64_t)g->p.keepalive_ms;
	if (g->state == ST_OPEN) {
		g->state = ST_CLOSING;
		pump(g);
	}
}

void hw_rgroup_abort(struct hw_rgroup *g, int reason)
{
	finish(g, reason);
}

int hw_rgroup_can_resume(const struct hw_rgroup *g)
{
	return g->broken ? g->state != ST_DEAD : may_heal(g);
}

int hw_rgroup_resume(struct hw_rgroup *g, uint32_t send_id, uint32_t recv_id)
{
	uint8_t payload[HS_MAX];
	size_t plen, len;
	int rc;

	if (g->state != ST_OPEN && g->state != ST_CLOSING)
		return -EINVAL;
	if (!send_id || !recv_id)
		return -EINVAL;
	if (!g->broken) {
		/* The responder learns from INCOMING before noticing. */
		if (!may_heal(g))
			return -EINVAL;
		broke(g, -ENOTCONN, "the peer built new routes");
		g->broken_due = 0; /* nothing to find: they are here */
		if (g->state == ST_DEAD)
			return 0; /* out of memory: closed follows */
	}
	drop_session(g);
	g->p.send_id = send_id;
	g->p.recv_id = recv_id;
	g->resuming = 1;
	g->broken_due = 0;
	g->deadline_ms = now_ms(g) + HW_RGROUP_RESUME_MS;
	if ((rc = hs_start(g))) {
		finish(g, rc);
		return 0;
	}
	if (!g->p.initiator)
		return 0;
	plen = hs_payload(g, payload);
	if ((rc = hw_noise_hs_write(g->hs, payload, plen, tx_buf, HS_MAX,
				    &len))) {
		finish(g, rc);
		return 0;
	}
	g->h->hs_sent_ms = now_ms(g);
	send_sealed(g, HW_PKT_HANDSHAKE, len);
	return 0;
}

void hw_rgroup_heal_failed(struct hw_rgroup *g, int final, int reason,
			   const char *why)
{
	if (g->state == ST_DEAD || !g->broken || g->resuming)
		return;
	if (final) {
		hw_log(HW_LOG_WARN, LOG, "route group %u/%u: %s; ended",
		       g->p.send_id, g->p.recv_id, why);
		set_why(g, "%s", why);
		finish(g, reason);
		return;
	}
	hw_log(HW_LOG_INFO, LOG, "route group %u/%u: no new route yet: %s",
	       g->p.send_id, g->p.recv_id, why);
	g->h->retry_ms = now_ms(g) + HW_RGROUP_HEAL_RETRY_MS;
}

const char *hw_rgroup_why(const struct hw_rgroup *g)
{
	return g->why ? g->why : "";
}

int hw_rgroup_initiator(const struct hw_rgroup *g)
{
	return g->p.initiator;
}

static size_t retx_bytes(const struct hw_rgroup *g)
{
	return (size_t)(g->sent_max - g->rbase);
}

const struct hw_route_desc *hw_rgroup_desc(const struct hw_rgroup *g)
{
	return &g->p.desc;
}

static const char *state_name(enum rg_state s)
{
	switch (s) {
	case ST_HANDSHAKE:
		return "handshake";
	case ST_OPEN:
		return "open";
	case ST_BROKEN_NAME:
		return "broken";
	case ST_CLOSING:
		return "closing";
	case ST_DEAD:
		return "closed";
	}
	return "unknown";
}

static json_t *end_json(const uint8_t pk[HW_PK_LEN], uint16_t port)
{
	char s[HW_PK_HEXLEN + 16];

	hw_hex_encode(pk, HW_PK_LEN, s);
	snprintf(s + HW_PK_HEXLEN, sizeof(s) - HW_PK_HEXLEN, ":%u", port);
	return json_string(s);
}

json_t *hw_rgroup_json(const struct hw_rgroup *g)
{
	json_t *o = json_object();
	int bad;

	if (!o)
		return NULL;
	bad = json_object_set_new(o, "src", end_json(g->p.desc.src_pk,
						    g->p.desc.src_port)) |
	      json_object_set_new(o, "dst", end_json(g->p.desc.dst_pk,
						    g->p.desc.dst_port)) |
	      json_object_set_new(o, "role",
				  json_string(g->p.initiator ? "initiator"
							     : "responder")) |
	      json_object_set_new(o, "state",
				  json_string(state_name(
					  g->broken && g->state != ST_DEAD
						  ? ST_BROKEN_NAME
						  : g->state))) |
	      json_object_set_new(o, "unacked",
				  json_integer((json_int_t)retx_bytes(g))) |
	      json_object_set_new(o, "heals", json_integer(g->heals)) |
	      json_object_set_new(o, "rtt_ms", json_integer(g->rtt_ms)) |
	      json_object_set_new(o, "send_id", json_integer(g->p.send_id)) |
	      json_object_set_new(o, "recv_id", json_integer(g->p.recv_id)) |
	      json_object_set_new(o, "bytes_in",
				  json_integer((json_int_t)g->bytes_in)) |
	      json_object_set_new(o, "bytes_out",
				  json_integer((json_int_t)g->bytes_out)) |
	      json_object_set_new(o, "queued",
				  json_integer((json_int_t)(g->queued +
							    g->pend_len))) |
	      json_object_set_new(
		      o, "age_ms",
		      json_integer((json_int_t)(now_ms(g) - g->created_ms)));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}
