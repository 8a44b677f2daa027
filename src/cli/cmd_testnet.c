/* hopwire testnet up|status|down: a whole Hopwire network on loopback, for
 * trying things out and for the end-to-end tests. `up` starts discovery
 * (SQLite), a relay, a setup node and N visors linked in a line, each as a
 * daemon in its own session and process group, waits until the network
 * works and records it in DIR/testnet.json; `status` checks it; `down`
 * stops every process of it, the apps the visors started included, and
 * keeps keys, configs and logs. Visors are asked things only through their
 * control API. */
#define _GNU_SOURCE /* pipe2, close_range */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli/api_client.h"
#include "cli/cli.h"
#include "crypto/identity.h"
#include "util/buf.h"
#include "util/err.h"
#include "visor/config.h"

#define TN_DEFAULT_DIR "./testnet"
#define TN_DEFAULT_VISORS 4
#define TN_MIN_VISORS 2
#define TN_MAX_VISORS 16
#define TN_MAX_PROCS (3 + TN_MAX_VISORS)
#define TN_DEFAULT_TIMEOUT_S 60
#define TN_MAX_TIMEOUT_S 3600
/* down: SIGTERM, this long for everything to end, then SIGKILL. */
#define TN_GRACE_MS 10000
#define TN_KILL_WAIT_MS 3000
#define TN_POLL_MS 100
#define TN_STATE_FILE "testnet.json"
#define TN_LOCK_FILE ".testnet.lock"
#define TN_STATE_MAX (1024 * 1024)
#define TN_HTTP_MAX (1024 * 1024)
#define TN_API_TIMEOUT_MS 2000
#define TN_HTTP_TIMEOUT_MS 1000
/* The longest socket a testnet puts in DIR: DIR/setup/streams.sock. */
#define TN_LONGEST_SOCKET "/setup/streams.sock"
#define TN_SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
/* A persistent transport is re-dialed at most this far apart, so a
 * testnet heals quickly when one of its visors is restarted. */
#define TN_REDIAL_MAX_MS 5000
/* How many hops `hopwire route find` allows unless told (cmd_route.c). */
#define TN_ROUTE_FIND_HOPS 8
#define TN_CHAT_BIN "hopwire-chat"
#define TN_CHAT_PORT 1
#define TN_HELLO_PORT 10
/* The launcher gives every app this variable (visor/launcher.h): how the
 * apps of a visor that is gone are still told apart. */
#define TN_APP_ENV "HOPWIRE_APP_FD="

#define TN_NAME_MAX 16
#define TN_ADDR_MAX 64
#define TN_URL_MAX 96

struct tn_proc {
	char name[TN_NAME_MAX];
	char role[TN_NAME_MAX]; /* discovery, relay, setup, visor */
	pid_t pid;              /* also its process group: setsid */
	/* Start time in clock ticks after boot: tells our process from a
	 * later one that got the same pid. */
	unsigned long long start;
	char pk[HW_PK_HEXLEN + 1];
	char sock[PATH_MAX];     /* control socket (setup, visors) */
	char addr[TN_ADDR_MAX];  /* TCP listen address */
	char url[TN_URL_MAX];    /* discovery: its URL */
	char chat[TN_URL_MAX];   /* visors: the chat app's HTTP URL */
	char log[PATH_MAX];
	char config[PATH_MAX];   /* visors */
	int reaped;              /* up: exited and waited for */
};

struct tn {
	char dir[PATH_MAX];
	char state_path[PATH_MAX];
	char boot_id[64];
	int same_boot; /* the state was written since this machine booted */
	long long created;
	char phase[TN_NAME_MAX]; /* starting, up */
	int nvisors;
	int chat_built;
	struct tn_proc p[TN_MAX_PROCS];
	int np;
};

/* A process as /proc shows it. */
struct tn_pinfo {
	pid_t pid, ppid, pgrp;
	char state;
	unsigned long long start;
};

struct tn_snap {
	struct tn_pinfo *v;
	unsigned char *mark;
	size_t n, cap;
};

static volatile sig_atomic_t interrupted;

/* ---- small helpers ---- */

static int fmt(char *out, size_t cap, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

/* snprintf that reports truncation: 0 or -ENAMETOOLONG. */
static int fmt(char *out, size_t cap, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(out, cap, f, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* A getopt_long failure (optstring starting with ':', opterr 0) told the
 * way the rest of the CLI tells it. Returns the usage exit code. */
static int bad_option(const char *cmd, int c, char **argv)
{
	if (c == ':')
		hw_cli_err("testnet %s: %s needs a value (see 'hopwire testnet "
			   "%s --help')", cmd, argv[optind - 1], cmd);
	else
		hw_cli_err("testnet %s: unknown option '%s' (see 'hopwire "
			   "testnet %s --help')", cmd, argv[optind - 1], cmd);
	return 2;
}

static int wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	return 0;
}

static void read_boot_id(char out[64])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	out[0] = '\0';
	if (!f)
		return;
	if (!fgets(out, 64, f))
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

/* Creates path and the folders leading to it; new ones get mode 0700. */
static int mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	struct stat st;

	if (fmt(tmp, sizeof(tmp), "%s", path))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (stat(tmp, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* The first folder on the way to path that does not exist yet ("" when
 * path exists): what mkdir_p is about to create. */
static void first_missing(const char *path, char out[PATH_MAX])
{
	char tmp[PATH_MAX];
	struct stat st;
	size_t len;

	out[0] = '\0';
	if (fmt(tmp, sizeof(tmp), "%s", path))
		return;
	len = strlen(tmp);
	for (size_t i = 1; i <= len; i++) {
		char c = tmp[i];
		if (c != '/' && c != '\0')
			continue;
		tmp[i] = '\0';
		if (stat(tmp, &st) < 0) {
			snprintf(out, PATH_MAX, "%s", tmp);
			return;
		}
		tmp[i] = c;
	}
}

/* Removes the (empty) folders from path up to and including first, the
 * ones mkdir_p made. */
static void remove_made(const char *path, const char *first)
{
	char tmp[PATH_MAX];
	size_t fl = strlen(first);
	char *slash;

	if (!fl || fmt(tmp, sizeof(tmp), "%s", path))
		return;
	while (strlen(tmp) >= fl) {
		rmdir(tmp);
		if (!(slash = strrchr(tmp, '/')) || slash == tmp)
			break;
		*slash = '\0';
	}
}

/* Writes text to path through a temporary file and a rename, so a reader
 * sees the old file or the new one, never a part. */
static int write_atomic(const char *path, const char *text, mode_t mode)
{
	char tmp[PATH_MAX + 8], dir[PATH_MAX];
	size_t len = strlen(text), off = 0;
	char *slash;
	int fd, rc = 0;

	if (fmt(tmp, sizeof(tmp), "%s.tmp", path) ||
	    fmt(dir, sizeof(dir), "%s", path))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)w;
	}
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	/* The rename itself survives a crash once the folder is synced. */
	if ((slash = strrchr(dir, '/')) && slash != dir) {
		*slash = '\0';
		if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
			fsync(fd);
			close(fd);
		}
	}
	return 0;
}

/* Prints the last lines of a log file to stderr, indented. */
static void log_tail(const char *path)
{
	char buf[2049];
	const char *lines[8];
	int nl = 0, fd;
	ssize_t n;
	off_t size;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > 2048 ? size - 2048 : 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	/* Keep the last complete lines, at most 8. */
	for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n")) {
		if (nl == 8) {
			memmove(lines, lines + 1, sizeof(lines[0]) * 7);
			nl = 7;
		}
		lines[nl++] = p;
	}
	for (int i = 0; i < nl; i++)
		fprintf(stderr, "    %s\n", lines[i]);
}

/* ---- processes as /proc shows them ---- */

static int proc_stat(pid_t pid, struct tn_pinfo *pi)
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

static void snap_free(struct tn_snap *s)
{
	free(s->v);
	free(s->mark);
	memset(s, 0, sizeof(*s));
}

/* Every live process of the machine. */
static int snap_take(struct tn_snap *s)
{
	struct dirent *de;
	DIR *d;

	s->n = 0;
	if (!(d = opendir("/proc")))
		return -errno;
	while ((de = readdir(d))) {
		struct tn_pinfo pi;
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0 || proc_stat((pid_t)pid, &pi) ||
		    gone_state(pi.state))
			continue;
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 512;
			struct tn_pinfo *v = realloc(s->v, cap * sizeof(*v));
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

static const struct tn_pinfo *snap_find(const struct tn_snap *s, pid_t pid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].pid == pid)
			return &s->v[i];
	return NULL;
}

