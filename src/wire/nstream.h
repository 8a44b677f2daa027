/* A Noise stream: the one engine under every Noise-secured byte stream of
 * Hopwire (transport connections, transport/conn.c; relay sessions,
 * relay/wire.c). It runs over its own TCP socket (dialed or accepted) or
 * over a carrier, a byte stream some other module provides.
 *
 * The engine owns what every such stream needs and nothing else:
 * - the handshake: Noise XK, the dialer the initiator; each message one
 *   record (u16 BE length | message, docs/transport.md) with payloads
 *     message 1: version u8
 *     message 2: version u8
 *     message 3: version u8 | dialer's Ed25519 public key (32)
 *   and the accepting side checks that the Ed25519 key maps to the static
 *   X25519 key the handshake authenticated;
 * - the read buffer: bytes arrive into it and the user's input callback
 *   takes whole frames from its front; a buffer can start small and be
 *   given back while idle (the relay holds thousands of idle sessions);
 * - the write path: an open frame that the user appends to and that is
 *   sealed and written when full, when no write is in flight or when the
 *   user asks (so under load many small pieces share one frame and one
 *   write), spare frame buffers for a busy stream, zero-copy writes of the
 *   user's buffers in order with the frames, the count of queued bytes
 *   and the "room again" signal;
 * - the lifetime: timers, a graceful close capped at 2 s, the closed
 *   callback exactly once, and freeing once nothing calls back.
 *
 * The frames after the handshake are the user's protocol: the kind says
 * how large the header in front of a sealed frame is and writes it. */
#ifndef HW_WIRE_NSTREAM_H
#define HW_WIRE_NSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"

/* Bytes of the header hw_nstream_write_raw copies in front of the
 * caller's buffers, and how many buffers it takes. */
#define HW_NSTREAM_MAX_HDR 16
#define HW_NSTREAM_MAX_BUFS 4
/* How long a graceful close waits for queued bytes to leave. */
#define HW_NSTREAM_GRACEFUL_MS 2000

struct hw_nstream;

struct hw_nstream_ops {
	/* The handshake finished: hw_nstream_remote_pk() is valid. */
	void (*ready)(struct hw_nstream *s, void *ud);
	/* Unread bytes p[0..n) after the handshake (n >= 1; writable in
	 * place, valid during the call). Takes one whole frame from the
	 * front and returns its length, or returns 0 and sets *need to the
	 * bytes the next frame needs from p (more than n, at most the
	 * kind's rbuf_big). To reject a frame: close the stream and return
	 * 0. May close the stream. */
	size_t (*input)(struct hw_nstream *s, uint8_t *p, size_t n,
			size_t *need, void *ud);
	/* Optional: every tick_ms while open. */
	void (*tick)(struct hw_nstream *s, void *ud);
	/* Optional: queued bytes fell below the kind's low_water after
	 * hw_nstream_blocked(). */
	void (*drained)(struct hw_nstream *s, void *ud);
	/* The stream is gone (reason: 0 for a local close, else why;
	 * hw_nstream_error() may say more). Every write completion has run
	 * before. Called exactly once; the stream is freed when it
	 * returns. */
	void (*closed)(struct hw_nstream *s, int reason, void *ud);
};

/* What a protocol on the engine fixes once (a static const). A sealed
 * frame on the wire is
 *   header (frame_hdr bytes, put_header) | ciphertext | trailer
 * where the ciphertext seals the open frame's plaintext and the trailer
 * (at most trail_max bytes) travels outside the encryption. */
struct hw_nstream_kind {
	const struct hw_nstream_ops *ops;
	uint8_t version; /* the handshake payloads' version byte */
	size_t frame_hdr;
	void (*put_header)(uint8_t *hdr, size_t ctlen);
	size_t frame_min;    /* plaintext room of a fresh open frame */
	size_t frame_max;    /* plaintext one frame holds at most */
	size_t trail_max;
	unsigned max_spares; /* frame buffers kept for reuse */
	/* Read buffer: rbuf_small bytes while reads fit (freed once
	 * drained), rbuf_big once a read fills it or a frame needs more
	 * (kept until hw_nstream_trim). rbuf_small 0: always rbuf_big. */
	size_t rbuf_small, rbuf_big;
	size_t low_water; /* for the drained callback */
};

