/* The control API's app endpoints (docs/api.md):
 *   GET  /v1/apps                    configured apps and apps started by
 *                                    hand, with their state
 *   PUT  /v1/apps/NAME               {"binary", "args", "port",
 *                                    "autostart", "capabilities",
 *                                    "cleanup_args"}: add or change an
 *                                    app, kept in the config
 *   POST /v1/apps/NAME/start|stop
 *   POST /v1/apps/NAME/autostart     {"on": bool}, kept in the config
 *   GET  /v1/apps/NAME/status        the app's status.json, and
 *   GET|PUT /v1/apps/NAME/settings   its settings.json (api_app_files.c)
 *   GET  /v1/apps/NAME/loops         its open loops */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "visor/visor_priv.h"

#define APPS_PREFIX "/v1/apps/"

/* Launcher entries, with what the app server knows of each (connected,
 * loops), then the apps connected by hand that the config does not name. */
static json_t *apps_json(struct hw_visor *v)
{
	json_t *list = hw_launcher_json(v->launcher);
	json_t *conn = hw_appserver_json(v->apps), *c, *e;
	size_t i, k;

	if (!list || !conn) {
		json_decref(list);
		json_decref(conn);
		return NULL;
	}
	json_array_foreach(list, i, e) {
		json_object_set_new(e, "connected", json_false());
		json_object_set_new(e, "loops", json_integer(0));
		json_object_set_new(e, "launched", json_true());
	}
	json_array_foreach(conn, k, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		int found = 0;

		json_array_foreach(list, i, e) {
			if (strcmp(json_string_value(json_object_get(e, "name")),
				   name))
				continue;
			found = 1;
			json_object_set_new(e, "connected", json_true());
			json_object_set(e, "loops", json_object_get(c, "loops"));
			if (!json_is_true(json_object_get(c, "launched"))) {
				/* Started by hand under a configured name. */
				json_object_set_new(e, "launched",
						    json_false());
				json_object_set_new(e, "state",
						    json_string("connected"));
			}
		}
		if (found || !json_is_true(json_object_get(c, "initialised")))
			continue;
		json_array_append_new(
			list, json_pack("{s:s, s:O, s:s, s:n, s:b, s:b, s:O, "
					"s:b}",
					"name", name, "port",
					json_object_get(c, "port"), "state",
					"connected", "pid", "autostart", 0,
					"connected", 1, "loops",
					json_object_get(c, "loops"), "launched",
					0));
	}
	json_decref(conn);
	return list;
}

/* The app's entry of GET /v1/apps, or JSON null. */
static void reply_entry(struct hw_visor *v, struct hw_api_req *req,
			const char *name)
{
	json_t *list = apps_json(v), *e, *found = NULL;
	size_t i;

	json_array_foreach(list, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "name")),
			    name))
			found = e;
	hw_api_reply(req, 200, found ? found : json_null());
	json_decref(list);
}

static void put_app(struct hw_visor *v, struct hw_api_req *req,
		    const char *name, json_t *body)
{
	const struct hw_config_app *other;
	struct hw_config_app a;
	char err[768];
	json_t *conn, *c;
	size_t i;
	int rc;

	if (!json_is_object(body)) {
		hw_api_reply_error(req, 400, "body must be a JSON object "
				   "{\"binary\": str, \"args\": [str...], "
				   "\"port\": int, \"autostart\": bool, "
				   "\"capabilities\": [str...], "
				   "\"cleanup_args\": [str...]}");
		return;
	}
	if (hw_config_app_parse(v->cfg.path, name, body, &a, err,
				sizeof(err))) {
		hw_api_reply_error(req, 400, "%s", err);
		return;
	}
	other = hw_launcher_app_by_port(v->launcher, a.port);
	if (other && strcmp(other->name, name)) {
		hw_api_reply_error(req, 409, "port %u is taken by app '%s'",
				   a.port, other->name);
		goto out;
	}
	/* Apps started by hand hold ports and names too. */
	conn = hw_appserver_json(v->apps);
	json_array_foreach(conn, i, c) {
		const char *n = json_string_value(json_object_get(c, "name"));
		int launched = json_is_true(json_object_get(c, "launched"));

		if (!n || launched)
			continue;
		if (!strcmp(n, name)) {
			hw_api_reply_error(req, 409, "app '%s' is running "
					   "(started by hand): stop it first",
					   name);
			json_decref(conn);
			goto out;
		}
		if (a.port &&
		    json_integer_value(json_object_get(c, "port")) == a.port) {
			hw_api_reply_error(req, 409, "port %u is held by app "
					   "'%s' (started by hand)", a.port,
					   n);
			json_decref(conn);
			goto out;
		}
	}
	json_decref(conn);
	if ((rc = hw_config_put_app(v->cfg.path, name, body, err,
				    sizeof(err)))) {
		/* -EINVAL: the file as it is would not take the entry. */
		hw_api_reply_error(req, rc == -EINVAL ? 409 : 500,
				   "config %s not changed: %s", v->cfg.path,
				   err);
		goto out;
	}
	if ((rc = hw_launcher_put(v->launcher, &a, err, sizeof(err)))) {
		hw_api_reply_error(req, rc == -EADDRINUSE ? 409 : 500, "%s",
				   err);
		goto out;
	}
	reply_entry(v, req, name);
out:
	hw_config_app_clear(&a);
}

