/* The testnet supervisor: a whole Hopwire network on loopback, for trying
 * things out and for the end-to-end tests (`hopwire testnet`). hw_tn_up
 * starts discovery (SQLite), a relay, a setup node and N visors linked in a
 * line, each as a daemon in its own session and process group, waits until
 * the network works and records it in DIR/testnet.json; hw_tn_status
 * checks it; hw_tn_down stops every process of it, the apps the visors
 * started included, and keeps keys, configs and logs. Visors are asked
 * things only through their control API.
 *
 * The supervisor prints nothing: what it has to tell (why a part does not
 * come up, the last lines of the log that explains it) goes to the caller's
 * struct hw_tn_ops as it happens, and it asks the processes through the
 * clients the ops give. */
#ifndef HW_TESTNET_TESTNET_H
#define HW_TESTNET_TESTNET_H

#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#define HW_TN_DEFAULT_DIR "./testnet"
#define HW_TN_DEFAULT_VISORS 4
#define HW_TN_MIN_VISORS 2
#define HW_TN_MAX_VISORS 64
#define HW_TN_MAX_PROCS (3 + HW_TN_MAX_VISORS)
#define HW_TN_DEFAULT_TIMEOUT_S 60
#define HW_TN_MAX_TIMEOUT_S 3600
/* down: SIGTERM, this long for everything to end, then SIGKILL. */
#define HW_TN_GRACE_MS 10000
/* After SIGKILL (down), or the signal of kill: this long for it to end. */
#define HW_TN_KILL_WAIT_MS 3000
/* How many hops a route has at most (discovery's HW_RF_MAX_HOPS, checked
 * in plan.c; `route find` searches that deep unless told): on a longer
 * line v1 reaches no further than v(1 + that). */
#define HW_TN_ROUTE_MAX_HOPS 16
/* A persistent transport is re-dialed at most this far apart, so a
 * testnet heals quickly when one of its visors is restarted. */
#define HW_TN_REDIAL_MAX_MS 5000
/* The apps every visor of a testnet runs (plan.c), which its launcher
 * starts and restarts. */
#define HW_TN_CHAT_APP "chat"
#define HW_TN_HELLO_APP "hello"
#define HW_TN_CHAT_BIN "hopwire-chat"
#define HW_TN_CHAT_PORT 1
#define HW_TN_HELLO_PORT 10
/* TCP port forwarding (docs/forward.md), with no settings: nothing
 * exposed, nothing mapped until a test or an operator says so. */
#define HW_TN_FORWARD_APP "forward"
#define HW_TN_FORWARD_BIN "hopwire-forward"
#define HW_TN_FORWARD_PORT 47

#define HW_TN_NAME_MAX 16
#define HW_TN_ADDR_MAX 64
#define HW_TN_URL_MAX 96
#define HW_TN_PK_HEXLEN 64
/* The command of a process as testnet.json records it: at most this many
 * arguments, this many bytes with their NULs. */
#define HW_TN_ARGC_MAX 16
#define HW_TN_ARGV_MAX (2 * PATH_MAX)
/* restart: how long it waits by default for the process to answer. */
#define HW_TN_RESTART_TIMEOUT_S 30

struct hw_tn_proc {
	char name[HW_TN_NAME_MAX];
	char role[HW_TN_NAME_MAX]; /* discovery, relay, setup, visor */
	pid_t pid;                 /* also its process group: setsid */
	/* Start time in clock ticks after boot: tells our process from a
	 * later one that got the same pid. */
	unsigned long long start;
	char pk[HW_TN_PK_HEXLEN + 1];
	char sock[PATH_MAX];       /* control socket (setup, visors) */
	char addr[HW_TN_ADDR_MAX]; /* TCP listen address */
	char url[HW_TN_URL_MAX];   /* discovery: its URL */
	char chat[HW_TN_URL_MAX];  /* visors: the chat app's HTTP URL */
	char socks[HW_TN_ADDR_MAX]; /* visors: the idle SOCKS client's */
	char log[PATH_MAX];
	char config[PATH_MAX];     /* visors */
	/* The command it was started with, its arguments one after the
	 * other with their NULs (argvlen bytes; 0: not recorded, a testnet
	 * of an older hopwire): what restart runs again, and how a copy
	 * started by hand is recognised. */
	char argv[HW_TN_ARGV_MAX];
	size_t argvlen;
	long long started;         /* unix seconds of its last start */
	int restarts;              /* times restart started it again */
	/* The signal 'testnet kill' sent it ("SIGKILL"; "" when none since
	 * its last start), and when (unix seconds). */
	char killed[HW_TN_NAME_MAX];
	long long killed_at;
	int reaped;                /* up: exited and waited for */
};

