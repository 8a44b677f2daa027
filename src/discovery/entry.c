/* Discovery entries: the canonical encoding that is signed, and the strict
 * JSON form that travels over HTTP (docs/discovery.md, byte by byte).
 *
 * The JSON decoder is the gate for everything a peer sends to discovery,
 * so it checks every key, type, bound and character before anything is
 * copied into the fixed-size struct, and each refusal names the field. */
#include "discovery/entry.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util/addr.h"
#include "util/err.h"
#include "util/hex.h"
#include "wire/tpid.h"

/* Discovery stores the very IDs the transport manager derives. */
_Static_assert(HW_DISC_TP_ID_LEN == HW_TP_ID_LEN,
	       "discovery and transport IDs differ in length");

/* Field names in messages: "relays[7]" and the longest known key. */
#define FIELD_MAX 32
/* Bytes of a peer's unknown key quoted in a message. */
#define KEY_QUOTE_MAX 64

/* ---- canonical encoding ---- */

struct writer {
	uint8_t *p;
	size_t len, cap;
	int rc;
};

static void put(struct writer *w, const void *data, size_t n)
{
	if (w->rc)
		return;
	if (n > w->cap - w->len) {
		w->rc = HW_ETOOBIG;
		return;
	}
	memcpy(w->p + w->len, data, n);
	w->len += n;
}

static void put_u8(struct writer *w, uint8_t v)
{
	put(w, &v, 1);
}

static void put_u16(struct writer *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put(w, b, sizeof(b));
}

static void put_u32(struct writer *w, uint32_t v)
{
	uint8_t b[4];
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (24 - 8 * i));
	put(w, b, sizeof(b));
}

static void put_u64(struct writer *w, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	put(w, b, sizeof(b));
}

/* s lives in an array of max + 1 bytes: strnlen never reads past it, and
 * a string without its NUL inside is refused rather than overrun. */
static void put_str(struct writer *w, const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n > max) {
		if (!w->rc)
			w->rc = -EINVAL;
		return;
	}
	put_u8(w, (uint8_t)n);
	put(w, s, n);
}

int hw_disc_entry_encode(const struct hw_disc_entry *e, uint8_t *out,
			 size_t outlen)
{
	struct writer w = {.p = out, .cap = outlen};
	unsigned i;

	put(&w, "HWD1", 4);
	put_u8(&w, (uint8_t)e->kind);
	put(&w, e->signer, HW_PK_LEN);
	put_u64(&w, e->seq);
	put_u64(&w, e->ts);
	switch (e->kind) {
	case HW_DISC_VISOR:
		if (e->u.visor.nrelays > HW_DISC_MAX_RELAYS ||
		    e->u.visor.naddrs > HW_DISC_MAX_ADDRS)
			return -EINVAL;
		put_str(&w, e->u.visor.version, HW_DISC_STR_MAX);
		put_u8(&w, (uint8_t)e->u.visor.nrelays);
		for (i = 0; i < e->u.visor.nrelays; i++)
			put(&w, e->u.visor.relays[i], HW_PK_LEN);
		put_u8(&w, (uint8_t)e->u.visor.naddrs);
		for (i = 0; i < e->u.visor.naddrs; i++)
			put_str(&w, e->u.visor.addrs[i], HW_DISC_ADDR_MAX);
		break;
	case HW_DISC_RELAY:
		put_str(&w, e->u.relay.addr, HW_DISC_ADDR_MAX);
		put_u32(&w, e->u.relay.capacity);
		break;
	case HW_DISC_TRANSPORT:
		put(&w, e->u.tp.id, HW_DISC_TP_ID_LEN);
		put_str(&w, e->u.tp.type, HW_DISC_STR_MAX);
		put(&w, e->u.tp.edges[0], HW_PK_LEN);
		put(&w, e->u.tp.edges[1], HW_PK_LEN);
		put_u32(&w, e->u.tp.rtt_us);
		break;
	case HW_DISC_TRANSPORT_DEL:
		put(&w, e->u.tp_id, HW_DISC_TP_ID_LEN);
		break;
	case HW_DISC_SERVICE:
		put_str(&w, e->u.svc.type, HW_DISC_STR_MAX);
		put_u16(&w, e->u.svc.port);
		break;
	case HW_DISC_SERVICE_DEL:
		put_str(&w, e->u.svc.type, HW_DISC_STR_MAX);
		break;
	default:
		return -EINVAL;
	}
	return w.rc ? w.rc : (int)w.len;
}

