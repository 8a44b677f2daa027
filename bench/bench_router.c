/* Router figures with 100,000 rules: the lookup (hw_router_find of random
 * live IDs), the full receive path of a CONSUME rule (hw_router_on_packet
 * with a no-op deliver: lookup, transport check, counters), and a packet
 * for an unknown ID (what a flood of guesses costs), beside a baseline
 * measured in the same run on the same index sequence: a plain array
 * indexed directly, with the same counter updates. Also the heap bytes a
 * rule and a reservation take.
 *
 * The rules need a real transport to name (a router resolves it when a
 * rule is added), so two transport managers are linked on loopback
 * first; no packet crosses them while timing. Forwarding onto a transport
 * is the transport's cost (bench_visor.py measures it end to end). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>
#include <uv.h>

#include "crypto/identity.h"
#include "router/router.h"
#include "transport/manager.h"
#include "util/err.h"
#include "hwtest.h"

#define NRULES 100000
#define NIDX (1u << 20) /* random index sequence, reused cyclically */
#define ITERS 5000000u
#define REPS 5 /* each figure is the best of REPS runs: the machine is shared */
#define RULE_BYTES 256 /* about what a rule takes on the heap */

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

static void die(const char *what)
{
	fprintf(stderr, "bench_router: %s\n", what);
	exit(1);
}

static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static uint64_t delivered;

static void on_deliver(struct hw_router *r, uint32_t rule_id,
		       const struct hw_packet *pkt, void *ud)
{
	delivered++;
}

static int ups;

static void on_event(struct hw_tp *tp, enum hw_tp_event ev, void *ud)
{
	if (ev == HW_TP_UP)
		ups++;
}

static int added;

static void on_added(struct hw_tp_manager *m, struct hw_tp *tp, int status,
		     const char *msg, void *ud)
{
	if (status)
		die(msg ? msg : "transport add failed");
	added = 1;
}

static void on_tick(uv_timer_t *t)
{
}

/* The baseline's record: what a rule's counters would be in an array
 * slot. */
struct slot {
	uint32_t id;
	uint64_t last_ms, bytes, packets;
};

/* The same, padded to a rule's size: the array then spans as much memory
 * as the rule table, so the ratio to it is the cost of hashing and
 * chaining rather than of the table's size. */
struct fat_slot {
	struct slot s;
	uint8_t pad[RULE_BYTES - sizeof(struct slot)];
};

static volatile uint64_t sink;

