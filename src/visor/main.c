/* hopwire-visor: the node daemon. */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "util/log.h"
#include "util/version.h"
#include "visor/config.h"
#include "visor/visor.h"

static struct hw_visor *visor;
static uv_signal_t sigint, sigterm;

static void on_signal(uv_signal_t *s, int signum)
{
	hw_log(HW_LOG_INFO, "visor", "%s: stopping",
	       signum == SIGINT ? "SIGINT" : "SIGTERM");
	hw_visor_free(visor);
	visor = NULL;
	uv_close((uv_handle_t *)&sigint, NULL);
	uv_close((uv_handle_t *)&sigterm, NULL);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: hopwire-visor [--config FILE]\n\n"
		   "Runs a Hopwire visor in the foreground with the "
		   "configuration in FILE\n(default: hopwire.json; "
		   "create one with 'hopwire config init').\nLogs go to "
		   "stderr; SIGINT or SIGTERM stops it cleanly.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *path = "hopwire.json";
	struct hw_config cfg;
	char err[1024];
	uv_loop_t loop;
	int c, rc;

	/* Discovery calls hold a thread-pool thread for up to their timeout;
	 * more threads than libuv's 4 keep state-file writes and name
	 * lookups from queueing behind a slow discovery server. */
	setenv("UV_THREADPOOL_SIZE", "8", 0);

	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("hopwire-visor %s\n", HW_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "hopwire-visor: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (hw_config_load(&cfg, path, err, sizeof(err))) {
		fprintf(stderr, "hopwire-visor: config %s: %s\n", path, err);
		hw_config_free(&cfg);
		return 1;
	}
	hw_log_to_stderr(cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	/* Record buffers (up to 128 KiB) come and go with every burst of
	 * route data: keep them on the heap rather than mmap-ing and
	 * faulting in fresh pages each time. */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	mallopt(M_TRIM_THRESHOLD, 8 << 20);
	uv_loop_init(&loop);
	if ((rc = hw_visor_new(&visor, &loop, &cfg, err, sizeof(err)))) {
		fprintf(stderr, "hopwire-visor: %s\n", err);
		hw_config_free(&cfg);
		uv_run(&loop, UV_RUN_DEFAULT);
		uv_loop_close(&loop);
		return 1;
	}
	hw_config_free(&cfg);
	uv_signal_init(&loop, &sigint);
	uv_signal_init(&loop, &sigterm);
	uv_signal_start(&sigint, on_signal, SIGINT);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&loop);
	if (rc) {
		hw_log(HW_LOG_ERROR, "visor", "handles left open at exit: %s",
		       uv_strerror(rc));
		return 1;
	}
	hw_log(HW_LOG_INFO, "visor", "stopped");
	return 0;
}
