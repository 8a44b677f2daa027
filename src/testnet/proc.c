/* The processes of a testnet as /proc shows them, and stopping them: a
 * testnet is its process groups, copies of its processes started by hand
 * with the commands their logs show, what they started (the visors' apps
 * run in sessions of their own), and apps left behind by a visor that
 * died. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testnet/tn_priv.h"

int hw_tn_proc_stat(pid_t pid, struct hw_tn_pinfo *pi)
{
	char path[64], buf[1024], *p;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: the fields
	 * start after the last ')'. */
	if (!(p = strrchr(buf, ')')) || !p[1])
		return -EIO;
	pi->pid = pid;
	if (sscanf(p + 2, "%c %d %d %*s %*s %*s %*s %*s %*s %*s %*s %*s "
		   "%*s %*s %*s %*s %*s %*s %*s %llu",
		   &pi->state, &pi->ppid, &pi->pgrp, &pi->start) != 4)
		return -EIO;
	return 0;
}

static int gone_state(char s)
{
	return s == 'Z' || s == 'X' || s == 'x';
}

void hw_tn_snap_free(struct hw_tn_snap *s)
{
	free(s->v);
	free(s->mark);
	memset(s, 0, sizeof(*s));
}

int hw_tn_snap_take(struct hw_tn_snap *s)
{
	struct dirent *de;
	DIR *d;

	s->n = 0;
	if (!(d = opendir("/proc")))
		return -errno;
	while ((de = readdir(d))) {
		struct hw_tn_pinfo pi;
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0 || hw_tn_proc_stat((pid_t)pid, &pi) ||
		    gone_state(pi.state))
			continue;
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 512;
			struct hw_tn_pinfo *v = realloc(s->v, cap * sizeof(*v));
			unsigned char *m;
			if (!v) {
				closedir(d);
				return -ENOMEM;
			}
			s->v = v;
			if (!(m = realloc(s->mark, cap))) {
				closedir(d);
				return -ENOMEM;
			}
			s->mark = m;
			s->cap = cap;
		}
		s->v[s->n++] = pi;
	}
	closedir(d);
	return 0;
}

static const struct hw_tn_pinfo *snap_find(const struct hw_tn_snap *s,
					    pid_t pid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].pid == pid)
			return &s->v[i];
	return NULL;
}

/* The program's name of a command line: what follows its last '/'. */
static const char *prog_name(const char *arg0)
{
	const char *slash = strrchr(arg0, '/');
	return slash ? slash + 1 : arg0;
}

/* cmd (len bytes, as /proc/PID/cmdline holds it) is the command recorded
 * for p: the same program's name (the path may differ: a copy started
 * from PATH), the same arguments. */
static int same_command(const struct hw_tn_proc *p, const char *cmd,
			size_t len)
{
	size_t a0 = strnlen(cmd, len) + 1, r0 = strlen(p->argv) + 1;

	return p->argvlen && a0 <= len && len - a0 == p->argvlen - r0 &&
	       !strcmp(prog_name(cmd), prog_name(p->argv)) &&
	       !memcmp(cmd + a0, p->argv + r0, len - a0);
}

/* Reads /proc/PID/cmdline into buf (cap bytes, NUL-ended): its length,
 * 0 when there is none (a kernel thread, a process gone) or it does not
 * fit. */
static size_t read_cmdline(pid_t pid, char *buf, size_t cap)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n <= 0 || (size_t)n == cap - 1)
		return 0;
	buf[n] = '\0';
	return (size_t)n;
}

/* A process of the testnet's command, started by hand: the one of tn's
 * processes (of role, unless NULL) whose command pid runs, or NULL. */
static const struct hw_tn_proc *copy_of_any(const struct hw_tn *tn,
					    pid_t pid, const char *role)
{
	char cmd[HW_TN_ARGV_MAX + 1];
	size_t len = 0;
	int any = 0;

	for (int k = 0; k < tn->np; k++)
		any |= tn->p[k].argvlen > 0;
	if (!any || !(len = read_cmdline(pid, cmd, sizeof(cmd))))
		return NULL;
	for (int k = 0; k < tn->np; k++)
		if ((!role || !strcmp(tn->p[k].role, role)) &&
		    same_command(&tn->p[k], cmd, len))
			return &tn->p[k];
	return NULL;
}

