/* The request line of the stream socket (docs/api.md "The stream
 * socket"): the first line a client sends, parsed without the loop so a
 * fuzz target can drive it. */
#ifndef HW_VISOR_STREAM_REQ_H
#define HW_VISOR_STREAM_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/identity.h"
#include "router/setup_msg.h"

/* The longest request line, its newline not counted, is one less. */
#define HW_STREAM_REQ_MAX 1024
/* The most a throughput test sends (1 TiB). */
#define HW_STREAM_TEST_MAX_BYTES (1ll << 40)

enum hw_stream_op { HW_STREAM_NONE, HW_STREAM_LISTEN, HW_STREAM_DIAL };

struct hw_stream_req {
	enum hw_stream_op op;
	uint16_t port; /* 1..65535; set as soon as it is valid */
	int discard;   /* listen: a throughput test that discards */
	uint8_t pk[HW_PK_LEN]; /* dial: the peer */
	uint64_t send; /* dial: a throughput test's bytes, 0 for none */
	unsigned nvia; /* dial: the hops between, for source routing */
	uint8_t via[HW_SETUP_HOPS_MAX - 1][HW_PK_LEN];
	/* Set with an error in a field the visor checks after its own
	 * checks of the request (listen: "discard" after whether the port
	 * is taken; dial: "via" after whether it can dial at all), so that
	 * it reports the first of them as it always has. */
	int late;
};

/* Parses len bytes of line (no newline) into *r (zeroed first). Returns
 * 0, or -EINVAL with what is wrong in err (the "error" a client is sent);
 * r->op, r->port and r->late tell how far the parse got. */
int hw_stream_req_parse(const char *line, size_t len, struct hw_stream_req *r,
			char *err, size_t errlen);

#endif
