/* The visor's JSON configuration: loading with errors that name the field,
 * and the defaults `hopwire config init` writes.
 *
 *   {
 *     "version": 1,
 *     "key_file": PATH,            identity (hopwire keygen)
 *     "local_dir": PATH,           control socket, state files
 *     "log_level": "info",         debug | info | warn | error
 *     "transport": {
 *       "tcp_listen": "0.0.0.0:7777",   "" disables the listener
 *       "keepalive_interval_ms": 5000,  dead after 3 silent intervals
 *       "handshake_timeout_ms": 10000,
 *       "max_pending_handshakes": 64,
 *       "redial_min_ms": 500, "redial_max_ms": 30000,
 *       "public_addr": "",              TCP address to advertise in
 *                                       discovery ("": tcp_listen unless
 *                                       it is a wildcard address)
 *       "persistent": [{"pk": HEX, "type": "tcp", "addr": "HOST:PORT"},
 *                      {"pk": HEX, "type": "relay",
 *                       "addr": "RELAY_PK@HOST:PORT"}]   addr optional:
 *                                       from discovery
 *     },
 *     "discovery": {
 *       "url": "",                      "" runs without discovery
 *       "refresh_ms": 60000,            how often entries are re-signed
 *       "relay_sessions": 1             relays to hold sessions with
 *     },
 *     "routing": {"setup_nodes": [HEX, ...],   trusted setup nodes
 *                 "tap_file": "",  debugging: what this visor forwards
 *                                  for others is appended there
 *                 "heal_timeout_ms": 30000}  how long a route group
 *                                  whose routes failed looks for new
 *                                  ones (0: fail at once)
 *     "control": {"socket": ""},     "" means LOCAL_DIR/visor.sock
 *     "apps": [{"name": "chat",       letters, digits, '-', '_'
 *               "binary": "hopwire-chat",  a path (relative: to the
 *                                  config's folder), or a bare name looked
 *                                  up beside hopwire-visor, then in PATH
 *               "args": ["--http", "127.0.0.1:8001"],
 *               "port": 1,         the app's port, unique, 1..65535;
 *                                  0: none (the app only dials)
 *               "autostart": true,
 *               "capabilities": ["CAP_NET_ADMIN"],  optional: the only
 *                                  ones the app is given (none without)
 *               "cleanup_args": ["--cleanup"]}]  optional: run as
 *                                  BINARY CLEANUP_ARGS after a crash
 *   }
 *
 * Relative paths are taken relative to the config file's folder. Unknown
 * keys are errors, so a misspelt option never goes unnoticed. */
#ifndef HW_VISOR_CONFIG_H
#define HW_VISOR_CONFIG_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/identity.h"
#include "util/log.h"

#define HW_DEFAULT_TCP_PORT 7777
#define HW_DEFAULT_KEEPALIVE_MS 5000
#define HW_DEFAULT_HEAL_TIMEOUT_MS 30000
#define HW_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define HW_DEFAULT_MAX_PENDING_HANDSHAKES 64
#define HW_DEFAULT_REDIAL_MIN_MS 500
#define HW_DEFAULT_REDIAL_MAX_MS 30000
#define HW_DEFAULT_DISCOVERY_REFRESH_MS 60000
#define HW_DEFAULT_RELAY_SESSIONS 1
#define HW_MAX_RELAY_SESSIONS 8
#define HW_MAX_SETUP_NODES 16
/* A config file larger than this is refused. */
#define HW_CONFIG_MAX_SIZE (1024 * 1024)
#define HW_TP_TYPE_MAX 16
#define HW_ADDR_MAX 280

struct hw_config_tp {
	uint8_t pk[HW_PK_LEN];
	char type[HW_TP_TYPE_MAX];
	char addr[HW_ADDR_MAX];
};

#define HW_MAX_APPS 64
#define HW_CONFIG_APP_NAME_MAX 32
#define HW_APP_MAX_ARGS 32

/* Capabilities an app entry may name, as bits of Linux capability
 * numbers (linux/capability.h): CAP_NET_ADMIN is 12. */
#define HW_APP_CAP_NET_ADMIN (UINT64_C(1) << 12)

