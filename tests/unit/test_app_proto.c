#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sdk/proto.h"
#include "util/err.h"

#define PK_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define PK_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

#define B(s) (const uint8_t *)(s), strlen(s)

/* Asserts that rc is -EINVAL and err starts with want. */
static void expect_err(int rc, const char *err, const char *want)
{
	if (rc != -EINVAL || strncmp(err, want, strlen(want)))
		fail_msg("rc %d, err '%s', wanted '%s'", rc, err, want);
}

static void test_frame_next(void **state)
{
	static uint8_t big[HW_APP_FRAME_MAX + 3];
	uint8_t buf[16] = {0x00, 0x05, 0x03, 0x07, 'a', 'b', 'c',
			   0x00, 0x02, 0xff, 0x09};
	struct hw_app_frame f;
	size_t used = 0;

	/* Partial: nothing, half a length, a header without its body. */
	for (size_t n = 0; n < 7; n++)
		assert_int_equal(hw_app_frame_next(buf, n, &f, &used), 0);
	assert_int_equal(hw_app_frame_next(buf, 7, &f, &used), 1);
	assert_int_equal(used, 7);
	assert_int_equal(f.type, HW_APP_SEND);
	assert_int_equal(f.id, 7);
	assert_int_equal(f.len, 3);
	assert_ptr_equal(f.body, buf + 4);
	/* The next frame has an empty body (length 2). */
	assert_int_equal(hw_app_frame_next(buf + 7, 3, &f, &used), 0);
	assert_int_equal(hw_app_frame_next(buf + 7, 4, &f, &used), 1);
	assert_int_equal(used, 4);
	assert_int_equal(f.type, HW_APP_SUCCESS);
	assert_int_equal(f.id, 9);
	assert_int_equal(f.len, 0);

	/* A length below 2 is fatal as soon as the length is there. */
	buf[0] = 0;
	buf[1] = 1;
	assert_int_equal(hw_app_frame_next(buf, 2, &f, &used), HW_EPROTO);
	buf[1] = 0;
	assert_int_equal(hw_app_frame_next(buf, 2, &f, &used), HW_EPROTO);
	assert_int_equal(hw_app_frame_next(buf, 1, &f, &used), 0);

	/* The largest frame. */
	memset(big, 'x', sizeof(big));
	big[0] = 0xff;
	big[1] = 0xff;
	assert_int_equal(
		hw_app_frame_next(big, HW_APP_FRAME_MAX - 1, &f, &used), 0);
	assert_int_equal(hw_app_frame_next(big, sizeof(big), &f, &used), 1);
	assert_int_equal(used, HW_APP_FRAME_MAX);
	assert_int_equal(f.len, HW_APP_BODY_MAX);
}

static void test_frame_header(void **state)
{
	uint8_t hdr[HW_APP_HDR];

	assert_int_equal(hw_app_frame_header(hdr, HW_APP_INIT, 0, 0), 0);
	assert_memory_equal(hdr, "\x00\x02\x00\x00", 4);
	assert_int_equal(
		hw_app_frame_header(hdr, HW_APP_CLOSE, 200, HW_APP_BODY_MAX),
		0);
	assert_memory_equal(hdr, "\xff\xff\x04\xc8", 4);
	assert_int_equal(hw_app_frame_header(hdr, HW_APP_CLOSE, 1,
					     HW_APP_BODY_MAX + 1),
			 HW_ETOOBIG);
}

static void test_frame_json(void **state)
{
	uint8_t *out = NULL;
	size_t len = 0;
	json_t *j;
	char *big;

	assert_int_equal(hw_app_frame_json(HW_APP_SUCCESS, 3, NULL, &out,
					   &len),
			 0);
	assert_int_equal(len, 4);
	assert_memory_equal(out, "\x00\x02\xff\x03", 4);
	free(out);

	j = json_pack("{s:s, s:i}", "pk", PK_A, "port", 10);
	assert_int_equal(hw_app_frame_json(HW_APP_CREATE_LOOP, 1, j, &out,
					   &len),
			 0);
	{
		const char *want =
			"{\"pk\":\"" PK_A "\",\"port\":10}";
		assert_int_equal(len, 4 + strlen(want));
		assert_int_equal(out[0] << 8 | out[1], strlen(want) + 2);
		assert_int_equal(out[2], HW_APP_CREATE_LOOP);
		assert_int_equal(out[3], 1);
		assert_memory_equal(out + 4, want, strlen(want));
	}
	free(out);
	json_decref(j);

	/* A body over the limit. */
	big = malloc(70000);
	memset(big, 'a', 69999);
	big[69999] = '\0';
	j = json_pack("{s:s}", "error", big);
	out = (uint8_t *)"sentinel";
	assert_int_equal(hw_app_frame_json(HW_APP_FAILURE, 1, j, &out, &len),
			 HW_ETOOBIG);
	assert_null(out);
	json_decref(j);
	free(big);
}

