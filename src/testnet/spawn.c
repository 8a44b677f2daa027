/* Starting the programs of a testnet: finding them (beside the running
 * executable, then in PATH), starting each as a daemon, and starting one
 * again as it was started (restart). */
#define _GNU_SOURCE /* pipe2, close_range */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testnet/tn_priv.h"
#include "util/err.h"

int hw_tn_self_dir(char out[PATH_MAX])
{
	ssize_t n = readlink("/proc/self/exe", out, PATH_MAX - 1);
	char *slash;

	if (n <= 0)
		return n < 0 ? -errno : -ENOENT;
	out[n] = '\0';
	if (!(slash = strrchr(out, '/')))
		return -ENOENT;
	slash[slash == out] = '\0';
	return 0;
}

int hw_tn_find_bin(const char *self, const char *name, char out[PATH_MAX])
{
	const char *path = getenv("PATH");

	if (!hw_tn_fmt(out, PATH_MAX, "%s/%s", self, name) &&
	    access(out, X_OK) == 0)
		return 0;
	while (path && *path) {
		size_t len = strcspn(path, ":");
		if (!hw_tn_fmt(out, PATH_MAX, "%.*s/%s", len ? (int)len : 1,
			 len ? path : ".", name) &&
		    access(out, X_OK) == 0)
			return 0;
		path += len + (path[len] == ':');
	}
	return -ENOENT;
}

/* A descriptor above 2, so dup2 onto 0..2 in the child never meets
 * itself (and keeps close-on-exec). */
static int fd_above2(int fd)
{
	int nfd;

	if (fd < 0 || fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return nfd;
}

/* In the child of spawn: becomes the daemon, in cwd unless NULL, and
 * execs argv with envp; when that fails, the errno goes to the parent
 * through errfd. */
static void exec_daemon(int nullfd, int logfd, int errfd, char *const argv[],
			char *const envp[], const char *cwd)
{
	sigset_t none;
	int e;

	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (setsid() < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 ||
	    dup2(logfd, 2) < 0 || (cwd && chdir(cwd) < 0)) {
		e = errno;
	} else {
		/* Nothing else of ours (sockets, the lock) goes on living in
		 * the daemon. */
		if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
			for (int fd = 3; fd < 1024; fd++)
				fcntl(fd, F_SETFD, FD_CLOEXEC);
		execve(argv[0], argv, envp);
		e = errno;
	}
	if (write(errfd, &e, sizeof(e)) < 0)
		_exit(126);
	_exit(127);
}

/* Starts argv as a daemon for p: its own session and process group,
 * stdin /dev/null, stdout and stderr appended to p->log, the log told
 * what (verb: "starting", "restarting"). Returns when the exec has
 * happened (or failed: a negative errno). */
static int spawn(struct hw_tn_proc *p, const char *verb, char *const argv[],
		 char *const envp[], const char *cwd)
{
	int logfd = -1, nullfd = -1, pfd[2] = {-1, -1}, e = 0, rc;
	struct hw_tn_pinfo pi;
	time_t now = time(NULL);
	char when[64];
	ssize_t n;
	pid_t pid;

	logfd = fd_above2(open(p->log, O_WRONLY | O_CREAT | O_APPEND |
					       O_CLOEXEC, 0600));
	if (logfd < 0) {
		rc = -errno;
		goto out;
	}
	nullfd = fd_above2(open("/dev/null", O_RDONLY | O_CLOEXEC));
	if (nullfd < 0 || pipe2(pfd, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out;
	}
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&now));
	dprintf(logfd, "---- %s hopwire testnet: %s %s:", when, verb, p->name);
	for (int i = 0; argv[i]; i++)
		dprintf(logfd, " %s", argv[i]);
	dprintf(logfd, "\n");
	fflush(NULL);
	if ((pid = fork()) < 0) {
		rc = -errno;
		goto out;
	}
	if (pid == 0)
		exec_daemon(nullfd, logfd, pfd[1], argv, envp, cwd);
	close(pfd[1]);
	pfd[1] = -1;
	do
		n = read(pfd[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		waitpid(pid, NULL, 0);
		rc = -(e ? e : EIO);
		goto out;
	}
	p->pid = pid;
	p->reaped = 0;
	/* The exec is done, so the process (maybe a zombie by now) is
	 * there to read. */
	p->start = hw_tn_proc_stat(pid, &pi) ? 0 : pi.start;
	p->started = (long long)now;
	p->killed[0] = '\0';
	p->killed_at = 0;
	rc = 0;
out:
	if (logfd >= 0)
		close(logfd);
	if (nullfd >= 0)
		close(nullfd);
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	return rc;
}

/* Records argv in p: its arguments one after the other with their
 * NULs. */
static int record_argv(struct hw_tn_proc *p, char *const argv[])
{
	size_t off = 0;
	int i;

	for (i = 0; argv[i]; i++) {
		size_t len = strlen(argv[i]) + 1;
		if (i == HW_TN_ARGC_MAX || len > sizeof(p->argv) - off)
			return -E2BIG;
		memcpy(p->argv + off, argv[i], len);
		off += len;
	}
	p->argvlen = off;
	return 0;
}

int hw_tn_spawn(struct hw_tn *tn, struct hw_tn_proc *p, char *const argv[])
{
	extern char **environ;
	int rc = record_argv(p, argv);

	if (!rc)
		rc = spawn(p, "starting", argv, environ, NULL);
	if (rc)
		hw_tn_err(tn, "testnet %s: cannot start %s (%s, log %s): %s",
			  tn->cmd, p->name, argv[0], p->log, hw_strerror(rc));
	return rc;
}

int hw_tn_respawn(struct hw_tn *tn, struct hw_tn_proc *p,
		  char *const envp[])
{
	char *argv[HW_TN_ARGC_MAX + 1];
	size_t off = 0;
	int n = 0, rc;

	/* The state file was checked when read: argvlen bytes, each
	 * argument ended by its NUL, at most HW_TN_ARGC_MAX of them. */
	while (off < p->argvlen && n < HW_TN_ARGC_MAX) {
		argv[n++] = p->argv + off;
		off += strlen(p->argv + off) + 1;
	}
	argv[n] = NULL;
	rc = n ? spawn(p, "restarting", argv, envp, tn->cwd[0] ? tn->cwd :
		       NULL) : -EINVAL;
	if (rc)
		hw_tn_err(tn, "testnet %s: cannot start %s again (%s in %s, "
			  "log %s): %s", tn->cmd, p->name, n ? argv[0] : "?",
			  tn->cwd[0] ? tn->cwd : ".", p->log, hw_strerror(rc));
	return rc;
}
