/* Helpers shared by the unit tests and the benchmarks (not part of
 * hwcore: nothing here ships in a program). Nothing here needs cmocka:
 * the helpers return what happened and the caller asserts on it
 * (hwtest_assert.h has the few that assert themselves). */
#ifndef HW_TESTS_SUPPORT_HWTEST_H
#define HW_TESTS_SUPPORT_HWTEST_H

#include <stdint.h>
#include <uv.h>

#include "crypto/identity.h"

/* ---- sockets ---- */

/* A loopback TCP port nobody listens on now (the transport manager and
 * the services want a fixed port, not 0). Returns the port or -1. */
int hw_test_free_port(void);

/* ---- files ---- */

/* Removes dir and the files in it (one level: what the tests make). */
void hw_test_rm_tree(const char *dir);

/* Sleeps ms, whatever signals arrive. */
void hw_test_sleep_ms(unsigned ms);

/* ---- running a loop ---- */

/* Starts tick (an initialised timer the caller owns) waking the loop
 * every 5 ms, so that a loop run once at a time sees the clock move. */
void hw_test_tick_start(uv_timer_t *tick);

/* Evaluates to cond (any expression) after running loop one iteration at
 * a time until cond holds or ms pass, tick waking it (see above). For
 * conditions that are easier written in place than as a function. */
#define HW_TEST_RUN_UNTIL(loop, tick, cond, ms)                          \
	({                                                               \
		uint64_t hw_end_ = uv_now(loop) + (ms);                  \
		hw_test_tick_start(tick);                                \
		while (!(cond) && uv_now(loop) < hw_end_)                \
			uv_run((loop), UV_RUN_ONCE);                     \
		uv_timer_stop(tick);                                     \
		(cond);                                                  \
	})

/* Runs loop until cond(arg) holds or ms pass, waking at least every 5 ms
 * through tick (an initialised timer the caller owns). Returns cond. */
int hw_test_run_until(uv_loop_t *loop, uv_timer_t *tick,
		      int (*cond)(void *), void *arg, unsigned ms);

/* Runs loop for ms, whatever happens (hw_test_run_until with a condition
 * that never holds). */
void hw_test_run_for(uv_loop_t *loop, uv_timer_t *tick, unsigned ms);

/* Ends a test's loop as libuv's own tests do: runs it until nothing
 * keeps it alive (at most 10 s), then closes every handle still open
 * (naming each on stderr), runs it again and closes it. Returns 0 when
 * nothing was left, else the number of handles that were still open, or
 * uv_loop_close's error (negative) when even then it would not close.
 * The loop is closed (its memory may be freed) only when this returns
 * 0; assert that it does. */
int hw_test_loop_close(uv_loop_t *loop);

/* ---- test data ---- */

/* Byte i of the test pattern with seed: a stream whose bytes depend on
 * their offset, so a lost, doubled or reordered byte shows. */
static inline uint8_t hw_test_pattern(uint8_t seed, uint64_t i)
{
	return (uint8_t)((i * 131 + (i >> 9) * 7 + seed) ^ (i >> 17));
}

/* The next number of a xorshift64 sequence kept in *state (nonzero):
 * reproducible "random" numbers for tests that must fail the same way
 * every run. */
static inline uint64_t hw_test_xorshift(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/* ---- identities ---- */

/* A fresh identity and its X25519 private key. Returns 0 or the failing
 * call's negative code. */
int hw_test_identity(struct hw_identity *id, uint8_t x_priv[32]);

/* The identity whose seed is HW_SEED_LEN bytes of fill: the same keys
 * every run. Returns 0 or a negative code. */
int hw_test_identity_seeded(struct hw_identity *id, uint8_t fill);

#endif
