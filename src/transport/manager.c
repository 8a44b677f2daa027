#include "transport/manager.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport/conn.h"
#include "transport/type.h"
#include "util/addr.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/statefile.h"

#define LOG "transport"
#define PING_PAYLOAD 16
#define STATE_SAVE_MS 60000

struct add_waiter {
	struct add_waiter *next;
	hw_tp_add_cb cb;
	void *ud;
};

struct ping {
	struct ping *next;
	struct hw_tp_manager *m;
	struct hw_tp *tp;
	uint64_t token;
	uint64_t sent_us;
	uv_timer_t timer;
	hw_tp_ping_cb cb;
	void *ud;
};

struct flood {
	uint64_t left;
	unsigned pkt_size;
	uint64_t start_us;
	hw_tp_ping_cb cb;
	void *ud;
};

struct hw_tp {
	struct hw_tp *next;
	struct hw_tp_manager *m;
	uint8_t id[HW_TP_ID_LEN];
	char id_hex[HW_TP_ID_HEXLEN + 1];
	uint8_t pk[HW_PK_LEN];
	const struct hw_tp_type *ops;
	char type[16];
	char addr[300];
	int persistent;
	int removed;
	int paused; /* hw_tp_pause: its live link does not read */
	struct hw_tp_link *live;    /* the connection carrying traffic */
	struct hw_tp_link *dialing; /* a dial in progress */
	uv_timer_t redial;
	unsigned attempts;
	int lookup_pending; /* a lookup (params.lookup) is out */
	char lookup_for[300]; /* the saved address when it was asked */
	char last_error[400];
	uint64_t up_since_ms, last_rx_ms, last_tx_ms;
	uint64_t probed_rx_ms; /* last_rx_ms when the silence was probed */
	uint64_t tx_bytes, rx_bytes, tx_packets, rx_packets;
	int64_t rtt_us; /* last measured, -1 when none */
	struct add_waiter *waiters;
	struct flood *flood;
};

struct hw_tp_manager {
	struct hw_tp_manager_params p;
	uint8_t x_priv[32];
	struct hw_conn_params cp; /* of every link; ud and prologue per link */
	void *type_state[HW_TP_TYPES_MAX];
	uv_timer_t tick;
	struct hw_tp *tps;
	struct hw_tp_link *links;
	struct ping *pings;
	uint64_t next_token;
	uint64_t last_save_ms;
	json_t *saved_counters; /* counters of earlier runs, by ID */
	struct hw_statefile *state; /* the state file; NULL when not kept */
	int state_loaded;
	struct hw_tp_manager_stats st;
	int closing;
	/* Handles and connections whose callbacks still reach the manager;
	 * it is freed when the last one is gone after hw_tp_manager_free. */
	int refs;
};

static const struct hw_conn_ops conn_ops;
static void link_gone(struct hw_tp_link *l, int reason, const char *msg);

static void link_close(struct hw_tp_link *l, int reason, int graceful)
{
	l->type->close(l, reason, graceful);
}

static int link_is_dialer(const struct hw_tp_link *l)
{
	return l->type->is_dialer(l);
}

static void manager_unref(struct hw_tp_manager *m)
{
	if (--m->refs > 0 || !m->closing)
		return;
	json_decref(m->saved_counters);
	sodium_memzero(m->x_priv, sizeof(m->x_priv));
	free(m);
}

static uint64_t now_us(void)
{
	return uv_hrtime() / 1000;
}

static uint64_t now_ms(struct hw_tp_manager *m)
{
	return uv_now(m->p.loop);
}

static void pk_hex(const uint8_t pk[HW_PK_LEN], char out[HW_PK_HEXLEN + 1])
{
	hw_pk_format(pk, out);
}

/* ---- state file ---- */

static json_t *counters_json(const struct hw_tp *tp)
{
	return json_pack("{s:I, s:I, s:I, s:I}", "tx_bytes",
			 (json_int_t)tp->tx_bytes, "rx_bytes",
			 (json_int_t)tp->rx_bytes, "tx_packets",
			 (json_int_t)tp->tx_packets, "rx_packets",
			 (json_int_t)tp->rx_packets);
}

static char *state_text(struct hw_tp_manager *m)
{
	json_t *root = json_object(), *list = json_array();
	json_t *counters = json_deep_copy(m->saved_counters);
	char pk[HW_PK_HEXLEN + 1];
	char *text;

	for (struct hw_tp *tp = m->tps; tp; tp = tp->next) {
		if (tp->persistent) {
			pk_hex(tp->pk, pk);
			json_array_append_new(
				list, json_pack("{s:s, s:s, s:s}", "pk", pk,
						"type", tp->type, "addr",
						tp->addr));
		}
		json_object_set_new(counters, tp->id_hex, counters_json(tp));
	}
	json_object_set_new(root, "version", json_integer(1));
	json_object_set_new(root, "persistent", list);
	json_object_set_new(root, "counters", counters);
	text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	return text;
}

/* Hands the current state to the state file writer (written from the thread pool). */
static void save_state(struct hw_tp_manager *m)
{
	/* Before the state is loaded there is nothing to save: writing then
	 * would replace the stored transports with an empty list. */
	if (!m->state || !m->state_loaded)
		return;
	m->last_save_ms = now_ms(m);
	hw_statefile_save(m->state, state_text(m));
}

/* ---- transports ---- */

static void tp_redial_closed(uv_handle_t *h)
{
	struct hw_tp *tp = h->data;
	struct hw_tp_manager *m = tp->m;
	free(tp->flood);
	free(tp);
	manager_unref(m);
}

static struct hw_tp *tp_new(struct hw_tp_manager *m,
			    const uint8_t pk[HW_PK_LEN],
			    const struct hw_tp_type *type)
{
	struct hw_tp *tp = calloc(1, sizeof(*tp));
	json_t *c;

	if (!tp)
		return NULL;
	tp->m = m;
	memcpy(tp->pk, pk, HW_PK_LEN);
	tp->ops = type;
	snprintf(tp->type, sizeof(tp->type), "%s", type->name);
	hw_tp_id(m->p.id->pk, pk, type->name, tp->id);
	hw_hex_encode(tp->id, HW_TP_ID_LEN, tp->id_hex);
	tp->rtt_us = -1;
	uv_timer_init(m->p.loop, &tp->redial);
	tp->redial.data = tp;
	m->refs++;
	c = json_object_get(m->saved_counters, tp->id_hex);
	if (c) {
		tp->tx_bytes = (uint64_t)json_integer_value(
			json_object_get(c, "tx_bytes"));
		tp->rx_bytes = (uint64_t)json_integer_value(
			json_object_get(c, "rx_bytes"));
		tp->tx_packets = (uint64_t)json_integer_value(
			json_object_get(c, "tx_packets"));
		tp->rx_packets = (uint64_t)json_integer_value(
			json_object_get(c, "rx_packets"));
	}
	tp->next = m->tps;
	m->tps = tp;
	return tp;
}

