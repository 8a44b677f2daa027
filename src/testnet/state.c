/* The state of a testnet: DIR/testnet.json, written at every step of up
 * (and by restart and kill) so that a testnet whose up died half-way can
 * still be stopped, and read back (checked field by field: down signals
 * the process groups it names, restart runs the commands it records) by
 * status, restart, kill and down; DIR/testnet.env, the environment up
 * ran with; DIR/.testnet.lock while a command changes DIR. */
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

/* The recorded command of p as a list of strings; NULL when out of
 * memory (or an argument is not UTF-8). */
static json_t *argv_json(const struct hw_tn_proc *p)
{
	json_t *a = json_array();

	for (size_t off = 0; a && off < p->argvlen;
	     off += strlen(p->argv + off) + 1)
		if (json_array_append_new(a, json_string(p->argv + off))) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

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
	if (tn->cwd[0] &&
	    json_object_set_new(root, "cwd", json_string(tn->cwd))) {
		json_decref(root);
		return NULL;
	}
	for (int k = 0; k < tn->np; k++) {
		const struct hw_tn_proc *p = &tn->p[k];
		json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:I, s:s, s:I, "
				      "s:i}", "name", p->name, "role",
				      p->role, "pid", (int)p->pid, "pgid",
				      (int)p->pid, "start_ticks",
				      (json_int_t)p->start, "log", p->log,
				      "started", (json_int_t)p->started,
				      "restarts", p->restarts);
		if (!o || (p->argvlen && json_object_set_new(o, "argv",
							     argv_json(p)))) {
			json_decref(o);
			json_decref(root);
			return NULL;
		}
		if (p->killed[0]) {
			json_object_set_new(o, "killed",
					    json_string(p->killed));
			json_object_set_new(o, "killed_at",
					    json_integer(p->killed_at));
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

/* o[key], when there, into *out: an integer of 0 or more. */
static int state_count(json_t *o, const char *key, long long *out, size_t i,
		       char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	*out = 0;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return bad_state(err, errlen, "processes[%zu].%s: must be a "
				 "number of 0 or more", i, key);
	*out = json_integer_value(v);
	return 0;
}

/* o["argv"], when there, into p: 1 to HW_TN_ARGC_MAX strings, the first
 * a program's absolute path, restart runs it. */
static int state_argv(struct hw_tn_proc *p, json_t *o, size_t i, char *err,
		      size_t errlen)
{
	json_t *a = json_object_get(o, "argv"), *v;
	size_t k;

	p->argvlen = 0;
	if (!a)
		return 0;
	if (!json_is_array(a) || !json_array_size(a) ||
	    json_array_size(a) > HW_TN_ARGC_MAX)
		return bad_state(err, errlen, "processes[%zu].argv: must be a "
				 "list of 1 to %d strings", i, HW_TN_ARGC_MAX);
	json_array_foreach(a, k, v) {
		size_t len = json_string_length(v);
		if (!json_is_string(v) ||
		    strlen(json_string_value(v)) != len ||
		    len + 1 > sizeof(p->argv) - p->argvlen ||
		    (k == 0 && json_string_value(v)[0] != '/'))
			return bad_state(err, errlen,
					 "processes[%zu].argv[%zu]: must be "
					 "%s without NUL bytes, all of them "
					 "at most %zu bytes", i, k,
					 k ? "a string" :
					 "a program's absolute path",
					 sizeof(p->argv));
		memcpy(p->argv + p->argvlen, json_string_value(v), len + 1);
		p->argvlen += len + 1;
	}
	return 0;
}

/* Process i of the state file, o, into p: every field checked, since
 * down signals the process groups it names and restart runs its
 * command. */
static int proc_from_json(struct hw_tn_proc *p, json_t *o, size_t i,
			  char *err, size_t errlen)
{
	static const char *const roles[] = {"discovery", "relay", "setup",
					    "visor", NULL};
	json_int_t pid, pgid;
	long long restarts;
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
			    err, errlen)) ||
	    (rc = state_str(o, "killed", p->killed, sizeof(p->killed), 0, i,
			    err, errlen)) ||
	    (rc = state_count(o, "killed_at", &p->killed_at, i, err,
			      errlen)) ||
	    (rc = state_count(o, "started", &p->started, i, err, errlen)) ||
	    (rc = state_count(o, "restarts", &restarts, i, err, errlen)) ||
	    (rc = state_argv(p, o, i, err, errlen)))
		return rc;
	if (restarts > INT_MAX)
		return bad_state(err, errlen, "processes[%zu].restarts: too "
				 "large", i);
	p->restarts = (int)restarts;
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
	o = json_object_get(root, "cwd");
	tn->cwd[0] = '\0';
	if (o && (!json_is_string(o) || json_string_value(o)[0] != '/' ||
		  json_string_length(o) >= sizeof(tn->cwd)))
		return bad_state(err, errlen, "cwd: must be an absolute path");
	if (o)
		snprintf(tn->cwd, sizeof(tn->cwd), "%s", json_string_value(o));
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

