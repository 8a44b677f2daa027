/* Fuzzes the discovery entry decoder: any bytes, parsed as JSON, are tried
 * as an entry of every kind. A refusal must say why; an accepted entry
 * must encode, and its JSON form must decode back to the same entry (same
 * canonical encoding and signature). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "discovery/entry.h"

/* Bodies over 64 KiB never reach the decoder (the server answers 413). */
#define FUZZ_MAX_INPUT (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const struct hw_disc_entry *e, enum hw_disc_kind kind)
{
	uint8_t a[HW_DISC_ENC_MAX], b[HW_DISC_ENC_MAX];
	struct hw_disc_entry back;
	char err[512];
	json_t *j;
	int na, nb;

	na = hw_disc_entry_encode(e, a, sizeof(a));
	if (na <= 0)
		abort();
	/* The signature is random bytes here; only that it returns. */
	(void)hw_disc_entry_verify(e);
	if (!(j = hw_disc_entry_to_json(e)))
		abort();
	if (hw_disc_entry_from_json(&back, kind, j, err, sizeof(err)))
		abort();
	json_decref(j);
	nb = hw_disc_entry_encode(&back, b, sizeof(b));
	if (na != nb || memcmp(a, b, (size_t)na) ||
	    memcmp(e->sig, back.sig, HW_SIG_LEN) || back.kind != kind)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_disc_entry e;
	json_error_t jerr;
	char err[512];
	json_t *j;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
		       &jerr);
	if (!j)
		return 0;
	for (int k = HW_DISC_VISOR; k <= HW_DISC_SERVICE_DEL; k++) {
		err[0] = '\0';
		if (hw_disc_entry_from_json(&e, k, j, err, sizeof(err))) {
			if (!err[0])
				abort();
			continue;
		}
		round_trip(&e, k);
	}
	json_decref(j);
	return 0;
}
