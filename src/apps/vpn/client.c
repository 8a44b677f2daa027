/* hopwire-vpn-client (docs/vpn.md): a TUN device whose packets cross one
 * loop to a hopwire-vpn-server, the address the server assigns, and the
 * routes that send all traffic (or the networks named) through it, with
 * host routes that keep the visor's own connections outside the tunnel.
 * Every route it adds is recorded in undo.json first, so that a crash is
 * undone by `--cleanup` (the visor's launcher runs it) or the next start.
 * One thread for packets, one (underlay.c) asking the visor's API. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <hopwire/app.h>
#include <jansson.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "nl.h"
#include "pool.h"
#include "proto.h"
#include "pump.h"
#include "status.h"
#include "tun_linux.h"
#include "underlay.h"
#include "undo.h"

#define LOG "hopwire-vpn-client"
#define ROUTES_MAX 64
#define DIAL_MS 5000
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define REFUSED_RETRY_MS 30000
#define UNDO_FILE "undo.json"

static const char usage[] =
	"usage: hopwire-vpn-client --server PK [--routes CIDR,...] "
	"[--tun NAME]\n"
	"       hopwire-vpn-client --cleanup\n"
	"\n"
	"The VPN client: a TUN device whose packets go to the VPN server on "
	"visor PK\n"
	"(app port 44), which forwards them. Needs CAP_NET_ADMIN "
	"(docs/vpn.md).\n"
	"\n"
	"  --server PK    the server's visor (64 hex digits)\n"
	"  --routes LIST  the networks to send through the tunnel, comma "
	"separated\n"
	"                 (10.0.0.0/8,fd00::/8); default: everything "
	"(0.0.0.0/1 and\n"
	"                 128.0.0.0/1, and ::/1 and 8000::/1 when the "
	"server gives IPv6)\n"
	"  --tun NAME     the TUN device (default hwvpnc0)\n"
	"  --cleanup      undo what an earlier run left (undo.json in the "
	"working\n"
	"                 folder) and exit\n"
	"\n"
	"Files in the working folder: status.json, undo.json (while it has "
	"routes).\n"
	"DNS settings are left as they are.\n";

static struct {
	struct hw_app *app;
	struct hw_vpn_nl *nl;
	struct hw_vpn_undo *undo;
	struct hw_vpn_underlay *underlay; /* NULL without HOPWIRE_VISOR_API */
	const char *server, *tun_name;
	int tun, ifx;
	int full; /* route everything (no --routes) */
	/* The networks asked for (--routes), or empty for everything. */
	struct hw_vpn_route want[ROUTES_MAX];
	int nwant;
	/* The loop. */
	int fd;
	struct hw_vpn_buf in, out;
	int assigned;
	/* What is set up on the host. */
	struct hw_vpn_assign cur; /* cur.mtu 0: no address yet */
	struct hw_vpn_route routes[ROUTES_MAX + 4]; /* through the TUN */
	int nroutes, routes_set;
	struct hw_vpn_route hosts[HW_VPN_UNDERLAY_MAX]; /* outside it */
	int nhosts;
	unsigned underlay_gen;
	/* Shown in status.json. */
	const char *state;
	long long since;
	char error[400];
	unsigned long long bytes_in, bytes_out, packets_in, packets_out;
	unsigned long long dropped;
	/* Redialing. */
	long long next_dial;
	int backoff;
} C;

static void set_state(const char *state)
{
	if (C.state != state) {
		C.state = state;
		C.since = hw_vpn_wall_ms();
	}
}

__attribute__((format(printf, 1, 2)))
static void set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(C.error, sizeof(C.error), fmt, ap);
	va_end(ap);
	fprintf(stderr, LOG ": %s\n", C.error);
}

static size_t alen(int family)
{
	return family == 4 ? 4 : 16;
}

static int af(int family)
{
	return family == 4 ? AF_INET : AF_INET6;
}

