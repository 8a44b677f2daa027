/* hw_tn_up: starting a testnet. The programs are found first (nothing
 * starts when one is missing), then DIR is made and locked, a testnet
 * still running there is refused, the layout is planned, and the parts
 * are started in order, each waited for: discovery; the relay and the
 * setup node; the visors, their line of transports, their chat apps. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testnet/tn_priv.h"
#include "util/err.h"

enum { BIN_DISCOVERY, BIN_RELAY, BIN_SETUP, BIN_VISOR, NBINS };

struct up {
	struct hw_tn *tn;
	char bins[NBINS][PATH_MAX];
	long long deadline;
	int timeout_s;
};

static int wait_for(struct up *u, hw_tn_check_fn check, void *arg)
{
	return hw_tn_wait(u->tn, u->deadline, u->timeout_s, check, arg);
}

static int start_discovery(struct up *u)
{
	struct hw_tn *tn = u->tn;
	struct hw_tn_proc *disc = &tn->p[0];
	char store[PATH_MAX + 16];
	int rc;

	if ((rc = hw_tn_fmt(store, sizeof(store), "sqlite:%s/discovery.db",
			    tn->dir)))
		return rc;
	char *argv[] = {u->bins[BIN_DISCOVERY], "--listen", disc->addr,
			"--store", store, NULL};
	if ((rc = hw_tn_spawn(tn, disc, argv)))
		return rc;
	/* Recorded from the first process on: a testnet whose up dies
	 * half-way can still be stopped with down. */
	if ((rc = hw_tn_save(tn)))
		return rc;
	return wait_for(u, hw_tn_check_discovery, NULL);
}

static int start_relay_setup(struct up *u)
{
	struct hw_tn *tn = u->tn;
	struct hw_tn_proc *disc = &tn->p[0], *relay = &tn->p[1],
			  *setup = &tn->p[2];
	char key[PATH_MAX], dir[PATH_MAX];
	int rc;

	if ((rc = hw_tn_fmt(key, sizeof(key), "%s/relay/relay.key",
			    tn->dir)) ||
	    (rc = hw_tn_fmt(dir, sizeof(dir), "%s/relay", tn->dir)))
		return rc;
	{
		char *argv[] = {u->bins[BIN_RELAY], "--key", key, "--listen",
				relay->addr, "--discovery", disc->url,
				"--state-dir", dir, NULL};
		if ((rc = hw_tn_spawn(tn, relay, argv)))
			return rc;
	}
	if ((rc = hw_tn_fmt(key, sizeof(key), "%s/setup/setup.key",
			    tn->dir)) ||
	    (rc = hw_tn_fmt(dir, sizeof(dir), "%s/setup", tn->dir)))
		return rc;
	{
		char *argv[] = {u->bins[BIN_SETUP], "--key", key,
				"--discovery", disc->url, "--tcp-listen",
				setup->addr, "--dir", dir, NULL};
		if ((rc = hw_tn_spawn(tn, setup, argv)))
			return rc;
	}
	/* Visors pick their relays from discovery when they start. */
	if ((rc = hw_tn_save(tn)))
		return rc;
	return wait_for(u, hw_tn_check_relay_setup, NULL);
}

static int start_visors(struct up *u)
{
	struct hw_tn *tn = u->tn;
	struct hw_tn_line line;
	int rc;

	memset(&line, 0, sizeof(line));
	for (int k = 0; k < tn->nvisors; k++)
		if ((rc = hw_tn_write_visor_config(tn, k, tn->p[2].pk,
						   tn->p[0].url)))
			return rc;
	for (int k = 0; k < tn->nvisors; k++) {
		struct hw_tn_proc *v = &tn->p[3 + k];
		char *argv[] = {u->bins[BIN_VISOR], "--config", v->config,
				NULL};
		if ((rc = hw_tn_spawn(tn, v, argv)))
			return rc;
	}
	if ((rc = hw_tn_save(tn)) ||
	    (rc = wait_for(u, hw_tn_check_visors, NULL)) ||
	    (rc = wait_for(u, hw_tn_check_line, &line)) ||
	    (rc = wait_for(u, hw_tn_check_line_registered, &line)))
		return rc;
	if (tn->chat_built && (rc = wait_for(u, hw_tn_check_chat, NULL)))
		return rc;
	return 0;
}

