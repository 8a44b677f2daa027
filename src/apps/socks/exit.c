/* hopwire-socks: the exit of Hopwire's SOCKS5 proxy (docs/socks.md).
 * Takes loops on port 3 from allowed visors. A loop whose first byte is a
 * mux HELLO carries streams (the SDK's mux, as hopwire-socks-client
 * sends them), each one SOCKS5 connection; any other loop is one SOCKS5
 * connection itself. On each: SOCKS5 (server side, no authentication:
 * the visor authenticated the peer), resolution and connect at the exit
 * under the exit policy, then the relay. One thread per connection and
 * one per mux. Uses the SDK (include/hopwire/app.h) and libc only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hopwire/app.h"
#include "policy.h"
#include "relay.h"
#include "socks5.h"

#define SOCKS_PORT 3
#define SOCKS_CONNECT_MS 10000
#define SOCKS_CONNS_MAX 1024
#define SOCKS_ALLOW_MAX 256

static const char usage[] =
	"usage: hopwire-socks [--allow PK|any]... [--allow-dest CIDR[:PORTS]]...\n"
	"                     [--allow-loopback] [--max-conns N]\n"
	"\n"
	"The exit of Hopwire's SOCKS5 proxy: takes loops on port 3, speaks "
	"SOCKS5\n"
	"on each (CONNECT; names resolved here) and relays to the "
	"destination.\n"
	"\n"
	"  --allow PK          take loops from the visor with public key PK "
	"(64 hex\n"
	"                      characters); repeatable. --allow any: from "
	"every visor.\n"
	"                      With neither, every request is refused (0x02).\n"
	"  --allow-dest SPEC   allow destinations CIDR[:PORTS] (10.0.0.0/8,\n"
	"                      192.0.2.1:443, 0.0.0.0/0:80-443, "
	"[2001:db8::/32]:22);\n"
	"                      repeatable. Once given, only these are allowed.\n"
	"                      Default: every address except loopback, "
	"link-local,\n"
	"                      private, CGNAT, multicast and reserved ranges.\n"
	"  --allow-loopback    allow this host's loopback (127/8, ::1) too\n"
	"  --max-conns N       at most N connections at once (default 1024)\n"
	"\n"
	"Started by hand, the app reaches the visor through HOPWIRE_APP_SOCKET "
	"(the\n"
	"visor's LOCAL_DIR/apps.sock). Exit 0 on SIGTERM or when the visor "
	"goes.\n";

static struct hw_policy policy;
static char allowed[SOCKS_ALLOW_MAX][HW_APP_PK_HEX + 1];
static int nallowed, allow_any, max_conns = SOCKS_CONNS_MAX;
static atomic_int nconns, nloops;
static volatile sig_atomic_t stop;
static pthread_attr_t thread_attr;

/* A mux and the threads that use it: the last one frees it. */
struct muxref {
	struct hw_app_mux *mux;
	atomic_int refs;
};

/* One SOCKS5 connection: a plain loop, or a stream of mux. */
struct conn {
	int fd;
	struct muxref *mux; /* NULL: fd is a loop */
	char who[HW_APP_PK_HEX + 1];
};

static void muxref_put(struct muxref *r)
{
	if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
		hw_app_mux_free(r->mux);
		free(r);
	}
}

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int allowed_pk(const char *pk)
{
	if (allow_any)
		return 1;
	for (int i = 0; i < nallowed; i++)
		if (!strcmp(allowed[i], pk))
			return 1;
	return 0;
}

/* The reply code for a failed connect. */
static uint8_t connect_code(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return HW_S5_REFUSED;
	case ENETUNREACH:
		return HW_S5_NET_UNREACH;
	case EHOSTUNREACH:
		return HW_S5_HOST_UNREACH;
	case ETIMEDOUT:
		return HW_S5_TTL_EXPIRED;
	default:
		return HW_S5_FAILURE;
	}
}

