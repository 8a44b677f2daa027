/* hopwire vpn ...: the operator side of the VPN (docs/vpn.md) through the
 * control API only. `serve` and `up` write the vpn-server / vpn-client
 * app entries with PUT /v1/apps/NAME (binary, arguments, port,
 * CAP_NET_ADMIN, cleanup_args, autostart: the visor keeps them in its
 * config and restarts the app on them); `down` stops the client and turns
 * its autostart off, returning once the process has exited and its
 * cleanup has run; `status` reads both apps' entries and status.json. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"

#define CLIENT_NAME "vpn-client"
#define SERVER_NAME "vpn-server"
#define CLIENT_BIN "hopwire-vpn-client"
#define SERVER_BIN "hopwire-vpn-server"
#define SERVER_PORT 44
/* An app has at most 32 args: --allow PK takes two, and the server's
 * other options up to six. */
#define MAX_ALLOW 13
#define MAX_ROUTES 64
/* "--routes" and its value: every CIDR, comma-separated. */
#define ROUTES_MAX (MAX_ROUTES * 44)

static void vpn_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire vpn up PK [--routes CIDR,...]\n"
		"       hopwire vpn down\n"
		"       hopwire vpn status [--json]\n"
		"       hopwire vpn serve [--allow PK|any]... [--subnet CIDR] "
		"[--subnet6 CIDR]\n"
		"                         [--route-only] [--client-to-client]\n"
		"\n"
		"up sends this visor's IP traffic through the VPN server on "
		"the visor PK: the\napp 'vpn-client' (hopwire-vpn-client) "
		"makes a TUN device, takes the address\nthe server assigns and "
		"routes everything through it (0.0.0.0/1 and\n128.0.0.0/1, "
		"keeping the visor's own transports outside), or only the\n"
		"networks of --routes (as 10.0.0.0/8,192.168.1.0/24,"
		"2001:db8::/32). The setting\ngoes to the visor's config; the "
		"client starts with the visor from then on.\n\n"
		"down stops the client and turns its autostart off; it "
		"returns once the client\nhas exited and put back every route "
		"and DNS setting it changed (after a\ncrash the visor runs "
		"'hopwire-vpn-client --cleanup' first).\n\n"
		"status shows the client (state, server, assigned address, "
		"routes, bytes,\npackets dropped, last error) and, when this "
		"visor runs one, the server (its\nsubnet, NAT, who it allows "
		"and its clients).\n\n"
		"serve runs a VPN server on this visor (app 'vpn-server', "
		"hopwire-vpn-server,\nport 44). It accepts only the visors of "
		"--allow PK (repeatable), or any with\n--allow any; without "
		"--allow it refuses everyone. --subnet (default\n10.44.0.0/24) "
		"is the clients' address pool, --subnet6 an IPv6 one; the "
		"server\nforwards their traffic with NAT (nftables masquerade) "
		"unless --route-only;\nclients cannot reach each other unless "
		"--client-to-client.\n\n"
		"Both programs need CAP_NET_ADMIN: a root visor gives it to "
		"them (and no other\ncapability); a visor run as a user needs "
		"AmbientCapabilities=CAP_NET_ADMIN\nin its systemd unit. See "
		"docs/vpn.md.\n");
}

/* Why s is not a CIDR (a phrase), or NULL when it is one: an IPv4 or
 * IPv6 network address with a prefix length, no host bits set. */
