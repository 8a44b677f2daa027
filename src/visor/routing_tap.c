/* The tap file's writer: two buffers of cap bytes, one filling on the
 * loop while the thread pool writes the other (uv_fs_write); a full
 * buffer drops, so a slow disk costs tapped bytes, never loop time. */
#include "visor/routing_tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

#define LOG "routing"

struct hw_routing_tap {
	uv_loop_t *loop;
	uv_file fd;
	uv_fs_t req;
	size_t cap;
	uint8_t *fill; /* filling on the loop */
	size_t fill_len;
	uint8_t *out; /* being written: out_off of out_len done */
	size_t out_len, out_off;
	int writing;  /* req in flight */
	int closing;
	int dropping; /* in a burst of drops (logged) */
	uint64_t dropped, burst;
};

static void tap_kick(struct hw_routing_tap *t);

static void tap_drop(struct hw_routing_tap *t, size_t n, const char *why)
{
	t->dropped += n;
	t->burst += n;
	if (!t->dropping) {
		t->dropping = 1;
		hw_log(HW_LOG_WARN, LOG, "routing.tap_file: %s: dropping what "
		       "it cannot take", why);
	}
}

static void on_tap_closed(uv_fs_t *req)
{
	struct hw_routing_tap *t = req->data;

	uv_fs_req_cleanup(req);
	free(t->fill);
	free(t->out);
	free(t);
}

static void tap_finish(struct hw_routing_tap *t)
{
	if (t->dropped)
		hw_log(HW_LOG_WARN, LOG, "routing.tap_file: %llu bytes "
		       "dropped in all", (unsigned long long)t->dropped);
	t->req.data = t;
	if (uv_fs_close(t->loop, &t->req, t->fd, on_tap_closed)) {
		close(t->fd);
		on_tap_closed(&t->req);
	}
}

static void tap_write_out(struct hw_routing_tap *t);

static void on_tap_write(uv_fs_t *req)
{
	struct hw_routing_tap *t = req->data;
	ssize_t res = req->result;

	uv_fs_req_cleanup(req);
	t->writing = 0;
	if (res <= 0) {
		tap_drop(t, t->out_len - t->out_off,
			 res < 0 ? uv_strerror((int)res) : "short write");
		t->out_off = t->out_len;
	} else {
		t->out_off += (size_t)res;
		if (t->out_off < t->out_len) {
			tap_write_out(t);
			return;
		}
		if (t->dropping && !t->closing) {
			hw_log(HW_LOG_WARN, LOG, "routing.tap_file: %llu bytes "
			       "dropped", (unsigned long long)t->burst);
			t->dropping = 0;
			t->burst = 0;
		}
	}
	tap_kick(t);
	if (t->closing && !t->writing)
		tap_finish(t);
}

static void tap_write_out(struct hw_routing_tap *t)
{
	uv_buf_t b = uv_buf_init((char *)t->out + t->out_off,
				 (unsigned)(t->out_len - t->out_off));
	int rc;

	t->req.data = t;
	if ((rc = uv_fs_write(t->loop, &t->req, t->fd, &b, 1, -1,
			      on_tap_write))) {
		tap_drop(t, t->out_len - t->out_off, uv_strerror(rc));
		t->out_off = t->out_len;
		return;
	}
	t->writing = 1;
}

/* Hands the filled buffer to the thread pool unless a write is under
 * way (its completion comes back here). */
static void tap_kick(struct hw_routing_tap *t)
{
	uint8_t *x;

	if (t->writing || t->fill_len == 0)
		return;
	x = t->out;
	t->out = t->fill;
	t->fill = x;
	t->out_len = t->fill_len;
	t->out_off = 0;
	t->fill_len = 0;
	tap_write_out(t);
}

int hw_routing_tap_new(struct hw_routing_tap **out, uv_loop_t *loop,
		       const char *path, size_t cap)
{
	struct hw_routing_tap *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t || !(t->fill = malloc(cap)) || !(t->out = malloc(cap))) {
		if (t) {
			free(t->fill);
			free(t);
		}
		return -ENOMEM;
	}
	if ((t->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			  0666)) < 0) {
		int rc = -errno;
		free(t->fill);
		free(t->out);
		free(t);
		return rc;
	}
	t->loop = loop;
	t->cap = cap;
	*out = t;
	return 0;
}

void hw_routing_tap_write(struct hw_routing_tap *t, const uint8_t *p,
			  size_t len)
{
	if (t->closing)
		return;
	if (len > t->cap - t->fill_len) {
		tap_drop(t, len, "the disk falls behind");
		return;
	}
	memcpy(t->fill + t->fill_len, p, len);
	t->fill_len += len;
	tap_kick(t);
}

uint64_t hw_routing_tap_dropped(const struct hw_routing_tap *t)
{
	return t->dropped;
}

void hw_routing_tap_free(struct hw_routing_tap *t)
{
	if (!t)
		return;
	t->closing = 1;
	tap_kick(t);
	if (!t->writing)
		tap_finish(t);
}
