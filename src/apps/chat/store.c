/* The chat history and outbox: one SQLite file in WAL mode.
 *
 * Schema version 2 (PRAGMA user_version = 2; docs/chat.md):
 *   messages(id INTEGER PRIMARY KEY, peer TEXT (hex pk), direction 'in' |
 *            'out', text TEXT, time_ms INTEGER (ms since the epoch),
 *            msg_id TEXT (the protocol id; NULL: none), state 'pending' |
 *            'delivered' | 'failed' (out only), expire_ms INTEGER (out))
 *   index messages_peer(peer, id)
 *   unique index messages_msg_id(peer, direction, msg_id) where msg_id
 *   index messages_pending(peer, id) where state = 'pending'
 * A file at version 0 with no table is initialised, one at version 1
 * migrated (its outgoing messages were written to a loop, which version
 * 1 counted as sent: they become delivered); a newer version is refused
 * rather than misread.
 *
 * One connection, serialised by st->mu: the writers are the main thread
 * (incoming messages) and HTTP threads (outgoing ones); the readers are
 * HTTP threads. Queries are short; WAL keeps readers of other processes
 * (sqlite3 by hand) from blocking us. The mutex also guards last_id, which
 * the event streams wait on with st->cv. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "chat.h"

#define STORE_SCHEMA_VERSION 2
#define STORE_BUSY_MS 5000
#define STORE_PEERS_MAX 1000

struct hw_chat_store {
	sqlite3 *db;
	sqlite3_stmt *insert;
	sqlite3_stmt *find;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled when last_id grows or on cancel */
	int64_t last_id;
	bool cancelled;
};

static const char schema_v1[] =
	"CREATE TABLE messages ("
	" id INTEGER PRIMARY KEY,"
	" peer TEXT NOT NULL,"
	" direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),"
	" text TEXT NOT NULL,"
	" time_ms INTEGER NOT NULL);"
	"CREATE INDEX messages_peer ON messages (peer, id);"
	"PRAGMA user_version = 1;";

static const char schema_v2[] =
	"ALTER TABLE messages ADD COLUMN msg_id TEXT;"
	"ALTER TABLE messages ADD COLUMN state TEXT CHECK (state IN "
	" ('pending', 'delivered', 'failed'));"
	"ALTER TABLE messages ADD COLUMN expire_ms INTEGER;"
	"UPDATE messages SET state = 'delivered' WHERE direction = 'out';"
	"CREATE UNIQUE INDEX messages_msg_id ON messages "
	" (peer, direction, msg_id) WHERE msg_id IS NOT NULL;"
	"CREATE INDEX messages_pending ON messages (peer, id) "
	" WHERE state = 'pending';"
	"PRAGMA user_version = 2;";

static int exec_sql(sqlite3 *db, const char *sql, const char *path,
		    char *err, size_t errlen)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(err, errlen, "%s: %s", path,
		 msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -EIO;
}

static int query_int(sqlite3 *db, const char *sql, int64_t *v)
{
	sqlite3_stmt *s = NULL;
	int rc = -EIO;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		goto out;
	if (sqlite3_step(s) != SQLITE_ROW)
		goto out;
	*v = sqlite3_column_int64(s, 0);
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

/* Brings the schema to STORE_SCHEMA_VERSION inside one write transaction,
 * so two processes opening a new file do not both create it. */
static int migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	int64_t version = 0;
	int rc;

	if ((rc = exec_sql(db, "BEGIN IMMEDIATE", path, err, errlen)))
		return rc;
	if (query_int(db, "PRAGMA user_version", &version)) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
		rc = -EIO;
		goto out;
	}
	if (version > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen, "%s: history schema version %lld is "
			 "newer than this hopwire-chat's (%d)", path,
			 (long long)version, STORE_SCHEMA_VERSION);
		rc = -EPROTONOSUPPORT;
		goto out;
	}
	if (version < 1 && (rc = exec_sql(db, schema_v1, path, err, errlen)))
		goto out;
	if (version < 2 && (rc = exec_sql(db, schema_v2, path, err, errlen)))
		goto out;
	rc = exec_sql(db, "COMMIT", path, err, errlen);
