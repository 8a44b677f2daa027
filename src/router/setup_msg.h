/* Setup messages (docs/routing.md "Setup messages"): what a visor and a
 * setup node say to each other to reserve route IDs, install and remove
 * rules, and build a route. Each message is the payload of one SETUP
 * packet (route_id 0):
 *
 *   msg u8 | req u32 BE | body
 *
 * Pure functions over byte buffers, no I/O: this is the decoder every
 * setup payload from a peer goes through, so every length, count and
 * value is checked exactly and anything else is HW_EPROTO. */
#ifndef HW_ROUTER_SETUP_MSG_H
#define HW_ROUTER_SETUP_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/identity.h"
#include "router/router.h"
#include "transport/manager.h"

/* The routing packet type that carries setup messages (HW_PKT_SETUP in
 * packet.h, checked equal in setup_msg.c). */
#define HW_SETUP_PKT_TYPE 7

#define HW_SETUP_HDR 5                /* msg u8 | req u32 */
#define HW_SETUP_TEXT_MAX 200         /* RESULT and BUILT text, bytes */
#define HW_SETUP_RESERVE_MAX 16       /* IDs per RESERVE */
#define HW_SETUP_RULES_MAX 16         /* rules per ADD_RULES */
#define HW_SETUP_DEL_MAX 64           /* IDs per DEL_RULES */
#define HW_SETUP_HOPS_MAX 16          /* hops per path in BUILD */
#define HW_SETUP_DESC_LEN (2 * HW_PK_LEN + 4)                /* 68 */
#define HW_SETUP_HOP_LEN (HW_TP_ID_LEN + 2 * HW_PK_LEN)      /* 80 */
/* The largest body is a BUILD with two 16-hop paths. */
#define HW_SETUP_BUILD_MAX                                                  \
	(HW_SETUP_DESC_LEN + 4 + 2 * (1 + HW_SETUP_HOPS_MAX * HW_SETUP_HOP_LEN))
/* The largest encoded message (2639 bytes); fits one packet's payload. */
#define HW_SETUP_MSG_MAX (HW_SETUP_HDR + HW_SETUP_BUILD_MAX)

enum hw_setup_type {
	HW_SETUP_RESERVE = 1,   /* setup -> visor */
	HW_SETUP_RESERVED = 2,  /* visor -> setup, answers RESERVE */
	HW_SETUP_ADD_RULES = 3, /* setup -> visor, answered by RESULT */
	HW_SETUP_RESULT = 4,    /* either way */
	HW_SETUP_DEL_RULES = 5, /* setup -> visor, answered by RESULT */
	HW_SETUP_BUILD = 6,     /* visor -> setup, answered by BUILT */
	HW_SETUP_BUILT = 7,     /* setup -> visor */
	HW_SETUP_INCOMING = 8,  /* setup -> destination, answered by RESULT */
	HW_SETUP_TYPE_MAX = HW_SETUP_INCOMING,
};

enum hw_setup_status {
	HW_SETUP_OK = 0,
	HW_SETUP_REFUSED = 1,  /* untrusted setup node, no listener, bad request */
	HW_SETUP_NO_TP = 2,    /* no such transport */
	HW_SETUP_LIMIT = 3,    /* a table or queue is full */
	HW_SETUP_INTERNAL = 4,
	HW_SETUP_STATUS_MAX = HW_SETUP_INTERNAL,
};

/* One hop of a path: the transport and the direction it is walked in. */
struct hw_setup_hop {
	uint8_t tp_id[HW_TP_ID_LEN];
	uint8_t from[HW_PK_LEN], to[HW_PK_LEN];
};

/* A decoded message. Only the body of `type` is meaningful. Text is
 * NUL-terminated, valid UTF-8 without control characters. */
