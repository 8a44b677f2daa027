/* The Noise-secured connection: over loopback TCP (a listener of the
 * test's own, raw clients that misbehave on purpose) and over an
 * in-memory carrier pair whose writes complete from the loop, one batch
 * at a time, and can be held to stall the stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "transport/conn.h"
#include "util/err.h"
#include "wire/record.h"
#include "hwtest.h"

#define PROLOGUE "hopwire test_conn"
#define HS_TIMEOUT_MS 5000
#define WAIT_MS 5000
#define NACC 8
#define NRAW 4

/* The test's packets: plen u16 | kind u8 | seq u32 | payload (plen bytes
 * in the record, or plen detached bytes after it). Payload byte j of
 * packet seq is hw_test_pattern(seq, j). */
#define HDRLEN 7
#define MAX_PLEN (HW_RECORD_MAX_PLAINTEXT - HDRLEN)
enum { K_INLINE = 1, K_DETACHED = 2 };

struct env;

/* One connection's events and what arrived on it. */
struct side {
	struct env *e;
	struct hw_conn *c;
	int used, ready, closed, reason, drained;
	int close_in_ready, close_in_record;
	uint64_t opened_at, closed_at;
	uint32_t tx_seq, rx_seq;
	uint64_t rx_pkts, rx_detached, records, pkts_at_close;
	size_t want_detached, queued_at_drain;
	int bad;
	uint64_t pause_at; /* records: pause once this many were read */
};

/* One write handed to a carrier. */
struct wr {
	struct wr *next;
	const uint8_t *buf;
	size_t len;
	void (*done)(void *arg, int status);
	void *arg;
};

/* One end of the in-memory carrier pair: writes wait in head until the
 * idle handle delivers them to the peer's connection in one input call,
 * then complete; stalled holds them. */
struct carrier {
	struct carrier *peer;
	struct hw_conn *conn; /* NULL once closed or ended */
	uv_idle_t idle;
	int inited, stalled, eof_to_peer;
	int closes, close_reason, ended, late_calls;
	int pauses, resumes; /* cops->pause calls */
	struct wr *head, **tail, *inflight;
};

struct raw {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_write_t wreq;
	uint8_t buf[80];
	size_t len;
	int inited;
};

struct env {
	uv_loop_t loop;
	uv_timer_t tick;
	uv_tcp_t srv;
	uint16_t port;
	struct hw_identity id_l, id_d, id_x;
	uint8_t x_l[32], x_d[32], x_x[32];
	struct hw_conn_params pd, pa;
	struct side d, acc[NACC];
	int nacc;
	struct carrier ka, kb;
	struct raw raw[NRAW];
};

#define RUN_UNTIL(e, cond)                                               \
	HW_TEST_RUN_UNTIL(&(e)->loop, &(e)->tick, (cond), WAIT_MS)

static void put_hdr(uint8_t h[HDRLEN], size_t plen, int kind, uint32_t seq)
{
	h[0] = (uint8_t)(plen >> 8);
	h[1] = (uint8_t)plen;
	h[2] = (uint8_t)kind;
	for (int i = 0; i < 4; i++)
		h[3 + i] = (uint8_t)(seq >> (24 - 8 * i));
}

static int check_payload(const uint8_t *p, size_t n, uint32_t seq)
{
	for (size_t j = 0; j < n; j++)
		if (p[j] != hw_test_pattern((uint8_t)seq, j))
			return 0;
	return 1;
}

/* ---- connection callbacks ---- */

static void s_ready(struct hw_conn *c, void *ud)
{
	struct side *s = ud;

	s->ready++;
	if (s->close_in_ready) {
		hw_conn_close(c, 0, 0);
		hw_conn_close(c, -EIO, 1); /* no-op: the first reason stays */
	}
}

static void s_record(struct hw_conn *c, uint8_t *pt, size_t len, void *ud)
{
	struct side *s = ud;
	size_t off = 0;

	s->records++;
	while (off < len) {
		size_t plen;
		uint32_t seq;
		int kind;

		if (len - off < HDRLEN) {
			s->bad++;
			return;
		}
		plen = (size_t)pt[off] << 8 | pt[off + 1];
		kind = pt[off + 2];
		seq = (uint32_t)pt[off + 3] << 24 | (uint32_t)pt[off + 4] << 16 |
		      (uint32_t)pt[off + 5] << 8 | pt[off + 6];
		off += HDRLEN;
		if (seq != s->rx_seq++)
			s->bad++;
		if (kind == K_DETACHED) {
			/* The record ends with a detached packet's header. */
			if (off != len || plen == 0)
				s->bad++;
			s->want_detached = plen;
			hw_conn_expect_detached(c, plen);
			break;
		}
		if (kind != K_INLINE || len - off < plen ||
		    !check_payload(pt + off, plen, seq)) {
			s->bad++;
			return;
		}
		off += plen;
		s->rx_pkts++;
	}
	if (s->close_in_record)
		hw_conn_close(c, 0, 0);
	if (s->pause_at && s->records == s->pause_at)
		hw_conn_pause(c, 1);
}

