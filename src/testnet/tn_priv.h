/* What the files of the testnet supervisor share; not for its callers
 * (they use testnet.h). */
#ifndef HW_TESTNET_TN_PRIV_H
#define HW_TESTNET_TN_PRIV_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "testnet/testnet.h"

#define HW_TN_POLL_MS 100
#define HW_TN_STATE_FILE "testnet.json"
#define HW_TN_LOCK_FILE ".testnet.lock"
/* The environment up ran with, NUL-separated as /proc/PID/environ:
 * restart starts a process again with it. */
#define HW_TN_ENV_FILE "testnet.env"
#define HW_TN_ENV_MAX (1024 * 1024)
#define HW_TN_STATE_MAX (1024 * 1024)
#define HW_TN_HTTP_MAX (1024 * 1024)
#define HW_TN_API_TIMEOUT_MS 2000
#define HW_TN_HTTP_TIMEOUT_MS 1000
/* The longest socket a testnet puts in DIR: DIR/setup/streams.sock. */
#define HW_TN_LONGEST_SOCKET "/setup/streams.sock"
#define HW_TN_SUN_PATH_MAX \
	(sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
/* The launcher gives every app this variable (visor/launcher.h): how the
 * apps of a visor that is gone are still told apart. */
#define HW_TN_APP_ENV "HOPWIRE_APP_FD="

/* ---- files.c: small helpers ---- */

/* Formats a message and hands it to tn->ops. */
void hw_tn_err(const struct hw_tn *tn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Hands the last lines of the log file at path (at most 8) to tn->ops. */
void hw_tn_log_tail(const struct hw_tn *tn, const char *path);
/* snprintf that reports truncation: 0 or -ENAMETOOLONG. */
int hw_tn_fmt(char *out, size_t cap, const char *f, ...)
	__attribute__((format(printf, 3, 4)));
long long hw_tn_now_ms(void);
void hw_tn_sleep_ms(long ms);
/* o[k] when it is a string, else "". */
const char *hw_tn_jstr(json_t *o, const char *k);
/* This boot's ID ("" when the kernel does not tell). */
void hw_tn_boot_id(char out[64]);
/* Creates path and the folders leading to it; new ones get mode 0700. */
int hw_tn_mkdir_p(const char *path);
/* The first folder on the way to path that does not exist yet ("" when
 * path exists): what hw_tn_mkdir_p is about to create. */
void hw_tn_first_missing(const char *path, char out[PATH_MAX]);
/* Removes the (empty) folders from path up to and including first, the
 * ones hw_tn_mkdir_p made. */
void hw_tn_remove_made(const char *path, const char *first);
/* Writes text to path through a temporary file and a rename, so a reader
 * sees the old file or the new one, never a part. 0 or a negative errno. */
int hw_tn_write_atomic(const char *path, const char *text, mode_t mode);
/* The same for len bytes of data. */
int hw_tn_write_atomic_n(const char *path, const void *data, size_t len,
			 mode_t mode);

/* ---- proc.c: processes as /proc shows them, and stopping them ---- */

/* A process as /proc shows it. */
struct hw_tn_pinfo {
	pid_t pid, ppid, pgrp;
	char state;
	unsigned long long start;
};

/* Every live process of the machine, with a mark for each. */
struct hw_tn_snap {
	struct hw_tn_pinfo *v;
	unsigned char *mark;
	size_t n, cap;
};

int hw_tn_proc_stat(pid_t pid, struct hw_tn_pinfo *pi);
/* Fills s with every live process (s zeroed, or taken before). 0 or a
 * negative errno. */
int hw_tn_snap_take(struct hw_tn_snap *s);
void hw_tn_snap_free(struct hw_tn_snap *s);
/* For each process tn->p[k], a process of s that runs the command
 * recorded for it (the program of the same name, every argument the
 * same) but is not it, a copy started by hand: its pid in copy[k], or
 * 0. */
void hw_tn_copies(const struct hw_tn *tn, const struct hw_tn_snap *s,
		  pid_t copy[HW_TN_MAX_PROCS]);
/* Our process p is alive: its pid runs and started when ours did. */
int hw_tn_leader_alive(const struct hw_tn *tn, const struct hw_tn_snap *s,
		       const struct hw_tn_proc *p);
/* Marks in s the processes of the testnet (its process groups, copies of
 * its processes started by hand with their commands, what they started,
 * apps left behind by a visor that died); with role, only the groups
 * and copies of that role's processes. Returns how many. */
size_t hw_tn_mark(const struct hw_tn *tn, struct hw_tn_snap *s,
		  const char *role);
/* up: waits for one of our children that ended; returns it or NULL. */
struct hw_tn_proc *hw_tn_reap(struct hw_tn *tn, int *status);
/* Stops every process of the testnet (visors first, SIGKILL after
 * HW_TN_GRACE_MS) and counts in *r what it found and did. Returns 0, or a
 * negative code when /proc cannot be read. */
int hw_tn_stop(struct hw_tn *tn, struct hw_tn_stopped *r);

/* ---- state.c: DIR/testnet.json and DIR/.testnet.lock ---- */

int hw_tn_save(const struct hw_tn *tn);
/* Reads DIR/testnet.json. Returns 0, -ENOENT when there is none, or
 * another negative code with the reason in err. */
int hw_tn_load(struct hw_tn *tn, char *err, size_t errlen);
/* Finds dir's testnet, locks it and reads it, for tn->cmd; tells why it
 * cannot ("no testnet in DIR"). Returns the lock's descriptor or a
 * negative code (-ENOENT: no testnet there). */
int hw_tn_open_locked(struct hw_tn *tn, const char *dir);
/* Writes DIR/testnet.env: this process's environment. */
int hw_tn_save_env(const struct hw_tn *tn);
/* Reads DIR/testnet.env into a NULL-terminated list in *envp, one
 * allocation (caller frees *envp). 0, -ENOENT, or another negative
 * code. */
int hw_tn_load_env(const struct hw_tn *tn, char ***envp);
/* Removes DIR/testnet.env (the testnet is gone). */
void hw_tn_forget_env(const struct hw_tn *tn);
/* Sets tn->dir to the absolute form of dir (which must exist) and the
 * state path. Returns 0 or a negative errno. */
int hw_tn_set_dir(struct hw_tn *tn, const char *dir);
/* Holds DIR/.testnet.lock while up or down works on DIR. Returns the
 * descriptor (close-on-exec), -EAGAIN when another command holds it, or a
 * negative errno. */
int hw_tn_lock(const struct hw_tn *tn);
/* Tells why hw_tn_lock failed with rc, for tn->cmd. */
void hw_tn_lock_failed(const struct hw_tn *tn, int rc);
struct hw_tn_proc *hw_tn_role(struct hw_tn *tn, const char *role);

/* ---- spawn.c: programs and daemons ---- */

/* The folder of the running executable. */
int hw_tn_self_dir(char out[PATH_MAX]);
/* Finds program name in the folder self, then in PATH. */
int hw_tn_find_bin(const char *self, const char *name, char out[PATH_MAX]);
/* Starts argv (argv[0] the program's path) as a daemon for p (its own
 * session and process group, stdin /dev/null, stdout and stderr appended
 * to p->log), records the command in p; tells why it could not. Returns
 * 0 or a negative errno. */
int hw_tn_spawn(struct hw_tn *tn, struct hw_tn_proc *p, char *const argv[]);
/* Starts p again the same way with the command recorded in p, the
 * environment envp and the working folder tn->cwd. */
int hw_tn_respawn(struct hw_tn *tn, struct hw_tn_proc *p,
		  char *const envp[]);

/* ---- plan.c: the layout of a testnet ---- */

/* Fills in the processes of a testnet of tn->nvisors visors in tn->dir,
 * with their keys and ports, and makes their folders. */
int hw_tn_plan(struct hw_tn *tn);
/* Writes the config of visor k (0-based) in the line and reads it back
 * through the visor's own loader, which also names its control socket. */
int hw_tn_write_visor_config(struct hw_tn *tn, int k, const char *setup_pk,
			     const char *disc_url);

/* ---- checks.c: asking the processes, waiting for the parts ---- */

/* GET url with tn->ops: the HTTP status, 0 when nothing answered. */
long hw_tn_http_get(const struct hw_tn *tn, const char *url);
/* GET path from the control API of p with tn->ops. Returns 0 with the
 * answer in *resp, or -1 with the reason in err. */
int hw_tn_api_get(const struct hw_tn *tn, const struct hw_tn_proc *p,
		  const char *path, json_t **resp, char *err, size_t errlen);

/* A check of one part of the network: 1 when it is there, 0 with what is
 * missing in why and the process whose log tells more in *blame. */
typedef int (*hw_tn_check_fn)(struct hw_tn *tn, void *arg, char *why,
			      size_t whylen, const struct hw_tn_proc **blame);

/* The IDs of the line's transports, vI -> vI+1 (arg of the line checks). */
struct hw_tn_line {
	char id[HW_TN_MAX_VISORS][80];
};

int hw_tn_check_discovery(struct hw_tn *tn, void *arg, char *why,
			  size_t whylen, const struct hw_tn_proc **blame);
int hw_tn_check_relay_setup(struct hw_tn *tn, void *arg, char *why,
			    size_t whylen, const struct hw_tn_proc **blame);
int hw_tn_check_visors(struct hw_tn *tn, void *arg, char *why, size_t whylen,
		       const struct hw_tn_proc **blame);
int hw_tn_check_line(struct hw_tn *tn, void *arg, char *why, size_t whylen,
		     const struct hw_tn_proc **blame);
int hw_tn_check_line_registered(struct hw_tn *tn, void *arg, char *why,
				size_t whylen,
				const struct hw_tn_proc **blame);
int hw_tn_check_chat(struct hw_tn *tn, void *arg, char *why, size_t whylen,
		     const struct hw_tn_proc **blame);
/* The check up makes of one process p (arg), for restart: discovery's
 * /health; the relay takes TCP connections and is in discovery; the setup
 * node's or a visor's control API answers and it is registered in
 * discovery; a visor's chat app answers. */
int hw_tn_check_proc(struct hw_tn *tn, void *arg, char *why, size_t whylen,
		     const struct hw_tn_proc **blame);
/* What hw_tn_check_proc checks for p, in words. */
const char *hw_tn_check_proc_what(const struct hw_tn *tn,
				  const struct hw_tn_proc *p);
/* Polls check until it passes, the deadline passes, a process we started
 * ends, or tn->interrupted is set; tells why it gave up. Returns 0 when it
 * passed. */
int hw_tn_wait(struct hw_tn *tn, long long deadline, int timeout_s,
	       hw_tn_check_fn check, void *arg);

#endif
