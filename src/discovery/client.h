/* The discovery client: what visors, relays and (later) setup nodes use to
 * talk to hopwire-discovery (docs/discovery.md).
 *
 * Requests run in libuv's thread pool (libcurl easy handles), so nothing
 * blocks the loop; their outcome arrives on the loop in a callback.
 *
 * Writes are signed with the client's identity and carry its sequence
 * number: max(last + 1, unix time in microseconds), where last is kept in
 * seq_path (written before the request goes out), so the number keeps
 * rising across restarts and clock hiccups. Writes go out one at a time in
 * the order they were made, so a later sequence number never overtakes an
 * earlier one; reads run concurrently. */
#ifndef HW_DISCOVERY_CLIENT_H
#define HW_DISCOVERY_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"
#include "discovery/entry.h"

struct hw_disc_client;

/* Outcome of a request. status 0: resp is the response body (borrowed,
 * valid during the call; NULL for an empty body). Otherwise a negative
 * code and msg says why: the server's JSON "error" for a 4xx/5xx
 * ("discovery: 409: replayed sequence number"), or the transport error
 * ("discovery: cannot connect to http://...: Connection refused"). For
 * HTTP errors *http_status is set, else 0. */
/* Status codes: 400 -EINVAL, 401 -EACCES, 403 -EPERM, 404 -ENOENT, 413
 * -E2BIG, other HTTP errors -EPROTO; no connection -ECONNREFUSED, timeout
 * -ETIMEDOUT, an answer over 4 MiB -EMSGSIZE, other failures -EIO. */
typedef void (*hw_disc_cb)(struct hw_disc_client *c, int status,
			   int http_status, json_t *resp, const char *msg,
			   void *ud);

/* url: base URL ("http://127.0.0.1:9090"). id: signs every write;
 * outlives the client. seq_path: file holding the last sequence number
 * (NULL: not persisted). Returns 0 or a negative code with a message. */
int hw_disc_client_new(struct hw_disc_client **out, uv_loop_t *loop,
		       const char *url, const struct hw_identity *id,
		       const char *seq_path, char *err, size_t errlen);

/* Cancels what has not started, lets running requests finish without
 * calling back, and frees the client once they have (the loop must run
 * on). Accepts NULL. */
void hw_disc_client_free(struct hw_disc_client *c);

const char *hw_disc_client_url(const struct hw_disc_client *c);

/* Writes. Each fills in signer, seq and ts itself and signs. The entry
 * arguments are copied before these return. Return 0 (cb follows, exactly
 * once, unless the client is freed first) or a negative code for bad
 * arguments. */
int hw_disc_put_visor(struct hw_disc_client *c,
		      const struct hw_disc_visor *v, hw_disc_cb cb, void *ud);
int hw_disc_put_relay(struct hw_disc_client *c,
		      const struct hw_disc_relay *r, hw_disc_cb cb, void *ud);
int hw_disc_put_transport(struct hw_disc_client *c,
			  const struct hw_disc_transport *t, hw_disc_cb cb,
			  void *ud);
int hw_disc_del_transport(struct hw_disc_client *c,
			  const uint8_t id[HW_DISC_TP_ID_LEN], hw_disc_cb cb,
			  void *ud);
int hw_disc_put_service(struct hw_disc_client *c,
			const struct hw_disc_service *s, hw_disc_cb cb,
			void *ud);
int hw_disc_del_service(struct hw_disc_client *c, const char *type,
			hw_disc_cb cb, void *ud);

/* Reads: GET url + path ("/v1/visors/<pk>", "/v1/relays", ...). */
int hw_disc_get(struct hw_disc_client *c, const char *path, hw_disc_cb cb,
		void *ud);

#endif
