/* Loop buffers (pump.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pump.h"

int hw_vpn_buf_init(struct hw_vpn_buf *b, size_t cap)
{
	b->off = b->len = 0;
	b->cap = cap;
	b->p = malloc(cap);
	return b->p ? 0 : -ENOMEM;
}

void hw_vpn_buf_free(struct hw_vpn_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->off = b->len = b->cap = 0;
}

uint8_t *hw_vpn_buf_room(struct hw_vpn_buf *b, size_t need)
{
	if (b->off == b->len)
		b->off = b->len = 0;
	if (b->cap - b->len >= need)
		return b->p + b->len;
	if (b->cap - (b->len - b->off) < need)
		return NULL;
	memmove(b->p, b->p + b->off, b->len - b->off);
	b->len -= b->off;
	b->off = 0;
	return b->p + b->len;
}

int hw_vpn_buf_flush(struct hw_vpn_buf *b, int fd)
{
	ssize_t n;

	while (b->off < b->len) {
		n = send(fd, b->p + b->off, b->len - b->off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 1 : -errno;
		b->off += (size_t)n;
	}
	b->off = b->len = 0;
	return 0;
}

int hw_vpn_read_frames(int fd, struct hw_vpn_buf *in,
		       unsigned (*allowed)(void *ud),
		       int (*on_frame)(const struct hw_vpn_frame *f, void *ud),
		       void *ud, char *why, size_t whylen)
{
	struct hw_vpn_frame f;
	size_t used;
	ssize_t n;
	int rc;

	/* in never holds more than one partial frame: room is there. */
	if (!hw_vpn_buf_room(in, HW_VPN_FRAME_MAX))
		return -ENOBUFS;
	n = read(fd, in->p + in->len, in->cap - in->len);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -EPIPE;
	in->len += (size_t)n;
	while (in->off < in->len) {
		rc = hw_vpn_parse(in->p + in->off, in->len - in->off,
				  allowed(ud), &f, &used, why, whylen);
		if (rc == -EAGAIN)
			break;
		if (rc)
			return rc;
		in->off += used;
		if ((rc = on_frame(&f, ud)))
			return rc;
	}
	return 0;
}

int hw_vpn_tun_batch(int tun, uint8_t *(*place)(void *ud),
		     void (*done)(void *ud, uint8_t *pkt, size_t n),
		     void *ud)
{
	int got = 0;

	while (got < HW_VPN_BATCH) {
		uint8_t *p = place(ud);
		ssize_t n;

		if (!p)
			break;
		n = read(tun, p, HW_VPN_MTU);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? got : (got ? got : -errno);
		done(ud, p, (size_t)n);
		got++;
	}
	return got;
}
