#include "util/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 1024

int hw_buf_append(struct hw_buf *b, const void *data, size_t n, size_t max)
{
	if (b->len > max || n > max - b->len)
		return -E2BIG;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : MIN_CAP;
		char *p;

		while (cap < b->len + n)
			cap *= 2;
		if (cap > max)
			cap = max;
		if (!(p = realloc(b->data, cap)))
			return -ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

void hw_buf_reset(struct hw_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
