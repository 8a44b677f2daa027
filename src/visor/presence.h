/* The visor's presence in the network: its entry in discovery, the relay
 * sessions it holds so visors behind NAT can reach it, and its transports
 * in discovery's registry.
 *
 * Every refresh interval (and soon after a relay session comes up) the
 * visor re-signs its entry (version, the relays it is up at, its TCP
 * address) and registers its live transports; transports that leave the
 * table are deleted from the registry. When fewer relay sessions than the
 * config asks for are held, it picks relays from discovery's list. */
#ifndef HW_VISOR_PRESENCE_H
#define HW_VISOR_PRESENCE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/identity.h"
#include "transport/manager.h"
#include "visor/config.h"

struct hw_presence;
struct hw_disc_client;
struct hw_relay_client;

/* What presence needs from the rest of the visor. */
struct hw_presence_ops {
	/* The transport manager, NULL until it exists: its listen address
	 * goes in the entry, its live transports in the registry. */
	struct hw_tp_manager *(*tp_manager)(void *ud);
	/* Whether this visor is a setup node now: a setup node forwards
	 * nothing, so it registers no transports. May be NULL: never. */
	int (*is_setup_node)(void *ud);
};

struct hw_presence_params {
	uv_loop_t *loop;
	const struct hw_identity *id; /* signs the entries; outlives p */
	/* Read while hw_presence_new runs only (copied). */
	const char *discovery_url;   /* "" for no discovery */
	const char *seq_path;        /* the discovery client's sequence file */
	const char *public_addr;     /* TCP address to advertise (at most
					HW_ADDR_MAX - 1), "": the listen
					address unless it is a wildcard */
	unsigned refresh_ms;         /* how often the entry is re-signed */
	unsigned relay_sessions;     /* relays to hold (at most
					HW_MAX_RELAY_SESSIONS) */
	/* Links to these are not registered (they carry setup messages). */
	const uint8_t (*setup_nodes)[HW_PK_LEN];
	unsigned nsetup_nodes;       /* at most HW_MAX_SETUP_NODES */
	struct hw_relay_client *relays; /* sessions held; outlives p */
	const struct hw_presence_ops *ops; /* outlives p */
	void *ud;
};

/* Starts the presence (an empty discovery URL gives a presence that only
 * answers "no discovery"). Returns 0 or a negative code with a message
 * (*out may then be set: free it). */
int hw_presence_new(struct hw_presence **out,
		    const struct hw_presence_params *params, char *err,
		    size_t errlen);

/* Stops; pending resolutions fail with -ECANCELED. The loop must run on
 * until the discovery client's requests finish. Accepts NULL. */
void hw_presence_free(struct hw_presence *p);

/* Transport events from the manager. */
void hw_presence_tp_event(struct hw_presence *p, struct hw_tp *tp,
			  enum hw_tp_event ev);

/* HOST:PORT the mesh learned others reach this visor at ("": none), put
 * in the discovery entry when the config names no public_addr and the
 * listen address is a wildcard. */
void hw_presence_set_observed(struct hw_presence *p, const char *hostport);

/* A held relay session came up or went down. */
void hw_presence_relay_session(struct hw_presence *p,
			       const uint8_t relay_pk[HW_PK_LEN], int up);

/* How to reach pk, from its discovery entry. type "tcp": its first TCP
 * address; "relay": RELAY_PK@HOST:PORT of one of its relays (one we hold
 * a session with first); NULL: tcp when it has an address, else relay.
 * The outcome reaches cb: status 0 with the type and address chosen, or a
 * negative status and a message. Returns 0 or a negative code. */
typedef void (*hw_presence_resolve_cb)(int status, const char *type,
				       const char *addr, const char *msg,
				       void *ud);
int hw_presence_resolve(struct hw_presence *p, const uint8_t pk[HW_PK_LEN],
			const char *type, hw_presence_resolve_cb cb,
			void *ud);

/* Whether a discovery URL is configured. */
int hw_presence_has_discovery(const struct hw_presence *p);

/* The discovery client (NULL without discovery), for reads such as the
 * route finder's paths. */
struct hw_disc_client *hw_presence_discovery(struct hw_presence *p);

/* Whether the transport id_hex is registered in discovery (its write
 * sent and not deleted). */
int hw_presence_registered(const struct hw_presence *p, const char *id_hex);

/* {"discovery": URL, "registered": bool, "last_error", "relays": [...]}
 * (new reference). */
json_t *hw_presence_json(const struct hw_presence *p);

#endif
