/* sigabbrev_np */
#define _GNU_SOURCE

#include "visor/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "util/err.h"
#include "util/log.h"

#define LOG "launcher"

#define DEFAULT_BACKOFF_MIN_MS 1000
#define DEFAULT_BACKOFF_MAX_MS 60000
#define DEFAULT_STABLE_MS 60000
#define DEFAULT_KILL_GRACE_MS 3000
/* The app's end of the channel, in the app. */
#define APP_FD 3

extern char **environ;

enum app_state {
	ST_STOPPED,
	ST_RUNNING,
	ST_STOPPING, /* SIGTERM sent, the timer holds the SIGKILL */
	ST_BACKOFF,  /* the timer holds the restart */
	ST_EXITED,
	ST_FAILED,
};

static const char *const state_names[] = {"stopped", "running", "stopping",
					  "backoff", "exited",  "failed"};

struct app;

/* One process. Separate from the app because its handle closes after the
 * exit while a new process of the same app may already be starting. */
struct run {
	uv_process_t proc;
	struct app *a;
	int pid;
};

struct app {
	struct hw_launcher *l;
	struct hw_config_app cfg;
	enum app_state state;
	uv_timer_t timer;
	struct run *run; /* the live process, NULL when none */
	uint64_t started_at;
	uint64_t restart_at;
	unsigned backoff_ms; /* the next restart delay, before jitter */
	unsigned restarts;
	int has_exit;
	int64_t exit_status;
	int exit_signal;
	/* Set by hw_launcher_put on a running app: start it again once
	 * the stop it began is over. */
	int restart_on_exit;
	char error[768];
	char log_path[PATH_MAX];
	char cwd[PATH_MAX];
};

struct hw_launcher {
	uv_loop_t *loop;
	struct app *apps[HW_MAX_APPS]; /* each its own allocation: handles
					 inside may not move */
	size_t napps;
	char *local_dir;
	char *visor_pk;
	char *exe_dir;
	struct hw_launcher_ops ops;
	void *ud;
	unsigned backoff_min, backoff_max, stable, grace;
	unsigned handles; /* open or closing handles */
	int freed;
};

static void free_args(struct hw_config_app *c)
{
	for (size_t j = 0; c->args && j < c->nargs; j++)
		free(c->args[j]);
	free(c->args);
	c->args = NULL;
	c->nargs = 0;
}

/* A deep copy of c's args into dst (its other fields copied too). */
static int copy_cfg(struct hw_config_app *dst, const struct hw_config_app *c)
{
	*dst = *c;
	dst->args = NULL;
	dst->nargs = 0;
	if (!(dst->args = calloc(c->nargs + 1, sizeof(char *))))
		return -ENOMEM;
	for (size_t j = 0; j < c->nargs; j++) {
		if (!(dst->args[j] = strdup(c->args[j])))
			return -ENOMEM;
		dst->nargs++;
	}
	return 0;
}

static void release(struct hw_launcher *l)
{
	for (size_t i = 0; i < l->napps; i++) {
		free_args(&l->apps[i]->cfg);
		free(l->apps[i]);
	}
	free(l->local_dir);
	free(l->visor_pk);
	free(l->exe_dir);
	free(l);
}

static void handle_closed(struct hw_launcher *l)
{
	if (--l->handles == 0 && l->freed)
		release(l);
}

static void on_timer_close(uv_handle_t *h)
{
	struct app *a = h->data;
	handle_closed(a->l);
}

static void on_run_close(uv_handle_t *h)
{
	struct run *r = h->data;
	struct hw_launcher *l = r->a->l;

	free(r);
	handle_closed(l);
}

static void iso_now(char *out, size_t len)
{
	struct timeval tv;
	struct tm tm;
	char stamp[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03dZ", stamp, (int)(tv.tv_usec / 1000));
}

static void signal_name(int sig, char *out, size_t len)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(out, len, "SIG%s", abbrev);
	else
		snprintf(out, len, "signal %d", sig);
}

