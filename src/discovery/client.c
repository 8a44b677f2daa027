/* The discovery client (client.h).
 *
 * Threads. Every request is a uv_work_t: the pool thread signs (writes),
 * saves the sequence number, performs the HTTP exchange with its own curl
 * easy handle and parses the answer; after_work delivers the outcome on
 * the loop. The loop thread owns the client's lists and counters; the
 * pool only touches its own request, the client's read-only fields (url,
 * identity, seq_path) and last_seq, which only the one running write
 * uses (uv_queue_work and after_work order one write after the next).
 *
 * Writes wait in a FIFO and go to the pool one at a time, so a later
 * sequence number never reaches the server first. Reads go to the pool at
 * once.
 *
 * Lifetime. hw_disc_client_free() drops queued writes, cancels pool work
 * that has not started (its after_work sees UV_ECANCELED) and marks the
 * client freed; requests already running finish, their after_work frees
 * them without calling back, and the last one frees the client. A
 * request being delivered counts as running until its callback returns,
 * so a callback may free the client.
 *
 * Outcome codes: 2xx is 0; 400 -EINVAL, 401 -EACCES, 403 -EPERM,
 * 404 -ENOENT, 413 -E2BIG, other HTTP answers -EPROTO; no connection
 * -ECONNREFUSED, a timeout -ETIMEDOUT, other transfer failures -EIO; an
 * answer over HW_DISC_MAX_RESPONSE -EMSGSIZE. http_status is the HTTP
 * code whenever the server answered, 0 when it did not. */
#include "discovery/client.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/statefile.h"

#define HW_DISC_CONNECT_TIMEOUT_MS 5000L
#define HW_DISC_TIMEOUT_MS 15000L
#define HW_DISC_MAX_RESPONSE (4 * 1024 * 1024)
#define HW_DISC_MAX_QUEUED_WRITES 256
#define HW_DISC_MAX_READS 256
#define HW_DISC_URL_MAX 1024
#define HW_DISC_PATH_MAX 2048
#define HW_DISC_MSG_MAX 1024
/* Bytes of the server's error text passed on. */
#define HW_DISC_SERVER_TEXT_MAX 512

struct req {
	uv_work_t work;
	struct hw_disc_client *c;
	struct req *prev, *next; /* c->running, or next on c->queue */
	bool write;
	const char *method;
	char *path;
	struct hw_disc_entry e; /* writes: signer, seq, ts, sig set in pool */
	hw_disc_cb cb;
	void *ud;

	/* Outcome, written in the pool. */
	int status;
	int http_status;
	json_t *resp;
	char msg[HW_DISC_MSG_MAX];
};

struct hw_disc_client {
	uv_loop_t *loop;
	char *url;      /* without a trailing '/' */
	char *seq_path; /* NULL: not persisted */
	/* A copy, so a request still running after hw_disc_client_free()
	 * never reads the caller's identity; wiped at release. */
	struct hw_identity id;
	uint64_t last_seq; /* the running write only */

	struct req *qhead, *qtail; /* writes waiting */
	unsigned nqueued;
	struct req *writing;       /* the write in the pool */
	struct req *running;       /* everything in the pool */
	unsigned nrunning, nreads;
	bool freed;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int bad(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int bad(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static void fail(struct req *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct req *r, int status, const char *fmt, ...)
{
	va_list ap;

	r->status = status;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
}

static bool url_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* Text from the server, made printable and short for a message. */
static void clean_text(const char *s, size_t len, char *out, size_t cap)
{
	size_t i;

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
			   s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	for (i = 0; i < len && i < cap - 1; i++)
		out[i] = (unsigned char)s[i] >= 0x20 &&
				 (unsigned char)s[i] <= 0x7e
			 ? s[i]
			 : '?';
	out[i] = '\0';
}

/* ---- sequence numbers ---- */

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Reads the last sequence number from path: a decimal number and
 * optional trailing whitespace; a missing file is 0. */
static int load_seq(const char *path, uint64_t *last, char *err,
		    size_t errlen)
{
	char buf[64], *p = buf;
	uint64_t v = 0;
	FILE *f;
	size_t n;
	int rc;

	*last = 0;
	if (!(f = fopen(path, "r"))) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		return bad(err, errlen, rc, "discovery: cannot read %s: %s",
			   path, strerror(-rc));
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	rc = ferror(f) ? -EIO : 0;
	fclose(f);
	if (rc)
		return bad(err, errlen, rc, "discovery: cannot read %s", path);
	buf[n] = '\0';
	if (n == sizeof(buf) - 1 || !(*p >= '0' && *p <= '9'))
		goto garbage;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX - (uint64_t)(*p - '0')) / 10)
			goto garbage;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	for (; *p == '\n' || *p == '\r' || *p == ' ' || *p == '\t'; p++)
		;
	if (*p || p != buf + n)
		goto garbage;
	*last = v;
	return 0;
garbage:
	return bad(err, errlen, -EINVAL,
		   "discovery: %s: not a sequence number (a decimal number "
		   "up to 2^63-1)",
		   path);
}

/* ---- the pool side ---- */

static int curl_status(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	default:
		return -EIO;
	}
}

