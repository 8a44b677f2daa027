/* The setup node's service (docs/routing.md, "The setup node"): builds routes for visors.
 *
 * A visor sends BUILD with a forward and a reverse path; the service
 * reaches every visor on them (a transport it has, or one it opens through
 * discovery), reserves route IDs on each (RESERVE), installs the rules
 * (ADD_RULES), tells the destination (INCOMING) and answers the source
 * (BUILT) with its two edge rules. Visors are asked in parallel; each
 * step has a timeout. Any refusal, timeout or lost transport rolls back
 * (DEL_RULES of every ID reserved or installed on each visor that
 * answered) and answers BUILT with the failing status and a text naming
 * the visor and the reason.
 *
 * The service lives on a visor in the setup role (hopwire-setup): it uses
 * the visor's transport manager and presence, and gets the visor's SETUP
 * packets. Everything runs on the visor's loop. */
#ifndef HW_SETUP_SERVICE_H
#define HW_SETUP_SERVICE_H

#include <jansson.h>

#include "transport/manager.h"
#include "wire/packet.h"

/* Builds in progress at most; more are answered BUILT limit. */
#define HW_SETUP_BUILDS_MAX 256
/* Builds in progress for one source visor at most. */
#define HW_SETUP_BUILDS_PER_SRC_MAX 32
/* Each step (transport and reserve, rules, incoming) of a build. */
#define HW_SETUP_STEP_TIMEOUT_MS 5000

struct hw_setup_service;
struct hw_visor;

/* Creates the service on v (which must outlive it). Returns 0 or
 * -ENOMEM. */
int hw_setup_service_new(struct hw_setup_service **out, struct hw_visor *v);

/* Stops: builds in progress are rolled back and answered BUILT internal
 * "setup node stopping" where their transport is still up. Call before
 * the visor is freed; the loop must run on until the builds' timers have
 * closed (the memory goes with them). Accepts NULL. */
void hw_setup_service_free(struct hw_setup_service *s);

/* A SETUP packet (route 0) that arrived on tp. */
void hw_setup_service_on_packet(struct hw_setup_service *s, struct hw_tp *tp,
				const struct hw_packet *pkt);

/* Transport events of the visor. Optional: a build waiting on a transport
 * that left fails at once instead of at its step's timeout. */
void hw_setup_service_tp_event(struct hw_setup_service *s, struct hw_tp *tp,
			       enum hw_tp_event ev);

/* Sets the timeout of each step (default HW_SETUP_STEP_TIMEOUT_MS), for
 * builds that start afterwards. */
void hw_setup_service_set_timeout(struct hw_setup_service *s, unsigned ms);

/* Counters: {"builds_ok", "builds_failed", "rollbacks", "in_progress",
 * "unexpected", "malformed"} (new reference). */
json_t *hw_setup_service_json(const struct hw_setup_service *s);

#endif
