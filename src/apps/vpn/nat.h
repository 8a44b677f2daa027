/* The VPN server's nftables table, through libnftables: `inet
 * hopwire_vpn_<tun>` with a masquerade of the pool's subnets out of every
 * interface but the TUN (unless route-only) and a TCP MSS clamp to the
 * route's MTU on SYNs forwarded through the TUN either way. */
#ifndef HW_VPN_NAT_H
#define HW_VPN_NAT_H

#include <stddef.h>

/* Creates the table (replacing one an earlier run left). subnet6 may be
 * "" (no IPv6). Returns 0 or -EIO with err holding nft's message. */
int hw_vpn_nat_up(const char *tun, const char *subnet4, const char *subnet6,
		  int masquerade, char *err, size_t errlen);

/* Deletes the table; 0 also when it is not there. */
int hw_vpn_nat_down(const char *tun, char *err, size_t errlen);

#endif