static void test_type_name(void **state)
{
	assert_string_equal(hw_app_type_name(0x00), "Init");
	assert_string_equal(hw_app_type_name(0x01), "CreateLoop");
	assert_string_equal(hw_app_type_name(0x02), "ConfirmLoop");
	assert_string_equal(hw_app_type_name(0x03), "Send");
	assert_string_equal(hw_app_type_name(0x04), "Close");
	assert_string_equal(hw_app_type_name(0xfe), "ResponseFailure");
	assert_string_equal(hw_app_type_name(0xff), "ResponseSuccess");
	assert_null(hw_app_type_name(0x05));
	assert_null(hw_app_type_name(0x80));
}

static void test_pk(void **state)
{
	uint8_t pk[HW_APP_PK_LEN], again[HW_APP_PK_LEN];
	char hex[2 * HW_APP_PK_LEN + 1];

	assert_int_equal(hw_app_pk_parse(PK_A, pk), 0);
	assert_int_equal(pk[0], 0x00);
	assert_int_equal(pk[5], 0x55);
	assert_int_equal(pk[31], 0xff);
	hw_app_pk_hex(pk, hex);
	assert_string_equal(hex, PK_A);
	/* Upper case in, lower case out. */
	assert_int_equal(
		hw_app_pk_parse("00112233445566778899AABBCCDDEEFF00112233445566"
				"778899AaBbCcDdEeFf",
				again),
		0);
	assert_memory_equal(pk, again, HW_APP_PK_LEN);
	assert_int_equal(hw_app_pk_parse(PK_A "0", pk), -EINVAL);
	assert_int_equal(hw_app_pk_parse(PK_A + 1, pk), -EINVAL);
	assert_int_equal(hw_app_pk_parse("", pk), -EINVAL);
	assert_int_equal(hw_app_pk_parse(NULL, pk), -EINVAL);
	assert_int_equal(
		hw_app_pk_parse("g0112233445566778899aabbccddeeff00112233445566"
				"778899aabbccddeeff",
				pk),
		-EINVAL);
	assert_int_equal(
		hw_app_pk_parse(" 0112233445566778899aabbccddeeff00112233445566"
				"778899aabbccddeeff",
				pk),
		-EINVAL);
}

