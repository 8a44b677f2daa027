/* hopwire-forward's settings: the services it exposes and the ports it
 * maps, as the visor keeps them in LOCAL_DIR/apps/NAME/settings.json
 * (written by `hopwire forward ...` through the control API; format in
 * docs/forward.md "Settings"). */
#ifndef HW_FWD_SETTINGS_H
#define HW_FWD_SETTINGS_H

#include <stddef.h>

#include "hopwire/app.h"
#include "proto.h"

#define FWD_SERVICES_MAX 64
#define FWD_MAPS_MAX 64
#define FWD_ALLOW_MAX 64
#define FWD_ADDR_MAX 300

struct fwd_service {
	char name[HW_FWD_NAME_MAX + 1];
	char target[FWD_ADDR_MAX]; /* as written: HOST:PORT, [V6]:PORT */
	char host[FWD_ADDR_MAX];   /* split from target */
	char port[8];
	int allow_any;
	int nallow;
	char allow[FWD_ALLOW_MAX][HW_APP_PK_HEX + 1];
};

struct fwd_map {
	char listen[FWD_ADDR_MAX]; /* ADDR:PORT */
	char pk[HW_APP_PK_HEX + 1];
	char service[HW_FWD_NAME_MAX + 1];
};

struct fwd_settings {
	long long revision;
	int nservices, nmaps;
	struct fwd_service services[FWD_SERVICES_MAX];
	struct fwd_map maps[FWD_MAPS_MAX];
};

/* Splits HOST:PORT or [V6]:PORT (PORT 1..65535) into host and port.
 * 0, or -1. */
int fwd_split_addr(const char *addr, char *host, size_t hostlen,
		   char port[8]);

/* Parses a settings document into *s. 0, or -1 with err set to what is
 * wrong and where ("map[1].pk: not 64 lowercase hex characters"). */
int fwd_settings_parse(const char *text, size_t len, struct fwd_settings *s,
		       char *err, size_t errlen);

/* Reads path (none: empty settings, revision 0) into *s. 0, or -1 with
 * err set. */
int fwd_settings_load(const char *path, struct fwd_settings *s, char *err,
		      size_t errlen);

/* The service named name, or NULL. */
const struct fwd_service *fwd_service_find(const struct fwd_settings *s,
					   const char *name);

/* 1 when the visor with key pk may use service v. */
int fwd_service_allows(const struct fwd_service *v, const char *pk);

#endif
