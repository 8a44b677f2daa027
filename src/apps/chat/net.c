/* The chat protocol between hopwire-chat apps, over Hopwire loops
 * (docs/chat.md has the same text for people writing other chat apps).
 *
 * Where: the chat app listens on port 1 of its visor. A loop is a
 * reliable, ordered byte stream between two apps (the SDK's loop
 * descriptor); the visor authenticates both ends, so the sender of
 * everything read from a loop is the loop's remote public key.
 *
 * Lines: each line is one JSON object, UTF-8, ending in "\n", at most
 * 32768 bytes with its "\n". Lines holding only white space are ignored,
 * other members than those below too (room for later versions).
 *
 *     {"message": TEXT, "id": ID}\n     a message
 *     {"ack": ID}\n                     its acknowledgement
 *
 * TEXT is a JSON string of 1..4096 bytes once decoded (UTF-8, no U+0000);
 * ID a string of 1..64 characters from [0-9A-Za-z_-], chosen by the
 * sender, unique among its messages to this receiver (hopwire-chat sends
 * 32 random lowercase hex characters). The receiver stores a message
 * (once per sender key and ID: a retry of one stored already is not
 * stored again) and only then writes the ack on the same loop, also for
 * a duplicate. A message without "id" (an older sender) is stored and
 * not acknowledged. An ack for an ID the receiver of the ack has not sent
 * on that loop is ignored. A line that is too long, is not a JSON object
 * with a "message" string or an "ack", whose text is empty or too long,
 * or whose id or ack is not an ID breaks the protocol: the receiver logs
 * it, closes that loop and acts on nothing from that line (lines before
 * it counted). A line cut off by the end of the stream is dropped.
 *
 * Delivery: a message counts as delivered once acknowledged. The sender
 * keeps pending messages in its history and writes them, in order, on
 * the one loop per peer that it dialed itself (at most 32
 * unacknowledged); when that loop ends with messages unacknowledged (or
 * none is acknowledged for 30 s) they are written again on the next loop,
 * which is dialed after 1 s, doubling to 30 s while attempts fail, and at
 * once when the peer opens a loop to us. Pending messages fail once their
 * expiry (--expire) passes. Both ends read every loop, the ones they
 * accepted and the ones they dialed.
 *
 * Limits on what a peer can make this app hold: at most 256 open loops in
 * all and 4 accepted loops per peer (a fifth closes that peer's oldest);
 * 32 KiB of buffered input and 64 KiB of output per loop (a peer that
 * does not read its acks is read no further); 50 lines per second per
 * loop (beyond that the loop is simply read more slowly).
 *
 * Threads: the main thread (hw_chat_net_run) owns every loop and every
 * peer's outbox: it polls, reads, writes and closes them all, so no
 * descriptor is ever shared. A dial blocks (up to 10 s), so each runs on
 * a thread of its own (at most 8 at once) that only calls hw_app_dial and
 * hands the result back under net->mu. HTTP threads only store a pending
 * message and queue a kick for its peer (hw_chat_net_queue). */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat.h"

#define NET_MAX_LOOPS 256
#define NET_MAX_ACCEPTED_PER_PEER 4
#define NET_MAX_DIALS 8
#define NET_DIAL_TIMEOUT_MS 10000
#define NET_RATE_WINDOW_MS 1000
#define NET_RATE_MAX 50
/* Unacknowledged messages per loop. */
#define NET_INFLIGHT_MAX 32
/* With messages unacknowledged, the longest wait for the next ack before
 * the loop counts as broken. */
#define NET_ACK_TIMEOUT_MS 30000
#define NET_BACKOFF_MIN_MS 1000
#define NET_BACKOFF_MAX_MS 30000
#define NET_EXPIRE_EVERY_MS 1000
/* Output buffered per loop: acks, and on dialed loops messages. */
#define NET_OUT_MAX (2 * HW_CHAT_LINE_MAX)
/* Room one ack needs: {"ack":"ID"}\n */
#define NET_ACK_ROOM (HW_CHAT_ID_MAX + 16)
/* Output kept free of messages for acks. */
#define NET_ACK_RESERVE (64 * NET_ACK_ROOM)
/* Peers kicked by HTTP threads between two turns; beyond, the outbox is
 * rescanned from the history. */
#define NET_KICKS_MAX 64
/* Loops accepted per turn of the main loop, so a flood of loops cannot
 * starve reading. */
#define NET_ACCEPT_BATCH 32
#define NET_ERR_MAX 512
/* The longest the main thread sleeps without looking at the channel. */
#define NET_IDLE_MS 1000

struct chat_peer;

