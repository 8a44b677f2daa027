/* The visor's control API server: libmicrohttpd on a UNIX socket, every
 * request handled on the libuv loop.
 *
 * Threads. libmicrohttpd (MHD) runs its own polling thread; it reads a
 * request, suspends the connection and queues a struct hw_api_req for the
 * loop (uv_async). The loop calls the handler; hw_api_reply() stores the
 * serialised answer in the request and resumes the connection; MHD then
 * calls the access handler again, which queues the stored answer.
 *
 * Lifetime of a request. A request is shared by the two threads and freed
 * by whichever lets go of it last; the count and every field written
 * after the hand-over are under srv->mu:
 *  - the MHD reference is taken when the access handler first sees the
 *    request and dropped in the request-completed callback, which also
 *    clears req->conn: the connection is gone from then on;
 *  - the loop reference is taken when the request is queued for the loop
 *    (req->live is set, it sits on srv->live) and dropped by
 *    hw_api_reply() or by hw_api_server_free() (503).
 * The access handler suspends the connection before it queues the
 * request, under mu, so the loop only ever resumes a connection that is
 * suspended, once, and only while req->conn is set. MHD neither times out
 * nor notices a disconnect on a suspended connection, so in practice the
 * loop reference goes first; a client that left is noticed after the
 * resume and its request freed in the completed callback. If MHD ever
 * finishes a request first, req->conn is NULL and the loop's reply only
 * frees it.
 *
 * Stopping. MHD_stop_daemon() must not find suspended connections, and
 * new ones must not be suspended once it runs: hw_api_server_free() sets
 * srv->stopping under mu (the access handler then answers 503 itself),
 * answers every request the loop holds 503 and resumes it, waits a
 * moment for those answers to go out, then stops MHD. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include "visor/api_server.h"

#include "util/buf.h"

/* Bounds on what one local client can make the server hold. */
#define HW_API_MAX_CONNECTIONS 64
#define HW_API_TIMEOUT_S 30
/* A body over HW_API_MAX_BODY is read and dropped up to this many bytes
 * so that the client gets its 413 (one announced bigger is answered at
 * once); past it the connection is closed. */
#define HW_API_MAX_DISCARD (16 * HW_API_MAX_BODY)
#define HW_API_MAX_QUERY 32
#define HW_API_MAX_ERROR 512
/* How long hw_api_server_free() lets the 503 answers of pending requests
 * go out before it stops MHD. */
#define HW_API_STOP_WAIT_NS (250ull * 1000 * 1000)

static const char oom_body[] = "{\"error\":\"out of memory\"}";

struct hw_api_server {
	uv_loop_t *loop;
	uv_async_t async;
	struct MHD_Daemon *mhd;
	hw_api_handler_fn handler;
	void *ud;
	char *path;
	dev_t dev;         /* of the socket file we bound, to unlink only it */
	ino_t ino;
	bool closing;      /* loop thread only: hw_api_server_free() ran */

	uv_mutex_t mu;
	uv_cond_t cond;    /* signalled when stop_waiting drops */
	/* Under mu: */
	struct hw_api_req *live_head, *live_tail;
	unsigned stop_waiting;
	bool stopping;
};

struct hw_api_req {
	struct hw_api_server *srv;

	/* MHD thread only, before the hand-over. */
	struct hw_capped upload; /* the body, capped at HW_API_MAX_BODY */

	/* Set before the hand-over, read-only afterwards. */
	char *method;
	char *path;
	json_t *body;      /* freed by the loop side */
	json_t *query;     /* object of strings, freed by the loop side */

	/* Under srv->mu. */
	struct MHD_Connection *conn;   /* NULL once MHD completed the request */
	struct hw_api_req *prev, *next;/* on srv->live */
	unsigned refs;
	bool live;         /* the loop holds a reference */
	bool delivered;    /* the handler has seen it */
	bool answered;     /* status and resp are set */
	bool stop_wait;    /* hw_api_server_free() waits for its completion */
	unsigned status;
	char *resp;        /* JSON text, NULL when out of memory */
	size_t resp_len;
};