static void s_detached(struct hw_conn *c, uint8_t *p, size_t n, void *ud)
{
	struct side *s = ud;

	if (n != s->want_detached || !check_payload(p, n, s->rx_seq - 1))
		s->bad++;
	s->want_detached = 0;
	s->rx_detached++;
	s->rx_pkts++;
}

static void s_drained(struct hw_conn *c, void *ud)
{
	struct side *s = ud;

	s->drained++;
	s->queued_at_drain = hw_conn_queued(c);
}

static void s_closed(struct hw_conn *c, int reason, void *ud)
{
	struct side *s = ud;

	s->closed++;
	s->reason = reason;
	s->pkts_at_close = s->rx_pkts;
	s->closed_at = uv_now(&s->e->loop);
	s->c = NULL;
}

static const struct hw_conn_ops side_ops = {
	.ready = s_ready,
	.record = s_record,
	.detached = s_detached,
	.drained = s_drained,
	.closed = s_closed,
};

/* ---- sending ---- */

struct fill_arg {
	uint32_t seq;
	int calls, fail;
};

static int fill_pattern(void *arg, uint8_t *dst, size_t n)
{
	struct fill_arg *fa = arg;

	fa->calls++;
	if (fa->fail)
		return fa->fail;
	for (size_t j = 0; j < n; j++)
		dst[j] = hw_test_pattern((uint8_t)fa->seq, j);
	return 0;
}

/* Sends s's next packet (plen payload bytes, detached or not); the
 * sequence number advances only when the send succeeds. */
static int side_send(struct side *s, size_t plen, int detached)
{
	struct fill_arg fa = {.seq = s->tx_seq};
	uint8_t hdr[HDRLEN];
	int rc;

	put_hdr(hdr, plen, detached ? K_DETACHED : K_INLINE, s->tx_seq);
	rc = hw_conn_send_fill(s->c, hdr, HDRLEN, plen, detached,
			       fill_pattern, &fa);
	if (rc == 0)
		s->tx_seq++;
	return rc;
}

/* Sends n packets of 0..maxlen bytes through hw_conn_send itself. */
static void side_burst(struct side *s, int n, size_t maxlen, uint64_t *rng)
{
	static uint8_t pay[2048];

	assert_true(maxlen <= sizeof(pay));
	for (int i = 0; i < n; i++) {
		size_t plen = (size_t)(hw_test_xorshift(rng) % (maxlen + 1));
		uint8_t hdr[HDRLEN];

		for (size_t j = 0; j < plen; j++)
			pay[j] = hw_test_pattern((uint8_t)s->tx_seq, j);
		put_hdr(hdr, plen, K_INLINE, s->tx_seq);
		assert_int_equal(hw_conn_send(s->c, hdr, HDRLEN, pay, plen), 0);
		s->tx_seq++;
	}
}

/* ---- the in-memory carrier ---- */

/* Completes every write still held with status. */
static void carrier_fail(struct carrier *k, int status)
{
	struct wr *w;

	while ((w = k->inflight) || (w = k->head)) {
		if (w == k->inflight) {
			k->inflight = w->next;
		} else if (!(k->head = w->next)) {
			k->tail = &k->head;
		}
		w->done(w->arg, status);
		free(w);
	}
}

/* The carrier ends on its own: tells its connection, then fails what
 * it still held (the connection makes no call into it any more). */
static void carrier_end(struct carrier *k, int reason)
{
	struct hw_conn *c = k->conn;

	k->conn = NULL;
	k->ended = 1;
	if (c)
		hw_conn_carrier_closed(c, reason);
	carrier_fail(k, -ECONNRESET);
}

static void carrier_pump(uv_idle_t *h)
{
	struct carrier *k = h->data;
	struct wr *w;

	if (k->head && !k->stalled) {
		size_t total = 0, off = 0;
		uint8_t *buf;

		k->inflight = k->head;
		k->head = NULL;
		k->tail = &k->head;
		for (w = k->inflight; w; w = w->next)
			total += w->len;
		buf = malloc(total);
		assert_non_null(buf);
		for (w = k->inflight; w; w = w->next) {
			memcpy(buf + off, w->buf, w->len);
			off += w->len;
		}
		if (k->peer->conn)
			hw_conn_carrier_input(k->peer->conn, buf, total);
		free(buf);
		while ((w = k->inflight)) {
			k->inflight = w->next;
			w->done(w->arg, 0);
			free(w);
		}
	}
	if (k->eof_to_peer && !k->head) {
		k->eof_to_peer = 0;
		if (k->peer->conn)
			carrier_end(k->peer, HW_ECLOSED);
	}
	if ((!k->head || k->stalled) && !k->eof_to_peer)
		uv_idle_stop(h);
}