static void finish_waiters(struct hw_tp *tp, int status, const char *msg)
{
	struct add_waiter *w = tp->waiters;
	tp->waiters = NULL;
	while (w) {
		struct add_waiter *next = w->next;
		w->cb(tp->m, status ? NULL : tp, status, msg, w->ud);
		free(w);
		w = next;
	}
}

static void fail_pings(struct hw_tp_manager *m, struct hw_tp *tp, int status);

static void finish_flood(struct hw_tp *tp, int64_t result)
{
	struct flood *f = tp->flood;
	if (!f)
		return;
	tp->flood = NULL;
	f->cb(tp->m, result, f->ud);
	free(f);
}

/* Drops tp from the table; its memory goes when its timer has closed. */
static void tp_destroy(struct hw_tp *tp)
{
	struct hw_tp_manager *m = tp->m;
	struct hw_tp **pp;

	for (pp = &m->tps; *pp; pp = &(*pp)->next)
		if (*pp == tp) {
			*pp = tp->next;
			break;
		}
	/* Keep its counters for a transport with the same ID later. */
	json_object_set_new(m->saved_counters, tp->id_hex, counters_json(tp));
	if (!m->closing && m->p.on_event)
		m->p.on_event(tp, HW_TP_REMOVED, m->p.ud);
	finish_waiters(tp, -ECONNABORTED, "transport removed");
	finish_flood(tp, -ECONNABORTED);
	fail_pings(m, tp, -ENOTCONN);
	if (tp->live) {
		struct hw_tp_link *l = tp->live;
		tp->live = NULL;
		l->tp = NULL;
		link_close(l, 0, 0);
	}
	if (tp->dialing) {
		struct hw_tp_link *l = tp->dialing;
		tp->dialing = NULL;
		l->tp = NULL;
		link_close(l, 0, 0);
	}
	uv_close((uv_handle_t *)&tp->redial, tp_redial_closed);
}

static int tp_dial(struct hw_tp *tp);
static void dial_failed(struct hw_tp *tp, int reason);

static void on_redial(uv_timer_t *t)
{
	struct hw_tp *tp = t->data;
	int rc;

	if (tp->live || tp->dialing)
		return;
	/* A dial that cannot even start is a failed step too: without
	 * this the transport would never be dialed again. */
	if ((rc = tp_dial(tp))) {
		hw_log(HW_LOG_WARN, LOG, "transport %s: %s", tp->id_hex,
		       tp->last_error);
		dial_failed(tp, rc);
	}
}

static void schedule_redial(struct hw_tp *tp)
{
	struct hw_tp_manager *m = tp->m;
	uint64_t delay = m->p.redial_min_ms;

	for (unsigned i = 0; i < tp->attempts && delay < m->p.redial_max_ms;
	     i++)
		delay *= 2;
	if (delay > m->p.redial_max_ms)
		delay = m->p.redial_max_ms;
	/* Jitter of +-25% so visors that lost a peer together do not dial
	 * it in lockstep. */
	delay = delay * (75 + randombytes_uniform(51)) / 100;
	tp->attempts++;
	uv_timer_start(&tp->redial, on_redial, delay, 0);
	hw_log(HW_LOG_DEBUG, LOG, "transport %s: re-dial in %llu ms",
	       tp->id_hex, (unsigned long long)delay);
}

/* Asks the owner where the peer of tp is now: once per failed dial, one
 * question at a time. Not for failures of our own making. */
static void ask_lookup(struct hw_tp *tp, int reason)
{
	struct hw_tp_manager *m = tp->m;
	int rc;

	if (!m->p.lookup || m->closing || tp->lookup_pending ||
	    !tp->persistent || tp->removed || reason == -ENOMEM ||
	    reason == -ECANCELED)
		return;
	/* Set first: the owner may answer before lookup returns. */
	tp->lookup_pending = 1;
	snprintf(tp->lookup_for, sizeof(tp->lookup_for), "%s", tp->addr);
	if ((rc = m->p.lookup(tp->pk, tp->type, m->p.ud))) {
		tp->lookup_pending = 0;
		hw_log(HW_LOG_DEBUG, LOG, "transport %s: no lookup: %s",
		       tp->id_hex, hw_strerror(rc));
	}
}

/* A persistent transport's dial failed: back off, and ask where the
 * peer is now (its answer may cut the backoff short). */
static void dial_failed(struct hw_tp *tp, int reason)
{
	schedule_redial(tp);
	ask_lookup(tp, reason);
}

static int tp_dial(struct hw_tp *tp)
{
	struct hw_tp_link *l = hw_tp_link_new(tp->m, tp->ops, tp, 0);
	int rc;

	if (!l)
		return -ENOMEM;
	if ((rc = tp->ops->dial(l, tp->pk, tp->addr))) {
		hw_tp_link_discard(l);
		snprintf(tp->last_error, sizeof(tp->last_error), "dial %s: %s",
			 tp->addr, hw_strerror(rc));
		return rc;
	}
	tp->dialing = l;
	return 0;
}

int hw_tp_is_up(const struct hw_tp *tp)
{
	return tp->live != NULL;
}

const char *hw_tp_id_hex(const struct hw_tp *tp)
{
	return tp->id_hex;
}

const uint8_t *hw_tp_id_bytes(const struct hw_tp *tp)
{
	return tp->id;
}

const uint8_t *hw_tp_pk(const struct hw_tp *tp)
{
	return tp->pk;
}

const char *hw_tp_type(const struct hw_tp *tp)
{
	return tp->type;
}

int64_t hw_tp_rtt_us(const struct hw_tp *tp)
{
	return tp->rtt_us;
}

static int send_fill_max(struct hw_tp *tp, uint8_t type, uint32_t route_id,
			 uint16_t len, hw_conn_fill_fn fill, void *arg,
			 size_t max_queued)
{
	uint8_t hdr[HW_PACKET_HDR];
	/* Route DATA is end-to-end ciphertext already (docs/routing.md):
	 * sealing it again per transport would only cost time. */
	int detached = type == HW_PKT_DATA && route_id &&
		       len >= HW_PKT_DETACH_MIN;
	int rc;

	if (!tp->live)
		return -ENOTCONN;
	hw_packet_put_header(hdr, detached ? type | HW_PKT_F_DETACHED : type,
			     route_id, len);
	rc = tp->live->type->send_fill(tp->live, hdr, sizeof(hdr), len,
				       detached, fill, arg, max_queued);
	if (rc == 0) {
		tp->tx_packets++;
		tp->tx_bytes += HW_PACKET_HDR + len;
		tp->last_tx_ms = now_ms(tp->m);
	}
	return rc;
}

