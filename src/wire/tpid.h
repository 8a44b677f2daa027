/* Transport IDs: the 16-byte name both ends of a transport derive, and
 * discovery checks, from the two public keys and the transport type
 * (docs/transport.md):
 *
 *   BLAKE2b-128("hopwire/1 transport id" NUL | lower pk | higher pk |
 *               type NUL)
 *
 * Here, below the transports and discovery, because both use it. */
#ifndef HW_WIRE_TPID_H
#define HW_WIRE_TPID_H

#include <stdint.h>

#include "crypto/identity.h"

#define HW_TP_ID_LEN 16
#define HW_TP_ID_HEXLEN 32

/* The transport ID of pk_a and pk_b (either order) and type. */
void hw_tp_id(const uint8_t pk_a[HW_PK_LEN], const uint8_t pk_b[HW_PK_LEN],
	      const char *type, uint8_t id[HW_TP_ID_LEN]);

#endif