static void write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* "--- hopwire-visor TIME: TEXT ---" into the app's log. fd < 0: the file
 * is opened for this line only. */
static void marker(struct app *a, int fd, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void marker(struct app *a, int fd, const char *fmt, ...)
{
	char line[1024], stamp[40];
	int own = fd < 0, n;
	va_list ap;

	if (own && (fd = open(a->log_path, O_WRONLY | O_APPEND | O_CREAT |
				  O_CLOEXEC, 0600)) < 0)
		return;
	iso_now(stamp, sizeof(stamp));
	n = snprintf(line, sizeof(line), "--- hopwire-visor %s: ", stamp);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(line) - 6)
		n = (int)sizeof(line) - 6;
	memcpy(line + n, " ---\n", 6);
	write_all(fd, line, (size_t)n + 5);
	if (own)
		close(fd);
}

static struct app *find(const struct hw_launcher *l, const char *name)
{
	for (size_t i = 0; name && i < l->napps; i++)
		if (!strcmp(l->apps[i]->cfg.name, name))
			return l->apps[i];
	return NULL;
}

/* 0 when path is an executable regular file, else -ENOENT or -EACCES. */
static int exec_ok(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return errno == EACCES ? -EACCES : -ENOENT;
	if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0)
		return -EACCES;
	return 0;
}

/* The file to run for a: a path as configured, a bare name beside the
 * visor, then in PATH (the first executable wins, like execvp). */
static int resolve(struct app *a, char *out, size_t outlen, char *err,
		   size_t errlen)
{
	const char *bin = a->cfg.binary, *path = getenv("PATH"), *p;
	int rc, denied = 0;

	if (strchr(bin, '/')) {
		if ((rc = exec_ok(bin))) {
			snprintf(err, errlen, "app '%s': binary %s: %s",
				 a->cfg.name, bin, rc == -ENOENT
				 ? "not found" : "not an executable file");
			return rc;
		}
		snprintf(out, outlen, "%s", bin);
		return 0;
	}
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	if ((size_t)snprintf(out, outlen, "%s/%s", a->l->exe_dir, bin) <
	    outlen) {
		if ((rc = exec_ok(out)) == 0)
			return 0;
		denied |= rc == -EACCES;
	}
	for (p = path; *p;) {
		size_t n = strcspn(p, ":");
		/* An empty entry means the visor's working folder, which is
		 * nothing an app should depend on. */
		if (n > 0 && (size_t)snprintf(out, outlen, "%.*s/%s", (int)n,
					       p, bin) < outlen) {
			if ((rc = exec_ok(out)) == 0)
				return 0;
			denied |= rc == -EACCES;
		}
		p += n;
		if (*p == ':')
			p++;
	}
	snprintf(err, errlen, "app '%s': binary '%s': %s beside hopwire-visor "
		 "(%s) or in PATH (%s)", a->cfg.name, bin,
		 denied ? "no executable file" : "not found", a->l->exe_dir,
		 path);
	return denied ? -EACCES : -ENOENT;
}

static int make_dir(struct app *a, const char *dir, char *err,
		    size_t errlen)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST) {
		int rc = -errno;
		snprintf(err, errlen, "app '%s': %s: %s", a->cfg.name, dir,
			 strerror(errno));
		return rc;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "app '%s': %s: not a directory",
			 a->cfg.name, dir);
		return -ENOTDIR;
	}
	return 0;
}

static int open_log(struct app *a, char *err, size_t errlen)
{
	char old[PATH_MAX + 8];
	struct stat st;
	int fd;

	if (stat(a->log_path, &st) == 0 && st.st_size > HW_LAUNCHER_LOG_MAX) {
		snprintf(old, sizeof(old), "%s.1", a->log_path);
		if (rename(a->log_path, old) < 0)
			hw_log(HW_LOG_WARN, LOG, "app '%s': cannot rotate %s: "
			       "%s", a->cfg.name, a->log_path,
			       strerror(errno));
	}
	fd = open(a->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "app '%s': log %s: %s", a->cfg.name,
			 a->log_path, strerror(errno));
		return rc;
	}
	return fd;
}