/* ---- routes ---- */

static int in_route(const struct hw_vpn_route *r, const struct hw_vpn_ip *ip)
{
	int bits = r->prefix;

	if (r->family != ip->family)
		return 0;
	for (int i = 0; bits > 0; i++, bits -= 8) {
		uint8_t m = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));

		if ((r->dst[i] ^ ip->a[i]) & m)
			return 0;
	}
	return 1;
}

/* Whether a route through the tunnel covers ip (it needs a host route). */
static int covered(const struct hw_vpn_ip *ip)
{
	for (int i = 0; i < C.nroutes; i++)
		if (in_route(&C.routes[i], ip))
			return 1;
	return 0;
}

static void route_log(const char *what, const struct hw_vpn_route *r,
		      int rc)
{
	char rs[160];

	hw_vpn_route_str(r, rs, sizeof(rs));
	if (rc)
		fprintf(stderr, LOG ": cannot %s route %s: %s\n", what, rs,
			strerror(-rc));
	else
		fprintf(stderr, LOG ": %s route %s\n",
			!strcmp(what, "add") ? "added" : "removed", rs);
}

/* A host route for ip the way the host reaches it outside the tunnel:
 * the kernel's answer, or the main default route when that answer is the
 * tunnel. Returns 0, 1 when ip needs none (this host's own), or a
 * negative errno. */
static int host_route(const struct hw_vpn_ip *ip, struct hw_vpn_route *r)
{
	int rc = hw_vpn_nl_route_get(C.nl, ip->family, ip->a, r);

	if (rc)
		return rc;
	if (r->local)
		return 1;
	if (r->oif == C.ifx) {
		if ((rc = hw_vpn_nl_default(C.nl, ip->family, r)))
			return rc == -ENOENT ? -ENETUNREACH : rc;
		if (r->oif == C.ifx)
			return -ENETUNREACH;
	}
	memcpy(r->dst, ip->a, alen(ip->family));
	r->family = ip->family;
	r->prefix = (int)alen(ip->family) * 8;
	r->metric = 0;
	r->advmss = 0;
	r->local = 0;
	return 0;
}

static int same_ip(const struct hw_vpn_route *r, const struct hw_vpn_ip *ip)
{
	return r->family == ip->family &&
	       !memcmp(r->dst, ip->a, alen(ip->family));
}

/* Makes the host routes match the visor's underlay addresses that a
 * route through the tunnel covers. */
static void sync_hosts(const struct hw_vpn_underlay_set *set)
{
	char as[INET6_ADDRSTRLEN];
	struct hw_vpn_route r;
	int rc;

	for (int i = 0; i < C.nhosts; i++) {
		int keep = 0;

		for (int k = 0; k < set->n && !keep; k++)
			keep = same_ip(&C.hosts[i], &set->ip[k]);
		if (keep)
			continue;
		rc = hw_vpn_undo_route_del(C.undo, C.nl, &C.hosts[i]);
		route_log("remove", &C.hosts[i], rc);
		C.hosts[i--] = C.hosts[--C.nhosts];
	}
	for (int k = 0; k < set->n; k++) {
		int have = 0;

		for (int i = 0; i < C.nhosts && !have; i++)
			have = same_ip(&C.hosts[i], &set->ip[k]);
		if (have || !covered(&set->ip[k]) ||
		    C.nhosts == HW_VPN_UNDERLAY_MAX)
			continue;
		if ((rc = host_route(&set->ip[k], &r)) == 1)
			continue;
		inet_ntop(af(set->ip[k].family), set->ip[k].a, as,
			  sizeof(as));
		if (rc) {
			set_error("no route outside the tunnel to the "
				  "visor's peer %s: %s", as, strerror(-rc));
			continue;
		}
		rc = hw_vpn_undo_route_add(C.undo, C.nl, &r);
		if (rc == -EEXIST)
			continue; /* the operator's: it stays */
		route_log("add", &r, rc);
		if (!rc)
			C.hosts[C.nhosts++] = r;
	}
}

