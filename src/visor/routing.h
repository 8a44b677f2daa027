/* The visor's routing (docs/routing.md): its router, what it answers to
 * trusted setup nodes, the routes it builds as a source, the route groups
 * at its ends, and the stream socket through which local programs (the
 * CLI's `route listen` and `route dial`) read and write route groups.
 *
 * Stream socket (LOCAL_DIR/streams.sock, 0600): a client sends one line of
 * JSON, {"op": "listen", "port": N} or {"op": "dial", "pk": HEX, "port":
 * N, "via": [HEX, ...]} ("via": the hops between, for source routing),
 * and gets lines back: {"error": "..."} ends it; dial answers {"ok": true,
 * "connected": "PK:PORT"} once the group is up; listen answers {"ok": true,
 * "listening": PORT} at once and {"ok": true, "accepted": "PK:PORT"} when a
 * group arrives. After the "connected" or "accepted" line the connection
 * carries the route group's bytes both ways. Closing either side closes
 * the other. */
#ifndef HW_VISOR_ROUTING_H
#define HW_VISOR_ROUTING_H

#include <jansson.h>
#include <stddef.h>

#include <uv.h>

#include "crypto/identity.h"
#include "router/router.h"
#include "transport/manager.h"
#include "wire/packet.h"

struct hw_routing;
struct hw_disc_client;

/* Trusted setup nodes at most (the config's routing.setup_nodes). */
#define HW_ROUTING_SETUP_NODES_MAX 16

/* How a visor is reached: status 0 with a transport type and address, or
 * a negative status and a message (as hw_presence_resolve answers). */
typedef void (*hw_routing_resolve_cb)(int status, const char *type,
				      const char *addr, const char *msg,
				      void *cb_ud);

/* What routing needs from the rest of the visor; ud is the params' ud. */
struct hw_routing_ops {
	/* Finds how to reach pk (a setup node) and calls cb once, later.
	 * Returns 0, or a negative code (cb is not called). */
	int (*resolve)(void *ud, const uint8_t pk[HW_PK_LEN],
		       hw_routing_resolve_cb cb, void *cb_ud);
	/* The discovery client for the route finder's paths, or NULL
	 * without discovery. */
	struct hw_disc_client *(*discovery)(void *ud);
};

struct hw_routing_params {
	uv_loop_t *loop;
	/* The visor's identity and its X25519 key (hw_identity_x25519) and
	 * its transport manager: must outlive routing. */
	const struct hw_identity *id;
	const uint8_t *x_priv;
	struct hw_tp_manager *tpm;
	/* Copied: the setup nodes trusted to set rules here and the first
	 * one to build routes with (routing.setup_nodes). */
	const uint8_t (*setup_nodes)[HW_PK_LEN];
	unsigned nsetup_nodes; /* at most HW_ROUTING_SETUP_NODES_MAX */
	unsigned keepalive_ms; /* the transports' (transport.keepalive_ms) */
	const char *local_dir; /* the stream socket goes here */
	const char *tap_file;  /* routing.tap_file: NULL or "" for none */
	unsigned heal_ms;      /* routing.heal_timeout_ms */
	const struct hw_routing_ops *ops;
	void *ud;
};

/* ---- route ends for the app server ----
 *
 * A route end is one route group at this visor, driven through ops
 * instead of the stream socket: the app server's loops. */
struct hw_route_end;

struct hw_route_end_ops {
	/* The group is up (end-to-end handshake done); e is valid until
	 * closed is called or hw_route_end_close returns. */
	void (*ready)(void *ud, struct hw_route_end *e);
	/* Stream bytes from the far end (only while no descriptor is
	 * attached with hw_route_end_pipe). Give their credit back with
	 * hw_route_end_consumed once they are taken. */
	void (*data)(void *ud, const uint8_t *p, size_t len);
	/* A write that returned -ENOBUFS may be retried. */
	void (*writable)(void *ud);
	/* The dial failed (msg says why) or the group ended (reason, 0 for
	 * an acknowledged close); called once, never after
	 * hw_route_end_close. */
	void (*closed)(void *ud, int reason, const char *msg);
};

