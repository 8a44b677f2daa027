/* Tests of discovery entries (src/discovery/entry.c): the canonical
 * encoding byte by byte, signatures, and the strict JSON decoder. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "discovery/entry.h"
#include "transport/manager.h"
#include "util/err.h"
#include "hwtest.h"

static struct hw_identity ids[4];

static int setup(void **state)
{
	for (int i = 0; i < 4; i++)
		if (hw_test_identity_seeded(&ids[i], (uint8_t)(0x10 + i)))
			return -1;
	return 0;
}

static int teardown(void **state)
{
	for (int i = 0; i < 4; i++)
		hw_identity_wipe(&ids[i]);
	return 0;
}

/* A valid, signed entry of each kind, signed by ids[0]. */
static void make_entry(enum hw_disc_kind kind, struct hw_disc_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	memcpy(e->signer, ids[0].pk, HW_PK_LEN);
	e->seq = 0x0102030405060708ull;
	e->ts = 0x1112131415161718ull;
	switch (kind) {
	case HW_DISC_VISOR:
		strcpy(e->u.visor.version, "0.1.0");
		memcpy(e->u.visor.relays[0], ids[1].pk, HW_PK_LEN);
		memcpy(e->u.visor.relays[1], ids[2].pk, HW_PK_LEN);
		e->u.visor.nrelays = 2;
		strcpy(e->u.visor.addrs[0], "1.2.3.4:7000");
		strcpy(e->u.visor.addrs[1], "[::1]:7001");
		e->u.visor.naddrs = 2;
		break;
	case HW_DISC_RELAY:
		strcpy(e->u.relay.addr, "relay.example:9000");
		e->u.relay.capacity = 0xa1b2c3d4;
		break;
	case HW_DISC_TRANSPORT:
		strcpy(e->u.tp.type, "tcp");
		memcpy(e->u.tp.edges[0], ids[0].pk, HW_PK_LEN);
		memcpy(e->u.tp.edges[1], ids[1].pk, HW_PK_LEN);
		hw_tp_id(ids[0].pk, ids[1].pk, "tcp", e->u.tp.id);
		e->u.tp.rtt_us = 0x00c0ffee;
		break;
	case HW_DISC_TRANSPORT_DEL:
		hw_tp_id(ids[0].pk, ids[1].pk, "tcp", e->u.tp_id);
		break;
	case HW_DISC_SERVICE:
		strcpy(e->u.svc.type, "socks");
		e->u.svc.port = 1080;
		break;
	case HW_DISC_SERVICE_DEL:
		strcpy(e->u.svc.type, "socks");
		break;
	}
	assert_int_equal(hw_disc_entry_sign(e, &ids[0]), 0);
}

/* ---- encoding ---- */

struct bytes {
	uint8_t b[HW_DISC_ENC_MAX];
	size_t n;
};

static void add(struct bytes *b, const void *d, size_t n)
{
	memcpy(b->b + b->n, d, n);
	b->n += n;
}

static void add_u8(struct bytes *b, uint8_t v)
{
	add(b, &v, 1);
}

static void add_str(struct bytes *b, const char *s)
{
	add_u8(b, (uint8_t)strlen(s));
	add(b, s, strlen(s));
}

