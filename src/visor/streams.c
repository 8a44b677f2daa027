/* The stream socket (docs/api.md "The stream socket"): LOCAL_DIR/
 * streams.sock, 0600, where `hopwire route listen` and `route dial` send
 * one request line (stream_req.c parses it) and then read and write a
 * route group's bytes; also the descriptors that route ends hand over
 * (hw_route_end_pipe), and the throughput tests that run in the visor. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "visor/routing_priv.h"

/* Bytes a stream client may have unread before its group is dropped. The
 * group's credit (HW_RGROUP_WINDOW) keeps a well-behaved sender below it;
 * this only bounds one that ignores credit. */
#define CLIENT_MAX_QUEUED (2 * HW_RGROUP_WINDOW + (1u << 20))
/* Stream socket connections at once (the socket is the owner's only). */
#define MAX_CLIENTS 16384

/* Sends the rest of a throughput test's zeros, as far as the group takes
 * them, then closes the group: its closed callback reports. */
static void test_send(struct client *c)
{
	static const uint8_t zeros[HW_RGROUP_MAX_PLAINTEXT];

	while (c->send_left > 0 && c->grp) {
		/* No more than the group sends at once: it never copies. */
		size_t n = hw_rgroup_room(c->grp->g);
		int rc;

		if (n == 0)
			return; /* group_writable goes on */
		if (n > sizeof(zeros))
			n = sizeof(zeros);
		if (n > c->send_left)
			n = (size_t)c->send_left;
		if ((rc = hw_rgroup_write(c->grp->g, zeros, n)))
			return; /* the group ended: group_closed reports */
		c->send_left -= n;
		c->test_bytes += n;
	}
	if (c->grp)
		hw_rgroup_close(c->grp->g);
}

/* The answer line of a throughput test whose group ended. */
static void test_report(struct client *c, int reason, const char *why)
{
	double s = c->test_t0 ? (double)(uv_hrtime() - c->test_t0) / 1e9 : 0;
	char msg[200];
	json_t *o;

	if (reason || (c->send_total && c->test_bytes < c->send_total)) {
		snprintf(msg, sizeof(msg), "route group ended after %llu "
			 "bytes: %s", (unsigned long long)c->test_bytes,
			 reason ? why : "closed early");
		o = json_pack("{s:s}", "error", msg);
	} else {
		o = json_pack("{s:b, s:I, s:f, s:f}", "ok", 1,
			      c->send_total ? "sent" : "received",
			      (json_int_t)c->test_bytes, "seconds", s,
			      "mbytes_per_s",
			      s > 0 ? (double)c->test_bytes / s / 1e6 : 0.0);
	}
	hw_streams_reply(c, o);
	json_decref(o);
}

/* A write to a stream client: the request, then the byte count and
 * whether they are group data (whose credit goes back to the sender once
 * the client took them), then the bytes. */
struct cwrite {
	uv_write_t req;
	size_t n;
	int data;
	uint8_t bytes[];
};

static void on_client_write(uv_write_t *w, int status)
{
	struct cwrite *cw = (struct cwrite *)w;
	struct client *c = w->data;

	c->queued -= cw->n;
	if (cw->data && status == 0 && c->grp)
		hw_rgroup_consumed(c->grp->g, cw->n);
	free(cw);
	/* A route end's descriptor whose group ended: closed once it has
	 * taken everything (or can take nothing more). */
	if (c->drain_close && (c->queued == 0 || status < 0))
		hw_streams_client_close(c);
}

