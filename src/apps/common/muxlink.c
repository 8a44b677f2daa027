/* An app's link to a peer app (muxlink.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "muxlink.h"

#define DIAL_MS 10000
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 5000

/* One loop to one peer, shared by the connections on it. */
struct hw_muxlink_ref {
	struct hw_app_mux *mux;
	int peer;
	atomic_int refs; /* the keeper's while current, one per open */
};

struct hw_muxlink {
	struct hw_app *app;
	char peers[HW_MUXLINK_PEERS_MAX][HW_APP_PK_HEX + 1];
	int npeers;
	uint16_t port;
	char log[64];
	int wake; /* eventfd: stop, for the keeper waiting on a mux */
	pthread_mutex_t mu;
	pthread_cond_t link_cv;   /* the keeper -> openers: cur changed */
	pthread_cond_t demand_cv; /* openers -> the keeper: one waits */
	struct hw_muxlink_ref *cur; /* NULL while there is no link */
	int demand, stop;
	int openers; /* threads inside hw_muxlink_open */
	struct hw_muxlink_status st;
};

const char *hw_muxlink_state_str(enum hw_muxlink_state s)
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

void hw_muxlink_put(struct hw_muxlink_ref *ref)
{
	if (atomic_fetch_sub(&ref->refs, 1) == 1) {
		hw_app_mux_free(ref->mux);
		free(ref);
	}
}

/* Dials the peers from *first on; the new link, or NULL with the reason
 * in x->st.error. */
static struct hw_muxlink_ref *dial(struct hw_muxlink *x, int *first)
{
	char why[sizeof(x->st.error)] = "";