int hw_tp_send_fill(struct hw_tp *tp, uint8_t type, uint32_t route_id,
		    uint16_t len, hw_conn_fill_fn fill, void *arg)
{
	return send_fill_max(tp, type, route_id, len, fill, arg,
			     HW_CONN_MAX_QUEUED);
}

int hw_tp_forward(struct hw_tp *tp, uint8_t type, uint32_t route_id,
		  const uint8_t *payload, uint16_t len)
{
	return send_fill_max(tp, type, route_id, len, hw_conn_fill_copy,
			     (void *)payload, HW_CONN_FORWARD_MAX);
}

int hw_tp_congested(struct hw_tp *tp)
{
	return tp->live && tp->live->conn &&
	       tp->live->type->congested(tp->live);
}

size_t hw_tp_queued(const struct hw_tp *tp)
{
	return tp->live && tp->live->conn ? hw_conn_queued(tp->live->conn) : 0;
}

void hw_tp_pause(struct hw_tp *tp, int paused)
{
	paused = paused ? 1 : 0;
	if (tp->paused == paused)
		return;
	tp->paused = paused;
	/* Silence while we do not read is ours: it counts from now. */
	if (!paused)
		tp->last_rx_ms = now_ms(tp->m);
	if (tp->live && tp->live->conn)
		tp->live->type->pause(tp->live, paused);
}

int hw_tp_is_paused(const struct hw_tp *tp)
{
	return tp->paused;
}

int hw_tp_send(struct hw_tp *tp, uint8_t type, uint32_t route_id,
	       const uint8_t *payload, uint16_t len)
{
	return hw_tp_send_fill(tp, type, route_id, len, hw_conn_fill_copy,
			       (void *)payload);
}

/* ---- pings ---- */

static void ping_closed(uv_handle_t *h)
{
	free(h->data);
}

static void ping_finish(struct ping *pg, int64_t result)
{
	struct hw_tp_manager *m = pg->m;
	struct ping **pp;

	for (pp = &m->pings; *pp; pp = &(*pp)->next)
		if (*pp == pg) {
			*pp = pg->next;
			break;
		}
	uv_timer_stop(&pg->timer);
	uv_close((uv_handle_t *)&pg->timer, ping_closed);
	pg->cb(m, result, pg->ud);
}

static void fail_pings(struct hw_tp_manager *m, struct hw_tp *tp, int status)
{
	struct ping *pg = m->pings, *next;
	for (; pg; pg = next) {
		next = pg->next;
		if (!tp || pg->tp == tp)
			ping_finish(pg, status);
	}
}

static void on_ping_timeout(uv_timer_t *t)
{
	ping_finish(t->data, -ETIMEDOUT);
}

int hw_tp_ping(struct hw_tp *tp, unsigned timeout_ms, hw_tp_ping_cb cb,
	       void *ud)
{
	struct hw_tp_manager *m = tp->m;
	uint8_t payload[PING_PAYLOAD];
	struct ping *pg;
	int rc;

	if (!tp->live)
		return -ENOTCONN;
	pg = calloc(1, sizeof(*pg));
	if (!pg)
		return -ENOMEM;
	pg->m = m;
	pg->tp = tp;
	pg->token = ++m->next_token;
	pg->cb = cb;
	pg->ud = ud;
	memcpy(payload, &pg->token, 8);
	memset(payload + 8, 0, 8);
	pg->sent_us = now_us();
	if ((rc = hw_tp_send(tp, HW_PKT_PING, 0, payload, sizeof(payload)))) {
		free(pg);
		return rc;
	}
	uv_timer_init(m->p.loop, &pg->timer);
	pg->timer.data = pg;
	uv_timer_start(&pg->timer, on_ping_timeout, timeout_ms, 0);
	pg->next = m->pings;
	m->pings = pg;
	return 0;
}

static void on_pong(struct hw_tp *tp, const struct hw_packet *pkt)
{
	uint64_t token;

	if (pkt->len != PING_PAYLOAD)
		return;
	memcpy(&token, pkt->payload, 8);
	for (struct ping *pg = tp->m->pings; pg; pg = pg->next)
		if (pg->token == token && pg->tp == tp) {
			int64_t rtt = (int64_t)(now_us() - pg->sent_us);
			tp->rtt_us = rtt;
			ping_finish(pg, rtt);
			return;
		}
}

/* ---- throughput ---- */

static void flood_pong(struct hw_tp_manager *m, int64_t rtt, void *ud)
{
	struct hw_tp *tp = ud;
	struct flood *f = tp->flood;
	if (!f)
		return;
	finish_flood(tp, rtt < 0 ? rtt : (int64_t)(now_us() - f->start_us));
}

/* Sends until the queue is full or all is sent; the drained callback
 * comes back here. */
static void flood_pump(struct hw_tp *tp)
{
	static uint8_t zeros[HW_PACKET_MAX_PAYLOAD];
	struct flood *f = tp->flood;
	int rc;

	while (f && f->left > 0) {
		unsigned n = f->left < f->pkt_size ? (unsigned)f->left
						   : f->pkt_size;
		rc = hw_tp_send(tp, HW_PKT_DATA, 0, zeros, (uint16_t)n);
		if (rc == -ENOBUFS)
			return;
		if (rc) {
			finish_flood(tp, rc);
			return;
		}
		f->left -= n;
	}
	if (f && (rc = hw_tp_ping(tp, 60000, flood_pong, tp)))
		finish_flood(tp, rc);
}

int hw_tp_throughput(struct hw_tp *tp, uint64_t bytes, unsigned pkt_size,
		     hw_tp_ping_cb cb, void *ud)
{
	struct flood *f;

	if (!tp->live)
		return -ENOTCONN;
	if (tp->flood)
		return -EBUSY;
	if (pkt_size == 0 || pkt_size > HW_PACKET_MAX_PAYLOAD)
		return -EINVAL;
	if (!(f = calloc(1, sizeof(*f))))
		return -ENOMEM;
	f->left = bytes;
	f->pkt_size = pkt_size;
	f->start_us = now_us();
	f->cb = cb;
	f->ud = ud;
	tp->flood = f;
	flood_pump(tp);
	return 0;
}

/* ---- connection callbacks ---- */

static void link_unlist(struct hw_tp_manager *m, struct hw_tp_link *l)
{
	for (struct hw_tp_link **pp = &m->links; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			return;
		}
}

