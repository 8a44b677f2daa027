/* hw_tn_restart and hw_tn_kill: one process of a running testnet stopped
 * and started again as up started it (its command, the environment and
 * working folder up ran with, its log), or signalled for a test; either
 * way testnet.json follows, under the testnet's lock, so that status and
 * down see every process the testnet started. The visors' apps are not
 * the testnet's: each visor's launcher starts and restarts its own. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "testnet/tn_priv.h"
#include "util/err.h"

static const struct {
	int sig;
	const char *name;
} signals[] = {
	{SIGHUP, "HUP"},   {SIGINT, "INT"},     {SIGQUIT, "QUIT"},
	{SIGILL, "ILL"},   {SIGTRAP, "TRAP"},   {SIGABRT, "ABRT"},
	{SIGBUS, "BUS"},   {SIGFPE, "FPE"},     {SIGKILL, "KILL"},
	{SIGUSR1, "USR1"}, {SIGSEGV, "SEGV"},   {SIGUSR2, "USR2"},
	{SIGPIPE, "PIPE"}, {SIGALRM, "ALRM"},   {SIGTERM, "TERM"},
	{SIGCHLD, "CHLD"}, {SIGCONT, "CONT"},   {SIGSTOP, "STOP"},
	{SIGTSTP, "TSTP"}, {SIGTTIN, "TTIN"},   {SIGTTOU, "TTOU"},
	{SIGURG, "URG"},   {SIGXCPU, "XCPU"},   {SIGXFSZ, "XFSZ"},
	{SIGVTALRM, "VTALRM"}, {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"},
	{SIGIO, "IO"},     {SIGSYS, "SYS"},
};

int hw_tn_signal_parse(const char *s)
{
	char *end;
	long n;

	if (isdigit((unsigned char)s[0])) {
		n = strtol(s, &end, 10);
		return *end || n < 1 || n >= NSIG ? 0 : (int)n;
	}
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (!strcasecmp(s, signals[i].name))
			return signals[i].sig;
	return 0;
}

void hw_tn_signal_name(int sig, char out[HW_TN_NAME_MAX])
{
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (signals[i].sig == sig) {
			snprintf(out, HW_TN_NAME_MAX, "SIG%s", signals[i].name);
			return;
		}
	snprintf(out, HW_TN_NAME_MAX, "SIG%d", sig);
}

/* Whether sig, not handled, ends a process. */
static int ends_process(int sig)
{
	return sig != SIGCHLD && sig != SIGCONT && sig != SIGSTOP &&
	       sig != SIGTSTP && sig != SIGTTIN && sig != SIGTTOU &&
	       sig != SIGURG && sig != SIGWINCH;
}

/* The names of tn's processes, as status shows them, for a message; a
 * long line of visors by its ends ("v1 to v64"). */
static void list_names(const struct hw_tn *tn, char *out, size_t cap)
{
	size_t off = 0;
	int nv = 0;

	out[0] = '\0';
	for (int k = 0; k < tn->np && off < cap; k++) {
		const struct hw_tn_proc *p = &tn->p[k];
		const char *sep = k ? ", " : "";
		int n;

		if (!strcmp(p->role, "visor") && tn->nvisors > 4) {
			nv++;
			if (nv == tn->nvisors)
				sep = " to ";
			else if (nv > 1)
				continue;
		}
		n = snprintf(out + off, cap - off, "%s%s", sep, p->name);
		off += n > 0 ? (size_t)n : 0;
	}
}

/* Whether name is an app of tn's visors (chat, hello, or VISOR/APP):
 * sets *v to the visor it names, or the first. */
static int names_app(struct hw_tn *tn, const char *name,
		     const struct hw_tn_proc **v)
{
	const char *slash = strchr(name, '/');

	*v = hw_tn_role(tn, "visor");
	if (!slash)
		return !strcmp(name, HW_TN_CHAT_APP) ||
		       !strcmp(name, HW_TN_HELLO_APP);
	for (int k = 0; k < tn->np; k++)
		if (!strcmp(tn->p[k].role, "visor") &&
		    strlen(tn->p[k].name) == (size_t)(slash - name) &&
		    !strncmp(tn->p[k].name, name, (size_t)(slash - name))) {
			*v = &tn->p[k];
			return slash[1] != '\0';
		}
	return 0;
}

/* The process of tn named name; tells why there is none. */
static struct hw_tn_proc *find_name(struct hw_tn *tn, const char *name)
{
	char names[HW_TN_MAX_PROCS * (HW_TN_NAME_MAX + 2)];
	const struct hw_tn_proc *v;