/* Starts the processes and waits for each part. Returns 0 when the whole
 * network is up. */
static int up_run(struct up *u)
{
	int rc;

	u->deadline = hw_tn_now_ms() + (long long)u->timeout_s * 1000;
	/* Interrupted while planning: nothing is started. */
	if (u->tn->interrupted && *u->tn->interrupted) {
		hw_tn_err(u->tn, "testnet up: interrupted");
		return -EINTR;
	}
	if ((rc = hw_tn_save_env(u->tn))) {
		hw_tn_err(u->tn, "testnet up: cannot write %s/" HW_TN_ENV_FILE
			  ": %s", u->tn->dir, hw_strerror(rc));
		return rc;
	}
	if ((rc = start_discovery(u)) || (rc = start_relay_setup(u)) ||
	    (rc = start_visors(u)))
		return rc;
	snprintf(u->tn->phase, sizeof(u->tn->phase), "up");
	return hw_tn_save(u->tn);
}

/* Every program, beside the running executable or in PATH. */
static int find_programs(struct up *u)
{
	static const char *const progs[NBINS] = {
		"hopwire-discovery", "hopwire-relay", "hopwire-setup",
		"hopwire-visor"};
	struct hw_tn *tn = u->tn;
	char self[PATH_MAX], chat[PATH_MAX];
	int rc;

	if ((rc = hw_tn_self_dir(self))) {
		hw_tn_err(tn, "testnet up: cannot find where hopwire is "
			  "(/proc/self/exe): %s", hw_strerror(rc));
		return rc;
	}
	for (int i = 0; i < NBINS; i++)
		if ((rc = hw_tn_find_bin(self, progs[i], u->bins[i]))) {
			hw_tn_err(tn, "testnet up: %s not found: not beside "
				  "%s/hopwire nor in PATH (build it: make)",
				  progs[i], self);
			return rc;
		}
	tn->chat_built = !hw_tn_fmt(chat, sizeof(chat), "%s/" HW_TN_CHAT_BIN,
				    self) &&
			 access(chat, X_OK) == 0;
	if (!tn->chat_built) {
		/* The visors look their apps up beside hopwire-visor. */
		hw_tn_err(tn, "testnet up: " HW_TN_CHAT_BIN " not found beside "
			  "%s/hopwire (build it: make)", self);
		return -ENOENT;
	}
	return 0;
}

/* Makes dir (0700), checks the sockets under it fit, and locks it.
 * Returns the lock's descriptor or a negative code. */
static int make_dir(struct hw_tn *tn, const char *dir)
{
	char made[PATH_MAX];
	int rc, lockfd;

	hw_tn_first_missing(dir, made);
	if ((rc = hw_tn_mkdir_p(dir))) {
		hw_tn_err(tn, "testnet up: --dir %s: cannot create it: %s",
			  dir, hw_strerror(rc));
		return rc;
	}
	if ((rc = hw_tn_set_dir(tn, dir))) {
		hw_tn_err(tn, "testnet up: --dir %s: %s", dir,
			  hw_strerror(rc));
		return rc;
	}
	if (strlen(tn->dir) + strlen(HW_TN_LONGEST_SOCKET) >
	    HW_TN_SUN_PATH_MAX) {
		hw_tn_err(tn, "testnet up: --dir %s: path too long: %s is %zu "
			  "bytes, and the UNIX sockets under it (the longest "
			  "is DIR" HW_TN_LONGEST_SOCKET ") must fit in %zu; "
			  "use a folder of at most %zu bytes", dir, tn->dir,
			  strlen(tn->dir), HW_TN_SUN_PATH_MAX,
			  HW_TN_SUN_PATH_MAX - strlen(HW_TN_LONGEST_SOCKET));
		hw_tn_remove_made(dir, made);
		return -ENAMETOOLONG;
	}
	if ((lockfd = hw_tn_lock(tn)) < 0)
		hw_tn_lock_failed(tn, lockfd);
	return lockfd;
}

/* A testnet of this folder that still runs is refused; one whose
 * processes are all gone is replaced. */