out:
	if (rc)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int hw_chat_store_open(struct hw_chat_store **out, const char *path,
		       char *err, size_t errlen)
{
	struct hw_chat_store *st = NULL;
	pthread_condattr_t ca;
	bool mu_init = false, cv_init = false;
	sqlite3_stmt *s = NULL;
	int rc;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((rc = -pthread_mutex_init(&st->mu, NULL)))
		goto fail_sys;
	mu_init = true;
	if ((rc = -pthread_condattr_init(&ca)))
		goto fail_sys;
	rc = -pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = -pthread_cond_init(&st->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc)
		goto fail_sys;
	cv_init = true;

	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE |
			    SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 st->db ? sqlite3_errmsg(st->db) : "out of memory");
		rc = -EIO;
		goto out;
	}
	sqlite3_busy_timeout(st->db, STORE_BUSY_MS);
	sqlite3_extended_result_codes(st->db, 1);
	/* The first statement reads the file: "file is not a database"
	 * shows here. WAL may be refused (some network file systems); the
	 * history still works in the default mode then. */
	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s,
			       NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(st->db));
		rc = -EIO;
		goto out;
	}
	if (strcmp((const char *)sqlite3_column_text(s, 0), "wal"))
		hw_chat_log("%s: journal mode is %s, not WAL", path,
			    (const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	s = NULL;
	/* FULL: a message is acknowledged once stored, so its commit must
	 * survive a power cut too, not only the app being killed. */
	if ((rc = exec_sql(st->db, "PRAGMA synchronous = FULL", path, err,
			   errlen)) ||
	    (rc = migrate(st->db, path, err, errlen)))
		goto out;
	if (sqlite3_prepare_v2(st->db,
			       "INSERT OR IGNORE INTO messages (peer, "
			       "direction, text, time_ms, msg_id, state, "
			       "expire_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
			       -1, &st->insert, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->db,
			       "SELECT id FROM messages WHERE peer = ?1 AND "
			       "direction = 'in' AND msg_id = ?2",
			       -1, &st->find, NULL) != SQLITE_OK ||
	    query_int(st->db, "SELECT COALESCE(MAX(id), 0) FROM messages",
		      &st->last_id)) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(st->db));
		rc = -EIO;
		goto out;
	}
	*out = st;
	st = NULL;
	rc = 0;
	goto out;
fail_sys:
	snprintf(err, errlen, "%s", strerror(-rc));
out:
	sqlite3_finalize(s);
	if (st) {
		sqlite3_finalize(st->insert);
		sqlite3_finalize(st->find);
		sqlite3_close(st->db);
		if (cv_init)
			pthread_cond_destroy(&st->cv);
		if (mu_init)
			pthread_mutex_destroy(&st->mu);
		free(st);
	}
	return rc;
}

void hw_chat_store_close(struct hw_chat_store *st)
{
	if (!st)
		return;
	sqlite3_finalize(st->insert);
	sqlite3_finalize(st->find);
	/* The last connection to close checkpoints the WAL into the file. */
	if (sqlite3_close(st->db) != SQLITE_OK)
		hw_chat_log("history: close: %s", sqlite3_errmsg(st->db));
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->mu);
	free(st);
}

/* Inserts a row (st->mu held); *id 0 when OR IGNORE skipped it (a
 * duplicate msg_id). */
