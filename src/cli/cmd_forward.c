/* hopwire forward ...: the operator side of TCP port forwarding
 * (docs/forward.md "Using it") through the control API only. The services
 * this visor exposes and the local ports it maps to services elsewhere
 * are the settings document of the app "forward" (GET|PUT
 * /v1/apps/forward/settings, read-modify-write on its revision); the app
 * reports what it made of them in its status (GET
 * /v1/apps/forward/status). `stdio` runs the app's binary to carry one
 * connection on stdin/stdout. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/forward_spec.h"

#define APP_NAME "forward"
#define APP_BIN "hopwire-forward"
#define APP_PORT 47
#define APPLY_WAIT_MS 5000

enum op { OP_EXPOSE, OP_UNEXPOSE, OP_ADD, OP_RM };

/* One change to the settings, checked before anything is sent. */
struct edit {
	enum op op;
	const char *name;   /* expose, unexpose: the service; add: the far one */
	const char *target; /* expose */
	const char *pk;     /* add */
	const char **allow; /* expose */
	size_t nallow;
	char listen[HW_FWD_ADDR_MAX]; /* add, rm */
};

static void forward_usage(FILE *f)
{
	fprintf(f,
		"usage: hopwire forward expose NAME HOST:PORT --allow PK|any "
		"[--allow PK]...\n"
		"       hopwire forward unexpose NAME\n"
		"       hopwire forward add [BIND:]PORT PK NAME\n"
		"       hopwire forward rm [BIND:]PORT\n"
		"       hopwire forward ls [--json]\n"
		"       hopwire forward stdio PK NAME\n\n"
		"Forwards TCP connections between visors, like ssh -L, through "
		"the visor's\nforward app ('" APP_NAME "', binary " APP_BIN
		", port %d; added to the visor's\nconfig by expose or add when "
		"missing). What it does is kept in the app's\nsettings on the "
		"visor and comes back after any restart.\n\n"
		"expose offers the TCP service at HOST:PORT (on this side: as "
		"127.0.0.1:22)\nunder NAME (1 to %d of a-z 0-9 . _ -) to the "
		"visors --allow PK names, or to\nany visor with --allow any. "
		"Exposing a NAME again replaces it.\n"
		"unexpose NAME withdraws it.\n\n"
		"add listens on BIND:PORT (BIND 127.0.0.1 unless given; "
		"numeric, IPv6 in\nbrackets) and carries each connection to "
		"service NAME of visor PK.\nrm [BIND:]PORT removes the "
		"mapping.\n\n"
		"ls shows the exposed services, the mappings (up, dialing, down "
		"or\nlisten-failed, with the reason), and each open connection "
		"by its four\nidentifiers: client visor and the TCP client's "
		"port, server visor and the\nservice's port, with bytes each "
		"way.\n\n"
		"Each change waits (up to %d s) until the app has applied it, "
		"and says what\nthe app refused.\n\n"
		"stdio PK NAME carries one connection to service NAME of visor "
		"PK on\nstdin/stdout (a PK may end in .hw), for OpenSSH:\n"
		"  ssh -o ProxyCommand='hopwire forward stdio %%h ssh' "
		"user@PK\n"
		"or in ~/.ssh/config:\n"
		"  Host *.hw\n"
		"      ProxyCommand hopwire forward stdio %%h ssh\n"
		"Example, a visor's sshd reachable from one other visor:\n"
		"  there: hopwire forward expose ssh 127.0.0.1:22 --allow "
		"PK_HERE\n"
		"  here:  hopwire forward add 2200 PK_THERE ssh; ssh -p 2200 "
		"user@127.0.0.1\n"
		"See docs/forward.md.\n",
		APP_PORT, HW_FWD_NAME_MAX, APPLY_WAIT_MS / 1000);
}

static int create_app(void)
{
	json_t *body, *o = NULL;
	int rc;

	body = json_pack("{s:s, s:[], s:i, s:b}", "binary", APP_BIN, "args",
			 "port", APP_PORT, "autostart", 1);
	if (!body) {
		hw_cli_err("out of memory");
		return 1;
	}
	rc = hw_cli_call("PUT", "/v1/apps/" APP_NAME, body, 15000, &o);
	json_decref(body);
	json_decref(o);
	if (rc == 0)
		printf("forward: added the app '" APP_NAME "' (" APP_BIN
		       ", port %d) to the visor's config\n", APP_PORT);
	return rc;
}

