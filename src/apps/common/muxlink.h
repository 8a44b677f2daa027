/* An app's link to a peer app: one loop to PORT on the first visor of a
 * list that answers, carrying every connection as a stream of the SDK's
 * mux (include/hopwire/app.h, "Streams over one loop"). A keeper thread
 * dials it at start, before the first connection, and again in the
 * background whenever it ends, trying the visors in order from the last
 * that worked (docs/socks.md "One loop per exit"). Used by
 * hopwire-socks-client (its exits) and hopwire-forward (one link per
 * server visor). */
#ifndef HW_APPS_MUXLINK_H
#define HW_APPS_MUXLINK_H

#include <stdint.h>

#include "hopwire/app.h"

#define HW_MUXLINK_PEERS_MAX 16

enum hw_muxlink_state {
	HW_MUXLINK_IDLE,    /* no peer to dial */
	HW_MUXLINK_DIALING, /* no link yet, or the last one ended */
	HW_MUXLINK_UP,      /* a link is open */
	HW_MUXLINK_DOWN,    /* no peer answered; retrying */
};

struct hw_muxlink;
struct hw_muxlink_ref;

struct hw_muxlink_params {
	struct hw_app *app;
	const char (*peers)[HW_APP_PK_HEX + 1]; /* visor keys, hex */
	int npeers;                             /* 0: an idle link */
	uint16_t port;                          /* the peer app's port */
	const char *log;                        /* prefix of log lines */
};

/* What hw_muxlink_status reports. */
struct hw_muxlink_status {
	enum hw_muxlink_state state;
	int peer;        /* index of the peer in use (or last used), -1 */
	unsigned links;  /* links opened since the start */
	char error[256]; /* the last failure, "" when none */
	/* Over every link so far: DATA bytes sent, received; streams open
	 * on the current link. */
	unsigned long long sent, received;
	unsigned streams;
};

/* Starts the keeper. Returns 0 or a negative errno. */
int hw_muxlink_start(struct hw_muxlink **out,
		     const struct hw_muxlink_params *p);

/* Opens a stream to the peer in use and sets *fd (the caller's to close)
 * and *ref (give it back with hw_muxlink_put). Waits up to timeout_ms
 * for a link when none is up. Returns 0, -ENOENT with no peer, -ETIMEDOUT
 * when no link came up in time (the status says why), -EPIPE when the
 * link ended under the call (try again) or it was stopped, or another
 * negative errno. */
int hw_muxlink_open(struct hw_muxlink *x, int timeout_ms, int *fd,
		    struct hw_muxlink_ref **ref);

/* Gives back what hw_muxlink_open handed out. */
void hw_muxlink_put(struct hw_muxlink_ref *ref);

/* hw_app_mux_relay on the link of ref: its mux moves the bytes of stream
 * fd to and from sock from then on (fd taken in every case, sock on
 * success; watch as there). */
int hw_muxlink_relay(struct hw_muxlink_ref *ref, int fd, int sock,
		     struct hw_app_mux_watch *watch);

void hw_muxlink_status(struct hw_muxlink *x, struct hw_muxlink_status *st);

/* Stops dialing; the link closes once no stream is left on it, then the
 * keeper frees x. x must not be used after this call. */
void hw_muxlink_stop(struct hw_muxlink *x);

/* "idle", "dialing", "up", "down". */
const char *hw_muxlink_state_str(enum hw_muxlink_state s);

#endif
