#include "util/parse.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* The leading digits of s as a number; *end after them. strtoull alone
 * would take spaces, a sign and wrap "-1" around. */
static int leading_digits(const char *s, unsigned long long *v, char **end)
{
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, end, 10);
	return errno == ERANGE ? -ERANGE : 0;
}

int hw_parse_uint(const char *s, unsigned long long lo, unsigned long long hi,
		  unsigned long long *out)
{
	unsigned long long v;
	char *end;
	int rc;

	if ((rc = leading_digits(s, &v, &end)) == -ERANGE)
		return *end ? -EINVAL : -ERANGE;
	if (rc || *end)
		return -EINVAL;
	if (v < lo || v > hi)
		return -ERANGE;
	*out = v;
	return 0;
}

int hw_parse_bytes(const char *s, unsigned long long lo, unsigned long long hi,
		   unsigned long long *out)
{
	static const struct {
		const char *unit;
		unsigned shift;
	} units[] = {{"", 0},   {"K", 10}, {"k", 10},   {"KiB", 10},
		     {"M", 20}, {"m", 20}, {"MiB", 20}, {"G", 30},
		     {"g", 30}, {"GiB", 30}};
	unsigned long long v;
	char *end;
	int rc = leading_digits(s, &v, &end);

	if (rc == -EINVAL)
		return rc;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit))
			continue;
		if (rc || v > (ULLONG_MAX >> units[i].shift))
			return -ERANGE;
		v <<= units[i].shift;
		if (v < lo || v > hi)
			return -ERANGE;
		*out = v;
		return 0;
	}
	return -EINVAL;
}