/* Connects to sa within deadline: the descriptor, or -errno. */
static int connect_to(const struct sockaddr *sa, socklen_t len,
		      long long deadline)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
					       SOCK_CLOEXEC, 0);
	int err = 0;
	socklen_t el = sizeof(err);

	if (fd < 0)
		return -errno;
	if (connect(fd, sa, len) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		err = errno;
		goto fail;
	}
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		long long left = deadline - hw_socks_now_ms();
		int rc;

		if (left <= 0) {
			err = ETIMEDOUT;
			goto fail;
		}
		rc = poll(&pfd, 1, (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0) {
			err = ETIMEDOUT;
			goto fail;
		}
		break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (!err)
		return fd;
fail:
	close(fd);
	return -err;
}

/* Resolves and connects for request r. Returns the descriptor, or -1
 * with *code the reply code and why a sentence for the log. */
static int open_target(const struct hw_s5_request *r, uint8_t *code,
		       char *why, size_t whylen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV}, *res = NULL;
	char host[256], port[8];
	long long deadline = hw_socks_now_ms() + SOCKS_CONNECT_MS;
	int fd = -1, any_allowed = 0, last = EHOSTUNREACH, rc;

	if (r->atyp == HW_S5_ATYP_DOMAIN) {
		snprintf(host, sizeof(host), "%s", r->host);
	} else {
		inet_ntop(r->atyp == HW_S5_ATYP_IPV4 ? AF_INET : AF_INET6,
			  r->addr, host, sizeof(host));
		hints.ai_flags |= AI_NUMERICHOST;
	}
	snprintf(port, sizeof(port), "%u", r->port);
	if ((rc = getaddrinfo(host, port, &hints, &res))) {
		*code = HW_S5_HOST_UNREACH;
		snprintf(why, whylen, "%s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		if (!hw_policy_allows(&policy, ai->ai_addr))
			continue;
		any_allowed = 1;
		fd = connect_to(ai->ai_addr, ai->ai_addrlen, deadline);
		if (fd < 0)
			last = -fd;
	}
	freeaddrinfo(res);
	if (fd >= 0)
		return fd;
	if (!any_allowed) {
		*code = HW_S5_NOT_ALLOWED;
		snprintf(why, whylen, "%s:%s: not allowed by the exit policy",
			 host, port);
	} else {
		*code = connect_code(last);
		snprintf(why, whylen, "%s:%s: %s", host, port, strerror(last));
	}
	return -1;
}

/* One loop, from greeting to the end of the relay. */
/* Speaks SOCKS5 on c. Returns 1 when c->fd was taken (handed to the
 * mux with the connection), else 0. */
