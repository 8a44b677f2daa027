/* Route finder figures: hw_rf_find (k = 3, hops 1..8) queries per second
 * on random transport graphs of 1,000 and 10,000 visors with average
 * degree 4, beside two baselines measured in the same run on the same
 * graphs and query pairs: one plain breadth-first shortest path over an
 * adjacency list built once (the search alone), and the same search with
 * the adjacency built from the edge list on every query, as hw_rf_find
 * must (it is handed the current transport list each time). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "discovery/routefind.h"
#include "util/err.h"

#define SECONDS 1.0
#define NPAIRS 1024
#define K 3
#define MAX_HOPS 8

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rnd() >> 32);
}

struct graph {
	unsigned nnodes;
	size_t nedges;
	uint8_t (*keys)[32];
	struct hw_rf_edge *edges;
	unsigned (*pairs)[2];
};

/* nnodes visors, 2 * nnodes transports between random pairs (average
 * degree 4), RTTs 1..100 ms with one in ten unknown. */
static void graph_make(struct graph *g, unsigned nnodes)
{
	g->nnodes = nnodes;
	g->nedges = 2 * (size_t)nnodes;
	g->keys = malloc(nnodes * sizeof(*g->keys));
	g->edges = calloc(g->nedges, sizeof(*g->edges));
	g->pairs = malloc(NPAIRS * sizeof(*g->pairs));
	if (!g->keys || !g->edges || !g->pairs) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	fill(&g->keys[0][0], nnodes * sizeof(*g->keys));
	for (size_t i = 0; i < g->nedges; i++) {
		struct hw_rf_edge *e = &g->edges[i];
		unsigned a = (unsigned)(rnd() % nnodes), b;

		do
			b = (unsigned)(rnd() % nnodes);
		while (b == a);
		fill(e->id, sizeof(e->id));
		memcpy(e->a, g->keys[a], 32);
		memcpy(e->b, g->keys[b], 32);
		e->rtt_us = rnd() % 10 ? 1000 + (uint32_t)(rnd() % 99000) : 0;
		strcpy(e->type, rnd() % 4 ? "tcp" : "relay");
	}
	for (unsigned i = 0; i < NPAIRS; i++) {
		g->pairs[i][0] = (unsigned)(rnd() % nnodes);
		do
			g->pairs[i][1] = (unsigned)(rnd() % nnodes);
		while (g->pairs[i][1] == g->pairs[i][0]);
	}
}

static void graph_free(struct graph *g)
{
	free(g->keys);
	free(g->edges);
	free(g->pairs);
}

/* The baseline: a textbook breadth-first search over compressed rows,
 * with keys mapped to nodes by open addressing on their first bytes (the
 * bench's keys are random). */
struct adj {
	unsigned *slot;      /* node + 1, 0: empty */
	const uint8_t **key; /* key of each node */
	size_t mask;
	unsigned n;
	unsigned *ends, *off, *node, *dist, *queue;
};

static unsigned key_node(struct adj *a, const uint8_t k[32], int add)
{
	uint64_t h;

	memcpy(&h, k, 8);
	for (size_t i = h & a->mask;; i = (i + 1) & a->mask) {
		if (!a->slot[i]) {
			if (!add)
				return ~0u;
			a->key[a->n] = k;
			a->slot[i] = ++a->n;
			return a->n - 1;
		}
		if (!memcmp(a->key[a->slot[i] - 1], k, 32))
			return a->slot[i] - 1;
	}
}

static void adj_init(struct adj *a, const struct graph *g)
{
	size_t cap = 1;

	while (cap < 4 * (size_t)g->nnodes)
		cap *= 2;
	a->mask = cap - 1;
	a->slot = malloc(cap * sizeof(*a->slot));
	a->key = malloc(g->nnodes * sizeof(*a->key));
	a->ends = malloc(2 * g->nedges * sizeof(*a->ends));
	a->off = malloc((g->nnodes + 1) * sizeof(*a->off));
	a->node = malloc(2 * g->nedges * sizeof(*a->node));
	a->dist = malloc(g->nnodes * sizeof(*a->dist));
	a->queue = malloc(g->nnodes * sizeof(*a->queue));
	if (!a->slot || !a->key || !a->ends || !a->off || !a->node ||
	    !a->dist || !a->queue) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
}

static void adj_free(struct adj *a)
{
	free(a->slot);
	free(a->key);
	free(a->ends);
	free(a->off);
	free(a->node);
	free(a->dist);
	free(a->queue);
}

/* Indexes g's edge list: keys to nodes, then adjacency rows. */
static void adj_build(struct adj *a, const struct graph *g)
{
	memset(a->slot, 0, (a->mask + 1) * sizeof(*a->slot));
	a->n = 0;
	for (size_t i = 0; i < g->nedges; i++) {
		a->ends[2 * i] = key_node(a, g->edges[i].a, 1);
		a->ends[2 * i + 1] = key_node(a, g->edges[i].b, 1);
	}
	memset(a->off, 0, (a->n + 1) * sizeof(*a->off));
	for (size_t i = 0; i < 2 * g->nedges; i++)
		a->off[a->ends[i] + 1]++;
	for (unsigned v = 0; v < a->n; v++)
		a->off[v + 1] += a->off[v];
	for (size_t i = 0; i < g->nedges; i++) {
		unsigned x = a->ends[2 * i], y = a->ends[2 * i + 1];

		a->node[a->off[x]++] = y;
		a->node[a->off[y]++] = x;
	}
	for (unsigned v = a->n; v > 0; v--)
		a->off[v] = a->off[v - 1];
	a->off[0] = 0;
}