static const char *cidr_bad(const char *s, char *why, size_t len)
{
	unsigned char a[16];
	char addr[64], *end;
	const char *slash = strchr(s, '/');
	int fam, max;
	long plen;

	if (!slash)
		return "no /PREFIX (as 10.0.0.0/8)";
	if ((size_t)(slash - s) >= sizeof(addr))
		return "address too long";
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	fam = strchr(addr, ':') ? AF_INET6 : AF_INET;
	max = fam == AF_INET6 ? 128 : 32;
	if (inet_pton(fam, addr, a) != 1)
		return fam == AF_INET6 ? "not an IPv6 address"
				       : "not an IPv4 address";
	if (!slash[1] || slash[1] < '0' || slash[1] > '9')
		return "the prefix length is not a number";
	plen = strtol(slash + 1, &end, 10);
	if (*end || plen < 0 || plen > max) {
		snprintf(why, len, "the prefix length must be 0..%d", max);
		return why;
	}
	for (int bit = (int)plen; bit < max; bit++)
		if (a[bit / 8] & (0x80 >> (bit % 8))) {
			unsigned char net[16];
			char text[INET6_ADDRSTRLEN];

			memcpy(net, a, sizeof(net));
			for (int b = (int)plen; b < max; b++)
				net[b / 8] &= (unsigned char)~(0x80 >> (b % 8));
			inet_ntop(fam, net, text, sizeof(text));
			snprintf(why, len, "host bits set (the network is "
				 "%.46s/%ld)", text, plen);
			return why;
		}
	return NULL;
}

static int autostart_off(const char *name)
{
	json_t *b = json_pack("{s:b}", "on", 0), *o = NULL;
	char path[128];
	int rc;

	snprintf(path, sizeof(path), "/v1/apps/%s/autostart", name);
	rc = hw_cli_call("POST", path, b, 15000, &o);
	json_decref(b);
	json_decref(o);
	return rc;
}

/* The entry of a VPN program (CAP_NET_ADMIN, cleanup with --cleanup,
 * autostart) put with hw_cli_app_put: it runs, or what was there before
 * is back. */
static int put_vpn(const char *name, const char *binary, json_t *args,
		   long long port)
{
	json_t *old, *body;
	int rc = 0;

	old = hw_cli_app_entry(name, &rc);
	if (rc)
		return rc;
	body = json_pack("{s:s, s:O, s:I, s:b, s:[s], s:[s]}", "binary",
			 binary, "args", args, "port", (json_int_t)port,
			 "autostart", 1, "capabilities", "CAP_NET_ADMIN",
			 "cleanup_args", "--cleanup");
	rc = hw_cli_app_put(name, body, old);
	json_decref(body);
	json_decref(old);
	return rc;
}

static int vpn_up(int argc, char **argv)
{
	const char *server = NULL, *routes = NULL, *bad;
	char why[160], list[ROUTES_MAX + 1];
	json_t *args = NULL;
	int rc = 1, n = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--routes")) {
			if (i + 1 >= argc) {
				hw_cli_err("vpn up: --routes needs a value "
					   "(CIDR,...)");
				return 2;
			}
			routes = argv[++i];
		} else if (a[0] == '-') {
			hw_cli_err("vpn up: unknown option '%s' (see "
				   "'hopwire vpn --help')", a);
			return 2;
		} else if (server) {
			hw_cli_err("vpn up: one server only ('%s' and '%s')",
				   server, a);
			return 2;
		} else if ((bad = hw_cli_pk_bad(a))) {
			hw_cli_err("vpn up: '%s' is not a visor's public key: "
				   "%s", a, bad);
			return 2;
		} else {
			server = a;
		}
	}
	if (!server) {
		hw_cli_err("vpn up: name the server's visor key (hopwire vpn "
			   "up PK)");
		return 2;
	}
	if (routes) {
		if (strlen(routes) > ROUTES_MAX) {
			hw_cli_err("vpn up: --routes: at most %d networks",
				   MAX_ROUTES);
			return 2;
		}
		strcpy(list, routes);
		for (char *save = NULL, *c = strtok_r(list, ",", &save); c;
		     c = strtok_r(NULL, ",", &save)) {
			if ((bad = cidr_bad(c, why, sizeof(why)))) {
				hw_cli_err("vpn up: --routes: '%s' is not a "
					   "network CIDR: %s", c, bad);
				return 2;
			}
			n++;
		}
		if (!n || routes[0] == ',' || routes[strlen(routes) - 1] ==
		    ',' || strstr(routes, ",,")) {
			hw_cli_err("vpn up: --routes '%s': give networks "
				   "separated by commas, as "
				   "10.0.0.0/8,192.168.0.0/16", routes);
			return 2;
		}
		if (n > MAX_ROUTES) {
			hw_cli_err("vpn up: --routes: at most %d networks",
				   MAX_ROUTES);
			return 2;
		}
	}
	if (!(args = json_pack("[s, s]", "--server", server)) ||
	    (routes && (json_array_append_new(args, json_string("--routes")) ||
			json_array_append_new(args, json_string(routes))))) {
		hw_cli_err("out of memory");
		goto out;
	}
	if ((rc = put_vpn(CLIENT_NAME, CLIENT_BIN, args, 0)))
		goto out;
	printf("%s: through %s, routing %s\n", CLIENT_NAME, server,
	       routes ? routes : "everything");
	printf("see: hopwire vpn status\n");