struct chat_loop {
	struct chat_loop *next; /* on net->loops */
	int fd;
	char pk[HW_APP_PK_HEX + 1]; /* remote visor */
	uint16_t remote_port;
	bool dialed;
	bool dead; /* closed; freed at the end of the turn */
	struct chat_peer *owner; /* dialed: the outbox it carries */

	char *buf; /* HW_CHAT_LINE_MAX bytes of input not yet a line */
	size_t len;
	bool eof;  /* nothing more to read; close once buf holds no line */
	int64_t win_start;
	unsigned win_count;
	char *out; /* NET_OUT_MAX bytes not yet written */
	size_t olen;
	bool unknown_logged;
};

struct chat_inflight {
	int64_t id; /* row */
	char msg_id[HW_CHAT_ID_MAX + 1];
};

/* The outbox towards one peer; the main thread's, but for the dial
 * fields. */
struct chat_peer {
	struct chat_peer *next; /* on net->peers */
	struct hw_chat_net *net;
	char pk[HW_APP_PK_HEX + 1];
	struct chat_loop *loop; /* the dialed loop carrying the messages */
	struct chat_inflight inflight[NET_INFLIGHT_MAX]; /* in row order */
	unsigned ninflight;
	int64_t sent_upto; /* highest row written on loop */
	int64_t ack_due;   /* mono; with ninflight > 0 */
	bool more;         /* there may be pending rows above sent_upto */
	int64_t next_try;  /* mono: the next dial */
	int64_t backoff;

	pthread_t thread;
	bool dialing; /* a dial thread runs (main thread's) */
	/* Under net->mu: */
	bool dial_done;
	int dial_rc;
	struct hw_app_loop dial_loop;
	char dial_err[NET_ERR_MAX];
};

struct hw_chat_net {
	struct hw_app *app;
	struct hw_chat_store *st;
	int64_t expire_ms;
	int wake[2]; /* dial threads and HTTP threads wake the main thread */

	pthread_mutex_t mu;
	/* Under mu: */
	bool stopping;
	char kicks[NET_KICKS_MAX][HW_APP_PK_HEX + 1];
	unsigned nkicks;
	bool rescan;

	/* Main thread only. */
	struct chat_loop *loops;
	size_t nloops;
	struct chat_peer *peers;
	unsigned ndials;
	int64_t expire_at;
	struct pollfd pfd[3 + NET_MAX_LOOPS];
	struct chat_loop *polled[NET_MAX_LOOPS];
};

static void wake_main(struct hw_chat_net *net)
{
	char c = 1;

	/* A full pipe already means "wake up". */
	if (write(net->wake[1], &c, 1) < 0 && errno != EAGAIN)
		hw_chat_log("wake: %s", strerror(errno));
}

static bool stopping(struct hw_chat_net *net)
{
	bool s;

	pthread_mutex_lock(&net->mu);
	s = net->stopping;
	pthread_mutex_unlock(&net->mu);
	return s;
}

int hw_chat_net_new(struct hw_chat_net **out, struct hw_app *app,
		    struct hw_chat_store *st, int64_t expire_ms)
{
	struct hw_chat_net *net;
	int rc;

