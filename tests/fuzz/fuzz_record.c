/* Fuzzes the record reader: the input is cut into reads whose sizes come
 * from the input itself, under bounds it also picks; every record handed
 * out must lie inside the bounds and inside the bytes fed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "wire/record.h"

/* Every byte handed out is read, so ASan checks it lies in bounds. */
static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hw_record_reader *r;
	size_t min_len, max_len, off = 4, fed = 0, out = 0;
	uint8_t *rec, *space;
	size_t len, cap;

	if (size < 4)
		return 0;
	min_len = data[0];
	max_len = min_len + ((size_t)data[1] << 8 | data[2]);
	if (max_len > HW_RECORD_MAX)
		max_len = HW_RECORD_MAX;
	r = hw_record_reader_new(min_len, max_len);
	if (!r)
		return 0;
	while (off < size) {
		size_t chunk = (size_t)data[3] * 7 + 1, n;
		hw_record_reader_space(r, &space, &cap);
		n = size - off < chunk ? size - off : chunk;
		if (n > cap)
			n = cap;
		for (size_t k = 0; k < n; k++)
			space[k] = data[off + k];
		hw_record_reader_commit(r, n);
		off += n;
		fed += n;
		int rc;
		while ((rc = hw_record_reader_next(r, &rec, &len)) == 1) {
			if (len < min_len || len > max_len)
				abort();
			for (size_t k = 0; k < len; k++)
				sink ^= rec[k];
			out += len + HW_RECORD_HDR;
		}
		if (rc < 0)
			break;
	}
	if (out > fed)
		abort();
	hw_record_reader_free(r);
	return 0;
}
