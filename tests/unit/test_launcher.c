#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "hwtest.h"
#include "util/err.h"
#include "visor/launcher.h"

#define PK_HEX                                                               \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define MAX_FDS 32

struct env {
	uv_loop_t loop;
	uv_timer_t tick;
	char dir[64];
	struct hw_launcher *l;
	struct hw_launcher_params p;
	int fds[MAX_FDS];
	int nfds;
	int started, exited;
	int last_pid;
	int64_t last_status;
	int last_signal;
	char got[256]; /* bytes read from the newest channel */
	size_t ngot;
};

static void on_started(void *ud, const char *name, uint16_t port, int fd,
		       int pid)
{
	struct env *e = ud;

	assert_true(fd >= 0);
	assert_true(pid > 0);
	assert_true(e->nfds < MAX_FDS);
	e->fds[e->nfds++] = fd;
	e->started++;
	e->last_pid = pid;
	e->ngot = 0;
}

static void on_exited(void *ud, const char *name, int64_t status, int sig)
{
	struct env *e = ud;

	e->exited++;
	e->last_status = status;
	e->last_signal = sig;
}

static const struct hw_launcher_ops ops = {on_started, on_exited};

/* An app running `sh -c script` (sh given as path or as a bare name). */
static struct hw_config_app sh_app(const char *name, uint16_t port,
				   const char *sh, const char *script)
{
	static char *args[8][3];
	static int next;
	struct hw_config_app a;
	char **v = args[next++ % 8];

	memset(&a, 0, sizeof(a));
	snprintf(a.name, sizeof(a.name), "%s", name);
	snprintf(a.binary, sizeof(a.binary), "%s", sh);
	v[0] = "-c";
	v[1] = (char *)script;
	v[2] = NULL;
	a.args = v;
	a.nargs = 2;
	a.port = port;
	a.autostart = 1;
	return a;
}

