/* Discovery storage on SQLite: one file (or one in-memory database) that
 * every connection of the process shares.
 *
 * Concurrency. Each thread has its own connection (hw_dstore_clone). The
 * file is in WAL mode, so readers never wait for the writer and see the
 * last committed state. Writes run in BEGIN IMMEDIATE transactions, which
 * makes the sequence check-and-set and the change it authorises one atomic
 * step even against another process on the same file; inside one process
 * the clones also share a mutex, so writers queue on it instead of
 * sleeping in SQLite's busy handler.
 *
 * "sqlite::memory:" is a memdb database ("file:/NAME?vfs=memdb"), which
 * the clones of one store share and nothing else sees; it lives until the
 * last of them closes.
 *
 * Schema. PRAGMA user_version counts the migrations applied; each one
 * runs in its own transaction on open, so a crash leaves the file at a
 * version it knows. A file from a newer program is refused. */
#include "discovery/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "util/log.h"

#define BUSY_TIMEOUT_MS 5000

/* Migration i takes the schema from user_version i to i + 1. Append only;
 * never edit one that has shipped. */
static const char *const migrations[] = {
	/* 1: entries of every kind in one table; idx0/idx1 hold a
	 * transport's edges (public key hex) or a service's type, and the
	 * two indexes serve "transports of this edge", "services of this
	 * type". Signers' last sequence numbers never expire. */
	"CREATE TABLE entries ("
	"  kind INTEGER NOT NULL,"
	"  key TEXT NOT NULL,"
	"  json TEXT NOT NULL,"
	"  idx0 TEXT,"
	"  idx1 TEXT,"
	"  expires_ms INTEGER NOT NULL,"
	"  PRIMARY KEY (kind, key)"
	") WITHOUT ROWID;"
	"CREATE INDEX entries_by_idx0 ON entries (kind, idx0);"
	"CREATE INDEX entries_by_idx1 ON entries (kind, idx1);"
	"CREATE INDEX entries_by_expiry ON entries (expires_ms);"
	"CREATE TABLE signers ("
	"  pk BLOB PRIMARY KEY,"
	"  seq INTEGER NOT NULL"
	") WITHOUT ROWID;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum {
	ST_GET,
	ST_LIST,
	ST_LIST_IDX,
	ST_COUNT,
	ST_PUT,
	ST_LOOKUP,
	ST_DEL,
	ST_SEQ_GET,
	ST_SEQ_SET,
	ST_SWEEP,
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_COUNT_OF
};

static const char *const sql[ST_COUNT_OF] = {
	[ST_GET] = "SELECT json FROM entries"
		   " WHERE kind = ?1 AND key = ?2 AND expires_ms > ?3",
	[ST_LIST] = "SELECT json FROM entries"
		    " WHERE kind = ?1 AND expires_ms > ?2"
		    " ORDER BY key LIMIT ?3",
	/* A UNION of one lookup per index. Without statistics SQLite's
	 * planner prefers walking every entry of the kind by primary key,
	 * which is what an index by edge is there to avoid: INDEXED BY
	 * pins the plan (and fails loudly if the index ever goes). */
	[ST_LIST_IDX] = "SELECT key, json FROM entries"
			" INDEXED BY entries_by_idx0"
			" WHERE kind = ?1 AND idx0 = ?2 AND expires_ms > ?3"
			" UNION"
			" SELECT key, json FROM entries"
			" INDEXED BY entries_by_idx1"
			" WHERE kind = ?1 AND idx1 = ?2 AND expires_ms > ?3"
			" LIMIT ?4",
	[ST_COUNT] = "SELECT count(*) FROM entries"
		     " WHERE kind = ?1 AND expires_ms > ?2",
	[ST_PUT] = "INSERT OR REPLACE INTO entries"
		   " (kind, key, json, idx0, idx1, expires_ms)"
		   " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_LOOKUP] = "SELECT idx0, idx1 FROM entries"
		      " WHERE kind = ?1 AND key = ?2 AND expires_ms > ?3",
	[ST_DEL] = "DELETE FROM entries WHERE kind = ?1 AND key = ?2",
	[ST_SEQ_GET] = "SELECT seq FROM signers WHERE pk = ?1",
	[ST_SEQ_SET] = "INSERT OR REPLACE INTO signers (pk, seq)"
		       " VALUES (?1, ?2)",
	[ST_SWEEP] = "DELETE FROM entries WHERE expires_ms <= ?1",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
};

