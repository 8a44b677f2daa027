/* The exit policy (policy.h). Addresses are kept as 16 bytes, IPv4 mapped
 * into ::ffff:0:0/96, so one matcher serves both families. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

struct range {
	const char *net;
	unsigned prefix; /* over 128 bits */
};

/* Never reached with the default policy (IANA special-purpose ranges). */
static const struct range denied[] = {
	{"::ffff:0.0.0.0", 96 + 8},      /* 0/8: "this network" */
	{"::ffff:10.0.0.0", 96 + 8},     /* private */
	{"::ffff:100.64.0.0", 96 + 10},  /* CGNAT */
	{"::ffff:169.254.0.0", 96 + 16}, /* link-local */
	{"::ffff:172.16.0.0", 96 + 12},  /* private */
	{"::ffff:192.0.0.0", 96 + 24},   /* IETF protocol assignments */
	{"::ffff:192.168.0.0", 96 + 16}, /* private */
	{"::ffff:198.18.0.0", 96 + 15},  /* benchmarking */
	{"::ffff:224.0.0.0", 96 + 4},    /* multicast */
	{"::ffff:240.0.0.0", 96 + 4},    /* reserved, broadcast */
	{"::", 128},                     /* unspecified */
	{"fe80::", 10},                  /* link-local */
	{"fc00::", 7},                   /* unique local */
	{"ff00::", 8},                   /* multicast */
	{"64:ff9b:1::", 48},             /* local-use NAT64 */
};

static const struct range loopback[] = {
	{"::ffff:127.0.0.0", 96 + 8},
	{"::1", 128},
};

static int match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;

	if (memcmp(a, net, bytes))
		return 0;
	if (bits) {
		uint8_t mask = (uint8_t)(0xff << (8 - bits));
		if ((a[bytes] & mask) != (net[bytes] & mask))
			return 0;
	}
	return 1;
}

static int in_ranges(const uint8_t *a, const struct range *r, size_t n)
{
	uint8_t net[16];

	for (size_t i = 0; i < n; i++)
		if (inet_pton(AF_INET6, r[i].net, net) == 1 &&
		    match(a, net, r[i].prefix))
			return 1;
	return 0;
}

static void mapped(uint8_t out[16], const struct in_addr *v4)
{
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	memcpy(out + 12, v4, 4);
}

static int parse_ports(const char *s, uint16_t *lo, uint16_t *hi)
{
	char *end;
	unsigned long a, b;

	errno = 0;
	a = strtoul(s, &end, 10);
	if (end == s || errno || a == 0 || a > 65535)
		return -EINVAL;
	b = a;
	if (*end == '-') {
		const char *t = end + 1;
		b = strtoul(t, &end, 10);
		if (end == t || errno || b < a || b > 65535)
			return -EINVAL;
	}
	if (*end)
		return -EINVAL;
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return 0;
}

int hw_policy_add(struct hw_policy *pol, const char *spec, char *err,
		  size_t errlen)
{
	struct hw_policy_rule r = {.port_lo = 1, .port_hi = 65535};
	char buf[128], *net, *ports = NULL, *slash;
	unsigned long plen;
	struct in_addr v4;
	int v6;

	if (strlen(spec) >= sizeof(buf))
		goto bad;
	snprintf(buf, sizeof(buf), "%s", spec);
	net = buf;
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');
		if (!close || (close[1] && close[1] != ':'))
			goto bad;
		*close = '\0';
		net = buf + 1;
		if (close[1])
			ports = close + 2;
	} else if (strchr(buf, '.')) {
		/* IPv4: a colon can only start the ports. */
		if ((ports = strchr(buf, ':')))
			*ports++ = '\0';
	}
	if ((slash = strchr(net, '/')))
		*slash++ = '\0';
	if (inet_pton(AF_INET, net, &v4) == 1) {
		mapped(r.addr, &v4);
		v6 = 0;
	} else if (inet_pton(AF_INET6, net, r.addr) == 1) {
		v6 = 1;
	} else {
		goto bad;
	}
	r.prefix = 128;
	if (slash) {
		char *end;
		errno = 0;
		plen = strtoul(slash, &end, 10);
		if (end == slash || *end || errno || plen > (v6 ? 128u : 32u))
			goto bad;
		r.prefix = (unsigned)plen + (v6 ? 0 : 96);
	}
	if (ports && parse_ports(ports, &r.port_lo, &r.port_hi))
		goto bad;
	if (pol->nrules == HW_POLICY_RULES_MAX) {
		snprintf(err, errlen, "more than %d destination rules",
			 HW_POLICY_RULES_MAX);
		return -ENOSPC;
	}
	pol->rules[pol->nrules++] = r;
	return 0;
bad:
	snprintf(err, errlen,
		 "'%s' is not CIDR[:PORTS] (10.0.0.0/8, 192.0.2.1:443, "
		 "0.0.0.0/0:80-443, [2001:db8::/32]:22)",
		 spec);
	return -EINVAL;
}

int hw_policy_allows(const struct hw_policy *pol, const struct sockaddr *sa)
{
	uint8_t a[16];
	uint16_t port;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		mapped(a, &s4->sin_addr);
		port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		memcpy(a, &s6->sin6_addr, 16);
		port = ntohs(s6->sin6_port);
	} else {
		return 0;
	}
	if (pol->allow_loopback &&
	    in_ranges(a, loopback, sizeof(loopback) / sizeof(loopback[0])))
		return 1;
	if (pol->nrules) {
		for (int i = 0; i < pol->nrules; i++) {
			const struct hw_policy_rule *r = &pol->rules[i];
			if (match(a, r->addr, r->prefix) &&
			    port >= r->port_lo && port <= r->port_hi)
				return 1;
		}
		return 0;
	}
	return !in_ranges(a, loopback, sizeof(loopback) / sizeof(loopback[0])) &&
	       !in_ranges(a, denied, sizeof(denied) / sizeof(denied[0]));
}
