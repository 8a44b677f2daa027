/* The tcp transport type: a Noise XK stream on a TCP connection of its
 * own, dialed at HOST:PORT or accepted on the manager's listener. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/type.h"
#include "util/addr.h"
#include "util/log.h"

#define LOG "transport"

extern const struct hw_tp_type hw_tp_type_tcp;

struct tcp_state {
	struct hw_tp_manager *m;
	uv_tcp_t listener;
	char listen_addr[80];
	uint64_t last_refusal_log_ms;
};

static struct tcp_state *state_of(struct hw_tp_manager *m)
{
	return *hw_tp_manager_type_slot(m, &hw_tp_type_tcp);
}

/* Accepts and closes at once, so the backlog drains while the manager is
 * at its limit of unfinished handshakes. */
static void refuse(struct tcp_state *st, uv_stream_t *server)
{
	uv_loop_t *loop = hw_tp_manager_params_of(st->m)->loop;
	uv_tcp_t *t = malloc(sizeof(*t));
	struct hw_tp_manager_stats ms;

	if (t && uv_tcp_init(loop, t) == 0) {
		uv_accept(server, (uv_stream_t *)t);
		uv_close((uv_handle_t *)t, (uv_close_cb)free);
	} else {
		free(t);
	}
	if (uv_now(loop) - st->last_refusal_log_ms > 10000) {
		st->last_refusal_log_ms = uv_now(loop);
		hw_tp_manager_stats(st->m, &ms);
		hw_log(HW_LOG_WARN, LOG, "refusing connections: %u handshakes "
		       "unfinished (the limit)", ms.pending_handshakes);
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct tcp_state *st = server->data;
	struct hw_conn_params cp;
	struct hw_tp_link *l;

	if (status < 0 || hw_tp_manager_closing(st->m))
		return;
	if (!hw_tp_manager_inbound_room(st->m)) {
		refuse(st, server);
		return;
	}
	if (!(l = hw_tp_link_new(st->m, &hw_tp_type_tcp, NULL, 1)))
		return;
	hw_tp_link_conn_params(l, &cp);
	if (hw_conn_accept(&l->conn, server, &cp))
		hw_tp_link_discard(l);
}

static void listener_closed(uv_handle_t *h)
{
	struct tcp_state *st = h->data;
	struct hw_tp_manager *m = st->m;

	free(st);
	hw_tp_manager_let_go(m);
}

/* "ip:port" of a bound socket (IPv6 in brackets). */
static void sock_name(uv_tcp_t *t, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	char ip[INET6_ADDRSTRLEN];
	int len = sizeof(ss);

	uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len);
	if (ss.ss_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%d", ip,
			 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	} else {
		uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%d", ip,
			 ntohs(((struct sockaddr_in *)&ss)->sin_port));
	}
}

static int tcp_start(struct hw_tp_manager *m, char *err, size_t errlen)
{
	const struct hw_tp_manager_params *p = hw_tp_manager_params_of(m);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char host[HW_HOST_MAX], service[8];
	struct tcp_state *st;
	uint16_t port;
	int rc;

	if (!p->tcp_listen || !p->tcp_listen[0])
		return 0;
	if (hw_addr_split(p->tcp_listen, host, &port)) {
		snprintf(err, errlen, "'%s' is not HOST:PORT", p->tcp_listen);
		return -EINVAL;
	}
	snprintf(service, sizeof(service), "%u", port);
	/* Before the loop runs: resolving here blocks nothing. */
	if ((rc = getaddrinfo(host[0] ? host : NULL, service, &hints, &res))) {
		snprintf(err, errlen, "listen %s: %s", p->tcp_listen,
			 gai_strerror(rc));
		return -EINVAL;
	}
	if (!(st = calloc(1, sizeof(*st)))) {
		freeaddrinfo(res);
		return -ENOMEM;
	}
	st->m = m;
	uv_tcp_init(p->loop, &st->listener);
	st->listener.data = st;
	hw_tp_manager_hold(m);
	*hw_tp_manager_type_slot(m, &hw_tp_type_tcp) = st;
	rc = uv_tcp_bind(&st->listener, res->ai_addr, 0);
	freeaddrinfo(res);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&st->listener, 128,
			       on_connection);
	if (rc) {
		snprintf(err, errlen, "listen %s: %s", p->tcp_listen,
			 uv_strerror(rc));
		return rc;
	}
	sock_name(&st->listener, st->listen_addr, sizeof(st->listen_addr));
	return 0;
}

static void tcp_stop(struct hw_tp_manager *m)
{
	struct tcp_state *st = state_of(m);

	if (!st)
		return;
	*hw_tp_manager_type_slot(m, &hw_tp_type_tcp) = NULL;
	uv_close((uv_handle_t *)&st->listener, listener_closed);
}

const char *hw_tp_manager_listen_addr(const struct hw_tp_manager *m)
{
	struct tcp_state *st = state_of((struct hw_tp_manager *)m);
	return st ? st->listen_addr : "";
}

static int tcp_check_addr(const struct hw_tp_manager *m,
			  const uint8_t pk[HW_PK_LEN], const char *addr,
			  char *err, size_t errlen)
{
	char host[HW_HOST_MAX];
	uint16_t port;

	if (hw_addr_split(addr, host, &port)) {
		snprintf(err, errlen, "'%s' is not HOST:PORT", addr);
		return -EINVAL;
	}
	return 0;
}

static int tcp_dial(struct hw_tp_link *l, const uint8_t pk[HW_PK_LEN],
		    const char *addr)
{
	struct hw_conn_params cp;
	char host[HW_HOST_MAX];
	uint16_t port;

	if (hw_addr_split(addr, host, &port))
		return -EINVAL;
	hw_tp_link_conn_params(l, &cp);
	return hw_conn_dial(&l->conn, hw_tp_manager_params_of(l->m)->loop, &cp,
			    pk, host, port);
}

static void tcp_close(struct hw_tp_link *l, int reason, int graceful)
{
	hw_conn_close(l->conn, reason, graceful);
}

const struct hw_tp_type hw_tp_type_tcp = {
	.name = "tcp",
	.prologue = HW_TP_TCP_PROLOGUE,
	.addr_form = "HOST:PORT",
	.start = tcp_start,
	.stop = tcp_stop,
	.check_addr = tcp_check_addr,
	.dial = tcp_dial,
	.send_fill = hw_tp_conn_send_fill,
	.congested = hw_tp_conn_congested,
	.pause = hw_tp_conn_pause,
	.close = tcp_close,
	.is_dialer = hw_tp_conn_is_dialer,
	.peer = hw_tp_conn_peer,
};