	*out = NULL;
	net = calloc(1, sizeof(*net));
	if (!net)
		return -ENOMEM;
	net->app = app;
	net->st = st;
	net->expire_ms = expire_ms;
	/* Whatever was pending when the app last stopped goes out again. */
	net->rescan = true;
	if (pipe2(net->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
		rc = -errno;
		free(net);
		return rc;
	}
	if ((rc = -pthread_mutex_init(&net->mu, NULL))) {
		close(net->wake[0]);
		close(net->wake[1]);
		free(net);
		return rc;
	}
	*out = net;
	return 0;
}

static void loop_free(struct chat_loop *l)
{
	if (l->fd >= 0)
		close(l->fd);
	free(l->buf);
	free(l->out);
	free(l);
}

void hw_chat_net_free(struct hw_chat_net *net)
{
	struct chat_loop *l, *lnext;
	struct chat_peer *p, *pnext;

	if (!net)
		return;
	for (p = net->peers; p; p = pnext) {
		pnext = p->next;
		if (p->dialing) {
			pthread_join(p->thread, NULL);
			if (p->dial_rc == 0)
				close(p->dial_loop.fd);
		}
		free(p);
	}
	for (l = net->loops; l; l = lnext) {
		lnext = l->next;
		loop_free(l);
	}
	close(net->wake[0]);
	close(net->wake[1]);
	pthread_mutex_destroy(&net->mu);
	free(net);
}

void hw_chat_net_stop(struct hw_chat_net *net)
{
	pthread_mutex_lock(&net->mu);
	net->stopping = true;
	pthread_mutex_unlock(&net->mu);
}

static struct chat_loop *loop_new(const struct hw_app_loop *hl, bool dialed)
{
	struct chat_loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->buf = malloc(HW_CHAT_LINE_MAX);
	l->out = malloc(NET_OUT_MAX);
	if (!l->buf || !l->out) {
		free(l->buf);
		free(l->out);
		free(l);
		return NULL;
	}
	l->fd = hl->fd;
	/* The SDK writes lower-case hex; hw_chat_pk_ok makes sure. */
	if (!hw_chat_pk_ok(hl->remote_pk, l->pk))
		snprintf(l->pk, sizeof(l->pk), "%s", hl->remote_pk);
	l->remote_port = hl->remote_port;
	l->dialed = dialed;
	return l;
}

/* Makes fd non-blocking and wraps it in a loop on the list; closes fd
 * and returns NULL (err says why) when that fails or 256 are open. */
static struct chat_loop *loop_add(struct hw_chat_net *net,
				  const struct hw_app_loop *hl, bool dialed,
				  char *err, size_t errlen)
{
	struct chat_loop *l;
	int fl;

	fl = fcntl(hl->fd, F_GETFL);
	if (fl < 0 || fcntl(hl->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "loop: %s", strerror(errno));
		close(hl->fd);
		return NULL;
	}
	if (net->nloops >= NET_MAX_LOOPS) {
		snprintf(err, errlen, "%d loops are open: no room for one more",
			 NET_MAX_LOOPS);
		close(hl->fd);
		return NULL;
	}
	if (!(l = loop_new(hl, dialed))) {
		snprintf(err, errlen, "out of memory: loop closed");
		close(hl->fd);
		return NULL;
	}
	l->next = net->loops;
	net->loops = l;
	net->nloops++;
	return l;
}

/* The wait after a failed attempt doubles, up to NET_BACKOFF_MAX_MS. */
static void backoff_grow(struct chat_peer *p)
{
	p->backoff = p->backoff * 2 > NET_BACKOFF_MAX_MS ? NET_BACKOFF_MAX_MS
							 : p->backoff * 2;
}

/* Puts the messages a closing loop carried back in the queue for the
 * next loop. */
static void peer_lost_loop(struct chat_peer *p, int64_t now)
{
	bool unacked = p->ninflight > 0;

	p->loop = NULL;
	p->ninflight = 0;
	p->sent_upto = 0;
	p->more = true;
	p->next_try = now + p->backoff;
	if (unacked)
		backoff_grow(p);
}

/* Takes l out of service (once): its descriptor is closed now, its
 * memory at the end of the turn. */
static void loop_close(struct hw_chat_net *net, struct chat_loop *l,
		       int64_t now)
{
	if (l->dead)
		return;
	l->dead = true;
	close(l->fd);
	l->fd = -1;
	if (l->owner) {
		peer_lost_loop(l->owner, now);
		l->owner = NULL;
	}
}

/* Frees the loops closed during the turn. */
static void sweep_loops(struct hw_chat_net *net)
{
	struct chat_loop **pp = &net->loops, *l;

	while ((l = *pp)) {
		if (l->dead) {
			*pp = l->next;
			net->nloops--;
			loop_free(l);
		} else {
			pp = &l->next;
		}
	}
}

/* Writes what l->out holds, as far as the loop takes it. Returns NULL or
 * why the loop is broken. */
static const char *flush_loop(struct chat_loop *l, char *why, size_t whylen)
{
	ssize_t n;

	while (l->olen) {
		n = send(l->fd, l->out, l->olen, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			memmove(l->out, l->out + n, l->olen - (size_t)n);
			l->olen -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return NULL;
		snprintf(why, whylen, "write: %s",
			 n < 0 ? strerror(errno) : "nothing written");
		return why;
	}
	return NULL;
}

/* --- peers (the outbox) ------------------------------------------------ */

static struct chat_peer *peer_find(struct hw_chat_net *net, const char *pk)
{
	struct chat_peer *p;

	for (p = net->peers; p; p = p->next)
		if (!strcmp(p->pk, pk))
			return p;
	return NULL;
}

/* The outbox to pk, made when there is none (NULL: out of memory). */
static struct chat_peer *peer_get(struct hw_chat_net *net, const char *pk,
				  int64_t now)
{
	struct chat_peer *p = peer_find(net, pk);

	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p) {
		hw_chat_log("peer %s: out of memory: its messages wait", pk);
		return NULL;
	}
	p->net = net;
	snprintf(p->pk, sizeof(p->pk), "%s", pk);
	p->more = true;
	p->next_try = now;
	p->backoff = NET_BACKOFF_MIN_MS;
	p->next = net->peers;
	net->peers = p;
	return p;
}

static void kick_peer(void *arg, const char *pk)
{
	struct hw_chat_net *net = arg;
	struct chat_peer *p = peer_get(net, pk, hw_chat_mono_ms());

	if (p)
		p->more = true;
}

/* Takes the kicks HTTP threads queued. */
static void take_kicks(struct hw_chat_net *net)
{
	char kicks[NET_KICKS_MAX][HW_APP_PK_HEX + 1];
	unsigned n, i;
	bool rescan;

	pthread_mutex_lock(&net->mu);
	n = net->nkicks;
	memcpy(kicks, net->kicks, n * sizeof(kicks[0]));
	rescan = net->rescan;
	net->nkicks = 0;
	net->rescan = false;
	pthread_mutex_unlock(&net->mu);
	for (i = 0; i < n; i++)
		kick_peer(net, kicks[i]);
	if (rescan && hw_chat_store_pending_peers(net->st, kick_peer, net) < 0)
		hw_chat_log("cannot read the pending messages; trying again "
			    "with the next message");
}

/* The dial thread: asks the visor for a loop and hands the result back. */
static void *dial_main(void *arg)
{
	struct chat_peer *p = arg;
	struct hw_chat_net *net = p->net;
	struct hw_app_loop hl = {.fd = -1};
	char err[NET_ERR_MAX] = "";
	const char *why;
	int rc;

	rc = hw_app_dial(net->app, p->pk, HW_CHAT_PORT, &hl,
			 NET_DIAL_TIMEOUT_MS);
	if (rc == -ECONNREFUSED) {
		/* The visor's reason often names the key already. */
		why = hw_app_last_error(net->app);
		if (!*why)
			snprintf(err, sizeof(err), "the visor refused the "
				 "loop");
		else
			snprintf(err, sizeof(err), "%s", why);
	} else if (rc == -ETIMEDOUT) {
		snprintf(err, sizeof(err), "no answer within %d s",
			 NET_DIAL_TIMEOUT_MS / 1000);
	} else if (rc == -EPIPE) {
		snprintf(err, sizeof(err), "the visor closed the app channel");
	} else if (rc < 0) {
		snprintf(err, sizeof(err), "%s", strerror(-rc));
	}
	pthread_mutex_lock(&net->mu);
	p->dial_rc = rc;
	p->dial_loop = hl;
	memcpy(p->dial_err, err, sizeof(err));
	p->dial_done = true;
	pthread_mutex_unlock(&net->mu);
	/* Also: while dialing, this thread may have read loops of other
	 * apps off the channel into the SDK's accept queue. */
	wake_main(net);
	return NULL;
}

static int count_one(void *arg, int64_t id, const char *msg_id,
		     const char *text)
{
	(void)id;
	(void)msg_id;
	(void)text;
	*(int *)arg = 1;
	return 1;
}

/* Starts a dial to p when it has pending messages; frees p (returns
 * true) when it has none and nothing else to do. */
static bool peer_maybe_dial(struct hw_chat_net *net, struct chat_peer *p,
			    struct chat_peer **pp)
{
	int any = 0, rc;