static int carrier_write(void *carrier, const uint8_t *buf, size_t len,
			 void (*done)(void *arg, int status), void *arg)
{
	struct carrier *k = carrier;
	struct wr *w;

	if (k->closes || k->ended) {
		k->late_calls++;
		return -ENOTCONN;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct wr){.buf = buf, .len = len, .done = done, .arg = arg};
	*k->tail = w;
	k->tail = &w->next;
	uv_idle_start(&k->idle, carrier_pump);
	return 0;
}

static void carrier_close(void *carrier, int reason)
{
	struct carrier *k = carrier;

	if (k->closes || k->ended)
		k->late_calls++;
	k->closes++;
	k->close_reason = reason;
	k->conn = NULL;
	carrier_fail(k, -ECANCELED);
	k->eof_to_peer = 1;
	uv_idle_start(&k->idle, carrier_pump);
}

static void carrier_pause(void *carrier, int paused)
{
	struct carrier *k = carrier;

	if (paused)
		k->pauses++;
	else
		k->resumes++;
}

static const struct hw_nstream_carrier_ops carrier_ops = {
	.write = carrier_write,
	.close = carrier_close,
	.pause = carrier_pause,
};

/* ---- the environment ---- */

static struct side *side_use(struct env *e, struct side *s)
{
	s->e = e;
	s->used = 1;
	s->opened_at = uv_now(&e->loop);
	return s;
}

static void on_connection(uv_stream_t *server, int status)
{
	struct env *e = server->data;
	struct side *s;

	if (status < 0 || e->nacc == NACC)
		return;
	s = side_use(e, &e->acc[e->nacc++]);
	e->pa.ud = s;
	if (hw_conn_accept(&s->c, server, &e->pa))
		s->bad++;
}

static struct env *env_new(unsigned hs_timeout_ms)
{
	struct env *e = calloc(1, sizeof(*e));
	struct sockaddr_in sa;
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	assert_non_null(e);
	assert_int_equal(uv_loop_init(&e->loop), 0);
	uv_timer_init(&e->loop, &e->tick);
	assert_int_equal(hw_test_identity(&e->id_l, e->x_l), 0);
	assert_int_equal(hw_test_identity(&e->id_d, e->x_d), 0);
	assert_int_equal(hw_test_identity(&e->id_x, e->x_x), 0);
	e->pd = (struct hw_conn_params){.id = &e->id_d, .x_priv = e->x_d,
		.prologue = PROLOGUE, .handshake_timeout_ms = hs_timeout_ms,
		.ops = &side_ops};
	e->pa = e->pd;
	e->pa.id = &e->id_l;
	e->pa.x_priv = e->x_l;
	assert_int_equal(uv_tcp_init(&e->loop, &e->srv), 0);
	e->srv.data = e;
	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
	assert_int_equal(uv_tcp_bind(&e->srv, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&e->srv, 16, on_connection),
			 0);
	assert_int_equal(uv_tcp_getsockname(&e->srv, (struct sockaddr *)&ss,
					    &len), 0);
	e->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return e;
}

static void env_dial(struct env *e, const uint8_t *pk)
{
	struct side *s = side_use(e, &e->d);

	e->pd.ud = s;
	assert_int_equal(hw_conn_dial(&s->c, &e->loop, &e->pd, pk,
				      "127.0.0.1", e->port), 0);
}

/* Two connections joined by the carrier pair: d dials, acc[0] answers. */
static void env_pair(struct env *e)
{
	struct carrier *k[2] = {&e->ka, &e->kb};

	for (int i = 0; i < 2; i++) {
		k[i]->peer = k[1 - i];
		k[i]->tail = &k[i]->head;
		uv_idle_init(&e->loop, &k[i]->idle);
		k[i]->idle.data = k[i];
		k[i]->inited = 1;
	}
	e->pd.ud = side_use(e, &e->d);
	assert_int_equal(hw_conn_open_carrier(&e->d.c, &e->loop, &e->pd,
					      &carrier_ops, &e->ka,
					      e->id_l.pk, "mem a"), 0);
	e->ka.conn = e->d.c;
	e->pa.ud = side_use(e, &e->acc[e->nacc++]);
	assert_int_equal(hw_conn_open_carrier(&e->acc[0].c, &e->loop, &e->pa,
					      &carrier_ops, &e->kb, NULL,
					      "mem b"), 0);
	e->kb.conn = e->acc[0].c;
}

static int all_closed(struct env *e)
{
	if (e->d.used && !e->d.closed)
		return 0;
	for (int i = 0; i < e->nacc; i++)
		if (!e->acc[i].closed)
			return 0;
	return 1;
}

static void side_check(const struct side *s)
{
	if (!s->used)
		return;
	assert_int_equal(s->closed, 1);
	assert_int_equal(s->bad, 0);
}

/* Closes what is still open, checks that every connection closed once
 * and cleanly, and that nothing is left on the loop. */
