#include "wire/packet.h"

#include "util/err.h"

void hw_packet_put_header(uint8_t out[HW_PACKET_HDR], uint8_t type,
			  uint32_t route_id, uint16_t len)
{
	out[0] = type;
	out[1] = (uint8_t)(route_id >> 24);
	out[2] = (uint8_t)(route_id >> 16);
	out[3] = (uint8_t)(route_id >> 8);
	out[4] = (uint8_t)route_id;
	out[5] = (uint8_t)(len >> 8);
	out[6] = (uint8_t)len;
}

int hw_packet_next(const uint8_t *buf, size_t len, size_t *off,
		   struct hw_packet *pkt)
{
	const uint8_t *p;
	size_t left;

	if (*off >= len)
		return 0;
	left = len - *off;
	if (left < HW_PACKET_HDR)
		return HW_EPROTO;
	p = buf + *off;
	pkt->type = p[0];
	pkt->route_id = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
			(uint32_t)p[3] << 8 | p[4];
	pkt->len = (uint16_t)(p[5] << 8 | p[6]);
	if (p[0] == (HW_PKT_DATA | HW_PKT_F_DETACHED)) {
		if (left != HW_PACKET_HDR || pkt->route_id == 0 ||
		    pkt->len == 0)
			return HW_EPROTO;
		pkt->payload = NULL;
		*off += HW_PACKET_HDR;
		return 1;
	}
	if (p[0] > HW_PKT_TYPE_MAX)
		return HW_EPROTO;
	if (left - HW_PACKET_HDR < pkt->len)
		return HW_EPROTO;
	pkt->payload = p + HW_PACKET_HDR;
	*off += HW_PACKET_HDR + pkt->len;
	return 1;
}

const char *hw_packet_type_name(uint8_t type)
{
	static const char *const names[] = {
		"data", "close", "keepalive", "handshake", "ping", "pong",
		"error", "setup", "route_fail", "route_fail_back", "mesh",
	};
	return type <= HW_PKT_TYPE_MAX ? names[type] : "unknown";
}