/* Our process p is alive: its pid runs and started when ours did. */
static int leader_alive(const struct tn *tn, const struct tn_snap *s,
			const struct tn_proc *p)
{
	const struct tn_pinfo *pi;

	if (!tn->same_boot || p->pid <= 1)
		return 0;
	pi = snap_find(s, p->pid);
	return pi && pi->start == p->start;
}

/* An app of this testnet whose visor is gone: it works in a folder under
 * DIR and has the launcher's variable in its environment. */
static int orphan_app(const struct tn *tn, pid_t pid)
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
		if (!strncmp(env + i, TN_APP_ENV, strlen(TN_APP_ENV)))
			found = 1;
	}
	return found;
}

/* Marks in s the processes of the testnet: the members of the process
 * groups it started (each started with or after its leader), the
 * processes those started (the visors' apps run in sessions of their
 * own), and apps left behind by a visor that died. With role, only the
 * groups of that role's processes count. Returns how many. */
static size_t tn_mark(const struct tn *tn, struct tn_snap *s,
		      const char *role)
{
	pid_t self = getpid();
	size_t n = 0;
	int more = 1;

	memset(s->mark, 0, s->n);
	for (size_t i = 0; i < s->n; i++) {
		const struct tn_pinfo *pi = &s->v[i];
		if (pi->pid == self)
			continue;
		for (int k = 0; tn->same_boot && k < tn->np; k++) {
			const struct tn_proc *p = &tn->p[k];
			if (role && strcmp(p->role, role))
				continue;
			if (p->pid > 1 && pi->pgrp == p->pid &&
			    pi->start >= p->start &&
			    (pi->pid != p->pid || pi->start == p->start))
				s->mark[i] = 1;
		}
		if (!s->mark[i] && orphan_app(tn, pi->pid))
			s->mark[i] = 2;
	}
	while (more) {
		more = 0;
		for (size_t i = 0; i < s->n; i++) {
			const struct tn_pinfo *pa;
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

static int is_tn_group(const struct tn *tn, pid_t pgrp)
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
static void tn_signal(const struct tn *tn, const struct tn_snap *s, int sig,
		      struct tn_sentset *ss)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct tn_pinfo *pi = &s->v[i], *pa;
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
	}
}

/* up: waits for our children that ended, so they leave no zombies. */
static struct tn_proc *reap(struct tn *tn, int *status)
{
	for (int k = 0; k < tn->np; k++) {
		struct tn_proc *p = &tn->p[k];
		if (p->pid > 1 && !p->reaped &&
		    waitpid(p->pid, status, WNOHANG) == p->pid) {
			p->reaped = 1;
			return p;
		}
	}
	return NULL;
}

struct tn_stopped {
	size_t found;   /* processes there when the stop began */
	int leaders;    /* of which the testnet's own processes */
	int gone;       /* testnet processes that were already gone */
	size_t killed;  /* still there after the grace: SIGKILL */
	size_t left;    /* still there after SIGKILL */
	char gone_names[TN_MAX_PROCS * (TN_NAME_MAX + 2)];
};

/* SIGTERM to the processes of role (NULL: all of them), also to those
 * that turn up or lose their parent meanwhile, until they are gone or
 * the deadline passes; *left is how many remain. */
static int stop_wave(struct tn *tn, struct tn_snap *s, const char *role,
		     long long deadline, struct tn_sentset *ss, size_t *left)
{
	int status, rc;
	size_t n;

	for (;;) {
		n = tn_mark(tn, s, role);
		if (!n || now_ms() >= deadline)
			break;
		tn_signal(tn, s, SIGTERM, ss);
		sleep_ms(50);
		while (reap(tn, &status))
			;
		if ((rc = snap_take(s)))
			return rc;
	}
	*left = n;
	return 0;
}

/* Stops every process of the testnet (see tn_mark): SIGTERM to the
 * visors first, so they stop their apps and leave the services they use
 * in order, then to the rest; SIGKILL to whatever is left TN_GRACE_MS
 * after the start. Returns 0, or a negative code when /proc cannot be
 * read. */
static int tn_stop(struct tn *tn, struct tn_stopped *r)
{
	struct tn_sentset ss = {0};
	struct tn_snap s = {0};
	long long start = now_ms();
	int status, rc;
	size_t n;

	memset(r, 0, sizeof(*r));
	if ((rc = snap_take(&s)))
		goto out;
	r->found = tn_mark(tn, &s, NULL);
	for (int k = 0; k < tn->np; k++) {
		if (leader_alive(tn, &s, &tn->p[k])) {
			r->leaders++;
			continue;
		}
		r->gone++;
		if (r->gone_names[0])
			strcat(r->gone_names, ", ");
		strcat(r->gone_names, tn->p[k].name);
	}
	/* Visors that hang must leave the services time to stop too. */
	if ((rc = stop_wave(tn, &s, "visor", start + TN_GRACE_MS * 2 / 3,
			    &ss, &n)) ||
	    (rc = stop_wave(tn, &s, NULL, start + TN_GRACE_MS, &ss, &n)))
		goto out;
	if (n) {
		long long deadline = now_ms() + TN_KILL_WAIT_MS;
		r->killed = n;
		for (;;) {
			tn_signal(tn, &s, SIGKILL, NULL);
			sleep_ms(50);
			while (reap(tn, &status))
				;
			if ((rc = snap_take(&s)))
				goto out;
			n = tn_mark(tn, &s, NULL);
			if (!n || now_ms() >= deadline)
				break;
		}
	}
	r->left = n;
out:
	free(ss.v);
	snap_free(&s);
	return rc;
}

/* ---- the state file ---- */

static json_t *tn_to_json(const struct tn *tn)
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
		const struct tn_proc *p = &tn->p[k];
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

static int tn_save(const struct tn *tn)
{
	json_t *j = tn_to_json(tn);
	char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	int rc;

	json_decref(j);
	if (!text)
		return -ENOMEM;
	rc = write_atomic(tn->state_path, text, 0600);
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

static int tn_from_json(struct tn *tn, json_t *root, char *err,
			size_t errlen)
{
	static const char *const roles[] = {"discovery", "relay", "setup",
					    "visor", NULL};
	json_t *list = json_object_get(root, "processes"), *o, *v;
	char boot[64];
	size_t i;
	int rc;

	if (!json_is_object(root) ||
	    json_integer_value(json_object_get(root, "version")) != 1)
		return bad_state(err, errlen, "version: must be 1");
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > TN_MAX_PROCS)
		return bad_state(err, errlen, "processes: must be a list of 1 "
				 "to %d entries", TN_MAX_PROCS);
	snprintf(tn->boot_id, sizeof(tn->boot_id), "%s",
		 jstr(root, "boot_id"));
	read_boot_id(boot);
	tn->same_boot = !strcmp(boot, tn->boot_id);
	tn->created = json_integer_value(json_object_get(root, "created"));
	snprintf(tn->phase, sizeof(tn->phase), "%s", jstr(root, "state"));
	tn->chat_built = json_is_true(json_object_get(root, "chat_built"));
	tn->np = 0;
	tn->nvisors = 0;
	json_array_foreach(list, i, o) {
		struct tn_proc *p = &tn->p[tn->np];
		json_int_t pid, pgid;
		int known = 0;

		memset(p, 0, sizeof(*p));
		if (!json_is_object(o))
			return bad_state(err, errlen, "processes[%zu]: must be "
					 "an object", i);
		if ((rc = state_str(o, "name", p->name, sizeof(p->name), 1, i,
				    err, errlen)) ||
		    (rc = state_str(o, "role", p->role, sizeof(p->role), 1, i,
				    err, errlen)) ||
		    (rc = state_str(o, "log", p->log, sizeof(p->log), 1, i,
				    err, errlen)) ||
		    (rc = state_str(o, "pk", p->pk, sizeof(p->pk), 0, i, err,
				    errlen)) ||
		    (rc = state_str(o, "control_socket", p->sock,
				    sizeof(p->sock), 0, i, err, errlen)) ||
		    (rc = state_str(o, "addr", p->addr, sizeof(p->addr), 0, i,
				    err, errlen)) ||
		    (rc = state_str(o, "url", p->url, sizeof(p->url), 0, i,
				    err, errlen)) ||
		    (rc = state_str(o, "chat_url", p->chat, sizeof(p->chat), 0,
				    i, err, errlen)) ||
		    (rc = state_str(o, "config", p->config, sizeof(p->config),
				    0, i, err, errlen)))
			return rc;
		for (int r = 0; roles[r]; r++)
			known |= !strcmp(p->role, roles[r]);
		if (!known)
			return bad_state(err, errlen, "processes[%zu].role: "
					 "'%s' is not discovery, relay, setup "
					 "or visor", i, p->role);
		pid = json_integer_value(v = json_object_get(o, "pid"));
		if (!json_is_integer(v) || pid <= 1 || pid > INT_MAX)
			return bad_state(err, errlen, "processes[%zu].pid: must "
					 "be a process ID above 1", i);
		pgid = json_integer_value(v = json_object_get(o, "pgid"));
		/* Every process of a testnet leads its own group; anything
		 * else would have down signal somebody else's. */
		if (!json_is_integer(v) || pgid != pid)
			return bad_state(err, errlen, "processes[%zu].pgid: must "
					 "equal pid (%lld)", i, (long long)pid);
		v = json_object_get(o, "start_ticks");
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return bad_state(err, errlen, "processes[%zu]."
					 "start_ticks: must be a number of "
					 "clock ticks", i);
		p->pid = (pid_t)pid;
		p->start = (unsigned long long)json_integer_value(v);
		tn->nvisors += !strcmp(p->role, "visor");
		tn->np++;
	}
	return 0;
}

/* Reads DIR/testnet.json. Returns 0, -ENOENT when there is none, or
 * another negative code with the reason in err. */
static int tn_load(struct tn *tn, char *err, size_t errlen)
{
	json_error_t jerr;
	struct stat st;
	json_t *root;
	int rc;

	if (stat(tn->state_path, &st) < 0)
		return -errno;
	if (st.st_size > TN_STATE_MAX)
		return bad_state(err, errlen, "larger than %d bytes",
				 TN_STATE_MAX);
	if (!(root = json_load_file(tn->state_path, JSON_REJECT_DUPLICATES,
				    &jerr)))
		return bad_state(err, errlen, "line %d: %s", jerr.line,
				 jerr.text);
	rc = tn_from_json(tn, root, err, errlen);
	json_decref(root);
	return rc;
}

/* Sets tn->dir to the absolute form of dir (which must exist) and the
 * state path. Returns 0 or a negative errno. */
static int tn_set_dir(struct tn *tn, const char *dir)
{
	if (!realpath(dir, tn->dir))
		return -errno;
	return fmt(tn->state_path, sizeof(tn->state_path), "%s/%s", tn->dir,
		   TN_STATE_FILE);
}

/* Holds DIR/.testnet.lock while up or down works on DIR. Returns the
 * descriptor (close-on-exec: the daemons must not inherit it), -EAGAIN
 * when another command holds it, or a negative errno. */
static int tn_lock(const struct tn *tn)
{
	char path[PATH_MAX];
	int fd;

	if (fmt(path, sizeof(path), "%s/%s", tn->dir, TN_LOCK_FILE))
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

static struct tn_proc *tn_role(struct tn *tn, const char *role)
{
	for (int k = 0; k < tn->np; k++)
		if (!strcmp(tn->p[k].role, role))
			return &tn->p[k];
	return NULL;
}

/* ---- talking to the processes ---- */

/* GET url over HTTP. Returns the HTTP status, 0 when nothing answered;
 * *body (when asked for) gets the answer when it is JSON. */
static long http_get(const char *url, long timeout_ms, json_t **body)
{
	struct hw_capped rb = {.max = TN_HTTP_MAX};
	CURL *c = curl_easy_init();
	long code = 0;

	if (body)
		*body = NULL;
	if (!c)
		return 0;
	if (curl_easy_setopt(c, CURLOPT_URL, url) ||
	    hw_cli_curl_local(c, timeout_ms, &rb))
		goto out;
	if (curl_easy_perform(c) != CURLE_OK)
		goto out;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (body && rb.body.len)
		*body = json_loadb(rb.body.data, rb.body.len, JSON_DECODE_ANY,
				   NULL);
out:
	curl_easy_cleanup(c);
	hw_buf_reset(&rb.body);
	return code;
}

/* GET path from the control API of p (not necessarily the visor the
 * global options name). Returns 0 with the answer in *resp, or -1 with
 * the reason in err. */
static int api_get(const struct tn_proc *p, const char *path, json_t **resp,
		   char *err, size_t errlen)
{
	long status = 0;
	json_t *r = NULL;

	*resp = NULL;
	if (hw_api_call(p->sock, "GET", path, NULL, TN_API_TIMEOUT_MS,
			&status, &r, err, errlen))
		return -1;
	if (status != 200) {
		snprintf(err, errlen, "GET %s answered HTTP %ld: %s", path,
			 status, jstr(r, "error")[0] ? jstr(r, "error") : "?");
		json_decref(r);
		return -1;
	}
	*resp = r ? r : json_object();
	return 0;
}

/* ---- up ---- */

static void up_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet up [--dir DIR] [--visors N] "
		"[--timeout SECONDS] [--json]\n\n"
		"Starts a Hopwire network on loopback in DIR (default "
		TN_DEFAULT_DIR ", created 0700):\n"
		"  discovery  hopwire-discovery with its SQLite store in "
		"DIR/discovery.db\n"
		"  relay      hopwire-relay, registered in discovery\n"
		"  setup      hopwire-setup, the setup node every visor "
		"trusts\n"
		"  v1..vN     hopwire-visor, N of them (default %d, %d to %d), "
		"linked in a\n"
		"             line v1 - v2 - ... - vN by persistent TCP "
		"transports (each\n"
		"             visor dials the next), so the two ends are N-1 "
		"hops apart.\n"
		"             Each runs the apps chat (port %d, HTTP on a "
		"loopback port) and\n"
		"             hello (port %d, 'server').\n\n"
		"Each runs as a daemon in its own session and process group, "
		"stdin\n/dev/null, stdout and stderr appended to "
		"DIR/logs/NAME.log. The programs\nare looked up beside this "
		"hopwire executable, then in PATH. Keys are made\nonce "
		"(DIR/vI/visor.key, DIR/relay/relay.key, DIR/setup/setup.key) "
		"and kept;\nports are picked free on 127.0.0.1 at every up.\n\n"
		"up waits (--timeout, default %d s) until every visor's "
		"control API answers\nand it is registered in discovery, every "
		"transport of the line is up and\nregistered in discovery, and "
		"every chat app answers HTTP (when hopwire-chat\nis built). "
		"Then it writes DIR/testnet.json and prints the services, the "
		"visors\n(name, public key, control socket, chat URL) and "
		"commands to try; --json\nprints DIR/testnet.json instead. If "
		"a part does not come up, or a process\nexits, it names it and "
		"the log to read, stops everything it started and\nexits 1. "
		"A testnet already running in DIR is refused.\n",
		TN_DEFAULT_VISORS, TN_MIN_VISORS, TN_MAX_VISORS, TN_CHAT_PORT,
		TN_HELLO_PORT, TN_DEFAULT_TIMEOUT_S);
}