static void go_live(struct hw_tp *tp, struct hw_tp_link *l)
{
	struct hw_tp_manager *m = tp->m;
	char pk[HW_PK_HEXLEN + 1];

	tp->live = l;
	l->tp = tp;
	if (tp->dialing == l)
		tp->dialing = NULL;
	tp->attempts = 0;
	tp->last_error[0] = '\0';
	tp->up_since_ms = tp->last_rx_ms = tp->last_tx_ms = now_ms(m);
	uv_timer_stop(&tp->redial);
	/* A new connection of a paused transport starts paused. */
	if (tp->paused)
		l->type->pause(l, 1);
	pk_hex(tp->pk, pk);
	hw_log(HW_LOG_INFO, LOG, "transport %s up: %s %s %s", tp->id_hex, pk,
	       link_is_dialer(l) ? "dialed at" : "connected from",
	       l->type->peer(l));
	finish_waiters(tp, 0, NULL);
	if (m->p.on_event)
		m->p.on_event(tp, HW_TP_UP, m->p.ud);
	/* A new connection: senders that found the old one full go on. */
	if (tp->live == l && m->p.on_room)
		m->p.on_room(tp, m->p.ud);
}

/* Two connections for one transport: which one stays. Both ends choose
 * the same: a crossing pair (each side dialed) keeps the one dialed by the
 * smaller key; otherwise the newer one replaces the older (a peer that
 * restarted and dialed again). */
static int keep_new(struct hw_tp_manager *m, struct hw_tp_link *old_l,
		    struct hw_tp_link *new_l)
{
	int old_ours = link_is_dialer(old_l);
	int new_ours = link_is_dialer(new_l);
	int we_smaller;

	if (old_ours == new_ours)
		return 1;
	we_smaller = memcmp(m->p.id->pk, hw_conn_remote_pk(new_l->conn),
			    HW_PK_LEN) < 0;
	/* Keep the connection whose dialer has the smaller key. */
	return new_ours ? we_smaller : !we_smaller;
}

static void on_ready(struct hw_conn *c, void *ud)
{
	struct hw_tp_link *l = ud;
	struct hw_tp_manager *m = l->m;
	const uint8_t *pk = hw_conn_remote_pk(c);
	struct hw_tp *tp = l->tp;

	if (l->inbound_pending) {
		l->inbound_pending = 0;
		m->st.pending_handshakes--;
	}
	if (!memcmp(pk, m->p.id->pk, HW_PK_LEN)) {
		hw_log(HW_LOG_WARN, LOG, "dropped connection from %s: it is "
		       "ourselves", hw_conn_peer(c));
		hw_conn_close(c, -EINVAL, 0);
		return;
	}
	if (!tp)
		tp = hw_tp_manager_find(m, pk, l->type->name);
	if (!tp && !(tp = tp_new(m, pk, l->type))) {
		hw_conn_close(c, -ENOMEM, 0);
		return;
	}
	if (tp->dialing && tp->dialing != l) {
		/* We were dialing while the peer dialed us: settle it. */
		if (!keep_new(m, tp->dialing, l)) {
			l->tp = NULL;
			hw_conn_close(c, 0, 0);
			return;
		}
		tp->dialing->tp = NULL;
		link_close(tp->dialing, 0, 0);
		tp->dialing = NULL;
	}
	if (tp->live && tp->live != l) {
		l->tp = tp;
		if (!keep_new(m, tp->live, l)) {
			l->tp = NULL;
			hw_conn_close(c, 0, 0);
			return;
		}
		hw_log(HW_LOG_INFO, LOG, "transport %s: new connection "
		       "replaces the old one", tp->id_hex);
		tp->live->tp = NULL;
		link_close(tp->live, 0, 1);
		tp->live = NULL;
	}
	go_live(tp, l);
}

static void handle_packet(struct hw_tp *tp, const struct hw_packet *pkt)
{
	struct hw_tp_manager *m = tp->m;

	/* Route packets (and setup messages) are the router's; route 0
	 * is the transport's own. */
	if (pkt->route_id != 0 || pkt->type == HW_PKT_SETUP ||
	    pkt->type == HW_PKT_MESH) {
		if (m->p.on_packet)
			m->p.on_packet(tp, pkt, m->p.ud);
		else
			m->st.dropped_packets++;
		return;
	}
	switch (pkt->type) {
	case HW_PKT_KEEPALIVE:
		break;
	case HW_PKT_PING:
		hw_tp_send(tp, HW_PKT_PONG, pkt->route_id, pkt->payload,
			   pkt->len);
		break;
	case HW_PKT_PONG:
		on_pong(tp, pkt);
		break;
	case HW_PKT_CLOSE:
		if (!tp->removed) {
			hw_log(HW_LOG_INFO, LOG,
			       "transport %s removed by the peer", tp->id_hex);
			tp->removed = 1;
			tp->persistent = 0;
			link_close(tp->live, 0, 0);
		}
		break;
	default:
		/* Data to route 0 is what tp throughput sends: counted and
		 * dropped, like anything else there. */
		m->st.dropped_packets++;
	}
}

static void on_record(struct hw_conn *c, uint8_t *pt, size_t len, void *ud)
{
	struct hw_tp_link *l = ud;
	struct hw_tp *tp = l->tp;
	struct hw_packet pkt;
	size_t off = 0;
	int rc;

	if (!tp || tp->live != l) {
		hw_conn_close(c, 0, 0);
		return;
	}
	tp->rx_bytes += len;
	tp->last_rx_ms = now_ms(l->m);
	while ((rc = hw_packet_next(pt, len, &off, &pkt)) == 1) {
		if (pkt.type & HW_PKT_F_DETACHED) {
			/* The payload follows this record: on_detached. */
			l->detached_route = pkt.route_id;
			hw_conn_expect_detached(c, pkt.len);
			return;
		}
		tp->rx_packets++;
		handle_packet(tp, &pkt);
		/* A packet may have ended the transport. */
		if (l->tp != tp || tp->live != l || tp->removed)
			return;
	}
	if (rc < 0) {
		hw_log(HW_LOG_WARN, LOG, "transport %s: peer %s sent a "
		       "malformed packet; closing", tp->id_hex,
		       hw_conn_peer(c));
		hw_conn_close(c, rc, 0);
	}
}

static void on_detached(struct hw_conn *c, uint8_t *p, size_t n, void *ud)
{
	struct hw_tp_link *l = ud;
	struct hw_tp *tp = l->tp;
	struct hw_packet pkt = {.type = HW_PKT_DATA,
				.route_id = l->detached_route,
				.len = (uint16_t)n,
				.payload = p};

	if (!tp || tp->live != l) {
		hw_conn_close(c, 0, 0);
		return;
	}
	tp->rx_bytes += n;
	tp->rx_packets++;
	handle_packet(tp, &pkt);
}

