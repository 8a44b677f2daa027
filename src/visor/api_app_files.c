/* The control API's endpoints for the files an app shares with its visor
 * (docs/api.md, docs/apps.md):
 *   GET /v1/apps/NAME/status     the app's status.json
 *   GET /v1/apps/NAME/settings   its settings.json, or {"revision": 0}
 *   PUT /v1/apps/NAME/settings   replaces it when "revision" is current
 * The files are small (64 KiB at most) and local: they are read and
 * written on the loop, like the config file. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/statefile.h"
#include "visor/api_app_files.h"
#include "visor/visor_priv.h"

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

int hw_app_file_read(const char *path, size_t max, json_t **out, char *err,
		     size_t errlen)
{
	json_error_t jerr;
	json_t *o = NULL;
	struct stat st;
	char *text = NULL;
	size_t got = 0;
	int fd, rc = 0;

	*out = NULL;
	/* Not through a link, and never waiting on a FIFO. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return set_err(err, errlen, -ENOENT, "no %s", path);
		return set_err(err, errlen, -errno, "cannot read %s: %s",
			       path, strerror(errno));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = set_err(err, errlen, -EINVAL, "%s is not a file", path);
		goto out;
	}
	if ((unsigned long long)st.st_size > max) {
		rc = set_err(err, errlen, HW_ETOOBIG, "%s is %lld bytes, over "
			     "the %zu it may have", path,
			     (long long)st.st_size, max);
		goto out;
	}
	/* One byte more, in case it grew since the fstat. */
	if (!(text = malloc(max + 1))) {
		rc = set_err(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, text + got, max + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = set_err(err, errlen, -errno, "cannot read %s: %s",
				     path, strerror(errno));
			goto out;
		}
		if (n == 0 || (got += (size_t)n) > max)
			break;
	}
	if (got > max) {
		rc = set_err(err, errlen, HW_ETOOBIG, "%s is over the %zu "
			     "bytes it may have", path, max);
		goto out;
	}
	o = json_loadb(text, got, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		rc = set_err(err, errlen, -EINVAL, "%s is not JSON: line %d: "
			     "%s", path, jerr.line, jerr.text);
	else if (!json_is_object(o))
		rc = set_err(err, errlen, -EINVAL, "%s is not a JSON object",
			     path);
	else {
		*out = o;
		o = NULL;
	}
out:
	json_decref(o);
	free(text);
	close(fd);
	return rc;
}

/* A document's revision: a non-negative integer, else 0 (a file written
 * by hand may lack one). */
static long long revision_of(json_t *doc)
{
	json_t *r = json_object_get(doc, "revision");

	return json_is_integer(r) && json_integer_value(r) >= 0
		       ? (long long)json_integer_value(r)
		       : 0;
}

static int settings_path(const char *local_dir, const char *name,
			 char *path, size_t len, char *err, size_t errlen)
{
	if ((size_t)snprintf(path, len, "%s/apps/%s/" HW_APP_SETTINGS_FILE,
			     local_dir, name) >= len)
		return set_err(err, errlen, -ENAMETOOLONG, "%s/apps/%s: path "
			       "too long", local_dir, name);
	return 0;
}

int hw_app_settings_get(const char *local_dir, const char *name,
			json_t **out, char *err, size_t errlen)
{
	char path[PATH_MAX];
	json_t *doc = NULL;
	int rc;

	*out = NULL;
	if ((rc = settings_path(local_dir, name, path, sizeof(path), err,
				errlen)))
		return rc;
	rc = hw_app_file_read(path, HW_APP_FILE_MAX, &doc, err, errlen);
	if (rc == -ENOENT)
		doc = json_object();
	else if (rc)
		return rc;
	if (!doc || json_object_set_new(doc, "revision",
					json_integer(revision_of(doc)))) {
		json_decref(doc);
		return set_err(err, errlen, -ENOMEM, "out of memory");
	}
	*out = doc;
	return 0;
}

/* Makes dir 0700 unless it is there; a directory must be there after. */
static int ensure_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return set_err(err, errlen, -errno, "cannot create %s: %s",
			       dir, strerror(errno));
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return set_err(err, errlen, -ENOTDIR, "%s is not a directory",
			       dir);
	return 0;
}

