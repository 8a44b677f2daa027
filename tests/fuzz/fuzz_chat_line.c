/* The chat app's parser of peer lines (src/apps/chat/line.c). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/apps/chat/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[512];
	const char *text;
	json_t *root;

	if (hw_chat_line_parse((const char *)data, size, &root, &text, why,
			       sizeof(why)) == 0 &&
	    text) {
		size_t n = strlen(text);
		if (n == 0 || n > HW_CHAT_TEXT_MAX)
			__builtin_trap();
	}
	json_decref(root);
	return 0;
}