/* Error bodies carry text from the network (jansson quotes the input);
 * jansson refuses strings that are not UTF-8, so those bytes become '?'. */
static json_t *error_object(const char *msg)
{
	json_t *s = json_string(msg);

	if (!s) {
		char clean[HW_API_MAX_ERROR];
		size_t i;

		for (i = 0; msg[i] && i < sizeof(clean) - 1; i++)
			clean[i] = (unsigned char)msg[i] < 0x80 ? msg[i] : '?';
		clean[i] = '\0';
		s = json_string(clean);
	}
	if (!s)
		return NULL;
	return json_pack("{s:o}", "error", s);
}

/* Serialises body (NULL: {}) into a malloc'ed string; NULL when out of
 * memory or when body cannot be encoded. */
static char *dump_body(json_t *body, size_t *len)
{
	char *text;

	if (!body)
		text = strdup("{}");
	else
		text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	*len = text ? strlen(text) : 0;
	return text;
}

static char *dump_error(const char *msg, size_t *len)
{
	json_t *o = error_object(msg);
	char *text = o ? dump_body(o, len) : NULL;

	json_decref(o);
	return text;
}

static enum MHD_Result queue_text(struct MHD_Connection *conn,
				  unsigned status, const char *text,
				  size_t len, bool close)
{
	struct MHD_Response *r;
	enum MHD_Result ret = MHD_NO;

	if (!text) {
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		text = oom_body;
		len = sizeof(oom_body) - 1;
	}
	r = MHD_create_response_from_buffer(len, (void *)text,
					    MHD_RESPMEM_MUST_COPY);
	if (!r)
		goto out;
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				    "application/json") != MHD_YES)
		goto out;
	if (close && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION,
					     "close") != MHD_YES)
		goto out;
	ret = MHD_queue_response(conn, status, r);
