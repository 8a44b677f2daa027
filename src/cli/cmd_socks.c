/* hopwire socks ...: the operator side of the SOCKS5 proxy (docs/socks.md)
 * through the control API only. `use` and `exit` rewrite the arguments of
 * the configured hopwire-socks-client / hopwire-socks app with PUT
 * /v1/apps/NAME (the visor keeps them in its config and restarts the
 * app); `status` joins GET /v1/apps, /v1/apps/NAME/status and /loops,
 * /v1/groups and /v1/info into one view. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "crypto/identity.h"
#include "util/addr.h"
#include "util/err.h"

#define CLIENT_BIN "hopwire-socks-client"
#define EXIT_BIN "hopwire-socks"
#define CLIENT_NAME "socks-client"
#define EXIT_NAME "socks"
#define CLIENT_PORT 4
#define EXIT_PORT 3
#define DEFAULT_LISTEN "127.0.0.1:1080"
/* An app has at most 32 args; --exit PK takes two. */
#define MAX_EXITS 8
#define MAX_RULES 12

static void socks_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire socks use PK [PK...] [--listen ADDR:PORT] "
		"[--auth FILE]\n"
		"       hopwire socks use --off   (or: hopwire socks off)\n"
		"       hopwire socks exit --allow PK|any [--allow PK]... "
		"[--allow-dest SPEC]...\n"
		"                          [--allow-loopback]\n"
		"       hopwire socks status [--json]\n\n"
		"use points this visor's SOCKS5 client (the app whose binary "
		"is\nhopwire-socks-client; 'socks-client' on port 4 is added "
		"when there is none)\nat the exits PK, the visors whose "
		"hopwire-socks carries your connections\nout: the first that "
		"answers is used, the next when it fails. The client\nlistens "
		"on --listen (default " DEFAULT_LISTEN ", or what it had); an "
		"address beyond\nloopback needs --auth FILE, lines "
		"USER:PASSWORD (RFC 1929). The settings go\nto the visor's "
		"config and the client restarts on them; it starts with the\n"
		"visor from then on. --off removes the exits: the client stays "
		"up, idle,\nanswering every request with a failure.\n\n"
		"exit sets who may use this visor's exit (the app whose binary "
		"is\nhopwire-socks; 'socks' on port 3 is added when there is "
		"none): --allow PK\nfor each visor key, or --allow any. "
		"--allow-dest SPEC limits where it may\nconnect (CIDR[:PORTS], "
		"as 10.0.0.0/8, 0.0.0.0/0:80-443, [2001:db8::/32]:22;\n"
		"repeatable; default: everything but the exit host's "
		"loopback, link-local\nand private ranges); --allow-loopback "
		"adds the exit host's loopback.\n\n"
		"status shows the client (state, listen address, the exit in "
		"use, the route\nto it hop by hop, open connections and bytes "
		"each way) and, when this\nvisor runs an exit, who it allows "
		"and its open loops.\n\n"
		"Then: curl --socks5-hostname 127.0.0.1:1080 URL, or in "
		"Firefox a manual\nproxy, SOCKS v5, host 127.0.0.1 port 1080, "
		"with \"Proxy DNS when using SOCKS\nv5\" ticked. See "
		"docs/socks.md.\n");
}

