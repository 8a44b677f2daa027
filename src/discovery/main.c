/* hopwire-discovery: the discovery service (docs/discovery.md). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "discovery/server.h"
#include "discovery/store.h"
#include "util/addr.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/version.h"

#define DEFAULT_LISTEN "127.0.0.1:9090"
#define DEFAULT_STORE "sqlite:./discovery.db"
#define MAX_TTL_S (365u * 24 * 3600)
#define MAX_WINDOW_S (24u * 3600)

static struct hw_disc_server *server;
static uv_signal_t sigint, sigterm;

static void on_signal(uv_signal_t *s, int signum)
{
	hw_log(HW_LOG_INFO, "discovery", "%s: stopping",
	       signum == SIGINT ? "SIGINT" : "SIGTERM");
	hw_disc_server_free(server);
	server = NULL;
	uv_close((uv_handle_t *)&sigint, NULL);
	uv_close((uv_handle_t *)&sigterm, NULL);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire-discovery [--listen HOST:PORT] [--store SPEC] "
		"[--ttl SECONDS]\n"
		"                         [--ts-window SECONDS] [--threads N] "
		"[--log-level L]\n"
		"\n"
		"Runs the Hopwire discovery service in the foreground: visor "
		"and relay\nentries, the transport registry, the route finder "
		"and the service\nregistry over HTTP/JSON (docs/discovery.md)."
		"\n\n"
		"  --listen HOST:PORT   address to serve on (default %s)\n"
		"  --store SPEC         where entries live (default %s):\n"
		"                         sqlite:PATH       one SQLite file, "
		"created if missing\n"
		"                         sqlite::memory:   in memory, lost at "
		"exit\n"
		"                         redis://HOST:PORT[/DB]  a Redis "
		"server that several\n"
		"                                           discovery replicas "
		"may share\n"
		"  --ttl SECONDS        entries expire this long after their "
		"last write\n"
		"                       (default %d)\n"
		"  --ts-window SECONDS  writes whose ts is further than this "
		"from our clock\n"
		"                       are refused as stale (default %d)\n"
		"  --threads N          HTTP worker threads, 1..%d (default "
		"%d)\n"
		"  --log-level L        debug, info, warn or error (default "
		"info)\n"
		"  --version            print the version\n"
		"\n"
		"Logs go to stderr; SIGINT or SIGTERM stops it cleanly.\n",
		DEFAULT_LISTEN, DEFAULT_STORE, HW_DISC_DEFAULT_TTL_S,
		HW_DISC_DEFAULT_TS_WINDOW_S, HW_DISC_MAX_THREADS,
		HW_DISC_DEFAULT_THREADS);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"store", required_argument, NULL, 's'},
		{"ttl", required_argument, NULL, 't'},
		{"ts-window", required_argument, NULL, 'w'},
		{"threads", required_argument, NULL, 'T'},
		{"log-level", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct hw_disc_server_config cfg = {
		.listen = DEFAULT_LISTEN,
		.ttl_s = HW_DISC_DEFAULT_TTL_S,
		.ts_window_s = HW_DISC_DEFAULT_TS_WINDOW_S,
		.threads = HW_DISC_DEFAULT_THREADS,
	};
	enum hw_log_level level = HW_LOG_INFO;
	const char *spec = DEFAULT_STORE;
	struct hw_dstore *store = NULL;
	char err[1024], host[HW_HOST_MAX];
	uint16_t port;
	unsigned long long v;
	uv_loop_t loop;
	int c, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (hw_addr_split(optarg, host, &port)) {
				fprintf(stderr, "hopwire-discovery: --listen: "
					"'%s' is not HOST:PORT\n", optarg);
				return 2;
			}
			cfg.listen = optarg;
			break;
		case 's':
			spec = optarg;
			break;
		case 't':
			if (hw_parse_uint(optarg, 1, MAX_TTL_S, &v)) {
				fprintf(stderr, "hopwire-discovery: --ttl: '%s' "
					"is not a number of seconds in 1..%u\n",
					optarg, MAX_TTL_S);
				return 2;
			}
			cfg.ttl_s = (unsigned)v;
			break;
		case 'w':
			if (hw_parse_uint(optarg, 1, MAX_WINDOW_S, &v)) {
				fprintf(stderr, "hopwire-discovery: "
					"--ts-window: '%s' is not a number of "
					"seconds in 1..%u\n", optarg,
					MAX_WINDOW_S);
				return 2;
			}
			cfg.ts_window_s = (unsigned)v;
			break;
		case 'T':
			if (hw_parse_uint(optarg, 1, HW_DISC_MAX_THREADS,
					  &v)) {
				fprintf(stderr, "hopwire-discovery: --threads: "
					"'%s' is not a number in 1..%d\n",
					optarg, HW_DISC_MAX_THREADS);
				return 2;
			}
			cfg.threads = (unsigned)v;
			break;
		case 'L':
			if (hw_log_level_parse(optarg, &level)) {
				fprintf(stderr, "hopwire-discovery: "
					"--log-level: '%s' is not debug, info, "
					"warn or error\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("hopwire-discovery %s\n", HW_VERSION);
			return 0;
		case ':':
			fprintf(stderr, "hopwire-discovery: %s needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "hopwire-discovery: unknown option "
				"'%s' (see --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "hopwire-discovery: unexpected argument '%s' "
			"(see --help)\n", argv[optind]);
		return 2;
	}

	hw_log_to_stderr(level);
	signal(SIGPIPE, SIG_IGN);
	/* Signals are caught before any thread starts: a SIGTERM during
	 * start-up waits for the loop and stops the server cleanly. */
	uv_loop_init(&loop);
	uv_signal_init(&loop, &sigint);
	uv_signal_init(&loop, &sigterm);
	uv_signal_start(&sigint, on_signal, SIGINT);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	rc = hw_dstore_new(&store, spec, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "hopwire-discovery: --store: %s\n", err);
		goto fail;
	}
	/* The server owns the store from here, also when it fails. */
	rc = hw_disc_server_new(&server, &cfg, store, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "hopwire-discovery: --listen: %s\n", err);
		goto fail;
	}
	hw_log(HW_LOG_INFO, "discovery",
	       "hopwire-discovery %s listening on %s (port %u), store %s, "
	       "ttl %u s, ts window %u s, %u threads",
	       HW_VERSION, cfg.listen, hw_disc_server_port(server), spec,
	       cfg.ttl_s, cfg.ts_window_s, cfg.threads);
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&loop);
	if (rc) {
		hw_log(HW_LOG_ERROR, "discovery",
		       "handles left open at exit: %s", uv_strerror(rc));
		return 1;
	}
	hw_log(HW_LOG_INFO, "discovery", "stopped");
	return 0;
fail:
	uv_close((uv_handle_t *)&sigint, NULL);
	uv_close((uv_handle_t *)&sigterm, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return 1;
}
