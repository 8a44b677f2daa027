#include "discovery/routefind.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

#define NONE UINT32_MAX
/* Every inner search adds at most one candidate. */
#define MAX_PATHS HW_RF_MAX_SEARCHES

struct rpath {
	struct hw_rf_path p;
	uint32_t nodes[HW_RF_MAX_HOPS + 1]; /* nodes[0] = src */
	uint64_t cost; /* RTT sum with unknown edges at the penalty */
	/* Hop at which this path left the one it was spurred from: spurs
	 * before it were already searched from that parent (Lawler). */
	unsigned dev;
};

struct graph {
	const struct hw_rf_edge *edges;
	size_t nedges;
	uint32_t nnodes;
	uint32_t *ea, *eb; /* node of each end; NONE for a self-loop */
	uint32_t *adj_off; /* nnodes + 1: node v's slots in adj_* */
	uint32_t *adj_edge, *adj_node;
	/* Search state. Arrays of stamps are valid for the current search
	 * or block set when equal to stamp, so nothing is cleared between
	 * the up to HW_RF_MAX_SEARCHES searches of one call. */
	uint32_t stamp;
	uint32_t *seen, *node_blocked, *edge_blocked;
	uint32_t *near_t; /* a neighbour of t over an unblocked edge */
	/* Hops from each node to t with nothing blocked (0xff: more than
	 * max_hops), a lower bound that keeps searches off nodes too far
	 * from t to matter. */
	uint8_t *dist_t;
	uint8_t *depth;
	uint64_t *cost;
	uint32_t *pred_node, *pred_edge;
	uint32_t *queue;
	uint64_t work; /* adjacency slots scanned, for the budget */
};

/* Keys come from signed but self-chosen entries, so the table hashes with
 * a vector multiply-add-shift function (Dietzfelbinger's universal family
 * over 32-bit words) drawn at random for each call: no set of keys is bad
 * for more than a small fraction of draws, and the draw is never
 * revealed. Slots keep the hash's top 32 bits, which place the slot at
 * any size up to 2^32 and spare most key comparisons. */
struct nodeslot {
	uint32_t node; /* node index + 1, 0: empty */
	uint32_t tag;  /* top 32 bits of the key's hash */
};

struct nodemap {
	uint64_t seed[9];
	unsigned bits;
	struct nodeslot *slot;
	/* Each node's key, copied: denser than the edges, fewer misses. */
	uint8_t (*key)[32];
	uint32_t n, keycap;
};

static uint32_t key_tag(const struct nodemap *m, const uint8_t k[32])
{
	uint64_t h = m->seed[8];

	for (int i = 0; i < 8; i++) {
		uint32_t w;

		memcpy(&w, k + 4 * i, 4);
		h += m->seed[i] * w;
	}
	return (uint32_t)(h >> 32);
}

/* Node of key k, or NONE; with add, k becomes a new node if it is none.
 * The table is kept at most half full, so probing ends. */
static uint32_t node_get(struct nodemap *m, const uint8_t k[32], int add)
{
	uint32_t tag = key_tag(m, k), mask = (uint32_t)((1ull << m->bits) - 1);

	for (uint32_t i = tag >> (32 - m->bits);; i = (i + 1) & mask) {
		struct nodeslot *sl = &m->slot[i];

		if (!sl->node) {
			if (!add)
				return NONE;
			memcpy(m->key[m->n], k, 32);
			sl->node = ++m->n;
			sl->tag = tag;
			return m->n - 1;
		}
		if (sl->tag == tag && !memcmp(m->key[sl->node - 1], k, 32))
			return sl->node - 1;
	}
}

