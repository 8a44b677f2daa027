/* Netlink for the VPN apps, through libmnl (rtnetlink): a link's state
 * and MTU, addresses, routes in the main table and route lookups.
 * Blocking calls, each answered by the kernel's acknowledgement. */
#ifndef HW_VPN_NL_H
#define HW_VPN_NL_H

#include <stdint.h>

struct hw_vpn_nl;

struct hw_vpn_route {
	int family; /* 4 or 6 */
	uint8_t dst[16];
	int prefix;
	int has_gw;
	uint8_t gw[16];
	int oif;         /* interface index; 0: none */
	unsigned advmss; /* 0: none (RTAX_ADVMSS) */
	uint32_t metric; /* RTA_PRIORITY; 0: none */
	int local;       /* route_get: the address is this host's own */
};

/* Opens a route netlink socket. Returns 0 with *out or a negative errno. */
int hw_vpn_nl_open(struct hw_vpn_nl **out);
void hw_vpn_nl_close(struct hw_vpn_nl *nl);

/* Sets link ifindex up (or down) and, when mtu is not 0, its MTU.
 * Returns 0 or the kernel's negative errno. */
int hw_vpn_nl_link(struct hw_vpn_nl *nl, int ifindex, int up, unsigned mtu);

/* Adds (add 1) or removes an address addr/prefix on ifindex. IPv6
 * addresses are added without duplicate address detection. Returns 0 or
 * a negative errno (-EEXIST when already there). */
int hw_vpn_nl_addr(struct hw_vpn_nl *nl, int add, int ifindex, int family,
		   const uint8_t *addr, int prefix);

/* Adds (add 1: -EEXIST when the same route is there) or removes (-ESRCH
 * when there is none) a unicast route in the main table. */
int hw_vpn_nl_route(struct hw_vpn_nl *nl, int add,
		    const struct hw_vpn_route *r);

/* Asks the kernel how it reaches dst now (RTM_GETROUTE): fills out's
 * gateway, interface and local flag (out->dst is dst, prefix the full
 * length). Returns 0 or a negative errno (-ENETUNREACH: no route). */
int hw_vpn_nl_route_get(struct hw_vpn_nl *nl, int family, const uint8_t *dst,
			struct hw_vpn_route *out);

/* The main table's default route of family with the lowest metric.
 * Returns 0, -ENOENT when there is none, or a negative errno. */
int hw_vpn_nl_default(struct hw_vpn_nl *nl, int family,
		      struct hw_vpn_route *out);

/* Writes "10.0.0.1/32 via 10.0.0.254 dev eth0" for logs. */
void hw_vpn_route_str(const struct hw_vpn_route *r, char *buf, size_t len);

#endif