static void on_drained(struct hw_conn *c, void *ud)
{
	struct hw_tp_link *l = ud;
	struct hw_tp *tp = l->tp;

	if (!tp || tp->live != l)
		return;
	if (tp->flood)
		flood_pump(tp);
	/* The flood may have filled the queue again, or ended the link. */
	if (tp->live == l && tp->m->p.on_room)
		tp->m->p.on_room(tp, tp->m->p.ud);
}

static const char *reason_text(int reason)
{
	if (reason == -ETIMEDOUT)
		return "timed out";
	return hw_strerror(reason);
}

static void on_closed(struct hw_conn *c, int reason, void *ud)
{
	struct hw_tp_link *l = ud;

	if (l->inbound_pending)
		hw_log(HW_LOG_WARN, LOG, "dropped connection from %s: "
		       "handshake failed: %s", hw_conn_peer(c)[0] ?
		       hw_conn_peer(c) : "?", reason_text(reason));
	link_gone(l, reason, NULL);
}

/* The link's connection (or the stream it was opening) is gone; msg
 * says why when the reason code alone would not. */
static void link_gone(struct hw_tp_link *l, int reason, const char *msg)
{
	struct hw_tp_manager *m = l->m;
	struct hw_tp *tp = l->tp;
	int dialed = 0;

	link_unlist(m, l);
	if (l->inbound_pending) {
		m->st.pending_handshakes--;
		m->st.handshakes_failed++;
	}
	free(l);
	if (!tp || m->closing) {
		manager_unref(m);
		return;
	}

	if (tp->dialing == l) {
		tp->dialing = NULL;
		dialed = 1;
		m->st.handshakes_failed++;
		snprintf(tp->last_error, sizeof(tp->last_error), "dial %s: %s",
			 tp->addr, msg ? msg : reason_text(reason));
		hw_log(HW_LOG_WARN, LOG, "transport %s: %s", tp->id_hex,
		       tp->last_error);
		finish_waiters(tp, reason ? reason : -ECONNABORTED,
			       tp->last_error);
	} else if (tp->live == l) {
		tp->live = NULL;
		snprintf(tp->last_error, sizeof(tp->last_error), "%s",
			 reason ? reason_text(reason) : "closed");
		hw_log(HW_LOG_INFO, LOG, "transport %s down: %s", tp->id_hex,
		       tp->last_error);
		finish_flood(tp, -ENOTCONN);
		fail_pings(m, tp, -ENOTCONN);
		/* Routes over it are broken now, whether or not it redials. */
		if (m->p.on_event)
			m->p.on_event(tp, HW_TP_DOWN, m->p.ud);
		/* Senders waiting for room learn from their next send. */
		if (m->p.on_room)
			m->p.on_room(tp, m->p.ud);
	} else {
		manager_unref(m);
		return;
	}
	if (tp->persistent && !tp->removed) {
		/* Only a failed dial asks where the peer went: a live
		 * connection that breaks is redialed at the same address
		 * first. */
		if (dialed)
			dial_failed(tp, reason ? reason : -ECONNABORTED);
		else
			schedule_redial(tp);
	} else if (!tp->live && !tp->dialing) {
		int was_persistent_removal = tp->removed;
		tp_destroy(tp);
		if (was_persistent_removal)
			save_state(m);
	}
	manager_unref(m);
}

static const struct hw_conn_ops conn_ops = {
	.ready = on_ready,
	.record = on_record,
	.detached = on_detached,
	.drained = on_drained,
	.closed = on_closed,
};

/* ---- keepalive tick ---- */

static void on_tick(uv_timer_t *t)
{
	struct hw_tp_manager *m = t->data;
	uint64_t now = now_ms(m);
	struct hw_tp *tp, *next;

	for (tp = m->tps; tp; tp = next) {
		next = tp->next;
		if (!tp->live)
			continue;
		/* Paused (backpressure): what the peer sent waits unread,
		 * so silence says nothing; whoever paused it resumes it
		 * soon (the router within a second). */
		if (tp->paused)
			tp->last_rx_ms = now;
		if (now - tp->last_rx_ms >=
		    (uint64_t)HW_TP_DEAD_INTERVALS * m->p.keepalive_ms) {
			hw_log(HW_LOG_WARN, LOG, "transport %s: nothing "
			       "received for %llu ms; declaring it dead",
			       tp->id_hex,
			       (unsigned long long)(now - tp->last_rx_ms));
			link_close(tp->live, -ETIMEDOUT, 0);
			continue;
		}
		/* Silent for two intervals: a PING, which any peer answers
		 * at once, whatever keepalive interval it runs with (one
		 * that keeps alive more slowly than we expect would
		 * otherwise be declared dead). */
		if (now - tp->last_rx_ms >=
			    (uint64_t)(HW_TP_DEAD_INTERVALS - 1) *
				    m->p.keepalive_ms &&
		    tp->probed_rx_ms != tp->last_rx_ms) {
			static const uint8_t probe[PING_PAYLOAD];

			tp->probed_rx_ms = tp->last_rx_ms;
			hw_tp_send(tp, HW_PKT_PING, 0, probe, sizeof(probe));
			continue;
		}
		if (now - tp->last_tx_ms >= m->p.keepalive_ms / 2)
			hw_tp_send(tp, HW_PKT_KEEPALIVE, 0, NULL, 0);
	}
	if (now - m->last_save_ms >= STATE_SAVE_MS)
		save_state(m);
}

/* ---- public ---- */

static int load_state(struct hw_tp_manager *m, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *list, *e;
	size_t i;

	m->saved_counters = json_object();
	if (!m->p.state_path || access(m->p.state_path, F_OK) != 0)
		return 0;
	root = json_load_file(m->p.state_path, 0, &jerr);
	if (!root) {
		/* A damaged state file must not keep the visor down. */
		hw_log(HW_LOG_WARN, LOG, "ignoring %s: line %d: %s",
		       m->p.state_path, jerr.line, jerr.text);
		return 0;
	}
	if (json_is_object(json_object_get(root, "counters"))) {
		json_decref(m->saved_counters);
		m->saved_counters =
			json_deep_copy(json_object_get(root, "counters"));
	}
	list = json_object_get(root, "persistent");
	json_array_foreach(list, i, e) {
		const char *pk = json_string_value(json_object_get(e, "pk"));
		const char *type =
			json_string_value(json_object_get(e, "type"));
		const char *addr =
			json_string_value(json_object_get(e, "addr"));
		uint8_t key[HW_PK_LEN];
		if (!pk || !type || !addr ||
		    hw_pk_parse(pk, strlen(pk), key) ||
		    hw_tp_manager_add(m, key, type, addr, 1, NULL, NULL, err,
				      errlen))
			hw_log(HW_LOG_WARN, LOG, "%s: skipping a bad "
			       "persistent entry", m->p.state_path);
	}
	json_decref(root);
	return 0;
}

