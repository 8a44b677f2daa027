/* Capability check and sysctl access (host.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <unistd.h>

#include "host.h"

volatile sig_atomic_t hw_vpn_stop;

static void on_stop(int sig)
{
	(void)sig;
	hw_vpn_stop = 1;
}

void hw_vpn_catch_stop(void)
{
	struct sigaction sa = {.sa_handler = on_stop};

	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

int hw_vpn_has_net_admin(void)
{
	cap_flag_value_t v = CAP_CLEAR;
	cap_t caps = cap_get_proc();

	if (!caps)
		return 0;
	if (cap_get_flag(caps, CAP_NET_ADMIN, CAP_EFFECTIVE, &v) < 0)
		v = CAP_CLEAR;
	cap_free(caps);
	return v == CAP_SET;
}

static int sysctl_open(const char *key, int flags)
{
	char path[256];

	if (strstr(key, "..") ||
	    (size_t)snprintf(path, sizeof(path), "/proc/sys/%s", key) >=
		    sizeof(path))
		return -EINVAL;
	return open(path, flags | O_CLOEXEC);
}

int hw_vpn_sysctl_get(const char *key, char *buf, size_t len)
{
	int fd = sysctl_open(key, O_RDONLY), rc = 0;
	ssize_t n;

	if (fd < 0)
		return fd == -EINVAL ? fd : -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		rc = -errno;
	else {
		buf[n] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
	}
	close(fd);
	return rc;
}

int hw_vpn_sysctl_set(const char *key, const char *value)
{
	int fd = sysctl_open(key, O_WRONLY), rc = 0;
	size_t len = strlen(value);

	if (fd < 0)
		return fd == -EINVAL ? fd : -errno;
	if (write(fd, value, len) != (ssize_t)len)
		rc = -errno ? -errno : -EIO;
	close(fd);
	return rc;
}