static void env_free(struct env *e)
{
	struct carrier *k[2] = {&e->ka, &e->kb};

	if (e->d.c)
		hw_conn_close(e->d.c, 0, 0);
	for (int i = 0; i < e->nacc; i++)
		if (e->acc[i].c)
			hw_conn_close(e->acc[i].c, 0, 0);
	assert_true(RUN_UNTIL(e, all_closed(e)));
	side_check(&e->d);
	for (int i = 0; i < e->nacc; i++)
		side_check(&e->acc[i]);
	for (int i = 0; i < 2; i++) {
		if (!k[i]->inited)
			continue;
		assert_true(RUN_UNTIL(e, !uv_is_active((uv_handle_t *)
							   &k[i]->idle)));
		assert_null(k[i]->head);
		assert_null(k[i]->inflight);
		assert_int_equal(k[i]->late_calls, 0);
		uv_close((uv_handle_t *)&k[i]->idle, NULL);
	}
	for (int i = 0; i < NRAW; i++)
		if (e->raw[i].inited)
			uv_close((uv_handle_t *)&e->raw[i].tcp, NULL);
	uv_close((uv_handle_t *)&e->srv, NULL);
	uv_close((uv_handle_t *)&e->tick, NULL);
	assert_int_equal(hw_test_loop_close(&e->loop), 0);
	free(e);
}

/* ---- raw clients ---- */

static void raw_connected(uv_connect_t *req, int status)
{
	struct raw *r = req->data;
	uv_buf_t b = uv_buf_init((char *)r->buf, (unsigned)r->len);

	if (status == 0 && r->len)
		uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, NULL);
}

/* Connects raw client i, which writes len bytes of buf and then nothing
 * (it never reads). */
static void raw_start(struct env *e, int i, const uint8_t *buf, size_t len)
{
	struct raw *r = &e->raw[i];
	struct sockaddr_in sa;

	assert_true(len <= sizeof(r->buf));
	if (len)
		memcpy(r->buf, buf, len);
	r->len = len;
	assert_int_equal(uv_tcp_init(&e->loop, &r->tcp), 0);
	r->inited = 1;
	r->creq.data = r;
	assert_int_equal(uv_ip4_addr("127.0.0.1", e->port, &sa), 0);
	assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp,
					(struct sockaddr *)&sa, raw_connected),
			 0);
}

/* ---- the cases ---- */

static void test_handshake(void **state)
{
	struct env *e = env_new(HS_TIMEOUT_MS);
	struct side *a = &e->acc[0];
	char want[32];
	unsigned port = 0;

	env_dial(e, e->id_l.pk);
	assert_int_equal(hw_conn_is_dialer(e->d.c), 1);
	assert_int_equal(hw_conn_is_ready(e->d.c), 0);
	assert_string_equal(hw_conn_peer(e->d.c), "");
	assert_int_equal(side_send(&e->d, 10, 0), -ENOTCONN);
	assert_ptr_equal(hw_conn_ud(e->d.c), &e->d);
	assert_true(RUN_UNTIL(e, e->d.ready && e->nacc == 1 && a->ready));
	assert_int_equal(e->d.ready, 1);
	assert_int_equal(a->ready, 1);
	assert_int_equal(hw_conn_is_ready(e->d.c), 1);
	assert_int_equal(hw_conn_is_ready(a->c), 1);
	assert_memory_equal(hw_conn_remote_pk(e->d.c), e->id_l.pk, HW_PK_LEN);
	assert_memory_equal(hw_conn_remote_pk(a->c), e->id_d.pk, HW_PK_LEN);
	assert_int_equal(hw_conn_is_dialer(a->c), 0);
	snprintf(want, sizeof(want), "127.0.0.1:%u", (unsigned)e->port);
	assert_string_equal(hw_conn_peer(e->d.c), want);
	assert_int_equal(sscanf(hw_conn_peer(a->c), "127.0.0.1:%u", &port), 1);
	assert_true(port > 0 && port < 65536 && port != e->port);
	assert_int_equal(hw_conn_queued(e->d.c), 0);
	env_free(e);
}

static void test_data(void **state)
{
	struct env *e = env_new(HS_TIMEOUT_MS);
	struct side *a = &e->acc[0];
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	size_t q;

	env_dial(e, e->id_l.pk);
	assert_true(RUN_UNTIL(e, e->d.ready && e->nacc == 1 && a->ready));
	side_burst(&e->d, 3000, 200, &rng);
	side_burst(a, 3000, 200, &rng);
	assert_true(RUN_UNTIL(e, a->rx_pkts == e->d.tx_seq &&
				     e->d.rx_pkts == a->tx_seq));
	/* Sent back to back, the packets shared records. */
	assert_true(a->records < a->rx_pkts / 4);
	assert_true(e->d.records < e->d.rx_pkts / 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(side_send(&e->d, MAX_PLEN - (size_t)i, 0), 0);
		assert_int_equal(side_send(a, MAX_PLEN - (size_t)i, 0), 0);
	}
	q = hw_conn_queued(e->d.c);
	assert_int_equal(side_send(&e->d, MAX_PLEN + 1, 0), HW_ETOOBIG);
	assert_int_equal(hw_conn_queued(e->d.c), q);
	side_burst(&e->d, 10, 100, &rng); /* after the refused one */
	assert_true(RUN_UNTIL(e, a->rx_pkts == e->d.tx_seq &&
				     e->d.rx_pkts == a->tx_seq));
	assert_int_equal(a->bad, 0);
	assert_int_equal(e->d.bad, 0);
	assert_int_equal(a->rx_pkts, 3014);
	env_free(e);
}