/* Who takes incoming groups for a port that no stream-socket client
 * listens on: returns 0 and sets *ops and *ud to accept it (ready comes
 * once the handshake is done), or -ENOENT / another negative code with a
 * reason in msg (sent back to the dialer). */
typedef int (*hw_routing_incoming_fn)(void *hook_ud,
				      const struct hw_route_desc *d,
				      const struct hw_route_end_ops **ops,
				      void **ud, char *msg, size_t msglen);

/* Sets the hook for incoming groups (one; NULL removes it). */
void hw_routing_set_incoming(struct hw_routing *rt, hw_routing_incoming_fn fn,
			     void *hook_ud);

/* Dials port at pk from local port src_port (hw_routing_ephemeral_port)
 * over a route from discovery's route finder. Returns 0, and later ready
 * or closed (with the reason) is called; or a negative code with a
 * message in err (nothing is called back). */
int hw_routing_dial(struct hw_routing *rt, const uint8_t pk[HW_PK_LEN],
		    uint16_t port, uint16_t src_port,
		    const struct hw_route_end_ops *ops, void *ud, char *err,
		    size_t errlen);

/* Cancels a dial that has not called back yet: nothing is called back. */
void hw_routing_dial_cancel(struct hw_routing *rt, void *ud);

/* The next local port for a dial, from 49152 up, wrapping. */
uint16_t hw_routing_ephemeral_port(struct hw_routing *rt);

/* hw_rgroup_write, hw_rgroup_consumed, the descriptor, for a route end. */
int hw_route_end_write(struct hw_route_end *e, const uint8_t *p, size_t len);
void hw_route_end_consumed(struct hw_route_end *e, size_t n);
const struct hw_route_desc *hw_route_end_desc(const struct hw_route_end *e);

/* From now on the group's bytes flow through fd (a connected stream
 * socket, taken over: closed with the group) without callbacks: data
 * read from fd goes to the far end, the far end's data is written to it;
 * EOF or an error on fd closes the group; the group ending closes fd.
 * closed is still called. Returns 0 or a negative code (fd not taken). */
int hw_route_end_pipe(struct hw_route_end *e, int fd);

/* Closes the group gracefully (queued bytes are sent first) and drops ops:
 * nothing is called back any more. */
void hw_route_end_close(struct hw_route_end *e);

/* Starts routing from p (copied; see its fields for what must outlive
 * routing). Returns 0 or a negative code with a message; on failure after
 * *out is set, the caller frees *out. */
int hw_routing_new(struct hw_routing **out, const struct hw_routing_params *p,
		   char *err, size_t errlen);

/* Closes groups and the stream socket and flushes the tap file; the loop
 * must run on. Accepts NULL. */
void hw_routing_free(struct hw_routing *rt);

/* Route packets and setup messages from the transport manager. */
void hw_routing_on_packet(struct hw_routing *rt, struct hw_tp *tp,
			  const struct hw_packet *pkt);

/* Transport events: rules over a transport that left go with it. */
void hw_routing_tp_event(struct hw_routing *rt, struct hw_tp *tp,
			 enum hw_tp_event ev);

/* The transport manager's room-again signal: route groups that found tp
 * full send on. */
void hw_routing_tp_room(struct hw_routing *rt, struct hw_tp *tp);

/* The rules (GET /v1/rules) and the route groups (GET /v1/groups) as
 * JSON arrays (new references). */
json_t *hw_routing_rules_json(const struct hw_routing *rt);
json_t *hw_routing_groups_json(const struct hw_routing *rt);
/* The router's counters (GET /v1/info "router", docs/api.md; new
 * reference, NULL when out of memory). */
json_t *hw_routing_stats_json(const struct hw_routing *rt);

/* How the last HW_ROUTING_ENDED_KEPT route groups of stream-socket
 * clients ended (GET /v1/groups/ended, docs/api.md): with id 0 all of
 * them, newest first, as a JSON array; otherwise the object of group id,
 * or NULL when it is not (or no longer) known. New references. */
#define HW_ROUTING_ENDED_KEPT 64
json_t *hw_routing_ended_json(const struct hw_routing *rt, uint64_t id);

#endif
