/* hopwire-forward: TCP port forwarding between visors (docs/forward.md).
 * One program is both sides: it exposes local TCP services to the visors
 * its settings allow (loops on port 47, a stream per connection) and
 * maps local ports to services of other visors (one loop per server
 * visor, kept up by a muxlink). Its settings are the visor's
 * LOCAL_DIR/apps/NAME/settings.json, read again when they change; its
 * state goes to status.json. Uses the SDK, jansson and libc. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "fwd.h"

static const char usage[] =
	"usage: hopwire-forward [--settings FILE] [--status FILE]\n"
	"       hopwire-forward --stdio PK NAME\n"
	"\n"
	"TCP port forwarding between visors (app port 47). It offers the "
	"local TCP\n"
	"services its settings expose to the visors they allow, and listens "
	"on the\n"
	"local ports its settings map, carrying each connection to a service "
	"of\n"
	"another visor. Change the settings with 'hopwire forward expose|add|"
	"rm|...':\n"
	"they are read again within a second, open connections untouched.\n"
	"\n"
	"  --settings FILE  the settings (default: settings.json in the "
	"working\n"
	"                   directory, where the visor keeps them)\n"
	"  --status FILE    where to write the state as JSON (default: "
	"status.json in\n"
	"                   the working directory when a visor launched the "
	"app)\n"
	"  --stdio PK NAME  carry one connection to service NAME of visor PK "
	"on stdin\n"
	"                   and stdout, then exit (ssh -o ProxyCommand="
	"'hopwire forward\n"
	"                   stdio %h ssh' user@PK)\n"
	"\n"
	"Started by hand, the app reaches the visor through HOPWIRE_APP_SOCKET "
	"(the\n"
	"visor's LOCAL_DIR/apps.sock). Exit 0 on SIGTERM or when the visor "
	"goes.\n";

struct fwd fwd = {.mu = PTHREAD_MUTEX_INITIALIZER};
pthread_attr_t fwd_thread_attr;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

long long fwd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long fwd_wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int fwd_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fwd_read_msg(int fd, uint8_t *buf, size_t cap, size_t *len,
		 long long deadline,
		 int (*parse)(const uint8_t *, size_t, void *, size_t *),
		 void *out, size_t *used)
{
	int rc;

	while ((rc = parse(buf, *len, out, used)) == -EAGAIN) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		long long left = deadline - fwd_now_ms();
		ssize_t n;

		if (*len >= cap)
			return -EPROTO;
		if (left <= 0)
			return -ETIMEDOUT;
		if ((rc = poll(&pfd, 1, (int)left)) < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			return rc ? -errno : -ETIMEDOUT;
		n = read(fd, buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EPIPE;
		*len += (size_t)n;
	}
	return rc;
}

int fwd_connect(const char *host, const char *port, int timeout_ms,
		uint8_t *status, char *why, size_t whylen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *a;
	long long deadline = fwd_now_ms() + timeout_ms;
	int rc, fd = -1, err = 0;

	if ((rc = getaddrinfo(host, port, &hints, &res))) {
		*status = HW_FWD_UNREACHABLE;
		snprintf(why, whylen, "%s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (a = res; a && fd < 0; a = a->ai_next) {
		struct pollfd pfd = {.events = POLLOUT};
		socklen_t el = sizeof(err);
		long long left;

		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC |
					      SOCK_NONBLOCK, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		err = errno;
		if (err == EINPROGRESS) {
			pfd.fd = fd;
			do
				left = deadline - fwd_now_ms(),
				rc = poll(&pfd, 1, left > 0 ? (int)left : 0);
			while (rc < 0 && errno == EINTR);
			err = rc == 0 ? ETIMEDOUT : rc < 0 ? errno : 0;
			if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
					       &el) < 0)
				err = errno;
			if (!err)
				break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0) {
		/* Blocking again: the mux sets what it needs. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		return fd;
	}
	*status = err == ECONNREFUSED ? HW_FWD_REFUSED
		  : err == ETIMEDOUT  ? HW_FWD_TIMED_OUT
				      : HW_FWD_UNREACHABLE;
	snprintf(why, whylen, "%s:%s: %s", host, port,
		 err == ETIMEDOUT ? "no answer within 10 s" : strerror(err));
	return -1;
}

/* ---- open connections ---- */

static void conn_done(struct hw_app_mux_watch *w)
{
	struct fwd_conn *c = (struct fwd_conn *)w;

	pthread_mutex_lock(&fwd.mu);
	if (c->prev)
		c->prev->next = c->next;
	else
		fwd.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	fwd.nconns--;
	for (int i = 0; c->client_side && i < fwd.nmaps; i++)
		if (!strcmp(fwd.maps[i].m.listen, c->listen))
			fwd.maps[i].conns--;
	fwd.changed = 1;
	pthread_mutex_unlock(&fwd.mu);
	free(c);
}

