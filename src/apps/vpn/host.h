/* What the VPN apps need of the host besides netlink: the capability
 * check at start, sysctl values under /proc/sys, and the stop signals. */
#ifndef HW_VPN_HOST_H
#define HW_VPN_HOST_H

#include <signal.h>
#include <stddef.h>

/* 1 when CAP_NET_ADMIN is in the process's effective set, else 0 (also
 * when it cannot be read). */
int hw_vpn_has_net_admin(void);

/* Reads /proc/sys/KEY (KEY like "net/ipv4/ip_forward") into buf without
 * its newline. Returns 0 or a negative errno. */
int hw_vpn_sysctl_get(const char *key, char *buf, size_t len);
/* Writes value to /proc/sys/KEY. Returns 0 or a negative errno. */
int hw_vpn_sysctl_set(const char *key, const char *value);

/* Set by SIGTERM and SIGINT once hw_vpn_catch_stop ran (which also
 * ignores SIGPIPE): the apps' loops end when it is. */
extern volatile sig_atomic_t hw_vpn_stop;
void hw_vpn_catch_stop(void);

#endif
