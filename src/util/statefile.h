/* Writing a state file from the event loop without blocking it: the write
 * runs in libuv's thread pool, atomically (temporary file beside it, fsync,
 * rename, mode 0600). One write runs at a time per file; texts handed over
 * meanwhile replace each other, so only the newest waits, and an older
 * state can never land after a newer one. */
#ifndef HW_UTIL_STATEFILE_H
#define HW_UTIL_STATEFILE_H

#include <stddef.h>
#include <uv.h>

struct hw_statefile;

/* A state file writer for path. Returns NULL when out of memory. */
struct hw_statefile *hw_statefile_new(uv_loop_t *loop, const char *path);

/* Takes over text (malloc'd, NUL-terminated) and writes it to the file.
 * A failed write is logged (hw_log) and the file keeps its last state. */
void hw_statefile_save(struct hw_statefile *s, char *text);

/* Releases the writer after its running and waiting writes are done (the
 * loop must run on until then). Accepts NULL. */
void hw_statefile_free(struct hw_statefile *s);

/* Writes len bytes of data to path atomically, blocking. Returns 0 or a
 * negative errno. */
int hw_file_write_atomic(const char *path, const char *data, size_t len);

#endif