int fwd_conn_relay(struct fwd_conn *c, struct hw_muxlink_ref *ref,
		   struct hw_app_mux *mux, int s, int sock)
{
	int rc;

	c->w.done = conn_done;
	c->since_ms = fwd_wall_ms();
	/* Listed before the relay starts: its end may come at once. */
	pthread_mutex_lock(&fwd.mu);
	c->prev = NULL;
	c->next = fwd.conns;
	if (fwd.conns)
		fwd.conns->prev = c;
	fwd.conns = c;
	fwd.nconns++;
	for (int i = 0; c->client_side && i < fwd.nmaps; i++)
		if (!strcmp(fwd.maps[i].m.listen, c->listen))
			fwd.maps[i].conns++;
	fwd.changed = 1;
	pthread_mutex_unlock(&fwd.mu);
	rc = ref ? hw_muxlink_relay(ref, s, sock, &c->w)
		 : hw_app_mux_relay(mux, s, sock, &c->w);
	if (rc)
		conn_done(&c->w);
	return rc;
}

/* ---- status.json (docs/forward.md "Status") ---- */

static json_t *status_json(void)
{
	json_t *o = json_object(), *ex = json_array(), *mp = json_array(),
	       *cs = json_array();
	const struct fwd_settings *set = fwd.set;

	json_object_set_new(o, "version", json_integer(1));
	json_object_set_new(o, "revision",
			    json_integer(set ? set->revision : 0));
	json_object_set_new(o, "settings_error",
			    fwd.settings_error[0]
				    ? json_string(fwd.settings_error)
				    : json_null());
	for (int i = 0; set && i < set->nservices; i++) {
		const struct fwd_service *v = &set->services[i];
		json_t *allow = json_array(), *e;
		int n = 0;

		if (v->allow_any)
			json_array_append_new(allow, json_string("any"));
		for (int k = 0; k < v->nallow; k++)
			json_array_append_new(allow, json_string(v->allow[k]));
		for (struct fwd_conn *c = fwd.conns; c; c = c->next)
			n += !c->client_side && !strcmp(c->service, v->name);
		e = json_pack("{s:s, s:s, s:o, s:i}", "name", v->name, "target",
			      v->target, "allow", allow, "conns", n);
		json_array_append_new(ex, e);
	}
	for (int i = 0; i < fwd.nmaps; i++) {
		const struct fwd_maprt *m = &fwd.maps[i];
		struct hw_muxlink_status st;
		const char *state = "listen-failed", *err = m->error;

		if (m->lfd >= 0 && m->peer) {
			hw_muxlink_status(m->peer->link, &st);
			state = hw_muxlink_state_str(st.state);
			err = st.state == HW_MUXLINK_UP ? "" : st.error;
		}
		json_array_append_new(mp, json_pack(
			"{s:s, s:s, s:s, s:s, s:o, s:i}", "listen", m->m.listen,
			"pk", m->m.pk, "service", m->m.service, "state", state,
			"error", err[0] ? json_string(err) : json_null(),
			"conns", m->conns));
	}
	for (struct fwd_conn *c = fwd.conns; c; c = c->next)
		json_array_append_new(cs, json_pack(
			"{s:s, s:s, s:i, s:s, s:s, s:i, s:I, s:I, s:I}",
			"side", c->client_side ? "client" : "server",
			"client_pk", c->client_pk, "client_port", c->client_port,
			"server_pk", c->server_pk, "service", c->service,
			"service_port", c->service_port, "bytes_up",
			(json_int_t)(__atomic_load_n(&c->w.sent,
						     __ATOMIC_RELAXED) -
				     c->hdr_sent),
			"bytes_down",
			(json_int_t)(__atomic_load_n(&c->w.received,
						     __ATOMIC_RELAXED) -
				     c->hdr_received),
			"since_ms", (json_int_t)c->since_ms));
	json_object_set_new(o, "expose", ex);
	json_object_set_new(o, "map", mp);
	json_object_set_new(o, "conns", cs);
	return o;
}

/* Written through a temporary file and a rename, when it changed. The
 * server side's bytes_up is what the server sent: toward the client. */
static void write_status(const char *path)
{
	static char *last;
	char tmp[PATH_MAX + 8], *doc;
	json_t *o;
	FILE *f;

	pthread_mutex_lock(&fwd.mu);
	o = status_json();
	fwd.changed = 0;
	pthread_mutex_unlock(&fwd.mu);
	doc = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!doc || (last && !strcmp(doc, last))) {
		free(doc);
		return;
	}
	free(last);
	last = doc;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "we"))) {
		fprintf(f, "%.*s,\"updated_ms\":%lld}\n", (int)strlen(doc) - 1,
			doc, fwd_wall_ms());
		if (fclose(f) == 0 && rename(tmp, path) == 0)
			return;
	}
	fprintf(stderr, LOG ": cannot write %s: %s\n", path, strerror(errno));
	unlink(tmp);
}

