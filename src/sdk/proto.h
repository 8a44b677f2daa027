/* The app protocol codec (docs/app-protocol.md), shared by the visor's app
 * server and the SDK. Pure functions over buffers: no I/O, no state.
 *
 * Frame: length u16 BE | type u8 | message id u8 | body, where length
 * counts type, id and body (so 2..65535). Bodies are JSON (UTF-8), or
 * empty.
 *
 * Parsers never trust their input: every field is checked, and a failure
 * returns HW_EPROTO (framing) or -EINVAL (body) with a message in err that
 * names the field ("CreateLoop: port: must be 1..65535"). This file must
 * not call into the rest of hwcore (it is also built into libhopwire-app):
 * it may use the constants of util/err.h only. */
#ifndef HW_SDK_PROTO_H
#define HW_SDK_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HW_APP_HDR 4 /* length u16, type u8, id u8 */
#define HW_APP_LEN_MAX 65535
#define HW_APP_BODY_MAX (HW_APP_LEN_MAX - 2)
#define HW_APP_FRAME_MAX (2 + HW_APP_LEN_MAX)
/* The largest payload this side puts in one Send (base64 and JSON keep it
 * under HW_APP_BODY_MAX). Received Sends may carry any payload that fits
 * a frame. */
#define HW_APP_SEND_CHUNK 32768
#define HW_APP_PK_LEN 32
#define HW_APP_NAME_MAX 64 /* app-name, app-version, protocol-version */
#define HW_APP_ERROR_MAX 256

#define HW_APP_PROTOCOL_VERSION "0.0.1"
/* Extensions agreed in Init (bit flags). */
#define HW_APP_EXT_LOOP_FD 0x1u /* "loop-fd": docs/app-protocol.md */

enum hw_app_type {
	HW_APP_INIT = 0x00,
	HW_APP_CREATE_LOOP = 0x01,
	HW_APP_CONFIRM_LOOP = 0x02,
	HW_APP_SEND = 0x03,
	HW_APP_CLOSE = 0x04,
	HW_APP_FAILURE = 0xfe,
	HW_APP_SUCCESS = 0xff,
};

/* The name of a frame type ("CreateLoop"), or NULL when unknown. */
const char *hw_app_type_name(uint8_t type);

struct hw_app_frame {
	uint8_t type;
	uint8_t id;
	const uint8_t *body; /* inside the buffer given to hw_app_frame_next */
	size_t len;          /* body length */
};

/* The first frame in buf (n bytes). Returns 1 with *f and *used (the
 * frame's whole size) set, 0 when buf holds no whole frame yet, HW_EPROTO
 * when the length field is below 2 (the stream cannot be trusted any
 * more). */
int hw_app_frame_next(const uint8_t *buf, size_t n, struct hw_app_frame *f,
		      size_t *used);

/* Writes the 4-byte header of a frame whose body has body_len bytes.
 * Returns 0, or HW_ETOOBIG when body_len > HW_APP_BODY_MAX. */
int hw_app_frame_header(uint8_t hdr[HW_APP_HDR], uint8_t type, uint8_t id,
			size_t body_len);

/* A whole frame with body (NULL: empty body) serialised compactly, in a
 * malloc'd buffer (*out, *outlen); the caller frees it. Returns 0,
 * -ENOMEM, or HW_ETOOBIG. */
int hw_app_frame_json(uint8_t type, uint8_t id, const json_t *body,
		      uint8_t **out, size_t *outlen);

struct hw_app_addr {
	uint8_t pk[HW_APP_PK_LEN];
	uint16_t port;
};

/* The addressing of a Send or Close: the app's local port and the remote
 * end. */
struct hw_app_loop_addr {
	uint16_t port;
	struct hw_app_addr remote;
};

struct hw_app_init {
	char name[HW_APP_NAME_MAX + 1];
	char version[HW_APP_NAME_MAX + 1];
	char protocol[HW_APP_NAME_MAX + 1];
	uint16_t port;    /* extension "port": requested port, 0 if absent */
	unsigned ext;     /* HW_APP_EXT_* asked for in "extensions" */
	int extended;     /* the body had "port" or "extensions" */
};

