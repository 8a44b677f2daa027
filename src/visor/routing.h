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

#include "router/packet.h"
#include "transport/manager.h"

struct hw_routing;
struct hw_visor;

/* Starts routing for v (after its transport manager). Returns 0 or a
 * negative code with a message. */
int hw_routing_new(struct hw_routing **out, struct hw_visor *v, char *err,
		   size_t errlen);

/* Closes groups and the stream socket; the loop must run on. Accepts
 * NULL. */
void hw_routing_free(struct hw_routing *rt);

/* Route packets and setup messages from the transport manager. */
void hw_routing_on_packet(struct hw_routing *rt, struct hw_tp *tp,
			  const struct hw_packet *pkt);

/* Transport events: rules over a transport that left go with it. */
void hw_routing_tp_event(struct hw_routing *rt, struct hw_tp *tp,
			 enum hw_tp_event ev);

/* The rules (GET /v1/rules) and the route groups (GET /v1/groups) as
 * JSON arrays (new references). */
json_t *hw_routing_rules_json(const struct hw_routing *rt);
json_t *hw_routing_groups_json(const struct hw_routing *rt);

#endif