/* Errors of uv_spawn that another attempt may not meet. */
static int transient(int rc)
{
	return rc == UV_EAGAIN || rc == UV_ENOMEM || rc == UV_EMFILE ||
	       rc == UV_ENFILE;
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig);
static void on_timer(uv_timer_t *t);
static int spawn(struct app *a, int restart, char *err, size_t errlen);

static void schedule_restart(struct app *a, int ran)
{
	struct hw_launcher *l = a->l;
	uint64_t now = uv_now(l->loop), d, jitter;

	if (ran && now - a->started_at >= l->stable)
		a->backoff_ms = l->backoff_min;
	d = a->backoff_ms;
	jitter = d / 5;
	if (jitter)
		d = d - jitter +
		    randombytes_uniform((uint32_t)(2 * jitter + 1));
	a->backoff_ms = a->backoff_ms > l->backoff_max / 2
				? l->backoff_max
				: a->backoff_ms * 2;
	a->state = ST_BACKOFF;
	a->restart_at = now + d;
	uv_timer_start(&a->timer, on_timer, d, 0);
	hw_log(HW_LOG_INFO, LOG, "app '%s': restart %u in %llu ms",
	       a->cfg.name, a->restarts + 1, (unsigned long long)d);
}

/* The app's timer: the restart in backoff, the SIGKILL when stopping. */
static void on_timer(uv_timer_t *t)
{
	struct app *a = t->data;
	char err[sizeof(a->error)];

	if (a->state == ST_BACKOFF) {
		/* A restart for new settings is not a crash's. */
		if (!a->restart_on_exit)
			a->restarts++;
		a->restart_on_exit = 0;
		spawn(a, 1, err, sizeof(err));
	} else if (a->state == ST_STOPPING && a->run) {
		hw_log(HW_LOG_WARN, LOG, "app '%s': pid %d still there %u ms "
		       "after SIGTERM: SIGKILL", a->cfg.name, a->run->pid,
		       a->l->grace);
		kill(-a->run->pid, SIGKILL);
	}
}

static void arm(struct app *a, uint64_t ms)
{
	uv_timer_start(&a->timer, on_timer, ms, 0);
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Starts a's process. restart: a scheduled restart (a transient failure
 * then schedules another). On failure the message is in err and in
 * a->error, logged once. */