/* Hops from s to t, or -1. */
static int bfs(const struct adj *a, unsigned s, unsigned t)
{
	unsigned head = 0, tail = 0;

	if (s == ~0u || t == ~0u)
		return -1;
	memset(a->dist, 0xff, a->n * sizeof(*a->dist));
	a->dist[s] = 0;
	a->queue[tail++] = s;
	while (head < tail) {
		unsigned u = a->queue[head++];

		if (u == t)
			return (int)a->dist[u];
		for (unsigned j = a->off[u]; j < a->off[u + 1]; j++) {
			unsigned v = a->node[j];

			if (a->dist[v] == ~0u) {
				a->dist[v] = a->dist[u] + 1;
				a->queue[tail++] = v;
			}
		}
	}
	return -1;
}

static void run(unsigned nnodes)
{
	struct graph g;
	struct adj a;
	struct hw_rf_path paths[K];
	unsigned (*np)[2] = malloc(NPAIRS * sizeof(*np));
	size_t q, found = 0, reached = 0, connected = 0, mismatch = 0;
	double t0, t, rf_qps, bfs_qps, build_qps;
	unsigned n;
	int rc, d;

	if (!np) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	graph_make(&g, nnodes);
	adj_init(&a, &g);

	q = 0;
	t0 = now();
	do {
		for (int i = 0; i < 16; i++, q++) {
			const unsigned *p = g.pairs[q % NPAIRS];

			rc = hw_rf_find(g.edges, g.nedges, g.keys[p[0]],
					g.keys[p[1]], K, 1, MAX_HOPS, paths,
					&n);
			if (rc) {
				fprintf(stderr, "hw_rf_find: %s\n",
					hw_strerror(rc));
				exit(1);
			}
			found += n;
		}
		t = now() - t0;
	} while (t < SECONDS);
	rf_qps = (double)q / t;
	printf("visors %u, transports %zu: hw_rf_find k=%d hops 1..%d "
	       "%.0f queries/s (%.0f us each; %.2f paths/query)\n",
	       nnodes, g.nedges, K, MAX_HOPS, rf_qps, 1e6 / rf_qps,
	       (double)found / (double)q);

	/* Search alone: index once, look the pairs up outside the timing. */
	adj_build(&a, &g);
	for (unsigned i = 0; i < NPAIRS; i++)
		for (int j = 0; j < 2; j++)
			np[i][j] = key_node(&a, g.keys[g.pairs[i][j]], 0);
	q = 0;
	t0 = now();
	do {
		for (int i = 0; i < 256; i++, q++) {
			const unsigned *p = np[q % NPAIRS];

			reached += bfs(&a, p[0], p[1]) >= 0;
		}
		t = now() - t0;
	} while (t < SECONDS);
	bfs_qps = (double)q / t;

	/* Index and search per query, as hw_rf_find has to. */
	q = 0;
	t0 = now();
	do {
		for (int i = 0; i < 16; i++, q++) {
			const unsigned *p = g.pairs[q % NPAIRS];

			adj_build(&a, &g);
			d = bfs(&a, key_node(&a, g.keys[p[0]], 0),
				key_node(&a, g.keys[p[1]], 0));
			reached += d >= 0;
		}
		t = now() - t0;
	} while (t < SECONDS);
	build_qps = (double)q / t;
	if (!reached)
		printf("  (no pair connected)\n");

	/* Ratio: the time of one hw_rf_find query in baseline queries. */
	printf("  baseline BFS shortest path, index prebuilt:    %.0f "
	       "queries/s; ratio hw_rf_find/BFS time %.1fx\n",
	       bfs_qps, bfs_qps / rf_qps);
	printf("  baseline BFS shortest path, indexed per query: %.0f "
	       "queries/s; ratio hw_rf_find/BFS time %.2fx\n",
	       build_qps, build_qps / rf_qps);
	/* Cross-check, untimed: hw_rf_find's first path is a shortest one. */
	adj_build(&a, &g);
	for (unsigned i = 0; i < NPAIRS; i++) {
		const unsigned *p = g.pairs[i];

		d = bfs(&a, np[i][0], np[i][1]);
		rc = hw_rf_find(g.edges, g.nedges, g.keys[p[0]], g.keys[p[1]],
				K, 1, MAX_HOPS, paths, &n);
		if (rc || (d >= 0 && d <= MAX_HOPS) != (n > 0) ||
		    (n && paths[0].nhops != (unsigned)d))
			mismatch++;
		else if (n)
			connected++;
	}
	printf("  cross-check on %d pairs: %zu connected within %d hops, "
	       "%zu mismatches with BFS\n",
	       NPAIRS, connected, MAX_HOPS, mismatch);

	free(np);
	adj_free(&a);
	graph_free(&g);
}

int main(void)
{
	run(1000);
	run(10000);
	return 0;
}
