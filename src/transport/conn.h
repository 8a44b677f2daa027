/* A Noise-secured stream: the connection under every transport, over its
 * own TCP socket (tcp transports) or over a carrier, a byte stream that
 * some other module provides (relay transports: a stream through a relay
 * server, so the relay carries only this connection's ciphertext).
 *
 * The dialer knows the remote identity and runs Noise XK as initiator; the
 * accepting side learns the dialer's identity from the handshake. Each
 * handshake message travels as one record; the payloads are
 *   message 1: version u8
 *   message 2: version u8
 *   message 3: version u8 | dialer's Ed25519 public key (32)
 * and the accepting side checks that the Ed25519 key maps to the static
 * X25519 key the handshake authenticated. After the handshake every record
 * is one encrypted message of routing packets.
 *
 * The stream engine is wire/nstream.c, shared with relay sessions; this
 * module is its record framing (u16 BE length | ciphertext, and detached
 * payloads behind a record). Sending coalesces: packets are appended to an
 * open record that is sealed and written when it is full or when no write
 * is in flight, so under load many small packets share one record and one
 * write. The queue of unsent
 * bytes is bounded (HW_CONN_MAX_QUEUED); past it sends fail with
 * -ENOBUFS and the drained callback tells when there is room again. */
#ifndef HW_TRANSPORT_CONN_H
#define HW_TRANSPORT_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"
#include "wire/nstream.h"

#define HW_CONN_VERSION 1
/* The send queue's high-water mark: a send past it fails with -ENOBUFS,
 * and a forwarding hop stops reading what feeds it (docs/routing.md,
 * "Backpressure"); drained follows below the low-water mark. */
#define HW_CONN_MAX_QUEUED (1u << 20)
#define HW_CONN_LOW_WATER (512u << 10)
/* The hard limit for packets a hop forwards (hw_conn_send_fill_max):
 * room for what the transports feeding one may still hand it after the
 * high-water mark paused them (about one record each). */
#define HW_CONN_FORWARD_MAX (8u << 20)

struct hw_conn;

struct hw_conn_ops {
	/* The handshake finished; hw_conn_remote_pk() is valid. */
	void (*ready)(struct hw_conn *c, void *ud);
	/* One decrypted record (writable in place, valid during the call).
	 * The callback may close the connection. */
	void (*record)(struct hw_conn *c, uint8_t *pt, size_t len, void *ud);
	/* The n bytes that hw_conn_expect_detached announced (writable in
	 * place, valid during the call). May be NULL when the connection's
	 * user never announces any. The callback may close the connection. */
	void (*detached)(struct hw_conn *c, uint8_t *p, size_t n, void *ud);
	/* Queued bytes fell below HW_CONN_LOW_WATER after a send failed
	 * with -ENOBUFS. */
	void (*drained)(struct hw_conn *c, void *ud);
	/* The connection is gone (reason: 0 for a local close, else why);
	 * it is freed when this returns. Called exactly once. */
	void (*closed)(struct hw_conn *c, int reason, void *ud);
};

struct hw_conn_params {
	const struct hw_identity *id; /* ours; outlives the connection */
	const uint8_t *x_priv;        /* our X25519 static private key */
	const char *prologue;         /* names protocol and purpose */
	unsigned handshake_timeout_ms;
	const struct hw_conn_ops *ops;
	void *ud;
};

/* Dials host:port (resolved off the loop) and runs the handshake as
 * initiator towards remote_pk. Failures arrive in ops->closed. Returns 0
 * and *out, or a negative code when nothing could be started. */
int hw_conn_dial(struct hw_conn **out, uv_loop_t *loop,
		 const struct hw_conn_params *p, const uint8_t remote_pk[32],
		 const char *host, uint16_t port);

/* Accepts a pending connection from server and runs the handshake as
 * responder. Returns 0 and *out or a negative code. */
int hw_conn_accept(struct hw_conn **out, uv_stream_t *server,
		   const struct hw_conn_params *p);

/* A carrier (the byte stream under a connection when it is not a TCP
 * socket of its own, e.g. a stream through a relay) is the engine's:
 * struct hw_nstream_carrier_ops, wire/nstream.h. */

/* Runs the handshake over carrier: as initiator towards remote_pk, or as
 * responder when remote_pk is NULL. peer describes the path for logs and
 * listings ("relay 1a2b..."). On failure the carrier stays the caller's;
 * after success it belongs to the connection (closed through cops->close,
 * unless the carrier reports its own end with hw_conn_carrier_closed). */