/* Applies ed to doc. Returns 0 (*same: nothing to change), 2 when the
 * arguments are wrong whatever the settings, 1 when they do not fit the
 * settings; said already. */
static int apply(json_t *doc, const struct edit *ed, int *same)
{
	char err[768];
	int rc = 0;

	*same = 0;
	switch (ed->op) {
	case OP_EXPOSE:
		rc = hw_fwd_expose(doc, ed->name, ed->target, ed->allow,
				   ed->nallow, err, sizeof(err));
		break;
	case OP_UNEXPOSE:
		rc = hw_fwd_unexpose(doc, ed->name, err, sizeof(err));
		break;
	case OP_ADD:
		rc = hw_fwd_add(doc, ed->listen, ed->pk, ed->name, same, err,
				sizeof(err));
		break;
	case OP_RM:
		rc = hw_fwd_rm(doc, ed->listen, err, sizeof(err));
		break;
	}
	if (rc)
		hw_cli_err("forward: %s", err);
	return rc == 0 ? 0 : rc == -EINVAL ? 2 : 1;
}

/* The app's settings_error now (a new string, or NULL). */
static char *current_error(void)
{
	json_t *st = NULL;
	char *e = NULL;
	long status;

	if (hw_cli_request("GET", "/v1/apps/" APP_NAME "/status", NULL, 10000,
			   &status, &st) == 0 &&
	    status == 200 &&
	    json_is_string(json_object_get(st, "settings_error")))
		e = strdup(hw_cli_str(st, "settings_error"));
	json_decref(st);
	return e;
}

/* Whether the app's status st says it refused revision rev: it reports
 * the revision it applied, so a refusal is a settings_error with an
 * older revision written after our PUT (at put_ms), and not merely the
 * error of an older revision still shown (pre_err) while the app has
 * had time to read ours. */
static const char *refusal(json_t *st, long long rev, long long put_ms,
			   const char *pre_err)
{
	json_t *se = json_object_get(st, "settings_error");

	if (!json_is_string(se))
		return NULL;
	if (hw_cli_num(st, "revision") == rev)
		return json_string_value(se);
	if (hw_cli_num(st, "updated_ms") < put_ms)
		return NULL;
	if (pre_err && !strcmp(pre_err, json_string_value(se)) &&
	    hw_cli_now_ms() - put_ms < 1500)
		return NULL;
	return json_string_value(se);
}

/* Once revision rev is applied: 1, having said so, when the mapping on
 * listen (NULL: none to look at) could not listen. */
static int listen_failed(json_t *st, const char *listen, long long rev)
{
	json_t *m, *e;
	size_t i;

	if (!listen)
		return 0;
	m = json_object_get(st, "map");
	json_array_foreach(m, i, e)
		if (!strcmp(hw_cli_str(e, "listen"), listen) &&
		    !strcmp(hw_cli_str(e, "state"), "listen-failed")) {
		hw_cli_err("forward: revision %lld applied, but the app "
			   "cannot listen on %s: %s ('hopwire forward "
			   "rm %s' drops the mapping)",
			   rev, listen,
			   hw_cli_str(e, "error")[0] ? hw_cli_str(e, "error")
						     : "no reason given",
			   listen);
		return 1;
		}
	return 0;
}

/* After a PUT of revision rev (at put_ms; pre_err: the app's
 * settings_error before it): waits until the app's status shows it
 * applied (and, for a new mapping on listen, that it listens). Returns
 * 0, or 1 having said why not. An app that does not run applies the
 * settings when it starts: said, and 0. */
