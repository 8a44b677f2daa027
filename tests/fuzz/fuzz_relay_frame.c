/* Fuzzes the relay decoder: the input is a session's byte stream after
 * the handshake. Unit headers are checked as the wire checks them; a
 * SEALED body is taken as an already decrypted plaintext and its control
 * frames iterated; OPEN bodies are decoded and re-encoded. Everything
 * handed out must lie inside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/frame.h"

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch(const uint8_t *base, size_t size, const uint8_t *p,
		  size_t n)
{
	if (n && (p < base || p + n > base + size))
		abort();
	for (size_t k = 0; k < n; k++)
		sink ^= p[k];
}

static void controls(const uint8_t *buf, size_t len)
{
	struct hw_relay_frame f;
	struct hw_relay_open o;
	uint8_t again[HW_RELAY_OPEN_LEN];
	size_t off = 0, prev = 0;
	int rc;

	while ((rc = hw_relay_next_control(buf, len, &off, &f)) == 1) {
		if (off <= prev || off > len ||
		    off - prev != HW_RELAY_HDR + (size_t)f.len)
			abort();
		prev = off;
		touch(buf, len, f.body, f.len);
		if (hw_relay_check_control(&f))
			abort();
		if (f.type == HW_RELAY_CREDIT && hw_relay_credit_value(&f) == 0)
			abort();
		if (f.type == HW_RELAY_OPEN) {
			if (hw_relay_open_decode(&o, f.body, f.len))
				abort();
			hw_relay_open_encode(&o, again);
			if (memcmp(again, f.body, HW_RELAY_OPEN_LEN))
				abort();
		}
		if (f.type == HW_RELAY_REFUSE || f.type == HW_RELAY_ERROR) {
			char text[HW_RELAY_TEXT_MAX + 1];
			hw_relay_text_sanitize(f.body, f.len, text,
					       sizeof(text));
		}
	}
	if (rc == 0 && off != len)
		abort();
	if (off > len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_relay_frame u;
	struct hw_relay_open o;
	size_t off = 0;

	while (size - off >= HW_RELAY_HDR) {
		hw_relay_get_header(data + off, &u);
		if (hw_relay_check_unit(&u))
			break;
		if (size - off - HW_RELAY_HDR < u.len)
			break;
		u.body = data + off + HW_RELAY_HDR;
		touch(data, size, u.body, u.len);
		if (u.type == HW_RELAY_SEALED)
			controls(u.body, u.len);
		off += HW_RELAY_HDR + u.len;
	}
	/* The whole input as a plaintext, and as an OPEN body. */
	controls(data, size);
	if (hw_relay_open_decode(&o, data, size) == 0 &&
	    size != HW_RELAY_OPEN_LEN)
		abort();
	return 0;
}
