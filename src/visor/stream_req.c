/* The stream socket's request line: JSON in, struct hw_stream_req or an
 * error message out. Pure (no loop, no state), so fuzz_stream_req drives
 * it; streams.c acts on the result. */
#include "visor/stream_req.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

static int get_port(json_t *req, const char *key, uint16_t *port)
{
	json_t *p = json_object_get(req, key);
	if (!json_is_integer(p) || json_integer_value(p) < 1 ||
	    json_integer_value(p) > 65535)
		return -1;
	*port = (uint16_t)json_integer_value(p);
	return 0;
}

static int fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -EINVAL;
}

static int parse_listen(json_t *req, struct hw_stream_req *r, char *err,
			size_t errlen)
{
	json_t *dis;

	if (get_port(req, "port", &r->port))
		return fail(err, errlen, "port: must be 1..65535");
	dis = json_object_get(req, "discard");
	if (dis && !json_is_boolean(dis)) {
		r->late = 1;
		return fail(err, errlen, "discard: must be true or false");
	}
	r->discard = json_is_true(dis);
	return 0;
}

static int parse_dial(json_t *req, struct hw_stream_req *r, char *err,
		      size_t errlen)
{
	const char *pk = json_string_value(json_object_get(req, "pk"));
	json_t *snd, *via, *e;
	size_t i;

	if (!pk || hw_pk_parse(pk, strlen(pk), r->pk))
		return fail(err, errlen,
			    "pk: not a 64-character hex public key");
	if (get_port(req, "port", &r->port))
		return fail(err, errlen, "port: must be 1..65535");
	snd = json_object_get(req, "send");
	if (snd && (!json_is_integer(snd) || json_integer_value(snd) < 1 ||
		    json_integer_value(snd) > HW_STREAM_TEST_MAX_BYTES))
		return fail(err, errlen, "send: must be a byte count, 1..2^40");
	r->send = snd ? (uint64_t)json_integer_value(snd) : 0;
	/* Anything but an array is no hops, as it always was. */
	via = json_object_get(req, "via");
	if (json_array_size(via) >= HW_SETUP_HOPS_MAX) {
		r->late = 1;
		snprintf(err, errlen, "via: at most %d hops",
			 HW_SETUP_HOPS_MAX - 1);
		return -EINVAL;
	}
	json_array_foreach(via, i, e) {
		const char *s = json_string_value(e);
		if (!s || hw_pk_parse(s, strlen(s), r->via[i])) {
			r->late = 1;
			snprintf(err, errlen, "via[%zu]: not a public key", i);
			return -EINVAL;
		}
		r->nvia++;
	}
	return 0;
}

int hw_stream_req_parse(const char *line, size_t len, struct hw_stream_req *r,
			char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *req;
	const char *op;
	int rc;

	memset(r, 0, sizeof(*r));
	req = json_loadb(line, len, 0, &jerr);
	op = json_string_value(json_object_get(req, "op"));
	if (!req || !op) {
		rc = fail(err, errlen, "expected one line of JSON with \"op\"");
	} else if (!strcmp(op, "listen")) {
		r->op = HW_STREAM_LISTEN;
		rc = parse_listen(req, r, err, errlen);
	} else if (!strcmp(op, "dial")) {
		r->op = HW_STREAM_DIAL;
		rc = parse_dial(req, r, err, errlen);
	} else {
		rc = fail(err, errlen, "op: must be listen or dial");
	}
	json_decref(req);
	return rc;
}
