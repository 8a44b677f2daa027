/* The router: a visor's rule table and the forwarding hot path
 * (docs/routing.md).
 *
 * Rules are keyed by local route IDs, which are random, non-zero and never
 * one that is live, so they cannot be guessed or predicted. IDs are first
 * reserved (by a setup node), then get a rule; a reservation without a rule
 * lapses. A rule that carries no packet for its keepalive period expires.
 *
 * Forwarding looks the ID up, checks the packet came on the rule's
 * previous transport, rewrites the ID and sends on the rule's next
 * transport, without allocating. A packet for an unknown ID, or from the
 * wrong transport, is dropped and counted. The router does not know the
 * transport types: it sends through hw_tp_send on the rule's transport,
 * and a sender that found the transport full waits for its room-again
 * signal (hw_router_wait_room).
 *
 * Backpressure: a packet an INTERMEDIARY rule forwards never meets a full
 * queue at the high-water mark (hw_tp_forward); instead, when the next
 * transport is over that mark, the transport the packet came on is
 * paused (hw_tp_pause) until the next one drained below its low-water
 * mark (hw_router_tp_room), so TCP's flow control holds the sender back
 * and nothing is lost (docs/routing.md, "Backpressure"). */
#ifndef HW_ROUTER_ROUTER_H
#define HW_ROUTER_ROUTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"
#include "transport/manager.h"
#include "wire/packet.h"

enum hw_rule_kind {
	HW_RULE_CONSUME = 1,
	HW_RULE_FORWARD = 2,
	HW_RULE_INTERMEDIARY = 3,
};

#define HW_RULE_ENC_LEN 113
#define HW_RULE_KEEPALIVE_MIN_MS 1000
#define HW_RULE_KEEPALIVE_MAX_MS 3600000
/* A reserved ID that gets no rule within this long is released. */
#define HW_ROUTER_RESERVE_MS 10000
/* A transport paused for backpressure reads again after this long even
 * when the one it feeds has not drained (checked every 500 ms), so hops
 * that feed each other never wait on each other for good. */
#define HW_ROUTER_PAUSE_MAX_MS 500

/* The two ends of a route group. */
struct hw_route_desc {
	uint8_t src_pk[HW_PK_LEN];
	uint16_t src_port;
	uint8_t dst_pk[HW_PK_LEN];
	uint16_t dst_port;
};

struct hw_rule {
	uint32_t id;
	enum hw_rule_kind kind;
	uint32_t keepalive_ms;
	/* CONSUME, INTERMEDIARY: the transport its packets must come on. */
	uint8_t prev_tp[HW_TP_ID_LEN];
	uint32_t next_id;               /* FORWARD, INTERMEDIARY */
	uint8_t next_tp[HW_TP_ID_LEN];  /* FORWARD, INTERMEDIARY */
	struct hw_route_desc desc;      /* CONSUME, FORWARD */
};

/* The fixed 113-byte encoding of docs/routing.md. */
void hw_rule_encode(const struct hw_rule *r, uint8_t out[HW_RULE_ENC_LEN]);

/* Decodes and checks one rule. Returns 0 or HW_EPROTO. */
int hw_rule_decode(const uint8_t *in, size_t len, struct hw_rule *r);

struct hw_router;

struct hw_router_params {
	uv_loop_t *loop;
	struct hw_tp_manager *tpm;
	/* A packet arrived for a CONSUME rule (rule_id): DATA, CLOSE,
	 * KEEPALIVE, HANDSHAKE, ERROR or ROUTE_FAIL with its payload; or a
	 * ROUTE_FAIL_BACK for a FORWARD rule (rule_id), from its next hop.
	 * A route failure is a hint from a hop on the route (nobody else
	 * can send one), at most one per rule a second. */
	void (*deliver)(struct hw_router *r, uint32_t rule_id,
			const struct hw_packet *pkt, void *ud);
	/* A rule expired or lost its transport (reason); it is gone when
	 * this is called. May be NULL. */
	void (*rule_gone)(struct hw_router *r, const struct hw_rule *rule,
			  int reason, void *ud);
	void *ud;
};

int hw_router_new(struct hw_router **out, const struct hw_router_params *p);

/* Frees the table (no callbacks); the loop must run on until its timer
 * closed. Accepts NULL. */
void hw_router_free(struct hw_router *r);

/* Reserves n (1..16) fresh IDs into ids. Returns 0, or -ENOSPC when the
 * table is at its limit. */
