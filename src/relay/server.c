#include "relay/server.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/frame.h"
#include "relay/wire.h"
#include "util/err.h"
#include "util/htab.h"
#include "util/log.h"

#define LOG "relay"
/* Forwarded payloads at least this large are copied into pooled 64 KiB
 * buffers; smaller ones get a buffer of their own size, so what a stream
 * direction holds stays within about twice its window. */
#define FBUF_POOL_MIN 32768
#define FBUF_MAX_SPARES 64
#define LOG_EVERY_MS 10000

/* ---- state ---- */

enum pair_state { PAIR_OPENING, PAIR_OPEN };

struct session;

/* One end of a stream: its id on one session. */
struct half {
	struct hw_hnode node; /* srv->streams, by (session serial, id) */
	struct session *sess;
	struct half *prev, *next; /* sess->halves */
	struct pair *pair;
	uint32_t id;
	uint32_t credit; /* bytes this end's visor may still send */
};

/* A stream: the initiator's end a and the target's end b. */
struct pair {
	struct half a, b;
	enum pair_state state;
	uint64_t deadline;          /* opening: answer due */
	struct pair *oprev, *onext; /* srv's opening list */
};

struct session {
	struct hw_hnode node; /* srv->sessions by pk, while registered */
	struct hw_relay_server *srv;
	struct hw_relay_wire *w;
	struct session *prev, *next; /* srv->all */
	struct half *halves;
	uint64_t serial;
	uint8_t pk[HW_PK_LEN];
	uint32_t last_odd;  /* highest id the visor opened */
	uint32_t last_even; /* highest id the relay opened */
	unsigned nstreams;
	unsigned handshaking : 1, ready : 1, registered : 1, dead : 1;
};

/* A copy of one forwarded DATA payload, owned by the target's queue. */
struct fbuf {
	struct fbuf *next;
	struct hw_relay_server *srv;
	size_t cap, len;
	uint8_t data[];
};

struct hw_relay_server {
	struct hw_relay_server_params p;
	uv_tcp_t listener;
	uv_timer_t open_timer;
	int closing;
	int refs; /* open handles and sessions */
	uint16_t port;
	uint8_t x_priv[32];
	uint8_t hkey[crypto_shorthash_KEYBYTES];
	struct hw_relay_wire_params wp;
	struct hw_htab sessions, streams;
	struct session *all;
	struct pair *ohead, *otail;
	struct fbuf *spares;
	unsigned nspares;
	uint64_t next_serial;
	unsigned nsessions, nhandshakes, nopen, nopening;
	uint64_t reserved, buffered, bytes_fwd, units_fwd;
	uint64_t sessions_total, streams_total, dropped, replaced;
	uint64_t rejected_full, rejected_hs;
	uint64_t refusals[HW_RELAY_REFUSE_MAX + 1];
	uint64_t last_full_log, last_hs_log;
};

static uint64_t hash_bytes(const struct hw_relay_server *srv,
			   const uint8_t *p, size_t n)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint64_t h = 0;

	crypto_shorthash(out, p, n, srv->hkey);
	for (int i = 0; i < 8; i++)
		h = h << 8 | out[i];
	return h;
}

static uint64_t stream_hash(const struct hw_relay_server *srv,
			    uint64_t serial, uint32_t id)
{
	uint8_t k[12];

	memcpy(k, &serial, 8);
	memcpy(k + 8, &id, 4);
	return hash_bytes(srv, k, sizeof(k));
}

static struct session *find_session(struct hw_relay_server *srv,
				    const uint8_t pk[HW_PK_LEN])
{
	uint64_t h = hash_bytes(srv, pk, HW_PK_LEN);

	for (struct hw_hnode *x = hw_htab_bucket(&srv->sessions, h); x; x = x->next)
		if (x->h == h &&
		    !memcmp(((struct session *)x)->pk, pk, HW_PK_LEN))
			return (struct session *)x;
	return NULL;
}

