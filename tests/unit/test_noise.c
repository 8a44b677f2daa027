/* Noise handshakes: every ChaChaPoly/BLAKE2b vector of noise-c for the
 * patterns we implement, then the state machine's refusals. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "crypto/noise.h"
#include "util/err.h"
#include "util/hex.h"

static json_t *vectors;

static int load_vectors(void **state)
{
	json_error_t err;
	vectors = json_load_file(HW_TEST_VECTORS "/noise.json", 0, &err);
	if (!vectors)
		fail_msg("noise.json: %s (line %d)", err.text, err.line);
	return 0;
}

static int free_vectors(void **state)
{
	json_decref(vectors);
	return 0;
}

/* Decodes a hex field of v into buf; returns its length (0 if absent). */
static size_t hexfield(json_t *v, const char *name, uint8_t *buf, size_t cap)
{
	json_t *f = json_object_get(v, name);
	const char *s;
	size_t len;

	if (!f)
		return 0;
	s = json_string_value(f);
	assert_non_null(s);
	len = strlen(s) / 2;
	assert_true(len <= cap);
	assert_int_equal(hw_hex_decode(s, strlen(s), buf, len), 0);
	return len;
}

static int pattern_of(const char *p, enum hw_noise_pattern *out)
{
	static const struct {
		const char *name;
		enum hw_noise_pattern p;
	} map[] = {{"NN", HW_NOISE_NN}, {"XK", HW_NOISE_XK},
		   {"KK", HW_NOISE_KK}, {"IK", HW_NOISE_IK},
		   {"XX", HW_NOISE_XX}};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(map[i].name, p)) {
			*out = map[i].p;
			return 1;
		}
	return 0;
}

static const char *str(json_t *v, const char *k)
{
	return json_string_value(json_object_get(v, k));
}

static void run_vector(json_t *v)
{
	enum hw_noise_pattern pattern = HW_NOISE_NN;
	uint8_t prologue[256], is[32], ie[32], irs[32], rs_[32], re[32], rrs[32];
	uint8_t buf[HW_NOISE_MAX_MSG], pt[HW_NOISE_MAX_MSG];
	uint8_t want[HW_NOISE_MAX_MSG], payload[HW_NOISE_MAX_MSG];
	uint8_t hh[HW_NOISE_HASHLEN];
	struct hw_noise_hs *init = NULL, *resp = NULL;
	struct hw_cipher *isend = NULL, *irecv = NULL, *rsend = NULL,
			 *rrecv = NULL;
	size_t plen, n, len, wlen;
	json_t *msgs;
	int has_is, has_irs, has_rs, has_rrs;

	assert_true(pattern_of(str(v, "pattern"), &pattern));
	plen = hexfield(v, "init_prologue", prologue, sizeof(prologue));
	has_is = hexfield(v, "init_static", is, 32) != 0;
	hexfield(v, "init_ephemeral", ie, 32);
	has_irs = hexfield(v, "init_remote_static", irs, 32) != 0;
	has_rs = hexfield(v, "resp_static", rs_, 32) != 0;
	hexfield(v, "resp_ephemeral", re, 32);
	has_rrs = hexfield(v, "resp_remote_static", rrs, 32) != 0;

	assert_int_equal(hw_noise_hs_new(&init, pattern, HW_NOISE_INITIATOR,
					 prologue, plen, has_is ? is : NULL,
					 has_irs ? irs : NULL),
			 0);
	assert_int_equal(hw_noise_hs_new(&resp, pattern, HW_NOISE_RESPONDER,
					 prologue, plen, has_rs ? rs_ : NULL,
					 has_rrs ? rrs : NULL),
			 0);
	hw_noise_hs_set_ephemeral_for_test(init, ie);
	hw_noise_hs_set_ephemeral_for_test(resp, re);

	msgs = json_object_get(v, "messages");
	for (size_t i = 0; i < json_array_size(msgs); i++) {
		json_t *m = json_array_get(msgs, i);
		int from_init = i % 2 == 0;
		struct hw_noise_hs *w = from_init ? init : resp;
		struct hw_noise_hs *r = from_init ? resp : init;

		plen = hexfield(m, "payload", payload, sizeof(payload));
		wlen = hexfield(m, "ciphertext", want, sizeof(want));
		if (hw_noise_hs_state(w) == HW_NOISE_WRITE) {
			assert_int_equal(hw_noise_hs_state(r), HW_NOISE_READ);
			assert_int_equal(hw_noise_hs_write(w, payload, plen,
							   buf, sizeof(buf),
							   &len),
					 0);
			assert_int_equal(len, wlen);
			assert_memory_equal(buf, want, wlen);
			assert_int_equal(hw_noise_hs_read(r, buf, len, pt,
							  sizeof(pt), &n),
					 0);
		} else {
			struct hw_cipher *s, *d;
			if (!isend) {
				assert_int_equal(hw_noise_hs_state(init),
						 HW_NOISE_SPLIT);
				assert_int_equal(hw_noise_hs_state(resp),
						 HW_NOISE_SPLIT);
				assert_memory_equal(hw_noise_hs_hash(init),
						    hw_noise_hs_hash(resp),
						    HW_NOISE_HASHLEN);
				assert_int_equal(
					hexfield(v, "handshake_hash", hh,
						 sizeof(hh)),
					HW_NOISE_HASHLEN);
				assert_memory_equal(hw_noise_hs_hash(init), hh,
						    HW_NOISE_HASHLEN);
				assert_int_equal(hw_noise_hs_split(init, &isend,
								   &irecv),
						 0);
				assert_int_equal(hw_noise_hs_split(resp, &rsend,
								   &rrecv),
						 0);
			}
			s = from_init ? isend : rsend;
			d = from_init ? rrecv : irecv;
			assert_int_equal(hw_cipher_encrypt(s, NULL, 0, payload,
							   plen, buf, &len),
					 0);
			assert_int_equal(len, wlen);
			assert_memory_equal(buf, want, wlen);
			assert_int_equal(
				hw_cipher_decrypt(d, NULL, 0, buf, len, pt, &n),
				0);
		}
		assert_int_equal(n, plen);
		assert_memory_equal(pt, payload, plen);
	}
	/* Every vector goes past the handshake into transport messages. */
	assert_non_null(isend);
	/* Each side ends up knowing the other's static key, if it has one. */
	if (has_is) {
		uint8_t pub[32];
		assert_int_equal(hw_noise_public_key(is, pub), 0);
		assert_non_null(hw_noise_hs_remote_static(resp));
		assert_memory_equal(hw_noise_hs_remote_static(resp), pub, 32);
	} else {
		assert_null(hw_noise_hs_remote_static(resp));
	}
	if (has_rs) {
		uint8_t pub[32];
		assert_int_equal(hw_noise_public_key(rs_, pub), 0);
		assert_non_null(hw_noise_hs_remote_static(init));
		assert_memory_equal(hw_noise_hs_remote_static(init), pub, 32);
	}
	hw_cipher_free(isend);
	hw_cipher_free(irecv);
	hw_cipher_free(rsend);
	hw_cipher_free(rrecv);
	hw_noise_hs_free(init);
	hw_noise_hs_free(resp);
}

