/* hopwire-vpn-server (docs/vpn.md): owns a TUN device and an address
 * pool, gives each allowed client visor its address on its loop, and
 * forwards the clients' packets to this host's other interfaces, with NAT
 * unless --route-only. One thread, one poll() loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hopwire/app.h>
#include <jansson.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "nat.h"
#include "nl.h"
#include "pool.h"
#include "proto.h"
#include "pump.h"
#include "status.h"
#include "tun_linux.h"

#define LOG "hopwire-vpn-server"
#define ALLOW_MAX 256
#define CONN_MAX 1024

static const char usage[] =
	"usage: hopwire-vpn-server [--allow PK|any]... [--subnet CIDR4] "
	"[--subnet6 CIDR6]\n"
	"                          [--tun NAME] [--route-only] "
	"[--client-to-client]\n"
	"       hopwire-vpn-server --cleanup\n"
	"\n"
	"The VPN server (app port 44): gives each client visor of the allow "
	"list an\n"
	"address of its own and forwards its packets to this host's other "
	"interfaces.\n"
	"Needs CAP_NET_ADMIN (docs/vpn.md).\n"
	"\n"
	"  --allow PK|any      a client visor's key (repeatable), or any "
	"visor; without\n"
	"                      it every client is refused\n"
	"  --subnet CIDR4      the address pool (default 10.44.0.0/24); the "
	"server takes\n"
	"                      its first host address\n"
	"  --subnet6 CIDR6     an IPv6 pool as well (/64../112)\n"
	"  --tun NAME          the TUN device (default hwvpns0)\n"
	"  --route-only        no NAT: forward with the clients' addresses\n"
	"  --client-to-client  let clients reach each other (default: "
	"dropped)\n"
	"  --cleanup           undo what a run that did not stop left (its "
	"nftables\n"
	"                      table, forwarding it turned on) and exit\n"
	"\n"
	"Files in the working folder: leases.json (addresses by key), "
	"status.json,\n"
	"undo.json (while it runs: what --cleanup undoes).\n";

struct peer {
	char pk[HW_APP_PK_HEX + 1];
	uint32_t index;
	int fd; /* -1 when not connected */
	int closing; /* CLOSE queued: close once written */
	struct hw_vpn_buf in, out;
	unsigned long long bytes_in, bytes_out, packets_in, packets_out;
	unsigned long long spoofed, dropped, blocked;
	long long full_since; /* when out last ran out of room; 0: has room */
};

static struct {
	struct hw_app *app;
	struct hw_vpn_pool *pool;
	struct hw_vpn_nl *nl;
	const char *tun_name;
	int tun, nat, c2c, allow_any, nallow;
	char allow[ALLOW_MAX][HW_APP_PK_HEX + 1];
	struct peer **peers; /* by pool index */
	uint32_t conn[CONN_MAX];
	int nconn;
	unsigned long long refused, spoofed, tun_dropped;
	char error[256];
	uint8_t pkt[HW_VPN_MTU];
	struct peer *cur; /* the peer whose frames are being handled */
	int tun_waits; /* a client's loop is full: the batch stops */
} S;

static int allowed(const char *pk)
{
	if (S.allow_any)
		return 1;
	for (int i = 0; i < S.nallow; i++)
		if (!strcmp(S.allow[i], pk))
			return 1;
	return 0;
}

static void addr_str(uint32_t index, char *buf, size_t len)
{
	uint8_t a[4];

	hw_vpn_pool_addr4(S.pool, index, a);
	inet_ntop(AF_INET, a, buf, (socklen_t)len);
}

/* Ends a peer's loop now, with reason for the log. */
static void drop_peer(struct peer *p, const char *reason)
{
	char as[INET_ADDRSTRLEN];

	if (p->fd < 0)
		return;
	addr_str(p->index, as, sizeof(as));
	fprintf(stderr, LOG ": client %.16s... (%s): loop closed: %s\n",
		p->pk, as, reason);
	hw_app_loop_close(p->fd);
	p->fd = -1;
	p->closing = 0;
	p->full_since = 0;
	hw_vpn_buf_free(&p->in);
	hw_vpn_buf_free(&p->out);
	for (int i = 0; i < S.nconn; i++)
		if (S.conn[i] == p->index) {
			S.conn[i] = S.conn[--S.nconn];
			break;
		}
}

