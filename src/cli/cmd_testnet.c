/* hopwire testnet up|status|restart|kill|down: the command line of the
 * testnet supervisor (src/testnet/testnet.h), which starts, checks,
 * restarts and stops a whole Hopwire network on loopback. This file
 * parses the arguments, prints what the supervisor finds and tells, and
 * hands it the CLI's clients of HTTP and of the control API. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cli/api_client.h"
#include "cli/cli.h"
#include "testnet/testnet.h"
#include "util/buf.h"
#include "util/parse.h"

/* GET answers are not read: a bounded buffer for them. */
#define TN_HTTP_MAX (1024 * 1024)

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* While up or restart starts processes, SIGINT and SIGTERM set
 * interrupted (the supervisor then stops waiting); off puts the old
 * handlers back. */
static void catch_interrupts(int on)
{
	static struct sigaction old_int, old_term;
	struct sigaction sa;

	if (!on) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGTERM, &old_term, NULL);
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
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

static void up_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet up [--dir DIR] [--visors N] "
		"[--timeout SECONDS] [--json]\n\n"
		"Starts a Hopwire network on loopback in DIR (default "
		HW_TN_DEFAULT_DIR ", created 0700):\n"
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
		HW_TN_DEFAULT_VISORS, HW_TN_MIN_VISORS, HW_TN_MAX_VISORS, HW_TN_CHAT_PORT,
		HW_TN_HELLO_PORT, HW_TN_DEFAULT_TIMEOUT_S);
}

static void print_summary(const struct hw_tn *tn)
{
	const struct hw_tn_proc *disc = NULL, *relay = NULL, *setup = NULL;
	const struct hw_tn_proc *first = &tn->p[3];
	const struct hw_tn_proc *last = &tn->p[3 + tn->nvisors - 1];
	const struct hw_tn_proc *far;
	int sw = (int)strlen("CONTROL SOCKET"), hops;

	for (int k = 0; k < tn->np; k++) {
		const struct hw_tn_proc *p = &tn->p[k];
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
		const struct hw_tn_proc *v = &tn->p[3 + k];
		printf("  %-4s  %-64s  %-*s  %s\n", v->name, v->pk, sw,
		       v->sock, v->chat);
	}
	if (!tn->chat_built)
		printf("  (hopwire-chat is not built yet: the chat URLs answer "
		       "once it is and the\n  visors start their apps)\n");
	printf("\ntry\n");
	/* Routes have at most HW_TN_ROUTE_MAX_HOPS hops: on a longer line
	 * the farthest visor v1 can reach is the one to try. */
	hops = tn->nvisors - 1;
	if (hops > HW_TN_ROUTE_MAX_HOPS)
		hops = HW_TN_ROUTE_MAX_HOPS;
	far = &tn->p[3 + hops];
	printf("  hopwire --visor %s route find %s\n", first->sock, far->pk);
	if (hops < tn->nvisors - 1)
		printf("  (routes have at most %d hops: on this line v1 "
		       "reaches %s at most)\n",
		       HW_TN_ROUTE_MAX_HOPS, far->name);
	printf("  curl -X POST %s/message -d '{\"recipient\": \"%s\", "
	       "\"message\": \"hi\"}'\n", first->chat, last->pk);
	printf("\nlogs in %s/logs, state in %s\n", tn->dir, tn->state_path);
	printf("stop it with: hopwire testnet down --dir %s\n", tn->dir);
}

