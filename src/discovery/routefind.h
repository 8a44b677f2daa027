/* The route finder: the k best loopless paths between two visors over the
 * transport graph that discovery holds (GET /v1/routes).
 *
 * The graph is an undirected multigraph: a node is a visor public key, an
 * edge is one registered transport between two keys, and two visors may be
 * joined by several transports (tcp and relay, say), each of which makes a
 * distinct path. Paths are ordered by
 *   1. fewer hops,
 *   2. lower total RTT, an edge of unknown RTT (rtt_us 0) counting
 *      HW_RF_RTT_UNKNOWN_US for the ordering only,
 *   3. the sequence of transport IDs from src, compared bytewise, then the
 *      sequence of edge indices (only matters for duplicate IDs),
 * which is a total order, so the answer for a given edge list is stable.
 *
 * Yen's algorithm (with Lawler's saving of spur searches) over a
 * breadth-first inner search that settles each hop layer by RTT and ID
 * order and never looks past max_hops. The graph is indexed afresh on each
 * call from the caller's current transport list. Work is bounded whatever
 * the shape of the graph: at most HW_RF_MAX_EDGES edges, and a bounded
 * number of inner searches (below). */
#ifndef HW_DISCOVERY_ROUTEFIND_H
#define HW_DISCOVERY_ROUTEFIND_H

#include <stddef.h>
#include <stdint.h>

#define HW_RF_MAX_K 16          /* paths asked for: 1..HW_RF_MAX_K */
#define HW_RF_MAX_HOPS 16       /* min_hops, max_hops: 1..HW_RF_MAX_HOPS */
#define HW_RF_MAX_EDGES 1000000 /* larger graphs are refused */
/* What an edge of unknown RTT weighs when paths are ordered (1 s). */
#define HW_RF_RTT_UNKNOWN_US 1000000u
/* Inner searches (each O(nodes + edges) at most) one call may run. Up to
 * HW_RF_SURE_SEARCHES are always allowed: k paths with min_hops 1 never
 * need more than 1 + (k - 1) * max_hops. Beyond that, searches are only
 * needed to step over paths shorter than min_hops, and they go on while
 * fewer than HW_RF_MAX_WORK adjacency slots have been scanned in all,
 * up to HW_RF_MAX_SEARCHES. */
#define HW_RF_SURE_SEARCHES (1 + (HW_RF_MAX_K - 1) * HW_RF_MAX_HOPS)
#define HW_RF_MAX_SEARCHES 4096
#define HW_RF_MAX_WORK (1u << 24)

/* One transport. Self-loops (a == b) are ignored. */
struct hw_rf_edge {
	uint8_t id[16];       /* transport ID */
	uint8_t a[32], b[32]; /* the two visors' public keys */
	uint32_t rtt_us;      /* 0: not known */
	char type[64];        /* "tcp", "relay"; not used by the search */
};

struct hw_rf_hop {
	size_t edge; /* index into the caller's edge array */
	int forward; /* 1: a->b, 0: b->a */
};

struct hw_rf_path {
	struct hw_rf_hop hops[HW_RF_MAX_HOPS]; /* hops[0] leaves src */
	unsigned nhops;
	uint64_t rtt_us; /* sum of the edges' RTTs when rtt_known, else 0 */
	int rtt_known;   /* 0 when any edge's RTT is unknown */
};

/* Finds up to k simple paths (no visor twice) from src to dst with
 * min_hops <= hops <= max_hops, best first in the order above, into out
 * (room for k paths) and sets *npaths. edges (nedges of them) are only read
 * and need not outlive the call. Temporary memory is linear in nodes and
 * edges and freed before return; there is no shared state, so calls may
 * run in several threads at once.
 *
 * The paths returned are always the first *npaths of the full ordered
 * answer. *npaths < k means no further path exists, except that with
 * min_hops > 1 the search bound can end the search early when very many
 * shorter paths have to be stepped over (hundreds on a large graph,
 * thousands on a small one).
 *
 * Returns 0 (also when src or dst is in no edge: *npaths = 0); -EINVAL
 * for a NULL pointer, src == dst, k or a hop bound out of range, or
 * min_hops > max_hops; -E2BIG when nedges > HW_RF_MAX_EDGES; -ENOMEM;
 * HW_ECRYPTO when libsodium cannot start (no random seed for hashing).
 * On error *npaths is 0 (when npaths is not NULL). */
int hw_rf_find(const struct hw_rf_edge *edges, size_t nedges,
	       const uint8_t src[32], const uint8_t dst[32], unsigned k,
	       unsigned min_hops, unsigned max_hops, struct hw_rf_path *out,
	       unsigned *npaths);

#endif