struct hw_nstream_params {
	const struct hw_nstream_kind *kind;
	const struct hw_identity *id; /* ours; outlives the stream */
	const uint8_t *x_priv;        /* our X25519 static private key */
	const char *prologue;         /* names protocol and purpose */
	unsigned handshake_timeout_ms;
	unsigned tick_ms; /* 0: no tick */
	/* Bytes of the user's own state allocated with the stream, zeroed,
	 * and freed with it after ops->closed (hw_nstream_priv); one
	 * allocation per stream. 0: none. */
	size_t priv_size;
	void *ud; /* for the callbacks; with priv_size, the private area */
};

/* Dials host:port (resolved off the loop) and runs the handshake as
 * initiator towards remote_pk. Failures arrive in ops->closed. Returns 0
 * and *out, or a negative code when nothing could be started (no callback
 * then). */
int hw_nstream_dial(struct hw_nstream **out, uv_loop_t *loop,
		    const struct hw_nstream_params *p,
		    const uint8_t remote_pk[HW_PK_LEN], const char *host,
		    uint16_t port);

/* Accepts a pending connection from server and runs the handshake as
 * responder. Returns 0 and *out, or a negative code (no callback then). */
int hw_nstream_accept(struct hw_nstream **out, uv_stream_t *server,
		      const struct hw_nstream_params *p);

/* A carrier: the byte stream under a stream when it is not a TCP socket
 * of its own (a stream through a relay). The engine writes whole frames
 * to it and is fed what arrives. */
struct hw_nstream_carrier_ops {
	/* Writes len bytes of buf, which stays valid until done(arg,
	 * status) runs: status 0 once written, negative when the carrier
	 * failed first. done never runs before write returns. Returns 0 or a
	 * negative code (done is not called then). */
	int (*write)(void *carrier, const uint8_t *buf, size_t len,
		     void (*done)(void *arg, int status), void *arg);
	/* The stream is finished with the carrier (reason as for
	 * hw_nstream_close): close it; writes still in flight complete with
	 * an error. No call reaches the carrier afterwards. */
	void (*close)(void *carrier, int reason);
	/* Optional: the stream paused its input (paused 1) or resumed it
	 * (0). While paused the carrier should stop the far end from
	 * sending (withhold its credit): the stream keeps what still
	 * arrives, at most HW_NSTREAM_HELD_MAX bytes beyond a full read
	 * buffer, and closes past that. NULL: the carrier cannot, and
	 * pausing only delays frames while that bound holds. */
	void (*pause)(void *carrier, int paused);
};

/* What a paused stream keeps of its carrier's input beyond a full read
 * buffer (a relay stream's window, 2 MiB, fits). */
#define HW_NSTREAM_HELD_MAX (4u << 20)

/* Runs the handshake over carrier: as initiator towards remote_pk, or as
 * responder when remote_pk is NULL. peer describes the path for logs and
 * listings ("relay 1a2b..."). On failure the carrier stays the caller's
 * (no callback then); after success it belongs to the stream (closed
 * through cops->close, unless the carrier reports its own end with
 * hw_nstream_carrier_closed). */
int hw_nstream_open_carrier(struct hw_nstream **out, uv_loop_t *loop,
			    const struct hw_nstream_params *p,
			    const struct hw_nstream_carrier_ops *cops,
			    void *carrier, const uint8_t *remote_pk,
			    const char *peer);

/* The carrier delivers len bytes that arrived; callbacks run from here. */
void hw_nstream_carrier_input(struct hw_nstream *s, const uint8_t *data,
			      size_t len);

/* The carrier ended on its own (reason: why); the stream closes (a
 * graceful close waiting for writes ends now) and makes no further call
 * into the carrier. The carrier still completes every write in flight,
 * with an error: the stream is freed only after the last completion. */
void hw_nstream_carrier_closed(struct hw_nstream *s, int reason);

/* From the input callback: decrypts one sealed frame's ciphertext
 * (len bytes at ct, in the read buffer) in place with the receiving
 * cipher. Returns 0 and *ptlen, or a cipher error (the frame is forged or
 * out of order: close the stream). */
int hw_nstream_unseal(struct hw_nstream *s, uint8_t *ct, size_t len,
		      size_t *ptlen);

/* ---- writing (all return -ENOTCONN unless the stream is open) ---- */