/* Queues a CLOSE with reason and ends the loop once it is written (or at
 * once when it cannot be). */
static void close_peer(struct peer *p, const char *reason)
{
	uint8_t fr[HW_VPN_HDR + HW_VPN_REASON_MAX];
	size_t n = hw_vpn_build_reason(fr, HW_VPN_CLOSE, reason);
	uint8_t *dst = hw_vpn_buf_room(&p->out, n);

	if (dst) {
		memcpy(dst, fr, n);
		p->out.len += n;
	}
	hw_vpn_buf_flush(&p->out, p->fd);
	drop_peer(p, reason);
}

/* Whether p's loop has room for one more frame of any size; notes when
 * it ran out (TUN reading waits for a peer that drains, see tun_wait). */
static int has_room(struct peer *p)
{
	if (hw_vpn_buf_room(&p->out, HW_VPN_FRAME_MAX)) {
		p->full_since = 0;
		return 1;
	}
	if (!p->full_since)
		p->full_since = hw_vpn_now_ms();
	return 0;
}

/* Queues packet pkt for peer p; counts a drop when its loop is full. */
static void to_peer(struct peer *p, const uint8_t *pkt, size_t n)
{
	uint8_t *dst = hw_vpn_buf_room(&p->out, HW_VPN_HDR + n);

	if (!dst) {
		p->dropped++;
		return;
	}
	hw_vpn_put_hdr(dst, HW_VPN_PACKET, (uint16_t)n);
	memcpy(dst + HW_VPN_HDR, pkt, n);
	p->out.len += HW_VPN_HDR + n;
	p->bytes_out += n;
	p->packets_out++;
	has_room(p);
}

/* Backpressure: the TUN is not read while a client's loop is full and
 * has been for less than TUN_WAIT_MS, so packets wait in the kernel's
 * queue instead of being dropped here. A client that drains no faster
 * stops holding the others up: its packets are dropped and counted. */
#define TUN_WAIT_MS 100
static int tun_wait(void)
{
	long long now = hw_vpn_now_ms();

	for (int i = 0; i < S.nconn; i++) {
		struct peer *p = S.peers[S.conn[i]];

		if (!has_room(p) && now - p->full_since < TUN_WAIT_MS)
			return 1;
	}
	return 0;
}

static struct peer *peer_at(uint32_t index)
{
	struct peer *p = index ? S.peers[index] : NULL;

	return p && p->fd >= 0 ? p : NULL;
}

static uint32_t index_of(const uint8_t *a, int family)
{
	return family == 4 ? hw_vpn_pool_index4(S.pool, a)
			   : hw_vpn_pool_index6(S.pool, a);
}

/* ---- TUN to loops ---- */

static uint8_t *tun_place(void *ud)
{
	(void)ud;
	return S.tun_waits ? NULL : S.pkt;
}

static void tun_done(void *ud, uint8_t *pkt, size_t n)
{
	int family = n >= 20 && pkt[0] >> 4 == 4 ? 4
		     : n >= 40 && pkt[0] >> 4 == 6 ? 6 : 0;
	struct peer *p;

	(void)ud;
	p = family ? peer_at(index_of(hw_vpn_ip_dst(pkt, family), family))
		   : NULL;
	if (!p || p->closing) {
		S.tun_dropped++;
		return;
	}
	to_peer(p, pkt, n);
	if (p->full_since)
		S.tun_waits = 1;
}

/* ---- loops to TUN ---- */

static unsigned peer_allowed(void *ud)
{
	(void)ud;
	return HW_VPN_RUNNING;
}

static int on_frame(const struct hw_vpn_frame *f, void *ud)
{
	struct peer *p = ud, *q;
	uint32_t di;

	if (f->type == HW_VPN_CLOSE)
		return -ECONNRESET;
	p->bytes_in += f->len;
	p->packets_in++;
	if (index_of(hw_vpn_ip_src(f->body, f->family), f->family) !=
	    p->index) {
		p->spoofed++;
		S.spoofed++;
		return 0;
	}
	di = index_of(hw_vpn_ip_dst(f->body, f->family), f->family);
	if (di > 1) {
		/* Another client's address (leased or not). */
		if (!S.c2c || !(q = peer_at(di))) {
			p->blocked++;
			return 0;
		}
		to_peer(q, f->body, f->len);
		return 0;
	}
	if (write(S.tun, f->body, f->len) < 0)
		p->dropped++;
	return 0;
}

