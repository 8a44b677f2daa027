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
 * What it needs comes in its parameters, from whoever runs it (in
 * hopwire-setup, the visor in the setup role, src/visor/visor.c): the
 * loop it runs on, its own public key (it is never a hop of a route), the
 * transport manager it reaches visors and answers them through, and ops
 * for finding how to reach a visor it has no transport to (the visor's
 * discovery presence). Whoever runs it also hands it the SETUP packets
 * and the transport events of that manager (hw_setup_service_on_packet,
 * hw_setup_service_tp_event). Everything runs on the loop. */
#ifndef HW_SETUP_SERVICE_H
#define HW_SETUP_SERVICE_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"
#include "transport/manager.h"
#include "wire/packet.h"

/* Builds in progress at most; more are answered BUILT limit. */
#define HW_SETUP_BUILDS_MAX 256
/* Builds in progress for one source visor at most. */
#define HW_SETUP_BUILDS_PER_SRC_MAX 32
/* Each step (transport and reserve, rules, incoming) of a build. */
#define HW_SETUP_STEP_TIMEOUT_MS 5000

struct hw_setup_service;

/* The outcome of a resolve: status 0 with the transport type and address
 * to dial (as hw_tp_manager_add takes them), or a negative status and a
 * message (may be NULL; need not be UTF-8). */
typedef void (*hw_setup_resolve_cb)(int status, const char *type,
				    const char *addr, const char *msg,
				    void *cb_ud);

/* What the service asks of whoever runs it; ud is the params' ud. */
struct hw_setup_service_ops {
	/* Whether resolve can find visors at all (a discovery is
	 * configured). NULL: never, as is a NULL resolve. */
	int (*can_resolve)(void *ud);
	/* Starts finding how to reach pk. Returns 0, and the outcome
	 * reaches cb exactly once (maybe before this returns; on stopping
	 * with a negative status), or a negative code and cb is never
	 * called. */
	int (*resolve)(void *ud, const uint8_t pk[HW_PK_LEN],
		       hw_setup_resolve_cb cb, void *cb_ud);
};

struct hw_setup_service_params {
	uv_loop_t *loop;
	/* The setup node's own public key (copied). */
	uint8_t pk[HW_PK_LEN];
	/* The transports to visors; outlives the service. */
	struct hw_tp_manager *tpm;
	/* NULL: no resolving, only visors with a transport are reached.
	 * ops and ud outlive the service. */
	const struct hw_setup_service_ops *ops;
	void *ud;
};

/* Creates the service from p (read while this runs). Returns 0 or
 * -ENOMEM. */
int hw_setup_service_new(struct hw_setup_service **out,
			 const struct hw_setup_service_params *p);

/* Stops: builds in progress are rolled back and answered BUILT internal
 * "setup node stopping" where their transport is still up. Call before
 * the transport manager and the ops' ud are freed; the loop must run on
 * until the builds' timers have closed (the memory goes with them).
 * A resolve still under way must still reach its callback, which then
 * only lets go of what it holds. Accepts NULL. */
void hw_setup_service_free(struct hw_setup_service *s);

/* A SETUP packet (route 0) that arrived on tp. */
void hw_setup_service_on_packet(struct hw_setup_service *s, struct hw_tp *tp,
				const struct hw_packet *pkt);

/* Transport events of the manager. Optional: a build waiting on a transport
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