/* Sets the routes through the tunnel, once the first address is there:
 * host routes first, so the visor's connections never enter it. Returns
 * 0, or -EAGAIN to try again later (error says why). */
static int setup_routes(void)
{
	struct hw_vpn_underlay_set *set = NULL;
	int n = 0, rc;

	if (C.full) {
		static const uint8_t half[16] = {0x80};

		for (int f = 4; f <= 6; f += 2) {
			if (f == 6 && !C.cur.prefix6)
				continue;
			for (int h = 0; h < 2; h++) {
				struct hw_vpn_route *r = &C.routes[n++];

				memset(r, 0, sizeof(*r));
				r->family = f;
				r->prefix = 1;
				if (h)
					memcpy(r->dst, half, 1);
			}
		}
	} else {
		for (int i = 0; i < C.nwant; i++)
			if (C.want[i].family == 4 || C.cur.prefix6)
				C.routes[n++] = C.want[i];
			else
				fprintf(stderr, LOG ": the server gives no "
					"IPv6 address: not routing IPv6 "
					"networks\n");
	}
	for (int i = 0; i < n; i++) {
		C.routes[i].oif = C.ifx;
		C.routes[i].advmss = C.cur.mtu - (C.routes[i].family == 4
							  ? 40 : 60);
	}
	C.nroutes = n;
	if (C.underlay) {
		if (!(set = malloc(sizeof(*set))))
			return -EAGAIN;
		hw_vpn_underlay_get(C.underlay, set, 3000);
		if (!set->gen) {
			set_error("cannot learn the visor's own addresses "
				  "(%s): no routes through the tunnel yet",
				  set->error[0] ? set->error : "no answer");
			C.nroutes = 0;
			free(set);
			return -EAGAIN;
		}
		sync_hosts(set);
		C.underlay_gen = set->gen;
		free(set);
	}
	for (int i = 0; i < C.nroutes; i++) {
		rc = hw_vpn_undo_route_add(C.undo, C.nl, &C.routes[i]);
		route_log("add", &C.routes[i], rc);
		if (rc == -EEXIST)
			continue;
		if (rc) {
			char rs[160];

			hw_vpn_route_str(&C.routes[i], rs, sizeof(rs));
			set_error("cannot add route %s: %s", rs,
				  strerror(-rc));
			/* Take back what was added; try again later. */
			while (i-- > 0)
				hw_vpn_undo_route_del(C.undo, C.nl,
						      &C.routes[i]);
			C.nroutes = 0;
			return -EAGAIN;
		}
	}
	C.routes_set = 1;
	C.error[0] = '\0';
	return 0;
}

/* Follows the visor's underlay once routes are set. */
static void follow_underlay(void)
{
	struct hw_vpn_underlay_set *set;

	if (!C.underlay || !C.routes_set || !(set = malloc(sizeof(*set))))
		return;
	hw_vpn_underlay_get(C.underlay, set, 0);
	if (set->gen != C.underlay_gen) {
		sync_hosts(set);
		C.underlay_gen = set->gen;
	}
	free(set);
}

/* ---- the address ---- */

static int set_addr(int family, const uint8_t *old, int oldp,
		    const uint8_t *a, int prefix)
{
	int rc;

	if (oldp == prefix && oldp && !memcmp(old, a, alen(family)))
		return 0;
	if (oldp)
		hw_vpn_nl_addr(C.nl, 0, C.ifx, family, old, oldp);
	if (!prefix)
		return 0;
	rc = hw_vpn_nl_addr(C.nl, 1, C.ifx, family, a, prefix);
	return rc == -EEXIST ? 0 : rc;
}

