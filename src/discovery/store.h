/* Discovery's storage: signed entries by kind and key, with an expiry
 * time, plus each signer's last accepted sequence number.
 *
 * A store is an operation table (like a transport): the server does not
 * know whether SQLite (one file, one process) or Redis (several discovery
 * replicas sharing one server) sits underneath. A struct hw_dstore is one
 * connection and is used by one thread at a time; a server with several
 * threads gives each its own with hw_dstore_clone(), and the backend keeps
 * the clones consistent (the same SQLite file or in-memory database, the
 * same Redis server and database).
 *
 * What is stored per entry: the JSON text of the signed entry (returned
 * as is), up to two index values (a transport's two edges as public key
 * hex; a service's type) that list filters match, and the expiry time.
 * Expired entries are never returned, whether or not a sweep has deleted
 * them yet. Sequence records never expire. docs/discovery.md describes
 * the SQLite schema and the Redis key layout. */
#ifndef HW_DISCOVERY_STORE_H
#define HW_DISCOVERY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/identity.h"
#include "discovery/entry.h"

/* Bytes of the longest key (a service: pk hex "/" type) and NUL. */
#define HW_DSTORE_KEY_MAX (HW_PK_HEXLEN + 1 + HW_DISC_STR_MAX + 1)
/* Bytes of the longest index value (a public key in hex) and NUL. */
#define HW_DSTORE_IDX_MAX (HW_PK_HEXLEN + 1)
/* Bytes of the largest entry's JSON text that a store accepts. */
#define HW_DSTORE_JSON_MAX (64 * 1024)

struct hw_dstore;

enum hw_dstore_op {
	HW_DSTORE_NONE, /* the sequence check-and-set only */
	HW_DSTORE_PUT,
	HW_DSTORE_DEL,
};

/* One atomic write: the signer's sequence check-and-set and the change
 * it authorises happen together or not at all, also against other
 * processes sharing the store. */
struct hw_dstore_write {
	/* When set, seq must exceed the signer's last accepted number, which
	 * then becomes seq. NULL: no sequence check (tests, tools). */
	const uint8_t *signer; /* HW_PK_LEN bytes */
	uint64_t seq;          /* 1..INT64_MAX */

	enum hw_dstore_op op;
	enum hw_disc_kind kind; /* VISOR, RELAY, TRANSPORT or SERVICE */
	const char *key;        /* < HW_DSTORE_KEY_MAX bytes */

	/* PUT: replaces any entry of the same kind and key. */
	const char *json;
	size_t json_len;
	const char *idx[2];  /* index values, NULL when unused */
	int64_t expires_ms;  /* unix time in milliseconds */

	/* DEL: when set, the entry must carry this index value (the signer
	 * of a transport delete must be one of its edges). */
	const char *need_idx;
};

enum hw_dstore_outcome {
	HW_DSTORE_OK,     /* done */
	HW_DSTORE_REPLAY, /* seq not above the last accepted; nothing done */
	HW_DSTORE_NOENT,  /* DEL of an entry that does not exist or expired */
	HW_DSTORE_DENIED, /* DEL: the entry lacks need_idx */
};

struct hw_dstore_result {
	enum hw_dstore_outcome outcome;
	uint64_t last_seq; /* REPLAY: the signer's last accepted number */
};

/* Called by hw_dstore_list() for each entry with its JSON text (valid
 * during the call). A non-zero return stops the listing and is returned
 * by hw_dstore_list(). */
typedef int (*hw_dstore_each_fn)(const char *json, size_t len, void *ud);

/* The backend's side. Every operation returns 0 or a negative code
 * (-EIO and friends when the database fails; the message, if any, is
 * logged by the backend once per failure). */