static struct half *find_half(struct session *se, uint32_t id)
{
	struct hw_relay_server *srv = se->srv;
	uint64_t h = stream_hash(srv, se->serial, id);

	for (struct hw_hnode *x = hw_htab_bucket(&srv->streams, h); x; x = x->next) {
		struct half *hf = (struct half *)x;
		if (x->h == h && hf->sess == se && hf->id == id)
			return hf;
	}
	return NULL;
}

static struct half *other(struct half *h)
{
	return h == &h->pair->a ? &h->pair->b : &h->pair->a;
}

static const char *short_pk(const uint8_t pk[HW_PK_LEN], char out[17])
{
	char hex[HW_PK_HEXLEN + 1];

	hw_pk_format(pk, hex);
	memcpy(out, hex, 16);
	out[16] = '\0';
	return out;
}

static void server_maybe_free(struct hw_relay_server *srv)
{
	if (!srv->closing || srv->refs > 0)
		return;
	while (srv->spares) {
		struct fbuf *b = srv->spares;
		srv->spares = b->next;
		free(b);
	}
	hw_htab_free(&srv->sessions);
	hw_htab_free(&srv->streams);
	sodium_memzero(srv->x_priv, sizeof(srv->x_priv));
	free(srv);
}

/* ---- pairs ---- */

static void half_link(struct hw_relay_server *srv, struct half *h,
		      struct session *se, uint32_t id, struct pair *pr)
{
	h->sess = se;
	h->id = id;
	h->pair = pr;
	h->credit = HW_RELAY_WINDOW;
	h->node.h = stream_hash(srv, se->serial, id);
	hw_htab_insert(&srv->streams, &h->node);
	h->prev = NULL;
	h->next = se->halves;
	if (se->halves)
		se->halves->prev = h;
	se->halves = h;
	se->nstreams++;
}

static void half_unlink(struct hw_relay_server *srv, struct half *h)
{
	hw_htab_remove(&srv->streams, &h->node);
	if (h->prev)
		h->prev->next = h->next;
	else
		h->sess->halves = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->sess->nstreams--;
}

static void opening_unlink(struct hw_relay_server *srv, struct pair *pr)
{
	if (pr->oprev)
		pr->oprev->onext = pr->onext;
	else
		srv->ohead = pr->onext;
	if (pr->onext)
		pr->onext->oprev = pr->oprev;
	else
		srv->otail = pr->oprev;
	pr->oprev = pr->onext = NULL;
}

static void pair_free(struct hw_relay_server *srv, struct pair *pr)
{
	half_unlink(srv, &pr->a);
	half_unlink(srv, &pr->b);
	if (pr->state == PAIR_OPENING) {
		opening_unlink(srv, pr);
		srv->nopening--;
	} else {
		srv->nopen--;
	}
	srv->reserved -= 2 * (uint64_t)HW_RELAY_WINDOW;
	free(pr);
}

/* ---- sending ---- */

/* Sends a control frame to a session. A session whose control queue is
 * full is not reading: it is dropped, but only through its wire, so
 * that dropping never recurses into other sessions from here. */
static void sess_send(struct session *se, uint8_t type, uint32_t id,
		      const uint8_t *body, size_t len)
{
	int rc;

	if (se->dead)
		return;
	rc = hw_relay_wire_send_control(se->w, type, id, body, len);
	if (rc == -ENOBUFS) {
		hw_relay_wire_fail(se->w, -ENOBUFS,
				   "not reading (control queue full)");
	}
}

static void refuse(struct session *se, uint32_t id, uint8_t reason,
		   const char *text)
{
	uint8_t body[1 + HW_RELAY_TEXT_MAX];
	size_t n = strlen(text);

	if (n > HW_RELAY_TEXT_MAX)
		n = HW_RELAY_TEXT_MAX;
	body[0] = reason;
	memcpy(body + 1, text, n);
	se->srv->refusals[reason]++;
	sess_send(se, HW_RELAY_REFUSE, id, body, 1 + n);
}