out:
	if (r)
		MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result queue_error(struct MHD_Connection *conn,
				   unsigned status, bool close,
				   const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum MHD_Result queue_error(struct MHD_Connection *conn,
				   unsigned status, bool close,
				   const char *fmt, ...)
{
	char msg[HW_API_MAX_ERROR];
	enum MHD_Result ret;
	va_list ap;
	size_t len;
	char *text;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	text = dump_error(msg, &len);
	ret = queue_text(conn, status, text, len, close);
	free(text);
	return ret;
}

static void req_free(struct hw_api_req *req)
{
	if (!req)
		return;
	hw_buf_reset(&req->upload.body);
	free(req->method);
	free(req->path);
	json_decref(req->body);
	json_decref(req->query);
	free(req->resp);
	free(req);
}

/* Drops one reference; returns true when the caller must free req (after
 * unlocking). Called with srv->mu held. */
static bool req_unref_locked(struct hw_api_req *req)
{
	return --req->refs == 0;
}

static void live_remove_locked(struct hw_api_server *srv,
			       struct hw_api_req *req)
{
	if (req->prev)
		req->prev->next = req->next;
	else
		srv->live_head = req->next;
	if (req->next)
		req->next->prev = req->prev;
	else
		srv->live_tail = req->prev;
	req->prev = req->next = NULL;
	req->live = false;
}

/* Whether a Content-Length value (MHD checked it is a number) is over
 * max. */
static bool body_length_over(const char *cl, unsigned long max)
{
	size_t digits = 0;

	while (*cl == '0')
		cl++;
	while (cl[digits] >= '0' && cl[digits] <= '9')
		digits++;
	if (digits > 9)
		return true;
	return strtoul(cl, NULL, 10) > max;
}

static enum MHD_Result copy_query(void *cls, enum MHD_ValueKind kind,
				  const char *key, const char *value)
{
	json_t *query = cls;
	json_t *v;

	if (json_object_size(query) >= HW_API_MAX_QUERY)
		return MHD_NO;
	/* The first of repeated parameters wins; names or values that are
	 * not UTF-8 are left out (jansson refuses them). */
	if (!key || json_object_get(query, key))
		return MHD_YES;
	v = json_string(value ? value : "");
	if (v)
		json_object_set_new(query, key, v);
	return MHD_YES;
}

/* The request is complete: parse it and hand it to the loop. */
static enum MHD_Result req_submit(struct hw_api_server *srv,
				  struct hw_api_req *req,
				  struct MHD_Connection *conn, const char *url,
				  const char *method)
{
	json_error_t jerr;
	bool stopping;

	if (req->upload.too_big)
		return queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, false,
				   "request body exceeds %d bytes",
				   HW_API_MAX_BODY);
	if (req->upload.body.len) {
		req->body = json_loadb(req->upload.body.data, req->upload.body.len,
				       JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
				       &jerr);
		if (!req->body)
			return queue_error(conn, MHD_HTTP_BAD_REQUEST, false,
					   "request body is not JSON: %s",
					   jerr.text);
		hw_buf_reset(&req->upload.body);
	}
	req->method = strdup(method);
	req->path = strdup(url);
	req->query = json_object();
	if (!req->method || !req->path || !req->query)
		return queue_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
				  0, false);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, copy_query,
				  req->query);

	uv_mutex_lock(&srv->mu);
	stopping = srv->stopping;
	if (!stopping) {
		/* Suspended before the loop can see it: the loop's resume
		 * never precedes this suspend. */
		MHD_suspend_connection(conn);
		req->refs++;
		req->live = true;
		req->prev = srv->live_tail;
		if (srv->live_tail)
			srv->live_tail->next = req;
		else
			srv->live_head = req;
		srv->live_tail = req;
	}
	uv_mutex_unlock(&srv->mu);
	if (stopping)
		return queue_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, true,
				   "the visor is shutting down");
	/* The async handle is closed only after MHD_stop_daemon() has
	 * joined this thread. */
	uv_async_send(&srv->async);
	return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
				 const char *url, const char *method,
				 const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct hw_api_server *srv = cls;
	struct hw_api_req *req = *con_cls;
	const char *cl;
	bool answered;

	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		req->srv = srv;
		req->conn = conn;
		req->refs = 1;
		req->upload.max = HW_API_MAX_BODY;
		req->upload.max_discard = HW_API_MAX_DISCARD;
		*con_cls = req;
		/* Far too big to read: refused at once, and MHD closes the
		 * connection after the answer. A client still sending may
		 * see the close (EPIPE) before the answer, so bodies up to
		 * HW_API_MAX_DISCARD are read and dropped instead. */
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && body_length_over(cl, HW_API_MAX_DISCARD))
			return queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE,
					   true, "request body exceeds %d bytes",
					   HW_API_MAX_BODY);
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (!hw_capped_append(&req->upload, upload_data,
				      *upload_data_size))
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}

	uv_mutex_lock(&srv->mu);
	answered = req->answered;
	uv_mutex_unlock(&srv->mu);
	if (!answered)
		return req_submit(srv, req, conn, url, method);
	/* Resumed: the loop answered; resp and status no longer change. */
	return queue_text(conn, req->status, req->resp, req->resp_len,
			  req->stop_wait);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
			 void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct hw_api_server *srv = cls;
	struct hw_api_req *req = *con_cls;
	bool last;

	if (!req)
		return;
	*con_cls = NULL;
	uv_mutex_lock(&srv->mu);
	req->conn = NULL;
	if (req->stop_wait) {
		req->stop_wait = false;
		srv->stop_waiting--;
		uv_cond_signal(&srv->cond);
	}
	last = req_unref_locked(req);
	uv_mutex_unlock(&srv->mu);
	if (last)
		req_free(req);
}

/* Loop thread: hands queued requests to the handler one at a time, so
 * that a handler may reply, or even free the server, as it likes. */
