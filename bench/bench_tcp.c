/* Plain loopback TCP, the baseline the visor figures are quoted against:
 *   bench_tcp stream BYTES CHUNK   one process writes BYTES in CHUNK-sized
 *                                  writes to another that reads and
 *                                  discards; prints MB/s
 *   bench_tcp pingpong COUNT       16-byte ping-pong between two
 *                                  processes; prints the median RTT in ms
 * Both sides run in separate processes, like two visors. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int full(int fd, char *buf, size_t len, int wr)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = wr ? write(fd, buf + off, len - off)
			       : read(fd, buf + off, len - off);
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int ls, fd, one = 1, stream;
	pid_t child;

	if (argc != 4 && argc != 3) {
		fprintf(stderr, "usage: bench_tcp stream BYTES CHUNK | "
				"pingpong COUNT\n");
		return 2;
	}
	stream = !strcmp(argv[1], "stream");
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(ls, 1) || getsockname(ls, (struct sockaddr *)&sa, &len)) {
		perror("bench_tcp");
		return 1;
	}
	child = fork();
	if (child == 0) {
		static char buf[1 << 16];
		fd = accept(ls, NULL, NULL);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (stream) {
			while (read(fd, buf, sizeof(buf)) > 0)
				;
			(void)!write(fd, "k", 1);
		} else {
			while (full(fd, buf, 16, 0) == 0 &&
			       full(fd, buf, 16, 1) == 0)
				;
		}
		_exit(0);
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("connect");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (stream) {
		long long total = atoll(argv[2]), sent = 0;
		size_t chunk = (size_t)atol(argv[3]);
		char *buf = calloc(1, chunk), k;
		double t0 = now();
		while (sent < total) {
			if (full(fd, buf, chunk, 1))
				return 1;
			sent += (long long)chunk;
		}
		shutdown(fd, SHUT_WR);
		if (read(fd, &k, 1) != 1)
			return 1;
		printf("%.1f\n", (double)sent / (now() - t0) / 1e6);
		free(buf);
	} else {
		int count = atoi(argv[2]);
		double *rtt = calloc((size_t)count, sizeof(double));
		char buf[16] = {0};
		for (int i = 0; i < count; i++) {
			double t0 = now();
			if (full(fd, buf, 16, 1) || full(fd, buf, 16, 0))
				return 1;
			rtt[i] = (now() - t0) * 1e3;
		}
		qsort(rtt, (size_t)count, sizeof(double), cmp);
		printf("%.4f\n", rtt[count / 2]);
		free(rtt);
	}
	close(fd);
	waitpid(child, NULL, 0);
	return 0;
}