static int spawn(struct app *a, int restart, char *err, size_t errlen)
{
	struct hw_launcher *l = a->l;
	uv_process_options_t o = {0};
	uv_stdio_container_t stdio[4];
	char file[PATH_MAX], dir[PATH_MAX + 8];
	char e_fd[32], e_name[64], e_port[32], e_pk[128];
	char **env = NULL, **argv = NULL;
	struct run *r = NULL;
	int sv[2] = {-1, -1}, logfd = -1, rc, pid;
	size_t n = 0, k = 0;

	err[0] = '\0';
	if ((rc = resolve(a, file, sizeof(file), err, errlen)))
		goto fail;
	snprintf(dir, sizeof(dir), "%s/apps", l->local_dir);
	if ((rc = make_dir(a, dir, err, errlen)) ||
	    (rc = make_dir(a, a->cwd, err, errlen)))
		goto fail;
	/* What a previous process reported is not this one's status
	 * (GET /v1/apps/NAME/status). */
	if ((size_t)snprintf(dir, sizeof(dir), "%s/" HW_LAUNCHER_STATUS_FILE,
			     a->cwd) < sizeof(dir))
		unlink(dir);
	if ((rc = logfd = open_log(a, err, errlen)) < 0)
		goto fail;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		rc = -errno;
		snprintf(err, errlen, "app '%s': channel: %s", a->cfg.name,
			 strerror(errno));
		goto fail;
	}
	while (environ && environ[n])
		n++;
	argv = calloc(a->cfg.nargs + 2, sizeof(*argv));
	env = calloc(n + 5, sizeof(*env));
	r = calloc(1, sizeof(*r));
	if (!argv || !env || !r) {
		rc = -ENOMEM;
		snprintf(err, errlen, "app '%s': out of memory", a->cfg.name);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		static const char *const ours[] = {
			"HOPWIRE_APP_SOCKET=", "HOPWIRE_APP_FD=",
			"HOPWIRE_APP_NAME=", "HOPWIRE_APP_PORT=",
			"HOPWIRE_VISOR_PK=", NULL};
		int skip = 0;
		for (int j = 0; ours[j] && !skip; j++)
			skip = !strncmp(environ[i], ours[j], strlen(ours[j]));
		if (!skip)
			env[k++] = environ[i];
	}
	snprintf(e_fd, sizeof(e_fd), "HOPWIRE_APP_FD=%d", APP_FD);
	snprintf(e_name, sizeof(e_name), "HOPWIRE_APP_NAME=%s", a->cfg.name);
	snprintf(e_port, sizeof(e_port), "HOPWIRE_APP_PORT=%u", a->cfg.port);
	env[k++] = e_fd;
	env[k++] = e_name;
	env[k++] = e_port;
	if (l->visor_pk) {
		snprintf(e_pk, sizeof(e_pk), "HOPWIRE_VISOR_PK=%s",
			 l->visor_pk);
		env[k++] = e_pk;
	}
	argv[0] = a->cfg.binary;
	for (size_t i = 0; i < a->cfg.nargs; i++)
		argv[i + 1] = a->cfg.args[i];

	memset(stdio, 0, sizeof(stdio));
	stdio[0].flags = UV_IGNORE; /* /dev/null */
	stdio[1].flags = UV_INHERIT_FD;
	stdio[1].data.fd = logfd;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = logfd;
	stdio[3].flags = UV_INHERIT_FD;
	stdio[3].data.fd = sv[1];
	o.exit_cb = on_proc_exit;
	o.file = file;
	o.args = argv;
	o.env = env;
	o.cwd = a->cwd;
	/* Its own session and process group: stopping the app reaches what
	 * it forked, and a terminal's ^C reaches the visor only, which then
	 * stops its apps in order. */
	o.flags = UV_PROCESS_DETACHED;
	o.stdio_count = 4;
	o.stdio = stdio;
	marker(a, logfd, "starting %s: %s", a->cfg.name, file);
	r->a = a;
	if ((rc = uv_spawn(l->loop, &r->proc, &o))) {
		snprintf(err, errlen, "app '%s': cannot run %s: %s",
			 a->cfg.name, file, uv_strerror(rc));
		marker(a, logfd, "cannot start %s: %s", a->cfg.name,
		       uv_strerror(rc));
		/* A failed uv_spawn leaves an initialised handle to close. */
		r->proc.data = r;
		l->handles++;
		uv_close((uv_handle_t *)&r->proc, on_run_close);
		r = NULL;
		goto fail;
	}
	pid = r->pid = r->proc.pid;
	r->proc.data = r;
	l->handles++;
	marker(a, logfd, "%s is pid %d", a->cfg.name, pid);
	close(logfd);
	close(sv[1]);
	set_nonblock(sv[0]);
	free(argv);
	free(env);
	a->run = r;
	a->state = ST_RUNNING;
	a->started_at = uv_now(l->loop);
	a->error[0] = '\0';
	hw_log(HW_LOG_INFO, LOG, "app '%s': started %s, pid %d", a->cfg.name,
	       file, pid);
	/* Last: the callee may stop or start apps. */
	if (l->ops.started)
		l->ops.started(l->ud, a->cfg.name, a->cfg.port, sv[0], pid);
	else
		close(sv[0]);
	return 0;
