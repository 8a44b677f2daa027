/* A growable byte buffer with a hard maximum, for bodies read in pieces
 * (HTTP uploads and responses). */
#ifndef HW_UTIL_BUF_H
#define HW_UTIL_BUF_H

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

#endif
