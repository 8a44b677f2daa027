/* Asking the processes of a testnet whether its parts work, and waiting
 * for each part while up starts them (or one process restart starts). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testnet/tn_priv.h"

long hw_tn_http_get(const struct hw_tn *tn, const char *url)
{
	return tn->ops->http_get(url, HW_TN_HTTP_TIMEOUT_MS);
}

int hw_tn_api_get(const struct hw_tn *tn, const struct hw_tn_proc *p,
		  const char *path, json_t **resp, char *err, size_t errlen)
{
	long status = 0;
	json_t *r = NULL;
	const char *e;

	*resp = NULL;
	if (tn->ops->api_call(p->sock, "GET", path, NULL, HW_TN_API_TIMEOUT_MS,
			      &status, &r, err, errlen))
		return -1;
	if (status != 200) {
		e = hw_tn_jstr(r, "error");
		snprintf(err, errlen, "GET %s answered HTTP %ld: %s", path,
			 status, e[0] ? e : "?");
		json_decref(r);
		return -1;
	}
	*resp = r ? r : json_object();
	return 0;
}

static void say_exit(const struct hw_tn *tn, const struct hw_tn_proc *p,
		     int status)
{
	if (WIFEXITED(status))
		hw_tn_err(tn, "testnet %s: %s exited with status %d during "
			  "start-up; read %s:", tn->cmd, p->name,
			  WEXITSTATUS(status), p->log);
	else
		hw_tn_err(tn, "testnet %s: %s was killed by signal %d (%s) "
			  "during start-up; read %s:", tn->cmd, p->name,
			  WTERMSIG(status), strsignal(WTERMSIG(status)),
			  p->log);
	hw_tn_log_tail(tn, p->log);
}

int hw_tn_wait(struct hw_tn *tn, long long deadline, int timeout_s,
		     hw_tn_check_fn check, void *arg)
{
	const struct hw_tn_proc *blame;
	struct hw_tn_proc *dead;
	char why[1024];
	int status;

	for (;;) {
		if (tn->interrupted && *tn->interrupted) {
			hw_tn_err(tn, "testnet %s: interrupted", tn->cmd);
			return -EINTR;
		}
		if ((dead = hw_tn_reap(tn, &status))) {
			say_exit(tn, dead, status);
			return -ECHILD;
		}
		why[0] = '\0';
		blame = NULL;
		if (check(tn, arg, why, sizeof(why), &blame))
			return 0;
		if (hw_tn_now_ms() >= deadline) {
			hw_tn_err(tn, "testnet %s: not up after %d s: %s",
				  tn->cmd, timeout_s, why);
			if (blame) {
				hw_tn_err(tn, "read %s; its last lines:",
					   blame->log);
				hw_tn_log_tail(tn, blame->log);
			}
			return -ETIMEDOUT;
		}
		hw_tn_sleep_ms(HW_TN_POLL_MS);
	}
}

int hw_tn_check_discovery(struct hw_tn *tn, void *arg, char *why,
			   size_t whylen, const struct hw_tn_proc **blame)
{
	struct hw_tn_proc *d = hw_tn_role(tn, "discovery");
	char url[HW_TN_URL_MAX + 16];

	snprintf(url, sizeof(url), "%s/health", d->url);
	if (hw_tn_http_get(tn, url) == 200)
		return 1;
	snprintf(why, whylen, "discovery does not answer at %s", url);
	*blame = d;
	return 0;
}

/* p's control API answers and p is registered in discovery. */
static int check_registered(const struct hw_tn *tn, struct hw_tn_proc *p,
			    char *why, size_t whylen,
			    const struct hw_tn_proc **blame)
{
	char err[PATH_MAX + 256];
	json_t *r, *net;
	int ok;

	*blame = p;
	if (hw_tn_api_get(tn, p, "/v1/info", &r, err, sizeof(err))) {
		snprintf(why, whylen, "the control API of %s does not answer: "
			 "%s", p->name, err);
		return 0;
	}
	net = json_object_get(r, "network");
	ok = json_is_true(json_object_get(net, "registered"));
	if (!ok)
		snprintf(why, whylen, "%s is not registered in discovery%s%s",
			 p->name, hw_tn_jstr(net, "last_error")[0] ? ": " : "",
			 hw_tn_jstr(net, "last_error"));
	json_decref(r);
	return ok;
}

/* The relay is registered in discovery. */
static int relay_registered(struct hw_tn *tn, struct hw_tn_proc *relay,
			    char *why, size_t whylen,
			    const struct hw_tn_proc **blame)
{
	char url[HW_TN_URL_MAX + 96];

	snprintf(url, sizeof(url), "%s/v1/relays/%s",
		 hw_tn_role(tn, "discovery")->url, relay->pk);
	if (hw_tn_http_get(tn, url) == 200)
		return 1;
	snprintf(why, whylen, "the relay is not registered in discovery (%s)",
		 url);
	*blame = relay;
	return 0;
}

int hw_tn_check_relay_setup(struct hw_tn *tn, void *arg, char *why,
			     size_t whylen, const struct hw_tn_proc **blame)
{
	return relay_registered(tn, hw_tn_role(tn, "relay"), why, whylen,
				blame) &&
	       check_registered(tn, hw_tn_role(tn, "setup"), why, whylen,
				blame);
}

int hw_tn_check_visors(struct hw_tn *tn, void *arg, char *why, size_t whylen,
			const struct hw_tn_proc **blame)
{
	for (int k = 0; k < tn->nvisors; k++)
		if (!check_registered(tn, &tn->p[3 + k], why, whylen, blame))
			return 0;
	return 1;
}