/* What the supervisor needs from its caller: where its messages go, and
 * how to ask the processes (plain HTTP for discovery and the chat apps,
 * the control API of the setup node and the visors). msg gets one line
 * that says what happened ("testnet up: v2 exited with status 1 during
 * start-up; read LOG:"); log_line gets, after such a line, the last lines
 * of the log it names, one at a time. */
struct hw_tn_ops {
	void (*msg)(void *ctx, const char *text);
	void (*log_line)(void *ctx, const char *line);
	/* GET url: the HTTP status, 0 when nothing answered. */
	long (*http_get)(const char *url, long timeout_ms);
	/* method path to the control socket sock: 0 with the HTTP status
	 * and the JSON answer (NULL when empty; caller frees) whatever the
	 * status, or -1 with the reason in err. */
	int (*api_call)(const char *sock, const char *method,
			const char *path, json_t *body, long timeout_ms,
			long *status, json_t **resp, char *err,
			size_t errlen);
	void *ctx;
};

/* A testnet: its folder, its processes in the order discovery, relay,
 * setup, v1..vN (p[3 + k] is visor k), as DIR/testnet.json records it. */
struct hw_tn {
	char dir[PATH_MAX];
	char state_path[PATH_MAX];
	/* The working folder up ran in, which its processes (and those
	 * restart starts) work in. */
	char cwd[PATH_MAX];
	char boot_id[64];
	int same_boot; /* the state was written since this machine booted */
	long long created;
	char phase[HW_TN_NAME_MAX]; /* starting, up */
	int nvisors;
	int chat_built;
	struct hw_tn_proc p[HW_TN_MAX_PROCS];
	int np;
	const struct hw_tn_ops *ops;
	/* up, restart: set (by a signal handler) to stop starting. */
	const volatile sig_atomic_t *interrupted;
	/* The command at work ("up", "restart"): the start of its
	 * messages. */
	const char *cmd;
};

struct hw_tn_up_opts {
	const char *dir;     /* created 0700 when missing */
	int nvisors;         /* HW_TN_MIN_VISORS..HW_TN_MAX_VISORS */
	int timeout_s;       /* for the whole network to come up */
	/* Polled while starting: non-zero stops what was started. */
	const volatile sig_atomic_t *interrupted;
	const struct hw_tn_ops *ops;
};

/* Starts a testnet in o->dir and waits until it works (every visor's
 * control API answers and it is registered in discovery, every transport
 * of the line is up and registered, every chat app answers HTTP). A
 * testnet already running there is refused. On success returns 0 and the
 * testnet in *out (free it with free()); on failure it has told why,
 * stopped whatever it started, and returns a negative code. */
int hw_tn_up(const struct hw_tn_up_opts *o, struct hw_tn **out);

/* The testnet as DIR/testnet.json holds it. New reference, NULL when out
 * of memory. */
json_t *hw_tn_to_json(const struct hw_tn *tn);

/* Checks the testnet recorded in dir: the fields of testnet.json with, for
 * each process, "alive", "answers" (null for the relay), "transports",
 * "transports_up" and "chat_answers", and "ok" for the whole. Returns 0
 * with that in *out (caller frees), or a negative code after telling why
 * (-ENOENT: no testnet in dir). */
int hw_tn_status(const char *dir, const struct hw_tn_ops *ops, json_t **out);