static void status_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet status [--dir DIR] [--json]\n\n"
		"Reads DIR/testnet.json (default " HW_TN_DEFAULT_DIR ") and "
		"checks each process of the\ntestnet: whether it runs "
		"(ALIVE: yes, NO, killed after 'testnet kill',\nstopped after "
		"SIGSTOP), whether it answers (API: discovery's\n/health, the "
		"control API of the setup node and of each visor; the relay\n"
		"has none), the transports of each visor (up/all) and whether "
		"its chat app\nanswers HTTP (CHAT; '-' when hopwire-chat was "
		"not built). --json prints the\nsame as JSON: the fields of "
		"testnet.json plus \"alive\", \"state\" (running, stopped, "
		"killed, gone),\n\"answers\", \"transports\", "
		"\"transports_up\", \"chat_answers\", \"copy_pid\" (a copy "
		"of it\nstarted by hand with its command runs), and \"ok\" "
		"for the whole. A process\nrestarted with 'hopwire testnet "
		"restart' shows its new pid.\n\n"
		"Exit status: 0 when every process runs and answers, 1 when "
		"one does not or\nwhen DIR holds no testnet.\n");
}

static void down_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet down [--dir DIR]\n\n"
		"Stops the testnet recorded in DIR/testnet.json (default "
		HW_TN_DEFAULT_DIR "): SIGTERM to\nthe process group of each of "
		"its processes (a visor then stops its apps), up\nto %d s "
		"for everything to end, then SIGKILL to what is left; the "
		"apps the\nvisors started are stopped too, also when their "
		"visor is already gone, and so\nare copies of its processes "
		"started by hand with the commands their logs\nshow. The "
		"processes 'hopwire testnet restart' started are the "
		"testnet's own.\nThen it checks nothing is left, removes "
		"DIR/testnet.json and prints how many\nprocesses stopped. "
		"Keys, configs and logs stay in DIR: the next 'hopwire\n"
		"testnet up --dir DIR' uses the same keys.\n\n"
		"Exit status: 0 when everything is stopped (also when some "
		"processes were\nalready gone: it says which), 1 when DIR "
		"holds no testnet or a process\ncould not be stopped.\n",
		HW_TN_GRACE_MS / 1000);
}

static void testnet_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet up [--dir DIR] [--visors N] "
		"[--timeout SECONDS] [--json]\n"
		"       hopwire testnet status [--dir DIR] [--json]\n"
		"       hopwire testnet restart NAME [--dir DIR] [--timeout "
		"SECONDS] [--json]\n"
		"       hopwire testnet kill NAME [--signal SIG] [--dir DIR] "
		"[--json]\n"
		"       hopwire testnet down [--dir DIR]\n\n"
		"A whole Hopwire network on this machine's loopback, for "
		"trying things out\nand for tests, kept in DIR (default "
		HW_TN_DEFAULT_DIR ").\n\n"
		"up      starts discovery (SQLite), a relay, a setup node and "
		"N visors (default\n        %d) linked in a line v1 - v2 - "
		"... - vN, each visor with the chat and\n        hello apps; "
		"waits until it all works, then prints the addresses.\n"
		"status  shows whether each process runs and answers.\n"
		"restart restarts one process (discovery, relay, setup, vI) as "
		"up started it.\n"
		"kill    (for tests) signals one process; status shows it "
		"killed.\n"
		"down    stops every process of it; keys and logs stay.\n\n"
		"In DIR:\n"
		"  testnet.json        the processes: name, role, pid, "
		"process group, command,\n"
		"                      public key, control socket, addresses, "
		"chat URL, log\n"
		"  testnet.env         the environment up ran with (for "
		"restart)\n"
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
		HW_TN_DEFAULT_VISORS);
}

static void say_msg(void *ctx, const char *text)
{
	hw_cli_err("%s", text);
}

static void say_log_line(void *ctx, const char *line)
{
	fprintf(stderr, "    %s\n", line);
}

