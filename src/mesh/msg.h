/* Mesh messages (docs/mesh.md): what two visors say to each other on a
 * transport right after its Noise handshake, as the payload of a MESH
 * packet on route 0:
 *
 *   version u8 (1) | kind u8 | body
 *
 *   HELLO  state u8 (1 INIT, 2 FINAL) | me: len u8, bytes | you: len u8,
 *          bytes
 *   PEERS  count u8 (0..HW_MESH_PEERS_MAX) | count x (pk 32 | len u8 |
 *          addr bytes)
 *
 * Addresses are "tcp://HOST:PORT" (HOST a name, an IPv4 address or
 * "[IPv6]"), at most HW_MESH_ADDR_MAX bytes, or empty for "none known".
 * The decoder is pure and strict: every length and field is checked, and
 * a message that breaks the format is HW_EPROTO with a sentence saying
 * which. */
#ifndef HW_MESH_MSG_H
#define HW_MESH_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/identity.h"

#define HW_MESH_VERSION 1
#define HW_MESH_ADDR_MAX 160
#define HW_MESH_PEERS_MAX 64
/* The largest message: a PEERS of HW_MESH_PEERS_MAX longest entries. */
#define HW_MESH_MSG_MAX \
	(3 + HW_MESH_PEERS_MAX * (HW_PK_LEN + 1 + HW_MESH_ADDR_MAX))

enum hw_mesh_kind { HW_MESH_HELLO = 1, HW_MESH_PEERS = 2 };
enum hw_mesh_state { HW_MESH_INIT = 1, HW_MESH_FINAL = 2 };

struct hw_mesh_peer {
	uint8_t pk[HW_PK_LEN];
	char addr[HW_MESH_ADDR_MAX + 1];
};

struct hw_mesh_msg {
	uint8_t kind;
	/* HELLO */
	uint8_t state;
	char me[HW_MESH_ADDR_MAX + 1];
	char you[HW_MESH_ADDR_MAX + 1];
	/* PEERS */
	unsigned npeers;
	struct hw_mesh_peer peers[HW_MESH_PEERS_MAX];
};

/* Checks an address as the messages carry it: "" or tcp://HOST:PORT with
 * a port in 1..65535. Returns 0 or HW_EPROTO. */
int hw_mesh_addr_check(const char *addr);

/* Decodes p[0..n) into *m. Returns 0, or HW_EPROTO with why set. */
int hw_mesh_parse(const uint8_t *p, size_t n, struct hw_mesh_msg *m,
		  char *why, size_t whylen);

/* Encodes *m (its addresses already checked) into out, which holds
 * HW_MESH_MSG_MAX bytes. Returns the length, or 0 when a field is out of
 * range. */
size_t hw_mesh_build(const struct hw_mesh_msg *m, uint8_t *out);

#endif