static void serve_peer(struct peer *p)
{
	char why[300], reason[320];
	int rc;

	S.cur = p;
	rc = hw_vpn_read_frames(p->fd, &p->in, peer_allowed, on_frame, p, why,
				sizeof(why));
	if (rc == 0)
		return;
	if (rc == -EPROTO) {
		snprintf(reason, sizeof(reason), "protocol error: %s", why);
		close_peer(p, reason);
	} else if (rc == -ECONNRESET) {
		drop_peer(p, "the client closed it");
	} else if (rc == -EPIPE) {
		drop_peer(p, "end of the loop");
	} else {
		const char *le = hw_app_loop_error(p->fd);

		snprintf(reason, sizeof(reason), "%s",
			 le ? le : strerror(-rc));
		drop_peer(p, reason);
	}
}

/* ---- new loops ---- */

static void refuse(int fd, const char *pk, const char *reason)
{
	uint8_t fr[HW_VPN_HDR + HW_VPN_REASON_MAX];
	size_t n = hw_vpn_build_reason(fr, HW_VPN_REFUSE, reason);

	S.refused++;
	fprintf(stderr, LOG ": refused %s: %s\n", pk, reason);
	/* A fresh loop takes a few bytes at once; if it cannot, the close
	 * says enough. */
	send(fd, fr, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	hw_app_loop_close(fd);
}

static void accept_loop(const char *leases)
{
	struct hw_vpn_assign a = {.mtu = HW_VPN_MTU};
	struct hw_app_loop loop;
	struct peer *p;
	char as[INET_ADDRSTRLEN], why[160];
	uint32_t index;
	int rc, is_new;

	if ((rc = hw_app_accept(S.app, &loop, 0)) == -EAGAIN)
		return;
	if (rc) {
		fprintf(stderr, LOG ": the visor closed the channel\n");
		hw_vpn_stop = 1;
		return;
	}
	if (!allowed(loop.remote_pk)) {
		refuse(loop.fd, loop.remote_pk,
		       S.nallow || S.allow_any
			       ? "this visor is not in the server's allow list"
			       : "the server allows no client (no --allow)");
		return;
	}
	rc = hw_vpn_pool_lease(S.pool, loop.remote_pk, &index, &is_new);
	if (rc == 0 && S.nconn >= CONN_MAX && !peer_at(index))
		rc = -EMFILE;
	if (rc) {
		snprintf(why, sizeof(why), rc == -ENOSPC
			 ? "the address pool %s is full"
			 : "the server has too many clients (%s)",
			 hw_vpn_pool_subnet4(S.pool));
		refuse(loop.fd, loop.remote_pk, why);
		return;
	}
	if (is_new && (rc = hw_vpn_pool_save(S.pool, leases)))
		fprintf(stderr, LOG ": %s: cannot write: %s (the lease may "
			"change at the next start)\n", leases, strerror(-rc));
	if (!(p = S.peers[index])) {
		if (!(p = S.peers[index] = calloc(1, sizeof(*p)))) {
			refuse(loop.fd, loop.remote_pk, "out of memory");
			return;
		}
		p->fd = -1;
		p->index = index;
		memcpy(p->pk, loop.remote_pk, sizeof(p->pk));
	}
	if (p->fd >= 0)
		close_peer(p, "a new loop from the same visor took its place");
	if (hw_vpn_buf_init(&p->in, HW_VPN_IN_CAP) ||
	    hw_vpn_buf_init(&p->out, HW_VPN_OUT_CAP)) {
		hw_vpn_buf_free(&p->in);
		hw_vpn_buf_free(&p->out);
		refuse(loop.fd, loop.remote_pk, "out of memory");
		return;
	}
	fcntl(loop.fd, F_SETFL, fcntl(loop.fd, F_GETFL) | O_NONBLOCK);
	p->fd = loop.fd;
	S.conn[S.nconn++] = index;
	hw_vpn_pool_addr4(S.pool, index, a.addr4);
	hw_vpn_pool_addr4(S.pool, 1, a.server4);
	a.prefix4 = (uint8_t)hw_vpn_pool_prefix4(S.pool);
	if ((a.prefix6 = (uint8_t)hw_vpn_pool_prefix6(S.pool))) {
		hw_vpn_pool_addr6(S.pool, index, a.addr6);
		hw_vpn_pool_addr6(S.pool, 1, a.server6);
	}
	p->out.len = hw_vpn_build_assign(p->out.p, &a);
	addr_str(index, as, sizeof(as));
	fprintf(stderr, LOG ": client %s: address %s%s\n", p->pk, as,
		is_new ? " (new lease)" : "");
}

/* ---- status.json ---- */

static void write_status(void)
{
	json_t *o = json_object(), *cs = json_array();
	char as[INET_ADDRSTRLEN];
	int rc;

	for (uint32_t i = 2; i <= hw_vpn_pool_last(S.pool); i++) {
		struct peer *p = S.peers[i];

		if (!p)
			continue;
		addr_str(i, as, sizeof(as));
		json_array_append_new(cs, json_pack(
			"{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			"pk", p->pk, "address", as, "connected", p->fd >= 0,
			"bytes_in", (json_int_t)p->bytes_in, "bytes_out",
			(json_int_t)p->bytes_out, "packets_in",
			(json_int_t)p->packets_in, "packets_out",
			(json_int_t)p->packets_out, "spoofed_dropped",
			(json_int_t)p->spoofed, "dropped",
			(json_int_t)p->dropped, "blocked",
			(json_int_t)p->blocked));
	}
	addr_str(1, as, sizeof(as));
	json_object_set_new(o, "version", json_integer(1));
	json_object_set_new(o, "role", json_string("server"));
	json_object_set_new(o, "tun", json_string(S.tun_name));
	json_object_set_new(o, "subnet",
			    json_string(hw_vpn_pool_subnet4(S.pool)));
	json_object_set_new(o, "subnet6",
			    hw_vpn_pool_prefix6(S.pool)
				    ? json_string(hw_vpn_pool_subnet6(S.pool))
				    : json_null());
	json_object_set_new(o, "address", json_string(as));
	json_object_set_new(o, "mtu", json_integer(HW_VPN_MTU));
	json_object_set_new(o, "nat", json_boolean(S.nat));
	json_object_set_new(o, "client_to_client", json_boolean(S.c2c));
	json_object_set_new(o, "clients", cs);
	json_object_set_new(o, "refused", json_integer((json_int_t)S.refused));
	json_object_set_new(o, "spoofed_dropped",
			    json_integer((json_int_t)S.spoofed));
	json_object_set_new(o, "tun_dropped",
			    json_integer((json_int_t)S.tun_dropped));
	json_object_set_new(o, "error",
			    S.error[0] ? json_string(S.error) : json_null());
	json_object_set_new(o, "updated_ms",
			    json_integer(hw_vpn_wall_ms()));
	if ((rc = hw_vpn_json_save("status.json", o, 0)))
		fprintf(stderr, LOG ": status.json: %s\n", strerror(-rc));
	json_decref(o);
}

/* ---- start and stop ---- */

static int parse_args(int argc, char **argv, const char **subnet,
		      const char **subnet6, int *route_only, int *cleanup)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			exit(0);
		}
		if (!strcmp(a, "--route-only")) {
			*route_only = 1;
			continue;
		}
		if (!strcmp(a, "--cleanup")) {
			*cleanup = 1;
			continue;
		}
		if (!strcmp(a, "--client-to-client")) {
			S.c2c = 1;
			continue;
		}
		if (!v || (strcmp(a, "--allow") && strcmp(a, "--subnet") &&
			   strcmp(a, "--subnet6") && strcmp(a, "--tun"))) {
			fprintf(stderr, LOG ": unknown argument '%s' or "
				"missing value (see --help)\n", a);
			return -1;
		}
		i++;
		if (!strcmp(a, "--subnet"))
			*subnet = v;
		else if (!strcmp(a, "--subnet6"))
			*subnet6 = v;
		else if (!strcmp(a, "--tun"))
			S.tun_name = v;
		else if (!strcmp(v, "any"))
			S.allow_any = 1;
		else {
			size_t k;

			for (k = 0; v[k]; k++)
				if (!strchr("0123456789abcdef", v[k]))
					break;
			if (v[k] || k != HW_APP_PK_HEX) {
				fprintf(stderr, LOG ": --allow '%s' is not a "
					"public key (64 lowercase hex digits) "
					"or 'any'\n", v);
				return -1;
			}
			if (S.nallow == ALLOW_MAX) {
				fprintf(stderr, LOG ": more than %d --allow\n",
					ALLOW_MAX);
				return -1;
			}
			memcpy(S.allow[S.nallow++], v, HW_APP_PK_HEX + 1);
		}
	}
	if (!hw_vpn_tun_name_ok(S.tun_name)) {
		fprintf(stderr, LOG ": --tun '%s' is not 1..15 of "
			"[A-Za-z0-9_-]\n", S.tun_name);
		return -1;
	}
	return 0;
}

