/* The settings document of the forward app (docs/forward.md "Using it"),
 * as `hopwire forward` checks and edits it before it goes to the visor:
 *
 *   {"revision": N,
 *    "expose": [{"name": "ssh", "target": "127.0.0.1:22",
 *                "allow": ["<64-hex pk>", ...] or ["any"]}],
 *    "map": [{"listen": "127.0.0.1:2200", "pk": "<64-hex pk>",
 *             "service": "ssh"}]}
 *
 * Every function that fails writes why, naming the input, to err. */
#ifndef HW_CLI_FORWARD_SPEC_H
#define HW_CLI_FORWARD_SPEC_H

#include <jansson.h>
#include <stddef.h>

/* A service name: 1 to 32 of [a-z0-9._-]. */
#define HW_FWD_NAME_MAX 32
/* An address as written in the document: "[v6]:65535" and a NUL fit. */
#define HW_FWD_ADDR_MAX 300
/* At most this many --allow keys per service, services and mappings (as
 * hopwire-forward takes them). */
#define HW_FWD_ALLOW_MAX 64
#define HW_FWD_SERVICES_MAX 64
#define HW_FWD_MAPS_MAX 64

/* Whether s is a service name. */
int hw_fwd_name_ok(const char *s);

/* Checks a service's target, HOST:PORT (a host name, an IPv4 address or
 * [IPv6]:PORT). Returns 0 or -EINVAL. */
int hw_fwd_target_check(const char *s, char *err, size_t errlen);

/* Parses a mapping's local end, [BIND:]PORT with BIND a numeric address
 * (default 127.0.0.1; IPv6 in brackets), into its one written form in out
 * ("127.0.0.1:2200", "[::1]:2200"), so that two spellings of one address
 * compare equal. Returns 0 or -EINVAL. */
int hw_fwd_listen_parse(const char *s, char out[HW_FWD_ADDR_MAX], char *err,
			size_t errlen);

/* Checks a whole document: "expose" and "map" arrays (either may be
 * missing) of entries as above, at most HW_FWD_SERVICES_MAX and
 * HW_FWD_MAPS_MAX of them, no two services with one name, no two maps
 * on one listen address. Returns 0 or -EINVAL. */
int hw_fwd_doc_check(json_t *doc, char *err, size_t errlen);

/* Adds service name (target, allow: n keys or the one word "any") to doc,
 * replacing one of that name. Returns 0, or -EINVAL, or -ENOMEM. */
int hw_fwd_expose(json_t *doc, const char *name, const char *target,
		  const char *const *allow, size_t n, char *err,
		  size_t errlen);

/* Removes service name. Returns 0, or -ENOENT when there is none. */
int hw_fwd_unexpose(json_t *doc, const char *name, char *err, size_t errlen);

/* Adds the mapping listen (as hw_fwd_listen_parse writes it) -> pk's
 * service. Returns 0 (also when the same mapping is there: *same set),
 * -EEXIST when listen maps elsewhere already, -ENOMEM. */
int hw_fwd_add(json_t *doc, const char *listen, const char *pk,
	       const char *service, int *same, char *err, size_t errlen);

/* Removes the mapping on listen. Returns 0, or -ENOENT. */
int hw_fwd_rm(json_t *doc, const char *listen, char *err, size_t errlen);

#endif