static int serve(const struct conn *c)
{
	uint8_t buf[512], out[HW_S5_REPLY_MAX];
	struct hw_s5_greeting g;
	struct hw_s5_request r;
	struct sockaddr_storage bound;
	socklen_t bl = sizeof(bound);
	long long deadline = hw_socks_now_ms() + HW_SOCKS_NEGOTIATE_MS;
	size_t len = 0, used;
	char why[512];
	uint8_t code;
	const char *who = c->who;
	int fd = c->fd, target = -1, rc;
	ssize_t n;

	while ((rc = hw_s5_parse_greeting(buf, len, &g, &used)) == -EAGAIN)
		if ((n = hw_socks_read_more(fd, buf, &len, sizeof(buf),
					    deadline)) <= 0)
			goto cut;
	if (rc) {
		fprintf(stderr, "hopwire-socks: %.16s: not a SOCKS5 greeting, "
				"closing\n", who);
		return 0;
	}
	if (!hw_s5_greeting_has(&g, HW_S5_METHOD_NONE)) {
		uint8_t no[2] = {HW_S5_VERSION, HW_S5_METHOD_REFUSED};
		hw_socks_write_all(fd, no, 2);
		fprintf(stderr, "hopwire-socks: %.16s: offers no method 0x00, "
				"closing\n", who);
		return 0;
	}
	memmove(buf, buf + used, len - used);
	len -= used;
	{
		uint8_t ok[2] = {HW_S5_VERSION, HW_S5_METHOD_NONE};
		if (hw_socks_write_all(fd, ok, 2))
			return 0;
	}
	while ((rc = hw_s5_parse_request(buf, len, &r, &used)) == -EAGAIN)
		if ((n = hw_socks_read_more(fd, buf, &len, sizeof(buf),
					    deadline)) <= 0)
			goto cut;
	if (rc == -EAFNOSUPPORT) {
		hw_socks_write_all(fd, out, hw_s5_build_reply(
				   out, HW_S5_ATYP_UNSUPPORTED, NULL));
		fprintf(stderr, "hopwire-socks: %.16s: address type 0x%02x "
				"not supported\n", who, buf[3]);
		return 0;
	}
	if (rc) {
		fprintf(stderr, "hopwire-socks: %.16s: malformed SOCKS5 "
				"request, closing\n", who);
		return 0;
	}
	if (r.cmd != HW_S5_CMD_CONNECT) {
		hw_socks_write_all(fd, out, hw_s5_build_reply(
				   out, HW_S5_CMD_UNSUPPORTED, NULL));
		fprintf(stderr, "hopwire-socks: %.16s: command 0x%02x not "
				"supported (CONNECT only)\n", who, r.cmd);
		return 0;
	}
	/* A visor not in --allow learns why from REP 0x02 on every
	 * request; nothing of its reaches the network. */
	if (!allowed_pk(who)) {
		hw_socks_write_all(fd, out, hw_s5_build_reply(
				   out, HW_S5_NOT_ALLOWED, NULL));
		fprintf(stderr, "hopwire-socks: %.16s: not in --allow "
				"(reply 0x02)\n", who);
		return 0;
	}
	if ((target = open_target(&r, &code, why, sizeof(why))) < 0) {
		hw_socks_write_all(fd, out, hw_s5_build_reply(out, code, NULL));
		fprintf(stderr, "hopwire-socks: %.16s: %s (reply 0x%02x)\n",
			who, why, code);
		return 0;
	}
	if (getsockname(target, (struct sockaddr *)&bound, &bl) < 0)
		bound.ss_family = AF_UNSPEC;
	if (hw_socks_write_all(fd, out, hw_s5_build_reply(
				       out, HW_S5_OK,
				       (struct sockaddr *)&bound))) {
		close(target);
		return 0;
	}
	if (c->mux) {
		/* Bytes that came behind the request go first; then the mux
		 * moves the connection's bytes itself. */
		if (len > used &&
		    hw_socks_write_all(target, buf + used, len - used)) {
			close(target);
			return 0;
		}
		if ((rc = hw_app_mux_relay(c->mux->mux, fd, target, NULL))) {
			fprintf(stderr, "hopwire-socks: %.16s: cannot hand the "
					"connection to the mux: %s\n", who,
				strerror(-rc));
			close(target);
		}
		return 1;
	}
	rc = hw_socks_splice(fd, target, buf + used, len - used, NULL);
	if (rc == -ENETRESET)
		fprintf(stderr, "hopwire-socks: %.16s: loop failed: %s\n", who,
			hw_app_loop_error(fd) ? hw_app_loop_error(fd)
					      : "reset");
	close(target);
	return 0;
cut:
	fprintf(stderr, "hopwire-socks: %.16s: %s during negotiation, "
			"closing\n", who,
		n == -ETIMEDOUT ? "no complete request within 10 s"
		: n == 0	? "end of loop"
				: strerror((int)-n));
	return 0;
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;

	if (!serve(c)) {
		if (c->mux)
			close(c->fd);
		else
			hw_app_loop_close(c->fd);
	}
	muxref_put(c->mux);
	free(c);
	atomic_fetch_sub(&nconns, 1);
	return NULL;
}

/* Starts conn_thread on a new connection, or closes it when the exit is
 * full or out of threads. Takes fd either way. */
