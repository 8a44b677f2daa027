/* hopwire-hello: the smallest useful Hopwire app, and a check that loops
 * work end to end. The server answers each line on every loop with
 * "pong: LINE"; the client sends one line and prints the answer. Uses the
 * SDK (include/hopwire/app.h) and libc only. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hopwire/app.h"

#define HELLO_PORT 10
#define HELLO_TIMEOUT_MS 10000
#define HELLO_LINE_MAX 4096      /* longest line, newline included */
#define HELLO_OUT_PAUSE 65536    /* stop reading a loop with this much unsent */
#define HELLO_LOOPS_MAX 512
#define HELLO_MSG_MAX 4000

static const char usage[] =
	"usage: hopwire-hello server\n"
	"       hopwire-hello client PK [--port N] [MESSAGE...]\n"
	"\n"
	"A ping-pong app for Hopwire.\n"
	"\n"
	"  server   answer every line received on any loop with \"pong: "
	"LINE\".\n"
	"           Runs until the visor closes the app channel (exit 0).\n"
	"  client   open a loop to port N (default 10) of the visor with "
	"public\n"
	"           key PK (64 hex characters), send MESSAGE (the words "
	"joined by\n"
	"           spaces, default \"ping\") and a newline, print the line "
	"that\n"
	"           comes back. Gives up after 10 s. Exit 0 on an answer, 1 "
	"otherwise.\n"
	"\n"
	"The visor starts a configured app itself (config name \"hello\", "
	"port 10).\n"
	"Started by hand, the app reaches the visor through HOPWIRE_APP_SOCKET "
	"(the\n"
	"visor's LOCAL_DIR/apps.sock).\n";