void hw_tn_copies(const struct hw_tn *tn, const struct hw_tn_snap *s,
		  pid_t copy[HW_TN_MAX_PROCS])
{
	const struct hw_tn_proc *p;

	memset(copy, 0, sizeof(pid_t) * HW_TN_MAX_PROCS);
	for (size_t i = 0; i < s->n; i++) {
		pid_t pid = s->v[i].pid;
		if (pid != getpid() && (p = copy_of_any(tn, pid, NULL)) &&
		    pid != p->pid && !copy[p - tn->p])
			copy[p - tn->p] = pid;
	}
}

int hw_tn_leader_alive(const struct hw_tn *tn, const struct hw_tn_snap *s,
			const struct hw_tn_proc *p)
{
	const struct hw_tn_pinfo *pi;

	if (!tn->same_boot || p->pid <= 1)
		return 0;
	pi = snap_find(s, p->pid);
	return pi && pi->start == p->start;
}

/* An app of this testnet whose visor is gone: it works in a folder under
 * DIR and has the launcher's variable in its environment. */
static int orphan_app(const struct hw_tn *tn, pid_t pid)
{
	char path[64], cwd[PATH_MAX], env[8192];
	size_t dl = strlen(tn->dir);
	ssize_t n;
	int fd, found = 0;

	snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
	n = readlink(path, cwd, sizeof(cwd) - 1);
	if (n <= 0)
		return 0;
	cwd[n] = '\0';
	if (strncmp(cwd, tn->dir, dl) || cwd[dl] != '/')
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, env, sizeof(env) - 1);
	close(fd);
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(env + i) + 1) {
		env[n] = '\0';
		if (!strncmp(env + i, HW_TN_APP_ENV, strlen(HW_TN_APP_ENV)))
			found = 1;
	}
	return found;
}

size_t hw_tn_mark(const struct hw_tn *tn, struct hw_tn_snap *s,
		      const char *role)
{
	pid_t self = getpid();
	size_t n = 0;
	int more = 1;

	memset(s->mark, 0, s->n);
	for (size_t i = 0; i < s->n; i++) {
		const struct hw_tn_pinfo *pi = &s->v[i];
		if (pi->pid == self)
			continue;
		for (int k = 0; tn->same_boot && k < tn->np; k++) {
			const struct hw_tn_proc *p = &tn->p[k];
			if (role && strcmp(p->role, role))
				continue;
			if (p->pid > 1 && pi->pgrp == p->pid &&
			    pi->start >= p->start &&
			    (pi->pid != p->pid || pi->start == p->start))
				s->mark[i] = 1;
		}
		if (!s->mark[i] && orphan_app(tn, pi->pid))
			s->mark[i] = 2;
		if (!s->mark[i] && copy_of_any(tn, pi->pid, role))
			s->mark[i] = 4;
	}
	while (more) {
		more = 0;
		for (size_t i = 0; i < s->n; i++) {
			const struct hw_tn_pinfo *pa;
			if (s->mark[i] || s->v[i].pid == self)
				continue;
			pa = snap_find(s, s->v[i].ppid);
			if (pa && s->mark[pa - s->v]) {
				s->mark[i] = 3;
				more = 1;
			}
		}
	}
	for (size_t i = 0; i < s->n; i++)
		n += s->mark[i] != 0;
	return n;
}

static int is_tn_group(const struct hw_tn *tn, pid_t pgrp)
{
	for (int k = 0; k < tn->np; k++)
		if (tn->p[k].pid > 1 && tn->p[k].pid == pgrp)
			return 1;
	return 0;
}

/* What a stop has sent SIGTERM to already: a process group or a single
 * process, each at most once (a visor is told to stop once). */
struct tn_sent {
	pid_t id;
	int group;
	unsigned long long start;
};

struct tn_sentset {
	struct tn_sent *v;
	size_t n, cap;
};

/* Records id in ss; returns 1 when it was new. Out of memory it says
 * new and records nothing: a second SIGTERM is harmless. */
static int sent_new(struct tn_sentset *ss, pid_t id, int group,
		    unsigned long long start)
{
	for (size_t i = 0; i < ss->n; i++)
		if (ss->v[i].id == id && ss->v[i].group == group &&
		    ss->v[i].start == start)
			return 0;
	if (ss->n == ss->cap) {
		size_t cap = ss->cap ? ss->cap * 2 : 64;
		struct tn_sent *v = realloc(ss->v, cap * sizeof(*v));
		if (!v)
			return 1;
		ss->v = v;
		ss->cap = cap;
	}
	ss->v[ss->n++] = (struct tn_sent){id, group, start};
	return 1;
}

