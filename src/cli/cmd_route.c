/* hopwire route ...: rules and route groups through the control API, and
 * `route listen` / `route dial`, which pipe stdin and stdout through a
 * route group over the visor's stream socket (src/visor/routing.h), and
 * `route bench`, the visors' own throughput test over that socket. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/cli.h"
#include "util/parse.h"

static void route_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire route ls [--json]\n"
		"       hopwire route find PK [--k N] [--max-hops N] [--json]\n"
		"       hopwire route listen PORT [--discard]\n"
		"       hopwire route dial PK PORT [--via PK[,PK...]]\n"
		"       hopwire route bench PK PORT [--bytes SIZE] "
		"[--via PK[,PK...]]\n\n"
		"ls lists the routing rules on this visor (role, transport, "
		"age, bytes), its\nroute groups, and how the last groups of "
		"listen and dial\nended. find asks discovery's route "
		"finder for the K best paths (default 3)\nto visor PK, "
		"searching as deep as a route can be (16 hops) unless\n"
		"--max-hops says less.\n\nlisten accepts the first route "
		"group that arrives on PORT and pipes it to\nstdin/stdout; dial "
		"opens a route group to PORT on visor PK (through the\nvisors "
		"--via names, or a path the route finder picks) and pipes "
		"stdin/stdout\nthrough it, like netcat. The visor needs a setup "
		"node it trusts\n(routing.setup_nodes) and discovery. "
		"End of stdin closes the group. Both exit\n0 when the group "
		"ends in order, and 1 saying why when it fails (a dead\n"
		"route, a transport removed).\n\n"
		"bench measures a route group's throughput without a program "
		"in the way:\nthis visor sends SIZE bytes (default 256M; "
		"suffixes K, M, G) into a group\nto PORT on visor PK, whose "
		"visor discards them; PK's side runs\n`hopwire route listen "
		"PORT --discard`. Both print bytes, seconds and MB/s.\n");
}

static int route_ls(int argc, char **argv)
{
	json_t *rules, *groups, *ended, *e;
	size_t i;
	int rc;

	if (argc > 1) {
		hw_cli_err("usage: hopwire route ls [--json]");
		return 2;
	}
	if ((rc = hw_cli_call("GET", "/v1/rules", NULL, 10000, &rules)))
		return rc;
	if ((rc = hw_cli_call("GET", "/v1/groups", NULL, 10000, &groups))) {
		json_decref(rules);
		return rc;
	}
	if ((rc = hw_cli_call("GET", "/v1/groups/ended", NULL, 10000,
			      &ended))) {
		json_decref(rules);
		json_decref(groups);
		return rc;
	}
	if (hw_cli_opts.json) {
		json_t *o = json_pack("{s:O, s:O, s:O}", "rules", rules,
				      "groups", groups, "ended", ended);
		hw_cli_print_json(o);
		json_decref(o);
	} else {
		if (json_array_size(rules) == 0)
			printf("no rules\n");
		else
			printf("%-10s  %-12s  %-32s  %-10s  %9s  %12s\n",
			       "ID", "ROLE", "TRANSPORT", "NEXT ID", "AGE",
			       "BYTES");
		json_array_foreach(rules, i, e) printf(
			"%-10lld  %-12s  %-32s  %-10lld  %7.1f s  %12lld\n",
			hw_cli_num(e, "id"), hw_cli_str(e, "kind"),
			hw_cli_str(e, "transport"), hw_cli_num(e, "next_id"),
			(double)hw_cli_num(e, "age_ms") / 1000.0,
			hw_cli_num(e, "bytes"));
		json_array_foreach(groups, i, e) printf(
			"group %s -> %s  %s, %s, %lld bytes in, "
			"%lld out\n",
			hw_cli_str(e, "src"), hw_cli_str(e, "dst"),
			hw_cli_str(e, "role"), hw_cli_str(e, "state"),
			hw_cli_num(e, "bytes_in"), hw_cli_num(e, "bytes_out"));
		json_array_foreach(ended, i, e) printf(
			"ended group %lld %s %s, %.1f s ago: %s%s\n",
			hw_cli_num(e, "id"),
			strcmp(hw_cli_str(e, "role"), "initiator") ? "from"
								   : "to",
			hw_cli_str(e, "peer"),
			(double)hw_cli_num(e, "ago_ms") / 1000.0,
			json_is_string(json_object_get(e, "error")) ? "failed: "
								    : "closed",
			hw_cli_str(e, "error"));
	}
	json_decref(rules);
	json_decref(groups);
	json_decref(ended);
	return 0;
}

static int route_find(int argc, char **argv)
{
	static const struct option opts[] = {
		{"k", required_argument, NULL, 'k'},
		{"max-hops", required_argument, NULL, 'm'},
		{NULL, 0, NULL, 0},
	};
	const char *k = "3", *maxh = NULL; /* the visor's default: 16 */
	char path[256];
	json_t *r, *p, *t;
	size_t i, n;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "k:m:", opts, NULL)) != -1) {
		switch (c) {
		case 'k': k = optarg; break;
		case 'm': maxh = optarg; break;
		default: return 2;
		}
	}
	if (optind + 1 != argc || strlen(argv[optind]) > 64 ||
	    strspn(k, "0123456789") != strlen(k) ||
	    (maxh && (strspn(maxh, "0123456789") != strlen(maxh) ||
		      strlen(maxh) > 3)) ||
	    strlen(k) > 3) {
		hw_cli_err("usage: hopwire route find PK [--k N] "
			   "[--max-hops N]");
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/paths?pk=%s&k=%s%s%s", argv[optind],
		 k, maxh ? "&max_hops=" : "", maxh ? maxh : "");
	if ((rc = hw_cli_call("GET", path, NULL, 20000, &r)))
		return rc;
	if (hw_cli_opts.json) {
		hw_cli_print_json(r);
	} else {
		json_array_foreach(json_object_get(r, "paths"), i, p) {
			json_t *rtt = json_object_get(p, "rtt_us");
			printf("path %zu: %lld hops, rtt %s", i + 1,
			       hw_cli_num(p, "hops"),
			       json_is_integer(rtt) ? "" : "unknown");
			if (json_is_integer(rtt))
				printf("%.3f ms",
				       (double)json_integer_value(rtt) / 1000);
			printf("\n");
			json_array_foreach(json_object_get(p, "transports"), n,
					   t) printf("  %s -> %s  (%s %s)\n",
						     hw_cli_str(t, "from"),
						     hw_cli_str(t, "to"),
						     hw_cli_str(t, "type"),
						     hw_cli_str(t, "id"));
		}
		if (json_array_size(json_object_get(r, "paths")) == 0)
			printf("no path\n");
	}
	json_decref(r);
	return 0;
}

