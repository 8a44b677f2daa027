/* The visor's side of the app protocol (docs/app-protocol.md): apps on
 * channels (inherited from the launcher, or connected by hand to
 * LOCAL_DIR/apps.sock), their ports, and their loops, each a route group
 * (visor/routing.h) to an app on another visor.
 *
 * An app that breaks the framing, sends descriptors, or stops reading
 * loses its channel and its loops; every other app goes on. */
#ifndef HW_VISOR_APPSERVER_H
#define HW_VISOR_APPSERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct hw_appserver;
struct hw_visor;

/* Listens on LOCAL_DIR/apps.sock (0600) and takes incoming route groups
 * for app ports from v's routing. Returns 0, or a negative code with a
 * message in err. */
int hw_appserver_new(struct hw_appserver **out, struct hw_visor *v, char *err,
		     size_t errlen);

/* Closes every app channel and loop; the loop must run on. Accepts NULL. */
void hw_appserver_free(struct hw_appserver *as);

/* A launched app's channel: fd (the visor's end, taken over) belongs to
 * the configured app name with port. Returns 0 or a negative code (fd is
 * closed). */
int hw_appserver_adopt(struct hw_appserver *as, const char *name,
		       uint16_t port, int fd);

/* The app named name holds a channel (it is connected). */
int hw_appserver_connected(const struct hw_appserver *as, const char *name);

/* Connected apps as a JSON array (new reference): name, port, launched
 * (bool), initialised, loops, extensions. */
json_t *hw_appserver_json(const struct hw_appserver *as);

#endif