int main(void)
{
	uv_loop_t loop;
	uv_timer_t tick;
	struct hw_identity id[2];
	struct hw_tp_manager *m[2];
	struct hw_router *r;
	struct hw_router_params rp = {0};
	struct hw_router_stats st;
	struct hw_tp *tp;
	struct slot *arr;
	struct fat_slot *fat;
	uint32_t *ids, *idx;
	uint8_t payload[64] = {0};
	char err[256];
	size_t h0, h1, h2;
	double t, base_ns, fat_ns, find_ns, pkt_ns, miss_ns;
	uint64_t acc = 0;

	uv_loop_init(&loop);
	uv_timer_init(&loop, &tick);
	for (int i = 0; i < 2; i++) {
		struct hw_tp_manager_params mp = {0};
		char listen[32];

		if (hw_identity_generate(&id[i]))
			die("identity");
		mp.loop = &loop;
		mp.id = &id[i];
		snprintf(listen, sizeof(listen), "127.0.0.1:%d", hw_test_free_port());
		mp.tcp_listen = listen;
		mp.keepalive_ms = 30000;
		mp.handshake_timeout_ms = 5000;
		mp.max_pending_handshakes = 4;
		mp.redial_min_ms = 100;
		mp.redial_max_ms = 1000;
		mp.on_event = on_event;
		if (hw_tp_manager_new(&m[i], &mp, err, sizeof(err)))
			die(err);
	}
	if (hw_tp_manager_add(m[0], id[1].pk, "tcp",
			      hw_tp_manager_listen_addr(m[1]), 0, on_added,
			      NULL, err, sizeof(err)))
		die(err);
	uv_timer_start(&tick, on_tick, 5, 5);
	for (double end = now() + 10; !(added && ups == 2) && now() < end;)
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&tick);
	if (!(tp = hw_tp_manager_find(m[1], id[0].pk, "tcp")) ||
	    !hw_tp_is_up(tp))
		die("transport did not come up");

	rp.loop = &loop;
	rp.tpm = m[1];
	rp.deliver = on_deliver;
	h0 = heap_used();
	if (hw_router_new(&r, &rp))
		die("router");
	ids = malloc(NRULES * sizeof(*ids));
	idx = malloc(NIDX * sizeof(*idx));
	arr = calloc(NRULES, sizeof(*arr));
	fat = calloc(NRULES, sizeof(*fat));
	if (!ids || !idx || !arr || !fat)
		die("out of memory");

	h1 = heap_used();
	for (unsigned i = 0; i < NRULES; i += 16)
		if (hw_router_reserve(r, 16, ids + i))
			die("reserve");
	h2 = heap_used();
	printf("reservation: %.1f heap bytes each (%u, table included)\n",
	       (double)(h2 - h1) / NRULES, NRULES);
	for (unsigned i = 0; i < NRULES; i++) {
		struct hw_rule ru;

		memset(&ru, 0, sizeof(ru));
		ru.id = ids[i];
		ru.kind = HW_RULE_CONSUME;
		ru.keepalive_ms = HW_RULE_KEEPALIVE_MAX_MS;
		memcpy(ru.prev_tp, hw_tp_id_bytes(tp), HW_TP_ID_LEN);
		memcpy(ru.desc.src_pk, id[0].pk, HW_PK_LEN);
		ru.desc.src_port = 1;
		memcpy(ru.desc.dst_pk, id[1].pk, HW_PK_LEN);
		ru.desc.dst_port = (uint16_t)(1 + i % 60000);
		if (hw_router_add(r, &ru))
			die("add");
	}
	h2 = heap_used();
	printf("rule: %.1f heap bytes each (%u rules, table included)\n",
	       (double)(h2 - h1) / NRULES, NRULES);
	(void)h0;

	for (unsigned i = 0; i < NRULES; i++)
		arr[i].id = ids[i];
	for (unsigned i = 0; i < NIDX; i++)
		idx[i] = (uint32_t)(rnd() % NRULES);

	/* Baseline: the ID already is the index. */
	base_ns = 1e30;
	for (int rep = 0; rep < REPS; rep++) {
		t = now();
		for (uint32_t i = 0; i < ITERS; i++) {
			struct slot *s = &arr[idx[i & (NIDX - 1)]];

			s->last_ms = i;
			s->bytes += sizeof(payload);
			s->packets++;
		}
		t = (now() - t) * 1e9 / ITERS;
		if (t < base_ns)
			base_ns = t;
	}
	for (unsigned i = 0; i < NRULES; i++)
		acc += arr[i].packets;
	sink = acc;

	fat_ns = 1e30;
	for (int rep = 0; rep < REPS; rep++) {
		t = now();
		for (uint32_t i = 0; i < ITERS; i++) {
			struct slot *s = &fat[idx[i & (NIDX - 1)]].s;

			s->last_ms = i;
			s->bytes += sizeof(payload);
			s->packets++;
		}
		t = (now() - t) * 1e9 / ITERS;
		if (t < fat_ns)
			fat_ns = t;
	}
	for (unsigned i = 0; i < NRULES; i++)
		acc += fat[i].s.packets;
	sink = acc;

	find_ns = 1e30;
	for (int rep = 0; rep < REPS; rep++) {
		t = now();
		for (uint32_t i = 0; i < ITERS; i++) {
			const struct hw_rule *ru =
				hw_router_find(r, ids[idx[i & (NIDX - 1)]]);
			acc += ru->keepalive_ms;
		}
		t = (now() - t) * 1e9 / ITERS;
		if (t < find_ns)
			find_ns = t;
	}
	sink = acc;

	pkt_ns = 1e30;
	for (int rep = 0; rep < REPS; rep++) {
		t = now();
		for (uint32_t i = 0; i < ITERS; i++) {
			struct hw_packet pkt = {
				.type = HW_PKT_DATA,
				.route_id = ids[idx[i & (NIDX - 1)]],
				.len = sizeof(payload),
				.payload = payload,
			};
			hw_router_on_packet(r, tp, &pkt);
		}
		t = (now() - t) * 1e9 / ITERS;
		if (t < pkt_ns)
			pkt_ns = t;
	}
	if (delivered != (uint64_t)ITERS * REPS)
		die("not every packet was delivered");

	/* Unknown IDs: random values, nearly all misses. */
	for (unsigned i = 0; i < NIDX; i++)
		idx[i] = (uint32_t)rnd() | 1;
	miss_ns = 1e30;
	for (int rep = 0; rep < REPS; rep++) {
		t = now();
		for (uint32_t i = 0; i < ITERS; i++) {
			struct hw_packet pkt = {
				.type = HW_PKT_DATA,
				.route_id = idx[i & (NIDX - 1)],
				.len = sizeof(payload),
				.payload = payload,
			};
			hw_router_on_packet(r, tp, &pkt);
		}
		t = (now() - t) * 1e9 / ITERS;
		if (t < miss_ns)
			miss_ns = t;
	}
	hw_router_stats(r, &st);

	printf("baseline: array index + counters, %zu-byte slots: "
	       "%5.1f ns/packet %7.2f Mpps\n", sizeof(struct slot), base_ns,
	       1e3 / base_ns);
	printf("baseline: array index + counters, %zu-byte slots: "
	       "%5.1f ns/packet %7.2f Mpps\n", sizeof(struct fat_slot), fat_ns,
	       1e3 / fat_ns);
	printf("hw_router_find (lookup):       %5.1f ns/packet %7.2f Mpps "
	       "(%.1fx / %.1fx baseline)\n", find_ns, 1e3 / find_ns,
	       find_ns / base_ns, find_ns / fat_ns);
	printf("hw_router_on_packet (consume): %5.1f ns/packet %7.2f Mpps "
	       "(%.1fx / %.1fx baseline)\n", pkt_ns, 1e3 / pkt_ns,
	       pkt_ns / base_ns, pkt_ns / fat_ns);
	printf("hw_router_on_packet (unknown): %5.1f ns/packet %7.2f Mpps "
	       "(%.1fx / %.1fx baseline, %llu dropped)\n", miss_ns,
	       1e3 / miss_ns, miss_ns / base_ns, miss_ns / fat_ns,
	       (unsigned long long)st.dropped_unknown);

	hw_router_free(r);
	hw_tp_manager_free(m[0]);
	hw_tp_manager_free(m[1]);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	free(ids);
	free(idx);
	free(arr);
	free(fat);
	return 0;
}