static const char *base(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* The first configured app (launched by the visor: it has a binary)
 * whose binary is bin; a new reference or NULL. *rc: 0, or the exit code
 * when the visor could not be asked. */
static json_t *find_app(const char *bin, int *rc)
{
	json_t *apps, *e, *found = NULL;
	size_t i;

	if ((*rc = hw_cli_call("GET", "/v1/apps", NULL, 10000, &apps)))
		return NULL;
	json_array_foreach(apps, i, e)
		if (json_is_string(json_object_get(e, "binary")) &&
		    !strcmp(base(hw_cli_str(e, "binary")), bin)) {
			found = json_incref(e);
			break;
		}
	json_decref(apps);
	return found;
}

static int is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (!strcmp(host, "localhost"))
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

/* Whether the option a takes a value (the apps' options). */
static int takes_value(const char *a)
{
	static const char *const opts[] = {
		"--exit", "--listen", "--auth", "--name", "--max-conns",
		"--allow", "--allow-dest", "--status", NULL};
	for (int i = 0; opts[i]; i++)
		if (!strcmp(a, opts[i]))
			return 1;
	return 0;
}

/* Whether arg (or "--opt=value") is one of the options in drop. */
static int dropped(const char *arg, const char *const *drop)
{
	for (int i = 0; drop[i]; i++) {
		size_t n = strlen(drop[i]);
		if (!strncmp(arg, drop[i], n) &&
		    (arg[n] == '\0' || arg[n] == '='))
			return 1;
	}
	return 0;
}

/* The value of option opt in args ("--opt V" or "--opt=V"), the last one
 * given, or NULL. */
static const char *arg_value(json_t *args, const char *opt)
{
	const char *v = NULL;
	size_t n = strlen(opt), i;

	for (i = 0; i < json_array_size(args); i++) {
		const char *a = json_string_value(json_array_get(args, i));
		if (!a)
			continue;
		if (!strcmp(a, opt) && i + 1 < json_array_size(args))
			v = json_string_value(json_array_get(args, ++i));
		else if (!strncmp(a, opt, n) && a[n] == '=')
			v = a + n + 1;
		else if (takes_value(a))
			i++;
	}
	return v;
}

/* The values of a repeatable option, in order, into a new array. */
static json_t *arg_values(json_t *args, const char *opt)
{
	json_t *out = json_array();
	size_t n = strlen(opt), i;

	for (i = 0; out && i < json_array_size(args); i++) {
		const char *a = json_string_value(json_array_get(args, i));
		if (!a)
			continue;
		if (!strcmp(a, opt) && i + 1 < json_array_size(args))
			json_array_append(out, json_array_get(args, ++i));
		else if (!strncmp(a, opt, n) && a[n] == '=')
			json_array_append_new(out, json_string(a + n + 1));
		else if (takes_value(a))
			i++;
	}
	return out;
}

static int has_flag(json_t *args, const char *flag)
{
	for (size_t i = 0; i < json_array_size(args); i++) {
		const char *a = json_string_value(json_array_get(args, i));
		if (a && !strcmp(a, flag))
			return 1;
		if (a && takes_value(a))
			i++;
	}
	return 0;
}

/* args without the options in drop (and their values). New array. */
static json_t *args_without(json_t *args, const char *const *drop)
{
	json_t *out = json_array();

	for (size_t i = 0; out && i < json_array_size(args); i++) {
		json_t *v = json_array_get(args, i);
		const char *a = json_string_value(v);

		if (a && dropped(a, drop)) {
			if (!strchr(a, '=') && takes_value(a))
				i++;
			continue;
		}
		json_array_append(out, v);
		if (a && takes_value(a) && i + 1 < json_array_size(args))
			json_array_append(out, json_array_get(args, ++i));
	}
	return out;
}

static int put_app(const char *name, const char *binary, json_t *args,
		   long long port, json_t *old)
{
	json_t *body = json_pack("{s:s, s:O, s:I, s:b}", "binary", binary,
				 "args", args, "port", (json_int_t)port,
				 "autostart", 1);
	int rc = hw_cli_app_put(name, body, old);

	json_decref(body);
	return rc;
}

static int socks_use(int argc, char **argv)
{
	static const char *const drop[] = {"--exit", "--listen", "--auth",
					   NULL};
	const char *listen = NULL, *auth = NULL, *exits[MAX_EXITS];
	char host[HW_HOST_MAX], absauth[PATH_MAX + 2], cwd[PATH_MAX];
	const char *name = CLIENT_NAME, *binary = CLIENT_BIN;
	long long port = CLIENT_PORT;
	json_t *app = NULL, *args = NULL, *old;
	int nexits = 0, off = !strcmp(argv[0], "off"), rc = 2;
	uint16_t p;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--off")) {
			off = 1;
		} else if (!strcmp(a, "--listen") || !strcmp(a, "--auth")) {
			if (i + 1 >= argc) {
				hw_cli_err("socks use: %s needs a value", a);
				return 2;
			}
			*(a[2] == 'l' ? &listen : &auth) = argv[++i];
		} else if (a[0] == '-') {
			hw_cli_err("socks use: unknown option '%s' (see "
				   "'hopwire socks --help')", a);
			return 2;
		} else if (hw_cli_pk_bad(a)) {
			hw_cli_err("socks use: '%s' is not a visor's public "
				   "key: %s", a, hw_cli_pk_bad(a));
			return 2;
		} else {
			int dup = 0;
			for (int k = 0; k < nexits; k++)
				dup |= !strcasecmp(exits[k], a);
			if (dup)
				continue;
			if (nexits == MAX_EXITS) {
				hw_cli_err("socks use: at most %d exits",
					   MAX_EXITS);
				return 2;
			}
			exits[nexits++] = a;
		}
	}
	if (off && nexits) {
		hw_cli_err("socks use: --off takes no exits");
		return 2;
	}
	if (!off && !nexits) {
		hw_cli_err("socks use: name the exit's visor key (hopwire "
			   "socks use PK), or --off");
		return 2;
	}
	if (listen && hw_addr_split(listen, host, &p)) {
		hw_cli_err("socks use: --listen '%s' is not ADDR:PORT (as "
			   "127.0.0.1:1080 or [::1]:1080)", listen);
		return 2;
	}
	if (auth) {
		if (auth[0] != '/') {
			if (!getcwd(cwd, sizeof(cwd))) {
				hw_cli_err("socks use: --auth %s: cannot tell "
					   "the current folder: %s", auth,
					   strerror(errno));
				return 1;
			}
			if (snprintf(absauth, sizeof(absauth), "%s/%s", cwd,
				     auth) >= (int)sizeof(absauth)) {
				hw_cli_err("socks use: --auth %s: path too "
					   "long", auth);
				return 2;
			}
			auth = absauth;
		}
		if (access(auth, R_OK)) {
			hw_cli_err("socks use: --auth %s: %s", auth,
				   strerror(errno));
			return 2;
		}
	}

	if ((app = find_app(CLIENT_BIN, &rc))) {
		name = hw_cli_str(app, "name");
		binary = hw_cli_str(app, "binary");
		port = hw_cli_num(app, "port");
	} else if (rc) {
		return rc;
	}
	old = app ? json_object_get(app, "args") : NULL;
	if (!listen)
		listen = old ? arg_value(old, "--listen") : NULL;
	if (!listen)
		listen = DEFAULT_LISTEN;
	if (!auth && old)
		auth = arg_value(old, "--auth");
	if (hw_addr_split(listen, host, &p) == 0 && !is_loopback(host) &&
	    !auth) {
		hw_cli_err("socks use: --listen %s is beyond loopback: give "
			   "--auth FILE (lines USER:PASSWORD) so that only "
			   "you can use it", listen);
		rc = 2;
		goto out;
	}
	rc = 1;
	if (!(args = old ? args_without(old, drop) : json_array()) ||
	    json_array_append_new(args, json_string("--listen")) ||
	    json_array_append_new(args, json_string(listen)) ||
	    (auth && (json_array_append_new(args, json_string("--auth")) ||
		      json_array_append_new(args, json_string(auth))))) {
		hw_cli_err("out of memory");
		goto out;
	}
	for (int k = 0; k < nexits; k++)
		if (json_array_append_new(args, json_string("--exit")) ||
		    json_array_append_new(args, json_string(exits[k]))) {
			hw_cli_err("out of memory");
			goto out;
		}
	if ((rc = put_app(name, binary, args, port, app)))
		goto out;
	if (off)
		printf("%s: no exit (idle), listening on %s\n", name, listen);
	else
		for (int k = 0; k < nexits; k++)
			printf("%s: %s %s, listening on %s%s\n", name,
			       k ? "then" : "exit", exits[k], listen,
			       auth ? " (username/password)" : "");
	if (!off)
		printf("try: curl --socks5-hostname %s https://example.org/\n",
		       listen);
