/* The relay server (docs/relay.md): accepts visor sessions, pairs the
 * streams visors open to each other across their sessions and forwards
 * their DATA, CREDIT and CLOSE frames, rewriting stream ids.
 *
 * Flow control is enforced here: each stream direction may have at most
 * HW_RELAY_WINDOW bytes sent and not yet credited back, so the relay
 * buffers at most one window per direction; a session that sends beyond
 * its credit is dropped. Each open stream reserves two windows from the
 * buffer budget. A session that breaks the protocol is dropped (told
 * with ERROR, logged once); other sessions are unaffected. */
#ifndef HW_RELAY_SERVER_H
#define HW_RELAY_SERVER_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"

struct hw_relay_server;

struct hw_relay_server_params {
	uv_loop_t *loop;
	const struct hw_identity *id; /* the relay's; outlives the server */
	unsigned max_sessions;        /* default 4096 */
	unsigned max_streams;         /* per session, default 256 */
	uint64_t max_buffered;        /* bytes, default 1 GiB */
	unsigned keepalive_ms;        /* default 5000; 0: none */
	unsigned handshake_timeout_ms; /* default 10000 */
	unsigned max_handshakes;      /* unfinished at once, default 64 */
	unsigned open_timeout_ms;     /* target's answer, default 10000 */
};

/* Fills p with the defaults above (loop and id NULL). */
void hw_relay_server_defaults(struct hw_relay_server_params *p);

/* Creates a server (not listening yet). Returns 0 and *out, -EINVAL for
 * a zero limit or missing loop/id, -ENOMEM, HW_ECRYPTO. */
int hw_relay_server_new(struct hw_relay_server **out,
			const struct hw_relay_server_params *p);

/* Listens on host:port (host: numeric address, "" for every address;
 * port 0 picks one). Returns 0 or a negative code with a message. */
int hw_relay_server_listen(struct hw_relay_server *s, const char *host,
			   uint16_t port, char *err, size_t errlen);

/* The port listened on (0 before listening). */
uint16_t hw_relay_server_port(const struct hw_relay_server *s);

/* Shuts down: stops listening, refuses pending opens (REFUSE 7), tells
 * every session (ERROR "relay shutting down") and closes it, and frees
 * the server once every handle is closed; the loop must run on. Accepts
 * NULL. */
void hw_relay_server_free(struct hw_relay_server *s);

/* Counters as a JSON object (new reference): sessions, handshakes,
 * streams, opening, buffered, reserved, bytes_forwarded, units_forwarded,
 * sessions_total, streams_total, dropped (protocol errors), replaced,
 * rejected_full, rejected_handshakes, refusals {no_session, refused,
 * stream_limit, buffer_limit, bad_request, timed_out, shutting_down}. */
json_t *hw_relay_server_stats_json(const struct hw_relay_server *s);

#endif