out:
	json_decref(args);
	return rc;
}

static int vpn_down(int argc, char **argv)
{
	json_t *e, *o = NULL, *ex;
	int rc = 0;
	long status = 0;
	char path[128];

	if (argc > 1) {
		hw_cli_err("vpn down takes no arguments");
		return 2;
	}
	if (!(e = hw_cli_app_entry(CLIENT_NAME, &rc))) {
		if (!rc)
			hw_cli_err("vpn down: this visor has no VPN client "
				   "(app '%s'): nothing to stop", CLIENT_NAME);
		return rc ? rc : 1;
	}
	/* Autostart off first: the visor must not start it again. */
	if ((rc = autostart_off(CLIENT_NAME)))
		goto out;
	snprintf(path, sizeof(path), "/v1/apps/%s/stop", CLIENT_NAME);
	if ((rc = hw_cli_request("POST", path, NULL, 15000, &status, &o)))
		goto out;
	if (status >= 300 && status != 409) {
		hw_cli_err("vpn down: %s", hw_cli_str(o, "error"));
		rc = 1;
		goto out;
	}
	/* 409: it was not running. Either way, wait for the exit and the
	 * cleanup. */
	json_decref(o);
	if (!(o = hw_cli_app_entry(CLIENT_NAME, &rc))) {
		rc = rc ? rc : 1;
		goto out;
	}
	o = hw_cli_app_wait_stopped(CLIENT_NAME, o, &rc);
	if (rc)
		goto out;
	if (!strcmp(hw_cli_str(o, "state"), "stopping") ||
	    !strcmp(hw_cli_str(o, "state"), "cleanup")) {
		hw_cli_err("vpn down: %s is still %s after 20 s: see %s",
			   CLIENT_NAME, hw_cli_str(o, "state"),
			   hw_cli_str(o, "log"));
		rc = 1;
		goto out;
	}
	ex = json_object_get(o, "last_exit");
	if (json_is_object(ex) &&
	    (hw_cli_num(ex, "signal") || hw_cli_num(ex, "status")))
		printf("%s: stopped (it %s %lld; the visor ran its cleanup: "
		       "see %s)\n", CLIENT_NAME,
		       hw_cli_num(ex, "signal") ? "was killed by signal"
					 : "exited with status",
		       hw_cli_num(ex, "signal") ? hw_cli_num(ex, "signal")
					 : hw_cli_num(ex, "status"),
		       hw_cli_str(o, "log"));
	else
		printf("%s: stopped, autostart off\n", CLIENT_NAME);
out:
	json_decref(o);
	json_decref(e);
	return rc;
}

/* The app's status.json: a new reference, JSON null when it has written
 * none, NULL (said) when the visor could not be asked. */