static void test_parse_init(void **state)
{
	struct hw_app_init in;
	char err[HW_APP_ERROR_MAX];
	char name65[128];

	assert_int_equal(hw_app_parse_init(B("{\"app-name\":\"chat\"}"), &in,
					   err, sizeof(err)),
			 0);
	assert_string_equal(in.name, "chat");
	assert_string_equal(in.version, "");
	assert_string_equal(in.protocol, "");
	assert_int_equal(in.port, 0);
	assert_int_equal(in.ext, 0);
	assert_int_equal(in.extended, 0);

	assert_int_equal(
		hw_app_parse_init(
			B("{\"app-name\":\"hello\",\"app-version\":\"1.2\","
			  "\"protocol-version\":\"0.0.1\",\"port\":10,"
			  "\"extensions\":[\"future\",\"loop-fd\"],"
			  "\"other\":{\"x\":[1]}}"),
			&in, err, sizeof(err)),
		0);
	assert_string_equal(in.name, "hello");
	assert_string_equal(in.version, "1.2");
	assert_string_equal(in.protocol, "0.0.1");
	assert_int_equal(in.port, 10);
	assert_int_equal(in.ext, HW_APP_EXT_LOOP_FD);
	assert_int_equal(in.extended, 1);

	/* "extensions" alone makes it extended; unknown names are ignored;
	 * null is an empty list (Go's nil). */
	assert_int_equal(hw_app_parse_init(B("{\"app-name\":\"a\","
					     "\"extensions\":[\"x\"]}"),
					   &in, err, sizeof(err)),
			 0);
	assert_int_equal(in.ext, 0);
	assert_int_equal(in.extended, 1);
	assert_int_equal(hw_app_parse_init(B("{\"app-name\":\"a\","
					     "\"extensions\":null}"),
					   &in, err, sizeof(err)),
			 0);
	assert_int_equal(in.extended, 1);
	assert_int_equal(hw_app_parse_init(B("{\"app-name\":\"a\","
					     "\"port\":65535}"),
					   &in, err, sizeof(err)),
			 0);
	assert_int_equal(in.port, 65535);

	/* 64 bytes is the longest name. */
	memset(name65, 'n', 64);
	snprintf(name65 + 64, sizeof(name65) - 64, "\"}");
	{
		char body[160];
		snprintf(body, sizeof(body), "{\"app-name\":\"%s", name65);
		assert_int_equal(
			hw_app_parse_init(B(body), &in, err, sizeof(err)), 0);
		assert_int_equal(strlen(in.name), 64);
		snprintf(body, sizeof(body), "{\"app-name\":\"n%s", name65);
		expect_err(hw_app_parse_init(B(body), &in, err, sizeof(err)),
			   err, "Init: app-name: must be 1..64 bytes");
	}

	expect_err(hw_app_parse_init((const uint8_t *)"", 0, &in, err,
				     sizeof(err)),
		   err, "Init: empty body");
	expect_err(hw_app_parse_init(B("{\"app-name\":"), &in, err,
				     sizeof(err)),
		   err, "Init: not JSON");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\"} x"), &in, err,
				     sizeof(err)),
		   err, "Init: not JSON");
	expect_err(hw_app_parse_init(B("[\"a\"]"), &in, err, sizeof(err)),
		   err, "Init: body must be a JSON object");
	expect_err(hw_app_parse_init(B("{}"), &in, err, sizeof(err)), err,
		   "Init: app-name: missing");
	expect_err(hw_app_parse_init(B("{\"app-name\":7}"), &in, err,
				     sizeof(err)),
		   err, "Init: app-name: must be a string");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"\"}"), &in, err,
				     sizeof(err)),
		   err, "Init: app-name: must be 1..64 bytes");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\\nb\"}"), &in, err,
				     sizeof(err)),
		   err, "Init: app-name: must not hold control characters");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\\u0000b\"}"), &in,
				     err, sizeof(err)),
		   err, "Init: not JSON");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\","
				       "\"app-version\":[]}"),
				     &in, err, sizeof(err)),
		   err, "Init: app-version: must be a string");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\","
				       "\"protocol-version\":\"\"}"),
				     &in, err, sizeof(err)),
		   err, "Init: protocol-version: must be 1..64 bytes");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\",\"port\":0}"), &in,
				     err, sizeof(err)),
		   err, "Init: port: must be a whole number 1..65535");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\",\"port\":65536}"),
				     &in, err, sizeof(err)),
		   err, "Init: port: must be a whole number 1..65535");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\",\"port\":-1}"),
				     &in, err, sizeof(err)),
		   err, "Init: port: must be a whole number 1..65535");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\",\"port\":\"10\"}"),
				     &in, err, sizeof(err)),
		   err, "Init: port: must be a whole number 1..65535");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\",\"port\":10.0}"),
				     &in, err, sizeof(err)),
		   err, "Init: port: must be a whole number 1..65535");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\",\"port\":null}"),
				     &in, err, sizeof(err)),
		   err, "Init: port: must be a whole number 1..65535");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\","
				       "\"extensions\":\"loop-fd\"}"),
				     &in, err, sizeof(err)),
		   err, "Init: extensions: must be a list of strings");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\","
				       "\"extensions\":[\"loop-fd\",1]}"),
				     &in, err, sizeof(err)),
		   err, "Init: extensions[1]: must be a string");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\","
				       "\"app-name\":\"b\"}"),
				     &in, err, sizeof(err)),
		   err, "Init: not JSON: duplicate object key");
	expect_err(hw_app_parse_init(B("{\"app-name\":\"\xff\"}"), &in, err,
				     sizeof(err)),
		   err, "Init: not JSON");
	/* A failure leaves nothing half filled. */
	assert_string_equal(in.name, "");
}

static void test_depth(void **state)
{
	struct hw_app_init in;
	char err[HW_APP_ERROR_MAX];
	size_t n = 100000, k = 0;
	char *deep = malloc(n);

	/* Far deeper than jansson's own limit; refused by the scan. */
	k += (size_t)snprintf(deep, n, "{\"app-name\":\"a\",\"x\":");
	while (k < n / 2)
		deep[k++] = '[';
	assert_true(k < n);
	expect_err(hw_app_parse_init((uint8_t *)deep, k, &in, err,
				     sizeof(err)),
		   err, "Init: JSON nested more than 16 deep");
	free(deep);
	/* Brackets inside strings do not count; 16 levels pass. */
	assert_int_equal(
		hw_app_parse_init(B("{\"app-name\":\"[[[[[[[[[[[[[[[[[[[[\\\"[\","
				    "\"x\":[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]}"),
				  &in, err, sizeof(err)),
		0);
	expect_err(hw_app_parse_init(B("{\"app-name\":\"a\","
				       "\"x\":[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]}"),
				     &in, err, sizeof(err)),
		   err, "Init: JSON nested more than 16 deep");
	expect_err(hw_app_parse_init((const uint8_t *)"{}", HW_APP_BODY_MAX + 1,
				     &in, err, sizeof(err)),
		   err, "Init: body of 65534 bytes is over the 65533 limit");
}