int hw_router_reserve(struct hw_router *r, unsigned n, uint32_t *ids);

/* Installs a rule on a reserved ID. Returns 0, -ENOENT when the ID is not
 * reserved, -ENOTCONN when next_tp is not a transport of this visor
 * (prev_tp or next_tp not a transport of this visor), -EINVAL for a bad
 * rule. */
int hw_router_add(struct hw_router *r, const struct hw_rule *rule);

/* Removes a rule or releases a reservation. Returns 0 or -ENOENT. */
int hw_router_remove(struct hw_router *r, uint32_t id);

/* The rule with id, or NULL. */
const struct hw_rule *hw_router_find(const struct hw_router *r, uint32_t id);

/* Every packet with a non-zero route ID from the transport manager. */
void hw_router_on_packet(struct hw_router *r, struct hw_tp *tp,
			 const struct hw_packet *pkt);

/* Sends a packet of type on the FORWARD rule id. Returns 0, -ENOENT (no
 * such rule), -ENOTCONN (its transport is down), -ENOBUFS (queue full). */
int hw_router_send(struct hw_router *r, uint32_t id, uint8_t type,
		   const uint8_t *payload, uint16_t len);

/* The same, with the payload written in place by fill, straight into the
 * transport's outgoing buffer (hw_conn_send_fill): or fill's error, and
 * fill is not called when the send fails before it. */
int hw_router_send_fill(struct hw_router *r, uint32_t id, uint8_t type,
			uint16_t len, hw_conn_fill_fn fill, void *arg);

/* A transport went down or left the table: its rules are removed
 * (rule_gone with -ENOTCONN), the other hops of every route through it
 * told (a ROUTE_FAIL along the route from a rule that still has its next
 * hop, a ROUTE_FAIL_BACK from one that still has its previous hop), and
 * whoever waits for room on it is woken; it is resumed when paused, and
 * the transports paused for it read again. */
void hw_router_tp_removed(struct hw_router *r, struct hw_tp *tp);

/* Waiting for room: a sender whose hw_router_send failed with -ENOBUFS
 * waits on the rule's transport instead of retrying on a timer. The
 * caller owns the waiter and sets cb and ud once; the rest is the
 * router's. */
struct hw_router_waiter {
	struct hw_router_waiter *next, **pprev; /* pprev NULL: not waiting */
	struct hw_tp *tp;
	/* Embed the waiter; the callback finds its owner with
	 * HW_CONTAINER_OF (util/container.h). */
	void (*cb)(struct hw_router_waiter *w);
};

/* Waits for room on the transport of FORWARD rule id: cb runs once, from
 * hw_router_tp_room or hw_router_tp_removed, when that transport's queue
 * drained or the transport went down or away (the next send tells
 * which). Returns 0 (also when w is waiting already) or -ENOENT. */
int hw_router_wait_room(struct hw_router *r, uint32_t id,
			struct hw_router_waiter *w);

/* Stops waiting (nothing when w is not waiting). Safe after
 * hw_router_free. */
void hw_router_unwait(struct hw_router_waiter *w);

/* The transport manager's room-again signal for tp: wakes its waiters,
 * oldest first, then lets the transports paused because tp was
 * congested read again. */
void hw_router_tp_room(struct hw_router *r, struct hw_tp *tp);

/* The rules as a JSON array: id, kind ("consume", "forward",
 * "intermediary"), transport, next_id, age_ms, idle_ms, bytes, packets,
 * and the descriptor where the rule has one (new reference). */
json_t *hw_router_rules_json(const struct hw_router *r);

struct hw_router_stats {
	uint64_t forwarded, delivered, dropped_unknown, dropped_wrong_tp,
		dropped_down;
	/* Backpressure: transports paused because a rule forwarded their
	 * packets to a congested one, and resumed after
	 * HW_ROUTER_PAUSE_MAX_MS although it had not drained; forwarded
	 * packets lost because even HW_CONN_FORWARD_MAX was queued. */
	uint64_t pauses, pauses_forced, dropped_full;
	unsigned paused; /* transports paused now */
	/* Route failures sent or passed on; and not passed on because the
	 * rule passed one on less than a second before. */
	uint64_t failures_sent, failures_limited;
	unsigned rules, reserved;
};
void hw_router_stats(const struct hw_router *r, struct hw_router_stats *st);

#endif
