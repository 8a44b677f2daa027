/* Visor internals, used by visor.c and the API files only. */
#ifndef HW_VISOR_VISOR_PRIV_H
#define HW_VISOR_VISOR_PRIV_H

#include <stdint.h>

#include "crypto/identity.h"
#include "relay/client.h"
#include "mesh/mesh.h"
#include "transport/manager.h"
#include "visor/api_server.h"
#include "visor/appserver.h"
#include "visor/config.h"
#include "visor/launcher.h"
#include "visor/presence.h"
#include "visor/routing.h"
#include "visor/visor.h"

struct hw_visor {
	uv_loop_t *loop;
	struct hw_config cfg;
	struct hw_identity id;
	char pk_hex[HW_PK_HEXLEN + 1];
	struct hw_tp_manager *tpm;
	struct hw_relay_client *relays; /* sessions to relays, for relay
					   transports */
	struct hw_presence *presence;   /* discovery entry, relays held */
	struct hw_routing *routing;     /* router, setup answers, groups */
	struct hw_mesh *mesh;           /* mesh handshake on each link */
	struct hw_setup_service *setup; /* set in hopwire-setup only */
	struct hw_appserver *apps;      /* app channels and their loops */
	struct hw_launcher *launcher;   /* the apps of the config */
	uint8_t x_priv[32];
	struct hw_api_server *api;
	uint64_t start_ms;
	/* Set when stopping: callbacks of unfinished API work must not reply
	 * (the API server has answered 503 for them). */
	int closing;
	int refs; /* outstanding API jobs; the visor is freed at zero */
};

/* The control API's request handler (api_routes.c). */
void hw_visor_api_handle(struct hw_api_req *req, const char *method,
			 const char *path, json_t *body, void *ud);

/* GET /v1/apps and /v1/apps/NAME/... (api_apps.c). */
void hw_visor_api_apps(struct hw_visor *v, struct hw_api_req *req,
		       const char *method, const char *path, json_t *body);

/* GET /v1/apps/NAME/status, GET|PUT /v1/apps/NAME/settings for a
 * configured app name (api_app_files.c). */
void hw_visor_api_app_status(struct hw_visor *v, struct hw_api_req *req,
			     const char *name);
void hw_visor_api_app_settings(struct hw_visor *v, struct hw_api_req *req,
			       const char *method, const char *name,
			       json_t *body);

/* Jobs of the API keep the visor alive until they finish. */
void hw_visor_ref(struct hw_visor *v);
void hw_visor_unref(struct hw_visor *v);

#endif
