/* hopwire-forward's settings (settings.h). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"

#define SETTINGS_FILE_MAX (64 * 1024)

static int pk_ok(const char *s)
{
	if (strlen(s) != HW_APP_PK_HEX)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

int fwd_split_addr(const char *addr, char *host, size_t hostlen,
		   char port[8])
{
	const char *colon, *h = addr;
	size_t hl;
	char *end;
	long p;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return -1;
		h = addr + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		if (!(colon = strrchr(addr, ':')) || memchr(addr, ':',
				(size_t)(colon - addr)))
			return -1;
		hl = (size_t)(colon - addr);
	}
	if (hl < 1 || hl >= hostlen)
		return -1;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end || errno || p < 1 || p > 65535)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, 8, "%ld", p);
	return 0;
}

/* Copies string member k of o (1..cap-1 bytes) into out. */
static int str_member(json_t *o, const char *k, char *out, size_t cap,
		      const char *where, char *err, size_t errlen)
{
	const char *v = json_string_value(json_object_get(o, k));

	if (!v || !v[0] || strlen(v) >= cap) {
		snprintf(err, errlen, "%s.%s: %s", where, k,
			 v ? "empty or too long" : "missing or not a string");
		return -1;
	}
	snprintf(out, cap, "%s", v);
	return 0;
}

static int parse_service(json_t *o, struct fwd_service *v, const char *where,
			 char *err, size_t errlen)
{
	json_t *allow = json_object_get(o, "allow"), *e;
	size_t i;

	memset(v, 0, sizeof(*v));
	if (!json_is_object(o)) {
		snprintf(err, errlen, "%s: not an object", where);
		return -1;
	}
	if (str_member(o, "name", v->name, sizeof(v->name), where, err,
		       errlen) ||
	    str_member(o, "target", v->target, sizeof(v->target), where, err,
		       errlen))
		return -1;
	if (!hw_fwd_name_ok(v->name)) {
		snprintf(err, errlen, "%s.name: '%s' is not 1..32 characters "
			 "of a-z 0-9 . _ -", where, v->name);
		return -1;
	}
	if (fwd_split_addr(v->target, v->host, sizeof(v->host), v->port)) {
		snprintf(err, errlen, "%s.target: '%s' is not HOST:PORT",
			 where, v->target);
		return -1;
	}
	if (!json_is_array(allow) || !json_array_size(allow) ||
	    json_array_size(allow) > FWD_ALLOW_MAX) {
		snprintf(err, errlen, "%s.allow: must list 1..%d visor keys, "
			 "or be [\"any\"]", where, FWD_ALLOW_MAX);
		return -1;
	}
	json_array_foreach(allow, i, e) {
		const char *pk = json_string_value(e);

		if (pk && !strcmp(pk, "any")) {
			v->allow_any = 1;
		} else if (!pk || !pk_ok(pk)) {
			snprintf(err, errlen, "%s.allow[%zu]: not 64 lowercase "
				 "hex characters or \"any\"", where, i);
			return -1;
		} else {
			snprintf(v->allow[v->nallow++], sizeof(v->allow[0]),
				 "%s", pk);
		}
	}
	return 0;
}

static int parse_map(json_t *o, struct fwd_map *m, const char *where,
		     char *err, size_t errlen)
{
	char host[FWD_ADDR_MAX], port[8];

	memset(m, 0, sizeof(*m));
	if (!json_is_object(o)) {
		snprintf(err, errlen, "%s: not an object", where);
		return -1;
	}
	if (str_member(o, "listen", m->listen, sizeof(m->listen), where, err,
		       errlen) ||
	    str_member(o, "pk", m->pk, sizeof(m->pk), where, err, errlen) ||
	    str_member(o, "service", m->service, sizeof(m->service), where,
		       err, errlen))
		return -1;
	if (fwd_split_addr(m->listen, host, sizeof(host), port)) {
		snprintf(err, errlen, "%s.listen: '%s' is not ADDR:PORT", where,
			 m->listen);
		return -1;
	}
	if (!pk_ok(m->pk)) {
		snprintf(err, errlen, "%s.pk: not 64 lowercase hex characters",
			 where);
		return -1;
	}
	if (!hw_fwd_name_ok(m->service)) {
		snprintf(err, errlen, "%s.service: '%s' is not 1..32 "
			 "characters of a-z 0-9 . _ -", where, m->service);
		return -1;
	}
	return 0;
}

int fwd_settings_parse(const char *text, size_t len, struct fwd_settings *s,
		       char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *list, *e;
	char where[32];
	size_t i;
	int rc = -1;

	memset(s, 0, sizeof(*s));
	if (!(root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr))) {
		snprintf(err, errlen, "not JSON: line %d: %s", jerr.line,
			 jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "not a JSON object");
		goto out;
	}
	s->revision = json_integer_value(json_object_get(root, "revision"));
	list = json_object_get(root, "expose");
	if (list && (!json_is_array(list) ||
		     json_array_size(list) > FWD_SERVICES_MAX)) {
		snprintf(err, errlen, "expose: must be a list of at most %d "
			 "services", FWD_SERVICES_MAX);
		goto out;
	}
	json_array_foreach(list, i, e) {
		snprintf(where, sizeof(where), "expose[%zu]", i);
		if (parse_service(e, &s->services[i], where, err, errlen))
			goto out;
		if (fwd_service_find(s, s->services[i].name)) {
			snprintf(err, errlen, "%s.name: '%s' is exposed twice",
				 where, s->services[i].name);
			goto out;
		}
		s->nservices++;
	}
	list = json_object_get(root, "map");
	if (list && (!json_is_array(list) ||
		     json_array_size(list) > FWD_MAPS_MAX)) {
		snprintf(err, errlen, "map: must be a list of at most %d "
			 "mappings", FWD_MAPS_MAX);
		goto out;
	}
	json_array_foreach(list, i, e) {
		snprintf(where, sizeof(where), "map[%zu]", i);
		if (parse_map(e, &s->maps[i], where, err, errlen))
			goto out;
		for (int k = 0; k < s->nmaps; k++)
			if (!strcmp(s->maps[k].listen, s->maps[i].listen)) {
				snprintf(err, errlen, "%s.listen: %s is mapped "
					 "twice", where, s->maps[i].listen);
				goto out;
			}
		s->nmaps++;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int fwd_settings_load(const char *path, struct fwd_settings *s, char *err,
		      size_t errlen)
{
	char *text;
	size_t n;
	FILE *f;
	int rc;

	if (!(f = fopen(path, "re"))) {
		if (errno == ENOENT) {
			memset(s, 0, sizeof(*s));
			return 0;
		}
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!(text = malloc(SETTINGS_FILE_MAX + 1))) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	n = fread(text, 1, SETTINGS_FILE_MAX + 1, f);
	fclose(f);
	if (n > SETTINGS_FILE_MAX) {
		snprintf(err, errlen, "%s: over %d bytes", path,
			 SETTINGS_FILE_MAX);
		rc = -1;
	} else {
		rc = fwd_settings_parse(text, n, s, err, errlen);
	}
	free(text);
	return rc;
}

const struct fwd_service *fwd_service_find(const struct fwd_settings *s,
					   const char *name)
{
	for (int i = 0; i < s->nservices; i++)
		if (!strcmp(s->services[i].name, name))
			return &s->services[i];
	return NULL;
}

int fwd_service_allows(const struct fwd_service *v, const char *pk)
{
	if (v->allow_any)
		return 1;
	for (int i = 0; i < v->nallow; i++)
		if (!strcmp(v->allow[i], pk))
			return 1;
	return 0;
}
