/* hopwire app ...: the visor's apps through the control API (GET
 * /v1/apps, POST /v1/apps/NAME/start|stop|autostart). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

/* How long stop waits, in 50 ms ticks: the grace before SIGKILL (3 s)
 * and a cleanup's limit (10 s), with room. */
#define WAIT_TICKS 400

json_t *hw_cli_app_entry(const char *name, int *rc)
{
	json_t *apps, *e, *found = NULL;
	size_t i;

	if ((*rc = hw_cli_call("GET", "/v1/apps", NULL, 10000, &apps)))
		return NULL;
	json_array_foreach(apps, i, e)
		if (!strcmp(hw_cli_str(e, "name"), name))
			found = json_incref(e);
	json_decref(apps);
	return found;
}

int hw_cli_app_settle(const char *name, int want_running)
{
	const struct timespec tick = {0, 100 * 1000 * 1000};
	long long deadline = hw_cli_now_ms() + 8000;
	json_t *e = NULL;
	int rc = 0;

	for (;;) {
		json_decref(e);
		if (!(e = hw_cli_app_entry(name, &rc)))
			return rc ? rc : 1;
		const char *st = hw_cli_str(e, "state");
		if (!strcmp(st, "running") &&
		    hw_cli_num(e, "uptime_ms") >= 1000)
			break;
		if (!strcmp(st, "backoff") || !strcmp(st, "failed") ||
		    !strcmp(st, "exited") ||
		    (!want_running && !strcmp(st, "stopped"))) {
			if (!want_running && !strcmp(st, "stopped"))
				break;
			json_t *ex = json_object_get(e, "last_exit");
			long long sig = hw_cli_num(ex, "signal");
			if (json_is_string(json_object_get(e, "error")))
				hw_cli_err("app '%s' did not start: %s", name,
					   hw_cli_str(e, "error"));
			else if (json_is_object(ex))
				hw_cli_err("app '%s' %s %lld with these "
					   "settings: see %s", name,
					   sig ? "was killed by signal"
					       : "exited with status",
					   sig ? sig : hw_cli_num(ex, "status"),
					   hw_cli_str(e, "log"));
			else
				hw_cli_err("app '%s' is %s: see %s", name, st,
					   hw_cli_str(e, "log"));
			json_decref(e);
			return 1;
		}
		if (hw_cli_now_ms() > deadline) {
			hw_cli_err("app '%s' is still %s after 8 s: see %s",
				   name, st, hw_cli_str(e, "log"));
			json_decref(e);
			return 1;
		}
		nanosleep(&tick, NULL);
	}
	json_decref(e);
	return 0;
}

static void app_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire app ls [--json]\n"
		"       hopwire app start NAME\n"
		"       hopwire app stop NAME\n"
		"       hopwire app autostart NAME on|off\n\n"
		"ls lists the apps of the visor's config (\"apps\") and apps "
		"started by hand on\nits app socket: name, port, state, pid, "
		"automatic restarts, autostart.\n\nstart and stop run and stop "
		"a configured app (a stopped app is not restarted);\nstop "
		"returns once the process has exited (SIGTERM, then SIGKILL "
		"after 3 s) and\nits cleanup, if its entry has cleanup_args, "
		"has run. autostart sets whether\nthe visor starts the app "
		"when it starts, and writes that to the config file.\nAn "
		"app's output is in LOCAL_DIR/apps/NAME.log.\n");
}

static int app_ls(void)
{
	json_t *apps, *e;
	size_t i;
	int rc;

	if ((rc = hw_cli_call("GET", "/v1/apps", NULL, 10000, &apps)))
		return rc;
	if (hw_cli_opts.json) {
		hw_cli_print_json(apps);
		json_decref(apps);
		return 0;
	}
	if (json_array_size(apps) == 0)
		printf("no apps (add them to the config's \"apps\" list)\n");
	else
		printf("%-16s  %5s  %-10s  %8s  %8s  %-9s  %5s\n", "NAME",
		       "PORT", "STATE", "PID", "RESTARTS", "AUTOSTART",
		       "LOOPS");
	json_array_foreach(apps, i, e) {
		json_t *pid = json_object_get(e, "pid");
		char pidbuf[24] = "-", rs[24] = "-";

		if (json_is_integer(pid))
			snprintf(pidbuf, sizeof(pidbuf), "%lld",
				 (long long)json_integer_value(pid));
		if (json_is_integer(json_object_get(e, "restarts")))
			snprintf(rs, sizeof(rs), "%lld",
				 (long long)json_integer_value(
					 json_object_get(e, "restarts")));
		printf("%-16s  %5lld  %-10s  %8s  %8s  %-9s  %5lld\n",
		       hw_cli_str(e, "name"),
		       hw_cli_num(e, "port"),
		       hw_cli_str(e, "state"), pidbuf, rs,
		       json_is_true(json_object_get(e, "autostart")) ? "on"
								     : "off",
		       (long long)json_integer_value(json_object_get(e,
								     "loops")));
		if (json_is_string(json_object_get(e, "error")))
			printf("  %s\n", hw_cli_str(e, "error"));
	}
	json_decref(apps);
	return 0;
}