/* e->p may be prepared by the caller (tuning); the rest is filled here. */
static void env_init(struct env *e, const struct hw_config_app *apps,
		     size_t napps)
{
	char err[256];

	strcpy(e->dir, "/tmp/hw-test-launcher-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	assert_int_equal(uv_loop_init(&e->loop), 0);
	uv_timer_init(&e->loop, &e->tick);
	e->p.loop = &e->loop;
	e->p.apps = apps;
	e->p.napps = napps;
	e->p.local_dir = e->dir;
	e->p.visor_pk_hex = PK_HEX;
	if (!e->p.ops)
		e->p.ops = &ops;
	e->p.ud = e;
	if (!e->p.backoff_min_ms)
		e->p.backoff_min_ms = 50;
	if (!e->p.backoff_max_ms)
		e->p.backoff_max_ms = 200;
	assert_int_equal(hw_launcher_new(&e->l, &e->p, err, sizeof(err)), 0);
}

static void env_fini(struct env *e)
{
	char cmd[128];

	hw_launcher_free(e->l);
	uv_close((uv_handle_t *)&e->tick, NULL);
	assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(hw_test_loop_close(&e->loop), 0);
	for (int i = 0; i < e->nfds; i++)
		close(e->fds[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	assert_int_equal(system(cmd), 0);
}

static int run_until(struct env *e, int (*cond)(void *), unsigned ms)
{
	return hw_test_run_until(&e->loop, &e->tick, cond, e, ms);
}

static int never(void *arg)
{
	return 0;
}

static void run_for(struct env *e, unsigned ms)
{
	run_until(e, never, ms);
}

static int want_started;
static int started_n(void *arg)
{
	return ((struct env *)arg)->started >= want_started;
}

static int want_exited;
static int exited_n(void *arg)
{
	return ((struct env *)arg)->exited >= want_exited;
}

static int wait_started(struct env *e, int n, unsigned ms)
{
	want_started = n;
	return run_until(e, started_n, ms);
}

static int wait_exited(struct env *e, int n, unsigned ms)
{
	want_exited = n;
	return run_until(e, exited_n, ms);
}

/* Reads what the newest channel has into e->got; true once a newline
 * came. */
static int channel_line(void *arg)
{
	struct env *e = arg;
	ssize_t n;

	if (!e->nfds)
		return 0;
	n = read(e->fds[e->nfds - 1], e->got + e->ngot,
		 sizeof(e->got) - 1 - e->ngot);
	if (n > 0)
		e->ngot += (size_t)n;
	e->got[e->ngot] = '\0';
	return strchr(e->got, '\n') != NULL;
}

static void read_text(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void log_path(struct env *e, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/apps/%s.log", e->dir, name);
}

/* The launcher's JSON entry for name (borrowed from list). */
static json_t *entry(json_t *list, const char *name)
{
	size_t i;
	json_t *o;

	json_array_foreach(list, i, o) {
		if (!strcmp(json_string_value(json_object_get(o, "name")),
			    name))
			return o;
	}
	fail_msg("no app %s in the JSON", name);
	return NULL;
}

static const char *state_of(struct env *e, const char *name, json_t **list)
{
	json_decref(*list);
	*list = hw_launcher_json(e->l);
	assert_non_null(*list);
	return json_string_value(json_object_get(entry(*list, name),
						 "state"));
}

static void test_channel_env_log(void **state)
{
	struct env e = {0};
	struct hw_config_app app =
		sh_app("echo", 42, "sh", /* bare name: found in PATH */
		       "echo hi >&3; read x; echo \"stdin=[$x]\"; "
		       "echo \"fd=$HOPWIRE_APP_FD name=$HOPWIRE_APP_NAME "
		       "port=$HOPWIRE_APP_PORT pk=$HOPWIRE_VISOR_PK "
		       "sock=${HOPWIRE_APP_SOCKET-unset} cwd=$(pwd) "
		       "api=$HOPWIRE_VISOR_API\"; "
		       "echo oops >&2; echo \"fds=$(ls /proc/self/fd | "
		       "tr '\\n' ' ')\"; exit 0");
	char err[256], path[256], text[4096], want[PATH_MAX + 512], *p;
	char cwd[PATH_MAX];
	struct stat st;
	json_t *list = NULL;
	int fl;

	/* A relative control socket reaches the app as an absolute path. */
	e.p.visor_api = "rel/visor.sock";
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	setenv("HOPWIRE_VISOR_API", "/not/this/one", 1);
	setenv("HOPWIRE_APP_SOCKET", "/should/not/pass", 1);
	setenv("HOPWIRE_APP_PORT", "999", 1);
	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "echo", err, sizeof(err)), 0);
	unsetenv("HOPWIRE_APP_SOCKET");
	unsetenv("HOPWIRE_APP_PORT");
	unsetenv("HOPWIRE_VISOR_API");
	assert_int_equal(e.started, 1);
	assert_true(hw_launcher_is_running(e.l, "echo"));
	/* The visor's end: non-blocking, close-on-exec. */
	fl = fcntl(e.fds[0], F_GETFL);
	assert_true(fl & O_NONBLOCK);
	assert_true(fcntl(e.fds[0], F_GETFD) & FD_CLOEXEC);
	assert_true(run_until(&e, channel_line, 5000));
	assert_string_equal(e.got, "hi\n");
	assert_true(wait_exited(&e, 1, 5000));
	assert_int_equal(e.last_status, 0);
	assert_int_equal(e.last_signal, 0);

	/* Exit status 0: no restart. */
	run_for(&e, 300);
	assert_int_equal(e.started, 1);
	assert_string_equal(state_of(&e, "echo", &list), "exited");
	assert_false(hw_launcher_is_running(e.l, "echo"));

	log_path(&e, "echo", path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	read_text(path, text, sizeof(text));
	snprintf(want, sizeof(want), "fd=3 name=echo port=42 pk=%s "
		 "sock=unset cwd=%s/apps/echo api=%s/rel/visor.sock\n", PK_HEX,
		 e.dir, cwd);
	assert_non_null(strstr(text, want));
	assert_non_null(strstr(text, "stdin=[]\n"));
	assert_non_null(strstr(text, "oops\n"));
	/* Nothing of the visor's leaks into the app: beyond 0-2, the channel
	 * and ls's own directory, only what this process inherited itself
	 * without close-on-exec. */
	assert_non_null(p = strstr(text, "fds="));
	for (p += 4; *p && *p != '\n';) {
		long fd = strtol(p, &p, 10);
		if (fd > 4) {
			int fdfl = fcntl((int)fd, F_GETFD);
			assert_true(fdfl >= 0 && !(fdfl & FD_CLOEXEC));
		}
		while (*p == ' ')
			p++;
	}
	assert_non_null(strstr(text, ": starting echo: "));
	assert_non_null(strstr(text, "echo (pid "));
	assert_non_null(strstr(text, ") exited with status 0 ---\n"));
	/* The marker comes before the app's output. */
	assert_true(strstr(text, "starting echo") < strstr(text, "stdin=["));
	snprintf(path, sizeof(path), "%s/apps/echo", e.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	json_decref(list);
	env_fini(&e);
}

static void test_crash_restarts_with_backoff(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("crash", 1, "/bin/sh", "exit 3");
	char err[256];
	json_t *list = NULL, *o, *ex;
	uint64_t t0;

	env_init(&e, &app, 1);
	t0 = uv_now(&e.loop);
	assert_int_equal(hw_launcher_start(e.l, "crash", err, sizeof(err)), 0);
	/* Delays 50, 100, 200 (+-20%) before the 2nd, 3rd, 4th start. */
	assert_true(wait_started(&e, 4, 5000));
	uv_update_time(&e.loop);
	assert_true(uv_now(&e.loop) - t0 >= 280);
	assert_true(wait_exited(&e, 4, 5000));
	assert_int_equal(e.last_status, 3);
	assert_string_equal(state_of(&e, "crash", &list), "backoff");
	o = entry(list, "crash");
	assert_int_equal(json_integer_value(json_object_get(o, "restarts")),
			 3);
	/* Capped at the maximum. */
	assert_true(json_is_integer(json_object_get(o, "next_restart_ms")));
	assert_true(json_integer_value(json_object_get(o, "next_restart_ms")) <=
		    240);
	assert_true(json_is_null(json_object_get(o, "pid")));
	ex = json_object_get(o, "last_exit");
	assert_int_equal(json_integer_value(json_object_get(ex, "status")), 3);
	assert_int_equal(json_integer_value(json_object_get(ex, "signal")), 0);
	assert_true(json_is_null(json_object_get(ex, "signal_name")));
	assert_true(hw_launcher_is_running(e.l, "crash"));

	/* Stop cancels the pending restart. */
	assert_int_equal(hw_launcher_stop(e.l, "crash", err, sizeof(err)), 0);
	assert_string_equal(state_of(&e, "crash", &list), "stopped");
	assert_false(hw_launcher_is_running(e.l, "crash"));
	run_for(&e, 400);
	assert_int_equal(e.started, 4);
	assert_int_equal(hw_launcher_stop(e.l, "crash", err, sizeof(err)),
			 HW_ESTATE);
	assert_non_null(strstr(err, "not running"));
	json_decref(list);
	env_fini(&e);
}

static void test_signal_is_a_crash(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("segv", 2, "/bin/sh", "kill -SEGV $$");
	char err[256];
	json_t *list = NULL, *ex;

	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "segv", err, sizeof(err)), 0);
	assert_true(wait_started(&e, 2, 5000));
	assert_int_equal(e.last_signal, 11);
	state_of(&e, "segv", &list);
	ex = json_object_get(entry(list, "segv"), "last_exit");
	assert_string_equal(json_string_value(json_object_get(ex,
							      "signal_name")),
			    "SIGSEGV");
	json_decref(list);
	env_fini(&e);
}

static void test_backoff_resets_after_stable_run(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("slow", 3, "/bin/sh",
					  "sleep 0.15; exit 1");
	char err[256];
	json_t *list = NULL;
	json_int_t next;

	e.p.backoff_min_ms = 50;
	e.p.backoff_max_ms = 5000;
	e.p.stable_ms = 100;
	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "slow", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 3, 5000));
	assert_string_equal(state_of(&e, "slow", &list), "backoff");
	/* Without the reset this would be 200 ms (+-20%). */
	next = json_integer_value(
		json_object_get(entry(list, "slow"), "next_restart_ms"));
	assert_true(next <= 60);
	json_decref(list);
	env_fini(&e);
}