static void send_close(struct session *se, uint32_t id, uint8_t reason)
{
	sess_send(se, HW_RELAY_CLOSE, id, &reason, 1);
}

/* ---- sessions going away ---- */

/* Ends every stream of se, telling the other ends; unregisters it. */
static void teardown(struct session *se)
{
	struct hw_relay_server *srv = se->srv;
	struct half *h;

	if (se->dead)
		return;
	se->dead = 1;
	if (se->registered) {
		hw_htab_remove(&srv->sessions, &se->node);
		se->registered = 0;
		srv->nsessions--;
	}
	while ((h = se->halves)) {
		struct pair *pr = h->pair;
		struct half *o = other(h);
		struct session *os = o->sess;
		uint32_t oid = o->id;
		int opening = pr->state == PAIR_OPENING, initiator = h == &pr->a;

		pair_free(srv, pr);
		if (opening && !initiator)
			refuse(os, oid, HW_RELAY_REFUSE_NO_SESSION,
			       "the target's session closed");
		else
			send_close(os, oid, HW_RELAY_CLOSE_PEER_GONE);
	}
}

/* Drops a session for breaking the protocol: logged once, told with
 * ERROR, its streams closed. */
static void session_kill(struct session *se, int reason, const char *fmt,
			 ...) __attribute__((format(printf, 3, 4)));

static void session_kill(struct session *se, int reason, const char *fmt, ...)
{
	char msg[160], pk[17];
	va_list ap;

	if (se->dead)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	se->srv->dropped++;
	hw_log(HW_LOG_WARN, LOG, "session %s (%s): dropped: %s",
	       short_pk(se->pk, pk), hw_relay_wire_peer(se->w), msg);
	teardown(se);
	hw_relay_wire_fail(se->w, reason, "%s", msg);
}

/* ---- frames from a session ---- */

/* The end of stream id on se: 0 with *out set, or *out NULL when the id
 * was opened and has closed since (frames crossing a CLOSE are ignored);
 * -1 when it was never opened (the session has been dropped). */
static int lookup(struct session *se, uint32_t id, const char *what,
		  struct half **out)
{
	*out = find_half(se, id);
	if (*out)
		return 0;
	if ((id & 1) ? id <= se->last_odd : id <= se->last_even)
		return 0;
	session_kill(se, HW_EPROTO, "%s for stream %u, which was never opened",
		     what, id);
	return -1;
}

static void opening_timer_arm(struct hw_relay_server *srv);