struct conn {
	int fd;
	int eof; /* the far end sent everything it will */
	size_t inlen, outlen, outcap;
	char *out;
	char remote[HW_APP_PK_HEX + 8];
	char in[HELLO_LINE_MAX];
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int out_add(struct conn *c, const char *s, size_t n)
{
	if (c->outlen + n > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 1024;
		char *p;
		while (cap < c->outlen + n)
			cap *= 2;
		if (!(p = realloc(c->out, cap)))
			return -1;
		c->out = p;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, s, n);
	c->outlen += n;
	return 0;
}

static int pong(struct conn *c, const char *line, size_t n)
{
	if (n && line[n - 1] == '\r') /* a CRLF line (telnet-style) */
		n--;
	if (out_add(c, "pong: ", 6) || out_add(c, line, n) ||
	    out_add(c, "\n", 1))
		return -1;
	return 0;
}

/* Why the loop of fd failed (after -ENETRESET). */
static const char *loop_why(int fd)
{
	const char *why = hw_app_loop_error(fd);

	return why ? why : strerror(ENETRESET);
}

/* A loop call failed with rc: says why, when the route failed. */
static void conn_failed(struct conn *c, ssize_t rc)
{
	if (rc == -ENETRESET)
		fprintf(stderr, "hopwire-hello: loop from %s failed: %s\n",
			c->remote, loop_why(c->fd));
}

/* Reads what the loop has and queues the answers. Returns -1 when the
 * loop must close now. */
static int conn_read(struct conn *c)
{
	ssize_t n = hw_app_read(c->fd, c->in + c->inlen,
				sizeof(c->in) - c->inlen);
	size_t start = 0;

	if (n == -EAGAIN)
		return 0;
	if (n < 0) {
		conn_failed(c, n);
		return -1;
	}
	if (n == 0) {
		c->eof = 1;
		/* A last line without its newline is a line too. */
		if (c->inlen && pong(c, c->in, c->inlen))
			return -1;
		c->inlen = 0;
		return 0;
	}
	c->inlen += (size_t)n;
	for (size_t i = 0; i < c->inlen; i++) {
		if (c->in[i] != '\n')
			continue;
		if (pong(c, c->in + start, i - start))
			return -1;
		start = i + 1;
	}
	memmove(c->in, c->in + start, c->inlen - start);
	c->inlen -= start;
	if (c->inlen == sizeof(c->in)) {
		fprintf(stderr, "hopwire-hello: %s: line over %d bytes, "
				"closing the loop\n",
			c->remote, HELLO_LINE_MAX);
		return -1;
	}
	return 0;
}

static int conn_write(struct conn *c)
{
	ssize_t n = hw_app_write(c->fd, c->out, c->outlen);

	if (n == -EAGAIN)
		return 0;
	if (n < 0) {
		conn_failed(c, n);
		return -1;
	}
	memmove(c->out, c->out + n, c->outlen - (size_t)n);
	c->outlen -= (size_t)n;
	return 0;
}

static void conn_free(struct conn *c)
{
	fprintf(stderr, "hopwire-hello: loop from %s closed\n", c->remote);
	hw_app_loop_close(c->fd);
	free(c->out);
	free(c);
}

static int serve(void)
{
	struct hw_app_config cfg = {.name = "hello", .version = "1.0"};
	struct conn *conns[HELLO_LOOPS_MAX];
	struct pollfd pfd[HELLO_LOOPS_MAX + 1];
	struct hw_app *app = NULL;
	struct hw_app_loop loop;
	size_t n = 0;
	char err[256];
	int rc, status = 1;

	if ((rc = hw_app_setup(&app, &cfg, err, sizeof(err)))) {
		fprintf(stderr, "hopwire-hello: %s\n", err);
		return 1;
	}
	fprintf(stderr, "hopwire-hello: serving port %u of %s\n",
		(unsigned)hw_app_port(app), hw_app_local_pk(app));
	for (;;) {
		pfd[0].fd = hw_app_fd(app);
		pfd[0].events = POLLIN;
		for (size_t i = 0; i < n; i++) {
			struct conn *c = conns[i];
			pfd[i + 1].fd = c->fd;
			pfd[i + 1].events =
				(c->outlen ? POLLOUT : 0) |
				(!c->eof && c->outlen < HELLO_OUT_PAUSE ? POLLIN
									: 0);
		}
		if (poll(pfd, n + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("hopwire-hello: poll");
			goto out;
		}
		/* Loops first: the accepts below move the array. */
		for (size_t i = n; i-- > 0;) {
			struct conn *c = conns[i];
			short re = pfd[i + 1].revents;
			int bad = 0;

			if (re & (POLLIN | POLLHUP | POLLERR) && !c->eof &&
			    (pfd[i + 1].events & POLLIN))
				bad = conn_read(c);
			if (!bad && c->outlen)
				bad = conn_write(c);
			if (bad || (c->eof && !c->outlen)) {
				conn_free(c);
				conns[i] = conns[--n];
			}
		}
		if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		while ((rc = hw_app_accept(app, &loop, 0)) == 0) {
			struct conn *c;
			int fl = fcntl(loop.fd, F_GETFL);

			if (n == HELLO_LOOPS_MAX || fl < 0 ||
			    fcntl(loop.fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
			    !(c = calloc(1, sizeof(*c)))) {
				fprintf(stderr, "hopwire-hello: turning a loop "
						"away (%zu open)\n",
					n);
				hw_app_loop_close(loop.fd);
				continue;
			}
			c->fd = loop.fd;
			snprintf(c->remote, sizeof(c->remote), "%s:%u",
				 loop.remote_pk, (unsigned)loop.remote_port);
			fprintf(stderr, "hopwire-hello: loop from %s\n",
				c->remote);
			conns[n++] = c;
		}
		if (rc == -EPIPE) {
			fprintf(stderr, "hopwire-hello: the visor closed the "
					"channel\n");
			status = 0;
			goto out;
		}
		if (rc != -EAGAIN) {
			fprintf(stderr, "hopwire-hello: accept: %s\n",
				strerror(-rc));
			goto out;
		}
	}
out:
	while (n)
		conn_free(conns[--n]);
	hw_app_close(app);
	return status;
}

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || s[0] < '0' || s[0] > '9' || v < 1 ||
	    v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

static int client(int argc, char **argv)
{
	struct hw_app_config cfg = {.name = "hello-client",
				    .version = "1.0",
				    .timeout_ms = HELLO_TIMEOUT_MS};
	struct hw_app *app = NULL;
	struct hw_app_loop loop = {.fd = -1};
	const char *pk = NULL;
	uint16_t port = HELLO_PORT;
	char msg[HELLO_MSG_MAX + 2], reply[HELLO_LINE_MAX + 1], err[256];
	size_t mlen = 0, rlen = 0;
	long long deadline = now_ms() + HELLO_TIMEOUT_MS;
	int words = 0, opts = 1, rc, status = 1;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (opts && !strcmp(a, "--")) {
			opts = 0;
		} else if (opts && (!strcmp(a, "--port") || !strcmp(a, "-p"))) {
			if (++i == argc || parse_port(argv[i], &port)) {
				fprintf(stderr, "hopwire-hello: --port needs "
						"a port 1..65535\n");
				return 1;
			}
		} else if (opts && !strncmp(a, "--port=", 7)) {
			if (parse_port(a + 7, &port)) {
				fprintf(stderr, "hopwire-hello: --port needs "
						"a port 1..65535\n");
				return 1;
			}
		} else if (opts && a[0] == '-' && a[1]) {
			fprintf(stderr, "hopwire-hello: unknown option %s\n%s",
				a, usage);
			return 1;
		} else if (!pk) {
			pk = a;
		} else {
			size_t n = strlen(a);
			if (mlen + !!words + n > HELLO_MSG_MAX) {
				fprintf(stderr, "hopwire-hello: the message "
						"is over %d bytes\n",
					HELLO_MSG_MAX);
				return 1;
			}
			if (words++)
				msg[mlen++] = ' ';
			memcpy(msg + mlen, a, n);
			mlen += n;
		}
	}
	if (!pk) {
		fprintf(stderr, "hopwire-hello: client needs the server's "
				"public key\n%s",
			usage);
		return 1;
	}
	if (!words) {
		memcpy(msg, "ping", 4);
		mlen = 4;
	}
	if (memchr(msg, '\n', mlen)) {
		fprintf(stderr, "hopwire-hello: the message must be one line\n");
		return 1;
	}
	msg[mlen++] = '\n';

	if ((rc = hw_app_setup(&app, &cfg, err, sizeof(err)))) {
		fprintf(stderr, "hopwire-hello: %s\n", err);
		return 1;
	}
	rc = hw_app_dial(app, pk, port, &loop,
			 (int)(deadline - now_ms() > 1 ? deadline - now_ms()
						       : 1));
	if (rc == -EINVAL) {
		fprintf(stderr, "hopwire-hello: '%s' is not a public key (64 "
				"hex characters)\n",
			pk);
		goto out;
	}
	if (rc == -ECONNREFUSED) {
		fprintf(stderr, "hopwire-hello: dial %s:%u: %s\n", pk,
			(unsigned)port, hw_app_last_error(app));
		goto out;
	}
	if (rc == -ETIMEDOUT) {
		fprintf(stderr, "hopwire-hello: dial %s:%u: no loop within "
				"%d s\n",
			pk, (unsigned)port, HELLO_TIMEOUT_MS / 1000);
		goto out;
	}
	if (rc) {
		fprintf(stderr, "hopwire-hello: dial %s:%u: %s\n", pk,
			(unsigned)port, strerror(-rc));
		goto out;
	}
	if ((rc = (int)hw_app_write(loop.fd, msg, mlen)) == -ENETRESET) {
		fprintf(stderr, "hopwire-hello: the loop failed: %s\n",
			loop_why(loop.fd));
		goto out;
	}
	if (rc < 0) {
		fprintf(stderr, "hopwire-hello: send: %s\n", strerror(-rc));
		goto out;
	}
	for (;;) {
		struct pollfd p = {.fd = loop.fd, .events = POLLIN};
		long long left = deadline - now_ms();
		ssize_t n;
		char *nl;

		if (left <= 0) {
			fprintf(stderr, "hopwire-hello: no answer within "
					"%d s\n",
				HELLO_TIMEOUT_MS / 1000);
			goto out;
		}
		if ((rc = poll(&p, 1, (int)left)) < 0 && errno != EINTR) {
			perror("hopwire-hello: poll");
			goto out;
		}
		if (rc <= 0)
			continue;
		n = hw_app_read(loop.fd, reply + rlen, sizeof(reply) - 1 - rlen);
		if (n == -ENETRESET) {
			fprintf(stderr, "hopwire-hello: the loop failed: %s\n",
				loop_why(loop.fd));
			goto out;
		}
		if (n < 0) {
			fprintf(stderr, "hopwire-hello: receive: %s\n",
				strerror((int)-n));
			goto out;
		}
		if (n == 0) {
			fprintf(stderr, "hopwire-hello: the server closed the "
					"loop without answering\n");
			goto out;
		}
		rlen += (size_t)n;
		if ((nl = memchr(reply, '\n', rlen))) {
			fwrite(reply, 1, (size_t)(nl - reply) + 1, stdout);
			status = fflush(stdout) ? 1 : 0;
			goto out;
		}
		if (rlen == sizeof(reply) - 1) {
			fprintf(stderr, "hopwire-hello: the answer is over "
					"%d bytes\n",
				HELLO_LINE_MAX);
			goto out;
		}
	}
out:
	if (loop.fd >= 0)
		hw_app_loop_close(loop.fd);
	hw_app_close(app);
	return status;
}

int main(int argc, char **argv)
{
	/* Loops are sockets: a far end gone is an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return 0;
		}
	}
	if (argc >= 2 && !strcmp(argv[1], "server")) {
		if (argc != 2) {
			fprintf(stderr, "hopwire-hello: server takes no "
					"arguments\n%s",
				usage);
			return 1;
		}
		return serve();
	}
	if (argc >= 2 && !strcmp(argv[1], "client"))
		return client(argc - 2, argv + 2);
	fputs(usage, stderr);
	return 1;
}