void hw_tn_lock_failed(const struct hw_tn *tn, int rc)
{
	if (rc == -EAGAIN)
		hw_tn_err(tn, "testnet %s: another 'hopwire testnet' command "
			  "is working on %s right now", tn->cmd, tn->dir);
	else
		hw_tn_err(tn, "testnet %s: %s/%s: %s", tn->cmd, tn->dir,
			  HW_TN_LOCK_FILE, hw_strerror(rc));
}

int hw_tn_open_locked(struct hw_tn *tn, const char *dir)
{
	char err[1024];
	int rc = hw_tn_set_dir(tn, dir), lockfd;

	if (rc == -ENOENT || rc == -ENOTDIR ||
	    (!rc && access(tn->state_path, F_OK) < 0 && errno == ENOENT)) {
		hw_tn_err(tn, "no testnet in %s", dir);
		return -ENOENT;
	}
	if (rc) {
		hw_tn_err(tn, "testnet %s: --dir %s: %s", tn->cmd, dir,
			  hw_strerror(rc));
		return rc;
	}
	if ((lockfd = hw_tn_lock(tn)) < 0) {
		hw_tn_lock_failed(tn, lockfd);
		return lockfd;
	}
	if ((rc = hw_tn_load(tn, err, sizeof(err)))) {
		if (rc == -ENOENT)
			hw_tn_err(tn, "no testnet in %s", dir);
		else
			hw_tn_err(tn, "testnet %s: %s: %s", tn->cmd,
				  tn->state_path,
				  rc == -EINVAL ? err : hw_strerror(rc));
		close(lockfd);
		return rc;
	}
	return lockfd;
}

static int env_path(const struct hw_tn *tn, char out[PATH_MAX])
{
	return hw_tn_fmt(out, PATH_MAX, "%s/%s", tn->dir, HW_TN_ENV_FILE);
}

int hw_tn_save_env(const struct hw_tn *tn)
{
	extern char **environ;
	char path[PATH_MAX], *buf;
	size_t len = 0, off = 0;
	int rc;

	if ((rc = env_path(tn, path)))
		return rc;
	for (char **e = environ; *e; e++)
		len += strlen(*e) + 1;
	if (len > HW_TN_ENV_MAX)
		return -E2BIG;
	if (!(buf = malloc(len + 1)))
		return -ENOMEM;
	for (char **e = environ; *e; e++) {
		size_t n = strlen(*e) + 1;
		memcpy(buf + off, *e, n);
		off += n;
	}
	rc = hw_tn_write_atomic_n(path, buf, len, 0600);
	free(buf);
	return rc;
}

int hw_tn_load_env(const struct hw_tn *tn, char ***envp)
{
	char path[PATH_MAX], *data, **list;
	size_t n = 0, k = 0;
	struct stat st;
	ssize_t got;
	int fd, rc;

	*envp = NULL;
	if ((rc = env_path(tn, path)))
		return rc;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	else if (st.st_size > HW_TN_ENV_MAX)
		rc = -EFBIG;
	if (rc) {
		close(fd);
		return rc;
	}
	/* The list's pointers (at most one per byte, and its NULL) first,
	 * then the strings, in one allocation. */
	list = malloc(((size_t)st.st_size + 1) * sizeof(char *) +
		      (size_t)st.st_size + 1);
	if (!list) {
		close(fd);
		return -ENOMEM;
	}
	data = (char *)(list + st.st_size + 1);
	got = read(fd, data, (size_t)st.st_size);
	close(fd);
	if (got != (ssize_t)st.st_size) {
		free(list);
		return got < 0 ? -errno : -EIO;
	}
	data[got] = '\0';
	while ((ssize_t)n < got) {
		list[k++] = data + n;
		n += strlen(data + n) + 1;
	}
	list[k] = NULL;
	*envp = list;
	return 0;
}

void hw_tn_forget_env(const struct hw_tn *tn)
{
	char path[PATH_MAX];

	if (!env_path(tn, path))
		unlink(path);
}

struct hw_tn_proc *hw_tn_role(struct hw_tn *tn, const char *role)
{
	for (int k = 0; k < tn->np; k++)
		if (!strcmp(tn->p[k].role, role))
			return &tn->p[k];
	return NULL;
}
