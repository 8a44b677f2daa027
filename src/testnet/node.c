#include "testnet/node.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypto/identity.h"
#include "visor/config.h"

_Static_assert(HW_NODE_PK_HEXLEN == HW_PK_HEXLEN, "public key length");

int hw_node_key_new(const char *path, int force,
		    char pk[HW_NODE_PK_HEXLEN + 1])
{
	struct hw_identity id;
	int rc;

	if (!(rc = hw_identity_generate(&id)) &&
	    !(rc = hw_identity_save(&id, path, force)))
		hw_pk_format(id.pk, pk);
	hw_identity_wipe(&id);
	return rc;
}

int hw_node_key_pk(const char *path, char pk[HW_NODE_PK_HEXLEN + 1])
{
	struct hw_identity id;
	int rc;

	if (!(rc = hw_identity_load(&id, path)))
		hw_pk_format(id.pk, pk);
	hw_identity_wipe(&id);
	return rc;
}

int hw_node_key_ensure(const char *path, char pk[HW_NODE_PK_HEXLEN + 1],
		       int *created)
{
	int rc = hw_node_key_pk(path, pk);

	*created = 0;
	if (rc != -ENOENT)
		return rc;
	if (!(rc = hw_node_key_new(path, 0, pk)))
		*created = 1;
	return rc;
}

int hw_node_pk_check(const char *hex)
{
	uint8_t pk[HW_PK_LEN];

	return hw_pk_parse(hex, strlen(hex), pk);
}

json_t *hw_node_config_default(const char *key_file, const char *local_dir,
			       const char *tcp_listen,
			       const char *discovery_url)
{
	return hw_config_default(key_file, local_dir, tcp_listen,
				 discovery_url);
}

int hw_node_config_socket(const char *path, char out[PATH_MAX], char *err,
			  size_t errlen)
{
	struct hw_config cfg;
	int rc = hw_config_load(&cfg, path, err, errlen);

	if (!rc)
		snprintf(out, PATH_MAX, "%s", cfg.control_socket);
	hw_config_free(&cfg);
	return rc;
}
