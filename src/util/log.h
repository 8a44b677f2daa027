/* Logging for daemons. Library code reports events through hw_log(); they
 * go nowhere until a program installs a sink (hw_log_to_stderr), so tests
 * and other users of the library stay silent. */
#ifndef HW_UTIL_LOG_H
#define HW_UTIL_LOG_H

enum hw_log_level {
	HW_LOG_DEBUG,
	HW_LOG_INFO,
	HW_LOG_WARN,
	HW_LOG_ERROR,
};

/* Parses "debug", "info", "warn" or "error". Returns 0 or -EINVAL. */
int hw_log_level_parse(const char *s, enum hw_log_level *out);

/* Program side: write records at level or above to stderr as
 * "2026-11-21T23:05:47.123Z INFO  [component] message". */
void hw_log_to_stderr(enum hw_log_level level);

void hw_log(enum hw_log_level level, const char *component, const char *fmt,
	    ...) __attribute__((format(printf, 3, 4)));

#endif
