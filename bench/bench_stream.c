/* A route group endpoint for bench_routes.py, so the harness costs no more
 * than the programs a user would run:
 *
 *   bench_stream DIAL_SOCK LISTEN_SOCK PK PORT BYTES
 *
 * listens on PORT at the visor behind LISTEN_SOCK, dials PK:PORT from the
 * visor behind DIAL_SOCK (the visors' stream sockets, docs/api.md), writes
 * BYTES into the dialed group from one thread while the main thread reads
 * them at the other end, and prints MB/s. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads lines until one contains want; 0, or -1 on an error line/EOF. */
static int expect(int fd, const char *want)
{
	char line[1024];
	size_t n = 0;

	for (;;) {
		if (n + 1 >= sizeof(line) || read(fd, line + n, 1) != 1)
			return -1;
		if (line[n] != '\n') {
			n++;
			continue;
		}
		line[n] = '\0';
		if (strstr(line, "\"error\"")) {
			fprintf(stderr, "bench_stream: %s\n", line);
			return -1;
		}
		if (strstr(line, want))
			return 0;
		n = 0;
	}
}

struct writer {
	int fd;
	long long total;
};

static void *write_all(void *arg)
{
	struct writer *w = arg;
	static char buf[1 << 16];
	long long sent = 0;

	while (sent < w->total) {
		ssize_t n = write(w->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		sent += n;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char req[512];
	static char buf[1 << 20];
	struct writer w;
	struct timespec t0, t1;
	long long got = 0;
	pthread_t th;
	int lfd, dfd;

	if (argc != 6) {
		fprintf(stderr, "usage: bench_stream DIAL_SOCK LISTEN_SOCK PK "
			"PORT BYTES\n");
		return 2;
	}
	lfd = connect_unix(argv[2]);
	snprintf(req, sizeof(req), "{\"op\":\"listen\",\"port\":%s}\n",
		 argv[4]);
	if (lfd < 0 || write(lfd, req, strlen(req)) < 0 ||
	    expect(lfd, "listening"))
		return 1;
	dfd = connect_unix(argv[1]);
	snprintf(req, sizeof(req),
		 "{\"op\":\"dial\",\"pk\":\"%.64s\",\"port\":%s}\n", argv[3],
		 argv[4]);
	if (dfd < 0 || write(dfd, req, strlen(req)) < 0 ||
	    expect(dfd, "connected") || expect(lfd, "accepted"))
		return 1;
	w.fd = dfd;
	w.total = atoll(argv[5]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_create(&th, NULL, write_all, &w);
	while (got < w.total) {
		ssize_t n = read(lfd, buf, sizeof(buf));
		if (n <= 0)
			break;
		got += n;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(th, NULL);
	close(dfd);
	close(lfd);
	if (got < w.total) {
		fprintf(stderr, "bench_stream: %lld of %lld bytes arrived\n",
			got, w.total);
		return 1;
	}
	printf("%.1f\n", (double)got / ((double)(t1.tv_sec - t0.tv_sec) +
					 (t1.tv_nsec - t0.tv_nsec) / 1e9) /
				 1e6);
	return 0;
}