struct hw_dstore_ops {
	const char *name; /* "sqlite", "redis" */
	int (*clone)(struct hw_dstore *s, struct hw_dstore **out, char *err,
		     size_t errlen);
	void (*free)(struct hw_dstore *s);
	int (*write)(struct hw_dstore *s, const struct hw_dstore_write *w,
		     struct hw_dstore_result *res);
	int (*get)(struct hw_dstore *s, enum hw_disc_kind kind,
		   const char *key, char **json, size_t *len);
	int (*list)(struct hw_dstore *s, enum hw_disc_kind kind,
		    const char *filter, size_t limit, hw_dstore_each_fn fn,
		    void *ud);
	int (*count)(struct hw_dstore *s, enum hw_disc_kind kind,
		     uint64_t *n);
	int (*sweep)(struct hw_dstore *s, uint64_t *removed);
};

/* Backends embed this as their first member. */
struct hw_dstore {
	const struct hw_dstore_ops *ops;
};

/* Opens a store from spec: "sqlite:PATH" (created if missing, schema
 * migrated), "sqlite::memory:" (private to this store and its clones),
 * "redis://HOST:PORT" or "redis://HOST:PORT/DB". Returns 0 and *out, or a
 * negative code with a message naming the spec in err. */
int hw_dstore_new(struct hw_dstore **out, const char *spec, char *err,
		  size_t errlen);

/* Backend constructors behind hw_dstore_new(): path is what follows
 * "sqlite:", rest what follows "redis://". */
int hw_dstore_sqlite_new(struct hw_dstore **out, const char *path,
			 char *err, size_t errlen);
int hw_dstore_redis_new(struct hw_dstore **out, const char *rest, char *err,
			size_t errlen);

/* A second connection to the same data, for another thread. */
int hw_dstore_clone(struct hw_dstore *s, struct hw_dstore **out, char *err,
		    size_t errlen);

/* Closes the connection. Accepts NULL. */
void hw_dstore_free(struct hw_dstore *s);

/* "sqlite" or "redis". */
const char *hw_dstore_name(const struct hw_dstore *s);

/* Performs w atomically and reports the outcome in *res. Returns 0 (see
 * res->outcome), -EINVAL for a malformed w, or a store failure. */
int hw_dstore_write(struct hw_dstore *s, const struct hw_dstore_write *w,
		    struct hw_dstore_result *res);

/* Stores an entry without a sequence check (idx0, idx1 may be NULL). */
int hw_dstore_put(struct hw_dstore *s, enum hw_disc_kind kind,
		  const char *key, const char *json, size_t len,
		  const char *idx0, const char *idx1, int64_t expires_ms);

/* Deletes an entry. Returns 0, -ENOENT when there is none (or it
 * expired), or a store failure. */
int hw_dstore_del(struct hw_dstore *s, enum hw_disc_kind kind,
		  const char *key);

/* The JSON text of a live entry in *json (malloc'ed, NUL-terminated, the
 * caller frees it) and its length. Returns 0, -ENOENT, or a store
 * failure. */
int hw_dstore_get(struct hw_dstore *s, enum hw_disc_kind kind,
		  const char *key, char **json, size_t *len);

/* Calls fn for up to limit live entries of kind (in no particular
 * order); with filter set, only those carrying it as an index value.
 * Returns 0, fn's non-zero return, or a store failure. */
int hw_dstore_list(struct hw_dstore *s, enum hw_disc_kind kind,
		   const char *filter, size_t limit, hw_dstore_each_fn fn,
		   void *ud);

/* The number of live entries of kind. */
int hw_dstore_count(struct hw_dstore *s, enum hw_disc_kind kind,
		    uint64_t *n);

/* Deletes expired entries (and index records pointing at them); *removed
 * (may be NULL) counts what went. */
int hw_dstore_sweep(struct hw_dstore *s, uint64_t *removed);

/* The sequence check-and-set alone: returns 0 and records seq when it
 * exceeds signer's last accepted number; -EALREADY with *last set (may be
 * NULL) when it does not; or a store failure. */
int hw_dstore_seq_cas(struct hw_dstore *s, const uint8_t signer[HW_PK_LEN],
		      uint64_t seq, uint64_t *last);

/* "visor", "relay", "transport", "service", or NULL for a kind that is
 * not stored (the two delete kinds). */
const char *hw_dstore_kind_name(enum hw_disc_kind kind);

/* The current unix time in milliseconds, the clock expiry times use. */
int64_t hw_dstore_now_ms(void);

#endif
