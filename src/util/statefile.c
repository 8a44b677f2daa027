#include "util/statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

struct hw_statefile {
	uv_loop_t *loop;
	uv_work_t work;
	char *path;
	char *writing; /* the text the pool is writing, NULL when idle */
	char *waiting; /* the newest text handed over meanwhile */
	int rc;
	int freed;
};

int hw_file_write_atomic(const char *path, const char *data, size_t len)
{
	size_t off = 0, plen = strlen(path);
	char *tmp = malloc(plen + 5);
	int fd, rc = 0;

	if (!tmp)
		return -ENOMEM;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		free(tmp);
		return rc;
	}
	while (off < len && rc == 0) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n > 0)
			off += (size_t)n;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	free(tmp);
	return rc;
}

static void start(struct hw_statefile *s);

static void release(struct hw_statefile *s)
{
	free(s->path);
	free(s);
}

static void work(uv_work_t *w)
{
	struct hw_statefile *s = w->data;
	s->rc = hw_file_write_atomic(s->path, s->writing, strlen(s->writing));
}

static void done(uv_work_t *w, int status)
{
	struct hw_statefile *s = w->data;

	if (s->rc)
		hw_log(HW_LOG_WARN, "state", "cannot write %s: %s", s->path,
		       hw_strerror(s->rc));
	free(s->writing);
	s->writing = NULL;
	if (s->waiting)
		start(s);
	else if (s->freed)
		release(s);
}

static void start(struct hw_statefile *s)
{
	s->writing = s->waiting;
	s->waiting = NULL;
	s->work.data = s;
	if (uv_queue_work(s->loop, &s->work, work, done) == 0)
		return;
	/* The pool refused (the loop is closing): write here, now. */
	s->rc = hw_file_write_atomic(s->path, s->writing, strlen(s->writing));
	done(&s->work, 0);
}

struct hw_statefile *hw_statefile_new(uv_loop_t *loop, const char *path)
{
	struct hw_statefile *s = calloc(1, sizeof(*s));

	if (!s || !(s->path = strdup(path))) {
		free(s);
		return NULL;
	}
	s->loop = loop;
	return s;
}

void hw_statefile_save(struct hw_statefile *s, char *text)
{
	if (!text)
		return;
	free(s->waiting);
	s->waiting = text;
	if (!s->writing)
		start(s);
}

void hw_statefile_free(struct hw_statefile *s)
{
	if (!s)
		return;
	s->freed = 1;
	if (!s->writing)
		release(s);
}