/* ---- undo.json: what a run changes on the host ----
 * {"version": 1, "tun": "hwvpns0", "ip_forward_was_off": true,
 *  "ipv6_forwarding_was_off": false}, written (synced) before the first
 * change and deleted after a clean stop; --cleanup (run by the visor's
 * launcher after a crash) deletes the table and turns forwarding off
 * where it was off, which is idempotent. */
#define UNDO_FILE "undo.json"
#define FWD4 "net/ipv4/ip_forward"
#define FWD6 "net/ipv6/conf/all/forwarding"

static int was_off(const char *key)
{
	char v[16];

	return !hw_vpn_sysctl_get(key, v, sizeof(v)) && !strcmp(v, "0");
}

static int save_undo(int ipv6)
{
	json_t *o = json_pack("{s:i, s:s, s:b, s:b}", "version", 1, "tun",
			      S.tun_name, "ip_forward_was_off",
			      was_off(FWD4), "ipv6_forwarding_was_off",
			      ipv6 && was_off(FWD6));
	int rc = o ? hw_vpn_json_save(UNDO_FILE, o, 1) : -ENOMEM;

	if (rc)
		fprintf(stderr, LOG ": %s: cannot write: %s\n", UNDO_FILE,
			strerror(-rc));
	json_decref(o);
	return rc;
}