static void test_stop_sigterm(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("idle", 4, "/bin/sh",
					  "echo ready >&3; exec sleep 30");
	char err[256];
	json_t *list = NULL;
	uint64_t t0;

	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "idle", err, sizeof(err)), 0);
	assert_true(run_until(&e, channel_line, 5000));
	assert_int_equal(hw_launcher_start(e.l, "idle", err, sizeof(err)),
			 HW_ESTATE);
	assert_non_null(strstr(err, "already running"));
	t0 = uv_now(&e.loop);
	assert_int_equal(hw_launcher_stop(e.l, "idle", err, sizeof(err)), 0);
	assert_string_equal(state_of(&e, "idle", &list), "stopping");
	assert_int_equal(hw_launcher_start(e.l, "idle", err, sizeof(err)),
			 HW_ESTATE);
	assert_non_null(strstr(err, "stopping"));
	/* A second stop while stopping is fine. */
	assert_int_equal(hw_launcher_stop(e.l, "idle", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 1, 5000));
	assert_int_equal(e.last_signal, 15);
	assert_true(uv_now(&e.loop) - t0 < 2000);
	run_for(&e, 300);
	assert_int_equal(e.started, 1);
	assert_string_equal(state_of(&e, "idle", &list), "stopped");
	/* It can be started again. */
	assert_int_equal(hw_launcher_start(e.l, "idle", err, sizeof(err)), 0);
	assert_int_equal(e.started, 2);
	assert_string_equal(state_of(&e, "idle", &list), "running");
	json_decref(list);
	env_fini(&e);
}

static void test_stop_sigkill_after_grace(void **state)
{
	struct env e = {0};
	struct hw_config_app app =
		sh_app("stubborn", 5, "/bin/sh",
		       "trap '' TERM; echo ready >&3; "
		       "while :; do sleep 0.05; done");
	char err[256];
	json_t *list = NULL;
	uint64_t t0;

	e.p.kill_grace_ms = 200;
	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "stubborn", err, sizeof(err)),
			 0);
	assert_true(run_until(&e, channel_line, 5000));
	t0 = uv_now(&e.loop);
	assert_int_equal(hw_launcher_stop(e.l, "stubborn", err, sizeof(err)),
			 0);
	assert_true(wait_exited(&e, 1, 5000));
	uv_update_time(&e.loop);
	assert_int_equal(e.last_signal, 9);
	assert_true(uv_now(&e.loop) - t0 >= 190);
	run_for(&e, 200);
	assert_int_equal(e.started, 1);
	assert_string_equal(state_of(&e, "stubborn", &list), "stopped");
	json_decref(list);
	env_fini(&e);
}

static void test_missing_binary(void **state)
{
	struct env e = {0};
	struct hw_config_app apps[3];
	char err[1024], path[256];
	json_t *list = NULL, *o;

	apps[0] = sh_app("ghost", 6, "hopwire-no-such-app", "true");
	apps[1] = sh_app("ghost2", 7, "/nonexistent/hopwire-app", "true");
	apps[2] = sh_app("noexec", 8, "/dev/null", "true");
	e.p.visor_exe_dir = "/nonexistent-visor-dir";
	env_init(&e, apps, 3);
	assert_int_equal(hw_launcher_start(e.l, "ghost", err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "hopwire-no-such-app"));
	assert_non_null(strstr(err, "not found"));
	assert_non_null(strstr(err, "/nonexistent-visor-dir"));
	assert_non_null(strstr(err, "PATH"));
	assert_string_equal(state_of(&e, "ghost", &list), "failed");
	o = entry(list, "ghost");
	assert_string_equal(json_string_value(json_object_get(o, "error")),
			    err);
	assert_false(hw_launcher_is_running(e.l, "ghost"));

	assert_int_equal(hw_launcher_start(e.l, "ghost2", err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/hopwire-app: not found"));
	assert_int_equal(hw_launcher_start(e.l, "noexec", err, sizeof(err)),
			 -EACCES);
	assert_non_null(strstr(err, "not an executable file"));
	assert_string_equal(state_of(&e, "noexec", &list), "failed");
	assert_int_equal(e.started, 0);
	/* Nothing to stop. */
	assert_int_equal(hw_launcher_stop(e.l, "ghost", err, sizeof(err)),
			 HW_ESTATE);
	/* No log was made for an app that never ran. */
	log_path(&e, "ghost", path, sizeof(path));
	assert_int_not_equal(access(path, F_OK), 0);
	json_decref(list);
	env_fini(&e);
}

/* A bare name is looked up beside the visor before PATH. */
static void test_binary_beside_visor(void **state)
{
	struct env e = {0};
	struct hw_config_app app;
	char bindir[128], bin[192], err[256], cmd[256];
	FILE *f;

	strcpy(bindir, "/tmp/hw-test-launcher-bin-XXXXXX");
	assert_non_null(mkdtemp(bindir));
	/* Named like a program in PATH, to see which one wins. */
	snprintf(bin, sizeof(bin), "%s/true", bindir);
	assert_non_null(f = fopen(bin, "w"));
	fputs("#!/bin/sh\necho \"beside $#\" >&3\n", f);
	fclose(f);
	assert_int_equal(chmod(bin, 0700), 0);
	app = sh_app("beside", 9, "true", "unused");
	e.p.visor_exe_dir = bindir;
	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "beside", err, sizeof(err)),
			 0);
	assert_true(run_until(&e, channel_line, 5000));
	assert_string_equal(e.got, "beside 2\n");
	assert_true(wait_exited(&e, 1, 5000));
	env_fini(&e);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", bindir);
	assert_int_equal(system(cmd), 0);
}

