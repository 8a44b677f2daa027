/* Relay protocol v1 encoding (docs/relay.md): units, control frames and
 * the signed OPEN request. Pure functions over byte buffers, no I/O: this
 * is the decoder every byte from a relay peer goes through.
 *
 * A session's byte stream after the handshake is a sequence of units and
 * a SEALED unit's plaintext a sequence of control frames, both in the
 * same 7-byte header format:
 *
 *   type u8 | stream u32 BE | len u16 BE | body (len bytes) */
#ifndef HW_RELAY_FRAME_H
#define HW_RELAY_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/cipher.h"
#include "crypto/identity.h"

#define HW_RELAY_VERSION 1
#define HW_RELAY_HDR 7
#define HW_RELAY_BODY_MAX 65535
/* A SEALED body is one Noise transport message: a tag and at least one
 * plaintext byte. */
#define HW_RELAY_SEALED_MIN (1 + HW_CIPHER_TAGLEN)
/* Plaintext bytes of control frames one SEALED unit carries at most. */
#define HW_RELAY_CTRL_MAX (HW_RELAY_BODY_MAX - HW_CIPHER_TAGLEN)
/* Initial credit of every stream direction. */
#define HW_RELAY_WINDOW 2097152u /* 2 MiB: see docs/relay.md */
#define HW_RELAY_OPEN_LEN 184
#define HW_RELAY_OPEN_SIGNED_LEN 120 /* initiator .. nonce */
#define HW_RELAY_OPEN_CONTEXT "hopwire/1 relay open"
#define HW_RELAY_OPEN_CONTEXT_LEN 20
#define HW_RELAY_NONCE_LEN 16
#define HW_RELAY_TEXT_MAX 200 /* REFUSE and ERROR text */
#define HW_RELAY_PING_LEN 8
/* How far an OPEN's timestamp may be from the receiver's clock. */
#define HW_RELAY_OPEN_SKEW_MS 60000

enum hw_relay_type {
	HW_RELAY_SEALED = 0x00, /* unit: control frames, encrypted */
	HW_RELAY_DATA = 0x01,   /* unit: stream payload */
	HW_RELAY_OPEN = 0x10,
	HW_RELAY_ACCEPT = 0x11,
	HW_RELAY_REFUSE = 0x12,
	HW_RELAY_CREDIT = 0x13,
	HW_RELAY_CLOSE = 0x14,
	HW_RELAY_PING = 0x15,
	HW_RELAY_PONG = 0x16,
	HW_RELAY_ERROR = 0x17,
};

/* REFUSE reasons. */
enum hw_relay_refuse {
	HW_RELAY_REFUSE_NO_SESSION = 1,
	HW_RELAY_REFUSE_REFUSED = 2,
	HW_RELAY_REFUSE_STREAM_LIMIT = 3,
	HW_RELAY_REFUSE_BUFFER_LIMIT = 4,
	HW_RELAY_REFUSE_BAD_REQUEST = 5,
	HW_RELAY_REFUSE_TIMEOUT = 6,
	HW_RELAY_REFUSE_SHUTDOWN = 7,
	HW_RELAY_REFUSE_MAX = HW_RELAY_REFUSE_SHUTDOWN,
};

/* CLOSE reasons. */
enum hw_relay_close {
	HW_RELAY_CLOSE_NORMAL = 0,
	HW_RELAY_CLOSE_ERROR = 1,
	HW_RELAY_CLOSE_PEER_GONE = 2,
	HW_RELAY_CLOSE_MAX = HW_RELAY_CLOSE_PEER_GONE,
};

/* A decoded unit or control frame header; body points into the buffer it
 * was decoded from (NULL when only the header was read). */
struct hw_relay_frame {
	uint8_t type;
	uint32_t stream;
	uint16_t len;
	const uint8_t *body;
};