static int insert_locked(struct hw_chat_store *st, const char *peer,
			 const char *direction, const char *text,
			 int64_t time_ms, const char *msg_id,
			 const char *state, int64_t expire_ms, int64_t *id,
			 char *err, size_t errlen)
{
	sqlite3_stmt *s = st->insert;
	int rc = 0;

	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, direction, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, time_ms);
	if (msg_id)
		sqlite3_bind_text(s, 5, msg_id, -1, SQLITE_STATIC);
	if (state) {
		sqlite3_bind_text(s, 6, state, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 7, expire_ms);
	}
	if (sqlite3_step(s) != SQLITE_DONE) {
		snprintf(err, errlen, "history: %s", sqlite3_errmsg(st->db));
		rc = -EIO;
	} else if (sqlite3_changes(st->db) == 0) {
		*id = 0;
	} else {
		*id = sqlite3_last_insert_rowid(st->db);
		if (*id > st->last_id)
			st->last_id = *id;
		pthread_cond_broadcast(&st->cv);
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc;
}

int hw_chat_store_add_in(struct hw_chat_store *st, const char *peer,
			 const char *msg_id, const char *text,
			 int64_t time_ms, int64_t *id, int *dup, char *err,
			 size_t errlen)
{
	sqlite3_stmt *s = st->find;
	int rc;

	*dup = 0;
	pthread_mutex_lock(&st->mu);
	rc = insert_locked(st, peer, "in", text, time_ms, msg_id, NULL, 0, id,
			   err, errlen);
	if (rc == 0 && *id == 0) {
		*dup = 1;
		sqlite3_reset(s);
		sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, msg_id, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW) {
			*id = sqlite3_column_int64(s, 0);
		} else {
			snprintf(err, errlen, "history: %s",
				 sqlite3_errmsg(st->db));
			rc = -EIO;
		}
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
	pthread_mutex_unlock(&st->mu);
	return rc;
}

/* The first column of sql (one int64 parameter or a text one) as an
 * int64; st->mu held. */
static int count_locked(struct hw_chat_store *st, const char *sql,
			const char *peer, int64_t *n)
{
	sqlite3_stmt *s = NULL;
	int rc = -EIO;

	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		goto out;
	if (peer)
		sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_ROW)
		goto out;
	*n = sqlite3_column_int64(s, 0);
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

int hw_chat_store_add_out(struct hw_chat_store *st, const char *peer,
			  const char *msg_id, const char *text,
			  int64_t time_ms, int64_t expire_ms, int64_t *id,
			  char *err, size_t errlen)
{
	int64_t to_peer = 0, all = 0;
	int rc;

	pthread_mutex_lock(&st->mu);
	if (count_locked(st, "SELECT COUNT(*) FROM messages WHERE peer = ?1 "
			 "AND state = 'pending'", peer, &to_peer) ||
	    count_locked(st, "SELECT COUNT(*) FROM messages WHERE state = "
			 "'pending'", NULL, &all)) {
		snprintf(err, errlen, "history: %s", sqlite3_errmsg(st->db));
		rc = -EIO;
	} else if (to_peer >= HW_CHAT_PENDING_PEER_MAX) {
		snprintf(err, errlen, "%d messages to %s are pending already: "
			 "send more once they are delivered or failed",
			 HW_CHAT_PENDING_PEER_MAX, peer);
		rc = -EDQUOT;
	} else if (all >= HW_CHAT_PENDING_MAX) {
		snprintf(err, errlen, "%d messages are pending already: send "
			 "more once they are delivered or failed",
			 HW_CHAT_PENDING_MAX);
		rc = -EDQUOT;
	} else {
		rc = insert_locked(st, peer, "out", text, time_ms, msg_id,
				   "pending", expire_ms, id, err, errlen);
		if (rc == 0 && *id == 0) {
			snprintf(err, errlen, "message id %s is taken", msg_id);
			rc = -EIO;
		}
	}
	pthread_mutex_unlock(&st->mu);
	return rc;
}

