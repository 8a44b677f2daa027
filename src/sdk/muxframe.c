/* The mux's frame codec (muxframe.h, docs/app-protocol.md). */
#include "sdk/muxframe.h"

#include <errno.h>
#include <stdio.h>

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

void hw_mux_frame_hdr(uint8_t *out, uint8_t type, uint32_t stream,
		      uint16_t len)
{
	out[0] = type;
	put32(out + 1, stream);
	out[5] = len >> 8;
	out[6] = len;
}

size_t hw_mux_frame_u32(uint8_t *out, uint8_t type, uint32_t stream,
			uint32_t value)
{
	hw_mux_frame_hdr(out, type, stream, 4);
	put32(out + HW_MUX_HDR, value);
	return HW_MUX_HDR + 4;
}

static const char *names[] = {"HELLO", "OPEN", "DATA", "CREDIT", "FIN",
			      "RESET"};

int hw_mux_frame_next(const uint8_t *buf, size_t len, struct hw_mux_frame *f,
		      size_t *used, char *err, size_t errlen)
{
	size_t want;

	if (len < HW_MUX_HDR)
		return 0;
	f->type = buf[0];
	f->stream = get32(buf + 1);
	f->len = (uint16_t)(buf[5] << 8 | buf[6]);
	f->payload = buf + HW_MUX_HDR;
	f->value = 0;
	f->version = 0;
	if (f->type > HW_MUX_RESET) {
		snprintf(err, errlen, "unknown frame type %u", f->type);
		return -EPROTO;
	}
	switch (f->type) {
	case HW_MUX_HELLO:
		want = 5;
		break;
	case HW_MUX_OPEN:
	case HW_MUX_FIN:
		want = 0;
		break;
	case HW_MUX_DATA:
		want = f->len >= 1 && f->len <= HW_MUX_DATA_MAX ? f->len
								: SIZE_MAX;
		break;
	default:
		want = 4;
		break;
	}
	if (want != f->len) {
		snprintf(err, errlen, "%s frame of %u bytes on stream %u",
			 names[f->type], f->len, f->stream);
		return -EPROTO;
	}
	if ((f->type == HW_MUX_HELLO) != (f->stream == 0)) {
		snprintf(err, errlen, "%s frame on stream %u", names[f->type],
			 f->stream);
		return -EPROTO;
	}
	if (len - HW_MUX_HDR < f->len)
		return 0;
	if (f->type == HW_MUX_HELLO) {
		f->version = f->payload[0];
		f->value = get32(f->payload + 1);
		if (f->value == 0 || f->value > HW_MUX_WINDOW_MAX) {
			snprintf(err, errlen, "HELLO window of %u bytes",
				 f->value);
			return -EPROTO;
		}
	} else if (f->len == 4) {
		f->value = get32(f->payload);
		if (f->type == HW_MUX_CREDIT && f->value == 0) {
			snprintf(err, errlen, "CREDIT of 0 bytes on stream %u",
				 f->stream);
			return -EPROTO;
		}
	}
	*used = HW_MUX_HDR + f->len;
	return 1;
}