/* Reads one line from fd into buf (NUL-terminated, without '\n'). */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return 0;
		}
		n++;
	}
	return -1;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Copies stdin to fd and fd to stdout until fd closes. End of stdin shuts
 * down our side, which closes the route group. fd is written only as far
 * as it takes bytes now (MSG_DONTWAIT), so while the group cannot take
 * more we still read what it brings: with bulk both ways neither end
 * waits on the other. stdin and stdout stay blocking (they are the
 * caller's). */
static int pump(int fd)
{
	struct pollfd p[2] = {{.fd = 0, .events = POLLIN},
			      {.fd = fd, .events = POLLIN}};
	static char in[65536], out[65536];
	size_t in_len = 0, in_off = 0;
	int stdin_open = 1;

	for (;;) {
		p[0].fd = stdin_open && !in_len ? 0 : -1;
		p[1].events = POLLIN | (in_len ? POLLOUT : 0);
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(fd, out, sizeof(out));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0)
				return 0;
			if (write_all(1, out, (size_t)n))
				return 1;
		}
		if (in_len && (p[1].revents & POLLOUT)) {
			ssize_t w = send(fd, in + in_off, in_len, MSG_DONTWAIT |
					 MSG_NOSIGNAL);
			if (w < 0 && errno != EINTR && errno != EAGAIN)
				return 1;
			if (w > 0) {
				in_off += (size_t)w;
				in_len -= (size_t)w;
			}
			if (!in_len && !stdin_open)
				shutdown(fd, SHUT_WR);
		}
		if (p[0].fd == 0 && (p[0].revents & (POLLIN | POLLHUP))) {
			ssize_t n = read(0, in, sizeof(in));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				stdin_open = 0;
				shutdown(fd, SHUT_WR);
			} else {
				in_off = 0;
				in_len = (size_t)n;
			}
		}
	}
}

