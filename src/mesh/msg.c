/* Mesh message codec (msg.h, docs/mesh.md). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mesh/msg.h"
#include "util/addr.h"
#include "util/err.h"

static int fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (whylen)
		vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return HW_EPROTO;
}

int hw_mesh_addr_check(const char *addr)
{
	char host[HW_HOST_MAX];
	uint16_t port;
	size_t n = strlen(addr);

	if (!n)
		return 0;
	if (n > HW_MESH_ADDR_MAX || strncmp(addr, "tcp://", 6))
		return HW_EPROTO;
	for (size_t i = 0; i < n; i++)
		if (addr[i] <= 0x20 || addr[i] >= 0x7f)
			return HW_EPROTO;
	if (hw_addr_split(addr + 6, host, &port) || !host[0])
		return HW_EPROTO;
	return 0;
}

/* Reads a length-prefixed address at p[*off..n) into out. */
static int get_addr(const uint8_t *p, size_t n, size_t *off, char *out,
		    const char *what, char *why, size_t whylen)
{
	size_t len;

	if (*off >= n)
		return fail(why, whylen, "%s: the message ends before its "
			    "length", what);
	len = p[(*off)++];
	if (len > HW_MESH_ADDR_MAX)
		return fail(why, whylen, "%s of %zu bytes (at most %d)", what,
			    len, HW_MESH_ADDR_MAX);
	if (n - *off < len)
		return fail(why, whylen, "%s of %zu bytes runs past the "
			    "message", what, len);
	memcpy(out, p + *off, len);
	out[len] = '\0';
	*off += len;
	if (memchr(out, '\0', len) || hw_mesh_addr_check(out))
		return fail(why, whylen, "%s is not tcp://HOST:PORT",
			    what);
	return 0;
}

int hw_mesh_parse(const uint8_t *p, size_t n, struct hw_mesh_msg *m,
		  char *why, size_t whylen)
{
	size_t off = 2;
	char what[32];

	if (n < 2)
		return fail(why, whylen, "mesh message of %zu bytes", n);
	if (p[0] != HW_MESH_VERSION)
		return fail(why, whylen, "mesh version %u (this visor speaks "
			    "%d)", p[0], HW_MESH_VERSION);
	m->kind = p[1];
	m->npeers = 0;
	m->me[0] = m->you[0] = '\0';
	switch (m->kind) {
	case HW_MESH_HELLO:
		if (n < 3)
			return fail(why, whylen, "HELLO without a state");
		m->state = p[off++];
		if (m->state != HW_MESH_INIT && m->state != HW_MESH_FINAL)
			return fail(why, whylen, "HELLO of state %u",
				    m->state);
		if (get_addr(p, n, &off, m->me, "HELLO me", why, whylen) ||
		    get_addr(p, n, &off, m->you, "HELLO you", why, whylen))
			return HW_EPROTO;
		break;
	case HW_MESH_PEERS:
		if (n < 3)
			return fail(why, whylen, "PEERS without a count");
		m->npeers = p[off++];
		if (m->npeers > HW_MESH_PEERS_MAX)
			return fail(why, whylen, "PEERS of %u (at most %d)",
				    m->npeers, HW_MESH_PEERS_MAX);
		for (unsigned i = 0; i < m->npeers; i++) {
			if (n - off < HW_PK_LEN)
				return fail(why, whylen, "PEERS entry %u "
					    "runs past the message", i);
			memcpy(m->peers[i].pk, p + off, HW_PK_LEN);
			off += HW_PK_LEN;
			snprintf(what, sizeof(what), "PEERS entry %u", i);
			if (get_addr(p, n, &off, m->peers[i].addr, what, why,
				     whylen))
				return HW_EPROTO;
			if (!m->peers[i].addr[0])
				return fail(why, whylen, "PEERS entry %u "
					    "without an address", i);
		}
		break;
	default:
		return fail(why, whylen, "mesh message of kind %u", m->kind);
	}
	if (off != n)
		return fail(why, whylen, "%zu bytes after the mesh message",
			    n - off);
	return 0;
}

static size_t put_addr(uint8_t *out, const char *addr)
{
	size_t len = strlen(addr);

	out[0] = (uint8_t)len;
	memcpy(out + 1, addr, len);
	return 1 + len;
}

size_t hw_mesh_build(const struct hw_mesh_msg *m, uint8_t *out)
{
	size_t off = 2;

	out[0] = HW_MESH_VERSION;
	out[1] = m->kind;
	switch (m->kind) {
	case HW_MESH_HELLO:
		if ((m->state != HW_MESH_INIT && m->state != HW_MESH_FINAL) ||
		    hw_mesh_addr_check(m->me) || hw_mesh_addr_check(m->you))
			return 0;
		out[off++] = m->state;
		off += put_addr(out + off, m->me);
		off += put_addr(out + off, m->you);
		return off;
	case HW_MESH_PEERS:
		if (m->npeers > HW_MESH_PEERS_MAX)
			return 0;
		out[off++] = (uint8_t)m->npeers;
		for (unsigned i = 0; i < m->npeers; i++) {
			if (!m->peers[i].addr[0] ||
			    hw_mesh_addr_check(m->peers[i].addr))
				return 0;
			memcpy(out + off, m->peers[i].pk, HW_PK_LEN);
			off += HW_PK_LEN;
			off += put_addr(out + off, m->peers[i].addr);
		}
		return off;
	default:
		return 0;
	}
}