static void client_write(struct client *c, const uint8_t *p, size_t len,
			 int data)
{
	struct cwrite *cw;
	uv_buf_t b;

	if (c->closing)
		return;
	if (c->queued == 0) {
		/* Nothing waits before these bytes: hand them to the kernel
		 * straight away, and copy only what it does not take. */
		int n;

		b = uv_buf_init((char *)p, (unsigned)len);
		n = uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
		if (n > 0) {
			if (data && c->grp)
				hw_rgroup_consumed(c->grp->g, (size_t)n);
			p += n;
			len -= (size_t)n;
			if (len == 0 || c->closing)
				return;
		}
	}
	if (!(cw = malloc(sizeof(*cw) + len))) {
		hw_streams_client_close(c);
		return;
	}
	cw->n = len;
	cw->data = data;
	memcpy(cw->bytes, p, len);
	b = uv_buf_init((char *)cw->bytes, (unsigned)len);
	cw->req.data = c;
	if (uv_write(&cw->req, (uv_stream_t *)&c->pipe, &b, 1,
		     on_client_write)) {
		free(cw);
		hw_streams_client_close(c);
		return;
	}
	c->queued += len;
}

static void client_send(struct client *c, const uint8_t *p, size_t len)
{
	client_write(c, p, len, 0);
}

static void on_client_shutdown(uv_shutdown_t *req, int status)
{
	struct client *c = req->data;

	free(req);
	hw_streams_client_close(c);
}

/* The group is gone: close c once what was written to it has been taken,
 * so the far end's last bytes are not lost. */
static void client_finish(struct client *c)
{
	if (c->closing)
		return;
	c->state = C_DONE;
	if (c->queued && !c->grp) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		if (c->endfd) {
			/* A shutdown would show the app end of file now; the
			 * app server's hold on the socket keeps it from seeing
			 * one until its Close frame has gone out. */
			c->drain_close = 1;
			return;
		}
		/* Made here, not kept in every client: once per client. */
		uv_shutdown_t *req = malloc(sizeof(*req));

		if (req) {
			req->data = c;
			if (uv_shutdown(req, (uv_stream_t *)&c->pipe,
					on_client_shutdown) == 0)
				return;
			free(req);
		}
	}
	hw_streams_client_close(c);
}