int hw_app_settings_put(const char *local_dir, const char *name,
			json_t *body, long long *current, json_t **out,
			char *err, size_t errlen)
{
	char path[PATH_MAX], dir[PATH_MAX];
	json_t *doc = NULL, *cur = NULL, *r;
	char *text = NULL;
	long long want;
	int rc;

	*out = NULL;
	*current = 0;
	if (!json_is_object(body))
		return set_err(err, errlen, -EINVAL, "the settings must be a "
			       "JSON object with an integer \"revision\"");
	r = json_object_get(body, "revision");
	if (!json_is_integer(r) || json_integer_value(r) < 0)
		return set_err(err, errlen, -EINVAL, "\"revision\" must be "
			       "the settings' current revision, an integer "
			       "(0 when there are none): GET them first");
	want = (long long)json_integer_value(r);
	/* A file that is there but unreadable is the visor's problem, not
	 * the request's. */
	if ((rc = hw_app_settings_get(local_dir, name, &cur, err, errlen)))
		return rc == -ENOMEM ? rc : -EIO;
	*current = revision_of(cur);
	json_decref(cur);
	if (want != *current)
		return set_err(err, errlen, HW_ESTATE, "the settings changed "
			       "since they were read (revision %lld)",
			       *current);
	if (want == INT64_MAX)
		return set_err(err, errlen, -EINVAL, "\"revision\" is at its "
			       "largest value");
	if (!(doc = json_deep_copy(body)) ||
	    json_object_set_new(doc, "revision", json_integer(want + 1))) {
		rc = set_err(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	/* Readable when it fits; compact when only that fits. */
	text = json_dumps(doc, JSON_INDENT(2));
	if (text && strlen(text) + 1 > HW_APP_FILE_MAX) {
		free(text);
		text = json_dumps(doc, JSON_COMPACT);
	}
	if (!text) {
		rc = set_err(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (strlen(text) + 1 > HW_APP_FILE_MAX) {
		rc = set_err(err, errlen, HW_ETOOBIG, "the settings are %zu "
			     "bytes as JSON, over the %d they may have",
			     strlen(text), HW_APP_FILE_MAX);
		goto out;
	}
	{
		size_t n = strlen(text);
		text[n] = '\n'; /* the NUL's place: written with its length */
		if ((rc = settings_path(local_dir, name, path, sizeof(path),
					err, errlen)))
			goto out;
		if ((size_t)snprintf(dir, sizeof(dir), "%s/apps", local_dir) >=
		    sizeof(dir)) {
			rc = set_err(err, errlen, -ENAMETOOLONG, "path too "
				     "long");
			goto out;
		}
		if ((rc = ensure_dir(dir, err, errlen)))
			goto out;
		snprintf(dir, sizeof(dir), "%s/apps/%s", local_dir, name);
		if ((rc = ensure_dir(dir, err, errlen)))
			goto out;
		if ((rc = hw_file_write_atomic(path, text, n + 1))) {
			set_err(err, errlen, rc, "cannot write %s: %s", path,
				hw_strerror(rc));
			goto out;
		}
	}
	*out = doc;
	doc = NULL;
out:
	free(text);
	json_decref(doc);
	return rc;
}

void hw_visor_api_app_status(struct hw_visor *v, struct hw_api_req *req,
			     const char *name)
{
	char path[PATH_MAX + 64], err[PATH_MAX + 256];
	json_t *o = NULL;
	int rc;

	snprintf(path, sizeof(path), "%s/apps/%s/" HW_LAUNCHER_STATUS_FILE,
		 v->cfg.local_dir, name);
	rc = hw_app_file_read(path, HW_APP_FILE_MAX, &o, err, sizeof(err));
	if (rc == -ENOENT)
		hw_api_reply_error(req, 404, "app '%s' has written no status "
				   "(no %s)", name, path);
	else if (rc)
		hw_api_reply_error(req, rc == -ENOMEM ? 500 : 502,
				   "app '%s': %s", name, err);
	else
		hw_api_reply(req, 200, o);
	json_decref(o);
}

void hw_visor_api_app_settings(struct hw_visor *v, struct hw_api_req *req,
			       const char *method, const char *name,
			       json_t *body)
{
	char err[PATH_MAX + 256];
	json_t *o = NULL;
	long long cur;
	int rc, status;

	if (!strcmp(method, "GET")) {
		rc = hw_app_settings_get(v->cfg.local_dir, name, &o, err,
					 sizeof(err));
		status = rc == -ENOMEM ? 500 : 502;
	} else if (!strcmp(method, "PUT")) {
		rc = hw_app_settings_put(v->cfg.local_dir, name, body, &cur,
					 &o, err, sizeof(err));
		status = rc == -EINVAL || rc == HW_ETOOBIG ? 400
			 : rc == HW_ESTATE		   ? 409
			 : rc == -ENOMEM		   ? 500
						   : 502;
	} else {
		hw_api_reply_error(req, 405, "%s is not allowed on "
				   "/v1/apps/%s/settings (GET or PUT)", method,
				   name);
		return;
	}
	if (rc && status < 500)
		hw_api_reply_error(req, status, "%s", err);
	else if (rc)
		hw_api_reply_error(req, status, "app '%s': %s", name, err);
	else
		hw_api_reply(req, 200, o);
	json_decref(o);
}