	rc = hw_chat_store_pending(net->st, p->pk, 0, 1, count_one, &any);
	if (rc < 0) {
		p->next_try = hw_chat_mono_ms() + NET_BACKOFF_MAX_MS;
		return false;
	}
	if (!any) {
		*pp = p->next;
		free(p);
		return true;
	}
	pthread_mutex_lock(&net->mu);
	p->dial_done = false;
	pthread_mutex_unlock(&net->mu);
	if ((rc = pthread_create(&p->thread, NULL, dial_main, p))) {
		hw_chat_log("peer %s: cannot start a dial: %s", p->pk,
			    strerror(rc));
		p->next_try = hw_chat_mono_ms() + p->backoff;
		return false;
	}
	p->dialing = true;
	net->ndials++;
	return false;
}

/* Takes the result of p's dial once it is there. */
static void peer_dial_result(struct hw_chat_net *net, struct chat_peer *p,
			     int64_t now)
{
	char err[NET_ERR_MAX];
	struct hw_app_loop hl;
	struct chat_loop *l;
	bool done;
	int rc;

	pthread_mutex_lock(&net->mu);
	done = p->dial_done;
	rc = p->dial_rc;
	hl = p->dial_loop;
	memcpy(err, p->dial_err, sizeof(err));
	pthread_mutex_unlock(&net->mu);
	if (!done)
		return;
	pthread_join(p->thread, NULL);
	p->dialing = false;
	net->ndials--;
	l = NULL;
	if (rc == 0) {
		l = loop_add(net, &hl, true, err, sizeof(err));
		if (l) {
			/* The visor answers for the key we asked. */
			snprintf(l->pk, sizeof(l->pk), "%s", p->pk);
			l->owner = p;
			p->loop = l;
			p->sent_upto = 0;
			p->ninflight = 0;
			p->more = true;
			return;
		}
	}
	p->next_try = now + p->backoff;
	hw_chat_log("peer %s: cannot deliver: %s%s; next try in %lld s",
		    p->pk, strstr(err, p->pk) ? "" : "cannot reach it: ", err,
		    (long long)(p->backoff / 1000));
	backoff_grow(p);
}

struct fill_ctx {
	struct chat_peer *p;
	int64_t now;
	bool full; /* the output buffer has no room for the next one */
};

/* Appends one pending message to the peer's loop. */
static int fill_one(void *arg, int64_t id, const char *msg_id,
		    const char *text)
{
	struct fill_ctx *c = arg;
	struct chat_peer *p = c->p;
	struct chat_loop *l = p->loop;
	struct chat_inflight *f;
	json_t *o;
	char *line;
	size_t len;

	o = msg_id && text && *text && hw_chat_id_ok(msg_id, strlen(msg_id))
		    ? json_pack("{s:s, s:s}", "message", text, "id", msg_id)
		    : NULL;
	line = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!line) {
		/* A row edited by hand (no id, not UTF-8) or out of memory:
		 * skipped; the message waits for its expiry. */
		p->sent_upto = id;
		return 0;
	}
	len = strlen(line);
	/* Room stays for the acks of what the peer sends on this loop. */
	if (len + 1 + NET_ACK_RESERVE > NET_OUT_MAX - l->olen) {
		free(line);
		c->full = true;
		return 1;
	}
	memcpy(l->out + l->olen, line, len);
	l->out[l->olen + len] = '\n';
	l->olen += len + 1;
	free(line);
	f = &p->inflight[p->ninflight++];
	f->id = id;
	snprintf(f->msg_id, sizeof(f->msg_id), "%s", msg_id);
	if (p->ninflight == 1)
		p->ack_due = c->now + NET_ACK_TIMEOUT_MS;
	p->sent_upto = id;
	return p->ninflight == NET_INFLIGHT_MAX;
}

