/* The client's link to its exits (client_link.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client_link.h"

#define SOCKS_PORT 3
#define DIAL_MS 10000
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 5000

/* One loop to one exit, shared by the connections on it. */
struct hw_exitlink_ref {
	struct hw_app_mux *mux;
	int exit;
	int refs; /* the keeper's while it is current, and one per stream */
};

struct hw_exitlink {
	struct hw_app *app;
	char exits[HW_EXITLINK_EXITS_MAX][HW_APP_PK_HEX + 1];
	int nexits;
	pthread_mutex_t mu;
	pthread_cond_t link_cv;   /* the keeper -> connections: cur changed */
	pthread_cond_t demand_cv; /* connections -> the keeper: one waits */
	struct hw_exitlink_ref *cur; /* NULL while there is no link */
	int demand;
	struct hw_exitlink_status st;
};

const char *hw_exitlink_state_str(enum hw_exitlink_state s)
{
	static const char *const names[] = {"idle", "dialing", "up", "down"};

	return (unsigned)s < 4 ? names[s] : "?";
}

static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void put_locked(struct hw_exitlink_ref *r, struct hw_app_mux **free_me)
{
	*free_me = --r->refs == 0 ? r->mux : NULL;
}

void hw_exitlink_put(struct hw_exitlink *x, struct hw_exitlink_ref *ref)
{
	struct hw_app_mux *dead;

	pthread_mutex_lock(&x->mu);
	put_locked(ref, &dead);
	pthread_mutex_unlock(&x->mu);
	if (dead) {
		hw_app_mux_free(dead);
		free(ref);
	}
}

/* Dials the exits from *first on; the new link, or NULL with the reason
 * in x->st.error. */
static struct hw_exitlink_ref *dial(struct hw_exitlink *x, int *first)
{
	char why[sizeof(x->st.error)] = "";