int hw_tp_manager_new(struct hw_tp_manager **out,
		      const struct hw_tp_manager_params *p, char *err,
		      size_t errlen)
{
	struct hw_tp_manager *m = calloc(1, sizeof(*m));
	uint8_t xpub[32];
	int rc;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->p = *p;
	if ((rc = hw_identity_x25519(p->id, m->x_priv, xpub))) {
		snprintf(err, errlen, "%s", hw_strerror(rc));
		free(m);
		return rc;
	}
	m->cp.id = p->id;
	m->cp.x_priv = m->x_priv;
	m->cp.handshake_timeout_ms = p->handshake_timeout_ms;
	m->cp.ops = &conn_ops;
	m->last_save_ms = uv_now(p->loop);
	if (p->state_path &&
	    !(m->state = hw_statefile_new(p->loop, p->state_path))) {
		free(m);
		return -ENOMEM;
	}
	uv_timer_init(p->loop, &m->tick);
	m->tick.data = m;
	m->refs++;
	for (const struct hw_tp_type *const *t = hw_tp_types; *t; t++)
		if ((*t)->start && (rc = (*t)->start(m, err, errlen))) {
			hw_tp_manager_free(m);
			return rc;
		}
	uv_timer_start(&m->tick, on_tick, p->keepalive_ms / 2,
		       p->keepalive_ms / 2);
	load_state(m, err, errlen);
	m->state_loaded = 1;
	/* Borrowed from the caller for starting only: the state file writer keeps its
	 * own copy of the path. */
	m->p.state_path = NULL;
	m->p.tcp_listen = NULL;
	*out = m;
	return 0;
}

static void manager_handle_closed(uv_handle_t *h)
{
	manager_unref(h->data);
}

void hw_tp_manager_free(struct hw_tp_manager *m)
{
	if (!m)
		return;
	save_state(m);
	hw_statefile_free(m->state);
	m->state = NULL;
	m->closing = 1;
	m->refs++; /* held while closing everything below */
	fail_pings(m, NULL, -ECONNABORTED);
	while (m->tps)
		tp_destroy(m->tps);
	for (struct hw_tp_link *l = m->links, *next; l; l = next) {
		next = l->next;
		link_close(l, 0, 0);
	}
	uv_close((uv_handle_t *)&m->tick, manager_handle_closed);
	for (const struct hw_tp_type *const *t = hw_tp_types; *t; t++)
		if ((*t)->stop)
			(*t)->stop(m);
	manager_unref(m);
}

int hw_tp_manager_add(struct hw_tp_manager *m, const uint8_t pk[HW_PK_LEN],
		      const char *type, const char *addr, int persistent,
		      hw_tp_add_cb cb, void *ud, char *err, size_t errlen)
{
	const struct hw_tp_type *ops = hw_tp_type_find(type);
	struct add_waiter *w = NULL;
	struct hw_tp *tp;
	int rc, created = 0;

	if (!ops || (ops->available && !ops->available(m))) {
		char have[128] = "";
		size_t n = 0;
		for (const struct hw_tp_type *const *t = hw_tp_types; *t; t++)
			if (!(*t)->available || (*t)->available(m))
				n += (size_t)snprintf(have + n, sizeof(have) - n,
						      "%s%s", n ? ", " : "",
						      (*t)->name);
		snprintf(err, errlen, "transport type '%s' is not available "
			 "(this visor has: %s)", type, have);
		return -EINVAL;
	}
	if (!memcmp(pk, m->p.id->pk, HW_PK_LEN)) {
		snprintf(err, errlen, "that is this visor's own key");
		return -EINVAL;
	}
	if (!addr || !addr[0]) {
		snprintf(err, errlen, "a %s transport needs an address (%s)",
			 ops->name, ops->addr_form);
		return -EINVAL;
	}
	if (strlen(addr) >= sizeof(((struct hw_tp *)0)->addr)) {
		snprintf(err, errlen, "'%s' is not %s", addr, ops->addr_form);
		return -EINVAL;
	}
	if ((rc = ops->check_addr(m, pk, addr, err, errlen)))
		return rc;
	if (cb && !(w = calloc(1, sizeof(*w))))
		return -ENOMEM;
	tp = hw_tp_manager_find(m, pk, type);
	if (!tp) {
		if (!(tp = tp_new(m, pk, ops))) {
			free(w);
			return -ENOMEM;
		}
		created = 1;
	}
	if (!tp->live || created)
		snprintf(tp->addr, sizeof(tp->addr), "%s", addr);
	if (persistent && !tp->persistent) {
		tp->persistent = 1;
		save_state(m);
	}
	if (w) {
		w->cb = cb;
		w->ud = ud;
		w->next = tp->waiters;
		tp->waiters = w;
	}
	if (tp->live) {
		finish_waiters(tp, 0, NULL);
		return 0;
	}
	if (tp->dialing)
		return 0; /* the waiter rides on the dial under way */
	uv_timer_stop(&tp->redial);
	if ((rc = tp_dial(tp))) {
		char msg[400];
		snprintf(msg, sizeof(msg), "%s", tp->last_error);
		/* The waiters hear the dial's error, not the removal's. */
		finish_waiters(tp, rc, msg);
		if (tp->persistent)
			schedule_redial(tp);
		else
			tp_destroy(tp);
		snprintf(err, errlen, "%s", msg);
		return cb ? 0 : rc;
	}
	return 0;
}

int hw_tp_manager_remove(struct hw_tp_manager *m, const char *id_hex)
{
	struct hw_tp *tp = hw_tp_manager_find_id(m, id_hex);
	char pk[HW_PK_HEXLEN + 1];

	if (!tp)
		return -ENOENT;
	pk_hex(tp->pk, pk);
	hw_log(HW_LOG_INFO, LOG, "transport %s to %s removed", tp->id_hex, pk);
	if (tp->live) {
		struct hw_tp_link *l = tp->live;
		hw_tp_send(tp, HW_PKT_CLOSE, 0, NULL, 0);
		l->tp = NULL;
		tp->live = NULL;
		link_close(l, 0, 1);
	}
	tp->removed = 1;
	tp->persistent = 0;
	tp_destroy(tp);
	save_state(m);
	return 0;
}