static void test_parse_addr(void **state)
{
	struct hw_app_addr a;
	char err[HW_APP_ERROR_MAX];
	uint8_t pk[HW_APP_PK_LEN];

	assert_int_equal(hw_app_parse_addr(B("{\"pk\":\"" PK_A "\","
					     "\"port\":7}"),
					   &a, err, sizeof(err)),
			 0);
	hw_app_pk_parse(PK_A, pk);
	assert_memory_equal(a.pk, pk, HW_APP_PK_LEN);
	assert_int_equal(a.port, 7);
	assert_int_equal(hw_app_parse_addr(B("{\"port\":1,\"x\":1,\"pk\":\"" PK_B
					     "\"}"),
					   &a, err, sizeof(err)),
			 0);
	assert_int_equal(a.port, 1);

	expect_err(hw_app_parse_addr(B("{\"port\":7}"), &a, err, sizeof(err)),
		   err, "CreateLoop: pk: missing");
	expect_err(hw_app_parse_addr(B("{\"pk\":\"abc\",\"port\":7}"), &a, err,
				     sizeof(err)),
		   err, "CreateLoop: pk: must be a public key");
	expect_err(hw_app_parse_addr(B("{\"pk\":\"" PK_A "00\",\"port\":7}"),
				     &a, err, sizeof(err)),
		   err, "CreateLoop: pk: must be a public key");
	expect_err(hw_app_parse_addr(B("{\"pk\":\"x0112233445566778899aabbccdde"
				       "eff00112233445566778899aabbccddeeff\","
				       "\"port\":7}"),
				     &a, err, sizeof(err)),
		   err, "CreateLoop: pk: must be a public key");
	expect_err(hw_app_parse_addr(B("{\"pk\":12,\"port\":7}"), &a, err,
				     sizeof(err)),
		   err, "CreateLoop: pk: must be a public key");
	expect_err(hw_app_parse_addr(B("{\"pk\":\"" PK_A "\"}"), &a, err,
				     sizeof(err)),
		   err, "CreateLoop: port: missing");
	expect_err(hw_app_parse_addr(B("{\"pk\":\"" PK_A "\",\"port\":0}"), &a,
				     err, sizeof(err)),
		   err, "CreateLoop: port: must be a whole number 1..65535");
	expect_err(hw_app_parse_addr(B("{\"pk\":\"" PK_A "\",\"port\":1e3}"),
				     &a, err, sizeof(err)),
		   err, "CreateLoop: port: must be a whole number 1..65535");
	expect_err(hw_app_parse_addr(B("{\"pk\":\"" PK_A "\",\"port\":"
				       "99999999999999999999999}"),
				     &a, err, sizeof(err)),
		   err, "CreateLoop: not JSON");
	expect_err(hw_app_parse_addr(B("[]"), &a, err, sizeof(err)), err,
		   "CreateLoop: body must be a JSON object");
	expect_err(hw_app_parse_addr(B("null"), &a, err, sizeof(err)), err,
		   "CreateLoop: not JSON");
}

static void test_parse_confirm(void **state)
{
	struct hw_app_addr l, r;
	char err[HW_APP_ERROR_MAX];
	char hex[2 * HW_APP_PK_LEN + 1];

	assert_int_equal(hw_app_parse_confirm(
				 B("[{\"pk\":\"" PK_A "\",\"port\":10},"
				   "{\"pk\":\"" PK_B "\",\"port\":49152}]"),
				 &l, &r, err, sizeof(err)),
			 0);
	hw_app_pk_hex(l.pk, hex);
	assert_string_equal(hex, PK_A);
	assert_int_equal(l.port, 10);
	hw_app_pk_hex(r.pk, hex);
	assert_string_equal(hex, PK_B);
	assert_int_equal(r.port, 49152);

	expect_err(hw_app_parse_confirm(B("{\"pk\":\"" PK_A "\",\"port\":1}"),
					&l, &r, err, sizeof(err)),
		   err, "ConfirmLoop: body must be a list of two addresses");
	expect_err(hw_app_parse_confirm(B("[{\"pk\":\"" PK_A "\",\"port\":1}]"),
					&l, &r, err, sizeof(err)),
		   err, "ConfirmLoop: body must be a list of two addresses");
	expect_err(hw_app_parse_confirm(B("[{},{},{}]"), &l, &r, err,
					sizeof(err)),
		   err, "ConfirmLoop: body must be a list of two addresses");
	expect_err(hw_app_parse_confirm(B("[1,{\"pk\":\"" PK_A "\",\"port\":1}]"),
					&l, &r, err, sizeof(err)),
		   err, "ConfirmLoop: [0]: must be an object");
	expect_err(hw_app_parse_confirm(B("[{\"pk\":\"" PK_A "\",\"port\":1},"
					  "{\"pk\":\"" PK_A "\"}]"),
					&l, &r, err, sizeof(err)),
		   err, "ConfirmLoop: [1].port: missing");
	expect_err(hw_app_parse_confirm(B("[{\"pk\":\"zz\",\"port\":1},"
					  "{\"pk\":\"" PK_A "\",\"port\":1}]"),
					&l, &r, err, sizeof(err)),
		   err, "ConfirmLoop: [0].pk: must be a public key");
}