/* What hw_tn_down did. */
struct hw_tn_stopped {
	size_t found;   /* processes there when the stop began */
	int leaders;    /* of which the testnet's own processes */
	int gone;       /* testnet processes that were already gone */
	size_t killed;  /* still there after the grace: SIGKILL */
	size_t left;    /* still there after SIGKILL */
	char gone_names[HW_TN_MAX_PROCS * (HW_TN_NAME_MAX + 2)];
	int nprocs;     /* the testnet's own processes */
	char dir[PATH_MAX];
};

/* Stops every process of the testnet recorded in dir: SIGTERM to the
 * process group of each (a visor then stops its apps), up to
 * HW_TN_GRACE_MS for everything to end, then SIGKILL to what is left, the
 * apps of visors already gone included; then removes DIR/testnet.json.
 * Returns 0 with the counts in *st, or a negative code after telling why
 * (-ENOENT: no testnet in dir). */
int hw_tn_down(const char *dir, const struct hw_tn_ops *ops,
	       struct hw_tn_stopped *st);

/* What hw_tn_restart did. */
struct hw_tn_restarted {
	char name[HW_TN_NAME_MAX];
	pid_t old_pid;      /* the pid it had */
	int was_running;    /* old_pid ran when the restart began */
	char killed[HW_TN_NAME_MAX]; /* it had been killed with this */
	struct hw_tn_stopped stop; /* stopping it (and its apps) */
	pid_t pid;          /* the new process */
	int restarts;       /* times it has been restarted now */
	long long stop_ms, start_ms, total_ms; /* stopping; up to answering */
	char ready[128];    /* what was checked ("its control API answers,
			     * ...") */
	char log[PATH_MAX];
};

struct hw_tn_restart_opts {
	const char *dir;
	const char *name;    /* as status shows it: discovery, relay, v2 */
	int timeout_s;       /* for it to answer */
	const volatile sig_atomic_t *interrupted;
	const struct hw_tn_ops *ops;
};

/* Restarts process o->name of the testnet running in o->dir, under the
 * testnet's lock: stops it (SIGTERM to its process group, SIGKILL after
 * HW_TN_GRACE_MS; a visor's apps and a copy of it started by hand with
 * its command go too), starts it again with the command, environment,
 * working folder and log up used, records the new pid in testnet.json,
 * and waits until it answers as up checks that kind of process. The
 * visors' apps are the visors' launchers' to restart: an app name is
 * refused. Returns 0 with what it did in *r, or a negative code after
 * telling why (-ENOENT: no testnet in dir; -ESRCH: no such process;
 * -ETIMEDOUT, -ECHILD: it did not come up, with the tail of its log). */
int hw_tn_restart(const struct hw_tn_restart_opts *o,
		  struct hw_tn_restarted *r);

/* What hw_tn_kill did. */
struct hw_tn_killed {
	char name[HW_TN_NAME_MAX];
	char signal[HW_TN_NAME_MAX]; /* "SIGKILL" */
	pid_t pid;
	int ended;          /* the process is gone */
	int waited_ms;      /* how long it was waited for */
	char dir[PATH_MAX];
};

/* Sends sig to process name of the testnet in dir (the process alone,
 * not its group: its apps stay, as after a crash) and records in
 * testnet.json that it was killed, so status shows it so and restart
 * brings it back. Waits up to HW_TN_KILL_WAIT_MS for it to end when sig
 * ends a process. Returns 0 with what it did in *k, or a negative code
 * after telling why (-ENOENT: no testnet in dir; -ESRCH: no such process,
 * or it does not run). */
int hw_tn_kill(const char *dir, const char *name, int sig,
	       const struct hw_tn_ops *ops, struct hw_tn_killed *k);

/* The signal named s ("KILL", "SIGKILL", "kill", "9"): its number, or 0
 * when s names none. */
int hw_tn_signal_parse(const char *s);
/* "SIGKILL" for 9; "SIG42" for one without a name here. */
void hw_tn_signal_name(int sig, char out[HW_TN_NAME_MAX]);

#endif