/* Takes the server's ASSIGN: the TUN's MTU and addresses. */
static int apply_assign(const struct hw_vpn_assign *a)
{
	char as[INET_ADDRSTRLEN], ss[INET_ADDRSTRLEN];
	int rc;

	if (a->mtu != C.cur.mtu &&
	    (rc = hw_vpn_nl_link(C.nl, C.ifx, 1, a->mtu))) {
		set_error("cannot set the TUN's MTU: %s", strerror(-rc));
		return rc;
	}
	if ((rc = set_addr(4, C.cur.addr4, C.cur.mtu ? C.cur.prefix4 : 0,
			   a->addr4, a->prefix4)) ||
	    (rc = set_addr(6, C.cur.addr6, C.cur.mtu ? C.cur.prefix6 : 0,
			   a->addr6, a->prefix6))) {
		set_error("cannot give the TUN its address: %s",
			  strerror(-rc));
		C.cur.mtu = 0;
		return rc;
	}
	if (C.routes_set && C.full && !C.cur.prefix6 != !a->prefix6)
		fprintf(stderr, LOG ": the server %s IPv6 now; the routes "
			"stay as they were set\n",
			a->prefix6 ? "gives" : "no longer gives");
	C.cur = *a;
	inet_ntop(AF_INET, a->addr4, as, sizeof(as));
	inet_ntop(AF_INET, a->server4, ss, sizeof(ss));
	fprintf(stderr, LOG ": address %s/%u (server %s), MTU %u\n", as,
		a->prefix4, ss, a->mtu);
	return 0;
}

/* ---- the loop ---- */

static void end_loop(const char *state, int retry_ms)
{
	if (C.fd >= 0)
		hw_app_loop_close(C.fd);
	C.fd = -1;
	C.assigned = 0;
	C.in.off = C.in.len = 0;
	C.out.off = C.out.len = 0;
	set_state(state);
	C.next_dial = hw_vpn_now_ms() + retry_ms;
}

/* The loop ended with the reason in C.error: redial after the backoff. */
static void lost(void)
{
	end_loop("reconnecting", C.backoff);
	C.backoff = C.backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
						   : C.backoff * 2;
}

static void dial(void)
{
	struct hw_app_loop loop;
	int rc;

	rc = hw_app_dial(C.app, C.server, HW_VPN_PORT, &loop, DIAL_MS);
	if (rc == -EPIPE) {
		set_error("the visor closed the app channel");
		hw_vpn_stop = 1;
		return;
	}
	if (rc) {
		char why[300];

		snprintf(why, sizeof(why), "%s", rc == -ECONNREFUSED &&
			 *hw_app_last_error(C.app) ? hw_app_last_error(C.app)
			 : strerror(-rc));
		set_error("cannot reach the server: %s", why);
		lost();
		return;
	}
	fcntl(loop.fd, F_SETFL, fcntl(loop.fd, F_GETFL) | O_NONBLOCK);
	C.fd = loop.fd;
	C.assigned = 0;
	set_state(C.routes_set ? "reconnecting" : "connecting");
}

static unsigned loop_allowed(void *ud)
{
	(void)ud;
	return C.assigned ? HW_VPN_RUNNING : HW_VPN_FIRST_FROM_SERVER;
}

/* What on_frame returns to end the loop. */
enum { END_REFUSED = 1, END_CLOSED, END_FAILED };

static int on_frame(const struct hw_vpn_frame *f, void *ud)
{
	(void)ud;
	switch (f->type) {
	case HW_VPN_PACKET:
		C.bytes_in += f->len;
		C.packets_in++;
		if (write(C.tun, f->body, f->len) < 0)
			C.dropped++;
		return 0;
	case HW_VPN_ASSIGN:
		if (apply_assign(&f->assign))
			return END_FAILED;
		C.assigned = 1;
		C.backoff = BACKOFF_MIN_MS;
		C.error[0] = '\0';
		set_state("connected");
		if (!C.routes_set)
			setup_routes();
		return 0;
	case HW_VPN_REFUSE:
		set_error("the server refused this visor: %s", f->reason);
		return END_REFUSED;
	default: /* CLOSE */
		set_error("the server closed the loop: %s",
			  f->reason[0] ? f->reason : "no reason given");
		return END_CLOSED;
	}
}

