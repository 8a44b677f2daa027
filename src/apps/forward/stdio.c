/* hopwire-forward --stdio PK NAME (fwd.h): one connection to service
 * NAME of visor PK on stdin and stdout, for OpenSSH's ProxyCommand. The
 * app is started by hand (HOPWIRE_APP_SOCKET), dials, asks, and pumps
 * until both directions ended. Nothing but the connection's bytes goes to
 * stdout; messages go to stderr. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fwd.h"

static int parse_answer(const uint8_t *p, size_t n, void *out, size_t *used)
{
	return hw_fwd_parse_answer(p, n, out, used);
}

/* Copies stdin to s and s to stdout until both ended. 0, or -1. */
static int pump(int s, const uint8_t *first, size_t first_len)
{
	uint8_t buf[65536];
	int in_open = 1, s_open = 1;

	if (first_len && fwd_write_all(1, first, first_len))
		return -1;
	while (in_open || s_open) {
		struct pollfd pfd[2] = {{.fd = in_open ? 0 : -1,
					 .events = POLLIN},
					{.fd = s_open ? s : -1, .events = POLLIN}};
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (pfd[0].revents) {
			n = read(0, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				in_open = 0;
				shutdown(s, SHUT_WR);
			} else if (fwd_write_all(s, buf, (size_t)n)) {
				return -1;
			}
		}
		if (pfd[1].revents) {
			n = hw_app_read(s, buf, sizeof(buf));
			if (n == -EINTR || n == -EAGAIN)
				continue;
			if (n < 0)
				return -1;
			if (n == 0) {
				s_open = 0;
				close(1);
			} else if (fwd_write_all(1, buf, (size_t)n)) {
				return -1;
			}
		}
	}
	return 0;
}

int fwd_stdio(const char *pk, const char *name)
{
	char appname[64], err[768];
	struct hw_app_config cfg = {.version = "0.1.0"};
	struct hw_fwd_request rq = {0};
	struct hw_fwd_answer an;
	struct hw_app_mux *mux = NULL;
	struct hw_app_loop loop;
	uint8_t out[HW_FWD_REQUEST_MAX], in[HW_FWD_ANSWER_MAX];
	size_t len = 0, used;
	int s, rc, status = 1;

	if (strlen(pk) != HW_APP_PK_HEX || strspn(pk, "0123456789abcdef") !=
						   HW_APP_PK_HEX) {
		fprintf(stderr, LOG ": '%s' is not a visor key (64 lowercase "
				"hex characters)\n", pk);
		return 2;
	}
	if (!hw_fwd_name_ok(name)) {
		fprintf(stderr, LOG ": '%s' is not a service name (1..32 "
				"characters of a-z 0-9 . _ -)\n", name);
		return 2;
	}
	/* Several at once (one per ssh): each its own app name. */
	snprintf(appname, sizeof(appname), "forward-stdio-%d", (int)getpid());
	cfg.name = appname;
	if (hw_app_setup(&fwd.app, &cfg, err, sizeof(err))) {
		fprintf(stderr, LOG ": %s\n", err);
		return 1;
	}
	if ((rc = hw_app_dial(fwd.app, pk, FWD_PORT, &loop, FWD_WAIT_MS))) {
		fprintf(stderr, LOG ": %.16s: %s\n", pk,
			rc == -ECONNREFUSED ? hw_app_last_error(fwd.app)
					    : strerror(-rc));
		goto out;
	}
	if ((rc = hw_app_mux_new(&mux, loop.fd, 1))) {
		fprintf(stderr, LOG ": cannot start a mux: %s\n",
			strerror(-rc));
		hw_app_loop_close(loop.fd);
		goto out;
	}
	if ((rc = hw_app_mux_open(mux, &s))) {
		fprintf(stderr, LOG ": cannot open a stream: %s\n",
			strerror(-rc));
		goto out;
	}
	snprintf(rq.name, sizeof(rq.name), "%s", name);
	rc = fwd_write_all(s, out, hw_fwd_build_request(out, &rq));
	if (!rc)
		rc = fwd_read_msg(s, in, sizeof(in), &len,
				  fwd_now_ms() + FWD_ANSWER_MS, parse_answer,
				  &an, &used);
	if (rc || an.status != HW_FWD_OK) {
		fprintf(stderr, LOG ": %.16s/%s: %s%s%s\n", pk, name,
			rc == -ETIMEDOUT ? "no answer within 15 s"
			: rc		 ? "the loop ended before an answer"
					 : hw_fwd_status_str(an.status),
			!rc && an.msg[0] ? ": " : "", !rc ? an.msg : "");
		close(s);
		goto out;
	}
	status = pump(s, in + used, len - used) ? 1 : 0;
	if (status)
		fprintf(stderr, LOG ": %.16s/%s: the connection failed: %s\n",
			pk, name,
			hw_app_mux_error(mux) ? hw_app_mux_error(mux) : "reset");
	close(s);
out:
	hw_app_mux_free(mux);
	hw_app_close(fwd.app);
	return status;
}
