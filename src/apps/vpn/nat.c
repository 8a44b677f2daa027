/* nftables through libnftables (nat.h). */
#include <errno.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <string.h>

#include "nat.h"

static int run(const char *cmd, char *err, size_t errlen)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
	const char *msg;
	int rc;

	if (!nft) {
		snprintf(err, errlen, "nftables: cannot make a context");
		return -ENOMEM;
	}
	nft_ctx_buffer_output(nft);
	nft_ctx_buffer_error(nft);
	rc = nft_run_cmd_from_buffer(nft, cmd);
	if (rc) {
		msg = nft_ctx_get_error_buffer(nft);
		snprintf(err, errlen, "nftables: %s", msg && *msg ? msg
							   : "failed");
		err[strcspn(err, "\n")] = '\0';
	}
	nft_ctx_free(nft);
	return rc ? -EIO : 0;
}

int hw_vpn_nat_up(const char *tun, const char *subnet4, const char *subnet6,
		  int masquerade, char *err, size_t errlen)
{
	char cmd[2048], nat[768] = "", m6[256] = "";
	int n;

	if (subnet6[0])
		snprintf(m6, sizeof(m6), "  ip6 saddr %s oifname != \"%s\" "
			 "masquerade\n", subnet6, tun);
	if (masquerade)
		snprintf(nat, sizeof(nat), " chain nat {\n"
			 "  type nat hook postrouting priority srcnat; "
			 "policy accept;\n"
			 "  ip saddr %s oifname != \"%s\" masquerade\n"
			 "%s }\n", subnet4, tun, m6);
	/* "add" first so the "delete" never fails: a table an earlier run
	 * left is replaced in the same transaction. */
	n = snprintf(cmd, sizeof(cmd),
		"add table inet hopwire_vpn_%s\n"
		"delete table inet hopwire_vpn_%s\n"
		"table inet hopwire_vpn_%s {\n"
		" chain clamp {\n"
		"  type filter hook forward priority mangle; policy accept;\n"
		"  iifname \"%s\" tcp flags & (syn|rst) == syn "
		"tcp option maxseg size set rt mtu\n"
		"  oifname \"%s\" tcp flags & (syn|rst) == syn "
		"tcp option maxseg size set rt mtu\n"
		" }\n%s}\n",
		tun, tun, tun, tun, tun, nat);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -ENAMETOOLONG;
	return run(cmd, err, errlen);
}

int hw_vpn_nat_down(const char *tun, char *err, size_t errlen)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "add table inet hopwire_vpn_%s\n"
		 "delete table inet hopwire_vpn_%s\n", tun, tun);
	return run(cmd, err, errlen);
}