struct hw_tp *hw_tp_manager_find(struct hw_tp_manager *m,
				 const uint8_t pk[HW_PK_LEN], const char *type)
{
	struct hw_tp *found = NULL;

	for (struct hw_tp *tp = m->tps; tp; tp = tp->next) {
		if (memcmp(tp->pk, pk, HW_PK_LEN) ||
		    (type && strcmp(tp->type, type)))
			continue;
		if (tp->live)
			return tp;
		if (!found)
			found = tp;
	}
	return found;
}

struct hw_tp *hw_tp_manager_find_id(struct hw_tp_manager *m,
				    const char *id_hex)
{
	for (struct hw_tp *tp = m->tps; tp; tp = tp->next)
		if (!strcmp(tp->id_hex, id_hex))
			return tp;
	return NULL;
}

const char *hw_tp_remote_addr(const struct hw_tp *tp)
{
	return tp->live ? tp->live->type->peer(tp->live) : "";
}

int hw_tp_is_initiator(const struct hw_tp *tp)
{
	return tp->live && link_is_dialer(tp->live);
}

void hw_tp_drop(struct hw_tp *tp, const char *why)
{
	if (!tp->live)
		return;
	hw_log(HW_LOG_WARN, LOG, "transport %s: closing its connection: %s",
	       tp->id_hex, why);
	snprintf(tp->last_error, sizeof(tp->last_error), "%s", why);
	link_close(tp->live, HW_EPROTO, 0);
}

json_t *hw_tp_to_json(const struct hw_tp *tp)
{
	char pk[HW_PK_HEXLEN + 1];
	const char *state = tp->live ? "up" : tp->dialing ? "dialing"
							  : "waiting";
	uint64_t now = uv_now(tp->m->p.loop);
	json_t *o;

	pk_hex(tp->pk, pk);
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:I}",
		      "id", tp->id_hex, "pk", pk, "type", tp->type, "state",
		      state, "addr", tp->addr, "persistent", tp->persistent,
		      "tx_bytes", (json_int_t)tp->tx_bytes, "rx_bytes",
		      (json_int_t)tp->rx_bytes, "tx_packets",
		      (json_int_t)tp->tx_packets, "rx_packets",
		      (json_int_t)tp->rx_packets);
	if (!o)
		return NULL;
	if (tp->live) {
		struct hw_tp_link *l = tp->live;
		json_object_set_new(o, "remote_addr",
				    json_string(l->type->peer(l)));
		json_object_set_new(o, "initiator",
				    json_boolean(link_is_dialer(l)));
		json_object_set_new(o, "up_ms",
				    json_integer((json_int_t)(
					    now - tp->up_since_ms)));
	}
	json_object_set_new(o, "rtt_ms",
			    tp->rtt_us < 0
				    ? json_null()
				    : json_real((double)tp->rtt_us / 1000.0));
	if (tp->last_error[0])
		json_object_set_new(o, "last_error",
				    json_string(tp->last_error));
	return o;
}

json_t *hw_tp_manager_list_json(struct hw_tp_manager *m)
{
	json_t *a = json_array();
	for (struct hw_tp *tp = m->tps; tp; tp = tp->next)
		json_array_append_new(a, hw_tp_to_json(tp));
	return a;
}

void hw_tp_manager_stats(const struct hw_tp_manager *m,
			 struct hw_tp_manager_stats *st)
{
	*st = m->st;
}

/* ---- what the manager offers the transport types (type.h) ---- */

const struct hw_tp_manager_params *
hw_tp_manager_params_of(const struct hw_tp_manager *m)
{
	return &m->p;
}

void **hw_tp_manager_type_slot(struct hw_tp_manager *m,
			       const struct hw_tp_type *type)
{
	size_t i = 0;

	while (hw_tp_types[i] != type)
		i++;
	/* types.c holds at most HW_TP_TYPES_MAX (checked there). */
	return &m->type_state[i];
}

void hw_tp_manager_hold(struct hw_tp_manager *m)
{
	m->refs++;
}

void hw_tp_manager_let_go(struct hw_tp_manager *m)
{
	manager_unref(m);
}

int hw_tp_manager_closing(const struct hw_tp_manager *m)
{
	return m->closing;
}

int hw_tp_manager_inbound_room(struct hw_tp_manager *m)
{
	if (m->closing)
		return 0;
	if (m->st.pending_handshakes >= m->p.max_pending_handshakes) {
		m->st.inbound_refused++;
		return 0;
	}
	return 1;
}

struct hw_tp_link *hw_tp_link_new(struct hw_tp_manager *m,
				  const struct hw_tp_type *type,
				  struct hw_tp *tp, int inbound)
{
	struct hw_tp_link *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->m = m;
	l->type = type;
	l->tp = tp;
	if (inbound) {
		l->inbound_pending = 1;
		m->st.pending_handshakes++;
	}
	l->next = m->links;
	m->links = l;
	m->refs++;
	return l;
}

void hw_tp_link_discard(struct hw_tp_link *l)
{
	struct hw_tp_manager *m = l->m;

	link_unlist(m, l);
	if (l->inbound_pending)
		m->st.pending_handshakes--;
	free(l);
	manager_unref(m);
}

void hw_tp_link_failed(struct hw_tp_link *l, int reason, const char *msg)
{
	link_gone(l, reason, msg);
}

void hw_tp_link_conn_params(struct hw_tp_link *l, struct hw_conn_params *p)
{
	*p = l->m->cp;
	p->prologue = l->type->prologue;
	p->ud = l;
}

void hw_tp_manager_redial_now(struct hw_tp_manager *m,
			      const struct hw_tp_type *type,
			      int (*match)(const char *addr, void *arg),
			      void *arg)
{
	for (struct hw_tp *tp = m->tps; tp; tp = tp->next) {
		if (tp->ops != type || tp->live || tp->dialing ||
		    tp->removed || !tp->persistent || !match(tp->addr, arg))
			continue;
		uv_timer_stop(&tp->redial);
		tp->attempts = 0;
		if (tp_dial(tp))
			schedule_redial(tp);
	}
}

/* ---- where a peer went (params.lookup) ---- */

static int is_wildcard_host(const char *host)
{
	return !host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
}

static int is_loopback_host(const char *host)
{
	return !strcmp(host, "localhost") || !strncmp(host, "127.", 4) ||
	       !strcmp(host, "::1");
}

/* Whether host:port is our own listener: the address it is bound to, or
 * a loopback address at its port when it is bound to a wildcard. */
