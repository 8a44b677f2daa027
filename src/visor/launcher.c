/* sigabbrev_np */
#define _GNU_SOURCE

#include "visor/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "util/err.h"
#include "util/log.h"
#include "visor/appcaps.h"

#define LOG "launcher"

#define DEFAULT_BACKOFF_MIN_MS 1000
#define DEFAULT_BACKOFF_MAX_MS 60000
#define DEFAULT_STABLE_MS 60000
#define DEFAULT_KILL_GRACE_MS 3000
#define DEFAULT_CLEANUP_MS 10000
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
	ST_CLEANUP, /* its cleanup runs; the timer holds its SIGKILL */
};

static const char *const state_names[] = {"stopped", "running", "stopping",
					  "backoff", "exited",  "failed",
					  "cleanup"};

/* What follows an exit, once the cleanup (if any) is over. */
enum next {
	NX_STOPPED,
	NX_EXITED,
	NX_RESTART, /* at once: new settings (hw_launcher_put) */
	NX_BACKOFF,
};

struct app {
	struct hw_launcher *l;
	struct hw_config_app cfg;
	enum app_state state;
	enum next next; /* in ST_CLEANUP */
	uv_timer_t timer;
	int pid;         /* the live process, 0 when none */
	int cleanup_pid; /* the cleanup's, 0 when none */
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
	char *visor_api;
	struct hw_launcher_ops ops;
	void *ud;
	unsigned backoff_min, backoff_max, stable, grace, cleanup_ms;
	/* Children are forked here (the capabilities are set between fork
	 * and exec, which uv_spawn cannot do) and reaped on SIGCHLD. */
	uv_signal_t sigchld;
	unsigned procs;   /* live processes: apps and cleanups */
	unsigned handles; /* open or closing handles */
	int freed;
};

static void free_list(char ***list, size_t *n)
{
	for (size_t j = 0; *list && j < *n; j++)
		free((*list)[j]);
	free(*list);
	*list = NULL;
	*n = 0;
}

static void free_args(struct hw_config_app *c)
{
	free_list(&c->args, &c->nargs);
	free_list(&c->cleanup_args, &c->ncleanup_args);
}

static int copy_list(char ***dst, size_t *ndst, char *const *src,
		     size_t n)
{
	*ndst = 0;
	if (!(*dst = calloc(n + 1, sizeof(char *))))
		return -ENOMEM;
	for (size_t j = 0; j < n; j++) {
		if (!((*dst)[j] = strdup(src[j])))
			return -ENOMEM;
		(*ndst)++;
	}
	return 0;
}