static int http_status(long code)
{
	switch (code) {
	case 400:
		return -EINVAL;
	case 401:
		return -EACCES;
	case 403:
		return -EPERM;
	case 404:
		return -ENOENT;
	case 413:
		return -E2BIG;
	default:
		return -EPROTO;
	}
}

/* A 4xx/5xx answer: the server's {"error": "..."} text when it sent one. */
static void http_error(struct req *r, long code, const struct hw_buf *body)
{
	char text[HW_DISC_SERVER_TEXT_MAX];
	json_t *j = NULL, *e;

	if (body->len)
		j = json_loadb(body->data, body->len, 0, NULL);
	e = json_object_get(j, "error");
	if (json_is_string(e))
		clean_text(json_string_value(e), json_string_length(e), text,
			   sizeof(text));
	else if (body->len)
		clean_text(body->data, body->len, text, sizeof(text));
	else
		snprintf(text, sizeof(text), "no error text");
	json_decref(j);
	fail(r, http_status(code), "discovery: %ld: %s", code, text);
}

static void perform(struct req *r, const char *body)
{
	struct hw_disc_client *c = r->c;
	char url[HW_DISC_URL_MAX + HW_DISC_PATH_MAX + 1];
	char cerr[CURL_ERROR_SIZE] = "";
	struct hw_capped rb = {.max = HW_DISC_MAX_RESPONSE};
	struct curl_slist *hdrs = NULL;
	json_error_t jerr;
	CURL *h = NULL;
	CURLcode cc;
	long code = 0;

	snprintf(url, sizeof(url), "%s%s", c->url, r->path);
	if (!(h = curl_easy_init())) {
		fail(r, -ENOMEM, "discovery: cannot initialise libcurl");
		goto out;
	}
	/* After the first append the head stays hdrs. */
	hdrs = curl_slist_append(NULL, "Accept: application/json");
	if (!hdrs || !curl_slist_append(hdrs, "Expect:") ||
	    (body &&
	     !curl_slist_append(hdrs, "Content-Type: application/json"))) {
		fail(r, -ENOMEM, "discovery: out of memory");
		goto out;
	}
	if (curl_easy_setopt(h, CURLOPT_URL, url) ||
	    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) ||
	    /* Answers come from the configured server, not from a proxy a
	     * daemon's environment happens to name. */
	    curl_easy_setopt(h, CURLOPT_PROXY, "") ||
#if LIBCURL_VERSION_NUM >= 0x075500
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") ||
#endif
	    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) ||
	    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			     HW_DISC_CONNECT_TIMEOUT_MS) ||
	    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, HW_DISC_TIMEOUT_MS) ||
	    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr) ||
	    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION,
			     hw_capped_curl_write) ||
	    curl_easy_setopt(h, CURLOPT_WRITEDATA, &rb) ||
	    (body ? curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method) ||
			    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body) ||
			    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
					     (curl_off_t)strlen(body))
		  : curl_easy_setopt(h, CURLOPT_HTTPGET, 1L))) {
		fail(r, -EIO, "discovery: cannot set up a request to %s", url);
		goto out;
	}
	cc = curl_easy_perform(h);
	if (cc == CURLE_WRITE_ERROR && rb.too_big) {
		fail(r, -EMSGSIZE, "discovery: %s: answer over %d bytes", url,
		     HW_DISC_MAX_RESPONSE);
		goto out;
	}
	if (cc == CURLE_WRITE_ERROR && rb.oom) {
		fail(r, -ENOMEM, "discovery: out of memory");
		goto out;
	}
	if (cc != CURLE_OK) {
		fail(r, curl_status(cc), "discovery: cannot reach %s: %s", url,
		     cerr[0] ? cerr : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	r->http_status = (int)code;
	if (code < 200 || code > 299) {
		http_error(r, code, &rb.body);
		goto out;
	}
	if (rb.body.len &&
	    !(r->resp = json_loadb(rb.body.data, rb.body.len, 0, &jerr))) {
		fail(r, -EPROTO, "discovery: %s: answer is not JSON: %s", url,
		     jerr.text);
		goto out;
	}
	r->status = 0;
out:
	if (h)
		curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	hw_buf_reset(&rb.body);
}

/* Numbers, saves and signs a write; its JSON text in *body. */
static int prepare_write(struct req *r, char **body)
{
	struct hw_disc_client *c = r->c;
	char text[32];
	uint64_t seq, now = now_us();
	json_t *j;
	int rc;

	if (c->last_seq >= INT64_MAX) {
		fail(r, -EOVERFLOW, "discovery: sequence numbers exhausted");
		return r->status;
	}
	seq = now > c->last_seq + 1 ? now : c->last_seq + 1;
	if (seq > INT64_MAX)
		seq = INT64_MAX;
	/* On disk before it is on the wire: after a crash the next number
	 * is still above every number the server may have seen. */
	if (c->seq_path) {
		snprintf(text, sizeof(text), "%" PRIu64 "\n", seq);
		rc = hw_file_write_atomic(c->seq_path, text, strlen(text));
		if (rc) {
			fail(r, rc, "discovery: cannot save the sequence "
				    "number to %s: %s",
			     c->seq_path, hw_strerror(rc));
			return rc;
		}
	}
	c->last_seq = seq;
	r->e.seq = seq;
	r->e.ts = now / 1000000u;
	memcpy(r->e.signer, c->id.pk, HW_PK_LEN);
	if ((rc = hw_disc_entry_sign(&r->e, &c->id))) {
		fail(r, rc, "discovery: cannot sign the entry: %s",
		     hw_strerror(rc));
		return rc;
	}
	j = hw_disc_entry_to_json(&r->e);
	*body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!*body) {
		fail(r, -ENOMEM, "discovery: out of memory");
		return -ENOMEM;
	}
	return 0;
}