static void test_detached(void **state)
{
	struct env *e = env_new(HS_TIMEOUT_MS);
	struct side *a = &e->acc[0];
	uint8_t hdr[HDRLEN], pay[333];
	struct fill_arg fa = {.seq = 99};
	uint64_t rng = 7;
	size_t q;

	env_dial(e, e->id_l.pk);
	assert_true(RUN_UNTIL(e, e->d.ready && e->nacc == 1 && a->ready));
	side_burst(&e->d, 5, 50, &rng);
	assert_int_equal(side_send(&e->d, 1000, 1), 0);
	side_burst(&e->d, 5, 50, &rng);
	assert_int_equal(side_send(&e->d, HW_RECORD_MAX, 1), 0);
	assert_int_equal(side_send(&e->d, 1, 1), 0);
	for (size_t j = 0; j < sizeof(pay); j++)
		pay[j] = hw_test_pattern((uint8_t)e->d.tx_seq, j);
	put_hdr(hdr, sizeof(pay), K_DETACHED, e->d.tx_seq);
	assert_int_equal(hw_conn_send_detached(e->d.c, hdr, HDRLEN, pay,
					       sizeof(pay)), 0);
	e->d.tx_seq++;
	/* Too big: refused before fill runs. */
	assert_int_equal(hw_conn_send_fill(e->d.c, hdr, HDRLEN,
					   HW_RECORD_MAX + 1, 1, fill_pattern,
					   &fa), HW_ETOOBIG);
	assert_int_equal(fa.calls, 0);
	/* A fill that fails cancels its send, inline or detached. */
	q = hw_conn_queued(e->d.c);
	for (int det = 0; det < 2; det++) {
		fa = (struct fill_arg){.seq = e->d.tx_seq, .fail = -EIO};
		put_hdr(hdr, 500, det ? K_DETACHED : K_INLINE, e->d.tx_seq);
		assert_int_equal(hw_conn_send_fill(e->d.c, hdr, HDRLEN, 500, det,
						   fill_pattern, &fa), -EIO);
		assert_int_equal(fa.calls, 1);
		assert_int_equal(hw_conn_queued(e->d.c), q);
	}
	side_burst(&e->d, 5, 50, &rng);
	assert_int_equal(side_send(&e->d, 3000, 1), 0);
	assert_int_equal(e->d.tx_seq, 20);
	assert_true(RUN_UNTIL(e, a->rx_pkts == e->d.tx_seq));
	assert_int_equal(a->rx_detached, 5);
	assert_int_equal(a->rx_seq, 20);
	assert_int_equal(a->bad, 0);
	env_free(e);
}

static void test_backpressure(void **state)
{
	struct env *e = env_new(HS_TIMEOUT_MS);
	struct side *b = &e->acc[0];
	size_t last = 0;
	int rc = 0, sent = 0;

	env_pair(e);
	assert_true(RUN_UNTIL(e, e->d.ready && b->ready));
	e->ka.stalled = 1;
	while (sent < 100000 && (rc = side_send(&e->d, 1000, 0)) == 0) {
		assert_true(hw_conn_queued(e->d.c) >= last);
		last = hw_conn_queued(e->d.c);
		sent++;
	}
	assert_int_equal(rc, -ENOBUFS);
	assert_true(hw_conn_queued(e->d.c) >= HW_CONN_MAX_QUEUED);
	/* The bound is hard: at most a record or two past it. */
	assert_true(hw_conn_queued(e->d.c) <
		    HW_CONN_MAX_QUEUED + 2 * (HW_RECORD_HDR + HW_RECORD_MAX));
	assert_int_equal(side_send(&e->d, 1, 0), -ENOBUFS);
	/* Held writes: nothing may move (the idle pump is stopped). */
	hw_test_run_for(&e->loop, &e->tick, 30);
	assert_int_equal(e->d.drained, 0);
	assert_int_equal(b->rx_pkts, 0);
	e->ka.stalled = 0;
	uv_idle_start(&e->ka.idle, carrier_pump);
	assert_true(RUN_UNTIL(e, e->d.drained && b->rx_pkts == e->d.tx_seq));
	assert_int_equal(e->d.drained, 1);
	/* conn.c compares the sealed bytes in flight with the low water
	 * mark, not hw_conn_queued(), which also counts the open record:
	 * at drained time the latter may still be up to a record above. */
	assert_true(e->d.queued_at_drain <
		    HW_CONN_LOW_WATER + HW_RECORD_MAX_PLAINTEXT);
	assert_int_equal(side_send(&e->d, 1000, 0), 0);
	assert_true(RUN_UNTIL(e, b->rx_pkts == e->d.tx_seq));
	assert_int_equal(e->d.drained, 1);
	assert_int_equal(b->bad, 0);
	env_free(e);
}