/* The folder of the running hopwire executable. */
static int self_dir(char out[PATH_MAX])
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

/* Finds program name beside hopwire, then in PATH. */
static int find_bin(const char *self, const char *name, char out[PATH_MAX])
{
	const char *path = getenv("PATH");

	if (!fmt(out, PATH_MAX, "%s/%s", self, name) &&
	    access(out, X_OK) == 0)
		return 0;
	while (path && *path) {
		size_t len = strcspn(path, ":");
		if (!fmt(out, PATH_MAX, "%.*s/%s", len ? (int)len : 1,
			 len ? path : ".", name) &&
		    access(out, X_OK) == 0)
			return 0;
		path += len + (path[len] == ':');
	}
	return -ENOENT;
}

/* Loads the key file at path, or makes it. */
static int ensure_key(const char *path, char pk[HW_PK_HEXLEN + 1])
{
	struct hw_identity id;
	int rc = hw_identity_load(&id, path);

	if (rc == -ENOENT && !(rc = hw_identity_generate(&id)))
		rc = hw_identity_save(&id, path, 0);
	if (!rc)
		hw_pk_format(id.pk, pk);
	hw_identity_wipe(&id);
	if (rc)
		hw_cli_err("testnet up: key file %s: %s", path,
			   hw_strerror(rc));
	return rc;
}

