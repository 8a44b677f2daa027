/* The chat app's parser of peer lines (src/apps/chat/line.c). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/apps/chat/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_chat_line cl;
	char why[512];
	json_t *root;

	if (hw_chat_line_parse((const char *)data, size, &root, &cl, why,
			       sizeof(why)) == 0) {
		size_t n = cl.text ? strlen(cl.text) : 0;

		if (cl.kind == HW_CHAT_LINE_MESSAGE &&
		    (n == 0 || n > HW_CHAT_TEXT_MAX))
			__builtin_trap();
		if (cl.id && !hw_chat_id_ok(cl.id, strlen(cl.id)))
			__builtin_trap();
		if (cl.kind == HW_CHAT_LINE_ACK && !cl.id)
			__builtin_trap();
	}
	json_decref(root);
	return 0;
}