static int check_old(struct hw_tn *tn)
{
	struct hw_tn *old = calloc(1, sizeof(*old));
	struct hw_tn_snap s = {0};
	char err[1024];
	size_t n = 0;
	int rc;

	if (!old) {
		hw_tn_err(tn, "testnet up: out of memory");
		return -ENOMEM;
	}
	memcpy(old->dir, tn->dir, sizeof(old->dir));
	memcpy(old->state_path, tn->state_path, sizeof(old->state_path));
	old->ops = tn->ops;
	rc = hw_tn_load(old, err, sizeof(err));
	if (rc == -ENOENT) {
		rc = 0;
	} else if (rc) {
		hw_tn_err(tn, "testnet up: %s: %s (remove it if no testnet "
			  "runs in %s)", tn->state_path,
			  rc == -EINVAL ? err : hw_strerror(rc), tn->dir);
	} else if ((rc = hw_tn_snap_take(&s))) {
		hw_tn_err(tn, "testnet up: cannot read /proc: %s",
			  hw_strerror(rc));
	} else if ((n = hw_tn_mark(old, &s, NULL))) {
		hw_tn_err(tn, "testnet up: a testnet is already running in %s "
			  "(%zu processes; see 'hopwire testnet status --dir "
			  "%s', stop it with 'hopwire testnet down --dir %s')",
			  tn->dir, n, tn->dir, tn->dir);
		rc = -EEXIST;
	} else {
		hw_tn_err(tn, "%s is left from a testnet that no longer runs: "
			  "replacing it", tn->state_path);
	}
	hw_tn_snap_free(&s);
	free(old);
	return rc;
}

/* After a failed start: stops what was started, and forgets it when
 * everything stopped. */
static void undo(struct hw_tn *tn)
{
	struct hw_tn_stopped st;
	int any = 0;

	for (int k = 0; k < tn->np; k++)
		any |= tn->p[k].pid > 1;
	if (!any) {
		hw_tn_forget_env(tn);
		return;
	}
	hw_tn_err(tn, "stopping what testnet up started");
	if (hw_tn_stop(tn, &st) == 0 && st.left) {
		hw_tn_err(tn, "%zu processes did not stop; see %s", st.left,
			  tn->state_path);
	} else {
		unlink(tn->state_path);
		hw_tn_forget_env(tn);
	}
}

int hw_tn_up(const struct hw_tn_up_opts *o, struct hw_tn **out)
{
	struct up u = {.timeout_s = o->timeout_s};
	char path[PATH_MAX];
	int lockfd = -1, rc;

	*out = NULL;
	if (!(u.tn = calloc(1, sizeof(*u.tn)))) {
		o->ops->msg(o->ops->ctx, "testnet up: out of memory");
		return -ENOMEM;
	}
	u.tn->ops = o->ops;
	u.tn->interrupted = o->interrupted;
	u.tn->cmd = "up";
	if ((rc = find_programs(&u)) ||
	    (rc = lockfd = make_dir(u.tn, o->dir)) < 0 ||
	    (rc = check_old(u.tn)))
		goto out;
	if ((rc = hw_tn_fmt(path, sizeof(path), "%s/logs", u.tn->dir)) ||
	    (rc = hw_tn_mkdir_p(path))) {
		hw_tn_err(u.tn, "testnet up: cannot create %s: %s", path,
			  hw_strerror(rc));
		goto out;
	}
	/* What restart needs to start a process again as up did. */
	if (!getcwd(u.tn->cwd, sizeof(u.tn->cwd))) {
		rc = -errno;
		hw_tn_err(u.tn, "testnet up: cannot tell the working folder: "
			  "%s", hw_strerror(rc));
		goto out;
	}
	hw_tn_boot_id(u.tn->boot_id);
	u.tn->same_boot = 1;
	u.tn->created = (long long)time(NULL);
	u.tn->nvisors = o->nvisors;
	snprintf(u.tn->phase, sizeof(u.tn->phase), "starting");
	if ((rc = hw_tn_plan(u.tn)))
		goto out;
	if ((rc = up_run(&u))) {
		undo(u.tn);
		goto out;
	}
	*out = u.tn;
	u.tn = NULL;
out:
	if (lockfd >= 0)
		close(lockfd);
	free(u.tn);
	return rc < 0 ? rc : 0;
}