static int stopping(json_t *o)
{
	return !strcmp(hw_cli_str(o, "state"), "stopping") ||
	       !strcmp(hw_cli_str(o, "state"), "cleanup");
}

json_t *hw_cli_app_wait_stopped(const char *name, json_t *o, int *rc)
{
	const struct timespec tick = {0, 50 * 1000 * 1000};

	for (int i = 0; i < WAIT_TICKS && stopping(o); i++) {
		json_t *apps, *e, *found = NULL;
		size_t k;

		nanosleep(&tick, NULL);
		if ((*rc = hw_cli_call("GET", "/v1/apps", NULL, 10000,
				       &apps)))
			break;
		json_array_foreach(apps, k, e)
			if (!strcmp(hw_cli_str(e, "name"), name))
				found = e;
		if (found) {
			json_incref(found);
			json_decref(o);
			o = found;
		}
		json_decref(apps);
	}
	return o;
}

static int app_call(const char *method, const char *name,
		    const char *action, json_t *body, json_t **resp)
{
	char path[256];

	snprintf(path, sizeof(path), "/v1/apps/%s%s%s", name,
		 action ? "/" : "", action ? action : "");
	return hw_cli_call(method, path, body, 15000, resp);
}

int hw_cli_app_put(const char *name, json_t *body, json_t *old)
{
	static const char *const keys[] = {"binary", "args", "port",
					   "autostart", "capabilities",
					   "cleanup_args", NULL};
	json_t *o = NULL, *prev, *off;
	int rc;

	if (!body) {
		hw_cli_err("out of memory");
		return 1;
	}
	rc = app_call("PUT", name, NULL, body, &o);
	json_decref(o);
	o = NULL;
	if (rc || !(rc = hw_cli_app_settle(name, json_is_true(json_object_get(
						     body, "autostart")))))
		return rc;
	if (old) {
		if (!(prev = json_object()))
			return rc;
		for (int i = 0; keys[i]; i++)
			if (json_object_get(old, keys[i]))
				json_object_set(prev, keys[i],
						json_object_get(old, keys[i]));
		if (app_call("PUT", name, NULL, prev, &o) == 0)
			hw_cli_err("app '%s': the previous settings are back "
				   "in place", name);
		json_decref(o);
		json_decref(prev);
		return rc;
	}
	if (app_call("POST", name, "stop", NULL, &o) == 0)
		o = hw_cli_app_wait_stopped(name, o, &rc);
	json_decref(o);
	o = NULL;
	off = json_pack("{s:b}", "on", 0);
	if (off && app_call("POST", name, "autostart", off, &o) == 0)
		hw_cli_err("app '%s' stopped, autostart off", name);
	json_decref(off);
	json_decref(o);
	return 1;
}

static int app_action(const char *name, const char *action, json_t *body)
{
	char path[256];
	json_t *o;
	int rc;

	if (strlen(name) > 64 || strchr(name, '/')) {
		hw_cli_err("'%s' is not an app name", name);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/apps/%s/%s", name, action);
	if ((rc = hw_cli_call("POST", path, body, 15000, &o)))
		return rc;
	if (!strcmp(action, "stop"))
		o = hw_cli_app_wait_stopped(name, o, &rc);
	if (rc || stopping(o)) {
		if (!rc)
			hw_cli_err("app '%s' is still %s after %d s", name,
				   hw_cli_str(o, "state"), WAIT_TICKS / 20);
		json_decref(o);
		return rc ? rc : 1;
	}
	if (hw_cli_opts.json)
		hw_cli_print_json(o);
	else if (!strcmp(action, "autostart"))
		printf("%s: autostart %s\n", name,
		       json_is_true(json_object_get(o, "autostart")) ? "on"
								     : "off");
	else
		printf("%s: %s\n", name, hw_cli_str(o, "state"));
	json_decref(o);
	return 0;
}

int hw_cli_app(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (!sub || !strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		app_usage(sub ? stdout : stderr);
		return sub ? 0 : 2;
	}
	if (!strcmp(sub, "ls") && argc == 2)
		return app_ls();
	if ((!strcmp(sub, "start") || !strcmp(sub, "stop")) && argc == 3)
		return app_action(argv[2], sub, NULL);
	if (!strcmp(sub, "autostart") && argc == 4) {
		int on = !strcmp(argv[3], "on");
		if (!on && strcmp(argv[3], "off")) {
			hw_cli_err("autostart: '%s' is not on or off",
				   argv[3]);
			return 2;
		}
		json_t *b = json_pack("{s:b}", "on", on);
		int rc = app_action(argv[2], "autostart", b);
		json_decref(b);
		return rc;
	}
	app_usage(stderr);
	return 2;
}
