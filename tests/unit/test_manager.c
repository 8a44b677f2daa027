/* The transport manager (transport/manager.c) finding where a peer of a
 * persistent transport went: two real managers on loopback, A with a
 * fake lookup op the test answers by hand, B listening where A's saved
 * address is not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <unistd.h>

#include "crypto/identity.h"
#include "hwtest.h"
#include "hwtest_assert.h"
#include "transport/manager.h"

#define WAIT_MS 5000

struct fx {
	uv_loop_t loop;
	uv_timer_t tick;
	char dir[64], state[128], a_listen[64], b_listen[64], refused[64];
	struct hw_identity a, b;
	struct hw_tp_manager *ma, *mb;
	/* what the fake lookup saw, and what it returns */
	unsigned lookups;
	uint8_t asked_pk[HW_PK_LEN];
	char asked_type[16];
	int lookup_rc;
	/* an add's outcome */
	int added, add_status;
};

static int fake_lookup(const uint8_t pk[HW_PK_LEN], const char *type,
		       void *ud)
{
	struct fx *fx = ud;

	fx->lookups++;
	memcpy(fx->asked_pk, pk, HW_PK_LEN);
	snprintf(fx->asked_type, sizeof(fx->asked_type), "%s", type);
	return fx->lookup_rc;
}

static void params(struct fx *fx, struct hw_tp_manager_params *p,
		   const struct hw_identity *id, const char *listen)
{
	memset(p, 0, sizeof(*p));
	p->loop = &fx->loop;
	p->id = id;
	p->tcp_listen = listen;
	p->keepalive_ms = 5000;
	p->handshake_timeout_ms = 3000;
	p->max_pending_handshakes = 8;
	p->redial_min_ms = 100;
	p->redial_max_ms = 1000;
	p->ud = fx;
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct hw_tp_manager_params p;
	char err[256];

	assert_non_null(fx);
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	assert_int_equal(uv_timer_init(&fx->loop, &fx->tick), 0);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/hw-manager-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->state, sizeof(fx->state), "%s/transports.json", fx->dir);
	assert_int_equal(hw_identity_generate(&fx->a), 0);
	assert_int_equal(hw_identity_generate(&fx->b), 0);
	snprintf(fx->a_listen, sizeof(fx->a_listen), "127.0.0.1:%d",
		 hw_test_free_port());
	snprintf(fx->b_listen, sizeof(fx->b_listen), "127.0.0.1:%d",
		 hw_test_free_port());
	/* Where B is not: what A has saved after B "moved". */
	snprintf(fx->refused, sizeof(fx->refused), "127.0.0.1:%d",
		 hw_test_free_port());

	params(fx, &p, &fx->a, fx->a_listen);
	p.state_path = fx->state;
	p.lookup = fake_lookup;
	assert_int_equal(hw_tp_manager_new(&fx->ma, &p, err, sizeof(err)), 0);
	params(fx, &p, &fx->b, fx->b_listen);
	assert_int_equal(hw_tp_manager_new(&fx->mb, &p, err, sizeof(err)), 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	hw_tp_manager_free(fx->ma);
	hw_tp_manager_free(fx->mb);
	uv_close((uv_handle_t *)&fx->tick, NULL);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	/* Nothing is left on the loop. */
	assert_int_equal(hw_test_loop_close(&fx->loop), 0);
	unlink(fx->state);
	assert_int_equal(rmdir(fx->dir), 0);
	hw_identity_wipe(&fx->a);
	hw_identity_wipe(&fx->b);
	free(fx);
	return 0;
}

/* ---- helpers ---- */

static struct hw_tp *a_tp(struct fx *fx)
{
	return hw_tp_manager_find(fx->ma, fx->b.pk, "tcp");
}

/* A's transport to B as JSON (new reference; fails without one). */
static json_t *a_json(struct fx *fx)
{
	struct hw_tp *tp = a_tp(fx);

	assert_non_null(tp);
	return hw_tp_to_json(tp);
}

static int a_up(struct fx *fx)
{
	return a_tp(fx) && hw_tp_is_up(a_tp(fx));
}

static uint64_t a_dial_failures(struct fx *fx)
{
	struct hw_tp_manager_stats st;

	hw_tp_manager_stats(fx->ma, &st);
	return st.handshakes_failed;
}

/* Whether the file at path holds needle. */
static int file_has(const char *path, const char *needle)
{
	char buf[8192];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* Adds A's persistent transport to B at the address nobody answers, and
 * waits for the lookup its first failed dial asks. */
static void add_and_wait_lookup(struct fx *fx)
{
	char err[256];

	assert_int_equal(hw_tp_manager_add(fx->ma, fx->b.pk, "tcp",
					   fx->refused, 1, NULL, NULL, err,
					   sizeof(err)),
			 0);
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick, fx->lookups == 1,
				      WAIT_MS));
	assert_memory_equal(fx->asked_pk, fx->b.pk, HW_PK_LEN);
	assert_string_equal(fx->asked_type, "tcp");
}