/* A throughput test's answer line (after connected or accepted). */
static int test_result(int fd)
{
	char line[1024];
	json_t *r;
	int rc = 1;

	if (read_line(fd, line, sizeof(line))) {
		hw_cli_err("the visor closed the stream");
		return 1;
	}
	r = json_loads(line, 0, NULL);
	if (!r || json_object_get(r, "error")) {
		hw_cli_err("%s", r ? hw_cli_str(r, "error") : line);
	} else {
		int sent = json_object_get(r, "sent") != NULL;
		printf("%s %lld bytes in %.3f s: %.1f MB/s\n",
		       sent ? "sent" : "received",
		       hw_cli_num(r, sent ? "sent" : "received"),
		       json_number_value(json_object_get(r, "seconds")),
		       json_number_value(json_object_get(r, "mbytes_per_s")));
		rc = 0;
	}
	json_decref(r);
	return rc;
}

/* After the pipe's end of file: how the group of the connected/accepted
 * line r ended, from the visor's record of it (GET /v1/groups/ended,
 * written before the visor closes the connection). Returns 0 after an
 * orderly end, 1 after a failure (said on stderr). */
static int group_outcome(json_t *r, const char *want)
{
	json_t *g = json_object_get(r, "group"), *e, *err;
	char path[64];
	int rc;

	if (!json_is_integer(g))
		return 0; /* a visor that keeps no record */
	snprintf(path, sizeof(path), "/v1/groups/ended?id=%lld",
		 (long long)json_integer_value(g));
	if ((rc = hw_cli_call("GET", path, NULL, 10000, &e)))
		return rc;
	err = json_object_get(e, "error");
	if (json_is_string(err)) {
		hw_cli_err("route group %s %s failed: %s",
			   strcmp(want, "connected") ? "from" : "to",
			   hw_cli_str(r, want), json_string_value(err));
		rc = 1;
	}
	json_decref(e);
	return rc;
}

/* Connects to the visor's stream socket, sends req and waits for the line
 * that starts the pipe (want: "connected" or "accepted"); then pipes, or
 * for a throughput test (test) waits for its answer. */
static int stream(json_t *req, const char *want, int test)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char line[1024], *text;
	json_t *info, *r;
	int fd, rc;

	if ((rc = hw_cli_call("GET", "/v1/info", NULL, 10000, &info)))
		return rc;
	if (strlen(hw_cli_str(info, "streams_socket")) >= sizeof(sa.sun_path)) {
		hw_cli_err("stream socket path too long");
		json_decref(info);
		return 1;
	}
	strcpy(sa.sun_path, hw_cli_str(info, "streams_socket"));
	json_decref(info);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		hw_cli_err("cannot reach the visor's stream socket %s: %s",
			   sa.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	text = json_dumps(req, JSON_COMPACT);
	rc = write_all(fd, text, strlen(text)) || write_all(fd, "\n", 1);
	free(text);
	while (rc == 0) {
		if (read_line(fd, line, sizeof(line))) {
			hw_cli_err("the visor closed the stream");
			close(fd);
			return 1;
		}
		r = json_loads(line, 0, NULL);
		if (!r || json_object_get(r, "error")) {
			hw_cli_err("%s", r ? hw_cli_str(r, "error") : line);
			json_decref(r);
			close(fd);
			return 1;
		}
		if (json_object_get(r, "listening"))
			fprintf(stderr, "hopwire: listening on port %lld\n",
				hw_cli_num(r, "listening"));
		if (json_object_get(r, want)) {
			fprintf(stderr, "hopwire: %s %s\n", want,
				hw_cli_str(r, want));
			rc = test ? test_result(fd) : pump(fd);
			close(fd);
			if (rc == 0 && !test)
				rc = group_outcome(r, want);
			json_decref(r);
			return rc;
		}
		json_decref(r);
	}
	close(fd);
	return 1;
}

