/* Route groups: one bidirectional, end-to-end encrypted, ordered byte
 * stream between two (public key, port) ends, carried by a forward route
 * and a reverse route (docs/routing.md, "Route groups").
 *
 * The two ends run Noise_KK_25519_ChaChaPoly_BLAKE2b in HANDSHAKE packets
 * on the routes, with the route descriptor in the prologue, so the hops in
 * between forward only ciphertext and a handshake for one group cannot
 * complete in another. Stream bytes then travel as Noise transport
 * messages in DATA packets; a packet that fails to decrypt ends the group.
 * KEEPALIVE packets keep the rules on both routes alive and prove the
 * route works; an encrypted CLOSE answered by a CLOSE ends a group
 * cleanly.
 *
 * A group survives the loss of its routes: when a route is broken (a rule
 * of ours is gone, nothing was heard for a keepalive period, or a hop's
 * route-failure hint was confirmed by an unanswered probe) the owner is
 * asked for new routes (ops.broken), and the two ends run a new KK
 * handshake on them that says how many stream bytes each end has
 * received. Each end then sends again what the other has not received,
 * from a buffer of the bytes the peer has not yet credited back (at most
 * HW_RGROUP_WINDOW), so the stream goes on in order with no byte lost or
 * repeated. A group that finds no new route within heal_ms ends with an
 * error.
 *
 * Everything runs on the loop of params.loop. Callbacks other than closed
 * may run inside hw_rgroup_on_packet (ready, data) or from the loop
 * (writable); closed always runs from the loop, never inside a call into
 * this module, so a caller can never have the group freed under it. */
#ifndef HW_E2E_RGROUP_H
#define HW_E2E_RGROUP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/cipher.h"
#include "crypto/identity.h"
#include "router/router.h"
#include "wire/packet.h"

/* The Noise prologue is this (21 ASCII bytes) followed by the 68-byte
 * descriptor: src_pk | src_port u16 BE | dst_pk | dst_port u16 BE. */
#define HW_RGROUP_PROLOGUE "hopwire/1 route group"
#define HW_RGROUP_DESC_LEN 68
/* The first byte of both handshake payloads (docs/routing.md). */
#define HW_RGROUP_VERSION 2
/* The group's secret name, sent in the first handshake: a resumption
 * must name it. */
#define HW_RGROUP_TOKEN_LEN 16
/* After a route-failure hint, a probe unanswered this long confirms it:
 * 4 round trips and 25 ms, within these bounds, once a round trip was
 * measured (a handshake at the initiator, an answered probe), else the
 * most. */
#define HW_RGROUP_PROBE_MS 300
#define HW_RGROUP_PROBE_MIN_MS 50
/* A broken group asks its owner again this long after a failed try. */
#define HW_RGROUP_HEAL_RETRY_MS 1000
/* How long a resumption handshake may take before the group asks for
 * routes again. */
#define HW_RGROUP_RESUME_MS 3000
/* Default of params.heal_ms. */
#define HW_RGROUP_HEAL_MS 30000
/* Stream bytes in one DATA packet: a packet payload less the AEAD tag. */
#define HW_RGROUP_MAX_PLAINTEXT (HW_PACKET_MAX_PAYLOAD - HW_CIPHER_TAGLEN)
/* Stream bytes a sender may have outstanding (sealed, not yet credited
 * back by the receiver's consumption). Below a transport's send queue
 * (HW_CONN_MAX_QUEUED, 1 MiB): an intermediate hop drops packets its next
 * transport cannot queue, and a dropped packet ends the group, so one
 * route's window must fit a hop's queue. */
#define HW_RGROUP_WINDOW (768u << 10)
/* Stream bytes kept to send again after a resumption: what the peer has
 * not credited back (at most the window), in chunks of
 * HW_RGROUP_RETX_CHUNK, freed as credit comes back; nothing while idle. */
#define HW_RGROUP_RETX_CHUNK (64u << 10)
#define HW_RGROUP_UNACKED_MAX (HW_RGROUP_WINDOW + HW_RGROUP_RETX_CHUNK)
/* Bytes accepted by hw_rgroup_write but not yet handed to the router. */
#define HW_RGROUP_MAX_QUEUED (1u << 20)
/* After -ENOBUFS, writable is called once the queue is at most this. */
#define HW_RGROUP_LOW_WATER (512u << 10)
/* The reason byte of a CLOSE sent by hw_rgroup_close. */
#define HW_RGROUP_CLOSE_NORMAL 0

