/* The visor: one process on one libuv loop holding the identity, the
 * transport manager and the control API. */
#ifndef HW_VISOR_VISOR_H
#define HW_VISOR_VISOR_H

#include <stddef.h>
#include <uv.h>

#include "visor/config.h"

struct hw_visor;
struct hw_setup_service;
struct hw_setup_service_params;

/* Starts a visor from cfg (copied) on loop: loads the key, creates the
 * local dir (0700), binds the TCP listener and the control socket, dials
 * persistent transports. Returns 0, or a negative code with a message in
 * err that names the file or field at fault. */
int hw_visor_new(struct hw_visor **out, uv_loop_t *loop,
		 const struct hw_config *cfg, char *err, size_t errlen);

/* Stops everything: pending API requests are answered 503, transports are
 * closed, state is written. The loop must run on to finish closing;
 * memory is released as handles close. Accepts NULL. */
void hw_visor_free(struct hw_visor *v);

/* Makes v a setup node: its setup messages go to s (hopwire-setup), which
 * the caller frees before the visor. */
void hw_visor_set_setup(struct hw_visor *v, struct hw_setup_service *s);

/* Fills p for a setup service on v (hopwire-setup): v's loop, key and
 * transport manager, and ops that find visors through v's discovery. */
void hw_visor_setup_params(struct hw_visor *v,
			   struct hw_setup_service_params *p);

#endif
