/* The mesh handshake on every transport (docs/mesh.md, after seed 003):
 * right after a transport's Noise handshake both ends exchange HELLOs
 * saying the address each listens on as configured ("me") and the
 * address it sees the other at ("you"), confirm them, and then exchange
 * the peers they are linked to (PEERS), each peer sent to a neighbour
 * once. From the "you" fields of its peers a visor learns the address
 * others reach it at: one that HW_MESH_QUORUM distinct peers agree on,
 * so that no single peer can move it. A visor that listens on a wildcard
 * address advertises that one.
 *
 * This is the first part of mesh mode: the address book, dialing and
 * bootstrap, and publish/subscribe are not built yet. */
#ifndef HW_MESH_MESH_H
#define HW_MESH_MESH_H

#include <jansson.h>
#include <uv.h>

#include "mesh/msg.h"
#include "transport/manager.h"

#define HW_MESH_QUORUM 2
/* Peers learned from PEERS messages, kept at most. */
#define HW_MESH_LEARNED_MAX 1024
/* How often new peers are shared with each neighbour, at most. */
#define HW_MESH_SHARE_MS 1000
/* A handshake not finished by then is shown as unanswered (a peer
 * without mesh: a setup node). */
#define HW_MESH_HELLO_WAIT_MS 10000

struct hw_mesh;

struct hw_mesh_ops {
	/* The observed address changed (HOST:PORT, without "tcp://"). */
	void (*observed)(void *ud, const char *hostport);
};

struct hw_mesh_params {
	uv_loop_t *loop;
	struct hw_tp_manager *tpm;
	const uint8_t *self_pk; /* this visor's key (HW_PK_LEN; copied) */
	/* Read while hw_mesh_new runs (copied): the TCP listen address as
	 * configured, "" when the visor does not listen. */
	const char *listen;
	const struct hw_mesh_ops *ops; /* may be NULL; outlives m */
	void *ud;
};

int hw_mesh_new(struct hw_mesh **out, const struct hw_mesh_params *p,
		char *err, size_t errlen);
/* Stops the timer; the loop must run on until it closed. Accepts NULL. */
void hw_mesh_free(struct hw_mesh *m);

/* Transport events and MESH packets from the manager. */
void hw_mesh_tp_event(struct hw_mesh *m, struct hw_tp *tp,
		      enum hw_tp_event ev);
void hw_mesh_on_packet(struct hw_mesh *m, struct hw_tp *tp,
		       const struct hw_packet *pkt);

/* HOST:PORT to advertise: the configured listen address unless it is a
 * wildcard, else the observed one with the configured port, else "". */
const char *hw_mesh_advertised(const struct hw_mesh *m);

/* {"configured", "observed", "advertised", "votes": [{"addr", "peers"}],
 * "learned": [{"pk", "addr", "from"}], "links": [{"pk", "state", "me",
 * "you", "seen"}]} (new reference). */
json_t *hw_mesh_json(const struct hw_mesh *m);

#endif