/* Signals the marked processes. SIGTERM (once each, recorded in ss) goes
 * to the testnet's process groups and to processes whose parent is not
 * marked: a running visor stops its own apps, so they end in order, and
 * an app whose visor is gone is told directly. SIGKILL goes to
 * everything marked. */
static void tn_signal(const struct hw_tn *tn, const struct hw_tn_snap *s,
		      int sig, struct tn_sentset *ss)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct hw_tn_pinfo *pi = &s->v[i], *pa;
		unsigned long long start = 0;
		pid_t id = pi->pgrp;
		int group = 1;

		if (!s->mark[i])
			continue;
		if (is_tn_group(tn, pi->pgrp)) {
			/* Once per group: from its first marked member. */
			int first = 1;
			for (size_t j = 0; j < i; j++)
				first &= !(s->mark[j] &&
					   s->v[j].pgrp == pi->pgrp);
			if (!first)
				continue;
		} else {
			pa = snap_find(s, pi->ppid);
			if (sig == SIGTERM && pa && s->mark[pa - s->v])
				continue;
			start = pi->start;
			if (pi->pgrp != pi->pid) {
				id = pi->pid;
				group = 0;
			}
		}
		if (sig == SIGTERM && ss && !sent_new(ss, id, group, start))
			continue;
		if (group)
			killpg(id, sig);
		else
			kill(id, sig);
		/* A stopped process (SIGSTOP, 'testnet kill --signal STOP')
		 * acts on SIGTERM only once it runs again. */
		if (sig == SIGTERM && group)
			killpg(id, SIGCONT);
		else if (sig == SIGTERM)
			kill(id, SIGCONT);
	}
}

struct hw_tn_proc *hw_tn_reap(struct hw_tn *tn, int *status)
{
	for (int k = 0; k < tn->np; k++) {
		struct hw_tn_proc *p = &tn->p[k];
		if (p->pid > 1 && !p->reaped &&
		    waitpid(p->pid, status, WNOHANG) == p->pid) {
			p->reaped = 1;
			return p;
		}
	}
	return NULL;
}

/* SIGTERM to the processes of role (NULL: all of them), also to those
 * that turn up or lose their parent meanwhile, until they are gone or
 * the deadline passes; *left is how many remain. */
static int stop_wave(struct hw_tn *tn, struct hw_tn_snap *s,
		     const char *role, long long deadline,
		     struct tn_sentset *ss, size_t *left)
{
	int status, rc;
	size_t n;

	for (;;) {
		n = hw_tn_mark(tn, s, role);
		if (!n || hw_tn_now_ms() >= deadline)
			break;
		tn_signal(tn, s, SIGTERM, ss);
		hw_tn_sleep_ms(50);
		while (hw_tn_reap(tn, &status))
			;
		if ((rc = hw_tn_snap_take(s)))
			return rc;
	}
	*left = n;
	return 0;
}

int hw_tn_stop(struct hw_tn *tn, struct hw_tn_stopped *r)
{
	struct tn_sentset ss = {0};
	struct hw_tn_snap s = {0};
	long long start = hw_tn_now_ms();
	int status, rc;
	size_t n;

	memset(r, 0, sizeof(*r));
	if ((rc = hw_tn_snap_take(&s)))
		goto out;
	r->found = hw_tn_mark(tn, &s, NULL);
	for (int k = 0; k < tn->np; k++) {
		if (hw_tn_leader_alive(tn, &s, &tn->p[k])) {
			r->leaders++;
			continue;
		}
		r->gone++;
		if (r->gone_names[0])
			strcat(r->gone_names, ", ");
		strcat(r->gone_names, tn->p[k].name);
	}
	/* Visors that hang must leave the services time to stop too. */
	if ((rc = stop_wave(tn, &s, "visor", start + HW_TN_GRACE_MS * 2 / 3,
			    &ss, &n)) ||
	    (rc = stop_wave(tn, &s, NULL, start + HW_TN_GRACE_MS, &ss, &n)))
		goto out;
	if (n) {
		long long deadline = hw_tn_now_ms() + HW_TN_KILL_WAIT_MS;
		r->killed = n;
		for (;;) {
			tn_signal(tn, &s, SIGKILL, NULL);
			hw_tn_sleep_ms(50);
			while (hw_tn_reap(tn, &status))
				;
			if ((rc = hw_tn_snap_take(&s)))
				goto out;
			n = hw_tn_mark(tn, &s, NULL);
			if (!n || hw_tn_now_ms() >= deadline)
				break;
		}
	}
	r->left = n;
out:
	free(ss.v);
	hw_tn_snap_free(&s);
	return rc;
}
