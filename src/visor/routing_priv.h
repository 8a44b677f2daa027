/* What the files of the routing module share (routing.c, routing_setup.c,
 * routing_dial.c, routing_ends.c, streams.c) and nothing else includes,
 * except its unit test. */
#ifndef HW_VISOR_ROUTING_PRIV_H
#define HW_VISOR_ROUTING_PRIV_H

#include <limits.h>
#include <stdint.h>

#include <uv.h>

#include "crypto/identity.h"
#include "e2e/rgroup.h"
#include "router/router.h"
#include "router/setup_msg.h"
#include "util/htab.h"
#include "visor/routing.h"
#include "visor/routing_tap.h"
#include "visor/stream_req.h"

#define LOG "routing"
/* Local ports of dialing ends come from here up. */
#define EPHEMERAL_FIRST 49152

enum client_state { C_LINE, C_LISTEN, C_DIAL, C_PIPE, C_DONE };

struct group;

/* How the last route groups of stream-socket clients ended (GET
 * /v1/groups/ended): written before the visor closes the client's
 * connection, so a client that read end of file can ask (streams.c). */
struct ended_group {
	uint64_t id;    /* the "group" of the connected/accepted line */
	uint64_t at_ms; /* uv_now when it ended */
	int reason;     /* 0: closed with acknowledgement */
	char why[200];  /* what went wrong (hw_rgroup_why), "" on 0 */
	int source;     /* this visor dialed it */
	char peer[HW_PK_HEXLEN + 8]; /* the far end, "PK:PORT" */
};

/* A connection to the stream socket (streams.c). */
struct client {
	uv_pipe_t pipe;
	struct client *next; /* rt->clients */
	struct hw_routing *rt;
	enum client_state state;
	char *line; /* the request line (HW_STREAM_REQ_MAX), until it is
		       read */
	size_t linelen;
	struct group *grp;
	uint16_t port;      /* listen */
	size_t queued;      /* bytes written to it, not yet taken */
	uint8_t *pend;      /* read from it, refused by a full group */
	size_t pend_len;
	int read_stopped;
	int closing;
	/* A throughput test (docs/api.md): the visor itself discards what
	 * the group brings (listen with "discard"), or sends send_total
	 * bytes of zeros into it and closes it (dial with "send"); the
	 * connection only carries the answer lines. */
	int discard;
	uint64_t send_total, send_left;
	uint64_t test_bytes;
	uint64_t test_t0; /* uv_hrtime of the first byte (discard) or of
			     ready (send); 0 before */
	/* A piping client: its group's ID and far end (from ready on), and
	 * whether it has sent everything (its group is closing). */
	uint64_t gid;
	int eof;
	/* A route end's descriptor (hw_streams_open_fd): its end of file
	 * must not come before the route end's owner has said how the group
	 * ended, so it is closed once drained, never shut down. */
	int endfd;
	int drain_close;
};

/* A route group at this visor (routing_ends.c). */
struct group {
	struct hw_hnode node; /* rt->groups, by recv_id (0 while its routes
				 are broken: no rule has ID 0) */
	struct hw_routing *rt;
	struct hw_rgroup *g;
	uint32_t recv_id, send_id;
	struct client *client;
	/* A route end driven by another module (hw_route_end_*). */
	const struct hw_route_end_ops *eops;
	void *eud;
	/* The forward route's hops when this visor dialed the group (the
	 * path of its latest build or heal); nhops 0 at the responder. */
	struct hw_setup_hop *hops; /* nhops, on the heap; NULL: none */
	unsigned nhops;
};

/* A dial under way: this visor is the source (routing_dial.c). */
struct dial {
	struct dial *next;
	struct hw_routing *rt;
	struct client *client;
	const struct hw_route_end_ops *eops; /* or a route end's */
	void *eud;
	struct hw_setup_msg build; /* filled as paths arrive */
	/* Healing: new routes for this group (NULL once it closed), or
	 * only whether a path is left (check_only, at the responder);
	 * the transport the paths must avoid. */
	struct group *resume;
	int heal, check_only, has_avoid;
	uint8_t avoid[HW_TP_ID_LEN];
	uint8_t via[HW_SETUP_HOPS_MAX][HW_PK_LEN];
	unsigned nvia;
	uint32_t req;
	uint8_t setup_pk[HW_PK_LEN];
	uv_timer_t timer;
	int stage; /* 0 paths, 1 setup transport, 2 built, 3 handshake */
	int done;         /* finished: callbacks still due only free it */
	int waiting;      /* callbacks of other modules still due */
	int timer_closed;
};

struct hw_routing {
	uv_loop_t *loop;
	const struct hw_identity *id;
	const uint8_t *x_priv;
	struct hw_tp_manager *tpm;
	uint8_t setup_nodes[HW_ROUTING_SETUP_NODES_MAX][HW_PK_LEN];
	unsigned nsetup_nodes;
	const struct hw_routing_ops *ops;
	void *ops_ud;
	struct hw_router *router;
	struct hw_htab groups;
	struct dial *dials;
	struct client *clients;
	uv_pipe_t server;
	char sock_path[PATH_MAX + 16];
	int listening;
	uint32_t next_req;
	uint16_t next_port;
	unsigned nclients;
	uint64_t next_gid;
	struct ended_group ended[HW_ROUTING_ENDED_KEPT]; /* a ring */
	unsigned ended_n, ended_next;
	uint32_t keepalive_ms;
	uint32_t heal_ms; /* a broken group's time to heal; 0: none */
	uint64_t setup_refused, setup_bad, unknown_group;
	struct hw_routing_tap *tap; /* routing.tap_file */
	hw_routing_incoming_fn incoming;
	void *incoming_ud;
	int closing;
	int handles; /* open handles; freed at zero after hw_routing_free */
};