/* GET url over plain HTTP: the status, 0 when nothing answered. */
static long http_get(const char *url, long timeout_ms)
{
	struct hw_capped rb = {.max = TN_HTTP_MAX};
	CURL *c = curl_easy_init();
	long code = 0;

	if (!c)
		return 0;
	if (!curl_easy_setopt(c, CURLOPT_URL, url) &&
	    !hw_cli_curl_local(c, timeout_ms, &rb) &&
	    curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	hw_buf_reset(&rb.body);
	return code;
}

static const struct hw_tn_ops ops = {
	.msg = say_msg,
	.log_line = say_log_line,
	.http_get = http_get,
	.api_call = hw_api_call,
};

static int parse_count(const char *cmd, const char *opt, const char *s,
		       int lo, int hi, int *out)
{
	unsigned long long v;

	if (hw_parse_uint(s, (unsigned long long)lo, (unsigned long long)hi,
			  &v)) {
		hw_cli_err("testnet %s: %s: '%s' is not a number in %d..%d",
			   cmd, opt, s, lo, hi);
		return -1;
	}
	*out = (int)v;
	return 0;
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
	struct hw_tn_up_opts o = {
		.dir = HW_TN_DEFAULT_DIR,
		.nvisors = HW_TN_DEFAULT_VISORS,
		.timeout_s = HW_TN_DEFAULT_TIMEOUT_S,
		.interrupted = &interrupted,
		.ops = &ops,
	};
	struct hw_tn *tn;
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:n:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': o.dir = optarg; break;
		case 'n':
			if (parse_count("up", "--visors", optarg,
					HW_TN_MIN_VISORS, HW_TN_MAX_VISORS,
					&o.nvisors))
				return 2;
			break;
		case 't':
			if (parse_count("up", "--timeout", optarg, 1,
					HW_TN_MAX_TIMEOUT_S, &o.timeout_s))
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
	if (!*o.dir) {
		hw_cli_err("testnet up: --dir: must not be empty");
		return 2;
	}
	/* Ctrl-C while starting stops what was started. */
	catch_interrupts(1);
	rc = hw_tn_up(&o, &tn);
	catch_interrupts(0);
	if (rc)
		return interrupted ? 130 : 1;
	if (hw_cli_opts.json) {
		json_t *j = hw_tn_to_json(tn);
		hw_cli_print_json(j);
		json_decref(j);
	} else {
		print_summary(tn);
	}
	free(tn);
	return 0;
}

/* "yes", "NO", or "-" for null (nothing to ask). */
static const char *yes_no(json_t *v)
{
	return json_is_null(v) ? "-" : json_is_true(v) ? "yes" : "NO";
}

/* The ALIVE column: yes, NO, or what happened to it. */
static const char *alive_word(json_t *o)
{
	const char *st = hw_cli_str(o, "state");

	if (json_is_true(json_object_get(o, "alive")))
		return strcmp(st, "stopped") ? "yes" : "stopped";
	return strcmp(st, "killed") ? "NO" : "killed";
}

static void print_status_row(json_t *o)
{
	char tps[32] = "-";

	if (json_is_integer(json_object_get(o, "transports")))
		snprintf(tps, sizeof(tps), "%lld/%lld up",
			 (long long)json_integer_value(
				 json_object_get(o, "transports_up")),
			 (long long)json_integer_value(
				 json_object_get(o, "transports")));
	printf("%-9s  %-9s  %7lld  %-7s  %-3s  %-10s  %-4s  %-22s  %s\n",
	       hw_cli_str(o, "name"), hw_cli_str(o, "role"),
	       (long long)json_integer_value(json_object_get(o, "pid")),
	       alive_word(o), yes_no(json_object_get(o, "answers")), tps,
	       yes_no(json_object_get(o, "chat_answers")),
	       hw_cli_str(o, "url")[0] ? hw_cli_str(o, "url")
				       : hw_cli_str(o, "addr"),
	       hw_cli_str(o, "pk"));
}

/* What status has to say about a process under the table: killed by
 * 'testnet kill', or a copy of it started by hand. */
static void print_status_note(json_t *out, json_t *o)
{
	json_t *copy = json_object_get(o, "copy_pid");
	time_t at = (time_t)json_integer_value(json_object_get(o,
								"killed_at"));
	char when[64];

	if (hw_cli_str(o, "killed")[0]) {
		strftime(when, sizeof(when), "%H:%M:%S", localtime(&at));
		printf("%s got %s from 'hopwire testnet kill' at %s%s; "
		       "'hopwire testnet restart %s --dir %s' brings it "
		       "back\n",
		       hw_cli_str(o, "name"), hw_cli_str(o, "killed"), when,
		       json_is_true(json_object_get(o, "alive"))
			       ? " (it still runs)"
			       : "",
		       hw_cli_str(o, "name"), hw_cli_str(out, "dir"));
	}
	if (json_is_integer(copy))
		printf("%s also runs as pid %lld, started by hand with its "
		       "command: not the testnet's; 'hopwire testnet restart "
		       "%s --dir %s' replaces it\n",
		       hw_cli_str(o, "name"),
		       (long long)json_integer_value(copy),
		       hw_cli_str(o, "name"), hw_cli_str(out, "dir"));
}

static void print_status(json_t *out)
{
	time_t created = (time_t)json_integer_value(
		json_object_get(out, "created"));
	char when[64];
	json_t *o;
	size_t i;

	if (hw_cli_opts.json) {
		hw_cli_print_json(out);
		return;
	}
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S",
		 localtime(&created));
	printf("testnet in %s (%s, started %s, %d visors)\n",
	       hw_cli_str(out, "dir"), hw_cli_str(out, "state"), when,
	       (int)json_integer_value(json_object_get(out, "visors")));
	printf("%-9s  %-9s  %7s  %-7s  %-3s  %-10s  %-4s  %-22s  %s\n",
	       "NAME", "ROLE", "PID", "ALIVE", "API", "TRANSPORTS", "CHAT",
	       "ADDRESS", "PK");
	json_array_foreach(json_object_get(out, "processes"), i, o)
		print_status_row(o);
	json_array_foreach(json_object_get(out, "processes"), i, o)
		print_status_note(out, o);
	if (!json_is_true(json_object_get(out, "ok")))
		printf("not everything runs: read the logs in %s/logs\n",
		       hw_cli_str(out, "dir"));
}

