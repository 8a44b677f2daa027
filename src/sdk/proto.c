#include "sdk/proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* The deepest nesting a body may have. The protocol needs 3 (Send's
 * addr.remote); the margin leaves room for extension keys. Checked before
 * jansson sees the text, so hostile nesting costs a linear scan only. */
#define HW_APP_DEPTH_MAX 16

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int bad(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

const char *hw_app_type_name(uint8_t type)
{
	switch (type) {
	case HW_APP_INIT:
		return "Init";
	case HW_APP_CREATE_LOOP:
		return "CreateLoop";
	case HW_APP_CONFIRM_LOOP:
		return "ConfirmLoop";
	case HW_APP_SEND:
		return "Send";
	case HW_APP_CLOSE:
		return "Close";
	case HW_APP_FAILURE:
		return "ResponseFailure";
	case HW_APP_SUCCESS:
		return "ResponseSuccess";
	}
	return NULL;
}

int hw_app_frame_next(const uint8_t *buf, size_t n, struct hw_app_frame *f,
		      size_t *used)
{
	size_t len;

	if (n < 2)
		return 0;
	len = (size_t)buf[0] << 8 | buf[1];
	if (len < 2)
		return HW_EPROTO;
	if (n - 2 < len)
		return 0;
	f->type = buf[2];
	f->id = buf[3];
	f->body = buf + HW_APP_HDR;
	f->len = len - 2;
	*used = 2 + len;
	return 1;
}

int hw_app_frame_header(uint8_t hdr[HW_APP_HDR], uint8_t type, uint8_t id,
			size_t body_len)
{
	size_t len;

	if (body_len > HW_APP_BODY_MAX)
		return HW_ETOOBIG;
	len = body_len + 2;
	hdr[0] = (uint8_t)(len >> 8);
	hdr[1] = (uint8_t)len;
	hdr[2] = type;
	hdr[3] = id;
	return 0;
}

int hw_app_frame_json(uint8_t type, uint8_t id, const json_t *body,
		      uint8_t **out, size_t *outlen)
{
	size_t need = 0, got;
	uint8_t *buf = NULL;
	int rc;

	*out = NULL;
	*outlen = 0;
	if (body) {
		need = json_dumpb(body, NULL, 0,
				  JSON_COMPACT | JSON_ENCODE_ANY);
		if (need == 0)
			return -ENOMEM; /* jansson's only failure here */
		if (need > HW_APP_BODY_MAX)
			return HW_ETOOBIG;
	}
	if (!(buf = malloc(HW_APP_HDR + need + 1)))
		return -ENOMEM;
	if ((rc = hw_app_frame_header(buf, type, id, need)))
		goto out;
	if (body) {
		got = json_dumpb(body, (char *)buf + HW_APP_HDR, need,
				 JSON_COMPACT | JSON_ENCODE_ANY);
		if (got != need) {
			rc = -ENOMEM;
			goto out;
		}
	}
	*out = buf;
	*outlen = HW_APP_HDR + need;
	buf = NULL;
out:
	free(buf);
	return rc;
}

/* --- hex and base64 (this file stands alone: see proto.h) --- */

static int hex_val(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void hw_app_pk_hex(const uint8_t pk[HW_APP_PK_LEN], char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < HW_APP_PK_LEN; i++) {
		out[2 * i] = digits[pk[i] >> 4];
		out[2 * i + 1] = digits[pk[i] & 0xf];
	}
	out[2 * HW_APP_PK_LEN] = '\0';
}

static int pk_parse_n(const char *hex, size_t n, uint8_t pk[HW_APP_PK_LEN])
{
	uint8_t tmp[HW_APP_PK_LEN];

	if (n != 2 * HW_APP_PK_LEN)
		return -EINVAL;
	for (size_t i = 0; i < HW_APP_PK_LEN; i++) {
		int hi = hex_val((unsigned char)hex[2 * i]);
		int lo = hex_val((unsigned char)hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		tmp[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(pk, tmp, HW_APP_PK_LEN);
	return 0;
}

int hw_app_pk_parse(const char *hex, uint8_t pk[HW_APP_PK_LEN])
{
	if (!hex)
		return -EINVAL;
	return pk_parse_n(hex, strnlen(hex, 2 * HW_APP_PK_LEN + 1), pk);
}

static size_t b64_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

/* Writes b64_len(n) characters (no NUL). */
static void b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0, o = 0;

	for (; n - i >= 3; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = '=';
	}
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* The decoded size of a well-formed encoding of n characters, or -1 when
 * n or the padding cannot be right. */
static long b64_decoded_len(const char *s, size_t n)
{
	size_t pad = 0;

	if (n % 4)
		return -1;
	if (n == 0)
		return 0;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	return (long)(n / 4 * 3 - pad);
}

/* Strict: standard alphabet, padding only at the end and exactly as the
 * encoder writes it, unused bits zero (so each payload has one encoding,
 * which is what Go emits). out holds b64_decoded_len bytes. */
static int b64_decode(const char *s, size_t n, uint8_t *out)
{
	size_t o = 0;

	if (n % 4)
		return -EINVAL;
	for (size_t i = 0; i < n; i += 4) {
		int last = i + 4 == n;
		int a = b64_val((unsigned char)s[i]);
		int b = b64_val((unsigned char)s[i + 1]);
		int c, d;

		if (a < 0 || b < 0)
			return -EINVAL;
		if (last && s[i + 2] == '=') {
			if (s[i + 3] != '=' || (b & 15))
				return -EINVAL;
			out[o++] = (uint8_t)(a << 2 | b >> 4);
			break;
		}
		c = b64_val((unsigned char)s[i + 2]);
		if (c < 0)
			return -EINVAL;
		if (last && s[i + 3] == '=') {
			if (c & 3)
				return -EINVAL;
			out[o++] = (uint8_t)(a << 2 | b >> 4);
			out[o++] = (uint8_t)(b << 4 | c >> 2);
			break;
		}
		d = b64_val((unsigned char)s[i + 3]);
		if (d < 0)
			return -EINVAL;
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		out[o++] = (uint8_t)(b << 4 | c >> 2);
		out[o++] = (uint8_t)(c << 6 | d);
	}
	return 0;
}

/* --- UTF-8, for text this side puts into JSON --- */

/* The length of the well-formed UTF-8 sequence at s (n bytes left), or 0.
 * The same rules as jansson's (no overlongs, surrogates, or code points
 * above U+10FFFF), so whatever passes here json_string accepts. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* Copies src (NUL-terminated) into dst (cap > 0 bytes) as printable
 * UTF-8: control characters become '?', broken sequences '?', and a
 * character that does not fit whole is left out. */
static void clean_text(const char *src, size_t srclen, char *dst, size_t cap)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0, o = 0;

	while (i < srclen) {
		size_t k = utf8_seq(s + i, srclen - i);
		if (k == 0 || (k == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
			if (o + 1 >= cap)
				break;
			dst[o++] = '?';
			i++;
			continue;
		}
		if (o + k >= cap)
			break;
		memcpy(dst + o, s + i, k);
		o += k;
		i += k;
	}
	dst[o] = '\0';
}

/* --- parsing --- */

/* Whether the JSON text nests deeper than max (strings skipped). */
static int too_deep(const uint8_t *p, size_t n, int max)
{
	int depth = 0, in_str = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
		} else if (c == '"') {
			in_str = 1;
		} else if (c == '[' || c == '{') {
			if (++depth > max)
				return 1;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	return 0;
}

static json_t *load(const char *what, const uint8_t *body, size_t len,
		    char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;

	if (len == 0) {
		bad(err, errlen, "%s: empty body, expected JSON", what);
		return NULL;
	}
	if (len > HW_APP_BODY_MAX) {
		bad(err, errlen, "%s: body of %zu bytes is over the %d limit",
		    what, len, HW_APP_BODY_MAX);
		return NULL;
	}
	if (too_deep(body, len, HW_APP_DEPTH_MAX)) {
		bad(err, errlen, "%s: JSON nested more than %d deep", what,
		    HW_APP_DEPTH_MAX);
		return NULL;
	}
	root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES,
			  &jerr);
	if (!root)
		bad(err, errlen, "%s: not JSON: %s (byte %d)", what, jerr.text,
		    jerr.position);
	return root;
}

static json_t *load_object(const char *what, const uint8_t *body, size_t len,
			   char *err, size_t errlen)
{
	json_t *root = load(what, body, len, err, errlen);

	if (root && !json_is_object(root)) {
		bad(err, errlen, "%s: body must be a JSON object", what);
		json_decref(root);
		return NULL;
	}
	return root;
}

static int get_port(json_t *obj, const char *key, const char *what,
		    const char *field, uint16_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	json_int_t i;

	if (!v)
		return bad(err, errlen, "%s: %s: missing", what, field);
	if (!json_is_integer(v))
		return bad(err, errlen,
			   "%s: %s: must be a whole number 1..65535", what,
			   field);
	i = json_integer_value(v);
	if (i < 1 || i > 65535)
		return bad(err, errlen,
			   "%s: %s: must be a whole number 1..65535 "
			   "(not %lld)",
			   what, field, (long long)i);
	*out = (uint16_t)i;
	return 0;
}

static int get_pk(json_t *obj, const char *key, const char *what,
		  const char *field, uint8_t pk[HW_APP_PK_LEN], char *err,
		  size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		return bad(err, errlen, "%s: %s: missing", what, field);
	if (!json_is_string(v) ||
	    pk_parse_n(json_string_value(v), json_string_length(v), pk))
		return bad(err, errlen,
			   "%s: %s: must be a public key (64 hex characters)",
			   what, field);
	return 0;
}

/* {"pk", "port"} at obj; prefix names it in messages ("remote." ...). */
static int get_addr(json_t *obj, const char *what, const char *prefix,
		    struct hw_app_addr *out, char *err, size_t errlen)
{
	char field[32];

	if (!json_is_object(obj))
		return bad(err, errlen, "%s: %.*s: must be an object", what,
			   (int)strlen(prefix) - 1, prefix);
	snprintf(field, sizeof(field), "%spk", prefix);
	if (get_pk(obj, "pk", what, field, out->pk, err, errlen))
		return -EINVAL;
	snprintf(field, sizeof(field), "%sport", prefix);
	return get_port(obj, "port", what, field, &out->port, err, errlen);
}

/* {"port", "remote": {"pk", "port"}}; prefix as for get_addr. */
static int get_loop(json_t *obj, const char *what, const char *prefix,
		    struct hw_app_loop_addr *out, char *err, size_t errlen)
{
	char field[32];
	json_t *remote;

	if (!json_is_object(obj))
		return bad(err, errlen, "%s: %.*s: must be an object", what,
			   (int)strlen(prefix) - 1, prefix);
	snprintf(field, sizeof(field), "%sport", prefix);
	if (get_port(obj, "port", what, field, &out->port, err, errlen))
		return -EINVAL;
	snprintf(field, sizeof(field), "%sremote", prefix);
	if (!(remote = json_object_get(obj, "remote")))
		return bad(err, errlen, "%s: %s: missing", what, field);
	snprintf(field, sizeof(field), "%sremote.", prefix);
	return get_addr(remote, what, field, &out->remote, err, errlen);
}

static int get_name(json_t *obj, const char *key, int required,
		    char out[HW_APP_NAME_MAX + 1], char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	const char *s;
	size_t n;

	out[0] = '\0';
	if (!v) {
		if (required)
			return bad(err, errlen, "Init: %s: missing", key);
		return 0;
	}
	if (!json_is_string(v))
		return bad(err, errlen, "Init: %s: must be a string", key);
	s = json_string_value(v);
	n = json_string_length(v);
	if (n < 1 || n > HW_APP_NAME_MAX)
		return bad(err, errlen, "Init: %s: must be 1..%d bytes", key,
			   HW_APP_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return bad(err, errlen,
				   "Init: %s: must not hold control "
				   "characters",
				   key);
	memcpy(out, s, n + 1);
	return 0;
}

int hw_app_parse_init(const uint8_t *body, size_t len,
		      struct hw_app_init *out, char *err, size_t errlen)
{
	json_t *root, *v, *e;
	size_t i;
	int rc = -EINVAL;

	memset(out, 0, sizeof(*out));
	if (!(root = load_object("Init", body, len, err, errlen)))
		return -EINVAL;
	if (get_name(root, "app-name", 1, out->name, err, errlen) ||
	    get_name(root, "app-version", 0, out->version, err, errlen) ||
	    get_name(root, "protocol-version", 0, out->protocol, err, errlen))
		goto out;
	if (json_object_get(root, "port")) {
		if (get_port(root, "port", "Init", "port", &out->port, err,
			     errlen))
			goto out;
		out->extended = 1;
	}
	/* null: what Go's encoding/json writes for a nil list. */
	if ((v = json_object_get(root, "extensions"))) {
		out->extended = 1;
		if (!json_is_array(v) && !json_is_null(v)) {
			bad(err, errlen,
			    "Init: extensions: must be a list of strings");
			goto out;
		}
		json_array_foreach(v, i, e) {
			if (!json_is_string(e)) {
				bad(err, errlen,
				    "Init: extensions[%zu]: must be a string",
				    i);
				goto out;
			}
			if (!strcmp(json_string_value(e), "loop-fd"))
				out->ext |= HW_APP_EXT_LOOP_FD;
		}
	}
	rc = 0;
out:
	json_decref(root);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}

int hw_app_parse_addr(const uint8_t *body, size_t len,
		      struct hw_app_addr *out, char *err, size_t errlen)
{
	json_t *root;
	int rc;

	if (!(root = load_object("CreateLoop", body, len, err, errlen)))
		return -EINVAL;
	rc = get_addr(root, "CreateLoop", "", out, err, errlen);
	json_decref(root);
	return rc;
}

int hw_app_parse_confirm(const uint8_t *body, size_t len,
			 struct hw_app_addr *local, struct hw_app_addr *remote,
			 char *err, size_t errlen)
{
	json_t *root;
	int rc = -EINVAL;

	if (!(root = load("ConfirmLoop", body, len, err, errlen)))
		return -EINVAL;
	if (!json_is_array(root) || json_array_size(root) != 2) {
		bad(err, errlen,
		    "ConfirmLoop: body must be a list of two addresses "
		    "[local, remote]");
		goto out;
	}
	if (get_addr(json_array_get(root, 0), "ConfirmLoop", "[0].", local,
		     err, errlen) ||
	    get_addr(json_array_get(root, 1), "ConfirmLoop", "[1].", remote,
		     err, errlen))
		goto out;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int hw_app_parse_send(const uint8_t *body, size_t len,
		      struct hw_app_loop_addr *addr, uint8_t *buf, size_t cap,
		      size_t *plen, char *err, size_t errlen)
{
	json_t *root, *a, *p;
	const char *s = "";
	size_t n = 0;
	long dlen;
	int rc = -EINVAL;

	*plen = 0;
	if (!(root = load_object("Send", body, len, err, errlen)))
		return -EINVAL;
	if (!(a = json_object_get(root, "addr"))) {
		bad(err, errlen, "Send: addr: missing");
		goto out;
	}
	if (get_loop(a, "Send", "addr.", addr, err, errlen))
		goto out;
	if (!(p = json_object_get(root, "payload"))) {
		bad(err, errlen, "Send: payload: missing");
		goto out;
	}
	/* null is how Go's encoding/json writes an empty (nil) []byte. */
	if (!json_is_null(p)) {
		if (!json_is_string(p)) {
			bad(err, errlen, "Send: payload: must be a string");
			goto out;
		}
		s = json_string_value(p);
		n = json_string_length(p);
	}
	if ((dlen = b64_decoded_len(s, n)) < 0) {
		bad(err, errlen, "Send: payload: not base64");
		goto out;
	}
	if ((size_t)dlen > cap) {
		bad(err, errlen,
		    "Send: payload: %ld bytes is more than the %zu this side "
		    "takes",
		    dlen, cap);
		goto out;
	}
	if (b64_decode(s, n, buf)) {
		bad(err, errlen, "Send: payload: not base64");
		goto out;
	}
	*plen = (size_t)dlen;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int hw_app_parse_loop(const uint8_t *body, size_t len,
		      struct hw_app_loop_addr *out, char *err, size_t errlen)
{
	return hw_app_parse_close(body, len, out, NULL, NULL, 0, err, errlen);
}

int hw_app_parse_close(const uint8_t *body, size_t len,
		       struct hw_app_loop_addr *out, int *failed, char *error,
		       size_t cap, char *err, size_t errlen)
{
	json_t *root, *v;
	int rc;

	if (failed)
		*failed = 0;
	if (error && cap)
		error[0] = '\0';
	if (!(root = load_object("Close", body, len, err, errlen)))
		return -EINVAL;
	if ((rc = get_loop(root, "Close", "", out, err, errlen)) || !failed)
		goto out;
	/* null: what a Go visor writes for an empty *string. */
	v = json_object_get(root, "error");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v)) {
			rc = bad(err, errlen, "Close: error: must be a string");
			goto out;
		}
		*failed = 1;
		if (error && cap)
			clean_text(json_string_value(v), json_string_length(v),
				   error, cap);
	}
out:
	json_decref(root);
	return rc;
}

void hw_app_parse_error(const uint8_t *body, size_t len, char *msg,
			size_t cap)
{
	const char *why = NULL;
	json_t *root = NULL, *v = NULL;

	if (!msg || cap == 0)
		return;
	if (len == 0)
		why = "no reason given";
	else if (len > HW_APP_BODY_MAX ||
		 too_deep(body, len, HW_APP_DEPTH_MAX) ||
		 !(root = json_loadb((const char *)body, len,
				     JSON_REJECT_DUPLICATES, NULL)))
		why = "no reason given (the failure's body is not JSON)";
	else if (!json_is_object(root) ||
		 !(v = json_object_get(root, "error")) || !json_is_string(v))
		why = "no reason given (the failure's body has no \"error\" "
		      "text)";
	if (why)
		clean_text(why, strlen(why), msg, cap);
	else
		clean_text(json_string_value(v), json_string_length(v), msg,
			   cap);
	json_decref(root);
}

/* --- builders --- */

json_t *hw_app_addr_json(const struct hw_app_addr *a)
{
	char hex[2 * HW_APP_PK_LEN + 1];

	hw_app_pk_hex(a->pk, hex);
	return json_pack("{s:s, s:i}", "pk", hex, "port", (int)a->port);
}

json_t *hw_app_loop_json(const struct hw_app_loop_addr *a)
{
	json_t *remote = hw_app_addr_json(&a->remote);

	if (!remote)
		return NULL;
	/* "o" steals remote, also when the pack fails. */
	return json_pack("{s:i, s:o}", "port", (int)a->port, "remote",
			 remote);
}

json_t *hw_app_confirm_json(const struct hw_app_addr *local,
			    const struct hw_app_addr *remote)
{
	json_t *l = hw_app_addr_json(local);
	json_t *r = hw_app_addr_json(remote);

	if (!l || !r) {
		json_decref(l);
		json_decref(r);
		return NULL;
	}
	return json_pack("[o, o]", l, r);
}

json_t *hw_app_error_json(const char *msg)
{
	char text[HW_APP_ERROR_MAX];

	/* Whatever the text holds (a peer's bytes quoted in it, say), the
	 * frame stays valid JSON and bounded. */
	clean_text(msg ? msg : "", msg ? strlen(msg) : 0, text, sizeof(text));
	return json_pack("{s:s}", "error", text);
}

json_t *hw_app_close_json(const struct hw_app_loop_addr *a,
			  const char *error)
{
	char text[HW_APP_ERROR_MAX];
	json_t *o = hw_app_loop_json(a);

	if (!o || !error)
		return o;
	clean_text(error, strlen(error), text, sizeof(text));
	if (json_object_set_new(o, "error", json_string(text))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int hw_app_frame_send(uint8_t id, const struct hw_app_loop_addr *a,
		      const uint8_t *payload, size_t len, uint8_t **out,
		      size_t *outlen)
{
	char hex[2 * HW_APP_PK_LEN + 1];
	uint8_t *buf;
	size_t cap, body;
	int n;

	*out = NULL;
	*outlen = 0;
	if (len > HW_APP_SEND_CHUNK)
		return HW_ETOOBIG;
	hw_app_pk_hex(a->remote.pk, hex);
	/* Prefix (under 128 bytes with the key), payload, suffix, NUL. */
	cap = HW_APP_HDR + 128 + 2 * HW_APP_PK_LEN + b64_len(len) + 3;
	if (!(buf = malloc(cap)))
		return -ENOMEM;
	n = snprintf((char *)buf + HW_APP_HDR, cap - HW_APP_HDR,
		     "{\"addr\":{\"port\":%u,\"remote\":{\"pk\":\"%s\","
		     "\"port\":%u}},\"payload\":\"",
		     (unsigned)a->port, hex, (unsigned)a->remote.port);
	if (n < 0 || (size_t)n >= cap - HW_APP_HDR) {
		free(buf);
		return -ENOMEM; /* cannot happen: cap covers the prefix */
	}
	body = (size_t)n;
	b64_encode(payload, len, (char *)buf + HW_APP_HDR + body);
	body += b64_len(len);
	buf[HW_APP_HDR + body++] = '"';
	buf[HW_APP_HDR + body++] = '}';
	/* body <= ~43.8 KB: the header cannot fail. */
	hw_app_frame_header(buf, HW_APP_SEND, id, body);
	*out = buf;
	*outlen = HW_APP_HDR + body;
	return 0;
}
