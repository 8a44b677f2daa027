/* hopwire: the command line of a Hopwire network. Local commands (keys,
 * config) work on files; every visor command is a call to the visor's
 * control API and nothing else. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/api_client.h"
#include "cli/cli.h"
#include "testnet/node.h"
#include "util/version.h"

struct hw_cli_opts hw_cli_opts;

static const struct hw_cli_command commands[] = {
	{"keygen", hw_cli_keygen, "create a new identity key file"},
	{"pk", hw_cli_pk, "print the public key of a key file"},
	{"config", hw_cli_config, "write a visor configuration (config init)"},
	{"info", hw_cli_info, "show the visor's key, addresses and uptime"},
	{"tp", hw_cli_tp, "list, add and remove transports (tp --help)"},
	{"ping", hw_cli_ping, "measure the round trip to a visor over its "
			      "transport"},
	{"route", hw_cli_route, "rules, paths, and route groups piped to "
				"stdin/stdout (route --help)"},
	{"app", hw_cli_app, "list, start and stop the visor's apps "
			    "(app --help)"},
	{"socks", hw_cli_socks, "SOCKS5 through an exit visor, or run an exit "
				"(socks --help)"},
	{"forward", hw_cli_forward, "forward TCP ports between visors, like "
				    "ssh -L (forward --help)"},
	{"vpn", hw_cli_vpn, "send this visor's IP traffic through another "
			    "visor, run a VPN server (vpn --help)"},
	{"testnet", hw_cli_testnet, "start, check and stop a test network on "
				    "loopback (testnet --help)"},
};

void hw_cli_err(const char *fmt, ...)
{
	va_list ap;
	fputs("hopwire: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void hw_cli_print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
}

/* The control socket: --visor, $HOPWIRE_VISOR, or the config's. */
static int find_socket(char out[PATH_MAX])
{
	const char *cfgpath = hw_cli_opts.config;
	char err[512];

	if (hw_cli_opts.visor || (hw_cli_opts.visor = getenv("HOPWIRE_VISOR"))) {
		snprintf(out, PATH_MAX, "%s", hw_cli_opts.visor);
		return 0;
	}
	if (!cfgpath)
		cfgpath = getenv("HOPWIRE_CONFIG");
	if (!cfgpath)
		cfgpath = "hopwire.json";
	if (hw_node_config_socket(cfgpath, out, err, sizeof(err))) {
		if (!hw_cli_opts.config && !getenv("HOPWIRE_CONFIG"))
			hw_cli_err("which visor? pass --visor SOCKET or "
				   "--config FILE (no usable ./hopwire.json: "
				   "%s)", err);
		else
			hw_cli_err("config %s: %s", cfgpath, err);
		return 1;
	}
	return 0;
}

int hw_cli_request(const char *method, const char *path, json_t *body,
		   long timeout_ms, long *status, json_t **resp)
{
	char sock[PATH_MAX], err[PATH_MAX + 128];

	*resp = NULL;
	*status = 0;
	if (find_socket(sock))
		return 1;
	if (hw_api_call(sock, method, path, body, timeout_ms, status, resp,
			err, sizeof(err))) {
		hw_cli_err("%s", err);
		return 1;
	}
	return 0;
}

int hw_cli_call(const char *method, const char *path, json_t *body,
		long timeout_ms, json_t **resp)
{
	long status = 0;
	json_t *r = NULL;
	int rc;

	*resp = NULL;
	if ((rc = hw_cli_request(method, path, body, timeout_ms, &status,
				 &r)))
		return rc;
	if (status >= 300) {
		const char *e = json_string_value(json_object_get(r, "error"));
		hw_cli_err("%s", e ? e : "the visor answered an error");
		json_decref(r);
		return 1;
	}
	*resp = r ? r : json_object();
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: hopwire [--visor SOCKET | --config FILE] COMMAND "
		   "[ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f,
		"\nVisor commands reach the visor's control socket: --visor "
		"SOCKET, else\n$HOPWIRE_VISOR, else the control socket named "
		"by --config FILE,\n$HOPWIRE_CONFIG or ./hopwire.json. Listings "
		"take --json.\n'hopwire COMMAND --help' tells more about a "
		"command.\n");
}

/* Takes --visor, --config and --json out of argv wherever they stand
 * (before or after the command), so each command parses only its own. */
static int take_global_opts(int *argc, char **argv)
{
	int out = 1;
	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		if (!strcmp(a, "--json")) {
			hw_cli_opts.json = 1;
			continue;
		}
		if (!strcmp(a, "--visor"))
			slot = &hw_cli_opts.visor;
		else if (!strcmp(a, "--config"))
			slot = &hw_cli_opts.config;
		else if (!strncmp(a, "--visor=", 8)) {
			hw_cli_opts.visor = a + 8;
			continue;
		} else if (!strncmp(a, "--config=", 9)) {
			hw_cli_opts.config = a + 9;
			continue;
		}
		if (slot) {
			if (i + 1 >= *argc) {
				hw_cli_err("%s needs a value", a);
				return -1;
			}
			*slot = argv[++i];
			continue;
		}
		argv[out++] = argv[i];
	}
	argv[out] = NULL;
	*argc = out;
	return 0;
}

int main(int argc, char **argv)
{
	/* config init has its own --config-free options; keygen/pk too. */
	if (take_global_opts(&argc, argv))
		return 2;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("hopwire %s\n", HW_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	hw_cli_err("unknown command '%s' (see 'hopwire --help')", argv[1]);
	return 2;
}
