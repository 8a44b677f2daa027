/* Linux capabilities of launched apps (docs/apps.md, "Capabilities"): an
 * app gets exactly the capabilities its config entry names and none of
 * the visor's others. The launcher prepares the sets in the visor and
 * applies them in the child between fork and exec:
 *   - the bounding set is cut to the named ones when the visor may do so
 *     (CAP_SETPCAP: a root visor), so that not even a set-user-ID binary
 *     the app runs gets more;
 *   - permitted, inheritable and effective are set to them;
 *   - the ambient set is cleared and the named ones raised in it, so they
 *     survive the exec of an ordinary binary whether the visor runs as
 *     root or as a user that systemd gave them (AmbientCapabilities=).
 * Capability sets are bit masks of Linux capability numbers
 * (HW_APP_CAP_* in visor/config.h). */
#ifndef HW_VISOR_APPCAPS_H
#define HW_VISOR_APPCAPS_H

#include <stddef.h>
#include <stdint.h>

#include <sys/capability.h>

struct hw_appcaps {
	uint64_t want;
	cap_t target;      /* P = I = E = want */
	cap_t raised;      /* the visor's sets with E = P, for CAP_SETPCAP */
	int drop_bound;    /* the bounding set can be cut */
	unsigned max_bits; /* capabilities this kernel knows */
};

/* Prepares c for giving an app exactly want. Returns 0 (free with
 * hw_appcaps_clear); -EPERM when the visor's permitted set lacks some
 * of want, with them in *missing; -ENOMEM. */
int hw_appcaps_prepare(struct hw_appcaps *c, uint64_t want,
		       uint64_t *missing);

/* The steps of hw_appcaps_apply, for messages (hw_appcaps_step_name). */
enum hw_appcaps_step {
	HW_APPCAPS_BOUNDING = 1,
	HW_APPCAPS_SETS,
	HW_APPCAPS_AMBIENT,
};

/* In the child after fork: applies c to the calling process. Uses only
 * system calls (no allocation), so it is safe after fork in a process
 * with threads. Returns 0 or -errno with the step that failed in *step. */
int hw_appcaps_apply(const struct hw_appcaps *c, int *step);

/* "bounding set", "capability sets", "ambient set" ("?" for others). */
const char *hw_appcaps_step_name(int step);

/* The visor's own permitted set as a mask (0 when it cannot be read). */
uint64_t hw_appcaps_permitted(void);

void hw_appcaps_clear(struct hw_appcaps *c);

#endif