/* Writes p's next pending messages on its loop, within the window. */
static void peer_fill(struct hw_chat_net *net, struct chat_peer *p,
		      int64_t now)
{
	struct fill_ctx c = {.p = p, .now = now};
	int want, rc;

	while (p->more && p->loop && p->ninflight < NET_INFLIGHT_MAX &&
	       !c.full) {
		want = NET_INFLIGHT_MAX - (int)p->ninflight;
		rc = hw_chat_store_pending(net->st, p->pk, p->sent_upto, want,
					   fill_one, &c);
		if (rc < 0)
			return; /* logged; tried again next turn */
		if (rc < want && !c.full)
			p->more = false;
		if (rc == 0)
			break;
	}
}

/* One turn of the outbox: expiry, dial results, timeouts, writing and
 * new dials. Returns the time of the next thing to do (mono), or -1. */
static int64_t outbox_turn(struct hw_chat_net *net, int64_t now)
{
	struct chat_peer **pp = &net->peers, *p;
	int64_t next = -1;
	bool stop = stopping(net);
	int n;

	if (now >= net->expire_at) {
		net->expire_at = now + NET_EXPIRE_EVERY_MS;
		n = hw_chat_store_expire(net->st, hw_chat_now_ms());
		if (n > 0)
			hw_chat_log("%d pending message%s expired: failed", n,
				    n == 1 ? "" : "s");
	}
	while ((p = *pp)) {
		if (p->dialing)
			peer_dial_result(net, p, now);
		if (p->loop && p->ninflight && now >= p->ack_due) {
			hw_chat_log("peer %s: no acknowledgement within %d s: "
				    "closing the loop, %u message%s go out "
				    "again", p->pk, NET_ACK_TIMEOUT_MS / 1000,
				    p->ninflight, p->ninflight == 1 ? "" : "s");
			loop_close(net, p->loop, now);
		}
		if (p->loop) {
			peer_fill(net, p, now);
			if (p->ninflight && (next < 0 || p->ack_due < next))
				next = p->ack_due;
		} else if (!p->dialing && !stop) {
			if (now >= p->next_try && net->ndials < NET_MAX_DIALS &&
			    peer_maybe_dial(net, p, pp))
				continue; /* freed */
			/* A peer whose time came but found every dial
			 * slot taken is woken by the end of a dial. */
			if (!p->dialing && p->next_try > now &&
			    (next < 0 || p->next_try < next))
				next = p->next_try;
		}
		pp = &p->next;
	}
	if (next < 0 || net->expire_at < next)
		next = net->expire_at;
	return next;
}