	for (int k = 0; k < x->npeers; k++) {
		int i = (*first + k) % x->npeers, rc;
		struct hw_muxlink_ref *r;
		struct hw_app_loop loop;

		rc = hw_app_dial(x->app, x->peers[i], x->port, &loop, DIAL_MS);
		if (rc) {
			snprintf(why, sizeof(why), "%.16s: %s", x->peers[i],
				 rc == -ECONNREFUSED ? hw_app_last_error(x->app)
						     : strerror(-rc));
			fprintf(stderr, "%s: %s\n", x->log, why);
			continue;
		}
		if (!(r = calloc(1, sizeof(*r))) ||
		    (rc = hw_app_mux_new(&r->mux, loop.fd, 1))) {
			snprintf(why, sizeof(why), "cannot start a mux: %s",
				 strerror(r ? -rc : ENOMEM));
			fprintf(stderr, "%s: %s\n", x->log, why);
			hw_app_loop_close(loop.fd);
			free(r);
			continue;
		}
		r->peer = i;
		atomic_init(&r->refs, 1);
		*first = i;
		fprintf(stderr, "%s: %s: up (one loop for all connections)\n",
			x->log, x->peers[i]);
		return r;
	}
	pthread_mutex_lock(&x->mu);
	snprintf(x->st.error, sizeof(x->st.error), "%s", why);
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

/* Until the link's mux ends, or a stop with no stream left. The peer
 * never opens streams: one that comes is closed. */
static void wait_end(struct hw_muxlink *x, struct hw_muxlink_ref *r)
{
	struct pollfd pfd[2] = {
		{.fd = hw_app_mux_fd(r->mux), .events = POLLIN},
		{.fd = x->wake, .events = POLLIN}};
	struct hw_app_mux_stats ms;
	int s, rc, stop;

	for (;;) {
		pthread_mutex_lock(&x->mu);
		stop = x->stop;
		pthread_mutex_unlock(&x->mu);
		if (stop) {
			hw_app_mux_stats(r->mux, &ms);
			if (!ms.streams)
				return;
		}
		/* Stopping: look again each second for the last stream. */
		if (poll(pfd, stop ? 1 : 2, stop ? 1000 : -1) < 0 &&
		    errno != EINTR)
			return;
		while ((rc = hw_app_mux_accept(r->mux, &s, 0)) == 0)
			close(s);
		if (rc == -EPIPE)
			return;
	}
}

/* Under x->mu: waits *retry ms, less when a connection asks for a link or
 * a stop comes, and doubles *retry up to its maximum. */
static void retry_wait(struct hw_muxlink *x, long *retry)
{
	struct timespec ts;

	deadline_in(&ts, *retry);
	while (!x->demand && !x->stop &&
	       pthread_cond_timedwait(&x->demand_cv, &x->mu, &ts) !=
		       ETIMEDOUT)
		;
	x->demand = 0;
	if (x->st.state == HW_MUXLINK_DOWN)
		x->st.state = HW_MUXLINK_DIALING;
	*retry = *retry * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : *retry * 2;
}

/* After a stop: the keeper's last act. Openers have been told -EPIPE;
 * refs they hold need only themselves. */
static void link_free(struct hw_muxlink *x)
{
	pthread_mutex_lock(&x->mu);
	while (x->openers)
		pthread_cond_wait(&x->link_cv, &x->mu);
	pthread_mutex_unlock(&x->mu);
	close(x->wake);
	pthread_cond_destroy(&x->link_cv);
	pthread_cond_destroy(&x->demand_cv);
	pthread_mutex_destroy(&x->mu);
	free(x);
}

static void *keeper(void *arg)
{
	struct hw_muxlink *x = arg;
	long retry = RETRY_MIN_MS;
	int first = 0;

	for (;;) {
		struct hw_muxlink_ref *r;
		struct timespec ts, up;
		struct hw_app_mux_stats ms;

		pthread_mutex_lock(&x->mu);
		if (x->stop) {
			pthread_mutex_unlock(&x->mu);
			break;
		}
		pthread_mutex_unlock(&x->mu);
		if (!(r = dial(x, &first))) {
			pthread_mutex_lock(&x->mu);
			x->st.state = HW_MUXLINK_DOWN;
			retry_wait(x, &retry);
			pthread_mutex_unlock(&x->mu);
			continue;
		}
		pthread_mutex_lock(&x->mu);
		x->cur = r;
		x->st.state = HW_MUXLINK_UP;
		x->st.peer = r->peer;
		x->st.links++;
		x->st.error[0] = '\0';
		pthread_cond_broadcast(&x->link_cv);
		pthread_mutex_unlock(&x->mu);

		clock_gettime(CLOCK_MONOTONIC, &up);
		wait_end(x, r);
		clock_gettime(CLOCK_MONOTONIC, &ts);

		hw_app_mux_stats(r->mux, &ms);
		pthread_mutex_lock(&x->mu);
		x->st.sent += ms.sent;
		x->st.received += ms.received;
		x->cur = NULL;
		x->st.state = HW_MUXLINK_DIALING;
		if (!x->stop) {
			snprintf(x->st.error, sizeof(x->st.error),
				 "the loop to %.16s ended: %s",
				 x->peers[r->peer],
				 hw_app_mux_error(r->mux)
					 ? hw_app_mux_error(r->mux)
					 : "closed");
			fprintf(stderr, "%s: %s; dialing again\n", x->log,
				x->st.error);
			/* A peer that takes the loop and ends it at once
			 * (one that refuses us) is not dialed again in a
			 * tight loop. */
			if (ts.tv_sec - up.tv_sec < 2)
				retry_wait(x, &retry);
			else
				retry = RETRY_MIN_MS;
		}
		pthread_mutex_unlock(&x->mu);
		hw_muxlink_put(r);
	}
	link_free(x);
	return NULL;
}

int hw_muxlink_start(struct hw_muxlink **out,
		     const struct hw_muxlink_params *p)
{
	struct hw_muxlink *x;
	pthread_condattr_t ca;
	pthread_attr_t ta;
	pthread_t t;
	int rc;

	*out = NULL;
	if (!p->app || p->npeers < 0 || p->npeers > HW_MUXLINK_PEERS_MAX ||
	    !p->port)
		return -EINVAL;
	if (!(x = calloc(1, sizeof(*x))))
		return -ENOMEM;
	if ((x->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		rc = -errno;
		free(x);
		return rc;
	}
	x->app = p->app;
	x->npeers = p->npeers;
	x->port = p->port;
	snprintf(x->log, sizeof(x->log), "%s", p->log ? p->log : "muxlink");
	memcpy(x->peers, p->peers, (size_t)p->npeers * sizeof(x->peers[0]));
	x->st.peer = -1;
	x->st.state = p->npeers ? HW_MUXLINK_DIALING : HW_MUXLINK_IDLE;
	pthread_mutex_init(&x->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&x->link_cv, &ca);
	pthread_cond_init(&x->demand_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (!p->npeers) {
		/* Nothing to keep: x lives until hw_muxlink_stop. */
		*out = x;
		return 0;
	}
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&ta, 256 * 1024);
	rc = pthread_create(&t, &ta, keeper, x);
	pthread_attr_destroy(&ta);
	if (rc) {
		link_free(x);
		return -rc;
	}
	*out = x;
	return 0;
}

int hw_muxlink_open(struct hw_muxlink *x, int timeout_ms, int *fd,
		    struct hw_muxlink_ref **ref)
{
	struct hw_muxlink_ref *r = NULL;
	struct timespec ts;
	int rc = 0;

	if (!x->npeers)
		return -ENOENT;
	deadline_in(&ts, timeout_ms);
	pthread_mutex_lock(&x->mu);
	x->openers++;
	while (!x->cur && !x->stop && !rc) {
		if (!x->demand) {
			x->demand = 1;
			pthread_cond_signal(&x->demand_cv);
		}
		if (pthread_cond_timedwait(&x->link_cv, &x->mu, &ts) ==
			    ETIMEDOUT &&
		    !x->cur)
			rc = -ETIMEDOUT;
	}
	if (!rc && x->stop)
		rc = -EPIPE;
	if (!rc) {
		r = x->cur;
		atomic_fetch_add(&r->refs, 1);
	}
	/* The last opener out lets a stopped link be freed. */
	if (!--x->openers && x->stop)
		pthread_cond_broadcast(&x->link_cv);
	pthread_mutex_unlock(&x->mu);
	if (rc)
		return rc;
	if ((rc = hw_app_mux_open(r->mux, fd))) {
		hw_muxlink_put(r);
		return rc;
	}
	*ref = r;
	return 0;
}

int hw_muxlink_relay(struct hw_muxlink_ref *ref, int fd, int sock,
		     struct hw_app_mux_watch *watch)
{
	return hw_app_mux_relay(ref->mux, fd, sock, watch);
}

void hw_muxlink_status(struct hw_muxlink *x, struct hw_muxlink_status *st)
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

void hw_muxlink_stop(struct hw_muxlink *x)
{
	uint64_t one = 1;
	int idle;

	pthread_mutex_lock(&x->mu);
	x->stop = 1;
	idle = !x->npeers;
	pthread_cond_broadcast(&x->demand_cv);
	pthread_cond_broadcast(&x->link_cv);
	if (write(x->wake, &one, sizeof(one)) < 0) {
		/* an eventfd counter cannot overflow here */
	}
	pthread_mutex_unlock(&x->mu);
	if (idle)
		link_free(x);
}