static void work(uv_work_t *w)
{
	struct req *r = w->data;
	char *body = NULL;

	if (r->write && prepare_write(r, &body))
		return;
	perform(r, body);
	free(body);
}

/* ---- the loop side ---- */

static void req_free(struct req *r)
{
	if (!r)
		return;
	json_decref(r->resp);
	free(r->path);
	free(r);
}

static void release(struct hw_disc_client *c)
{
	hw_identity_wipe(&c->id);
	free(c->url);
	free(c->seq_path);
	free(c);
}

static void after_work(uv_work_t *w, int status);

static int submit(struct hw_disc_client *c, struct req *r)
{
	int rc;

	r->work.data = r;
	if ((rc = uv_queue_work(c->loop, &r->work, work, after_work)))
		return rc;
	r->prev = NULL;
	r->next = c->running;
	if (c->running)
		c->running->prev = r;
	c->running = r;
	c->nrunning++;
	if (r->write)
		c->writing = r;
	else
		c->nreads++;
	return 0;
}

static void deliver(struct hw_disc_client *c, struct req *r)
{
	if (r->status)
		r->cb(c, r->status, r->http_status, NULL, r->msg, r->ud);
	else
		r->cb(c, 0, r->http_status, r->resp, "", r->ud);
}

static void start_writes(struct hw_disc_client *c)
{
	struct req *r;
	int rc;

	while (!c->freed && !c->writing && c->qhead) {
		r = c->qhead;
		c->qhead = r->next;
		if (!c->qhead)
			c->qtail = NULL;
		c->nqueued--;
		r->next = NULL;
		if (!(rc = submit(c, r)))
			return;
		/* The pool refused it: the caller still gets its answer, with
		 * the request counted as running while it is delivered. */
		fail(r, rc, "discovery: cannot start the request: %s",
		     uv_strerror(rc));
		c->nrunning++;
		deliver(c, r);
		req_free(r);
		if (!--c->nrunning && c->freed) {
			release(c);
			return;
		}
	}
}

static void after_work(uv_work_t *w, int status)
{
	struct req *r = w->data;
	struct hw_disc_client *c = r->c;

	if (r->prev)
		r->prev->next = r->next;
	else
		c->running = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->write)
		c->writing = NULL;
	else
		c->nreads--;
	if (!c->freed && status != UV_ECANCELED)
		deliver(c, r);
	req_free(r);
	if (!--c->nrunning && c->freed) {
		release(c);
		return;
	}
	start_writes(c);
}

