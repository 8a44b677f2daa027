/* What a connection does with the bytes a peer sends: the Noise stream
 * engine's read buffer and handshake (src/wire/nstream.c) and the record
 * framing with detached payloads (src/transport/conn.c). Two connections
 * run over an in-memory carrier; the fuzz bytes reach the accepting one.
 *
 *   byte 0: mode % 3: 0 the bytes arrive before the handshake; 1 after a
 *           real handshake; 2 after a real handshake and a genuine record
 *           that announces bytes 2..3 (u16 BE) of detached payload
 *   byte 1: the size of each delivery, minus one
 *   the rest: what the peer sends
 *
 * Whatever arrives, the connection closes or goes on, reads nothing
 * outside what it was given (ASan), calls closed exactly once and leaks
 * nothing. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "crypto/identity.h"
#include "transport/conn.h"
#include "util/err.h"

#define MAX_PENDING 64

struct side {
	struct hw_conn *c;
	struct side *peer;
	int ready, closed, carrier_closed;
};

/* A write waiting for the pump: delivered to the peer, then done. */
struct pending {
	struct side *to;
	uint8_t *buf;
	size_t len;
	void (*done)(void *arg, int status);
	void *arg;
};

static struct pending queue[MAX_PENDING];
static unsigned nqueue;
static volatile uint8_t sink;

static int carrier_write(void *carrier, const uint8_t *buf, size_t len,
			 void (*done)(void *arg, int status), void *arg)
{
	struct side *s = carrier;

	if (s->carrier_closed || nqueue == MAX_PENDING)
		return -ENOBUFS;
	queue[nqueue] = (struct pending){s->peer, malloc(len), len, done, arg};
	if (!queue[nqueue].buf)
		return -ENOMEM;
	memcpy(queue[nqueue].buf, buf, len);
	nqueue++;
	return 0;
}

/* Completes this side's writes with an error, as a carrier that closes
 * does; its peer sees its end. */
static void carrier_close(void *carrier, int reason)
{
	struct side *s = carrier;

	s->carrier_closed = 1;
	for (unsigned i = 0; i < nqueue; i++)
		if (queue[i].to == s->peer && queue[i].done) {
			queue[i].done(queue[i].arg, -ECANCELED);
			queue[i].done = NULL;
		}
	if (s->peer->c && !s->peer->carrier_closed)
		hw_conn_carrier_closed(s->peer->c, HW_ECLOSED);
}

static const struct hw_nstream_carrier_ops cops = {
	.write = carrier_write,
	.close = carrier_close,
};

/* Delivers queued writes until none is left. */
static void pump(void)
{
	while (nqueue > 0) {
		struct pending p = queue[0];
		memmove(queue, queue + 1, --nqueue * sizeof(queue[0]));
		if (p.done) {
			if (p.to->c && !p.to->carrier_closed)
				hw_conn_carrier_input(p.to->c, p.buf, p.len);
			p.done(p.arg, 0);
		}
		free(p.buf);
	}
}

static void on_ready(struct hw_conn *c, void *ud)
{
	((struct side *)ud)->ready = 1;
}

/* The first genuine record of mode 2 announces detached bytes. */
static size_t announce;

static void on_record(struct hw_conn *c, uint8_t *pt, size_t len, void *ud)
{
	for (size_t i = 0; i < len; i++)
		sink ^= pt[i];
	if (announce) {
		hw_conn_expect_detached(c, announce);
		announce = 0;
	}
}

static void on_detached(struct hw_conn *c, uint8_t *p, size_t n, void *ud)
{
	for (size_t i = 0; i < n; i++)
		sink ^= p[i];
}

static void on_closed(struct hw_conn *c, int reason, void *ud)
{
	struct side *s = ud;
	if (s->closed++)
		abort();
	s->c = NULL;
}

static const struct hw_conn_ops ops = {
	.ready = on_ready,
	.record = on_record,
	.detached = on_detached,
	.closed = on_closed,
};

static uv_loop_t loop;
static struct hw_identity id_a, id_b;
static uint8_t xa[32], xb[32];

static int setup_once(void)
{
	static int done;
	uint8_t seed[HW_SEED_LEN], pub[32];

	if (done)
		return 0;
	if (sodium_init() < 0 || uv_loop_init(&loop))
		return -1;
	memset(seed, 1, sizeof(seed));
	if (hw_identity_from_seed(&id_a, seed) ||
	    hw_identity_x25519(&id_a, xa, pub))
		return -1;
	memset(seed, 2, sizeof(seed));
	if (hw_identity_from_seed(&id_b, seed) ||
	    hw_identity_x25519(&id_b, xb, pub))
		return -1;
	done = 1;
	return 0;
}

static int open_side(struct side *s, const struct hw_identity *id,
		     const uint8_t *x, const uint8_t *remote_pk)
{
	struct hw_conn_params p = {
		.id = id,
		.x_priv = x,
		.prologue = "hopwire fuzz conn",
		.handshake_timeout_ms = 5000,
		.ops = &ops,
		.ud = s,
	};
	return hw_conn_open_carrier(&s->c, &loop, &p, &cops, s, remote_pk,
				    "fuzz");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct side a = {0}, b = {0};
	unsigned mode;
	size_t chunk, off = 2;
	uint8_t hdr[2] = {0};

	if (size < 2 || setup_once())
		return 0;
	mode = data[0] % 3;
	chunk = (size_t)data[1] + 1;
	a.peer = &b;
	b.peer = &a;
	if (open_side(&b, &id_b, xb, NULL))
		abort();
	if (mode > 0) {
		/* A real handshake first: a dials b. */
		if (open_side(&a, &id_a, xa, id_b.pk))
			abort();
		pump();
		if (!a.ready || !b.ready)
			abort();
	}
	if (mode == 2 && size >= 4) {
		announce = (size_t)data[2] << 8 | data[3];
		off = 4;
		if (hw_conn_send(a.c, hdr, sizeof(hdr), NULL, 0))
			abort();
		pump();
		announce = 0;
	}
	while (off < size && b.c) {
		size_t n = size - off < chunk ? size - off : chunk;
		hw_conn_carrier_input(b.c, data + off, n);
		off += n;
		pump();
	}
	if (a.c)
		hw_conn_close(a.c, 0, 0);
	if (b.c)
		hw_conn_close(b.c, 0, 0);
	pump();
	uv_run(&loop, UV_RUN_DEFAULT);
	if (nqueue || (mode > 0 && a.closed != 1) || b.closed != 1)
		abort();
	return 0;
}
