/* What two hopwire-forward apps say at the start of each stream
 * (docs/forward.md "Protocol"): the client's open request and the
 * server's answer, after which the stream carries the TCP connection's
 * bytes. Strict and incremental: too few bytes give -EAGAIN. */
#ifndef HW_FWD_PROTO_H
#define HW_FWD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define HW_FWD_VERSION 1
#define HW_FWD_NAME_MAX 32
/* The longest request: version, port, length, name. */
#define HW_FWD_REQUEST_MAX (4 + HW_FWD_NAME_MAX)
/* The longest answer: version, status, port, length, message. */
#define HW_FWD_ANSWER_MAX (5 + 255)

enum hw_fwd_status {
	HW_FWD_OK = 0,
	HW_FWD_NOT_ALLOWED = 1, /* the client visor is not in the allow list */
	HW_FWD_NO_SERVICE = 2,  /* no service of that name */
	HW_FWD_REFUSED = 3,     /* the service refused the TCP connection */
	HW_FWD_TIMED_OUT = 4,   /* the service did not answer in time */
	HW_FWD_UNREACHABLE = 5, /* another connect failure */
	HW_FWD_MALFORMED = 6,   /* the request broke this protocol */
	HW_FWD_BUSY = 7,        /* too many connections at the server */
};

struct hw_fwd_request {
	uint16_t client_port; /* the TCP end client's port, for the record */
	char name[HW_FWD_NAME_MAX + 1];
};

struct hw_fwd_answer {
	uint8_t status;
	uint16_t service_port; /* the TCP end server's port (0 unless OK) */
	char msg[256];         /* why, for the client's log */
};

/* 1 when name is 1..32 characters of [a-z0-9._-], else 0. */
int hw_fwd_name_ok(const char *name);

/* Parses a request at the start of p[0..n). Returns 0 and *used, -EAGAIN
 * for more bytes, -EPROTO for another version, -EINVAL for a name that
 * breaks hw_fwd_name_ok. */
int hw_fwd_parse_request(const uint8_t *p, size_t n, struct hw_fwd_request *r,
			 size_t *used);
/* Writes r (a valid name) into out; its length, or 0 when r is not
 * valid. */
size_t hw_fwd_build_request(uint8_t out[HW_FWD_REQUEST_MAX],
			    const struct hw_fwd_request *r);

/* Parses an answer. Returns 0 and *used, -EAGAIN, -EPROTO (another
 * version, an unknown status, a NUL in the message). */
int hw_fwd_parse_answer(const uint8_t *p, size_t n, struct hw_fwd_answer *a,
			size_t *used);
/* Writes an answer (msg cut at 255 bytes) into out; its length. */
size_t hw_fwd_build_answer(uint8_t out[HW_FWD_ANSWER_MAX], uint8_t status,
			   uint16_t service_port, const char *msg);

/* "ok", "not allowed", "no such service", "refused", "timed out",
 * "unreachable", "malformed request", "busy", or "unknown status". */
const char *hw_fwd_status_str(uint8_t status);

#endif
