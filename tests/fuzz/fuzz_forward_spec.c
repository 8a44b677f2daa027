/* Fuzzes the forward CLI's checks of the forward app's settings
 * (src/cli/forward_spec.c), which it runs on the document the visor
 * hands back (a file anyone with the visor's user may have edited): any
 * bytes give a verdict with a reason, never a crash or a leak; an
 * address parsed once parses again to itself; and an edit of a valid
 * document that succeeds leaves it valid. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/forward_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[512], out[HW_FWD_ADDR_MAX], again[HW_FWD_ADDR_MAX];
	char err[768];
	json_t *doc;
	int same;

	/* The bytes as one argument. */
	if (size < sizeof(text)) {
		memcpy(text, data, size);
		text[size] = '\0';
		err[0] = '\0';
		if (hw_fwd_listen_parse(text, out, err, sizeof(err)) == 0) {
			if (hw_fwd_listen_parse(out, again, err,
						sizeof(err)) ||
			    strcmp(out, again))
				abort();
		} else if (!err[0]) {
			abort();
		}
		err[0] = '\0';
		if (hw_fwd_target_check(text, err, sizeof(err)) && !err[0])
			abort();
	}

	/* The bytes as a settings document. */
	doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (!doc)
		return 0;
	err[0] = '\0';
	if (hw_fwd_doc_check(doc, err, sizeof(err))) {
		if (!err[0])
			abort();
		json_decref(doc);
		return 0;
	}
	{
		const char *any[] = {"any"};
		if (hw_fwd_expose(doc, "fz", "127.0.0.1:1", any, 1, err,
				  sizeof(err)) == 0 &&
		    hw_fwd_doc_check(doc, err, sizeof(err)))
			abort();
		if (hw_fwd_add(doc, "127.0.0.1:1", "6415a2d2753a713643199b02"
			       "884c7f4189e5174b1e3a7c89d82381d62a118e8d",
			       "fz", &same, err, sizeof(err)) == 0 &&
		    hw_fwd_doc_check(doc, err, sizeof(err)))
			abort();
		if (hw_fwd_rm(doc, "127.0.0.1:1", err, sizeof(err)) == 0 &&
		    hw_fwd_doc_check(doc, err, sizeof(err)))
			abort();
		if (hw_fwd_unexpose(doc, "fz", err, sizeof(err)) == 0 &&
		    hw_fwd_doc_check(doc, err, sizeof(err)))
			abort();
	}
	json_decref(doc);
	return 0;
}
