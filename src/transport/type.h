/* Transport types: what one kind of transport implements, and what the
 * transport manager offers it in return.
 *
 * The manager does everything that is the same for every type: the table
 * of transports and their IDs, choosing between crossing connections,
 * keepalives and liveness, re-dial with backoff, pings, counters, the
 * state file, and the packets. A type only makes links, each one
 * connection to one remote visor, and carries them: it dials an address,
 * accepts what arrives through its own listener (tcp) or through someone
 * else's (relay: the relay client hands over streams), and sends and
 * closes on a link.
 *
 * Today both types run a Noise XK stream (transport/conn.h) over their
 * byte stream, so their link operations are the shared hw_tp_conn_*
 * below, and a link's events (handshake done, records, room again,
 * closed) reach the manager through the connection's callbacks, which
 * hw_tp_link_conn_params sets up.
 *
 * Adding a type: one file src/transport/NAME.c defining
 * `const struct hw_tp_type hw_tp_type_NAME`, and one line X(NAME) in
 * types.c. */
#ifndef HW_TRANSPORT_TYPE_H
#define HW_TRANSPORT_TYPE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"
#include "transport/conn.h"
#include "transport/manager.h"

struct hw_tp_type;

/* One connection of a transport (or one on its way to becoming one). The
 * manager owns it; the type fills in conn, and may keep its own state in
 * priv. */
struct hw_tp_link {
	struct hw_tp_link *next;
	struct hw_tp_manager *m;
	const struct hw_tp_type *type;
	struct hw_tp *tp; /* NULL: an inbound handshake, or let go */
	struct hw_conn *conn; /* NULL while a relay stream is opening */
	void *priv;
	int inbound_pending;
	uint32_t detached_route; /* the route of the payload announced */
};

struct hw_tp_type {
	const char *name;     /* "tcp": in transport IDs, configs, the API */
	const char *prologue; /* of its Noise handshakes (docs/transport.md) */
	const char *addr_form; /* what an address looks like, for messages */

	/* Sets up what the type needs on a new manager (tcp: its listener).
	 * Returns 0, or a negative code with a message in err. NULL: nothing
	 * to set up. */
	int (*start)(struct hw_tp_manager *m, char *err, size_t errlen);
	/* Closes what start set up; the manager is being freed. */
	void (*stop)(struct hw_tp_manager *m);
	/* Whether this manager can make transports of the type (relay:
	 * only with a relay client). NULL: always. */
	int (*available)(const struct hw_tp_manager *m);
	/* Checks addr for a transport to pk: 0, or -EINVAL with a message
	 * in err. */
	int (*check_addr)(const struct hw_tp_manager *m,
			  const uint8_t pk[HW_PK_LEN], const char *addr,
			  char *err, size_t errlen);
	/* Starts dialing pk at addr on link l: l->conn is set now, or later
	 * (hw_tp_link_failed when that fails). Returns 0 or a negative
	 * code (l is then the caller's to free). */
	int (*dial)(struct hw_tp_link *l, const uint8_t pk[HW_PK_LEN],
		    const char *addr);

	/* Link operations. */
	/* Appends one packet (hw_conn_send_fill_max's contract: -ENOBUFS
	 * once max_queued bytes wait). */
	int (*send_fill)(struct hw_tp_link *l, const uint8_t *hdr,
			 size_t hlen, size_t plen, int detached,
			 hw_conn_fill_fn fill, void *arg, size_t max_queued);
	/* Whether the link's queue is over its high-water mark; if so the
	 * link's drained callback follows (hw_conn_congested). */
	int (*congested)(struct hw_tp_link *l);
	/* Pauses (1) or resumes (0) reading the link (hw_conn_pause). */
	void (*pause)(struct hw_tp_link *l, int paused);
	/* Closes the link, or aborts its dial: the manager hears of it
	 * once (through the connection's closed, or hw_tp_link_failed). */
	void (*close)(struct hw_tp_link *l, int reason, int graceful);
	/* Whether we dialed the link. */
	int (*is_dialer)(const struct hw_tp_link *l);
	/* The remote end for logs and listings ("ip:port", "relay 1a2b..."). */
	const char *(*peer)(const struct hw_tp_link *l);
};

/* The registered types, NULL-terminated (types.c), at most
 * HW_TP_TYPES_MAX. */
#define HW_TP_TYPES_MAX 8
extern const struct hw_tp_type *const hw_tp_types[];
/* The type named name, or NULL. */
const struct hw_tp_type *hw_tp_type_find(const char *name);

/* ---- what the manager offers a type ---- */

/* The manager's params (tcp_listen and state_path only while
 * hw_tp_manager_new runs). */
const struct hw_tp_manager_params *
hw_tp_manager_params_of(const struct hw_tp_manager *m);
/* The type's slot for its own state on this manager (NULL at first). */
void **hw_tp_manager_type_slot(struct hw_tp_manager *m,
			       const struct hw_tp_type *type);
/* A handle or request of the type holds the manager: its memory stays
 * until the last hold is let go after hw_tp_manager_free. */
void hw_tp_manager_hold(struct hw_tp_manager *m);
void hw_tp_manager_let_go(struct hw_tp_manager *m);

/* Whether an inbound link may start: not when the manager is closing or
 * has max_pending_handshakes unfinished (then a refusal is counted). */
int hw_tp_manager_inbound_room(struct hw_tp_manager *m);
/* A new link of type for tp, listed in the manager; NULL when out of
 * memory. inbound: it counts as a pending handshake until ready. */
struct hw_tp_link *hw_tp_link_new(struct hw_tp_manager *m,
				  const struct hw_tp_type *type,
				  struct hw_tp *tp, int inbound);
/* Undoes hw_tp_link_new for a link that never got going (no callback
 * reached the manager): unlisted and freed. */
void hw_tp_link_discard(struct hw_tp_link *l);
/* A link without a connection yet failed (msg: why, when the code alone
 * would not tell); it is freed. */
void hw_tp_link_failed(struct hw_tp_link *l, int reason, const char *msg);
/* Parameters for the link's hw_conn: the manager's identity, the type's
 * prologue, and callbacks that report to the manager. */
void hw_tp_link_conn_params(struct hw_tp_link *l, struct hw_conn_params *p);
/* Whether the manager is being freed. */
int hw_tp_manager_closing(const struct hw_tp_manager *m);
/* Re-dials now, without waiting out the backoff, every persistent
 * transport of type that is down and whose address match accepts. */
void hw_tp_manager_redial_now(struct hw_tp_manager *m,
			      const struct hw_tp_type *type,
			      int (*match)(const char *addr, void *arg),
			      void *arg);

/* Link operations for links that are an hw_conn (tcp, relay). */
int hw_tp_conn_send_fill(struct hw_tp_link *l, const uint8_t *hdr,
			 size_t hlen, size_t plen, int detached,
			 hw_conn_fill_fn fill, void *arg, size_t max_queued);
int hw_tp_conn_congested(struct hw_tp_link *l);
void hw_tp_conn_pause(struct hw_tp_link *l, int paused);
int hw_tp_conn_is_dialer(const struct hw_tp_link *l);
const char *hw_tp_conn_peer(const struct hw_tp_link *l);

#endif
