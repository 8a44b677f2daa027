/* hw-bench-relay [RELAY_BINARY] [SESSIONS]
 *
 * Memory of a relay per idle session: starts hopwire-relay (default
 * ./build/bin/hopwire-relay, run from the repository root) with a fresh
 * key, reads its resident set with no session (the baseline), opens
 * SESSIONS (default 1000) sessions from this process with as many
 * identities, and reads it again.
 *
 * For information it also measures one stream's throughput through the
 * relay (two of the visors, this process sending to itself), against
 * plain loopback TCP on the same loop. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "crypto/identity.h"
#include "relay/client.h"
#include "hwtest.h"

#define BATCH 50
#define STREAM_BYTES (512ull << 20)
#define WRITE_SIZE (1u << 20)
#define OUTSTANDING (8u << 20)

struct visor {
	struct hw_identity id;
	uint8_t x_priv[32];
	struct hw_relay_client *rc;
};

static uv_loop_t loop;
static uv_timer_t tick;
static struct hw_identity relay_id;
static struct visor *visors;
static int nvisors;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			v = strtol(line + 6, NULL, 10);
	fclose(f);
	return v;
}

/* CPU seconds (user + system) a process has used. */
static double cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!p || !(p = strrchr(buf, ')')))
		return 0;
	/* Fields 14 and 15 (utime, stime) count from the ')' as 12, 13. */
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		   &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void on_tick(uv_timer_t *t)
{
}

static int run_until(int (*cond)(void *), void *arg, double secs)
{
	double end = now_s() + secs;

	uv_timer_start(&tick, on_tick, 10, 10);
	while (!cond(arg) && now_s() < end)
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&tick);
	return cond(arg);
}

static int never(void *arg)
{
	return 0;
}

static int up_range(void *arg)
{
	int *r = arg;
	for (int i = r[0]; i < r[1]; i++)
		if (!hw_relay_client_is_up(visors[i].rc, relay_id.pk))
			return 0;
	return 1;
}

static int wait_listening(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		if (ok)
			return 0;
		usleep(10000);
	}
	return -1;
}

/* ---- throughput through the relay ---- */

static uint8_t *payload;
static uint64_t sent_queued, sent_done, received;
static struct hw_relay_stream *tx_stream;
static int opened_status = 1;

static void pump(void);

static void on_written(void *arg, int status)
{
	sent_done += (uintptr_t)arg;
	pump();
}

static void pump(void)
{
	while (tx_stream && sent_queued < STREAM_BYTES &&
	       sent_queued - sent_done < OUTSTANDING) {
		if (hw_relay_stream_write(tx_stream, payload, WRITE_SIZE,
					  on_written,
					  (void *)(uintptr_t)WRITE_SIZE))
			return;
		sent_queued += WRITE_SIZE;
	}
}

static void s_opened(struct hw_relay_stream *s, int status, const char *msg,
		     void *ud)
{
	opened_status = status;
	if (status) {
		fprintf(stderr, "hw-bench-relay: open: %s\n", msg);
		return;
	}
	pump();
}

static void s_data(struct hw_relay_stream *s, const uint8_t *p, size_t len,
		   void *ud)
{
	received += len;
}

static void s_closed(struct hw_relay_stream *s, int reason, void *ud)
{
	if (s == tx_stream)
		tx_stream = NULL;
}

static const struct hw_relay_stream_ops sops = {
	.opened = s_opened,
	.data = s_data,
	.closed = s_closed,
};

static int v_accept(struct hw_relay_client *rc, const uint8_t relay_pk[32],
		    const uint8_t from_pk[32], struct hw_relay_stream *s,
		    void *ud)
{
	hw_relay_stream_set_ops(s, &sops, NULL);
	return 0;
}

static int all_received(void *arg)
{
	return received >= STREAM_BYTES || opened_status < 0;
}

static double relay_throughput(void)
{
	double t0;

	payload = malloc(WRITE_SIZE);
	memset(payload, 0x5a, WRITE_SIZE);
	if (hw_relay_stream_open(visors[0].rc, relay_id.pk, visors[1].id.pk,
				 &sops, NULL, &tx_stream))
		return 0;
	t0 = now_s();
	if (!run_until(all_received, NULL, 120)) {
		fprintf(stderr, "hw-bench-relay: stream did not finish\n");
		return 0;
	}
	return (double)received / (now_s() - t0) / 1e6;
}