/* The signed request that opens a stream (the OPEN body). */
struct hw_relay_open {
	uint8_t initiator[HW_PK_LEN];
	uint8_t target[HW_PK_LEN];
	uint8_t relay[HW_PK_LEN];
	uint64_t ts_ms; /* unix time of the request, milliseconds */
	uint8_t nonce[HW_RELAY_NONCE_LEN];
	uint8_t sig[HW_SIG_LEN];
};

/* Writes a 7-byte header. */
void hw_relay_put_header(uint8_t out[HW_RELAY_HDR], uint8_t type,
			 uint32_t stream, uint16_t len);

/* Reads a 7-byte header into f (body set to NULL). */
void hw_relay_get_header(const uint8_t in[HW_RELAY_HDR],
			 struct hw_relay_frame *f);

/* Checks a unit header as it arrives on the byte stream: SEALED with
 * stream 0 and 17..65535 bytes, or DATA with a non-zero stream and
 * 1..65535 bytes. Returns 0 or HW_EPROTO (the session must be dropped:
 * the stream cannot be resynchronised). */
int hw_relay_check_unit(const struct hw_relay_frame *f);

/* Checks a control frame (header and body): a known control type, the
 * stream 0 or not as its type needs, and the body length and values its
 * type allows. Returns 0 or HW_EPROTO. */
int hw_relay_check_control(const struct hw_relay_frame *f);

/* Decodes and checks the control frame at buf[*off..len) (a SEALED
 * plaintext) and advances *off past it. Returns 1 with *f set (body
 * inside buf), 0 when *off == len, HW_EPROTO for a truncated frame or one
 * hw_relay_check_control refuses. */
int hw_relay_next_control(const uint8_t *buf, size_t len, size_t *off,
			  struct hw_relay_frame *f);

/* The value of a checked CREDIT frame. */
uint32_t hw_relay_credit_value(const struct hw_relay_frame *f);

/* "open", "data", ... or "unknown". */
const char *hw_relay_type_name(uint8_t type);

/* What a REFUSE reason means ("no session with the target", ...). */
const char *hw_relay_refuse_text(uint8_t reason);

/* Copies peer-supplied text (REFUSE, ERROR) into out (size cap >= 1) as
 * printable ASCII: other bytes become '?', so it is safe to log. */
void hw_relay_text_sanitize(const uint8_t *p, size_t n, char *out,
			    size_t cap);

/* Writes the 184-byte OPEN body. */
void hw_relay_open_encode(const struct hw_relay_open *o,
			  uint8_t out[HW_RELAY_OPEN_LEN]);

/* Decodes an OPEN body of len bytes. Returns 0, HW_EPROTO when len is not
 * 184. Does not verify. */
int hw_relay_open_decode(struct hw_relay_open *o, const uint8_t *in,
			 size_t len);

/* The signed message: HW_RELAY_OPEN_CONTEXT || the first 120 body bytes
 * (out: HW_RELAY_OPEN_CONTEXT_LEN + HW_RELAY_OPEN_SIGNED_LEN bytes). */
void hw_relay_open_signing_bytes(const struct hw_relay_open *o,
				 uint8_t *out);

/* Signs o with id (whose key must be o->initiator) into o->sig. */
void hw_relay_open_sign(struct hw_relay_open *o, const struct hw_identity *id);

/* 0 when o->sig is o->initiator's signature over the request, else
 * HW_EAUTH. */
int hw_relay_open_verify(const struct hw_relay_open *o);

/* The checks the target visor makes on a received OPEN besides the replay
 * cache: the signature, initiator != self, target == self, relay == the
 * relay of the session, |ts_ms - now_ms| <= HW_RELAY_OPEN_SKEW_MS.
 * Returns 0, HW_EAUTH for a bad signature, HW_EPROTO otherwise. */
int hw_relay_open_check(const struct hw_relay_open *o,
			const uint8_t self[HW_PK_LEN],
			const uint8_t relay[HW_PK_LEN], uint64_t now_ms);

#endif
