/* Address pool and leases.json (pool.h, docs/vpn.md "Leases"). */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "status.h"

#define PK_HEX 64

struct hw_vpn_pool {
	uint32_t net4; /* host order */
	int prefix4;
	uint8_t net6[16];
	int prefix6; /* 0: none */
	uint32_t last; /* highest client index */
	char subnet4[INET_ADDRSTRLEN + 4];
	char subnet6[INET6_ADDRSTRLEN + 5];
	/* holder[i]: the key leased index i, "" when free (i < 2 unused). */
	char (*holder)[PK_HEX + 1];
};

static int cidr(const char *s, int family, int lo, int hi, uint8_t *addr,
		int *prefix, char *err, size_t errlen)
{
	size_t alen = family == 4 ? 4 : 16;
	const char *slash = strchr(s, '/');
	char host[INET6_ADDRSTRLEN + 1], *end;
	long n;

	if (!slash || (size_t)(slash - s) >= sizeof(host) || !slash[1])
		goto bad;
	memcpy(host, s, (size_t)(slash - s));
	host[slash - s] = '\0';
	errno = 0;
	n = strtol(slash + 1, &end, 10);
	if (*end || errno || slash[1] < '0' || slash[1] > '9')
		goto bad;
	if (inet_pton(family == 4 ? AF_INET : AF_INET6, host, addr) != 1)
		goto bad;
	if (n < lo || n > hi) {
		snprintf(err, errlen, "'%s': prefix /%ld is outside /%d../%d",
			 s, n, lo, hi);
		return -EINVAL;
	}
	for (size_t bit = (size_t)n; bit < alen * 8; bit++)
		addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
	*prefix = (int)n;
	return 0;
bad:
	snprintf(err, errlen, "'%s' is not an IPv%d subnet (%s)", s, family,
		 family == 4 ? "A.B.C.D/N" : "X:X::/N");
	return -EINVAL;
}

int hw_vpn_cidr_parse(const char *s, int family, uint8_t *addr, int *prefix,
		      char *err, size_t errlen)
{
	return family == 4 ? cidr(s, 4, 8, 30, addr, prefix, err, errlen)
			   : cidr(s, 6, 64, 112, addr, prefix, err, errlen);
}

int hw_vpn_route_parse(const char *s, int *family, uint8_t addr[16],
		       int *prefix, char *err, size_t errlen)
{
	*family = strchr(s, ':') ? 6 : 4;
	memset(addr, 0, 16);
	return cidr(s, *family, 0, *family == 4 ? 32 : 128, addr, prefix,
		    err, errlen);
}

int hw_vpn_pool_new(struct hw_vpn_pool **out, const char *cidr4,
		    const char *cidr6, char *err, size_t errlen)
{
	struct hw_vpn_pool *p = calloc(1, sizeof(*p));
	uint8_t a[4];
	uint64_t hosts;
	int rc;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	if ((rc = hw_vpn_cidr_parse(cidr4, 4, a, &p->prefix4, err, errlen)))
		goto fail;
	p->net4 = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 |
		  (uint32_t)a[2] << 8 | a[3];
	if (cidr6 && (rc = hw_vpn_cidr_parse(cidr6, 6, p->net6, &p->prefix6,
					     err, errlen)))
		goto fail;
	/* All but the network and broadcast addresses; index 1 is ours. */
	hosts = (1ull << (32 - p->prefix4)) - 2;
	p->last = hosts > HW_VPN_POOL_MAX + 1 ? HW_VPN_POOL_MAX + 1
					      : (uint32_t)hosts;
	inet_ntop(AF_INET, a, p->subnet4, INET_ADDRSTRLEN);
	snprintf(p->subnet4 + strlen(p->subnet4), 5, "/%d", p->prefix4);
	if (p->prefix6) {
		inet_ntop(AF_INET6, p->net6, p->subnet6, INET6_ADDRSTRLEN);
		snprintf(p->subnet6 + strlen(p->subnet6), 5, "/%d",
			 p->prefix6);
	}
	if (!(p->holder = calloc(p->last + 1, sizeof(*p->holder)))) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	*out = p;
	return 0;
fail:
	free(p);
	return rc;
}

