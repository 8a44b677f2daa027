/* hopwire config init */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "testnet/node.h"
#include "util/addr.h"
#include "util/err.h"

static void config_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire config init --out FILE [--key KEYFILE] "
		"[--tcp-listen HOST:PORT]\n"
		"                           [--local-dir DIR] [--discovery URL]\n"
		"                           [--setup-node PK]... [--force]\n\n"
		"Writes a complete visor configuration to FILE. Paths are made "
		"absolute.\n"
		"  --key KEYFILE        identity to use; created (0600) if it "
		"does not exist\n"
		"                       (default: visor.key beside FILE)\n"
		"  --tcp-listen ADDR    where to accept transports (default "
		"0.0.0.0:7777;\n"
		"                       \"\" for none)\n"
		"  --local-dir DIR      control socket and state (default: "
		"local/ beside FILE)\n"
		"  --discovery URL      discovery service\n"
		"  --setup-node PK      a setup node this visor takes route "
		"rules from\n"
		"                       (repeatable)\n"
		"  --force              overwrite an existing FILE\n");
}

/* Absolute form of path (which may not exist yet). */
static int absolute(const char *path, char out[PATH_MAX])
{
	char cwd[PATH_MAX];
	if (path[0] == '/')
		return snprintf(out, PATH_MAX, "%s", path) >= PATH_MAX ? -1 : 0;
	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	return snprintf(out, PATH_MAX, "%s/%s", cwd, path) >= PATH_MAX ? -1
								        : 0;
}

/* dir/name where dir is the folder of file. */
static void beside(const char *file, const char *name, char out[PATH_MAX])
{
	const char *slash = strrchr(file, '/');
	snprintf(out, PATH_MAX, "%.*s/%s", (int)(slash - file), file, name);
}

/* Creates the folders leading to file (mode 0700 for new ones). */
static int make_parents(const char *file)
{
	char dir[PATH_MAX];
	char *p;

	snprintf(dir, sizeof(dir), "%s", file);
	if (!(p = strrchr(dir, '/')) || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int config_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{"out", required_argument, NULL, 'o'},
		{"key", required_argument, NULL, 'k'},
		{"tcp-listen", required_argument, NULL, 't'},
		{"local-dir", required_argument, NULL, 'l'},
		{"discovery", required_argument, NULL, 'd'},
		{"setup-node", required_argument, NULL, 's'},
		{"force", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *out = NULL, *key = NULL, *listen = NULL, *local = NULL,
		   *disc = NULL;
	char out_abs[PATH_MAX], key_abs[PATH_MAX], local_abs[PATH_MAX];
	char host[HW_HOST_MAX];
	char pk[HW_NODE_PK_HEXLEN + 1];
	uint16_t port;
	int force = 0, created, c, rc;
	json_t *cfg, *setup = json_array();

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:k:t:l:d:s:fh", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'k': key = optarg; break;
		case 't': listen = optarg; break;
		case 'l': local = optarg; break;
		case 'd': disc = optarg; break;
		case 's':
			if ((rc = hw_node_pk_check(optarg))) {
				hw_cli_err("config init: --setup-node: '%.80s': "
					   "%s", optarg, hw_strerror(rc));
				json_decref(setup);
				return 2;
			}
			json_array_append_new(setup, json_string(optarg));
			break;
		case 'f': force = 1; break;
		case 'h':
			config_usage(stdout);
			json_decref(setup);
			return 0;
		default: json_decref(setup); return 2;
		}
	}
	if (!out || optind != argc) {
		config_usage(stderr);
		json_decref(setup);
		return 2;
	}
	if (listen && listen[0] && hw_addr_split(listen, host, &port)) {
		hw_cli_err("config init: --tcp-listen: '%s' is not HOST:PORT",
			   listen);
		json_decref(setup);
		return 2;
	}
	if (absolute(out, out_abs) ||
	    (key && absolute(key, key_abs)) ||
	    (local && absolute(local, local_abs))) {
		hw_cli_err("config init: path too long");
		json_decref(setup);
		return 1;
	}
	if (!key)
		beside(out_abs, "visor.key", key_abs);
	if (!local)
		beside(out_abs, "local", local_abs);
	if (!force && access(out_abs, F_OK) == 0) {
		hw_cli_err("config init: %s exists (use --force to overwrite)",
			   out_abs);
		json_decref(setup);
		return 1;
	}
	if ((rc = make_parents(out_abs)) || (rc = make_parents(key_abs))) {
		hw_cli_err("config init: cannot create the folder of %s: %s",
			   out_abs, hw_strerror(rc));
		json_decref(setup);
		return 1;
	}
	/* Use the key if it is there and good; create it if absent. */
	if ((rc = hw_node_key_ensure(key_abs, pk, &created))) {
		hw_cli_err("config init: %s: %s", key_abs, hw_strerror(rc));
		json_decref(setup);
		return 1;
	}
	if (created)
		fprintf(stderr, "hopwire: created key file %s\n", key_abs);
	cfg = hw_node_config_default(key_abs, local_abs, listen, disc);
	if (cfg)
		json_object_set(json_object_get(cfg, "routing"), "setup_nodes",
				setup);
	rc = cfg ? json_dump_file(cfg, out_abs, JSON_INDENT(2)) : -1;
	json_decref(cfg);
	json_decref(setup);
	if (rc) {
		hw_cli_err("config init: cannot write %s", out_abs);
		return 1;
	}
	printf("%s\n", out_abs);
	return 0;
}

int hw_cli_config(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "init"))
		return config_init(argc - 1, argv + 1);
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		config_usage(stdout);
		return 0;
	}
	config_usage(stderr);
	return 2;
}
