/* The visor's side of the app protocol (docs/app-protocol.md): apps on
 * channels (inherited from the launcher, or connected by hand to
 * LOCAL_DIR/apps.sock), their ports, and their loops, each a route group
 * (a route end of visor/routing.h) to an app on another visor.
 *
 * The app server does not know routing or the launcher: it dials, drives
 * route ends and asks about configured apps through the ops of its
 * params, and the events of a loop's route end come back through
 * hw_appserver_end_* (visor.c wires both).
 *
 * An app that breaks the framing, sends descriptors, or stops reading
 * loses its channel and its loops; every other app goes on. */
#ifndef HW_VISOR_APPSERVER_H
#define HW_VISOR_APPSERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"

struct hw_appserver;
/* A route group at this visor, opaque here (visor/routing.h). */
struct hw_route_end;

/* What the app server needs from routing and the launcher. A loop is
 * named by the opaque pointer it is dialed or accepted with. */
struct hw_appserver_ops {
	/* Dials port at pk from local port src_port for loop: 0, and later
	 * hw_appserver_end_ready or _closed is called with loop; or a
	 * negative code with a message in err (nothing is called back). */
	int (*dial)(void *ud, const uint8_t pk[HW_PK_LEN], uint16_t port,
		    uint16_t src_port, void *loop, char *err, size_t errlen);
	/* Cancels the dial of loop that has not called back yet. */
	void (*dial_cancel)(void *ud, void *loop);
	/* The next local port for a dial. */
	uint16_t (*ephemeral_port)(void *ud);
	/* A ready route end: write (0, -ENOBUFS when full: writable
	 * follows, other negative codes), give credit back, hand the bytes
	 * to a descriptor (taken over on success), close (no event after). */
	int (*end_write)(struct hw_route_end *e, const uint8_t *p, size_t len);
	void (*end_consumed)(struct hw_route_end *e, size_t n);
	int (*end_pipe)(struct hw_route_end *e, int fd);
	void (*end_close)(struct hw_route_end *e);
	/* The configured apps (may be NULL: none). app_port: whether name
	 * is a configured app, with its port in *port. port_owner: the name
	 * of the configured app with port, or NULL. app_running: whether
	 * the launcher runs the app name. */
	int (*app_port)(void *ud, const char *name, uint16_t *port);
	const char *(*port_owner)(void *ud, uint16_t port);
	int (*app_running)(void *ud, const char *name);
};

struct hw_appserver_params {
	uv_loop_t *loop;
	const struct hw_identity *id; /* its public key is copied */
	/* Read while hw_appserver_new runs only: apps.sock goes there. */
	const char *local_dir;
	const struct hw_appserver_ops *ops; /* outlives the app server */
	void *ud;
};

/* Listens on LOCAL_DIR/apps.sock (0600). Returns 0, or a negative code
 * with a message in err (*out may then be set: free it). */
int hw_appserver_new(struct hw_appserver **out,
		     const struct hw_appserver_params *p, char *err,
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

/* The loops of the connected app name as a JSON array (new reference):
 * [{"port": its local port, "remote": "PK:PORT", "state": "dialing" |
 * "confirming" | "open"}]; NULL when no such app is connected (or out
 * of memory). */
json_t *hw_appserver_loops_json(const struct hw_appserver *as,
				const char *name);

/* A route group from src_pk port src_port arrives for dst_port: returns
 * 0 and sets *loop (the app confirms it once hw_appserver_end_ready
 * comes), -ENOENT when no app holds dst_port, or another negative code
 * with a reason in msg. */
int hw_appserver_incoming(struct hw_appserver *as,
			  const uint8_t src_pk[HW_PK_LEN], uint16_t src_port,
			  uint16_t dst_port, void **loop, char *msg,
			  size_t msglen);

/* The events of a loop's route end (the callbacks of routing's
 * hw_route_end_ops, with the loop as their ud): up, bytes from the far
 * end, room again after -ENOBUFS, and gone (or the dial failed). */
void hw_appserver_end_ready(void *loop, struct hw_route_end *e);
void hw_appserver_end_data(void *loop, const uint8_t *p, size_t len);
void hw_appserver_end_writable(void *loop);
void hw_appserver_end_closed(void *loop, int reason, const char *msg);

#endif