static int wait_applied(long long rev, long long put_ms, const char *pre_err,
			const char *listen)
{
	const struct timespec tick = {0, 100 * 1000 * 1000};
	long long deadline = hw_cli_now_ms() + APPLY_WAIT_MS, seen = -1;
	json_t *st = NULL, *e = NULL;
	const char *why;
	long status;
	int rc;

	for (;;) {
		if (hw_cli_request("GET", "/v1/apps/" APP_NAME "/status", NULL,
				   10000, &status, &st))
			return 1;
		if (status == 200 && json_is_integer(json_object_get(st,
								     "revision")))
			seen = hw_cli_num(st, "revision");
		if (status == 200 && (why = refusal(st, rev, put_ms, pre_err))) {
			hw_cli_err("forward: the app did not apply revision "
				   "%lld, it keeps revision %lld: %s", rev,
				   seen, why);
			json_decref(st);
			return 1;
		}
		if (status == 200 && seen >= rev) {
			rc = listen_failed(st, listen, rev);
			json_decref(st);
			if (!rc)
				printf("forward: revision %lld applied\n", rev);
			return rc;
		}
		json_decref(st);
		st = NULL;
		if (!(e = hw_cli_app_entry(APP_NAME, &rc)))
			return rc ? rc : 1;
		const char *state = hw_cli_str(e, "state");
		if (strcmp(state, "running") && strcmp(state, "connected") &&
		    strcmp(state, "stopping")) {
			printf("forward: saved as revision %lld; the app is not "
			       "running (%s%s%s): it applies them when it "
			       "starts\n", rev, state,
			       json_is_string(json_object_get(e, "error"))
				       ? ": "
				       : "",
			       hw_cli_str(e, "error"));
			json_decref(e);
			return 0;
		}
		if (hw_cli_now_ms() > deadline) {
			if (seen >= 0)
				hw_cli_err("forward: saved as revision %lld, but "
					   "after %d s the app still runs "
					   "revision %lld: see %s", rev,
					   APPLY_WAIT_MS / 1000, seen,
					   hw_cli_str(e, "log"));
			else
				hw_cli_err(
					"forward: saved as revision %lld, but "
					"after %d s the app has written no "
					"status: see %s",
					rev, APPLY_WAIT_MS / 1000,
					hw_cli_str(e, "log"));
			json_decref(e);
			return 1;
		}
		json_decref(e);
		nanosleep(&tick, NULL);
	}
}

static void say_done(const struct edit *ed)
{
	switch (ed->op) {
	case OP_EXPOSE:
		printf("forward: service %s -> %s, for ", ed->name, ed->target);
		for (size_t i = 0; i < ed->nallow; i++)
			printf("%s%s", i ? ", " : "",
			       strcmp(ed->allow[i], "any") ? ed->allow[i]
							   : "any visor");
		printf("\n");
		break;
	case OP_UNEXPOSE:
		printf("forward: service %s withdrawn\n", ed->name);
		break;
	case OP_ADD:
		printf("forward: %s -> service %s of %s\n", ed->listen,
		       ed->name, ed->pk);
		break;
	case OP_RM:
		printf("forward: %s unmapped\n", ed->listen);
		break;
	}
}

/* Read-modify-write of the settings with their revision, once more when
 * someone else wrote them between our read and our write. */