/* n distinct free TCP ports on 127.0.0.1: all held open until every one
 * is picked, so none comes twice. */
static int free_ports(uint16_t *ports, int n)
{
	int fds[TN_MAX_PROCS * 2], rc = 0, i;

	for (i = 0; i < n; i++) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_addr.s_addr =
						 htonl(INADDR_LOOPBACK)};
		socklen_t sl = sizeof(sa);

		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 ||
		    bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    getsockname(fds[i], (struct sockaddr *)&sa, &sl) < 0) {
			rc = -errno;
			if (fds[i] >= 0)
				close(fds[i]);
			break;
		}
		ports[i] = ntohs(sa.sin_port);
	}
	while (i-- > 0)
		close(fds[i]);
	return rc;
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

/* Starts bin as a daemon for p: its own session and process group, stdin
 * /dev/null, stdout and stderr appended to p->log. Returns when the exec
 * has happened (or failed: a negative errno). */
static int spawn(struct tn_proc *p, const char *bin, char *const argv[])
{
	int logfd = -1, nullfd = -1, pfd[2] = {-1, -1}, e = 0, rc;
	struct tn_pinfo pi;
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
	dprintf(logfd, "---- %s hopwire testnet: starting %s:", when, p->name);
	for (int i = 0; argv[i]; i++)
		dprintf(logfd, " %s", argv[i]);
	dprintf(logfd, "\n");
	fflush(NULL);
	if ((pid = fork()) < 0) {
		rc = -errno;
		goto out;
	}
	if (pid == 0) {
		sigset_t none;

		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (setsid() < 0 || dup2(nullfd, 0) < 0 ||
		    dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0) {
			e = errno;
		} else {
			/* Nothing else of ours (sockets, the lock) goes
			 * on living in the daemon. */
			if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
				for (int fd = 3; fd < 1024; fd++)
					fcntl(fd, F_SETFD, FD_CLOEXEC);
			execv(bin, argv);
			e = errno;
		}
		if (write(pfd[1], &e, sizeof(e)) < 0)
			_exit(126);
		_exit(127);
	}
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
	p->start = proc_stat(pid, &pi) ? 0 : pi.start;
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

static int spawn_or_say(struct tn_proc *p, const char *bin,
			char *const argv[])
{
	int rc = spawn(p, bin, argv);

	if (rc)
		hw_cli_err("testnet up: cannot start %s (%s, log %s): %s",
			   p->name, bin, p->log, hw_strerror(rc));
	return rc;
}

/* Writes the config of visor k (0-based) in the line and reads it back
 * through the visor's own loader, which also names its control socket. */
static int write_visor_config(struct tn *tn, int k, const char *setup_pk,
			      const char *disc_url)
{
	struct tn_proc *p = &tn->p[3 + k], *next = NULL;
	char key[PATH_MAX], local[PATH_MAX], chat_listen[TN_ADDR_MAX];
	char err[1024];
	struct hw_config cfg;
	json_t *root, *tp, *apps;
	char *text = NULL;
	int rc = -ENOMEM;

	if (k + 1 < tn->nvisors)
		next = &tn->p[3 + k + 1];
	if (fmt(local, sizeof(local), "%s/%s", tn->dir, p->name) ||
	    fmt(key, sizeof(key), "%s/visor.key", local))
		return -ENAMETOOLONG;
	/* The chat URL is http://HOST:PORT; the app listens on HOST:PORT. */
	snprintf(chat_listen, sizeof(chat_listen), "%s",
		 p->chat + strlen("http://"));
	if (!(root = hw_config_default(key, local, p->addr, disc_url)))
		goto out;
	tp = json_object_get(root, "transport");
	json_object_set_new(tp, "redial_max_ms",
			    json_integer(TN_REDIAL_MAX_MS));
	if (next)
		json_array_append_new(json_object_get(tp, "persistent"),
				      json_pack("{s:s, s:s, s:s}", "pk",
						next->pk, "type", "tcp",
						"addr", next->addr));
	json_array_append_new(json_object_get(json_object_get(root,
							      "routing"),
					      "setup_nodes"),
			      json_string(setup_pk));
	apps = json_pack("[{s:s, s:s, s:[s, s], s:i, s:b},"
			 " {s:s, s:s, s:[s], s:i, s:b}]",
			 "name", "chat", "binary", TN_CHAT_BIN, "args",
			 "--http", chat_listen, "port", TN_CHAT_PORT,
			 "autostart", 1, "name", "hello", "binary",
			 "hopwire-hello", "args", "server", "port",
			 TN_HELLO_PORT, "autostart", 1);
	if (!apps || json_object_set_new(root, "apps", apps))
		goto out;
	if (!(text = json_dumps(root, JSON_INDENT(2))))
		goto out;
	if ((rc = write_atomic(p->config, text, 0600))) {
		hw_cli_err("testnet up: cannot write %s: %s", p->config,
			   hw_strerror(rc));
		goto out;
	}
	rc = hw_config_load(&cfg, p->config, err, sizeof(err));
	if (rc)
		hw_cli_err("testnet up: config %s: %s", p->config, err);
	else
		snprintf(p->sock, sizeof(p->sock), "%s", cfg.control_socket);
	hw_config_free(&cfg);
	if (rc)
		goto out;
	rc = 0;
out:
	if (rc == -ENOMEM)
		hw_cli_err("testnet up: out of memory");
	free(text);
	json_decref(root);
	return rc;
}

/* A check of one part of the network: 1 when it is there, 0 with what is
 * missing in why and the process whose log tells more in *blame. */
typedef int (*tn_check_fn)(struct tn *tn, void *arg, char *why,
			   size_t whylen, const struct tn_proc **blame);

static void say_exit(const struct tn_proc *p, int status)
{
	if (WIFEXITED(status))
		hw_cli_err("testnet up: %s exited with status %d during "
			   "start-up; read %s:", p->name, WEXITSTATUS(status),
			   p->log);
	else
		hw_cli_err("testnet up: %s was killed by signal %d (%s) "
			   "during start-up; read %s:", p->name,
			   WTERMSIG(status), strsignal(WTERMSIG(status)),
			   p->log);
	log_tail(p->log);
}

/* Polls check until it passes, the deadline passes, a process we started
 * ends, or the user interrupts. Returns 0 when it passed. */
static int wait_part(struct tn *tn, long long deadline, int timeout_s,
		     tn_check_fn check, void *arg)
{
	const struct tn_proc *blame;
	struct tn_proc *dead;
	char why[1024];
	int status;

	for (;;) {
		if (interrupted) {
			hw_cli_err("testnet up: interrupted");
			return -1;
		}
		if ((dead = reap(tn, &status))) {
			say_exit(dead, status);
			return -1;
		}
		why[0] = '\0';
		blame = NULL;
		if (check(tn, arg, why, sizeof(why), &blame))
			return 0;
		if (now_ms() >= deadline) {
			hw_cli_err("testnet up: not up after %d s: %s",
				   timeout_s, why);
			if (blame) {
				hw_cli_err("read %s; its last lines:",
					   blame->log);
				log_tail(blame->log);
			}
			return -1;
		}
		sleep_ms(TN_POLL_MS);
	}
}

static int check_discovery(struct tn *tn, void *arg, char *why,
			   size_t whylen, const struct tn_proc **blame)
{
	struct tn_proc *d = tn_role(tn, "discovery");
	char url[TN_URL_MAX + 16];

	snprintf(url, sizeof(url), "%s/health", d->url);
	if (http_get(url, TN_HTTP_TIMEOUT_MS, NULL) == 200)
		return 1;
	snprintf(why, whylen, "discovery does not answer at %s", url);
	*blame = d;
	return 0;
}

/* p's control API answers and p is registered in discovery. */
static int check_registered(struct tn_proc *p, char *why, size_t whylen,
			    const struct tn_proc **blame)
{
	char err[PATH_MAX + 256];
	json_t *r, *net;
	int ok;

	*blame = p;
	if (api_get(p, "/v1/info", &r, err, sizeof(err))) {
		snprintf(why, whylen, "the control API of %s does not answer: "
			 "%s", p->name, err);
		return 0;
	}
	net = json_object_get(r, "network");
	ok = json_is_true(json_object_get(net, "registered"));
	if (!ok)
		snprintf(why, whylen, "%s is not registered in discovery%s%s",
			 p->name, jstr(net, "last_error")[0] ? ": " : "",
			 jstr(net, "last_error"));
	json_decref(r);
	return ok;
}

static int check_relay_setup(struct tn *tn, void *arg, char *why,
			     size_t whylen, const struct tn_proc **blame)
{
	struct tn_proc *relay = tn_role(tn, "relay");
	char url[TN_URL_MAX + 96];

	snprintf(url, sizeof(url), "%s/v1/relays/%s",
		 tn_role(tn, "discovery")->url, relay->pk);
	if (http_get(url, TN_HTTP_TIMEOUT_MS, NULL) != 200) {
		snprintf(why, whylen, "the relay is not registered in "
			 "discovery (%s)", url);
		*blame = relay;
		return 0;
	}
	return check_registered(tn_role(tn, "setup"), why, whylen, blame);
}

static int check_visors(struct tn *tn, void *arg, char *why, size_t whylen,
			const struct tn_proc **blame)
{
	for (int k = 0; k < tn->nvisors; k++)
		if (!check_registered(&tn->p[3 + k], why, whylen, blame))
			return 0;
	return 1;
}

/* The IDs of the line's transports, vI -> vI+1. */
struct tn_line {
	char id[TN_MAX_VISORS][80];
};

static int check_line(struct tn *tn, void *arg, char *why, size_t whylen,
		      const struct tn_proc **blame)
{
	struct tn_line *line = arg;
	char err[PATH_MAX + 256];

	for (int k = 0; k + 1 < tn->nvisors; k++) {
		struct tn_proc *a = &tn->p[3 + k], *b = &tn->p[4 + k];
		json_t *r, *e, *found = NULL;
		size_t i;
		int up;

		*blame = a;
		if (line->id[k][0])
			continue;
		if (api_get(a, "/v1/transports", &r, err, sizeof(err))) {
			snprintf(why, whylen, "the control API of %s does not "
				 "answer: %s", a->name, err);
			return 0;
		}
		json_array_foreach(r, i, e)
			if (!strcmp(jstr(e, "pk"), b->pk) &&
			    !strcmp(jstr(e, "type"), "tcp"))
				found = e;
		up = found && !strcmp(jstr(found, "state"), "up");
		if (up)
			snprintf(line->id[k], sizeof(line->id[k]), "%s",
				 jstr(found, "id"));
		else if (!found)
			snprintf(why, whylen, "%s has no transport to %s",
				 a->name, b->name);
		else
			snprintf(why, whylen, "transport %s -> %s (%s) is %s%s%s",
				 a->name, b->name, b->addr,
				 jstr(found, "state"),
				 jstr(found, "last_error")[0] ? ": " : "",
				 jstr(found, "last_error"));
		json_decref(r);
		if (!up)
			return 0;
	}
	return 1;
}

static int check_line_registered(struct tn *tn, void *arg, char *why,
				 size_t whylen, const struct tn_proc **blame)
{
	struct tn_line *line = arg;
	const char *disc = tn_role(tn, "discovery")->url;
	char url[TN_URL_MAX + 128];

	for (int k = 0; k + 1 < tn->nvisors; k++) {
		snprintf(url, sizeof(url), "%s/v1/transports/%s", disc,
			 line->id[k]);
		if (http_get(url, TN_HTTP_TIMEOUT_MS, NULL) != 200) {
			snprintf(why, whylen, "transport %s -> %s is not "
				 "registered in discovery (%s)",
				 tn->p[3 + k].name, tn->p[4 + k].name, url);
			*blame = &tn->p[3 + k];
			return 0;
		}
	}
	return 1;
}

static int check_chat(struct tn *tn, void *arg, char *why, size_t whylen,
		      const struct tn_proc **blame)
{
	char url[TN_URL_MAX + 16];

	for (int k = 0; k < tn->nvisors; k++) {
		struct tn_proc *v = &tn->p[3 + k];
		snprintf(url, sizeof(url), "%s/info", v->chat);
		if (http_get(url, TN_HTTP_TIMEOUT_MS, NULL) != 200) {
			snprintf(why, whylen, "the chat app of %s does not "
				 "answer at %s (its own log: %s/%s/apps/"
				 "chat.log)", v->name, url, tn->dir, v->name);
			*blame = v;
			return 0;
		}
	}
	return 1;
}

static void print_summary(const struct tn *tn)
{
	const struct tn_proc *disc = NULL, *relay = NULL, *setup = NULL;
	const struct tn_proc *first = &tn->p[3];
	const struct tn_proc *last = &tn->p[3 + tn->nvisors - 1];
	int sw = (int)strlen("CONTROL SOCKET");

	for (int k = 0; k < tn->np; k++) {
		const struct tn_proc *p = &tn->p[k];
		if (!strcmp(p->role, "discovery"))
			disc = p;
		else if (!strcmp(p->role, "relay"))
			relay = p;
		else if (!strcmp(p->role, "setup"))
			setup = p;
		else if ((int)strlen(p->sock) > sw)
			sw = (int)strlen(p->sock);
	}
	printf("testnet up in %s: %d visors in a line, ", tn->dir,
	       tn->nvisors);
	for (int k = 0; k < tn->nvisors; k++)
		printf("%s%s", k ? " - " : "", tn->p[3 + k].name);
	printf(" (TCP transports; %s and %s are %d hops apart)\n\n",
	       first->name, last->name, tn->nvisors - 1);
	printf("services\n");
	printf("  discovery  %-22s  store %s/discovery.db\n", disc->url,
	       tn->dir);
	printf("  relay      %-22s  pk %s\n", relay->addr, relay->pk);
	printf("  setup      %-22s  pk %s\n", setup->addr, setup->pk);
	printf("  %-9s  %-22s  control socket %s\n\n", "", "", setup->sock);
	printf("visors\n  %-4s  %-64s  %-*s  %s\n", "NAME", "PK", sw,
	       "CONTROL SOCKET", "CHAT");
	for (int k = 0; k < tn->nvisors; k++) {
		const struct tn_proc *v = &tn->p[3 + k];
		printf("  %-4s  %-64s  %-*s  %s\n", v->name, v->pk, sw,
		       v->sock, v->chat);
	}
	if (!tn->chat_built)
		printf("  (hopwire-chat is not built yet: the chat URLs answer "
		       "once it is and the\n  visors start their apps)\n");
	printf("\ntry\n");
	printf("  hopwire --visor %s route find %s", first->sock, last->pk);
	if (tn->nvisors - 1 > TN_ROUTE_FIND_HOPS)
		printf(" --max-hops %d", tn->nvisors - 1);
	printf("\n");
	printf("  curl -X POST %s/message -d '{\"recipient\": \"%s\", "
	       "\"message\": \"hi\"}'\n", first->chat, last->pk);
	printf("\nlogs in %s/logs, state in %s\n", tn->dir, tn->state_path);
	printf("stop it with: hopwire testnet down --dir %s\n", tn->dir);
}

static int up_parse_int(const char *opt, const char *s, long lo, long hi,
			long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi) {
		hw_cli_err("testnet up: %s: '%s' is not a number in %ld..%ld",
			   opt, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

/* Fills in the processes of a testnet of nvisors visors in tn->dir, with
 * their keys and ports, and makes their folders. */
static int up_prepare(struct tn *tn)
{
	static const char *const svc[] = {"discovery", "relay", "setup"};
	uint16_t ports[TN_MAX_PROCS * 2];
	char path[PATH_MAX];
	int rc;

	tn->np = 3 + tn->nvisors;
	if ((rc = free_ports(ports, 3 + 2 * tn->nvisors))) {
		hw_cli_err("testnet up: cannot find free ports on 127.0.0.1: "
			   "%s", hw_strerror(rc));
		return rc;
	}
	for (int k = 0; k < tn->np; k++) {
		struct tn_proc *p = &tn->p[k];
		memset(p, 0, sizeof(*p));
		if (k < 3) {
			snprintf(p->name, sizeof(p->name), "%s", svc[k]);
			snprintf(p->role, sizeof(p->role), "%s", svc[k]);
		} else {
			snprintf(p->name, sizeof(p->name), "v%d", k - 2);
			snprintf(p->role, sizeof(p->role), "visor");
			snprintf(p->chat, sizeof(p->chat),
				 "http://127.0.0.1:%u",
				 (unsigned)ports[3 + tn->nvisors + k - 3]);
		}
		snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%u",
			 (unsigned)ports[k]);
		if ((rc = fmt(p->log, sizeof(p->log), "%s/logs/%s.log",
			      tn->dir, p->name)))
			return rc;
		if (k == 0) {
			snprintf(p->url, sizeof(p->url), "http://%s", p->addr);
			continue;
		}
		if ((rc = fmt(path, sizeof(path), "%s/%s", tn->dir,
			      p->name)) ||
		    (rc = mkdir_p(path))) {
			hw_cli_err("testnet up: cannot create %s: %s", path,
				   hw_strerror(rc));
			return rc;
		}
		if (k == 1)
			rc = fmt(path, sizeof(path), "%s/relay/relay.key",
				 tn->dir);
		else if (k == 2)
			rc = fmt(path, sizeof(path), "%s/setup/setup.key",
				 tn->dir);
		else
			rc = fmt(path, sizeof(path), "%s/%s/visor.key",
				 tn->dir, p->name);
		if (rc || (rc = ensure_key(path, p->pk)))
			return rc;
		if (k == 2)
			rc = fmt(p->sock, sizeof(p->sock), "%s/setup/visor.sock",
				 tn->dir);
		else if (k > 2)
			rc = fmt(p->config, sizeof(p->config),
				 "%s/%s/hopwire.json", tn->dir, p->name);
		if (rc)
			return rc;
	}
	return 0;
}

/* Starts the processes and waits for each part. Returns 0 when the whole
 * network is up. */
static int up_run(struct tn *tn, const char bins[4][PATH_MAX],
		  int timeout_s)
{
	long long deadline = now_ms() + (long long)timeout_s * 1000;
	struct tn_proc *disc = &tn->p[0], *relay = &tn->p[1],
		       *setup = &tn->p[2];
	char store[PATH_MAX + 16], key[PATH_MAX], dir[PATH_MAX];
	struct tn_line line;
	int rc;

	memset(&line, 0, sizeof(line));
	if ((rc = fmt(store, sizeof(store), "sqlite:%s/discovery.db",
		      tn->dir)))
		return rc;
	{
		char *argv[] = {(char *)bins[0], "--listen", disc->addr,
				"--store", store, NULL};
		if ((rc = spawn_or_say(disc, bins[0], argv)))
			return rc;
	}
	/* Recorded from the first process on: a testnet whose up dies
	 * half-way can still be stopped with down. */
	if ((rc = tn_save(tn)) ||
	    (rc = wait_part(tn, deadline, timeout_s, check_discovery, NULL)))
		goto out;

	if ((rc = fmt(key, sizeof(key), "%s/relay/relay.key", tn->dir)) ||
	    (rc = fmt(dir, sizeof(dir), "%s/relay", tn->dir)))
		goto out;
	{
		char *argv[] = {(char *)bins[1], "--key", key, "--listen",
				relay->addr, "--discovery", disc->url,
				"--state-dir", dir, NULL};
		if ((rc = spawn_or_say(relay, bins[1], argv)))
			goto out;
	}
	if ((rc = fmt(key, sizeof(key), "%s/setup/setup.key", tn->dir)) ||
	    (rc = fmt(dir, sizeof(dir), "%s/setup", tn->dir)))
		goto out;
	{
		char *argv[] = {(char *)bins[2], "--key", key, "--discovery",
				disc->url, "--tcp-listen", setup->addr,
				"--dir", dir, NULL};
		if ((rc = spawn_or_say(setup, bins[2], argv)))
			goto out;
	}
	/* Visors pick their relays from discovery when they start. */
	if ((rc = tn_save(tn)) ||
	    (rc = wait_part(tn, deadline, timeout_s, check_relay_setup,
			    NULL)))
		goto out;

	for (int k = 0; k < tn->nvisors; k++)
		if ((rc = write_visor_config(tn, k, setup->pk, disc->url)))
			goto out;
	for (int k = 0; k < tn->nvisors; k++) {
		struct tn_proc *v = &tn->p[3 + k];
		char *argv[] = {(char *)bins[3], "--config", v->config, NULL};
		if ((rc = spawn_or_say(v, bins[3], argv)))
			goto out;
	}
	if ((rc = tn_save(tn)) ||
	    (rc = wait_part(tn, deadline, timeout_s, check_visors, NULL)) ||
	    (rc = wait_part(tn, deadline, timeout_s, check_line, &line)) ||
	    (rc = wait_part(tn, deadline, timeout_s, check_line_registered,
			    &line)))
		goto out;
	if (tn->chat_built &&
	    (rc = wait_part(tn, deadline, timeout_s, check_chat, NULL)))
		goto out;
	snprintf(tn->phase, sizeof(tn->phase), "up");
	rc = tn_save(tn);
out:
	return rc;
}

static int tn_up(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"visors", required_argument, NULL, 'n'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const char *const progs[4] = {"hopwire-discovery",
					     "hopwire-relay", "hopwire-setup",
					     "hopwire-visor"};
	const char *dir = TN_DEFAULT_DIR;
	long nvisors = TN_DEFAULT_VISORS, timeout_s = TN_DEFAULT_TIMEOUT_S;
	char self[PATH_MAX], bins[4][PATH_MAX], chat[PATH_MAX];
	char err[1024], path[PATH_MAX], made[PATH_MAX];
	struct sigaction sa, old_int, old_term;
	struct tn *tn = NULL, *old = NULL;
	struct tn_stopped st;
	int lockfd = -1, c, rc, ret = 1, handlers = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:n:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'n':
			if (up_parse_int("--visors", optarg, TN_MIN_VISORS,
					 TN_MAX_VISORS, &nvisors))
				return 2;
			break;
		case 't':
			if (up_parse_int("--timeout", optarg, 1,
					 TN_MAX_TIMEOUT_S, &timeout_s))
				return 2;
			break;
		case 'h': up_usage(stdout); return 0;
		default: return bad_option("up", c, argv);
		}
	}
	if (optind != argc) {
		hw_cli_err("testnet up: unexpected argument '%s' (see "
			   "'hopwire testnet up --help')", argv[optind]);
		return 2;
	}
	if (!*dir) {
		hw_cli_err("testnet up: --dir: must not be empty");
		return 2;
	}
	if (!(tn = calloc(1, sizeof(*tn))) || !(old = calloc(1, sizeof(*old)))) {
		hw_cli_err("testnet up: out of memory");
		goto out;
	}
	/* Every program first: nothing starts when one is missing. */
	if ((rc = self_dir(self))) {
		hw_cli_err("testnet up: cannot find where hopwire is "
			   "(/proc/self/exe): %s", hw_strerror(rc));
		goto out;
	}
	for (int i = 0; i < 4; i++)
		if (find_bin(self, progs[i], bins[i])) {
			hw_cli_err("testnet up: %s not found: not beside %s/"
				   "hopwire nor in PATH (build it: make)",
				   progs[i], self);
			goto out;
		}
	tn->chat_built = !fmt(chat, sizeof(chat), "%s/" TN_CHAT_BIN, self) &&
			 access(chat, X_OK) == 0;
	if (!tn->chat_built) {
		/* The visors look their apps up beside hopwire-visor. */
		hw_cli_err("testnet up: " TN_CHAT_BIN " not found beside %s/"
			   "hopwire (build it: make)", self);
		goto out;
	}

	first_missing(dir, made);
	if ((rc = mkdir_p(dir))) {
		hw_cli_err("testnet up: --dir %s: cannot create it: %s", dir,
			   hw_strerror(rc));
		goto out;
	}
	if ((rc = tn_set_dir(tn, dir))) {
		hw_cli_err("testnet up: --dir %s: %s", dir, hw_strerror(rc));
		goto out;
	}
	if (strlen(tn->dir) + strlen(TN_LONGEST_SOCKET) > TN_SUN_PATH_MAX) {
		hw_cli_err("testnet up: --dir %s: path too long: %s is %zu "
			   "bytes, and the UNIX sockets under it (the longest "
			   "is DIR" TN_LONGEST_SOCKET ") must fit in %zu; use "
			   "a folder of at most %zu bytes", dir,
			   tn->dir, strlen(tn->dir), TN_SUN_PATH_MAX,
			   TN_SUN_PATH_MAX - strlen(TN_LONGEST_SOCKET));
		remove_made(dir, made);
		goto out;
	}
	if ((lockfd = tn_lock(tn)) < 0) {
		if (lockfd == -EAGAIN)
			hw_cli_err("testnet up: another 'hopwire testnet' "
				   "command is working on %s right now",
				   tn->dir);
		else
			hw_cli_err("testnet up: %s/%s: %s", tn->dir,
				   TN_LOCK_FILE, hw_strerror(lockfd));
		goto out;
	}

	/* A testnet of this folder that still runs is refused; one whose
	 * processes are all gone is replaced. */
	memcpy(old->dir, tn->dir, sizeof(old->dir));
	memcpy(old->state_path, tn->state_path, sizeof(old->state_path));
	rc = tn_load(old, err, sizeof(err));
	if (rc == 0) {
		struct tn_snap s = {0};
		size_t n = 0;
		if ((rc = snap_take(&s)) == 0)
			n = tn_mark(old, &s, NULL);
		snap_free(&s);
		if (rc) {
			hw_cli_err("testnet up: cannot read /proc: %s",
				   hw_strerror(rc));
			goto out;
		}
		if (n) {
			hw_cli_err("testnet up: a testnet is already running in "
				   "%s (%zu processes; see 'hopwire testnet "
				   "status --dir %s', stop it with 'hopwire "
				   "testnet down --dir %s')", tn->dir, n,
				   tn->dir, tn->dir);
			goto out;
		}
		fprintf(stderr, "hopwire: %s is left from a testnet that no "
			"longer runs: replacing it\n", tn->state_path);
	} else if (rc != -ENOENT) {
		hw_cli_err("testnet up: %s: %s (remove it if no testnet runs "
			   "in %s)", tn->state_path,
			   rc == -EINVAL ? err : hw_strerror(rc), tn->dir);
		goto out;
	}

	if ((rc = fmt(path, sizeof(path), "%s/logs", tn->dir)) ||
	    (rc = mkdir_p(path))) {
		hw_cli_err("testnet up: cannot create %s: %s", path,
			   hw_strerror(rc));
		goto out;
	}
	read_boot_id(tn->boot_id);
	tn->same_boot = 1;
	tn->created = (long long)time(NULL);
	tn->nvisors = (int)nvisors;
	snprintf(tn->phase, sizeof(tn->phase), "starting");
	if (up_prepare(tn))
		goto out;

	/* Ctrl-C while starting stops what was started. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	handlers = 1;

	if (up_run(tn, (const char(*)[PATH_MAX])bins, (int)timeout_s)) {
		int any = 0;
		for (int k = 0; k < tn->np; k++)
			any |= tn->p[k].pid > 1;
		if (any) {
			hw_cli_err("stopping what testnet up started");
			if (tn_stop(tn, &st) == 0 && st.left)
				hw_cli_err("%zu processes did not stop; see "
					   "%s", st.left, tn->state_path);
			else
				unlink(tn->state_path);
		}
		ret = interrupted ? 130 : 1;
		goto out;
	}
	if (hw_cli_opts.json) {
		json_t *j = tn_to_json(tn);
		hw_cli_print_json(j);
		json_decref(j);
	} else {
		print_summary(tn);
	}
	ret = 0;
out:
	if (handlers) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGTERM, &old_term, NULL);
	}
	if (lockfd >= 0)
		close(lockfd);
	free(tn);
	free(old);
	return ret;
}

/* ---- status ---- */

static void status_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet status [--dir DIR] [--json]\n\n"
		"Reads DIR/testnet.json (default " TN_DEFAULT_DIR ") and "
		"checks each process of the\ntestnet: whether it runs "
		"(ALIVE), whether it answers (API: discovery's\n/health, the "
		"control API of the setup node and of each visor; the relay\n"
		"has none), the transports of each visor (up/all) and whether "
		"its chat app\nanswers HTTP (CHAT; '-' when hopwire-chat was "
		"not built). --json prints the\nsame as JSON: the fields of "
		"testnet.json plus \"alive\", \"answers\",\n\"transports\", "
		"\"transports_up\", \"chat_answers\", and \"ok\" for the "
		"whole.\n\n"
		"Exit status: 0 when every process runs and answers, 1 when "
		"one does not or\nwhen DIR holds no testnet.\n");
}

