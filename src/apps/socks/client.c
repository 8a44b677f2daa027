#define _GNU_SOURCE /* accept4 */
/* hopwire-socks-client: the local end of Hopwire's SOCKS5 proxy
 * (docs/socks.md). Listens on a TCP address and speaks the first part of
 * SOCKS5 itself (the greeting, and RFC 1929 username/password when
 * configured); the request goes to the exit as a stream of the one loop
 * the client holds to it (src/apps/common/muxlink.h), with the exit's greeting answer
 * awaited in the same round trip, and from then on the bytes pass
 * through unchanged. One thread per connection. Uses the SDK
 * (include/hopwire/app.h) and libc only. */
#include <arpa/inet.h>
#include <errno.h>
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
#include <sys/time.h>
#include <unistd.h>

#include "client_auth.h"
#include "hopwire/app.h"
#include "apps/common/muxlink.h"
#include "relay.h"
#include "socks5.h"

#define SOCKS_PORT 3
#define CLIENT_CONNS_MAX 1024
#define CLIENT_LINK_WAIT_MS 10000

static const char usage[] =
	"usage: hopwire-socks-client [--listen ADDR:PORT] [--exit PK]...\n"
	"                            [--auth FILE] [--name NAME] "
	"[--max-conns N]\n"
	"                            [--status FILE]\n"
	"\n"
	"The local end of Hopwire's SOCKS5 proxy: point a browser or curl at "
	"it\n"
	"(curl --socks5-hostname 127.0.0.1:1080 URL). The client holds one "
	"loop to\n"
	"port 3 of an exit (hopwire-socks) and carries every connection as a "
	"stream\n"
	"of it; the exit resolves names and connects.\n"
	"\n"
	"  --listen ADDR:PORT  where to listen (default 127.0.0.1:1080; "
	"[::1]:1080;\n"
	"                      PORT 0: a free port, logged). An address "
	"beyond\n"
	"                      loopback needs --auth.\n"
	"  --exit PK           the exit's visor (64 hex characters); "
	"repeatable: the\n"
	"                      first that answers is used, the next when one "
	"fails.\n"
	"                      With none, every request is answered with "
	"SOCKS reply\n"
	"                      0x01 (general failure).\n"
	"  --auth FILE         require RFC 1929 username/password: FILE holds "
	"one\n"
	"                      USER:PASSWORD per line (keep it mode 600)\n"
	"  --name NAME         the app's name at the visor (default "
	"socks-client)\n"
	"  --max-conns N       at most N connections at once (default 1024)\n"
	"  --status FILE       write the client's state as JSON to FILE once "
	"a second\n"
	"                      while it changes (default: status.json in the "
	"working\n"
	"                      directory when a visor launched the app, "
	"none by hand)\n"
	"\n"
	"Started by hand, the app reaches the visor through HOPWIRE_APP_SOCKET "
	"(the\n"
	"visor's LOCAL_DIR/apps.sock). Exit 0 on SIGTERM or when the visor "
	"goes.\n";

static struct hw_app *app;
static struct hw_muxlink *link_;
static struct hw_auth auth;
static char exits[HW_MUXLINK_PEERS_MAX][HW_APP_PK_HEX + 1];
static const char *listen_spec = "127.0.0.1:1080", *auth_path,
		  *status_path;