static void test_lookup_and_errors(void **state)
{
	struct env e = {0};
	struct hw_config_app apps[2];
	const struct hw_config_app *c;
	char err[256];

	apps[0] = sh_app("chat", 1, "/bin/sh", "exec sleep 30");
	apps[1] = sh_app("hello", 10, "/bin/sh", "exec sleep 30");
	apps[1].autostart = 0;
	env_init(&e, apps, 2);
	/* Deep copies: the caller's config may go. */
	memset(apps, 0, sizeof(apps));
	assert_non_null(c = hw_launcher_app(e.l, "hello"));
	assert_string_equal(c->name, "hello");
	assert_int_equal(c->port, 10);
	assert_int_equal(c->nargs, 2);
	assert_string_equal(c->args[1], "exec sleep 30");
	assert_null(c->args[2]);
	assert_ptr_equal(hw_launcher_app_by_port(e.l, 10), c);
	assert_null(hw_launcher_app_by_port(e.l, 11));
	assert_null(hw_launcher_app_by_port(e.l, 0));
	assert_null(hw_launcher_app(e.l, "nope"));
	assert_int_equal(hw_launcher_start(e.l, "nope", err, sizeof(err)),
			 -ENOENT);
	assert_int_equal(hw_launcher_stop(e.l, "nope", err, sizeof(err)),
			 -ENOENT);
	assert_int_equal(hw_launcher_set_autostart(e.l, "nope", 1), -ENOENT);
	assert_false(hw_launcher_is_running(e.l, "nope"));
	assert_int_equal(hw_launcher_stop(e.l, "chat", NULL, 0), HW_ESTATE);

	/* Autostart starts only the apps that have it. */
	hw_launcher_autostart(e.l);
	assert_int_equal(e.started, 1);
	assert_true(hw_launcher_is_running(e.l, "chat"));
	assert_false(hw_launcher_is_running(e.l, "hello"));
	assert_int_equal(hw_launcher_set_autostart(e.l, "hello", 1), 0);
	assert_int_equal(hw_launcher_app(e.l, "hello")->autostart, 1);
	hw_launcher_autostart(e.l); /* chat is running: left alone */
	assert_int_equal(e.started, 2);
	assert_true(hw_launcher_is_running(e.l, "hello"));
	assert_int_equal(hw_launcher_start(e.l, "chat", NULL, 0), HW_ESTATE);
	env_fini(&e);
}

static void test_json_fields(void **state)
{
	static const char *const keys[] = {
		"name", "binary", "args", "port", "state", "pid", "uptime_ms",
		"restarts", "autostart", "log", "last_exit",
		"next_restart_ms", "error", "capabilities", "cleanup_args",
		"cleanup_pid", NULL};
	struct env e = {0};
	struct hw_config_app apps[2];
	char err[256], path[256];
	json_t *list, *o;

	apps[0] = sh_app("run", 20, "/bin/sh", "exec sleep 30");
	apps[1] = sh_app("idle", 21, "/bin/sh", "true");
	apps[1].autostart = 0;
	env_init(&e, apps, 2);
	assert_int_equal(hw_launcher_start(e.l, "run", err, sizeof(err)), 0);
	run_for(&e, 20);
	assert_non_null(list = hw_launcher_json(e.l));
	assert_int_equal(json_array_size(list), 2);
	o = json_array_get(list, 0);
	for (int i = 0; keys[i]; i++)
		assert_non_null(json_object_get(o, keys[i]));
	assert_int_equal(json_object_size(o), 16);
	assert_int_equal(json_array_size(json_object_get(o, "capabilities")),
			 0);
	assert_int_equal(json_array_size(json_object_get(o, "cleanup_args")),
			 0);
	assert_true(json_is_null(json_object_get(o, "cleanup_pid")));
	assert_string_equal(json_string_value(json_object_get(o, "name")),
			    "run");
	assert_string_equal(json_string_value(json_object_get(o, "binary")),
			    "/bin/sh");
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(o, "args"), 0)),
			    "-c");
	assert_int_equal(json_integer_value(json_object_get(o, "port")), 20);
	assert_string_equal(json_string_value(json_object_get(o, "state")),
			    "running");
	assert_int_equal(json_integer_value(json_object_get(o, "pid")),
			 e.last_pid);
	assert_true(json_is_integer(json_object_get(o, "uptime_ms")));
	assert_int_equal(json_integer_value(json_object_get(o, "restarts")),
			 0);
	assert_true(json_is_true(json_object_get(o, "autostart")));
	log_path(&e, "run", path, sizeof(path));
	assert_string_equal(json_string_value(json_object_get(o, "log")),
			    path);
	assert_true(json_is_null(json_object_get(o, "last_exit")));
	assert_true(json_is_null(json_object_get(o, "next_restart_ms")));
	assert_true(json_is_null(json_object_get(o, "error")));
	o = json_array_get(list, 1);
	assert_string_equal(json_string_value(json_object_get(o, "state")),
			    "stopped");
	assert_true(json_is_false(json_object_get(o, "autostart")));
	assert_true(json_is_null(json_object_get(o, "pid")));
	assert_true(json_is_null(json_object_get(o, "uptime_ms")));
	json_decref(list);
	env_fini(&e);
}

static void test_free_while_running(void **state)
{
	struct env e = {0};
	struct hw_config_app apps[4];
	char err[256];
	uint64_t t0;

	apps[0] = sh_app("calm", 30, "/bin/sh", "exec sleep 30");
	apps[1] = sh_app("stubborn", 31, "/bin/sh",
			 "trap '' TERM; echo ready >&3; "
			 "while :; do sleep 0.05; done");
	apps[2] = sh_app("crashy", 32, "/bin/sh", "exit 1");
	apps[3] = sh_app("never", 33, "/bin/sh", "true");
	apps[3].autostart = 0;
	e.p.kill_grace_ms = 200;
	e.p.backoff_min_ms = 5000; /* crashy waits in backoff */
	e.p.backoff_max_ms = 5000;
	env_init(&e, apps, 4);
	assert_int_equal(hw_launcher_start(e.l, "crashy", err, sizeof(err)),
			 0);
	assert_true(wait_exited(&e, 1, 5000));
	assert_int_equal(hw_launcher_start(e.l, "calm", err, sizeof(err)), 0);
	assert_int_equal(hw_launcher_start(e.l, "stubborn", err, sizeof(err)),
			 0);
	assert_true(run_until(&e, channel_line, 5000));
	t0 = uv_now(&e.loop);
	hw_launcher_free(e.l);
	e.l = NULL;
	/* Until the SIGKILL has gone to stubborn, the loop has work. */
	uv_run(&e.loop, UV_RUN_DEFAULT);
	assert_true(uv_now(&e.loop) - t0 >= 190);
	assert_true(uv_now(&e.loop) - t0 < 3000);
	assert_int_equal(e.exited, 1); /* no callback after free */
	env_fini(&e); /* closes the loop: nothing may be left on it */
}