static int tn_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir = TN_DEFAULT_DIR;
	struct tn_snap s = {0};
	json_t *out = NULL, *list = NULL, *state = NULL;
	struct tn *tn = NULL;
	char err[PATH_MAX + 256];
	int c, rc, ret = 1, bad = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'h': status_usage(stdout); return 0;
		default: return bad_option("status", c, argv);
		}
	}
	if (optind != argc) {
		hw_cli_err("testnet status: unexpected argument '%s'",
			   argv[optind]);
		return 2;
	}
	if (!(tn = calloc(1, sizeof(*tn)))) {
		hw_cli_err("testnet status: out of memory");
		return 1;
	}
	rc = tn_set_dir(tn, dir);
	if (!rc)
		rc = tn_load(tn, err, sizeof(err));
	if (rc == -ENOENT || rc == -ENOTDIR) {
		hw_cli_err("no testnet in %s (start one with 'hopwire testnet "
			   "up --dir %s')", dir, dir);
		goto done;
	}
	if (rc) {
		hw_cli_err("testnet status: %s: %s", tn->state_path[0] ?
			   tn->state_path : dir,
			   rc == -EINVAL ? err : hw_strerror(rc));
		goto done;
	}
	if ((rc = snap_take(&s))) {
		hw_cli_err("testnet status: cannot read /proc: %s",
			   hw_strerror(rc));
		goto done;
	}
	state = tn_to_json(tn);
	out = json_pack("{s:s, s:s, s:I, s:i, s:b, s:[]}", "dir", tn->dir,
			"state", tn->phase, "created",
			(json_int_t)tn->created, "visors", tn->nvisors,
			"chat_built", tn->chat_built, "processes");
	list = json_object_get(out, "processes");
	if (!state || !list) {
		hw_cli_err("testnet status: out of memory");
		goto done;
	}
	for (int k = 0; k < tn->np; k++) {
		struct tn_proc *p = &tn->p[k];
		int alive = leader_alive(tn, &s, p);
		json_t *answers = json_null(), *tps = NULL, *tps_up = NULL;
		json_t *chat = json_null(), *o, *r = NULL;
		char url[TN_URL_MAX + 16];

		if (!strcmp(p->role, "discovery")) {
			snprintf(url, sizeof(url), "%s/health", p->url);
			answers = json_boolean(
				http_get(url, TN_HTTP_TIMEOUT_MS, NULL) == 200);
		} else if (p->sock[0]) {
			int ok = !api_get(p, "/v1/info", &r, err, sizeof(err));
			answers = json_boolean(ok);
			if (ok) {
				tps = json_incref(json_object_get(r,
								  "transports"));
				tps_up = json_incref(json_object_get(
					r, "transports_up"));
			}
			json_decref(r);
		}
		if (p->chat[0] && tn->chat_built) {
			snprintf(url, sizeof(url), "%s/info", p->chat);
			chat = json_boolean(
				http_get(url, TN_HTTP_TIMEOUT_MS, NULL) == 200);
		}
		bad |= !alive || json_is_false(answers) || json_is_false(chat);
		/* The fields of the state file, then what was seen. */
		o = json_deep_copy(json_array_get(
			json_object_get(state, "processes"), (size_t)k));
		if (!o) {
			json_decref(answers);
			json_decref(tps);
			json_decref(tps_up);
			json_decref(chat);
			hw_cli_err("testnet status: out of memory");
			goto done;
		}
		json_object_set_new(o, "alive", json_boolean(alive));
		json_object_set_new(o, "answers", answers);
		json_object_set_new(o, "transports", tps ? tps : json_null());
		json_object_set_new(o, "transports_up",
				    tps_up ? tps_up : json_null());
		json_object_set_new(o, "chat_answers", chat);
		json_array_append_new(list, o);
	}
	json_object_set_new(out, "ok", json_boolean(!bad));
	if (hw_cli_opts.json) {
		hw_cli_print_json(out);
	} else {
		json_t *o;
		size_t i;
		char when[64];
		time_t created = (time_t)tn->created;

		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S",
			 localtime(&created));
		printf("testnet in %s (%s, started %s, %d visors)\n", tn->dir,
		       tn->phase, when, tn->nvisors);
		printf("%-9s  %-9s  %7s  %-5s  %-3s  %-10s  %-4s  %-22s  %s\n",
		       "NAME", "ROLE", "PID", "ALIVE", "API", "TRANSPORTS",
		       "CHAT", "ADDRESS", "PK");
		json_array_foreach(list, i, o) {
			json_t *a = json_object_get(o, "answers");
			json_t *ch = json_object_get(o, "chat_answers");
			char tps[32] = "-";

			if (json_is_integer(json_object_get(o, "transports")))
				snprintf(tps, sizeof(tps), "%lld/%lld up",
					 (long long)json_integer_value(
						 json_object_get(o,
								 "transports_up")),
					 (long long)json_integer_value(
						 json_object_get(o,
								 "transports")));
			printf("%-9s  %-9s  %7lld  %-5s  %-3s  %-10s  %-4s  "
			       "%-22s  %s\n",
			       jstr(o, "name"), jstr(o, "role"),
			       (long long)json_integer_value(
				       json_object_get(o, "pid")),
			       json_is_true(json_object_get(o, "alive"))
				       ? "yes"
				       : "NO",
			       json_is_null(a) ? "-"
			       : json_is_true(a) ? "yes"
						 : "NO",
			       tps,
			       json_is_null(ch) ? "-"
			       : json_is_true(ch) ? "yes"
						  : "NO",
			       jstr(o, "url")[0] ? jstr(o, "url")
						 : jstr(o, "addr"),
			       jstr(o, "pk"));
		}
		if (bad)
			printf("not everything runs: read the logs in %s/logs\n",
			       tn->dir);
	}
	ret = bad ? 1 : 0;