static void serve_loop(void)
{
	char why[300];
	int rc = hw_vpn_read_frames(C.fd, &C.in, loop_allowed, on_frame,
				    NULL, why, sizeof(why));

	if (rc == 0)
		return;
	if (rc == END_REFUSED) {
		end_loop("refused", REFUSED_RETRY_MS);
	} else if (rc == END_CLOSED || rc == END_FAILED) {
		lost();
	} else if (rc == -EPROTO) {
		uint8_t fr[HW_VPN_HDR + HW_VPN_REASON_MAX];
		size_t n;
		char reason[320];

		snprintf(reason, sizeof(reason), "protocol error: %s", why);
		n = hw_vpn_build_reason(fr, HW_VPN_CLOSE, reason);
		send(C.fd, fr, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		set_error("the server broke the protocol: %s", why);
		lost();
	} else {
		const char *le = hw_app_loop_error(C.fd);

		if (le || rc != -EPIPE)
			set_error("the loop to the server failed: %s",
				  le ? le : strerror(-rc));
		else
			set_error("the server ended the loop");
		lost();
	}
}

/* ---- TUN ---- */

static uint8_t *tun_place(void *ud)
{
	uint8_t *p = hw_vpn_buf_room(&C.out, HW_VPN_FRAME_MAX);

	(void)ud;
	return p ? p + HW_VPN_HDR : NULL;
}

static void tun_done(void *ud, uint8_t *pkt, size_t n)
{
	(void)ud;
	/* What the server's parser would refuse (closing the loop) stays
	 * here; the kernel gives none of it. */
	if (n < 20 || (pkt[0] >> 4 == 4 ? (size_t)(pkt[2] << 8 | pkt[3]) != n
			: pkt[0] >> 4 != 6 || n < 40 ||
			  (size_t)(pkt[4] << 8 | pkt[5]) + 40 != n)) {
		C.dropped++;
		return;
	}
	hw_vpn_put_hdr(pkt - HW_VPN_HDR, HW_VPN_PACKET, (uint16_t)n);
	C.out.len += HW_VPN_HDR + n;
	C.bytes_out += n;
	C.packets_out++;
}

/* Packets while there is no loop are dropped (and counted). */
static void tun_drain(void)
{
	for (int i = 0; i < HW_VPN_BATCH; i++) {
		if (read(C.tun, C.in.p, HW_VPN_MTU) < 0)
			break;
		C.dropped++;
	}
}

/* ---- status.json ---- */

static void write_status(void)
{
	json_t *o = json_object(), *rs = json_array(), *hs = json_array();
	char s[160], a4[INET_ADDRSTRLEN] = "", a6[INET6_ADDRSTRLEN] = "";
	char sv[INET_ADDRSTRLEN] = "";
	int rc;

	for (int i = 0; i < C.nroutes && C.routes_set; i++) {
		hw_vpn_route_str(&C.routes[i], s, sizeof(s));
		json_array_append_new(rs, json_string(s));
	}
	for (int i = 0; i < C.nhosts; i++) {
		hw_vpn_route_str(&C.hosts[i], s, sizeof(s));
		json_array_append_new(hs, json_string(s));
	}
	if (C.cur.mtu) {
		inet_ntop(AF_INET, C.cur.addr4, a4, sizeof(a4));
		inet_ntop(AF_INET, C.cur.server4, sv, sizeof(sv));
		if (C.cur.prefix6)
			inet_ntop(AF_INET6, C.cur.addr6, a6, sizeof(a6));
	}
	json_object_set_new(o, "version", json_integer(1));
	json_object_set_new(o, "role", json_string("client"));
	json_object_set_new(o, "state", json_string(C.state));
	json_object_set_new(o, "since", json_integer(C.since));
	json_object_set_new(o, "server", json_string(C.server));
	json_object_set_new(o, "tun", json_string(C.tun_name));
	json_object_set_new(o, "address", a4[0] ? json_string(a4)
						: json_null());
	json_object_set_new(o, "prefix", C.cur.mtu ? json_integer(
						C.cur.prefix4) : json_null());
	json_object_set_new(o, "address6", a6[0] ? json_string(a6)
						 : json_null());
	json_object_set_new(o, "server_address", sv[0] ? json_string(sv)
						       : json_null());
	json_object_set_new(o, "mtu", C.cur.mtu ? json_integer(C.cur.mtu)
						: json_null());
	json_object_set_new(o, "routes", rs);
	json_object_set_new(o, "underlay_routes", hs);
	json_object_set_new(o, "bytes_in", json_integer((json_int_t)
							C.bytes_in));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)
							 C.bytes_out));
	json_object_set_new(o, "packets_in", json_integer((json_int_t)
							  C.packets_in));
	json_object_set_new(o, "packets_out", json_integer((json_int_t)
							   C.packets_out));
	json_object_set_new(o, "packets_dropped",
			    json_integer((json_int_t)C.dropped));
	json_object_set_new(o, "error", C.error[0] ? json_string(C.error)
						   : json_null());
	json_object_set_new(o, "updated_ms", json_integer(hw_vpn_wall_ms()));
	if ((rc = hw_vpn_json_save("status.json", o, 0)))
		fprintf(stderr, LOG ": status.json: %s\n", strerror(-rc));
	json_decref(o);
}