static void test_vectors(void **state)
{
	json_t *list = json_object_get(vectors, "vectors");
	enum hw_noise_pattern p;
	int ran = 0;

	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *v = json_array_get(list, i);
		if (strcmp(str(v, "cipher"), "ChaChaPoly") ||
		    strcmp(str(v, "hash"), "BLAKE2b") ||
		    strcmp(str(v, "dh"), "25519") ||
		    !pattern_of(str(v, "pattern"), &p))
			continue;
		print_message("vector %s\n", str(v, "name"));
		run_vector(v);
		ran++;
	}
	/* NN, XK, XX, KK and IK with ChaChaPoly/BLAKE2b are in the file. */
	assert_int_equal(ran, 5);
}

/* Builds a fresh XK pair with random keys. */
struct pair {
	struct hw_noise_hs *i, *r;
	uint8_t is[32], rs[32], rs_pub[32], is_pub[32];
};

static void xk_pair(struct pair *p, const char *iprologue,
		    const char *rprologue)
{
	for (int k = 0; k < 32; k++) {
		p->is[k] = (uint8_t)(k + 1);
		p->rs[k] = (uint8_t)(0x80 + k);
	}
	assert_int_equal(hw_noise_public_key(p->rs, p->rs_pub), 0);
	assert_int_equal(hw_noise_public_key(p->is, p->is_pub), 0);
	assert_int_equal(hw_noise_hs_new(&p->i, HW_NOISE_XK,
					 HW_NOISE_INITIATOR,
					 (const uint8_t *)iprologue,
					 strlen(iprologue), p->is, p->rs_pub),
			 0);
	assert_int_equal(hw_noise_hs_new(&p->r, HW_NOISE_XK,
					 HW_NOISE_RESPONDER,
					 (const uint8_t *)rprologue,
					 strlen(rprologue), p->rs, NULL),
			 0);
}

static void pair_free(struct pair *p)
{
	hw_noise_hs_free(p->i);
	hw_noise_hs_free(p->r);
}