static json_t *app_status(const char *name, int *rc)
{
	char path[128];
	json_t *r = NULL;
	long status = 0;

	snprintf(path, sizeof(path), "/v1/apps/%s/status", name);
	if ((*rc = hw_cli_request("GET", path, NULL, 10000, &status, &r)))
		return NULL;
	if (status >= 300) {
		json_decref(r);
		return json_null();
	}
	return r ? r : json_null();
}

static void print_bytes(const char *label, json_t *st)
{
	char in[32], out[32];

	hw_cli_human_bytes(hw_cli_num(st, "bytes_in"), in, sizeof(in));
	hw_cli_human_bytes(hw_cli_num(st, "bytes_out"), out, sizeof(out));
	printf("  %-10s %s in, %s out\n", label, in, out);
}

static void print_app_line(const char *role, json_t *app, json_t *st)
{
	json_t *ex = json_object_get(app, "last_exit");

	printf("%s: %s (%s)", role, hw_cli_str(app, "name"),
	       hw_cli_str(app, "state"));
	if (strcmp(hw_cli_str(app, "state"), "running") && json_is_object(ex))
		printf(", last %s %lld",
		       hw_cli_num(ex, "signal") ? "killed by signal"
						: "exit status",
		       hw_cli_num(ex, "signal") ? hw_cli_num(ex, "signal")
						: hw_cli_num(ex, "status"));
	printf("\n");
	if (json_is_string(json_object_get(app, "error")))
		printf("  app error: %s\n", hw_cli_str(app, "error"));
	if (strcmp(hw_cli_str(app, "state"), "running") && json_is_object(st))
		printf("  (not running: what follows is the last status it "
		       "wrote)\n");
}

static void print_client(json_t *app, json_t *st)
{
	json_t *routes = json_object_get(st, "routes"), *r;
	size_t i;

	print_app_line("client", app, st);
	if (!json_is_object(st)) {
		printf("  status:    none written yet (see %s)\n",
		       hw_cli_str(app, "log"));
		return;
	}
	printf("  state:     %s\n", hw_cli_str(st, "state"));
	printf("  server:    %s\n", hw_cli_str(st, "server"));
	printf("  tun:       %s", hw_cli_str(st, "tun"));
	if (hw_cli_num(st, "mtu"))
		printf(", mtu %lld", hw_cli_num(st, "mtu"));
	printf("\n  address:   %s",
	       json_is_string(json_object_get(st, "address"))
		       ? hw_cli_str(st, "address")
		       : "none yet");
	if (json_is_string(json_object_get(st, "address6")))
		printf(", %s", hw_cli_str(st, "address6"));
	printf("\n  routes:    ");
	if (!json_array_size(routes))
		printf("none");
	json_array_foreach(routes, i, r)
		printf("%s%s", i ? ", " : "", json_string_value(r)
						      ? json_string_value(r)
						      : "?");
	printf("\n");
	print_bytes("bytes:", st);
	printf("  packets:   %lld in, %lld out, %lld dropped\n",
	       hw_cli_num(st, "packets_in"), hw_cli_num(st, "packets_out"),
	       hw_cli_num(st, "packets_dropped"));
	if (json_is_string(json_object_get(st, "error")))
		printf("  error:     %s\n", hw_cli_str(st, "error"));
}