/* ---- start and stop ---- */

static int parse_routes(const char *list)
{
	char item[64], err[160];
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");
		struct hw_vpn_route *r;

		if (n == 0 || n >= sizeof(item)) {
			fprintf(stderr, LOG ": --routes '%s': %s\n", list,
				n ? "an entry is too long"
				  : "an empty entry");
			return -1;
		}
		if (C.nwant == ROUTES_MAX) {
			fprintf(stderr, LOG ": --routes: more than %d "
				"networks\n", ROUTES_MAX);
			return -1;
		}
		memcpy(item, p, n);
		item[n] = '\0';
		r = &C.want[C.nwant++];
		memset(r, 0, sizeof(*r));
		if (hw_vpn_route_parse(item, &r->family, r->dst, &r->prefix,
				       err, sizeof(err))) {
			fprintf(stderr, LOG ": --routes: %s\n", err);
			return -1;
		}
		p += n;
		if (*p == ',' && !*++p) {
			fprintf(stderr, LOG ": --routes '%s': an empty "
				"entry\n", list);
			return -1;
		}
	}
	return 0;
}

static int parse_args(int argc, char **argv, int *cleanup)
{
	const char *routes = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			exit(0);
		}
		if (!strcmp(a, "--cleanup")) {
			*cleanup = 1;
			continue;
		}
		if (!v || (strcmp(a, "--server") && strcmp(a, "--routes") &&
			   strcmp(a, "--tun"))) {
			fprintf(stderr, LOG ": unknown argument '%s' or "
				"missing value (see --help)\n", a);
			return -1;
		}
		i++;
		if (!strcmp(a, "--server"))
			C.server = v;
		else if (!strcmp(a, "--routes"))
			routes = v;
		else
			C.tun_name = v;
	}
	if (*cleanup)
		return 0;
	if (!C.server) {
		fprintf(stderr, LOG ": --server PK is required (see "
			"--help)\n");
		return -1;
	}
	if (strlen(C.server) != HW_APP_PK_HEX ||
	    strspn(C.server, "0123456789abcdef") != HW_APP_PK_HEX) {
		fprintf(stderr, LOG ": --server '%s' is not a public key (64 "
			"lowercase hex digits)\n", C.server);
		return -1;
	}
	if (!hw_vpn_tun_name_ok(C.tun_name)) {
		fprintf(stderr, LOG ": --tun '%s' is not 1..15 of "
			"[A-Za-z0-9_-]\n", C.tun_name);
		return -1;
	}
	if (routes && parse_routes(routes))
		return -1;
	C.full = !routes;
	return 0;
}