static void test_missing_keys(void **state)
{
	struct hw_noise_hs *hs = NULL;
	uint8_t k[32] = {1};
	assert_int_equal(hw_noise_hs_new(&hs, HW_NOISE_XK, HW_NOISE_INITIATOR,
					 NULL, 0, k, NULL),
			 -EINVAL);
	assert_int_equal(hw_noise_hs_new(&hs, HW_NOISE_KK, HW_NOISE_RESPONDER,
					 NULL, 0, NULL, k),
			 -EINVAL);
	assert_int_equal(hw_noise_hs_new(&hs, (enum hw_noise_pattern)99,
					 HW_NOISE_RESPONDER, NULL, 0, k, k),
			 -EINVAL);
	assert_null(hs);
}

static void test_out_of_order(void **state)
{
	struct pair p;
	uint8_t buf[256], pt[256];
	size_t len, n;

	xk_pair(&p, "x", "x");
	/* The responder cannot write first; the initiator cannot read. */
	assert_int_equal(hw_noise_hs_write(p.r, NULL, 0, buf, sizeof(buf),
					   &len),
			 HW_ESTATE);
	assert_int_equal(hw_noise_hs_read(p.i, buf, 48, pt, sizeof(pt), &n),
			 HW_ESTATE);
	/* Refused calls out of turn do not break the state machine. */
	assert_int_equal(hw_noise_hs_write(p.i, NULL, 0, buf, sizeof(buf),
					   &len),
			 0);
	assert_int_equal(hw_noise_hs_write(p.i, NULL, 0, buf, sizeof(buf),
					   &len),
			 HW_ESTATE);
	assert_int_equal(hw_noise_hs_read(p.r, buf, len, pt, sizeof(pt), &n),
			 0);
	/* Split before the end is refused. */
	struct hw_cipher *a, *b;
	assert_int_equal(hw_noise_hs_split(p.r, &a, &b), HW_ESTATE);
	assert_null(a);
	pair_free(&p);
}

static void test_short_and_long(void **state)
{
	struct pair p;
	static uint8_t buf[HW_NOISE_MAX_MSG + 10], pt[HW_NOISE_MAX_MSG];
	size_t len, n;

	xk_pair(&p, "x", "x");
	assert_int_equal(hw_noise_hs_write(p.i, NULL, 0, buf, sizeof(buf),
					   &len),
			 0);
	assert_int_equal(len, 48); /* e (32) + empty payload's tag (16) */
	assert_int_equal(hw_noise_hs_read(p.r, buf, 20, pt, sizeof(pt), &n),
			 HW_ESHORT);
	assert_int_equal(hw_noise_hs_state(p.r), HW_NOISE_FAILED);
	/* A failed state refuses everything after. */
	assert_int_equal(hw_noise_hs_read(p.r, buf, len, pt, sizeof(pt), &n),
			 HW_ESTATE);
	pair_free(&p);

	xk_pair(&p, "x", "x");
	assert_int_equal(hw_noise_hs_write(p.i, NULL, 0, buf, sizeof(buf),
					   &len),
			 0);
	assert_int_equal(hw_noise_hs_read(p.r, buf, HW_NOISE_MAX_MSG + 1, pt,
					  sizeof(pt), &n),
			 HW_ETOOBIG);
	pair_free(&p);

	/* A payload that would make the message longer than 65535. */
	xk_pair(&p, "x", "x");
	assert_int_equal(hw_noise_hs_write(p.i, pt, HW_NOISE_MAX_MSG - 40, buf,
					   sizeof(buf), &len),
			 HW_ETOOBIG);
	assert_int_equal(hw_noise_hs_state(p.i), HW_NOISE_FAILED);
	pair_free(&p);

	/* The largest payload that fits is accepted. */
	xk_pair(&p, "x", "x");
	assert_int_equal(hw_noise_hs_write(p.i, pt, HW_NOISE_MAX_MSG - 48, buf,
					   sizeof(buf), &len),
			 0);
	assert_int_equal(len, HW_NOISE_MAX_MSG);
	assert_int_equal(hw_noise_hs_read(p.r, buf, len, pt, sizeof(pt), &n),
			 0);
	pair_free(&p);
}

static void test_tampered(void **state)
{
	struct pair p;
	uint8_t buf[256], pt[256];
	size_t len, n;

	xk_pair(&p, "x", "x");
	assert_int_equal(hw_noise_hs_write(p.i, (const uint8_t *)"hi", 2, buf,
					   sizeof(buf), &len),
			 0);
	buf[len - 1] ^= 1;
	assert_int_equal(hw_noise_hs_read(p.r, buf, len, pt, sizeof(pt), &n),
			 HW_EAUTH);
	assert_int_equal(hw_noise_hs_state(p.r), HW_NOISE_FAILED);
	pair_free(&p);
}

