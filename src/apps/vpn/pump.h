/* Moving frames between a loop and the apps, shared by client and server:
 * bounded buffers allocated once per loop (never per packet), one write
 * for a batch of frames, one read for many. */
#ifndef HW_VPN_PUMP_H
#define HW_VPN_PUMP_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* Per loop: what it read and has not parsed, what waits to be written. */
#define HW_VPN_IN_CAP (256u << 10)
#define HW_VPN_OUT_CAP (512u << 10)
/* TUN packets read in one go before the batch is written. */
#define HW_VPN_BATCH 64

struct hw_vpn_buf {
	uint8_t *p;
	size_t off, len, cap; /* bytes off..len wait */
};

int hw_vpn_buf_init(struct hw_vpn_buf *b, size_t cap);
void hw_vpn_buf_free(struct hw_vpn_buf *b);

/* Room for need more bytes at b->p + b->len (moving what waits to the
 * front when that makes room): the place to write them, or NULL when
 * there is none. The caller then adds its count to b->len. */
uint8_t *hw_vpn_buf_room(struct hw_vpn_buf *b, size_t need);

/* Writes what waits in b to fd (non-blocking) in one call. Returns 0 when
 * all is written, 1 when some waits (poll for POLLOUT), or a negative
 * errno. */
int hw_vpn_buf_flush(struct hw_vpn_buf *b, int fd);

/* Reads from loop fd into in once, then hands each whole frame whose
 * type is in allowed(ud) to on_frame (which returns 0 to go on, or
 * non-zero to stop: returned as is). Returns 0 when the loop is still
 * open (-EAGAIN is 0 too), -EPIPE at its end, -EPROTO with why for a
 * malformed frame, or another negative errno. */
int hw_vpn_read_frames(int fd, struct hw_vpn_buf *in,
		       unsigned (*allowed)(void *ud),
		       int (*on_frame)(const struct hw_vpn_frame *f, void *ud),
		       void *ud, char *why, size_t whylen);

/* Reads up to HW_VPN_BATCH packets from TUN fd tun, each into
 * place(ud, &cap) (a buffer of cap >= HW_VPN_MTU bytes, NULL: stop),
 * calling done(ud, pkt, n) after each. Returns the packets read or a
 * negative errno other than EAGAIN. */
int hw_vpn_tun_batch(int tun, uint8_t *(*place)(void *ud),
		     void (*done)(void *ud, uint8_t *pkt, size_t n),
		     void *ud);

#endif