static void on_client_closed(uv_handle_t *h)
{
	struct client *c = h->data;
	struct hw_routing *rt = c->rt;

	for (struct client **pp = &rt->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	rt->nclients--;
	free(c->pend);
	free(c->line);
	free(c);
	hw_routing_unref(rt);
}

void hw_streams_client_close(struct client *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->state = C_DONE;
	if (c->grp) {
		struct group *gr = c->grp;
		gr->client = NULL;
		c->grp = NULL;
		hw_rgroup_close(gr->g);
	}
	for (struct dial *d = c->rt->dials; d; d = d->next)
		if (d->client == c)
			d->client = NULL;
	uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

void hw_streams_reply(struct client *c, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	if (s) {
		size_t n = strlen(s);
		s[n] = '\n';
		client_send(c, (uint8_t *)s, n + 1);
		free(s);
	}
}

static void reply_error(struct client *c, const char *msg)
{
	json_t *o = json_pack("{s:s}", "error", msg);
	hw_streams_reply(c, o);
	json_decref(o);
	hw_streams_client_close(c);
}

struct client *hw_streams_take_listener(struct hw_routing *rt, uint16_t port)
{
	for (struct client *c = rt->clients; c; c = c->next)
		if (c->state == C_LISTEN && c->port == port && !c->grp)
			return c;
	return NULL;
}

static int port_listened(struct hw_routing *rt, uint16_t port)
{
	for (struct client *c = rt->clients; c; c = c->next)
		if (c->state == C_LISTEN && c->port == port)
			return 1;
	return 0;
}

/* The request line of a client. */
static void client_request(struct client *c)
{
	struct hw_routing *rt = c->rt;
	struct hw_stream_req r;
	const uint8_t (*via)[HW_PK_LEN] = (const void *)r.via;
	uint16_t src_port;
	char err[300];
	int rc;

	rc = hw_stream_req_parse(c->line, c->linelen, &r, err, sizeof(err));
	/* The visor's own checks come before the request's late fields
	 * (hw_stream_req.late), and a dial that gets that far takes a local
	 * port, as they always have. */
	if (r.op == HW_STREAM_DIAL && (rc == 0 || r.late)) {
		src_port = hw_routing_ephemeral_port(rt);
		c->send_total = c->send_left = r.send;
		c->state = C_DIAL;
		if (rc == 0)
			rc = hw_routing_dial_start(rt, c, NULL, NULL, r.pk,
						   r.port, src_port, via,
						   r.nvia, err, sizeof(err));
		else /* its message, if it has one, replaces the parser's */
			hw_routing_dial_check(rt, r.pk, err, sizeof(err));
		if (rc)
			reply_error(c, err);
		return;
	}
	if (r.op == HW_STREAM_LISTEN && r.port && port_listened(rt, r.port)) {
		reply_error(c, "something already listens on that port");
		return;
	}
	if (rc) {
		reply_error(c, err);
		return;
	}
	c->discard = r.discard;
	c->state = C_LISTEN;
	c->port = r.port;
	json_t *o = json_pack("{s:b, s:i}", "ok", 1, "listening", (int)r.port);
	hw_streams_reply(c, o);
	json_decref(o);
}

static void on_client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char buf[65536]; /* one loop thread: consumed before reuse */
	struct client *c = h->data;
	size_t len = sizeof(buf);

	/* Read no more than the group seals at once, so the bytes go from
	 * here into the seal without a copy in between; the socket's own
	 * buffer holds the rest. */
	if (c->state == C_PIPE && c->grp) {
		size_t room = hw_rgroup_room(c->grp->g);
		if (room > 0 && room < len)
			len = room;
	}
	*b = uv_buf_init(buf, (unsigned)len);
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct client *c = s->data;
	const char *p = b->base;
	int rc;

	if (n < 0) {
		if (n == UV_EOF && c->state == C_PIPE && c->grp && !c->eof &&
		    !c->discard && !c->send_total) {
			/* The client has sent everything: the group closes,
			 * and the client still gets the far end's last bytes
			 * and, as end of file, the group's end (recorded
			 * first: hw_streams_closed). */
			c->eof = 1;
			uv_read_stop(s);
			hw_rgroup_close(c->grp->g);
			return;
		}
		hw_streams_client_close(c);
		return;
	}
	if (c->state == C_LINE) {
		const char *nl = memchr(p, '\n', (size_t)n);
		size_t take = nl ? (size_t)(nl - p) : (size_t)n;

		if (c->linelen + take >= HW_STREAM_REQ_MAX) {
			reply_error(c, "request line too long");
			return;
		}
		memcpy(c->line + c->linelen, p, take);
		c->linelen += take;
		if (!nl)
			return;
		client_request(c);
		if (!c->closing && take + 1 < (size_t)n)
			reply_error(c, "data before the route group is up");
		/* Held only while the request is read: a thousand open
		 * groups should not carry a kilobyte each for it. */
		free(c->line);
		c->line = NULL;
		/* Bytes after the line before the group is up are not
		 * wanted: the client waits for the answer line. */
		return;
	}
	if (c->state != C_PIPE || !c->grp) {
		if (n > 0 && c->state != C_DONE)
			reply_error(c, "data before the route group is up");
		return;
	}
	if (c->discard || c->send_total) {
		if (n > 0)
			reply_error(c, "a throughput test takes no data on "
				    "its connection");
		return;
	}
	rc = hw_rgroup_write(c->grp->g, (const uint8_t *)p, (size_t)n);
	if (rc == -ENOBUFS) {
		/* The group is full and took nothing: keep the bytes and
		 * read no more until it is writable. */
		if (!(c->pend = malloc((size_t)n))) {
			hw_streams_client_close(c);
			return;
		}
		memcpy(c->pend, p, (size_t)n);
		c->pend_len = (size_t)n;
		uv_read_stop(s);
		c->read_stopped = 1;
	} else if (rc) {
		hw_streams_client_close(c);
	} else if (hw_rgroup_room(c->grp->g) == 0) {
		/* Out of credit: wait for it rather than queue a copy. */
		uv_read_stop(s);
		c->read_stopped = 1;
	}
}

void hw_streams_read_start(struct client *c)
{
	uv_read_start((uv_stream_t *)&c->pipe, on_client_alloc,
		      on_client_read);
}

static void on_stream_connection(uv_stream_t *server, int status)
{
	struct hw_routing *rt = server->data;
	struct client *c;

	if (status < 0 || rt->closing || !(c = calloc(1, sizeof(*c))))
		return;
	if (rt->nclients >= MAX_CLIENTS) {
		/* Accepted and closed at once, so the backlog drains. */
		hw_log(HW_LOG_WARN, LOG, "stream socket: %u connections, "
		       "refusing more", rt->nclients);
		uv_pipe_init(rt->loop, &c->pipe, 0);
		c->pipe.data = c;
		c->rt = rt;
		c->closing = 1;
		rt->handles++;
		rt->nclients++; /* given back when its close completes */
		uv_accept(server, (uv_stream_t *)&c->pipe);
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
		return;
	}
	if (!(c->line = malloc(HW_STREAM_REQ_MAX))) {
		free(c);
		return;
	}
	c->rt = rt;
	uv_pipe_init(rt->loop, &c->pipe, 0);
	c->pipe.data = c;
	rt->handles++;
	rt->nclients++;
	if (uv_accept(server, (uv_stream_t *)&c->pipe)) {
		c->closing = 1;
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
		return;
	}
	c->next = rt->clients;
	rt->clients = c;
	hw_streams_read_start(c);
}

/* ---- a group's callbacks, for a group with a client ---- */

/* The far end of a group, "PK:PORT". */
static void peer_format(const struct hw_route_desc *d, int source,
			char out[HW_PK_HEXLEN + 8])
{
	char pk[HW_PK_HEXLEN + 1];

	hw_pk_format(source ? d->dst_pk : d->src_pk, pk);
	snprintf(out, HW_PK_HEXLEN + 8, "%s:%u", pk,
		 source ? d->dst_port : d->src_port);
}

void hw_streams_ready(struct client *c, const struct hw_route_desc *d,
		      int source)
{
	char peer[HW_PK_HEXLEN + 8];
	json_t *o;

	peer_format(d, source, peer);
	c->gid = ++c->rt->next_gid;
	o = json_pack("{s:b, s:s, s:I}", "ok", 1,
		      source ? "connected" : "accepted", peer, "group",
		      (json_int_t)c->gid);
	hw_streams_reply(c, o);
	json_decref(o);
	c->state = C_PIPE;
	if (c->send_total) {
		c->test_t0 = uv_hrtime();
		test_send(c);
	}
}

void hw_streams_data(struct client *c, struct hw_rgroup *g, const uint8_t *p,
		     size_t len)
{
	if (c->discard) {
		if (!c->test_t0)
			c->test_t0 = uv_hrtime();
		c->test_bytes += len;
		hw_rgroup_consumed(g, len);
		return;
	}
	if (c->queued + len > CLIENT_MAX_QUEUED) {
		hw_log(HW_LOG_WARN, LOG, "stream client not reading: dropping "
		       "its route group");
		hw_rgroup_abort(g, -ENOBUFS);
		return;
	}
	client_write(c, p, len, 1);
}

void hw_streams_writable(struct client *c, struct hw_rgroup *g)
{
	int rc;

	if (c->send_total) {
		test_send(c);
		return;
	}
	if (!c->read_stopped || c->eof)
		return;
	if (c->pend) {
		rc = hw_rgroup_write(g, c->pend, c->pend_len);
		if (rc == -ENOBUFS)
			return;
		free(c->pend);
		c->pend = NULL;
		if (rc) {
			hw_streams_client_close(c);
			return;
		}
	}
	c->read_stopped = 0;
	hw_streams_read_start(c);
}

/* Remembers how c's group ended, before c's connection closes. */
static void ended_add(struct hw_routing *rt, const struct client *c,
		      const struct hw_rgroup *g, int reason, const char *why)
{
	struct ended_group *e = &rt->ended[rt->ended_next];

	snprintf(e->why, sizeof(e->why), "%s", reason ? why : "");
	e->id = c->gid;
	e->at_ms = uv_now(rt->loop);
	e->reason = reason;
	e->source = hw_rgroup_initiator(g);
	peer_format(hw_rgroup_desc(g), e->source, e->peer);
	rt->ended_next = (rt->ended_next + 1) % HW_ROUTING_ENDED_KEPT;
	if (rt->ended_n < HW_ROUTING_ENDED_KEPT)
		rt->ended_n++;
}

static json_t *ended_json(const struct hw_routing *rt,
			  const struct ended_group *e)
{
	json_t *o = json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)e->id,
			      "peer", e->peer, "role",
			      e->source ? "initiator" : "responder", "ago_ms",
			      (json_int_t)(uv_now(rt->loop) - e->at_ms));

	if (o)
		json_object_set_new(o, "error",
				    e->reason ? json_string(e->why)
					      : json_null());
	return o;
}