/* What the clones of one store share. */
struct shared {
	atomic_uint refs;
	pthread_mutex_t write_mu;
	char *name;  /* path or memdb URI as sqlite3_open_v2 takes it */
	int flags;   /* for sqlite3_open_v2 */
	bool memory;
};

struct sq_store {
	struct hw_dstore base;
	struct shared *sh;
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT_OF];
};

static const struct hw_dstore_ops sqlite_ops;

static void shared_unref(struct shared *sh)
{
	if (!sh || atomic_fetch_sub(&sh->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&sh->write_mu);
	free(sh->name);
	free(sh);
}

/* Logs a failure once and maps it to a code. */
static int fail(struct sq_store *s, int rc, const char *what)
{
	hw_log(HW_LOG_WARN, "discovery", "sqlite: %s: %s", what,
	       s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_READONLY:
	case SQLITE_PERM: return -EACCES;
	default: return -EIO;
	}
}

static void sq_free(struct hw_dstore *base)
{
	struct sq_store *s = (struct sq_store *)base;

	if (!s)
		return;
	for (int i = 0; i < ST_COUNT_OF; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	shared_unref(s->sh);
	free(s);
}

/* Runs a statement that returns no rows to speak of. */
static int exec(sqlite3 *db, const char *text, char *err, size_t errlen,
		const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, text, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", what,
			 msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int user_version(sqlite3 *db, int *v)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		*v = sqlite3_column_int(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : -EIO;
}

/* Brings the schema to SCHEMA_VERSION, one migration per transaction; the
 * version is read again inside each, as another process may have
 * migrated meanwhile. */
static int migrate(sqlite3 *db, char *err, size_t errlen)
{
	char text[64];
	int v, rc;

	for (;;) {
		if (exec(db, "BEGIN IMMEDIATE", err, errlen, "begin"))
			return -EIO;
		if (user_version(db, &v)) {
			snprintf(err, errlen, "cannot read the schema version: "
				 "%s", sqlite3_errmsg(db));
			rc = -EIO;
			goto rollback;
		}
		if (v > SCHEMA_VERSION) {
			snprintf(err, errlen, "the database has schema version "
				 "%d, newer than this program's %d", v,
				 SCHEMA_VERSION);
			rc = -EPROTO;
			goto rollback;
		}
		if (v < 0) {
			snprintf(err, errlen, "the database has schema version "
				 "%d, which no Hopwire wrote", v);
			rc = -EPROTO;
			goto rollback;
		}
		if (v == SCHEMA_VERSION)
			return exec(db, "COMMIT", err, errlen, "commit");
		if ((rc = exec(db, migrations[v], err, errlen, "migration")))
			goto rollback;
		snprintf(text, sizeof(text), "PRAGMA user_version = %d", v + 1);
		if ((rc = exec(db, text, err, errlen, "migration")) ||
		    (rc = exec(db, "COMMIT", err, errlen, "commit")))
			goto rollback;
		hw_log(HW_LOG_INFO, "discovery",
		       "sqlite: schema migrated to version %d", v + 1);
	}
rollback:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Opens one connection to sh's database; first: the store's first
 * connection, which sets the journal mode and migrates. */
static int sq_connect(struct shared *sh, bool first, struct hw_dstore **out,
		      char *err, size_t errlen)
{
	struct sq_store *s = NULL;
	sqlite3_stmt *st = NULL;
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->base.ops = &sqlite_ops;
	atomic_fetch_add(&sh->refs, 1);
	s->sh = sh;

	rc = sqlite3_open_v2(sh->name, &s->db, sh->flags, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "cannot open: %s",
			 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		rc = -EIO;
		goto out;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	if (!sh->memory) {
		/* WAL survives in the file; set it on every connection
		 * anyway, it is a no-op once set. NORMAL sync is safe with
		 * WAL (no corruption); a power cut may lose the last
		 * commits, which clients rewrite within their TTL. */
		if (first) {
			rc = sqlite3_prepare_v2(s->db,
						"PRAGMA journal_mode = WAL", -1,
						&st, NULL);
			if (rc == SQLITE_OK)
				rc = sqlite3_step(st);
			if (rc != SQLITE_ROW) {
				snprintf(err, errlen, "cannot open: %s",
					 sqlite3_errmsg(s->db));
				rc = -EIO;
				goto out;
			}
			if (strcmp((const char *)sqlite3_column_text(st, 0),
				   "wal"))
				hw_log(HW_LOG_WARN, "discovery",
				       "sqlite: %s: WAL mode refused, readers "
				       "will wait for writers", sh->name);
			/* An active statement would block the migration's
			 * COMMIT. */
			sqlite3_finalize(st);
			st = NULL;
		}
		if ((rc = exec(s->db, "PRAGMA synchronous = NORMAL", err,
			       errlen, "cannot open")))
			goto out;
	}
	if (first && (rc = migrate(s->db, err, errlen)))
		goto out;
	for (int i = 0; i < ST_COUNT_OF; i++) {
		if (sqlite3_prepare_v3(s->db, sql[i], -1,
				       SQLITE_PREPARE_PERSISTENT, &s->st[i],
				       NULL) != SQLITE_OK) {
			snprintf(err, errlen, "cannot prepare statements "
				 "(not a discovery database?): %s",
				 sqlite3_errmsg(s->db));
			rc = -EIO;
			goto out;
		}
	}
	*out = &s->base;
	s = NULL;
	rc = 0;
out:
	sqlite3_finalize(st);
	sq_free(s ? &s->base : NULL);
	return rc;
}

int hw_dstore_sqlite_new(struct hw_dstore **out, const char *path,
			 char *err, size_t errlen)
{
	static atomic_uint memdb_counter;
	struct shared *sh = NULL;
	char msg[512];
	int rc;

	if (!out || !path)
		return -EINVAL;
	*out = NULL;
	if (!*path) {
		snprintf(err, errlen, "store 'sqlite:': no file name");
		return -EINVAL;
	}
	sh = calloc(1, sizeof(*sh));
	if (!sh) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	atomic_init(&sh->refs, 1);
	pthread_mutex_init(&sh->write_mu, NULL);
	sh->flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
		    SQLITE_OPEN_NOMUTEX;
	if (!strcmp(path, ":memory:")) {
		char uri[96];

		snprintf(uri, sizeof(uri), "file:/hw-discovery-%ld-%u?vfs=memdb",
			 (long)getpid(),
			 atomic_fetch_add(&memdb_counter, 1));
		sh->name = strdup(uri);
		sh->memory = true;
		sh->flags |= SQLITE_OPEN_URI;
	} else {
		/* No SQLITE_OPEN_URI: a file called "file:x" is a file. */
		sh->name = strdup(path);
	}
	if (!sh->name) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	rc = sq_connect(sh, true, out, msg, sizeof(msg));
	if (rc)
		snprintf(err, errlen, "store 'sqlite:%s': %s", path, msg);
out:
	shared_unref(sh);
	return rc;
}

static int sq_clone(struct hw_dstore *base, struct hw_dstore **out,
		    char *err, size_t errlen)
{
	struct sq_store *s = (struct sq_store *)base;

	return sq_connect(s->sh, false, out, err, errlen);
}

/* Binds a kind and key, the first two parameters of most statements. */
static void bind_kind_key(sqlite3_stmt *st, enum hw_disc_kind kind,
			  const char *key)
{
	sqlite3_bind_int(st, 1, (int)kind);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
}

static void done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* Steps st, which must finish without rows. */
static int step_done(struct sq_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	done(st);
	return rc == SQLITE_DONE ? 0 : fail(s, rc, what);
}

/* The body of a write, inside the transaction: returns 0 and the
 * outcome, or a failure (the caller rolls back). Nothing is changed
 * unless the outcome is OK. */
static int write_locked(struct sq_store *s, const struct hw_dstore_write *w,
			struct hw_dstore_result *res, int64_t now)
{
	sqlite3_stmt *st;
	int rc;

	if (w->signer) {
		uint64_t last = 0;

		st = s->st[ST_SEQ_GET];
		sqlite3_bind_blob(st, 1, w->signer, HW_PK_LEN, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			last = (uint64_t)sqlite3_column_int64(st, 0);
		done(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return fail(s, rc, "reading a sequence number");
		if (w->seq <= last) {
			res->outcome = HW_DSTORE_REPLAY;
			res->last_seq = last;
			return 0;
		}
	}
	if (w->op == HW_DSTORE_DEL) {
		bool allowed = !w->need_idx;

		st = s->st[ST_LOOKUP];
		bind_kind_key(st, w->kind, w->key);
		sqlite3_bind_int64(st, 3, now);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW && w->need_idx) {
			for (int i = 0; i < 2; i++) {
				const char *v = (const char *)
					sqlite3_column_text(st, i);
				if (v && !strcmp(v, w->need_idx))
					allowed = true;
			}
		}
		done(st);
		if (rc == SQLITE_DONE) {
			res->outcome = HW_DSTORE_NOENT;
			return 0;
		}
		if (rc != SQLITE_ROW)
			return fail(s, rc, "looking up an entry");
		if (!allowed) {
			res->outcome = HW_DSTORE_DENIED;
			return 0;
		}
		st = s->st[ST_DEL];
		bind_kind_key(st, w->kind, w->key);
		if ((rc = step_done(s, st, "deleting an entry")))
			return rc;
	} else if (w->op == HW_DSTORE_PUT) {
		st = s->st[ST_PUT];
		bind_kind_key(st, w->kind, w->key);
		sqlite3_bind_text(st, 3, w->json, (int)w->json_len,
				  SQLITE_STATIC);
		for (int i = 0; i < 2; i++) {
			if (w->idx[i])
				sqlite3_bind_text(st, 4 + i, w->idx[i], -1,
						  SQLITE_STATIC);
			else
				sqlite3_bind_null(st, 4 + i);
		}
		sqlite3_bind_int64(st, 6, w->expires_ms);
		if ((rc = step_done(s, st, "storing an entry")))
			return rc;
	}
	if (w->signer) {
		st = s->st[ST_SEQ_SET];
		sqlite3_bind_blob(st, 1, w->signer, HW_PK_LEN, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)w->seq);
		if ((rc = step_done(s, st, "recording a sequence number")))
			return rc;
	}
	res->outcome = HW_DSTORE_OK;
	return 0;
}

static int sq_write(struct hw_dstore *base, const struct hw_dstore_write *w,
		    struct hw_dstore_result *res)
{
	struct sq_store *s = (struct sq_store *)base;
	int rc;

	pthread_mutex_lock(&s->sh->write_mu);
	rc = step_done(s, s->st[ST_BEGIN], "beginning a write");
	if (rc)
		goto out;
	rc = write_locked(s, w, res, hw_dstore_now_ms());
	/* Nothing changed unless OK: those end like failures. */
	if (rc == 0 && res->outcome == HW_DSTORE_OK)
		rc = step_done(s, s->st[ST_COMMIT], "committing a write");
	/* A failed COMMIT can leave the transaction open too. */
	if (sqlite3_get_autocommit(s->db) == 0) {
		sqlite3_step(s->st[ST_ROLLBACK]);
		done(s->st[ST_ROLLBACK]);
	}
out:
	pthread_mutex_unlock(&s->sh->write_mu);
	return rc;
}

static int sq_get(struct hw_dstore *base, enum hw_disc_kind kind,
		  const char *key, char **json, size_t *len)
{
	struct sq_store *s = (struct sq_store *)base;
	sqlite3_stmt *st = s->st[ST_GET];
	int rc;

	bind_kind_key(st, kind, key);
	sqlite3_bind_int64(st, 3, hw_dstore_now_ms());
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const void *text = sqlite3_column_text(st, 0);
		size_t n = (size_t)sqlite3_column_bytes(st, 0);

		*json = text ? malloc(n + 1) : NULL;
		if (*json) {
			memcpy(*json, text, n);
			(*json)[n] = '\0';
			*len = n;
			rc = 0;
		} else {
			rc = -ENOMEM;
		}
	} else if (rc == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		rc = fail(s, rc, "reading an entry");
	}
	done(st);
	return rc;
}

static int sq_list(struct hw_dstore *base, enum hw_disc_kind kind,
		   const char *filter, size_t limit, hw_dstore_each_fn fn,
		   void *ud)
{
	struct sq_store *s = (struct sq_store *)base;
	sqlite3_stmt *st;
	int rc, col;

	if (limit > INT64_MAX)
		limit = INT64_MAX;
	if (filter) {
		st = s->st[ST_LIST_IDX];
		sqlite3_bind_int(st, 1, (int)kind);
		sqlite3_bind_text(st, 2, filter, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, hw_dstore_now_ms());
		sqlite3_bind_int64(st, 4, (sqlite3_int64)limit);
		col = 1;
	} else {
		st = s->st[ST_LIST];
		sqlite3_bind_int(st, 1, (int)kind);
		sqlite3_bind_int64(st, 2, hw_dstore_now_ms());
		sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
		col = 0;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(st, col);
		int n = sqlite3_column_bytes(st, col);

		if (!text)
			continue;
		if ((rc = fn(text, (size_t)n, ud)))
			goto out;
	}
	rc = rc == SQLITE_DONE ? 0 : fail(s, rc, "listing entries");
out:
	done(st);
	return rc;
}

static int sq_count(struct hw_dstore *base, enum hw_disc_kind kind,
		    uint64_t *n)
{
	struct sq_store *s = (struct sq_store *)base;
	sqlite3_stmt *st = s->st[ST_COUNT];
	int rc;

	sqlite3_bind_int(st, 1, (int)kind);
	sqlite3_bind_int64(st, 2, hw_dstore_now_ms());
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*n = (uint64_t)sqlite3_column_int64(st, 0);
		rc = 0;
	} else {
		rc = fail(s, rc, "counting entries");
	}
	done(st);
	return rc;
}

static int sq_sweep(struct hw_dstore *base, uint64_t *removed)
{
	struct sq_store *s = (struct sq_store *)base;
	sqlite3_stmt *st = s->st[ST_SWEEP];
	int rc;

	pthread_mutex_lock(&s->sh->write_mu);
	sqlite3_bind_int64(st, 1, hw_dstore_now_ms());
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		*removed = (uint64_t)sqlite3_changes(s->db);
		rc = 0;
	} else {
		rc = fail(s, rc, "deleting expired entries");
	}
	done(st);
	pthread_mutex_unlock(&s->sh->write_mu);
	return rc;
}

static const struct hw_dstore_ops sqlite_ops = {
	.name = "sqlite",
	.clone = sq_clone,
	.free = sq_free,
	.write = sq_write,
	.get = sq_get,
	.list = sq_list,
	.count = sq_count,
	.sweep = sq_sweep,
};
