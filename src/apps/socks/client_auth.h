/* The client's RFC 1929 credentials: a file of USER:PASSWORD lines
 * (docs/socks.md "Username and password"). */
#ifndef HW_SOCKS_AUTH_H
#define HW_SOCKS_AUTH_H

#include <stddef.h>

#include "socks5.h"

#define HW_AUTH_USERS_MAX 64

struct hw_auth_user {
	char user[256];
	char pass[256];
};

struct hw_auth {
	int n;
	struct hw_auth_user users[HW_AUTH_USERS_MAX];
};

/* Reads path: one USER:PASSWORD per line (the user holds no ':', the
 * password runs to the end of the line; each 1..255 bytes), blank lines
 * and lines starting with '#' skipped. Returns 0, or -1 with err set
 * ("auth.txt line 3: no ':' between user and password"). A file others
 * may read is taken but named in warn (warn[0] is '\0' otherwise). */
int hw_auth_load(struct hw_auth *a, const char *path, char *err,
		 size_t errlen, char *warn, size_t warnlen);

/* 1 when the credentials match an entry, else 0. Compares every entry in
 * full, so the time taken does not tell how much matched. */
int hw_auth_check(const struct hw_auth *a, const struct hw_s5_auth *c);

#endif