static void on_async(uv_async_t *h)
{
	struct hw_api_server *srv = h->data;
	struct hw_api_req *req;

	while (!srv->closing) {
		uv_mutex_lock(&srv->mu);
		for (req = srv->live_head; req && req->delivered;
		     req = req->next)
			;
		if (req)
			req->delivered = true;
		uv_mutex_unlock(&srv->mu);
		if (!req)
			break;
		/* req stays valid: only hw_api_reply() or
		 * hw_api_server_free() drop the loop's reference. */
		srv->handler(req, req->method, req->path, req->body, srv->ud);
	}
}

/* Stores the answer, resumes the connection and drops the loop's
 * reference (freeing req when MHD is already done with it). stop: called
 * by hw_api_server_free() with srv->mu held, which waits for the answer
 * to go out; otherwise srv->mu is taken here. */
static void req_answer(struct hw_api_req *req, unsigned status, char *resp,
		       size_t resp_len, bool stop)
{
	struct hw_api_server *srv = req->srv;
	json_t *body = req->body, *query = req->query;
	bool last;

	/* The loop side's JSON is released here, on the loop thread. */
	req->body = NULL;
	req->query = NULL;
	if (!stop)
		uv_mutex_lock(&srv->mu);
	live_remove_locked(srv, req);
	req->status = status;
	req->resp = resp;
	req->resp_len = resp_len;
	req->answered = true;
	if (req->conn) {
		if (stop) {
			req->stop_wait = true;
			srv->stop_waiting++;
		}
		MHD_resume_connection(req->conn);
	}
	last = req_unref_locked(req);
	if (!stop)
		uv_mutex_unlock(&srv->mu);
	if (last)
		req_free(req);
	json_decref(body);
	json_decref(query);
}

void hw_api_reply(struct hw_api_req *req, unsigned status, json_t *body)
{
	size_t len = 0;
	char *text;

	if (!req)
		return;
	if (status < 100 || status > 599) {
		text = dump_error("handler answered an invalid HTTP status",
				  &len);
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	} else {
		text = dump_body(body, &len);
		if (!text && body) {
			text = dump_error("cannot encode the answer as JSON",
					  &len);
			status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		}
	}
	req_answer(req, status, text, len, false);
}

void hw_api_reply_error(struct hw_api_req *req, unsigned status,
			const char *fmt, ...)
{
	char msg[HW_API_MAX_ERROR];
	json_t *o;
	va_list ap;

	if (!req)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = error_object(msg);
	if (o) {
		hw_api_reply(req, status, o);
		json_decref(o);
	} else {
		req_answer(req, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0,
			   false);
	}
}

const char *hw_api_query(struct hw_api_req *req, const char *name)
{
	if (!req || !req->query || !name)
		return NULL;
	return json_string_value(json_object_get(req->query, name));
}

/* Binds and listens on path with mode 0600. A socket file that nobody
 * answers on is a leftover and replaced; anything else is left alone. */
static int listen_unix(const char *path, int *out, dev_t *dev, ino_t *ino)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(path);
	struct stat st;
	int fd = -1, probe = -1, rc;

	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, n + 1);

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			rc = -EEXIST;
			goto out;
		}
		/* Non-blocking: a live server with a full backlog says
		 * EAGAIN instead of blocking the loop. */
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
					SOCK_NONBLOCK, 0);
		if (probe < 0) {
			rc = -errno;
			goto out;
		}
		if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
		    errno == EAGAIN || errno == EINPROGRESS) {
			rc = -EADDRINUSE;
			goto out;
		}
		if (errno != ECONNREFUSED && errno != ENOENT) {
			rc = -errno;
			goto out;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			rc = -errno;
			goto out;
		}
	} else if (errno != ENOENT) {
		rc = -errno;
		goto out;
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	/* Linux creates the file with the socket inode's mode (less the
	 * umask): nobody else can connect between bind and chmod. */
	if (fchmod(fd, 0600) < 0) {
		rc = -errno;
		goto out;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		goto out;
	}
	if (chmod(path, 0600) < 0 || lstat(path, &st) < 0 ||
	    listen(fd, HW_API_MAX_CONNECTIONS) < 0) {
		rc = -errno;
		unlink(path);
		goto out;
	}
	*dev = st.st_dev;
	*ino = st.st_ino;
	*out = fd;
	fd = -1;
	rc = 0;
out:
	if (probe >= 0)
		close(probe);
	if (fd >= 0)
		close(fd);
	return rc;
}