/* A deep copy of c's lists into dst (its other fields copied too). */
static int copy_cfg(struct hw_config_app *dst, const struct hw_config_app *c)
{
	*dst = *c;
	dst->args = dst->cleanup_args = NULL;
	dst->nargs = dst->ncleanup_args = 0;
	if (copy_list(&dst->args, &dst->nargs, c->args, c->nargs))
		return -ENOMEM;
	return copy_list(&dst->cleanup_args, &dst->ncleanup_args,
			 c->cleanup_args, c->ncleanup_args);
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
	free(l->visor_api);
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

static void on_sigchld_close(uv_handle_t *h)
{
	handle_closed(h->data);
}

/* Live children keep the loop running, as uv_spawn's handles would. */
static void proc_add(struct hw_launcher *l)
{
	if (l->procs++ == 0)
		uv_ref((uv_handle_t *)&l->sigchld);
}

static void proc_del(struct hw_launcher *l)
{
	if (--l->procs == 0)
		uv_unref((uv_handle_t *)&l->sigchld);
}

/* After hw_launcher_free: the SIGCHLD watcher goes once the last child
 * has been reaped. */
static void maybe_done(struct hw_launcher *l)
{
	if (l->freed && l->procs == 0 &&
	    !uv_is_closing((uv_handle_t *)&l->sigchld))
		uv_close((uv_handle_t *)&l->sigchld, on_sigchld_close);
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

/* Errors of fork that another attempt may not meet. */
static int transient(int rc)
{
	return rc == -EAGAIN || rc == -ENOMEM || rc == -EMFILE ||
	       rc == -ENFILE;
}

static void on_timer(uv_timer_t *t);
static int spawn(struct app *a, int restart, char *err, size_t errlen);

static void schedule_restart(struct app *a)
{
	struct hw_launcher *l = a->l;
	uint64_t now = uv_now(l->loop), d, jitter;

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

/* The app's timer: the restart in backoff, the SIGKILL when stopping or
 * when its cleanup overruns. */
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
	} else if (a->state == ST_STOPPING && a->pid) {
		hw_log(HW_LOG_WARN, LOG, "app '%s': pid %d still there %u ms "
		       "after SIGTERM: SIGKILL", a->cfg.name, a->pid,
		       a->l->grace);
		kill(-a->pid, SIGKILL);
	} else if (a->state == ST_CLEANUP && a->cleanup_pid) {
		hw_log(HW_LOG_WARN, LOG, "app '%s': cleanup (pid %d) still "
		       "running after %u ms: SIGKILL", a->cfg.name,
		       a->cleanup_pid, a->l->cleanup_ms);
		marker(a, -1, "cleanup still running after %u ms: SIGKILL",
		       a->l->cleanup_ms);
		kill(-a->cleanup_pid, SIGKILL);
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

/* A process to start: what it runs and what it is given. */
struct child {
	const char *file;
	char **argv, **env;
	const char *cwd;
	int logfd;  /* its stdout and stderr */
	int chanfd; /* its fd 3, the channel; -1: none */
	const struct hw_appcaps *caps;
};

/* Steps of a child's start that can fail, for the message. */
enum { STEP_SESSION = 1, STEP_FDS, STEP_CWD, STEP_CAPS, STEP_EXEC };

/* What a child that could not exec writes to the visor before it exits. */
struct child_err {
	int step, caps_step, err;
};

static void child_fail(int fd, int step, int caps_step, int e)
	__attribute__((noreturn));

static void child_fail(int fd, int step, int caps_step, int e)
{
	struct child_err ce = {step, caps_step, e};
	ssize_t n;

	do
		n = write(fd, &ce, sizeof(ce));
	while (n < 0 && errno == EINTR);
	_exit(127);
}

/* In the child, between fork and exec: system calls only (the visor has
 * threads, whose locks the child may have inherited held). */
static void child_run(const struct child *c, int errfd)
	__attribute__((noreturn));

static void child_run(const struct child *c, int errfd)
{
	struct sigaction sa;
	sigset_t none;
	int in, out, ch = -1, caps_step = 0, rc;

	/* The visor's handlers (libuv's) must not run here: defaults
	 * first, then the signals the fork held back are let in. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Its own session and process group: stopping the app reaches what
	 * it forked, and a terminal's ^C reaches the visor only, which then
	 * stops its apps in order. */
	if (setsid() < 0)
		child_fail(errfd, STEP_SESSION, 0, errno);
	/* Above 3 first, so that no dup2 below overwrites a source. */
	if ((in = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 ||
	    (in = fcntl(in, F_DUPFD_CLOEXEC, 10)) < 0 ||
	    (out = fcntl(c->logfd, F_DUPFD_CLOEXEC, 10)) < 0 ||
	    (c->chanfd >= 0 &&
	     (ch = fcntl(c->chanfd, F_DUPFD_CLOEXEC, 10)) < 0) ||
	    dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0 ||
	    (ch >= 0 && dup2(ch, 3) < 0))
		child_fail(errfd, STEP_FDS, 0, errno);
	if (ch < 0)
		close(3);
	if (chdir(c->cwd) < 0)
		child_fail(errfd, STEP_CWD, 0, errno);
	if ((rc = hw_appcaps_apply(c->caps, &caps_step)))
		child_fail(errfd, STEP_CAPS, caps_step, -rc);
	execve(c->file, c->argv, c->env);
	child_fail(errfd, STEP_EXEC, 0, errno);
}

/* Forks and execs c; *pid is the child's. Returns 0, or -errno with what
 * failed in what. Waits only for the exec (or the child's failure). */
static int fork_exec(const struct child *c, int *pid, char *what,
		     size_t whatlen)
{
	struct child_err ce;
	sigset_t all, old;
	int pfd[2], e;
	ssize_t n;
	pid_t p;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		e = errno;
		snprintf(what, whatlen, "pipe");
		return -e;
	}
	/* No signal handler of the visor may run in the child. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	p = fork();
	if (p == 0) {
		close(pfd[0]);
		child_run(c, pfd[1]);
	}
	e = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(pfd[1]);
	if (p < 0) {
		close(pfd[0]);
		snprintf(what, whatlen, "fork");
		return -e;
	}
	/* End of file: the exec closed the pipe. */
	do
		n = read(pfd[0], &ce, sizeof(ce));
	while (n < 0 && errno == EINTR);
	close(pfd[0]);
	if (n != (ssize_t)sizeof(ce)) {
		*pid = p;
		return 0;
	}
	while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
		;
	switch (ce.step) {
	case STEP_SESSION:
		snprintf(what, whatlen, "setsid");
		break;
	case STEP_FDS:
		snprintf(what, whatlen, "its stdio and channel");
		break;
	case STEP_CWD:
		snprintf(what, whatlen, "chdir %s", c->cwd);
		break;
	case STEP_CAPS:
		snprintf(what, whatlen, "capabilities (%s)",
			 hw_appcaps_step_name(ce.caps_step));
		break;
	default:
		snprintf(what, whatlen, "exec");
	}
	return -ce.err;
}

/* The names a list of capability bits, "CAP_NET_ADMIN, ..." */
static void caps_text(uint64_t caps, char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
	for (unsigned b = 0; b < 64 && n < len; b++) {
		const char *name = hw_config_cap_name(UINT64_C(1) << b);
		if (!(caps & (UINT64_C(1) << b)))
			continue;
		n += (size_t)snprintf(out + n, len - n, "%s%s", n ? ", " : "",
				      name ? name : "?");
	}
}

/* The app's capabilities, prepared; a clear error when the visor lacks
 * some. */
static int prepare_caps(struct app *a, struct hw_appcaps *caps, char *err,
			size_t errlen)
{
	uint64_t missing;
	char names[128];
	int rc = hw_appcaps_prepare(caps, a->cfg.caps, &missing);

	if (rc == -EPERM) {
		caps_text(missing, names, sizeof(names));
		snprintf(err, errlen, "app '%s' needs %s, which this visor "
			 "does not have (docs/vpn.md)", a->cfg.name, names);
	} else if (rc) {
		snprintf(err, errlen, "app '%s': capabilities: %s",
			 a->cfg.name, strerror(-rc));
	}
	return rc;
}

/* The environment of a's processes: the visor's without what the
 * launcher sets, plus that. chan: with HOPWIRE_APP_FD (the app, not its
 * cleanup). */
struct envbuf {
	char fd[32], name[64], port[32], pk[128], api[PATH_MAX + 32];
	char **env;
};

static int build_env(struct app *a, int chan, struct envbuf *b)
{
	static const char *const ours[] = {
		"HOPWIRE_APP_SOCKET=", "HOPWIRE_APP_FD=",
		"HOPWIRE_APP_NAME=",   "HOPWIRE_APP_PORT=",
		"HOPWIRE_VISOR_PK=",   "HOPWIRE_VISOR_API=",
		NULL};
	struct hw_launcher *l = a->l;
	size_t n = 0, k = 0;

	while (environ && environ[n])
		n++;
	if (!(b->env = calloc(n + 6, sizeof(*b->env))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int skip = 0;
		for (int j = 0; ours[j] && !skip; j++)
			skip = !strncmp(environ[i], ours[j], strlen(ours[j]));
		if (!skip)
			b->env[k++] = environ[i];
	}
	snprintf(b->fd, sizeof(b->fd), "HOPWIRE_APP_FD=%d", APP_FD);
	snprintf(b->name, sizeof(b->name), "HOPWIRE_APP_NAME=%s", a->cfg.name);
	snprintf(b->port, sizeof(b->port), "HOPWIRE_APP_PORT=%u", a->cfg.port);
	if (chan)
		b->env[k++] = b->fd;
	b->env[k++] = b->name;
	b->env[k++] = b->port;
	if (l->visor_pk) {
		snprintf(b->pk, sizeof(b->pk), "HOPWIRE_VISOR_PK=%s",
			 l->visor_pk);
		b->env[k++] = b->pk;
	}
	if (l->visor_api) {
		snprintf(b->api, sizeof(b->api), "HOPWIRE_VISOR_API=%s",
			 l->visor_api);
		b->env[k++] = b->api;
	}
	return 0;
}

/* argv for binary args... (NULL-terminated); free it. */
static char **build_argv(struct app *a, char **args, size_t nargs)
{
	char **argv = calloc(nargs + 2, sizeof(*argv));

	if (!argv)
		return NULL;
	argv[0] = a->cfg.binary;
	for (size_t i = 0; i < nargs; i++)
		argv[i + 1] = args[i];
	return argv;
}

/* Starts a's process. restart: a scheduled restart (a transient failure
 * then schedules another). On failure the message is in err and in
 * a->error, logged once. */
static int spawn(struct app *a, int restart, char *err, size_t errlen)
{
	struct hw_launcher *l = a->l;
	struct hw_appcaps caps = {0};
	struct envbuf eb = {0};
	struct child c = {0};
	char file[PATH_MAX], dir[PATH_MAX + 8], what[128];
	char **argv = NULL;
	int sv[2] = {-1, -1}, logfd = -1, rc, pid;

	err[0] = '\0';
	if ((rc = resolve(a, file, sizeof(file), err, errlen)))
		goto fail;
	if ((rc = prepare_caps(a, &caps, err, errlen)))
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
	if (build_env(a, 1, &eb) ||
	    !(argv = build_argv(a, a->cfg.args, a->cfg.nargs))) {
		rc = -ENOMEM;
		snprintf(err, errlen, "app '%s': out of memory", a->cfg.name);
		goto fail;
	}
	c.file = file;
	c.argv = argv;
	c.env = eb.env;
	c.cwd = a->cwd;
	c.logfd = logfd;
	c.chanfd = sv[1];
	c.caps = &caps;
	marker(a, logfd, "starting %s: %s", a->cfg.name, file);
	if ((rc = fork_exec(&c, &pid, what, sizeof(what)))) {
		snprintf(err, errlen, "app '%s': cannot run %s: %s: %s",
			 a->cfg.name, file, what, strerror(-rc));
		marker(a, logfd, "cannot start %s: %s: %s", a->cfg.name,
		       what, strerror(-rc));
		goto fail;
	}
	proc_add(l);
	a->pid = pid;
	marker(a, logfd, "%s is pid %d", a->cfg.name, pid);
	close(logfd);
	close(sv[1]);
	set_nonblock(sv[0]);
	free(argv);
	free(eb.env);
	hw_appcaps_clear(&caps);
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
	free(eb.env);
	hw_appcaps_clear(&caps);
	snprintf(a->error, sizeof(a->error), "%s", err);
	if (restart && transient(rc)) {
		hw_log(HW_LOG_WARN, LOG, "%s", err);
		schedule_restart(a);
	} else {
		hw_log(HW_LOG_ERROR, LOG, "%s", err);
		a->state = ST_FAILED;
	}
	return rc;
}

/* After an exit (and its cleanup): what next says. */
static void finish(struct app *a, enum next next)
{
	struct hw_launcher *l = a->l;

	if (l->freed) {
		uv_close((uv_handle_t *)&a->timer, on_timer_close);
		return;
	}
	switch (next) {
	case NX_RESTART:
		/* Stopped for new settings (hw_launcher_put): start again
		 * from the timer, so the exited callback comes first. */
		a->backoff_ms = l->backoff_min;
		a->state = ST_BACKOFF;
		a->restart_at = uv_now(l->loop);
		uv_timer_start(&a->timer, on_timer, 0, 0);
		break;
	case NX_STOPPED:
		a->state = ST_STOPPED;
		break;
	case NX_EXITED:
		a->state = ST_EXITED;
		break;
	case NX_BACKOFF:
		schedule_restart(a);
	}
}

/* Runs BINARY CLEANUP_ARGS for a that has just ended, in its folder,
 * with its environment (without the channel) and capabilities, output
 * to its log, SIGKILL after l->cleanup_ms. Returns 0 when it runs. */
static int start_cleanup(struct app *a)
{
	struct hw_launcher *l = a->l;
	struct hw_appcaps caps = {0};
	struct envbuf eb = {0};
	struct child c = {0};
	char file[PATH_MAX], err[768], what[128];
	char **argv = NULL;
	int logfd = -1, rc, pid;

	if ((rc = resolve(a, file, sizeof(file), err, sizeof(err))) ||
	    (rc = prepare_caps(a, &caps, err, sizeof(err))) ||
	    (rc = logfd = open_log(a, err, sizeof(err))) < 0)
		goto fail;
	if (build_env(a, 0, &eb) ||
	    !(argv = build_argv(a, a->cfg.cleanup_args,
				a->cfg.ncleanup_args))) {
		rc = -ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	c.file = file;
	c.argv = argv;
	c.env = eb.env;
	c.cwd = a->cwd;
	c.logfd = logfd;
	c.chanfd = -1;
	c.caps = &caps;
	marker(a, logfd, "cleanup after %s: %s%s%s", a->cfg.name, file,
	       a->cfg.ncleanup_args ? " " : "",
	       a->cfg.ncleanup_args ? a->cfg.cleanup_args[0] : "");
	if ((rc = fork_exec(&c, &pid, what, sizeof(what)))) {
		snprintf(err, sizeof(err), "cannot run %.600s: %s: %s", file,
			 what, strerror(-rc));
		goto fail;
	}
	proc_add(l);
	a->cleanup_pid = pid;
	hw_log(HW_LOG_INFO, LOG, "app '%s': cleanup started, pid %d",
	       a->cfg.name, pid);
	close(logfd);
	free(argv);
	free(eb.env);
	hw_appcaps_clear(&caps);
	arm(a, l->cleanup_ms);
	return 0;
fail:
	hw_log(HW_LOG_ERROR, LOG, "app '%s': cleanup: %s", a->cfg.name, err);
	marker(a, logfd, "cleanup not run: %s", err);
	if (logfd >= 0)
		close(logfd);
	free(argv);
	free(eb.env);
	hw_appcaps_clear(&caps);
	return rc ? rc : -EINVAL;
}

static void describe(int64_t status, int sig, char *how, size_t len)
{
	char sname[32];

	if (sig) {
		signal_name(sig, sname, sizeof(sname));
		snprintf(how, len, "was killed by %s", sname);
	} else {
		snprintf(how, len, "exited with status %lld",
			 (long long)status);
	}
}

static void on_cleanup_exit(struct app *a, int64_t status, int sig)
{
	char how[64];

	a->cleanup_pid = 0;
	proc_del(a->l);
	uv_timer_stop(&a->timer);
	describe(status, sig, how, sizeof(how));
	marker(a, -1, "cleanup of %s %s", a->cfg.name, how);
	hw_log(!sig && !status ? HW_LOG_INFO : HW_LOG_WARN, LOG,
	       "app '%s': cleanup %s", a->cfg.name, how);
	finish(a, a->next);
}

static void on_proc_exit(struct app *a, int64_t status, int sig)
{
	struct hw_launcher *l = a->l;
	uint64_t now = uv_now(l->loop);
	enum next next;
	char how[64];
	int pid = a->pid;

	/* What the app left behind in its group goes with it. */
	kill(-pid, SIGKILL);
	a->pid = 0;
	proc_del(l);
	a->has_exit = 1;
	a->exit_status = status;
	a->exit_signal = sig;
	uv_timer_stop(&a->timer);
	describe(status, sig, how, sizeof(how));
	marker(a, -1, "%s (pid %d) %s", a->cfg.name, pid, how);
	hw_log(a->state == ST_STOPPING || (!sig && !status) ? HW_LOG_INFO
							    : HW_LOG_WARN,
	       LOG, "app '%s': pid %d %s", a->cfg.name, pid, how);
	if (a->state == ST_STOPPING && a->restart_on_exit) {
		next = NX_RESTART;
	} else if (a->state == ST_STOPPING) {
		next = NX_STOPPED;
	} else if (!sig && !status) {
		next = NX_EXITED;
	} else {
		if (now - a->started_at >= l->stable)
			a->backoff_ms = l->backoff_min;
		next = NX_BACKOFF;
	}
	/* A crash, or a stop that had to kill it, may leave what the app
	 * changed on the host: its cleanup undoes it first. */
	if (a->cfg.ncleanup_args && (sig || status) &&
	    start_cleanup(a) == 0) {
		a->state = ST_CLEANUP;
		a->next = next;
	} else {
		finish(a, next);
	}
	/* Last: the callee may do anything, even free the launcher. */
	if (!l->freed && l->ops.exited)
		l->ops.exited(l->ud, a->cfg.name, status, sig);
}

/* Reaps whichever of our children have ended. Only our own pids: libuv
 * reaps the processes of uv_spawn by theirs. */
static void on_sigchld(uv_signal_t *h, int signum)
{
	struct hw_launcher *l = h->data;
	int st;

	for (size_t i = 0; i < l->napps; i++) {
		struct app *a = l->apps[i];
		int pids[2] = {a->pid, a->cleanup_pid};

		for (int k = 0; k < 2; k++) {
			pid_t p;

			if (!pids[k])
				continue;
			do
				p = waitpid(pids[k], &st, WNOHANG);
			while (p < 0 && errno == EINTR);
			if (p != pids[k])
				continue;
			int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
			int64_t status = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
			if (k == 0)
				on_proc_exit(a, status, sig);
			else
				on_cleanup_exit(a, status, sig);
		}
	}
	maybe_done(l);
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

/* path made absolute from the working folder, in a new string. */
static int absolute(const char *path, char **out)
{
	char cwd[PATH_MAX];
	size_t len;

	if (path[0] == '/')
		return (*out = strdup(path)) ? 0 : -ENOMEM;
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	len = strlen(cwd) + strlen(path) + 2;
	if (!(*out = malloc(len)))
		return -ENOMEM;
	snprintf(*out, len, "%s/%s", cwd, path);
	return 0;
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
	l->cleanup_ms = p->cleanup_ms ? p->cleanup_ms : DEFAULT_CLEANUP_MS;
	if (!(l->local_dir = strdup(p->local_dir)))
		goto nomem;
	if (p->visor_api && (rc = absolute(p->visor_api, &l->visor_api))) {
		snprintf(err, errlen, "launcher: visor_api %s: %s",
			 p->visor_api, strerror(-rc));
		goto fail;
	}
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
	uv_signal_init(l->loop, &l->sigchld);
	l->sigchld.data = l;
	l->handles++;
	uv_signal_start(&l->sigchld, on_sigchld, SIGCHLD);
	uv_unref((uv_handle_t *)&l->sigchld);
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
			 a->pid);
		return HW_ESTATE;
	}
	if (a->state == ST_CLEANUP) {
		snprintf(err, errlen, "app '%s' is cleaning up after its exit "
			 "(cleanup pid %d)", a->cfg.name, a->cleanup_pid);
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
		if (a->cfg.autostart && !a->pid && a->state != ST_BACKOFF &&
		    a->state != ST_CLEANUP)
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
		       a->cfg.name, a->pid);
		a->state = ST_STOPPING;
		kill(-a->pid, SIGTERM);
		arm(a, a->l->grace);
		return 0;
	case ST_STOPPING:
		return 0;
	case ST_CLEANUP:
		/* Not started again once the cleanup is over. */
		a->next = NX_STOPPED;
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
		if (l->apps[i] != a && c->port &&
		    l->apps[i]->cfg.port == c->port) {
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
		       "pid %d", a->cfg.name, a->pid);
		a->restart_on_exit = 1;
		a->state = ST_STOPPING;
		kill(-a->pid, SIGTERM);
		arm(a, l->grace);
		break;
	case ST_STOPPING:
	case ST_CLEANUP:
		/* Its next start, if one is due, takes the new settings. */
		hw_log(HW_LOG_INFO, LOG, "app '%s': new settings (it is %s)",
		       a->cfg.name, state_names[a->state]);
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
	return a && (a->pid || a->state == ST_BACKOFF ||
		     a->state == ST_CLEANUP);
}

static json_t *strings_json(char *const *list, size_t n)
{
	json_t *arr = json_array();

	for (size_t j = 0; arr && j < n; j++)
		if (json_array_append_new(arr, json_string(list[j]))) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

static json_t *caps_json(uint64_t caps)
{
	json_t *arr = json_array();

	for (unsigned b = 0; arr && b < 64; b++) {
		const char *name = hw_config_cap_name(UINT64_C(1) << b);
		if ((caps & (UINT64_C(1) << b)) && name &&
		    json_array_append_new(arr, json_string(name))) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static json_t *app_json(const struct hw_launcher *l, const struct app *a)
{
	uint64_t now = uv_now(l->loop);
	json_t *o = json_object(), *ex = json_null();
	json_t *args = strings_json(a->cfg.args, a->cfg.nargs);
	char sname[32];

	if (!o || !args)
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
	    json_object_set_new(o, "capabilities", caps_json(a->cfg.caps)) ||
	    json_object_set_new(o, "cleanup_args",
				strings_json(a->cfg.cleanup_args,
					     a->cfg.ncleanup_args)) ||
	    json_object_set_new(o, "cleanup_pid",
				a->cleanup_pid ? json_integer(a->cleanup_pid)
					       : json_null()) ||
	    json_object_set_new(o, "state",
				json_string(state_names[a->state])) ||
	    json_object_set_new(o, "pid", a->pid ? json_integer(a->pid)
						 : json_null()) ||
	    json_object_set_new(o, "uptime_ms",
				a->pid ? json_integer((json_int_t)(
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
		if (a->state == ST_CLEANUP)
			continue; /* it closes its timer when done */
		if (!a->pid) {
			uv_timer_stop(&a->timer);
			uv_close((uv_handle_t *)&a->timer, on_timer_close);
			continue;
		}
		/* The timer closes when the process has gone (on_proc_exit). */
		if (a->state != ST_STOPPING) {
			hw_log(HW_LOG_INFO, LOG, "app '%s': stopping pid %d",
			       a->cfg.name, a->pid);
			a->state = ST_STOPPING;
			kill(-a->pid, SIGTERM);
			arm(a, l->grace);
		}
	}
	maybe_done(l);
}
