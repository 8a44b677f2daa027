/* The relay transport type: a Noise XK stream carried by a stream through
 * a relay server (relay/client.h), for visors that cannot reach each other
 * directly. The relay sees only the connection's ciphertext. Addresses are
 * RELAY_PK@HOST:PORT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/client.h"
#include "relay/frame.h"
#include "transport/relay.h"
#include "transport/type.h"
#include "util/addr.h"
#include "util/err.h"

extern const struct hw_tp_type hw_tp_type_relay;

/* A relay transport's address: RELAY_PK@HOST:PORT. */
static int addr_split(const char *addr, uint8_t relay_pk[HW_PK_LEN],
		      const char **hostport)
{
	const char *at = strchr(addr, '@');
	char host[HW_HOST_MAX];
	uint16_t port;

	if (!at || hw_pk_parse(addr, (size_t)(at - addr), relay_pk) ||
	    hw_addr_split(at + 1, host, &port))
		return -EINVAL;
	*hostport = at + 1;
	return 0;
}

static struct hw_relay_stream *stream_of(const struct hw_tp_link *l)
{
	return l->priv;
}

/* ---- the carrier: the connection's records as stream writes ---- */

static int carrier_write(void *carrier, const uint8_t *buf, size_t len,
			 void (*done)(void *arg, int status), void *arg)
{
	struct hw_tp_link *l = carrier;
	if (!stream_of(l))
		return -ENOTCONN;
	return hw_relay_stream_write(stream_of(l), buf, len, done, arg);
}

static void detached_data(struct hw_relay_stream *s, const uint8_t *p,
			  size_t len, void *ud)
{
}

static void detached_closed(struct hw_relay_stream *s, int reason, void *ud)
{
}

/* A stream whose connection has let go of it: its last callbacks must not
 * reach the link, which may be freed by then. */
static const struct hw_relay_stream_ops detached_ops = {
	.data = detached_data,
	.closed = detached_closed,
};

/* Lets go of the link's stream and closes it. */
static void stream_release(struct hw_tp_link *l, int reason)
{
	struct hw_relay_stream *s = stream_of(l);

	if (!s)
		return;
	l->priv = NULL;
	hw_relay_stream_set_ops(s, &detached_ops, NULL);
	hw_relay_stream_close(s, reason);
}

static void carrier_close(void *carrier, int reason)
{
	stream_release(carrier, reason);
}

/* A paused connection holds the relay stream's credit back: the far end
 * then sends at most one window, which the connection keeps. */
_Static_assert(HW_RELAY_WINDOW <= HW_NSTREAM_HELD_MAX,
	       "a paused relay transport must be able to keep a window");

static void carrier_pause(void *carrier, int paused)
{
	struct hw_tp_link *l = carrier;

	if (stream_of(l))
		hw_relay_stream_hold(stream_of(l), paused);
}

static const struct hw_nstream_carrier_ops carrier_ops = {
	.write = carrier_write,
	.close = carrier_close,
	.pause = carrier_pause,
};

static int start_conn(struct hw_tp_link *l, const uint8_t *remote_pk)
{
	struct hw_conn_params cp;
	char peer[64], relay[HW_PK_HEXLEN + 1];

	hw_pk_format(hw_relay_stream_relay_pk(stream_of(l)), relay);
	snprintf(peer, sizeof(peer), "relay %.16s", relay);
	hw_tp_link_conn_params(l, &cp);
	return hw_conn_open_carrier(&l->conn,
				    hw_tp_manager_params_of(l->m)->loop, &cp,
				    &carrier_ops, l, remote_pk, peer);
}

/* ---- the stream's events ---- */

static void stream_opened(struct hw_relay_stream *s, int status,
			  const char *msg, void *ud)
{
	struct hw_tp_link *l = ud;
	char why[300];
	int rc = status;

	if (status == 0 && l->tp && !hw_tp_manager_closing(l->m) &&
	    (rc = start_conn(l, hw_tp_pk(l->tp))) == 0)
		return;
	if (status == 0) {
		/* Opened, but not wanted any more or the connection could
		 * not start: give the stream back. */
		stream_release(l, rc ? rc : -ECANCELED);
		hw_tp_link_failed(l, rc ? rc : -ECANCELED, NULL);
		return;
	}
	l->priv = NULL; /* freed when this returns */
	snprintf(why, sizeof(why), "relay: %s", msg ? msg : hw_strerror(rc));
	hw_tp_link_failed(l, rc, why);
}

static void stream_data(struct hw_relay_stream *s, const uint8_t *p,
			size_t len, void *ud)
{
	struct hw_tp_link *l = ud;
	if (l->conn)
		hw_conn_carrier_input(l->conn, p, len);
}

