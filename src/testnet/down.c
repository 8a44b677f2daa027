/* hw_tn_down: stopping a testnet, its state file gone after. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testnet/tn_priv.h"
#include "util/err.h"

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
	tn->cmd = "down";
	if ((rc = lockfd = hw_tn_open_locked(tn, dir)) < 0)
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
	hw_tn_forget_env(tn);
	rc = 0;
out:
	if (lockfd >= 0)
		close(lockfd);
	free(tn);
	return rc;
}
