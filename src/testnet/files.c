/* Small helpers of the testnet supervisor: messages, clocks, folders,
 * atomic files. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testnet/tn_priv.h"

void hw_tn_err(const struct hw_tn *tn, const char *fmt, ...)
{
	char small[1024], *msg = small;
	va_list ap;
	int n;

	/* Messages may hold several paths: a longer one is not cut. */
	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(small) && (msg = malloc((size_t)n + 1))) {
		va_start(ap, fmt);
		vsnprintf(msg, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	tn->ops->msg(tn->ops->ctx, msg ? msg : small);
	if (msg != small)
		free(msg);
}

int hw_tn_fmt(char *out, size_t cap, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(out, cap, f, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

long long hw_tn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void hw_tn_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

const char *hw_tn_jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

void hw_tn_boot_id(char out[64])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	out[0] = '\0';
	if (!f)
		return;
	if (!fgets(out, 64, f))
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

int hw_tn_mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	struct stat st;

	if (hw_tn_fmt(tmp, sizeof(tmp), "%s", path))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (stat(tmp, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

void hw_tn_first_missing(const char *path, char out[PATH_MAX])
{
	char tmp[PATH_MAX];
	struct stat st;
	size_t len;

	out[0] = '\0';
	if (hw_tn_fmt(tmp, sizeof(tmp), "%s", path))
		return;
	len = strlen(tmp);
	for (size_t i = 1; i <= len; i++) {
		char c = tmp[i];
		if (c != '/' && c != '\0')
			continue;
		tmp[i] = '\0';
		if (stat(tmp, &st) < 0) {
			snprintf(out, PATH_MAX, "%s", tmp);
			return;
		}
		tmp[i] = c;
	}
}

void hw_tn_remove_made(const char *path, const char *first)
{
	char tmp[PATH_MAX];
	size_t fl = strlen(first);
	char *slash;

	if (!fl || hw_tn_fmt(tmp, sizeof(tmp), "%s", path))
		return;
	while (strlen(tmp) >= fl) {
		rmdir(tmp);
		if (!(slash = strrchr(tmp, '/')) || slash == tmp)
			break;
		*slash = '\0';
	}
}

int hw_tn_write_atomic(const char *path, const char *text, mode_t mode)
{
	return hw_tn_write_atomic_n(path, text, strlen(text), mode);
}

int hw_tn_write_atomic_n(const char *path, const void *data, size_t len,
			 mode_t mode)
{
	const char *text = data;
	char tmp[PATH_MAX + 8], dir[PATH_MAX];
	size_t off = 0;
	char *slash;
	int fd, rc = 0;

	if (hw_tn_fmt(tmp, sizeof(tmp), "%s.tmp", path) ||
	    hw_tn_fmt(dir, sizeof(dir), "%s", path))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)w;
	}
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	/* The rename itself survives a crash once the folder is synced. */
	if ((slash = strrchr(dir, '/')) && slash != dir) {
		*slash = '\0';
		if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
			fsync(fd);
			close(fd);
		}
	}
	return 0;
}

void hw_tn_log_tail(const struct hw_tn *tn, const char *path)
{
	char buf[2049];
	const char *lines[8];
	int nl = 0, fd;
	ssize_t n;
	off_t size;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > 2048 ? size - 2048 : 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	/* Keep the last complete lines, at most 8. */
	for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n")) {
		if (nl == 8) {
			memmove(lines, lines + 1, sizeof(lines[0]) * 7);
			nl = 7;
		}
		lines[nl++] = p;
	}
	for (int i = 0; i < nl; i++)
		tn->ops->log_line(tn->ops->ctx, lines[i]);
}
