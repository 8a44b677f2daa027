/* routing.tap_file: a copy of what this visor forwards, appended to a
 * file (the payloads back to back, nothing else) without blocking the
 * loop: bytes go to a bounded buffer that libuv's thread pool writes out;
 * what does not fit while a write is under way is dropped and counted. */
#ifndef HW_VISOR_ROUTING_TAP_H
#define HW_VISOR_ROUTING_TAP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* The buffer routing uses: this many bytes wait while as many are being
 * written (roomy: what a route group has in flight, many times over). */
#define HW_ROUTING_TAP_BUF (4u << 20)

struct hw_routing_tap;

/* Opens path for appending (created 0666 less the umask, as fopen "ab")
 * with cap bytes of buffer. Returns 0, or a negative code (-errno of
 * open, -ENOMEM). */
int hw_routing_tap_new(struct hw_routing_tap **out, uv_loop_t *loop,
		       const char *path, size_t cap);

/* Appends len bytes, or drops them all when they do not fit in the
 * buffer (the first drop of a burst is logged). Never blocks. */
void hw_routing_tap_write(struct hw_routing_tap *t, const uint8_t *p,
			  size_t len);

/* Bytes dropped so far (a full buffer or a failed write). */
uint64_t hw_routing_tap_dropped(const struct hw_routing_tap *t);

/* Writes out what is buffered, closes the file and frees t; the loop must
 * run on until that is done. Accepts NULL. */
void hw_routing_tap_free(struct hw_routing_tap *t);

#endif