static void test_free_idle_and_null(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("x", 40, "/bin/sh", "true");

	hw_launcher_free(NULL);
	env_init(&e, &app, 1);
	env_fini(&e);
	/* No apps at all. */
	memset(&e, 0, sizeof(e));
	env_init(&e, NULL, 0);
	env_fini(&e);
}

static void test_log_rotation(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("big", 50, "/bin/sh", "echo fresh");
	char err[256], path[256], old[300], text[4096], *p;
	struct stat st;
	int fd, n = 0;

	env_init(&e, &app, 1);
	snprintf(path, sizeof(path), "%s/apps", e.dir);
	assert_int_equal(mkdir(path, 0700), 0);
	log_path(&e, "big", path, sizeof(path));
	snprintf(old, sizeof(old), "%s.1", path);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, HW_LAUNCHER_LOG_MAX + 1), 0);
	close(fd);

	assert_int_equal(hw_launcher_start(e.l, "big", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 1, 5000));
	assert_int_equal(stat(old, &st), 0);
	assert_int_equal(st.st_size, HW_LAUNCHER_LOG_MAX + 1);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size < 4096);
	/* A small log is appended to, not rotated. */
	assert_int_equal(hw_launcher_start(e.l, "big", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 2, 5000));
	assert_int_equal(stat(old, &st), 0);
	assert_int_equal(st.st_size, HW_LAUNCHER_LOG_MAX + 1);
	read_text(path, text, sizeof(text));
	for (p = text; (p = strstr(p, "fresh\n")); p++)
		n++;
	assert_int_equal(n, 2);
	env_fini(&e);
}

/* The started callback may stop the app it was told about. */
static void stop_at_once(void *ud, const char *name, uint16_t port, int fd,
			 int pid)
{
	struct env *e = ud;
	on_started(ud, name, port, fd, pid);
	assert_int_equal(hw_launcher_stop(e->l, name, NULL, 0), 0);
}

static void test_stop_from_started(void **state)
{
	static const struct hw_launcher_ops stop_ops = {stop_at_once,
							 on_exited};
	struct env e = {0};
	struct hw_config_app app = sh_app("brief", 60, "/bin/sh",
					  "exec sleep 30");
	char err[256];

	e.p.ops = &stop_ops;
	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "brief", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 1, 5000));
	assert_int_equal(e.last_signal, 15);
	run_for(&e, 200);
	assert_int_equal(e.started, 1);
	env_fini(&e);
}

/* uv_spawn itself fails (the kernel refuses an argument over 128 KiB). */
static void test_spawn_error(void **state)
{
	struct env e = {0};
	struct hw_config_app app;
	size_t big = 200 * 1024;
	char err[512], *script = malloc(big + 8);
	json_t *list = NULL;

	assert_non_null(script);
	memset(script, ' ', big);
	strcpy(script + big, "true");
	app = sh_app("huge", 70, "/bin/sh", script);
	env_init(&e, &app, 1);
	free(script); /* the launcher holds a copy */
	assert_int_equal(hw_launcher_start(e.l, "huge", err, sizeof(err)),
			 -E2BIG);
	assert_non_null(strstr(err, "cannot run /bin/sh"));
	assert_string_equal(state_of(&e, "huge", &list), "failed");
	assert_int_equal(e.started, 0);
	json_decref(list);
	env_fini(&e);
}

/* The app's working folder cannot be made: failed, with the path. */
static void test_cwd_error(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("blocked", 71, "/bin/sh", "true");
	char err[512], path[256];
	int fd;

	env_init(&e, &app, 1);
	snprintf(path, sizeof(path), "%s/apps", e.dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/apps/blocked", e.dir);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) >= 0);
	close(fd);
	assert_int_equal(hw_launcher_start(e.l, "blocked", err, sizeof(err)),
			 -ENOTDIR);
	assert_non_null(strstr(err, "apps/blocked: not a directory"));
	env_fini(&e);
}

/* A start asked for while the app waits for its restart runs it now. */
static void test_start_during_backoff(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("flaky", 72, "/bin/sh",
					  "exit 1");
	char err[256];
	json_t *list = NULL;

	e.p.backoff_min_ms = 5000;
	e.p.backoff_max_ms = 5000;
	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "flaky", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 1, 5000));
	assert_string_equal(state_of(&e, "flaky", &list), "backoff");
	hw_launcher_autostart(e.l); /* the restart is already planned */
	assert_int_equal(e.started, 1);
	assert_int_equal(hw_launcher_start(e.l, "flaky", err, sizeof(err)), 0);
	assert_int_equal(e.started, 2);
	assert_string_equal(state_of(&e, "flaky", &list), "running");
	assert_int_equal(json_integer_value(json_object_get(
				 entry(list, "flaky"), "restarts")),
			 0);
	assert_true(wait_exited(&e, 2, 5000));
	assert_string_equal(state_of(&e, "flaky", &list), "backoff");
	json_decref(list);
	env_fini(&e);
}

/* hw_launcher_put: a new app, new settings for a running one (restarted
 * with them), for one stopping and one in backoff, and a port clash. */
