/* JSON files of the VPN apps: status.json once a second, leases.json
 * and undo.json when they change. Every file is written to NAME.tmp in
 * the same folder and renamed over NAME, so a reader never sees half a
 * document. */
#ifndef HW_VPN_STATUS_H
#define HW_VPN_STATUS_H

#include <jansson.h>

/* Writes doc to path atomically; with sync, fsyncs the file and its
 * folder before returning (leases, undo records). Returns 0 or a
 * negative errno. doc stays the caller's. */
int hw_vpn_json_save(const char *path, json_t *doc, int sync);

/* Reads a JSON object of at most max bytes from path (a regular file,
 * no link). Returns 0 and *out (the caller's), -ENOENT when there is no
 * file, -EINVAL with err set for anything else wrong. */
int hw_vpn_json_load(const char *path, size_t max, json_t **out, char *err,
		     size_t errlen);

/* Milliseconds since the epoch (for "since" and "updated_ms"). */
long long hw_vpn_wall_ms(void);
/* Milliseconds of CLOCK_MONOTONIC. */
long long hw_vpn_now_ms(void);

#endif
