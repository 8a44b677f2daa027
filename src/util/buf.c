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

bool hw_capped_append(struct hw_capped *c, const void *data, size_t n)
{
	if (!c->too_big) {
		int rc = hw_buf_append(&c->body, data, n, c->max);
		if (rc == 0)
			return true;
		if (rc != -E2BIG) {
			c->oom = true;
			return false;
		}
		c->too_big = true;
		c->discarded = c->body.len;
		hw_buf_reset(&c->body);
	}
	if (c->discarded > c->max_discard ||
	    n > c->max_discard - c->discarded)
		return false;
	c->discarded += n;
	return true;
}

size_t hw_capped_curl_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct hw_capped *c = ud;

	/* curl passes size 1; a product that overflows is refused too. */
	if (size != 1) {
		c->too_big = true;
		return 0;
	}
	return hw_capped_append(c, ptr, nmemb) ? nmemb : 0;
}