static void handle_open(struct session *se, const struct hw_relay_frame *f)
{
	struct hw_relay_server *srv = se->srv;
	struct hw_relay_open o;
	struct session *t;
	struct pair *pr;
	uint32_t id = f->stream;
	char msg[80];

	if (!(id & 1) || id <= se->last_odd) {
		session_kill(se, HW_EPROTO,
			     "OPEN with stream id %u (odd and increasing "
			     "expected)", id);
		return;
	}
	se->last_odd = id;
	hw_relay_open_decode(&o, f->body, f->len);
	if (memcmp(o.initiator, se->pk, HW_PK_LEN) ||
	    memcmp(o.relay, srv->p.id->pk, HW_PK_LEN)) {
		refuse(se, id, HW_RELAY_REFUSE_BAD_REQUEST,
		       "initiator or relay key does not match the session");
		return;
	}
	if (!memcmp(o.target, se->pk, HW_PK_LEN)) {
		refuse(se, id, HW_RELAY_REFUSE_BAD_REQUEST,
		       "target is the initiator");
		return;
	}
	t = find_session(srv, o.target);
	if (!t) {
		refuse(se, id, HW_RELAY_REFUSE_NO_SESSION,
		       "no session with the target");
		return;
	}
	if (se->nstreams >= srv->p.max_streams ||
	    t->nstreams >= srv->p.max_streams ||
	    t->last_even >= UINT32_MAX - 1) {
		snprintf(msg, sizeof(msg), "stream limit (%u per session)",
			 srv->p.max_streams);
		refuse(se, id, HW_RELAY_REFUSE_STREAM_LIMIT, msg);
		return;
	}
	if (srv->reserved + 2 * (uint64_t)HW_RELAY_WINDOW >
	    srv->p.max_buffered) {
		refuse(se, id, HW_RELAY_REFUSE_BUFFER_LIMIT,
		       "relay buffer budget spent");
		return;
	}
	if (!(pr = calloc(1, sizeof(*pr)))) {
		refuse(se, id, HW_RELAY_REFUSE_BUFFER_LIMIT, "out of memory");
		return;
	}
	t->last_even += 2;
	half_link(srv, &pr->a, se, id, pr);
	half_link(srv, &pr->b, t, t->last_even, pr);
	pr->state = PAIR_OPENING;
	pr->deadline = uv_now(srv->p.loop) + srv->p.open_timeout_ms;
	pr->oprev = srv->otail;
	if (srv->otail)
		srv->otail->onext = pr;
	else
		srv->ohead = pr;
	srv->otail = pr;
	srv->nopening++;
	srv->streams_total++;
	srv->reserved += 2 * (uint64_t)HW_RELAY_WINDOW;
	opening_timer_arm(srv);
	sess_send(t, HW_RELAY_OPEN, pr->b.id, f->body, f->len);
}

/* ACCEPT or REFUSE from the target of an opening stream. */
static void handle_answer(struct session *se, const struct hw_relay_frame *f)
{
	struct hw_relay_server *srv = se->srv;
	const char *what = hw_relay_type_name(f->type);
	struct half *h, *a;
	struct pair *pr;

	if (f->stream & 1) {
		session_kill(se, HW_EPROTO,
			     "%s for stream %u, which it opened itself", what,
			     f->stream);
		return;
	}
	if (lookup(se, f->stream, what, &h) || !h)
		return;
	pr = h->pair;
	if (h != &pr->b || pr->state != PAIR_OPENING) {
		session_kill(se, HW_EPROTO,
			     "%s for stream %u, which is not opening", what,
			     f->stream);
		return;
	}
	a = &pr->a;
	if (f->type == HW_RELAY_ACCEPT) {
		opening_unlink(srv, pr);
		pr->state = PAIR_OPEN;
		srv->nopening--;
		srv->nopen++;
		sess_send(a->sess, HW_RELAY_ACCEPT, a->id, NULL, 0);
	} else {
		struct session *as = a->sess;
		uint32_t aid = a->id;

		pair_free(srv, pr);
		srv->refusals[f->body[0]]++;
		sess_send(as, HW_RELAY_REFUSE, aid, f->body, f->len);
	}
}

static void handle_close(struct session *se, const struct hw_relay_frame *f)
{
	struct hw_relay_server *srv = se->srv;
	struct half *h, *o;
	struct session *os;
	uint32_t oid;
	int to_initiator;

	if (lookup(se, f->stream, "CLOSE", &h) || !h)
		return;
	o = other(h);
	os = o->sess;
	oid = o->id;
	/* The target closing a stream it has not answered refuses it. */
	to_initiator = h->pair->state == PAIR_OPENING && h == &h->pair->b;
	pair_free(srv, h->pair);
	if (to_initiator)
		refuse(os, oid, HW_RELAY_REFUSE_REFUSED,
		       "the target closed the stream");
	else
		send_close(os, oid, f->body[0]);
}