static void test_put(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("one", 5, "/bin/sh",
					  "echo one >&3; exec sleep 30");
	struct hw_config_app two = sh_app("two", 6, "/bin/sh",
					  "echo two >&3; exec sleep 30");
	struct hw_config_app clash = sh_app("three", 5, "/bin/sh", "true");
	struct hw_config_app newer = sh_app("one", 7, "/bin/sh",
					    "echo new >&3; exec sleep 30");
	char err[256], path[128];
	json_t *list = NULL;
	int fd;

	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "one", err, sizeof(err)), 0);
	assert_true(run_until(&e, channel_line, 5000));
	assert_string_equal(e.got, "one\n");

	/* Another app's port is refused, nothing changes. */
	assert_int_equal(hw_launcher_put(e.l, &clash, err, sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, "port 5 is taken by app 'one'"));
	assert_null(hw_launcher_app(e.l, "three"));

	/* A new app with autostart starts at once. */
	assert_int_equal(hw_launcher_put(e.l, &two, err, sizeof(err)), 0);
	assert_int_equal(e.started, 2);
	assert_true(run_until(&e, channel_line, 5000));
	assert_string_equal(e.got, "two\n");
	assert_int_equal(hw_launcher_app_by_port(e.l, 6)->port, 6);

	/* A status file of the previous process is gone at a start. */
	snprintf(path, sizeof(path), "%s/apps/one/status.json", e.dir);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) >= 0);
	close(fd);

	/* New settings for a running app: stopped and started with them,
	 * not counted as a crash's restart. */
	assert_int_equal(hw_launcher_put(e.l, &newer, err, sizeof(err)), 0);
	assert_string_equal(state_of(&e, "one", &list), "stopping");
	assert_int_equal(hw_launcher_app(e.l, "one")->port, 7);
	assert_true(wait_exited(&e, 1, 5000));
	assert_true(wait_started(&e, 3, 5000));
	assert_true(run_until(&e, channel_line, 5000));
	assert_string_equal(e.got, "new\n");
	assert_string_equal(state_of(&e, "one", &list), "running");
	assert_int_equal(json_integer_value(json_object_get(
				 entry(list, "one"), "restarts")), 0);
	assert_int_equal(json_integer_value(json_object_get(
				 entry(list, "one"), "port")), 7);
	assert_int_equal(access(path, F_OK), -1);
	/* Its old port is free now. */
	clash.port = 5;
	clash.autostart = 0;
	assert_int_equal(hw_launcher_put(e.l, &clash, err, sizeof(err)), 0);

	/* Stopped by hand, then new settings while stopping: it stays
	 * stopped and keeps them. */
	assert_int_equal(hw_launcher_stop(e.l, "two", err, sizeof(err)), 0);
	assert_int_equal(hw_launcher_put(e.l, &two, err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 2, 5000));
	run_for(&e, 200);
	assert_string_equal(state_of(&e, "two", &list), "stopped");

	/* A put while a put's restart is under way: one new process. */
	int before = e.started;
	assert_int_equal(hw_launcher_put(e.l, &newer, err, sizeof(err)), 0);
	assert_int_equal(hw_launcher_put(e.l, &newer, err, sizeof(err)), 0);
	assert_string_equal(state_of(&e, "one", &list), "stopping");
	assert_true(wait_started(&e, before + 1, 5000));
	run_for(&e, 300);
	assert_int_equal(e.started, before + 1);
	assert_string_equal(state_of(&e, "one", &list), "running");
	json_decref(list);
	env_fini(&e);
}

/* An app in backoff given new settings starts now with them. */
static void test_put_during_backoff(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("flaky", 72, "/bin/sh", "exit 1");
	struct hw_config_app fixed = sh_app("flaky", 72, "/bin/sh",
					    "echo fixed >&3; exec sleep 30");
	char err[256];
	json_t *list = NULL;

	e.p.backoff_min_ms = 5000;
	e.p.backoff_max_ms = 5000;
	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "flaky", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 1, 5000));
	assert_string_equal(state_of(&e, "flaky", &list), "backoff");
	assert_int_equal(hw_launcher_put(e.l, &fixed, err, sizeof(err)), 0);
	assert_int_equal(e.started, 2);
	assert_true(run_until(&e, channel_line, 5000));
	assert_string_equal(e.got, "fixed\n");
	assert_string_equal(state_of(&e, "flaky", &list), "running");
	/* Not autostart, not running: kept, not started. */
	assert_int_equal(hw_launcher_stop(e.l, "flaky", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 2, 5000));
	fixed.autostart = 0;
	assert_int_equal(hw_launcher_put(e.l, &fixed, err, sizeof(err)), 0);
	assert_int_equal(e.started, 2);
	assert_string_equal(state_of(&e, "flaky", &list), "stopped");
	assert_false(json_is_true(json_object_get(entry(list, "flaky"),
						  "autostart")));
	json_decref(list);
	env_fini(&e);
}

/* The Cap* lines of a /proc/PID/status dump, as masks. */
struct capdump {
	unsigned long long inh, prm, eff, bnd, amb;
};

static void read_caps(const char *path, struct capdump *c)
{
	char text[8192], *p;

	read_text(path, text, sizeof(text));
	assert_non_null(p = strstr(text, "CapInh:"));
	c->inh = strtoull(p + 7, NULL, 16);
	assert_non_null(p = strstr(text, "CapPrm:"));
	c->prm = strtoull(p + 7, NULL, 16);
	assert_non_null(p = strstr(text, "CapEff:"));
	c->eff = strtoull(p + 7, NULL, 16);
	assert_non_null(p = strstr(text, "CapBnd:"));
	c->bnd = strtoull(p + 7, NULL, 16);
	assert_non_null(p = strstr(text, "CapAmb:"));
	c->amb = strtoull(p + 7, NULL, 16);
}

static int file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static char wait_path[512];
static int path_there(void *arg)
{
	return file_exists(wait_path);
}

/* A root visor's apps: exactly CAP_NET_ADMIN for an entry that names
 * it (also after the exec of a child), none for one that does not. */