static int change(const struct edit *ed)
{
	char err[768];
	json_t *e, *doc = NULL, *resp = NULL, *probe;
	long long put_ms = 0;
	char *pre_err = NULL;
	long status = 0;
	int rc, same;

	/* Arguments that cannot be right whatever the settings: said before
	 * the visor is asked anything. */
	if (!(probe = json_object())) {
		hw_cli_err("out of memory");
		return 1;
	}
	if (ed->op == OP_EXPOSE || ed->op == OP_ADD)
		rc = apply(probe, ed, &same);
	else
		rc = 0;
	json_decref(probe);
	if (rc)
		return rc;

	if (!(e = hw_cli_app_entry(APP_NAME, &rc))) {
		if (rc)
			return rc;
		if (ed->op == OP_UNEXPOSE || ed->op == OP_RM) {
			hw_cli_err("forward: the app '" APP_NAME "' is not "
				   "configured on this visor: nothing is %s",
				   ed->op == OP_RM ? "mapped" : "exposed");
			return 1;
		}
		if ((rc = create_app()))
			return rc;
	}
	json_decref(e);
	for (int attempt = 0;; attempt++) {
		if ((rc = hw_cli_call("GET", "/v1/apps/" APP_NAME "/settings",
				      NULL, 10000, &doc)))
			return rc;
		if ((rc = apply(doc, ed, &same)))
			goto out;
		if (same) {
			printf("forward: %s -> service %s of %s already\n",
			       ed->listen, ed->name, ed->pk);
			goto out;
		}
		if (hw_fwd_doc_check(doc, err, sizeof(err))) {
			hw_cli_err("forward: the settings (revision %lld) "
				   "would not be valid, nothing changed: %s",
				   hw_cli_num(doc, "revision"), err);
			rc = 1;
			goto out;
		}
		free(pre_err);
		pre_err = current_error();
		put_ms = hw_cli_now_ms();
		if ((rc = hw_cli_request("PUT", "/v1/apps/" APP_NAME
					 "/settings", doc, 15000, &status,
					 &resp)))
			goto out;
		if (status == 200)
			break;
		if (status != 409 || attempt) {
			hw_cli_err("forward: %s",
				   hw_cli_str(resp, "error")[0]
					   ? hw_cli_str(resp, "error")
					   : "the visor refused "
					     "the settings");
			rc = 1;
			goto out;
		}
		json_decref(doc);
		json_decref(resp);
		doc = resp = NULL;
	}
	say_done(ed);
	rc = wait_applied(hw_cli_num(resp, "revision"), put_ms, pre_err,
			  ed->op == OP_ADD ? ed->listen : NULL);
out:
	free(pre_err);
	json_decref(doc);
	json_decref(resp);
	return rc;
}

static int cmd_expose(int argc, char **argv)
{
	struct edit ed = {.op = OP_EXPOSE};
	const char *allow[HW_FWD_ALLOW_MAX];
	const char *pos[2];
	int npos = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--allow")) {
			if (i + 1 >= argc) {
				hw_cli_err("forward expose: --allow needs a "
					   "value (PK or any)");
				return 2;
			}
			if (ed.nallow == HW_FWD_ALLOW_MAX) {
				hw_cli_err("forward expose: at most %d "
					   "--allow", HW_FWD_ALLOW_MAX);
				return 2;
			}
			allow[ed.nallow++] = argv[++i];
		} else if (!strncmp(argv[i], "--allow=", 8)) {
			if (ed.nallow == HW_FWD_ALLOW_MAX) {
				hw_cli_err("forward expose: at most %d "
					   "--allow", HW_FWD_ALLOW_MAX);
				return 2;
			}
			allow[ed.nallow++] = argv[i] + 8;
		} else if (argv[i][0] == '-') {
			hw_cli_err("forward expose: unknown option '%s' (see "
				   "'hopwire forward --help')", argv[i]);
			return 2;
		} else if (npos == 2) {
			hw_cli_err("forward expose: unexpected '%s'", argv[i]);
			return 2;
		} else {
			pos[npos++] = argv[i];
		}
	}
	if (npos < 2) {
		hw_cli_err("forward expose: give NAME and HOST:PORT (hopwire "
			   "forward expose ssh 127.0.0.1:22 --allow PK)");
		return 2;
	}
	if (ed.nallow == 0) {
		hw_cli_err("forward expose: say who may connect to %s: "
			   "--allow PK (repeatable) or --allow any", pos[0]);
		return 2;
	}
	ed.name = pos[0];
	ed.target = pos[1];
	ed.allow = allow;
	return change(&ed);
}

/* 0 when s is a service name; else says so (cmd: the command) and
 * returns 2. */
static int check_name(const char *cmd, const char *s)
{
	if (hw_fwd_name_ok(s))
		return 0;
	hw_cli_err("forward %s: '%s' is not a service name: 1 to %d of a-z "
		   "0-9 . _ -", cmd, s, HW_FWD_NAME_MAX);
	return 2;
}

/* 0 when s is a visor's key; else says so and returns 2. */
static int check_pk(const char *cmd, const char *arg, const char *s)
{
	if (!hw_cli_pk_bad(s))
		return 0;
	hw_cli_err("forward %s: '%s' is not a visor's public key: %s", cmd,
		   arg, hw_cli_pk_bad(s));
	return 2;
}

