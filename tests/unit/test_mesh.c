/* The mesh handshake (mesh/mesh.c) between real transport managers on
 * loopback: three visors A, B, C, each a manager with its mesh, A linked
 * to B and to C. A peer that breaks the mesh protocol loses its
 * connection with the reason, and the other link is left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "crypto/identity.h"
#include "hwtest.h"
#include "hwtest_assert.h"
#include "mesh/mesh.h"
#include "transport/manager.h"

#define WAIT_MS 5000
#define N 3

struct node {
	struct hw_identity id;
	char listen[64];
	struct hw_tp_manager *tpm;
	struct hw_mesh *mesh;
	unsigned mesh_packets; /* what this node's mesh was handed */
};

static struct {
	uv_loop_t loop;
	uv_timer_t tick;
	struct node n[N];
	int added;
} fx;

static void on_event(struct hw_tp *tp, enum hw_tp_event ev, void *ud)
{
	struct node *n = ud;

	if (n->mesh)
		hw_mesh_tp_event(n->mesh, tp, ev);
}

static void on_packet(struct hw_tp *tp, const struct hw_packet *pkt,
		      void *ud)
{
	struct node *n = ud;

	if (pkt->type == HW_PKT_MESH && n->mesh) {
		n->mesh_packets++;
		hw_mesh_on_packet(n->mesh, tp, pkt);
	}
}

static int setup(void **state)
{
	char err[256];

	(void)state;
	memset(&fx, 0, sizeof(fx));
	assert_int_equal(uv_loop_init(&fx.loop), 0);
	assert_int_equal(uv_timer_init(&fx.loop, &fx.tick), 0);
	for (int i = 0; i < N; i++) {
		struct node *n = &fx.n[i];
		struct hw_tp_manager_params p = {0};
		struct hw_mesh_params mp = {0};

		assert_int_equal(hw_identity_generate(&n->id), 0);
		snprintf(n->listen, sizeof(n->listen), "127.0.0.1:%d",
			 hw_test_free_port());
		p.loop = &fx.loop;
		p.id = &n->id;
		p.tcp_listen = n->listen;
		p.keepalive_ms = 5000;
		p.handshake_timeout_ms = 3000;
		p.max_pending_handshakes = 8;
		p.redial_min_ms = 100;
		p.redial_max_ms = 1000;
		p.on_event = on_event;
		p.on_packet = on_packet;
		p.ud = n;
		assert_int_equal(hw_tp_manager_new(&n->tpm, &p, err,
						   sizeof(err)), 0);
		mp.loop = &fx.loop;
		mp.tpm = n->tpm;
		mp.self_pk = n->id.pk;
		mp.listen = hw_tp_manager_listen_addr(n->tpm);
		assert_int_equal(hw_mesh_new(&n->mesh, &mp, err, sizeof(err)),
				 0);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < N; i++) {
		hw_mesh_free(fx.n[i].mesh);
		fx.n[i].mesh = NULL;
		hw_tp_manager_free(fx.n[i].tpm);
	}
	uv_close((uv_handle_t *)&fx.tick, NULL);
	uv_run(&fx.loop, UV_RUN_DEFAULT);
	assert_int_equal(hw_test_loop_close(&fx.loop), 0);
	for (int i = 0; i < N; i++)
		hw_identity_wipe(&fx.n[i].id);
	return 0;
}

static void added(struct hw_tp_manager *m, struct hw_tp *tp, int status,
		  const char *msg, void *ud)
{
	(void)m;
	(void)tp;
	(void)msg;
	(void)ud;
	assert_int_equal(status, 0);
	fx.added++;
}

/* The state of node i's link to node j in its mesh listing. */
static const char *link_state(int i, int j)
{
	static char out[32];
	char pk[HW_PK_HEXLEN + 1];
	json_t *o = hw_mesh_json(fx.n[i].mesh), *l;
	size_t k;

	hw_pk_format(fx.n[j].id.pk, pk);
	out[0] = '\0';
	json_array_foreach(json_object_get(o, "links"), k, l)
		if (!strcmp(hw_test_jstr(l, "pk"), pk))
			snprintf(out, sizeof(out), "%s",
				 hw_test_jstr(l, "state"));
	json_decref(o);
	return out;
}