/* Paused reading: nothing reaches the record callbacks, TCP holds the
 * sender back until its queue passes the high-water mark; a resume
 * hands on what was read first, in order, and reading goes on. A pause
 * from inside a record callback takes effect after that record. */
static void test_pause(void **state)
{
	struct env *e = env_new(HS_TIMEOUT_MS);
	struct side *a = &e->acc[0];
	uint64_t rng = 11;
	uint8_t hdr[HDRLEN];
	struct fill_arg fa;
	int rc = 0, n = 0;

	env_dial(e, e->id_l.pk);
	assert_true(RUN_UNTIL(e, e->d.ready && e->nacc == 1 && a->ready));
	hw_conn_pause(a->c, 1);
	hw_conn_pause(a->c, 1); /* twice is once */
	side_burst(&e->d, 500, 200, &rng);
	assert_int_equal(side_send(&e->d, 5000, 1), 0);
	hw_test_run_for(&e->loop, &e->tick, 50);
	assert_int_equal(a->records, 0);
	assert_int_equal(a->rx_pkts, 0);
	/* The sender fills: once the kernel's buffers are full its own
	 * queue passes the high-water mark. */
	assert_int_equal(hw_conn_congested(e->d.c), 0);
	while (n++ < 20000 && (rc = side_send(&e->d, MAX_PLEN, 0)) == 0)
		if (hw_conn_queued(e->d.c) < HW_CONN_MAX_QUEUED)
			hw_test_run_for(&e->loop, &e->tick, 1);
	assert_int_equal(rc, -ENOBUFS);
	assert_int_equal(a->rx_pkts, 0);
	assert_int_equal(hw_conn_congested(e->d.c), 1);
	/* Forwarded packets may go on up to the forwarding limit. */
	fa = (struct fill_arg){.seq = e->d.tx_seq};
	put_hdr(hdr, 100, K_INLINE, e->d.tx_seq);
	assert_int_equal(hw_conn_send_fill_max(e->d.c, hdr, HDRLEN, 100, 0,
					       fill_pattern, &fa,
					       HW_CONN_FORWARD_MAX), 0);
	e->d.tx_seq++;
	assert_int_equal(hw_conn_send_fill_max(e->d.c, hdr, HDRLEN, 100, 0,
					       fill_pattern, &fa,
					       hw_conn_queued(e->d.c)),
			 -ENOBUFS);
	/* Resumed, with a pause again after 3 more records. */
	a->pause_at = 3;
	hw_conn_pause(a->c, 0);
	assert_true(RUN_UNTIL(e, a->records == 3));
	hw_test_run_for(&e->loop, &e->tick, 30);
	assert_int_equal(a->records, 3);
	a->pause_at = 0;
	hw_conn_pause(a->c, 0);
	assert_true(RUN_UNTIL(e, a->rx_pkts == e->d.tx_seq && e->d.drained));
	assert_int_equal(a->rx_detached, 1);
	assert_int_equal(a->bad, 0);
	assert_int_equal(side_send(&e->d, 10, 0), 0);
	assert_true(RUN_UNTIL(e, a->rx_pkts == e->d.tx_seq));
	env_free(e);
}

/* Over a carrier: the carrier hears of the pause, what it still
 * delivers is kept and handed on at resume, and a carrier that delivers
 * past HW_NSTREAM_HELD_MAX while paused ends the connection. */
static void test_pause_carrier(void **state)
{
	struct env *e = env_new(HS_TIMEOUT_MS);
	struct side *b = &e->acc[0];
	uint64_t rng = 3, sent = 0;
	int rc, n = 0;

	env_pair(e);
	assert_true(RUN_UNTIL(e, e->d.ready && b->ready));
	hw_conn_pause(b->c, 1);
	assert_int_equal(e->kb.pauses, 1);
	side_burst(&e->d, 300, 300, &rng);
	assert_int_equal(side_send(&e->d, 3000, 1), 0);
	hw_test_run_for(&e->loop, &e->tick, 30);
	assert_int_equal(b->records, 0);
	hw_conn_pause(b->c, 0);
	assert_int_equal(e->kb.resumes, 1);
	/* The kept frames go on from inside the resume. */
	assert_int_equal(b->rx_pkts, e->d.tx_seq);
	assert_int_equal(b->bad, 0);

	/* This carrier cannot hold its peer back: past the bound, the
	 * paused side gives up. */
	hw_conn_pause(b->c, 1);
	while (!b->closed && n++ < 100000) {
		rc = side_send(&e->d, MAX_PLEN, 0);
		if (rc == 0)
			sent += MAX_PLEN;
		else if (rc == -ENOBUFS)
			hw_test_run_for(&e->loop, &e->tick, 1);
		else
			break;
	}
	assert_true(RUN_UNTIL(e, b->closed));
	assert_int_equal(b->reason, HW_EPROTO);
	assert_true(sent > HW_NSTREAM_HELD_MAX);
	assert_true(b->rx_pkts < e->d.tx_seq);
	if (e->d.c)
		hw_conn_close(e->d.c, 0, 0);
	assert_true(RUN_UNTIL(e, e->d.closed));
	env_free(e);
}