/* Room in the open frame for n plaintext bytes at *dst, followed after
 * the frame's tag (at *dst + n + HW_CIPHER_TAGLEN) by trail bytes outside
 * the encryption. Seals and writes the open frame first when it cannot
 * take n more. Nothing is added until hw_nstream_commit. Returns 0,
 * HW_ETOOBIG (n > frame_max or trail > trail_max), -ENOMEM, or a write
 * error (the stream is then closing). */
int hw_nstream_reserve(struct hw_nstream *s, size_t n, size_t trail,
		       uint8_t **dst);

/* Adds the n bytes written at the room reserved last to the open frame.
 * With trail bytes the frame is sealed and written at once, the trailer
 * behind it; otherwise it is written at once when no write is in flight,
 * else when the one in flight completes. Returns 0 or a negative code
 * (the stream is then closing). */
int hw_nstream_commit(struct hw_nstream *s, size_t n, size_t trail);

/* Seals and writes the open frame now (nothing when it is empty). */
int hw_nstream_flush(struct hw_nstream *s);

/* Writes hlen (<= HW_NSTREAM_MAX_HDR) bytes copied from hdr, then the
 * nbufs (<= HW_NSTREAM_MAX_BUFS) buffers as they are, after everything
 * queued before (the open frame is sealed first); TCP streams only. The
 * buffers are not copied: they stay valid until done(arg, status) runs,
 * status 0 once written, negative when the stream failed first. done
 * never runs before this returns. Returns 0, -EINVAL, -EOPNOTSUPP over a
 * carrier, -ENOMEM or a write error (done is not called then). */
int hw_nstream_write_raw(struct hw_nstream *s, const uint8_t *hdr,
			 size_t hlen, const uv_buf_t *bufs, unsigned nbufs,
			 void (*done)(void *arg, int status), void *arg);

/* A send was refused for want of room: ops->drained follows once the
 * queued bytes fall below the kind's low_water. */
void hw_nstream_blocked(struct hw_nstream *s);

/* Pauses (paused 1) or resumes (0) the input: while paused no input
 * callback runs; a TCP stream stops reading its socket (so TCP's flow
 * control holds the sender back), a carrier is told (cops->pause). On
 * resume the frames already buffered are handed on at once (unless this
 * runs from an input callback: the loop on the stack goes on), then
 * reading starts again. Writing is not affected. A stream may be paused
 * before its handshake ends; the pause then starts with ST_OPEN. */
void hw_nstream_pause(struct hw_nstream *s, int paused);
int hw_nstream_is_paused(const struct hw_nstream *s);

/* Bytes accepted and not yet taken by the kernel or carrier: everything,
 * or only the sealed frames (open frame included, raw writes not). */
size_t hw_nstream_queued(const struct hw_nstream *s);
size_t hw_nstream_queued_sealed(const struct hw_nstream *s);

/* Gives back memory an idle stream does not need: an empty read buffer
 * and, with no write in flight, the spare buffers. */
void hw_nstream_trim(struct hw_nstream *s);

/* ---- the rest ---- */

/* Closes. graceful: what is queued is written first and the write side
 * shut down (at most HW_NSTREAM_GRACEFUL_MS); otherwise everything is
 * dropped now and writes in flight complete with an error. ops->closed
 * follows with reason. Safe to call more than once and from callbacks. */
void hw_nstream_close(struct hw_nstream *s, int reason, int graceful);

/* Keeps a first description of what went wrong, in words, for
 * hw_nstream_error(); later calls do not change it. The engine sets it
 * for its own failures (connect, handshake, read, write, silence). */
void hw_nstream_set_error(struct hw_nstream *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const char *hw_nstream_error(const struct hw_nstream *s);

/* The remote identity: known from the start for dialed streams, after
 * ready for accepted ones. */
const uint8_t *hw_nstream_remote_pk(const struct hw_nstream *s);

/* "ip:port" of the remote end, or the carrier's description ("" until
 * connected). */
const char *hw_nstream_peer(const struct hw_nstream *s);

/* The private area (params' priv_size bytes), NULL without one. */
void *hw_nstream_priv(struct hw_nstream *s);

uv_loop_t *hw_nstream_loop(const struct hw_nstream *s);
int hw_nstream_is_dialer(const struct hw_nstream *s);
int hw_nstream_is_ready(const struct hw_nstream *s);
int hw_nstream_is_closing(const struct hw_nstream *s);

#endif
