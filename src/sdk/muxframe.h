/* The stream framing of libhopwire-app's mux (docs/app-protocol.md,
 * "Streams over one loop"): frames carried over one loop. Pure codec, no
 * state: the mux (mux.c) and the fuzz target share it. */
#ifndef HW_SDK_MUXFRAME_H
#define HW_SDK_MUXFRAME_H

#include <stddef.h>
#include <stdint.h>

#define HW_MUX_VERSION 1
#define HW_MUX_HDR 7             /* type u8 | stream u32 | length u16 */
#define HW_MUX_DATA_MAX 16384    /* payload of one DATA frame */
#define HW_MUX_WINDOW (256 * 1024) /* our per-stream receive window */
#define HW_MUX_WINDOW_MAX (16u * 1024 * 1024)
#define HW_MUX_STREAMS_MAX 4096

enum hw_mux_type {
	HW_MUX_HELLO = 0,
	HW_MUX_OPEN = 1,
	HW_MUX_DATA = 2,
	HW_MUX_CREDIT = 3,
	HW_MUX_FIN = 4,
	HW_MUX_RESET = 5,
};

/* RESET reason codes. */
enum hw_mux_reason {
	HW_MUX_R_CLOSED = 1,  /* the app closed the stream without reading */
	HW_MUX_R_REFUSED = 2, /* too many streams, or nobody accepts */
};

struct hw_mux_frame {
	uint8_t type;
	uint32_t stream;
	uint16_t len;
	const uint8_t *payload;
	uint32_t value; /* HELLO: window; CREDIT: bytes; RESET: reason */
	uint8_t version; /* HELLO only */
};

/* Cuts one frame off buf[0..len): 1 with *f and *used set, 0 when buf
 * does not hold a whole frame yet, -EPROTO for a frame no peer may send
 * (unknown type, a length wrong for its type, DATA empty or longer than
 * HW_MUX_DATA_MAX, stream 0 on anything but HELLO, HELLO on a stream, a
 * HELLO window of 0 or above HW_MUX_WINDOW_MAX, CREDIT of 0 bytes), with
 * a sentence in err. */
int hw_mux_frame_next(const uint8_t *buf, size_t len, struct hw_mux_frame *f,
		      size_t *used, char *err, size_t errlen);

/* Writes a frame header for type/stream/len at out (HW_MUX_HDR bytes). */
void hw_mux_frame_hdr(uint8_t *out, uint8_t type, uint32_t stream,
		      uint16_t len);

/* Writes a whole frame carrying one u32 value (CREDIT, RESET) at out
 * (HW_MUX_HDR + 4 bytes); returns its size. */
size_t hw_mux_frame_u32(uint8_t *out, uint8_t type, uint32_t stream,
			uint32_t value);

#endif