/* Makes room for two more nodes. */
static int nodemap_reserve(struct nodemap *m)
{
	unsigned bits = m->bits + 1;
	uint32_t mask = (uint32_t)((1ull << bits) - 1);
	struct nodeslot *ns;

	if (m->n + 2 > m->keycap) {
		uint32_t cap = 2 * m->keycap;
		uint8_t(*k)[32] = realloc(m->key, (size_t)cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		m->key = k;
		m->keycap = cap;
	}
	if (2 * ((size_t)m->n + 2) <= ((size_t)1 << m->bits))
		return 0;
	if (!(ns = calloc((size_t)1 << bits, sizeof(*ns))))
		return -ENOMEM;
	for (size_t j = 0; j < ((size_t)1 << m->bits); j++) {
		uint32_t i;

		if (!m->slot[j].node)
			continue;
		for (i = m->slot[j].tag >> (32 - bits); ns[i].node;
		     i = (i + 1) & mask)
			;
		ns[i] = m->slot[j];
	}
	free(m->slot);
	m->slot = ns;
	m->bits = bits;
	return 0;
}

static uint64_t edge_weight(const struct graph *g, uint32_t e)
{
	uint32_t rtt = g->edges[e].rtt_us;

	return rtt ? rtt : HW_RF_RTT_UNKNOWN_US;
}

static int edge_cmp(const struct graph *g, size_t e1, size_t e2)
{
	int c;

	if (e1 == e2)
		return 0;
	if ((c = memcmp(g->edges[e1].id, g->edges[e2].id, 16)))
		return c;
	return e1 < e2 ? -1 : 1;
}

/* Orders the edge-ID sequences of (path to u1) + e1 and (path to u2) + e2
 * for u1 and u2 settled at the same depth. Walking back to where the two
 * chains meet, the difference nearest the start decides. */
static int seq_cmp(const struct graph *g, uint32_t u1, uint32_t e1,
		   uint32_t u2, uint32_t e2)
{
	int c = edge_cmp(g, e1, e2);

	while (u1 != u2) {
		int d = edge_cmp(g, g->pred_edge[u1], g->pred_edge[u2]);

		if (d)
			c = d;
		u1 = g->pred_node[u1];
		u2 = g->pred_node[u2];
	}
	return c;
}

/* The best path from s to t with at most limit hops avoiding blocked nodes
 * and edges (stamped g->stamp), into hops/nodes (nodes[0] = s) and *cost.
 * Hops are the primary order, so layer by layer breadth-first search is
 * Dijkstra here: a node's label is final once the layer before it is done,
 * and it keeps the predecessor with the lowest cost, then the lowest ID
 * sequence. t's own layer is never expanded: t's neighbours are marked
 * first, and as soon as a layer holds one, t's label is taken from its
 * own adjacency, so the widest layer costs deg(t) instead of a full
 * scan; and a node whose distance to t cannot fit in limit is never
 * labelled. Returns the hop count, 0 when there is no path. */
static unsigned search(struct graph *g, uint32_t s, uint32_t t,
		       unsigned limit, struct hw_rf_hop *hops, uint32_t *nodes,
		       uint64_t *cost)
{
	uint32_t st = g->stamp, head = 0, tail = 0, v, bw = NONE, be = NONE;
	uint64_t bc = 0;
	unsigned d = 0, n;
	int found;

	if (g->dist_t[s] > limit)
		return 0;
	g->work += 1 + g->adj_off[t + 1] - g->adj_off[t];
	for (uint32_t j = g->adj_off[t]; j < g->adj_off[t + 1]; j++)
		if (g->edge_blocked[g->adj_edge[j]] != st)
			g->near_t[g->adj_node[j]] = st;
	g->seen[s] = st;
	g->depth[s] = 0;
	g->cost[s] = 0;
	g->pred_node[s] = g->pred_edge[s] = NONE;
	g->queue[tail++] = s;
	found = g->near_t[s] == st;
	/* Expanding layer d makes layer d + 1, worth it only if t can still
	 * follow within limit. */
	while (!found && d + 1 < limit && head < tail) {
		uint32_t layer_end = tail;

		for (; head < layer_end; head++) {
			uint32_t u = g->queue[head];

			g->work += 1 + g->adj_off[u + 1] - g->adj_off[u];
			for (uint32_t j = g->adj_off[u]; j < g->adj_off[u + 1];
			     j++) {
				uint32_t e = g->adj_edge[j];
				uint64_t c;

				v = g->adj_node[j];
				if (v == t || g->edge_blocked[e] == st ||
				    g->node_blocked[v] == st ||
				    d + 1 + g->dist_t[v] > limit)
					continue;
				c = g->cost[u] + edge_weight(g, e);
				if (g->seen[v] != st) {
					g->seen[v] = st;
					g->depth[v] = (uint8_t)(d + 1);
					g->cost[v] = c;
					g->pred_node[v] = u;
					g->pred_edge[v] = e;
					g->queue[tail++] = v;
					if (g->near_t[v] == st)
						found = 1;
					continue;
				}
				if (g->depth[v] != d + 1)
					continue;
				if (c < g->cost[v] ||
				    (c == g->cost[v] &&
				     seq_cmp(g, u, e, g->pred_node[v],
					     g->pred_edge[v]) < 0)) {
					g->cost[v] = c;
					g->pred_node[v] = u;
					g->pred_edge[v] = e;
				}
			}
		}
		d++;
	}
	if (!found)
		return 0;
	/* Layer d is final and touches t: pick t's predecessor there. */
	g->work += 1 + g->adj_off[t + 1] - g->adj_off[t];
	for (uint32_t j = g->adj_off[t]; j < g->adj_off[t + 1]; j++) {
		uint32_t e = g->adj_edge[j], w = g->adj_node[j];
		uint64_t c;

		if (g->edge_blocked[e] == st || g->node_blocked[w] == st ||
		    g->seen[w] != st || g->depth[w] != d)
			continue;
		c = g->cost[w] + edge_weight(g, e);
		if (bw == NONE || c < bc ||
		    (c == bc && seq_cmp(g, w, e, bw, be) < 0)) {
			bw = w;
			be = e;
			bc = c;
		}
	}
	n = d + 1;
	*cost = bc;
	hops[d].edge = be;
	hops[d].forward = g->ea[be] == bw;
	nodes[n] = t;
	v = bw;
	for (unsigned i = d; i-- > 0;) {
		uint32_t e = g->pred_edge[v], u = g->pred_node[v];

		hops[i].edge = e;
		hops[i].forward = g->ea[e] == u;
		nodes[i + 1] = v;
		v = u;
	}
	nodes[0] = s;
	return n;
}

/* Fills dist_t by breadth-first search from t, up to max_hops. */
static void dist_to_t(struct graph *g, uint32_t t, unsigned max_hops)
{
	uint32_t head = 0, tail = 0;

	memset(g->dist_t, 0xff, g->nnodes);
	g->dist_t[t] = 0;
	g->queue[tail++] = t;
	while (head < tail) {
		uint32_t u = g->queue[head++];

		if (g->dist_t[u] == max_hops)
			break;
		g->work += 1 + g->adj_off[u + 1] - g->adj_off[u];
		for (uint32_t j = g->adj_off[u]; j < g->adj_off[u + 1]; j++) {
			uint32_t v = g->adj_node[j];

			if (g->dist_t[v] == 0xff) {
				g->dist_t[v] = (uint8_t)(g->dist_t[u] + 1);
				g->queue[tail++] = v;
			}
		}
	}
}

static int path_cmp(const struct graph *g, const struct rpath *p,
		    const struct rpath *q)
{
	int c;

	if (p->p.nhops != q->p.nhops)
		return p->p.nhops < q->p.nhops ? -1 : 1;
	if (p->cost != q->cost)
		return p->cost < q->cost ? -1 : 1;
	for (unsigned i = 0; i < p->p.nhops; i++)
		if ((c = edge_cmp(g, p->p.hops[i].edge, q->p.hops[i].edge)))
			return c;
	return 0;
}

static void path_finish_rtt(const struct graph *g, struct hw_rf_path *p)
{
	/* Slots past nhops may hold an abandoned candidate's hops. */
	memset(p->hops + p->nhops, 0,
	       (HW_RF_MAX_HOPS - p->nhops) * sizeof(p->hops[0]));
	p->rtt_us = 0;
	p->rtt_known = 1;
	for (unsigned i = 0; i < p->nhops; i++) {
		uint32_t rtt = g->edges[p->hops[i].edge].rtt_us;

		if (!rtt)
			p->rtt_known = 0;
		p->rtt_us += rtt;
	}
	if (!p->rtt_known)
		p->rtt_us = 0;
}

static int graph_build(struct graph *g, const struct hw_rf_edge *edges,
		       size_t nedges, const uint8_t *src, const uint8_t *dst,
		       uint32_t *s, uint32_t *t)
{
	struct nodemap m = {0};
	uint32_t n;
	int rc = -ENOMEM;

	g->edges = edges;
	g->nedges = nedges;
	/* Sized for the usual degree of 4 or more (nodes <= nedges / 2),
	 * grown when the graph is sparser. */
	m.bits = 4;
	while (((size_t)1 << m.bits) < nedges)
		m.bits++;
	m.keycap = 1u << (m.bits - 1);
	randombytes_buf(m.seed, sizeof(m.seed));
	if (!(m.slot = calloc((size_t)1 << m.bits, sizeof(*m.slot))) ||
	    !(m.key = malloc(m.keycap * sizeof(*m.key))) ||
	    !(g->ea = malloc(nedges * sizeof(*g->ea))) ||
	    !(g->eb = malloc(nedges * sizeof(*g->eb))))
		goto out;
	for (size_t i = 0; i < nedges; i++) {
		if (!memcmp(edges[i].a, edges[i].b, 32)) {
			g->ea[i] = g->eb[i] = NONE;
			continue;
		}
		if (nodemap_reserve(&m))
			goto out;
		g->ea[i] = node_get(&m, edges[i].a, 1);
		g->eb[i] = node_get(&m, edges[i].b, 1);
	}
	n = g->nnodes = m.n;
	*s = node_get(&m, src, 0);
	*t = node_get(&m, dst, 0);

	if (!(g->adj_off = calloc((size_t)n + 1, sizeof(*g->adj_off))) ||
	    !(g->adj_edge = malloc(2 * nedges * sizeof(*g->adj_edge))) ||
	    !(g->adj_node = malloc(2 * nedges * sizeof(*g->adj_node))) ||
	    !(g->edge_blocked = calloc(nedges, sizeof(*g->edge_blocked))) ||
	    !(g->seen = calloc(n, sizeof(*g->seen))) ||
	    !(g->node_blocked = calloc(n, sizeof(*g->node_blocked))) ||
	    !(g->near_t = calloc(n, sizeof(*g->near_t))) ||
	    !(g->depth = malloc(n * sizeof(*g->depth))) ||
	    !(g->dist_t = malloc(n * sizeof(*g->dist_t))) ||
	    !(g->cost = malloc(n * sizeof(*g->cost))) ||
	    !(g->pred_node = malloc(n * sizeof(*g->pred_node))) ||
	    !(g->pred_edge = malloc(n * sizeof(*g->pred_edge))) ||
	    !(g->queue = malloc(n * sizeof(*g->queue))))
		goto out;
	/* Adjacency in compressed rows, each in edge order. */
	for (size_t i = 0; i < nedges; i++) {
		if (g->ea[i] == NONE)
			continue;
		g->adj_off[g->ea[i] + 1]++;
		g->adj_off[g->eb[i] + 1]++;
	}
	for (uint32_t v = 0; v < n; v++)
		g->adj_off[v + 1] += g->adj_off[v];
	for (size_t i = 0; i < nedges; i++) {
		uint32_t a = g->ea[i], b = g->eb[i];

		if (a == NONE)
			continue;
		/* adj_off[v] runs ahead as v's slots fill, and is shifted
		 * back below. */
		g->adj_edge[g->adj_off[a]] = (uint32_t)i;
		g->adj_node[g->adj_off[a]++] = b;
		g->adj_edge[g->adj_off[b]] = (uint32_t)i;
		g->adj_node[g->adj_off[b]++] = a;
	}
	for (uint32_t v = n; v > 0; v--)
		g->adj_off[v] = g->adj_off[v - 1];
	g->adj_off[0] = 0;
	rc = 0;
out:
	free(m.slot);
	free(m.key);
	return rc;
}

static void graph_release(struct graph *g)
{
	free(g->ea);
	free(g->eb);
	free(g->adj_off);
	free(g->adj_edge);
	free(g->adj_node);
	free(g->edge_blocked);
	free(g->seen);
	free(g->node_blocked);
	free(g->near_t);
	free(g->depth);
	free(g->dist_t);
	free(g->cost);
	free(g->pred_node);
	free(g->pred_edge);
	free(g->queue);
}

struct yen {
	struct graph *g;
	struct rpath *pool; /* every path found; A and B index it */
	unsigned npool, cap;
	uint32_t *A;        /* accepted, in order */
	uint32_t *B;        /* candidates, sorted best last */
	unsigned na, nb;
	unsigned nsearch;
	uint32_t dst;
	unsigned k, nout, min_hops, max_hops;
};

/* Searches enough for any answer with min_hops 1 are always allowed; more,
 * to step over paths shorter than min_hops, only while the adjacency
 * scanned stays small, so a small graph gets many and a huge one few. */
static int may_search(const struct yen *y)
{
	if (y->nsearch < HW_RF_SURE_SEARCHES)
		return 1;
	return y->nsearch < HW_RF_MAX_SEARCHES && y->g->work < HW_RF_MAX_WORK;
}

static int pool_reserve(struct yen *y)
{
	struct rpath *p;
	unsigned cap;

	if (y->npool < y->cap)
		return 0;
	cap = y->cap ? 2 * y->cap : 32;
	if (cap > MAX_PATHS)
		cap = MAX_PATHS;
	if (y->npool >= cap)
		return -ENOMEM; /* not reached: searches bound the paths */
	if (!(p = realloc(y->pool, cap * sizeof(*p))))
		return -ENOMEM;
	y->pool = p;
	y->cap = cap;
	return 0;
}

/* Adds pool[npool] to the candidates unless it is one already. */
static void candidate_add(struct yen *y)
{
	const struct rpath *c = &y->pool[y->npool];
	unsigned lo = 0, hi = y->nb;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int cmp = path_cmp(y->g, c, &y->pool[y->B[mid]]);

		if (!cmp)
			return;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(y->B + lo + 1, y->B + lo, (y->nb - lo) * sizeof(y->B[0]));
	y->B[lo] = y->npool++;
	y->nb++;
}

/* The most hops a new path can have and still be answered: when the
 * candidates already hold the k - nout answers still wanted, a path ranked
 * after the last of them is never returned, and neither is anything that
 * deviates from it (deviations rank after the path they leave). Since
 * hops order first, the spur searches can stop at its hop count. */
static unsigned hop_cap(const struct yen *y)
{
	unsigned want = y->k - y->nout, have = 0;

	for (unsigned j = y->nb; j-- > 0;) {
		const struct rpath *c = &y->pool[y->B[j]];

		if (c->p.nhops >= y->min_hops && ++have == want)
			return c->p.nhops;
	}
	return y->max_hops;
}

/* Searches the spurs of the last accepted path from the hop where it left
 * its parent on (Yen's inner loop, with Lawler's saving) and adds each
 * deviation to the candidates. Returns 0, 1 when the search budget ran
 * out, -ENOMEM. */
static int spur_all(struct yen *y)
{
	struct graph *g = y->g;
	/* An index, not a pointer: pool_reserve may move the pool. */
	uint32_t ai = y->A[y->na - 1];
	uint64_t root_cost = 0;
	unsigned dev = y->pool[ai].dev, nhops = y->pool[ai].p.nhops;
	int rc;

	for (unsigned i = 0; i < dev; i++)
		root_cost +=
			edge_weight(g, (uint32_t)y->pool[ai].p.hops[i].edge);
	for (unsigned i = dev; i < nhops; i++) {
		const struct rpath *a;
		struct rpath *c;
		uint64_t spur_cost;
		unsigned n, j, cap = hop_cap(y);

		if (cap <= i)
			break;
		if (!may_search(y))
			return 1;
		if ((rc = pool_reserve(y)))
			return rc;
		a = &y->pool[ai];
		c = &y->pool[y->npool];
		y->nsearch++;
		g->stamp++;
		/* The root's nodes are out, and so is the next edge of every
		 * accepted path that shares this root. */
		for (j = 0; j < i; j++)
			g->node_blocked[a->nodes[j]] = g->stamp;
		for (unsigned x = 0; x < y->na; x++) {
			const struct rpath *q = &y->pool[y->A[x]];

			if (q->p.nhops <= i)
				continue;
			for (j = 0; j < i; j++)
				if (q->p.hops[j].edge != a->p.hops[j].edge)
					break;
			if (j == i)
				g->edge_blocked[q->p.hops[i].edge] = g->stamp;
		}
		n = search(g, a->nodes[i], y->dst, cap - i,
			   c->p.hops + i, c->nodes + i, &spur_cost);
		if (n) {
			memcpy(c->p.hops, a->p.hops, i * sizeof(c->p.hops[0]));
			memcpy(c->nodes, a->nodes, i * sizeof(c->nodes[0]));
			c->p.nhops = i + n;
			c->cost = root_cost + spur_cost;
			c->dev = i;
			candidate_add(y);
		}
		root_cost += edge_weight(g, (uint32_t)a->p.hops[i].edge);
	}
	return 0;
}

int hw_rf_find(const struct hw_rf_edge *edges, size_t nedges,
	       const uint8_t src[32], const uint8_t dst[32], unsigned k,
	       unsigned min_hops, unsigned max_hops, struct hw_rf_path *out,
	       unsigned *npaths)
{
	struct graph g = {0};
	struct yen y = {0};
	unsigned nout = 0;
	uint32_t s = NONE, t = NONE;
	int rc = -EINVAL;

	if (npaths)
		*npaths = 0;
	if ((!edges && nedges) || !src || !dst || !out || !npaths ||
	    !memcmp(src, dst, 32) || k < 1 || k > HW_RF_MAX_K ||
	    min_hops < 1 || max_hops > HW_RF_MAX_HOPS || min_hops > max_hops)
		goto out;
	rc = -E2BIG;
	if (nedges > HW_RF_MAX_EDGES)
		goto out;
	rc = 0;
	if (!nedges)
		goto out;
	rc = HW_ECRYPTO;
	if (sodium_init() < 0)
		goto out;
	if ((rc = graph_build(&g, edges, nedges, src, dst, &s, &t)))
		goto out;
	if (s == NONE || t == NONE)
		goto out;
	y.g = &g;
	y.dst = t;
	y.k = k;
	y.min_hops = min_hops;
	y.max_hops = max_hops;
	rc = -ENOMEM;
	if (!(y.A = malloc(MAX_PATHS * sizeof(*y.A))) ||
	    !(y.B = malloc(MAX_PATHS * sizeof(*y.B))))
		goto out;
	if ((rc = pool_reserve(&y)))
		goto out;

	dist_to_t(&g, t, max_hops);
	g.stamp++;
	y.nsearch++;
	y.pool[0].p.nhops = search(&g, s, t, max_hops, y.pool[0].p.hops,
				   y.pool[0].nodes, &y.pool[0].cost);
	if (!y.pool[0].p.nhops)
		goto out;
	y.pool[0].dev = 0;
	candidate_add(&y);
	/* Paths leave the candidates in order; those too short for min_hops
	 * are not answers but still seed further deviations. */
	while (y.nb && nout < k) {
		const struct rpath *a;

		y.A[y.na++] = y.B[--y.nb];
		a = &y.pool[y.A[y.na - 1]];
		if (a->p.nhops >= min_hops) {
			out[nout] = a->p;
			path_finish_rtt(&g, &out[nout]);
			y.nout = ++nout;
			if (nout == k)
				break;
		}
		if ((rc = spur_all(&y)) < 0)
			goto out;
		if (rc)
			break;
	}
	rc = 0;
	*npaths = nout;
out:
	graph_release(&g);
	free(y.pool);
	free(y.A);
	free(y.B);
	return rc;
}
