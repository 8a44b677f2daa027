/* The visor's app launcher: starts the apps of the config as child
 * processes with the app channel on an inherited socket (fd 3), sends
 * their output to LOCAL_DIR/apps/NAME.log, and supervises them: an app
 * that crashes is restarted after a backoff (1 s doubling to 60 s, +-20%
 * jitter, reset once the app has run 60 s); one that exits with status 0
 * stays down. Each app runs in its own session and process group, and the
 * launcher signals the whole group, so helpers an app forks go with it.
 *
 * A launched app gets: stdin /dev/null; stdout and stderr appended to
 * LOCAL_DIR/apps/NAME.log (renamed to NAME.log.1 before a start once it
 * exceeds 10 MiB); cwd LOCAL_DIR/apps/NAME/; the visor's environment
 * without HOPWIRE_APP_SOCKET, plus HOPWIRE_APP_FD=3, HOPWIRE_APP_NAME,
 * HOPWIRE_APP_PORT, HOPWIRE_VISOR_PK and HOPWIRE_VISOR_API; exactly the
 * capabilities its entry names (visor/appcaps.h), none without.
 *
 * An app whose entry has cleanup_args and that ends by a signal or with a
 * non-zero status (a crash, or a stop that had to kill it) is followed by
 * its cleanup, BINARY CLEANUP_ARGS..., run the same way (without the
 * channel) and killed after 10 s; the app's state is "cleanup" until it
 * has ended, and only then is the app restarted or left stopped.
 *
 * Everything runs on the caller's loop; callbacks come from it. Starting an
 * app does a few small local file operations (mkdir, stat, open) and a
 * fork and exec (the launcher waits for the exec, nothing that waits on
 * the app). Children are reaped on SIGCHLD by their pids, so processes
 * of uv_spawn elsewhere in the program are not disturbed. */
#ifndef HW_VISOR_LAUNCHER_H
#define HW_VISOR_LAUNCHER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "visor/config.h"

/* What an app may write in its working folder to report its state
 * (docs/apps.md); removed before each start of the app. */
#define HW_LAUNCHER_STATUS_FILE "status.json"

/* A log file larger than this is rotated before the next start. */
#define HW_LAUNCHER_LOG_MAX (10 * 1024 * 1024)

struct hw_launcher;

struct hw_launcher_ops {
	/* An app process started. fd is the visor's end of the app's
	 * channel (a connected UNIX stream socket, non-blocking,
	 * close-on-exec), owned by the callee from now on (closed by the
	 * launcher when started is NULL). */
	void (*started)(void *ud, const char *name, uint16_t port, int fd,
			int pid);
	/* The app's process ended (after `started`): exit_status is its
	 * status, term_signal the signal that ended it (0: none); its
	 * cleanup, if any, starts before this call. May be NULL. Not
	 * called once hw_launcher_free has been called. */
	void (*exited)(void *ud, const char *name, int64_t exit_status,
		       int term_signal);
};

struct hw_launcher_params {
	uv_loop_t *loop;
	const struct hw_config_app *apps; /* napps entries, deep-copied */
	size_t napps;
	const char *local_dir;    /* required: logs and working folders */
	const char *visor_pk_hex; /* HOPWIRE_VISOR_PK; NULL: not set */
	/* HOPWIRE_VISOR_API, the control socket (made absolute); NULL: not
	 * set. */
	const char *visor_api;
	/* Where hopwire-visor lives, searched first for bare binary names;
	 * NULL: the folder of /proc/self/exe. */
	const char *visor_exe_dir;
	const struct hw_launcher_ops *ops; /* required */
	void *ud;
	/* Tuning, 0 for the defaults: first and largest restart delay
	 * (1000, 60000), the run time after which the delay starts over
	 * (60000), how long a stopped app has between SIGTERM and
	 * SIGKILL (3000), and a cleanup before its SIGKILL (10000). */
	unsigned backoff_min_ms, backoff_max_ms, stable_ms, kill_grace_ms;
	unsigned cleanup_ms;
};

/* Creates a launcher for p->apps; nothing starts yet. Returns 0, or a
 * negative code with a message in err. */