static void test_wrong_identity(void **state)
{
	struct env *e = env_new(HS_TIMEOUT_MS);
	struct side *a = &e->acc[0], z = {.e = e};
	struct hw_conn *c = (struct hw_conn *)1;
	uint8_t bad_pk[HW_PK_LEN] = {0};

	env_dial(e, e->id_x.pk);
	assert_true(RUN_UNTIL(e, e->d.closed && e->nacc == 1 && a->closed));
	assert_int_equal(e->d.ready, 0);
	assert_int_equal(a->ready, 0);
	assert_int_not_equal(e->d.reason, 0);
	assert_int_not_equal(a->reason, 0);
	assert_int_not_equal(a->reason, -ETIMEDOUT);
	assert_int_not_equal(e->d.reason, -ETIMEDOUT);
	/* Not a key at all: refused at once, and no callback follows. */
	e->pd.ud = &z;
	assert_int_equal(hw_conn_dial(&c, &e->loop, &e->pd, bad_pk,
				      "127.0.0.1", e->port), HW_EBADKEY);
	assert_null(c);
	env_free(e);
	assert_int_equal(z.closed, 0);
}

static void test_hostile(void **state)
{
	struct env *e = env_new(200);
	static const uint8_t too_long[] = {0xff, 0xff, 1, 2, 3, 4, 5, 6};
	static const uint8_t too_short[] = {0x00, 0x01, 0x42};
	uint8_t noise[2 + 64] = {0x00, 64};
	struct side *a;

	randombytes_buf(noise + 2, 64);
	raw_start(e, 0, too_long, sizeof(too_long));
	assert_true(RUN_UNTIL(e, e->nacc == 1 && e->acc[0].closed));
	assert_int_equal(e->acc[0].reason, HW_EPROTO);
	raw_start(e, 1, too_short, sizeof(too_short));
	assert_true(RUN_UNTIL(e, e->nacc == 2 && e->acc[1].closed));
	assert_int_equal(e->acc[1].reason, HW_EPROTO);
	raw_start(e, 2, noise, sizeof(noise));
	assert_true(RUN_UNTIL(e, e->nacc == 3 && e->acc[2].closed));
	assert_int_not_equal(e->acc[2].reason, 0);
	assert_int_not_equal(e->acc[2].reason, -ETIMEDOUT);
	/* Silent: the handshake timer ends it. */
	raw_start(e, 3, NULL, 0);
	assert_true(RUN_UNTIL(e, e->nacc == 4 && e->acc[3].closed));
	assert_int_equal(e->acc[3].reason, -ETIMEDOUT);
	assert_true(e->acc[3].closed_at - e->acc[3].opened_at >= 200);
	for (int i = 0; i < 4; i++)
		assert_int_equal(e->acc[i].ready, 0);
	/* The listener still completes a good handshake. */
	env_dial(e, e->id_l.pk);
	a = &e->acc[4];
	assert_true(RUN_UNTIL(e, e->d.ready && e->nacc == 5 && a->ready));
	assert_memory_equal(hw_conn_remote_pk(a->c), e->id_d.pk, HW_PK_LEN);
	assert_int_equal(side_send(&e->d, 100, 0), 0);
	assert_true(RUN_UNTIL(e, a->rx_pkts == 1));
	env_free(e);
}

static void test_graceful_close(void **state)
{
	uint64_t rng = 42;

	for (int carrier = 0; carrier < 2; carrier++) {
		struct env *e = env_new(HS_TIMEOUT_MS);
		struct side *a = &e->acc[0];

		if (carrier)
			env_pair(e);
		else
			env_dial(e, e->id_l.pk);
		assert_true(RUN_UNTIL(e, e->d.ready && e->nacc == 1 &&
					     a->ready));
		side_burst(&e->d, 600, 2000, &rng);
		assert_true(hw_conn_queued(e->d.c) > 0);
		hw_conn_close(e->d.c, 0, 1);
		assert_int_equal(side_send(&e->d, 10, 0), -ENOTCONN);
		assert_true(RUN_UNTIL(e, e->d.closed && a->closed));
		assert_int_equal(e->d.reason, 0);
		assert_int_equal(a->reason, HW_ECLOSED);
		assert_int_equal(a->pkts_at_close, 600);
		if (carrier) {
			assert_int_equal(e->ka.closes, 1);
			assert_int_equal(e->kb.closes, 0);
		}
		env_free(e);
	}
}

