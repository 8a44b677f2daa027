/* The struct that holds a member, from a pointer to that member: how an
 * embedded list link or waiter finds its owner. */
#ifndef HW_UTIL_CONTAINER_H
#define HW_UTIL_CONTAINER_H

#include <stddef.h>

#define HW_CONTAINER_OF(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

#endif