/* One app the visor launches (docs/apps.md). */
struct hw_config_app {
	char name[HW_CONFIG_APP_NAME_MAX + 1];
	char binary[PATH_MAX]; /* as written: resolved by the launcher */
	char **args;           /* nargs strings, NULL-terminated */
	size_t nargs;
	uint16_t port;         /* 0: none */
	int autostart;
	uint64_t caps;         /* HW_APP_CAP_* the app is given */
	/* Run as BINARY CLEANUP_ARGS after the app ended by a signal or a
	 * non-zero status; NULL-terminated, empty for none. */
	char **cleanup_args;
	size_t ncleanup_args;
};

struct hw_config {
	char path[PATH_MAX];
	char key_file[PATH_MAX];
	char local_dir[PATH_MAX];
	char control_socket[PATH_MAX];
	enum hw_log_level log_level;
	char tcp_listen[HW_ADDR_MAX];
	char public_addr[HW_ADDR_MAX];
	char discovery_url[1024];
	unsigned discovery_refresh_ms;
	unsigned relay_sessions;
	unsigned keepalive_ms;
	unsigned handshake_timeout_ms;
	unsigned max_pending_handshakes;
	unsigned redial_min_ms, redial_max_ms;
	struct hw_config_tp *persistent;
	size_t npersistent;
	/* Setup nodes whose route rules this visor accepts. */
	uint8_t setup_nodes[HW_MAX_SETUP_NODES][HW_PK_LEN];
	unsigned nsetup_nodes;
	/* Debugging: every route packet payload this visor forwards as an
	 * intermediate hop is appended here ("" for none). */
	char tap_file[PATH_MAX];
	/* How long a route group whose routes failed looks for new ones
	 * before it fails (0: it fails at once). */
	unsigned heal_timeout_ms;
	struct hw_config_app *apps;
	size_t napps;
};

/* Loads and checks path. Returns 0, or a negative code with a message in
 * err naming the field: "transport.tcp_listen: 'x:99999' is not HOST:PORT".
 * Free with hw_config_free (also after a failure). */
int hw_config_load(struct hw_config *cfg, const char *path, char *err,
		   size_t errlen);

/* The same for config text (len bytes) that came from path; relative paths
 * in it are taken relative to path's folder. */
int hw_config_parse(struct hw_config *cfg, const char *path, const char *text,
		    size_t len, char *err, size_t errlen);

void hw_config_free(struct hw_config *cfg);

/* Checks an app name: 1..HW_CONFIG_APP_NAME_MAX of [A-Za-z0-9_-]. Returns 0 or
 * -EINVAL. */
int hw_config_app_name_ok(const char *name);

/* The name of a capability bit (HW_APP_CAP_*: "CAP_NET_ADMIN"), NULL
 * for one an app may not have. */
const char *hw_config_cap_name(uint64_t bit);

/* Reads one app's settings, spec = {"binary": str, "args": [str...]
 * (optional), "port": 0..65535, "autostart": bool (optional, true),
 * "capabilities": ["CAP_NET_ADMIN"] (optional), "cleanup_args": [str...]
 * (optional)}, for
 * the app name of the config at path (a relative binary path is taken
 * from path's folder) into *out; unknown keys are errors. Messages name
 * the field as in the object ("port: 0 is out of range 1..65535").
 * Returns 0 (free with hw_config_app_clear) or -EINVAL with a message. */
int hw_config_app_parse(const char *path, const char *name, json_t *spec,
			struct hw_config_app *out, char *err, size_t errlen);

/* Frees what hw_config_app_parse put in a and zeroes it. */
void hw_config_app_clear(struct hw_config_app *a);

/* Sets the app name to spec (as for hw_config_app_parse) in the config
 * file at path: replaces the entry of "apps" with that name or appends
 * one, keeps the rest of the file as it is, checks that the whole file
 * still loads, and writes it atomically. Returns 0, or a negative code
 * with a message (-EINVAL for spec or a file that would not load). */
int hw_config_put_app(const char *path, const char *name, json_t *spec,
		      char *err, size_t errlen);

/* Sets apps[name].autostart in the config file at path, keeping the rest
 * of the file as it is, and writes it atomically. Returns 0, -ENOENT when
 * no app has that name, or a negative code with a message. */
int hw_config_set_autostart(const char *path, const char *name, int on,
			    char *err, size_t errlen);

/* A complete default configuration with the given values (absolute
 * paths); tcp_listen NULL gives the default, "" disables. New reference. */
json_t *hw_config_default(const char *key_file, const char *local_dir,
			  const char *tcp_listen, const char *discovery_url);

#endif
