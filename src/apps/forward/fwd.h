/* hopwire-forward's shared state (docs/forward.md): the settings in
 * force, the mappings with their listeners and peer links, and the open
 * connections, all under one mutex. main.c runs the loop and applies the
 * settings, maps.c is the client side, serve.c the server side, stdio.c
 * the one-connection mode for OpenSSH's ProxyCommand. */
#ifndef HW_FWD_H
#define HW_FWD_H

#include <pthread.h>
#include <stdint.h>

#include "apps/common/muxlink.h"
#include "hopwire/app.h"
#include "proto.h"
#include "settings.h"

#define FWD_PORT 47
#define FWD_CONNS_MAX 1024
#define FWD_WAIT_MS 10000   /* a link to come up; the service to connect */
#define FWD_ANSWER_MS 15000 /* the server's answer, its connect included */

#define LOG "hopwire-forward"

/* A server visor the client side has a link to, shared by its maps. */
struct fwd_peer {
	char pk[HW_APP_PK_HEX + 1];
	struct hw_muxlink *link;
	int refs; /* maps and connections being opened */
	struct fwd_peer *next;
};

/* A mapping in force. */
struct fwd_maprt {
	struct fwd_map m;
	int lfd;          /* the listener, -1 when it could not be opened */
	char error[256];  /* why it cannot work, "" when it can */
	struct fwd_peer *peer;
	int conns;        /* open now */
};

/* An open connection, either side, relayed by a mux. */
struct fwd_conn {
	struct hw_app_mux_watch w; /* first: done finds the connection */
	int client_side;
	char client_pk[HW_APP_PK_HEX + 1], server_pk[HW_APP_PK_HEX + 1];
	uint16_t client_port, service_port;
	char service[HW_FWD_NAME_MAX + 1];
	char listen[FWD_ADDR_MAX]; /* client side: the map's address */
	long long since_ms;
	/* The stream's own header bytes (request, answer), not the TCP
	 * connection's: left out of what the status shows. */
	unsigned hdr_sent, hdr_received;
	struct fwd_conn *prev, *next;
};

struct fwd {
	struct hw_app *app;
	char pk[HW_APP_PK_HEX + 1];
	pthread_mutex_t mu;
	/* Under mu: */
	struct fwd_settings *set; /* in force */
	char settings_error[512];
	struct fwd_maprt maps[FWD_MAPS_MAX];
	int nmaps;
	struct fwd_peer *peers;
	struct fwd_conn *conns;
	int nconns;  /* open, both sides */
	int pending; /* threads negotiating */
	int changed; /* something the status shows moved */
};

extern struct fwd fwd;
extern pthread_attr_t fwd_thread_attr;

long long fwd_now_ms(void);
long long fwd_wall_ms(void);

/* Registers c (filled in) as open and relays stream s to sock through
 * ref's link or mux (exactly one given); c is freed when the relay ends.
 * Returns 0, or a negative errno with c freed and sock still the
 * caller's (s is taken in every case). */
int fwd_conn_relay(struct fwd_conn *c, struct hw_muxlink_ref *ref,
		   struct hw_app_mux *mux, int s, int sock);

/* Client side (maps.c): opens, closes and serves the mappings. */
void fwd_maps_apply(const struct fwd_settings *set);
void fwd_maps_accept(int i); /* map i's listener is readable */

/* Server side (serve.c): a loop another visor opened to us. */
void fwd_serve_loop(const struct hw_app_loop *loop);

/* --stdio PK NAME (stdio.c): one connection on stdin and stdout; the exit
 * status. */
int fwd_stdio(const char *pk, const char *name);

/* Connects to host:port within timeout_ms. The socket, or -1 with *status
 * (HW_FWD_REFUSED, TIMED_OUT, UNREACHABLE) and why set. */
int fwd_connect(const char *host, const char *port, int timeout_ms,
		uint8_t *status, char *why, size_t whylen);

/* Reads until parse has a whole message at the start of buf, or the
 * deadline (fwd_now_ms) passes. 0, -ETIMEDOUT, -EPIPE (end of file), or
 * what parse returned. */
int fwd_read_msg(int fd, uint8_t *buf, size_t cap, size_t *len,
		 long long deadline,
		 int (*parse)(const uint8_t *, size_t, void *, size_t *),
		 void *out, size_t *used);

/* Writes all of buf (blocking descriptor). 0 or a negative errno. */
int fwd_write_all(int fd, const void *buf, size_t len);

#endif