done:
	snap_free(&s);
	json_decref(state);
	json_decref(out);
	free(tn);
	return ret;
}

/* ---- down ---- */

static void down_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet down [--dir DIR]\n\n"
		"Stops the testnet recorded in DIR/testnet.json (default "
		TN_DEFAULT_DIR "): SIGTERM to\nthe process group of each of "
		"its processes (a visor then stops its apps), up\nto %d s "
		"for everything to end, then SIGKILL to what is left; the "
		"apps the\nvisors started are stopped too, also when their "
		"visor is already gone. Then it\nchecks nothing is left, "
		"removes DIR/testnet.json and prints how many\nprocesses "
		"stopped. Keys, configs and logs stay in DIR: the next "
		"'hopwire\ntestnet up --dir DIR' uses the same keys.\n\n"
		"Exit status: 0 when everything is stopped (also when some "
		"processes were\nalready gone: it says which), 1 when DIR "
		"holds no testnet or a process\ncould not be stopped.\n",
		TN_GRACE_MS / 1000);
}

static int tn_down(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir = TN_DEFAULT_DIR;
	struct tn *tn = NULL;
	struct tn_stopped st;
	char err[1024];
	int c, rc, ret = 1, lockfd = -1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'h': down_usage(stdout); return 0;
		default: return bad_option("down", c, argv);
		}
	}
	if (optind != argc) {
		hw_cli_err("testnet down: unexpected argument '%s'",
			   argv[optind]);
		return 2;
	}
	if (!(tn = calloc(1, sizeof(*tn)))) {
		hw_cli_err("testnet down: out of memory");
		return 1;
	}
	rc = tn_set_dir(tn, dir);
	if (rc == -ENOENT || rc == -ENOTDIR ||
	    (!rc && access(tn->state_path, F_OK) < 0 && errno == ENOENT)) {
		hw_cli_err("no testnet in %s", dir);
		goto out;
	}
	if (rc) {
		hw_cli_err("testnet down: --dir %s: %s", dir, hw_strerror(rc));
		goto out;
	}
	if ((lockfd = tn_lock(tn)) < 0) {
		if (lockfd == -EAGAIN)
			hw_cli_err("testnet down: another 'hopwire testnet' "
				   "command is working on %s right now",
				   tn->dir);
		else
			hw_cli_err("testnet down: %s/%s: %s", tn->dir,
				   TN_LOCK_FILE, hw_strerror(lockfd));
		goto out;
	}
	if ((rc = tn_load(tn, err, sizeof(err)))) {
		if (rc == -ENOENT)
			hw_cli_err("no testnet in %s", dir);
		else
			hw_cli_err("testnet down: %s: %s", tn->state_path,
				   rc == -EINVAL ? err : hw_strerror(rc));
		goto out;
	}
	if ((rc = tn_stop(tn, &st))) {
		hw_cli_err("testnet down: cannot read /proc: %s",
			   hw_strerror(rc));
		goto out;
	}
	if (st.left) {
		hw_cli_err("testnet down: %zu processes are still there after "
			   "SIGKILL; %s is kept", st.left, tn->state_path);
		goto out;
	}
	if (unlink(tn->state_path) < 0 && errno != ENOENT) {
		hw_cli_err("testnet down: cannot remove %s: %s",
			   tn->state_path, strerror(errno));
		goto out;
	}
	printf("stopped %zu processes", st.found);
	if (st.found > (size_t)st.leaders)
		printf(" (%d of the testnet and %zu apps they started)",
		       st.leaders, st.found - (size_t)st.leaders);
	printf("\n");
	if (st.gone)
		printf("%d of the testnet's %d processes %s already gone: %s\n",
		       st.gone, tn->np, st.gone == 1 ? "was" : "were",
		       st.gone_names);
	if (st.killed)
		printf("%zu did not stop within %d s of SIGTERM and were "
		       "killed\n", st.killed, TN_GRACE_MS / 1000);
	printf("keys, configs and logs are kept in %s\n", tn->dir);
	ret = 0;
