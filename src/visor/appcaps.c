#include "visor/appcaps.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>

/* The masks hold capability numbers below 64. */
#define MASK_BITS 64

static int in_set(cap_t c, cap_flag_t flag, cap_value_t v)
{
	cap_flag_value_t on = CAP_CLEAR;

	return cap_get_flag(c, v, flag, &on) == 0 && on == CAP_SET;
}

static unsigned known_bits(void)
{
	int n = cap_max_bits();

	return n < 0 ? 0 : n > MASK_BITS ? MASK_BITS : (unsigned)n;
}

uint64_t hw_appcaps_permitted(void)
{
	cap_t cur = cap_get_proc();
	uint64_t m = 0;

	if (!cur)
		return 0;
	for (unsigned b = 0; b < known_bits(); b++)
		if (in_set(cur, CAP_PERMITTED, (cap_value_t)b))
			m |= UINT64_C(1) << b;
	cap_free(cur);
	return m;
}

int hw_appcaps_prepare(struct hw_appcaps *c, uint64_t want,
		       uint64_t *missing)
{
	static const cap_flag_t flags[] = {CAP_PERMITTED, CAP_INHERITABLE,
					   CAP_EFFECTIVE};
	cap_t cur = NULL;
	int rc = -ENOMEM;

	memset(c, 0, sizeof(*c));
	*missing = 0;
	c->want = want;
	c->max_bits = known_bits();
	if (!(cur = cap_get_proc()) || !(c->target = cap_init()) ||
	    !(c->raised = cap_dup(cur)))
		goto fail;
	for (unsigned b = 0; b < MASK_BITS; b++) {
		cap_value_t v = (cap_value_t)b;

		if (!(want & (UINT64_C(1) << b)))
			continue;
		if (b >= c->max_bits || !in_set(cur, CAP_PERMITTED, v)) {
			*missing |= UINT64_C(1) << b;
			continue;
		}
		for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
			if (cap_set_flag(c->target, flags[f], 1, &v, CAP_SET))
				goto fail;
	}
	if (*missing) {
		rc = -EPERM;
		goto fail;
	}
	/* Cutting the bounding set takes CAP_SETPCAP in the effective set:
	 * the child raises what it may before it cuts. */
	c->drop_bound = in_set(cur, CAP_PERMITTED, CAP_SETPCAP);
	for (unsigned b = 0; b < c->max_bits; b++) {
		cap_value_t v = (cap_value_t)b;
		if (in_set(cur, CAP_PERMITTED, v) &&
		    cap_set_flag(c->raised, CAP_EFFECTIVE, 1, &v, CAP_SET))
			goto fail;
	}
	cap_free(cur);
	return 0;
fail:
	cap_free(cur);
	hw_appcaps_clear(c);
	return rc;
}

int hw_appcaps_apply(const struct hw_appcaps *c, int *step)
{
	if (c->drop_bound) {
		*step = HW_APPCAPS_BOUNDING;
		if (cap_set_proc(c->raised))
			return -errno;
		for (unsigned b = 0; b < c->max_bits; b++) {
			if (c->want & (UINT64_C(1) << b))
				continue;
			if (cap_drop_bound((cap_value_t)b) && errno != EINVAL)
				return -errno;
		}
	}
	*step = HW_APPCAPS_AMBIENT;
	if (cap_reset_ambient())
		return -errno;
	*step = HW_APPCAPS_SETS;
	if (cap_set_proc(c->target))
		return -errno;
	*step = HW_APPCAPS_AMBIENT;
	for (unsigned b = 0; b < c->max_bits; b++)
		if ((c->want & (UINT64_C(1) << b)) &&
		    cap_set_ambient((cap_value_t)b, CAP_SET))
			return -errno;
	return 0;
}

const char *hw_appcaps_step_name(int step)
{
	switch (step) {
	case HW_APPCAPS_BOUNDING:
		return "bounding set";
	case HW_APPCAPS_SETS:
		return "capability sets";
	case HW_APPCAPS_AMBIENT:
		return "ambient set";
	}
	return "?";
}

void hw_appcaps_clear(struct hw_appcaps *c)
{
	if (c->target)
		cap_free(c->target);
	if (c->raised)
		cap_free(c->raised);
	c->target = c->raised = NULL;
}
