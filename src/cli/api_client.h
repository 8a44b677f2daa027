/* The CLI's client of the visor control API: one HTTP request over the
 * visor's UNIX socket with libcurl. */
#ifndef HW_CLI_API_CLIENT_H
#define HW_CLI_API_CLIENT_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>

struct hw_capped;

/* Sets what every request of the CLI uses: plain HTTP to a local peer
 * (never a proxy from the environment, no redirects, no signals), the
 * timeout, and the answer collected into rb. Returns a CURLcode. */
int hw_cli_curl_local(CURL *c, long timeout_ms, struct hw_capped *rb);

/* Sends method path (with body as JSON when non-NULL) to the visor at
 * socket_path and waits for the answer, at most timeout_ms.
 * Returns 0 with *status (the HTTP status) and *resp (the parsed JSON body,
 * owned by the caller; NULL when the body was empty) whatever the status.
 * Returns -1 and a message in err when the visor could not be reached or
 * answered something that is not HTTP/JSON. When the socket does not exist
 * or refuses the connection the message is exactly
 * "cannot reach visor at PATH: is it running?". */
int hw_api_call(const char *socket_path, const char *method, const char *path,
		json_t *body, long timeout_ms, long *status, json_t **resp,
		char *err, size_t errlen);

#endif
