/* Discovery figures: GET /v1/visors/{pk} per second against a real
 * hopwire-discovery on a fresh SQLite file holding 1,000 signed visor
 * entries, driven over several keep-alive connections; beside it, in the
 * same run and the same way, GET /health (no store, no JSON: the HTTP
 * floor of this server on this machine) and the ratio; and PUT rate for
 * information.
 *
 * usage: hw-bench-discovery [PATH-TO-hopwire-discovery]
 * (default ./build/bin/hopwire-discovery; make bench runs from the
 * repository root). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "crypto/identity.h"
#include "discovery/entry.h"
#include "hwtest.h"

#define NVISORS 1000
#define NCONNS 8
#define SECONDS 3.0
#define TARGET_READS 20000.0
#define RESP_MAX (64 * 1024)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t child = -1;

/* Reports, stops the discovery we started, and exits. */
static void die(const char *fmt, const char *arg)
{
	if (child > 0) {
		kill(child, SIGTERM);
		waitpid(child, NULL, 0);
	}
	fprintf(stderr, "hw-bench-discovery: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

/* ---- a small keep-alive HTTP/1.1 client: one request in flight per
 * connection, all connections driven by one poll loop ---- */

struct conn {
	int fd;
	char *req;       /* the request being sent (owned by the generator) */
	size_t req_len, sent;
	char resp[RESP_MAX];
	size_t got;
	int busy;
};

/* Returns the next request (text, length) or NULL when there is none. */
typedef const char *(*next_fn)(void *ud, size_t *len);

static int connect_to(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* Whether c->resp holds a whole response; sets *status. */
static int response_done(struct conn *c, int *status)
{
	char *end, *cl;
	size_t head, body = 0;

	c->resp[c->got] = '\0';
	end = strstr(c->resp, "\r\n\r\n");
	if (!end)
		return 0;
	head = (size_t)(end - c->resp) + 4;
	for (cl = c->resp; (cl = strchr(cl, '\n')) && cl < end; cl++) {
		if (!strncasecmp(cl + 1, "Content-Length:", 15)) {
			body = strtoul(cl + 16, NULL, 10);
			break;
		}
	}
	if (c->got < head + body)
		return 0;
	if (c->got > head + body)
		die("%s", "server sent more than one response");
	*status = atoi(c->resp + 9);
	return 1;
}

/* Runs requests from next over the connections until next runs dry or
 * seconds pass (0: no limit). Returns requests completed; *bad counts
 * answers that were not 200. */
static unsigned long drive(int port, unsigned nconns, double seconds,
			   next_fn next, void *ud, unsigned long *bad,
			   double *elapsed)
{
	static struct conn conns[NCONNS];
	struct pollfd pfd[NCONNS];
	unsigned long done = 0;
	unsigned active = 0;
	double t0 = now(), stop = seconds > 0 ? t0 + seconds : 0;
	int status;

	*bad = 0;
	for (unsigned i = 0; i < nconns; i++) {
		conns[i].fd = connect_to(port);
		if (conns[i].fd < 0)
			die("%s", "cannot connect to discovery");
		conns[i].busy = 0;
	}
	for (;;) {
		int out_of_time = stop && now() >= stop;

		active = 0;
		for (unsigned i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];

			if (!c->busy && !out_of_time) {
				const char *r = next(ud, &c->req_len);

				if (r) {
					c->req = (char *)r;
					c->sent = 0;
					c->got = 0;
					c->busy = 1;
				}
			}
			pfd[i].fd = c->fd;
			pfd[i].events = !c->busy ? 0
					: c->sent < c->req_len ? POLLOUT
							       : POLLIN;
			pfd[i].revents = 0;
			active += (unsigned)c->busy;
		}
		if (!active)
			break;
		if (poll(pfd, nconns, 5000) <= 0)
			die("%s", "discovery stopped answering");
		for (unsigned i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			ssize_t n;

			if (!pfd[i].revents)
				continue;
			if (pfd[i].revents & (POLLERR | POLLHUP))
				die("%s", "discovery closed a connection");
			if (c->sent < c->req_len) {
				n = send(c->fd, c->req + c->sent,
					 c->req_len - c->sent, MSG_NOSIGNAL);
				if (n < 0 && errno != EAGAIN)
					die("send: %s", strerror(errno));
				if (n > 0)
					c->sent += (size_t)n;
				continue;
			}
			n = recv(c->fd, c->resp + c->got,
				 sizeof(c->resp) - 1 - c->got, 0);
			if (n == 0)
				die("%s", "discovery closed a connection");
			if (n < 0) {
				if (errno == EAGAIN)
					continue;
				die("recv: %s", strerror(errno));
			}
			c->got += (size_t)n;
			if (response_done(c, &status)) {
				c->busy = 0;
				done++;
				if (status != 200 && !(*bad)++)
					fprintf(stderr, "hw-bench-discovery: "
						"%.300s\n", c->resp);
			} else if (c->got >= sizeof(c->resp) - 1) {
				die("%s", "response too large");
			}
		}
	}
	*elapsed = now() - t0;
	for (unsigned i = 0; i < nconns; i++)
		close(conns[i].fd);
	return done;
}

/* ---- what is asked ---- */

struct work {
	char **reqs;
	size_t *lens;
	size_t n, next;
	int cycle; /* pick at random instead of in order, forever */
	unsigned seed;
};

static const char *next_req(void *ud, size_t *len)
{
	struct work *w = ud;
	size_t i;

	if (w->cycle) {
		i = (size_t)rand_r(&w->seed) % w->n;
	} else {
		if (w->next == w->n)
			return NULL;
		i = w->next++;
	}
	*len = w->lens[i];
	return w->reqs[i];
}

static char *put_request(const struct hw_identity *id, uint64_t seq,
			 const uint8_t relay[HW_PK_LEN], size_t *len)
{
	struct hw_disc_entry e = {.kind = HW_DISC_VISOR};
	char pk[HW_PK_HEXLEN + 1], *body, *req;
	json_t *j;
	size_t blen;

	memcpy(e.signer, id->pk, HW_PK_LEN);
	e.seq = seq;
	e.ts = (uint64_t)time(NULL);
	snprintf(e.u.visor.version, sizeof(e.u.visor.version), "0.1.0");
	e.u.visor.naddrs = 2;
	snprintf(e.u.visor.addrs[0], sizeof(e.u.visor.addrs[0]),
		 "192.0.2.%u:7777", (unsigned)(seq % 250) + 1);
	snprintf(e.u.visor.addrs[1], sizeof(e.u.visor.addrs[1]),
		 "[2001:db8::1]:7777");
	e.u.visor.nrelays = 1;
	memcpy(e.u.visor.relays[0], relay, HW_PK_LEN);
	if (hw_disc_entry_sign(&e, id))
		die("%s", "cannot sign an entry");
	j = hw_disc_entry_to_json(&e);
	body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!body)
		die("%s", "cannot encode an entry");
	blen = strlen(body);
	hw_pk_format(id->pk, pk);
	req = malloc(blen + 512);
	if (!req)
		die("%s", "out of memory");
	*len = (size_t)snprintf(req, blen + 512,
				"PUT /v1/visors/%s HTTP/1.1\r\nHost: bench\r\n"
				"Content-Type: application/json\r\n"
				"Content-Length: %zu\r\n\r\n%s",
				pk, blen, body);
	free(body);
	return req;
}

static char *get_request(const char *path, size_t *len)
{
	char *req = malloc(256);

	if (!req)
		die("%s", "out of memory");
	*len = (size_t)snprintf(req, 256,
				"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", path);
	return req;
}

static pid_t start_discovery(const char *exe, const char *dir, int port)
{
	char listen[64], store[600], log[600];
	pid_t pid;
	int fd;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	snprintf(store, sizeof(store), "sqlite:%s/discovery.db", dir);
	snprintf(log, sizeof(log), "%s/discovery.log", dir);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execl(exe, exe, "--listen", listen, "--store", store,
		      "--log-level", "warn", (char *)NULL);
		_exit(127);
	}
	/* Up when a connection is accepted (10 s at most). */
	for (int i = 0; i < 200; i++) {
		int status, c;

		if (waitpid(pid, &status, WNOHANG) == pid)
			die("hopwire-discovery exited at start (see %s)", log);
		c = connect_to(port);
		if (c >= 0) {
			close(c);
			return pid;
		}
		usleep(50000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	die("%s", "hopwire-discovery did not start listening");
	return -1;
}

int main(int argc, char **argv)
{
	const char *exe = argc > 1 ? argv[1] : "./build/bin/hopwire-discovery";
	char dir[] = "/tmp/hw-bench-discovery-XXXXXX", path[128], file[700];
	static struct hw_identity ids[NVISORS];
	struct work puts_ = {0}, reads = {0}, health = {0};
	unsigned long n, bad;
	double t, wps, rps, hps;
	int port, status;
	pid_t pid;

	signal(SIGPIPE, SIG_IGN);
	if (access(exe, X_OK))
		die("%s is not there: build first, or pass its path", exe);
	if (!mkdtemp(dir))
		die("mkdtemp: %s", strerror(errno));
	port = hw_test_free_port();
	if (port < 0)
		die("%s", "no free port");

	puts_.reqs = calloc(NVISORS, sizeof(char *));
	puts_.lens = calloc(NVISORS, sizeof(size_t));
	reads.reqs = calloc(NVISORS, sizeof(char *));
	reads.lens = calloc(NVISORS, sizeof(size_t));
	health.reqs = calloc(1, sizeof(char *));
	health.lens = calloc(1, sizeof(size_t));
	if (!puts_.reqs || !puts_.lens || !reads.reqs || !reads.lens ||
	    !health.reqs || !health.lens)
		die("%s", "out of memory");
	for (size_t i = 0; i < NVISORS; i++)
		if (hw_identity_generate(&ids[i]))
			die("%s", "cannot make a key");
	for (size_t i = 0; i < NVISORS; i++) {
		char pk[HW_PK_HEXLEN + 1];

		/* Each names the next visor as its relay: a valid key. */
		puts_.reqs[i] = put_request(&ids[i], 1, ids[(i + 1) % NVISORS].pk,
					    &puts_.lens[i]);
		hw_pk_format(ids[i].pk, pk);
		snprintf(path, sizeof(path), "/v1/visors/%s", pk);
		reads.reqs[i] = get_request(path, &reads.lens[i]);
	}
	puts_.n = reads.n = NVISORS;
	health.reqs[0] = get_request("/health", &health.lens[0]);
	health.n = 1;
	reads.cycle = health.cycle = 1;
	reads.seed = health.seed = 42;

	pid = start_discovery(exe, dir, port);
	child = pid;

	n = drive(port, NCONNS, 0, next_req, &puts_, &bad, &t);
	if (bad)
		die("%s", "some PUTs were refused");
	wps = (double)n / t;
	n = drive(port, NCONNS, SECONDS, next_req, &health, &bad, &t);
	hps = (double)n / t;
	if (bad)
		die("%s", "some GET /health failed");
	n = drive(port, NCONNS, SECONDS, next_req, &reads, &bad, &t);
	rps = (double)n / t;
	if (bad)
		die("%s", "some GET /v1/visors/{pk} did not find the entry");

	kill(pid, SIGTERM);
	child = -1;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		fprintf(stderr, "hw-bench-discovery: discovery did not exit "
				"cleanly (log in %s)\n", dir);
	else {
		const char *names[] = {"discovery.db", "discovery.db-wal",
				       "discovery.db-shm", "discovery.log"};

		for (size_t i = 0; i < 4; i++) {
			snprintf(file, sizeof(file), "%s/%s", dir, names[i]);
			unlink(file);
		}
		rmdir(dir);
	}

	printf("discovery: SQLite store, %d visor entries, %d keep-alive "
	       "connections, %.0f s each\n", NVISORS, NCONNS, SECONDS);
	printf("  PUT /v1/visors/{pk}      %8.0f writes/s  (signed, "
	       "verified, stored; for information)\n", wps);
	printf("  GET /v1/visors/{pk}      %8.0f reads/s   (target %.0f)\n",
	       rps, TARGET_READS);
	printf("  GET /health (baseline)   %8.0f req/s     (HTTP floor)\n",
	       hps);
	printf("  reads / baseline         %8.2f\n", hps > 0 ? rps / hps : 0);

	for (size_t i = 0; i < NVISORS; i++) {
		free(puts_.reqs[i]);
		free(reads.reqs[i]);
		hw_identity_wipe(&ids[i]);
	}
	free(health.reqs[0]);
	free(puts_.reqs);
	free(puts_.lens);
	free(reads.reqs);
	free(reads.lens);
	free(health.reqs);
	free(health.lens);
	return 0;
}
