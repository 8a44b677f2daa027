#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "discovery/routefind.h"
#include "util/err.h"
#include "hwtest.h"

/* Node n's key: n in the first bytes, a pattern after, so keys differ in
 * more than the bytes the hash table might look at first. */
static void key(unsigned n, uint8_t k[32])
{
	for (int i = 0; i < 32; i++)
		k[i] = (uint8_t)(0xa5 ^ (i * 7));
	k[0] = (uint8_t)(n >> 24);
	k[1] = (uint8_t)(n >> 16);
	k[2] = (uint8_t)(n >> 8);
	k[3] = (uint8_t)n;
}

/* Edge id orders bytewise like the integer. */
static void edge(struct hw_rf_edge *e, unsigned id, unsigned a, unsigned b,
		 uint32_t rtt)
{
	memset(e, 0, sizeof(*e));
	e->id[12] = (uint8_t)(id >> 24);
	e->id[13] = (uint8_t)(id >> 16);
	e->id[14] = (uint8_t)(id >> 8);
	e->id[15] = (uint8_t)id;
	key(a, e->a);
	key(b, e->b);
	e->rtt_us = rtt;
	strcpy(e->type, "tcp");
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* One reproducible sequence for the whole run. */
static uint64_t rnd(void)
{
	return hw_test_xorshift(&rng_state);
}

static int find(const struct hw_rf_edge *e, size_t n, unsigned src,
		unsigned dst, unsigned k, unsigned minh, unsigned maxh,
		struct hw_rf_path *out, unsigned *np)
{
	uint8_t s[32], d[32];

	key(src, s);
	key(dst, d);
	return hw_rf_find(e, n, s, d, k, minh, maxh, out, np);
}

static uint64_t weight(const struct hw_rf_edge *e)
{
	return e->rtt_us ? e->rtt_us : HW_RF_RTT_UNKNOWN_US;
}

static uint64_t path_cost(const struct hw_rf_edge *e,
			  const struct hw_rf_path *p)
{
	uint64_t c = 0;

	for (unsigned i = 0; i < p->nhops; i++)
		c += weight(&e[p->hops[i].edge]);
	return c;
}

/* The documented order: hops, penalised RTT, ID sequence, index sequence. */
static int path_cmp(const struct hw_rf_edge *e, const struct hw_rf_path *p,
		    const struct hw_rf_path *q)
{
	uint64_t cp = path_cost(e, p), cq = path_cost(e, q);

	if (p->nhops != q->nhops)
		return p->nhops < q->nhops ? -1 : 1;
	if (cp != cq)
		return cp < cq ? -1 : 1;
	for (unsigned i = 0; i < p->nhops; i++) {
		size_t a = p->hops[i].edge, b = q->hops[i].edge;
		int c = memcmp(e[a].id, e[b].id, 16);

		if (c)
			return c;
		if (a != b)
			return a < b ? -1 : 1;
	}
	return 0;
}

/* Checks p is a simple path src -> dst inside the hop bounds, with the
 * directions and RTT it claims. */
static void check_path(const struct hw_rf_edge *e, size_t ne, unsigned src,
		       unsigned dst, unsigned minh, unsigned maxh,
		       const struct hw_rf_path *p)
{
	uint8_t seen[HW_RF_MAX_HOPS + 1][32], cur[32], d[32];
	uint64_t rtt = 0;
	int known = 1;

	assert_true(p->nhops >= minh && p->nhops <= maxh);
	key(src, cur);
	key(dst, d);
	memcpy(seen[0], cur, 32);
	for (unsigned i = 0; i < p->nhops; i++) {
		const struct hw_rf_edge *x;

		assert_true(p->hops[i].edge < ne);
		x = &e[p->hops[i].edge];
		if (p->hops[i].forward) {
			assert_memory_equal(x->a, cur, 32);
			memcpy(cur, x->b, 32);
		} else {
			assert_int_equal(p->hops[i].forward, 0);
			assert_memory_equal(x->b, cur, 32);
			memcpy(cur, x->a, 32);
		}
		for (unsigned j = 0; j <= i; j++)
			assert_memory_not_equal(seen[j], cur, 32);
		memcpy(seen[i + 1], cur, 32);
		if (!x->rtt_us)
			known = 0;
		rtt += x->rtt_us;
	}
	assert_memory_equal(cur, d, 32);
	assert_int_equal(p->rtt_known, known);
	assert_true(p->rtt_us == (known ? rtt : 0));
}

static void check_all(const struct hw_rf_edge *e, size_t ne, unsigned src,
		      unsigned dst, unsigned minh, unsigned maxh,
		      const struct hw_rf_path *p, unsigned np)
{
	for (unsigned i = 0; i < np; i++) {
		check_path(e, ne, src, dst, minh, maxh, &p[i]);
		if (i)
			assert_true(path_cmp(e, &p[i - 1], &p[i]) < 0);
	}
}

static void test_line(void **state)
{
	struct hw_rf_edge e[3];
	struct hw_rf_path p[4];
	unsigned np = 99;

	/* A-B-C-D, the middle edge written backwards. */
	edge(&e[0], 1, 0, 1, 100);
	edge(&e[1], 2, 2, 1, 200);
	edge(&e[2], 3, 2, 3, 300);
	assert_int_equal(find(e, 3, 0, 3, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 1);
	assert_int_equal(p[0].nhops, 3);
	assert_int_equal(p[0].hops[0].edge, 0);
	assert_int_equal(p[0].hops[0].forward, 1);
	assert_int_equal(p[0].hops[1].edge, 1);
	assert_int_equal(p[0].hops[1].forward, 0);
	assert_int_equal(p[0].hops[2].edge, 2);
	assert_int_equal(p[0].hops[2].forward, 1);
	assert_int_equal(p[0].rtt_known, 1);
	assert_int_equal(p[0].rtt_us, 600);
	check_all(e, 3, 0, 3, 1, 8, p, np);
	/* And the other way round. */
	assert_int_equal(find(e, 3, 3, 0, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 1);
	assert_int_equal(p[0].hops[0].edge, 2);
	assert_int_equal(p[0].hops[0].forward, 0);
	check_all(e, 3, 3, 0, 1, 8, p, np);
}

static void test_diamond_rtt(void **state)
{
	struct hw_rf_edge e[4];
	struct hw_rf_path p[4];
	unsigned np;

	/* A(0)-B(1)-D(3) costs 20 ms, A-C(2)-D 10 ms, though B's edges
	 * have the lower IDs. */
	edge(&e[0], 1, 0, 1, 10000);
	edge(&e[1], 2, 1, 3, 10000);
	edge(&e[2], 3, 0, 2, 5000);
	edge(&e[3], 4, 2, 3, 5000);
	assert_int_equal(find(e, 4, 0, 3, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 2);
	assert_int_equal(p[0].hops[0].edge, 2);
	assert_int_equal(p[0].hops[1].edge, 3);
	assert_int_equal(p[0].rtt_us, 10000);
	assert_int_equal(p[1].hops[0].edge, 0);
	assert_int_equal(p[1].rtt_us, 20000);
	check_all(e, 4, 0, 3, 1, 8, p, np);

	/* Equal RTT: the lower ID sequence first. */
	e[2].rtt_us = e[3].rtt_us = 10000;
	assert_int_equal(find(e, 4, 0, 3, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 2);
	assert_int_equal(p[0].hops[0].edge, 0);
	assert_int_equal(p[1].hops[0].edge, 2);

	/* An unknown RTT costs 1 s in the order and makes the path's RTT
	 * unknown. */
	e[0].rtt_us = 0;
	assert_int_equal(find(e, 4, 0, 3, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 2);
	assert_int_equal(p[0].hops[0].edge, 2);
	assert_int_equal(p[0].rtt_known, 1);
	assert_int_equal(p[1].hops[0].edge, 0);
	assert_int_equal(p[1].rtt_known, 0);
	assert_int_equal(p[1].rtt_us, 0);
	check_all(e, 4, 0, 3, 1, 8, p, np);
}

static void test_parallel(void **state)
{
	struct hw_rf_edge e[4];
	struct hw_rf_path p[8];
	unsigned np;

	/* tcp and relay between A and B, both with equal RTT. */
	edge(&e[0], 7, 0, 1, 100);
	edge(&e[1], 3, 1, 0, 100);
	strcpy(e[1].type, "relay");
	assert_int_equal(find(e, 2, 0, 1, 8, 1, 8, p, &np), 0);
	assert_int_equal(np, 2);
	assert_int_equal(p[0].nhops, 1);
	assert_int_equal(p[0].hops[0].edge, 1); /* lower ID */
	assert_int_equal(p[0].hops[0].forward, 0);
	assert_int_equal(p[1].hops[0].edge, 0);
	assert_int_equal(p[1].hops[0].forward, 1);
	check_all(e, 2, 0, 1, 1, 8, p, np);

	/* Two more between B and C: four distinct A-B-C paths. */
	edge(&e[2], 5, 1, 2, 50);
	edge(&e[3], 6, 1, 2, 40);
	assert_int_equal(find(e, 4, 0, 2, 8, 1, 8, p, &np), 0);
	assert_int_equal(np, 4);
	check_all(e, 4, 0, 2, 1, 8, p, np);
	assert_int_equal(p[0].hops[0].edge, 1);
	assert_int_equal(p[0].hops[1].edge, 3);
	assert_int_equal(p[1].hops[0].edge, 0);
	assert_int_equal(p[1].hops[1].edge, 3);
	assert_int_equal(p[2].hops[0].edge, 1);
	assert_int_equal(p[2].hops[1].edge, 2);
	assert_int_equal(p[3].hops[0].edge, 0);
	assert_int_equal(p[3].hops[1].edge, 2);
}

static void test_min_hops(void **state)
{
	struct hw_rf_edge e[5];
	struct hw_rf_path p[4];
	unsigned np;

	/* A square A-B-C-D with the diagonal A-C. */
	edge(&e[0], 1, 0, 2, 10);
	edge(&e[1], 2, 0, 1, 10);
	edge(&e[2], 3, 1, 2, 10);
	edge(&e[3], 4, 0, 3, 10);
	edge(&e[4], 5, 3, 2, 10);
	assert_int_equal(find(e, 5, 0, 2, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 3);
	assert_int_equal(p[0].nhops, 1);
	assert_int_equal(find(e, 5, 0, 2, 4, 2, 8, p, &np), 0);
	assert_int_equal(np, 2);
	assert_int_equal(p[0].nhops, 2);
	assert_int_equal(p[0].hops[0].edge, 1);
	assert_int_equal(p[1].hops[0].edge, 3);
	check_all(e, 5, 0, 2, 2, 8, p, np);
	assert_int_equal(find(e, 5, 0, 2, 4, 3, 8, p, &np), 0);
	assert_int_equal(np, 0);
	/* k counts answers, not the shorter paths stepped over. */
	assert_int_equal(find(e, 5, 0, 2, 1, 2, 2, p, &np), 0);
	assert_int_equal(np, 1);
	assert_int_equal(p[0].hops[0].edge, 1);
}

static void test_max_hops(void **state)
{
	struct hw_rf_edge e[6];
	struct hw_rf_path p[4];
	unsigned np;

	/* A-B-C (2 hops) and A-D-E-F-C (4 hops). */
	edge(&e[0], 1, 0, 1, 10);
	edge(&e[1], 2, 1, 2, 10);
	edge(&e[2], 3, 0, 3, 1);
	edge(&e[3], 4, 3, 4, 1);
	edge(&e[4], 5, 4, 5, 1);
	edge(&e[5], 6, 5, 2, 1);
	assert_int_equal(find(e, 6, 0, 2, 4, 1, 4, p, &np), 0);
	assert_int_equal(np, 2);
	assert_int_equal(p[0].nhops, 2);
	assert_int_equal(p[1].nhops, 4);
	assert_int_equal(find(e, 6, 0, 2, 4, 1, 3, p, &np), 0);
	assert_int_equal(np, 1);
	assert_int_equal(p[0].nhops, 2);
	assert_int_equal(find(e, 6, 0, 2, 4, 1, 1, p, &np), 0);
	assert_int_equal(np, 0);
	assert_int_equal(find(e, 6, 0, 2, 4, 3, 4, p, &np), 0);
	assert_int_equal(np, 1);
	assert_int_equal(p[0].nhops, 4);
	check_all(e, 6, 0, 2, 3, 4, p, np);
}

static void test_k_large(void **state)
{
	struct hw_rf_edge e[4];
	struct hw_rf_path p[HW_RF_MAX_K];
	unsigned np;

	edge(&e[0], 1, 0, 1, 10);
	edge(&e[1], 2, 1, 3, 10);
	edge(&e[2], 3, 0, 2, 10);
	edge(&e[3], 4, 2, 3, 10);
	assert_int_equal(find(e, 4, 0, 3, HW_RF_MAX_K, 1, HW_RF_MAX_HOPS, p,
			      &np), 0);
	assert_int_equal(np, 2);
	check_all(e, 4, 0, 3, 1, HW_RF_MAX_HOPS, p, np);
	assert_int_equal(find(e, 4, 0, 3, 1, 1, 8, p, &np), 0);
	assert_int_equal(np, 1);
}

static void test_disconnected(void **state)
{
	struct hw_rf_edge e[3];
	struct hw_rf_path p[4];
	unsigned np = 99;

	edge(&e[0], 1, 0, 1, 10);
	edge(&e[1], 2, 2, 3, 10);
	edge(&e[2], 3, 4, 4, 10); /* self-loop: ignored */
	assert_int_equal(find(e, 3, 0, 3, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 0);
	/* Unknown keys and a key only on a self-loop. */
	assert_int_equal(find(e, 3, 0, 9, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 0);
	assert_int_equal(find(e, 3, 4, 0, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 0);
	assert_int_equal(find(NULL, 0, 0, 1, 4, 1, 8, p, &np), 0);
	assert_int_equal(np, 0);
}

static void test_invalid(void **state)
{
	struct hw_rf_edge e[1];
	struct hw_rf_path p[HW_RF_MAX_K];
	uint8_t s[32], d[32];
	unsigned np = 99;

	edge(&e[0], 1, 0, 1, 10);
	key(0, s);
	key(1, d);
	assert_int_equal(find(e, 1, 0, 0, 4, 1, 8, p, &np), -EINVAL);
	assert_int_equal(np, 0);
	assert_int_equal(find(e, 1, 0, 1, 0, 1, 8, p, &np), -EINVAL);
	assert_int_equal(find(e, 1, 0, 1, 17, 1, 8, p, &np), -EINVAL);
	assert_int_equal(find(e, 1, 0, 1, 4, 0, 8, p, &np), -EINVAL);
	assert_int_equal(find(e, 1, 0, 1, 4, 1, 17, p, &np), -EINVAL);
	assert_int_equal(find(e, 1, 0, 1, 4, 5, 4, p, &np), -EINVAL);
	assert_int_equal(find(e, 1, 0, 1, 4, 17, 17, p, &np), -EINVAL);
	assert_int_equal(find(NULL, 1, 0, 1, 4, 1, 8, p, &np), -EINVAL);
	assert_int_equal(hw_rf_find(e, 1, NULL, d, 4, 1, 8, p, &np),
			 -EINVAL);
	assert_int_equal(hw_rf_find(e, 1, s, NULL, 4, 1, 8, p, &np),
			 -EINVAL);
	assert_int_equal(hw_rf_find(e, 1, s, d, 4, 1, 8, NULL, &np),
			 -EINVAL);
	assert_int_equal(hw_rf_find(e, 1, s, d, 4, 1, 8, p, NULL), -EINVAL);
	/* The size is refused before any edge is read. */
	assert_int_equal(find(e, HW_RF_MAX_EDGES + 1, 0, 1, 4, 1, 8, p, &np),
			 -E2BIG);
	assert_int_equal(np, 0);
	/* Boundaries that are fine. */
	assert_int_equal(find(e, 1, 0, 1, 16, 16, 16, p, &np), 0);
	assert_int_equal(np, 0);
	assert_int_equal(find(e, 1, 0, 1, 1, 1, 1, p, &np), 0);
	assert_int_equal(np, 1);
}

/* Every simple path src -> dst of at most maxh hops, by depth-first
 * search over node numbers < nn. */
struct brute {
	const struct hw_rf_edge *e;
	size_t ne;
	unsigned nn, dst, maxh;
	struct hw_rf_path *all;
	size_t nall, cap;
	struct hw_rf_path cur;
	int on[64];
};

static unsigned node_of(const uint8_t k[32])
{
	return ((unsigned)k[2] << 8) | k[3];
}

static void brute_dfs(struct brute *b, unsigned u)
{
	if (u == b->dst) {
		assert_true(b->nall < b->cap);
		b->all[b->nall++] = b->cur;
		return;
	}
	if (b->cur.nhops == b->maxh)
		return;
	for (size_t i = 0; i < b->ne; i++) {
		unsigned a = node_of(b->e[i].a), c = node_of(b->e[i].b), v;
		int fwd;

		if (a == c)
			continue;
		if (a == u) {
			v = c;
			fwd = 1;
		} else if (c == u) {
			v = a;
			fwd = 0;
		} else {
			continue;
		}
		if (b->on[v])
			continue;
		b->on[v] = 1;
		b->cur.hops[b->cur.nhops].edge = i;
		b->cur.hops[b->cur.nhops].forward = fwd;
		b->cur.nhops++;
		brute_dfs(b, v);
		b->cur.nhops--;
		b->on[v] = 0;
	}
}

static const struct hw_rf_edge *sort_edges;

static int sort_cmp(const void *x, const void *y)
{
	return path_cmp(sort_edges, x, y);
}

/* Small random multigraphs with cycles, parallel edges, duplicate IDs and
 * many RTT ties: the answer must be exactly the first k of all simple
 * paths in the documented order. */
static void test_against_brute_force(void **state)
{
	enum { NE = 20, CAP = 200000 };
	struct hw_rf_edge e[NE];
	struct hw_rf_path p[HW_RF_MAX_K];
	struct brute b = {0};
	unsigned checked = 0;

	b.cap = CAP;
	b.all = malloc(CAP * sizeof(*b.all));
	assert_non_null(b.all);
	for (int round = 0; round < 2000; round++) {
		unsigned nn = 4 + (unsigned)(rnd() % 6);
		unsigned ne = 4 + (unsigned)(rnd() % (NE - 3));
		unsigned src = (unsigned)(rnd() % nn), dst;
		unsigned k = 1 + (unsigned)(rnd() % HW_RF_MAX_K);
		unsigned minh = 1 + (unsigned)(rnd() % 5);
		unsigned maxh = minh + (unsigned)(rnd() % 6);
		unsigned np, want;
		static const uint32_t rtts[] = {0, 10, 10, 20, 30};

		do
			dst = (unsigned)(rnd() % nn);
		while (dst == src);
		for (unsigned i = 0; i < ne; i++) {
			unsigned a = (unsigned)(rnd() % nn);
			unsigned c = (unsigned)(rnd() % nn);

			edge(&e[i], (unsigned)(rnd() % 24), a, c,
			     rtts[rnd() % 5]);
		}
		assert_int_equal(find(e, ne, src, dst, k, minh, maxh, p, &np),
				 0);
		check_all(e, ne, src, dst, minh, maxh, p, np);

		b.e = e;
		b.ne = ne;
		b.nn = nn;
		b.dst = dst;
		b.maxh = maxh;
		b.nall = 0;
		memset(&b.cur, 0, sizeof(b.cur));
		memset(b.on, 0, sizeof(b.on));
		b.on[src] = 1;
		brute_dfs(&b, src);
		sort_edges = e;
		qsort(b.all, b.nall, sizeof(*b.all), sort_cmp);
		want = 0;
		for (size_t i = 0; i < b.nall && want < k; i++) {
			if (b.all[i].nhops < minh)
				continue;
			assert_true(want < np);
			assert_int_equal(p[want].nhops, b.all[i].nhops);
			for (unsigned h = 0; h < p[want].nhops; h++) {
				assert_int_equal(p[want].hops[h].edge,
						 b.all[i].hops[h].edge);
				assert_int_equal(p[want].hops[h].forward,
						 b.all[i].hops[h].forward);
			}
			want++;
		}
		assert_int_equal(np, want);
		checked += np;
	}
	assert_true(checked > 2000);
	free(b.all);
}

/* A complete graph with doubled edges: many cycles, no repeated node in
 * any answer. */
static void test_loopless(void **state)
{
	struct hw_rf_edge e[60];
	struct hw_rf_path p[HW_RF_MAX_K];
	unsigned n = 0, np, id = 0;

	for (unsigned a = 0; a < 6; a++)
		for (unsigned b = a + 1; b < 6; b++) {
			edge(&e[n++], ++id, a, b, 10);
			edge(&e[n++], ++id, b, a, 0);
		}
	for (unsigned minh = 1; minh <= 5; minh++) {
		assert_int_equal(find(e, n, 0, 5, HW_RF_MAX_K, minh, 16, p,
				      &np), 0);
		assert_int_equal(np, HW_RF_MAX_K);
		check_all(e, n, 0, 5, minh, 16, p, np);
	}
	/* Nothing longer than 5 hops exists among 6 nodes. */
	assert_int_equal(find(e, n, 0, 5, HW_RF_MAX_K, 6, 16, p, &np), 0);
	assert_int_equal(np, 0);
}

/* Hops from src to dst (more than maxh: maxh + 1), one round of
 * relaxation over the edge list per hop. */
static unsigned hop_distance(const struct hw_rf_edge *e, size_t ne,
			     unsigned nn, unsigned src, unsigned dst,
			     unsigned maxh)
{
	unsigned *dist = malloc(nn * sizeof(*dist)), d;

	assert_non_null(dist);
	for (unsigned v = 0; v < nn; v++)
		dist[v] = maxh + 1;
	dist[src] = 0;
	for (unsigned h = 0; h < maxh; h++)
		for (size_t i = 0; i < ne; i++) {
			unsigned a = node_of(e[i].a), b = node_of(e[i].b);

			if (dist[a] == h && dist[b] > h + 1)
				dist[b] = h + 1;
			if (dist[b] == h && dist[a] > h + 1)
				dist[a] = h + 1;
		}
	d = dist[dst];
	free(dist);
	return d;
}

static void test_random_large(void **state)
{
	enum { N = 2000, M = 4000 };
	struct hw_rf_edge *e = calloc(M, sizeof(*e));
	struct hw_rf_path p[HW_RF_MAX_K];
	unsigned total = 0;

	assert_non_null(e);
	for (unsigned i = 0; i < M; i++) {
		unsigned a = (unsigned)(rnd() % N), b = (unsigned)(rnd() % N);
		uint32_t rtt = rnd() % 10 ? 1000 + (uint32_t)(rnd() % 100000)
					  : 0;

		edge(&e[i], (unsigned)rnd(), a, b, rtt);
	}
	for (int q = 0; q < 20; q++) {
		unsigned src = (unsigned)(rnd() % N);
		unsigned dst = (unsigned)(rnd() % N);
		unsigned k = 1 + (unsigned)(rnd() % HW_RF_MAX_K);
		unsigned minh = 1 + (unsigned)(rnd() % 4);
		unsigned maxh = minh + 2 + (unsigned)(rnd() % 8);
		unsigned np, d;

		if (src == dst)
			continue;
		assert_int_equal(find(e, M, src, dst, k, minh, maxh, p, &np),
				 0);
		assert_true(np <= k);
		check_all(e, M, src, dst, minh, maxh, p, np);
		total += np;
		/* The best path is a shortest one. */
		d = hop_distance(e, M, N, src, dst, maxh);
		assert_int_equal(find(e, M, src, dst, 1, 1, maxh, p, &np), 0);
		assert_int_equal(np, d <= maxh);
		if (np)
			assert_int_equal(p[0].nhops, d);
	}
	assert_true(total > 0);
	free(e);
}

/* The answer is defined by transport IDs, not by where the caller keeps
 * each transport: shuffling the list gives the same paths. */
static void test_stable_order(void **state)
{
	enum { N = 300, M = 900 };
	struct hw_rf_edge *e = calloc(M, sizeof(*e));
	struct hw_rf_edge *f = calloc(M, sizeof(*f));
	size_t *perm = malloc(M * sizeof(*perm));
	struct hw_rf_path p[HW_RF_MAX_K], q[HW_RF_MAX_K];
	static const uint32_t rtts[] = {0, 1000, 1000, 2000};

	assert_non_null(e);
	assert_non_null(f);
	assert_non_null(perm);
	for (unsigned i = 0; i < M; i++)
		edge(&e[i], i + 1, (unsigned)(rnd() % N),
		     (unsigned)(rnd() % N), rtts[rnd() % 4]);
	for (size_t i = 0; i < M; i++)
		perm[i] = i;
	for (size_t i = M - 1; i > 0; i--) {
		size_t j = (size_t)(rnd() % (i + 1)), x = perm[i];

		perm[i] = perm[j];
		perm[j] = x;
	}
	for (size_t i = 0; i < M; i++)
		f[i] = e[perm[i]];
	for (int round = 0; round < 10; round++) {
		unsigned src = (unsigned)(rnd() % N);
		unsigned dst = (src + 1 + (unsigned)(rnd() % (N - 1))) % N;
		unsigned np, nq;

		assert_int_equal(find(e, M, src, dst, 16, 2, 10, p, &np), 0);
		assert_int_equal(find(f, M, src, dst, 16, 2, 10, q, &nq), 0);
		assert_int_equal(np, nq);
		for (unsigned i = 0; i < np; i++) {
			assert_int_equal(p[i].nhops, q[i].nhops);
			assert_int_equal(p[i].rtt_us, q[i].rtt_us);
			for (unsigned h = 0; h < p[i].nhops; h++) {
				const struct hw_rf_edge *x, *y;

				x = &e[p[i].hops[h].edge];
				y = &f[q[i].hops[h].edge];
				assert_memory_equal(x->id, y->id, 16);
			}
		}
	}
	free(e);
	free(f);
	free(perm);
}

/* A dense multigraph where every path is short: asking for long ones
 * means stepping over a huge number of shorter paths, which the search
 * bound cuts off. What comes back is still valid and in order. */
static void test_bounded(void **state)
{
	enum { N = 120 };
	struct hw_rf_edge *e = calloc(N * (N - 1), sizeof(*e));
	struct hw_rf_path p[HW_RF_MAX_K];
	unsigned n = 0, np, id = 0;

	assert_non_null(e);
	for (unsigned a = 0; a < N; a++)
		for (unsigned b = a + 1; b < N; b++) {
			id++;
			edge(&e[n++], id, a, b, 100 + id % 7);
			id++;
			edge(&e[n++], id, b, a, 0);
		}
	for (unsigned minh = 1; minh <= HW_RF_MAX_HOPS; minh *= 2) {
		assert_int_equal(find(e, n, 0, N - 1, HW_RF_MAX_K, minh,
				      HW_RF_MAX_HOPS, p, &np), 0);
		check_all(e, n, 0, N - 1, minh, HW_RF_MAX_HOPS, p, np);
		if (minh <= 2)
			assert_int_equal(np, HW_RF_MAX_K);
	}
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line),
		cmocka_unit_test(test_diamond_rtt),
		cmocka_unit_test(test_parallel),
		cmocka_unit_test(test_min_hops),
		cmocka_unit_test(test_max_hops),
		cmocka_unit_test(test_k_large),
		cmocka_unit_test(test_disconnected),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_against_brute_force),
		cmocka_unit_test(test_loopless),
		cmocka_unit_test(test_random_large),
		cmocka_unit_test(test_stable_order),
		cmocka_unit_test(test_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