/* routing.c */
void hw_routing_unref(struct hw_routing *rt);

/* routing_ends.c: route groups, whichever end drives them. */
struct group *hw_routing_group_find(struct hw_routing *rt, uint32_t recv_id);
/* The responder's group with descriptor d, or NULL. */
struct group *hw_routing_group_by_desc(struct hw_routing *rt,
				       const struct hw_route_desc *d);
/* New routes for gr: its rules are send_id and recv_id from now on. */
void hw_routing_group_resumed(struct hw_routing *rt, struct group *gr,
			      uint32_t send_id, uint32_t recv_id);
/* Keeps a copy of the n hops a group was (re)built over, for the API;
 * without memory it keeps none. */
void hw_routing_group_set_hops(struct group *gr,
			       const struct hw_setup_hop *hops, unsigned n);
/* Starts a group for client c or route end eops/eud (one of them, or
 * neither). Returns 0 or a negative code (nothing started). */
int hw_routing_group_start(struct hw_routing *rt, const struct hw_route_desc *d,
			   int initiator, uint32_t send_id, uint32_t recv_id,
			   struct client *c,
			   const struct hw_route_end_ops *eops, void *eud);

/* routing_setup.c: what this visor answers to a setup message m from the
 * visor from_pk. Returns 1 with the answer in *a (to send back on the
 * transport m came over), or 0 when nothing is to be sent. */
int hw_routing_setup_answer(struct hw_routing *rt,
			    const uint8_t from_pk[HW_PK_LEN],
			    const struct hw_setup_msg *m,
			    struct hw_setup_msg *a);
/* A setup packet from tp: decodes it and answers on tp. */
void hw_routing_on_setup(struct hw_routing *rt, struct hw_tp *tp,
			 const struct hw_packet *pkt);

/* routing_dial.c */
/* The checks of a dial that come before its hops (via): 0, or -EINVAL
 * with a message in err. */
int hw_routing_dial_check(struct hw_routing *rt, const uint8_t pk[HW_PK_LEN],
			  char *err, size_t errlen);
/* Starts a dial for client c or route end eops/eud over the nvia hops via
 * (checked already). Returns 0, or a negative code with a message in err
 * (nothing called back). */
int hw_routing_dial_start(struct hw_routing *rt, struct client *c,
			  const struct hw_route_end_ops *eops, void *eud,
			  const uint8_t pk[HW_PK_LEN], uint16_t port,
			  uint16_t src_port, const uint8_t (*via)[HW_PK_LEN],
			  unsigned nvia, char *err, size_t errlen);
/* BUILT from the setup node from_pk: the dial it answers goes on.
 * Returns 0, or -ENOENT when no dial waits for it. */
int hw_routing_on_built(struct hw_routing *rt, const uint8_t from_pk[HW_PK_LEN],
			const struct hw_setup_msg *m);
/* Takes d off the dial list and closes its timer; d is freed once no
 * other module's callback for it is due. */
void hw_routing_dial_free(struct dial *d);
/* Heals the broken group gr: at the source, new routes for it (the paths
 * avoiding avoid_tp when not NULL), handed over with
 * hw_routing_group_resumed; at the destination, only a check that a path
 * back to the source is left. Failures reach hw_rgroup_heal_failed. */
void hw_routing_heal_start(struct hw_routing *rt, struct group *gr,
			   const uint8_t *avoid_tp);

/* streams.c: the stream socket and its clients. hw_streams_init readies
 * the socket's handle (hw_streams_close closes it, listening or not), then
 * hw_streams_listen binds LOCAL_DIR/streams.sock: 0, or a negative code with
 * a message. */
void hw_streams_init(struct hw_routing *rt);
int hw_streams_listen(struct hw_routing *rt, const char *local_dir, char *err,
		      size_t errlen);
void hw_streams_close(struct hw_routing *rt);
void hw_streams_client_close(struct client *c);
void hw_streams_reply(struct client *c, json_t *o);
void hw_streams_read_start(struct client *c);
/* A client listening on port with no group yet (taken by the caller), or
 * NULL. */
struct client *hw_streams_take_listener(struct hw_routing *rt, uint16_t port);
/* The stream-client half of a group's callbacks (routing_ends.c calls
 * them for groups with a client). */
void hw_streams_ready(struct client *c, const struct hw_route_desc *d,
		      int source);
void hw_streams_data(struct client *c, struct hw_rgroup *g, const uint8_t *p,
		     size_t len);
void hw_streams_writable(struct client *c, struct hw_rgroup *g);
void hw_streams_closed(struct client *c, const struct hw_rgroup *g,
		       int reason, const char *why);
/* A client for a route end's descriptor fd (hw_route_end_pipe). */
int hw_streams_open_fd(struct hw_routing *rt, struct group *gr, int fd);

#endif
