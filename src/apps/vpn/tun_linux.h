/* A Linux TUN device for the VPN apps: IP packets without a header
 * (IFF_TUN | IFF_NO_PI), non-blocking, close-on-exec. The device lives as
 * long as its descriptor: closing it (or the process dying) removes the
 * device with its addresses and routes. */
#ifndef HW_VPN_TUN_LINUX_H
#define HW_VPN_TUN_LINUX_H

#include <net/if.h>

/* 1 when name is 1..15 of [A-Za-z0-9_-] (what --tun accepts). */
int hw_vpn_tun_name_ok(const char *name);

/* Opens (creates) the TUN device name. Returns the descriptor, or a
 * negative errno (-EBUSY: a device of that name exists and is in use). */
int hw_vpn_tun_open(const char *name);

#endif