struct hw_rgroup;

struct hw_rgroup_ops {
	/* The KK handshake is done: writes may start. Not called when
	 * hw_rgroup_close came first. */
	void (*ready)(struct hw_rgroup *g, void *ud);
	/* Stream bytes from the peer, in order (p valid during the call
	 * only). Data may still arrive after hw_rgroup_close, until closed:
	 * the peer may have sent it before it saw our CLOSE. */
	void (*data)(struct hw_rgroup *g, const uint8_t *p, size_t len,
		     void *ud);
	/* After a write returned -ENOBUFS: the queue is down to
	 * HW_RGROUP_LOW_WATER; after hw_rgroup_room returned 0: there is
	 * room. May be NULL. */
	void (*writable)(struct hw_rgroup *g, void *ud);
	/* The group ended; called once, and g is freed after this returns.
	 * reason: 0 closed by either end with acknowledgement (every byte
	 * written before the close was handed to the route);
	 * -ETIMEDOUT no new route within heal_ms (or, with heal_ms 0,
	 * nothing heard for keepalive_ms), handshake or close not finished
	 * within 2 keepalive periods;
	 * -EPROTO the peer (or a hop) sent a bad packet (logged);
	 * -ENOENT / -ENOTCONN the route's rule or transport is gone (heal_ms
	 * 0, or during the first handshake);
	 * HW_ENONCE the nonce space is spent; -ENOMEM;
	 * -ENETUNREACH the routes failed and no other path exists;
	 * -ECONNRESET the peer started a new group in this one's place;
	 * or the reason given to hw_rgroup_abort or hw_rgroup_heal_failed.
	 * hw_rgroup_why says more while this runs. */
	void (*closed)(struct hw_rgroup *g, int reason, void *ud);
	/* The routes are broken and heal_ms is not 0: called from the loop,
	 * with the transport the failure was reported at (NULL when not
	 * known). The owner removes the old rules and finds new routes:
	 * at the initiator it builds them and calls hw_rgroup_resume; at
	 * the responder it checks that a path is left (the initiator
	 * builds), and hw_rgroup_resume comes with the setup node's
	 * INCOMING. hw_rgroup_heal_failed says it could not; called again
	 * HW_RGROUP_HEAL_RETRY_MS after a failure that was not final. May
	 * be NULL: a broken route then ends the group. */
	void (*broken)(struct hw_rgroup *g, const uint8_t *tp_id, void *ud);
};

struct hw_rgroup_params {
	uv_loop_t *loop;
	/* Must stay valid until closed (or hw_rgroup_abort) has been
	 * called; the group never touches it after that. */
	struct hw_router *router;
	/* Ours. id is read by hw_rgroup_new only; x_priv, id's X25519 key
	 * (hw_identity_x25519), must stay valid like router: a resumption
	 * handshake uses it again. */
	const struct hw_identity *id;
	const uint8_t *x_priv;
	struct hw_route_desc desc;
	int initiator; /* 1 at the source (desc.src_pk is us), 0 at the
			  destination (desc.dst_pk is us) */
	uint32_t send_id; /* our FORWARD rule */
	uint32_t recv_id; /* our CONSUME rule (for the JSON view only) */
	uint32_t keepalive_ms; /* HW_RULE_KEEPALIVE_MIN_MS..MAX_MS */
	/* How long a broken group looks for new routes before it ends;
	 * 0: a broken route ends it at once. */
	uint32_t heal_ms;
	const struct hw_rgroup_ops *ops;
	void *ud;
};

/* Creates a group and starts the KK handshake: the initiator sends
 * message 1 at once, the responder waits for it. The ends must be ours
 * (see initiator) and the peer's key valid. A failure to send message 1
 * comes later, through closed. Returns 0 and *out, -EINVAL for bad
 * params, HW_EBADKEY, -ENOMEM. */
int hw_rgroup_new(struct hw_rgroup **out, const struct hw_rgroup_params *p);