static int tn_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir = HW_TN_DEFAULT_DIR;
	json_t *out;
	int c, ok;

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
	if (hw_tn_status(dir, &ops, &out))
		return 1;
	print_status(out);
	ok = json_is_true(json_object_get(out, "ok"));
	json_decref(out);
	return ok ? 0 : 1;
}

static void restart_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet restart NAME [--dir DIR] "
		"[--timeout SECONDS] [--json]\n\n"
		"Restarts one process of the testnet running in DIR (default "
		HW_TN_DEFAULT_DIR "); NAME is\none that 'hopwire testnet "
		"status' shows: discovery, relay, setup, or a visor\nv1..vN. "
		"It stops the process (SIGTERM to its process group, SIGKILL "
		"after\n%d s; a visor's apps, and a copy of the process "
		"started by hand with the\ncommand its log shows, go too), "
		"starts it again with exactly the command,\nenvironment and "
		"working folder up used, its output appended to the same\n"
		"DIR/logs/NAME.log, records the new pid in DIR/testnet.json "
		"(under the\ntestnet's lock), and waits (--timeout, default "
		"%d s) until it answers as up\nchecks it:\n"
		"  discovery  its /health answers\n"
		"  relay      it takes TCP connections and is registered in "
		"discovery\n"
		"  setup      its control API answers and it is registered in "
		"discovery\n"
		"  vI         the same, and its chat app answers\n"
		"Then it prints the old and the new pid and how long stopping "
		"and starting\ntook (--json: as JSON). A restarted visor's "
		"transports come back by\nthemselves: persistent transports "
		"are redialed, at most %d s apart.\n\n"
		"The visors' apps (" HW_TN_CHAT_APP ", " HW_TN_HELLO_APP
		") are not processes of the testnet: each\nvisor's launcher "
		"starts and restarts its own, so an app name is refused; use\n"
		"'hopwire --visor DIR/vI/visor.sock app stop|start APP', or "
		"restart the visor.\nRestart is the way to restart a process "
		"of a testnet: status and down see\nthe process it starts.\n\n"
		"Exit status: 0 when it answers; 1 when DIR holds no running "
		"testnet, NAME\nis not one of its processes (the names are "
		"listed), or the process does not\ncome up (the last lines of "
		"its log are shown; if it runs it stays recorded,\nand down "
		"stops it); 2 for bad arguments.\n",
		HW_TN_GRACE_MS / 1000, HW_TN_RESTART_TIMEOUT_S,
		HW_TN_REDIAL_MAX_MS / 1000);
}