int hw_chat_store_pending(struct hw_chat_store *st, const char *peer,
			  int64_t after, int limit,
			  int (*fn)(void *arg, int64_t id, const char *msg_id,
				    const char *text),
			  void *arg)
{
	sqlite3_stmt *s = NULL;
	int rc = -EIO, n = 0, step;

	pthread_mutex_lock(&st->mu);
	if (sqlite3_prepare_v2(st->db, "SELECT id, msg_id, text FROM messages "
			       "WHERE peer = ?1 AND state = 'pending' AND "
			       "id > ?2 ORDER BY id LIMIT ?3", -1, &s,
			       NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, after);
	sqlite3_bind_int(s, 3, limit);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		const char *mid = (const char *)sqlite3_column_text(s, 1);
		const char *text = (const char *)sqlite3_column_text(s, 2);

		/* Rows we queued have both; fn skips one edited by hand. */
		n++;
		if (fn(arg, sqlite3_column_int64(s, 0), mid, text))
			break;
	}
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		goto out;
	rc = n;
out:
	if (rc < 0)
		hw_chat_log("history: pending: %s", sqlite3_errmsg(st->db));
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->mu);
	return rc;
}

int hw_chat_store_pending_peers(struct hw_chat_store *st,
				void (*fn)(void *arg, const char *peer),
				void *arg)
{
	sqlite3_stmt *s = NULL;
	int rc = -EIO, n = 0, step;

	pthread_mutex_lock(&st->mu);
	if (sqlite3_prepare_v2(st->db, "SELECT DISTINCT peer FROM messages "
			       "WHERE state = 'pending' LIMIT ?1", -1, &s,
			       NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_int(s, 1, HW_CHAT_PENDING_MAX);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		const char *peer = (const char *)sqlite3_column_text(s, 0);

		if (peer && hw_chat_pk_ok(peer, NULL)) {
			n++;
			fn(arg, peer);
		}
	}
	if (step == SQLITE_DONE)
		rc = n;
out:
	if (rc < 0)
		hw_chat_log("history: pending: %s", sqlite3_errmsg(st->db));
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->mu);
	return rc;
}

/* Runs an UPDATE with one int64 parameter; the number of rows changed or
 * -EIO. */
static int update(struct hw_chat_store *st, const char *sql, int64_t v)
{
	sqlite3_stmt *s = NULL;
	int rc = -EIO;

	pthread_mutex_lock(&st->mu);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, v);
		if (sqlite3_step(s) == SQLITE_DONE)
			rc = sqlite3_changes(st->db);
	}
	if (rc < 0)
		hw_chat_log("history: update: %s", sqlite3_errmsg(st->db));
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->mu);
	return rc;
}

int hw_chat_store_delivered(struct hw_chat_store *st, int64_t id)
{
	return update(st, "UPDATE messages SET state = 'delivered' WHERE "
		      "id = ?1 AND state IN ('pending', 'failed')", id);
}

int hw_chat_store_expire(struct hw_chat_store *st, int64_t now_ms)
{
	return update(st, "UPDATE messages SET state = 'failed' WHERE "
		      "state = 'pending' AND expire_ms <= ?1", now_ms);
}

/* A text column as a JSON string. Rows written by us are UTF-8; a file
 * edited by hand may hold anything, which is shown as U+FFFD rather than
 * failing the whole answer. */
static json_t *text_value(sqlite3_stmt *s, int col)
{
	const char *t = (const char *)sqlite3_column_text(s, col);
	int n = sqlite3_column_bytes(s, col);
	json_t *v;

	if (!t)
		return json_string("");
	v = json_stringn(t, (size_t)n);
	return v ? v : json_string("\xef\xbf\xbd");
}

static json_t *row_message(sqlite3_stmt *s)
{
	json_t *m = json_pack("{s:I, s:o, s:o, s:o, s:I}",
			      "id", (json_int_t)sqlite3_column_int64(s, 0),
			      "peer", text_value(s, 1),
			      "direction", text_value(s, 2),
			      "text", text_value(s, 3),
			      "time_ms",
			      (json_int_t)sqlite3_column_int64(s, 4));

	if (m && sqlite3_column_type(s, 5) != SQLITE_NULL &&
	    json_object_set_new(m, "state", text_value(s, 5))) {
		json_decref(m);
		m = NULL;
	}
	return m;
}

