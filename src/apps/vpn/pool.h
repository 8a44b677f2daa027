/* The VPN server's address pool: an IPv4 subnet (and an IPv6 one when
 * configured) whose host addresses go to clients, one per client visor,
 * the same one for the same public key across restarts (leases.json,
 * docs/vpn.md "Leases").
 *
 * Addresses are numbered by their host part: index 1 is the server's
 * (10.44.0.1 in 10.44.0.0/24), clients get 2 and up, at most
 * HW_VPN_POOL_MAX of them. A client's IPv6 address has the same index
 * in the IPv6 subnet. */
#ifndef HW_VPN_POOL_H
#define HW_VPN_POOL_H

#include <stddef.h>
#include <stdint.h>

#define HW_VPN_POOL_MAX 65533 /* indexes 2..65534 */
/* leases.json is at most this big. */
#define HW_VPN_LEASES_MAX (16u << 20)

struct hw_vpn_pool;

/* Parses "A.B.C.D/N" (family 4, N 8..30) or "X::/N" (family 6, N
 * 64..112) into addr (4 or 16 bytes, host bits cleared) and *prefix.
 * Returns 0 or -EINVAL with err naming the input. */
int hw_vpn_cidr_parse(const char *s, int family, uint8_t *addr, int *prefix,
		      char *err, size_t errlen);

/* Parses a network to route, "A.B.C.D/N" (N 0..32) or "X:X::/N" (N
 * 0..128), into *family (4 or 6), addr (host bits cleared) and *prefix.
 * Returns 0 or -EINVAL with err naming the input. */
int hw_vpn_route_parse(const char *s, int *family, uint8_t addr[16],
		       int *prefix, char *err, size_t errlen);

/* Makes a pool of cidr4 and, unless NULL, cidr6. Returns 0 with *out
 * (free with hw_vpn_pool_free) or -EINVAL / -ENOMEM with err set. */
int hw_vpn_pool_new(struct hw_vpn_pool **out, const char *cidr4,
		    const char *cidr6, char *err, size_t errlen);
void hw_vpn_pool_free(struct hw_vpn_pool *p);

/* Reads the leases in path. No file is no lease (0). A lease whose
 * address is outside this pool (the subnet changed) is forgotten and
 * counted in *skipped. Anything malformed (not JSON, wrong types, a key
 * that is not 64 lowercase hex digits, two leases of one key or one
 * address, the server's, network or broadcast address) is -EINVAL with
 * err naming it, and the pool is left without leases. */
int hw_vpn_pool_load(struct hw_vpn_pool *p, const char *path, int *skipped,
		     char *err, size_t errlen);

/* Writes every lease to path (atomically, synced). Returns 0 or a
 * negative errno. */
int hw_vpn_pool_save(const struct hw_vpn_pool *p, const char *path);

/* The index leased to pk (64 hex characters), leasing the lowest free one
 * when pk has none; *is_new says which. Returns 0, -ENOSPC when every
 * address is leased, -EINVAL for a malformed key. */
int hw_vpn_pool_lease(struct hw_vpn_pool *p, const char *pk,
		      uint32_t *index, int *is_new);

/* The key holding index, or NULL. */
const char *hw_vpn_pool_holder(const struct hw_vpn_pool *p, uint32_t index);

/* The addresses of an index (1: the server's). */
void hw_vpn_pool_addr4(const struct hw_vpn_pool *p, uint32_t index,
		       uint8_t out[4]);
void hw_vpn_pool_addr6(const struct hw_vpn_pool *p, uint32_t index,
		       uint8_t out[16]);

/* The index of an address in the pool's subnet (0: outside it, or its
 * network address; it may be unleased). */
uint32_t hw_vpn_pool_index4(const struct hw_vpn_pool *p, const uint8_t a[4]);
uint32_t hw_vpn_pool_index6(const struct hw_vpn_pool *p, const uint8_t a[16]);

int hw_vpn_pool_prefix4(const struct hw_vpn_pool *p);
/* 0 without IPv6. */
int hw_vpn_pool_prefix6(const struct hw_vpn_pool *p);
/* The highest client index. */
uint32_t hw_vpn_pool_last(const struct hw_vpn_pool *p);
/* "10.44.0.0/24" and "fd44::/64" (or ""). */
const char *hw_vpn_pool_subnet4(const struct hw_vpn_pool *p);
const char *hw_vpn_pool_subnet6(const struct hw_vpn_pool *p);

#endif
