/* Small helpers the `hopwire` commands share (cli.h). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "crypto/identity.h"
#include "util/err.h"

const char *hw_cli_str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

long long hw_cli_num(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

long long hw_cli_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int hw_cli_help(int argc, char **argv, void (*usage)(FILE *))
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
	return -1;
}

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
