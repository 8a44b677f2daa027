/* hopwire-discovery's HTTP server: the API of docs/discovery.md on
 * libmicrohttpd, over a store (discovery/store.h).
 *
 * Threads. libmicrohttpd runs a pool of worker threads, each with its own
 * epoll set and its share of the connections; a request is handled to the
 * end on the thread that read it. Each handler borrows a store connection
 * from a small pool (one per thread at most), so reads never queue behind
 * each other; writes are made atomic by the store (the sequence
 * check-and-set and the change in one transaction or Lua script). A
 * further thread deletes expired entries periodically. Counters for
 * /metrics are atomics. */
#ifndef HW_DISCOVERY_SERVER_H
#define HW_DISCOVERY_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "discovery/store.h"

#define HW_DISC_DEFAULT_TTL_S 600
#define HW_DISC_DEFAULT_TS_WINDOW_S 300
#define HW_DISC_DEFAULT_THREADS 4
#define HW_DISC_MAX_THREADS 16
#define HW_DISC_SWEEP_INTERVAL_MS 30000
/* Largest request body; larger ones are answered 413. */
#define HW_DISC_MAX_BODY (64 * 1024)
/* GET /v1/<kind>?limit=: the default and the largest accepted. */
#define HW_DISC_LIST_DEFAULT 1000
#define HW_DISC_LIST_MAX 10000

struct hw_disc_server;

struct hw_disc_server_config {
	const char *listen;      /* HOST:PORT */
	unsigned ttl_s;          /* entries live this long after a write */
	unsigned ts_window_s;    /* writes' ts within +- this of our clock */
	unsigned threads;        /* HTTP workers, 1..HW_DISC_MAX_THREADS */
	unsigned sweep_interval_ms; /* expiry sweep period; 0: the default */
};

/* Starts serving cfg->listen over store, which the server owns from now
 * on (also when this fails: it is freed). Returns 0 and *out, or a
 * negative code with a message in err ("cannot bind: Address already in
 * use"). */
int hw_disc_server_new(struct hw_disc_server **out,
		       const struct hw_disc_server_config *cfg,
		       struct hw_dstore *store, char *err, size_t errlen);

/* Stops serving: waits for the requests being handled, stops the sweep
 * and closes the store. Accepts NULL. */
void hw_disc_server_free(struct hw_disc_server *srv);

/* The TCP port the server listens on. */
uint16_t hw_disc_server_port(const struct hw_disc_server *srv);

/* Runs an expiry sweep now (the sweep thread does so every
 * sweep_interval_ms). Returns 0 or the store's failure. */
int hw_disc_server_sweep(struct hw_disc_server *srv, uint64_t *removed);

#endif
