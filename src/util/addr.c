#include "util/addr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int hw_addr_split(const char *s, char host[HW_HOST_MAX], uint16_t *port)
{
	const char *colon, *hs = s, *he;
	char *end;
	unsigned long p;

	if (s[0] == '[') {
		he = strchr(s, ']');
		if (!he || he[1] != ':')
			return -EINVAL;
		hs = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL;
		he = colon;
	}
	if ((size_t)(he - hs) >= HW_HOST_MAX)
		return -EINVAL;
	if (!colon[1] || colon[1] == '-' || colon[1] == '+' || colon[1] == ' ')
		return -EINVAL;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || *end || p == 0 || p > 65535)
		return -EINVAL;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	*port = (uint16_t)p;
	return 0;
}
