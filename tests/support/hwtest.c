#include "hwtest.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* How long hw_test_loop_close lets a loop wind down by itself. */
#define LOOP_CLOSE_WAIT_MS 10000

int hw_test_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

void hw_test_rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

void hw_test_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void on_tick(uv_timer_t *t)
{
}

void hw_test_tick_start(uv_timer_t *tick)
{
	uv_timer_start(tick, on_tick, 5, 5);
}

int hw_test_run_until(uv_loop_t *loop, uv_timer_t *tick,
		      int (*cond)(void *), void *arg, unsigned ms)
{
	return HW_TEST_RUN_UNTIL(loop, tick, cond(arg), ms);
}

static int never(void *arg)
{
	return 0;
}

void hw_test_run_for(uv_loop_t *loop, uv_timer_t *tick, unsigned ms)
{
	hw_test_run_until(loop, tick, never, NULL, ms);
}

static void on_guard(uv_timer_t *t)
{
	uv_stop(t->loop);
}

struct leftovers {
	const uv_handle_t *skip;
	int n;
};

static void close_leftover(uv_handle_t *h, void *arg)
{
	struct leftovers *l = arg;

	if (h == l->skip || uv_is_closing(h))
		return;
	fprintf(stderr, "hwtest: a %s handle (%p, %s) was left open on the "
		"loop\n", uv_handle_type_name(uv_handle_get_type(h)),
		(void *)h, uv_is_active(h) ? "active" : "inactive");
	l->n++;
	uv_close(h, NULL);
}

int hw_test_loop_close(uv_loop_t *loop)
{
	uv_timer_t guard;
	struct leftovers l = {.skip = (uv_handle_t *)&guard};
	int rc;

	/* Let what was freed finish closing (thread pool work included);
	 * the guard, unreferenced, stops a loop that never winds down. */
	uv_timer_init(loop, &guard);
	uv_timer_start(&guard, on_guard, LOOP_CLOSE_WAIT_MS, 0);
	uv_unref((uv_handle_t *)&guard);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_walk(loop, close_leftover, &l);
	uv_run(loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(loop);
	if (rc)
		fprintf(stderr, "hwtest: uv_loop_close: %s\n", uv_strerror(rc));
	return l.n ? l.n : rc;
}

int hw_test_identity(struct hw_identity *id, uint8_t x_priv[32])
{
	uint8_t xpub[32];
	int rc;

	rc = hw_identity_generate(id);
	if (!rc)
		rc = hw_identity_x25519(id, x_priv, xpub);
	return rc;
}

int hw_test_identity_seeded(struct hw_identity *id, uint8_t fill)
{
	uint8_t seed[HW_SEED_LEN];

	memset(seed, fill, sizeof(seed));
	return hw_identity_from_seed(id, seed);
}