/* ---- baseline: plain TCP on the same loop ---- */

static uv_tcp_t tl, tc, ts;
static uv_connect_t creq;
static uint64_t tcp_queued, tcp_done, tcp_recv;
static char rbuf[1 << 16];

static void tcp_pump(void);

static void tcp_written(uv_write_t *req, int status)
{
	tcp_done += WRITE_SIZE;
	free(req);
	tcp_pump();
}

static void tcp_pump(void)
{
	while (tcp_queued < STREAM_BYTES && tcp_queued - tcp_done < OUTSTANDING) {
		uv_write_t *req = malloc(sizeof(*req));
		uv_buf_t b = uv_buf_init((char *)payload, WRITE_SIZE);
		if (uv_write(req, (uv_stream_t *)&tc, &b, 1, tcp_written)) {
			free(req);
			return;
		}
		tcp_queued += WRITE_SIZE;
	}
}

static void tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	*b = uv_buf_init(rbuf, sizeof(rbuf));
}

static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	if (n > 0)
		tcp_recv += (size_t)n;
}

static void tcp_conn(uv_stream_t *server, int status)
{
	uv_tcp_init(&loop, &ts);
	if (uv_accept(server, (uv_stream_t *)&ts) == 0) {
		uv_tcp_nodelay(&ts, 1);
		uv_read_start((uv_stream_t *)&ts, tcp_alloc, tcp_read);
	}
}

static void tcp_connected(uv_connect_t *req, int status)
{
	if (status == 0) {
		uv_tcp_nodelay(&tc, 1);
		tcp_pump();
	}
}

static int tcp_all(void *arg)
{
	return tcp_recv >= STREAM_BYTES;
}

static double tcp_throughput(void)
{
	struct sockaddr_in sa;
	int len = sizeof(sa);
	double t0, mbs = 0;

	uv_ip4_addr("127.0.0.1", 0, &sa);
	uv_tcp_init(&loop, &tl);
	uv_tcp_init(&loop, &tc);
	if (uv_tcp_bind(&tl, (struct sockaddr *)&sa, 0) ||
	    uv_listen((uv_stream_t *)&tl, 8, tcp_conn) ||
	    uv_tcp_getsockname(&tl, (struct sockaddr *)&sa, &len))
		goto out;
	t0 = now_s();
	uv_tcp_connect(&creq, &tc, (struct sockaddr *)&sa, tcp_connected);
	if (run_until(tcp_all, NULL, 120))
		mbs = (double)tcp_recv / (now_s() - t0) / 1e6;
out:
	uv_close((uv_handle_t *)&tl, NULL);
	uv_close((uv_handle_t *)&tc, NULL);
	if (ts.loop)
		uv_close((uv_handle_t *)&ts, NULL);
	return mbs;
}

