/* HOST:PORT parsing for listen and dial addresses. */
#ifndef HW_UTIL_ADDR_H
#define HW_UTIL_ADDR_H

#include <stddef.h>
#include <stdint.h>

#define HW_HOST_MAX 256

/* Splits "host:port", "[v6]:port" or ":port" (host empty) into host and a
 * port in 1..65535. Returns 0 or -EINVAL. */
int hw_addr_split(const char *s, char host[HW_HOST_MAX], uint16_t *port);

#endif
