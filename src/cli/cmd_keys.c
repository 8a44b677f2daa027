/* hopwire keygen, hopwire pk */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "testnet/node.h"
#include "util/err.h"

#define DEFAULT_KEY_FILE "hopwire.key"

static const struct option keygen_opts[] = {
	{"out", required_argument, NULL, 'o'},
	{"force", no_argument, NULL, 'f'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

int hw_cli_keygen(int argc, char **argv)
{
	const char *out = DEFAULT_KEY_FILE;
	char hex[HW_NODE_PK_HEXLEN + 1];
	int force = 0, c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:fh", keygen_opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'f': force = 1; break;
		case 'h':
			printf("usage: hopwire keygen [--out FILE] [--force]\n\n"
			       "Writes a new Ed25519 identity to FILE (default "
			       DEFAULT_KEY_FILE ", mode 0600)\nand prints its "
			       "public key. An existing FILE is kept unless "
			       "--force is given.\n");
			return 0;
		default: return 2;
		}
	}
	if (optind != argc) {
		hw_cli_err("keygen: unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if ((rc = hw_node_key_new(out, force, hex))) {
		hw_cli_err("keygen: %s: %s", out, hw_strerror(rc));
		return 1;
	}
	printf("%s\n", hex);
	return 0;
}

static const struct option pk_opts[] = {
	{"key", required_argument, NULL, 'k'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

int hw_cli_pk(int argc, char **argv)
{
	const char *key = NULL;
	char hex[HW_NODE_PK_HEXLEN + 1];
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "k:h", pk_opts, NULL)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case 'h':
			printf("usage: hopwire pk --key FILE\n\n"
			       "Prints the public key (64 hex characters) of "
			       "the key file FILE.\n");
			return 0;
		default: return 2;
		}
	}
	if (!key || optind != argc) {
		hw_cli_err("usage: hopwire pk --key FILE");
		return 2;
	}
	if ((rc = hw_node_key_pk(key, hex))) {
		hw_cli_err("%s: %s", key, hw_strerror(rc));
		return 1;
	}
	printf("%s\n", hex);
	return 0;
}