int hw_disc_client_new(struct hw_disc_client **out, uv_loop_t *loop,
		       const char *url, const struct hw_identity *id,
		       const char *seq_path, char *err, size_t errlen)
{
	struct hw_disc_client *c = NULL;
	size_t len;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	*out = NULL;
	if (!loop || !url || !id)
		return bad(err, errlen, -EINVAL, "discovery: missing argument");
	len = strlen(url);
	if ((strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) ||
	    len > HW_DISC_URL_MAX || !url_safe(url))
		return bad(err, errlen, -EINVAL,
			   "discovery: '%.*s' is not an http:// or https:// "
			   "URL",
			   HW_DISC_URL_MAX, url);
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return bad(err, errlen, -EIO,
			   "discovery: cannot initialise libcurl: %s",
			   curl_easy_strerror(curl_init_rc));
	if (!(c = calloc(1, sizeof(*c))))
		goto oom;
	c->loop = loop;
	c->id = *id;
	/* Paths start with '/': "http://host/" + "/v1" would double it. */
	while (len > 0 && url[len - 1] == '/')
		len--;
	if (!(c->url = strndup(url, len)))
		goto oom;
	if (seq_path) {
		if (!(c->seq_path = strdup(seq_path)))
			goto oom;
		if ((rc = load_seq(seq_path, &c->last_seq, err, errlen)))
			goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
	goto out;
oom:
	rc = bad(err, errlen, -ENOMEM, "discovery: out of memory");
out:
	if (c)
		release(c);
	return rc;
}

void hw_disc_client_free(struct hw_disc_client *c)
{
	struct req *r;

	if (!c || c->freed)
		return;
	c->freed = true;
	while ((r = c->qhead)) {
		c->qhead = r->next;
		req_free(r);
	}
	c->qtail = NULL;
	c->nqueued = 0;
	/* Work that has not started comes back through after_work with
	 * UV_ECANCELED; running work cannot be cancelled (UV_EBUSY). */
	for (r = c->running; r; r = r->next)
		uv_cancel((uv_req_t *)&r->work);
	if (!c->nrunning)
		release(c);
}

const char *hw_disc_client_url(const struct hw_disc_client *c)
{
	return c->url;
}

/* Checks e the way the server will (its JSON form must decode), so a
 * bad argument is refused here rather than by the server later. */
static int check_entry(const struct hw_disc_client *c,
		       struct hw_disc_entry *e)
{
	struct hw_disc_entry back;
	json_t *j;
	int rc;

	memcpy(e->signer, c->id.pk, HW_PK_LEN);
	e->seq = 1;
	j = hw_disc_entry_to_json(e);
	if (!j)
		return -EINVAL;
	rc = hw_disc_entry_from_json(&back, e->kind, j, NULL, 0);
	json_decref(j);
	return rc;
}

static int queue_write(struct hw_disc_client *c,
		       const struct hw_disc_entry *e, const char *method,
		       const char *path, hw_disc_cb cb, void *ud)
{
	struct req *r = NULL;
	int rc;

	if (!c || c->freed || !cb)
		return -EINVAL;
	if (c->nqueued >= HW_DISC_MAX_QUEUED_WRITES)
		return -ENOBUFS;
	if (!(r = calloc(1, sizeof(*r))))
		return -ENOMEM;
	r->c = c;
	r->write = true;
	r->method = method;
	r->cb = cb;
	r->ud = ud;
	r->e = *e;
	if ((rc = check_entry(c, &r->e)))
		goto out;
	if (!(r->path = strdup(path))) {
		rc = -ENOMEM;
		goto out;
	}
	if (!c->writing && !c->qhead) {
		if ((rc = submit(c, r)))
			goto out;
	} else {
		if (c->qtail)
			c->qtail->next = r;
		else
			c->qhead = r;
		c->qtail = r;
		c->nqueued++;
	}
	r = NULL;
out:
	req_free(r);
	return rc;
}

static void pk_path(char *out, size_t cap, const char *prefix,
		    const uint8_t pk[HW_PK_LEN])
{
	char hex[HW_PK_HEXLEN + 1];

	hw_pk_format(pk, hex);
	snprintf(out, cap, "%s%s", prefix, hex);
}

int hw_disc_put_visor(struct hw_disc_client *c,
		      const struct hw_disc_visor *v, hw_disc_cb cb, void *ud)
{
	struct hw_disc_entry e = {.kind = HW_DISC_VISOR};
	char path[128];

	if (!c || !v)
		return -EINVAL;
	e.u.visor = *v;
	pk_path(path, sizeof(path), "/v1/visors/", c->id.pk);
	return queue_write(c, &e, "PUT", path, cb, ud);
}

int hw_disc_put_relay(struct hw_disc_client *c,
		      const struct hw_disc_relay *rl, hw_disc_cb cb, void *ud)
{
	struct hw_disc_entry e = {.kind = HW_DISC_RELAY};
	char path[128];

	if (!c || !rl)
		return -EINVAL;
	e.u.relay = *rl;
	pk_path(path, sizeof(path), "/v1/relays/", c->id.pk);
	return queue_write(c, &e, "PUT", path, cb, ud);
}

int hw_disc_put_transport(struct hw_disc_client *c,
			  const struct hw_disc_transport *t, hw_disc_cb cb,
			  void *ud)
{
	struct hw_disc_entry e = {.kind = HW_DISC_TRANSPORT};

	if (!c || !t)
		return -EINVAL;
	e.u.tp = *t;
	return queue_write(c, &e, "POST", "/v1/transports", cb, ud);
}

int hw_disc_del_transport(struct hw_disc_client *c,
			  const uint8_t id[HW_DISC_TP_ID_LEN], hw_disc_cb cb,
			  void *ud)
{
	struct hw_disc_entry e = {.kind = HW_DISC_TRANSPORT_DEL};
	char path[64], hex[2 * HW_DISC_TP_ID_LEN + 1];

	if (!c || !id)
		return -EINVAL;
	memcpy(e.u.tp_id, id, HW_DISC_TP_ID_LEN);
	hw_hex_encode(id, HW_DISC_TP_ID_LEN, hex);
	snprintf(path, sizeof(path), "/v1/transports/%s", hex);
	return queue_write(c, &e, "DELETE", path, cb, ud);
}

/* type has passed no check yet: the path is built only from a type that
 * fits, and check_entry() then refuses anything but [a-z0-9_-]. */
static int svc_path(const struct hw_disc_client *c, const char *type,
		    char *out, size_t cap)
{
	char hex[HW_PK_HEXLEN + 1];

	if (strnlen(type, HW_DISC_STR_MAX + 1) > HW_DISC_STR_MAX)
		return -EINVAL;
	hw_pk_format(c->id.pk, hex);
	snprintf(out, cap, "/v1/services/%s/%s", hex, type);
	return 0;
}

int hw_disc_put_service(struct hw_disc_client *c,
			const struct hw_disc_service *s, hw_disc_cb cb,
			void *ud)
{
	struct hw_disc_entry e = {.kind = HW_DISC_SERVICE};
	char path[192];

	if (!c || !s)
		return -EINVAL;
	e.u.svc = *s;
	if (svc_path(c, e.u.svc.type, path, sizeof(path)))
		return -EINVAL;
	return queue_write(c, &e, "PUT", path, cb, ud);
}

int hw_disc_del_service(struct hw_disc_client *c, const char *type,
			hw_disc_cb cb, void *ud)
{
	struct hw_disc_entry e = {.kind = HW_DISC_SERVICE_DEL};
	char path[192];

	if (!c || !type || svc_path(c, type, path, sizeof(path)))
		return -EINVAL;
	strcpy(e.u.svc.type, type);
	return queue_write(c, &e, "DELETE", path, cb, ud);
}

int hw_disc_get(struct hw_disc_client *c, const char *path, hw_disc_cb cb,
		void *ud)
{
	struct req *r = NULL;
	int rc;

	if (!c || c->freed || !path || !cb || path[0] != '/' ||
	    strnlen(path, HW_DISC_PATH_MAX + 1) > HW_DISC_PATH_MAX ||
	    !url_safe(path))
		return -EINVAL;
	if (c->nreads >= HW_DISC_MAX_READS)
		return -ENOBUFS;
	if (!(r = calloc(1, sizeof(*r))))
		return -ENOMEM;
	r->c = c;
	r->method = "GET";
	r->cb = cb;
	r->ud = ud;
	if (!(r->path = strdup(path))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = submit(c, r)))
		goto out;
	r = NULL;
out:
	req_free(r);
	return rc;
}