out:
	if (lockfd >= 0)
		close(lockfd);
	free(tn);
	return ret;
}

/* ---- hopwire testnet ---- */

static void testnet_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet up [--dir DIR] [--visors N] "
		"[--timeout SECONDS] [--json]\n"
		"       hopwire testnet status [--dir DIR] [--json]\n"
		"       hopwire testnet down [--dir DIR]\n\n"
		"A whole Hopwire network on this machine's loopback, for "
		"trying things out\nand for tests, kept in DIR (default "
		TN_DEFAULT_DIR ").\n\n"
		"up      starts discovery (SQLite), a relay, a setup node and "
		"N visors (default\n        %d) linked in a line v1 - v2 - "
		"... - vN, each visor with the chat and\n        hello apps; "
		"waits until it all works, then prints the addresses.\n"
		"status  shows whether each process runs and answers.\n"
		"down    stops every process of it; keys and logs stay.\n\n"
		"In DIR:\n"
		"  testnet.json        the processes: name, role, pid, "
		"process group, public\n"
		"                      key, control socket, addresses, chat "
		"URL, log\n"
		"  logs/NAME.log       what each process writes\n"
		"  discovery.db        discovery's store\n"
		"  vI/hopwire.json     visor vI's config; vI/visor.sock its "
		"control socket,\n"
		"                      vI/visor.key its key, vI/apps/ its "
		"apps' logs\n"
		"  relay/, setup/      the relay's and the setup node's keys "
		"and state\n\n"
		"Drive a visor with 'hopwire --visor DIR/vI/visor.sock "
		"COMMAND'.\n'hopwire testnet SUBCOMMAND --help' tells more.\n",
		TN_DEFAULT_VISORS);
}

int hw_cli_testnet(int argc, char **argv)
{
	if (argc < 2) {
		testnet_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "up"))
		return tn_up(argc - 1, argv + 1);
	if (!strcmp(argv[1], "status"))
		return tn_status(argc - 1, argv + 1);
	if (!strcmp(argv[1], "down"))
		return tn_down(argc - 1, argv + 1);
	if (wants_help(argc, argv)) {
		testnet_usage(stdout);
		return 0;
	}
	hw_cli_err("unknown testnet command '%s' (up, status, down; see "
		   "'hopwire testnet --help')", argv[1]);
	return 2;
}
