/* The relay transport type's entry points for the relay client's events
 * (the type itself is transport/relay.c, registered in types.c). */
#ifndef HW_TRANSPORT_RELAY_H
#define HW_TRANSPORT_RELAY_H

#include <stdint.h>

#include "crypto/identity.h"

struct hw_tp_manager;
struct hw_relay_stream;

/* The relay client's accept callback lands here: a visor opens a relay
 * transport to us through relay_pk. Returns 0 (the stream is ours now) or
 * a negative code to refuse it. */
int hw_tp_manager_accept_relay(struct hw_tp_manager *m,
			       const uint8_t relay_pk[HW_PK_LEN],
			       const uint8_t from_pk[HW_PK_LEN],
			       struct hw_relay_stream *s);

/* The session to relay_pk came up: persistent relay transports through it
 * that are down dial now instead of waiting out their backoff. */
void hw_tp_manager_relay_up(struct hw_tp_manager *m,
			    const uint8_t relay_pk[HW_PK_LEN]);

#endif
