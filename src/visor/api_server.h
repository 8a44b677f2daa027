/* The visor's control API server: HTTP/1.1 with JSON bodies on a UNIX
 * socket (mode 0600), served by libmicrohttpd, with every request handled
 * on the visor's libuv loop thread.
 *
 * libmicrohttpd runs its own polling thread. Each complete request is
 * handed to the loop (uv_async) with its connection suspended; the handler
 * runs on the loop and answers at once or later (a ping waits for pongs)
 * with hw_api_reply(), which resumes the connection. The handler never
 * blocks the loop, and the server never calls into visor state from the
 * libmicrohttpd thread. */
#ifndef HW_VISOR_API_SERVER_H
#define HW_VISOR_API_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

/* Largest request body accepted; larger ones get 413 without reaching the
 * handler. */
#define HW_API_MAX_BODY (64 * 1024)

struct hw_api_server;
struct hw_api_req;

/* Called on the loop thread for every request. method is "GET", "POST",
 * "DELETE", ...; path is the URL path without the query ("/v1/info");
 * body is the parsed JSON body or NULL when there was none (a body that is
 * not JSON is answered 400 without reaching the handler). The handler must
 * eventually call hw_api_reply(req, ...) exactly once, now or later from
 * the loop thread. body is owned by the request and freed after the reply;
 * use json_incref to keep it longer. */
typedef void (*hw_api_handler_fn)(struct hw_api_req *req, const char *method,
				  const char *path, json_t *body, void *ud);

/* Starts serving on the UNIX socket path (created with mode 0600; a stale
 * socket file left by a dead process is replaced, one that a live process
 * answers on is not: -EADDRINUSE; a file that is not a socket is left
 * alone: -EEXIST; a path too long for sun_path: -ENAMETOOLONG). Returns 0
 * and *out, or a negative errno. */
int hw_api_server_new(struct hw_api_server **out, uv_loop_t *loop,
		      const char *socket_path, hw_api_handler_fn handler,
		      void *ud);

/* Stops serving: pending requests are answered 503 (waiting at most
 * 250 ms for those answers to go out), the libmicrohttpd thread is
 * joined, the socket file is removed, the uv handle closed (the loop must
 * run once more for it to finish closing; the memory is freed in its
 * close callback). Requests the handler still holds are invalid
 * afterwards: it must drop them without calling hw_api_reply(). May be
 * called from the handler. Accepts NULL. */
void hw_api_server_free(struct hw_api_server *srv);

/* Answers req with HTTP status and JSON body (the body is serialised at
 * once, so the caller keeps its own reference; NULL means an empty
 * object). A status outside 100..599 or a body that cannot be encoded is
 * answered 500 instead. May be called from inside the handler or later,
 * on the loop thread. req is invalid afterwards; if the client has gone
 * meanwhile the answer is dropped. */
void hw_api_reply(struct hw_api_req *req, unsigned status, json_t *body);

/* Answers {"error": message} with status. */
void hw_api_reply_error(struct hw_api_req *req, unsigned status,
			const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The value of query parameter name in req's URL (decoded; "" for a
 * parameter without a value; the first one when repeated), or NULL. Valid
 * until the reply. */
const char *hw_api_query(struct hw_api_req *req, const char *name);

#endif