static json_t *row_peer(sqlite3_stmt *s)
{
	return json_pack("{s:o, s:I, s:I}", "pk", text_value(s, 0),
			 "last_time_ms", (json_int_t)sqlite3_column_int64(s, 1),
			 "count", (json_int_t)sqlite3_column_int64(s, 2));
}

/* Runs s (prepared and bound under st->mu, which the caller holds) and
 * collects its rows made by row into a JSON array; finalizes s and
 * unlocks. NULL on failure (logged with what). */
static json_t *collect_rows(struct hw_chat_store *st, sqlite3_stmt *s,
			    json_t *(*row)(sqlite3_stmt *), const char *what)
{
	json_t *arr = json_array(), *res = NULL;
	int rc;

	if (!arr || !s)
		goto out;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *r = row(s);

		if (!r || json_array_append_new(arr, r))
			goto out;
	}
	if (rc != SQLITE_DONE)
		goto out;
	res = arr;
	arr = NULL;
out:
	if (!res)
		hw_chat_log("history: %s: %s", what, sqlite3_errmsg(st->db));
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->mu);
	json_decref(arr);
	return res;
}

json_t *hw_chat_store_messages(struct hw_chat_store *st, const char *peer,
			       int64_t after, int limit)
{
	/* ?1 peer or NULL, ?2 after, ?3 limit. */
	static const char after_sql[] =
		"SELECT id, peer, direction, text, time_ms, state "
		"FROM messages WHERE id > ?2 AND (?1 IS NULL OR peer = ?1) "
		"ORDER BY id LIMIT ?3";
	static const char last_sql[] =
		"SELECT * FROM (SELECT id, peer, direction, text, time_ms, "
		"state FROM messages WHERE (?1 IS NULL OR peer = ?1) "
		"ORDER BY id DESC LIMIT ?3) ORDER BY id";
	sqlite3_stmt *s = NULL;

	pthread_mutex_lock(&st->mu);
	if (sqlite3_prepare_v2(st->db, after >= 0 ? after_sql : last_sql, -1,
			       &s, NULL) == SQLITE_OK) {
		if (peer)
			sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, after);
		sqlite3_bind_int(s, 3, limit);
	}
	return collect_rows(st, s, row_message, "query");
}

json_t *hw_chat_store_peers(struct hw_chat_store *st)
{
	static const char sql[] =
		"SELECT peer, MAX(time_ms), COUNT(*) FROM messages "
		"GROUP BY peer ORDER BY 2 DESC, 1 LIMIT ?1";
	sqlite3_stmt *s = NULL;

	pthread_mutex_lock(&st->mu);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK)
		sqlite3_bind_int(s, 1, STORE_PEERS_MAX);
	return collect_rows(st, s, row_peer, "peers");
}

int64_t hw_chat_store_last_id(struct hw_chat_store *st)
{
	int64_t id;

	pthread_mutex_lock(&st->mu);
	id = st->last_id;
	pthread_mutex_unlock(&st->mu);
	return id;
}

int hw_chat_store_wait(struct hw_chat_store *st, int64_t after,
		       int64_t timeout_ms)
{
	struct timespec until;
	int rc = 0;

	if (timeout_ms < 0)
		timeout_ms = 0;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(timeout_ms / 1000);
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&st->mu);
	while (!st->cancelled && st->last_id <= after && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&st->cv, &st->mu, &until);
	if (st->cancelled)
		rc = -ECANCELED;
	else
		rc = st->last_id > after;
	pthread_mutex_unlock(&st->mu);
	return rc;
}

void hw_chat_store_cancel_waits(struct hw_chat_store *st)
{
	pthread_mutex_lock(&st->mu);
	st->cancelled = true;
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
}
