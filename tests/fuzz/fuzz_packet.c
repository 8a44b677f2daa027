/* Fuzzes the routing packet decoder: the input is one record's plaintext;
 * every packet handed out must lie inside it, and a detached DATA header
 * (whose payload follows the record) must be the last. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "wire/packet.h"

/* Every byte handed out is read, so ASan checks it lies in bounds. */
static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_packet pkt;
	size_t off = 0, seen = 0;
	int rc;

	while ((rc = hw_packet_next(data, size, &off, &pkt)) == 1) {
		if (pkt.type == (HW_PKT_DATA | HW_PKT_F_DETACHED)) {
			/* A detached header: its payload follows the record,
			 * so it must be the record's last packet. */
			if (pkt.payload || off != size || !pkt.route_id ||
			    !pkt.len)
				abort();
			seen += HW_PACKET_HDR;
			continue;
		}
		if (pkt.payload < data ||
		    pkt.payload + pkt.len > data + size ||
		    pkt.type > HW_PKT_TYPE_MAX)
			abort();
		for (size_t k = 0; k < pkt.len; k++)
			sink ^= pkt.payload[k];
		seen += HW_PACKET_HDR + pkt.len;
	}
	if (seen > size || (rc == 0 && seen != size))
		abort();
	return 0;
}
