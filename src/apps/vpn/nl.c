/* rtnetlink through libmnl (nl.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nl.h"

struct hw_vpn_nl {
	struct mnl_socket *sock;
	unsigned portid;
	unsigned seq;
	char buf[32768]; /* at least MNL_SOCKET_BUFFER_SIZE (8 KiB) */
};

int hw_vpn_nl_open(struct hw_vpn_nl **out)
{
	struct hw_vpn_nl *nl = calloc(1, sizeof(*nl));
	int rc;

	*out = NULL;
	if (!nl)
		return -ENOMEM;
	if (!(nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC)) ||
	    mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		rc = -errno;
		if (nl->sock)
			mnl_socket_close(nl->sock);
		free(nl);
		return rc;
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
	nl->seq = (unsigned)time(NULL);
	*out = nl;
	return 0;
}

void hw_vpn_nl_close(struct hw_vpn_nl *nl)
{
	if (!nl)
		return;
	mnl_socket_close(nl->sock);
	free(nl);
}

/* Sends the message in nl->buf and runs cb on each answer until the
 * acknowledgement or the dump's end. Returns 0 or a negative errno. */
static int talk(struct hw_vpn_nl *nl, struct nlmsghdr *h, mnl_cb_t cb,
		void *data)
{
	unsigned seq = h->nlmsg_seq = ++nl->seq;
	ssize_t n;
	int rc;

	h->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(nl->sock, h, h->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		n = mnl_socket_recvfrom(nl->sock, nl->buf, sizeof(nl->buf));
		if (n < 0)
			return -errno;
		rc = mnl_cb_run(nl->buf, (size_t)n, seq, nl->portid, cb, data);
		if (rc < 0)
			return -errno;
		if (rc == MNL_CB_STOP)
			return 0;
	}
}

static int alen(int family)
{
	return family == 4 ? 4 : 16;
}

static int af(int family)
{
	return family == 4 ? AF_INET : AF_INET6;
}

int hw_vpn_nl_link(struct hw_vpn_nl *nl, int ifindex, int up, unsigned mtu)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(nl->buf);
	struct ifinfomsg *ifi;

	h->nlmsg_type = RTM_NEWLINK;
	h->nlmsg_flags = NLM_F_REQUEST;
	ifi = mnl_nlmsg_put_extra_header(h, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	ifi->ifi_change = IFF_UP;
	ifi->ifi_flags = up ? IFF_UP : 0;
	if (mtu)
		mnl_attr_put_u32(h, IFLA_MTU, mtu);
	return talk(nl, h, NULL, NULL);
}

int hw_vpn_nl_addr(struct hw_vpn_nl *nl, int add, int ifindex, int family,
		   const uint8_t *addr, int prefix)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(nl->buf);
	struct ifaddrmsg *ifa;

	h->nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
	h->nlmsg_flags = NLM_F_REQUEST | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
	ifa = mnl_nlmsg_put_extra_header(h, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)af(family);
	ifa->ifa_prefixlen = (uint8_t)prefix;
	ifa->ifa_flags = family == 6 ? IFA_F_NODAD : 0;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)ifindex;
	mnl_attr_put(h, IFA_LOCAL, (size_t)alen(family), addr);
	mnl_attr_put(h, IFA_ADDRESS, (size_t)alen(family), addr);
	return talk(nl, h, NULL, NULL);
}

int hw_vpn_nl_route(struct hw_vpn_nl *nl, int add,
		    const struct hw_vpn_route *r)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(nl->buf);
	struct rtmsg *rtm;

	h->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	h->nlmsg_flags = NLM_F_REQUEST | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
	rtm = mnl_nlmsg_put_extra_header(h, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)af(r->family);
	rtm->rtm_dst_len = (uint8_t)r->prefix;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = r->has_gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(h, RTA_DST, (size_t)alen(r->family), r->dst);
	if (r->has_gw)
		mnl_attr_put(h, RTA_GATEWAY, (size_t)alen(r->family), r->gw);
	if (r->oif)
		mnl_attr_put_u32(h, RTA_OIF, (uint32_t)r->oif);
	if (r->metric)
		mnl_attr_put_u32(h, RTA_PRIORITY, r->metric);
	if (r->advmss && add) {
		struct nlattr *mx = mnl_attr_nest_start(h, RTA_METRICS);

		mnl_attr_put_u32(h, RTAX_ADVMSS, r->advmss);
		mnl_attr_nest_end(h, mx);
	}
	return talk(nl, h, NULL, NULL);
}