static void print_server(json_t *app, json_t *st)
{
	json_t *args = json_object_get(app, "args"), *clients, *c;
	size_t i, nallow = 0;

	print_app_line("server", app, st);
	printf("  allows:    ");
	for (i = 0; i + 1 < json_array_size(args); i++)
		if (!strcmp(json_string_value(json_array_get(args, i))
				    ? json_string_value(json_array_get(args, i))
				    : "",
			    "--allow"))
			printf("%s%s", nallow++ ? ", " : "",
			       json_string_value(json_array_get(args, ++i))
				       ? json_string_value(
						 json_array_get(args, i))
				       : "?");
	printf("%s\n", nallow ? "" : "nobody (hopwire vpn serve --allow "
				     "PK|any)");
	if (!json_is_object(st)) {
		printf("  status:    none written yet (see %s)\n",
		       hw_cli_str(app, "log"));
		return;
	}
	printf("  tun:       %s, address %s, subnet %s\n",
	       hw_cli_str(st, "tun"), hw_cli_str(st, "address"),
	       hw_cli_str(st, "subnet"));
	printf("  nat:       %s\n", json_is_true(json_object_get(st, "nat"))
					    ? "on (masquerade)"
					    : "off (route only)");
	printf("  refused:   %lld, spoofed packets dropped: %lld\n",
	       hw_cli_num(st, "refused"), hw_cli_num(st, "spoofed_dropped"));
	if (json_is_string(json_object_get(st, "error")))
		printf("  error:     %s\n", hw_cli_str(st, "error"));
	clients = json_object_get(st, "clients");
	printf("  clients:   %zu\n", json_array_size(clients));
	json_array_foreach(clients, i, c) {
		char in[32], out[32];

		hw_cli_human_bytes(hw_cli_num(c, "bytes_in"), in, sizeof(in));
		hw_cli_human_bytes(hw_cli_num(c, "bytes_out"), out,
				   sizeof(out));
		printf("    %s  %s  %s, %s in, %s out, %lld spoofed\n",
		       hw_cli_str(c, "pk"), hw_cli_str(c, "address"),
		       json_is_true(json_object_get(c, "connected"))
			       ? "connected"
			       : "gone",
		       in, out, hw_cli_num(c, "spoofed_dropped"));
	}
}

static int vpn_status(int argc, char **argv)
{
	json_t *client = NULL, *server = NULL, *cst = NULL, *sst = NULL;
	json_t *out = NULL;
	int rc = 0;

	if (argc > 1) {
		hw_cli_err("vpn status: unexpected '%s'", argv[1]);
		return 2;
	}
	if (!(client = hw_cli_app_entry(CLIENT_NAME, &rc)) && rc)
		goto done;
	if (!(server = hw_cli_app_entry(SERVER_NAME, &rc)) && rc)
		goto done;
	if ((client && !(cst = app_status(CLIENT_NAME, &rc))) ||
	    (server && !(sst = app_status(SERVER_NAME, &rc))))
		goto done;
	if (hw_cli_opts.json) {
		out = json_pack("{s:O?, s:O?, s:O?, s:O?}", "client", client,
				"client_status", cst, "server", server,
				"server_status", sst);
		if (!out) {
			hw_cli_err("out of memory");
			rc = 1;
			goto done;
		}
		hw_cli_print_json(out);
		goto done;
	}
	if (!client && !server) {
		printf("no VPN on this visor (hopwire vpn up PK, or hopwire "
		       "vpn serve)\n");
		goto done;
	}
	if (client)
		print_client(client, cst);
	else
		printf("client: none (hopwire vpn up PK)\n");
	if (server)
		print_server(server, sst);
done:
	json_decref(out);
	json_decref(client);
	json_decref(server);
	json_decref(cst);
	json_decref(sst);
	return rc;
}

