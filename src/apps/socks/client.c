#define _GNU_SOURCE /* accept4 */
/* hopwire-socks-client: the local end of Hopwire's SOCKS5 proxy
 * (docs/socks.md). Listens on a TCP address; each connection gets a loop
 * of its own to port 3 of an exit, and the bytes pass through unchanged
 * both ways (the SOCKS negotiation happens with the exit). One thread per
 * connection. Uses the SDK (include/hopwire/app.h) and libc only. */
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
#include <unistd.h>

#include "hopwire/app.h"
#include "relay.h"
#include "socks5.h"

#define SOCKS_PORT 3
#define CLIENT_EXITS_MAX 16
#define CLIENT_CONNS_MAX 1024
#define CLIENT_DIAL_MS 10000

static const char usage[] =
	"usage: hopwire-socks-client [--listen ADDR:PORT] [--exit PK]...\n"
	"                            [--name NAME] [--max-conns N]\n"
	"\n"
	"The local end of Hopwire's SOCKS5 proxy: point a browser or curl at "
	"it\n"
	"(curl --socks5-hostname 127.0.0.1:1080 URL). Each connection is "
	"carried\n"
	"over a loop of its own to port 3 of an exit (hopwire-socks), which "
	"speaks\n"
	"SOCKS5 and resolves names.\n"
	"\n"
	"  --listen ADDR:PORT  where to listen (default 127.0.0.1:1080; "
	"PORT 0: a free\n"
	"                      port, logged). Only a\n"
	"                      loopback address: username/password "
	"authentication\n"
	"                      for wider binding is not supported yet.\n"
	"  --exit PK           the exit's visor (64 hex characters); "
	"repeatable: the\n"
	"                      first that answers is used, the next when one "
	"fails.\n"
	"                      With none, every request is answered with "
	"SOCKS reply\n"
	"                      0x01 (general failure).\n"
	"  --name NAME         the app's name at the visor (default "
	"socks-client)\n"
	"  --max-conns N       at most N connections at once (default 1024)\n"
	"\n"
	"Started by hand, the app reaches the visor through HOPWIRE_APP_SOCKET "
	"(the\n"
	"visor's LOCAL_DIR/apps.sock). Exit 0 on SIGTERM or when the visor "
	"goes.\n";

static struct hw_app *app;
static char exits[CLIENT_EXITS_MAX][HW_APP_PK_HEX + 1];
static int nexits, max_conns = CLIENT_CONNS_MAX;
static atomic_int nconns, first_exit;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/* With no exit: takes the greeting and request, answers 0x01. */
static void answer_idle(int fd)
{
	uint8_t buf[HW_S5_REQUEST_MAX + 260], out[HW_S5_REPLY_MAX];
	long long deadline = hw_socks_now_ms() + HW_SOCKS_NEGOTIATE_MS;
	struct hw_s5_greeting g;
	struct hw_s5_request r;
	size_t len = 0, used;
	int rc;

	while ((rc = hw_s5_parse_greeting(buf, len, &g, &used)) == -EAGAIN)
		if (hw_socks_read_more(fd, buf, &len, sizeof(buf),
				       deadline) <= 0)
			return;
	if (rc || !hw_s5_greeting_has(&g, HW_S5_METHOD_NONE))
		return;
	memmove(buf, buf + used, len - used);
	len -= used;
	out[0] = HW_S5_VERSION;
	out[1] = HW_S5_METHOD_NONE;
	if (hw_socks_write_all(fd, out, 2))
		return;
	while ((rc = hw_s5_parse_request(buf, len, &r, &used)) == -EAGAIN)
		if (hw_socks_read_more(fd, buf, &len, sizeof(buf),
				       deadline) <= 0)
			return;
	fprintf(stderr, "hopwire-socks-client: no exit configured: "
			"answering general failure\n");
	hw_socks_write_all(fd, out, hw_s5_build_reply(out, HW_S5_FAILURE,
						      NULL));
}

/* Dials the exits from the last one that worked on. The loop's
 * descriptor, or -1 when none answered. */
static int dial_exit(void)
{
	int start = atomic_load(&first_exit);

	for (int k = 0; k < nexits; k++) {
		int i = (start + k) % nexits, rc;
		struct hw_app_loop loop;

		rc = hw_app_dial(app, exits[i], SOCKS_PORT, &loop,
				 CLIENT_DIAL_MS);
		if (rc == 0) {
			atomic_store(&first_exit, i);
			return loop.fd;
		}
		fprintf(stderr, "hopwire-socks-client: exit %.16s: %s\n",
			exits[i], rc == -ECONNREFUSED ? hw_app_last_error(app)
						      : strerror(-rc));
	}
	return -1;
}

