/* The exit policy of hopwire-socks: which destinations (address and port)
 * the exit connects to. With no rule added, every address except the exit
 * host's own and private ranges (loopback, link-local, RFC 1918, CGNAT,
 * 0/8, multicast, ULA, ...) on every port; once a rule is added, only what
 * the rules allow. Loopback is allowed on top with allow_loopback. */
#ifndef HW_SOCKS_POLICY_H
#define HW_SOCKS_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HW_POLICY_RULES_MAX 64

struct hw_policy_rule {
	uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
	unsigned prefix;  /* over the 128 bits */
	uint16_t port_lo, port_hi;
};

struct hw_policy {
	struct hw_policy_rule rules[HW_POLICY_RULES_MAX];
	int nrules;
	int allow_loopback;
};

/* Adds a rule written CIDR[:PORTS]: "10.0.0.0/8", "192.0.2.1:443",
 * "0.0.0.0/0:80-443", "[2001:db8::/32]:22", "::/0" (an address without
 * /LEN is one host). Returns 0, -EINVAL (err says why), -ENOSPC. */
int hw_policy_add(struct hw_policy *pol, const char *spec, char *err,
		  size_t errlen);

/* 1 when the policy allows a connection to sa (AF_INET or AF_INET6; an
 * IPv4-mapped IPv6 address counts as IPv4), else 0. */
int hw_policy_allows(const struct hw_policy *pol, const struct sockaddr *sa);

#endif