int hw_disc_entry_sign(struct hw_disc_entry *e, const struct hw_identity *id)
{
	uint8_t buf[HW_DISC_ENC_MAX];
	int n;

	if (memcmp(id->pk, e->signer, HW_PK_LEN))
		return -EINVAL;
	n = hw_disc_entry_encode(e, buf, sizeof(buf));
	if (n < 0)
		return n;
	hw_identity_sign(id, buf, (size_t)n, e->sig);
	return 0;
}

int hw_disc_entry_verify(const struct hw_disc_entry *e)
{
	uint8_t buf[HW_DISC_ENC_MAX];
	int n = hw_disc_entry_encode(e, buf, sizeof(buf));

	/* What cannot be encoded was never signed. */
	if (n < 0)
		return HW_EAUTH;
	return hw_sig_verify(e->signer, buf, (size_t)n, e->sig);
}

/* ---- JSON form ---- */

static int set_hex(json_t *o, const char *key, const uint8_t *b, size_t n)
{
	char hex[2 * HW_SIG_LEN + 1];

	hw_hex_encode(b, n, hex);
	return json_object_set_new(o, key, json_string(hex));
}

static json_t *pk_list(const uint8_t (*pks)[HW_PK_LEN], unsigned n)
{
	char hex[HW_PK_HEXLEN + 1];
	json_t *a = json_array();

	for (unsigned i = 0; a && i < n; i++) {
		hw_pk_format(pks[i], hex);
		if (json_array_append_new(a, json_string(hex))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *str_list(const char (*strs)[HW_DISC_ADDR_MAX + 1], unsigned n)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < n; i++) {
		if (json_array_append_new(a, json_string(strs[i]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

json_t *hw_disc_entry_to_json(const struct hw_disc_entry *e)
{
	uint8_t buf[HW_DISC_ENC_MAX];
	json_t *o = NULL;
	int rc = 0;

	/* The encoder checks every bound; JSON integers stop at 2^63 - 1. */
	if (hw_disc_entry_encode(e, buf, sizeof(buf)) < 0 ||
	    e->seq > INT64_MAX || e->ts > INT64_MAX)
		return NULL;
	if (!(o = json_object()))
		return NULL;
	rc |= set_hex(o, "pk", e->signer, HW_PK_LEN);
	rc |= json_object_set_new(o, "seq", json_integer((json_int_t)e->seq));
	rc |= json_object_set_new(o, "ts", json_integer((json_int_t)e->ts));
	rc |= set_hex(o, "sig", e->sig, HW_SIG_LEN);
	switch (e->kind) {
	case HW_DISC_VISOR:
		rc |= json_object_set_new(o, "version",
					  json_string(e->u.visor.version));
		rc |= json_object_set_new(
			o, "relays",
			pk_list((const uint8_t(*)[HW_PK_LEN])e->u.visor.relays,
				e->u.visor.nrelays));
		rc |= json_object_set_new(
			o, "addrs",
			str_list((const char(*)[HW_DISC_ADDR_MAX + 1])
					 e->u.visor.addrs,
				 e->u.visor.naddrs));
		break;
	case HW_DISC_RELAY:
		rc |= json_object_set_new(o, "addr",
					  json_string(e->u.relay.addr));
		rc |= json_object_set_new(o, "capacity",
					  json_integer(e->u.relay.capacity));
		break;
	case HW_DISC_TRANSPORT:
		rc |= set_hex(o, "id", e->u.tp.id, HW_DISC_TP_ID_LEN);
		rc |= json_object_set_new(o, "type",
					  json_string(e->u.tp.type));
		rc |= json_object_set_new(
			o, "edges",
			pk_list((const uint8_t(*)[HW_PK_LEN])e->u.tp.edges,
				2));
		rc |= json_object_set_new(o, "rtt_us",
					  json_integer(e->u.tp.rtt_us));
		break;
	case HW_DISC_TRANSPORT_DEL:
		rc |= set_hex(o, "id", e->u.tp_id, HW_DISC_TP_ID_LEN);
		break;
	case HW_DISC_SERVICE:
		rc |= json_object_set_new(o, "type",
					  json_string(e->u.svc.type));
		rc |= json_object_set_new(o, "port",
					  json_integer(e->u.svc.port));
		break;
	case HW_DISC_SERVICE_DEL:
		rc |= json_object_set_new(o, "type",
					  json_string(e->u.svc.type));
		break;
	}
	/* json_object_set_new() refuses a NULL value (no memory, a string
	 * that is not UTF-8) and releases what it was given. */
	if (rc) {
		json_decref(o);
		return NULL;
	}
	return o;
}

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

static bool printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

static const char *const common_keys[] = {"pk", "seq", "ts", "sig", NULL};

static const char *const *kind_keys(enum hw_disc_kind kind)
{
	static const char *const visor[] = {"version", "relays", "addrs",
					    NULL};
	static const char *const relay[] = {"addr", "capacity", NULL};
	static const char *const tp[] = {"id", "type", "edges", "rtt_us",
					 NULL};
	static const char *const tp_del[] = {"id", NULL};
	static const char *const svc[] = {"type", "port", NULL};
	static const char *const svc_del[] = {"type", NULL};

	switch (kind) {
	case HW_DISC_VISOR:
		return visor;
	case HW_DISC_RELAY:
		return relay;
	case HW_DISC_TRANSPORT:
		return tp;
	case HW_DISC_TRANSPORT_DEL:
		return tp_del;
	case HW_DISC_SERVICE:
		return svc;
	case HW_DISC_SERVICE_DEL:
		return svc_del;
	}
	return NULL;
}

static bool listed(const char *key, const char *const *keys)
{
	for (size_t i = 0; keys[i]; i++)
		if (!strcmp(key, keys[i]))
			return true;
	return false;
}

/* A peer's key, quoted in a message: printable and short. */
static void quote_key(const char *key, char out[KEY_QUOTE_MAX + 4])
{
	size_t i;

	for (i = 0; key[i] && i < KEY_QUOTE_MAX; i++)
		out[i] = printable(key + i, 1) ? key[i] : '?';
	if (key[i])
		out[i++] = '.', out[i++] = '.', out[i++] = '.';
	out[i] = '\0';
}

static int get(const json_t *o, const char *key, json_t **v, char *err,
	       size_t errlen)
{
	*v = json_object_get(o, key);
	return *v ? 0 : bad(err, errlen, "%s: missing", key);
}

/* A string of printable ASCII, min..max bytes, copied into out (max + 1
 * bytes). */
static int str_value(const json_t *v, const char *field, size_t min,
		     size_t max, char *out, char *err, size_t errlen)
{
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return bad(err, errlen, "%s: must be a string", field);
	s = json_string_value(v);
	len = json_string_length(v);
	if (len > max)
		return bad(err, errlen, "%s: longer than %zu characters",
			   field, max);
	if (len < min)
		return bad(err, errlen, "%s: must not be empty", field);
	if (!printable(s, len))
		return bad(err, errlen,
			   "%s: must be printable ASCII characters only",
			   field);
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

static int type_value(const json_t *v, char out[HW_DISC_STR_MAX + 1],
		      char *err, size_t errlen)
{
	int rc = str_value(v, "type", 1, HW_DISC_STR_MAX, out, err, errlen);

	if (rc)
		return rc;
	for (const char *p = out; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '-'))
			return bad(err, errlen,
				   "type: '%s' is not 1 to %d characters of "
				   "a-z, 0-9, '_' and '-'",
				   out, HW_DISC_STR_MAX);
	return 0;
}

static int addr_value(const json_t *v, const char *field,
		      char out[HW_DISC_ADDR_MAX + 1], char *err,
		      size_t errlen)
{
	char host[HW_HOST_MAX];
	uint16_t port;
	int rc = str_value(v, field, 1, HW_DISC_ADDR_MAX, out, err, errlen);

	if (rc)
		return rc;
	if (hw_addr_split(out, host, &port))
		return bad(err, errlen, "%s: '%s' is not HOST:PORT", field,
			   out);
	return 0;
}

static int int_value(const json_t *v, const char *field, json_int_t min,
		     json_int_t max, json_int_t *out, char *err,
		     size_t errlen)
{
	json_int_t i = 0;

	if (!json_is_integer(v))
		return bad(err, errlen, "%s: must be an integer", field);
	i = json_integer_value(v);
	if (i < min || i > max)
		return bad(err, errlen, "%s: %lld is out of range %lld..%lld",
			   field, (long long)i, (long long)min,
			   (long long)max);
	*out = i;
	return 0;
}

static int pk_value(const json_t *v, const char *field,
		    uint8_t out[HW_PK_LEN], char *err, size_t errlen)
{
	int rc;

	if (!json_is_string(v))
		return bad(err, errlen,
			   "%s: not a 64-character hex public key", field);
	rc = hw_pk_parse(json_string_value(v), json_string_length(v), out);
	if (rc == HW_EBADKEY)
		return bad(err, errlen, "%s: not a valid Ed25519 public key",
			   field);
	if (rc)
		return bad(err, errlen,
			   "%s: not a 64-character hex public key", field);
	return 0;
}

static int hex_value(const json_t *v, const char *field, const char *what,
		     uint8_t *out, size_t len, char *err, size_t errlen)
{
	if (!json_is_string(v) ||
	    hw_hex_decode(json_string_value(v), json_string_length(v), out,
			  len))
		return bad(err, errlen, "%s: not a %zu-character hex %s",
			   field, 2 * len, what);
	return 0;
}

static int visor_from_json(struct hw_disc_visor *vi, const json_t *j,
			   char *err, size_t errlen)
{
	char field[FIELD_MAX];
	json_t *v, *item;
	size_t i;
	int rc;

	if ((rc = get(j, "version", &v, err, errlen)) ||
	    (rc = str_value(v, "version", 1, HW_DISC_STR_MAX, vi->version,
			    err, errlen)))
		return rc;

	if ((rc = get(j, "relays", &v, err, errlen)))
		return rc;
	if (!json_is_array(v))
		return bad(err, errlen, "relays: must be a list");
	if (json_array_size(v) > HW_DISC_MAX_RELAYS)
		return bad(err, errlen, "relays: more than %d relays",
			   HW_DISC_MAX_RELAYS);
	json_array_foreach(v, i, item) {
		snprintf(field, sizeof(field), "relays[%zu]", i);
		if ((rc = pk_value(item, field, vi->relays[i], err, errlen)))
			return rc;
	}
	vi->nrelays = (unsigned)json_array_size(v);

	if ((rc = get(j, "addrs", &v, err, errlen)))
		return rc;
	if (!json_is_array(v))
		return bad(err, errlen, "addrs: must be a list");
	if (json_array_size(v) > HW_DISC_MAX_ADDRS)
		return bad(err, errlen, "addrs: more than %d addresses",
			   HW_DISC_MAX_ADDRS);
	json_array_foreach(v, i, item) {
		snprintf(field, sizeof(field), "addrs[%zu]", i);
		if ((rc = addr_value(item, field, vi->addrs[i], err, errlen)))
			return rc;
	}
	vi->naddrs = (unsigned)json_array_size(v);
	return 0;
}

static int relay_from_json(struct hw_disc_relay *r, const json_t *j,
			   char *err, size_t errlen)
{
	json_int_t cap = 0;
	json_t *v;
	int rc;

	if ((rc = get(j, "addr", &v, err, errlen)) ||
	    (rc = addr_value(v, "addr", r->addr, err, errlen)) ||
	    (rc = get(j, "capacity", &v, err, errlen)) ||
	    (rc = int_value(v, "capacity", 0, UINT32_MAX, &cap, err,
			    errlen)))
		return rc;
	r->capacity = (uint32_t)cap;
	return 0;
}

static int tp_from_json(struct hw_disc_transport *t,
			const uint8_t signer[HW_PK_LEN], const json_t *j,
			char *err, size_t errlen)
{
	uint8_t want[HW_DISC_TP_ID_LEN];
	char hex[2 * HW_DISC_TP_ID_LEN + 1];
	json_int_t rtt;
	json_t *v;
	int rc;

	if ((rc = get(j, "id", &v, err, errlen)) ||
	    (rc = hex_value(v, "id", "transport ID", t->id,
			    HW_DISC_TP_ID_LEN, err, errlen)) ||
	    (rc = get(j, "type", &v, err, errlen)) ||
	    (rc = type_value(v, t->type, err, errlen)) ||
	    (rc = get(j, "edges", &v, err, errlen)))
		return rc;
	if (!json_is_array(v) || json_array_size(v) != 2)
		return bad(err, errlen, "edges: must be a list of 2 public keys");
	if ((rc = pk_value(json_array_get(v, 0), "edges[0]", t->edges[0], err,
			   errlen)) ||
	    (rc = pk_value(json_array_get(v, 1), "edges[1]", t->edges[1], err,
			   errlen)) ||
	    (rc = get(j, "rtt_us", &v, err, errlen)) ||
	    (rc = int_value(v, "rtt_us", 0, UINT32_MAX, &rtt, err, errlen)))
		return rc;
	t->rtt_us = (uint32_t)rtt;
	if (!memcmp(t->edges[0], t->edges[1], HW_PK_LEN))
		return bad(err, errlen, "edges: both ends are the same key");
	if (memcmp(signer, t->edges[0], HW_PK_LEN) &&
	    memcmp(signer, t->edges[1], HW_PK_LEN))
		return bad(err, errlen, "pk: not an edge of the transport");
	hw_tp_id(t->edges[0], t->edges[1], t->type, want);
	if (memcmp(want, t->id, HW_DISC_TP_ID_LEN)) {
		hw_hex_encode(want, sizeof(want), hex);
		return bad(err, errlen,
			   "id: not the ID of these edges and type (that is "
			   "%s)",
			   hex);
	}
	return 0;
}

int hw_disc_entry_from_json(struct hw_disc_entry *e, enum hw_disc_kind kind,
			    const json_t *j, char *err, size_t errlen)
{
	const char *const *keys = kind_keys(kind);
	char quoted[KEY_QUOTE_MAX + 4];
	json_int_t i = 0;
	const char *key;
	json_t *v;
	int rc;

	memset(e, 0, sizeof(*e));
	if (err && errlen)
		err[0] = '\0';
	if (!keys)
		return bad(err, errlen, "entry: unknown kind %d", (int)kind);
	if (!json_is_object(j))
		return bad(err, errlen, "entry: must be a JSON object");
	/* json_object_foreach() wants a mutable object; it only reads. */
	json_object_foreach((json_t *)j, key, v) {
		if (!listed(key, common_keys) && !listed(key, keys)) {
			quote_key(key, quoted);
			return bad(err, errlen, "%s: unknown key", quoted);
		}
	}
	e->kind = kind;
	if ((rc = get(j, "pk", &v, err, errlen)) ||
	    (rc = pk_value(v, "pk", e->signer, err, errlen)) ||
	    (rc = get(j, "seq", &v, err, errlen)) ||
	    (rc = int_value(v, "seq", 1, INT64_MAX, &i, err, errlen)))
		return rc;
	e->seq = (uint64_t)i;
	if ((rc = get(j, "ts", &v, err, errlen)) ||
	    (rc = int_value(v, "ts", 0, INT64_MAX, &i, err, errlen)))
		return rc;
	e->ts = (uint64_t)i;
	if ((rc = get(j, "sig", &v, err, errlen)) ||
	    (rc = hex_value(v, "sig", "signature", e->sig, HW_SIG_LEN, err,
			    errlen)))
		return rc;

	switch (kind) {
	case HW_DISC_VISOR:
		return visor_from_json(&e->u.visor, j, err, errlen);
	case HW_DISC_RELAY:
		return relay_from_json(&e->u.relay, j, err, errlen);
	case HW_DISC_TRANSPORT:
		return tp_from_json(&e->u.tp, e->signer, j, err, errlen);
	case HW_DISC_TRANSPORT_DEL:
		if ((rc = get(j, "id", &v, err, errlen)))
			return rc;
		return hex_value(v, "id", "transport ID", e->u.tp_id,
				 HW_DISC_TP_ID_LEN, err, errlen);
	case HW_DISC_SERVICE:
		if ((rc = get(j, "type", &v, err, errlen)) ||
		    (rc = type_value(v, e->u.svc.type, err, errlen)) ||
		    (rc = get(j, "port", &v, err, errlen)) ||
		    (rc = int_value(v, "port", 1, 65535, &i, err, errlen)))
			return rc;
		e->u.svc.port = (uint16_t)i;
		return 0;
	case HW_DISC_SERVICE_DEL:
		if ((rc = get(j, "type", &v, err, errlen)))
			return rc;
		return type_value(v, e->u.svc.type, err, errlen);
	}
	return -EINVAL;
}