static const char *send_body(const char *payload)
{
	static char body[512];

	snprintf(body, sizeof(body),
		 "{\"addr\":{\"port\":49152,\"remote\":{\"pk\":\"" PK_B
		 "\",\"port\":10}},\"payload\":%s}",
		 payload);
	return body;
}

static void test_parse_send(void **state)
{
	struct hw_app_loop_addr a;
	char err[HW_APP_ERROR_MAX];
	uint8_t buf[64];
	uint8_t pk[HW_APP_PK_LEN];
	size_t n = 99;

	assert_int_equal(hw_app_parse_send(B(send_body("\"cGluZw==\"")), &a,
					   buf, sizeof(buf), &n, err,
					   sizeof(err)),
			 0);
	assert_int_equal(n, 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(a.port, 49152);
	assert_int_equal(a.remote.port, 10);
	hw_app_pk_parse(PK_B, pk);
	assert_memory_equal(a.remote.pk, pk, HW_APP_PK_LEN);

	/* Empty payloads: "" and null (Go's nil []byte). */
	assert_int_equal(hw_app_parse_send(B(send_body("\"\"")), &a, buf,
					   sizeof(buf), &n, err, sizeof(err)),
			 0);
	assert_int_equal(n, 0);
	assert_int_equal(hw_app_parse_send(B(send_body("null")), &a, buf, 0,
					   &n, err, sizeof(err)),
			 0);
	assert_int_equal(n, 0);
	/* The cap is exact. */
	assert_int_equal(hw_app_parse_send(B(send_body("\"cGluZw==\"")), &a,
					   buf, 4, &n, err, sizeof(err)),
			 0);
	expect_err(hw_app_parse_send(B(send_body("\"cGluZw==\"")), &a, buf, 3,
				     &n, err, sizeof(err)),
		   err, "Send: payload: 4 bytes is more than the 3 this side "
			"takes");
	assert_int_equal(n, 0);

	static const char *const bad64[] = {
		"\"A\"",	"\"AB\"",      "\"AB=\"",    "\"A===\"",
		"\"AB=C\"",	"\"=AAA\"",    "\"AB==AB==\"", "\"AB*=\"",
		"\"AB\\nC\"",	"\"AB==\\n\"", "\"Zg==Zg==\"", "\"AB==\"",
		"\"AAB=\"",	"\"Zh==\"",    "\"Zm9=\"",   "\"Zm9v \"",
		"\"Zm9v-_8A\"", "\"====\"",    "\"Zm==\"",
	};
	for (size_t i = 0; i < sizeof(bad64) / sizeof(bad64[0]); i++)
		expect_err(hw_app_parse_send(B(send_body(bad64[i])), &a, buf,
					     sizeof(buf), &n, err,
					     sizeof(err)),
			   err, "Send: payload: not base64");
	expect_err(hw_app_parse_send(B(send_body("12")), &a, buf, sizeof(buf),
				     &n, err, sizeof(err)),
		   err, "Send: payload: must be a string");
	expect_err(hw_app_parse_send(B("{\"addr\":{\"port\":1,\"remote\":{"
				       "\"pk\":\"" PK_B "\",\"port\":10}}}"),
				     &a, buf, sizeof(buf), &n, err,
				     sizeof(err)),
		   err, "Send: payload: missing");
	expect_err(hw_app_parse_send(B("{\"payload\":\"\"}"), &a, buf,
				     sizeof(buf), &n, err, sizeof(err)),
		   err, "Send: addr: missing");
	expect_err(hw_app_parse_send(B("{\"addr\":[],\"payload\":\"\"}"), &a,
				     buf, sizeof(buf), &n, err, sizeof(err)),
		   err, "Send: addr: must be an object");
	expect_err(hw_app_parse_send(B("{\"addr\":{\"port\":0,\"remote\":{"
				       "\"pk\":\"" PK_B "\",\"port\":10}},"
				       "\"payload\":\"\"}"),
				     &a, buf, sizeof(buf), &n, err,
				     sizeof(err)),
		   err, "Send: addr.port: must be a whole number 1..65535");
	expect_err(hw_app_parse_send(B("{\"addr\":{\"port\":1},"
				       "\"payload\":\"\"}"),
				     &a, buf, sizeof(buf), &n, err,
				     sizeof(err)),
		   err, "Send: addr.remote: missing");
	expect_err(hw_app_parse_send(B("{\"addr\":{\"port\":1,\"remote\":7},"
				       "\"payload\":\"\"}"),
				     &a, buf, sizeof(buf), &n, err,
				     sizeof(err)),
		   err, "Send: addr.remote: must be an object");
	expect_err(hw_app_parse_send(B("{\"addr\":{\"port\":1,\"remote\":{"
				       "\"pk\":\"" PK_B "\"}},"
				       "\"payload\":\"\"}"),
				     &a, buf, sizeof(buf), &n, err,
				     sizeof(err)),
		   err, "Send: addr.remote.port: missing");
	expect_err(hw_app_parse_send(B("{\"addr\":{\"port\":1,\"remote\":{"
				       "\"pk\":\"nope\",\"port\":3}},"
				       "\"payload\":\"\"}"),
				     &a, buf, sizeof(buf), &n, err,
				     sizeof(err)),
		   err, "Send: addr.remote.pk: must be a public key");
}

/* Builds a Send with hw_app_frame_send and parses it back. */
static void send_roundtrip(const uint8_t *payload, size_t len,
			   const char *want_b64)
{
	struct hw_app_loop_addr a = {.port = 65535, .remote = {.port = 1}};
	struct hw_app_loop_addr back;
	struct hw_app_frame f;
	char err[HW_APP_ERROR_MAX];
	uint8_t *out = NULL, *dec = malloc(len + 1);
	size_t outlen, used, n;
	json_t *j;

	hw_app_pk_parse(PK_A, a.remote.pk);
	assert_int_equal(hw_app_frame_send(42, &a, payload, len, &out,
					   &outlen),
			 0);
	assert_int_equal(hw_app_frame_next(out, outlen, &f, &used), 1);
	assert_int_equal(used, outlen);
	assert_int_equal(f.type, HW_APP_SEND);
	assert_int_equal(f.id, 42);
	/* Real JSON, as jansson reads it. */
	j = json_loadb((const char *)f.body, f.len, JSON_REJECT_DUPLICATES,
		       NULL);
	assert_non_null(j);
	if (want_b64)
		assert_string_equal(
			json_string_value(json_object_get(j, "payload")),
			want_b64);
	json_decref(j);
	assert_int_equal(hw_app_parse_send(f.body, f.len, &back, dec, len, &n,
					   err, sizeof(err)),
			 0);
	assert_int_equal(n, len);
	if (len)
		assert_memory_equal(dec, payload, len);
	assert_int_equal(back.port, 65535);
	assert_int_equal(back.remote.port, 1);
	assert_memory_equal(back.remote.pk, a.remote.pk, HW_APP_PK_LEN);
	free(out);
	free(dec);
}

static void test_send_roundtrip(void **state)
{
	static const char *const vec[][2] = {
		{"", ""},	  {"f", "Zg=="},	 {"fo", "Zm8="},
		{"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
		{"foobar", "Zm9vYmFy"},
	};
	uint8_t *all = malloc(HW_APP_SEND_CHUNK + 1);
	struct hw_app_loop_addr a = {.port = 1, .remote = {.port = 1}};
	uint8_t *out = (uint8_t *)"x";
	size_t outlen = 7;

	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++)
		send_roundtrip((const uint8_t *)vec[i][0], strlen(vec[i][0]),
			       vec[i][1]);
	send_roundtrip((const uint8_t *)"\xfb\xff\xbf", 3, "+/+/");
	for (size_t i = 0; i <= HW_APP_SEND_CHUNK; i++)
		all[i] = (uint8_t)(i * 7 + (i >> 8));
	for (size_t len = 250; len < 260; len++)
		send_roundtrip(all, len, NULL);
	send_roundtrip(all, HW_APP_SEND_CHUNK, NULL);
	assert_int_equal(hw_app_frame_send(1, &a, all, HW_APP_SEND_CHUNK + 1,
					   &out, &outlen),
			 HW_ETOOBIG);
	assert_null(out);
	assert_int_equal(outlen, 0);
	free(all);
}

static void test_parse_loop(void **state)
{
	struct hw_app_loop_addr a;
	char err[HW_APP_ERROR_MAX];

	assert_int_equal(hw_app_parse_loop(B("{\"port\":10,\"remote\":{\"pk\":\"" PK_B
					     "\",\"port\":49200}}"),
					   &a, err, sizeof(err)),
			 0);
	assert_int_equal(a.port, 10);
	assert_int_equal(a.remote.port, 49200);
	expect_err(hw_app_parse_loop(B("{\"remote\":{\"pk\":\"" PK_B
				       "\",\"port\":49200}}"),
				     &a, err, sizeof(err)),
		   err, "Close: port: missing");
	expect_err(hw_app_parse_loop(B("{\"port\":10}"), &a, err, sizeof(err)),
		   err, "Close: remote: missing");
	expect_err(hw_app_parse_loop(B("{\"port\":10,\"remote\":\"x\"}"), &a,
				     err, sizeof(err)),
		   err, "Close: remote: must be an object");
	expect_err(hw_app_parse_loop(B("{\"port\":10,\"remote\":{\"pk\":\"" PK_B
				       "\",\"port\":65536}}"),
				     &a, err, sizeof(err)),
		   err, "Close: remote.port: must be a whole number 1..65535");
	expect_err(hw_app_parse_loop(B("{\"port\":10,\"remote\":{"
				       "\"port\":5}}"),
				     &a, err, sizeof(err)),
		   err, "Close: remote.pk: missing");
	expect_err(hw_app_parse_loop(B("\"x\""), &a, err, sizeof(err)), err,
		   "Close: not JSON");
}

/* Close with and without "error": built, framed and parsed back; the
 * app's side of the codec ignores the member, the visor's is strict. */
static void test_close_codec(void **state)
{
	struct hw_app_loop_addr la = {.port = 49152, .remote = {.port = 10}};
	struct hw_app_loop_addr back;
	struct hw_app_frame f;
	char err[HW_APP_ERROR_MAX], why[HW_APP_ERROR_MAX], small[8], *s;
	uint8_t *out;
	size_t len, used;
	json_t *j;
	int failed = -1;

	hw_app_pk_parse(PK_B, la.remote.pk);
	/* An orderly end: no "error" at all. */
	j = hw_app_close_json(&la, NULL);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"port\":49152,\"remote\":{\"pk\":\"" PK_B
			       "\",\"port\":10}}");
	free(s);
	assert_int_equal(hw_app_frame_json(HW_APP_CLOSE, 3, j, &out, &len), 0);
	json_decref(j);
	assert_int_equal(hw_app_frame_next(out, len, &f, &used), 1);
	strcpy(why, "stale");
	assert_int_equal(hw_app_parse_close(f.body, f.len, &back, &failed, why,
					    sizeof(why), err, sizeof(err)),
			 0);
	assert_int_equal(failed, 0);
	assert_string_equal(why, "");
	assert_memory_equal(&la, &back, sizeof(la));
	free(out);

	/* A failure: the reason travels, cleaned of control characters. */
	j = hw_app_close_json(&la, "route failed: gone\n\x1b[2J");
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"error\":\"route failed: gone??[2J\","
			       "\"port\":49152,\"remote\":{\"pk\":\"" PK_B
			       "\",\"port\":10}}");
	free(s);
	assert_int_equal(hw_app_frame_json(HW_APP_CLOSE, 4, j, &out, &len), 0);
	json_decref(j);
	assert_int_equal(hw_app_frame_next(out, len, &f, &used), 1);
	assert_int_equal(hw_app_parse_close(f.body, f.len, &back, &failed, why,
					    sizeof(why), err, sizeof(err)),
			 0);
	assert_int_equal(failed, 1);
	assert_string_equal(why, "route failed: gone??[2J");
	assert_memory_equal(&la, &back, sizeof(la));
	/* Truncated to the buffer; the visor's parser ignores the member. */
	assert_int_equal(hw_app_parse_close(f.body, f.len, &back, &failed,
					    small, sizeof(small), err,
					    sizeof(err)),
			 0);
	assert_string_equal(small, "route f");
	assert_int_equal(hw_app_parse_loop(f.body, f.len, &back, err,
					   sizeof(err)),
			 0);
	free(out);

	/* null is no reason; anything but a string is refused (by the
	 * app's side only). */
	assert_int_equal(hw_app_parse_close(B("{\"port\":1,\"remote\":{\"pk\":"
					      "\"" PK_B "\",\"port\":2},"
					      "\"error\":null}"),
					    &back, &failed, why, sizeof(why),
					    err, sizeof(err)),
			 0);
	assert_int_equal(failed, 0);
	expect_err(hw_app_parse_close(B("{\"port\":1,\"remote\":{\"pk\":"
					"\"" PK_B "\",\"port\":2},"
					"\"error\":5}"),
				      &back, &failed, why, sizeof(why), err,
				      sizeof(err)),
		   err, "Close: error: must be a string");
	assert_int_equal(hw_app_parse_loop(B("{\"port\":1,\"remote\":{\"pk\":"
					     "\"" PK_B "\",\"port\":2},"
					     "\"error\":5}"),
					   &back, err, sizeof(err)),
			 0);
	/* The address is checked first, as in every Close. */
	expect_err(hw_app_parse_close(B("{\"error\":\"x\"}"), &back, &failed,
				      why, sizeof(why), err, sizeof(err)),
		   err, "Close: port: missing");
}

