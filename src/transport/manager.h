/* The transport manager: every transport of a visor.
 *
 * A transport is an authenticated, encrypted link to one remote visor,
 * named by an ID both ends derive from the two public keys and the type.
 * The manager keeps the table of transports whatever their type: it sends
 * keepalives and declares a silent transport dead, re-dials persistent
 * transports with exponential backoff and jitter, answers pings, keeps
 * per-transport counters, and stores persistent transports and counters
 * in a state file so both survive restarts. The types themselves (how a
 * link is dialed, accepted and carried: tcp, relay) are op tables,
 * transport/type.h, registered in transport/types.c.
 *
 * Everything runs on one libuv loop; nothing here blocks it (the state file
 * is written from the thread pool). */
#ifndef HW_TRANSPORT_MANAGER_H
#define HW_TRANSPORT_MANAGER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"
#include "transport/conn.h"
#include "wire/packet.h"
#include "wire/tpid.h"

/* Prologues of the visor-to-visor handshakes, per transport type. */
#define HW_TP_TCP_PROLOGUE "hopwire/1 transport tcp"
#define HW_TP_RELAY_PROLOGUE "hopwire/1 transport relay"
/* Silent keepalive intervals after which a transport is dead. */
#define HW_TP_DEAD_INTERVALS 3

struct hw_tp_manager;
struct hw_tp;
struct hw_relay_client;

/* UP: a connection is live; DOWN: it went away and the transport stays
 * (persistent: it redials); REMOVED: the transport left the table. */
enum hw_tp_event { HW_TP_UP, HW_TP_DOWN, HW_TP_REMOVED };

struct hw_tp_manager_params {
	uv_loop_t *loop;
	const struct hw_identity *id;
	/* Read while hw_tp_manager_new runs only; need not outlive it. */
	const char *tcp_listen; /* HOST:PORT, "" for none */
	const char *state_path; /* NULL: nothing persisted */
	unsigned keepalive_ms;
	unsigned handshake_timeout_ms;
	unsigned max_pending_handshakes;
	unsigned redial_min_ms, redial_max_ms;
	/* Relay transports go through these sessions (owned by the caller,
	 * freed after the manager); NULL: tcp transports only. */
	struct hw_relay_client *relays;
	/* Data, handshake and error packets for the router, setup and mesh
	 * messages (route 0); NULL drops and counts them. */
	void (*on_packet)(struct hw_tp *tp, const struct hw_packet *pkt,
			  void *ud);
	/* A transport came up, or left the table (removed here or by the
	 * peer, or a transport that is not persistent went down). May be
	 * NULL. */
	void (*on_event)(struct hw_tp *tp, enum hw_tp_event ev, void *ud);
	/* Room again: a send on tp that failed with -ENOBUFS would not fail
	 * that way now, because the queue drained below its low-water
	 * mark, a new connection took over, or the transport went down
	 * (the send then says -ENOTCONN). May be NULL. */
	void (*on_room)(struct hw_tp *tp, void *ud);
	/* Asks where pk is reachable now for a transport of type: a
	 * persistent transport's dial at its saved address failed. The
	 * answer comes later through hw_tp_manager_addr_found (or never);
	 * at most one question per transport is out at a time, and at
	 * most one is asked per failed dial. Returns 0 when the question
	 * is out, or a negative code (nothing to answer then). NULL: no
	 * lookups, the saved address is redialed with backoff. */
	int (*lookup)(const uint8_t pk[HW_PK_LEN], const char *type,
		      void *ud);
	void *ud;
};

/* Creates the manager, loads the state file and binds the listener.
 * Returns 0, or a negative code with a message in err. */
int hw_tp_manager_new(struct hw_tp_manager **out,
		      const struct hw_tp_manager_params *p, char *err,
		      size_t errlen);

/* Closes every transport and the listener and writes the state file; the
 * loop must run on until the handles are closed (the memory goes with
 * them). Accepts NULL. */
void hw_tp_manager_free(struct hw_tp_manager *m);

/* The address the listener is bound to ("" when none). */
const char *hw_tp_manager_listen_addr(const struct hw_tp_manager *m);

/* Called when an add finishes: tp on success (status 0), or NULL with a
 * negative status and a message. */
typedef void (*hw_tp_add_cb)(struct hw_tp_manager *m, struct hw_tp *tp,
			     int status, const char *msg, void *ud);

/* Adds a transport to pk of type at addr: "tcp" at HOST:PORT, or "relay"
 * through the relay RELAY_PK@HOST:PORT (64 hex digits, '@', its address);
 * persistent
 * ones are stored and re-dialed whenever they fail. An existing transport
 * to pk completes at once. Bad arguments return -EINVAL with a message in
 * err and never reach cb. Past those checks, with a cb every outcome
 * reaches it (maybe before this returns) and the return is 0; without one
 * a dial that cannot start returns its error with a message in err. */
int hw_tp_manager_add(struct hw_tp_manager *m, const uint8_t pk[HW_PK_LEN],
		      const char *type, const char *addr, int persistent,
		      hw_tp_add_cb cb, void *ud, char *err, size_t errlen);

/* The answer to a lookup for the transport to pk of type: status 0 and
 * addr where the peer is now, or a negative status and msg (may be NULL)
 * saying why there is none; source names where the answer comes from
 * ("discovery"), for the logs. An address that differs from the saved one
 * replaces it (state file too) and is dialed at once; the same address,
 * an error, or an address that cannot be right (malformed, a wildcard,
 * this visor's own) leaves the backoff going. An answer nobody is
 * waiting for (the transport was removed or is up) is ignored. */