int hw_conn_open_carrier(struct hw_conn **out, uv_loop_t *loop,
			 const struct hw_conn_params *p,
			 const struct hw_nstream_carrier_ops *cops, void *carrier,
			 const uint8_t *remote_pk, const char *peer);

/* The carrier delivers len bytes that arrived. Callbacks of the
 * connection run from here. */
void hw_conn_carrier_input(struct hw_conn *c, const uint8_t *data,
			   size_t len);

/* The carrier ended on its own (reason: why); the connection closes and
 * makes no further call into the carrier. */
void hw_conn_carrier_closed(struct hw_conn *c, int reason);

/* Appends one packet (hdr and payload, hlen + plen <= one record's
 * plaintext) to the outgoing stream. Returns 0, -ENOBUFS when the queue
 * is full, -ENOTCONN before the handshake finished or after a close. */
int hw_conn_send(struct hw_conn *c, const uint8_t *hdr, size_t hlen,
		 const uint8_t *payload, size_t plen);

/* Like hw_conn_send, but the payload travels right after the record that
 * carries hdr, outside the connection's encryption: only for payloads that
 * are already sealed end to end (route DATA, docs/transport.md). hdr must
 * tell the receiver how many bytes follow, so that its record callback
 * can call hw_conn_expect_detached. plen <= HW_RECORD_MAX. */
int hw_conn_send_detached(struct hw_conn *c, const uint8_t *hdr, size_t hlen,
			  const uint8_t *payload, size_t plen);

/* Writes a packet's n-byte payload at dst (in the connection's outgoing
 * buffer). Returns 0, or an error that cancels the send. */
typedef int (*hw_conn_fill_fn)(void *arg, uint8_t *dst, size_t n);

/* The fill of a plain send: copies n bytes from arg. */
int hw_conn_fill_copy(void *arg, uint8_t *dst, size_t n);

/* hw_conn_send (detached 0) or hw_conn_send_detached (1) whose payload is
 * not copied from a buffer but written in place by fill, called at most
 * once before this returns: a sender can seal straight into the
 * connection. Returns as they do, or fill's error (nothing was sent;
 * fill is not called when the send fails before it). */
int hw_conn_send_fill(struct hw_conn *c, const uint8_t *hdr, size_t hlen,
		      size_t plen, int detached, hw_conn_fill_fn fill,
		      void *arg);

/* hw_conn_send_fill with another limit on the queue: it fails with
 * -ENOBUFS once max_queued bytes are queued (HW_CONN_FORWARD_MAX for
 * forwarded packets). */
int hw_conn_send_fill_max(struct hw_conn *c, const uint8_t *hdr,
			  size_t hlen, size_t plen, int detached,
			  hw_conn_fill_fn fill, void *arg, size_t max_queued);

/* Whether the queue is at or over its high-water mark
 * (HW_CONN_MAX_QUEUED); when it is, drained follows once it is below
 * the low-water mark. */
int hw_conn_congested(struct hw_conn *c);

/* Pauses (1) or resumes (0) reading: no record or detached callback
 * runs while paused, and the peer is held back by TCP's flow control
 * (or its carrier's credit). Records read before the pause are handed
 * on at resume (hw_nstream_pause). */
void hw_conn_pause(struct hw_conn *c, int paused);

/* From the record callback: n bytes (1..HW_RECORD_MAX) follow the current
 * record outside the encryption; they arrive through ops->detached before
 * the next record. */
void hw_conn_expect_detached(struct hw_conn *c, size_t n);

/* Bytes accepted by hw_conn_send that the kernel has not taken yet. */
size_t hw_conn_queued(const struct hw_conn *c);

/* Closes. graceful: queued data is written first and the write side
 * shut down; otherwise everything is dropped now. ops->closed follows
 * with reason. Safe to call more than once and from callbacks. */
void hw_conn_close(struct hw_conn *c, int reason, int graceful);

/* The remote identity: known from the start for dialed connections, after
 * ready for accepted ones. */
const uint8_t *hw_conn_remote_pk(const struct hw_conn *c);

/* "ip:port" of the remote end ("" until connected). */
const char *hw_conn_peer(const struct hw_conn *c);

int hw_conn_is_dialer(const struct hw_conn *c);
int hw_conn_is_ready(const struct hw_conn *c);
void *hw_conn_ud(const struct hw_conn *c);
void hw_conn_set_ud(struct hw_conn *c, void *ud);

#endif