out:
	json_decref(args);
	json_decref(app);
	return rc;
}

/* A --allow-dest rule's characters (the exit parses it; this catches
 * what cannot be one before the exit refuses to start). */
static int rule_chars_ok(const char *s)
{
	if (!s[0])
		return 0;
	for (; *s; s++)
		if (!strchr("0123456789abcdefABCDEF.:/[]-", *s))
			return 0;
	return 1;
}

static int socks_exit(int argc, char **argv)
{
	static const char *const drop[] = {"--allow", "--allow-dest",
					   "--allow-loopback", NULL};
	const char *allow[MAX_EXITS * 2], *dest[MAX_RULES];
	const char *name = EXIT_NAME, *binary = EXIT_BIN;
	long long port = EXIT_PORT;
	int nallow = 0, ndest = 0, loopback = 0, any = 0, rc;
	json_t *app = NULL, *args = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--allow-loopback")) {
			loopback = 1;
			continue;
		}
		if (strcmp(a, "--allow") && strcmp(a, "--allow-dest")) {
			hw_cli_err("socks exit: %s '%s' (see 'hopwire socks "
				   "--help')", a[0] == '-' ? "unknown option"
				   : "unexpected argument", a);
			return 2;
		}
		if (i + 1 >= argc) {
			hw_cli_err("socks exit: %s needs a value", a);
			return 2;
		}
		const char *v = argv[++i];
		if (!strcmp(a, "--allow-dest")) {
			if (!rule_chars_ok(v)) {
				hw_cli_err("socks exit: --allow-dest '%s' is "
					   "not CIDR[:PORTS] (as 10.0.0.0/8, "
					   "0.0.0.0/0:80-443, "
					   "[2001:db8::/32]:22)", v);
				return 2;
			}
			if (ndest == MAX_RULES) {
				hw_cli_err("socks exit: at most %d "
					   "--allow-dest", MAX_RULES);
				return 2;
			}
			dest[ndest++] = v;
			continue;
		}
		if (!strcmp(v, "any")) {
			any = 1;
			continue;
		}
		if (hw_cli_pk_bad(v)) {
			hw_cli_err("socks exit: --allow '%s' is neither a "
				   "visor's public key (%s) nor 'any'", v,
				   hw_cli_pk_bad(v));
			return 2;
		}
		if (nallow == (int)(sizeof(allow) / sizeof(allow[0]))) {
			hw_cli_err("socks exit: at most %zu --allow PK (or "
				   "--allow any)", sizeof(allow) /
				   sizeof(allow[0]));
			return 2;
		}
		allow[nallow++] = v;
	}
	if (!nallow && !any) {
		hw_cli_err("socks exit: say who may use the exit: --allow PK "
			   "(repeatable) or --allow any");
		return 2;
	}
	if (any && nallow) {
		hw_cli_err("socks exit: --allow any and --allow PK together: "
			   "choose one");
		return 2;
	}
	if ((app = find_app(EXIT_BIN, &rc))) {
		name = hw_cli_str(app, "name");
		binary = hw_cli_str(app, "binary");
		port = hw_cli_num(app, "port");
	} else if (rc) {
		return rc;
	}
	rc = 1;
	args = app ? args_without(json_object_get(app, "args"), drop)
		   : json_array();
	if (!args)
		goto nomem;
	if (any && (json_array_append_new(args, json_string("--allow")) ||
		    json_array_append_new(args, json_string("any"))))
		goto nomem;
	for (int k = 0; k < nallow; k++)
		if (json_array_append_new(args, json_string("--allow")) ||
		    json_array_append_new(args, json_string(allow[k])))
			goto nomem;
	for (int k = 0; k < ndest; k++)
		if (json_array_append_new(args, json_string("--allow-dest")) ||
		    json_array_append_new(args, json_string(dest[k])))
			goto nomem;
	if (loopback &&
	    json_array_append_new(args, json_string("--allow-loopback")))
		goto nomem;
	if ((rc = put_app(name, binary, args, port, app)))
		goto out;
	printf("%s: allows %s", name, any ? "any visor" : "");
	for (int k = 0; k < nallow; k++)
		printf("%s%s", k ? ", " : "", allow[k]);
	printf("; destinations: %s%s\n",
	       ndest ? "the --allow-dest rules" : "the default policy",
	       loopback ? " and loopback" : "");
	goto out;