/* Answers addr, which must be ignored: A keeps its saved address and
 * notes why in last_error; then waits for the next failed dial's lookup
 * (the backoff went on). */
static void answer_ignored(struct fx *fx, const char *addr, const char *why)
{
	unsigned before = fx->lookups;
	json_t *j;

	hw_tp_manager_addr_found(fx->ma, fx->b.pk, "tcp", "discovery", 0,
				 addr, NULL);
	j = a_json(fx);
	assert_string_equal(hw_test_jstr(j, "addr"), fx->refused);
	assert_string_equal(hw_test_jstr(j, "state"), "waiting");
	if (!strstr(hw_test_jstr(j, "last_error"), why))
		fail_msg("last_error '%s' does not say '%s'",
			 hw_test_jstr(j, "last_error"), why);
	json_decref(j);
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick,
				      fx->lookups == before + 1, WAIT_MS));
}

/* ---- tests ---- */

/* Refused → one lookup, however many dials fail while it is out → the
 * new address replaces the saved one, in the state file too, and the
 * transport comes up there. */
static void test_moved_peer_found(void **state)
{
	struct fx *fx = *state;
	json_t *j;

	add_and_wait_lookup(fx);
	j = a_json(fx);
	assert_string_equal(hw_test_jstr(j, "state"), "waiting");
	assert_true(strstr(hw_test_jstr(j, "last_error"), fx->refused) != NULL);
	json_decref(j);
	/* More failed dials while the question is out ask nothing more. */
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick,
				      a_dial_failures(fx) >= 3, WAIT_MS));
	assert_int_equal(fx->lookups, 1);

	hw_tp_manager_addr_found(fx->ma, fx->b.pk, "tcp", "discovery", 0,
				 fx->b_listen, NULL);
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick, a_up(fx), WAIT_MS));
	/* B's end is up once it has read the last handshake message. */
	assert_true(HW_TEST_RUN_UNTIL(
		&fx->loop, &fx->tick,
		hw_tp_manager_find(fx->mb, fx->a.pk, "tcp") &&
			hw_tp_is_up(hw_tp_manager_find(fx->mb, fx->a.pk, "tcp")),
		WAIT_MS));
	j = a_json(fx);
	assert_string_equal(hw_test_jstr(j, "addr"), fx->b_listen);
	assert_true(json_is_true(json_object_get(j, "persistent")));
	assert_null(json_object_get(j, "last_error"));
	json_decref(j);
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick,
				      file_has(fx->state, fx->b_listen),
				      WAIT_MS));
	assert_false(file_has(fx->state, fx->refused));
	assert_int_equal(fx->lookups, 1);
}

/* The same address: no dial at once, the backoff goes on, and the next
 * failed dial asks again. */
static void test_same_address_backs_off(void **state)
{
	struct fx *fx = *state;
	uint64_t failures;

	add_and_wait_lookup(fx);
	failures = a_dial_failures(fx);
	answer_ignored(fx, fx->refused, "discovery: the same address");
	assert_true(a_dial_failures(fx) > failures);
	assert_false(a_up(fx));
}

/* A discovery answer is hostile input: malformed, wildcard, our own, or
 * unprintable addresses are ignored; an error is noted; then a good
 * answer still works. */
static void test_bad_answers_ignored(void **state)
{
	struct fx *fx = *state;
	char wildcard[64], *port = strrchr(fx->b_listen, ':');
	json_t *j;
	unsigned before;

	add_and_wait_lookup(fx);
	answer_ignored(fx, "not-an-address", "is not HOST:PORT");
	snprintf(wildcard, sizeof(wildcard), "0.0.0.0%s", port);
	answer_ignored(fx, wildcard, "is a wildcard address");
	answer_ignored(fx, fx->a_listen, "this visor's own address");
	answer_ignored(fx, "127.0.0.1:\x1b[2J1", "a byte 0x1b");
	answer_ignored(fx, "", "an empty address");

	before = fx->lookups;
	hw_tp_manager_addr_found(fx->ma, fx->b.pk, "tcp", "discovery",
				 -ENOENT, NULL, "the peer is not in discovery");
	j = a_json(fx);
	assert_true(strstr(hw_test_jstr(j, "last_error"),
			   "; discovery: the peer is not in discovery") != NULL);
	json_decref(j);
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick,
				      fx->lookups == before + 1, WAIT_MS));

	hw_tp_manager_addr_found(fx->ma, fx->b.pk, "tcp", "discovery", 0,
				 fx->b_listen, NULL);
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick, a_up(fx), WAIT_MS));
}

/* An answer after the transport was removed, or one nobody asked for,
 * changes nothing and dials nothing. */
