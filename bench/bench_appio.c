/* bench_appio: an app (through libhopwire-app only) that bench_routes.py
 * drives to measure app-to-app figures over routes.
 *
 *   bench_appio serve SOCKET PORT
 *       starts by hand on the visor's app socket with PORT and answers
 *       every loop: a loop that starts with 'T' and a u64 BE count gets
 *       'K' once that many bytes arrived; one that starts with 'R' gets
 *       every byte after it echoed back. Runs until killed.
 *   bench_appio send SOCKET PK PORT BYTES
 *       dials PK:PORT, sends BYTES and prints MB/s (time until 'K').
 *   bench_appio rtt SOCKET PK PORT COUNT
 *       dials PK:PORT, sends one byte and waits for it COUNT times and
 *       prints "MEDIAN_US P99_US". */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hopwire/app.h>

#define BUF (256 * 1024)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_full(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = hw_app_read(fd, b, n);
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static void *serve_loop(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t *buf = malloc(BUF), kind;

	if (!buf || read_full(fd, &kind, 1))
		goto out;
	if (kind == 'T') {
		uint8_t h[8];
		uint64_t want = 0;
		if (read_full(fd, h, 8))
			goto out;
		for (int i = 0; i < 8; i++)
			want = want << 8 | h[i];
		while (want) {
			ssize_t r = hw_app_read(fd, buf,
						want < BUF ? (size_t)want : BUF);
			if (r <= 0)
				goto out;
			want -= (uint64_t)r;
		}
		hw_app_write(fd, "K", 1);
		/* Wait for the sender to close. */
		while (hw_app_read(fd, buf, BUF) > 0)
			;
	} else if (kind == 'R') {
		ssize_t r;
		while ((r = hw_app_read(fd, buf, BUF)) > 0)
			if (hw_app_write(fd, buf, (size_t)r) != r)
				break;
	}
out:
	free(buf);
	close(fd);
	return NULL;
}

static struct hw_app *setup(const char *sock, const char *name,
			    uint16_t port)
{
	struct hw_app_config cfg = {.name = name, .version = "1.0",
				    .port = port, .socket_path = sock};
	struct hw_app *app;
	char err[512];

	if (hw_app_setup(&app, &cfg, err, sizeof(err))) {
		fprintf(stderr, "bench_appio: %s\n", err);
		exit(1);
	}
	return app;
}

static int dial(struct hw_app *app, const char *pk, uint16_t port)
{
	struct hw_app_loop loop;
	int rc = hw_app_dial(app, pk, port, &loop, 20000);

	if (rc) {
		fprintf(stderr, "bench_appio: dial: %s (%s)\n", strerror(-rc),
			hw_app_last_error(app));
		exit(1);
	}
	return loop.fd;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct hw_app *app;

	if (argc == 4 && !strcmp(argv[1], "serve")) {
		app = setup(argv[2], "bench-serve", (uint16_t)atoi(argv[3]));
		for (;;) {
			struct hw_app_loop loop;
			pthread_t t;
			if (hw_app_accept(app, &loop, -1))
				return 0;
			pthread_create(&t, NULL, serve_loop,
				       (void *)(intptr_t)loop.fd);
			pthread_detach(t);
		}
	}
	if (argc == 6 && !strcmp(argv[1], "send")) {
		uint64_t total = strtoull(argv[5], NULL, 10), left = total;
		uint8_t h[9] = {'T'}, *buf = calloc(1, BUF), k;
		double t0;
		int fd;

		app = setup(argv[2], "bench-send", 0);
		fd = dial(app, argv[3], (uint16_t)atoi(argv[4]));
		for (int i = 0; i < 8; i++)
			h[1 + i] = (uint8_t)(total >> (56 - 8 * i));
		t0 = now_s();
		if (!buf || hw_app_write(fd, h, sizeof(h)) != sizeof(h))
			return 1;
		while (left) {
			size_t n = left < BUF ? (size_t)left : BUF;
			if (hw_app_write(fd, buf, n) != (ssize_t)n)
				return 1;
			left -= n;
		}
		if (read_full(fd, &k, 1) || k != 'K')
			return 1;
		printf("%.1f\n", (double)total / (now_s() - t0) / 1e6);
		close(fd);
		hw_app_close(app);
		free(buf);
		return 0;
	}
	if (argc == 6 && !strcmp(argv[1], "rtt")) {
		int n = atoi(argv[5]), fd;
		double *t = calloc((size_t)n, sizeof(double));
		uint8_t b = 'R';

		app = setup(argv[2], "bench-rtt", 0);
		fd = dial(app, argv[3], (uint16_t)atoi(argv[4]));
		if (!t || hw_app_write(fd, &b, 1) != 1)
			return 1;
		for (int i = 0; i < n; i++) {
			double t0 = now_s();
			if (hw_app_write(fd, &b, 1) != 1 || read_full(fd, &b, 1))
				return 1;
			t[i] = (now_s() - t0) * 1e6;
		}
		qsort(t, (size_t)n, sizeof(double), cmp_double);
		printf("%.1f %.1f\n", t[n / 2], t[(n * 99) / 100]);
		close(fd);
		hw_app_close(app);
		free(t);
		return 0;
	}
	fprintf(stderr, "usage: bench_appio serve SOCKET PORT\n"
			"       bench_appio send SOCKET PK PORT BYTES\n"
			"       bench_appio rtt SOCKET PK PORT COUNT\n");
	return 2;
}