nomem:
	hw_cli_err("out of memory");
out:
	json_decref(args);
	json_decref(app);
	return rc;
}

/* GET path; on a 2xx answer returns its JSON, else NULL with the status
 * in *status (0: the visor could not be reached, said already). */
static json_t *get_opt(const char *path, long *status, json_t **errdoc)
{
	json_t *r = NULL;

	*errdoc = NULL;
	if (hw_cli_request("GET", path, NULL, 10000, status, &r)) {
		*status = 0;
		return NULL;
	}
	if (*status >= 300) {
		*errdoc = r;
		return NULL;
	}
	return r ? r : json_object();
}

/* The group of the client's loop to the exit (src MYPK:LPORT, dst
 * EXIT:PORT): a new reference, or NULL. *nloops: the client's loops to
 * that exit. */
static json_t *client_route(const char *my_pk, json_t *loops, json_t *groups,
			    const char *exit_pk, int *nloops)
{
	char src[128];
	json_t *l, *g, *found = NULL;
	size_t i, k;

	*nloops = 0;
	json_array_foreach(loops, i, l) {
		const char *remote = hw_cli_str(l, "remote");
		if (exit_pk && strncasecmp(remote, exit_pk, 64))
			continue;
		(*nloops)++;
		if (found)
			continue;
		snprintf(src, sizeof(src), "%s:%lld", my_pk,
			 hw_cli_num(l, "port"));
		json_array_foreach(groups, k, g)
			if (!strcasecmp(hw_cli_str(g, "src"), src) &&
			    !strcasecmp(hw_cli_str(g, "dst"), remote) &&
			    !strcmp(hw_cli_str(g, "role"), "initiator"))
				found = json_incref(g);
	}
	return found;
}

