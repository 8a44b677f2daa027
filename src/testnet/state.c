/* The state of a testnet: DIR/testnet.json, written at every step of up
 * so that a testnet whose up died half-way can still be stopped, and read
 * back (checked field by field: down signals the process groups it names)
 * by status and down; DIR/.testnet.lock while up or down works on DIR. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testnet/tn_priv.h"
#include "util/err.h"

json_t *hw_tn_to_json(const struct hw_tn *tn)
{
	json_t *root, *list;

	root = json_pack("{s:i, s:s, s:s, s:I, s:s, s:i, s:b, s:[]}",
			 "version", 1, "dir", tn->dir, "boot_id", tn->boot_id,
			 "created", (json_int_t)tn->created, "state",
			 tn->phase, "visors", tn->nvisors, "chat_built",
			 tn->chat_built, "processes");
	if (!root)
		return NULL;
	list = json_object_get(root, "processes");
	for (int k = 0; k < tn->np; k++) {
		const struct hw_tn_proc *p = &tn->p[k];
		json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:I, s:s}", "name",
				      p->name, "role", p->role, "pid",
				      (int)p->pid, "pgid", (int)p->pid,
				      "start_ticks", (json_int_t)p->start,
				      "log", p->log);
		if (!o) {
			json_decref(root);
			return NULL;
		}
		if (p->pk[0])
			json_object_set_new(o, "pk", json_string(p->pk));
		if (p->sock[0])
			json_object_set_new(o, "control_socket",
					    json_string(p->sock));
		if (p->addr[0])
			json_object_set_new(o, "addr", json_string(p->addr));
		if (p->url[0])
			json_object_set_new(o, "url", json_string(p->url));
		if (p->chat[0])
			json_object_set_new(o, "chat_url",
					    json_string(p->chat));
		if (p->config[0])
			json_object_set_new(o, "config",
					    json_string(p->config));
		json_array_append_new(list, o);
	}
	return root;
}

int hw_tn_save(const struct hw_tn *tn)
{
	json_t *j = hw_tn_to_json(tn);
	char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	int rc;

	json_decref(j);
	if (!text)
		return -ENOMEM;
	rc = hw_tn_write_atomic(tn->state_path, text, 0600);
	free(text);
	return rc;
}

static int bad_state(char *err, size_t errlen, const char *fmt_, ...)
	__attribute__((format(printf, 3, 4)));

static int bad_state(char *err, size_t errlen, const char *fmt_, ...)
{
	va_list ap;

	va_start(ap, fmt_);
	vsnprintf(err, errlen, fmt_, ap);
	va_end(ap);
	return -EINVAL;
}

/* Copies the string o[key] into out (cap bytes); absent is "" unless
 * required. */