fail:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (logfd >= 0)
		close(logfd);
	free(argv);
	free(env);
	free(r);
	snprintf(a->error, sizeof(a->error), "%s", err);
	if (restart && transient(rc)) {
		hw_log(HW_LOG_WARN, LOG, "%s", err);
		schedule_restart(a, 0);
	} else {
		hw_log(HW_LOG_ERROR, LOG, "%s", err);
		a->state = ST_FAILED;
	}
	return rc;
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
	struct run *r = p->data;
	struct app *a = r->a;
	struct hw_launcher *l = a->l;
	char how[64], sname[32];

	uv_close((uv_handle_t *)p, on_run_close);
	/* What the app left behind in its group goes with it. */
	kill(-r->pid, SIGKILL);
	a->run = NULL;
	a->has_exit = 1;
	a->exit_status = status;
	a->exit_signal = sig;
	uv_timer_stop(&a->timer);
	if (sig) {
		signal_name(sig, sname, sizeof(sname));
		snprintf(how, sizeof(how), "was killed by %s", sname);
	} else {
		snprintf(how, sizeof(how), "exited with status %lld",
			 (long long)status);
	}
	marker(a, -1, "%s (pid %d) %s", a->cfg.name, r->pid, how);
	hw_log(a->state == ST_STOPPING || (!sig && !status) ? HW_LOG_INFO
							    : HW_LOG_WARN,
	       LOG, "app '%s': pid %d %s", a->cfg.name, r->pid, how);
	if (l->freed) {
		uv_close((uv_handle_t *)&a->timer, on_timer_close);
		return;
	}
	if (a->state == ST_STOPPING && a->restart_on_exit) {
		/* Stopped for new settings (hw_launcher_put): start again
		 * from the timer, so the exited callback below comes first. */
		a->backoff_ms = l->backoff_min;
		a->state = ST_BACKOFF;
		a->restart_at = uv_now(l->loop);
		uv_timer_start(&a->timer, on_timer, 0, 0);
	} else if (a->state == ST_STOPPING)
		a->state = ST_STOPPED;
	else if (!sig && !status)
		a->state = ST_EXITED;
	else
		schedule_restart(a, 1);
	/* Last: the callee may do anything, even free the launcher. */
	if (l->ops.exited)
		l->ops.exited(l->ud, a->cfg.name, status, sig);
}

/* Appends a new app for c (i: its index, for messages), without its
 * timer (app_timer_init). */
static int app_add(struct hw_launcher *l, const struct hw_config_app *c,
		   size_t i, char *err, size_t errlen)
{
	struct app *a;

	if (strnlen(c->name, sizeof(c->name)) == sizeof(c->name) ||
	    hw_config_app_name_ok(c->name)) {
		snprintf(err, errlen, "launcher: apps[%zu]: bad name", i);
		return -EINVAL;
	}
	if (l->napps >= HW_MAX_APPS) {
		snprintf(err, errlen, "launcher: more than %d apps",
			 HW_MAX_APPS);
		return -ENOSPC;
	}
	if (!(a = calloc(1, sizeof(*a))))
		goto nomem;
	a->l = l;
	if (copy_cfg(&a->cfg, c)) {
		free_args(&a->cfg);
		free(a);
		goto nomem;
	}
	a->backoff_ms = l->backoff_min;
	if ((size_t)snprintf(a->log_path, sizeof(a->log_path),
			     "%s/apps/%s.log", l->local_dir,
			     c->name) >= sizeof(a->log_path) - 2 ||
	    (size_t)snprintf(a->cwd, sizeof(a->cwd), "%s/apps/%s",
			     l->local_dir, c->name) >= sizeof(a->cwd)) {
		snprintf(err, errlen, "launcher: local_dir %s: path too long",
			 l->local_dir);
		free_args(&a->cfg);
		free(a);
		return -ENAMETOOLONG;
	}
	l->apps[l->napps++] = a;
	return 0;
nomem:
	snprintf(err, errlen, "launcher: out of memory");
	return -ENOMEM;
}

static void app_timer_init(struct app *a)
{
	uv_timer_init(a->l->loop, &a->timer);
	a->timer.data = a;
	a->l->handles++;
}