int hw_chat_net_queue(struct hw_chat_net *net, const char *pk,
		      const char *text, int64_t *id, char *err,
		      size_t errlen)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[HW_CHAT_ID_LEN / 2];
	char peer[HW_APP_PK_HEX + 1], msg_id[HW_CHAT_ID_LEN + 1];
	int64_t now;
	size_t i;
	int rc;

	if (!hw_chat_pk_ok(pk, peer) || !text || !*text ||
	    strlen(text) > HW_CHAT_TEXT_MAX) {
		snprintf(err, errlen, "invalid recipient or message");
		return -EINVAL;
	}
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		snprintf(err, errlen, "no random message id: %s",
			 strerror(errno));
		return -EIO;
	}
	for (i = 0; i < sizeof(raw); i++) {
		msg_id[2 * i] = hex[raw[i] >> 4];
		msg_id[2 * i + 1] = hex[raw[i] & 15];
	}
	msg_id[HW_CHAT_ID_LEN] = '\0';
	now = hw_chat_now_ms();
	rc = hw_chat_store_add_out(net->st, peer, msg_id, text, now,
				   now + net->expire_ms, id, err, errlen);
	if (rc)
		return rc;
	pthread_mutex_lock(&net->mu);
	for (i = 0; i < net->nkicks; i++)
		if (!strcmp(net->kicks[i], peer))
			break;
	if (i == net->nkicks) {
		if (net->nkicks < NET_KICKS_MAX)
			memcpy(net->kicks[net->nkicks++], peer, sizeof(peer));
		else
			net->rescan = true;
	}
	pthread_mutex_unlock(&net->mu);
	wake_main(net);
	return 0;
}

/* --- receiving --------------------------------------------------------- */

static void take_ack(struct hw_chat_net *net, struct chat_loop *l,
		     const char *msg_id, int64_t now)
{
	struct chat_peer *p = l->owner;
	unsigned i;

	for (i = 0; p && i < p->ninflight; i++)
		if (!strcmp(p->inflight[i].msg_id, msg_id))
			break;
	if (!p || i == p->ninflight) {
		/* A late ack for a message sent on an earlier loop, or
		 * nonsense: the message (if any) goes out again. */
		if (!l->unknown_logged)
			hw_chat_log("peer %s: ignoring an ack for %s, not sent "
				    "on this loop (further ones are ignored "
				    "silently)", l->pk, msg_id);
		l->unknown_logged = true;
		return;
	}
	if (hw_chat_store_delivered(net->st, p->inflight[i].id) < 0)
		return; /* logged; the next loop sends it again */
	memmove(&p->inflight[i], &p->inflight[i + 1],
		(p->ninflight - i - 1) * sizeof(p->inflight[0]));
	p->ninflight--;
	p->ack_due = now + NET_ACK_TIMEOUT_MS;
	p->backoff = NET_BACKOFF_MIN_MS;
	p->more = true;
}

/* Acts on one line (without its '\n'). Returns NULL or why the line
 * breaks the protocol (in why). */
static const char *take_line(struct hw_chat_net *net, struct chat_loop *l,
			     const char *line, size_t n, int64_t now,
			     char *why, size_t whylen)
{
	struct hw_chat_line cl;
	char err[NET_ERR_MAX];
	json_t *root;
	int64_t id;
	int dup, k;

	if (hw_chat_line_parse(line, n, &root, &cl, why, whylen))
		return why;
	if (cl.kind == HW_CHAT_LINE_ACK) {
		take_ack(net, l, cl.id, now);
	} else if (cl.kind == HW_CHAT_LINE_MESSAGE) {
		if (hw_chat_store_add_in(net->st, l->pk, cl.id, cl.text,
					 hw_chat_now_ms(), &id, &dup, err,
					 sizeof(err))) {
			/* Not acknowledged: the sender tries again. */
			hw_chat_log("peer %s: message not stored: %s", l->pk,
				    err);
		} else if (cl.id) {
			/* take_lines made sure of the room. */
			k = snprintf(l->out + l->olen, NET_OUT_MAX - l->olen,
				     "{\"ack\":\"%s\"}\n", cl.id);
			l->olen += (size_t)k;
		}
	}
	json_decref(root);
	return NULL;
}

