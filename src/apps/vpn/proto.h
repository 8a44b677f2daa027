/* What hopwire-vpn-client and hopwire-vpn-server say on their loop
 * (docs/vpn.md "Protocol"): frames of
 *
 *   type u8 | length u16 BE | body (length bytes)
 *
 * The server sends ASSIGN (or REFUSE) first; then both sides send IP
 * packets, one per PACKET frame; CLOSE says why a side ends the loop.
 * The decoder is pure and strict: every length and field is checked, and
 * a frame that breaks the protocol is -EPROTO with a sentence saying
 * which. */
#ifndef HW_VPN_PROTO_H
#define HW_VPN_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define HW_VPN_PORT 44
#define HW_VPN_VERSION 1
#define HW_VPN_HDR 3
/* The largest IP packet, and the TUN MTU both apps use: one frame (header
 * and packet) fits the stream bytes of one route-group DATA packet, which
 * fits one transport record:
 *   65535 record - 16 transport tag - 7 packet header - 16 route-group tag
 *   = 65496 stream bytes, less the 3-byte frame header = 65493.
 * tests/unit/test_vpn_proto.c checks this against src/wire and src/e2e. */
#define HW_VPN_MTU 65493
#define HW_VPN_MTU_MIN 1280
#define HW_VPN_FRAME_MAX (HW_VPN_HDR + HW_VPN_MTU)
#define HW_VPN_ASSIGN_LEN 45
#define HW_VPN_REASON_MAX 255

enum hw_vpn_type {
	HW_VPN_ASSIGN = 1, /* server to client, first */
	HW_VPN_REFUSE = 2, /* server to client, first, instead of ASSIGN */
	HW_VPN_PACKET = 3, /* either way: one IPv4 or IPv6 packet */
	HW_VPN_CLOSE = 4,  /* either way: the reason the sender ends it */
};

/* Masks of the types a reader accepts at a point of the conversation. */
#define HW_VPN_M(t) (1u << (t))
#define HW_VPN_FIRST_FROM_SERVER \
	(HW_VPN_M(HW_VPN_ASSIGN) | HW_VPN_M(HW_VPN_REFUSE) | \
	 HW_VPN_M(HW_VPN_CLOSE))
#define HW_VPN_RUNNING (HW_VPN_M(HW_VPN_PACKET) | HW_VPN_M(HW_VPN_CLOSE))

struct hw_vpn_assign {
	uint16_t mtu;       /* HW_VPN_MTU_MIN..HW_VPN_MTU */
	uint8_t addr4[4];   /* the client's address */
	uint8_t prefix4;    /* 8..30 */
	uint8_t server4[4]; /* the server's TUN address, in the subnet */
	uint8_t prefix6;    /* 0: no IPv6; else 64..126 */
	uint8_t addr6[16];
	uint8_t server6[16];
};

struct hw_vpn_frame {
	uint8_t type;
	uint16_t len;
	const uint8_t *body; /* points into the parsed buffer */
	/* Filled for these types: */
	struct hw_vpn_assign assign;             /* ASSIGN */
	char reason[HW_VPN_REASON_MAX + 1];      /* REFUSE, CLOSE */
	int family;                              /* PACKET: 4 or 6 */
};

/* Parses the frame at the start of p[0..n): 0 with *f and *used (header
 * and body), -EAGAIN when more bytes are needed, -EPROTO when the frame
 * breaks the protocol or its type is not in allowed (HW_VPN_M bits), with
 * why set. A PACKET must be a whole IPv4 packet (version 4, header length
 * 20..len, total length = frame length) or IPv6 one (version 6, payload
 * length + 40 = frame length) of at most HW_VPN_MTU bytes; reasons are
 * 1..255 bytes without control characters (CLOSE may be empty). */
int hw_vpn_parse(const uint8_t *p, size_t n, unsigned allowed,
		 struct hw_vpn_frame *f, size_t *used, char *why,
		 size_t whylen);

/* Writes a frame header for a body of len bytes. */
void hw_vpn_put_hdr(uint8_t out[HW_VPN_HDR], uint8_t type, uint16_t len);

/* Writes an ASSIGN frame (header and body) into out; its length
 * (HW_VPN_HDR + HW_VPN_ASSIGN_LEN). */
size_t hw_vpn_build_assign(uint8_t out[HW_VPN_HDR + HW_VPN_ASSIGN_LEN],
			   const struct hw_vpn_assign *a);

/* Writes a REFUSE or CLOSE frame with reason (cut at 255 bytes, control
 * characters made '?') into out; its length. */
size_t hw_vpn_build_reason(uint8_t out[HW_VPN_HDR + HW_VPN_REASON_MAX],
			   uint8_t type, const char *reason);

/* The source address of a packet that hw_vpn_parse accepted (4 bytes of
 * IPv4, 16 of IPv6) and its destination. */
const uint8_t *hw_vpn_ip_src(const uint8_t *pkt, int family);
const uint8_t *hw_vpn_ip_dst(const uint8_t *pkt, int family);

/* A type's name for messages ("ASSIGN", "type 9"). */
const char *hw_vpn_type_name(uint8_t type, char buf[16]);

#endif