static int is_own_addr(const struct hw_tp_manager *m, const char *host,
		       uint16_t port)
{
	const char *listen = hw_tp_manager_listen_addr(m);
	char lhost[HW_HOST_MAX];
	uint16_t lport;

	if (!listen[0] || hw_addr_split(listen, lhost, &lport) ||
	    lport != port)
		return 0;
	return !strcmp(host, lhost) ||
	       (is_wildcard_host(lhost) && is_loopback_host(host));
}

/* Why addr cannot be where the peer of tp is now (0: it can). The answer
 * comes from a peer-signed entry or a cache: hostile input. */
static int addr_unfit(struct hw_tp_manager *m, const struct hw_tp *tp,
		      const char *addr, char *why, size_t whylen)
{
	char host[HW_HOST_MAX];
	const char *hostport = addr, *at;
	uint8_t relay_pk[HW_PK_LEN];
	uint16_t port;
	size_t n;

	if (!addr || !(n = strlen(addr))) {
		snprintf(why, whylen, "an empty address");
		return -EINVAL;
	}
	if (n >= sizeof(tp->addr)) {
		snprintf(why, whylen, "an address of %zu bytes", n);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)addr[i] <= ' ' ||
		    (unsigned char)addr[i] >= 0x7f) {
			snprintf(why, whylen, "an address with a byte 0x%02x",
				 (unsigned char)addr[i]);
			return -EINVAL;
		}
	if (tp->ops->check_addr(m, tp->pk, addr, why, whylen))
		return -EINVAL;
	/* RELAY_PK@HOST:PORT: the relay must not be us either. */
	if ((at = strchr(addr, '@'))) {
		hostport = at + 1;
		if (!hw_pk_parse(addr, (size_t)(at - addr), relay_pk) &&
		    !memcmp(relay_pk, m->p.id->pk, HW_PK_LEN)) {
			snprintf(why, whylen, "'%s' names this visor as the "
				 "relay", addr);
			return -EINVAL;
		}
	}
	if (hw_addr_split(hostport, host, &port)) {
		snprintf(why, whylen, "'%s' is not %s", addr,
			 tp->ops->addr_form);
		return -EINVAL;
	}
	if (is_wildcard_host(host)) {
		snprintf(why, whylen, "'%s' is a wildcard address", addr);
		return -EINVAL;
	}
	if (is_own_addr(m, host, port)) {
		snprintf(why, whylen, "'%s' is this visor's own address",
			 addr);
		return -EINVAL;
	}
	return 0;
}

/* Adds what the lookup said to the dial error it followed. */
static void note_lookup(struct hw_tp *tp, const char *source,
			const char *what)
{
	size_t n = strlen(tp->last_error);

	if (n + 3 < sizeof(tp->last_error))
		snprintf(tp->last_error + n, sizeof(tp->last_error) - n,
			 "%s%s: %s", n ? "; " : "", source, what);
}

void hw_tp_manager_addr_found(struct hw_tp_manager *m,
			      const uint8_t pk[HW_PK_LEN], const char *type,
			      const char *source, int status,
			      const char *addr, const char *msg)
{
	struct hw_tp *tp = NULL;
	char pkh[HW_PK_HEXLEN + 1], why[400];
	int rc;

	if (m->closing)
		return;
	for (struct hw_tp *t = m->tps; t && !tp; t = t->next)
		if (!memcmp(t->pk, pk, HW_PK_LEN) && !strcmp(t->type, type) &&
		    !t->removed)
			tp = t;
	pk_hex(pk, pkh);
	/* Removed meanwhile, or never asked: a late answer is harmless. */
	if (!tp || !tp->lookup_pending) {
		hw_log(HW_LOG_DEBUG, LOG, "ignoring %s's answer for %s %s: "
		       "nothing asked", source, type, pkh);
		return;
	}
	tp->lookup_pending = 0;
	if (tp->live || !tp->persistent)
		return;
	/* Someone gave the transport another address since (tp add): the
	 * answer is about the one before, and theirs wins. */
	if (strcmp(tp->addr, tp->lookup_for)) {
		hw_log(HW_LOG_DEBUG, LOG, "transport %s: ignoring %s's answer "
		       "about %s, the address before", tp->id_hex, source,
		       tp->lookup_for);
		return;
	}
	if (status) {
		snprintf(why, sizeof(why), "%s",
			 msg ? msg : hw_strerror(status));
		hw_log(HW_LOG_INFO, LOG, "transport %s: %s has no address "
		       "for %s: %s", tp->id_hex, source, pkh, why);
		note_lookup(tp, source, why);
		return;
	}
	if (addr_unfit(m, tp, addr, why, sizeof(why))) {
		hw_log(HW_LOG_WARN, LOG, "transport %s: ignoring %s's address "
		       "for %s: %s", tp->id_hex, source, pkh, why);
		note_lookup(tp, source, why);
		return;
	}
	if (!strcmp(addr, tp->addr)) {
		hw_log(HW_LOG_DEBUG, LOG, "transport %s: %s has the same "
		       "address %s", tp->id_hex, source, addr);
		note_lookup(tp, source, "the same address");
		return;
	}
	hw_log(HW_LOG_INFO, LOG, "transport %s: %s moved from %s to %s (%s)",
	       tp->id_hex, pkh, tp->addr, addr, source);
	snprintf(tp->addr, sizeof(tp->addr), "%s", addr);
	save_state(m);
	if (tp->dialing) {
		/* Still trying the old address: let that dial go. */
		struct hw_tp_link *l = tp->dialing;
		tp->dialing = NULL;
		l->tp = NULL;
		link_close(l, 0, 0);
	}
	uv_timer_stop(&tp->redial);
	tp->attempts = 0;
	if ((rc = tp_dial(tp))) {
		hw_log(HW_LOG_WARN, LOG, "transport %s: %s", tp->id_hex,
		       tp->last_error);
		dial_failed(tp, rc);
	}
}

int hw_tp_conn_send_fill(struct hw_tp_link *l, const uint8_t *hdr,
			 size_t hlen, size_t plen, int detached,
			 hw_conn_fill_fn fill, void *arg, size_t max_queued)
{
	return hw_conn_send_fill_max(l->conn, hdr, hlen, plen, detached, fill,
				     arg, max_queued);
}

int hw_tp_conn_congested(struct hw_tp_link *l)
{
	return hw_conn_congested(l->conn);
}

void hw_tp_conn_pause(struct hw_tp_link *l, int paused)
{
	hw_conn_pause(l->conn, paused);
}

int hw_tp_conn_is_dialer(const struct hw_tp_link *l)
{
	return hw_conn_is_dialer(l->conn);
}

const char *hw_tp_conn_peer(const struct hw_tp_link *l)
{
	return hw_conn_peer(l->conn);
}
