/* The one parser of peer input in the chat app: a chat line (docs/chat.md).
 * Kept apart from net.c so that its fuzz target (tests/fuzz/
 * fuzz_chat_line.c) builds it alone. */
#include <stdio.h>
#include <string.h>

#include "chat.h"

int hw_chat_id_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > HW_CHAT_ID_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

/* The id member of a message or the ack member of an acknowledgement. */
static const char *id_value(json_t *v, const char *name, char *why,
			    size_t whylen)
{
	if (!json_is_string(v) ||
	    !hw_chat_id_ok(json_string_value(v), json_string_length(v))) {
		snprintf(why, whylen, "\"%s\" is not a string of 1..%d "
			 "letters, digits, '-' or '_'", name, HW_CHAT_ID_MAX);
		return NULL;
	}
	return json_string_value(v);
}

int hw_chat_line_parse(const char *line, size_t n, json_t **root,
		       struct hw_chat_line *out, char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *r, *msg, *v;
	size_t i, tlen;

	*root = NULL;
	memset(out, 0, sizeof(*out));
	for (i = 0; i < n; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			break;
	if (i == n)
		return 0; /* HW_CHAT_LINE_BLANK */
	if (!(r = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr))) {
		snprintf(why, whylen, "not JSON: %s", jerr.text);
		return -1;
	}
	if (!json_is_object(r))
		goto not_chat;
	msg = json_object_get(r, "message");
	if (!msg) {
		v = json_object_get(r, "ack");
		if (!v)
			goto not_chat;
		if (!(out->id = id_value(v, "ack", why, whylen)))
			goto bad;
		out->kind = HW_CHAT_LINE_ACK;
		*root = r;
		return 0;
	}
	if (!json_is_string(msg))
		goto not_chat;
	tlen = json_string_length(msg);
	if (tlen == 0 || tlen > HW_CHAT_TEXT_MAX) {
		snprintf(why, whylen, "message of %zu bytes (1..%d allowed)",
			 tlen, HW_CHAT_TEXT_MAX);
		goto bad;
	}
	v = json_object_get(r, "id");
	if (v && !(out->id = id_value(v, "id", why, whylen)))
		goto bad;
	/* jansson decodes only valid UTF-8 and refuses \u0000 without
	 * JSON_ALLOW_NUL: the text is a C string of tlen bytes. */
	out->kind = HW_CHAT_LINE_MESSAGE;
	out->text = json_string_value(msg);
	*root = r;
	return 0;
not_chat:
	snprintf(why, whylen, "not a JSON object with a \"message\" string "
		 "or an \"ack\"");
bad:
	json_decref(r);
	return -1;
}