static int vpn_serve(int argc, char **argv)
{
	const char *allow[MAX_ALLOW], *subnet = NULL, *subnet6 = NULL, *bad;
	int nallow = 0, any = 0, route_only = 0, c2c = 0, rc = 1;
	char why[160];
	json_t *args = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		if (!strcmp(a, "--route-only")) {
			route_only = 1;
			continue;
		}
		if (!strcmp(a, "--client-to-client")) {
			c2c = 1;
			continue;
		}
		if (strcmp(a, "--allow") && strcmp(a, "--subnet") &&
		    strcmp(a, "--subnet6")) {
			hw_cli_err("vpn serve: %s '%s' (see 'hopwire vpn "
				   "--help')", a[0] == '-' ? "unknown option"
				   : "unexpected argument", a);
			return 2;
		}
		if (i + 1 >= argc) {
			hw_cli_err("vpn serve: %s needs a value", a);
			return 2;
		}
		v = argv[++i];
		if (strcmp(a, "--allow")) {
			int six = !strcmp(a, "--subnet6");
			if ((bad = cidr_bad(v, why, sizeof(why))) ||
			    (!!strchr(v, ':') != six &&
			     (bad = six ? "not an IPv6 network"
					: "not an IPv4 network"))) {
				hw_cli_err("vpn serve: %s '%s' is not a "
					   "network CIDR: %s", a, v, bad);
				return 2;
			}
			*(six ? &subnet6 : &subnet) = v;
			continue;
		}
		if (!strcmp(v, "any")) {
			any = 1;
			continue;
		}
		if ((bad = hw_cli_pk_bad(v))) {
			hw_cli_err("vpn serve: --allow '%s' is neither a "
				   "visor's public key (%s) nor 'any'", v,
				   bad);
			return 2;
		}
		if (nallow == MAX_ALLOW) {
			hw_cli_err("vpn serve: at most %d --allow PK (or "
				   "--allow any)", MAX_ALLOW);
			return 2;
		}
		allow[nallow++] = v;
	}
	if (any && nallow) {
		hw_cli_err("vpn serve: --allow any and --allow PK together: "
			   "choose one");
		return 2;
	}
	if (!(args = json_array()))
		goto nomem;
	if (any && (json_array_append_new(args, json_string("--allow")) ||
		    json_array_append_new(args, json_string("any"))))
		goto nomem;
	for (int k = 0; k < nallow; k++)
		if (json_array_append_new(args, json_string("--allow")) ||
		    json_array_append_new(args, json_string(allow[k])))
			goto nomem;
	if ((subnet && (json_array_append_new(args, json_string("--subnet")) ||
			json_array_append_new(args, json_string(subnet)))) ||
	    (subnet6 &&
	     (json_array_append_new(args, json_string("--subnet6")) ||
	      json_array_append_new(args, json_string(subnet6)))) ||
	    (route_only &&
	     json_array_append_new(args, json_string("--route-only"))) ||
	    (c2c &&
	     json_array_append_new(args, json_string("--client-to-client"))))
		goto nomem;
	if ((rc = put_vpn(SERVER_NAME, SERVER_BIN, args, SERVER_PORT)))
		goto out;
	printf("%s: on port %d, subnet %s%s%s, %s%s; allows ", SERVER_NAME,
	       SERVER_PORT, subnet ? subnet : "10.44.0.0/24",
	       subnet6 ? " and " : "", subnet6 ? subnet6 : "",
	       route_only ? "route only" : "NAT",
	       c2c ? ", clients reach each other" : "");
	if (any)
		printf("any visor\n");
	else if (!nallow)
		printf("nobody yet (hopwire vpn serve --allow PK|any)\n");
	for (int k = 0; k < nallow; k++)
		printf("%s%s", allow[k], k + 1 < nallow ? ", " : "\n");
	goto out;
nomem:
	hw_cli_err("out of memory");
	rc = 1;
out:
	json_decref(args);
	return rc;
}

int hw_cli_vpn(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;
	int rc;

	if ((rc = hw_cli_help(argc, argv, vpn_usage)) >= 0)
		return rc;
	if (!strcmp(sub, "up"))
		return vpn_up(argc - 1, argv + 1);
	if (!strcmp(sub, "down"))
		return vpn_down(argc - 1, argv + 1);
	if (!strcmp(sub, "status"))
		return vpn_status(argc - 1, argv + 1);
	if (!strcmp(sub, "serve"))
		return vpn_serve(argc - 1, argv + 1);
	hw_cli_err("vpn: unknown command '%s' (up, down, status, serve; see "
		   "'hopwire vpn --help')", sub);
	return 2;
}