static void handle_credit(struct session *se, const struct hw_relay_frame *f)
{
	struct half *h, *o;
	uint32_t n;

	if (lookup(se, f->stream, "CREDIT", &h) || !h)
		return;
	if (h->pair->state != PAIR_OPEN) {
		session_kill(se, HW_EPROTO,
			     "CREDIT for stream %u before it was accepted",
			     f->stream);
		return;
	}
	o = other(h);
	n = hw_relay_credit_value(f);
	if (n > HW_RELAY_WINDOW - o->credit) {
		session_kill(se, HW_EPROTO,
			     "CREDIT of %u bytes on stream %u, more than it "
			     "received", n, f->stream);
		return;
	}
	o->credit += n;
	sess_send(o->sess, HW_RELAY_CREDIT, o->id, f->body, f->len);
}

static void on_control(struct hw_relay_wire *w, const struct hw_relay_frame *f,
		       void *ud)
{
	struct session *se = ud;

	if (se->dead || !se->ready)
		return;
	switch (f->type) {
	case HW_RELAY_OPEN:
		handle_open(se, f);
		break;
	case HW_RELAY_ACCEPT:
	case HW_RELAY_REFUSE:
		handle_answer(se, f);
		break;
	case HW_RELAY_CLOSE:
		handle_close(se, f);
		break;
	case HW_RELAY_CREDIT:
		handle_credit(se, f);
		break;
	}
}

/* ---- forwarding DATA ---- */

static struct fbuf *fbuf_get(struct hw_relay_server *srv, size_t len)
{
	struct fbuf *b;
	size_t cap = len >= FBUF_POOL_MIN ? HW_RELAY_BODY_MAX : len;

	if (cap == HW_RELAY_BODY_MAX && (b = srv->spares)) {
		srv->spares = b->next;
		srv->nspares--;
	} else if (!(b = malloc(sizeof(*b) + cap))) {
		return NULL;
	}
	b->srv = srv;
	b->cap = cap;
	b->len = len;
	return b;
}

static void fbuf_put(struct hw_relay_server *srv, struct fbuf *b)
{
	if (b->cap == HW_RELAY_BODY_MAX && srv->nspares < FBUF_MAX_SPARES) {
		b->next = srv->spares;
		srv->spares = b;
		srv->nspares++;
	} else {
		free(b);
	}
}

static void on_forwarded(void *arg, int status)
{
	struct fbuf *b = arg;
	struct hw_relay_server *srv = b->srv;

	srv->buffered -= b->len;
	fbuf_put(srv, b);
}

static void on_data(struct hw_relay_wire *w, uint32_t stream,
		    const uint8_t *p, size_t len, void *ud)
{
	struct session *se = ud;
	struct hw_relay_server *srv = se->srv;
	struct half *h, *o;
	struct fbuf *b;
	uv_buf_t ub;

	if (se->dead || !se->ready)
		return;
	if (lookup(se, stream, "DATA", &h) || !h)
		return;
	if (h->pair->state != PAIR_OPEN) {
		session_kill(se, HW_EPROTO,
			     "DATA for stream %u before it was accepted",
			     stream);
		return;
	}
	if (len > h->credit) {
		session_kill(se, HW_EPROTO,
			     "DATA beyond credit on stream %u (%zu bytes, "
			     "%u allowed)", stream, len, h->credit);
		return;
	}
	h->credit -= (uint32_t)len;
	o = other(h);
	if (o->sess->dead || hw_relay_wire_is_closing(o->sess->w))
		return; /* the pair ends when that session's wire closes */
	if (!(b = fbuf_get(srv, len))) {
		struct session *os = o->sess;
		uint32_t oid = o->id;
		pair_free(srv, h->pair);
		send_close(se, stream, HW_RELAY_CLOSE_ERROR);
		send_close(os, oid, HW_RELAY_CLOSE_ERROR);
		return;
	}
	memcpy(b->data, p, len);
	ub = uv_buf_init((char *)b->data, (unsigned)len);
	if (hw_relay_wire_send_data(o->sess->w, o->id, &ub, 1, on_forwarded,
				    b)) {
		fbuf_put(srv, b);
		return;
	}
	srv->buffered += len;
	srv->bytes_fwd += len;
	srv->units_fwd++;
}