static void test_parse_error(void **state)
{
	char msg[HW_APP_ERROR_MAX];
	char small[8];

	hw_app_parse_error(B("{\"error\":\"no route to x\"}"), msg,
			   sizeof(msg));
	assert_string_equal(msg, "no route to x");
	hw_app_parse_error((const uint8_t *)"", 0, msg, sizeof(msg));
	assert_string_equal(msg, "no reason given");
	hw_app_parse_error(B("nope"), msg, sizeof(msg));
	assert_string_equal(msg,
			    "no reason given (the failure's body is not JSON)");
	hw_app_parse_error(B("{\"error\":5}"), msg, sizeof(msg));
	assert_string_equal(
		msg, "no reason given (the failure's body has no \"error\" "
		     "text)");
	hw_app_parse_error(B("[\"error\"]"), msg, sizeof(msg));
	assert_string_equal(
		msg, "no reason given (the failure's body has no \"error\" "
		     "text)");
	/* Control characters do not reach a terminal or a log. */
	hw_app_parse_error(B("{\"error\":\"a\\u001b[2Jb\\nc\"}"), msg,
			   sizeof(msg));
	assert_string_equal(msg, "a?[2Jb?c");
	/* Truncated at a character boundary. */
	hw_app_parse_error(B("{\"error\":\"abcdef\xc3\xa9z\"}"), small,
			   sizeof(small));
	assert_string_equal(small, "abcdef");
	hw_app_parse_error(B("{\"error\":\"abcde\xc3\xa9z\"}"), small,
			   sizeof(small));
	assert_string_equal(small, "abcde\xc3\xa9");
	hw_app_parse_error(B("{\"error\":\"abc\"}"), small, 1);
	assert_string_equal(small, "");
	hw_app_parse_error(B("{\"error\":\"abc\"}"), NULL, 0);
}