static int cmd_unexpose(int argc, char **argv)
{
	struct edit ed = {.op = OP_UNEXPOSE};

	if (argc != 2 || argv[1][0] == '-') {
		hw_cli_err("forward unexpose: give the service's NAME, and "
			   "only it");
		return 2;
	}
	if (check_name("unexpose", argv[1]))
		return 2;
	ed.name = argv[1];
	return change(&ed);
}

static int cmd_add(int argc, char **argv)
{
	struct edit ed = {.op = OP_ADD};
	char err[512];

	if (argc != 4) {
		hw_cli_err("forward add: give [BIND:]PORT PK NAME (hopwire "
			   "forward add 2200 PK ssh)");
		return 2;
	}
	if (hw_fwd_listen_parse(argv[1], ed.listen, err, sizeof(err))) {
		hw_cli_err("forward add: %s", err);
		return 2;
	}
	if (check_pk("add", argv[2], argv[2]) || check_name("add", argv[3]))
		return 2;
	ed.pk = argv[2];
	ed.name = argv[3];
	return change(&ed);
}

static int cmd_rm(int argc, char **argv)
{
	struct edit ed = {.op = OP_RM};
	char err[512];

	if (argc != 2) {
		hw_cli_err("forward rm: give the mapping's [BIND:]PORT, and "
			   "only it");
		return 2;
	}
	if (hw_fwd_listen_parse(argv[1], ed.listen, err, sizeof(err))) {
		hw_cli_err("forward rm: %s", err);
		return 2;
	}
	return change(&ed);
}

/* The entry of list (the status's "expose" or "map") whose member key is
 * value, or NULL. */
static json_t *find_by(json_t *list, const char *key, const char *value)
{
	json_t *e;
	size_t i;

	json_array_foreach(list, i, e)
		if (!strcasecmp(hw_cli_str(e, key), value))
			return e;
	return NULL;
}

/* The listing: the settings, what the app's status says of each entry,
 * the open connections. */
