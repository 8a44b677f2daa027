/* Routing packets, the unit every transport carries:
 *
 *   type u8 | route_id u32 BE | length u16 BE | payload (length bytes)
 *
 * One encrypted record carries one or more packets back to back, so small
 * packets share a record (and its tag) under load. */
#ifndef HW_WIRE_PACKET_H
#define HW_WIRE_PACKET_H

#include <stddef.h>
#include <stdint.h>

#include "wire/record.h"

#define HW_PACKET_HDR 7
/* A packet must fit one record's plaintext. */
#define HW_PACKET_MAX_PAYLOAD (HW_RECORD_MAX_PLAINTEXT - HW_PACKET_HDR)

enum hw_packet_type {
	HW_PKT_DATA = 0,      /* payload for a route */
	HW_PKT_CLOSE = 1,     /* route 0: the transport is being removed */
	HW_PKT_KEEPALIVE = 2, /* no payload; proves the link is alive */
	HW_PKT_HANDSHAKE = 3, /* end-to-end handshake inside a route */
	HW_PKT_PING = 4,      /* payload echoed back in a PONG */
	HW_PKT_PONG = 5,
	HW_PKT_ERROR = 6,     /* payload: u16 BE code, then text */
	HW_PKT_SETUP = 7,     /* route 0: a setup message (docs/routing.md) */
	/* A hop lost the route's next or previous transport: travels
	 * along the route to its end (ROUTE_FAIL) or against it, back to
	 * its start (ROUTE_FAIL_BACK). Payload: HW_ROUTE_FAIL_LEN bytes. */
	HW_PKT_ROUTE_FAIL = 8,
	HW_PKT_ROUTE_FAIL_BACK = 9,
	HW_PKT_MESH = 10, /* route 0: a mesh message (docs/mesh.md) */
	HW_PKT_TYPE_MAX = HW_PKT_MESH,
};

/* Type flag: the packet's payload is not inside the record but follows it
 * on the wire, outside the transport's encryption (docs/transport.md).
 * Only DATA on a route (route_id != 0) may be sent so, as the last packet
 * of its record; its length field gives the payload's size. */
#define HW_PKT_F_DETACHED 0x80
/* Route DATA payloads at least this long travel detached. */
#define HW_PKT_DETACH_MIN 1024

/* A route-failure payload: code u8 | the transport ID that failed. */
#define HW_ROUTE_FAIL_LEN 17
enum hw_route_fail_code {
	HW_ROUTE_FAIL_TP_LOST = 1, /* the transport went down or away */
	HW_ROUTE_FAIL_NO_NEXT = 2, /* a packet found its next hop down */
};

struct hw_packet {
	uint8_t type;
	uint32_t route_id;
	uint16_t len;
	const uint8_t *payload; /* points into the decoded buffer */
};

/* Writes the 7-byte header for a packet into out. */
void hw_packet_put_header(uint8_t out[HW_PACKET_HDR], uint8_t type,
			  uint32_t route_id, uint16_t len);

/* Decodes the packet at buf[*off..len) and advances *off past it.
 * Returns 1 with *pkt set, 0 when *off == len (no more packets), or
 * HW_EPROTO for a truncated packet, a length running past the buffer, or
 * an unknown type. A detached DATA header comes back with type
 * HW_PKT_DATA | HW_PKT_F_DETACHED and payload NULL; it must be the last
 * packet of the record, for route 0 it is HW_EPROTO. */
int hw_packet_next(const uint8_t *buf, size_t len, size_t *off,
		   struct hw_packet *pkt);

/* The name of a packet type ("data", "ping", ...), "unknown" otherwise. */
const char *hw_packet_type_name(uint8_t type);

#endif
