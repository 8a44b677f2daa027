/* RFC 1929 credentials of the client (client_auth.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "client_auth.h"

int hw_auth_load(struct hw_auth *a, const char *path, char *err,
		 size_t errlen, char *warn, size_t warnlen)
{
	char line[600];
	struct stat st;
	FILE *f;
	int no = 0, rc = -1;

	a->n = 0;
	warn[0] = '\0';
	if (!(f = fopen(path, "re"))) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		snprintf(warn, warnlen, "%s may be read by others (mode %03o): "
			 "chmod 600 it", path, (unsigned)(st.st_mode & 0777));
	while (fgets(line, sizeof(line), f)) {
		size_t len = strlen(line), ul;
		char *colon;

		no++;
		if (len && line[len - 1] == '\n')
			line[--len] = '\0';
		else if (!feof(f)) {
			snprintf(err, errlen, "%s line %d: longer than 512 "
				 "bytes", path, no);
			goto out;
		}
		if (len && line[len - 1] == '\r')
			line[--len] = '\0';
		if (!len || line[0] == '#')
			continue;
		if (!(colon = strchr(line, ':'))) {
			snprintf(err, errlen, "%s line %d: no ':' between user "
				 "and password", path, no);
			goto out;
		}
		ul = (size_t)(colon - line);
		if (ul < 1 || ul > 255 || len - ul - 1 < 1 ||
		    len - ul - 1 > 255) {
			snprintf(err, errlen, "%s line %d: user and password "
				 "must each be 1..255 bytes", path, no);
			goto out;
		}
		if (a->n == HW_AUTH_USERS_MAX) {
			snprintf(err, errlen, "%s: more than %d users", path,
				 HW_AUTH_USERS_MAX);
			goto out;
		}
		memset(&a->users[a->n], 0, sizeof(a->users[0]));
		memcpy(a->users[a->n].user, line, ul);
		snprintf(a->users[a->n].pass, sizeof(a->users[0].pass), "%s",
			 colon + 1);
		a->n++;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!a->n) {
		snprintf(err, errlen, "%s holds no USER:PASSWORD line", path);
		goto out;
	}
	rc = 0;
out:
	fclose(f);
	return rc;
}

/* 0 when the two NUL-terminated strings of at most 255 bytes are equal;
 * looks at all 256 bytes of both. */
static unsigned differ(const char a[256], const char b[256])
{
	unsigned d = 0;

	for (size_t i = 0; i < 256; i++)
		d |= (unsigned)(a[i] ^ b[i]);
	return d;
}

int hw_auth_check(const struct hw_auth *a, const struct hw_s5_auth *c)
{
	struct hw_s5_auth given;
	int ok = 0;

	/* Padded copies: what follows the NULs compares equal too. */
	memset(&given, 0, sizeof(given));
	snprintf(given.user, sizeof(given.user), "%s", c->user);
	snprintf(given.pass, sizeof(given.pass), "%s", c->pass);
	for (int i = 0; i < a->n; i++)
		ok |= !(differ(a->users[i].user, given.user) |
			differ(a->users[i].pass, given.pass));
	return ok;
}
