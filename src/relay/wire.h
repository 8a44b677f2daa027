/* One relay session connection (docs/relay.md), the same code on both
 * ends: the visor dials and is the Noise XK initiator, the relay accepts
 * and responds.
 *
 * The Noise stream engine (wire/nstream.c, shared with transport
 * connections) runs the handshake, buffers, writes and closes; this
 * module is the session's framing: after the handshake the byte stream
 * is units. The
 * wire decrypts SEALED units and hands out their control frames one by
 * one, hands out DATA units as they are, answers PING, ends the session on
 * ERROR, and watches for silence. Stream semantics (ids, credit, pairing)
 * belong to the owner: the relay server or the visor's relay client.
 *
 * Sending keeps the order of calls on the wire. Control frames gather in
 * one open plaintext that is sealed into a SEALED unit when full, when no
 * write is in flight, or before a DATA unit goes out; DATA is written
 * zero-copy from the caller's buffers. Queued control bytes are bounded
 * (HW_RELAY_WIRE_MAX_QUEUED); DATA is bounded by the owner's credit.
 *
 * An idle wire holds no read buffer: one is allocated small when bytes
 * arrive, grows to two units' worth while large units flow and is freed
 * once drained (the relay holds thousands of idle sessions). */
#ifndef HW_RELAY_WIRE_H
#define HW_RELAY_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"
#include "relay/frame.h"

/* Sealed control bytes a wire queues at most. */
#define HW_RELAY_WIRE_MAX_QUEUED (128u << 10)
/* Payload buffers one DATA unit may gather. */
#define HW_RELAY_WIRE_MAX_BUFS 3

struct hw_relay_wire;

struct hw_relay_wire_ops {
	/* The handshake finished; hw_relay_wire_remote_pk() is valid. */
	void (*ready)(struct hw_relay_wire *w, void *ud);
	/* One checked control frame with a stream id (OPEN, ACCEPT, REFUSE,
	 * CREDIT, CLOSE; the body is valid during the call). PING, PONG and
	 * ERROR are the wire's. May close the wire. */
	void (*control)(struct hw_relay_wire *w, const struct hw_relay_frame *f,
			void *ud);
	/* One DATA unit (p valid during the call). May close the wire. */
	void (*data)(struct hw_relay_wire *w, uint32_t stream,
		     const uint8_t *p, size_t len, void *ud);
	/* The wire is gone: reason 0 for a local close, else why
	 * (hw_relay_wire_error() may say more). Every DATA completion has run
	 * before. Called exactly once; the wire is freed when it returns. */
	void (*closed)(struct hw_relay_wire *w, int reason, void *ud);
};

struct hw_relay_wire_params {
	const struct hw_identity *id; /* ours; outlives the wire */
	const uint8_t *x_priv;        /* our X25519 static private key */
	unsigned handshake_timeout_ms;
	/* PING after this long without sending; dead after three times
	 * this without receiving. 0: no keepalive. */
	unsigned keepalive_ms;
	const struct hw_relay_wire_ops *ops;
	void *ud;
};

/* Dials host:port (resolved off the loop) and runs the handshake towards
 * remote_pk. Failures arrive in ops->closed. Returns 0 and *out, or a
 * negative code when nothing could be started (no callback then). */
int hw_relay_wire_dial(struct hw_relay_wire **out, uv_loop_t *loop,
		       const struct hw_relay_wire_params *p,
		       const uint8_t remote_pk[HW_PK_LEN], const char *host,
		       uint16_t port);

/* Accepts a pending connection from server and runs the handshake as
 * responder. Returns 0 and *out, or a negative code (no callback then). */
int hw_relay_wire_accept(struct hw_relay_wire **out, uv_stream_t *server,
			 const struct hw_relay_wire_params *p);

/* Queues one control frame (body of len bytes, checked by the caller).
 * Returns 0, -ENOTCONN before the handshake finished or once closing,
 * -ENOBUFS when the control queue is full (the peer is not reading),
 * -ENOMEM, or a cipher error (the wire is then closing). */
int hw_relay_wire_send_control(struct hw_relay_wire *w, uint8_t type,
			       uint32_t stream, const uint8_t *body,
			       size_t len);

/* Queues one DATA unit for stream (non-zero) whose payload is the nbufs
 * (1..HW_RELAY_WIRE_MAX_BUFS) buffers, 1..65535 bytes together. The
 * buffers are not copied: they stay valid until done(arg, status) runs,
 * status 0 once written, negative when the wire failed first. done never
 * runs before this returns. Returns 0, -ENOTCONN, -EINVAL or -ENOMEM (done
 * is not called then). */
int hw_relay_wire_send_data(struct hw_relay_wire *w, uint32_t stream,
			    const uv_buf_t *bufs, unsigned nbufs,
			    void (*done)(void *arg, int status), void *arg);

/* Drops the session for a protocol error: sends ERROR with the message
 * (also kept for hw_relay_wire_error()), then closes gracefully with
 * reason. Later calls and closes do not change the message. */
void hw_relay_wire_fail(struct hw_relay_wire *w, int reason,
			const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Closes. graceful: what is queued is written first and the write side
 * shut down (at most 2 s); otherwise everything is dropped now and
 * pending DATA completes with an error. ops->closed follows. Safe to call
 * more than once and from callbacks. */
void hw_relay_wire_close(struct hw_relay_wire *w, int reason, int graceful);

/* Why the wire failed, in words ("" when not known): a protocol error
 * found here or by the owner, the peer's ERROR text, silence. */
const char *hw_relay_wire_error(const struct hw_relay_wire *w);

/* The remote identity: known from the start when dialing, after ready
 * when accepting. */
const uint8_t *hw_relay_wire_remote_pk(const struct hw_relay_wire *w);

/* "ip:port" of the remote end ("" until connected). */
const char *hw_relay_wire_peer(const struct hw_relay_wire *w);

int hw_relay_wire_is_ready(const struct hw_relay_wire *w);
int hw_relay_wire_is_closing(const struct hw_relay_wire *w);

/* Bytes queued and not yet taken by the kernel (control and DATA). */
size_t hw_relay_wire_queued(const struct hw_relay_wire *w);

void *hw_relay_wire_ud(const struct hw_relay_wire *w);
void hw_relay_wire_set_ud(struct hw_relay_wire *w, void *ud);

/* Test hook: writes len raw bytes after the handshake, bypassing every
 * rule, to exercise a peer's handling of garbage. Returns 0 or a negative
 * code. */
int hw_relay_wire_send_raw_for_test(struct hw_relay_wire *w,
				    const uint8_t *p, size_t len);

#endif
