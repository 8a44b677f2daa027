/* Fuzzes the visor config parser: any bytes must give a config or an
 * error message, and hw_config_free must release everything either way.
 * The same bytes, when they are JSON, go to the parser of one app's
 * settings (the body of PUT /v1/apps/NAME) under the same rules. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "visor/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_config cfg;
	char err[512];
	int rc;

	err[0] = '\0';
	rc = hw_config_parse(&cfg, "/fuzz/hopwire.json", (const char *)data,
			     size, err, sizeof(err));
	/* A refusal always says why. */
	if (rc && !err[0] && rc != -ENOMEM)
		abort();
	if (rc == 0 && (!cfg.key_file[0] || !cfg.control_socket[0]))
		abort();
	hw_config_free(&cfg);

	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY,
			       NULL);
	if (j) {
		struct hw_config_app a;

		err[0] = '\0';
		rc = hw_config_app_parse("/fuzz/hopwire.json", "fuzz", j, &a,
					 err, sizeof(err));
		if (rc && !err[0] && rc != -ENOMEM)
			abort();
		if (rc == 0 && (!a.args || !a.cleanup_args || !a.binary[0] ||
				 (a.caps & ~HW_APP_CAP_NET_ADMIN)))
			abort();
		hw_config_app_clear(&a);
		json_decref(j);
	}
	return 0;
}
