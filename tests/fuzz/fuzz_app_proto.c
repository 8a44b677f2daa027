/* Fuzzes the app protocol codec (src/sdk/proto.c): the input is a channel's
 * byte stream. Frames are cut with hw_app_frame_next and every body goes
 * through every parser (a visor or an SDK may be sent any type with any
 * body); the whole input is also tried as a body. What a parser accepts
 * must survive the builders and parse back the same, and every message it
 * gives must be a bounded string. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sdk/proto.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t payload[HW_APP_BODY_MAX];
static uint8_t again[HW_APP_BODY_MAX];

static void check_err(int rc, const char *err)
{
	if (rc != -EINVAL || !err[0] || strlen(err) >= HW_APP_ERROR_MAX)
		abort();
}

/* A JSON value built from parsed fields, framed and cut again. */
static const struct hw_app_frame *reframe(json_t *j, uint8_t **buf)
{
	static struct hw_app_frame f;
	size_t len, used;

	if (!j || hw_app_frame_json(HW_APP_SUCCESS, 0, j, buf, &len) ||
	    hw_app_frame_next(*buf, len, &f, &used) != 1 || used != len)
		abort();
	json_decref(j);
	return &f;
}

static void parse_all(const uint8_t *body, size_t len)
{
	char err[HW_APP_ERROR_MAX], msg[HW_APP_ERROR_MAX];
	struct hw_app_init in;
	struct hw_app_addr a, b, c, d;
	struct hw_app_loop_addr la, lb;
	const struct hw_app_frame *f;
	uint8_t *buf = NULL;
	size_t plen, plen2, used, outlen;
	int rc;

	err[0] = '\0';
	if ((rc = hw_app_parse_init(body, len, &in, err, sizeof(err))) == 0) {
		size_t n = strlen(in.name);
		if (n < 1 || n > HW_APP_NAME_MAX ||
		    strlen(in.version) > HW_APP_NAME_MAX ||
		    strlen(in.protocol) > HW_APP_NAME_MAX ||
		    (in.port && !in.extended) || (in.ext & ~HW_APP_EXT_LOOP_FD))
			abort();
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)in.name[i] < 0x20)
				abort();
	} else {
		check_err(rc, err);
	}

	err[0] = '\0';
	if ((rc = hw_app_parse_addr(body, len, &a, err, sizeof(err))) == 0) {
		if (!a.port)
			abort();
		f = reframe(hw_app_addr_json(&a), &buf);
		if (hw_app_parse_addr(f->body, f->len, &b, err, sizeof(err)) ||
		    memcmp(&a, &b, sizeof(a)))
			abort();
		free(buf);
	} else {
		check_err(rc, err);
	}

	err[0] = '\0';
	if ((rc = hw_app_parse_confirm(body, len, &a, &b, err, sizeof(err))) ==
	    0) {
		f = reframe(hw_app_confirm_json(&a, &b), &buf);
		if (hw_app_parse_confirm(f->body, f->len, &c, &d, err,
					 sizeof(err)) ||
		    memcmp(&a, &c, sizeof(a)) || memcmp(&b, &d, sizeof(b)))
			abort();
		free(buf);
	} else {
		check_err(rc, err);
	}

	err[0] = '\0';
	if ((rc = hw_app_parse_loop(body, len, &la, err, sizeof(err))) == 0) {
		f = reframe(hw_app_loop_json(&la), &buf);
		if (hw_app_parse_loop(f->body, f->len, &lb, err, sizeof(err)) ||
		    memcmp(&la, &lb, sizeof(la)))
			abort();
		free(buf);
	} else {
		check_err(rc, err);
	}

	/* A visor's Close: the reason, when there is one, survives a round
	 * trip (it is clean text already). */
	err[0] = '\0';
	{
		char why[HW_APP_ERROR_MAX], why2[HW_APP_ERROR_MAX];
		int failed, failed2;

		rc = hw_app_parse_close(body, len, &la, &failed, why,
					sizeof(why), err, sizeof(err));
		if (rc == 0) {
			f = reframe(hw_app_close_json(&la, failed ? why : NULL),
				    &buf);
			if (hw_app_parse_close(f->body, f->len, &lb, &failed2,
					       why2, sizeof(why2), err,
					       sizeof(err)) ||
			    memcmp(&la, &lb, sizeof(la)) ||
			    failed != failed2 || strcmp(why, why2))
				abort();
			free(buf);
		} else {
			check_err(rc, err);
		}
	}

	err[0] = '\0';
	rc = hw_app_parse_send(body, len, &la, payload, sizeof(payload), &plen,
			       err, sizeof(err));
	if (rc == 0) {
		struct hw_app_frame g;
		if (plen > len)
			abort();
		if (plen <= HW_APP_SEND_CHUNK) {
			if (hw_app_frame_send(7, &la, payload, plen, &buf,
					      &outlen) ||
			    hw_app_frame_next(buf, outlen, &g, &used) != 1 ||
			    used != outlen || g.type != HW_APP_SEND ||
			    g.id != 7 ||
			    hw_app_parse_send(g.body, g.len, &lb, again,
					      sizeof(again), &plen2, err,
					      sizeof(err)) ||
			    plen2 != plen || memcmp(payload, again, plen) ||
			    memcmp(&la, &lb, sizeof(la)))
				abort();
			free(buf);
		}
		/* One byte less room is refused exactly when it matters. */
		if (plen &&
		    hw_app_parse_send(body, len, &la, payload, plen - 1, &plen2,
				      err, sizeof(err)) != -EINVAL)
			abort();
	} else {
		check_err(rc, err);
	}

	hw_app_parse_error(body, len, msg, sizeof(msg));
	if (strlen(msg) >= sizeof(msg))
		abort();
	/* Whatever came out is printable UTF-8: it goes back out as is. */
	{
		json_t *j = hw_app_error_json(msg);
		if (!j || strcmp(json_string_value(json_object_get(j, "error")),
				 msg))
			abort();
		json_decref(j);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_app_frame f;
	size_t off = 0, used;
	uint8_t pk[HW_APP_PK_LEN];
	char hex[2 * HW_APP_PK_LEN + 1];
	int rc;

	while ((rc = hw_app_frame_next(data + off, size - off, &f, &used)) ==
	       1) {
		if (used != HW_APP_HDR + f.len || used > size - off ||
		    f.body != data + off + HW_APP_HDR ||
		    f.type != data[off + 2] || f.id != data[off + 3])
			abort();
		(void)hw_app_type_name(f.type);
		parse_all(f.body, f.len);
		off += used;
	}
	if (rc == HW_EPROTO &&
	    (size - off < 2 || (data[off] << 8 | data[off + 1]) >= 2))
		abort();
	if (rc == 0 && size - off >= 2 &&
	    (size_t)(data[off] << 8 | data[off + 1]) + 2 <= size - off)
		abort();

	parse_all(data, size);

	if (size == 2 * HW_APP_PK_LEN) {
		char s[2 * HW_APP_PK_LEN + 1];
		memcpy(s, data, size);
		s[size] = '\0';
		if (hw_app_pk_parse(s, pk) == 0) {
			uint8_t back[HW_APP_PK_LEN];
			hw_app_pk_hex(pk, hex);
			if (hw_app_pk_parse(hex, back) ||
			    memcmp(pk, back, sizeof(pk)) ||
			    strncasecmp(hex, s, sizeof(hex)))
				abort();
		}
	}
	return 0;
}