/* Init body: {"app-name", "app-version", "protocol-version"} (strings of
 * 1..HW_APP_NAME_MAX bytes; app-version and protocol-version may be
 * missing), optional "port" (1..65535) and "extensions" (list of strings;
 * unknown names are ignored). Other keys are ignored. */
int hw_app_parse_init(const uint8_t *body, size_t len,
		      struct hw_app_init *out, char *err, size_t errlen);

/* {"pk": HEX64, "port": 1..65535}: a CreateLoop body, and the body of its
 * ResponseSuccess. */
int hw_app_parse_addr(const uint8_t *body, size_t len,
		      struct hw_app_addr *out, char *err, size_t errlen);

/* ConfirmLoop body: [{"pk", "port"} local, {"pk", "port"} remote]. */
int hw_app_parse_confirm(const uint8_t *body, size_t len,
			 struct hw_app_addr *local, struct hw_app_addr *remote,
			 char *err, size_t errlen);

/* Send body: {"addr": {"port", "remote": {"pk", "port"}}, "payload":
 * BASE64} (standard alphabet with padding, as Go encodes []byte; an empty
 * payload is allowed). The payload is decoded into buf (cap bytes; a
 * payload of more than cap bytes is refused) and its length put in *plen. */
int hw_app_parse_send(const uint8_t *body, size_t len,
		      struct hw_app_loop_addr *addr, uint8_t *buf, size_t cap,
		      size_t *plen, char *err, size_t errlen);

/* Close body: {"port", "remote": {"pk", "port"}}. An "error" member is
 * ignored (the visor's side: an app's Close carries no reason). */
int hw_app_parse_loop(const uint8_t *body, size_t len,
		      struct hw_app_loop_addr *out, char *err, size_t errlen);

/* A visor's Close body: as hw_app_parse_loop, plus the optional "error"
 * (a string: the loop failed; absent or null: an orderly end). The text
 * goes to error (cap bytes, cleaned as hw_app_parse_error does), "" when
 * there is none; *failed says whether there was one. A non-string
 * "error" is refused. */
int hw_app_parse_close(const uint8_t *body, size_t len,
		       struct hw_app_loop_addr *out, int *failed, char *error,
		       size_t cap, char *err, size_t errlen);

/* ResponseFailure body {"error": TEXT}: the text (truncated to cap - 1),
 * or a description of what the body was instead. Never fails. */
void hw_app_parse_error(const uint8_t *body, size_t len, char *msg,
			size_t cap);

/* JSON builders (new references, NULL when out of memory). */
json_t *hw_app_addr_json(const struct hw_app_addr *a);
json_t *hw_app_loop_json(const struct hw_app_loop_addr *a);
json_t *hw_app_confirm_json(const struct hw_app_addr *local,
			    const struct hw_app_addr *remote);
json_t *hw_app_error_json(const char *msg);
/* A Close body for loop a; with "error": error (cleaned and bounded as in
 * hw_app_error_json) unless error is NULL (an orderly end). */
json_t *hw_app_close_json(const struct hw_app_loop_addr *a,
			  const char *error);

/* A whole Send frame for payload (len <= HW_APP_SEND_CHUNK), built without
 * going through jansson for the payload, in a malloc'd buffer. Returns 0,
 * -ENOMEM or HW_ETOOBIG. */
int hw_app_frame_send(uint8_t id, const struct hw_app_loop_addr *a,
		      const uint8_t *payload, size_t len, uint8_t **out,
		      size_t *outlen);

/* Public keys as lowercase hex (out holds 2 * HW_APP_PK_LEN + 1) and
 * back (0 or -EINVAL). */
void hw_app_pk_hex(const uint8_t pk[HW_APP_PK_LEN], char *out);
int hw_app_pk_parse(const char *hex, uint8_t pk[HW_APP_PK_LEN]);

#endif