void hw_tp_manager_addr_found(struct hw_tp_manager *m,
			      const uint8_t pk[HW_PK_LEN], const char *type,
			      const char *source, int status,
			      const char *addr, const char *msg);

/* Removes transport id: tells the peer (CLOSE), closes, forgets it and its
 * persistence. Returns 0 or -ENOENT. */
int hw_tp_manager_remove(struct hw_tp_manager *m, const char *id_hex);

/* The transport to pk of type (NULL: any type, a live one first); NULL
 * when absent. */
struct hw_tp *hw_tp_manager_find(struct hw_tp_manager *m,
				 const uint8_t pk[HW_PK_LEN], const char *type);
/* The transport with ID id_hex; NULL when absent. */
struct hw_tp *hw_tp_manager_find_id(struct hw_tp_manager *m,
				    const char *id_hex);

/* The transports as a JSON array (new reference). */
json_t *hw_tp_manager_list_json(struct hw_tp_manager *m);

/* One transport as a JSON object (new reference). */
json_t *hw_tp_to_json(const struct hw_tp *tp);

/* Whether tp has a live connection. */
int hw_tp_is_up(const struct hw_tp *tp);
const char *hw_tp_id_hex(const struct hw_tp *tp);
const uint8_t *hw_tp_id_bytes(const struct hw_tp *tp);
const uint8_t *hw_tp_pk(const struct hw_tp *tp);
const char *hw_tp_type(const struct hw_tp *tp);
/* The live connection's remote end (tcp: "IP:PORT"; relay: the
 * relay's key), "" when down. */
const char *hw_tp_remote_addr(const struct hw_tp *tp);
/* Whether this visor dialed the live connection (0 when down). */
int hw_tp_is_initiator(const struct hw_tp *tp);
/* Closes tp's live connection because its peer broke a protocol above
 * the transport (why goes to the log and last_error); a persistent
 * transport redials as after any failure. */
void hw_tp_drop(struct hw_tp *tp, const char *why);
/* The last measured round trip in microseconds, -1 when none. */
int64_t hw_tp_rtt_us(const struct hw_tp *tp);

/* Sends a packet on tp. Returns 0, -ENOTCONN, -ENOBUFS (queue full). */
int hw_tp_send(struct hw_tp *tp, uint8_t type, uint32_t route_id,
	       const uint8_t *payload, uint16_t len);

/* The same, with the payload written in place by fill (hw_conn_send_fill):
 * or fill's error. */
int hw_tp_send_fill(struct hw_tp *tp, uint8_t type, uint32_t route_id,
		    uint16_t len, hw_conn_fill_fn fill, void *arg);

/* Forwards a packet that arrived on another transport (a hop's
 * INTERMEDIARY rule): like hw_tp_send, but -ENOBUFS only past
 * HW_CONN_FORWARD_MAX queued bytes, since the forwarder pauses what
 * feeds tp once hw_tp_congested says so. */
int hw_tp_forward(struct hw_tp *tp, uint8_t type, uint32_t route_id,
		  const uint8_t *payload, uint16_t len);

/* Whether tp's queue is at or over its high-water mark
 * (HW_CONN_MAX_QUEUED); when it is, on_room follows once it drained
 * below the low-water mark (or the transport went down). 0 when down. */
int hw_tp_congested(struct hw_tp *tp);

/* Bytes queued on tp's live connection (0 when down). */
size_t hw_tp_queued(const struct hw_tp *tp);

/* Pauses (1) or resumes (0) reading tp: no packet of it reaches
 * on_packet while paused, and its peer is held back by TCP's flow
 * control (a relay transport: the relay stream's credit). A connection
 * that replaces tp's live one starts paused too. While paused, silence
 * does not count against the transport's liveness, so whoever pauses
 * must resume within a keepalive interval or so. Packets read before the
 * pause reach on_packet on resume, maybe before this returns. */
void hw_tp_pause(struct hw_tp *tp, int paused);
int hw_tp_is_paused(const struct hw_tp *tp);

/* Measures one round trip over tp: cb gets the RTT in microseconds, or a
 * negative status (-ETIMEDOUT after timeout_ms, -ENOTCONN when the
 * transport went down). Returns 0 or a negative code. */
typedef void (*hw_tp_ping_cb)(struct hw_tp_manager *m, int64_t rtt_us,
			      void *ud);
int hw_tp_ping(struct hw_tp *tp, unsigned timeout_ms, hw_tp_ping_cb cb,
	       void *ud);

/* Sends bytes of data packets of pkt_size on tp to route 0 (which the peer
 * drops and counts), then a ping; cb gets the time from the first packet
 * to the pong in microseconds, or a negative status. One at a time per
 * transport (-EBUSY). */
int hw_tp_throughput(struct hw_tp *tp, uint64_t bytes, unsigned pkt_size,
		     hw_tp_ping_cb cb, void *ud);

/* Counters of the whole manager. */
struct hw_tp_manager_stats {
	uint64_t dropped_packets;   /* route-0 data (tp throughput), or route
				       packets with no router attached */
	uint64_t handshakes_failed; /* inbound and outbound */
	uint64_t inbound_refused;   /* over max_pending_handshakes */
	unsigned pending_handshakes;
};
void hw_tp_manager_stats(const struct hw_tp_manager *m,
			 struct hw_tp_manager_stats *st);

#endif