static void print_route(json_t *g, const char *my_pk)
{
	json_t *hops = json_object_get(g, "hops"), *h;
	size_t i, n = json_array_size(hops);

	printf("  route:     %zu hop%s, %s, rtt %lld ms, healed %lld "
	       "time%s\n", n, n == 1 ? "" : "s", hw_cli_str(g, "state"),
	       hw_cli_num(g, "rtt_ms"), hw_cli_num(g, "heals"),
	       hw_cli_num(g, "heals") == 1 ? "" : "s");
	printf("             %s (this visor)\n", my_pk);
	json_array_foreach(hops, i, h)
		printf("          -> %s%s\n", hw_cli_str(h, "to"),
		       i + 1 == n ? " (the exit)" : "");
}

static int socks_status(void)
{
	json_t *apps = NULL, *info = NULL, *groups = NULL, *client = NULL;
	json_t *exitapp = NULL, *st = NULL, *cloops = NULL, *eloops = NULL;
	json_t *route = NULL, *errdoc = NULL, *lerr = NULL, *out = NULL, *e;
	const char *my_pk, *exit_pk = NULL;
	char buf[64], buf2[64];
	long status = 0;
	int rc, nloops = 0;
	size_t i;

	if ((rc = hw_cli_call("GET", "/v1/apps", NULL, 10000, &apps)) ||
	    (rc = hw_cli_call("GET", "/v1/info", NULL, 10000, &info)) ||
	    (rc = hw_cli_call("GET", "/v1/groups", NULL, 10000, &groups)))
		goto done;
	my_pk = hw_cli_str(info, "pk");
	json_array_foreach(apps, i, e) {
		const char *b = json_is_string(json_object_get(e, "binary"))
					? base(hw_cli_str(e, "binary"))
					: "";
		if (!client && !strcmp(b, CLIENT_BIN))
			client = e;
		if (!exitapp && !strcmp(b, EXIT_BIN))
			exitapp = e;
	}
	rc = 1;
	if (client) {
		char path[128];

		snprintf(path, sizeof(path), "/v1/apps/%s/status",
			 hw_cli_str(client, "name"));
		st = get_opt(path, &status, &errdoc);
		if (!st && !status)
			goto done;
		snprintf(path, sizeof(path), "/v1/apps/%s/loops",
			 hw_cli_str(client, "name"));
		cloops = get_opt(path, &status, &lerr);
		json_decref(lerr);
		if (!cloops && !status)
			goto done;
		if (st && json_is_string(json_object_get(st, "exit")))
			exit_pk = hw_cli_str(st, "exit");
		route = client_route(my_pk, cloops, groups, exit_pk, &nloops);
	}
	if (exitapp) {
		char path[128];

		snprintf(path, sizeof(path), "/v1/apps/%s/loops",
			 hw_cli_str(exitapp, "name"));
		eloops = get_opt(path, &status, &lerr);
		json_decref(lerr);
		if (!eloops && !status)
			goto done;
	}
	rc = 0;
	if (hw_cli_opts.json) {
		json_t *c = client ? json_pack("{s:O, s:O?, s:O?, s:O?}",
					       "app", client, "status", st,
					       "loops", cloops, "route", route)
				   : json_null();
		json_t *x = exitapp ? json_pack(
					      "{s:O, s:o, s:o, s:b, s:O?}",
					      "app", exitapp, "allow",
					      arg_values(json_object_get(
							exitapp, "args"),
							 "--allow"),
					      "allow_dest",
					      arg_values(json_object_get(
							exitapp, "args"),
							 "--allow-dest"),
					      "allow_loopback",
					      has_flag(json_object_get(exitapp,
								       "args"),
						       "--allow-loopback"),
					      "loops", eloops)
				    : json_null();
		out = json_pack("{s:o, s:o}", "client", c, "exit", x);
		hw_cli_print_json(out);
		goto done;
	}

	if (!client) {
		printf("client: none configured on this visor (hopwire socks "
		       "use PK adds one)\n");
	} else {
		json_t *args = json_object_get(client, "args");
		json_t *exits = arg_values(args, "--exit");
		const char *state = hw_cli_str(client, "state");
		const char *listen = arg_value(args, "--listen");

		printf("client: %s (%s)%s\n", hw_cli_str(client, "name"), state,
		       strcmp(state, "running") ? ": not running" : "");
		if (json_is_string(json_object_get(client, "error")))
			printf("  error:     %s\n",
			       hw_cli_str(client, "error"));
		printf("  listen:    %s%s\n", listen ? listen : DEFAULT_LISTEN,
		       arg_value(args, "--auth") ? " (username/password)"
						 : "");
		printf("  exits:     ");
		if (!json_array_size(exits))
			printf("none (idle: hopwire socks use PK)");
		json_array_foreach(exits, i, e)
			printf("%s%s", i ? ", " : "", json_string_value(e));
		printf("\n");
		json_decref(exits);
		if (!st) {
			printf("  status:    %s\n",
			       errdoc ? hw_cli_str(errdoc, "error")
				      : "none written yet");
		} else {
			printf("  state:     %s", hw_cli_str(st, "state"));
			if (exit_pk)
				printf(", exit in use %s", exit_pk);
			printf("\n");
			if (json_is_string(json_object_get(st, "error")))
				printf("  last error: %s\n",
				       hw_cli_str(st, "error"));
			hw_cli_human_bytes(hw_cli_num(st, "bytes_up"), buf,
					   sizeof(buf));
			hw_cli_human_bytes(hw_cli_num(st, "bytes_down"), buf2,
					   sizeof(buf2));
			printf("  conns:     %lld open, %lld in all\n",
			       hw_cli_num(st, "conns_open"),
			       hw_cli_num(st, "conns_total"));
			printf("  bytes:     %lld up (%s), %lld down (%s)\n",
			       hw_cli_num(st, "bytes_up"), buf,
			       hw_cli_num(st, "bytes_down"), buf2);
			if (hw_cli_num(st, "updated_ms") > 0)
				printf("  updated:   %.1f s ago\n",
				       (double)(hw_cli_now_ms() -
						hw_cli_num(st, "updated_ms")) /
					       1000);
		}
		if (route)
			print_route(route, my_pk);
		else
			printf("  route:     none open%s\n",
			       exit_pk ? "" : " (no exit in use)");
		if (nloops > 1)
			printf("  loops:     %d to the exit\n", nloops);
	}
	if (exitapp) {
		json_t *args = json_object_get(exitapp, "args");
		json_t *allow = arg_values(args, "--allow");
		json_t *dest = arg_values(args, "--allow-dest");
		const char *state = hw_cli_str(exitapp, "state");

		printf("exit: %s (%s)%s\n", hw_cli_str(exitapp, "name"), state,
		       strcmp(state, "running") ? ": not running" : "");
		printf("  allows:    ");
		if (!json_array_size(allow))
			printf("nobody (hopwire socks exit --allow PK|any)");
		json_array_foreach(allow, i, e)
			printf("%s%s", i ? ", " : "", json_string_value(e));
		printf("\n  dests:     ");
		if (!json_array_size(dest))
			printf("default policy (no private ranges)");
		json_array_foreach(dest, i, e)
			printf("%s%s", i ? ", " : "", json_string_value(e));
		printf("%s\n", has_flag(args, "--allow-loopback")
				       ? ", and loopback"
				       : "");
		printf("  loops:     %zu open\n", json_array_size(eloops));
		json_array_foreach(eloops, i, e) {
			if (i == 8) {
				printf("             ...\n");
				break;
			}
			printf("             from %s (%s)\n",
			       hw_cli_str(e, "remote"), hw_cli_str(e, "state"));
		}
		json_decref(allow);
		json_decref(dest);
	}
done:
	json_decref(out);
	json_decref(errdoc);
	json_decref(route);
	json_decref(cloops);
	json_decref(eloops);
	json_decref(st);
	json_decref(apps);
	json_decref(info);
	json_decref(groups);
	return rc;
}

int hw_cli_socks(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;
	int rc;

	if ((rc = hw_cli_help(argc, argv, socks_usage)) >= 0)
		return rc;
	if (!strcmp(sub, "use") || !strcmp(sub, "off")) {
		if (!strcmp(sub, "off") && argc > 2) {
			hw_cli_err("socks off takes no arguments");
			return 2;
		}
		return socks_use(argc - 1, argv + 1);
	}
	if (!strcmp(sub, "exit"))
		return socks_exit(argc - 1, argv + 1);
	if (!strcmp(sub, "status")) {
		if (argc > 2) {
			hw_cli_err("socks status: unexpected '%s'", argv[2]);
			return 2;
		}
		return socks_status();
	}
	hw_cli_err("socks: unknown command '%s' (use, off, exit, status; "
		   "see 'hopwire socks --help')", sub);
	return 2;
}