json_t *hw_routing_ended_json(const struct hw_routing *rt, uint64_t id)
{
	const unsigned n = HW_ROUTING_ENDED_KEPT;
	json_t *a = id ? NULL : json_array();

	for (unsigned i = 0; i < rt->ended_n; i++) {
		const struct ended_group *e =
			&rt->ended[(rt->ended_next + n - 1 - i) % n];
		if (!id) {
			if (a)
				json_array_append_new(a, ended_json(rt, e));
		} else if (e->id == id) {
			return ended_json(rt, e);
		}
	}
	return a;
}

void hw_streams_closed(struct client *c, const struct hw_rgroup *g,
		       int reason, const char *why)
{
	if (!why || !why[0])
		why = reason ? hw_strerror(reason) : "closed";
	if (c->state != C_PIPE) {
		json_t *o = json_pack("{s:s}", "error", why);
		hw_streams_reply(c, o);
		json_decref(o);
	} else if (c->discard || c->send_total) {
		test_report(c, reason, why);
	} else if (!c->endfd) {
		ended_add(c->rt, c, g, reason, why);
	}
	client_finish(c);
}

int hw_streams_open_fd(struct hw_routing *rt, struct group *gr, int fd)
{
	struct client *c;
	int rc;

	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	if ((rc = uv_pipe_init(rt->loop, &c->pipe, 0))) {
		free(c);
		return rc;
	}
	c->pipe.data = c;
	c->rt = rt;
	rt->handles++;
	rt->nclients++;
	if ((rc = uv_pipe_open(&c->pipe, fd))) {
		c->closing = 1;
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
		return rc;
	}
	c->next = rt->clients;
	rt->clients = c;
	c->state = C_PIPE;
	c->endfd = 1;
	c->grp = gr;
	gr->client = c;
	hw_streams_read_start(c);
	return 0;
}

