/* The SOCKS5 codec (socks5.h). */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "socks5.h"

int hw_s5_parse_greeting(const uint8_t *p, size_t n,
			 struct hw_s5_greeting *g, size_t *used)
{
	if (n >= 1 && p[0] != HW_S5_VERSION)
		return -EPROTO;
	if (n >= 2 && p[1] == 0)
		return -EPROTO;
	if (n < 2 || n < 2 + (size_t)p[1])
		return -EAGAIN;
	g->nmethods = p[1];
	memcpy(g->methods, p + 2, p[1]);
	*used = 2 + (size_t)p[1];
	return 0;
}

int hw_s5_greeting_has(const struct hw_s5_greeting *g, uint8_t m)
{
	for (unsigned i = 0; i < g->nmethods; i++)
		if (g->methods[i] == m)
			return 1;
	return 0;
}

/* ATYP ADDR PORT at p[0..n) (shared by requests and replies). */
static int parse_addr(const uint8_t *p, size_t n, struct hw_s5_request *r,
		      size_t *used)
{
	size_t alen, off = 1;

	if (n < 1)
		return -EAGAIN;
	switch (p[0]) {
	case HW_S5_ATYP_IPV4:
		alen = 4;
		break;
	case HW_S5_ATYP_IPV6:
		alen = 16;
		break;
	case HW_S5_ATYP_DOMAIN:
		if (n < 2)
			return -EAGAIN;
		if (p[1] == 0)
			return -EPROTO;
		alen = p[1];
		off = 2;
		break;
	default:
		return -EAFNOSUPPORT;
	}
	if (n < off + alen + 2)
		return -EAGAIN;
	r->atyp = p[0];
	if (p[0] == HW_S5_ATYP_DOMAIN) {
		if (memchr(p + off, 0, alen))
			return -EPROTO;
		memcpy(r->host, p + off, alen);
		r->host[alen] = '\0';
	} else {
		memcpy(r->addr, p + off, alen);
	}
	r->port = (uint16_t)(p[off + alen] << 8 | p[off + alen + 1]);
	*used = off + alen + 2;
	return 0;
}

/* VER | CMD or REP | RSV 0 | address: the shape requests and replies
 * share. *code is the second byte. */
static int parse_shape(const uint8_t *p, size_t n, uint8_t *code,
		       struct hw_s5_request *r, size_t *used)
{
	size_t a;
	int rc;

	if (n >= 1 && p[0] != HW_S5_VERSION)
		return -EPROTO;
	if (n >= 3 && p[2] != 0)
		return -EPROTO;
	if (n < 4)
		return -EAGAIN;
	memset(r, 0, sizeof(*r));
	if ((rc = parse_addr(p + 3, n - 3, r, &a)))
		return rc;
	*code = p[1];
	*used = 3 + a;
	return 0;
}

int hw_s5_parse_request(const uint8_t *p, size_t n, struct hw_s5_request *r,
			size_t *used)
{
	uint8_t cmd;
	int rc = parse_shape(p, n, &cmd, r, used);

	if (rc == 0)
		r->cmd = cmd;
	return rc;
}

int hw_s5_parse_reply(const uint8_t *p, size_t n, uint8_t *rep,
		      size_t *used)
{
	struct hw_s5_request r;

	return parse_shape(p, n, rep, &r, used);
}

/* A length-prefixed string of 1..255 bytes at p[0..n) into out. */
static int parse_lstr(const uint8_t *p, size_t n, char out[256],
		      size_t *used)
{
	if (n < 1)
		return -EAGAIN;
	if (p[0] == 0)
		return -EPROTO;
	if (n < 1 + (size_t)p[0])
		return -EAGAIN;
	if (memchr(p + 1, 0, p[0]))
		return -EPROTO;
	memcpy(out, p + 1, p[0]);
	out[p[0]] = '\0';
	*used = 1 + (size_t)p[0];
	return 0;
}

int hw_s5_parse_auth(const uint8_t *p, size_t n, struct hw_s5_auth *a,
		     size_t *used)
{
	size_t u, w;
	int rc;

	if (n >= 1 && p[0] != HW_S5_AUTH_VERSION)
		return -EPROTO;
	if (n < 1)
		return -EAGAIN;
	if ((rc = parse_lstr(p + 1, n - 1, a->user, &u)))
		return rc;
	if ((rc = parse_lstr(p + 1 + u, n - 1 - u, a->pass, &w)))
		return rc;
	*used = 1 + u + w;
	return 0;
}

size_t hw_s5_build_reply(uint8_t out[HW_S5_REPLY_MAX], uint8_t rep,
			 const struct sockaddr *sa)
{
	size_t n = 4;

	out[0] = HW_S5_VERSION;
	out[1] = rep;
	out[2] = 0;
	if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		out[3] = HW_S5_ATYP_IPV6;
		memcpy(out + n, &s6->sin6_addr, 16);
		n += 16;
		memcpy(out + n, &s6->sin6_port, 2);
	} else if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		out[3] = HW_S5_ATYP_IPV4;
		memcpy(out + n, &s4->sin_addr, 4);
		n += 4;
		memcpy(out + n, &s4->sin_port, 2);
	} else {
		out[3] = HW_S5_ATYP_IPV4;
		memset(out + n, 0, 6);
		n += 4;
	}
	return n + 2;
}

size_t hw_s5_build_request(uint8_t out[HW_S5_REQUEST_MAX],
			   const struct hw_s5_request *r)
{
	size_t n = 4, len;

	out[0] = HW_S5_VERSION;
	out[1] = r->cmd;
	out[2] = 0;
	out[3] = r->atyp;
	switch (r->atyp) {
	case HW_S5_ATYP_IPV4:
		memcpy(out + n, r->addr, 4);
		n += 4;
		break;
	case HW_S5_ATYP_IPV6:
		memcpy(out + n, r->addr, 16);
		n += 16;
		break;
	case HW_S5_ATYP_DOMAIN:
		len = strnlen(r->host, sizeof(r->host));
		if (len == 0 || len > 255)
			return 0;
		out[n++] = (uint8_t)len;
		memcpy(out + n, r->host, len);
		n += len;
		break;
	default:
		return 0;
	}
	out[n++] = (uint8_t)(r->port >> 8);
	out[n++] = (uint8_t)r->port;
	return n;
}

const char *hw_s5_reply_str(uint8_t rep)
{
	static const char *const s[] = {
		"succeeded", "general failure", "not allowed by the exit policy",
		"network unreachable", "host unreachable", "connection refused",
		"timed out", "command not supported",
		"address type not supported"};

	return rep < sizeof(s) / sizeof(s[0]) ? s[rep] : "unknown reply code";
}