static void add_header(struct bytes *b, uint8_t kind)
{
	static const uint8_t seq[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	static const uint8_t ts[8] = {0x11, 0x12, 0x13, 0x14,
				      0x15, 0x16, 0x17, 0x18};

	add(b, "HWD1", 4);
	add_u8(b, kind);
	add(b, ids[0].pk, HW_PK_LEN);
	add(b, seq, 8);
	add(b, ts, 8);
}

static void check_encoding(const struct hw_disc_entry *e,
			   const struct bytes *want)
{
	uint8_t out[HW_DISC_ENC_MAX];
	int n = hw_disc_entry_encode(e, out, sizeof(out));

	assert_int_equal(n, (int)want->n);
	assert_memory_equal(out, want->b, want->n);
	/* A buffer one byte short is refused, not overrun. */
	assert_true(hw_disc_entry_encode(e, out, want->n - 1) < 0);
}

static void test_encode_visor(void **state)
{
	struct hw_disc_entry e;
	struct bytes want = {0};

	make_entry(HW_DISC_VISOR, &e);
	add_header(&want, 1);
	add_str(&want, "0.1.0");
	add_u8(&want, 2);
	add(&want, ids[1].pk, HW_PK_LEN);
	add(&want, ids[2].pk, HW_PK_LEN);
	add_u8(&want, 2);
	add_str(&want, "1.2.3.4:7000");
	add_str(&want, "[::1]:7001");
	assert_int_equal(want.n, 53 + 6 + 1 + 64 + 1 + 13 + 11);
	check_encoding(&e, &want);
}

static void test_encode_transport(void **state)
{
	struct hw_disc_entry e;
	struct bytes want = {0};
	static const uint8_t rtt[4] = {0x00, 0xc0, 0xff, 0xee};

	make_entry(HW_DISC_TRANSPORT, &e);
	add_header(&want, 3);
	add(&want, e.u.tp.id, HW_DISC_TP_ID_LEN);
	add_str(&want, "tcp");
	add(&want, ids[0].pk, HW_PK_LEN);
	add(&want, ids[1].pk, HW_PK_LEN);
	add(&want, rtt, 4);
	assert_int_equal(want.n, 53 + 16 + 4 + 64 + 4);
	check_encoding(&e, &want);
}

static void test_encode_other_kinds(void **state)
{
	static const uint8_t cap[4] = {0xa1, 0xb2, 0xc3, 0xd4};
	static const uint8_t port[2] = {0x04, 0x38}; /* 1080 */
	struct hw_disc_entry e;
	struct bytes want;

	make_entry(HW_DISC_RELAY, &e);
	memset(&want, 0, sizeof(want));
	add_header(&want, 2);
	add_str(&want, "relay.example:9000");
	add(&want, cap, 4);
	check_encoding(&e, &want);

	make_entry(HW_DISC_TRANSPORT_DEL, &e);
	memset(&want, 0, sizeof(want));
	add_header(&want, 4);
	add(&want, e.u.tp_id, HW_DISC_TP_ID_LEN);
	check_encoding(&e, &want);

	make_entry(HW_DISC_SERVICE, &e);
	memset(&want, 0, sizeof(want));
	add_header(&want, 5);
	add_str(&want, "socks");
	add(&want, port, 2);
	check_encoding(&e, &want);

	make_entry(HW_DISC_SERVICE_DEL, &e);
	memset(&want, 0, sizeof(want));
	add_header(&want, 6);
	add_str(&want, "socks");
	check_encoding(&e, &want);
}

static void test_encode_bounds(void **state)
{
	uint8_t out[HW_DISC_ENC_MAX];
	struct hw_disc_entry e;

	/* The largest entry fits HW_DISC_ENC_MAX. */
	make_entry(HW_DISC_VISOR, &e);
	memset(e.u.visor.version, 'v', HW_DISC_STR_MAX);
	e.u.visor.version[HW_DISC_STR_MAX] = '\0';
	e.u.visor.nrelays = HW_DISC_MAX_RELAYS;
	e.u.visor.naddrs = HW_DISC_MAX_ADDRS;
	for (int i = 0; i < HW_DISC_MAX_ADDRS; i++) {
		memset(e.u.visor.addrs[i], 'a', HW_DISC_ADDR_MAX);
		e.u.visor.addrs[i][HW_DISC_ADDR_MAX] = '\0';
	}
	assert_int_equal(hw_disc_entry_encode(&e, out, sizeof(out)),
			 53 + 64 + 1 + 8 * 32 + 1 + 8 * 256);

	make_entry(HW_DISC_VISOR, &e);
	e.u.visor.nrelays = HW_DISC_MAX_RELAYS + 1;
	assert_int_equal(hw_disc_entry_encode(&e, out, sizeof(out)), -EINVAL);
	make_entry(HW_DISC_VISOR, &e);
	e.u.visor.naddrs = HW_DISC_MAX_ADDRS + 1;
	assert_int_equal(hw_disc_entry_encode(&e, out, sizeof(out)), -EINVAL);
	/* A string without its NUL inside its array. */
	make_entry(HW_DISC_SERVICE, &e);
	memset(e.u.svc.type, 'x', sizeof(e.u.svc.type));
	assert_int_equal(hw_disc_entry_encode(&e, out, sizeof(out)), -EINVAL);
	assert_int_equal(hw_disc_entry_verify(&e), HW_EAUTH);
	assert_null(hw_disc_entry_to_json(&e));
	make_entry(HW_DISC_SERVICE, &e);
	e.kind = 7;
	assert_int_equal(hw_disc_entry_encode(&e, out, sizeof(out)), -EINVAL);
}

/* ---- signatures ---- */

static void test_sign_verify(void **state)
{
	struct hw_disc_entry e;

	for (int k = HW_DISC_VISOR; k <= HW_DISC_SERVICE_DEL; k++) {
		make_entry(k, &e);
		assert_int_equal(hw_disc_entry_verify(&e), 0);
		/* Another key's signature is refused when signing... */
		assert_int_equal(hw_disc_entry_sign(&e, &ids[1]), -EINVAL);
		/* ...and does not verify when forged. */
		memcpy(e.signer, ids[1].pk, HW_PK_LEN);
		assert_int_equal(hw_disc_entry_verify(&e), HW_EAUTH);
		assert_int_equal(hw_disc_entry_sign(&e, &ids[1]), 0);
		assert_int_equal(hw_disc_entry_verify(&e), 0);
	}
}

/* Applies mutation i to e (one byte of one field); false past the last. */
static bool mutate(struct hw_disc_entry *e, int i)
{
	int m = 0;

#define MUT(stmt)                 \
	do {                      \
		if (i == m++) {   \
			stmt;     \
			return true; \
		}                 \
	} while (0)
	MUT(e->kind = e->kind == HW_DISC_VISOR ? HW_DISC_RELAY : HW_DISC_VISOR);
	MUT(e->signer[0] ^= 1);
	MUT(e->signer[31] ^= 0x80);
	MUT(e->seq ^= 1);
	MUT(e->seq ^= 1ull << 63);
	MUT(e->ts ^= 1);
	MUT(e->ts ^= 1ull << 56);
	MUT(e->sig[0] ^= 1);
	MUT(e->sig[63] ^= 0x40);
	switch (e->kind) {
	case HW_DISC_VISOR:
		MUT(e->u.visor.version[0] = 'x');
		MUT(e->u.visor.version[4] = '1');
		MUT(e->u.visor.version[5] = '1'; e->u.visor.version[6] = 0);
		MUT(e->u.visor.relays[0][0] ^= 1);
		MUT(e->u.visor.relays[1][31] ^= 1);
		MUT(e->u.visor.nrelays = 1);
		MUT(e->u.visor.addrs[0][0] = '2');
		MUT(e->u.visor.addrs[1][9] = '2');
		MUT(e->u.visor.naddrs = 1);
		break;
	case HW_DISC_RELAY:
		MUT(e->u.relay.addr[0] = 'R');
		MUT(e->u.relay.capacity ^= 1);
		MUT(e->u.relay.capacity ^= 1u << 31);
		break;
	case HW_DISC_TRANSPORT:
		MUT(e->u.tp.id[0] ^= 1);
		MUT(e->u.tp.id[15] ^= 1);
		MUT(e->u.tp.type[2] = 'd');
		MUT(e->u.tp.edges[0][5] ^= 1);
		MUT(e->u.tp.edges[1][5] ^= 1);
		MUT(e->u.tp.rtt_us ^= 1);
		MUT(e->u.tp.rtt_us ^= 1u << 24);
		break;
	case HW_DISC_TRANSPORT_DEL:
		MUT(e->u.tp_id[0] ^= 1);
		MUT(e->u.tp_id[15] ^= 0x80);
		break;
	case HW_DISC_SERVICE:
		MUT(e->u.svc.type[0] = 'x');
		MUT(e->u.svc.port ^= 1);
		MUT(e->u.svc.port ^= 1u << 15);
		break;
	case HW_DISC_SERVICE_DEL:
		MUT(e->u.svc.type[4] = 'x');
		MUT(e->u.svc.type[5] = 'x');
		break;
	}
#undef MUT
	return false;
}

static void test_any_change_breaks_verify(void **state)
{
	struct hw_disc_entry orig, e;
	int tried = 0;

	for (int k = HW_DISC_VISOR; k <= HW_DISC_SERVICE_DEL; k++) {
		make_entry(k, &orig);
		for (int i = 0;; i++) {
			e = orig;
			if (!mutate(&e, i))
				break;
			assert_int_equal(hw_disc_entry_verify(&e), HW_EAUTH);
			tried++;
		}
	}
	assert_true(tried > 40);
}

/* ---- JSON ---- */

static void assert_same(const struct hw_disc_entry *a,
			const struct hw_disc_entry *b)
{
	uint8_t ea[HW_DISC_ENC_MAX], eb[HW_DISC_ENC_MAX];
	int na = hw_disc_entry_encode(a, ea, sizeof(ea));
	int nb = hw_disc_entry_encode(b, eb, sizeof(eb));

	assert_true(na > 0);
	assert_int_equal(na, nb);
	assert_memory_equal(ea, eb, (size_t)na);
	assert_memory_equal(a->sig, b->sig, HW_SIG_LEN);
}

static void test_json_round_trip(void **state)
{
	struct hw_disc_entry e, back;
	char err[256];
	json_t *j;

	for (int k = HW_DISC_VISOR; k <= HW_DISC_SERVICE_DEL; k++) {
		make_entry(k, &e);
		e.seq = INT64_MAX; /* the largest JSON allows */
		e.ts = 1700000000;
		assert_int_equal(hw_disc_entry_sign(&e, &ids[0]), 0);
		j = hw_disc_entry_to_json(&e);
		assert_non_null(j);
		assert_int_equal(hw_disc_entry_from_json(&back, k, j, err,
							 sizeof(err)),
				 0);
		assert_same(&e, &back);
		assert_int_equal(hw_disc_entry_verify(&back), 0);
		json_decref(j);
	}
	/* Empty lists are fine. */
	make_entry(HW_DISC_VISOR, &e);
	e.u.visor.nrelays = e.u.visor.naddrs = 0;
	j = hw_disc_entry_to_json(&e);
	assert_non_null(j);
	assert_int_equal(
		hw_disc_entry_from_json(&back, HW_DISC_VISOR, j, err,
					sizeof(err)),
		0);
	assert_int_equal(back.u.visor.nrelays, 0);
	json_decref(j);
	/* A sequence number JSON cannot carry. */
	e.seq = (uint64_t)INT64_MAX + 1;
	assert_null(hw_disc_entry_to_json(&e));
}

static void test_json_form(void **state)
{
	struct hw_disc_entry e;
	char pk[HW_PK_HEXLEN + 1];
	json_t *j;

	make_entry(HW_DISC_TRANSPORT, &e);
	j = hw_disc_entry_to_json(&e);
	hw_pk_format(ids[0].pk, pk);
	assert_string_equal(json_string_value(json_object_get(j, "pk")), pk);
	assert_int_equal(json_integer_value(json_object_get(j, "seq")),
			 0x0102030405060708ll);
	assert_int_equal(json_integer_value(json_object_get(j, "rtt_us")),
			 0x00c0ffee);
	assert_string_equal(json_string_value(json_object_get(j, "type")),
			    "tcp");
	assert_int_equal(strlen(json_string_value(json_object_get(j, "id"))),
			 32);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "sig"))),
			 128);
	assert_int_equal(json_array_size(json_object_get(j, "edges")), 2);
	assert_int_equal(json_object_size(j), 8);
	json_decref(j);
}