/* Undoes what an earlier run left in undo.json. */
static int replay(void)
{
	char err[400];
	int done;

	if (hw_vpn_undo_replay(UNDO_FILE, C.nl, &done, err, sizeof(err))) {
		fprintf(stderr, LOG ": %s (remove those routes by hand, then "
			"the file)\n", err);
		return -1;
	}
	if (done)
		fprintf(stderr, LOG ": removed %d route(s) an earlier run "
			"left (%s)\n", done, UNDO_FILE);
	return 0;
}

static int setup_tun(void)
{
	int rc;

	if ((C.tun = hw_vpn_tun_open(C.tun_name)) < 0) {
		fprintf(stderr, LOG ": cannot open TUN device %s: %s\n",
			C.tun_name, C.tun == -EBUSY
			? "a device of that name is in use (another client? "
			  "--tun names another)" : strerror(-C.tun));
		return -1;
	}
	C.ifx = (int)if_nametoindex(C.tun_name);
	if (!C.ifx || (rc = hw_vpn_nl_link(C.nl, C.ifx, 1, HW_VPN_MTU))) {
		fprintf(stderr, LOG ": %s: cannot set it up: %s\n",
			C.tun_name, C.ifx ? strerror(-rc) : "no such device");
		return -1;
	}
	return 0;
}