static int both_done(void)
{
	return !strcmp(link_state(0, 1), "done") &&
	       !strcmp(link_state(0, 2), "done") &&
	       !strcmp(link_state(1, 0), "done") &&
	       !strcmp(link_state(2, 0), "done");
}

static void link_all(void)
{
	char err[256];

	for (int j = 1; j < N; j++)
		assert_int_equal(hw_tp_manager_add(fx.n[0].tpm,
						   fx.n[j].id.pk, "tcp",
						   fx.n[j].listen, 0, added,
						   NULL, err, sizeof(err)),
				 0);
	assert_true(HW_TEST_RUN_UNTIL(&fx.loop, &fx.tick, both_done(),
				      WAIT_MS));
}

static struct hw_tp *tp_of(int i, int j)
{
	return hw_tp_manager_find(fx.n[i].tpm, fx.n[j].id.pk, "tcp");
}

/* B sends A these bytes as a mesh message, bypassing its own mesh. */
static void hostile(const uint8_t *msg, size_t n, const char *why)
{
	json_t *j;

	link_all();
	assert_int_equal(hw_tp_send(tp_of(1, 0), HW_PKT_MESH, 0, msg,
				    (uint16_t)n), 0);
	/* A closes its link to B, saying why; A - C stays done. */
	assert_true(HW_TEST_RUN_UNTIL(&fx.loop, &fx.tick,
				      !tp_of(0, 1) || !hw_tp_is_up(tp_of(0, 1)),
				      WAIT_MS));
	if (tp_of(0, 1)) {
		j = hw_tp_to_json(tp_of(0, 1));
		if (!strstr(hw_test_jstr(j, "last_error"), why))
			fail_msg("last_error '%s' does not say '%s'",
				 hw_test_jstr(j, "last_error"), why);
		json_decref(j);
	}
	hw_test_run_for(&fx.loop, &fx.tick, 200);
	assert_string_equal(link_state(0, 2), "done");
	assert_true(hw_tp_is_up(tp_of(0, 2)));
}

static void test_handshake_and_peers(void **state)
{
	char pk[HW_PK_HEXLEN + 1];
	json_t *o, *l;
	size_t k;
	int seen = 0;

	(void)state;
	link_all();
	/* B learns of C from A, with the address A dialed. */
	hw_pk_format(fx.n[2].id.pk, pk);
	assert_true(HW_TEST_RUN_UNTIL(&fx.loop, &fx.tick, ({
		o = hw_mesh_json(fx.n[1].mesh);
		seen = 0;
		json_array_foreach(json_object_get(o, "learned"), k, l)
			seen |= !strcmp(hw_test_jstr(l, "pk"), pk);
		json_decref(o);
		seen;
	}), WAIT_MS));
	/* Each message once: A's links finished and shared, and nothing
	 * more flows while nothing changes. */
	unsigned before = fx.n[1].mesh_packets;

	hw_test_run_for(&fx.loop, &fx.tick, 2 * HW_MESH_SHARE_MS + 200);
	assert_int_equal(fx.n[1].mesh_packets, before);
}

static void test_malformed_drops_that_link_only(void **state)
{
	const uint8_t msg[] = {1, 9, 0};

	(void)state;
	hostile(msg, sizeof(msg), "mesh: mesh message of kind 9");
}

static void test_hello_after_done_drops(void **state)
{
	const uint8_t msg[] = {1, 1, 1, 0, 0};

	(void)state;
	hostile(msg, sizeof(msg), "HELLO INIT while the handshake is done");
}

static void test_bad_address_drops(void **state)
{
	const uint8_t msg[] = {1, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
			       13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
			       25, 26, 27, 28, 29, 30, 31, 32, 3, 'x', 'y',
			       'z'};

	(void)state;
	hostile(msg, sizeof(msg), "PEERS entry 0 is not tcp://");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handshake_and_peers,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_malformed_drops_that_link_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hello_after_done_drops,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_address_drops, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