static void test_capabilities(void **state)
{
	struct env e = {0};
	struct hw_config_app apps[2];
	const char *dump = "cat /proc/$$/status > caps.txt; "
			   "sh -c 'cat /proc/$$/status' > child.txt; "
			   "exec sleep 30";
	char err[256], path[512];
	struct capdump c;

	if (geteuid() != 0) {
		print_message("skipped: capabilities of a root visor's apps "
			      "need root\n");
		skip();
	}
	apps[0] = sh_app("netadmin", 30, "/bin/sh", dump);
	apps[0].caps = HW_APP_CAP_NET_ADMIN;
	apps[1] = sh_app("nocaps", 31, "/bin/sh", dump);
	env_init(&e, apps, 2);
	assert_int_equal(hw_launcher_start(e.l, "netadmin", err, sizeof(err)),
			 0);
	assert_int_equal(hw_launcher_start(e.l, "nocaps", err, sizeof(err)),
			 0);
	snprintf(wait_path, sizeof(wait_path), "%s/apps/nocaps/child.txt",
		 e.dir);
	assert_true(run_until(&e, path_there, 5000));
	snprintf(wait_path, sizeof(wait_path), "%s/apps/netadmin/child.txt",
		 e.dir);
	assert_true(run_until(&e, path_there, 5000));
	run_for(&e, 100); /* the files are complete */

	snprintf(path, sizeof(path), "%s/apps/netadmin/caps.txt", e.dir);
	read_caps(path, &c);
	assert_true(c.eff == HW_APP_CAP_NET_ADMIN);
	assert_true(c.prm == HW_APP_CAP_NET_ADMIN);
	assert_true(c.inh == HW_APP_CAP_NET_ADMIN);
	assert_true(c.bnd == HW_APP_CAP_NET_ADMIN);
	assert_true(c.amb == HW_APP_CAP_NET_ADMIN);
	snprintf(path, sizeof(path), "%s/apps/netadmin/child.txt", e.dir);
	read_caps(path, &c);
	assert_true(c.eff == HW_APP_CAP_NET_ADMIN);
	assert_true(c.bnd == HW_APP_CAP_NET_ADMIN);
	assert_true(c.amb == HW_APP_CAP_NET_ADMIN);

	snprintf(path, sizeof(path), "%s/apps/nocaps/caps.txt", e.dir);
	read_caps(path, &c);
	assert_true(c.eff == 0 && c.prm == 0 && c.inh == 0);
	assert_true(c.bnd == 0 && c.amb == 0);
	snprintf(path, sizeof(path), "%s/apps/nocaps/child.txt", e.dir);
	read_caps(path, &c);
	assert_true(c.eff == 0 && c.bnd == 0 && c.amb == 0);
	env_fini(&e);
}

/* Counts the lines of path that contain s (0 when it is missing). */
static int count_lines(const char *path, const char *s)
{
	char line[1024];
	FILE *f = fopen(path, "r");
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, s) != NULL;
	fclose(f);
	return n;
}

static struct hw_config_app cleanup_app(const char *name, const char *run,
					const char *cleanup)
{
	static char *cargs[4][3];
	static int next;
	struct hw_config_app a = sh_app(name, (uint16_t)(40 + next), "/bin/sh",
					run);
	char **v = cargs[next++ % 4];

	v[0] = "-c";
	v[1] = (char *)cleanup;
	v[2] = NULL;
	a.cleanup_args = v;
	a.ncleanup_args = 2;
	return a;
}

static int want_cleanups;
static char cleanup_file[512];
static int cleanups_n(void *arg)
{
	return count_lines(cleanup_file, "cleaned") >= want_cleanups;
}

/* After a kill -9 the cleanup runs (with the app's environment and
 * folder, output to its log) before the restart; after an orderly stop
 * (exit 0) it does not. */
static void test_cleanup_after_crash(void **state)
{
	struct env e = {0};
	struct hw_config_app app = cleanup_app(
		"vpn", "trap 'exit 0' TERM; while :; do sleep 0.05; done",
		"sleep 0.3; echo \"cleaned $HOPWIRE_APP_NAME "
		"fd=${HOPWIRE_APP_FD-none} $(pwd)\" >> cleanup.txt; "
		"echo cleanup-output");
	char err[256], path[512], text[8192], want[600];
	json_t *list = NULL, *o;

	env_init(&e, &app, 1);
	snprintf(cleanup_file, sizeof(cleanup_file),
		 "%s/apps/vpn/cleanup.txt", e.dir);
	assert_int_equal(hw_launcher_start(e.l, "vpn", err, sizeof(err)), 0);
	run_for(&e, 100);
	assert_int_equal(kill(e.last_pid, SIGKILL), 0);
	assert_true(wait_exited(&e, 1, 5000));
	/* Cleaning up: not restarted yet, not startable, running. */
	assert_string_equal(state_of(&e, "vpn", &list), "cleanup");
	o = entry(list, "vpn");
	assert_true(json_integer_value(json_object_get(o, "cleanup_pid")) > 0);
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(o, "cleanup_args"), 0)),
			    "-c");
	assert_true(hw_launcher_is_running(e.l, "vpn"));
	assert_int_equal(hw_launcher_start(e.l, "vpn", err, sizeof(err)),
			 HW_ESTATE);
	assert_non_null(strstr(err, "is cleaning up"));
	assert_int_equal(e.started, 1);
	want_cleanups = 1;
	assert_true(run_until(&e, cleanups_n, 5000));
	/* Then the restart, after the backoff. */
	assert_true(wait_started(&e, 2, 5000));
	assert_int_equal(count_lines(cleanup_file, "cleaned"), 1);
	read_text(cleanup_file, text, sizeof(text));
	snprintf(want, sizeof(want), "cleaned vpn fd=none %s/apps/vpn\n",
		 e.dir);
	assert_string_equal(text, want);
	log_path(&e, "vpn", path, sizeof(path));
	read_text(path, text, sizeof(text));
	assert_non_null(strstr(text, "was killed by SIGKILL"));
	assert_non_null(strstr(text, "cleanup after vpn: /bin/sh -c"));
	assert_non_null(strstr(text, "cleanup-output\n"));
	assert_non_null(strstr(text, "cleanup of vpn exited with status 0"));

	/* An orderly stop: exit 0 on SIGTERM, no cleanup. */
	run_for(&e, 100);
	assert_int_equal(hw_launcher_stop(e.l, "vpn", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 2, 5000));
	assert_int_equal(e.last_status, 0);
	assert_int_equal(e.last_signal, 0);
	assert_string_equal(state_of(&e, "vpn", &list), "stopped");
	run_for(&e, 500);
	assert_int_equal(count_lines(cleanup_file, "cleaned"), 1);
	json_decref(list);
	env_fini(&e);
}

