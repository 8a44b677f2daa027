/* hopwire-chat: person-to-person messages between visors (docs/chat.md).
 *
 *   hopwire-chat [--http HOST:PORT] [--db FILE] [--expire DURATION]
 *
 * Started by the visor (port 1 from its config) or by hand with
 * HOPWIRE_APP_SOCKET. Keeps the history in SQLite and serves a web page
 * and a JSON API. Stops on SIGTERM/SIGINT (exit 0) or when the visor
 * closes the app channel (exit 0); exits 1 when it cannot start. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"

#define DEFAULT_HTTP "127.0.0.1:8001"
#define DEFAULT_DB "chat.db"
#define DEFAULT_EXPIRE "24h"
#define EXPIRE_MIN_MS 1000LL
#define EXPIRE_MAX_MS (365LL * 24 * 3600 * 1000)
#define ERR_MAX 768

static int signal_pipe[2] = {-1, -1};

void hw_chat_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line: lines of several threads do not mix. */
	fprintf(stderr, "hopwire-chat: %s\n", line);
}

int64_t hw_chat_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t hw_chat_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int hw_chat_pk_ok(const char *s, char *out)
{
	size_t i;

	for (i = 0; i < HW_APP_PK_HEX; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		      (c >= 'A' && c <= 'F')))
			return 0;
	}
	if (s[HW_APP_PK_HEX])
		return 0;
	if (out) {
		for (i = 0; i < HW_APP_PK_HEX; i++)
			out[i] = (char)(s[i] >= 'A' && s[i] <= 'F'
						? s[i] - 'A' + 'a' : s[i]);
		out[HW_APP_PK_HEX] = '\0';
	}
	return 1;
}

static void on_signal(int sig)
{
	int saved = errno;
	char c = (char)sig;

	/* Nothing to do if the pipe is full: it is readable already. */
	if (write(signal_pipe[1], &c, 1) < 0)
		(void)0;
	errno = saved;
}

static int setup_signals(void)
{
	struct sigaction sa = {0};

	if (pipe2(signal_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGTERM, &sa, NULL) < 0 ||
	    sigaction(SIGINT, &sa, NULL) < 0)
		return -errno;
	/* A loop or HTTP client that went away shows as EPIPE, not a
	 * signal that ends the process. */
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -errno;
	return 0;
}

/* Parses a duration: a number and a unit, ms, s, m, h or d ("90s",
 * "24h"), 1 s .. 365 d. */
static int parse_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
		     {"d", 86400000}};
	int64_t v = 0;
	size_t i;

	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > EXPIRE_MAX_MS)
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (i == 0)
		return -EINVAL;
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		if (strcmp(s + i, units[u].unit))
			continue;
		if (v > EXPIRE_MAX_MS / units[u].ms)
			return -ERANGE;
		v *= units[u].ms;
		if (v < EXPIRE_MIN_MS || v > EXPIRE_MAX_MS)
			return -ERANGE;
		*ms = v;
		return 0;
	}
	return -EINVAL;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire-chat [--http HOST:PORT] [--db FILE] "
		"[--expire DURATION]\n"
		"\n"
		"Chat with other visors' chat apps (port %d), with a web page "
		"and a JSON API.\n"
		"\n"
		"  --http HOST:PORT  serve the page and API here (default "
		DEFAULT_HTTP ")\n"
		"  --db FILE         the history, SQLite (default " DEFAULT_DB
		" in the working directory)\n"
		"  --expire DURATION a message not delivered by then fails "
		"(default " DEFAULT_EXPIRE ";\n"
		"                    a number and ms, s, m, h or d: 90s, 15m, "
		"7d; 1s..365d)\n"
		"  --help            show this and exit\n"
		"\n"
		"Normally started by the visor (its config's \"apps\"); by "
		"hand, set\nHOPWIRE_APP_SOCKET to the visor's app socket "
		"(LOCAL_DIR/apps.sock).\n",
		HW_CHAT_PORT);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"http", required_argument, NULL, 'H'},
		{"db", required_argument, NULL, 'd'},
		{"expire", required_argument, NULL, 'e'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *http_addr = DEFAULT_HTTP, *db_path = DEFAULT_DB;
	struct hw_app_config cfg = {.name = "chat",
				    .version = HW_CHAT_VERSION};
	struct hw_chat_store *st = NULL;
	struct hw_app *app = NULL;
	struct hw_chat_net *net = NULL;
	struct hw_chat_http *http = NULL;
	char err[ERR_MAX] = "";
	int64_t expire_ms = 0;
	int c, rc, status = 1;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			http_addr = optarg;
			break;
		case 'd':
			db_path = optarg;
			break;
		case 'e':
			if (parse_duration(optarg, &expire_ms)) {
				fprintf(stderr, "hopwire-chat: --expire '%s': a "
					"duration of 1s..365d expected, a "
					"number and ms, s, m, h or d (90s, "
					"24h)\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hopwire-chat: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!expire_ms && parse_duration(DEFAULT_EXPIRE, &expire_ms))
		return 2;
	if (!*db_path) {
		fprintf(stderr, "hopwire-chat: --db: must not be empty\n");
		return 2;
	}
	if ((rc = setup_signals())) {
		hw_chat_log("signals: %s", strerror(-rc));
		goto out;
	}
	if (hw_app_setup(&app, &cfg, err, sizeof(err))) {
		hw_chat_log("cannot connect to the visor: %s", err);
		goto out;
	}
	if (hw_chat_store_open(&st, db_path, err, sizeof(err))) {
		hw_chat_log("cannot open the history: %s", err);
		goto out;
	}
	if ((rc = hw_chat_net_new(&net, app, st, expire_ms))) {
		hw_chat_log("%s", strerror(-rc));
		goto out;
	}
	if (hw_chat_http_start(&http, http_addr, app, net, st, err,
			       sizeof(err))) {
		hw_chat_log("cannot serve HTTP: %s", err);
		goto out;
	}
	hw_chat_log("%s on port %u; page and API at http://%s/ (port %u); "
		    "history in %s; undelivered messages fail after %lld s",
		    hw_app_local_pk(app), hw_app_port(app), http_addr,
		    hw_chat_http_port(http), db_path,
		    (long long)(expire_ms / 1000));

	rc = hw_chat_net_run(net, signal_pipe[0]);
	if (rc == HW_CHAT_RUN_STOPPED) {
		hw_chat_log("stopping");
		status = 0;
	} else if (rc == HW_CHAT_RUN_CLOSED) {
		hw_chat_log("the visor closed the app channel: stopping");
		status = 0;
	} else {
		hw_chat_log("lost the visor's app channel: %s", strerror(-rc));
	}
out:
	/* No new dials; HTTP (joining its threads), then loops and the
	 * dials in progress, the channel and the history. */
	if (net)
		hw_chat_net_stop(net);
	hw_chat_http_stop(http);
	hw_chat_net_free(net);
	hw_app_close(app);
	hw_chat_store_close(st);
	if (signal_pipe[0] >= 0) {
		close(signal_pipe[0]);
		close(signal_pipe[1]);
	}
	return status;
}
