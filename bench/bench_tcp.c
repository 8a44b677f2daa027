/* Plain loopback TCP, the baseline the visor figures are quoted against:
 *   bench_tcp stream BYTES CHUNK   one process writes BYTES in CHUNK-sized
 *                                  writes to another that reads and
 *                                  discards; prints MB/s
 *   bench_tcp pingpong COUNT       16-byte ping-pong between two
 *                                  processes; prints the median RTT in ms
 *   bench_tcp sealed BYTES         like stream, but the writer seals each
 *                                  chunk (a route group's largest DATA
 *                                  plaintext) with the Noise cipher
 *                                  state and the reader opens it: the
 *                                  least any end-to-end encrypted
 *                                  connection costs; prints MB/s
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

#include "crypto/cipher.h"
#include "e2e/rgroup.h"

#define SEALED_PT HW_RGROUP_MAX_PLAINTEXT
#define SEALED_CT (SEALED_PT + HW_CIPHER_TAGLEN)

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

/* The reader of `sealed`: opens every SEALED_CT-byte record. */
static void open_all(int fd)
{
	static uint8_t key[HW_CIPHER_KEYLEN] = {7};
	static uint8_t buf[4 * SEALED_CT];
	struct hw_cipher *c = hw_cipher_new();
	size_t have = 0, off, n;
	ssize_t r;

	hw_cipher_set_key(c, key);
	while ((r = read(fd, buf + have, sizeof(buf) - have)) > 0) {
		have += (size_t)r;
		for (off = 0; have - off >= SEALED_CT; off += SEALED_CT)
			if (hw_cipher_decrypt(c, NULL, 0, buf + off, SEALED_CT,
					      buf + off, &n))
				_exit(1);
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	hw_cipher_free(c);
}

/* The writer of `sealed`. */
static int seal_all(int fd, long long total)
{
	static uint8_t key[HW_CIPHER_KEYLEN] = {7};
	static uint8_t pt[SEALED_PT], ct[SEALED_CT];
	struct hw_cipher *c = hw_cipher_new();
	long long sent = 0;
	size_t n;

	hw_cipher_set_key(c, key);
	for (; sent < total; sent += SEALED_PT)
		if (hw_cipher_encrypt(c, NULL, 0, pt, SEALED_PT, ct, &n) ||
		    full(fd, (char *)ct, n, 1))
			return -1;
	hw_cipher_free(c);
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
	int ls, fd, one = 1, stream, sealed;
	pid_t child;

	if (argc != 4 && argc != 3) {
		fprintf(stderr, "usage: bench_tcp stream BYTES CHUNK | "
				"pingpong COUNT | sealed BYTES\n");
		return 2;
	}
	sealed = !strcmp(argv[1], "sealed");
	stream = sealed || !strcmp(argv[1], "stream");
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
		if (sealed) {
			open_all(fd);
			(void)!write(fd, "k", 1);
		} else if (stream) {
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
	if (sealed) {
		long long total = atoll(argv[2]);
		char k;
		double t0 = now();
		if (seal_all(fd, total))
			return 1;
		shutdown(fd, SHUT_WR);
		if (read(fd, &k, 1) != 1)
			return 1;
		printf("%.1f\n", (double)total / (now() - t0) / 1e6);
	} else if (stream) {
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
