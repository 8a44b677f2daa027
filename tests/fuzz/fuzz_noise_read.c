/* Fuzzes the Noise handshake message reader: the first input byte picks
 * the point in an XK or KK handshake where the rest of the input arrives
 * as the peer's message; a message that gets through is followed by the
 * rest of the handshake and a transport message, so later states are
 * reached too. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "crypto/noise.h"

static const uint8_t is[32] = {1, 2, 3}, rs[32] = {4, 5, 6};
static uint8_t is_pub[32], rs_pub[32];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg[HW_NOISE_MAX_MSG], pt[HW_NOISE_MAX_MSG];
	struct hw_noise_hs *i = NULL, *r = NULL, *target;
	struct hw_cipher *a = NULL, *b = NULL;
	size_t len, n;
	int kk;

	if (size < 1)
		return 0;
	if (!is_pub[0]) {
		hw_noise_public_key(is, is_pub);
		hw_noise_public_key(rs, rs_pub);
	}
	kk = data[0] & 0x80;
	if (hw_noise_hs_new(&i, kk ? HW_NOISE_KK : HW_NOISE_XK,
			    HW_NOISE_INITIATOR, (const uint8_t *)"f", 1, is,
			    rs_pub) ||
	    hw_noise_hs_new(&r, kk ? HW_NOISE_KK : HW_NOISE_XK,
			    HW_NOISE_RESPONDER, (const uint8_t *)"f", 1, rs,
			    kk ? is_pub : NULL))
		goto out;

	/* Play (data[0] & 3) honest messages, then deliver the input to
	 * whoever reads next. */
	for (int step = 0; step < (data[0] & 3); step++) {
		struct hw_noise_hs *w = hw_noise_hs_state(i) == HW_NOISE_WRITE
						? i
						: r;
		struct hw_noise_hs *rd = w == i ? r : i;
		if (hw_noise_hs_state(w) != HW_NOISE_WRITE)
			break;
		if (hw_noise_hs_write(w, NULL, 0, msg, sizeof(msg), &len) ||
		    hw_noise_hs_read(rd, msg, len, pt, sizeof(pt), &n))
			goto out;
	}
	target = hw_noise_hs_state(i) == HW_NOISE_READ ? i : r;
	if (hw_noise_hs_state(target) == HW_NOISE_READ) {
		hw_noise_hs_read(target, data + 1, size - 1, pt, sizeof(pt),
				 &n);
	} else if (hw_noise_hs_split(r, &a, &b) == 0) {
		/* Past the handshake: the input is a transport message. */
		memcpy(msg, data + 1, size - 1 < sizeof(msg) ? size - 1
							     : sizeof(msg));
		hw_cipher_decrypt(b, NULL, 0, msg,
				  size - 1 < sizeof(msg) ? size - 1
							 : sizeof(msg),
				  msg, &n);
	}
out:
	hw_cipher_free(a);
	hw_cipher_free(b);
	hw_noise_hs_free(i);
	hw_noise_hs_free(r);
	return 0;
}
