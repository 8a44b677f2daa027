/* hw_tn_down: stopping a testnet, its state file gone after. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testnet/tn_priv.h"
#include "util/err.h"

/* Finds, locks and reads the testnet of dir; tells why it cannot.
 * Returns the lock's descriptor or a negative code. */
static int open_locked(struct hw_tn *tn, const char *dir)
{
	char err[1024];
	int rc = hw_tn_set_dir(tn, dir), lockfd;

	if (rc == -ENOENT || rc == -ENOTDIR ||
	    (!rc && access(tn->state_path, F_OK) < 0 && errno == ENOENT)) {
		hw_tn_err(tn, "no testnet in %s", dir);
		return -ENOENT;
	}
	if (rc) {
		hw_tn_err(tn, "testnet down: --dir %s: %s", dir,
			  hw_strerror(rc));
		return rc;
	}
	if ((lockfd = hw_tn_lock(tn)) < 0) {
		hw_tn_lock_failed(tn, "down", lockfd);
		return lockfd;
	}
	if ((rc = hw_tn_load(tn, err, sizeof(err)))) {
		if (rc == -ENOENT)
			hw_tn_err(tn, "no testnet in %s", dir);
		else
			hw_tn_err(tn, "testnet down: %s: %s", tn->state_path,
				  rc == -EINVAL ? err : hw_strerror(rc));
		close(lockfd);
		return rc;
	}
	return lockfd;
}

int hw_tn_down(const char *dir, const struct hw_tn_ops *ops,
	       struct hw_tn_stopped *st)
{
	struct hw_tn *tn = calloc(1, sizeof(*tn));
	int rc, lockfd = -1;

	memset(st, 0, sizeof(*st));
	if (!tn) {
		ops->msg(ops->ctx, "testnet down: out of memory");
		return -ENOMEM;
	}
	tn->ops = ops;
	if ((rc = lockfd = open_locked(tn, dir)) < 0)
		goto out;
	if ((rc = hw_tn_stop(tn, st))) {
		hw_tn_err(tn, "testnet down: cannot read /proc: %s",
			  hw_strerror(rc));
		goto out;
	}
	st->nprocs = tn->np;
	snprintf(st->dir, sizeof(st->dir), "%s", tn->dir);
	if (st->left) {
		hw_tn_err(tn, "testnet down: %zu processes are still there "
			  "after SIGKILL; %s is kept", st->left,
			  tn->state_path);
		rc = -EBUSY;
		goto out;
	}
	if (unlink(tn->state_path) < 0 && errno != ENOENT) {
		rc = -errno;
		hw_tn_err(tn, "testnet down: cannot remove %s: %s",
			  tn->state_path, strerror(-rc));
		goto out;
	}
	rc = 0;
out:
	if (lockfd >= 0)
		close(lockfd);
	free(tn);
	return rc;
}