/* Decodes the JSON of a valid entry of kind after edit; the decoder must
 * refuse it with a message containing want. */
static void refuse(enum hw_disc_kind kind, void (*edit)(json_t *j),
		   const char *want)
{
	struct hw_disc_entry e, back;
	char err[256];
	json_t *j;

	make_entry(kind, &e);
	j = hw_disc_entry_to_json(&e);
	assert_non_null(j);
	edit(j);
	err[0] = '\0';
	assert_int_equal(
		hw_disc_entry_from_json(&back, kind, j, err, sizeof(err)),
		-EINVAL);
	if (!strstr(err, want))
		fail_msg("message '%s' does not contain '%s'", err, want);
	json_decref(j);
}

static void set(json_t *j, const char *key, json_t *v)
{
	assert_int_equal(json_object_set_new(j, key, v), 0);
}

static void ed_unknown(json_t *j) { set(j, "extra", json_true()); }
static void ed_missing_ts(json_t *j) { json_object_del(j, "ts"); }
static void ed_missing_sig(json_t *j) { json_object_del(j, "sig"); }
static void ed_missing_addrs(json_t *j) { json_object_del(j, "addrs"); }
static void ed_bad_sig(json_t *j)
{
	char s[129];
	memset(s, 'z', 128);
	s[128] = '\0';
	set(j, "sig", json_string(s));
}
static void ed_short_sig(json_t *j) { set(j, "sig", json_string("abcd")); }
static void ed_bad_pk(json_t *j) { set(j, "pk", json_string("nothex")); }
static void ed_bad_id(json_t *j)
{
	set(j, "id", json_string("0123456789abcdef0123456789abcdeg"));
}
static void ed_bad_relay(json_t *j)
{
	json_t *r = json_object_get(j, "relays");
	json_array_append_new(r, json_string("x"));
}
static void ed_many_relays(json_t *j)
{
	json_t *r = json_object_get(j, "relays");
	while (json_array_size(r) <= HW_DISC_MAX_RELAYS)
		json_array_append(r, json_array_get(r, 0));
}
static void ed_many_addrs(json_t *j)
{
	json_t *a = json_object_get(j, "addrs");
	while (json_array_size(a) <= HW_DISC_MAX_ADDRS)
		json_array_append(a, json_array_get(a, 0));
}
static void ed_version_ctl(json_t *j)
{
	set(j, "version", json_string("0.1\n"));
}
static void ed_version_nul(json_t *j)
{
	set(j, "version", json_stringn("0.1\0x", 5));
}
static void ed_version_long(json_t *j)
{
	char s[HW_DISC_STR_MAX + 2];
	memset(s, 'v', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	set(j, "version", json_string(s));
}
static void ed_bad_addr(json_t *j)
{
	json_array_set_new(json_object_get(j, "addrs"), 1,
			   json_string("nope"));
}
static void ed_bad_port_addr(json_t *j)
{
	set(j, "addr", json_string("host:70000"));
}
static void ed_relays_not_list(json_t *j)
{
	set(j, "relays", json_string("x"));
}
static void ed_cap_big(json_t *j)
{
	set(j, "capacity", json_integer(4294967296ll));
}
static void ed_cap_real(json_t *j) { set(j, "capacity", json_real(1.0)); }
static void ed_seq_zero(json_t *j) { set(j, "seq", json_integer(0)); }
static void ed_seq_str(json_t *j) { set(j, "seq", json_string("5")); }
static void ed_ts_neg(json_t *j) { set(j, "ts", json_integer(-1)); }
static void ed_tp_id(json_t *j)
{
	set(j, "id", json_string("00000000000000000000000000000000"));
}
static void ed_tp_type(json_t *j)
{
	/* The ID was derived from "tcp": a different type does not match. */
	set(j, "type", json_string("relay"));
}
static void ed_tp_type_chars(json_t *j) { set(j, "type", json_string("TCP")); }
static void ed_not_edge(json_t *j)
{
	char a[HW_PK_HEXLEN + 1], b[HW_PK_HEXLEN + 1];
	uint8_t id[HW_DISC_TP_ID_LEN];
	char hex[33];

	hw_pk_format(ids[2].pk, a);
	hw_pk_format(ids[3].pk, b);
	set(j, "edges", json_pack("[s,s]", a, b));
	/* With a matching ID, only the signer is wrong. */
	hw_tp_id(ids[2].pk, ids[3].pk, "tcp", id);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", id[i]);
	set(j, "id", json_string(hex));
}
static void ed_same_edges(json_t *j)
{
	json_t *ed = json_object_get(j, "edges");
	json_array_set(ed, 1, json_array_get(ed, 0));
}
static void ed_three_edges(json_t *j)
{
	json_t *ed = json_object_get(j, "edges");
	json_array_append(ed, json_array_get(ed, 0));
}
static void ed_rtt_neg(json_t *j) { set(j, "rtt_us", json_integer(-5)); }
static void ed_port_zero(json_t *j) { set(j, "port", json_integer(0)); }
static void ed_port_big(json_t *j) { set(j, "port", json_integer(65536)); }
static void ed_type_empty(json_t *j) { set(j, "type", json_string("")); }
static void ed_weird_key(json_t *j) { set(j, "\x01k\xc3\xa9y", json_null()); }

static void test_json_refusals(void **state)
{
	refuse(HW_DISC_VISOR, ed_unknown, "extra: unknown key");
	refuse(HW_DISC_SERVICE_DEL, ed_unknown, "extra: unknown key");
	refuse(HW_DISC_VISOR, ed_weird_key, "?k??y: unknown key");
	refuse(HW_DISC_RELAY, ed_missing_ts, "ts: missing");
	refuse(HW_DISC_SERVICE, ed_missing_sig, "sig: missing");
	refuse(HW_DISC_VISOR, ed_missing_addrs, "addrs: missing");
	refuse(HW_DISC_VISOR, ed_bad_sig,
	       "sig: not a 128-character hex signature");
	refuse(HW_DISC_TRANSPORT_DEL, ed_short_sig,
	       "sig: not a 128-character hex signature");
	refuse(HW_DISC_RELAY, ed_bad_pk,
	       "pk: not a 64-character hex public key");
	refuse(HW_DISC_TRANSPORT_DEL, ed_bad_id,
	       "id: not a 32-character hex transport ID");
	refuse(HW_DISC_VISOR, ed_bad_relay,
	       "relays[2]: not a 64-character hex public key");
	refuse(HW_DISC_VISOR, ed_many_relays, "relays: more than 8 relays");
	refuse(HW_DISC_VISOR, ed_many_addrs, "addrs: more than 8 addresses");
	refuse(HW_DISC_VISOR, ed_relays_not_list, "relays: must be a list");
	refuse(HW_DISC_VISOR, ed_version_ctl,
	       "version: must be printable ASCII");
	refuse(HW_DISC_VISOR, ed_version_nul,
	       "version: must be printable ASCII");
	refuse(HW_DISC_VISOR, ed_version_long, "version: longer than 63");
	refuse(HW_DISC_VISOR, ed_bad_addr,
	       "addrs[1]: 'nope' is not HOST:PORT");
	refuse(HW_DISC_RELAY, ed_bad_port_addr,
	       "addr: 'host:70000' is not HOST:PORT");
	refuse(HW_DISC_RELAY, ed_cap_big,
	       "capacity: 4294967296 is out of range 0..4294967295");
	refuse(HW_DISC_RELAY, ed_cap_real, "capacity: must be an integer");
	refuse(HW_DISC_SERVICE, ed_seq_zero, "seq: 0 is out of range 1..");
	refuse(HW_DISC_SERVICE, ed_seq_str, "seq: must be an integer");
	refuse(HW_DISC_SERVICE, ed_ts_neg, "ts: -1 is out of range 0..");
	refuse(HW_DISC_TRANSPORT, ed_tp_id,
	       "id: not the ID of these edges and type");
	refuse(HW_DISC_TRANSPORT, ed_tp_type,
	       "id: not the ID of these edges and type");
	refuse(HW_DISC_TRANSPORT, ed_tp_type_chars, "type: 'TCP' is not");
	refuse(HW_DISC_TRANSPORT, ed_not_edge,
	       "pk: not an edge of the transport");
	refuse(HW_DISC_TRANSPORT, ed_same_edges,
	       "edges: both ends are the same key");
	refuse(HW_DISC_TRANSPORT, ed_three_edges,
	       "edges: must be a list of 2 public keys");
	refuse(HW_DISC_TRANSPORT, ed_rtt_neg, "rtt_us: -5 is out of range");
	refuse(HW_DISC_SERVICE, ed_port_zero, "port: 0 is out of range 1..65535");
	refuse(HW_DISC_SERVICE, ed_port_big, "port: 65536 is out of range");
	refuse(HW_DISC_SERVICE_DEL, ed_type_empty, "type: must not be empty");
}

static void test_json_not_object(void **state)
{
	struct hw_disc_entry e;
	char err[128];
	json_t *j = json_array();

	assert_int_equal(
		hw_disc_entry_from_json(&e, HW_DISC_VISOR, j, err, sizeof(err)),
		-EINVAL);
	assert_string_equal(err, "entry: must be a JSON object");
	assert_int_equal(hw_disc_entry_from_json(&e, 0, j, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "unknown kind"));
	/* No room for a message is fine too. */
	assert_int_equal(hw_disc_entry_from_json(&e, HW_DISC_VISOR, j, NULL,
						 0),
			 -EINVAL);
	json_decref(j);
}

/* A JSON entry for one kind is refused as another (keys differ). */
static void test_json_wrong_kind(void **state)
{
	struct hw_disc_entry e, back;
	char err[128];
	json_t *j;

	make_entry(HW_DISC_SERVICE, &e);
	j = hw_disc_entry_to_json(&e);
	assert_int_equal(hw_disc_entry_from_json(&back, HW_DISC_SERVICE_DEL,
						 j, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "port: unknown key");
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_visor),
		cmocka_unit_test(test_encode_transport),
		cmocka_unit_test(test_encode_other_kinds),
		cmocka_unit_test(test_encode_bounds),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_any_change_breaks_verify),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_json_form),
		cmocka_unit_test(test_json_refusals),
		cmocka_unit_test(test_json_not_object),
		cmocka_unit_test(test_json_wrong_kind),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
