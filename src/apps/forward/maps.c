/* hopwire-forward's client side (fwd.h): a listener per mapping, one
 * muxlink per server visor shared by its mappings, and per accepted
 * connection the open request, the server's answer, then the relay. */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fwd.h"

/* Under fwd.mu: the peer for pk, made (and its link started) if new. */
static struct fwd_peer *peer_get(const char *pk, char *err, size_t errlen)
{
	struct hw_muxlink_params p = {.app = fwd.app, .npeers = 1,
				      .port = FWD_PORT, .log = LOG};
	struct fwd_peer *e;
	int rc;

	for (e = fwd.peers; e; e = e->next)
		if (!strcmp(e->pk, pk)) {
			e->refs++;
			return e;
		}
	if (!(e = calloc(1, sizeof(*e)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(e->pk, sizeof(e->pk), "%s", pk);
	p.peers = (const char (*)[HW_APP_PK_HEX + 1])e->pk;
	if ((rc = hw_muxlink_start(&e->link, &p))) {
		snprintf(err, errlen, "cannot start a link: %s", strerror(-rc));
		free(e);
		return NULL;
	}
	e->refs = 1;
	e->next = fwd.peers;
	fwd.peers = e;
	return e;
}

/* Under fwd.mu: the last user of a peer stops its link (which closes
 * once its relayed connections ended). */
static void peer_put(struct fwd_peer *e)
{
	struct fwd_peer **pp;

	if (!e || --e->refs)
		return;
	for (pp = &fwd.peers; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	hw_muxlink_stop(e->link);
	free(e);
}

static int listen_on(const char *where, char *err, size_t errlen)
{
	char addr[FWD_ADDR_MAX];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV |
					     AI_PASSIVE}, *res = NULL;
	char host[FWD_ADDR_MAX], port[8];
	int fd = -1, one = 1, rc;

	/* A copy: where and err may share a struct. */
	snprintf(addr, sizeof(addr), "%s", where);
	if (fwd_split_addr(addr, host, sizeof(host), port) ||
	    (rc = getaddrinfo(host, port, &hints, &res))) {
		snprintf(err, errlen, "%.200s is not ADDR:PORT with a numeric "
			 "address", addr);
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
		snprintf(err, errlen, "cannot listen on %.200s: %s", addr,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int same_map(const struct fwd_map *a, const struct fwd_map *b)
{
	return !strcmp(a->listen, b->listen) && !strcmp(a->pk, b->pk) &&
	       !strcmp(a->service, b->service);
}

void fwd_maps_apply(const struct fwd_settings *set)
{
	struct fwd_maprt next[FWD_MAPS_MAX];
	int keep[FWD_MAPS_MAX] = {0};

	pthread_mutex_lock(&fwd.mu);
	for (int i = 0; i < set->nmaps; i++) {
		struct fwd_maprt *n = &next[i];
		int old = -1;

		for (int k = 0; k < fwd.nmaps && old < 0; k++)
			if (same_map(&fwd.maps[k].m, &set->maps[i]))
				old = k;
		if (old >= 0) {
			/* Unchanged: its listener and link stay. */
			*n = fwd.maps[old];
			keep[old] = 1;
			continue;
		}
		memset(n, 0, sizeof(*n));
		n->m = set->maps[i];
		n->lfd = -1;
		/* A listener of a removed or changed mapping on the same
		 * address is closed first. */
		for (int k = 0; k < fwd.nmaps; k++)
			if (!keep[k] && fwd.maps[k].lfd >= 0 &&
			    !strcmp(fwd.maps[k].m.listen, n->m.listen)) {
				close(fwd.maps[k].lfd);
				fwd.maps[k].lfd = -1;
			}
		n->lfd = listen_on(n->m.listen, n->error, sizeof(n->error));
		if (n->lfd >= 0 &&
		    !(n->peer = peer_get(n->m.pk, n->error, sizeof(n->error)))) {
			close(n->lfd);
			n->lfd = -1;
		}
		if (n->lfd >= 0)
			fprintf(stderr, LOG ": %s -> %.16s/%s: listening\n",
				n->m.listen, n->m.pk, n->m.service);
		else
			fprintf(stderr, LOG ": %s -> %.16s/%s: %s\n",
				n->m.listen, n->m.pk, n->m.service, n->error);
	}
	for (int k = 0; k < fwd.nmaps; k++) {
		if (keep[k])
			continue;
		if (fwd.maps[k].lfd >= 0)
			close(fwd.maps[k].lfd);
		peer_put(fwd.maps[k].peer);
		fprintf(stderr, LOG ": %s: mapping removed (its open "
				"connections carry on)\n",
			fwd.maps[k].m.listen);
	}
	memcpy(fwd.maps, next, (size_t)set->nmaps * sizeof(next[0]));
	fwd.nmaps = set->nmaps;
	fwd.changed = 1;
	pthread_mutex_unlock(&fwd.mu);
}

struct client_job {
	int fd;
	struct fwd_map m;
	struct fwd_peer *peer; /* a reference held for the job */
};

static int parse_answer(const uint8_t *p, size_t n, void *out, size_t *used)
{
	return hw_fwd_parse_answer(p, n, out, used);
}

/* Asks the server for the service and relays on "ok"; closes the TCP
 * connection on any refusal, with the reason logged. */
static void client_serve(struct client_job *j)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct hw_fwd_request rq = {0};
	struct hw_fwd_answer an;
	struct hw_muxlink_status st;
	struct hw_muxlink_ref *ref = NULL;
	uint8_t out[HW_FWD_REQUEST_MAX], in[HW_FWD_ANSWER_MAX];
	struct fwd_conn *c;
	size_t len = 0, used, rq_len;
	int s = -1, rc;

	if (getpeername(j->fd, (struct sockaddr *)&ss, &sl) == 0)
		rq.client_port = ntohs(ss.ss_family == AF_INET6
			? ((struct sockaddr_in6 *)&ss)->sin6_port
			: ((struct sockaddr_in *)&ss)->sin_port);
	snprintf(rq.name, sizeof(rq.name), "%s", j->m.service);
	for (int tries = 0; tries < 2; tries++)
		if ((rc = hw_muxlink_open(j->peer->link, FWD_WAIT_MS, &s,
					  &ref)) != -EPIPE)
			break;
	if (rc) {
		hw_muxlink_status(j->peer->link, &st);
		fprintf(stderr, LOG ": %s -> %.16s/%s: no loop to the visor: "
				"%s\n", j->m.listen, j->m.pk, j->m.service,
			st.error[0] ? st.error : strerror(-rc));
		return;
	}
	rq_len = hw_fwd_build_request(out, &rq);
	rc = fwd_write_all(s, out, rq_len);
	if (!rc)
		rc = fwd_read_msg(s, in, sizeof(in), &len,
				  fwd_now_ms() + FWD_ANSWER_MS, parse_answer,
				  &an, &used);
	if (rc || an.status != HW_FWD_OK) {
		fprintf(stderr, LOG ": %s -> %.16s/%s: %s%s%s\n", j->m.listen,
			j->m.pk, j->m.service,
			rc == -ETIMEDOUT ? "no answer within 15 s"
			: rc		 ? "the server closed the stream "
					   "before answering"
					 : hw_fwd_status_str(an.status),
			!rc && an.msg[0] ? ": " : "", !rc ? an.msg : "");
		close(s);
		hw_muxlink_put(ref);
		return;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		close(s);
		hw_muxlink_put(ref);
		return;
	}
	c->client_side = 1;
	snprintf(c->client_pk, sizeof(c->client_pk), "%s", fwd.pk);
	snprintf(c->server_pk, sizeof(c->server_pk), "%s", j->m.pk);
	snprintf(c->service, sizeof(c->service), "%s", j->m.service);
	snprintf(c->listen, sizeof(c->listen), "%s", j->m.listen);
	c->client_port = rq.client_port;
	c->service_port = an.service_port;
	c->hdr_sent = (unsigned)rq_len;
	c->hdr_received = (unsigned)used;
	/* What came behind the answer (the service may speak first) is in
	 * the stream still: only the answer was read. */
	if (len > used)
		fwd_write_all(j->fd, in + used, len - used);
	if (fwd_conn_relay(c, ref, NULL, s, j->fd) == 0)
		j->fd = -1;
	hw_muxlink_put(ref);
}

static void *client_thread(void *arg)
{
	struct client_job *j = arg;

	client_serve(j);
	if (j->fd >= 0)
		close(j->fd);
	pthread_mutex_lock(&fwd.mu);
	peer_put(j->peer);
	fwd.pending--;
	pthread_mutex_unlock(&fwd.mu);
	free(j);
	return NULL;
}

void fwd_maps_accept(int i)
{
	struct client_job *j;
	pthread_t t;
	int fd;

	if ((fd = accept4(fwd.maps[i].lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return;
	pthread_mutex_lock(&fwd.mu);
	if (fwd.nconns + fwd.pending >= FWD_CONNS_MAX) {
		pthread_mutex_unlock(&fwd.mu);
		fprintf(stderr, LOG ": %s: %d connections open already: "
				"closing a new one\n", fwd.maps[i].m.listen,
			FWD_CONNS_MAX);
		close(fd);
		return;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		pthread_mutex_unlock(&fwd.mu);
		close(fd);
		return;
	}
	j->fd = fd;
	j->m = fwd.maps[i].m;
	j->peer = fwd.maps[i].peer;
	j->peer->refs++;
	fwd.pending++;
	pthread_mutex_unlock(&fwd.mu);
	if (pthread_create(&t, &fwd_thread_attr, client_thread, j)) {
		close(fd);
		pthread_mutex_lock(&fwd.mu);
		peer_put(j->peer);
		fwd.pending--;
		pthread_mutex_unlock(&fwd.mu);
		free(j);
	}
}