/* ---- open timeouts ---- */

static void on_open_timer(uv_timer_t *t)
{
	struct hw_relay_server *srv = t->data;
	uint64_t now = uv_now(srv->p.loop);
	struct pair *pr;

	while ((pr = srv->ohead) && pr->deadline <= now) {
		struct session *as = pr->a.sess, *bs = pr->b.sess;
		uint32_t aid = pr->a.id, bid = pr->b.id;

		pair_free(srv, pr);
		send_close(bs, bid, HW_RELAY_CLOSE_ERROR);
		refuse(as, aid, HW_RELAY_REFUSE_TIMEOUT,
		       "the target did not answer");
	}
	opening_timer_arm(srv);
}

static void opening_timer_arm(struct hw_relay_server *srv)
{
	uint64_t now = uv_now(srv->p.loop);

	if (srv->closing || !srv->ohead || uv_is_active((uv_handle_t *)&srv->open_timer))
		return;
	uv_timer_start(&srv->open_timer, on_open_timer,
		       srv->ohead->deadline > now ? srv->ohead->deadline - now
						  : 0,
		       0);
}

/* ---- session lifecycle ---- */

static void on_ready(struct hw_relay_wire *w, void *ud)
{
	struct session *se = ud, *old;
	struct hw_relay_server *srv = se->srv;
	uint64_t now = uv_now(srv->p.loop);
	char pk[17];

	se->handshaking = 0;
	srv->nhandshakes--;
	memcpy(se->pk, hw_relay_wire_remote_pk(w), HW_PK_LEN);
	se->node.h = hash_bytes(srv, se->pk, HW_PK_LEN);
	if ((old = find_session(srv, se->pk))) {
		hw_log(HW_LOG_INFO, LOG, "session %s: replaced by a new "
		       "session from %s", short_pk(se->pk, pk),
		       hw_relay_wire_peer(w));
		srv->replaced++;
		teardown(old);
		hw_relay_wire_fail(old->w, -ECONNRESET,
				   "replaced by a new session with this key");
	}
	if (srv->nsessions >= srv->p.max_sessions) {
		srv->rejected_full++;
		se->dead = 1;
		if (now - srv->last_full_log >= LOG_EVERY_MS ||
		    !srv->last_full_log) {
			srv->last_full_log = now;
			hw_log(HW_LOG_WARN, LOG, "refusing sessions: relay "
			       "full (%u sessions)", srv->nsessions);
		}
		hw_relay_wire_fail(w, -EBUSY, "relay full: %u sessions",
				   srv->nsessions);
		return;
	}
	hw_htab_insert(&srv->sessions, &se->node);
	se->registered = 1;
	se->ready = 1;
	srv->nsessions++;
	srv->sessions_total++;
	hw_log(HW_LOG_DEBUG, LOG, "session %s up from %s",
	       short_pk(se->pk, pk), hw_relay_wire_peer(w));
}

static void on_closed(struct hw_relay_wire *w, int reason, void *ud)
{
	struct session *se = ud;
	struct hw_relay_server *srv = se->srv;
	const char *why = hw_relay_wire_error(w);
	char pk[17];

	if (se->handshaking) {
		srv->nhandshakes--;
		hw_log(HW_LOG_DEBUG, LOG, "handshake from %s failed: %s",
		       hw_relay_wire_peer(w), why[0] ? why : hw_strerror(reason));
	} else if (!se->dead) {
		/* Broken units or frames, found by the wire itself, or a
		 * peer that stopped reading: dropped, logged once here. */
		int dropped = reason == HW_EPROTO || reason == HW_EAUTH ||
			      reason == -ENOBUFS;
		if (dropped)
			srv->dropped++;
		hw_log(dropped ? HW_LOG_WARN : HW_LOG_DEBUG, LOG,
		       "session %s (%s) %s: %s", short_pk(se->pk, pk),
		       hw_relay_wire_peer(w), dropped ? "dropped" : "down",
		       why[0] ? why : hw_strerror(reason));
		teardown(se);
	}
	if (se->prev)
		se->prev->next = se->next;
	else
		srv->all = se->next;
	if (se->next)
		se->next->prev = se->prev;
	free(se);
	srv->refs--;
	server_maybe_free(srv);
}