static void *conn_thread(void *arg)
{
	int fd = (int)(intptr_t)arg, loop;

	if (!nexits) {
		answer_idle(fd);
	} else if ((loop = dial_exit()) >= 0) {
		int rc = hw_socks_splice(fd, loop, NULL, 0);

		if (rc == -ENETRESET)
			fprintf(stderr, "hopwire-socks-client: loop failed: "
					"%s\n", hw_app_loop_error(loop)
						? hw_app_loop_error(loop)
						: "reset");
		hw_app_loop_close(loop);
	} else {
		fprintf(stderr, "hopwire-socks-client: no exit answered: "
				"closing the connection\n");
	}
	close(fd);
	atomic_fetch_sub(&nconns, 1);
	return NULL;
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
		fprintf(stderr, "hopwire-socks-client: --listen %s: only a "
				"loopback address is supported yet (a wider "
				"bind needs username/password "
				"authentication, not done)\n", spec);
		freeaddrinfo(res);
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 128)) {
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

int main(int argc, char **argv)
{
	struct hw_app_config cfg = {.name = "socks-client",
				    .version = "0.1.0"};
	struct sigaction sa = {.sa_handler = on_term};
	const char *listen_spec = "127.0.0.1:1080";
	pthread_attr_t attr;
	char err[256];
	int lfd;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			return 0;
		}
		if (!v) {
			fprintf(stderr, "hopwire-socks-client: unknown "
					"argument '%s' or missing value (see "
					"--help)\n", a);
			return 1;
		}
		i++;
		if (!strcmp(a, "--listen")) {
			listen_spec = v;
		} else if (!strcmp(a, "--name")) {
			cfg.name = v;
		} else if (!strcmp(a, "--exit")) {
			if (!hw_socks_pk_ok(v)) {
				fprintf(stderr, "hopwire-socks-client: --exit "
						"'%s' is not 64 lowercase hex "
						"characters\n", v);
				return 1;
			}
			if (nexits == CLIENT_EXITS_MAX) {
				fprintf(stderr, "hopwire-socks-client: more "
						"than %d --exit keys\n",
					CLIENT_EXITS_MAX);
				return 1;
			}
			snprintf(exits[nexits++], sizeof(exits[0]), "%s", v);
		} else if (!strcmp(a, "--max-conns")) {
			char *end;
			long m = strtol(v, &end, 10);
			if (end == v || *end || m < 1 || m > 65536) {
				fprintf(stderr, "hopwire-socks-client: "
						"--max-conns '%s' is not "
						"1..65536\n", v);
				return 1;
			}
			max_conns = (int)m;
		} else {
			fprintf(stderr, "hopwire-socks-client: unknown "
					"argument '%s' (see --help)\n", a);
			return 1;
		}
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
	{
		/* PORT 0 gets a free port: say which. */
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
		fprintf(stderr, "hopwire-socks-client: listening on %s port "
				"%u, %s\n", host, port,
			nexits ? "exits given" : "no exit configured");
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	while (!stop) {
		struct pollfd pfd[2] = {{.fd = lfd, .events = POLLIN},
					{.fd = hw_app_fd(app), .events = POLLIN}};
		struct hw_app_loop loop;
		pthread_t t;
		int fd;

		if (poll(pfd, 2, 1000) <= 0)
			continue;
		/* Nobody dials a client: a readable channel is the visor
		 * gone (or a stray loop, closed). */
		if (pfd[1].revents) {
			int rc = hw_app_accept(app, &loop, 0);
			if (rc == 0)
				hw_app_loop_close(loop.fd);
			else if (rc != -EAGAIN) {
				fprintf(stderr, "hopwire-socks-client: the "
						"visor closed the channel\n");
				break;
			}
		}
		if (!pfd[0].revents)
			continue;
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
			continue;
		if (atomic_load(&nconns) >= max_conns) {
			fprintf(stderr, "hopwire-socks-client: %d connections "
					"open already: closing a new one\n",
				max_conns);
			close(fd);
			continue;
		}
		atomic_fetch_add(&nconns, 1);
		if (pthread_create(&t, &attr, conn_thread,
				   (void *)(intptr_t)fd)) {
			atomic_fetch_sub(&nconns, 1);
			close(fd);
		}
	}
	pthread_attr_destroy(&attr);
	close(lfd);
	return 0;
}