static char listen_shown[96];
static int nexits, max_conns = CLIENT_CONNS_MAX;
static atomic_int nconns;
static atomic_ullong conns_total;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void log_conn(const char *fmt, const char *arg)
{
	fprintf(stderr, "hopwire-socks-client: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
}

/* Reads until parse (one of the hw_s5_parse_* functions, through the
 * wrappers below) has a whole message at the start of buf. Returns 0 and
 * *used, or a negative errno after logging why. */
typedef int (*parse_fn)(const uint8_t *p, size_t n, void *out,
			size_t *used);

static int parse_greeting(const uint8_t *p, size_t n, void *o, size_t *u)
{
	return hw_s5_parse_greeting(p, n, o, u);
}

static int parse_auth(const uint8_t *p, size_t n, void *o, size_t *u)
{
	return hw_s5_parse_auth(p, n, o, u);
}

static int parse_request(const uint8_t *p, size_t n, void *o, size_t *u)
{
	return hw_s5_parse_request(p, n, o, u);
}

static int take(int fd, uint8_t *buf, size_t *len, size_t cap,
		long long deadline, parse_fn parse, void *out, size_t *used,
		const char *what)
{
	ssize_t n;
	int rc;

	while ((rc = parse(buf, *len, out, used)) == -EAGAIN) {
		n = hw_socks_read_more(fd, buf, len, cap, deadline);
		if (n > 0)
			continue;
		/* A connection that sent nothing at all is a probe of the
		 * port, not worth a line. */
		if (n != 0 || *len || parse != parse_greeting)
			log_conn("%s", n == -ETIMEDOUT
				      ? "no complete SOCKS5 negotiation within "
					"10 s: closing"
				      : n == 0 ? "connection closed during the "
						 "SOCKS5 negotiation"
					       : "connection failed during the "
						 "SOCKS5 negotiation");
		return n ? (int)n : -EPIPE;
	}
	if (rc && rc != -EAFNOSUPPORT)
		log_conn("malformed SOCKS5 %s: closing", what);
	return rc;
}

static void consume(uint8_t *buf, size_t *len, size_t used)
{
	memmove(buf, buf + used, *len - used);
	*len -= used;
}

static void reply(int fd, uint8_t rep)
{
	uint8_t out[HW_S5_REPLY_MAX];

	hw_socks_write_all(fd, out, hw_s5_build_reply(out, rep, NULL));
}

/* The greeting, and the username/password sub-negotiation when --auth.
 * Returns 0 when the client may send its request. */
static int greet(int fd, uint8_t *buf, size_t *len, size_t cap,
		 long long deadline)
{
	uint8_t method = auth.n ? HW_S5_METHOD_USERPASS : HW_S5_METHOD_NONE;
	struct hw_s5_greeting g;
	struct hw_s5_auth cred;
	size_t used;
	uint8_t out[2];

	if (take(fd, buf, len, cap, deadline, parse_greeting, &g, &used,
		 "greeting"))
		return -1;
	consume(buf, len, used);
	out[0] = HW_S5_VERSION;
	out[1] = hw_s5_greeting_has(&g, method) ? method
						: HW_S5_METHOD_REFUSED;
	if (hw_socks_write_all(fd, out, 2))
		return -1;
	if (out[1] == HW_S5_METHOD_REFUSED) {
		log_conn("the greeting offers no method %s: closing",
			 auth.n ? "2 (username/password, required by --auth)"
				: "0 (no authentication)");
		return -1;
	}
	if (!auth.n)
		return 0;
	if (take(fd, buf, len, cap, deadline, parse_auth, &cred, &used,
		 "username/password request"))
		return -1;
	consume(buf, len, used);
	out[0] = HW_S5_AUTH_VERSION;
	out[1] = hw_auth_check(&auth, &cred) ? 0 : 1;
	memset(&cred, 0, sizeof(cred));
	if (hw_socks_write_all(fd, out, 2) || out[1]) {
		if (out[1])
			log_conn("wrong username or password from a "
				 "connection on %s: closing", listen_shown);
		return -1;
	}
	return 0;
}

/* Sends the exit a greeting (method 0x00: the visor authenticated us)
 * with the request behind it, and takes the exit's 2-byte answer: one
 * round trip. Returns 0, or -1 after logging why. */
static int to_exit(int s, const uint8_t *req, size_t len)
{
	uint8_t hello[HW_S5_REQUEST_MAX + 3 + 512] = {HW_S5_VERSION, 1,
						      HW_S5_METHOD_NONE};
	uint8_t ans[2];
	size_t got = 0;
	long long deadline = hw_socks_now_ms() + HW_SOCKS_NEGOTIATE_MS;
	ssize_t n;

	memcpy(hello + 3, req, len);
	if (hw_socks_write_all(s, hello, 3 + len)) {
		log_conn("%s", "the stream to the exit failed before the "
			       "request");
		return -1;
	}
	while (got < 2)
		if ((n = hw_socks_read_more(s, ans, &got, 2, deadline)) <= 0) {
			log_conn("the exit %s", n == -ETIMEDOUT
				 ? "did not answer within 10 s"
				 : "closed the stream before answering");
			return -1;
		}
	if (ans[0] != HW_S5_VERSION || ans[1] != HW_S5_METHOD_NONE) {
		log_conn("%s", "the exit refused the greeting");
		return -1;
	}
	return 0;
}

/* Negotiates on fd and hands it to the link. 1 when the link took fd,
 * 0 when it is still the caller's to close. */
static int serve(int fd)
{
	uint8_t buf[HW_S5_REQUEST_MAX + 512];
	long long deadline = hw_socks_now_ms() + HW_SOCKS_NEGOTIATE_MS;
	struct hw_muxlink_ref *ref = NULL;
	struct hw_muxlink_status st;
	struct hw_s5_request r;
	size_t len = 0, used;
	int s = -1, rc;

	if (greet(fd, buf, &len, sizeof(buf), deadline))
		return 0;
	rc = take(fd, buf, &len, sizeof(buf), deadline, parse_request, &r,
		  &used, "request");
	if (rc == -EAFNOSUPPORT) {
		reply(fd, HW_S5_ATYP_UNSUPPORTED);
		log_conn("%s", "address type not supported: closing");
		return 0;
	}
	if (rc)
		return 0;
	if (r.cmd != HW_S5_CMD_CONNECT) {
		reply(fd, HW_S5_CMD_UNSUPPORTED);
		log_conn("%s", "command not supported (CONNECT only)");
		return 0;
	}
	/* A link that ended under us is replaced by the keeper: one more
	 * try, nothing was sent yet. */
	for (int tries = 0; tries < 2; tries++) {
		rc = hw_muxlink_open(link_, CLIENT_LINK_WAIT_MS, &s, &ref);
		if (rc != -EPIPE)
			break;
	}
	if (rc) {
		hw_muxlink_status(link_, &st);
		reply(fd, HW_S5_FAILURE);
		log_conn("%s", rc == -ENOENT ? "no exit configured: answering "
					       "general failure"
			 : st.error[0] ? st.error : "no loop to an exit");
		return 0;
	}
	/* The request and what the client sent behind it; from the exit's
	 * reply on, the link's mux moves the bytes itself (and resets the
	 * connection if the link goes first). */
	if (to_exit(s, buf, len)) {
		reply(fd, HW_S5_FAILURE);
		close(s);
		rc = -EPIPE;
	} else if ((rc = hw_muxlink_relay(ref, s, fd, NULL))) {
		log_conn("cannot hand the connection to the link: %s",
			 strerror(-rc));
	}
	hw_muxlink_put(ref);
	return rc == 0;
}

static void *conn_thread(void *arg)
{
	int fd = (int)(intptr_t)arg;

	if (!serve(fd))
		close(fd);
	atomic_fetch_sub(&nconns, 1);
	return NULL;
}

/* Writes s as a JSON string. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* status.json (docs/socks.md "Status"): written to a temporary file and
 * renamed, when it changed, at most once a second. */
static void write_status(void)
{
	static char last[4096];
	struct hw_muxlink_status st;
	struct timeval tv;
	char tmp[4200], *doc = NULL;
	size_t doclen = 0;
	FILE *f;

	if (!status_path)
		return;
	hw_muxlink_status(link_, &st);
	if (!(f = open_memstream(&doc, &doclen)))
		return;
	fprintf(f, "{\"version\":1,\"listen\":");
	json_str(f, listen_shown);
	fprintf(f, ",\"exits\":[");
	for (int i = 0; i < nexits; i++) {
		fprintf(f, i ? "," : "");
		json_str(f, exits[i]);
	}
	fprintf(f, "],\"exit\":");
	if (st.peer >= 0 && st.state == HW_MUXLINK_UP)
		json_str(f, exits[st.peer]);
	else
		fprintf(f, "null");
	fprintf(f, ",\"state\":\"%s\",\"error\":",
		hw_muxlink_state_str(st.state));
	if (st.error[0])
		json_str(f, st.error);
	else
		fprintf(f, "null");
	fprintf(f, ",\"links\":%u,\"conns_open\":%u,\"conns_total\":%llu,"
		"\"bytes_up\":%llu,\"bytes_down\":%llu,\"auth\":%s",
		st.links, st.streams + (unsigned)atomic_load(&nconns),
		atomic_load(&conns_total), st.sent, st.received,
		auth.n ? "true" : "false");
	fclose(f);
	if (!doc || doclen >= sizeof(last) || !strcmp(doc, last)) {
		free(doc);
		return;
	}
	memcpy(last, doc, doclen + 1);
	gettimeofday(&tv, NULL);
	snprintf(tmp, sizeof(tmp), "%s.tmp", status_path);
	if ((f = fopen(tmp, "we"))) {
		fprintf(f, "%s,\"updated_ms\":%lld}\n", doc,
			(long long)tv.tv_sec * 1000 + tv.tv_usec / 1000);
		if (fclose(f) == 0 && rename(tmp, status_path) == 0) {
			free(doc);
			return;
		}
	}
	fprintf(stderr, "hopwire-socks-client: cannot write %s: %s\n",
		status_path, strerror(errno));
	unlink(tmp);
	free(doc);
}

/* Opens the listening socket on spec (HOST:PORT, [V6]:PORT). */
static int listen_on(const char *spec)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV |
					     AI_PASSIVE}, *res = NULL;
	char host[128], *port;
	int fd = -1, one = 1, rc;

	if (strlen(spec) >= sizeof(host))
		goto bad;
	snprintf(host, sizeof(host), "%s", spec[0] == '[' ? spec + 1 : spec);
	if (!(port = strrchr(host, ':')))
		goto bad;
	*port++ = '\0';
	if (spec[0] == '[') {
		size_t l = strlen(host);
		if (!l || host[l - 1] != ']')
			goto bad;
		host[l - 1] = '\0';
	}
	if ((rc = getaddrinfo(host, port, &hints, &res)))
		goto bad;
	if (res->ai_family == AF_INET
		    ? ((ntohl(((struct sockaddr_in *)res->ai_addr)
				      ->sin_addr.s_addr) >> 24) != 127)
		    : !IN6_IS_ADDR_LOOPBACK(
			      &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr)) {
		if (!auth_path) {
			fprintf(stderr, "hopwire-socks-client: --listen %s is "
					"beyond loopback: give --auth FILE "
					"(username/password, RFC 1929) so "
					"that not everyone who reaches it can "
					"use it\n", spec);
			freeaddrinfo(res);
			return -1;
		}
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
		fprintf(stderr, "hopwire-socks-client: --listen %s: %s\n",
			spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
bad:
	fprintf(stderr, "hopwire-socks-client: --listen '%s' is not "
			"ADDR:PORT (127.0.0.1:1080, [::1]:1080)\n", spec);
	return -1;
}

static int parse_args(int argc, char **argv, struct hw_app_config *cfg)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			exit(0);
		}
		if (!v) {
			fprintf(stderr, "hopwire-socks-client: unknown "
					"argument '%s' or missing value (see "
					"--help)\n", a);
			return -1;
		}
		i++;
		if (!strcmp(a, "--listen")) {
			listen_spec = v;
		} else if (!strcmp(a, "--name")) {
			cfg->name = v;
		} else if (!strcmp(a, "--auth")) {
			auth_path = v;
		} else if (!strcmp(a, "--status")) {
			status_path = v;
		} else if (!strcmp(a, "--exit")) {
			if (!hw_socks_pk_ok(v)) {
				fprintf(stderr, "hopwire-socks-client: --exit "
						"'%s' is not 64 lowercase hex "
						"characters\n", v);
				return -1;
			}
			if (nexits == HW_MUXLINK_PEERS_MAX) {
				fprintf(stderr, "hopwire-socks-client: more "
						"than %d --exit keys\n",
					HW_MUXLINK_PEERS_MAX);
				return -1;
			}
			snprintf(exits[nexits++], sizeof(exits[0]), "%s", v);
		} else if (!strcmp(a, "--max-conns")) {
			char *end;
			long m = strtol(v, &end, 10);
			if (end == v || *end || m < 1 || m > 65536) {
				fprintf(stderr, "hopwire-socks-client: "
						"--max-conns '%s' is not "
						"1..65536\n", v);
				return -1;
			}
			max_conns = (int)m;
		} else {
			fprintf(stderr, "hopwire-socks-client: unknown "
					"argument '%s' (see --help)\n", a);
			return -1;
		}
	}
	return 0;
}

