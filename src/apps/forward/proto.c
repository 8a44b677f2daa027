/* The forward apps' stream header (proto.h). */
#include <errno.h>
#include <string.h>

#include "proto.h"

int hw_fwd_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n < 1 || n > HW_FWD_NAME_MAX)
		return 0;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
		      *c == '.' || *c == '_' || *c == '-'))
			return 0;
	return 1;
}

int hw_fwd_parse_request(const uint8_t *p, size_t n, struct hw_fwd_request *r,
			 size_t *used)
{
	size_t len;

	if (n >= 1 && p[0] != HW_FWD_VERSION)
		return -EPROTO;
	if (n < 4)
		return -EAGAIN;
	len = p[3];
	if (len < 1 || len > HW_FWD_NAME_MAX)
		return -EINVAL;
	if (n < 4 + len)
		return -EAGAIN;
	r->client_port = (uint16_t)(p[1] << 8 | p[2]);
	memcpy(r->name, p + 4, len);
	r->name[len] = '\0';
	if (strlen(r->name) != len || !hw_fwd_name_ok(r->name))
		return -EINVAL;
	*used = 4 + len;
	return 0;
}

size_t hw_fwd_build_request(uint8_t out[HW_FWD_REQUEST_MAX],
			    const struct hw_fwd_request *r)
{
	size_t len = strlen(r->name);

	if (!hw_fwd_name_ok(r->name))
		return 0;
	out[0] = HW_FWD_VERSION;
	out[1] = (uint8_t)(r->client_port >> 8);
	out[2] = (uint8_t)r->client_port;
	out[3] = (uint8_t)len;
	memcpy(out + 4, r->name, len);
	return 4 + len;
}

int hw_fwd_parse_answer(const uint8_t *p, size_t n, struct hw_fwd_answer *a,
			size_t *used)
{
	size_t len;

	if (n >= 1 && p[0] != HW_FWD_VERSION)
		return -EPROTO;
	if (n >= 2 && p[1] > HW_FWD_BUSY)
		return -EPROTO;
	if (n < 5)
		return -EAGAIN;
	len = p[4];
	if (n < 5 + len)
		return -EAGAIN;
	if (memchr(p + 5, 0, len))
		return -EPROTO;
	a->status = p[1];
	a->service_port = (uint16_t)(p[2] << 8 | p[3]);
	memcpy(a->msg, p + 5, len);
	a->msg[len] = '\0';
	*used = 5 + len;
	return 0;
}

size_t hw_fwd_build_answer(uint8_t out[HW_FWD_ANSWER_MAX], uint8_t status,
			   uint16_t service_port, const char *msg)
{
	size_t len = msg ? strlen(msg) : 0;

	if (len > 255)
		len = 255;
	out[0] = HW_FWD_VERSION;
	out[1] = status;
	out[2] = (uint8_t)(service_port >> 8);
	out[3] = (uint8_t)service_port;
	out[4] = (uint8_t)len;
	if (len)
		memcpy(out + 5, msg, len);
	return 5 + len;
}

const char *hw_fwd_status_str(uint8_t status)
{
	static const char *const names[] = {
		"ok",	       "not allowed",	"no such service",
		"refused",     "timed out",	"unreachable",
		"malformed request", "busy"};

	return status <= HW_FWD_BUSY ? names[status] : "unknown status";
}
