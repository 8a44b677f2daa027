/* Helpers shared by the unit tests and the benchmarks (not part of
 * hwcore: nothing here ships in a program). */
#ifndef HW_TESTS_SUPPORT_HWTEST_H
#define HW_TESTS_SUPPORT_HWTEST_H

#include <uv.h>

/* A loopback TCP port nobody listens on now (the transport manager and
 * the services want a fixed port, not 0). Returns the port or -1. */
int hw_test_free_port(void);

/* Runs loop until cond(arg) holds or ms pass, waking at least every 5 ms
 * through tick (an initialised timer the caller owns). Returns cond. */
int hw_test_run_until(uv_loop_t *loop, uv_timer_t *tick,
		      int (*cond)(void *), void *arg, unsigned ms);

#endif