struct hw_setup_msg {
	uint8_t type;
	uint32_t req;
	union {
		struct {
			uint8_t count; /* 1..16 */
		} reserve;
		struct {
			uint8_t status;
			uint8_t count; /* 1..16 with HW_SETUP_OK, else 0 */
			uint32_t ids[HW_SETUP_RESERVE_MAX];
		} reserved;
		struct {
			uint8_t count; /* 1..16 */
			struct hw_rule rules[HW_SETUP_RULES_MAX];
		} add_rules;
		struct {
			uint8_t status;
			char text[HW_SETUP_TEXT_MAX + 1];
		} result;
		struct {
			uint8_t count; /* 1..64 */
			uint32_t ids[HW_SETUP_DEL_MAX];
		} del_rules;
		struct {
			struct hw_route_desc desc;
			uint32_t keepalive_ms;
			uint8_t fwd_n, rev_n; /* 1..16 each */
			struct hw_setup_hop fwd[HW_SETUP_HOPS_MAX];
			struct hw_setup_hop rev[HW_SETUP_HOPS_MAX];
		} build;
		struct {
			uint8_t status;
			char text[HW_SETUP_TEXT_MAX + 1];
			/* Non-zero with HW_SETUP_OK, zero otherwise. */
			uint32_t fwd_send_id; /* the source's FORWARD rule */
			uint32_t rev_recv_id; /* the source's CONSUME rule */
		} built;
		struct {
			struct hw_route_desc desc;
			uint32_t fwd_recv_id; /* the destination's CONSUME rule */
			uint32_t rev_send_id; /* the destination's FORWARD rule */
		} incoming;
	} u;
};

/* Encodes m into out (cap bytes; HW_SETUP_MSG_MAX always suffices) and
 * sets *len. The message is held to the decoder's rules first, so what
 * encodes also decodes: returns 0, -EINVAL for a message the decoder
 * would refuse (unknown type or status, count out of range, text too long
 * or not clean UTF-8, a rule hw_rule_decode refuses, a zero or repeated
 * ID, ...), -ENOBUFS when cap is too small. */
int hw_setup_msg_encode(const struct hw_setup_msg *m, uint8_t *out,
			size_t cap, size_t *len);

/* Decodes and checks one message of exactly len bytes into m. Returns 0
 * or HW_EPROTO (truncated, trailing bytes, unknown type or status, a count
 * out of range, text over 200 bytes, not UTF-8 or with control
 * characters, a rule hw_rule_decode refuses, a zero or repeated ID, a
 * keepalive outside 1000..3600000 ms, a zero port, IDs that do not match
 * the status). m is zeroed first; on HW_EPROTO, m->type and m->req hold
 * the header when len >= HW_SETUP_HDR, so a request can still be answered
 * with RESULT "bad request". */
int hw_setup_msg_decode(const uint8_t *in, size_t len,
			struct hw_setup_msg *m);

/* Copies text into a RESULT or BUILT text field as the decoder accepts
 * it: cut to HW_SETUP_TEXT_MAX bytes, control characters and bytes
 * outside ASCII replaced by '?'. */
void hw_setup_text_set(char out[HW_SETUP_TEXT_MAX + 1], const char *text);

/* Encodes m and sends it on tp as a SETUP packet (route 0). Returns 0,
 * the encoder's error, or hw_tp_send's (-ENOTCONN, -ENOBUFS). */
int hw_setup_msg_send(struct hw_tp *tp, const struct hw_setup_msg *m);

/* Sends RESULT (req, status, text) on tp; as hw_setup_msg_send. */
int hw_setup_result_send(struct hw_tp *tp, uint32_t req, uint8_t status,
			 const char *text);

/* "reserve", "add_rules", ... or "unknown". */
const char *hw_setup_msg_name(uint8_t type);

/* "ok", "refused", "no such transport", "limit", "internal" or
 * "unknown". */
const char *hw_setup_status_name(uint8_t status);

/* Checks a path of n hops from `from` to `to` as a setup node must before
 * reserving anything: n is 1..16, no transport ID is all zero, the first
 * hop starts at from, each hop starts where the previous one ended, the
 * last ends at to, and no visor is visited twice. Returns 0, or -EINVAL
 * with a message naming the hop in err (errlen bytes, may be 0), e.g.
 * "hop 2: starts at X, not where hop 1 ended (Y)" with full hex keys.
 * Messages are at most 180 bytes, so "reverse path: " + message fits a
 * BUILT text. */
int hw_setup_path_check(const struct hw_setup_hop *hops, unsigned n,
			const uint8_t from[HW_PK_LEN],
			const uint8_t to[HW_PK_LEN], char *err, size_t errlen);

#endif