static bool has_quota(struct chat_loop *l, int64_t now)
{
	if (now - l->win_start >= NET_RATE_WINDOW_MS) {
		l->win_start = now;
		l->win_count = 0;
	}
	return l->win_count < NET_RATE_MAX;
}

/* Whether l can take one more line now: the rate allows it and its ack
 * would fit. */
static bool can_take(struct chat_loop *l, int64_t now)
{
	return has_quota(l, now) && NET_OUT_MAX - l->olen >= NET_ACK_ROOM;
}

/* Acts on the complete lines in l's buffer while the rate and the room
 * for acks allow. Returns NULL or the protocol violation. */
static const char *take_lines(struct hw_chat_net *net, struct chat_loop *l,
			      int64_t now, char *why, size_t whylen)
{
	size_t off = 0;
	const char *bad = NULL;
	char *nl;

	while (off < l->len && can_take(l, now)) {
		nl = memchr(l->buf + off, '\n', l->len - off);
		if (!nl)
			break;
		l->win_count++;
		bad = take_line(net, l, l->buf + off,
				(size_t)(nl - (l->buf + off)), now, why,
				whylen);
		off = (size_t)(nl - l->buf) + 1;
		if (bad)
			break;
	}
	if (off) {
		memmove(l->buf, l->buf + off, l->len - off);
		l->len -= off;
	}
	if (!bad && l->len == HW_CHAT_LINE_MAX &&
	    !memchr(l->buf, '\n', l->len)) {
		snprintf(why, whylen, "line longer than %d bytes",
			 HW_CHAT_LINE_MAX);
		bad = why;
	}
	return bad;
}

/* Reads what the loop has (non-blocking). Returns NULL or why the loop is
 * done with (end of file is normal and sets l->eof). */
