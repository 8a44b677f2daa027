/* undo.json (undo.h). An entry:
 *   {"op": "route", "family": 4, "dst": "203.0.113.7", "prefix": 32,
 *    "gw": "10.0.0.1", "dev": "eth0"}    ("gw" absent for a link route) */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "status.h"
#include "undo.h"

struct hw_vpn_undo {
	char *path;
	json_t *changes; /* array, oldest first */
};

int hw_vpn_undo_new(struct hw_vpn_undo **out, const char *path)
{
	struct hw_vpn_undo *u = calloc(1, sizeof(*u));

	*out = NULL;
	if (!u || !(u->path = strdup(path)) ||
	    !(u->changes = json_array())) {
		hw_vpn_undo_free(u);
		return -ENOMEM;
	}
	*out = u;
	return 0;
}

void hw_vpn_undo_free(struct hw_vpn_undo *u)
{
	if (!u)
		return;
	json_decref(u->changes);
	free(u->path);
	free(u);
}

static json_t *entry(const struct hw_vpn_route *r)
{
	int f = r->family == 4 ? AF_INET : AF_INET6;
	char d[INET6_ADDRSTRLEN], g[INET6_ADDRSTRLEN], dev[IF_NAMESIZE];
	json_t *e;

	if (!if_indextoname((unsigned)r->oif, dev))
		return NULL;
	inet_ntop(f, r->dst, d, sizeof(d));
	e = json_pack("{s:s, s:i, s:s, s:i, s:s}", "op", "route", "family",
		      r->family, "dst", d, "prefix", r->prefix, "dev", dev);
	if (e && r->has_gw) {
		inet_ntop(f, r->gw, g, sizeof(g));
		json_object_set_new(e, "gw", json_string(g));
	}
	return e;
}

static int save(struct hw_vpn_undo *u)
{
	json_t *doc;
	int rc;

	if (!json_array_size(u->changes))
		return unlink(u->path) < 0 && errno != ENOENT ? -errno : 0;
	doc = json_pack("{s:i, s:O}", "version", 1, "changes", u->changes);
	if (!doc)
		return -ENOMEM;
	rc = hw_vpn_json_save(u->path, doc, 1);
	json_decref(doc);
	return rc;
}

static void forget(struct hw_vpn_undo *u, const json_t *e)
{
	size_t i;
	json_t *x;

	json_array_foreach(u->changes, i, x)
		if (json_equal(x, e)) {
			json_array_remove(u->changes, i);
			return;
		}
}

int hw_vpn_undo_route_add(struct hw_vpn_undo *u, struct hw_vpn_nl *nl,
			  const struct hw_vpn_route *r)
{
	json_t *e = entry(r);
	int rc;

	if (!e)
		return -ENODEV;
	if (json_array_size(u->changes) >= HW_VPN_UNDO_MAX) {
		json_decref(e);
		return -ENOSPC;
	}
	json_array_append(u->changes, e);
	if ((rc = save(u)))
		goto fail;
	if ((rc = hw_vpn_nl_route(nl, 1, r)))
		goto fail;
	json_decref(e);
	return 0;
fail:
	forget(u, e);
	save(u);
	json_decref(e);
	return rc;
}

int hw_vpn_undo_route_del(struct hw_vpn_undo *u, struct hw_vpn_nl *nl,
			  const struct hw_vpn_route *r)
{
	json_t *e = entry(r);
	int rc = hw_vpn_nl_route(nl, 0, r);

	if (rc == -ESRCH || rc == -ENODEV)
		rc = 0;
	if (!rc && e) {
		forget(u, e);
		rc = save(u);
	}
	json_decref(e);
	return rc;
}

/* Parses an entry back into a route. Returns 0, -ENODEV when its
 * interface is gone (so is the route), -EINVAL when malformed. */
static int parse(const json_t *e, struct hw_vpn_route *r)
{
	const char *op = json_string_value(json_object_get(e, "op"));
	const char *d = json_string_value(json_object_get(e, "dst"));
	const char *g = json_string_value(json_object_get(e, "gw"));
	const char *dev = json_string_value(json_object_get(e, "dev"));
	json_t *fam = json_object_get(e, "family");
	json_t *pre = json_object_get(e, "prefix");
	int f;

	memset(r, 0, sizeof(*r));
	if (!op || strcmp(op, "route") || !d || !dev || !json_is_integer(fam) ||
	    !json_is_integer(pre))
		return -EINVAL;
	r->family = (int)json_integer_value(fam);
	if (r->family != 4 && r->family != 6)
		return -EINVAL;
	f = r->family == 4 ? AF_INET : AF_INET6;
	r->prefix = (int)json_integer_value(pre);
	if (json_integer_value(pre) < 0 ||
	    json_integer_value(pre) > (r->family == 4 ? 32 : 128) ||
	    inet_pton(f, d, r->dst) != 1 ||
	    (g && inet_pton(f, g, r->gw) != 1) ||
	    (json_object_get(e, "gw") && !g))
		return -EINVAL;
	r->has_gw = !!g;
	r->oif = (int)if_nametoindex(dev);
	return r->oif ? 0 : -ENODEV;
}

static int undo_array(json_t *arr, struct hw_vpn_nl *nl, int *done,
		      char *err, size_t errlen)
{
	struct hw_vpn_route r;
	size_t i;

	for (i = json_array_size(arr); i-- > 0;)
		if (parse(json_array_get(arr, i), &r) == -EINVAL) {
			snprintf(err, errlen, "changes[%zu] is not a route "
				 "this client records", i);
			return -EINVAL;
		}
	for (i = json_array_size(arr); i-- > 0;) {
		int rc = parse(json_array_get(arr, i), &r);

		if (rc == 0)
			rc = hw_vpn_nl_route(nl, 0, &r);
		if (rc == 0)
			(*done)++;
		json_array_remove(arr, i);
	}
	return 0;
}

int hw_vpn_undo_all(struct hw_vpn_undo *u, struct hw_vpn_nl *nl)
{
	char err[128];
	int done = 0;

	undo_array(u->changes, nl, &done, err, sizeof(err));
	json_array_clear(u->changes);
	save(u);
	return done;
}

int hw_vpn_undo_replay(const char *path, struct hw_vpn_nl *nl, int *done,
		       char *err, size_t errlen)
{
	json_t *doc = NULL, *arr;
	char why[128];
	int rc;

	*done = 0;
	rc = hw_vpn_json_load(path, 1u << 20, &doc, err, errlen);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	arr = json_object_get(doc, "changes");
	if (!json_is_array(arr)) {
		snprintf(err, errlen, "%s: \"changes\" is not an array", path);
		rc = -EINVAL;
	} else if ((rc = undo_array(arr, nl, done, why, sizeof(why)))) {
		snprintf(err, errlen, "%s: %s", path, why);
	} else if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	}
	json_decref(doc);
	return rc;
}
