/* Checks and edits of the forward app's settings document (forward_spec.h):
 * everything `hopwire forward` refuses before anything is sent. */
#include "cli/forward_spec.h"
#include "cli/cli.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/identity.h"
#include "util/addr.h"
#include "util/err.h"

static int bad(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int bad(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

int hw_fwd_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > HW_FWD_NAME_MAX)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '.' || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

/* A DNS name: dot-separated labels of letters, digits and '-', none
 * empty, none longer than 63 or starting or ending with '-'. */
static int hostname_ok(const char *h)
{
	size_t n = strlen(h), label = 0;

	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		char c = h[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || h[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-')
			return 0;
		if (label == 0 && c == '-')
			return 0;
		if (++label > 63)
			return 0;
	}
	return 1;
}

int hw_fwd_target_check(const char *s, char *err, size_t errlen)
{
	char host[HW_HOST_MAX];
	struct in6_addr a6;
	uint16_t port;

	if (strlen(s) >= HW_FWD_ADDR_MAX || hw_addr_split(s, host, &port) ||
	    !host[0])
		return bad(err, errlen, -EINVAL, "target '%s' is not "
			   "HOST:PORT (as 127.0.0.1:22, localhost:8080 or "
			   "[::1]:22)", s);
	if (s[0] == '[') {
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return bad(err, errlen, -EINVAL, "target '%s': '%s' "
				   "is not an IPv6 address", s, host);
		return 0;
	}
	/* Digits and dots only: an IPv4 address or nothing. */
	if (strspn(host, "0123456789.") == strlen(host)) {
		struct in_addr a4;
		if (inet_pton(AF_INET, host, &a4) != 1)
			return bad(err, errlen, -EINVAL, "target '%s': '%s' "
				   "is not an IPv4 address", s, host);
		return 0;
	}
	if (!hostname_ok(host))
		return bad(err, errlen, -EINVAL, "target '%s': '%s' is neither "
			   "a host name nor an IPv4 address", s, host);
	return 0;
}

int hw_fwd_listen_parse(const char *s, char out[HW_FWD_ADDR_MAX], char *err,
			size_t errlen)
{
	char host[HW_HOST_MAX], text[INET6_ADDRSTRLEN], full[HW_FWD_ADDR_MAX];
	struct in_addr a4;
	struct in6_addr a6;
	uint16_t port;

	if (strlen(s) >= HW_FWD_ADDR_MAX - 16)
		goto invalid;
	if (!strchr(s, ':'))
		snprintf(full, sizeof(full), "127.0.0.1:%s", s);
	else
		snprintf(full, sizeof(full), "%s", s);
	if (hw_addr_split(full, host, &port) || !host[0])
		goto invalid;
	if (full[0] == '[') {
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return bad(err, errlen, -EINVAL, "'%s': '%s' is not an "
				   "IPv6 address", s, host);
		inet_ntop(AF_INET6, &a6, text, sizeof(text));
		snprintf(out, HW_FWD_ADDR_MAX, "[%s]:%u", text, port);
		return 0;
	}
	if (inet_pton(AF_INET, host, &a4) != 1)
		return bad(err, errlen, -EINVAL, "'%s': the address to listen "
			   "on must be numeric (as 127.0.0.1, 0.0.0.0 or [::1]), "
			   "not '%s'", s, host);
	inet_ntop(AF_INET, &a4, text, sizeof(text));
	snprintf(out, HW_FWD_ADDR_MAX, "%s:%u", text, port);
	return 0;
invalid:
	return bad(err, errlen, -EINVAL, "'%s' is not [BIND:]PORT (as 2200, "
		   "127.0.0.1:2200 or [::1]:2200; PORT 1..65535)", s);
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* doc[key], an array or missing: the array (created when missing and
 * create is set), or NULL. */
static json_t *list(json_t *doc, const char *key, int create)
{
	json_t *a = json_object_get(doc, key);

	if (!a && create && !json_object_set_new(doc, key, json_array()))
		a = json_object_get(doc, key);
	return json_is_array(a) ? a : NULL;
}

static int check_service(json_t *e, size_t i, char *err, size_t errlen)
{
	const char *name = str(e, "name"), *target = str(e, "target");
	json_t *allow = json_object_get(e, "allow"), *a;
	char why[512];
	size_t k;

	if (!json_is_object(e))
		return bad(err, errlen, -EINVAL, "expose[%zu] is not an "
			   "object", i);
	if (!name || !hw_fwd_name_ok(name))
		return bad(err, errlen, -EINVAL, "expose[%zu]: name '%s' is "
			   "not 1 to %d of a-z 0-9 . _ -", i,
			   name ? name : "(none)", HW_FWD_NAME_MAX);
	if (!target)
		return bad(err, errlen, -EINVAL, "service %s: no target", name);
	if (hw_fwd_target_check(target, why, sizeof(why)))
		return bad(err, errlen, -EINVAL, "service %s: %s", name, why);
	if (!json_is_array(allow) || !json_array_size(allow))
		return bad(err, errlen, -EINVAL, "service %s: \"allow\" must "
			   "list visor keys, or be [\"any\"]", name);
	if (json_array_size(allow) > HW_FWD_ALLOW_MAX)
		return bad(err, errlen, -EINVAL, "service %s: %zu keys allowed: "
			   "at most %d", name, json_array_size(allow),
			   HW_FWD_ALLOW_MAX);
	json_array_foreach(allow, k, a) {
		const char *s = json_string_value(a);
		if (s && !strcmp(s, "any") && json_array_size(allow) == 1)
			continue;
		if (!s || hw_cli_pk_bad(s))
			return bad(err, errlen, -EINVAL, "service %s: allow[%zu] "
				   "is not a visor's public key%s", name, k,
				   s && !strcmp(s, "any")
					   ? " (\"any\" stands alone)"
					   : "");
	}
	return 0;
}

static int check_map(json_t *e, size_t i, char *out, char *err,
		     size_t errlen)
{
	const char *listen = str(e, "listen"), *pk = str(e, "pk");
	const char *svc = str(e, "service");
	char why[512];

	if (!json_is_object(e))
		return bad(err, errlen, -EINVAL, "map[%zu] is not an object", i);
	if (!listen || hw_fwd_listen_parse(listen, out, why, sizeof(why)))
		return bad(err, errlen, -EINVAL, "map[%zu]: listen %s", i,
			   listen ? why : "missing");
	if (!pk || hw_cli_pk_bad(pk))
		return bad(err, errlen, -EINVAL, "map %s: pk '%s' is not a "
			   "visor's public key", listen, pk ? pk : "(none)");
	if (!svc || !hw_fwd_name_ok(svc))
		return bad(err, errlen, -EINVAL, "map %s: service '%s' is not "
			   "1 to %d of a-z 0-9 . _ -", listen,
			   svc ? svc : "(none)", HW_FWD_NAME_MAX);
	return 0;
}

int hw_fwd_doc_check(json_t *doc, char *err, size_t errlen)
{
	json_t *exp = json_object_get(doc, "expose");
	json_t *map = json_object_get(doc, "map"), *e, *f;
	char (*listens)[HW_FWD_ADDR_MAX] = NULL;
	size_t i, k;
	int rc = 0;

	if (!json_is_object(doc))
		return bad(err, errlen, -EINVAL, "the settings are not a JSON "
			   "object");
	if (exp && !json_is_array(exp))
		return bad(err, errlen, -EINVAL, "\"expose\" is not an array");
	if (map && !json_is_array(map))
		return bad(err, errlen, -EINVAL, "\"map\" is not an array");
	if (json_array_size(exp) > HW_FWD_SERVICES_MAX)
		return bad(err, errlen, -EINVAL, "%zu services: at most %d",
			   json_array_size(exp), HW_FWD_SERVICES_MAX);
	if (json_array_size(map) > HW_FWD_MAPS_MAX)
		return bad(err, errlen, -EINVAL, "%zu mappings: at most %d",
			   json_array_size(map), HW_FWD_MAPS_MAX);
	json_array_foreach(exp, i, e) {
		if ((rc = check_service(e, i, err, errlen)))
			return rc;
		for (k = 0; k < i; k++) {
			f = json_array_get(exp, k);
			if (!strcmp(str(e, "name"), str(f, "name")))
				return bad(err, errlen, -EINVAL, "two services "
					   "named %s", str(e, "name"));
		}
	}
	if (!json_array_size(map))
		return 0;
	if (!(listens = calloc(json_array_size(map), sizeof(*listens))))
		return bad(err, errlen, -ENOMEM, "out of memory");
	json_array_foreach(map, i, e) {
		if ((rc = check_map(e, i, listens[i], err, errlen)))
			break;
		for (k = 0; k < i && !rc; k++)
			if (!strcmp(listens[i], listens[k]))
				rc = bad(err, errlen, -EINVAL, "two maps listen "
					 "on %s", listens[i]);
		if (rc)
			break;
	}
	free(listens);
	return rc;
}

/* A new JSON string of s in lower case (keys are written so). */
static json_t *lower(const char *s)
{
	char buf[HW_PK_HEXLEN + 1];
	size_t n = strlen(s);

	if (n > HW_PK_HEXLEN)
		return json_string(s);
	for (size_t i = 0; i <= n; i++)
		buf[i] = (char)tolower((unsigned char)s[i]);
	return json_string(buf);
}

int hw_fwd_expose(json_t *doc, const char *name, const char *target,
		  const char *const *allow, size_t n, char *err,
		  size_t errlen)
{
	json_t *exp, *e, *keys = NULL, *entry;
	int any = 0, rc;
	size_t i, k;

	if (!hw_fwd_name_ok(name))
		return bad(err, errlen, -EINVAL, "'%s' is not a service name: "
			   "1 to %d of a-z 0-9 . _ -", name, HW_FWD_NAME_MAX);
	if ((rc = hw_fwd_target_check(target, err, errlen)))
		return rc;
	if (n == 0)
		return bad(err, errlen, -EINVAL, "say who may connect to %s: "
			   "--allow PK (repeatable) or --allow any", name);
	if (n > HW_FWD_ALLOW_MAX)
		return bad(err, errlen, -EINVAL, "at most %d --allow",
			   HW_FWD_ALLOW_MAX);
	for (i = 0; i < n; i++) {
		if (!strcmp(allow[i], "any")) {
			any = 1;
			continue;
		}
		if (hw_cli_pk_bad(allow[i]))
			return bad(err, errlen, -EINVAL, "--allow '%s' is "
				   "neither a visor's public key (%s) nor "
				   "'any'", allow[i], hw_cli_pk_bad(allow[i]));
	}
	if (any && n > 1) {
		for (i = 0; i < n && !strcmp(allow[i], "any"); i++)
			;
		if (i < n)
			return bad(err, errlen, -EINVAL, "--allow any and "
				   "--allow PK together: choose one");
	}
	if (!(keys = json_array()))
		goto nomem;
	if (any && json_array_append_new(keys, json_string("any")))
		goto nomem;
	for (i = 0; !any && i < n; i++) {
		json_t *key = lower(allow[i]);
		int dup = 0;
		json_array_foreach(keys, k, e)
			dup |= json_equal(e, key);
		if (dup) {
			json_decref(key);
			continue;
		}
		if (json_array_append_new(keys, key))
			goto nomem;
	}
	if (!(exp = list(doc, "expose", 1))) {
		json_decref(keys);
		return bad(err, errlen, -EINVAL, "\"expose\" is not an array");
	}
	entry = json_pack("{s:s, s:s, s:o}", "name", name, "target", target,
			  "allow", keys);
	keys = NULL;
	if (!entry)
		goto nomem;
	json_array_foreach(exp, i, e)
		if (json_is_string(json_object_get(e, "name")) &&
		    !strcmp(str(e, "name"), name))
			return json_array_set_new(exp, i, entry) ? -ENOMEM : 0;
	if (json_array_append_new(exp, entry))
		goto nomem;
	return 0;
nomem:
	json_decref(keys);
	return bad(err, errlen, -ENOMEM, "out of memory");
}

int hw_fwd_unexpose(json_t *doc, const char *name, char *err, size_t errlen)
{
	json_t *exp = list(doc, "expose", 0), *e;
	size_t i;

	json_array_foreach(exp, i, e)
		if (json_is_string(json_object_get(e, "name")) &&
		    !strcmp(str(e, "name"), name))
			return json_array_remove(exp, i) ? -ENOMEM : 0;
	return bad(err, errlen, -ENOENT, "no service named '%s' is exposed "
		   "here (hopwire forward ls lists them)", name);
}

/* The index of the mapping whose listen address is listen (compared in
 * the one written form), or -1. */
static long find_map(json_t *map, const char *listen)
{
	char canon[HW_FWD_ADDR_MAX], why[256];
	json_t *e;
	size_t i;

	json_array_foreach(map, i, e) {
		const char *l = str(e, "listen");
		if (l && !hw_fwd_listen_parse(l, canon, why, sizeof(why)) &&
		    !strcmp(canon, listen))
			return (long)i;
	}
	return -1;
}

int hw_fwd_add(json_t *doc, const char *listen, const char *pk,
	       const char *service, int *same, char *err, size_t errlen)
{
	json_t *map, *e, *key;
	long i;

	*same = 0;
	if (!(map = list(doc, "map", 1)))
		return bad(err, errlen, -EINVAL, "\"map\" is not an array");
	if (!(key = lower(pk)))
		return bad(err, errlen, -ENOMEM, "out of memory");
	if ((i = find_map(map, listen)) >= 0) {
		e = json_array_get(map, (size_t)i);
		*same = json_equal(json_object_get(e, "pk"), key) &&
			str(e, "service") && !strcmp(str(e, "service"), service);
		json_decref(key);
		if (*same)
			return 0;
		return bad(err, errlen, -EEXIST, "%s is mapped already, to "
			   "service %s of %s: 'hopwire forward rm %s' first",
			   listen, str(e, "service") ? str(e, "service") : "?",
			   str(e, "pk") ? str(e, "pk") : "?", listen);
	}
	e = json_pack("{s:s, s:o, s:s}", "listen", listen, "pk", key,
		      "service", service);
	if (!e || json_array_append_new(map, e))
		return bad(err, errlen, -ENOMEM, "out of memory");
	return 0;
}

int hw_fwd_rm(json_t *doc, const char *listen, char *err, size_t errlen)
{
	json_t *map = list(doc, "map", 0);
	long i = find_map(map, listen);

	if (i < 0)
		return bad(err, errlen, -ENOENT, "nothing is mapped on %s "
			   "(hopwire forward ls lists the mappings)", listen);
	return json_array_remove(map, (size_t)i) ? -ENOMEM : 0;
}