static int state_str(json_t *o, const char *key, char *out, size_t cap,
		     int required, size_t idx, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	out[0] = '\0';
	if (!v && !required)
		return 0;
	if (!json_is_string(v) || (required && !json_string_length(v)) ||
	    json_string_length(v) >= cap ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return bad_state(err, errlen,
				 "processes[%zu].%s: must be a string of 1 "
				 "to %zu characters", idx, key, cap - 1);
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

/* Process i of the state file, o, into p: every field checked, since
 * down signals the process groups it names. */
static int proc_from_json(struct hw_tn_proc *p, json_t *o, size_t i,
			  char *err, size_t errlen)
{
	static const char *const roles[] = {"discovery", "relay", "setup",
					    "visor", NULL};
	json_int_t pid, pgid;
	int known = 0, rc;
	json_t *v;

	memset(p, 0, sizeof(*p));
	if (!json_is_object(o))
		return bad_state(err, errlen, "processes[%zu]: must be an "
				 "object", i);
	if ((rc = state_str(o, "name", p->name, sizeof(p->name), 1, i, err,
			    errlen)) ||
	    (rc = state_str(o, "role", p->role, sizeof(p->role), 1, i, err,
			    errlen)) ||
	    (rc = state_str(o, "log", p->log, sizeof(p->log), 1, i, err,
			    errlen)) ||
	    (rc = state_str(o, "pk", p->pk, sizeof(p->pk), 0, i, err,
			    errlen)) ||
	    (rc = state_str(o, "control_socket", p->sock, sizeof(p->sock), 0,
			    i, err, errlen)) ||
	    (rc = state_str(o, "addr", p->addr, sizeof(p->addr), 0, i, err,
			    errlen)) ||
	    (rc = state_str(o, "url", p->url, sizeof(p->url), 0, i, err,
			    errlen)) ||
	    (rc = state_str(o, "chat_url", p->chat, sizeof(p->chat), 0, i,
			    err, errlen)) ||
	    (rc = state_str(o, "config", p->config, sizeof(p->config), 0, i,
			    err, errlen)))
		return rc;
	for (int r = 0; roles[r]; r++)
		known |= !strcmp(p->role, roles[r]);
	if (!known)
		return bad_state(err, errlen, "processes[%zu].role: '%s' is "
				 "not discovery, relay, setup or visor", i,
				 p->role);
	pid = json_integer_value(v = json_object_get(o, "pid"));
	if (!json_is_integer(v) || pid <= 1 || pid > INT_MAX)
		return bad_state(err, errlen, "processes[%zu].pid: must be a "
				 "process ID above 1", i);
	pgid = json_integer_value(v = json_object_get(o, "pgid"));
	/* Every process of a testnet leads its own group; anything else
	 * would have down signal somebody else's. */
	if (!json_is_integer(v) || pgid != pid)
		return bad_state(err, errlen, "processes[%zu].pgid: must equal "
				 "pid (%lld)", i, (long long)pid);
	v = json_object_get(o, "start_ticks");
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return bad_state(err, errlen, "processes[%zu].start_ticks: "
				 "must be a number of clock ticks", i);
	p->pid = (pid_t)pid;
	p->start = (unsigned long long)json_integer_value(v);
	return 0;
}

static int tn_from_json(struct hw_tn *tn, json_t *root, char *err,
			size_t errlen)
{
	json_t *list = json_object_get(root, "processes"), *o;
	char boot[64];
	size_t i;
	int rc;

	if (!json_is_object(root) ||
	    json_integer_value(json_object_get(root, "version")) != 1)
		return bad_state(err, errlen, "version: must be 1");
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > HW_TN_MAX_PROCS)
		return bad_state(err, errlen, "processes: must be a list of 1 "
				 "to %d entries", HW_TN_MAX_PROCS);
	snprintf(tn->boot_id, sizeof(tn->boot_id), "%s",
		 hw_tn_jstr(root, "boot_id"));
	hw_tn_boot_id(boot);
	tn->same_boot = !strcmp(boot, tn->boot_id);
	tn->created = json_integer_value(json_object_get(root, "created"));
	snprintf(tn->phase, sizeof(tn->phase), "%s",
		 hw_tn_jstr(root, "state"));
	tn->chat_built = json_is_true(json_object_get(root, "chat_built"));
	tn->np = 0;
	tn->nvisors = 0;
	json_array_foreach(list, i, o) {
		if ((rc = proc_from_json(&tn->p[tn->np], o, i, err, errlen)))
			return rc;
		tn->nvisors += !strcmp(tn->p[tn->np].role, "visor");
		tn->np++;
	}
	return 0;
}

int hw_tn_load(struct hw_tn *tn, char *err, size_t errlen)
{
	json_error_t jerr;
	struct stat st;
	json_t *root;
	int rc;

	if (stat(tn->state_path, &st) < 0)
		return -errno;
	if (st.st_size > HW_TN_STATE_MAX)
		return bad_state(err, errlen, "larger than %d bytes",
				 HW_TN_STATE_MAX);
	if (!(root = json_load_file(tn->state_path, JSON_REJECT_DUPLICATES,
				    &jerr)))
		return bad_state(err, errlen, "line %d: %s", jerr.line,
				 jerr.text);
	rc = tn_from_json(tn, root, err, errlen);
	json_decref(root);
	return rc;
}

int hw_tn_set_dir(struct hw_tn *tn, const char *dir)
{
	if (!realpath(dir, tn->dir))
		return -errno;
	return hw_tn_fmt(tn->state_path, sizeof(tn->state_path), "%s/%s",
			 tn->dir, HW_TN_STATE_FILE);
}

int hw_tn_lock(const struct hw_tn *tn)
{
	char path[PATH_MAX];
	int fd;

	if (hw_tn_fmt(path, sizeof(path), "%s/%s", tn->dir, HW_TN_LOCK_FILE))
		return -ENAMETOOLONG;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		return e == EWOULDBLOCK ? -EAGAIN : -e;
	}
	return fd;
}

void hw_tn_lock_failed(const struct hw_tn *tn, const char *cmd, int rc)
{
	if (rc == -EAGAIN)
		hw_tn_err(tn, "testnet %s: another 'hopwire testnet' command "
			  "is working on %s right now", cmd, tn->dir);
	else
		hw_tn_err(tn, "testnet %s: %s/%s: %s", cmd, tn->dir,
			  HW_TN_LOCK_FILE, hw_strerror(rc));
}

struct hw_tn_proc *hw_tn_role(struct hw_tn *tn, const char *role)
{
	for (int k = 0; k < tn->np; k++)
		if (!strcmp(tn->p[k].role, role))
			return &tn->p[k];
	return NULL;
}
