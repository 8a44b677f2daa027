/* hopwire info, hopwire tp ..., hopwire ping: calls to the control API. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/parse.h"

#define ADD_TIMEOUT_MS 30000

static void human_ms(long long ms, char *out, size_t len)
{
	long long s = ms / 1000;
	if (s >= 86400)
		snprintf(out, len, "%lldd%lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(out, len, "%lldh%lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(out, len, "%lldm%llds", s / 60, s % 60);
	else
		snprintf(out, len, "%llds", s);
}

/* Refuses arguments a command does not take. */
static int no_more_args(int argc, char **argv, int from, const char *usage)
{
	if (from < argc) {
		hw_cli_err("unexpected argument '%s'\nusage: %s", argv[from],
			   usage);
		return 2;
	}
	return 0;
}

static int wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	return 0;
}

/* The addresses the mesh handshake learned (docs/mesh.md). */
static void print_mesh(json_t *m)
{
	const char *obs = hw_cli_str(m, "observed");

	if (!json_is_object(m))
		return;
	printf("configured  %s\n", hw_cli_str(m, "configured")[0]
					   ? hw_cli_str(m, "configured")
					   : "(none)");
	printf("observed    %s (by at least %lld peers)\n",
	       obs[0] ? obs : "(not yet)", hw_cli_num(m, "quorum"));
	printf("advertised  %s\n", hw_cli_str(m, "advertised")[0]
					   ? hw_cli_str(m, "advertised")
					   : "(nothing)");
}

static void print_network(json_t *n)
{
	json_t *e;
	size_t i;

	if (!hw_cli_str(n, "discovery")[0]) {
		printf("discovery   (none configured)\n");
	} else {
		printf("discovery   %s (%s)\n", hw_cli_str(n, "discovery"),
		       json_is_true(json_object_get(n, "registered"))
			       ? "registered"
			       : "not registered yet");
		if (hw_cli_str(n, "last_error")[0])
			printf("            last error: %s\n",
			       hw_cli_str(n, "last_error"));
	}
	json_array_foreach(json_object_get(n, "relays"), i, e)
		printf("relay       %s %s (%s, %lld streams)\n",
		       hw_cli_str(e, "relay"), hw_cli_str(e, "addr"),
		       json_is_true(json_object_get(e, "up")) ? "up" : "down",
		       hw_cli_num(e, "streams"));
}

int hw_cli_info(int argc, char **argv)
{
	static const char usage[] = "hopwire info [--json]";
	json_t *r;
	char up[32];
	int rc;

	if (wants_help(argc, argv)) {
		printf("usage: %s\n\nShows the visor's public key, version, "
		       "uptime, addresses and transport count.\n", usage);
		return 0;
	}
	if ((rc = no_more_args(argc, argv, 1, usage)) ||
	    (rc = hw_cli_call("GET", "/v1/info", NULL, 10000, &r)))
		return rc;
	if (hw_cli_opts.json) {
		hw_cli_print_json(r);
	} else {
		human_ms(hw_cli_num(r, "uptime_ms"), up, sizeof(up));
		printf("pk          %s\n", hw_cli_str(r, "pk"));
		printf("version     %s\n", hw_cli_str(r, "version"));
		printf("uptime      %s\n", up);
		printf("tcp         %s\n",
		       hw_cli_str(r, "tcp_addr")[0] ? hw_cli_str(r, "tcp_addr")
					     : "(not listening)");
		print_mesh(json_object_get(r, "mesh"));
		printf("control     %s\n", hw_cli_str(r, "control_socket"));
		printf("transports  %lld (%lld up)\n",
		       hw_cli_num(r, "transports"),
		       hw_cli_num(r, "transports_up"));
		print_network(json_object_get(r, "network"));
	}
	json_decref(r);
	return 0;
}

static int tp_ls(int argc, char **argv)
{
	static const char usage[] = "hopwire tp ls [--json]";
	json_t *r, *e;
	size_t i;
	int rc;

	if ((rc = no_more_args(argc, argv, 1, usage)) ||
	    (rc = hw_cli_call("GET", "/v1/transports", NULL, 10000, &r)))
		return rc;
	if (hw_cli_opts.json) {
		hw_cli_print_json(r);
		json_decref(r);
		return 0;
	}
	if (json_array_size(r) == 0)
		printf("no transports\n");
	else
		printf("%-32s  %-4s  %-7s  %-64s  %-21s  %7s  %9s  %9s  %s\n",
		       "ID", "TYPE", "STATE", "REMOTE PK", "ADDR", "UP",
		       "TX", "RX", "RTT");
	json_array_foreach(r, i, e) {
		char tx[16], rx[16], up[16] = "-", rtt[16] = "-";
		json_t *rt = json_object_get(e, "rtt_ms");
		hw_cli_human_bytes(hw_cli_num(e, "tx_bytes"), tx, sizeof(tx));
		hw_cli_human_bytes(hw_cli_num(e, "rx_bytes"), rx, sizeof(rx));
		if (json_object_get(e, "up_ms"))
			human_ms(hw_cli_num(e, "up_ms"), up, sizeof(up));
		if (json_is_number(rt))
			snprintf(rtt, sizeof(rtt), "%.3f ms",
				 json_number_value(rt));
		printf("%-32s  %-4s  %-7s  %-64s  %-21s  %7s  %9s  %9s  %s%s\n",
		       hw_cli_str(e, "id"), hw_cli_str(e, "type"),
		       hw_cli_str(e, "state"), hw_cli_str(e, "pk"),
		       hw_cli_str(e, "remote_addr")[0]
			       ? hw_cli_str(e, "remote_addr")
			       : hw_cli_str(e, "addr"),
		       up, tx, rx, rtt,
		       json_is_true(json_object_get(e, "persistent"))
			       ? "  persistent"
			       : "");
	}
	json_decref(r);
	return 0;
}