int hw_launcher_new(struct hw_launcher **out,
		    const struct hw_launcher_params *p, char *err,
		    size_t errlen)
{
	struct hw_launcher *l = NULL;
	char exe[PATH_MAX];
	int rc = -ENOMEM;

	*out = NULL;
	if (!p->loop || !p->local_dir || !p->ops ||
	    (p->napps && !p->apps)) {
		snprintf(err, errlen, "launcher: loop, local_dir and ops are "
			 "required");
		return -EINVAL;
	}
	if (!(l = calloc(1, sizeof(*l))))
		goto nomem;
	l->loop = p->loop;
	l->ops = *p->ops;
	l->ud = p->ud;
	l->backoff_min = p->backoff_min_ms ? p->backoff_min_ms
					   : DEFAULT_BACKOFF_MIN_MS;
	l->backoff_max = p->backoff_max_ms ? p->backoff_max_ms
					   : DEFAULT_BACKOFF_MAX_MS;
	if (l->backoff_max < l->backoff_min)
		l->backoff_max = l->backoff_min;
	l->stable = p->stable_ms ? p->stable_ms : DEFAULT_STABLE_MS;
	l->grace = p->kill_grace_ms ? p->kill_grace_ms : DEFAULT_KILL_GRACE_MS;
	if (!(l->local_dir = strdup(p->local_dir)))
		goto nomem;
	if (p->visor_pk_hex && !(l->visor_pk = strdup(p->visor_pk_hex)))
		goto nomem;
	if (p->visor_exe_dir) {
		l->exe_dir = strdup(p->visor_exe_dir);
	} else {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		char *slash;
		if (n < 0)
			n = 0;
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')))
			*(slash == exe ? slash + 1 : slash) = '\0';
		else
			strcpy(exe, ".");
		l->exe_dir = strdup(exe);
	}
	if (!l->exe_dir)
		goto nomem;
	if (p->napps > HW_MAX_APPS) {
		snprintf(err, errlen, "launcher: more than %d apps",
			 HW_MAX_APPS);
		rc = -EINVAL;
		goto fail;
	}
	for (size_t i = 0; i < p->napps; i++)
		if ((rc = app_add(l, &p->apps[i], i, err, errlen)))
			goto fail;
	/* Nothing can fail from here: the handles are made last so a failure
	 * above has none to close. */
	for (size_t i = 0; i < l->napps; i++)
		app_timer_init(l->apps[i]);
	*out = l;
	return 0;
nomem:
	snprintf(err, errlen, "launcher: out of memory");
	rc = -ENOMEM;
fail:
	if (l)
		release(l);
	return rc;
}

static int start(struct hw_launcher *l, struct app *a, char *err,
		 size_t errlen)
{
	if (a->state == ST_RUNNING || a->state == ST_STOPPING) {
		snprintf(err, errlen, "app '%s' is %s (pid %d)", a->cfg.name,
			 a->state == ST_RUNNING ? "already running"
						: "stopping",
			 a->run ? a->run->pid : 0);
		return HW_ESTATE;
	}
	uv_timer_stop(&a->timer);
	a->restart_on_exit = 0;
	/* Someone asked for it: a fresh start, not the next step of a
	 * crash loop. */
	a->backoff_ms = l->backoff_min;
	return spawn(a, 0, err, errlen);
}

void hw_launcher_autostart(struct hw_launcher *l)
{
	char err[768];

	for (size_t i = 0; i < l->napps; i++) {
		struct app *a = l->apps[i];
		if (a->cfg.autostart && !a->run && a->state != ST_BACKOFF)
			start(l, a, err, sizeof(err));
	}
}

int hw_launcher_start(struct hw_launcher *l, const char *name, char *err,
		      size_t errlen)
{
	struct app *a = find(l, name);
	char buf[768];

	if (!err || !errlen)
		err = buf, errlen = sizeof(buf);
	if (!a) {
		snprintf(err, errlen, "no app named '%s'", name ? name : "");
		return -ENOENT;
	}
	return start(l, a, err, errlen);
}