struct got_route {
	struct hw_vpn_route *out;
	int family;
	int dump_default; /* keep the lowest-metric default route */
	int found;
};

static int route_attr(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int t = mnl_attr_get_type(a);

	if (mnl_attr_type_valid(a, RTA_MAX) > 0)
		tb[t] = a;
	return MNL_CB_OK;
}

static int on_route(const struct nlmsghdr *h, void *data)
{
	struct got_route *g = data;
	const struct nlattr *tb[RTA_MAX + 1] = {0};
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(h);
	struct hw_vpn_route r = {.family = g->family};
	size_t al = (size_t)alen(g->family);

	if (h->nlmsg_type != RTM_NEWROUTE ||
	    rtm->rtm_family != af(g->family))
		return MNL_CB_OK;
	mnl_attr_parse(h, sizeof(*rtm), route_attr, tb);
	if (g->dump_default &&
	    (rtm->rtm_dst_len != 0 || rtm->rtm_table != RT_TABLE_MAIN ||
	     rtm->rtm_type != RTN_UNICAST))
		return MNL_CB_OK;
	r.prefix = rtm->rtm_dst_len;
	r.local = rtm->rtm_type == RTN_LOCAL;
	if (tb[RTA_DST] && mnl_attr_get_payload_len(tb[RTA_DST]) == al)
		memcpy(r.dst, mnl_attr_get_payload(tb[RTA_DST]), al);
	if (tb[RTA_GATEWAY] &&
	    mnl_attr_get_payload_len(tb[RTA_GATEWAY]) == al) {
		memcpy(r.gw, mnl_attr_get_payload(tb[RTA_GATEWAY]), al);
		r.has_gw = 1;
	}
	if (tb[RTA_OIF])
		r.oif = (int)mnl_attr_get_u32(tb[RTA_OIF]);
	if (tb[RTA_PRIORITY])
		r.metric = mnl_attr_get_u32(tb[RTA_PRIORITY]);
	if (!r.oif)
		return MNL_CB_OK; /* multipath: not ours to copy */
	if (!g->found || (g->dump_default && r.metric < g->out->metric)) {
		*g->out = r;
		g->found = 1;
	}
	return MNL_CB_OK;
}

int hw_vpn_nl_route_get(struct hw_vpn_nl *nl, int family, const uint8_t *dst,
			struct hw_vpn_route *out)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(nl->buf);
	struct got_route g = {.out = out, .family = family};
	struct rtmsg *rtm;
	int rc;

	h->nlmsg_type = RTM_GETROUTE;
	h->nlmsg_flags = NLM_F_REQUEST;
	rtm = mnl_nlmsg_put_extra_header(h, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)af(family);
	rtm->rtm_dst_len = (uint8_t)(alen(family) * 8);
	mnl_attr_put(h, RTA_DST, (size_t)alen(family), dst);
	if ((rc = talk(nl, h, on_route, &g)))
		return rc;
	if (!g.found)
		return -ENETUNREACH;
	memcpy(out->dst, dst, (size_t)alen(family));
	out->prefix = alen(family) * 8;
	out->metric = 0;
	return 0;
}

int hw_vpn_nl_default(struct hw_vpn_nl *nl, int family,
		      struct hw_vpn_route *out)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(nl->buf);
	struct got_route g = {.out = out, .family = family,
			      .dump_default = 1};
	struct rtmsg *rtm;
	int rc;

	h->nlmsg_type = RTM_GETROUTE;
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	rtm = mnl_nlmsg_put_extra_header(h, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)af(family);
	if ((rc = talk(nl, h, on_route, &g)))
		return rc;
	return g.found ? 0 : -ENOENT;
}

void hw_vpn_route_str(const struct hw_vpn_route *r, char *buf, size_t len)
{
	char d[INET6_ADDRSTRLEN], gw[INET6_ADDRSTRLEN + 5] = "";
	char dev[IF_NAMESIZE + 5] = "";
	char ifn[IF_NAMESIZE];

	inet_ntop(af(r->family), r->dst, d, sizeof(d));
	if (r->has_gw) {
		memcpy(gw, " via ", 6);
		inet_ntop(af(r->family), r->gw, gw + 5, INET6_ADDRSTRLEN);
	}
	if (r->oif)
		snprintf(dev, sizeof(dev), " dev %s",
			 if_indextoname((unsigned)r->oif, ifn)
				 ? ifn : "?");
	snprintf(buf, len, "%s/%d%s%s", d, r->prefix, gw, dev);
}
