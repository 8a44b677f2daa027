/* A growable byte buffer with a hard maximum, for bodies read in pieces
 * (HTTP uploads and responses). */
#ifndef HW_UTIL_BUF_H
#define HW_UTIL_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct hw_buf {
	char *data;
	size_t len, cap;
};

/* Appends n bytes of data, growing geometrically but never past max.
 * Returns 0; -E2BIG when the result would exceed max (b unchanged);
 * -ENOMEM. */
int hw_buf_append(struct hw_buf *b, const void *data, size_t n, size_t max);

/* Frees the contents and empties b. */
void hw_buf_reset(struct hw_buf *b);

/* A body received in pieces under a cap (an HTTP upload or response).
 * Past max the body is dropped and the bytes only counted, up to
 * max_discard in all, so a server can read a request to its end and still
 * answer 413. Set max and max_discard (0: stop at once past max); the rest
 * starts zeroed. */
struct hw_capped {
	struct hw_buf body;
	size_t max, max_discard, discarded;
	bool too_big, oom;
};

/* Takes n bytes. Returns false when it cannot: out of memory (oom), or
 * over max with more than max_discard bytes dropped (too_big). */
bool hw_capped_append(struct hw_capped *c, const void *data, size_t n);

/* A libcurl CURLOPT_WRITEFUNCTION into the struct hw_capped at ud. */
size_t hw_capped_curl_write(char *ptr, size_t size, size_t nmemb, void *ud);

#endif