int hw_launcher_stop(struct hw_launcher *l, const char *name, char *err,
		     size_t errlen)
{
	struct app *a = find(l, name);
	char buf[128];

	if (!err || !errlen)
		err = buf, errlen = sizeof(buf);
	if (!a) {
		snprintf(err, errlen, "no app named '%s'", name ? name : "");
		return -ENOENT;
	}
	a->restart_on_exit = 0;
	switch (a->state) {
	case ST_RUNNING:
		hw_log(HW_LOG_INFO, LOG, "app '%s': stopping pid %d",
		       a->cfg.name, a->run->pid);
		a->state = ST_STOPPING;
		kill(-a->run->pid, SIGTERM);
		arm(a, a->l->grace);
		return 0;
	case ST_STOPPING:
		return 0;
	case ST_BACKOFF:
		hw_log(HW_LOG_INFO, LOG, "app '%s': stopped (restart "
		       "cancelled)", a->cfg.name);
		uv_timer_stop(&a->timer);
		a->state = ST_STOPPED;
		return 0;
	default:
		snprintf(err, errlen, "app '%s' is not running", a->cfg.name);
		return HW_ESTATE;
	}
}

int hw_launcher_set_autostart(struct hw_launcher *l, const char *name,
			      int on)
{
	struct app *a = find(l, name);

	if (!a)
		return -ENOENT;
	a->cfg.autostart = !!on;
	return 0;
}

int hw_launcher_put(struct hw_launcher *l, const struct hw_config_app *c,
		    char *err, size_t errlen)
{
	struct app *a = find(l, c->name);
	struct hw_config_app cfg;
	char buf[768];
	int rc;

	if (!err || !errlen)
		err = buf, errlen = sizeof(buf);
	err[0] = '\0';
	for (size_t i = 0; i < l->napps; i++)
		if (l->apps[i] != a && l->apps[i]->cfg.port == c->port) {
			snprintf(err, errlen, "port %u is taken by app '%s'",
				 c->port, l->apps[i]->cfg.name);
			return -EADDRINUSE;
		}
	if (!a) {
		if ((rc = app_add(l, c, l->napps, err, errlen)))
			return rc;
		a = l->apps[l->napps - 1];
		app_timer_init(a);
		hw_log(HW_LOG_INFO, LOG, "app '%s': added (port %u)",
		       a->cfg.name, a->cfg.port);
		if (a->cfg.autostart)
			start(l, a, err, errlen);
		return 0;
	}
	if (copy_cfg(&cfg, c)) {
		free_args(&cfg);
		snprintf(err, errlen, "launcher: out of memory");
		return -ENOMEM;
	}
	free_args(&a->cfg);
	a->cfg = cfg;
	switch (a->state) {
	case ST_RUNNING:
		hw_log(HW_LOG_INFO, LOG, "app '%s': new settings: restarting "
		       "pid %d", a->cfg.name, a->run->pid);
		a->restart_on_exit = 1;
		a->state = ST_STOPPING;
		kill(-a->run->pid, SIGTERM);
		arm(a, l->grace);
		break;
	case ST_STOPPING:
		/* Its next start, if one is due, takes the new settings. */
		hw_log(HW_LOG_INFO, LOG, "app '%s': new settings (it is "
		       "stopping)", a->cfg.name);
		break;
	case ST_BACKOFF:
		hw_log(HW_LOG_INFO, LOG, "app '%s': new settings: starting "
		       "now instead of after the backoff", a->cfg.name);
		start(l, a, err, errlen);
		break;
	default:
		hw_log(HW_LOG_INFO, LOG, "app '%s': new settings", a->cfg.name);
		if (a->cfg.autostart)
			start(l, a, err, errlen);
	}
	return 0;
}

const struct hw_config_app *hw_launcher_app(const struct hw_launcher *l,
					    const char *name)
{
	struct app *a = find(l, name);
	return a ? &a->cfg : NULL;
}

