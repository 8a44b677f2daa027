/* hopwire-forward's server side (fwd.h): each loop from another visor is
 * a mux; each of its streams asks for a service, gets an answer, and on
 * "ok" is relayed to a new TCP connection to the service. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fwd.h"

/* A loop's mux and the threads that use it: the last one frees it. */
struct muxref {
	struct hw_app_mux *mux;
	atomic_int refs;
	char pk[HW_APP_PK_HEX + 1]; /* the client visor */
};

struct stream_job {
	int s;
	struct muxref *mr;
};

static void muxref_put(struct muxref *r)
{
	if (atomic_fetch_sub(&r->refs, 1) == 1) {
		hw_app_mux_free(r->mux);
		free(r);
	}
}

static int parse_request(const uint8_t *p, size_t n, void *out, size_t *used)
{
	return hw_fwd_parse_request(p, n, out, used);
}

/* Sends the answer; its length. */
static size_t answer(int s, uint8_t status, uint16_t port, const char *msg)
{
	uint8_t out[HW_FWD_ANSWER_MAX];
	size_t n = hw_fwd_build_answer(out, status, port, msg);

	fwd_write_all(s, out, n);
	return n;
}

/* One stream: the request, the checks, the connect, the answer, the
 * relay. Returns 1 when the stream was taken by a relay. */
static int serve_stream(int s, struct muxref *mr)
{
	uint8_t in[HW_FWD_REQUEST_MAX];
	struct hw_fwd_request rq;
	struct fwd_service v;
	const struct fwd_service *found = NULL;
	struct fwd_conn *c;
	char why[512];
	uint8_t status = HW_FWD_OK;
	size_t len = 0, used;
	int rc, sock, busy;

	rc = fwd_read_msg(s, in, sizeof(in), &len,
			  fwd_now_ms() + FWD_WAIT_MS, parse_request, &rq, &used);
	if (rc == -EPROTO || rc == -EINVAL) {
		answer(s, HW_FWD_MALFORMED, 0, rc == -EPROTO
		       ? "not forward protocol version 1"
		       : "the service name is not 1..32 characters of a-z 0-9 "
			 ". _ -");
		fprintf(stderr, LOG ": %.16s: malformed open request\n", mr->pk);
		return 0;
	}
	if (rc) {
		fprintf(stderr, LOG ": %.16s: %s before an open request\n",
			mr->pk, rc == -ETIMEDOUT ? "nothing complete within 10 s"
						 : "the stream ended");
		return 0;
	}
	pthread_mutex_lock(&fwd.mu);
	if (fwd.set && (found = fwd_service_find(fwd.set, rq.name)))
		v = *found;
	busy = fwd.nconns + fwd.pending >= FWD_CONNS_MAX;
	pthread_mutex_unlock(&fwd.mu);
	if (!found) {
		snprintf(why, sizeof(why), "no service '%s' is exposed at %.16s",
			 rq.name, fwd.pk);
		status = HW_FWD_NO_SERVICE;
	} else if (!fwd_service_allows(&v, mr->pk)) {
		snprintf(why, sizeof(why), "visor %.16s may not use '%s'",
			 mr->pk, rq.name);
		status = HW_FWD_NOT_ALLOWED;
	} else if (busy) {
		snprintf(why, sizeof(why), "%d connections open already",
			 FWD_CONNS_MAX);
		status = HW_FWD_BUSY;
	}
	if (status != HW_FWD_OK) {
		answer(s, status, 0, why);
		fprintf(stderr, LOG ": %.16s (port %u): refused: %s\n", mr->pk,
			rq.client_port, why);
		return 0;
	}
	if ((sock = fwd_connect(v.host, v.port, FWD_WAIT_MS, &status, why,
				sizeof(why))) < 0) {
		answer(s, status, 0, why);
		fprintf(stderr, LOG ": %.16s (port %u) -> %s: %s: %s\n", mr->pk,
			rq.client_port, rq.name, hw_fwd_status_str(status), why);
		return 0;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		answer(s, HW_FWD_BUSY, 0, "out of memory");
		close(sock);
		return 0;
	}
	snprintf(c->client_pk, sizeof(c->client_pk), "%s", mr->pk);
	snprintf(c->server_pk, sizeof(c->server_pk), "%s", fwd.pk);
	snprintf(c->service, sizeof(c->service), "%s", rq.name);
	c->client_port = rq.client_port;
	c->service_port = (uint16_t)atoi(v.port);
	c->hdr_sent = (unsigned)answer(s, HW_FWD_OK, c->service_port, "");
	c->hdr_received = (unsigned)used;
	/* Bytes that came behind the request go first. */
	if (len > used && fwd_write_all(sock, in + used, len - used)) {
		free(c);
		close(sock);
		return 0;
	}
	if (fwd_conn_relay(c, NULL, mr->mux, s, sock))
		close(sock);
	return 1;
}

static void *stream_thread(void *arg)
{
	struct stream_job *j = arg;

	if (!serve_stream(j->s, j->mr))
		close(j->s);
	pthread_mutex_lock(&fwd.mu);
	fwd.pending--;
	pthread_mutex_unlock(&fwd.mu);
	muxref_put(j->mr);
	free(j);
	return NULL;
}

static void *loop_thread(void *arg)
{
	struct muxref *mr = arg;
	struct stream_job *j;
	pthread_t t;
	int s, rc;

	while ((rc = hw_app_mux_accept(mr->mux, &s, -1)) != -EPIPE) {
		if (rc)
			continue;
		if (!(j = calloc(1, sizeof(*j)))) {
			close(s);
			continue;
		}
		j->s = s;
		j->mr = mr;
		atomic_fetch_add(&mr->refs, 1);
		pthread_mutex_lock(&fwd.mu);
		fwd.pending++;
		pthread_mutex_unlock(&fwd.mu);
		if (pthread_create(&t, &fwd_thread_attr, stream_thread, j)) {
			pthread_mutex_lock(&fwd.mu);
			fwd.pending--;
			pthread_mutex_unlock(&fwd.mu);
			close(s);
			muxref_put(mr);
			free(j);
		}
	}
	fprintf(stderr, LOG ": %.16s: the loop ended: %s\n", mr->pk,
		hw_app_mux_error(mr->mux) ? hw_app_mux_error(mr->mux)
					  : "closed");
	muxref_put(mr);
	return NULL;
}

void fwd_serve_loop(const struct hw_app_loop *loop)
{
	struct muxref *mr;
	pthread_t t;
	int rc;

	if (!(mr = calloc(1, sizeof(*mr))) ||
	    (rc = hw_app_mux_new(&mr->mux, loop->fd, 0))) {
		fprintf(stderr, LOG ": %.16s: cannot start a mux: closing its "
				"loop\n", loop->remote_pk);
		hw_app_loop_close(loop->fd);
		free(mr);
		return;
	}
	atomic_init(&mr->refs, 1);
	snprintf(mr->pk, sizeof(mr->pk), "%s", loop->remote_pk);
	if (pthread_create(&t, &fwd_thread_attr, loop_thread, mr)) {
		fprintf(stderr, LOG ": %.16s: cannot start a thread: closing "
				"its loop\n", mr->pk);
		muxref_put(mr);
	}
}