static void test_late_answer_ignored(void **state)
{
	struct fx *fx = *state;
	struct hw_identity other;
	json_t *list;

	add_and_wait_lookup(fx);
	assert_int_equal(hw_tp_manager_remove(fx->ma, hw_tp_id_hex(a_tp(fx))),
			 0);
	hw_tp_manager_addr_found(fx->ma, fx->b.pk, "tcp", "discovery", 0,
				 fx->b_listen, NULL);
	assert_int_equal(hw_identity_generate(&other), 0);
	hw_tp_manager_addr_found(fx->ma, other.pk, "tcp", "discovery", 0,
				 fx->b_listen, NULL);
	hw_tp_manager_addr_found(fx->ma, fx->b.pk, "no such type",
				 "discovery", 0, fx->b_listen, NULL);
	hw_identity_wipe(&other);
	hw_test_run_for(&fx->loop, &fx->tick, 300);
	list = hw_tp_manager_list_json(fx->ma);
	assert_int_equal(json_array_size(list), 0);
	json_decref(list);
	list = hw_tp_manager_list_json(fx->mb);
	assert_int_equal(json_array_size(list), 0);
	json_decref(list);
	assert_false(file_has(fx->state, fx->b_listen));
	assert_int_equal(fx->lookups, 1);
}

/* An address given by hand while the question is out wins over the
 * answer, which is about the address before. */
static void test_given_address_wins(void **state)
{
	struct fx *fx = *state;
	char other[64], err[256];
	json_t *j;

	add_and_wait_lookup(fx);
	snprintf(other, sizeof(other), "127.0.0.1:%d", hw_test_free_port());
	assert_int_equal(hw_tp_manager_add(fx->ma, fx->b.pk, "tcp", other, 1,
					   NULL, NULL, err, sizeof(err)),
			 0);
	hw_tp_manager_addr_found(fx->ma, fx->b.pk, "tcp", "discovery", 0,
				 fx->b_listen, NULL);
	hw_test_run_for(&fx->loop, &fx->tick, 100);
	j = a_json(fx);
	assert_string_equal(hw_test_jstr(j, "addr"), other);
	json_decref(j);
	assert_false(a_up(fx));
}

/* A lookup that cannot be asked holds nothing up: the next failed dial
 * tries again. */
static void test_lookup_refused_asks_again(void **state)
{
	struct fx *fx = *state;

	fx->lookup_rc = -ENOTSUP;
	add_and_wait_lookup(fx);
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick, fx->lookups >= 3,
				      WAIT_MS));
	/* Nothing is out: an answer now is one nobody waits for. */
	hw_tp_manager_addr_found(fx->ma, fx->b.pk, "tcp", "discovery", 0,
				 fx->b_listen, NULL);
	hw_test_run_for(&fx->loop, &fx->tick, 100);
	assert_false(a_up(fx));
}

static void added(struct hw_tp_manager *m, struct hw_tp *tp, int status,
		  const char *msg, void *ud)
{
	struct fx *fx = ud;

	fx->added = 1;
	fx->add_status = status;
}

/* A transport that is not persistent just fails: nobody is asked. */
static void test_not_persistent_no_lookup(void **state)
{
	struct fx *fx = *state;
	char err[256];

	assert_int_equal(hw_tp_manager_add(fx->ma, fx->b.pk, "tcp",
					   fx->refused, 0, added, fx, err,
					   sizeof(err)),
			 0);
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick, fx->added,
				      WAIT_MS));
	assert_int_not_equal(fx->add_status, 0);
	hw_test_run_for(&fx->loop, &fx->tick, 200);
	assert_int_equal(fx->lookups, 0);
	assert_null(a_tp(fx));
}

/* Two ends with different keepalive intervals: A (300 ms) would find B
 * (60 s) silent past its 3 intervals, but its probe at 2 intervals gets
 * B's PONG at once, so the link stays up. */
static void test_slower_peer_kept(void **state)
{
	struct fx *fx = *state;
	struct hw_tp_manager_params p;
	char err[256];

	hw_tp_manager_free(fx->ma);
	hw_tp_manager_free(fx->mb);
	params(fx, &p, &fx->a, fx->a_listen);
	p.keepalive_ms = 300;
	assert_int_equal(hw_tp_manager_new(&fx->ma, &p, err, sizeof(err)), 0);
	params(fx, &p, &fx->b, fx->b_listen);
	p.keepalive_ms = 60000;
	assert_int_equal(hw_tp_manager_new(&fx->mb, &p, err, sizeof(err)), 0);
	assert_int_equal(hw_tp_manager_add(fx->ma, fx->b.pk, "tcp",
					   fx->b_listen, 0, added, fx, err,
					   sizeof(err)),
			 0);
	assert_true(HW_TEST_RUN_UNTIL(&fx->loop, &fx->tick, fx->added,
				      WAIT_MS));
	assert_int_equal(fx->add_status, 0);
	/* Ten of A's dead-after times. */
	hw_test_run_for(&fx->loop, &fx->tick, 3000);
	assert_true(a_up(fx));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_moved_peer_found, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_same_address_backs_off,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_answers_ignored,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_answer_ignored, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_given_address_wins,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_lookup_refused_asks_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_persistent_no_lookup,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_slower_peer_kept, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
