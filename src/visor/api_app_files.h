/* The files an app shares with its visor, in its working folder
 * LOCAL_DIR/apps/NAME/ (docs/apps.md): status.json, which the app writes
 * and the visor serves as it is, and settings.json, which the visor
 * writes for the operator (PUT /v1/apps/NAME/settings) and the app reads.
 * The visor interprets neither beyond settings.json's "revision". */
#ifndef HW_VISOR_API_APP_FILES_H
#define HW_VISOR_API_APP_FILES_H

#include <jansson.h>
#include <stddef.h>

/* The settings document an app reads at its start and reloads when it
 * changes. */
#define HW_APP_SETTINGS_FILE "settings.json"

/* The largest status.json or settings.json (64 KiB). */
#define HW_APP_FILE_MAX (64 * 1024)

/* Reads the JSON object in the regular file path: never through a
 * symbolic link, never waiting on a FIFO, at most max bytes. Returns 0
 * with a new reference in *out; -ENOENT when there is no such file;
 * otherwise a negative code with the reason, naming path, in err. */
int hw_app_file_read(const char *path, size_t max, json_t **out, char *err,
		     size_t errlen);

/* The settings of app name under local_dir: a new reference to the
 * document of settings.json, whose "revision" is a non-negative integer
 * (a file without one counts as revision 0), or {"revision": 0} when
 * there is none. Returns 0, or a negative code with the reason in err. */
int hw_app_settings_get(const char *local_dir, const char *name,
			json_t **out, char *err, size_t errlen);

/* Replaces the settings of app name under local_dir with body, a JSON
 * object whose integer "revision" must be the current one: written with
 * "revision" one higher, atomically (temporary file, fsync, rename;
 * LOCAL_DIR/apps/NAME/ made 0700 when missing). Returns 0 with the new
 * document in *out (a new reference); -EINVAL when body is not an object
 * with a non-negative integer revision; HW_ETOOBIG when the document
 * would be over HW_APP_FILE_MAX bytes; HW_ESTATE when the revision is not
 * the current one (*current set to it); another negative code when the
 * files cannot be read or written. err says why. */
int hw_app_settings_put(const char *local_dir, const char *name,
			json_t *body, long long *current, json_t **out,
			char *err, size_t errlen);

#endif