void hw_visor_api_apps(struct hw_visor *v, struct hw_api_req *req,
		       const char *method, const char *path, json_t *body)
{
	char name[HW_CONFIG_APP_NAME_MAX + 1], err[512];
	const char *rest, *slash;
	size_t n;
	int rc, on;

	if (!strcmp(path, "/v1/apps")) {
		if (strcmp(method, "GET")) {
			hw_api_reply_error(req, 405, "%s is not allowed on %s",
					   method, path);
			return;
		}
		json_t *o = apps_json(v);
		if (!o) {
			hw_api_reply_error(req, 500, "out of memory");
			return;
		}
		hw_api_reply(req, 200, o);
		json_decref(o);
		return;
	}
	rest = path + strlen(APPS_PREFIX);
	slash = strchr(rest, '/');
	n = slash ? (size_t)(slash - rest) : strlen(rest);
	if (!slash && !strcmp(method, "PUT")) {
		if (n == 0 || n > HW_CONFIG_APP_NAME_MAX) {
			hw_api_reply_error(req, 400, "'%.*s' is not an app "
					   "name: 1 to %d letters, digits, "
					   "'-' or '_'", (int)(n > 64 ? 64 : n),
					   rest, HW_CONFIG_APP_NAME_MAX);
			return;
		}
		memcpy(name, rest, n);
		name[n] = '\0';
		put_app(v, req, name, body);
		return;
	}
	if (!slash) {
		hw_api_reply_error(req, n ? 405 : 404, n ? "%s is not allowed "
				   "on %s (PUT sets an app)" : "no such "
				   "endpoint: %s", n ? method : path, path);
		return;
	}
	if (n == 0 || n > HW_CONFIG_APP_NAME_MAX) {
		hw_api_reply_error(req, 404, "no such endpoint: %s", path);
		return;
	}
	memcpy(name, rest, n);
	name[n] = '\0';
	if (!strcmp(slash, "/loops")) {
		json_t *a;

		if (strcmp(method, "GET")) {
			hw_api_reply_error(req, 405, "%s is not allowed on %s",
					   method, path);
			return;
		}
		if (!(a = hw_appserver_loops_json(v->apps, name)) &&
		    !hw_launcher_app(v->launcher, name)) {
			hw_api_reply_error(req, 404, "no app '%s' (neither in "
					   "the config nor connected)", name);
			return;
		}
		if (!a && !(a = json_array())) {
			hw_api_reply_error(req, 500, "out of memory");
			return;
		}
		hw_api_reply(req, 200, a);
		json_decref(a);
		return;
	}
	if (!hw_launcher_app(v->launcher, name)) {
		hw_api_reply_error(req, 404, "no app '%s' in the config (%s)",
				   name, v->cfg.path);
		return;
	}
	if (!strcmp(slash, "/status")) {
		if (strcmp(method, "GET"))
			hw_api_reply_error(req, 405, "%s is not allowed on %s",
					   method, path);
		else
			hw_visor_api_app_status(v, req, name);
		return;
	}
	if (!strcmp(slash, "/settings")) {
		hw_visor_api_app_settings(v, req, method, name, body);
		return;
	}
	if (strcmp(method, "POST")) {
		hw_api_reply_error(req, 405, "%s is not allowed on %s", method,
				   path);
		return;
	}
	err[0] = '\0';
	if (!strcmp(slash, "/start")) {
		if (hw_appserver_connected(v->apps, name)) {
			hw_api_reply_error(req, 409, "app '%s' is running "
					   "(started by hand)", name);
			return;
		}
		rc = hw_launcher_start(v->launcher, name, err, sizeof(err));
	} else if (!strcmp(slash, "/stop")) {
		rc = hw_launcher_stop(v->launcher, name, err, sizeof(err));
	} else if (!strcmp(slash, "/autostart")) {
		json_t *o = json_object_get(body, "on");
		if (!json_is_boolean(o)) {
			hw_api_reply_error(req, 400, "on: must be true or "
					   "false");
			return;
		}
		on = json_is_true(o);
		rc = hw_config_set_autostart(v->cfg.path, name, on, err,
					     sizeof(err));
		if (rc == 0)
			hw_launcher_set_autostart(v->launcher, name, on);
	} else {
		hw_api_reply_error(req, 404, "no such endpoint: %s", path);
		return;
	}
	if (rc) {
		if (err[0])
			hw_api_reply_error(req, rc == HW_ESTATE ? 409 : 500,
					   "%s", err);
		else
			hw_api_reply_error(req, rc == HW_ESTATE ? 409 : 500,
					   "app '%s': %s", name,
					   hw_strerror(rc));
		return;
	}
	reply_entry(v, req, name);
}