int main(int argc, char **argv)
{
	const char *bin = argc > 1 ? argv[1] : "./build/bin/hopwire-relay";
	char dir[] = "/tmp/hw-bench-relay.XXXXXX", key[64], listen[32];
	char maxs[16];
	long base_kib, full_kib, self_base, self_full;
	int port, status = 1;
	pid_t pid;
	struct rlimit rl;
	double relay_mbs, tcp_mbs;

	nvisors = argc > 2 ? atoi(argv[2]) : 1000;
	if (nvisors < 2) {
		fprintf(stderr, "usage: hw-bench-relay [RELAY_BINARY] "
				"[SESSIONS >= 2]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)nvisors + 64) {
			fprintf(stderr, "hw-bench-relay: open file limit %lu "
				"is too low for %d sessions\n",
				(unsigned long)rl.rlim_cur, nvisors);
			return 1;
		}
	}
	if (access(bin, X_OK)) {
		fprintf(stderr, "hw-bench-relay: %s: %s (build first, or pass "
			"the relay binary's path)\n", bin, strerror(errno));
		return 1;
	}
	if (!mkdtemp(dir) || hw_identity_generate(&relay_id)) {
		perror("hw-bench-relay");
		return 1;
	}
	snprintf(key, sizeof(key), "%s/relay.key", dir);
	if (hw_identity_save(&relay_id, key, 0) || (port = hw_test_free_port()) < 0) {
		fprintf(stderr, "hw-bench-relay: cannot set up %s\n", dir);
		rmdir(dir);
		return 1;
	}
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	snprintf(maxs, sizeof(maxs), "%d", nvisors + 16);
	pid = fork();
	if (pid == 0) {
		execl(bin, bin, "--key", key, "--listen", listen,
		      "--log-level", "warn", "--max-sessions", maxs,
		      (char *)NULL);
		perror("hw-bench-relay: exec");
		_exit(127);
	}
	if (pid < 0 || wait_listening(port)) {
		fprintf(stderr, "hw-bench-relay: relay did not start\n");
		goto out;
	}
	usleep(300000);
	base_kib = rss_kib(pid);
	self_base = rss_kib(getpid());

	uv_loop_init(&loop);
	uv_timer_init(&loop, &tick);
	visors = calloc((size_t)nvisors, sizeof(*visors));
	for (int i = 0; i < nvisors; i++) {
		struct visor *v = &visors[i];
		uint8_t xpub[32];
		struct hw_relay_client_params p = {
			.loop = &loop,
			.id = &v->id,
			.x_priv = v->x_priv,
			.keepalive_ms = 5000,
			.handshake_timeout_ms = 10000,
			.redial_min_ms = 200,
			.redial_max_ms = 2000,
			.accept = v_accept,
		};
		hw_identity_generate(&v->id);
		hw_identity_x25519(&v->id, v->x_priv, xpub);
		hw_relay_client_new(&v->rc, &p);
	}
	/* In batches, so the relay's cap on unfinished handshakes is not
	 * what is measured. */
	for (int i = 0; i < nvisors; i += BATCH) {
		int r[2] = {i, i + BATCH < nvisors ? i + BATCH : nvisors};
		for (int k = r[0]; k < r[1]; k++)
			hw_relay_client_hold(visors[k].rc, relay_id.pk, listen);
		if (!run_until(up_range, r, 30)) {
			fprintf(stderr, "hw-bench-relay: sessions %d..%d did "
				"not come up\n", r[0], r[1] - 1);
			goto stop;
		}
	}
	run_until(never, NULL, 1.0); /* the relay reads the last message 3s */
	full_kib = rss_kib(pid);
	self_full = rss_kib(getpid());

	printf("relay memory per idle session (%d sessions)\n", nvisors);
	printf("  relay RSS, no sessions:   %8ld KiB (baseline)\n", base_kib);
	printf("  relay RSS, %4d sessions: %8ld KiB\n", nvisors, full_kib);
	printf("  per session:              %8.2f KiB\n",
	       (double)(full_kib - base_kib) / nvisors);
	printf("  ratio to baseline:        %8.2fx\n",
	       (double)full_kib / (double)base_kib);
	printf("  (this process, the visors' side: %ld -> %ld KiB, %.2f KiB "
	       "per session)\n", self_base, self_full,
	       (double)(self_full - self_base) / nvisors);

	{
		double c0 = cpu_s(pid), s0 = cpu_s(getpid()), t0 = now_s();
		relay_mbs = relay_throughput();
		t0 = now_s() - t0;
		printf("one stream through the relay (information): %.0f MB/s "
		       "(relay CPU %.0f%%, visors' side %.0f%% of one core)\n",
		       relay_mbs, 100 * (cpu_s(pid) - c0) / t0,
		       100 * (cpu_s(getpid()) - s0) / t0);
	}
	tcp_mbs = tcp_throughput();
	printf("plain loopback TCP, both ends on one loop: %.0f MB/s; "
	       "ratio %.2f\n", tcp_mbs,
	       tcp_mbs > 0 ? relay_mbs / tcp_mbs : 0);
	status = 0;
	/* Stopping with every session up: the relay must tell them all and
	 * exit cleanly. */
	{
		double t0 = now_s();
		int st = 0;
		kill(pid, SIGTERM);
		waitpid(pid, &st, 0);
		pid = 0;
		printf("relay stopped with %d sessions up in %.0f ms: %s\n",
		       nvisors, (now_s() - t0) * 1000,
		       WIFEXITED(st) && WEXITSTATUS(st) == 0
			       ? "exit 0"
			       : "NOT CLEAN");
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			status = 1;
	}
stop:
	for (int i = 0; i < nvisors; i++) {
		hw_relay_client_free(visors[i].rc);
		hw_identity_wipe(&visors[i].id);
	}
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	free(visors);
	free(payload);
out:
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	unlink(key);
	rmdir(dir);
	hw_identity_wipe(&relay_id);
	return status;
}