static void start_conn(int fd, struct muxref *mux, const char *who)
{
	struct conn *c = NULL;
	pthread_t t;

	if (atomic_fetch_add(&nconns, 1) >= max_conns) {
		fprintf(stderr, "hopwire-socks: refused a connection from "
				"%.16s: %d connections open already\n", who,
			max_conns);
	} else if (!(c = calloc(1, sizeof(*c)))) {
		fprintf(stderr, "hopwire-socks: out of memory: closing a "
				"connection from %.16s\n", who);
	} else {
		c->fd = fd;
		c->mux = mux;
		snprintf(c->who, sizeof(c->who), "%s", who);
		if (mux)
			atomic_fetch_add(&mux->refs, 1);
		if (pthread_create(&t, &thread_attr, conn_thread, c) == 0)
			return;
		muxref_put(mux);
		fprintf(stderr, "hopwire-socks: cannot start a thread: "
				"closing a connection from %.16s\n", who);
		free(c);
	}
	atomic_fetch_sub(&nconns, 1);
	if (mux)
		close(fd);
	else
		hw_app_loop_close(fd);
}

/* Waits up to the negotiation timeout for the loop's first byte and
 * says whether it is a mux HELLO (type 0; a SOCKS5 greeting starts with
 * 5). 1: mux, 0: plain SOCKS5, <0: the loop ended or stayed silent. */
static int is_mux(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	uint8_t b;
	ssize_t n;
	int rc;

	do
		rc = poll(&pfd, 1, HW_SOCKS_NEGOTIATE_MS);
	while (rc < 0 && errno == EINTR);
	if (rc <= 0)
		return rc ? -errno : -ETIMEDOUT;
	do
		n = recv(fd, &b, 1, MSG_PEEK);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n ? -errno : -EPIPE;
	return b == 0;
}

/* One loop from an allowed visor: a mux's streams, or one connection. */
static void *loop_thread(void *arg)
{
	struct hw_app_loop *loop = arg;
	struct muxref *mr = NULL;
	int rc = is_mux(loop->fd), s;

	if (rc == 0) {
		start_conn(loop->fd, NULL, loop->remote_pk);
		goto out;
	}
	if (rc < 0) {
		fprintf(stderr, "hopwire-socks: %.16s: %s before the first "
				"byte, closing\n", loop->remote_pk,
			rc == -ETIMEDOUT ? "nothing within 10 s"
					 : "end of loop");
		hw_app_loop_close(loop->fd);
		goto out;
	}
	if (!(mr = calloc(1, sizeof(*mr))) ||
	    (rc = hw_app_mux_new(&mr->mux, loop->fd, 0))) {
		fprintf(stderr, "hopwire-socks: %.16s: cannot start a mux: "
				"%s\n", loop->remote_pk,
			strerror(mr ? -rc : ENOMEM));
		hw_app_loop_close(loop->fd);
		free(mr);
		goto out;
	}
	atomic_init(&mr->refs, 1);
	fprintf(stderr, "hopwire-socks: %.16s: streams over one loop\n",
		loop->remote_pk);
	while ((rc = hw_app_mux_accept(mr->mux, &s, -1)) != -EPIPE) {
		if (rc == 0)
			start_conn(s, mr, loop->remote_pk);
	}
	fprintf(stderr, "hopwire-socks: %.16s: the loop of streams ended: "
			"%s\n", loop->remote_pk,
		hw_app_mux_error(mr->mux) ? hw_app_mux_error(mr->mux)
					  : "closed");
	/* Threads still negotiating see their streams end, then the last
	 * one frees the mux. */
	muxref_put(mr);
out:
	atomic_fetch_sub(&nloops, 1);
	free(loop);
	return NULL;
}

