/* The one parser of peer input in the chat app: a chat line (docs/chat.md).
 * Kept apart from net.c so that its fuzz target (tests/fuzz/
 * fuzz_chat_line.c) builds it alone. */
#include <stdio.h>

#include "chat.h"

int hw_chat_line_parse(const char *line, size_t n, json_t **root,
		       const char **text, char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *r, *msg;
	size_t i, tlen;

	*root = NULL;
	*text = NULL;
	for (i = 0; i < n; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			break;
	if (i == n)
		return 0;
	if (!(r = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr))) {
		snprintf(why, whylen, "not JSON: %s", jerr.text);
		return -1;
	}
	msg = json_object_get(r, "message");
	if (!json_is_object(r) || !json_is_string(msg)) {
		snprintf(why, whylen, "not a JSON object with a \"message\" "
			 "string");
		json_decref(r);
		return -1;
	}
	tlen = json_string_length(msg);
	if (tlen == 0 || tlen > HW_CHAT_TEXT_MAX) {
		snprintf(why, whylen, "message of %zu bytes (1..%d allowed)",
			 tlen, HW_CHAT_TEXT_MAX);
		json_decref(r);
		return -1;
	}
	/* jansson decodes only valid UTF-8 and refuses \u0000 without
	 * JSON_ALLOW_NUL: the text is a C string of tlen bytes. */
	*root = r;
	*text = json_string_value(msg);
	return 0;
}