/* A packet the router delivered for the group's CONSUME rule. A packet
 * that breaks the protocol ends the group with -EPROTO (logged once).
 * Ignored once the group has ended (closed pending). */
void hw_rgroup_on_packet(struct hw_rgroup *g, const struct hw_packet *pkt);

/* Copies len bytes into the stream, split into DATA packets. Returns 0
 * (taken whole), -ENOTCONN before ready, after hw_rgroup_close or the
 * peer's CLOSE, or once the group has ended (closed follows);
 * -ENOBUFS, taking nothing, when the bytes queued unsent plus len would
 * exceed HW_RGROUP_MAX_QUEUED (writable is called later); -EMSGSIZE when
 * len alone exceeds it; -ENOMEM. */
int hw_rgroup_write(struct hw_rgroup *g, const uint8_t *buf, size_t len);

/* How many bytes hw_rgroup_write would seal and send at once, without
 * queueing (a copy) first: the peer's credit left, when nothing waits in
 * the queue; 0 before ready and once closing. When 0, writable is called
 * once there is room (or the queue has drained), so a writer that sizes
 * its writes by this never makes the group copy its bytes. */
size_t hw_rgroup_room(struct hw_rgroup *g);

/* The application has taken n bytes that the data callback delivered:
 * their credit goes back to the peer (in batches of a quarter window).
 * The peer sends at most HW_RGROUP_WINDOW bytes that were not consumed,
 * so a slow reader slows the sender instead of being overrun. */
void hw_rgroup_consumed(struct hw_rgroup *g, size_t n);

/* Sends whatever is queued, then a CLOSE, and waits for the peer's CLOSE
 * (its acknowledgement) up to 2 keepalive periods: closed(0), else
 * closed(-ETIMEDOUT). Before ready, the CLOSE goes right after the
 * handshake. Does nothing when already closing or ended. */
void hw_rgroup_close(struct hw_rgroup *g);

/* Ends the group without a CLOSE exchange (the peer times out): closed
 * (reason) on the next loop turn. Does nothing once ended. */
void hw_rgroup_abort(struct hw_rgroup *g, int reason);

/* A route of the group failed at the transport tp_id (NULL: unknown).
 * certain: our own rule or transport is gone, so the route is broken;
 * otherwise a hop's route-failure packet, a hint only: the group probes
 * the peer and takes the route as broken when no answer comes in time
 * (HW_RGROUP_PROBE_MIN_MS..HW_RGROUP_PROBE_MS). */
void hw_rgroup_route_failed(struct hw_rgroup *g, int certain,
			    const uint8_t *tp_id);

/* New routes for a broken group (or, at the responder, for one that has
 * not noticed yet): send_id and recv_id are our new FORWARD and CONSUME
 * rules. The initiator sends the resumption handshake at once, the
 * responder waits for it. Returns 0, -EINVAL once ended or before the
 * first handshake finished. */
int hw_rgroup_resume(struct hw_rgroup *g, uint32_t send_id, uint32_t recv_id);

/* Whether hw_rgroup_resume would take new routes now. */
int hw_rgroup_can_resume(const struct hw_rgroup *g);

/* The owner could not find new routes (why: a sentence). final: no path
 * is left, and the group ends now with reason; otherwise ops.broken is
 * called again later, until heal_ms has passed. */
void hw_rgroup_heal_failed(struct hw_rgroup *g, int final, int reason,
			   const char *why);

/* Why the group ended (or "" when it did not), valid as long as g. */
const char *hw_rgroup_why(const struct hw_rgroup *g);

/* 1 at the initiator, 0 at the responder. */
int hw_rgroup_initiator(const struct hw_rgroup *g);

/* The group's descriptor (valid as long as g). */
const struct hw_route_desc *hw_rgroup_desc(const struct hw_rgroup *g);

/* The group as a JSON object (new reference, NULL when out of memory):
 * src and dst ("PK:PORT"), role ("initiator"/"responder"), state
 * ("handshake", "open", "broken", "closing", "closed"), send_id, recv_id,
 * bytes_in and bytes_out (stream bytes), queued, unacked (bytes kept to
 * send again), heals (routes replaced), age_ms. */
json_t *hw_rgroup_json(const struct hw_rgroup *g);

#endif