static void test_carrier(void **state)
{
	struct env *e = env_new(HS_TIMEOUT_MS);
	struct side *b = &e->acc[0];
	uint64_t rng = 5;

	env_pair(e);
	assert_int_equal(hw_conn_is_ready(e->d.c), 0);
	assert_true(RUN_UNTIL(e, e->d.ready && b->ready));
	assert_memory_equal(hw_conn_remote_pk(e->d.c), e->id_l.pk, HW_PK_LEN);
	assert_memory_equal(hw_conn_remote_pk(b->c), e->id_d.pk, HW_PK_LEN);
	assert_int_equal(hw_conn_is_dialer(e->d.c), 1);
	assert_int_equal(hw_conn_is_dialer(b->c), 0);
	assert_string_equal(hw_conn_peer(e->d.c), "mem a");
	assert_string_equal(hw_conn_peer(b->c), "mem b");
	side_burst(&e->d, 2000, 300, &rng);
	side_burst(b, 2000, 300, &rng);
	assert_int_equal(side_send(&e->d, MAX_PLEN, 0), 0);
	assert_int_equal(side_send(b, 4000, 1), 0);
	assert_true(RUN_UNTIL(e, b->rx_pkts == e->d.tx_seq &&
				     e->d.rx_pkts == b->tx_seq));
	assert_int_equal(e->d.rx_detached, 1);
	/* b's carrier ends by itself: b closes with its reason, and its
	 * carrier hears nothing more. */
	carrier_end(&e->kb, -ECONNRESET);
	assert_true(RUN_UNTIL(e, b->closed));
	assert_int_equal(b->reason, -ECONNRESET);
	assert_int_equal(e->kb.closes, 0);
	/* Closing d closes its carrier once, whatever the repeats. */
	assert_int_equal(e->d.closed, 0);
	hw_conn_close(e->d.c, 0, 0);
	hw_conn_close(e->d.c, -EIO, 0);
	assert_true(RUN_UNTIL(e, e->d.closed));
	assert_int_equal(e->d.reason, 0);
	assert_int_equal(e->ka.closes, 1);
	assert_int_equal(e->ka.close_reason, 0);
	assert_int_equal(e->kb.closes, 0);
	env_free(e);
}

static void test_close_in_callbacks(void **state)
{
	struct env *e = env_new(HS_TIMEOUT_MS);

	/* TCP: the accepting side closes in its ready callback. */
	e->acc[0].close_in_ready = 1;
	env_dial(e, e->id_l.pk);
	assert_true(RUN_UNTIL(e, e->d.closed && e->nacc == 1 &&
				     e->acc[0].closed));
	assert_int_equal(e->acc[0].ready, 1);
	assert_int_equal(e->acc[0].reason, 0);
	assert_int_not_equal(e->d.reason, 0);
	env_free(e);

	/* Carrier: the dialer closes in ready. */
	e = env_new(HS_TIMEOUT_MS);
	e->d.close_in_ready = 1;
	env_pair(e);
	assert_true(RUN_UNTIL(e, e->d.closed && e->acc[0].closed));
	assert_int_equal(e->d.ready, 1);
	assert_int_equal(e->d.reason, 0);
	assert_int_equal(e->ka.closes, 1);
	assert_int_not_equal(e->acc[0].reason, 0);
	env_free(e);

	/* Carrier: the responder closes in its first record, with more
	 * records behind it in the same input. */
	e = env_new(HS_TIMEOUT_MS);
	e->acc[0].close_in_record = 1;
	env_pair(e);
	assert_true(RUN_UNTIL(e, e->d.ready && e->acc[0].ready));
	for (int i = 0; i < 4; i++)
		assert_int_equal(side_send(&e->d, 40000, 0), 0);
	assert_true(RUN_UNTIL(e, e->d.closed && e->acc[0].closed));
	assert_int_equal(e->acc[0].records, 1);
	assert_int_equal(e->acc[0].rx_pkts, 1);
	assert_int_equal(e->acc[0].reason, 0);
	assert_int_equal(e->kb.closes, 1);
	assert_int_equal(e->d.reason, HW_ECLOSED);
	env_free(e);

	/* Twice from outside any callback, before it ever connected. */
	e = env_new(HS_TIMEOUT_MS);
	env_dial(e, e->id_l.pk);
	hw_conn_close(e->d.c, -ECANCELED, 0);
	hw_conn_close(e->d.c, 0, 1);
	assert_true(RUN_UNTIL(e, e->d.closed));
	assert_int_equal(e->d.reason, -ECANCELED);
	assert_int_equal(e->d.ready, 0);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake),
		cmocka_unit_test(test_data),
		cmocka_unit_test(test_detached),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_pause_carrier),
		cmocka_unit_test(test_wrong_identity),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_graceful_close),
		cmocka_unit_test(test_carrier),
		cmocka_unit_test(test_close_in_callbacks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