static int parse_port(const char *s, long *port)
{
	unsigned long long v;

	if (hw_parse_uint(s, 1, 65535, &v))
		return -1;
	*port = (long)v;
	return 0;
}

static int route_listen(int argc, char **argv)
{
	int discard = argc == 3 && !strcmp(argv[2], "--discard");
	long port;
	json_t *req;
	int rc;

	if ((argc != 2 && !discard) || parse_port(argv[1], &port)) {
		hw_cli_err("usage: hopwire route listen PORT [--discard] "
			   "(PORT 1..65535)");
		return 2;
	}
	req = json_pack("{s:s, s:i, s:b}", "op", "listen", "port", (int)port,
			"discard", discard);
	rc = stream(req, "accepted", discard);
	json_decref(req);
	return rc;
}

/* route dial, and route bench (a throughput test of --bytes). */
static int route_dial(int argc, char **argv, int bench)
{
	static const struct option opts[] = {
		{"via", required_argument, NULL, 'v'},
		{"bytes", required_argument, NULL, 'b'},
		{NULL, 0, NULL, 0},
	};
	const char *usage = bench ? "usage: hopwire route bench PK PORT "
				    "[--bytes SIZE] [--via PK[,PK...]]"
				  : "usage: hopwire route dial PK PORT "
				    "[--via PK[,PK...]]";
	json_t *req, *via = json_array();
	unsigned long long bytes = 256ull << 20;
	long port;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, bench ? "v:b:" : "v:", opts,
				NULL)) != -1) {
		if (c == 'b' && bench &&
		    !hw_parse_bytes(optarg, 1, HW_CLI_SIZE_MAX, &bytes))
			continue;
		if (c == 'b' && bench) {
			hw_cli_err("--bytes: a byte count from 1 to 1T, with "
				   "an optional K, M or G");
			json_decref(via);
			return 2;
		}
		if (c != 'v') {
			hw_cli_err("%s", usage);
			json_decref(via);
			return 2;
		}
		for (char *tok = strtok(optarg, ","); tok;
		     tok = strtok(NULL, ","))
			json_array_append_new(via, json_string(tok));
	}
	if (optind + 2 != argc || parse_port(argv[optind + 1], &port)) {
		hw_cli_err("%s", usage);
		json_decref(via);
		return 2;
	}
	req = json_pack("{s:s, s:s, s:i, s:o}", "op", "dial", "pk",
			argv[optind], "port", (int)port, "via", via);
	if (bench)
		json_object_set_new(req, "send", json_integer(bytes));
	rc = stream(req, "connected", bench);
	json_decref(req);
	return rc;
}

int hw_cli_route(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		route_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "ls"))
		return route_ls(argc - 1, argv + 1);
	if (!strcmp(argv[1], "find"))
		return route_find(argc - 1, argv + 1);
	if (!strcmp(argv[1], "listen"))
		return route_listen(argc - 1, argv + 1);
	if (!strcmp(argv[1], "dial"))
		return route_dial(argc - 1, argv + 1, 0);
	if (!strcmp(argv[1], "bench"))
		return route_dial(argc - 1, argv + 1, 1);
	hw_cli_err("unknown route command '%s' (ls, find, listen, dial, "
		   "bench)",
		   argv[1]);
	return 2;
}