static void test_builders(void **state)
{
	struct hw_app_addr l = {.port = 10}, r = {.port = 49152};
	struct hw_app_addr l2, r2;
	struct hw_app_loop_addr la = {.port = 7}, la2;
	char err[HW_APP_ERROR_MAX], *s;
	uint8_t *out;
	size_t len, used;
	struct hw_app_frame f;
	json_t *j;
	char *long_msg;

	hw_app_pk_parse(PK_A, l.pk);
	hw_app_pk_parse(PK_B, r.pk);
	j = hw_app_addr_json(&l);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"pk\":\"" PK_A "\",\"port\":10}");
	free(s);
	json_decref(j);

	la.remote = r;
	j = hw_app_loop_json(&la);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"port\":7,\"remote\":{\"pk\":\"" PK_B
			       "\",\"port\":49152}}");
	free(s);
	assert_int_equal(hw_app_frame_json(HW_APP_CLOSE, 9, j, &out, &len), 0);
	assert_int_equal(hw_app_frame_next(out, len, &f, &used), 1);
	assert_int_equal(hw_app_parse_loop(f.body, f.len, &la2, err,
					   sizeof(err)),
			 0);
	assert_memory_equal(&la, &la2, sizeof(la));
	free(out);
	json_decref(j);

	j = hw_app_confirm_json(&l, &r);
	assert_int_equal(hw_app_frame_json(HW_APP_CONFIRM_LOOP, 0, j, &out,
					   &len),
			 0);
	assert_int_equal(hw_app_frame_next(out, len, &f, &used), 1);
	assert_int_equal(hw_app_parse_confirm(f.body, f.len, &l2, &r2, err,
					      sizeof(err)),
			 0);
	assert_memory_equal(&l, &l2, sizeof(l));
	assert_memory_equal(&r, &r2, sizeof(r));
	free(out);
	json_decref(j);

	j = hw_app_error_json("nothing listens on port 7");
	s = json_dumps(j, JSON_COMPACT);
	assert_string_equal(s, "{\"error\":\"nothing listens on port 7\"}");
	free(s);
	json_decref(j);
	/* Bytes that are not UTF-8 still give valid JSON. */
	j = hw_app_error_json("bad \xff\xc3 name\x01 \xe2\x82\xac");
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "error")),
			    "bad ?? name? \xe2\x82\xac");
	json_decref(j);
	j = hw_app_error_json(NULL);
	assert_string_equal(json_string_value(json_object_get(j, "error")),
			    "");
	json_decref(j);
	long_msg = malloc(1000);
	memset(long_msg, 'e', 999);
	long_msg[999] = '\0';
	j = hw_app_error_json(long_msg);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "error"))),
			 HW_APP_ERROR_MAX - 1);
	json_decref(j);
	free(long_msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_next),
		cmocka_unit_test(test_frame_header),
		cmocka_unit_test(test_frame_json),
		cmocka_unit_test(test_type_name),
		cmocka_unit_test(test_pk),
		cmocka_unit_test(test_parse_init),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_parse_confirm),
		cmocka_unit_test(test_parse_send),
		cmocka_unit_test(test_send_roundtrip),
		cmocka_unit_test(test_parse_loop),
		cmocka_unit_test(test_close_codec),
		cmocka_unit_test(test_parse_error),
		cmocka_unit_test(test_builders),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