static const char *read_loop(struct chat_loop *l, char *why, size_t whylen)
{
	ssize_t n;

	if (l->len == HW_CHAT_LINE_MAX)
		return NULL; /* lines wait for quota; take_lines checks */
	n = read(l->fd, l->buf + l->len, HW_CHAT_LINE_MAX - l->len);
	if (n > 0) {
		l->len += (size_t)n;
		return NULL;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return NULL;
	l->eof = true;
	if (n < 0) {
		snprintf(why, whylen, "read: %s", strerror(errno));
		return why;
	}
	return NULL;
}

/* Whether l has a complete line it can take now. */
static bool line_ready(struct chat_loop *l, int64_t now)
{
	return can_take(l, now) && memchr(l->buf, '\n', l->len);
}

static void describe_close(struct chat_loop *l, const char *why)
{
	hw_chat_log("peer %s: closing loop (%s port %u): %s", l->pk,
		    l->dialed ? "dialed," : "accepted, from", l->remote_port,
		    why);
}

static void on_loop_event(struct hw_chat_net *net, struct chat_loop *l,
			  short revents, int64_t now)
{
	char why[NET_ERR_MAX];
	const char *bad = NULL;

	if (l->dead)
		return;
	if (!l->eof && (revents & (POLLIN | POLLHUP | POLLERR)))
		bad = read_loop(l, why, sizeof(why));
	if (!bad)
		bad = take_lines(net, l, now, why, sizeof(why));
	if (!bad)
		bad = flush_loop(l, why, sizeof(why));
	if (bad) {
		describe_close(l, bad);
		loop_close(net, l, now);
	} else if (l->eof && !memchr(l->buf, '\n', l->len)) {
		if (l->len)
			hw_chat_log("peer %s: loop closed in the middle of a "
				    "line (%zu bytes dropped)", l->pk, l->len);
		else if (l->owner && l->owner->ninflight)
			hw_chat_log("peer %s: loop closed with %u message%s "
				    "unacknowledged: they go out again", l->pk,
				    l->owner->ninflight,
				    l->owner->ninflight == 1 ? "" : "s");
		loop_close(net, l, now);
	}
}

/* Adds an accepted loop, within the limits. */
static void add_accepted(struct hw_chat_net *net, struct hw_app_loop *hl,
			 int64_t now)
{
	char err[NET_ERR_MAX], pk[HW_APP_PK_HEX + 1];
	struct chat_loop *it, *oldest = NULL;
	struct chat_peer *p;
	unsigned same = 0;

	snprintf(pk, sizeof(pk), "%s", hl->remote_pk);
	for (it = net->loops; it; it = it->next) {
		if (!it->dead && !it->dialed && !strcmp(it->pk, pk)) {
			same++;
			oldest = it; /* the list is newest first */
		}
	}
	if (same >= NET_MAX_ACCEPTED_PER_PEER) {
		hw_chat_log("peer %s: more than %d loops open: closed its "
			    "oldest", pk, NET_MAX_ACCEPTED_PER_PEER);
		loop_close(net, oldest, now);
	}
	if (!loop_add(net, hl, false, err, sizeof(err))) {
		hw_chat_log("peer %s: %s", pk, err);
		return;
	}
	/* The peer is up: what waits for it goes now, not after the
	 * backoff. */
	p = peer_find(net, pk);
	if (p && !p->loop && !p->dialing) {
		p->next_try = now;
		p->backoff = NET_BACKOFF_MIN_MS;
	}
}

/* Accepts what the channel has. Returns 0, or HW_CHAT_RUN_CLOSED / a
 * negative errno when the channel is gone. */
static int accept_loops(struct hw_chat_net *net, int64_t now)
{
	struct hw_app_loop hl;
	int i, rc;

	for (i = 0; i < NET_ACCEPT_BATCH; i++) {
		rc = hw_app_accept(net->app, &hl, 0);
		if (rc == -EAGAIN || rc == -EINTR)
			return 0;
		if (rc == -EPIPE)
			return HW_CHAT_RUN_CLOSED;
		if (rc < 0)
			return rc;
		add_accepted(net, &hl, now);
	}
	return 0;
}

static void drain(int fd)
{
	char b[64];

	while (read(fd, b, sizeof(b)) > 0)
		;
}

int hw_chat_net_run(struct hw_chat_net *net, int stop_fd)
{
	struct chat_loop *l;
	int64_t now, next;
	size_t n, i;
	int timeout, rc = 0;

	for (;;) {
		now = hw_chat_mono_ms();
		take_kicks(net);
		next = outbox_turn(net, now);
		/* Messages the outbox wrote go out now. */
		for (l = net->loops; l; l = l->next) {
			char why[NET_ERR_MAX];
			const char *bad;

			if (l->dead || !l->olen)
				continue;
			if ((bad = flush_loop(l, why, sizeof(why)))) {
				describe_close(l, bad);
				loop_close(net, l, now);
			}
		}
		sweep_loops(net);

		timeout = next < 0 ? -1 : (int)(next > now ? next - now : 0);
		net->pfd[0] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
		net->pfd[1] = (struct pollfd){.fd = net->wake[0],
					      .events = POLLIN};
		net->pfd[2] = (struct pollfd){.fd = hw_app_fd(net->app),
					      .events = POLLIN};
		n = 0;
		for (l = net->loops; l && n < NET_MAX_LOOPS; l = l->next) {
			struct pollfd *p = &net->pfd[3 + n];

			net->polled[n++] = l;
			*p = (struct pollfd){.fd = l->fd, .events = POLLIN};
			if (l->olen)
				p->events |= POLLOUT;
			if (line_ready(l, now) ||
			    (l->eof && !memchr(l->buf, '\n', l->len))) {
				timeout = 0;
			} else if (!has_quota(l, now)) {
				/* Throttled: not polled for input until its
				 * window ends (a hang-up would wake poll at
				 * once, again and again). */
				int64_t wait = l->win_start +
					       NET_RATE_WINDOW_MS - now;

				p->events &= (short)~POLLIN;
				if (timeout < 0 || wait < timeout)
					timeout = (int)(wait > 0 ? wait : 0);
			} else if (NET_OUT_MAX - l->olen < NET_ACK_ROOM) {
				/* Its acks are not read: neither is it. */
				p->events &= (short)~POLLIN;
			}
			if (l->eof)
				p->events &= (short)~POLLIN;
			if (!p->events)
				p->fd = -1;
		}

		if (timeout < 0 || timeout > NET_IDLE_MS)
			timeout = NET_IDLE_MS;
		if (poll(net->pfd, 3 + n, timeout) < 0 && errno != EINTR) {
			rc = -errno;
			hw_chat_log("poll: %s", strerror(errno));
			return rc;
		}
		now = hw_chat_mono_ms();
		for (i = 0; i < n; i++)
			on_loop_event(net, net->polled[i],
				      net->pfd[3 + i].revents, now);
		if (net->pfd[0].revents)
			return HW_CHAT_RUN_STOPPED;
		if (net->pfd[1].revents)
			drain(net->wake[0]);
		/* Every turn, not only when the channel is readable: a
		 * dial thread's hw_app_dial may have read the channel and
		 * queued a loop for accept (it wakes us afterwards),
		 * leaving nothing to read. */
		if ((rc = accept_loops(net, now)))
			return rc;
	}
}
