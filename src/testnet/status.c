/* hw_tn_status: what runs of a testnet and whether it answers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testnet/tn_priv.h"
#include "util/err.h"

/* What process p is: "running", "stopped" (by SIGSTOP), "killed" (by
 * 'testnet kill', and gone), "gone". */
static const char *run_state(const struct hw_tn *tn,
			     const struct hw_tn_snap *s,
			     const struct hw_tn_proc *p)
{
	struct hw_tn_pinfo pi;

	if (hw_tn_leader_alive(tn, s, p))
		return hw_tn_proc_stat(p->pid, &pi) == 0 &&
		       (pi.state == 'T' || pi.state == 't') ? "stopped" :
		       "running";
	return p->killed[0] ? "killed" : "gone";
}

/* The entry of status for process k: the fields of the state file (from
 * state, the testnet as JSON), then what was seen. Sets *bad when it does
 * not run or answer. NULL when out of memory. */
static json_t *proc_status(struct hw_tn *tn, const struct hw_tn_snap *s,
			   json_t *state, int k, pid_t copy, int *bad)
{
	struct hw_tn_proc *p = &tn->p[k];
	int alive = hw_tn_leader_alive(tn, s, p);
	json_t *answers = json_null(), *tps = NULL, *tps_up = NULL;
	json_t *chat = json_null(), *o, *r = NULL;
	char url[HW_TN_URL_MAX + 16], err[PATH_MAX + 256];

	if (!strcmp(p->role, "discovery")) {
		snprintf(url, sizeof(url), "%s/health", p->url);
		answers = json_boolean(hw_tn_http_get(tn, url) == 200);
	} else if (p->sock[0]) {
		int ok = !hw_tn_api_get(tn, p, "/v1/info", &r, err,
					sizeof(err));
		answers = json_boolean(ok);
		if (ok) {
			tps = json_incref(json_object_get(r, "transports"));
			tps_up = json_incref(json_object_get(r,
							     "transports_up"));
		}
		json_decref(r);
	}
	if (p->chat[0] && tn->chat_built) {
		snprintf(url, sizeof(url), "%s/info", p->chat);
		chat = json_boolean(hw_tn_http_get(tn, url) == 200);
	}
	*bad |= !alive || json_is_false(answers) || json_is_false(chat);
	o = json_deep_copy(json_array_get(json_object_get(state, "processes"),
					  (size_t)k));
	if (!o) {
		json_decref(answers);
		json_decref(tps);
		json_decref(tps_up);
		json_decref(chat);
		return NULL;
	}
	json_object_set_new(o, "alive", json_boolean(alive));
	json_object_set_new(o, "state", json_string(run_state(tn, s, p)));
	/* Started by hand with its command (what its log shows): not
	 * the testnet's, but down stops it and restart replaces it. */
	if (copy)
		json_object_set_new(o, "copy_pid", json_integer(copy));
	json_object_set_new(o, "answers", answers);
	json_object_set_new(o, "transports", tps ? tps : json_null());
	json_object_set_new(o, "transports_up", tps_up ? tps_up : json_null());
	json_object_set_new(o, "chat_answers", chat);
	return o;
}

/* Reads the state of dir into tn; tells why it cannot. */
static int load(struct hw_tn *tn, const char *dir)
{
	char err[PATH_MAX + 256];
	int rc = hw_tn_set_dir(tn, dir);

	if (!rc)
		rc = hw_tn_load(tn, err, sizeof(err));
	if (rc == -ENOENT || rc == -ENOTDIR) {
		hw_tn_err(tn, "no testnet in %s (start one with 'hopwire "
			  "testnet up --dir %s')", dir, dir);
		return -ENOENT;
	}
	if (rc)
		hw_tn_err(tn, "testnet status: %s: %s", tn->state_path[0] ?
			  tn->state_path : dir,
			  rc == -EINVAL ? err : hw_strerror(rc));
	return rc;
}

int hw_tn_status(const char *dir, const struct hw_tn_ops *ops, json_t **out)
{
	struct hw_tn_snap s = {0};
	json_t *res = NULL, *list = NULL, *state = NULL, *o;
	pid_t copies[HW_TN_MAX_PROCS];
	struct hw_tn *tn = NULL;
	int rc, bad = 0;

	*out = NULL;
	if (!(tn = calloc(1, sizeof(*tn)))) {
		ops->msg(ops->ctx, "testnet status: out of memory");
		return -ENOMEM;
	}
	tn->ops = ops;
	tn->cmd = "status";
	if ((rc = load(tn, dir)))
		goto done;
	if ((rc = hw_tn_snap_take(&s))) {
		hw_tn_err(tn, "testnet status: cannot read /proc: %s",
			  hw_strerror(rc));
		goto done;
	}
	hw_tn_copies(tn, &s, copies);
	rc = -ENOMEM;
	state = hw_tn_to_json(tn);
	res = json_pack("{s:s, s:s, s:I, s:i, s:b, s:[]}", "dir", tn->dir,
			"state", tn->phase, "created",
			(json_int_t)tn->created, "visors", tn->nvisors,
			"chat_built", tn->chat_built, "processes");
	list = json_object_get(res, "processes");
	if (!state || !list)
		goto done;
	for (int k = 0; k < tn->np; k++) {
		if (!(o = proc_status(tn, &s, state, k, copies[k], &bad)))
			goto done;
		json_array_append_new(list, o);
	}
	json_object_set_new(res, "ok", json_boolean(!bad));
	*out = res;
	res = NULL;
	rc = 0;
done:
	if (rc == -ENOMEM)
		hw_tn_err(tn, "testnet status: out of memory");
	hw_tn_snap_free(&s);
	json_decref(state);
	json_decref(res);
	free(tn);
	return rc;
}