static const struct hw_relay_wire_ops wire_ops = {
	.ready = on_ready,
	.control = on_control,
	.data = on_data,
	.closed = on_closed,
};

static void on_connection(uv_stream_t *server, int status)
{
	struct hw_relay_server *srv = server->data;
	uint64_t now = uv_now(srv->p.loop);
	struct session *se;

	if (status < 0 || srv->closing)
		return;
	if (srv->nhandshakes >= srv->p.max_handshakes) {
		uv_tcp_t *t = malloc(sizeof(*t));
		/* Accept and close at once, so the backlog drains. */
		if (t && uv_tcp_init(srv->p.loop, t) == 0) {
			if (uv_accept(server, (uv_stream_t *)t) == 0)
				srv->rejected_hs++;
			uv_close((uv_handle_t *)t, (uv_close_cb)free);
		} else {
			free(t);
		}
		if (now - srv->last_hs_log >= LOG_EVERY_MS ||
		    !srv->last_hs_log) {
			srv->last_hs_log = now;
			hw_log(HW_LOG_WARN, LOG, "refusing connections: %u "
			       "handshakes unfinished (the limit)",
			       srv->nhandshakes);
		}
		return;
	}
	if (!(se = calloc(1, sizeof(*se))))
		return;
	se->srv = srv;
	se->serial = ++srv->next_serial;
	srv->wp.ud = se;
	if (hw_relay_wire_accept(&se->w, server, &srv->wp)) {
		free(se);
		return;
	}
	se->handshaking = 1;
	srv->nhandshakes++;
	se->next = srv->all;
	if (srv->all)
		srv->all->prev = se;
	srv->all = se;
	srv->refs++;
}

/* ---- setup and teardown ---- */

void hw_relay_server_defaults(struct hw_relay_server_params *p)
{
	memset(p, 0, sizeof(*p));
	p->max_sessions = 4096;
	p->max_streams = 256;
	p->max_buffered = (uint64_t)1 << 30;
	p->keepalive_ms = 5000;
	p->handshake_timeout_ms = 10000;
	p->max_handshakes = 64;
	p->open_timeout_ms = 10000;
}

static void on_server_handle_closed(uv_handle_t *h)
{
	struct hw_relay_server *srv = h->data;
	srv->refs--;
	server_maybe_free(srv);
}

int hw_relay_server_new(struct hw_relay_server **out,
			const struct hw_relay_server_params *p)
{
	struct hw_relay_server *srv;
	uint8_t x_pub[32];
	int rc;

	*out = NULL;
	if (!p->loop || !p->id || !p->max_sessions || !p->max_streams ||
	    !p->handshake_timeout_ms || !p->max_handshakes ||
	    !p->open_timeout_ms ||
	    p->max_buffered < 2 * (uint64_t)HW_RELAY_WINDOW)
		return -EINVAL;
	if (!(srv = calloc(1, sizeof(*srv))))
		return -ENOMEM;
	srv->p = *p;
	if ((rc = hw_identity_x25519(p->id, srv->x_priv, x_pub))) {
		free(srv);
		return rc;
	}
	randombytes_buf(srv->hkey, sizeof(srv->hkey));
	if ((rc = uv_tcp_init(p->loop, &srv->listener))) {
		sodium_memzero(srv->x_priv, sizeof(srv->x_priv));
		free(srv);
		return rc;
	}
	uv_timer_init(p->loop, &srv->open_timer);
	srv->listener.data = srv->open_timer.data = srv;
	srv->refs = 2;
	srv->wp.id = p->id;
	srv->wp.x_priv = srv->x_priv;
	srv->wp.handshake_timeout_ms = p->handshake_timeout_ms;
	srv->wp.keepalive_ms = p->keepalive_ms;
	srv->wp.ops = &wire_ops;
	*out = srv;
	return 0;
}

