/* hopwire-setup: the setup node, a visor in the setup role that builds
 * routes for visors that trust its key. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "setup/service.h"
#include "util/addr.h"
#include "util/log.h"
#include "util/version.h"
#include "visor/config.h"
#include "visor/visor.h"

#define PROG "hopwire-setup"

static struct hw_visor *visor;
static struct hw_setup_service *service;
static uv_signal_t sigint, sigterm;

static void on_signal(uv_signal_t *s, int signum)
{
	hw_log(HW_LOG_INFO, "setup", "%s: stopping",
	       signum == SIGINT ? "SIGINT" : "SIGTERM");
	/* The service answers its builds through the visor's transports,
	 * so it goes first. */
	hw_visor_set_setup(visor, NULL);
	hw_setup_service_free(service);
	service = NULL;
	hw_visor_free(visor);
	visor = NULL;
	uv_close((uv_handle_t *)&sigint, NULL);
	uv_close((uv_handle_t *)&sigterm, NULL);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " --key FILE --discovery URL [--tcp-listen "
		"HOST:PORT]\n"
		"                     [--dir DIR] [--log-level LEVEL]\n\n"
		"Runs a Hopwire setup node in the foreground: it reserves "
		"route IDs and\ninstalls rules on every hop of the routes "
		"visors ask it to build. Visors\ntrust it by its public key "
		"(hopwire config init --setup-node PK).\n\n"
		"  --key FILE          identity (hopwire keygen)\n"
		"  --discovery URL     discovery server (http:// or https://)\n"
		"  --tcp-listen ADDR   accept transports on HOST:PORT "
		"(default: none,\n"
		"                      reachable through a relay)\n"
		"  --dir DIR           state and control socket (default: "
		"the key file's\n"
		"                      folder + /setup-local)\n"
		"  --log-level LEVEL   debug, info, warn or error (default "
		"info)\n\n"
		"The control API is on DIR/visor.sock (hopwire --visor "
		"DIR/visor.sock tp ls).\nLogs go to stderr; SIGINT or SIGTERM "
		"stops it cleanly.\n");
}

/* path made absolute against the working directory. */
static int absolute(const char *path, char out[PATH_MAX])
{
	char cwd[PATH_MAX];

	if (path[0] == '/')
		return snprintf(out, PATH_MAX, "%s", path) < PATH_MAX ? 0 : -1;
	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	return snprintf(out, PATH_MAX, "%s/%s", cwd, path) < PATH_MAX ? 0 : -1;
}

/* The configuration a visor would read from a file, built from the
 * options, so every value goes through the visor's own checks. */
static int make_config(struct hw_config *cfg, const char *key,
		       const char *dir, const char *listen, const char *url,
		       const char *level)
{
	char key_abs[PATH_MAX], dir_abs[PATH_MAX], err[1024];
	json_t *root = NULL;
	char *text = NULL;
	int rc = -1;

	memset(cfg, 0, sizeof(*cfg));
	if (!realpath(key, key_abs)) {
		fprintf(stderr, PROG ": --key %s: %s\n", key, strerror(errno));
		goto out;
	}
	if (dir) {
		if (absolute(dir, dir_abs)) {
			fprintf(stderr, PROG ": --dir %s: path too long\n", dir);
			goto out;
		}
	} else {
		char *slash = strrchr(key_abs, '/');
		if (snprintf(dir_abs, sizeof(dir_abs), "%.*s/setup-local",
			     (int)(slash - key_abs), key_abs) >=
		    (int)sizeof(dir_abs)) {
			fprintf(stderr, PROG ": --key %s: path too long\n", key);
			goto out;
		}
	}
	root = hw_config_default(key_abs, dir_abs, listen, url);
	if (!root ||
	    json_object_set_new(root, "log_level", json_string(level)) ||
	    !(text = json_dumps(root, JSON_COMPACT))) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	if (hw_config_parse(cfg, PROG, text, strlen(text), err, sizeof(err))) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	rc = 0;
out:
	free(text);
	json_decref(root);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"key", required_argument, NULL, 'k'},
		{"discovery", required_argument, NULL, 'd'},
		{"tcp-listen", required_argument, NULL, 'l'},
		{"dir", required_argument, NULL, 'D'},
		{"log-level", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *key = NULL, *url = NULL, *listen = "", *dir = NULL;
	const char *level = "info";
	enum hw_log_level lvl;
	char host[HW_HOST_MAX], err[1024];
	struct hw_setup_service_params params;
	struct hw_config cfg;
	uint16_t port;
	uv_loop_t loop;
	int c, rc;

	/* As in hopwire-visor: discovery calls hold thread-pool threads. */
	setenv("UV_THREADPOOL_SIZE", "8", 0);

	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case 'd': url = optarg; break;
		case 'l': listen = optarg; break;
		case 'D': dir = optarg; break;
		case 'L': level = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf(PROG " %s\n", HW_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (!key || !url) {
		fprintf(stderr, PROG ": --%s is required\n",
			!key ? "key" : "discovery");
		usage(stderr);
		return 2;
	}
	if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
		fprintf(stderr, PROG ": --discovery '%s' is not an http:// or "
			"https:// URL\n", url);
		return 2;
	}
	if (listen[0] && hw_addr_split(listen, host, &port)) {
		fprintf(stderr, PROG ": --tcp-listen '%s' is not HOST:PORT\n",
			listen);
		return 2;
	}
	if (hw_log_level_parse(level, &lvl)) {
		fprintf(stderr, PROG ": --log-level '%s' is not debug, info, "
			"warn or error\n", level);
		return 2;
	}
	if (make_config(&cfg, key, dir, listen, url, level)) {
		hw_config_free(&cfg);
		return 1;
	}
	hw_log_to_stderr(cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&loop);
	if ((rc = hw_visor_new(&visor, &loop, &cfg, err, sizeof(err)))) {
		fprintf(stderr, PROG ": %s\n", err);
		hw_config_free(&cfg);
		uv_run(&loop, UV_RUN_DEFAULT);
		uv_loop_close(&loop);
		return 1;
	}
	hw_config_free(&cfg);
	hw_visor_setup_params(visor, &params);
	if ((rc = hw_setup_service_new(&service, &params))) {
		fprintf(stderr, PROG ": setup service: %s\n", strerror(-rc));
		hw_visor_free(visor);
		uv_run(&loop, UV_RUN_DEFAULT);
		uv_loop_close(&loop);
		return 1;
	}
	hw_visor_set_setup(visor, service);
	hw_log(HW_LOG_INFO, "setup", "setup node ready");
	uv_signal_init(&loop, &sigint);
	uv_signal_init(&loop, &sigterm);
	uv_signal_start(&sigint, on_signal, SIGINT);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&loop);
	if (rc) {
		hw_log(HW_LOG_ERROR, "setup", "handles left open at exit: %s",
		       uv_strerror(rc));
		return 1;
	}
	hw_log(HW_LOG_INFO, "setup", "stopped");
	return 0;
}