const struct hw_config_app *
hw_launcher_app_by_port(const struct hw_launcher *l, uint16_t port)
{
	for (size_t i = 0; port && i < l->napps; i++)
		if (l->apps[i]->cfg.port == port)
			return &l->apps[i]->cfg;
	return NULL;
}

int hw_launcher_is_running(const struct hw_launcher *l, const char *name)
{
	struct app *a = find(l, name);
	return a && (a->run || a->state == ST_BACKOFF);
}

static json_t *app_json(const struct hw_launcher *l, const struct app *a)
{
	uint64_t now = uv_now(l->loop);
	json_t *o = json_object(), *args = json_array(), *ex = json_null();
	char sname[32];

	if (!o || !args)
		goto fail;
	for (size_t j = 0; j < a->cfg.nargs; j++)
		if (json_array_append_new(args,
					  json_string(a->cfg.args[j])))
			goto fail;
	if (a->has_exit) {
		if (a->exit_signal)
			signal_name(a->exit_signal, sname, sizeof(sname));
		ex = json_pack("{s:I,s:i,s:s?}", "status",
			       (json_int_t)a->exit_status, "signal",
			       a->exit_signal,
			       "signal_name", a->exit_signal ? sname : NULL);
		if (!ex)
			goto fail;
	}
	if (json_object_set_new(o, "name", json_string(a->cfg.name)) ||
	    json_object_set_new(o, "binary", json_string(a->cfg.binary)) ||
	    json_object_set(o, "args", args) ||
	    json_object_set_new(o, "port", json_integer(a->cfg.port)) ||
	    json_object_set_new(o, "state",
				json_string(state_names[a->state])) ||
	    json_object_set_new(o, "pid", a->run ? json_integer(a->run->pid)
						 : json_null()) ||
	    json_object_set_new(o, "uptime_ms",
				a->run ? json_integer((json_int_t)(
						 now - a->started_at))
				       : json_null()) ||
	    json_object_set_new(o, "restarts", json_integer(a->restarts)) ||
	    json_object_set_new(o, "autostart",
				json_boolean(a->cfg.autostart)) ||
	    json_object_set_new(o, "log", json_string(a->log_path)) ||
	    json_object_set(o, "last_exit", ex) ||
	    json_object_set_new(
		    o, "next_restart_ms",
		    a->state == ST_BACKOFF
			    ? json_integer((json_int_t)(a->restart_at > now
						  ? a->restart_at - now
						  : 0))
			    : json_null()) ||
	    json_object_set_new(o, "error", a->error[0]
						    ? json_string(a->error)
						    : json_null()))
		goto fail;
	json_decref(args);
	json_decref(ex);
	return o;
fail:
	json_decref(args);
	json_decref(ex);
	json_decref(o);
	return NULL;
}

json_t *hw_launcher_json(const struct hw_launcher *l)
{
	json_t *list = json_array(), *o;

	if (!list)
		return NULL;
	for (size_t i = 0; i < l->napps; i++)
		if (!(o = app_json(l, l->apps[i])) ||
		    json_array_append_new(list, o)) {
			json_decref(list);
			return NULL;
		}
	return list;
}

void hw_launcher_free(struct hw_launcher *l)
{
	if (!l)
		return;
	l->freed = 1;
	for (size_t i = 0; i < l->napps; i++) {
		struct app *a = l->apps[i];
		if (!a->run) {
			uv_timer_stop(&a->timer);
			uv_close((uv_handle_t *)&a->timer, on_timer_close);
			continue;
		}
		/* The timer closes when the process has gone (on_proc_exit). */
		if (a->state != ST_STOPPING) {
			hw_log(HW_LOG_INFO, LOG, "app '%s': stopping pid %d",
			       a->cfg.name, a->run->pid);
			a->state = ST_STOPPING;
			kill(-a->run->pid, SIGTERM);
			arm(a, l->grace);
		}
	}
	if (l->handles == 0)
		release(l);
}