/* ---- settings ---- */

/* Reads the settings again when the file changed; applies them, or keeps
 * the ones in force and says why. */
static void reload(const char *path, int force)
{
	static struct stat seen;
	struct fwd_settings *set;
	struct stat st = {0};
	char err[512];

	if (stat(path, &st) < 0)
		memset(&st, 0, sizeof(st));
	if (!force && st.st_ino == seen.st_ino && st.st_size == seen.st_size &&
	    st.st_mtim.tv_sec == seen.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == seen.st_mtim.tv_nsec)
		return;
	seen = st;
	if (!(set = malloc(sizeof(*set))))
		return;
	if (fwd_settings_load(path, set, err, sizeof(err))) {
		fprintf(stderr, LOG ": %s: %s (keeping the settings in "
				"force)\n", path, err);
		pthread_mutex_lock(&fwd.mu);
		snprintf(fwd.settings_error, sizeof(fwd.settings_error), "%s",
			 err);
		fwd.changed = 1;
		pthread_mutex_unlock(&fwd.mu);
		free(set);
		return;
	}
	fprintf(stderr, LOG ": settings revision %lld: %d service(s) exposed, "
			"%d port(s) mapped\n", set->revision, set->nservices,
		set->nmaps);
	fwd_maps_apply(set);
	pthread_mutex_lock(&fwd.mu);
	/* Server threads copy what they need under the mutex. */
	free(fwd.set);
	fwd.set = set;
	fwd.settings_error[0] = '\0';
	fwd.changed = 1;
	pthread_mutex_unlock(&fwd.mu);
}

int main(int argc, char **argv)
{
	struct hw_app_config cfg = {.name = "forward", .version = "0.1.0",
				    .port = FWD_PORT};
	struct sigaction sa = {.sa_handler = on_term};
	const char *settings = "settings.json", *status = NULL;
	long long last_status = 0;
	char err[768];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			return 0;
		}
		if (!strcmp(a, "--stdio")) {
			if (i + 3 != argc) {
				fprintf(stderr, LOG ": --stdio takes PK and "
						"NAME, and nothing after them "
						"(see --help)\n");
				return 2;
			}
			signal(SIGPIPE, SIG_IGN);
			return fwd_stdio(argv[i + 1], argv[i + 2]);
		}
		if (!v || (strcmp(a, "--settings") && strcmp(a, "--status"))) {
			fprintf(stderr, LOG ": unknown argument '%s' or missing "
					"value (see --help)\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--settings"))
			settings = v;
		else
			status = v;
	}
	if (!status && getenv("HOPWIRE_APP_FD"))
		status = "status.json";
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	pthread_attr_init(&fwd_thread_attr);
	pthread_attr_setdetachstate(&fwd_thread_attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&fwd_thread_attr, 256 * 1024);
	if (hw_app_setup(&fwd.app, &cfg, err, sizeof(err))) {
		fprintf(stderr, LOG ": %s\n", err);
		return 1;
	}
	snprintf(fwd.pk, sizeof(fwd.pk), "%s", hw_app_local_pk(fwd.app));
	fprintf(stderr, LOG ": on port %u of %s, settings %s\n",
		hw_app_port(fwd.app), fwd.pk, settings);
	reload(settings, 1);
	while (!stop) {
		struct pollfd pfd[1 + FWD_MAPS_MAX];
		int np = 1, idx[FWD_MAPS_MAX];
		struct hw_app_loop loop;
		int rc;

		pfd[0] = (struct pollfd){.fd = hw_app_fd(fwd.app),
					 .events = POLLIN};
		pthread_mutex_lock(&fwd.mu);
		for (int i = 0; i < fwd.nmaps; i++)
			if (fwd.maps[i].lfd >= 0) {
				idx[np - 1] = i;
				pfd[np++] = (struct pollfd){
					.fd = fwd.maps[i].lfd,
					.events = POLLIN};
			}
		pthread_mutex_unlock(&fwd.mu);
		if (status && fwd_now_ms() - last_status >= 1000) {
			write_status(status);
			last_status = fwd_now_ms();
		}
		if (poll(pfd, (nfds_t)np, 250) < 0 && errno != EINTR)
			break;
		reload(settings, 0);
		if (pfd[0].revents) {
			rc = hw_app_accept(fwd.app, &loop, 0);
			if (rc == 0)
				fwd_serve_loop(&loop);
			else if (rc != -EAGAIN) {
				fprintf(stderr, LOG ": the visor closed the "
						"channel\n");
				break;
			}
		}
		/* Listeners only change in this thread: idx holds. */
		for (int k = 1; k < np; k++)
			if (pfd[k].revents)
				fwd_maps_accept(idx[k - 1]);
	}
	return 0;
}