/* A cleanup that hangs is killed after its limit; a stop while it runs
 * leaves the app stopped after it; a crash with status 1 counts too. */
static void test_cleanup_limit_and_stop(void **state)
{
	struct env e = {0};
	struct hw_config_app app = cleanup_app(
		"hang", "exit 1", "echo cleaned >> cleanup.txt; exec sleep 30");
	char err[256], path[512], text[8192];
	json_t *list = NULL;

	e.p.cleanup_ms = 300;
	env_init(&e, &app, 1);
	snprintf(cleanup_file, sizeof(cleanup_file),
		 "%s/apps/hang/cleanup.txt", e.dir);
	assert_int_equal(hw_launcher_start(e.l, "hang", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 1, 5000));
	assert_int_equal(e.last_status, 1);
	want_cleanups = 1;
	assert_true(run_until(&e, cleanups_n, 5000));
	assert_string_equal(state_of(&e, "hang", &list), "cleanup");
	/* Stopped while it cleans up: stays down afterwards. */
	assert_int_equal(hw_launcher_stop(e.l, "hang", err, sizeof(err)), 0);
	run_for(&e, 800);
	assert_string_equal(state_of(&e, "hang", &list), "stopped");
	assert_int_equal(e.started, 1);
	log_path(&e, "hang", path, sizeof(path));
	read_text(path, text, sizeof(text));
	assert_non_null(strstr(text, "cleanup still running after 300 ms: "
				     "SIGKILL"));
	assert_non_null(strstr(text, "cleanup of hang was killed by "
				     "SIGKILL"));
	json_decref(list);
	env_fini(&e);
}

/* A launcher freed while a cleanup runs lets it finish. */
static void test_free_during_cleanup(void **state)
{
	struct env e = {0};
	struct hw_config_app app = cleanup_app(
		"late", "exit 2", "sleep 0.2; echo cleaned >> cleanup.txt");
	char err[256];

	env_init(&e, &app, 1);
	snprintf(cleanup_file, sizeof(cleanup_file),
		 "%s/apps/late/cleanup.txt", e.dir);
	assert_int_equal(hw_launcher_start(e.l, "late", err, sizeof(err)), 0);
	assert_true(wait_exited(&e, 1, 5000));
	hw_launcher_free(e.l);
	e.l = NULL;
	uv_close((uv_handle_t *)&e.tick, NULL);
	assert_int_equal(uv_run(&e.loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(count_lines(cleanup_file, "cleaned"), 1);
	/* env_fini's own free and run are no-ops now. */
	uv_timer_init(&e.loop, &e.tick);
	env_fini(&e);
}

/* A visor without CAP_NET_ADMIN does not start an app that needs it, and
 * says why. Last: as root it drops the capability from this process. */
static void test_missing_capability(void **state)
{
	struct env e = {0};
	struct hw_config_app app = sh_app("vpn-client", 0, "/bin/sh", "true");
	char err[512];
	json_t *list = NULL;
	const char *msg = "app 'vpn-client' needs CAP_NET_ADMIN, which this "
			  "visor does not have (docs/vpn.md)";
	cap_t c = cap_get_proc();
	cap_value_t v = CAP_NET_ADMIN;

	assert_non_null(c);
	assert_int_equal(cap_set_flag(c, CAP_PERMITTED, 1, &v, CAP_CLEAR), 0);
	assert_int_equal(cap_set_flag(c, CAP_EFFECTIVE, 1, &v, CAP_CLEAR), 0);
	assert_int_equal(cap_set_flag(c, CAP_INHERITABLE, 1, &v, CAP_CLEAR),
			 0);
	assert_int_equal(cap_set_proc(c), 0);
	cap_free(c);
	app.caps = HW_APP_CAP_NET_ADMIN;
	env_init(&e, &app, 1);
	assert_int_equal(hw_launcher_start(e.l, "vpn-client", err,
					   sizeof(err)), -EPERM);
	assert_string_equal(err, msg);
	assert_int_equal(e.started, 0);
	assert_string_equal(state_of(&e, "vpn-client", &list), "failed");
	assert_string_equal(json_string_value(json_object_get(
				    entry(list, "vpn-client"), "error")),
			    msg);
	json_decref(list);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_channel_env_log),
		cmocka_unit_test(test_crash_restarts_with_backoff),
		cmocka_unit_test(test_signal_is_a_crash),
		cmocka_unit_test(test_backoff_resets_after_stable_run),
		cmocka_unit_test(test_stop_sigterm),
		cmocka_unit_test(test_stop_sigkill_after_grace),
		cmocka_unit_test(test_missing_binary),
		cmocka_unit_test(test_binary_beside_visor),
		cmocka_unit_test(test_lookup_and_errors),
		cmocka_unit_test(test_json_fields),
		cmocka_unit_test(test_free_while_running),
		cmocka_unit_test(test_free_idle_and_null),
		cmocka_unit_test(test_log_rotation),
		cmocka_unit_test(test_stop_from_started),
		cmocka_unit_test(test_spawn_error),
		cmocka_unit_test(test_cwd_error),
		cmocka_unit_test(test_start_during_backoff),
		cmocka_unit_test(test_put),
		cmocka_unit_test(test_put_during_backoff),
		cmocka_unit_test(test_capabilities),
		cmocka_unit_test(test_cleanup_after_crash),
		cmocka_unit_test(test_cleanup_limit_and_stop),
		cmocka_unit_test(test_free_during_cleanup),
		/* Last: drops CAP_NET_ADMIN from this process. */
		cmocka_unit_test(test_missing_capability),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