static void kill_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire testnet kill NAME [--signal SIG] [--dir DIR] "
		"[--json]\n\n"
		"For tests: sends SIG (default KILL; a name such as TERM or "
		"SIGTERM, or a\nnumber) to process NAME of the testnet in DIR "
		"(default " HW_TN_DEFAULT_DIR "), the process\nalone, not its "
		"group (a visor's apps stay, as after a crash), records in\n"
		"DIR/testnet.json that it was killed, and waits up to %d s for "
		"it to end.\n'hopwire testnet status' then shows it as killed, "
		"and 'hopwire testnet\nrestart NAME' brings it back. NAME is "
		"one that status shows; app names are\nrefused as by "
		"restart.\n\n"
		"Exit status: 0 when the signal was sent; 1 when DIR holds no "
		"testnet, NAME\nis not one of its processes, or it does not "
		"run; 2 for bad arguments.\n",
		HW_TN_KILL_WAIT_MS / 1000);
}

/* The one NAME of restart and kill, after the options. */
static const char *one_name(const char *cmd, int argc, char **argv)
{
	if (optind == argc) {
		hw_cli_err("testnet %s: which process? (a NAME that 'hopwire "
			   "testnet status' shows; see 'hopwire testnet %s "
			   "--help')", cmd, cmd);
		return NULL;
	}
	if (optind + 1 != argc) {
		hw_cli_err("testnet %s: unexpected argument '%s' (one NAME; "
			   "see 'hopwire testnet %s --help')", cmd,
			   argv[optind + 1], cmd);
		return NULL;
	}
	return argv[optind];
}

static void print_restarted(const struct hw_tn_restarted *r)
{
	size_t others = r->stop.found - (size_t)r->stop.leaders;

	if (hw_cli_opts.json) {
		json_t *j = json_pack("{s:s, s:i, s:b, s:s?, s:I, s:I, s:i, "
				      "s:i, s:I, s:I, s:I, s:s, s:s}",
				      "name", r->name, "old_pid",
				      (int)r->old_pid, "was_running",
				      r->was_running, "killed",
				      r->killed[0] ? r->killed : NULL,
				      "stopped", (json_int_t)r->stop.found,
				      "sigkill", (json_int_t)r->stop.killed,
				      "pid", (int)r->pid, "restarts",
				      r->restarts, "stop_ms",
				      (json_int_t)r->stop_ms, "start_ms",
				      (json_int_t)r->start_ms, "total_ms",
				      (json_int_t)r->total_ms, "ready",
				      r->ready, "log", r->log);
		hw_cli_print_json(j);
		json_decref(j);
		return;
	}
	printf("restarted %s in %.2f s: pid %d -> %d\n", r->name,
	       (double)r->total_ms / 1000, (int)r->old_pid, (int)r->pid);
	if (r->was_running)
		printf("  stopped  pid %d", (int)r->old_pid);
	else
		printf("  stopped  nothing of it ran (pid %d %s)",
		       (int)r->old_pid, r->killed[0] ? "was killed" :
		       "was gone");
	if (others)
		printf("%s%zu processes it started or left behind",
		       r->was_running ? " and " : "; stopped ", others);
	printf(" in %.2f s%s\n", (double)r->stop_ms / 1000,
	       r->stop.killed ? " (SIGKILL after SIGTERM's grace)" : "");
	printf("  started  pid %d; ready after %.2f s: %s\n", (int)r->pid,
	       (double)r->start_ms / 1000, r->ready);
	printf("  log      %s\n", r->log);
}

