#include "relay/client.h"

#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay/frame.h"
#include "relay/wire.h"
#include "util/addr.h"
#include "util/err.h"
#include "util/htab.h"
#include "util/log.h"

#define LOG "relay"
/* Credit owed below a quarter window goes back after this long. */
#define CREDIT_IDLE_MS 20
/* Nonces of accepted OPEN requests kept against replays: long enough to
 * outlive the timestamp window on either side of the arrival time. */
#define NONCE_CACHE_MAX 4096
#define NONCE_KEEP_MS (2 * HW_RELAY_OPEN_SKEW_MS)
/* Streams a relay may open to us on one session (it caps lower itself). */
#define MAX_INBOUND_STREAMS 4096
/* A session up at least this long resets the re-dial backoff. */
#define STABLE_MS 10000

/* ---- small intrusive containers ---- */

struct link {
	struct link *prev, *next;
};

#define CONTAINER(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

static void list_init(struct link *l)
{
	l->prev = l->next = l;
}

static int list_linked(const struct link *l)
{
	return l->next != l;
}

static void list_add_tail(struct link *head, struct link *x)
{
	x->prev = head->prev;
	x->next = head;
	head->prev->next = x;
	head->prev = x;
}

static void list_del(struct link *x)
{
	x->prev->next = x->next;
	x->next->prev = x->prev;
	list_init(x);
}

/* ---- state ---- */

enum stream_state {
	S_WAIT,      /* dialed, waiting for the session to come up */
	S_OPENING,   /* OPEN sent, waiting for ACCEPT or REFUSE */
	S_ACCEPTING, /* inbound, inside the accept callback */
	S_OPEN,
	S_ENDING,    /* final callback due (reap list) */
	S_DEAD,      /* callbacks done; freed once its DATA completes */
};

/* One hw_relay_stream_write. */
struct wreq {
	struct link link; /* s->reqs */
	struct hw_relay_stream *s;
	const uint8_t *buf;
	size_t len, off; /* off: bytes handed to the wire */
	unsigned inflight; /* DATA units carrying its bytes not done */
	int status;
	int done_called;
	void (*done)(void *arg, int status);
	void *arg;
};

/* One DATA unit in flight and the requests whose bytes it carries. */
struct piece {
	struct piece *next; /* spare list */
	struct hw_relay_stream *s;
	unsigned n;
	struct wreq *r[HW_RELAY_WIRE_MAX_BUFS];
};

struct rsess;

struct hw_relay_stream {
	struct hw_hnode node;   /* sess->streams by id, while in_table */
	struct link all;     /* rc->streams */
	struct link member;  /* sess->members */
	struct link olink;   /* rc->opening: open deadline pending */
	struct link clink;   /* rc->owed: credit to return */
	struct link rlink;   /* rc->reap */
	struct hw_relay_client *rc;
	struct rsess *sess;  /* NULL once ending */
	const struct hw_relay_stream_ops *ops;
	void *ud;
	enum stream_state state;
	int dialer, in_table, was_open, silent, final_called;
	int close_requested, close_reason;
	int held; /* hw_relay_stream_hold: no credit goes back */
	uint32_t id;
	uint8_t remote_pk[HW_PK_LEN];
	uint8_t relay_pk[HW_PK_LEN];
	uint32_t tx_credit; /* bytes we may still send */
	uint32_t rx_credit; /* bytes the peer may still send us */
	uint32_t owed;      /* consumed, not yet credited back */
	struct link reqs;   /* wreq, oldest first */
	struct wreq *cur;   /* first request not wholly handed out */
	unsigned inflight;  /* pieces */
	uint64_t deadline;
	int end_reason;
	char msg[320];
};

struct rsess {
	struct link link; /* rc->sessions, while held */
	struct hw_relay_client *rc;
	uint8_t relay_pk[HW_PK_LEN];
	char addr[HW_HOST_MAX + 8];
	char host[HW_HOST_MAX];
	uint16_t port;
	struct hw_relay_wire *w;
	uv_timer_t redial;
	int up, released;
	int fail_logged; /* "no session" said once until it comes up */
	int handles; /* redial timer and wire still calling back */
	uint64_t backoff_ms, up_at, since_ms;
	uint64_t next_odd;  /* next id we open */
	uint32_t last_even; /* highest id the relay opened */
	struct hw_htab streams;
	struct link members; /* streams bound to this session */
};

struct nent {
	struct hw_hnode node;
	uint8_t nonce[HW_RELAY_NONCE_LEN];
	uint64_t ts_ms, expire;
};

struct hw_relay_client {
	struct hw_relay_client_params p;
	struct hw_relay_wire_params wp;
	uv_timer_t open_timer, credit_timer, reap_timer;
	struct link sessions, streams, opening, owed, reap;
	uint8_t hkey[crypto_shorthash_KEYBYTES];
	/* Replay cache: a ring of the newest accepted nonces and its index. */
	struct nent *ring;
	size_t rhead, rcount;
	struct hw_htab ridx;
	uint64_t floor_ts; /* OPENs at or before this are refused */
	struct piece *spare_pieces;
	unsigned nspare_pieces;
	int closing;
	int handles;      /* the three timers */
	unsigned nsess;   /* rsess allocated */
	unsigned nstreams; /* streams allocated */
};

static const struct hw_relay_wire_ops wire_ops;

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_ms(const struct hw_relay_client *rc)
{
	return uv_now(rc->p.loop);
}

static uint64_t hash_bytes(const struct hw_relay_client *rc, const void *p,
			   size_t n)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint64_t h = 0;

	crypto_shorthash(out, p, n, rc->hkey);
	for (int i = 0; i < 8; i++)
		h = h << 8 | out[i];
	return h;
}

