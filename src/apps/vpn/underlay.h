/* The VPN client's view of its visor's underlay: the IP addresses the
 * visor's own connections go to (the peers of its transports, its relays,
 * its discovery service), learned from the visor's control API
 * (HOPWIRE_VISOR_API: GET /v1/transports and /v1/info, docs/api.md) by a
 * thread of its own every HW_VPN_UNDERLAY_MS, so that names that take
 * long to resolve never stall the packets. The client keeps a host route
 * outside the tunnel for each (docs/vpn.md "What the client changes"). */
#ifndef HW_VPN_UNDERLAY_H
#define HW_VPN_UNDERLAY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HW_VPN_UNDERLAY_MAX 256
#define HW_VPN_UNDERLAY_MS 2000

struct hw_vpn_ip {
	int family; /* 4 or 6 */
	uint8_t a[16];
};

struct hw_vpn_underlay_set {
	unsigned gen; /* 0: no answer yet; grows with every answer */
	int n;
	struct hw_vpn_ip ip[HW_VPN_UNDERLAY_MAX];
	char error[256]; /* why the last fetch failed; "" when it did not */
};

struct hw_vpn_underlay;

/* Starts the thread asking the visor at socket path api. Returns 0 with
 * *out, or a negative errno. */
int hw_vpn_underlay_start(struct hw_vpn_underlay **out, const char *api);
/* Stops the thread and frees u (NULL: nothing). */
void hw_vpn_underlay_stop(struct hw_vpn_underlay *u);

/* Copies the latest set into *out. With wait_ms > 0 and no answer yet,
 * waits up to that long for the first one. */
void hw_vpn_underlay_get(struct hw_vpn_underlay *u,
			 struct hw_vpn_underlay_set *out, int wait_ms);

/* The host part of an address as the visor writes them: "HOST:PORT",
 * "[V6]:PORT", "PK@HOST:PORT", "http://HOST:PORT/PATH". Returns 0 with
 * host, or -EINVAL. (Pure: unit-tested.) */
int hw_vpn_host_of(const char *s, char *host, size_t len);

/* Adds every IP address of the visor's answers (a /v1/transports array
 * and a /v1/info object; either may be NULL) to set, resolving names,
 * leaving out loopback addresses and duplicates. */
void hw_vpn_underlay_collect(json_t *transports, json_t *info,
			     struct hw_vpn_underlay_set *set);

#endif