static int tp_add(int argc, char **argv)
{
	static const char usage[] =
		"hopwire tp add PK [--type tcp|relay] [--addr ADDR] "
		"[--persistent] [--json]";
	static const struct option opts[] = {
		{"type", required_argument, NULL, 't'},
		{"addr", required_argument, NULL, 'a'},
		{"persistent", no_argument, NULL, 'p'},
		{NULL, 0, NULL, 0},
	};
	const char *type = NULL, *addr = NULL;
	int persistent = 0, c, rc;
	json_t *body, *r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "t:a:p", opts, NULL)) != -1) {
		switch (c) {
		case 't': type = optarg; break;
		case 'a': addr = optarg; break;
		case 'p': persistent = 1; break;
		default: fprintf(stderr, "usage: %s\n", usage); return 2;
		}
	}
	if (optind + 1 != argc) {
		hw_cli_err("usage: %s", usage);
		return 2;
	}
	body = json_pack("{s:s, s:b}", "pk", argv[optind], "persistent",
			 persistent);
	if (type)
		json_object_set_new(body, "type", json_string(type));
	if (addr)
		json_object_set_new(body, "addr", json_string(addr));
	rc = hw_cli_call("POST", "/v1/transports", body, ADD_TIMEOUT_MS, &r);
	json_decref(body);
	if (rc)
		return rc;
	if (hw_cli_opts.json)
		hw_cli_print_json(r);
	else
		printf("transport %s up to %s (%s %s)%s\n", hw_cli_str(r, "id"),
		       hw_cli_str(r, "pk"), hw_cli_str(r, "type"),
		       /* A relay transport's remote end reads "relay KEY". */
		       !strcmp(hw_cli_str(r, "type"), "relay")
			       ? "through a relay"
		       : hw_cli_str(r, "remote_addr")[0]
			       ? hw_cli_str(r, "remote_addr")
			       : hw_cli_str(r, "addr"),
		       json_is_true(json_object_get(r, "persistent"))
			       ? ", persistent"
			       : "");
	json_decref(r);
	return 0;
}

static int tp_rm(int argc, char **argv)
{
	static const char usage[] = "hopwire tp rm ID";
	char path[128];
	json_t *r;
	int rc;

	if (argc != 2) {
		hw_cli_err("usage: %s", usage);
		return 2;
	}
	if (strlen(argv[1]) > 64 || strchr(argv[1], '/') ||
	    strchr(argv[1], '?')) {
		hw_cli_err("'%s' is not a transport ID (32 hex characters; "
			   "see 'hopwire tp ls')", argv[1]);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/transports/%s", argv[1]);
	if ((rc = hw_cli_call("DELETE", path, NULL, 10000, &r)))
		return rc;
	if (hw_cli_opts.json)
		hw_cli_print_json(r);
	else
		printf("removed transport %s\n", argv[1]);
	json_decref(r);
	return 0;
}

static int tp_throughput(int argc, char **argv)
{
	static const char usage[] =
		"hopwire tp throughput ID [--bytes SIZE] [--packet-size N] "
		"[--json]";
	static const struct option opts[] = {
		{"bytes", required_argument, NULL, 'b'},
		{"packet-size", required_argument, NULL, 's'},
		{NULL, 0, NULL, 0},
	};
	unsigned long long bytes = 256ull << 20, size = 16384;
	char path[128];
	json_t *body, *r;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "b:s:", opts, NULL)) != -1) {
		switch (c) {
		case 'b': if (hw_parse_bytes(optarg, 1, HW_CLI_SIZE_MAX,
					     &bytes))
				  goto bad;
			  break;
		case 's': if (hw_parse_uint(optarg, 1, LLONG_MAX, &size))
				  goto bad;
			  break;
		default: goto bad;
		}
	}
	if (optind + 1 != argc || strlen(argv[optind]) > 64 ||
	    strchr(argv[optind], '/'))
		goto bad;
	snprintf(path, sizeof(path), "/v1/transports/%s/throughput",
		 argv[optind]);
	body = json_pack("{s:I, s:I}", "bytes", (json_int_t)bytes,
			 "packet_size", (json_int_t)size);
	rc = hw_cli_call("POST", path, body, 600000, &r);
	json_decref(body);
	if (rc)
		return rc;
	if (hw_cli_opts.json)
		hw_cli_print_json(r);
	else
		printf("%lld bytes in %lld-byte packets: %.3f s, %.1f MB/s\n",
		       hw_cli_num(r, "bytes"), hw_cli_num(r, "packet_size"),
		       json_number_value(json_object_get(r, "seconds")),
		       json_number_value(json_object_get(r, "mbytes_per_s")));
	json_decref(r);
	return 0;
