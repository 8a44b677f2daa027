/* Small helpers the `hopwire` commands share (cli.h). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "crypto/identity.h"
#include "util/err.h"

const char *hw_cli_pk_bad(const char *s)
{
	uint8_t pk[HW_PK_LEN];
	int rc = hw_pk_parse(s, strlen(s), pk);

	if (rc == 0)
		return NULL;
	if (rc == HW_EHEXLEN)
		return "not 64 hex characters";
	if (rc == HW_EHEXCHAR)
		return "not hex";
	return "64 hex characters, but no valid Ed25519 key";
}

void hw_cli_human_bytes(long long n, char *out, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, len, "%lld B", n);
	else
		snprintf(out, len, "%.1f %s", v, units[u]);
}