	for (int k = 0; k < x->nexits; k++) {
		int i = (*first + k) % x->nexits, rc;
		struct hw_exitlink_ref *r;
		struct hw_app_loop loop;

		rc = hw_app_dial(x->app, x->exits[i], SOCKS_PORT, &loop,
				 DIAL_MS);
		if (rc) {
			snprintf(why, sizeof(why), "exit %.16s: %s", x->exits[i],
				 rc == -ECONNREFUSED ? hw_app_last_error(x->app)
						     : strerror(-rc));
			fprintf(stderr, "hopwire-socks-client: %s\n", why);
			continue;
		}
		if (!(r = calloc(1, sizeof(*r))) ||
		    (rc = hw_app_mux_new(&r->mux, loop.fd, 1))) {
			snprintf(why, sizeof(why), "cannot start a mux: %s",
				 strerror(r ? -rc : ENOMEM));
			fprintf(stderr, "hopwire-socks-client: %s\n", why);
			hw_app_loop_close(loop.fd);
			free(r);
			continue;
		}
		r->exit = i;
		r->refs = 1;
		*first = i;
		fprintf(stderr, "hopwire-socks-client: exit %s: up (one loop "
				"for all connections)\n", x->exits[i]);
		return r;
	}
	pthread_mutex_lock(&x->mu);
	snprintf(x->st.error, sizeof(x->st.error), "%s", why);
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

/* Until the link's mux ends. The exit never opens streams: one that
 * comes is closed. */
static void wait_end(struct hw_exitlink_ref *r)
{
	struct pollfd pfd = {.fd = hw_app_mux_fd(r->mux), .events = POLLIN};
	int s, rc;

	for (;;) {
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return;
		while ((rc = hw_app_mux_accept(r->mux, &s, 0)) == 0)
			close(s);
		if (rc == -EPIPE)
			return;
	}
}

/* Under x->mu: waits *retry ms, less when a connection asks for a link,
 * and doubles *retry up to its maximum. */
static void retry_wait(struct hw_exitlink *x, long *retry)
{
	struct timespec ts;

	deadline_in(&ts, *retry);
	while (!x->demand &&
	       pthread_cond_timedwait(&x->demand_cv, &x->mu, &ts) !=
		       ETIMEDOUT)
		;
	x->demand = 0;
	if (x->st.state == HW_EXITLINK_DOWN)
		x->st.state = HW_EXITLINK_DIALING;
	*retry = *retry * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : *retry * 2;
}

static void *keeper(void *arg)
{
	struct hw_exitlink *x = arg;
	long retry = RETRY_MIN_MS;
	int first = 0;

	for (;;) {
		struct hw_exitlink_ref *r = dial(x, &first);
		struct hw_app_mux *dead;
		struct timespec ts, up;

		pthread_mutex_lock(&x->mu);
		if (!r) {
			x->st.state = HW_EXITLINK_DOWN;
			retry_wait(x, &retry);
			pthread_mutex_unlock(&x->mu);
			continue;
		}
		x->cur = r;
		x->st.state = HW_EXITLINK_UP;
		x->st.exit = r->exit;
		x->st.links++;
		x->st.error[0] = '\0';
		pthread_cond_broadcast(&x->link_cv);
		pthread_mutex_unlock(&x->mu);

		clock_gettime(CLOCK_MONOTONIC, &up);
		wait_end(r);
		clock_gettime(CLOCK_MONOTONIC, &ts);

		pthread_mutex_lock(&x->mu);
		snprintf(x->st.error, sizeof(x->st.error), "the loop to exit "
			 "%.16s ended: %s", x->exits[r->exit],
			 hw_app_mux_error(r->mux) ? hw_app_mux_error(r->mux)
						  : "closed");
		fprintf(stderr, "hopwire-socks-client: %s; dialing again\n",
			x->st.error);
		{
			struct hw_app_mux_stats ms;

			hw_app_mux_stats(r->mux, &ms);
			x->st.sent += ms.sent;
			x->st.received += ms.received;
		}
		x->cur = NULL;
		x->st.state = HW_EXITLINK_DIALING;
		put_locked(r, &dead);
		/* An exit that takes the loop and ends it at once (one that
		 * refuses us) is not dialed again in a tight loop. */
		if (ts.tv_sec - up.tv_sec < 2)
			retry_wait(x, &retry);
		else
			retry = RETRY_MIN_MS;
		pthread_mutex_unlock(&x->mu);
		if (dead) {
			hw_app_mux_free(dead);
			free(r);
		}
	}
	return NULL;
}

int hw_exitlink_start(struct hw_exitlink **out, struct hw_app *app,
		      const char (*exits)[HW_APP_PK_HEX + 1], int nexits)
{
	struct hw_exitlink *x;
	pthread_condattr_t ca;
	pthread_attr_t ta;
	pthread_t t;
	int rc;

	*out = NULL;
	if (nexits < 0 || nexits > HW_EXITLINK_EXITS_MAX)
		return -EINVAL;
	if (!(x = calloc(1, sizeof(*x))))
		return -ENOMEM;
	x->app = app;
	x->nexits = nexits;
	memcpy(x->exits, exits, (size_t)nexits * sizeof(x->exits[0]));
	x->st.exit = -1;
	x->st.state = nexits ? HW_EXITLINK_DIALING : HW_EXITLINK_IDLE;
	pthread_mutex_init(&x->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&x->link_cv, &ca);
	pthread_cond_init(&x->demand_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (nexits) {
		pthread_attr_init(&ta);
		pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&ta, 256 * 1024);
		rc = pthread_create(&t, &ta, keeper, x);
		pthread_attr_destroy(&ta);
		if (rc) {
			pthread_cond_destroy(&x->link_cv);
			pthread_cond_destroy(&x->demand_cv);
			pthread_mutex_destroy(&x->mu);
			free(x);
			return -rc;
		}
	}
	/* The keeper runs for the life of the process: x is never freed. */
	*out = x;
	return 0;
}

int hw_exitlink_open(struct hw_exitlink *x, int timeout_ms, int *fd,
		     struct hw_exitlink_ref **ref)
{
	struct hw_exitlink_ref *r = NULL;
	struct timespec ts;
	int rc;

	if (!x->nexits)
		return -ENOENT;
	deadline_in(&ts, timeout_ms);
	pthread_mutex_lock(&x->mu);
	while (!x->cur) {
		if (!x->demand) {
			x->demand = 1;
			pthread_cond_signal(&x->demand_cv);
		}
		if (pthread_cond_timedwait(&x->link_cv, &x->mu, &ts) ==
			    ETIMEDOUT &&
		    !x->cur) {
			pthread_mutex_unlock(&x->mu);
			return -ETIMEDOUT;
		}
	}
	r = x->cur;
	r->refs++;
	pthread_mutex_unlock(&x->mu);
	if ((rc = hw_app_mux_open(r->mux, fd))) {
		hw_exitlink_put(x, r);
		return rc;
	}
	*ref = r;
	return 0;
}

int hw_exitlink_relay(struct hw_exitlink_ref *ref, int fd, int sock)
{
	return hw_app_mux_relay(ref->mux, fd, sock);
}

void hw_exitlink_status(struct hw_exitlink *x, struct hw_exitlink_status *st)
{
	struct hw_app_mux_stats ms = {0};

	pthread_mutex_lock(&x->mu);
	*st = x->st;
	if (x->cur)
		hw_app_mux_stats(x->cur->mux, &ms);
	pthread_mutex_unlock(&x->mu);
	st->sent += ms.sent;
	st->received += ms.received;
	st->streams = ms.streams;
}