	for (int k = 0; k < tn->np; k++)
		if (!strcmp(tn->p[k].name, name))
			return &tn->p[k];
	if (names_app(tn, name, &v)) {
		const char *app = strchr(name, '/') ? strchr(name, '/') + 1 :
						      name;
		hw_tn_err(tn, "testnet %s: '%s' is an app: the visors' apps "
			  "are started and restarted by their visor's "
			  "launcher, not by the testnet; use 'hopwire --visor "
			  "%s app stop %s' and 'app start %s' (or 'hopwire "
			  "testnet %s' the visor)", tn->cmd, name,
			  v ? v->sock : "DIR/vI/visor.sock", app, app,
			  tn->cmd);
		return NULL;
	}
	list_names(tn, names, sizeof(names));
	hw_tn_err(tn, "testnet %s: no process '%s' in the testnet in %s; its "
		  "processes are: %s", tn->cmd, name, tn->dir, names);
	return NULL;
}

/* The testnet of tn runs: up finished and some of it is alive. */
static int check_running(struct hw_tn *tn)
{
	struct hw_tn_snap s = {0};
	size_t n;
	int rc;

	if (strcmp(tn->phase, "up")) {
		hw_tn_err(tn, "testnet %s: the testnet in %s did not finish "
			  "starting (state '%s'); stop it with 'hopwire "
			  "testnet down --dir %s'", tn->cmd, tn->dir,
			  tn->phase, tn->dir);
		return -EINVAL;
	}
	if ((rc = hw_tn_snap_take(&s))) {
		hw_tn_err(tn, "testnet %s: cannot read /proc: %s", tn->cmd,
			  hw_strerror(rc));
		goto out;
	}
	n = hw_tn_mark(tn, &s, NULL);
	if (!n) {
		hw_tn_err(tn, "no testnet runs in %s: none of its processes is "
			  "alive (start one with 'hopwire testnet up --dir "
			  "%s')", tn->dir, tn->dir);
		rc = -ENOENT;
	}
out:
	hw_tn_snap_free(&s);
	return rc;
}

/* Stops p and what belongs to it alone (its group, what it started, the
 * apps it left behind if it died, a copy of it started by hand) as down
 * stops a whole testnet. */
static int stop_one(const struct hw_tn *tn, const struct hw_tn_proc *p,
		    struct hw_tn_stopped *st)
{
	struct hw_tn *one = calloc(1, sizeof(*one));
	int rc;

	if (!one)
		return -ENOMEM;
	one->ops = tn->ops;
	one->cmd = tn->cmd;
	one->same_boot = tn->same_boot;
	one->p[0] = *p;
	one->np = 1;
	/* A visor's apps work under DIR/NAME: only those. */
	if ((rc = hw_tn_fmt(one->dir, sizeof(one->dir), "%s/%s", tn->dir,
			    p->name)) == 0)
		rc = hw_tn_stop(one, st);
	free(one);
	return rc;
}

/* Whether p runs now. */
static int is_alive(const struct hw_tn *tn, const struct hw_tn_proc *p)
{
	struct hw_tn_pinfo pi;

	return tn->same_boot && p->pid > 1 && !hw_tn_proc_stat(p->pid, &pi) &&
	       pi.start == p->start && pi.state != 'Z' && pi.state != 'X' &&
	       pi.state != 'x';
}

/* Stops p and starts it again; *r says what happened. */
static int restart_proc(struct hw_tn *tn, struct hw_tn_proc *p,
			const struct hw_tn_restart_opts *o,
			struct hw_tn_restarted *r)
{
	long long t0 = hw_tn_now_ms(), t1;
	char **envp = NULL;
	int rc;

	if (!p->argvlen || !tn->cwd[0]) {
		hw_tn_err(tn, "testnet restart: %s records no command for %s "
			  "(the testnet was started by an older hopwire); "
			  "restart the whole testnet: 'hopwire testnet down "
			  "--dir %s', then 'up'", tn->state_path, p->name,
			  tn->dir);
		return -ENOEXEC;
	}
	if ((rc = hw_tn_load_env(tn, &envp))) {
		hw_tn_err(tn, "testnet restart: cannot read %s/" HW_TN_ENV_FILE
			  " (the environment up ran with): %s", tn->dir,
			  hw_strerror(rc));
		return rc;
	}
	r->old_pid = p->pid;
	r->was_running = is_alive(tn, p);
	memcpy(r->killed, p->killed, sizeof(r->killed));
	if ((rc = stop_one(tn, p, &r->stop))) {
		hw_tn_err(tn, "testnet restart: cannot stop %s: %s", p->name,
			  hw_strerror(rc));
		goto out;
	}
	if (r->stop.left) {
		hw_tn_err(tn, "testnet restart: %s (pid %d) and what it "
			  "started: %zu processes are still there after "
			  "SIGKILL; it is not started again", p->name,
			  (int)p->pid, r->stop.left);
		rc = -EBUSY;
		goto out;
	}
	t1 = hw_tn_now_ms();
	r->stop_ms = t1 - t0;
	if ((rc = hw_tn_respawn(tn, p, envp)))
		goto out;
	p->restarts++;
	r->pid = p->pid;
	r->restarts = p->restarts;
	/* Recorded before it is waited for: whatever happens next, status
	 * and down see it. */
	if ((rc = hw_tn_save(tn))) {
		struct hw_tn_stopped again;
		hw_tn_err(tn, "testnet restart: cannot record %s's new pid %d "
			  "in %s: %s; stopping it again so that nothing runs "
			  "untracked", p->name, (int)p->pid, tn->state_path,
			  hw_strerror(rc));
		stop_one(tn, p, &again);
		goto out;
	}
	snprintf(r->ready, sizeof(r->ready), "%s",
		 hw_tn_check_proc_what(tn, p));
	rc = hw_tn_wait(tn, t1 + (long long)o->timeout_s * 1000,
			o->timeout_s, hw_tn_check_proc, p);
	r->start_ms = hw_tn_now_ms() - t1;
	r->total_ms = hw_tn_now_ms() - t0;
	if (rc && is_alive(tn, p))
		hw_tn_err(tn, "%s runs as pid %d (recorded in %s; 'hopwire "
			  "testnet down --dir %s' stops it)", p->name,
			  (int)p->pid, tn->state_path, tn->dir);
out:
	free(envp);
	return rc;
}