static int parse_args(int argc, char **argv)
{
	char err[256];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			exit(0);
		} else if (!strcmp(a, "--allow-loopback")) {
			policy.allow_loopback = 1;
		} else if (!v) {
			fprintf(stderr, "hopwire-socks: %s needs a value (see "
					"--help)\n", a);
			return -1;
		} else if (!strcmp(a, "--allow")) {
			i++;
			if (!strcmp(v, "any")) {
				allow_any = 1;
			} else if (!hw_socks_pk_ok(v)) {
				fprintf(stderr, "hopwire-socks: --allow '%s' is "
						"not 64 lowercase hex "
						"characters or 'any'\n", v);
				return -1;
			} else if (nallowed == SOCKS_ALLOW_MAX) {
				fprintf(stderr, "hopwire-socks: more than %d "
						"--allow keys\n",
					SOCKS_ALLOW_MAX);
				return -1;
			} else {
				snprintf(allowed[nallowed++],
					 sizeof(allowed[0]), "%s", v);
			}
		} else if (!strcmp(a, "--allow-dest")) {
			i++;
			if (hw_policy_add(&policy, v, err, sizeof(err))) {
				fprintf(stderr, "hopwire-socks: --allow-dest: "
						"%s\n", err);
				return -1;
			}
		} else if (!strcmp(a, "--max-conns")) {
			char *end;
			long m = strtol(v, &end, 10);
			i++;
			if (end == v || *end || m < 1 || m > 65536) {
				fprintf(stderr, "hopwire-socks: --max-conns "
						"'%s' is not 1..65536\n", v);
				return -1;
			}
			max_conns = (int)m;
		} else {
			fprintf(stderr, "hopwire-socks: unknown argument '%s' "
					"(see --help)\n", a);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct hw_app_config cfg = {.name = "socks", .version = "0.1.0",
				    .port = SOCKS_PORT};
	struct sigaction sa = {.sa_handler = on_term};
	struct hw_app *app;
	char err[256];
	int rc;

	if (parse_args(argc, argv))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (hw_app_setup(&app, &cfg, err, sizeof(err))) {
		fprintf(stderr, "hopwire-socks: %s\n", err);
		return 1;
	}
	fprintf(stderr, "hopwire-socks: exit on port %u of %s\n",
		hw_app_port(app), hw_app_local_pk(app));
	if (!allow_any && !nallowed)
		fprintf(stderr, "hopwire-socks: no --allow given: refusing "
				"every visor\n");
	pthread_attr_init(&thread_attr);
	pthread_attr_setdetachstate(&thread_attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&thread_attr, 256 * 1024);
	while (!stop) {
		struct hw_app_loop *loop;
		pthread_t t;

		if (!(loop = calloc(1, sizeof(*loop)))) {
			sleep(1);
			continue;
		}
		rc = hw_app_accept(app, loop, 1000);
		if (rc == -EAGAIN || rc == -EINTR) {
			free(loop);
			continue;
		}
		if (rc) {
			free(loop);
			fprintf(stderr, "hopwire-socks: the visor closed the "
					"channel\n");
			break;
		}
		if (!allowed_pk(loop->remote_pk))
			fprintf(stderr, "hopwire-socks: refused loop from %s: "
					"not in --allow (its requests get "
					"reply 0x02)\n", loop->remote_pk);
		if (atomic_fetch_add(&nloops, 1) >= max_conns) {
			atomic_fetch_sub(&nloops, 1);
			fprintf(stderr, "hopwire-socks: refused loop from "
					"%.16s: %d loops open already\n",
				loop->remote_pk, max_conns);
		} else if (pthread_create(&t, &thread_attr, loop_thread,
					  loop) == 0) {
			continue;
		} else {
			atomic_fetch_sub(&nloops, 1);
			fprintf(stderr, "hopwire-socks: cannot start a thread: "
					"closing the loop from %.16s\n",
				loop->remote_pk);
		}
		hw_app_loop_close(loop->fd);
		free(loop);
	}
	/* Threads still relaying end with the process (they may still
	 * start threads: thread_attr stays); the visor closes their loops. */
	return 0;
}