static int cleanup(void)
{
	json_t *o = NULL;
	const char *tun;
	char err[400];
	int rc = hw_vpn_json_load(UNDO_FILE, 4096, &o, err, sizeof(err));

	if (rc == -ENOENT)
		return 0;
	tun = json_string_value(json_object_get(o, "tun"));
	if (rc || !tun || !hw_vpn_tun_name_ok(tun)) {
		fprintf(stderr, LOG ": %s: %s (undo by hand: nft delete table "
			"inet hopwire_vpn_TUN)\n", UNDO_FILE,
			rc ? err : "no valid \"tun\"");
		json_decref(o);
		return -1;
	}
	if (hw_vpn_nat_down(tun, err, sizeof(err)))
		fprintf(stderr, LOG ": table inet hopwire_vpn_%s: %s\n", tun,
			err);
	else
		fprintf(stderr, LOG ": deleted table inet hopwire_vpn_%s (if "
			"it was there)\n", tun);
	if (json_is_true(json_object_get(o, "ip_forward_was_off")) &&
	    !hw_vpn_sysctl_set(FWD4, "0"))
		fprintf(stderr, LOG ": /proc/sys/" FWD4 " is 0 again\n");
	if (json_is_true(json_object_get(o, "ipv6_forwarding_was_off")) &&
	    !hw_vpn_sysctl_set(FWD6, "0"))
		fprintf(stderr, LOG ": /proc/sys/" FWD6 " is 0 again\n");
	json_decref(o);
	unlink(UNDO_FILE);
	return 0;
}

/* Turns forwarding on for family's key when it is off; *changed says
 * whether to turn it off again at stop. */
static int forwarding_on(const char *key, int *changed)
{
	char v[16];
	int rc;

	*changed = 0;
	if ((rc = hw_vpn_sysctl_get(key, v, sizeof(v)))) {
		fprintf(stderr, LOG ": /proc/sys/%s: %s\n", key,
			strerror(-rc));
		return rc;
	}
	if (strcmp(v, "0"))
		return 0;
	if ((rc = hw_vpn_sysctl_set(key, "1"))) {
		fprintf(stderr, LOG ": cannot turn on /proc/sys/%s: %s\n",
			key, strerror(-rc));
		return rc;
	}
	*changed = 1;
	fprintf(stderr, LOG ": turned on /proc/sys/%s in this network "
		"namespace (it is turned off again at stop)\n", key);
	return 0;
}