int hw_launcher_new(struct hw_launcher **out,
		    const struct hw_launcher_params *p, char *err,
		    size_t errlen);

/* Starts every app with autostart that is not running. Failures are
 * logged and show in hw_launcher_json. */
void hw_launcher_autostart(struct hw_launcher *l);

/* Starts the app now (an app waiting for its restart starts at once).
 * Returns 0; -ENOENT when no app has that name; HW_ESTATE when it is
 * running, stopping or cleaning up (err says which); or the spawn
 * error (a capability the visor lacks: -EPERM) with a
 * message in err naming what went wrong (for a missing binary, where it
 * was looked for) — the app is then in state "failed". */
int hw_launcher_start(struct hw_launcher *l, const char *name, char *err,
		      size_t errlen);

/* Stops the app: SIGTERM to its process group, SIGKILL after the grace
 * (3 s); it is not restarted. A pending restart is cancelled. Returns 0
 * (also when a stop is already under way; for an app cleaning up: it is
 * not restarted after), -ENOENT for an unknown name,
 * HW_ESTATE with a message when it is not running. */
int hw_launcher_stop(struct hw_launcher *l, const char *name, char *err,
		     size_t errlen);

/* Sets the app's autostart flag, in memory only (the config file is the
 * caller's: hw_config_set_autostart). Returns 0 or -ENOENT. */
int hw_launcher_set_autostart(struct hw_launcher *l, const char *name,
			      int on);

/* Adds the app c (deep-copied) or gives the app of that name c's
 * settings. A new app, or one that is not running, is started when
 * c->autostart is set; a running one is stopped (SIGTERM, SIGKILL after
 * the grace) and started again with them; one waiting for its restart
 * starts now; one stopping keeps its fate (stopped, or started again if a
 * put began that stop) and takes them at its next start. A start that
 * fails leaves the app in state "failed" with the reason in its entry
 * (and in err); that is not an error of the put. Returns 0;
 * -EADDRINUSE when another app has c->port, -ENOSPC beyond HW_MAX_APPS,
 * -EINVAL for a bad name, -ENOMEM; with a message in err. */
int hw_launcher_put(struct hw_launcher *l, const struct hw_config_app *c,
		    char *err, size_t errlen);

/* The app's config entry (the launcher's copy: autostart follows
 * hw_launcher_set_autostart), or NULL when no app has that name / port.
 * Valid until hw_launcher_free; its args until the next hw_launcher_put
 * of that app. */
const struct hw_config_app *hw_launcher_app(const struct hw_launcher *l,
					    const char *name);
const struct hw_config_app *
hw_launcher_app_by_port(const struct hw_launcher *l, uint16_t port);

/* 1 when the launcher has a process for the app (running, stopping or
 * its cleanup) or will restart it (backoff), 0 otherwise (also for
 * unknown names). */
int hw_launcher_is_running(const struct hw_launcher *l, const char *name);

/* The apps as a JSON list (new reference, NULL when out of memory), in
 * config order:
 *   [{"name", "binary" (as configured), "args": [...], "port",
 *     "capabilities": ["CAP_NET_ADMIN"...], "cleanup_args": [...],
 *     "state": "stopped" | "running" | "stopping" | "backoff" |
 *              "exited" | "failed" | "cleanup",
 *     "cleanup_pid": N | null,
 *     "pid": N | null, "uptime_ms": N | null, "restarts": N (automatic
 *     restarts so far), "autostart": bool, "log": PATH,
 *     "last_exit": {"status": N, "signal": N (0: none), "signal_name":
 *                   "SIGSEGV" | null} | null,
 *     "next_restart_ms": N | null (in backoff: ms until the restart),
 *     "error": TEXT | null (why the last start failed)}] */
json_t *hw_launcher_json(const struct hw_launcher *l);

/* Shuts the launcher down without blocking: SIGTERM to every running app,
 * SIGKILL after the grace to those still there, then every handle is
 * closed and the memory released when the last one has closed; the caller
 * keeps running the loop until then. No callback runs after this call.
 * Accepts NULL. */
void hw_launcher_free(struct hw_launcher *l);

#endif