static void stream_closed(struct hw_relay_stream *s, int reason, void *ud)
{
	struct hw_tp_link *l = ud;

	l->priv = NULL;
	if (l->conn)
		hw_conn_carrier_closed(l->conn, reason ? reason : HW_ECLOSED);
	else
		hw_tp_link_failed(l, reason ? reason : HW_ECLOSED, NULL);
}

static const struct hw_relay_stream_ops stream_ops = {
	.opened = stream_opened,
	.data = stream_data,
	.closed = stream_closed,
};

/* ---- the type ---- */

static int relay_available(const struct hw_tp_manager *m)
{
	return hw_tp_manager_params_of(m)->relays != NULL;
}

static int relay_check_addr(const struct hw_tp_manager *m,
			    const uint8_t pk[HW_PK_LEN], const char *addr,
			    char *err, size_t errlen)
{
	uint8_t relay_pk[HW_PK_LEN];
	const char *hostport;

	if (addr_split(addr, relay_pk, &hostport)) {
		snprintf(err, errlen, "'%s' is not RELAY_PK@HOST:PORT", addr);
		return -EINVAL;
	}
	if (!memcmp(relay_pk, pk, HW_PK_LEN)) {
		snprintf(err, errlen, "the relay cannot be the peer itself");
		return -EINVAL;
	}
	return 0;
}

static int relay_dial(struct hw_tp_link *l, const uint8_t pk[HW_PK_LEN],
		      const char *addr)
{
	struct hw_relay_client *relays = hw_tp_manager_params_of(l->m)->relays;
	struct hw_relay_stream *s;
	uint8_t relay_pk[HW_PK_LEN];
	const char *hostport;
	int rc;

	if (!relays)
		return -ENOTSUP;
	if (addr_split(addr, relay_pk, &hostport))
		return -EINVAL;
	if ((rc = hw_relay_client_hold(relays, relay_pk, hostport)))
		return rc;
	if ((rc = hw_relay_stream_open(relays, relay_pk, pk, &stream_ops, l,
				       &s)))
		return rc;
	l->priv = s;
	return 0;
}

static void relay_close(struct hw_tp_link *l, int reason, int graceful)
{
	if (l->conn)
		hw_conn_close(l->conn, reason, graceful);
	else if (stream_of(l)) /* NULL: the stream's failure is on its way */
		hw_relay_stream_close(stream_of(l), reason);
}

static int relay_is_dialer(const struct hw_tp_link *l)
{
	/* A link without its connection yet is a stream we are opening. */
	return l->conn ? hw_tp_conn_is_dialer(l) : 1;
}

const struct hw_tp_type hw_tp_type_relay = {
	.name = "relay",
	.prologue = HW_TP_RELAY_PROLOGUE,
	.addr_form = "RELAY_PK@HOST:PORT",
	.available = relay_available,
	.check_addr = relay_check_addr,
	.dial = relay_dial,
	.send_fill = hw_tp_conn_send_fill,
	.congested = hw_tp_conn_congested,
	.pause = hw_tp_conn_pause,
	.close = relay_close,
	.is_dialer = relay_is_dialer,
	.peer = hw_tp_conn_peer,
};

/* ---- the relay client's side ---- */

int hw_tp_manager_accept_relay(struct hw_tp_manager *m,
			       const uint8_t relay_pk[HW_PK_LEN],
			       const uint8_t from_pk[HW_PK_LEN],
			       struct hw_relay_stream *s)
{
	struct hw_tp_link *l;
	int rc;

	if (hw_tp_manager_closing(m))
		return -ECANCELED;
	if (!hw_tp_manager_inbound_room(m))
		return -EBUSY;
	if (!(l = hw_tp_link_new(m, &hw_tp_type_relay, NULL, 1)))
		return -ENOMEM;
	l->priv = s;
	hw_relay_stream_set_ops(s, &stream_ops, l);
	if ((rc = start_conn(l, NULL))) {
		/* The stream stays the relay client's, which refuses it. */
		hw_relay_stream_set_ops(s, &detached_ops, NULL);
		hw_tp_link_discard(l);
		return rc;
	}
	return 0;
}

static int through_relay(const char *addr, void *arg)
{
	uint8_t via[HW_PK_LEN];
	const char *hostport;

	return !addr_split(addr, via, &hostport) &&
	       !memcmp(via, arg, HW_PK_LEN);
}

void hw_tp_manager_relay_up(struct hw_tp_manager *m,
			    const uint8_t relay_pk[HW_PK_LEN])
{
	/* The relay is back: no need to wait out the backoff. */
	hw_tp_manager_redial_now(m, &hw_tp_type_relay, through_relay,
				 (void *)relay_pk);
}
