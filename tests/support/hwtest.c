#include "hwtest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

static void on_tick(uv_timer_t *t)
{
}

int hw_test_run_until(uv_loop_t *loop, uv_timer_t *tick,
		      int (*cond)(void *), void *arg, unsigned ms)
{
	uint64_t end = uv_now(loop) + ms;

	uv_timer_start(tick, on_tick, 5, 5);
	while (!cond(arg) && uv_now(loop) < end)
		uv_run(loop, UV_RUN_ONCE);
	uv_timer_stop(tick);
	return cond(arg);
}
