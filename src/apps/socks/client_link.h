/* The client's link to its exits: one loop to port 3 of the exit in use,
 * carrying every proxied connection as a stream of the SDK's mux
 * (docs/socks.md "One loop per exit"). A keeper thread dials it at start,
 * before the first connection, and again in the background whenever it
 * ends, trying the exits in order from the last that worked. */
#ifndef HW_SOCKS_EXITLINK_H
#define HW_SOCKS_EXITLINK_H

#include "hopwire/app.h"

#define HW_EXITLINK_EXITS_MAX 16

enum hw_exitlink_state {
	HW_EXITLINK_IDLE,    /* no exit configured */
	HW_EXITLINK_DIALING, /* no link yet, or the last one ended */
	HW_EXITLINK_UP,      /* a link is open */
	HW_EXITLINK_DOWN,    /* no exit answered; retrying */
};

struct hw_exitlink;
struct hw_exitlink_ref;

/* What hw_exitlink_status reports. */
struct hw_exitlink_status {
	enum hw_exitlink_state state;
	int exit;        /* index of the exit in use (or last used), -1 */
	unsigned links;  /* links opened since the start */
	char error[256]; /* the last failure, "" when none */
	/* Over every link so far: bytes to the exit, bytes back; streams
	 * open on the current link. */
	unsigned long long sent, received;
	unsigned streams;
};

/* Starts the keeper over app with the exits' keys (hex); nexits 0 gives
 * an idle link that never dials. Returns 0 or a negative errno. */
int hw_exitlink_start(struct hw_exitlink **out, struct hw_app *app,
		      const char (*exits)[HW_APP_PK_HEX + 1], int nexits);

/* Opens a stream to the exit in use and sets *fd (the caller's to close)
 * and *ref (give it back with hw_exitlink_put after closing fd). Waits up
 * to timeout_ms for a link when none is up. Returns 0, -ENOENT with no
 * exit configured, -ETIMEDOUT when no link came up in time (the status
 * says why), or another negative errno. */
int hw_exitlink_open(struct hw_exitlink *x, int timeout_ms, int *fd,
		     struct hw_exitlink_ref **ref);

/* Gives back what hw_exitlink_open handed out. */
void hw_exitlink_put(struct hw_exitlink *x, struct hw_exitlink_ref *ref);

/* Hands stream fd of ref over to sock (hw_app_mux_relay: the link's
 * mux moves the bytes from then on, and takes fd in every case and sock
 * on success). Returns 0 or a negative errno. */
int hw_exitlink_relay(struct hw_exitlink_ref *ref, int fd, int sock);

void hw_exitlink_status(struct hw_exitlink *x,
			struct hw_exitlink_status *st);

/* "idle", "dialing", "up", "down". */
const char *hw_exitlink_state_str(enum hw_exitlink_state s);

#endif