int hw_tn_restart(const struct hw_tn_restart_opts *o,
		  struct hw_tn_restarted *r)
{
	struct hw_tn *tn = calloc(1, sizeof(*tn));
	struct hw_tn_proc *p;
	int rc, lockfd = -1;

	memset(r, 0, sizeof(*r));
	if (!tn) {
		o->ops->msg(o->ops->ctx, "testnet restart: out of memory");
		return -ENOMEM;
	}
	tn->ops = o->ops;
	tn->cmd = "restart";
	tn->interrupted = o->interrupted;
	if ((rc = lockfd = hw_tn_open_locked(tn, o->dir)) < 0 ||
	    (rc = check_running(tn)))
		goto out;
	if (!(p = find_name(tn, o->name))) {
		rc = -ESRCH;
		goto out;
	}
	snprintf(r->name, sizeof(r->name), "%s", p->name);
	snprintf(r->log, sizeof(r->log), "%s", p->log);
	rc = restart_proc(tn, p, o, r);
out:
	if (lockfd >= 0)
		close(lockfd);
	free(tn);
	return rc < 0 ? rc : 0;
}

int hw_tn_kill(const char *dir, const char *name, int sig,
	       const struct hw_tn_ops *ops, struct hw_tn_killed *k)
{
	struct hw_tn *tn = calloc(1, sizeof(*tn));
	struct hw_tn_proc *p;
	int rc, lockfd = -1;
	long long t0;

	memset(k, 0, sizeof(*k));
	if (!tn) {
		ops->msg(ops->ctx, "testnet kill: out of memory");
		return -ENOMEM;
	}
	tn->ops = ops;
	tn->cmd = "kill";
	if ((rc = lockfd = hw_tn_open_locked(tn, dir)) < 0)
		goto out;
	if (!(p = find_name(tn, name))) {
		rc = -ESRCH;
		goto out;
	}
	snprintf(k->name, sizeof(k->name), "%s", p->name);
	snprintf(k->dir, sizeof(k->dir), "%s", tn->dir);
	hw_tn_signal_name(sig, k->signal);
	k->pid = p->pid;
	if (!is_alive(tn, p)) {
		char was[HW_TN_NAME_MAX + 32] = "is gone";
		if (p->killed[0])
			snprintf(was, sizeof(was), "was killed with %s",
				 p->killed);
		hw_tn_err(tn, "testnet kill: %s is not running (pid %d %s); "
			  "'hopwire testnet restart %s --dir %s' starts it "
			  "again", p->name, (int)p->pid, was, p->name,
			  tn->dir);
		rc = -ESRCH;
		goto out;
	}
	if (kill(p->pid, sig) < 0) {
		rc = -errno;
		hw_tn_err(tn, "testnet kill: %s (pid %d): %s", p->name,
			  (int)p->pid, hw_strerror(rc));
		goto out;
	}
	memcpy(p->killed, k->signal, sizeof(p->killed));
	p->killed_at = (long long)time(NULL);
	if ((rc = hw_tn_save(tn))) {
		hw_tn_err(tn, "testnet kill: sent %s to %s (pid %d) but cannot "
			  "record it in %s: %s", k->signal, p->name,
			  (int)p->pid, tn->state_path, hw_strerror(rc));
		goto out;
	}
	t0 = hw_tn_now_ms();
	while (ends_process(sig) && is_alive(tn, p) &&
	       hw_tn_now_ms() - t0 < HW_TN_KILL_WAIT_MS)
		hw_tn_sleep_ms(20);
	k->waited_ms = (int)(hw_tn_now_ms() - t0);
	k->ended = !is_alive(tn, p);
out:
	if (lockfd >= 0)
		close(lockfd);
	free(tn);
	return rc < 0 ? rc : 0;
}