static void client_maybe_free(struct hw_relay_client *rc)
{
	if (!rc->closing || rc->handles || rc->nsess || rc->nstreams)
		return;
	while (rc->spare_pieces) {
		struct piece *pc = rc->spare_pieces;
		rc->spare_pieces = pc->next;
		free(pc);
	}
	free(rc->ring);
	hw_htab_free(&rc->ridx);
	free(rc);
}

/* ---- sessions: lookup and sending ---- */

static struct rsess *find_sess(const struct hw_relay_client *rc,
			       const uint8_t pk[HW_PK_LEN])
{
	for (struct link *l = rc->sessions.next; l != &rc->sessions;
	     l = l->next) {
		struct rsess *se = CONTAINER(l, struct rsess, link);
		if (!memcmp(se->relay_pk, pk, HW_PK_LEN))
			return se;
	}
	return NULL;
}

static struct hw_relay_stream *find_stream(struct rsess *se, uint32_t id)
{
	uint64_t h = hash_bytes(se->rc, &id, sizeof(id));

	for (struct hw_hnode *x = hw_htab_bucket(&se->streams, h); x; x = x->next) {
		struct hw_relay_stream *s = (struct hw_relay_stream *)x;
		if (x->h == h && s->id == id)
			return s;
	}
	return NULL;
}

/* A control frame to the relay; a relay that stopped reading loses the
 * session. Returns 0 or a negative code. */
static int send_ctl(struct rsess *se, uint8_t type, uint32_t id,
		    const uint8_t *body, size_t len)
{
	int rc;

	if (!se->w)
		return -ENOTCONN;
	rc = hw_relay_wire_send_control(se->w, type, id, body, len);
	if (rc == -ENOBUFS)
		hw_relay_wire_fail(se->w, -ENOBUFS,
				   "relay does not read (control queue full)");
	return rc;
}

static void send_refuse(struct rsess *se, uint32_t id, uint8_t reason,
			const char *text)
{
	uint8_t body[1 + HW_RELAY_TEXT_MAX];
	size_t n = strlen(text);

	if (n > HW_RELAY_TEXT_MAX)
		n = HW_RELAY_TEXT_MAX;
	body[0] = reason;
	memcpy(body + 1, text, n);
	send_ctl(se, HW_RELAY_REFUSE, id, body, 1 + n);
}