static void test_prologue_mismatch(void **state)
{
	struct pair p;
	uint8_t buf[256], pt[256];
	size_t len, n;

	/* A handshake for one purpose cannot be replayed into another. */
	xk_pair(&p, "hopwire/1 transport", "hopwire/1 relay");
	assert_int_equal(hw_noise_hs_write(p.i, NULL, 0, buf, sizeof(buf),
					   &len),
			 0);
	assert_int_equal(hw_noise_hs_read(p.r, buf, len, pt, sizeof(pt), &n),
			 HW_EAUTH);
	pair_free(&p);
}

static void test_wrong_responder_key(void **state)
{
	struct pair p;
	uint8_t buf[256], pt[256], other[32];
	size_t len, n;

	/* The initiator believes in another responder key. */
	xk_pair(&p, "x", "x");
	hw_noise_hs_free(p.i);
	for (int k = 0; k < 32; k++)
		other[k] = (uint8_t)(0x40 + k);
	assert_int_equal(hw_noise_public_key(other, other), 0);
	assert_int_equal(hw_noise_hs_new(&p.i, HW_NOISE_XK, HW_NOISE_INITIATOR,
					 (const uint8_t *)"x", 1, p.is, other),
			 0);
	assert_int_equal(hw_noise_hs_write(p.i, NULL, 0, buf, sizeof(buf),
					   &len),
			 0);
	assert_int_equal(hw_noise_hs_read(p.r, buf, len, pt, sizeof(pt), &n),
			 HW_EAUTH);
	pair_free(&p);
}

static void test_low_order_point(void **state)
{
	struct pair p;
	uint8_t buf[256], pt[256];
	size_t len, n;

	/* An all-zero ephemeral gives an all-zero DH: refused. */
	xk_pair(&p, "x", "x");
	memset(buf, 0, 48);
	assert_int_equal(hw_noise_hs_read(p.r, buf, 48, pt, sizeof(pt), &n),
			 HW_EAUTH);
	pair_free(&p);
	(void)len;
}

static void test_full_xk_and_remote_key(void **state)
{
	struct pair p;
	uint8_t buf[256], pt[256];
	struct hw_cipher *is, *ir, *rs, *rr;
	size_t len, n;

	xk_pair(&p, "x", "x");
	assert_null(hw_noise_hs_remote_static(p.r));
	assert_int_equal(hw_noise_hs_write(p.i, NULL, 0, buf, 256, &len), 0);
	assert_int_equal(hw_noise_hs_read(p.r, buf, len, pt, 256, &n), 0);
	assert_int_equal(hw_noise_hs_write(p.r, NULL, 0, buf, 256, &len), 0);
	assert_int_equal(hw_noise_hs_read(p.i, buf, len, pt, 256, &n), 0);
	assert_int_equal(hw_noise_hs_write(p.i, (const uint8_t *)"id", 2, buf,
					   256, &len),
			 0);
	assert_int_equal(len, 32 + 16 + 2 + 16);
	assert_int_equal(hw_noise_hs_read(p.r, buf, len, pt, 256, &n), 0);
	assert_memory_equal(pt, "id", 2);
	/* The responder learned the initiator's static key. */
	assert_memory_equal(hw_noise_hs_remote_static(p.r), p.is_pub, 32);
	assert_int_equal(hw_noise_hs_split(p.i, &is, &ir), 0);
	assert_int_equal(hw_noise_hs_split(p.r, &rs, &rr), 0);
	assert_int_equal(hw_noise_hs_state(p.r), HW_NOISE_DONE);
	struct hw_cipher *x, *y;
	assert_int_equal(hw_noise_hs_split(p.r, &x, &y), HW_ESTATE);
	assert_null(x);
	assert_null(y);
	assert_int_equal(hw_cipher_encrypt(is, NULL, 0, (const uint8_t *)"abc",
					   3, buf, &len),
			 0);
	assert_int_equal(hw_cipher_decrypt(rr, NULL, 0, buf, len, pt, &n), 0);
	assert_memory_equal(pt, "abc", 3);
	hw_cipher_free(is);
	hw_cipher_free(ir);
	hw_cipher_free(rs);
	hw_cipher_free(rr);
	pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_missing_keys),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_short_and_long),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_prologue_mismatch),
		cmocka_unit_test(test_wrong_responder_key),
		cmocka_unit_test(test_low_order_point),
		cmocka_unit_test(test_full_xk_and_remote_key),
	};
	return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
