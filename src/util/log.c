#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static int enabled;
static enum hw_log_level threshold = HW_LOG_INFO;

static const char *const names[] = {"debug", "info", "warn", "error"};

int hw_log_level_parse(const char *s, enum hw_log_level *out)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i])) {
			*out = (enum hw_log_level)i;
			return 0;
		}
	return -EINVAL;
}

void hw_log_to_stderr(enum hw_log_level level)
{
	enabled = 1;
	threshold = level;
}

void hw_log(enum hw_log_level level, const char *component, const char *fmt,
	    ...)
{
	static const char *const tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
	char line[1024], stamp[32];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n;

	if (!enabled || level < threshold)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03dZ %s [%s] ", stamp,
		     (int)(tv.tv_usec / 1000), tags[level], component);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per record so lines from children do not interleave. */
	fprintf(stderr, "%s\n", line);
}