int hw_relay_server_listen(struct hw_relay_server *s, const char *host,
			   uint16_t port, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss), rc;
	const char *h = host && host[0] ? host : "0.0.0.0";

	if (strchr(h, ':'))
		rc = uv_ip6_addr(h, port, (struct sockaddr_in6 *)&ss);
	else
		rc = uv_ip4_addr(h, port, (struct sockaddr_in *)&ss);
	if (rc) {
		snprintf(err, errlen, "'%s' is not a numeric IP address", h);
		return -EINVAL;
	}
	if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0)) ||
	    (rc = uv_listen((uv_stream_t *)&s->listener, 511,
			    on_connection))) {
		snprintf(err, errlen, "cannot listen on %s port %u: %s", h,
			 port, uv_strerror(rc));
		return rc;
	}
	if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) ==
	    0)
		s->port = ntohs(ss.ss_family == AF_INET6
					? ((struct sockaddr_in6 *)&ss)->sin6_port
					: ((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

uint16_t hw_relay_server_port(const struct hw_relay_server *s)
{
	return s->port;
}

void hw_relay_server_free(struct hw_relay_server *srv)
{
	struct pair *pr;

	if (!srv || srv->closing)
		return;
	srv->closing = 1;
	uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
	uv_close((uv_handle_t *)&srv->open_timer, on_server_handle_closed);
	while ((pr = srv->ohead)) {
		struct session *as = pr->a.sess;
		uint32_t aid = pr->a.id;
		pair_free(srv, pr);
		refuse(as, aid, HW_RELAY_REFUSE_SHUTDOWN,
		       "relay shutting down");
	}
	for (struct session *se = srv->all; se; se = se->next) {
		if (se->handshaking) {
			hw_relay_wire_close(se->w, -ESHUTDOWN, 0);
			continue;
		}
		if (se->dead)
			continue;
		/* Every peer is told by its own session's ERROR; streams end
		 * without CLOSE frames. */
		while (se->halves)
			pair_free(srv, se->halves->pair);
		if (se->registered) {
			hw_htab_remove(&srv->sessions, &se->node);
			se->registered = 0;
			srv->nsessions--;
		}
		se->dead = 1;
		hw_relay_wire_fail(se->w, -ESHUTDOWN, "relay shutting down");
	}
	server_maybe_free(srv);
}

json_t *hw_relay_server_stats_json(const struct hw_relay_server *s)
{
	static const char *const names[HW_RELAY_REFUSE_MAX + 1] = {
		NULL, "no_session", "refused", "stream_limit",
		"buffer_limit", "bad_request", "timed_out", "shutting_down",
	};
	json_t *j = json_object(), *r = json_object();

	for (int i = 1; i <= HW_RELAY_REFUSE_MAX; i++)
		json_object_set_new(r, names[i],
				    json_integer((json_int_t)s->refusals[i]));
#define SET(k, v) json_object_set_new(j, k, json_integer((json_int_t)(v)))
	SET("sessions", s->nsessions);
	SET("handshakes", s->nhandshakes);
	SET("streams", s->nopen);
	SET("opening", s->nopening);
	SET("buffered", s->buffered);
	SET("reserved", s->reserved);
	SET("bytes_forwarded", s->bytes_fwd);
	SET("units_forwarded", s->units_fwd);
	SET("sessions_total", s->sessions_total);
	SET("streams_total", s->streams_total);
	SET("dropped", s->dropped);
	SET("replaced", s->replaced);
	SET("rejected_full", s->rejected_full);
	SET("rejected_handshakes", s->rejected_hs);
#undef SET
	json_object_set_new(j, "refusals", r);
	return j;
}