int hw_tn_check_line(struct hw_tn *tn, void *arg, char *why, size_t whylen,
		      const struct hw_tn_proc **blame)
{
	struct hw_tn_line *line = arg;
	char err[PATH_MAX + 256];

	for (int k = 0; k + 1 < tn->nvisors; k++) {
		struct hw_tn_proc *a = &tn->p[3 + k], *b = &tn->p[4 + k];
		json_t *r, *e, *found = NULL;
		size_t i;
		int up;

		*blame = a;
		if (line->id[k][0])
			continue;
		if (hw_tn_api_get(tn, a, "/v1/transports", &r, err,
				  sizeof(err))) {
			snprintf(why, whylen, "the control API of %s does not "
				 "answer: %s", a->name, err);
			return 0;
		}
		json_array_foreach(r, i, e)
			if (!strcmp(hw_tn_jstr(e, "pk"), b->pk) &&
			    !strcmp(hw_tn_jstr(e, "type"), "tcp"))
				found = e;
		up = found && !strcmp(hw_tn_jstr(found, "state"), "up");
		if (up)
			snprintf(line->id[k], sizeof(line->id[k]), "%s",
				 hw_tn_jstr(found, "id"));
		else if (!found)
			snprintf(why, whylen, "%s has no transport to %s",
				 a->name, b->name);
		else
			snprintf(why, whylen, "transport %s -> %s (%s) is %s%s%s",
				 a->name, b->name, b->addr,
				 hw_tn_jstr(found, "state"),
				 hw_tn_jstr(found, "last_error")[0] ? ": " : "",
				 hw_tn_jstr(found, "last_error"));
		json_decref(r);
		if (!up)
			return 0;
	}
	return 1;
}

int hw_tn_check_line_registered(struct hw_tn *tn, void *arg, char *why,
				 size_t whylen, const struct hw_tn_proc **blame)
{
	struct hw_tn_line *line = arg;
	const char *disc = hw_tn_role(tn, "discovery")->url;
	char url[HW_TN_URL_MAX + 128];

	for (int k = 0; k + 1 < tn->nvisors; k++) {
		snprintf(url, sizeof(url), "%s/v1/transports/%s", disc,
			 line->id[k]);
		if (hw_tn_http_get(tn, url) != 200) {
			snprintf(why, whylen, "transport %s -> %s is not "
				 "registered in discovery (%s)",
				 tn->p[3 + k].name, tn->p[4 + k].name, url);
			*blame = &tn->p[3 + k];
			return 0;
		}
	}
	return 1;
}

/* The chat app of visor v answers HTTP. */
static int chat_answers(struct hw_tn *tn, struct hw_tn_proc *v, char *why,
			size_t whylen, const struct hw_tn_proc **blame)
{
	char url[HW_TN_URL_MAX + 16];

	snprintf(url, sizeof(url), "%s/info", v->chat);
	if (hw_tn_http_get(tn, url) == 200)
		return 1;
	snprintf(why, whylen, "the chat app of %s does not answer at %s (its "
		 "own log: %s/%s/apps/" HW_TN_CHAT_APP ".log)", v->name, url,
		 tn->dir, v->name);
	*blame = v;
	return 0;
}

int hw_tn_check_chat(struct hw_tn *tn, void *arg, char *why, size_t whylen,
		      const struct hw_tn_proc **blame)
{
	for (int k = 0; k < tn->nvisors; k++)
		if (!chat_answers(tn, &tn->p[3 + k], why, whylen, blame))
			return 0;
	return 1;
}

/* p takes TCP connections at p->addr (127.0.0.1:PORT): its listening
 * socket is there. */
static int takes_connections(const struct hw_tn_proc *p, char *why,
			     size_t whylen)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const char *colon = strrchr(p->addr, ':');
	char host[HW_TN_ADDR_MAX];
	int fd, ok;

	snprintf(host, sizeof(host), "%.*s",
		 colon ? (int)(colon - p->addr) : 0, p->addr);
	if (!colon || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		snprintf(why, whylen, "%s: '%s' is not IPv4:PORT", p->name,
			 p->addr);
		return 0;
	}
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(why, whylen, "socket: %s", strerror(errno));
		return 0;
	}
	/* On loopback a connect is answered at once. */
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (!ok)
		snprintf(why, whylen, "%s does not take connections at %s: %s",
			 p->name, p->addr, strerror(errno));
	close(fd);
	return ok;
}

int hw_tn_check_proc(struct hw_tn *tn, void *arg, char *why, size_t whylen,
		     const struct hw_tn_proc **blame)
{
	struct hw_tn_proc *p = arg;

	*blame = p;
	if (!strcmp(p->role, "discovery"))
		return hw_tn_check_discovery(tn, NULL, why, whylen, blame);
	if (!strcmp(p->role, "relay"))
		return takes_connections(p, why, whylen) &&
		       relay_registered(tn, p, why, whylen, blame);
	if (!check_registered(tn, p, why, whylen, blame))
		return 0;
	return strcmp(p->role, "visor") || !tn->chat_built ||
	       chat_answers(tn, p, why, whylen, blame);
}

const char *hw_tn_check_proc_what(const struct hw_tn *tn,
				  const struct hw_tn_proc *p)
{
	if (!strcmp(p->role, "discovery"))
		return "it answers /health";
	if (!strcmp(p->role, "relay"))
		return "it takes connections and is registered in discovery";
	if (strcmp(p->role, "visor") || !tn->chat_built)
		return "its control API answers and it is registered in "
		       "discovery";
	return "its control API answers, it is registered in discovery and "
	       "its chat app answers";
}