static void poll_once(void)
{
	struct pollfd pfd[2];
	long long now = hw_vpn_now_ms();
	int np = 1, wait = 250;

	/* The TUN is read while the loop has room (packets wait in the
	 * kernel's queue otherwise), or to drop what comes without one. */
	pfd[0] = (struct pollfd){.fd = C.tun};
	if (!C.assigned || C.out.cap - (C.out.len - C.out.off) >=
				   HW_VPN_FRAME_MAX)
		pfd[0].events = POLLIN;
	if (C.fd >= 0) {
		pfd[np++] = (struct pollfd){
			.fd = C.fd, .events = (short)(POLLIN |
				(C.out.len > C.out.off ? POLLOUT : 0))};
	} else if (C.next_dial - now < wait) {
		wait = C.next_dial > now ? (int)(C.next_dial - now) : 0;
	}
	if (poll(pfd, (nfds_t)np, wait) < 0)
		return;
	if (pfd[0].revents & POLLIN) {
		if (C.assigned)
			hw_vpn_tun_batch(C.tun, tun_place, tun_done, NULL);
		else
			tun_drain();
	}
	if (np > 1 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
		serve_loop();
	if (C.fd >= 0 && C.out.len > C.out.off) {
		int rc = hw_vpn_buf_flush(&C.out, C.fd);

		if (rc < 0) {
			set_error("writing to the loop: %s", strerror(-rc));
			lost();
		}
	}
}

static void stop_all(void)
{
	int n;

	if (C.fd >= 0) {
		uint8_t fr[HW_VPN_HDR + HW_VPN_REASON_MAX];
		size_t len = hw_vpn_build_reason(fr, HW_VPN_CLOSE,
						 "the client is stopping");

		send(C.fd, fr, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		hw_app_loop_close(C.fd);
		C.fd = -1;
	}
	if (C.undo && C.nl) {
		n = hw_vpn_undo_all(C.undo, C.nl);
		if (n)
			fprintf(stderr, LOG ": removed the %d route(s) it "
				"added\n", n);
	}
	C.routes_set = 0;
	C.nroutes = C.nhosts = 0;
}

int main(int argc, char **argv)
{
	struct hw_app_config cfg = {.name = "vpn-client", .version = "0.1.0"};
	const char *api = getenv("HOPWIRE_VISOR_API");
	long long last_status = 0;
	int cleanup = 0, code = 1, rc;
	char err[768];

	C.tun_name = "hwvpnc0";
	C.tun = C.fd = -1;
	C.backoff = BACKOFF_MIN_MS;
	set_state("connecting");
	if (parse_args(argc, argv, &cleanup))
		return 2;
	if (!hw_vpn_has_net_admin()) {
		fprintf(stderr, LOG ": needs CAP_NET_ADMIN (run by a visor "
			"whose config grants it: docs/vpn.md)\n");
		return 1;
	}
	if ((rc = hw_vpn_nl_open(&C.nl))) {
		fprintf(stderr, LOG ": netlink: %s\n", strerror(-rc));
		return 1;
	}
	if (replay()) {
		hw_vpn_nl_close(C.nl);
		return 1;
	}
	if (cleanup) {
		/* The status of the run that ended says "connected" still. */
		set_state("stopped");
		snprintf(C.error, sizeof(C.error), "the client ended without "
			 "stopping (killed or crashed); --cleanup undid what "
			 "it left");
		C.server = "";
		write_status();
		hw_vpn_nl_close(C.nl);
		return 0;
	}
	if (!api || !*api) {
		if (C.full) {
			fprintf(stderr, LOG ": HOPWIRE_VISOR_API is unset, so "
				"the visor's own addresses are unknown and "
				"routing everything through the tunnel would "
				"carry the tunnel itself: start it from a "
				"visor, or name networks with --routes\n");
			hw_vpn_nl_close(C.nl);
			return 2;
		}
		fprintf(stderr, LOG ": HOPWIRE_VISOR_API is unset: no host "
			"routes keep the visor's connections out of the "
			"--routes networks\n");
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	hw_vpn_catch_stop();
	if (hw_vpn_undo_new(&C.undo, UNDO_FILE) ||
	    hw_vpn_buf_init(&C.in, HW_VPN_IN_CAP) ||
	    hw_vpn_buf_init(&C.out, HW_VPN_OUT_CAP)) {
		fprintf(stderr, LOG ": out of memory\n");
		goto out;
	}
	if (setup_tun())
		goto out;
	if (api && *api && (rc = hw_vpn_underlay_start(&C.underlay, api))) {
		fprintf(stderr, LOG ": cannot start a thread: %s\n",
			strerror(-rc));
		goto out;
	}
	if (hw_app_setup(&C.app, &cfg, err, sizeof(err))) {
		fprintf(stderr, LOG ": %s\n", err);
		goto out;
	}
	fprintf(stderr, LOG ": %s, server %s, routes: %s\n", C.tun_name,
		C.server, C.full ? "everything" : "the --routes networks");
	while (!hw_vpn_stop) {
		if (C.fd < 0 && hw_vpn_now_ms() >= C.next_dial)
			dial();
		if (C.assigned && !C.routes_set &&
		    hw_vpn_now_ms() >= C.next_dial && setup_routes())
			C.next_dial = hw_vpn_now_ms() + 1000;
		follow_underlay();
		if (hw_vpn_now_ms() - last_status >= 1000) {
			write_status();
			last_status = hw_vpn_now_ms();
		}
		if (!hw_vpn_stop)
			poll_once();
	}
	code = 0;
	fprintf(stderr, LOG ": stopping\n");
out:
	stop_all();
	set_state("stopped");
	if (C.undo)
		write_status();
	hw_vpn_underlay_stop(C.underlay);
	if (C.tun >= 0)
		close(C.tun);
	hw_vpn_buf_free(&C.in);
	hw_vpn_buf_free(&C.out);
	hw_vpn_undo_free(C.undo);
	hw_vpn_nl_close(C.nl);
	hw_app_close(C.app);
	curl_global_cleanup();
	return code;
}
