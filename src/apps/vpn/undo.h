/* The VPN client's record of what it changed on the host (undo.json in
 * its working folder, docs/vpn.md "What the client changes"): each route
 * is written to the file (synced) before it is added, and taken out once
 * removed, so that after a crash `hopwire-vpn-client --cleanup` (and the
 * next start) removes exactly what is left. */
#ifndef HW_VPN_UNDO_H
#define HW_VPN_UNDO_H

#include <stddef.h>

#include "nl.h"

#define HW_VPN_UNDO_MAX 4096 /* routes recorded at most */

struct hw_vpn_undo;

/* Starts an empty record at path (the file is written at the first
 * change). Returns 0 with *out or -ENOMEM. */
int hw_vpn_undo_new(struct hw_vpn_undo **out, const char *path);
void hw_vpn_undo_free(struct hw_vpn_undo *u);

/* Records r (dev names its interface), then adds it. A route that was
 * there already (-EEXIST) is not ours: its record is taken out again and
 * -EEXIST returned. Other failures return the kernel's negative errno. */
int hw_vpn_undo_route_add(struct hw_vpn_undo *u, struct hw_vpn_nl *nl,
			  const struct hw_vpn_route *r);

/* Removes route r we added and its record. Returns 0 or a negative
 * errno (a route already gone counts as removed). */
int hw_vpn_undo_route_del(struct hw_vpn_undo *u, struct hw_vpn_nl *nl,
			  const struct hw_vpn_route *r);

/* Removes every route recorded in u (newest first), leaving the record
 * empty. Returns the number removed. */
int hw_vpn_undo_all(struct hw_vpn_undo *u, struct hw_vpn_nl *nl);

/* Replays the record at path left by an earlier run: removes its routes
 * (newest first; one already gone, or whose interface is gone, counts as
 * removed), then deletes the file. *done counts the routes removed.
 * Returns 0 (also when there is no file), or -EINVAL with err naming what
 * was malformed (the file is then kept). */
int hw_vpn_undo_replay(const char *path, struct hw_vpn_nl *nl, int *done,
		       char *err, size_t errlen);

#endif