static int setup_tun(void)
{
	uint8_t a[16];
	int ifx, rc;

	if ((S.tun = hw_vpn_tun_open(S.tun_name)) < 0) {
		fprintf(stderr, LOG ": cannot open TUN device %s: %s\n",
			S.tun_name, strerror(-S.tun));
		return -1;
	}
	ifx = (int)if_nametoindex(S.tun_name);
	if (!ifx || (rc = hw_vpn_nl_link(S.nl, ifx, 1, HW_VPN_MTU))) {
		fprintf(stderr, LOG ": %s: cannot set it up with MTU %d: %s\n",
			S.tun_name, HW_VPN_MTU, ifx ? strerror(-rc)
						    : "no such device");
		return -1;
	}
	hw_vpn_pool_addr4(S.pool, 1, a);
	if ((rc = hw_vpn_nl_addr(S.nl, 1, ifx, 4, a,
				 hw_vpn_pool_prefix4(S.pool)))) {
		fprintf(stderr, LOG ": %s: cannot add its address: %s\n",
			S.tun_name, strerror(-rc));
		return -1;
	}
	if (hw_vpn_pool_prefix6(S.pool)) {
		hw_vpn_pool_addr6(S.pool, 1, a);
		if ((rc = hw_vpn_nl_addr(S.nl, 1, ifx, 6, a,
					 hw_vpn_pool_prefix6(S.pool)))) {
			fprintf(stderr, LOG ": %s: cannot add its IPv6 "
				"address: %s\n", S.tun_name, strerror(-rc));
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct hw_app_config cfg = {.name = "vpn-server", .version = "0.1.0",
				    .port = HW_VPN_PORT};
	const char *subnet = "10.44.0.0/24", *subnet6 = NULL;
	const char *leases = "leases.json";
	int route_only = 0, fwd4 = 0, fwd6 = 0, table = 0, skipped, rc;
	int clean = 0, undo = 0;
	int code = 1;
	long long last_status = 0;
	char err[768];
	struct pollfd *pfd = NULL;

	S.tun_name = "hwvpns0";
	S.tun = -1;
	if (parse_args(argc, argv, &subnet, &subnet6, &route_only, &clean))
		return 2;
	if (!hw_vpn_has_net_admin()) {
		fprintf(stderr, LOG ": needs CAP_NET_ADMIN (run by a visor "
			"whose config grants it: docs/vpn.md)\n");
		return 1;
	}
	/* What a run that did not stop left goes first, also at start. */
	if (cleanup())
		return 1;
	if (clean)
		return 0;
	S.nat = !route_only;
	if (hw_vpn_pool_new(&S.pool, subnet, subnet6, err, sizeof(err))) {
		fprintf(stderr, LOG ": --subnet%s: %s\n",
			strstr(err, ":") || !subnet6 ? "" : "6", err);
		return 2;
	}
	if (hw_vpn_pool_load(S.pool, leases, &skipped, err, sizeof(err))) {
		fprintf(stderr, LOG ": %s (fix or remove the file)\n", err);
		goto out;
	}
	if (skipped)
		fprintf(stderr, LOG ": %s: %d lease(s) outside %s forgotten\n",
			leases, skipped, hw_vpn_pool_subnet4(S.pool));
	if (!(S.peers = calloc(hw_vpn_pool_last(S.pool) + 1,
			       sizeof(*S.peers))) ||
	    !(pfd = calloc(2 + CONN_MAX, sizeof(*pfd))))
		goto out;
	if ((rc = hw_vpn_nl_open(&S.nl))) {
		fprintf(stderr, LOG ": netlink: %s\n", strerror(-rc));
		goto out;
	}
	hw_vpn_catch_stop();
	if (save_undo(subnet6 != NULL))
		goto out;
	undo = 1;
	if (setup_tun())
		goto out;
	if (forwarding_on(FWD4, &fwd4) ||
	    (subnet6 && forwarding_on(FWD6, &fwd6)))
		goto out;
	if (hw_vpn_nat_up(S.tun_name, hw_vpn_pool_subnet4(S.pool),
			  hw_vpn_pool_subnet6(S.pool), S.nat, err,
			  sizeof(err))) {
		fprintf(stderr, LOG ": table inet hopwire_vpn_%s: %s\n",
			S.tun_name, err);
		goto out;
	}
	table = 1;
	if (hw_app_setup(&S.app, &cfg, err, sizeof(err))) {
		fprintf(stderr, LOG ": %s\n", err);
		goto out;
	}
	fprintf(stderr, LOG ": on port %u of %s: %s, %s%s%s, MTU %d, %s%s\n",
		hw_app_port(S.app), hw_app_local_pk(S.app), S.tun_name,
		hw_vpn_pool_subnet4(S.pool), subnet6 ? " and " : "",
		hw_vpn_pool_subnet6(S.pool), HW_VPN_MTU,
		S.nat ? "NAT (masquerade)" : "route-only",
		S.c2c ? ", clients may reach each other" : "");
	if (S.allow_any)
		fprintf(stderr, LOG ": allows any visor\n");
	else if (!S.nallow)
		fprintf(stderr, LOG ": no --allow given: every client will "
			"be refused\n");
	while (!hw_vpn_stop) {
		int np = 2;

		pfd[0] = (struct pollfd){.fd = hw_app_fd(S.app),
					 .events = POLLIN};
		S.tun_waits = tun_wait();
		pfd[1] = (struct pollfd){.fd = S.tun,
					 .events = S.tun_waits ? 0 : POLLIN};
		for (int i = 0; i < S.nconn; i++) {
			struct peer *p = S.peers[S.conn[i]];

			pfd[np++] = (struct pollfd){
				.fd = p->fd, .events = (short)(POLLIN |
				(p->out.len > p->out.off ? POLLOUT : 0))};
		}
		if (hw_vpn_now_ms() - last_status >= 1000) {
			write_status();
			last_status = hw_vpn_now_ms();
		}
		if (poll(pfd, (nfds_t)np, S.tun_waits ? TUN_WAIT_MS : 250) <
			    0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN)
			hw_vpn_tun_batch(S.tun, tun_place, tun_done, NULL);
		/* The peers of this round, by descriptor: a peer may have
		 * gone (or come) since. */
		for (int k = 2; k < np; k++) {
			struct peer *p = NULL;

			for (int i = 0; i < S.nconn && !p; i++)
				if (S.peers[S.conn[i]]->fd == pfd[k].fd)
					p = S.peers[S.conn[i]];
			if (p && (pfd[k].revents & (POLLIN | POLLHUP |
						    POLLERR)))
				serve_peer(p);
		}
		for (int i = 0; i < S.nconn; i++) {
			struct peer *p = S.peers[S.conn[i]];

			if (p->out.len > p->out.off &&
			    (rc = hw_vpn_buf_flush(&p->out, p->fd)) < 0) {
				drop_peer(p, strerror(-rc));
				i--;
			}
		}
		if (pfd[0].revents)
			accept_loop(leases);
	}
	code = 0;
	fprintf(stderr, LOG ": stopping\n");
out:
	while (S.nconn)
		close_peer(S.peers[S.conn[0]], "the server is stopping");
	if (table && hw_vpn_nat_down(S.tun_name, err, sizeof(err)))
		fprintf(stderr, LOG ": table inet hopwire_vpn_%s: %s\n",
			S.tun_name, err);
	if (fwd4 && hw_vpn_sysctl_set(FWD4, "0") == 0)
		fprintf(stderr, LOG ": turned /proc/sys/" FWD4 " off "
			"again\n");
	if (fwd6)
		hw_vpn_sysctl_set(FWD6, "0");
	if (undo)
		unlink(UNDO_FILE);
	if (S.pool && S.peers)
		write_status();
	if (S.tun >= 0)
		close(S.tun);
	for (uint32_t i = 0; S.peers && i <= hw_vpn_pool_last(S.pool); i++)
		free(S.peers[i]);
	free(S.peers);
	free(pfd);
	hw_vpn_nl_close(S.nl);
	hw_app_close(S.app);
	hw_vpn_pool_free(S.pool);
	return code;
}