static void violation(struct rsess *se, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The relay broke the protocol: drop the session (it is re-dialed). */
static void violation(struct rsess *se, const char *fmt, ...)
{
	char msg[160], pk[HW_PK_HEXLEN + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hw_pk_format(se->relay_pk, pk);
	hw_log(HW_LOG_WARN, LOG, "relay %.16s: protocol error: %s", pk, msg);
	hw_relay_wire_fail(se->w, HW_EPROTO, "%s", msg);
}

/* ---- streams: ending and freeing ---- */

static void on_reap(uv_timer_t *t);

static void arm_reap(struct hw_relay_client *rc)
{
	if (!rc->closing && !uv_is_active((uv_handle_t *)&rc->reap_timer))
		uv_timer_start(&rc->reap_timer, on_reap, 0, 0);
}

static void stream_free(struct hw_relay_stream *s)
{
	struct hw_relay_client *rc = s->rc;

	list_del(&s->all);
	list_del(&s->rlink);
	free(s);
	rc->nstreams--;
	client_maybe_free(rc);
}

/* The stream stops: it leaves its session (its id becomes one that
 * closed), and its final callback and the errors of its queued writes
 * follow from the reaper, never from inside the caller's call. */
static void stream_end(struct hw_relay_stream *s, int reason,
		       const char *msg)
{
	struct hw_relay_client *rc = s->rc;

	if (s->state == S_ENDING || s->state == S_DEAD)
		return;
	if (s->in_table) {
		hw_htab_remove(&s->sess->streams, &s->node);
		s->in_table = 0;
	}
	list_del(&s->member);
	list_del(&s->olink);
	list_del(&s->clink);
	s->sess = NULL;
	s->state = S_ENDING;
	s->end_reason = reason;
	snprintf(s->msg, sizeof(s->msg), "%s", msg ? msg : "");
	if (!list_linked(&s->rlink))
		list_add_tail(&rc->reap, &s->rlink);
	arm_reap(rc);
}

static void finish_req(struct wreq *r)
{
	list_del(&r->link);
	if (!r->done_called) {
		r->done_called = 1;
		r->done(r->arg, r->status);
	}
	free(r);
}

/* Abandons what a request has not handed to the wire. */
static void abandon_reqs(struct hw_relay_stream *s, int err)
{
	struct link *l = s->reqs.next, *next;

	s->cur = NULL;
	for (; l != &s->reqs; l = next) {
		struct wreq *r = CONTAINER(l, struct wreq, link);
		next = l->next;
		if (r->off < r->len) {
			r->off = r->len;
			if (!r->status)
				r->status = err;
		}
		if (r->inflight == 0)
			finish_req(r);
	}
}

static void on_reap(uv_timer_t *t)
{
	struct hw_relay_client *rc = t->data;

	while (!rc->closing && list_linked(&rc->reap)) {
		struct hw_relay_stream *s =
			CONTAINER(rc->reap.next, struct hw_relay_stream, rlink);
		int err = s->end_reason < 0 ? s->end_reason : -ECANCELED;

		list_del(&s->rlink);
		abandon_reqs(s, err);
		if (s->inflight > 0)
			continue; /* back here when its last unit is done */
		if (!s->final_called && !s->silent) {
			s->final_called = 1;
			if (s->was_open) {
				if (s->ops && s->ops->closed)
					s->ops->closed(s, s->end_reason,
						       s->ud);
			} else if (s->dialer && s->ops && s->ops->opened) {
				s->ops->opened(s, err,
					       s->msg[0] ? s->msg
							 : hw_strerror(err),
					       s->ud);
			}
		}
		s->state = S_DEAD;
		stream_free(s);
	}
}

static struct hw_relay_stream *stream_new(struct hw_relay_client *rc,
					  struct rsess *se,
					  const uint8_t remote_pk[HW_PK_LEN],
					  int dialer)
{
	struct hw_relay_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->rc = rc;
	s->sess = se;
	s->dialer = dialer;
	s->tx_credit = s->rx_credit = HW_RELAY_WINDOW;
	memcpy(s->remote_pk, remote_pk, HW_PK_LEN);
	memcpy(s->relay_pk, se->relay_pk, HW_PK_LEN);
	list_init(&s->olink);
	list_init(&s->clink);
	list_init(&s->rlink);
	list_init(&s->reqs);
	list_add_tail(&rc->streams, &s->all);
	list_add_tail(&se->members, &s->member);
	rc->nstreams++;
	return s;
}

static void stream_set_id(struct hw_relay_stream *s, uint32_t id)
{
	s->id = id;
	s->node.h = hash_bytes(s->rc, &id, sizeof(id));
	hw_htab_insert(&s->sess->streams, &s->node);
	s->in_table = 1;
}

/* ---- sending DATA ---- */

static struct piece *piece_get(struct hw_relay_client *rc)
{
	struct piece *pc = rc->spare_pieces;

	if (pc) {
		rc->spare_pieces = pc->next;
		rc->nspare_pieces--;
		return pc;
	}
	return malloc(sizeof(*pc));
}

static void piece_put(struct hw_relay_client *rc, struct piece *pc)
{
	if (rc->nspare_pieces < 32 && !rc->closing) {
		pc->next = rc->spare_pieces;
		rc->spare_pieces = pc;
		rc->nspare_pieces++;
	} else {
		free(pc);
	}
}

static void on_piece_done(void *arg, int status)
{
	struct piece *pc = arg;
	struct hw_relay_stream *s = pc->s;
	struct hw_relay_client *rc = s->rc;

	for (unsigned i = 0; i < pc->n; i++) {
		struct wreq *r = pc->r[i];
		r->inflight--;
		if (status < 0 && !r->status)
			r->status = status;
		if (r->inflight == 0 && r->off == r->len)
			finish_req(r);
	}
	piece_put(rc, pc);
	s->inflight--;
	if (s->inflight > 0)
		return;
	if (s->state == S_ENDING && !list_linked(&s->rlink)) {
		list_add_tail(&rc->reap, &s->rlink);
		arm_reap(rc);
	} else if (s->state == S_DEAD) {
		stream_free(s);
	}
}

/* Hands queued bytes to the wire as far as credit allows, gathering
 * consecutive writes into full DATA units. */
static void pump(struct hw_relay_stream *s)
{
	struct hw_relay_client *rc = s->rc;

	while (s->state == S_OPEN && s->cur && s->tx_credit > 0) {
		size_t limit = s->tx_credit < HW_RELAY_BODY_MAX
				       ? s->tx_credit
				       : HW_RELAY_BODY_MAX;
		uv_buf_t b[HW_RELAY_WIRE_MAX_BUFS];
		struct wreq *r = s->cur, *next = NULL;
		struct piece *pc = piece_get(rc);
		size_t unit = 0;
		unsigned n = 0;
		int err;

		if (!pc) {
			hw_relay_stream_close(s, -ENOMEM);
			return;
		}
		while (r && n < HW_RELAY_WIRE_MAX_BUFS && unit < limit) {
			size_t take = r->len - r->off;
			if (take > limit - unit)
				take = limit - unit;
			b[n] = uv_buf_init((char *)r->buf + r->off,
					   (unsigned)take);
			pc->r[n++] = r;
			unit += take;
			r = r->link.next == &s->reqs
				    ? NULL
				    : CONTAINER(r->link.next, struct wreq,
						link);
		}
		pc->s = s;
		pc->n = n;
		err = hw_relay_wire_send_data(s->sess->w, s->id, b, n,
					      on_piece_done, pc);
		if (err) {
			/* The session is failing; its end ends the stream. */
			piece_put(rc, pc);
			return;
		}
		for (unsigned i = 0; i < n; i++) {
			pc->r[i]->off += b[i].len;
			pc->r[i]->inflight++;
			if (pc->r[i]->off == pc->r[i]->len)
				next = pc->r[i]->link.next == &s->reqs
					       ? NULL
					       : CONTAINER(pc->r[i]->link.next,
							   struct wreq, link);
			else
				next = pc->r[i];
		}
		s->cur = next;
		s->inflight++;
		s->tx_credit -= (uint32_t)unit;
	}
}

/* ---- credit back to the sender ---- */

static void send_credit(struct hw_relay_stream *s)
{
	uint8_t b[4];
	uint32_t n = s->owed;

	list_del(&s->clink);
	if (!n || !s->sess || s->held)
		return;
	b[0] = (uint8_t)(n >> 24);
	b[1] = (uint8_t)(n >> 16);
	b[2] = (uint8_t)(n >> 8);
	b[3] = (uint8_t)n;
	if (send_ctl(s->sess, HW_RELAY_CREDIT, s->id, b, 4) == 0) {
		s->owed = 0;
		s->rx_credit += n;
	}
}

static void on_credit_timer(uv_timer_t *t)
{
	struct hw_relay_client *rc = t->data;

	while (list_linked(&rc->owed))
		send_credit(CONTAINER(rc->owed.next, struct hw_relay_stream,
				      clink));
}

void hw_relay_stream_hold(struct hw_relay_stream *s, int held)
{
	s->held = held ? 1 : 0;
	if (!s->held && s->owed && s->state == S_OPEN)
		send_credit(s);
}

/* ---- open deadlines ---- */

static void on_open_timer(uv_timer_t *t);

static void arm_open_timer(struct hw_relay_client *rc)
{
	struct hw_relay_stream *s;
	uint64_t now = now_ms(rc);

	if (rc->closing || !list_linked(&rc->opening) ||
	    uv_is_active((uv_handle_t *)&rc->open_timer))
		return;
	s = CONTAINER(rc->opening.next, struct hw_relay_stream, olink);
	uv_timer_start(&rc->open_timer, on_open_timer,
		       s->deadline > now ? s->deadline - now : 0, 0);
}

static void on_open_timer(uv_timer_t *t)
{
	struct hw_relay_client *rc = t->data;
	uint64_t now = now_ms(rc);

	/* Every open waits the same time, so the list is in deadline
	 * order. */
	while (list_linked(&rc->opening)) {
		struct hw_relay_stream *s = CONTAINER(
			rc->opening.next, struct hw_relay_stream, olink);
		if (s->deadline > now)
			break;
		if (s->state == S_OPENING) {
			uint8_t why = HW_RELAY_CLOSE_ERROR;
			send_ctl(s->sess, HW_RELAY_CLOSE, s->id, &why, 1);
			stream_end(s, -ETIMEDOUT, "timed out");
		} else {
			stream_end(s, -ETIMEDOUT,
				   "timed out waiting for the relay session");
		}
	}
	arm_open_timer(rc);
}

/* ---- opening ---- */

static void send_open(struct hw_relay_stream *s)
{
	struct hw_relay_client *rc = s->rc;
	struct rsess *se = s->sess;
	uint8_t body[HW_RELAY_OPEN_LEN];
	struct hw_relay_open o;
	uint32_t id;
	int err;

	if (se->next_odd > UINT32_MAX) {
		stream_end(s, -EMFILE, "stream ids of this session used up");
		return;
	}
	id = (uint32_t)se->next_odd;
	memcpy(o.initiator, rc->p.id->pk, HW_PK_LEN);
	memcpy(o.target, s->remote_pk, HW_PK_LEN);
	memcpy(o.relay, se->relay_pk, HW_PK_LEN);
	o.ts_ms = wall_ms();
	randombytes_buf(o.nonce, sizeof(o.nonce));
	hw_relay_open_sign(&o, rc->p.id);
	hw_relay_open_encode(&o, body);
	if ((err = send_ctl(se, HW_RELAY_OPEN, id, body, sizeof(body)))) {
		stream_end(s, err, "cannot send the open request");
		return;
	}
	se->next_odd += 2;
	stream_set_id(s, id);
	s->state = S_OPENING;
}

int hw_relay_stream_open(struct hw_relay_client *rc,
			 const uint8_t relay_pk[32],
			 const uint8_t target_pk[32],
			 const struct hw_relay_stream_ops *ops, void *ud,
			 struct hw_relay_stream **out)
{
	struct hw_relay_stream *s;
	struct rsess *se;

	*out = NULL;
	if (rc->closing)
		return -ECANCELED;
	if (!ops)
		return -EINVAL;
	if (!(se = find_sess(rc, relay_pk)))
		return -ENOENT;
	if (!(s = stream_new(rc, se, target_pk, 1)))
		return -ENOMEM;
	s->ops = ops;
	s->ud = ud;
	s->state = S_WAIT;
	s->deadline = now_ms(rc) + rc->p.handshake_timeout_ms;
	list_add_tail(&rc->opening, &s->olink);
	arm_open_timer(rc);
	if (se->up)
		send_open(s); /* a failure arrives in ops->opened */
	*out = s;
	return 0;
}

void hw_relay_stream_set_ops(struct hw_relay_stream *s,
			     const struct hw_relay_stream_ops *ops, void *ud)
{
	s->ops = ops;
	s->ud = ud;
}

int hw_relay_stream_write(struct hw_relay_stream *s, const uint8_t *buf,
			  size_t len, void (*done)(void *arg, int status),
			  void *arg)
{
	struct wreq *r;

	if (s->state != S_OPEN && s->state != S_ACCEPTING)
		return -ENOTCONN;
	if (len == 0 || !done)
		return -EINVAL;
	if (!(r = calloc(1, sizeof(*r))))
		return -ENOMEM;
	r->s = s;
	r->buf = buf;
	r->len = len;
	r->done = done;
	r->arg = arg;
	list_add_tail(&s->reqs, &r->link);
	if (!s->cur)
		s->cur = r;
	pump(s);
	return 0;
}

void hw_relay_stream_close(struct hw_relay_stream *s, int reason)
{
	uint8_t why = reason ? HW_RELAY_CLOSE_ERROR : HW_RELAY_CLOSE_NORMAL;

	switch (s->state) {
	case S_WAIT:
		stream_end(s, reason ? reason : -ECANCELED,
			   "closed before it opened");
		break;
	case S_OPENING:
		why = HW_RELAY_CLOSE_ERROR;
		send_ctl(s->sess, HW_RELAY_CLOSE, s->id, &why, 1);
		stream_end(s, reason ? reason : -ECANCELED,
			   "closed before it opened");
		break;
	case S_ACCEPTING:
		s->close_requested = 1;
		s->close_reason = reason;
		break;
	case S_OPEN:
		send_ctl(s->sess, HW_RELAY_CLOSE, s->id, &why, 1);
		stream_end(s, reason, NULL);
		break;
	default:
		break;
	}
}

const uint8_t *hw_relay_stream_remote_pk(const struct hw_relay_stream *s)
{
	return s->remote_pk;
}

const uint8_t *hw_relay_stream_relay_pk(const struct hw_relay_stream *s)
{
	return s->relay_pk;
}

/* ---- frames from the relay ---- */

/* The stream of id on se: 0 with *out set, or *out NULL when the id was
 * opened and has closed since (frames crossing a CLOSE are ignored); -1
 * when it was never opened (the session is being dropped). */
static int lookup(struct rsess *se, uint32_t id, const char *what,
		  struct hw_relay_stream **out)
{
	*out = find_stream(se, id);
	if (*out)
		return 0;
	if ((id & 1) ? id < se->next_odd : id <= se->last_even)
		return 0;
	violation(se, "%s for stream %u, which was never opened", what, id);
	return -1;
}

/* Replay cache: 0 and the nonce remembered, or -1 when seen (or older
 * than what the cache can vouch for). */
static int nonce_fresh(struct hw_relay_client *rc,
		       const struct hw_relay_open *o)
{
	uint64_t now = now_ms(rc), h;
	struct nent *e;

	if (!rc->ring &&
	    !(rc->ring = calloc(NONCE_CACHE_MAX, sizeof(*rc->ring))))
		return -1;
	while (rc->rcount && rc->ring[rc->rhead].expire <= now) {
		hw_htab_remove(&rc->ridx, &rc->ring[rc->rhead].node);
		rc->rhead = (rc->rhead + 1) % NONCE_CACHE_MAX;
		rc->rcount--;
	}
	if (o->ts_ms <= rc->floor_ts)
		return -1;
	h = hash_bytes(rc, o->nonce, HW_RELAY_NONCE_LEN);
	for (struct hw_hnode *x = hw_htab_bucket(&rc->ridx, h); x; x = x->next)
		if (x->h == h && !memcmp(((struct nent *)x)->nonce, o->nonce,
					 HW_RELAY_NONCE_LEN))
			return -1;
	if (rc->rcount == NONCE_CACHE_MAX) {
		/* Full of live entries: forget the oldest, but refuse every
		 * request as old as it from now on, so it cannot be
		 * replayed. */
		e = &rc->ring[rc->rhead];
		if (e->ts_ms > rc->floor_ts)
			rc->floor_ts = e->ts_ms;
		hw_htab_remove(&rc->ridx, &e->node);
		rc->rhead = (rc->rhead + 1) % NONCE_CACHE_MAX;
		rc->rcount--;
	}
	e = &rc->ring[(rc->rhead + rc->rcount) % NONCE_CACHE_MAX];
	memcpy(e->nonce, o->nonce, HW_RELAY_NONCE_LEN);
	e->ts_ms = o->ts_ms;
	e->expire = now + NONCE_KEEP_MS;
	e->node.h = h;
	hw_htab_insert(&rc->ridx, &e->node);
	rc->rcount++;
	return 0;
}

static void inbound_open(struct rsess *se, const struct hw_relay_frame *f)
{
	struct hw_relay_client *rc = se->rc;
	struct hw_relay_stream *s;
	struct hw_relay_open o;
	uint32_t id = f->stream;
	uint8_t why;
	int r;

	if ((id & 1) || id <= se->last_even) {
		violation(se, "OPEN with stream id %u (even and increasing "
			  "expected)", id);
		return;
	}
	se->last_even = id;
	hw_relay_open_decode(&o, f->body, f->len);
	if (hw_relay_open_check(&o, rc->p.id->pk, se->relay_pk, wall_ms())) {
		send_refuse(se, id, HW_RELAY_REFUSE_BAD_REQUEST,
			    "bad open request");
		return;
	}
	if (nonce_fresh(rc, &o)) {
		send_refuse(se, id, HW_RELAY_REFUSE_BAD_REQUEST,
			    "replayed open request");
		return;
	}
	if (!rc->p.accept || se->streams.n >= MAX_INBOUND_STREAMS ||
	    !(s = stream_new(rc, se, o.initiator, 0))) {
		send_refuse(se, id, HW_RELAY_REFUSE_REFUSED, "refused");
		return;
	}
	stream_set_id(s, id);
	s->state = S_ACCEPTING;
	r = rc->p.accept(rc, se->relay_pk, o.initiator, s, rc->p.ud);
	if (s->state != S_ACCEPTING)
		return; /* the session ended meanwhile */
	if (r || !s->ops) {
		send_refuse(se, id, HW_RELAY_REFUSE_REFUSED,
			    "refused by the target");
		s->silent = 1;
		stream_end(s, r ? r : -ECONNREFUSED, NULL);
		return;
	}
	if (send_ctl(se, HW_RELAY_ACCEPT, id, NULL, 0)) {
		s->silent = 1;
		stream_end(s, -ENOTCONN, NULL);
		return;
	}
	s->state = S_OPEN;
	s->was_open = 1;
	if (s->close_requested) {
		why = s->close_reason ? HW_RELAY_CLOSE_ERROR
				      : HW_RELAY_CLOSE_NORMAL;
		send_ctl(se, HW_RELAY_CLOSE, id, &why, 1);
		stream_end(s, s->close_reason, NULL);
		return;
	}
	pump(s);
}

static int refuse_status(uint8_t reason)
{
	switch (reason) {
	case HW_RELAY_REFUSE_NO_SESSION: return -EHOSTUNREACH;
	case HW_RELAY_REFUSE_REFUSED: return -ECONNREFUSED;
	case HW_RELAY_REFUSE_STREAM_LIMIT: return -EMFILE;
	case HW_RELAY_REFUSE_BUFFER_LIMIT: return -ENOBUFS;
	case HW_RELAY_REFUSE_TIMEOUT: return -ETIMEDOUT;
	case HW_RELAY_REFUSE_SHUTDOWN: return -ESHUTDOWN;
	default: return -EPROTO;
	}
}

static void open_answer(struct rsess *se, const struct hw_relay_frame *f)
{
	const char *what = hw_relay_type_name(f->type);
	struct hw_relay_stream *s;
	char text[HW_RELAY_TEXT_MAX + 1], msg[sizeof(s->msg)];

	if (!(f->stream & 1)) {
		violation(se, "%s for stream %u, which the relay opened",
			  what, f->stream);
		return;
	}
	if (lookup(se, f->stream, what, &s) || !s)
		return;
	if (s->state != S_OPENING) {
		violation(se, "%s for stream %u, which is not opening", what,
			  f->stream);
		return;
	}
	if (f->type == HW_RELAY_REFUSE) {
		hw_relay_text_sanitize(f->body + 1, f->len - 1u, text,
				       sizeof(text));
		snprintf(msg, sizeof(msg), "%s%s%s",
			 hw_relay_refuse_text(f->body[0]), text[0] ? ": " : "",
			 text);
		stream_end(s, refuse_status(f->body[0]), msg);
		return;
	}
	list_del(&s->olink);
	s->state = S_OPEN;
	s->was_open = 1;
	if (s->ops->opened)
		s->ops->opened(s, 0, NULL, s->ud);
	pump(s);
}

static void on_credit(struct rsess *se, const struct hw_relay_frame *f)
{
	struct hw_relay_stream *s;
	uint32_t n;

	if (lookup(se, f->stream, "CREDIT", &s) || !s)
		return;
	if (s->state != S_OPEN) {
		violation(se, "CREDIT for stream %u before it opened",
			  f->stream);
		return;
	}
	n = hw_relay_credit_value(f);
	if (n > HW_RELAY_WINDOW - s->tx_credit) {
		violation(se, "CREDIT of %u bytes on stream %u, more than "
			  "was sent", n, f->stream);
		return;
	}
	s->tx_credit += n;
	pump(s);
}

static int close_status(uint8_t reason)
{
	switch (reason) {
	case HW_RELAY_CLOSE_NORMAL: return HW_ECLOSED;
	case HW_RELAY_CLOSE_ERROR: return -ECONNRESET;
	default: return -EHOSTDOWN;
	}
}

static void on_close(struct rsess *se, const struct hw_relay_frame *f)
{
	struct hw_relay_stream *s;

	if (lookup(se, f->stream, "CLOSE", &s) || !s)
		return;
	if (s->state == S_OPENING)
		stream_end(s, -ECONNREFUSED, "the relay closed the stream");
	else if (s->state == S_ACCEPTING)
		s->close_requested = 1;
	else
		stream_end(s, close_status(f->body[0]),
			   f->body[0] == HW_RELAY_CLOSE_PEER_GONE
				   ? "the peer's relay session ended"
				   : "closed by the peer");
}

static void on_control(struct hw_relay_wire *w,
		       const struct hw_relay_frame *f, void *ud)
{
	struct rsess *se = ud;

	switch (f->type) {
	case HW_RELAY_OPEN:
		inbound_open(se, f);
		break;
	case HW_RELAY_ACCEPT:
	case HW_RELAY_REFUSE:
		open_answer(se, f);
		break;
	case HW_RELAY_CREDIT:
		on_credit(se, f);
		break;
	case HW_RELAY_CLOSE:
		on_close(se, f);
		break;
	}
}

static void on_data(struct hw_relay_wire *w, uint32_t stream,
		    const uint8_t *p, size_t len, void *ud)
{
	struct rsess *se = ud;
	struct hw_relay_client *rc = se->rc;
	struct hw_relay_stream *s;

	if (lookup(se, stream, "DATA", &s) || !s)
		return;
	if (s->state != S_OPEN) {
		violation(se, "DATA for stream %u before it opened", stream);
		return;
	}
	if (len > s->rx_credit) {
		violation(se, "DATA beyond credit on stream %u (%zu bytes, %u "
			  "allowed)", stream, len, s->rx_credit);
		return;
	}
	s->rx_credit -= (uint32_t)len;
	if (s->ops && s->ops->data)
		s->ops->data(s, p, len, s->ud);
	if (s->state != S_OPEN)
		return; /* closed meanwhile: no credit owed any more */
	s->owed += (uint32_t)len;
	if (s->held)
		return; /* credited when the hold ends */
	if (s->owed >= HW_RELAY_WINDOW / 4) {
		send_credit(s);
	} else if (!list_linked(&s->clink)) {
		list_add_tail(&rc->owed, &s->clink);
		if (!uv_is_active((uv_handle_t *)&rc->credit_timer))
			uv_timer_start(&rc->credit_timer, on_credit_timer,
				       CREDIT_IDLE_MS, 0);
	}
}

/* ---- session lifecycle ---- */

static void sess_maybe_free(struct rsess *se)
{
	struct hw_relay_client *rc = se->rc;

	if (!se->released || se->handles)
		return;
	hw_htab_free(&se->streams);
	free(se);
	rc->nsess--;
	client_maybe_free(rc);
}

static void on_redial_closed(uv_handle_t *h)
{
	struct rsess *se = h->data;
	se->handles--;
	sess_maybe_free(se);
}

static void schedule_redial(struct rsess *se);

static void dial(struct rsess *se)
{
	struct hw_relay_client *rc = se->rc;
	struct hw_relay_wire_params wp = rc->wp;
	int err;

	wp.ud = se;
	err = hw_relay_wire_dial(&se->w, rc->p.loop, &wp, se->relay_pk,
				 se->host, se->port);
	if (err) {
		char pk[HW_PK_HEXLEN + 1];
		hw_pk_format(se->relay_pk, pk);
		hw_log(HW_LOG_INFO, LOG, "relay %.16s at %s: cannot dial: %s",
		       pk, se->addr, hw_strerror(err));
		schedule_redial(se);
		return;
	}
	se->handles++;
}

static void on_redial(uv_timer_t *t)
{
	struct rsess *se = t->data;

	if (!se->released && !se->w)
		dial(se);
}

static void schedule_redial(struct rsess *se)
{
	struct hw_relay_client *rc = se->rc;
	uint64_t d = se->backoff_ms, jitter = d / 4;

	/* +-25% so that sessions that failed together do not come back
	 * together. */
	if (jitter)
		d = d - jitter + randombytes_uniform((uint32_t)(2 * jitter + 1));
	se->backoff_ms *= 2;
	if (se->backoff_ms > rc->p.redial_max_ms)
		se->backoff_ms = rc->p.redial_max_ms;
	uv_timer_start(&se->redial, on_redial, d, 0);
}

static void on_ready(struct hw_relay_wire *w, void *ud)
{
	struct rsess *se = ud;
	struct hw_relay_client *rc = se->rc;
	char pk[HW_PK_HEXLEN + 1];
	struct link *l, *next;

	se->up = 1;
	se->fail_logged = 0;
	se->up_at = now_ms(rc);
	se->since_ms = wall_ms();
	se->next_odd = 1;
	se->last_even = 0;
	hw_pk_format(se->relay_pk, pk);
	hw_log(HW_LOG_INFO, LOG, "relay %.16s at %s: session up", pk,
	       se->addr);
	for (l = se->members.next; l != &se->members; l = next) {
		struct hw_relay_stream *s =
			CONTAINER(l, struct hw_relay_stream, member);
		next = l->next;
		if (s->state == S_WAIT && se->w && hw_relay_wire_is_ready(se->w))
			send_open(s);
	}
	if (rc->p.session && !rc->closing)
		rc->p.session(rc, se->relay_pk, 1, rc->p.ud);
}

static void on_wire_closed(struct hw_relay_wire *w, int reason, void *ud)
{
	struct rsess *se = ud;
	struct hw_relay_client *rc = se->rc;
	const char *why = hw_relay_wire_error(w);
	char pk[HW_PK_HEXLEN + 1], msg[240];
	int was_up = se->up, err = reason < 0 ? reason : -ECONNRESET;
	struct link *l, *next;

	se->w = NULL;
	se->up = 0;
	se->handles--;
	if (was_up)
		se->since_ms = wall_ms();
	if (rc->closing || se->released) {
		sess_maybe_free(se);
		return;
	}
	snprintf(msg, sizeof(msg), "relay session failed: %s",
		 why[0] ? why : hw_strerror(reason));
	/* Streams waiting for the session keep waiting for the next one. */
	for (l = se->members.next; l != &se->members; l = next) {
		struct hw_relay_stream *s =
			CONTAINER(l, struct hw_relay_stream, member);
		next = l->next;
		if (s->state != S_WAIT)
			stream_end(s, err, msg);
	}
	hw_pk_format(se->relay_pk, pk);
	if (was_up) {
		hw_log(HW_LOG_INFO, LOG, "relay %.16s at %s: session down: %s",
		       pk, se->addr, why[0] ? why : hw_strerror(reason));
		if (now_ms(rc) - se->up_at >= STABLE_MS)
			se->backoff_ms = rc->p.redial_min_ms;
	} else {
		hw_log(se->fail_logged ? HW_LOG_DEBUG : HW_LOG_INFO, LOG,
		       "relay %.16s at %s: no session: %s (retrying)", pk,
		       se->addr, why[0] ? why : hw_strerror(reason));
		se->fail_logged = 1;
	}
	schedule_redial(se);
	if (was_up && rc->p.session)
		rc->p.session(rc, se->relay_pk, 0, rc->p.ud);
}

static const struct hw_relay_wire_ops wire_ops = {
	.ready = on_ready,
	.control = on_control,
	.data = on_data,
	.closed = on_wire_closed,
};

int hw_relay_client_hold(struct hw_relay_client *rc,
			 const uint8_t relay_pk[32], const char *addr)
{
	char host[HW_HOST_MAX];
	struct rsess *se;
	uint8_t x[32];
	uint16_t port;

	if (rc->closing)
		return -ECANCELED;
	if (!addr || strlen(addr) >= sizeof(se->addr) ||
	    hw_addr_split(addr, host, &port))
		return -EINVAL;
	if (hw_pk_to_x25519(relay_pk, x))
		return HW_EBADKEY;
	if ((se = find_sess(rc, relay_pk))) {
		snprintf(se->addr, sizeof(se->addr), "%s", addr);
		memcpy(se->host, host, sizeof(se->host));
		se->port = port;
		return 0;
	}
	if (!(se = calloc(1, sizeof(*se))))
		return -ENOMEM;
	se->rc = rc;
	memcpy(se->relay_pk, relay_pk, HW_PK_LEN);
	snprintf(se->addr, sizeof(se->addr), "%s", addr);
	memcpy(se->host, host, sizeof(se->host));
	se->port = port;
	se->backoff_ms = rc->p.redial_min_ms;
	se->since_ms = wall_ms();
	list_init(&se->members);
	uv_timer_init(rc->p.loop, &se->redial);
	se->redial.data = se;
	se->handles = 1;
	list_add_tail(&rc->sessions, &se->link);
	rc->nsess++;
	dial(se);
	return 0;
}

static void release(struct rsess *se, int immediate)
{
	struct link *l, *next;

	se->released = 1;
	list_del(&se->link);
	for (l = se->members.next; l != &se->members; l = next) {
		struct hw_relay_stream *s =
			CONTAINER(l, struct hw_relay_stream, member);
		next = l->next;
		if (s->state == S_ACCEPTING)
			continue; /* settled when accept returns */
		stream_end(s, -ECANCELED, "relay session released");
	}
	if (se->w)
		hw_relay_wire_close(se->w, -ECANCELED, !immediate);
	uv_close((uv_handle_t *)&se->redial, on_redial_closed);
}

void hw_relay_client_release(struct hw_relay_client *rc,
			     const uint8_t relay_pk[32])
{
	struct rsess *se = find_sess(rc, relay_pk);

	if (se)
		release(se, 0);
}

int hw_relay_client_is_up(const struct hw_relay_client *rc,
			  const uint8_t relay_pk[32])
{
	const struct rsess *se = find_sess(rc, relay_pk);
	return se && se->up;
}

json_t *hw_relay_client_sessions_json(const struct hw_relay_client *rc)
{
	json_t *a = json_array();
	char pk[HW_PK_HEXLEN + 1];

	for (struct link *l = rc->sessions.next; l != &rc->sessions;
	     l = l->next) {
		const struct rsess *se = CONTAINER(l, struct rsess, link);
		hw_pk_format(se->relay_pk, pk);
		json_array_append_new(
			a, json_pack("{s:s, s:s, s:b, s:I, s:I}", "relay", pk,
				     "addr", se->addr, "up", se->up,
				     "streams", (json_int_t)se->streams.n,
				     "since_ms", (json_int_t)se->since_ms));
	}
	return a;
}

/* ---- client ---- */

static void on_client_handle_closed(uv_handle_t *h)
{
	struct hw_relay_client *rc = h->data;
	rc->handles--;
	client_maybe_free(rc);
}

int hw_relay_client_new(struct hw_relay_client **out,
			const struct hw_relay_client_params *p)
{
	struct hw_relay_client *rc;

	*out = NULL;
	if (!p->loop || !p->id || !p->x_priv)
		return -EINVAL;
	if (!(rc = calloc(1, sizeof(*rc))))
		return -ENOMEM;
	rc->p = *p;
	if (!rc->p.handshake_timeout_ms)
		rc->p.handshake_timeout_ms = 10000;
	if (!rc->p.redial_min_ms)
		rc->p.redial_min_ms = 1000;
	if (rc->p.redial_max_ms < rc->p.redial_min_ms)
		rc->p.redial_max_ms = rc->p.redial_min_ms > 60000
					      ? rc->p.redial_min_ms
					      : 60000;
	randombytes_buf(rc->hkey, sizeof(rc->hkey));
	list_init(&rc->sessions);
	list_init(&rc->streams);
	list_init(&rc->opening);
	list_init(&rc->owed);
	list_init(&rc->reap);
	rc->wp.id = p->id;
	rc->wp.x_priv = p->x_priv;
	rc->wp.handshake_timeout_ms = rc->p.handshake_timeout_ms;
	rc->wp.keepalive_ms = p->keepalive_ms;
	rc->wp.ops = &wire_ops;
	uv_timer_init(p->loop, &rc->open_timer);
	uv_timer_init(p->loop, &rc->credit_timer);
	uv_timer_init(p->loop, &rc->reap_timer);
	rc->open_timer.data = rc->credit_timer.data = rc->reap_timer.data = rc;
	rc->handles = 3;
	*out = rc;
	return 0;
}

void hw_relay_client_free(struct hw_relay_client *rc)
{
	struct link *l, *next;

	if (!rc || rc->closing)
		return;
	rc->closing = 1;
	/* Sessions first, closed at once: no queued byte of a caller's
	 * buffer is written after this, so every write can complete now. */
	while (list_linked(&rc->sessions))
		release(CONTAINER(rc->sessions.next, struct rsess, link), 1);
	for (l = rc->streams.next; l != &rc->streams; l = next) {
		struct hw_relay_stream *s =
			CONTAINER(l, struct hw_relay_stream, all);
		struct link *q, *qn;
		next = l->next;
		for (q = s->reqs.next; q != &s->reqs; q = qn) {
			struct wreq *r = CONTAINER(q, struct wreq, link);
			qn = q->next;
			r->off = r->len;
			if (!r->status)
				r->status = -ECANCELED;
			if (!r->done_called) {
				r->done_called = 1;
				r->done(r->arg, r->status);
			}
			if (r->inflight == 0)
				finish_req(r);
		}
		s->cur = NULL;
		if (!s->final_called && !s->silent) {
			s->final_called = 1;
			if (s->was_open) {
				if (s->ops && s->ops->closed)
					s->ops->closed(s, -ECANCELED, s->ud);
			} else if (s->dialer && s->ops && s->ops->opened) {
				s->ops->opened(s, -ECANCELED,
					       "relay client closed", s->ud);
			}
		}
		s->state = S_DEAD;
		s->ops = NULL;
		list_del(&s->rlink);
		if (s->inflight == 0) {
			list_del(&s->all);
			free(s);
			rc->nstreams--;
		}
	}
	uv_close((uv_handle_t *)&rc->open_timer, on_client_handle_closed);
	uv_close((uv_handle_t *)&rc->credit_timer, on_client_handle_closed);
	uv_close((uv_handle_t *)&rc->reap_timer, on_client_handle_closed);
}