/* ---- the socket ---- */

static void on_server_closed(uv_handle_t *h)
{
	hw_routing_unref(h->data);
}

void hw_streams_init(struct hw_routing *rt)
{
	uv_pipe_init(rt->loop, &rt->server, 0);
	rt->server.data = rt;
	rt->handles++;
}

int hw_streams_listen(struct hw_routing *rt, const char *local_dir, char *err,
		      size_t errlen)
{
	int rc;

	snprintf(rt->sock_path, sizeof(rt->sock_path), "%s/streams.sock",
		 local_dir);
	unlink(rt->sock_path);
	if ((rc = uv_pipe_bind(&rt->server, rt->sock_path)) ||
	    (rc = uv_listen((uv_stream_t *)&rt->server, 16,
			    on_stream_connection))) {
		snprintf(err, errlen, "stream socket %s: %s", rt->sock_path,
			 uv_strerror(rc));
		return rc;
	}
	chmod(rt->sock_path, 0600);
	rt->listening = 1;
	return 0;
}

void hw_streams_close(struct hw_routing *rt)
{
	for (struct client *c = rt->clients; c; c = c->next)
		hw_streams_client_close(c);
	if (rt->listening)
		unlink(rt->sock_path);
	uv_close((uv_handle_t *)&rt->server, on_server_closed);
}
