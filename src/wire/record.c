#include "wire/record.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"

/* Room for two whole records, so a read that ends inside the second one
 * never has to wait for the first one's bytes to move. */
#define READER_CAP (2 * (HW_RECORD_HDR + HW_RECORD_MAX))

struct hw_record_reader {
	size_t start, end; /* unread bytes are buf[start..end) */
	size_t min_len, max_len;
	uint8_t buf[READER_CAP];
};

struct hw_record_reader *hw_record_reader_new(size_t min_len, size_t max_len)
{
	struct hw_record_reader *r;

	if (max_len > HW_RECORD_MAX || min_len > max_len)
		return NULL;
	r = malloc(sizeof(*r));
	if (!r)
		return NULL;
	r->start = r->end = 0;
	r->min_len = min_len;
	r->max_len = max_len;
	return r;
}

void hw_record_reader_free(struct hw_record_reader *r)
{
	free(r);
}

void hw_record_reader_set_bounds(struct hw_record_reader *r, size_t min_len,
				 size_t max_len)
{
	r->min_len = min_len;
	r->max_len = max_len > HW_RECORD_MAX ? HW_RECORD_MAX : max_len;
}

void hw_record_reader_space(struct hw_record_reader *r, uint8_t **buf,
			    size_t *len)
{
	/* Move the unread tail to the front once less than a whole record
	 * fits behind it. */
	if (r->start > 0 &&
	    READER_CAP - r->end < HW_RECORD_HDR + HW_RECORD_MAX) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	*buf = r->buf + r->end;
	*len = READER_CAP - r->end;
}

void hw_record_reader_commit(struct hw_record_reader *r, size_t n)
{
	if (n > READER_CAP - r->end)
		n = READER_CAP - r->end;
	r->end += n;
}

size_t hw_record_reader_feed(struct hw_record_reader *r, const uint8_t *data,
			     size_t n)
{
	uint8_t *space;
	size_t cap;

	hw_record_reader_space(r, &space, &cap);
	if (n > cap)
		n = cap;
	memcpy(space, data, n);
	r->end += n;
	return n;
}

int hw_record_reader_next(struct hw_record_reader *r, uint8_t **rec,
			  size_t *len)
{
	size_t avail = r->end - r->start, rlen;
	uint8_t *p = r->buf + r->start;

	if (avail < HW_RECORD_HDR)
		return 0;
	rlen = (size_t)p[0] << 8 | p[1];
	if (rlen < r->min_len || rlen > r->max_len)
		return HW_EPROTO;
	if (avail - HW_RECORD_HDR < rlen)
		return 0;
	*rec = p + HW_RECORD_HDR;
	*len = rlen;
	r->start += HW_RECORD_HDR + rlen;
	if (r->start == r->end)
		r->start = r->end = 0;
	return 1;
}

int hw_record_reader_take(struct hw_record_reader *r, size_t n, uint8_t **p)
{
	if (r->end - r->start < n)
		return 0;
	*p = r->buf + r->start;
	r->start += n;
	if (r->start == r->end)
		r->start = r->end = 0;
	return 1;
}

size_t hw_record_reader_pending(const struct hw_record_reader *r)
{
	return r->end - r->start;
}

int hw_record_seal(struct hw_cipher *cs, const uint8_t *pt, size_t ptlen,
		   uint8_t *out)
{
	size_t ctlen;
	int rc;

	if (ptlen > HW_RECORD_MAX_PLAINTEXT)
		return HW_ETOOBIG;
	rc = hw_cipher_encrypt(cs, NULL, 0, pt, ptlen, out + HW_RECORD_HDR,
			       &ctlen);
	if (rc)
		return rc;
	hw_record_put_header(out, ctlen);
	return (int)(HW_RECORD_HDR + ctlen);
}

static int read_full(int fd, uint8_t *buf, size_t len, size_t *got)
{
	*got = 0;
	while (*got < len) {
		ssize_t n = read(fd, buf + *got, len - *got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return HW_ECLOSED;
		*got += (size_t)n;
	}
	return 0;
}

int hw_record_read_fd(int fd, uint8_t *buf, size_t cap, size_t min_len,
		      size_t *len)
{
	uint8_t hdr[HW_RECORD_HDR];
	size_t got, rlen;
	int rc;

	rc = read_full(fd, hdr, sizeof(hdr), &got);
	if (rc == HW_ECLOSED && got > 0)
		return HW_EPROTO;
	if (rc)
		return rc;
	rlen = (size_t)hdr[0] << 8 | hdr[1];
	if (rlen < min_len || rlen > cap)
		return HW_EPROTO;
	rc = read_full(fd, buf, rlen, &got);
	if (rc == HW_ECLOSED)
		return HW_EPROTO;
	if (rc)
		return rc;
	*len = rlen;
	return 0;
}

int hw_record_write_fd(int fd, const uint8_t *rec, size_t len)
{
	uint8_t hdr[HW_RECORD_HDR];
	const uint8_t *parts[2] = {hdr, rec};
	size_t lens[2] = {sizeof(hdr), len};

	if (len > HW_RECORD_MAX)
		return HW_ETOOBIG;
	hw_record_put_header(hdr, len);
	for (int i = 0; i < 2; i++) {
		size_t off = 0;
		while (off < lens[i]) {
			ssize_t n = write(fd, parts[i] + off, lens[i] - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			off += (size_t)n;
		}
	}
	return 0;
}
