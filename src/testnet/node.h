/* A Hopwire node's files on this machine: its key file and its visor
 * config. What `hopwire keygen`, `pk` and `config init` do for one node
 * and the testnet supervisor does for each of its nodes, and how a tool
 * finds a visor's control socket from its config, without the tool
 * knowing the identity or config structures (crypto/identity.h,
 * visor/config.h stay private to the library). */
#ifndef HW_TESTNET_NODE_H
#define HW_TESTNET_NODE_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>

/* A public key written out: 64 lowercase hex characters. */
#define HW_NODE_PK_HEXLEN 64

/* Makes a new identity and writes it to the key file at path (mode 0600;
 * an existing file only when force). Returns 0 with its public key in pk,
 * or a negative code (HW_EKEYEXISTS, -errno...). */
int hw_node_key_new(const char *path, int force,
		    char pk[HW_NODE_PK_HEXLEN + 1]);

/* The public key of the key file at path. Returns 0 or a negative code
 * (-ENOENT, HW_EKEYPERM, HW_EKEYFORMAT...). */
int hw_node_key_pk(const char *path, char pk[HW_NODE_PK_HEXLEN + 1]);

/* Loads the key file at path, or makes it when there is none (*created
 * then 1). Returns 0 with its public key in pk, or a negative code. */
int hw_node_key_ensure(const char *path, char pk[HW_NODE_PK_HEXLEN + 1],
		       int *created);

/* Checks that hex is a public key (64 hex characters of a valid key).
 * Returns 0 or a negative code (HW_EHEXLEN, HW_EHEXCHAR, HW_EBADKEY). */
int hw_node_pk_check(const char *hex);

/* A complete default visor config with the given values (absolute paths);
 * tcp_listen NULL gives the default, "" disables; discovery_url NULL for
 * none. New reference, NULL when out of memory. */
json_t *hw_node_config_default(const char *key_file, const char *local_dir,
			       const char *tcp_listen,
			       const char *discovery_url);

/* Loads the visor config at path, checked as the visor checks it, and
 * copies the control socket it names into out. Returns 0, or a negative
 * code with the visor's reason in err ("transport.tcp_listen: ..."). */
int hw_node_config_socket(const char *path, char out[PATH_MAX], char *err,
			  size_t errlen);

#endif