static int tn_restart(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct hw_tn_restart_opts o = {
		.dir = HW_TN_DEFAULT_DIR,
		.timeout_s = HW_TN_RESTART_TIMEOUT_S,
		.interrupted = &interrupted,
		.ops = &ops,
	};
	struct hw_tn_restarted r;
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': o.dir = optarg; break;
		case 't':
			if (parse_count("restart", "--timeout", optarg, 1,
					HW_TN_MAX_TIMEOUT_S, &o.timeout_s))
				return 2;
			break;
		case 'h': restart_usage(stdout); return 0;
		default: return bad_option("restart", c, argv);
		}
	}
	if (!(o.name = one_name("restart", argc, argv)))
		return 2;
	catch_interrupts(1);
	rc = hw_tn_restart(&o, &r);
	catch_interrupts(0);
	if (rc)
		return interrupted ? 130 : 1;
	print_restarted(&r);
	return 0;
}

static int tn_kill(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"signal", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir = HW_TN_DEFAULT_DIR, *name;
	struct hw_tn_killed k;
	int c, sig = SIGKILL;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 's':
			if (!(sig = hw_tn_signal_parse(optarg))) {
				hw_cli_err("testnet kill: --signal: '%s' is "
					   "not a signal (a name such as "
					   "KILL, TERM, SIGSTOP, or a "
					   "number)", optarg);
				return 2;
			}
			break;
		case 'h': kill_usage(stdout); return 0;
		default: return bad_option("kill", c, argv);
		}
	}
	if (!(name = one_name("kill", argc, argv)))
		return 2;
	if (hw_tn_kill(dir, name, sig, &ops, &k))
		return 1;
	if (hw_cli_opts.json) {
		json_t *j = json_pack("{s:s, s:i, s:s, s:b, s:i}", "name",
				      k.name, "pid", (int)k.pid, "signal",
				      k.signal, "ended", k.ended, "waited_ms",
				      k.waited_ms);
		hw_cli_print_json(j);
		json_decref(j);
		return 0;
	}
	printf("sent %s to %s (pid %d): %s\n", k.signal, k.name, (int)k.pid,
	       k.ended ? "it is gone" : "it still runs");
	printf("recorded in %s/testnet.json; 'hopwire testnet restart %s "
	       "--dir %s' brings it back\n", k.dir, k.name, k.dir);
	return 0;
}

static void print_stopped(const struct hw_tn_stopped *st)
{
	printf("stopped %zu processes", st->found);
	if (st->found > (size_t)st->leaders)
		printf(" (%d of the testnet and %zu apps they started)",
		       st->leaders, st->found - (size_t)st->leaders);
	printf("\n");
	if (st->gone)
		printf("%d of the testnet's %d processes %s already gone: %s\n",
		       st->gone, st->nprocs, st->gone == 1 ? "was" : "were",
		       st->gone_names);
	if (st->killed)
		printf("%zu did not stop within %d s of SIGTERM and were "
		       "killed\n", st->killed, HW_TN_GRACE_MS / 1000);
	printf("keys, configs and logs are kept in %s\n", st->dir);
}

static int tn_down(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir = HW_TN_DEFAULT_DIR;
	struct hw_tn_stopped st;
	int c;

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
	if (hw_tn_down(dir, &ops, &st))
		return 1;
	print_stopped(&st);
	return 0;
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
	if (!strcmp(argv[1], "restart"))
		return tn_restart(argc - 1, argv + 1);
	if (!strcmp(argv[1], "kill"))
		return tn_kill(argc - 1, argv + 1);
	if (!strcmp(argv[1], "down"))
		return tn_down(argc - 1, argv + 1);
	if (wants_help(argc, argv)) {
		testnet_usage(stdout);
		return 0;
	}
	hw_cli_err("unknown testnet command '%s' (up, status, restart, kill, "
		   "down; see 'hopwire testnet --help')", argv[1]);
	return 2;
}