bad:
	hw_cli_err("usage: %s", usage);
	return 2;
}

static void tp_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire tp ls [--json]\n"
		"       hopwire tp add PK [--type tcp|relay] [--addr ADDR] "
		"[--persistent]\n"
		"       hopwire tp rm ID\n"
		"       hopwire tp throughput ID [--bytes SIZE] [--packet-size N]\n\n"
		"ls lists this visor's transports. add links to visor PK and "
		"waits until the\ntransport is up: tcp dials ADDR (HOST:PORT); "
		"relay goes through a relay\nserver both visors hold a "
		"session with (ADDR is RELAY_PK@HOST:PORT). Without\n--addr "
		"the visor looks PK up in discovery; without --type it uses "
		"tcp when PK\nhas a reachable address, else a relay. "
		"--persistent keeps the transport:\nre-dialed whenever it "
		"fails, also after restarts.\n"
		"rm closes a transport on both ends. throughput sends SIZE bytes "
		"(default 256M;\nsuffixes K, M, G) of data over a transport and "
		"prints the rate.\n");
}

int hw_cli_tp(int argc, char **argv)
{
	if (argc < 2 || wants_help(argc, argv)) {
		tp_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "ls"))
		return tp_ls(argc - 1, argv + 1);
	if (!strcmp(argv[1], "add"))
		return tp_add(argc - 1, argv + 1);
	if (!strcmp(argv[1], "rm"))
		return tp_rm(argc - 1, argv + 1);
	if (!strcmp(argv[1], "throughput"))
		return tp_throughput(argc - 1, argv + 1);
	hw_cli_err("unknown tp command '%s' (ls, add, rm, throughput)",
		   argv[1]);
	return 2;
}

int hw_cli_ping(int argc, char **argv)
{
	static const char usage[] =
		"hopwire ping PK [--count N] [--interval-ms N] [--json]";
	static const struct option opts[] = {
		{"count", required_argument, NULL, 'c'},
		{"interval-ms", required_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	unsigned long long count = 4, interval = 200;
	json_t *body, *r, *e;
	size_t i;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:i:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': if (hw_parse_uint(optarg, 1, 100, &count)) {
				  hw_cli_err("--count: 1 to 100");
				  return 2;
			  }
			  break;
		case 'i': if (hw_parse_uint(optarg, 0, 60000, &interval)) {
				  hw_cli_err("--interval-ms: 0 to 60000");
				  return 2;
			  }
			  break;
		case 'h':
			printf("usage: %s\n\nSends N pings (default 4) over the "
			       "transport to visor PK and prints\nthe round "
			       "trip times and min/avg/max.\n", usage);
			return 0;
		default: fprintf(stderr, "usage: %s\n", usage); return 2;
		}
	}
	if (optind + 1 != argc) {
		hw_cli_err("usage: %s", usage);
		return 2;
	}
	body = json_pack("{s:s, s:i, s:i}", "pk", argv[optind], "count",
			 (int)count, "interval_ms", (int)interval);
	rc = hw_cli_call("POST", "/v1/ping", body,
			 count * (interval + 2500) + 5000, &r);
	json_decref(body);
	if (rc)
		return rc;
	if (hw_cli_opts.json) {
		hw_cli_print_json(r);
	} else {
		printf("ping %s over transport %s\n", hw_cli_str(r, "pk"),
		       hw_cli_str(r, "transport"));
		json_array_foreach(json_object_get(r, "rtt_ms"), i, e)
			printf("  reply %zu: %.3f ms\n", i + 1,
			       json_number_value(e));
		printf("%lld sent, %lld lost", hw_cli_num(r, "sent"),
		       hw_cli_num(r, "lost"));
		if (json_object_get(r, "min_ms"))
			printf("; rtt min/avg/max = %.3f/%.3f/%.3f ms",
			       json_number_value(json_object_get(r, "min_ms")),
			       json_number_value(json_object_get(r, "avg_ms")),
			       json_number_value(json_object_get(r, "max_ms")));
		printf("\n");
	}
	rc = hw_cli_num(r, "lost") > 0 &&
	     hw_cli_num(r, "lost") == hw_cli_num(r, "sent");
	json_decref(r);
	return rc;
}