static int cmd_ls(int argc, char **argv)
{
	json_t *app = NULL, *doc = NULL, *st = NULL, *errdoc = NULL, *out;
	json_t *services, *maps, *conns, *e, *s;
	const char *note = NULL;
	char note_buf[1024], b1[32], b2[32];
	long status;
	size_t i;
	int rc;

	(void)argv;
	if (argc > 1) {
		hw_cli_err("forward ls: unexpected '%s'", argv[1]);
		return 2;
	}
	if (!(app = hw_cli_app_entry(APP_NAME, &rc))) {
		if (rc)
			return rc;
		if (hw_cli_opts.json) {
			out = json_pack("{s:n, s:n, s:[], s:[], s:[], s:s}",
					"app", "revision", "expose", "map",
					"conns", "note", "the forward app is "
					"not configured on this visor");
			hw_cli_print_json(out);
			json_decref(out);
		} else {
			printf("forward: the app '" APP_NAME "' is not "
			       "configured on this visor (hopwire forward "
			       "expose or add configures it)\n");
		}
		return 0;
	}
	if ((rc = hw_cli_call("GET", "/v1/apps/" APP_NAME "/settings", NULL,
			      10000, &doc)))
		goto done;
	if ((rc = hw_cli_request("GET", "/v1/apps/" APP_NAME "/status", NULL,
				 10000, &status, &st)))
		goto done;
	if (status != 200) {
		errdoc = st;
		st = NULL;
	}
	const char *state = hw_cli_str(app, "state");
	int running = !strcmp(state, "running") || !strcmp(state, "connected");
	if (!running) {
		snprintf(note_buf, sizeof(note_buf), "the app is not running "
			 "(%s%s%s): nothing is exposed or mapped now%s", state,
			 json_is_string(json_object_get(app, "error")) ? ": "
								       : "",
			 hw_cli_str(app, "error"),
			 st ? "; its status is its last word" : "");
		note = note_buf;
	} else if (!st) {
		snprintf(note_buf, sizeof(note_buf), "the app runs but has "
			 "written no status yet%s%s", errdoc ? ": " : "",
			 errdoc ? hw_cli_str(errdoc, "error") : "");
		note = note_buf;
	} else if (hw_cli_num(st, "revision") != hw_cli_num(doc, "revision")) {
		snprintf(note_buf, sizeof(note_buf),
			 "the app runs revision "
			 "%lld of the settings, not yet %lld",
			 hw_cli_num(st, "revision"),
			 hw_cli_num(doc, "revision"));
		note = note_buf;
	}

	services = json_array();
	maps = json_array();
	conns = st && json_is_array(json_object_get(st, "conns"))
			? json_incref(json_object_get(st, "conns"))
			: json_array();
	json_array_foreach(json_object_get(doc, "expose"), i, e) {
		s = find_by(json_object_get(st, "expose"), "name",
			    hw_cli_str(e, "name"));
		json_array_append_new(
			services, json_pack("{s:O?, s:O?, s:O?, s:O?}", "name",
					    json_object_get(e, "name"),
					    "target",
					    json_object_get(e, "target"),
					    "allow", json_object_get(e, "allow"),
					    "conns",
					    s ? json_object_get(s, "conns")
					      : NULL));
	}
	json_array_foreach(json_object_get(doc, "map"), i, e) {
		s = find_by(json_object_get(st, "map"), "listen",
			    hw_cli_str(e, "listen"));
		json_array_append_new(
			maps, json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, "
					"s:O?}", "listen",
					json_object_get(e, "listen"), "pk",
					json_object_get(e, "pk"), "service",
					json_object_get(e, "service"), "state",
					s ? json_object_get(s, "state") : NULL,
					"error",
					s ? json_object_get(s, "error") : NULL,
					"conns",
					s ? json_object_get(s, "conns")
					  : NULL));
	}
	if (hw_cli_opts.json) {
		out = json_pack("{s:O, s:O, s:O?, s:O?, s:O, s:O, s:O, s:s?}",
				"app", app, "revision",
				json_object_get(doc, "revision"),
				"applied_revision",
				st ? json_object_get(st, "revision") : NULL,
				"settings_error",
				st ? json_object_get(st, "settings_error")
				   : NULL,
				"expose", services, "map", maps, "conns",
				conns, "note", note);
		hw_cli_print_json(out);
		json_decref(out);
		goto lists;
	}
	printf("app: %s (%s), settings revision %lld", APP_NAME, state,
	       hw_cli_num(doc, "revision"));
	if (st)
		printf(", applied %lld", hw_cli_num(st, "revision"));
	printf("\n");
	if (note)
		printf("  note: %s\n", note);
	if (st && json_is_string(json_object_get(st, "settings_error")))
		printf("  settings error: %s\n",
		       hw_cli_str(st, "settings_error"));
	printf("services exposed here:%s\n",
	       json_array_size(services) ? "" : " none");
	json_array_foreach(services, i, e) {
		json_t *a;
		size_t k;
		printf("  %-12s -> %s, for ", hw_cli_str(e, "name"),
		       hw_cli_str(e, "target"));
		json_array_foreach(json_object_get(e, "allow"), k, a) {
			const char *who = json_string_value(a);
			printf("%s%s", k ? ", " : "",
			       !who ? "?" : strcmp(who, "any") ? who
							   : "any visor");
		}
		if (json_is_integer(json_object_get(e, "conns")))
			printf("; %lld open", hw_cli_num(e, "conns"));
		printf("\n");
	}
	printf("mappings:%s\n", json_array_size(maps) ? "" : " none");
	json_array_foreach(maps, i, e) {
		printf("  %s -> service %s of %s: %s", hw_cli_str(e, "listen"),
		       hw_cli_str(e, "service"), hw_cli_str(e, "pk"),
		       json_is_string(json_object_get(e, "state"))
			       ? hw_cli_str(e, "state")
			       : "unknown (not in the app's status)");
		if (json_is_string(json_object_get(e, "error")))
			printf(" (%s)", hw_cli_str(e, "error"));
		if (json_is_integer(json_object_get(e, "conns")))
			printf("; %lld open", hw_cli_num(e, "conns"));
		printf("\n");
	}
	printf("connections:%s\n", json_array_size(conns) ? "" : " none open");
	json_array_foreach(conns, i, e) {
		long long since = hw_cli_num(e, "since_ms");

		hw_cli_human_bytes(hw_cli_num(e, "bytes_up"), b1, sizeof(b1));
		hw_cli_human_bytes(hw_cli_num(e, "bytes_down"), b2, sizeof(b2));
		printf("  %s side: client %s port %lld -> server %s port "
		       "%lld (service %s)\n    %s up, %s down, for %.1f s\n",
		       hw_cli_str(e, "side"), hw_cli_str(e, "client_pk"),
		       hw_cli_num(e, "client_port"), hw_cli_str(e, "server_pk"),
		       hw_cli_num(e, "service_port"), hw_cli_str(e, "service"),
		       b1, b2,
		       since > 0 ? (double)(hw_cli_now_ms() - since) / 1000
				 : 0.0);
	}