void hw_vpn_pool_free(struct hw_vpn_pool *p)
{
	if (!p)
		return;
	free(p->holder);
	free(p);
}

static int pk_ok(const char *pk)
{
	size_t i;

	for (i = 0; pk[i]; i++)
		if (!((pk[i] >= '0' && pk[i] <= '9') ||
		      (pk[i] >= 'a' && pk[i] <= 'f')))
			return 0;
	return i == PK_HEX;
}

static uint32_t find(const struct hw_vpn_pool *p, const char *pk)
{
	for (uint32_t i = 2; i <= p->last; i++)
		if (p->holder[i][0] && !strcmp(p->holder[i], pk))
			return i;
	return 0;
}

void hw_vpn_pool_addr4(const struct hw_vpn_pool *p, uint32_t index,
		       uint8_t out[4])
{
	uint32_t a = p->net4 + index;

	out[0] = (uint8_t)(a >> 24);
	out[1] = (uint8_t)(a >> 16);
	out[2] = (uint8_t)(a >> 8);
	out[3] = (uint8_t)a;
}

void hw_vpn_pool_addr6(const struct hw_vpn_pool *p, uint32_t index,
		       uint8_t out[16])
{
	memcpy(out, p->net6, 16);
	/* The prefix is at most /112 and index below 2^16. */
	out[14] |= (uint8_t)(index >> 8);
	out[15] |= (uint8_t)index;
}

uint32_t hw_vpn_pool_index4(const struct hw_vpn_pool *p, const uint8_t a[4])
{
	uint32_t v = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 |
		     (uint32_t)a[2] << 8 | a[3];
	uint32_t mask = ~0u << (32 - p->prefix4);

	if ((v & mask) != p->net4 || v - p->net4 > p->last)
		return 0;
	return v - p->net4;
}

uint32_t hw_vpn_pool_index6(const struct hw_vpn_pool *p, const uint8_t a[16])
{
	uint32_t idx;

	if (!p->prefix6 || memcmp(a, p->net6, 14))
		return 0;
	idx = (uint32_t)a[14] << 8 | a[15];
	return idx <= p->last ? idx : 0;
}

int hw_vpn_pool_lease(struct hw_vpn_pool *p, const char *pk,
		      uint32_t *index, int *is_new)
{
	uint32_t i;

	if (!pk_ok(pk))
		return -EINVAL;
	if ((i = find(p, pk))) {
		*index = i;
		*is_new = 0;
		return 0;
	}
	for (i = 2; i <= p->last; i++)
		if (!p->holder[i][0]) {
			memcpy(p->holder[i], pk, PK_HEX + 1);
			*index = i;
			*is_new = 1;
			return 0;
		}
	return -ENOSPC;
}

const char *hw_vpn_pool_holder(const struct hw_vpn_pool *p, uint32_t index)
{
	if (index < 2 || index > p->last || !p->holder[index][0])
		return NULL;
	return p->holder[index];
}