/* Says where the listener is (PORT 0 gets a free port) into
 * listen_shown. */
static void show_listener(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64] = "?";
	unsigned port = 0;

	if (getsockname(lfd, (struct sockaddr *)&ss, &sl) == 0) {
		void *ad = ss.ss_family == AF_INET
			? (void *)&((struct sockaddr_in *)&ss)->sin_addr
			: (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
		inet_ntop(ss.ss_family, ad, host, sizeof(host));
		port = ntohs(ss.ss_family == AF_INET
			? ((struct sockaddr_in *)&ss)->sin_port
			: ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	snprintf(listen_shown, sizeof(listen_shown),
		 ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
	fprintf(stderr, "hopwire-socks-client: listening on %s port %u, %s%s\n",
		host, port, nexits ? "exits given" : "no exit configured",
		auth.n ? ", username/password required" : "");
}

/* One accepted connection: its thread, unless the client is full. */
static void take_conn(int lfd, const pthread_attr_t *attr)
{
	struct hw_muxlink_status st;
	pthread_t t;
	int fd;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return;
	/* Connections in negotiation (threads) and relayed (streams). */
	hw_muxlink_status(link_, &st);
	if (atomic_fetch_add(&nconns, 1) + (int)st.streams >= max_conns) {
		atomic_fetch_sub(&nconns, 1);
		fprintf(stderr, "hopwire-socks-client: %d connections open "
				"already: closing a new one\n", max_conns);
		close(fd);
		return;
	}
	atomic_fetch_add(&conns_total, 1);
	if (pthread_create(&t, attr, conn_thread, (void *)(intptr_t)fd)) {
		atomic_fetch_sub(&nconns, 1);
		fprintf(stderr, "hopwire-socks-client: cannot start a thread: "
				"closing a connection\n");
		close(fd);
	}
}

int main(int argc, char **argv)
{
	struct hw_app_config cfg = {.name = "socks-client",
				    .version = "0.1.0"};
	struct sigaction sa = {.sa_handler = on_term};
	struct hw_muxlink_params lp = {.port = SOCKS_PORT,
				       .log = "hopwire-socks-client"};
	pthread_attr_t attr;
	long long last_status = 0;
	char err[768], warn[600];
	int lfd, rc;

	if (parse_args(argc, argv, &cfg))
		return 1;
	if (!status_path && getenv("HOPWIRE_APP_FD"))
		status_path = "status.json";
	if (auth_path) {
		if (hw_auth_load(&auth, auth_path, err, sizeof(err), warn,
				 sizeof(warn))) {
			fprintf(stderr, "hopwire-socks-client: --auth %s\n",
				err);
			return 1;
		}
		if (warn[0])
			fprintf(stderr, "hopwire-socks-client: warning: %s\n",
				warn);
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if ((lfd = listen_on(listen_spec)) < 0)
		return 1;
	if (hw_app_setup(&app, &cfg, err, sizeof(err))) {
		fprintf(stderr, "hopwire-socks-client: %s\n", err);
		return 1;
	}
	lp.app = app;
	lp.peers = (const char (*)[HW_APP_PK_HEX + 1])exits;
	lp.npeers = nexits;
	if ((rc = hw_muxlink_start(&link_, &lp))) {
		fprintf(stderr, "hopwire-socks-client: cannot start: %s\n",
			strerror(-rc));
		return 1;
	}
	show_listener(lfd);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	while (!stop) {
		struct pollfd pfd[2] = {{.fd = lfd, .events = POLLIN},
					{.fd = hw_app_fd(app), .events = POLLIN}};
		struct hw_app_loop loop;

		if (hw_socks_now_ms() - last_status >= 1000) {
			write_status();
			last_status = hw_socks_now_ms();
		}
		if (poll(pfd, 2, 1000) <= 0)
			continue;
		/* Nobody dials a client: a readable channel is the visor
		 * gone (or a stray loop, closed). */
		if (pfd[1].revents) {
			rc = hw_app_accept(app, &loop, 0);
			if (rc == 0)
				hw_app_loop_close(loop.fd);
			else if (rc != -EAGAIN) {
				fprintf(stderr, "hopwire-socks-client: the "
						"visor closed the channel\n");
				break;
			}
		}
		if (pfd[0].revents)
			take_conn(lfd, &attr);
	}
	close(lfd);
	return 0;
}
