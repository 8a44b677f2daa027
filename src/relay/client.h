/* The visor's side of the relay protocol (docs/relay.md): sessions to
 * relay servers and the streams through them.
 *
 * A session is a TCP connection to a relay running Noise XK (the visor
 * knows the relay's key from discovery). Through a session a visor opens
 * streams to other visors that hold a session to the same relay, and
 * accepts or refuses streams they open. A stream is an ordered byte pipe
 * with credit-based flow control; what travels on it is the end-to-end
 * Noise session of the two visors (hw_conn over a carrier), so the relay
 * forwards ciphertext only.
 *
 * Held sessions are kept up: a session that fails is re-dialed with
 * exponential backoff and jitter until released. Everything runs on one
 * libuv loop. */
#ifndef HW_RELAY_CLIENT_H
#define HW_RELAY_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"

#define HW_RELAY_SESSION_PROLOGUE "hopwire/1 relay session"

struct hw_relay_client;
struct hw_relay_stream;

struct hw_relay_stream_ops {
	/* Dialed streams only: the remote visor accepted (status 0) or the
	 * open failed (negative; msg says why, e.g. "relay has no session
	 * with the peer", "peer refused", "timed out"). After a failure
	 * closed is not called and the stream is freed on return. */
	void (*opened)(struct hw_relay_stream *s, int status, const char *msg,
		       void *ud);
	/* len bytes arrived (valid during the call). Their credit goes back
	 * to the sender when this returns. */
	void (*data)(struct hw_relay_stream *s, const uint8_t *p, size_t len,
		     void *ud);
	/* The stream is gone (reason 0 for a local close, else why: the
	 * peer closed it, the session failed). Called exactly once for an
	 * open stream; it is freed when this returns. */
	void (*closed)(struct hw_relay_stream *s, int reason, void *ud);
};

struct hw_relay_client_params {
	uv_loop_t *loop;
	const struct hw_identity *id; /* ours; outlives the client */
	const uint8_t *x_priv;        /* our X25519 static private key */
	unsigned keepalive_ms;        /* dead after 3 silent intervals */
	unsigned handshake_timeout_ms; /* also bounds a stream open */
	unsigned redial_min_ms, redial_max_ms;
	/* A visor behind relay_pk opens a stream to us. Return 0 to accept
	 * (after setting ops with hw_relay_stream_set_ops), or a negative
	 * code to refuse. The request's signature has been checked. */
	int (*accept)(struct hw_relay_client *rc, const uint8_t relay_pk[32],
		      const uint8_t from_pk[32], struct hw_relay_stream *s,
		      void *ud);
	/* A held session came up (up = 1) or went down (up = 0). May be
	 * NULL. */
	void (*session)(struct hw_relay_client *rc, const uint8_t relay_pk[32],
			int up, void *ud);
	void *ud;
};

int hw_relay_client_new(struct hw_relay_client **out,
			const struct hw_relay_client_params *p);

/* Closes every session and stream (their closed callbacks run) and frees
 * the client once its handles are closed; the loop must run on. Accepts
 * NULL. */
void hw_relay_client_free(struct hw_relay_client *rc);

/* Keeps a session to the relay relay_pk at addr (HOST:PORT) up until
 * released; holding one already held updates its address. Returns 0 or a
 * negative code for bad arguments. */
int hw_relay_client_hold(struct hw_relay_client *rc,
			 const uint8_t relay_pk[32], const char *addr);

/* Stops holding the session: its streams close, it is not re-dialed. */
void hw_relay_client_release(struct hw_relay_client *rc,
			     const uint8_t relay_pk[32]);

/* Whether the session to relay_pk is held and up. */
int hw_relay_client_is_up(const struct hw_relay_client *rc,
			  const uint8_t relay_pk[32]);

/* Opens a stream to target_pk through the relay relay_pk, which must be
 * held (-ENOENT otherwise). If the session is not up yet the request waits
 * for it, within handshake_timeout_ms. The outcome reaches ops->opened.
 * Returns 0 and *out, or a negative code. */
int hw_relay_stream_open(struct hw_relay_client *rc,
			 const uint8_t relay_pk[32],
			 const uint8_t target_pk[32],
			 const struct hw_relay_stream_ops *ops, void *ud,
			 struct hw_relay_stream **out);

void hw_relay_stream_set_ops(struct hw_relay_stream *s,
			     const struct hw_relay_stream_ops *ops, void *ud);

/* Queues len bytes (1..any; split into DATA frames as credit allows). buf
 * is not copied: it stays valid until done(arg, status) runs, status 0
 * once the bytes went to the kernel, negative when the stream died first.
 * done never runs before this returns. Returns 0, or -ENOTCONN when the
 * stream is not open (done is not called then). */
int hw_relay_stream_write(struct hw_relay_stream *s, const uint8_t *buf,
			  size_t len, void (*done)(void *arg, int status),
			  void *arg);

/* Holds (held 1) or releases (0) the stream's credit: while held, bytes
 * that arrive are still delivered but no credit goes back, so the peer
 * sends at most HW_RELAY_WINDOW more; on release what is owed is
 * credited at once. A reader that pauses uses it to hold the far end
 * back. */
void hw_relay_stream_hold(struct hw_relay_stream *s, int held);

/* Closes the stream: the peer is told (CLOSE), queued writes complete
 * with an error, ops->closed follows with reason. Safe more than once. */
void hw_relay_stream_close(struct hw_relay_stream *s, int reason);

const uint8_t *hw_relay_stream_remote_pk(const struct hw_relay_stream *s);
const uint8_t *hw_relay_stream_relay_pk(const struct hw_relay_stream *s);

/* The held sessions as a JSON array of {"relay": PK, "addr", "up",
 * "streams", "since_ms"} (new reference). */
json_t *hw_relay_client_sessions_json(const struct hw_relay_client *rc);

#endif
