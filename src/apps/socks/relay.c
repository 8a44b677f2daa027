/* Negotiation reads and the splice (relay.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hopwire/app.h"
#include "relay.h"

#define SPLICE_BUF 65536

long long hw_socks_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ssize_t hw_socks_read_more(int fd, uint8_t *buf, size_t *len, size_t cap,
			   long long deadline)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ssize_t n;

	if (*len >= cap)
		return -ENOBUFS;
	for (;;) {
		long long left = deadline - hw_socks_now_ms();
		int rc;

		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		n = hw_app_read(fd, buf + *len, cap - *len);
		if (n == -EAGAIN)
			continue;
		if (n > 0)
			*len += (size_t)n;
		return n;
	}
}

int hw_socks_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		ssize_t n = hw_app_write(fd, p, len);

		if (n == -EAGAIN) {
			if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
				return -errno;
			continue;
		}
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct dir {
	int from, to;
	_Atomic unsigned long long *moved; /* or NULL */
	int eof;   /* from ended: shut down to once buf is empty */
	int done;  /* to shut down */
	size_t off, len;
	uint8_t buf[SPLICE_BUF];
};

/* Moves what can move from d->from to d->to. Returns 0 or a negative
 * errno. */
static int dir_step(struct dir *d, short rev_from)
{
	ssize_t n;

	if (!d->eof && d->len == 0 && (rev_from & (POLLIN | POLLHUP | POLLERR))) {
		n = hw_app_read(d->from, d->buf, sizeof(d->buf));
		if (n == 0)
			d->eof = 1;
		else if (n > 0) {
			d->off = 0;
			d->len = (size_t)n;
		} else if (n != -EAGAIN)
			return (int)n;
	}
	if (d->len) {
		n = hw_app_write(d->to, d->buf + d->off, d->len);
		if (n > 0) {
			if (d->moved)
				atomic_fetch_add_explicit(
					d->moved, (unsigned long long)n,
					memory_order_relaxed);
			d->off += (size_t)n;
			d->len -= (size_t)n;
		} else if (n < 0 && n != -EAGAIN) {
			return (int)n;
		}
	}
	if (d->eof && d->len == 0 && !d->done) {
		shutdown(d->to, SHUT_WR);
		d->done = 1;
	}
	return 0;
}

int hw_socks_splice(int a, int b, const uint8_t *to_b, size_t to_b_len,
		    struct hw_socks_counts *counts)
{
	struct dir *ab = NULL, *ba = NULL;
	int rc = 0;

	if (to_b_len > SPLICE_BUF)
		return -ENOBUFS;
	if (!(ab = malloc(sizeof(*ab))) || !(ba = malloc(sizeof(*ba)))) {
		free(ab);
		return -ENOMEM;
	}
	fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK);
	fcntl(b, F_SETFL, fcntl(b, F_GETFL) | O_NONBLOCK);
	*ab = (struct dir){.from = a, .to = b,
			   .moved = counts ? &counts->a_to_b : NULL};
	*ba = (struct dir){.from = b, .to = a,
			   .moved = counts ? &counts->b_to_a : NULL};
	if (to_b_len) {
		memcpy(ab->buf, to_b, to_b_len);
		ab->len = to_b_len;
	}
	while (!(ab->done && ba->done)) {
		struct pollfd pfd[2] = {{.fd = a}, {.fd = b}};

		if (!ab->eof && ab->len == 0)
			pfd[0].events |= POLLIN;
		if (!ba->eof && ba->len == 0)
			pfd[1].events |= POLLIN;
		if (ab->len)
			pfd[1].events |= POLLOUT;
		if (ba->len)
			pfd[0].events |= POLLOUT;
		/* A side with nothing to wait for is left out: its hang-up
		 * would wake poll at once, again and again. */
		for (int i = 0; i < 2; i++)
			if (!pfd[i].events)
				pfd[i].fd = -1;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if ((rc = dir_step(ab, pfd[0].revents)) ||
		    (rc = dir_step(ba, pfd[1].revents)))
			break;
	}
	free(ab);
	free(ba);
	return rc;
}

int hw_socks_pk_ok(const char *s)
{
	if (strlen(s) != HW_APP_PK_HEX)
		return 0;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}