int hw_vpn_pool_load(struct hw_vpn_pool *p, const char *path, int *skipped,
		     char *err, size_t errlen)
{
	json_t *doc = NULL, *arr, *e, *sub;
	uint32_t bcast = (uint32_t)((1ull << (32 - p->prefix4)) - 1);
	int moved;
	size_t k;
	int rc;

	*skipped = 0;
	rc = hw_vpn_json_load(path, HW_VPN_LEASES_MAX, &doc, err, errlen);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		goto out;
	rc = -EINVAL;
	arr = json_object_get(doc, "leases");
	if (!json_is_array(arr)) {
		snprintf(err, errlen, "%s: \"leases\" is not an array", path);
		goto out;
	}
	/* Written for another subnet: its addresses that are this one's
	 * network, server or broadcast address were clients' there. */
	sub = json_object_get(doc, "subnet");
	if (sub && !json_is_string(sub)) {
		snprintf(err, errlen, "%s: \"subnet\" is not a string", path);
		goto out;
	}
	moved = sub && strcmp(json_string_value(sub), p->subnet4);
	json_array_foreach(arr, k, e) {
		const char *pk = json_string_value(json_object_get(e, "pk"));
		const char *as = json_string_value(
			json_object_get(e, "address"));
		uint8_t a[4];
		uint32_t i, hi;

		if (!pk || !pk_ok(pk)) {
			snprintf(err, errlen, "%s: leases[%zu].pk is not 64 "
				 "lowercase hex digits", path, k);
			goto out;
		}
		if (!as || inet_pton(AF_INET, as, a) != 1) {
			snprintf(err, errlen, "%s: leases[%zu].address is not "
				 "an IPv4 address", path, k);
			goto out;
		}
		hi = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 |
		     (uint32_t)a[2] << 8 | a[3];
		i = hi - p->net4;
		if ((hi & (~0u << (32 - p->prefix4))) != p->net4 ||
		    (i > p->last && i != bcast) ||
		    (moved && (i < 2 || i == bcast))) {
			(*skipped)++;
			continue;
		}
		if (i < 2 || i == bcast) {
			snprintf(err, errlen, "%s: leases[%zu].address %s is "
				 "the %s address", path, k, as,
				 i == bcast ? "broadcast" :
				 i ? "server's" : "network");
			goto out;
		}
		if (p->holder[i][0]) {
			snprintf(err, errlen, "%s: leases[%zu]: address %s is "
				 "leased twice", path, k, as);
			goto out;
		}
		if (find(p, pk)) {
			snprintf(err, errlen, "%s: leases[%zu]: key %.8s... "
				 "has two leases", path, k, pk);
			goto out;
		}
		memcpy(p->holder[i], pk, PK_HEX + 1);
	}
	rc = 0;
out:
	if (rc)
		memset(p->holder, 0, (p->last + 1) * sizeof(*p->holder));
	json_decref(doc);
	return rc;
}

int hw_vpn_pool_save(const struct hw_vpn_pool *p, const char *path)
{
	json_t *doc = json_object(), *arr = json_array();
	int rc = -ENOMEM;

	if (!doc || !arr)
		goto out;
	for (uint32_t i = 2; i <= p->last; i++) {
		char as[INET_ADDRSTRLEN];
		uint8_t a[4];

		if (!p->holder[i][0])
			continue;
		hw_vpn_pool_addr4(p, i, a);
		inet_ntop(AF_INET, a, as, sizeof(as));
		if (json_array_append_new(arr, json_pack("{s:s, s:s}", "pk",
							 p->holder[i],
							 "address", as)))
			goto out;
	}
	json_object_set_new(doc, "version", json_integer(1));
	json_object_set_new(doc, "subnet", json_string(p->subnet4));
	json_object_set(doc, "leases", arr);
	rc = hw_vpn_json_save(path, doc, 1);
out:
	json_decref(arr);
	json_decref(doc);
	return rc;
}

int hw_vpn_pool_prefix4(const struct hw_vpn_pool *p)
{
	return p->prefix4;
}

int hw_vpn_pool_prefix6(const struct hw_vpn_pool *p)
{
	return p->prefix6;
}

uint32_t hw_vpn_pool_last(const struct hw_vpn_pool *p)
{
	return p->last;
}

const char *hw_vpn_pool_subnet4(const struct hw_vpn_pool *p)
{
	return p->subnet4;
}

const char *hw_vpn_pool_subnet6(const struct hw_vpn_pool *p)
{
	return p->subnet6;
}
