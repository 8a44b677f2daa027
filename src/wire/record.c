#include "wire/record.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"

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