lists:
	json_decref(services);
	json_decref(maps);
	json_decref(conns);
	rc = 0;
done:
	json_decref(app);
	json_decref(doc);
	json_decref(st);
	json_decref(errdoc);
	return rc;
}

/* The app binary beside the running hopwire, like the launcher's beside
 * hopwire-visor; else its bare name, for execvp's PATH. */
static void app_binary(char *out, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/'))) {
			*slash = '\0';
			if ((size_t)snprintf(out, len, "%s/" APP_BIN, exe) <
				    len &&
			    access(out, X_OK) == 0)
				return;
		}
	}
	snprintf(out, len, "%s", APP_BIN);
}

static int cmd_stdio(int argc, char **argv)
{
	char pk[HW_FWD_ADDR_MAX], bin[PATH_MAX];
	json_t *info = NULL;
	size_t n;
	int rc;

	if (argc != 3) {
		hw_cli_err("forward stdio: give PK NAME (as ProxyCommand "
			   "hopwire forward stdio %%h ssh)");
		return 2;
	}
	/* ssh's %h is the host as typed: PK, or PK.hw for a Host *.hw
	 * block. */
	snprintf(pk, sizeof(pk), "%s", argv[1]);
	n = strlen(pk);
	if (n > 3 && !strcasecmp(pk + n - 3, ".hw"))
		pk[n - 3] = '\0';
	if (check_pk("stdio", argv[1], pk))
		return 2;
	for (char *c = pk; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	if (check_name("stdio", argv[2]))
		return 2;
	if ((rc = hw_cli_call("GET", "/v1/info", NULL, 10000, &info)))
		return rc;
	if (!json_is_string(json_object_get(info, "apps_socket"))) {
		hw_cli_err("forward stdio: the visor does not name its app "
			   "socket (GET /v1/info has no apps_socket)");
		json_decref(info);
		return 1;
	}
	if (setenv("HOPWIRE_APP_SOCKET", hw_cli_str(info, "apps_socket"), 1)) {
		hw_cli_err("forward stdio: %s", strerror(errno));
		json_decref(info);
		return 1;
	}
	json_decref(info);
	/* The app connects through the socket, not a launcher's channel. */
	unsetenv("HOPWIRE_APP_FD");
	app_binary(bin, sizeof(bin));
	fflush(stdout);
	char *args[] = {APP_BIN, "--stdio", pk, argv[2], NULL};
	if (strchr(bin, '/'))
		execv(bin, args);
	else
		execvp(bin, args);
	hw_cli_err("forward stdio: cannot run %s (%s): not beside hopwire "
		   "nor in PATH? (build it: make)", bin, strerror(errno));
	return 1;
}

int hw_cli_forward(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;
	int rc;

	if ((rc = hw_cli_help(argc, argv, forward_usage)) >= 0)
		return rc;
	if (!strcmp(sub, "expose"))
		return cmd_expose(argc - 1, argv + 1);
	if (!strcmp(sub, "unexpose"))
		return cmd_unexpose(argc - 1, argv + 1);
	if (!strcmp(sub, "add"))
		return cmd_add(argc - 1, argv + 1);
	if (!strcmp(sub, "rm"))
		return cmd_rm(argc - 1, argv + 1);
	if (!strcmp(sub, "ls"))
		return cmd_ls(argc - 1, argv + 1);
	if (!strcmp(sub, "stdio"))
		return cmd_stdio(argc - 1, argv + 1);
	hw_cli_err("forward: unknown command '%s' (expose, unexpose, add, rm, "
		   "ls, stdio; see 'hopwire forward --help')", sub);
	return 2;
}