static void on_close(uv_handle_t *h)
{
	struct hw_api_server *srv = h->data;

	uv_cond_destroy(&srv->cond);
	uv_mutex_destroy(&srv->mu);
	free(srv->path);
	free(srv);
}

/* Removes the socket file if it is still the one we bound. */
static void unlink_own(struct hw_api_server *srv)
{
	struct stat st;

	if (lstat(srv->path, &st) == 0 && st.st_dev == srv->dev &&
	    st.st_ino == srv->ino)
		unlink(srv->path);
}

int hw_api_server_new(struct hw_api_server **out, uv_loop_t *loop,
		      const char *socket_path, hw_api_handler_fn handler,
		      void *ud)
{
	struct hw_api_server *srv = NULL;
	int fd = -1, rc;
	bool sync_init = false, cond_init = false;

	if (!out || !loop || !socket_path || !handler)
		return -EINVAL;
	*out = NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	srv->handler = handler;
	srv->ud = ud;
	srv->path = strdup(socket_path);
	if (!srv->path) {
		rc = -ENOMEM;
		goto out;
	}
	rc = uv_mutex_init(&srv->mu);
	if (rc < 0)
		goto out;
	sync_init = true;
	rc = uv_cond_init(&srv->cond);
	if (rc < 0)
		goto out;
	cond_init = true;
	rc = listen_unix(socket_path, &fd, &srv->dev, &srv->ino);
	if (rc < 0)
		goto out;
	rc = uv_async_init(loop, &srv->async, on_async);
	if (rc < 0) {
		unlink_own(srv);
		goto out;
	}
	srv->async.data = srv;

	/* No MHD_USE_ERROR_LOG: library code never prints. */
	srv->mhd = MHD_start_daemon(
		MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0,
		NULL, NULL, on_access, srv,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_CONNECTION_LIMIT,
		(unsigned int)HW_API_MAX_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HW_API_TIMEOUT_S,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		MHD_OPTION_END);
	if (!srv->mhd) {
		/* The handle is initialised: it goes through uv_close, and
		 * on_close frees srv on the next loop turn. */
		rc = -EIO;
		close(fd);
		unlink_own(srv);
		srv->closing = true;
		uv_close((uv_handle_t *)&srv->async, on_close);
		return rc;
	}
	*out = srv;
	srv = NULL;
	fd = -1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (srv) {
		if (cond_init)
			uv_cond_destroy(&srv->cond);
		if (sync_init)
			uv_mutex_destroy(&srv->mu);
		free(srv->path);
		free(srv);
	}
	return rc;
}

void hw_api_server_free(struct hw_api_server *srv)
{
	uint64_t deadline;

	if (!srv || srv->closing)
		return;
	srv->closing = true;

	uv_mutex_lock(&srv->mu);
	srv->stopping = true;
	while (srv->live_head) {
		struct hw_api_req *req = srv->live_head;
		size_t len = 0;
		char *text = dump_error("the visor is shutting down", &len);

		req_answer(req, MHD_HTTP_SERVICE_UNAVAILABLE, text, len, true);
	}
	/* Bounded: the answers are small and go out at once unless the
	 * client stopped reading. */
	deadline = uv_hrtime() + HW_API_STOP_WAIT_NS;
	while (srv->stop_waiting) {
		uint64_t now = uv_hrtime();

		if (now >= deadline ||
		    uv_cond_timedwait(&srv->cond, &srv->mu, deadline - now))
			break;
	}
	uv_mutex_unlock(&srv->mu);

	/* Joins the MHD thread; every request left is completed (and
	 * freed) in on_completed before it returns. */
	MHD_stop_daemon(srv->mhd);
	srv->mhd = NULL;
	unlink_own(srv);
	uv_close((uv_handle_t *)&srv->async, on_close);
}
