/* Discovery storage on Redis, for several discovery replicas sharing one
 * Redis server (or one database of it).
 *
 * Key layout (docs/discovery.md):
 *   hw:d:<kind>:<key>          hash {j: entry JSON, a: idx0, b: idx1},
 *                              PEXPIREAT at the entry's expiry
 *   hw:d:all:<kind>            sorted set: key -> expiry (ms)
 *   hw:d:idx:<kind>:<value>    sorted set: key -> expiry, per index value
 *                              (a transport's edge, a service's type)
 *   hw:d:seq                   hash: signer pk hex -> last accepted seq
 * Redis expires the entries themselves; the sorted sets are scored by
 * expiry, so reads skip dead members by score, a sweep trims them, and a
 * member whose hash is gone anyway (clock skew between replicas and
 * Redis) is removed when a listing meets it.
 *
 * Every write is one Lua script, so the sequence check-and-set and the
 * change it authorises are atomic across replicas. Sequence numbers go
 * through Lua as decimal strings: Lua numbers are doubles, and a 64-bit
 * sequence number must compare exactly. The script builds key names from
 * a prefix, so this backend wants a single Redis server, not a cluster.
 *
 * A connection that fails is dropped and re-made by the next operation;
 * a read that finds its connection dead reconnects and is asked once
 * more, but a write is never retried, since it may have run before the
 * reply was lost. */
#include "discovery/store.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "util/addr.h"
#include "util/hex.h"
#include "util/log.h"

#define PREFIX "hw:d:"
#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 5000
/* Entries fetched per pipelined batch while listing. */
#define LIST_BATCH 256
/* Bytes of a key name: prefix, "idx:", kind, ':', the longest value. */
#define NAME_MAX_LEN 256

static const char write_script[] =
	"local p, op, signer, seq = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
	"local kind, key, exp = ARGV[5], ARGV[6], ARGV[10]\n"
	"local function gt(x, y)\n"
	"  if #x ~= #y then return #x > #y end\n"
	"  return x > y\n"
	"end\n"
	"if signer ~= '' then\n"
	"  local last = redis.call('HGET', p .. 'seq', signer)\n"
	"  if last and not gt(seq, last) then return {'replay', last} end\n"
	"end\n"
	"local ek = p .. kind .. ':' .. key\n"
	"local all = p .. 'all:' .. kind\n"
	"local ix = p .. 'idx:' .. kind .. ':'\n"
	"if op == 'del' then\n"
	"  if redis.call('EXISTS', ek) == 0 then return {'noent'} end\n"
	"  local old = redis.call('HMGET', ek, 'a', 'b')\n"
	"  local need = ARGV[11]\n"
	"  if need ~= '' and old[1] ~= need and old[2] ~= need then\n"
	"    return {'denied'}\n"
	"  end\n"
	"  redis.call('DEL', ek)\n"
	"  redis.call('ZREM', all, key)\n"
	"  for i = 1, 2 do\n"
	"    if old[i] then redis.call('ZREM', ix .. old[i], key) end\n"
	"  end\n"
	"elseif op == 'put' then\n"
	"  local a, b = ARGV[8], ARGV[9]\n"
	"  local old = redis.call('HMGET', ek, 'a', 'b')\n"
	"  for i = 1, 2 do\n"
	"    if old[i] and old[i] ~= a and old[i] ~= b then\n"
	"      redis.call('ZREM', ix .. old[i], key)\n"
	"    end\n"
	"  end\n"
	"  redis.call('DEL', ek)\n"
	"  local f = {'j', ARGV[7]}\n"
	"  if a ~= '' then table.insert(f, 'a'); table.insert(f, a) end\n"
	"  if b ~= '' then table.insert(f, 'b'); table.insert(f, b) end\n"
	"  redis.call('HSET', ek, unpack(f))\n"
	"  redis.call('PEXPIREAT', ek, exp)\n"
	"  redis.call('ZADD', all, exp, key)\n"
	"  if a ~= '' then redis.call('ZADD', ix .. a, exp, key) end\n"
	"  if b ~= '' then redis.call('ZADD', ix .. b, exp, key) end\n"
	"end\n"
	"if signer ~= '' then redis.call('HSET', p .. 'seq', signer, seq) end\n"
	"return {'ok'}\n";

struct rd_store {
	struct hw_dstore base;
	redisContext *c; /* NULL or failed: re-made by the next operation */
	char host[HW_HOST_MAX];
	uint16_t port;
	int db;
	char sha[41];   /* of write_script, once loaded; "" before */
	char spec[HW_HOST_MAX + 32];
	bool logged_down; /* "cannot reach Redis" logged once per outage */
};

static const struct hw_dstore_ops redis_ops;

static void rd_drop(struct rd_store *s)
{
	if (s->c)
		redisFree(s->c);
	s->c = NULL;
}

static void rd_free(struct hw_dstore *base)
{
	struct rd_store *s = (struct rd_store *)base;

	if (!s)
		return;
	rd_drop(s);
	free(s);
}

static struct timeval ms_tv(unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000,
			     .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	return tv;
}

/* Sends one command and waits for its reply; a dead connection is
 * dropped. Returns the reply (the caller frees it) or NULL. */
static redisReply *call(struct rd_store *s, int argc, const char **argv,
			const size_t *lens)
{
	redisReply *r;

	if (!s->c)
		return NULL;
	r = redisCommandArgv(s->c, argc, argv, lens);
	if (!r) {
		hw_log(HW_LOG_WARN, "discovery", "redis %s: %s", s->spec,
		       s->c->errstr[0] ? s->c->errstr : "connection lost");
		rd_drop(s);
	}
	return r;
}

/* Connects, selects the database and loads the write script. Returns 0
 * or -EIO with a message in err. */
static int rd_connect(struct rd_store *s, char *err, size_t errlen)
{
	const char *argv[3];
	size_t lens[3];
	char dbtext[16];
	redisReply *r = NULL;
	int rc = -EIO;

	rd_drop(s);
	s->c = redisConnectWithTimeout(s->host, s->port,
				       ms_tv(CONNECT_TIMEOUT_MS));
	if (!s->c || s->c->err) {
		snprintf(err, errlen, "cannot connect: %s",
			 s->c ? s->c->errstr : "out of memory");
		goto out;
	}
	redisSetTimeout(s->c, ms_tv(COMMAND_TIMEOUT_MS));
	snprintf(dbtext, sizeof(dbtext), "%d", s->db);
	argv[0] = "SELECT";
	argv[1] = dbtext;
	r = redisCommandArgv(s->c, 2, argv, NULL);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "SELECT %d: %s", s->db,
			 r ? r->str : s->c->errstr);
		goto out;
	}
	freeReplyObject(r);
	argv[0] = "SCRIPT";
	argv[1] = "LOAD";
	argv[2] = write_script;
	lens[0] = 6;
	lens[1] = 4;
	lens[2] = sizeof(write_script) - 1;
	r = redisCommandArgv(s->c, 3, argv, lens);
	if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
		snprintf(err, errlen, "SCRIPT LOAD: %s",
			 r && r->type == REDIS_REPLY_ERROR ? r->str
			 : r ? "unexpected reply" : s->c->errstr);
		goto out;
	}
	memcpy(s->sha, r->str, 40);
	s->sha[40] = '\0';
	rc = 0;
out:
	if (r)
		freeReplyObject(r);
	if (rc)
		rd_drop(s);
	return rc;
}

/* Makes sure there is a live connection (reconnecting after a failure).
 * Returns 0 or -EIO (logged once per outage). */
static int rd_ready(struct rd_store *s)
{
	char err[256];

	if (s->c)
		return 0;
	if (rd_connect(s, err, sizeof(err))) {
		if (!s->logged_down)
			hw_log(HW_LOG_WARN, "discovery", "redis %s: %s",
			       s->spec, err);
		s->logged_down = true;
		return -EIO;
	}
	if (s->logged_down)
		hw_log(HW_LOG_INFO, "discovery", "redis %s: reconnected",
		       s->spec);
	s->logged_down = false;
	return 0;
}

/* A read: when the connection turns out dead (Redis restarted since the
 * last request), reconnects and asks once more. Reads are safe to repeat;
 * writes never go through here. */
static redisReply *call_read(struct rd_store *s, int argc, const char **argv,
			     const size_t *lens)
{
	redisReply *r = call(s, argc, argv, lens);

	if (!r && rd_ready(s) == 0)
		r = call(s, argc, argv, lens);
	return r;
}

/* Parses "HOST:PORT" or "HOST:PORT/DB". */
static int parse_rest(struct rd_store *s, const char *rest, char *err,
		      size_t errlen)
{
	char hostport[HW_HOST_MAX + 16];
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);

	if (n == 0 || n >= sizeof(hostport))
		goto bad;
	memcpy(hostport, rest, n);
	hostport[n] = '\0';
	if (hw_addr_split(hostport, s->host, &s->port) || !s->host[0])
		goto bad;
	s->db = 0;
	if (slash) {
		char *end;
		long db;

		errno = 0;
		db = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || errno || db < 0 || db > INT_MAX ||
		    slash[1] == '+' || slash[1] == '-' || slash[1] == ' ')
			goto bad;
		s->db = (int)db;
	}
	return 0;
bad:
	snprintf(err, errlen, "store 'redis://%s': not redis://HOST:PORT or "
		 "redis://HOST:PORT/DB", rest);
	return -EINVAL;
}

static int rd_open(struct rd_store *tmpl, const char *rest,
		   struct hw_dstore **out, char *err, size_t errlen)
{
	struct rd_store *s;
	char msg[256];
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->base.ops = &redis_ops;
	if (tmpl) {
		memcpy(s->host, tmpl->host, sizeof(s->host));
		s->port = tmpl->port;
		s->db = tmpl->db;
		memcpy(s->spec, tmpl->spec, sizeof(s->spec));
	} else {
		if ((rc = parse_rest(s, rest, err, errlen)))
			goto out;
		snprintf(s->spec, sizeof(s->spec), "redis://%s", rest);
	}
	if ((rc = rd_connect(s, msg, sizeof(msg)))) {
		snprintf(err, errlen, "store '%s': %s", s->spec, msg);
		goto out;
	}
	*out = &s->base;
	s = NULL;
out:
	rd_free(s ? &s->base : NULL);
	return rc;
}

int hw_dstore_redis_new(struct hw_dstore **out, const char *rest, char *err,
			size_t errlen)
{
	if (!out || !rest)
		return -EINVAL;
	*out = NULL;
	return rd_open(NULL, rest, out, err, errlen);
}

static int rd_clone(struct hw_dstore *base, struct hw_dstore **out,
		    char *err, size_t errlen)
{
	return rd_open((struct rd_store *)base, NULL, out, err, errlen);
}

static int rd_write(struct hw_dstore *base, const struct hw_dstore_write *w,
		    struct hw_dstore_result *res)
{
	static const char *const ops[] = {"none", "put", "del"};
	struct rd_store *s = (struct rd_store *)base;
	char signer[HW_PK_HEXLEN + 1] = "", seq[24], exp[24], now[24];
	const char *argv[15];
	size_t lens[15];
	redisReply *r = NULL;
	int rc;

	if ((rc = rd_ready(s)))
		return rc;
	if (w->signer)
		hw_hex_encode(w->signer, HW_PK_LEN, signer);
	snprintf(seq, sizeof(seq), "%" PRIu64, w->seq);
	snprintf(exp, sizeof(exp), "%" PRId64, w->expires_ms);
	snprintf(now, sizeof(now), "%" PRId64, hw_dstore_now_ms());

	argv[0] = "EVALSHA";
	argv[1] = s->sha;
	argv[2] = "0";
	argv[3] = PREFIX;
	argv[4] = ops[w->op];
	argv[5] = signer;
	argv[6] = seq;
	argv[7] = w->op == HW_DSTORE_NONE ? "" : hw_dstore_kind_name(w->kind);
	argv[8] = w->op == HW_DSTORE_NONE ? "" : w->key;
	argv[9] = w->op == HW_DSTORE_PUT ? w->json : "";
	argv[10] = w->op == HW_DSTORE_PUT && w->idx[0] ? w->idx[0] : "";
	argv[11] = w->op == HW_DSTORE_PUT && w->idx[1] ? w->idx[1] : "";
	argv[12] = exp;
	argv[13] = w->op == HW_DSTORE_DEL && w->need_idx ? w->need_idx : "";
	argv[14] = now;
	for (int i = 0; i < 15; i++)
		lens[i] = strlen(argv[i]);
	if (w->op == HW_DSTORE_PUT)
		lens[9] = w->json_len;

	r = call(s, 15, argv, lens);
	if (r && r->type == REDIS_REPLY_ERROR &&
	    !strncmp(r->str, "NOSCRIPT", 8)) {
		/* The script cache was flushed (a Redis restart): EVAL
		 * runs the text and caches it again. */
		freeReplyObject(r);
		argv[0] = "EVAL";
		argv[1] = write_script;
		lens[0] = 4;
		lens[1] = sizeof(write_script) - 1;
		r = call(s, 15, argv, lens);
	}
	if (!r)
		return -EIO;
	rc = -EIO;
	if (r->type == REDIS_REPLY_ERROR) {
		hw_log(HW_LOG_WARN, "discovery", "redis %s: write: %s",
		       s->spec, r->str);
		goto out;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		goto bad;
	if (!strcmp(r->element[0]->str, "ok")) {
		res->outcome = HW_DSTORE_OK;
	} else if (!strcmp(r->element[0]->str, "noent")) {
		res->outcome = HW_DSTORE_NOENT;
	} else if (!strcmp(r->element[0]->str, "denied")) {
		res->outcome = HW_DSTORE_DENIED;
	} else if (!strcmp(r->element[0]->str, "replay") &&
		   r->elements == 2 &&
		   r->element[1]->type == REDIS_REPLY_STRING) {
		res->outcome = HW_DSTORE_REPLAY;
		res->last_seq = strtoull(r->element[1]->str, NULL, 10);
	} else {
		goto bad;
	}
	rc = 0;
	goto out;
bad:
	hw_log(HW_LOG_WARN, "discovery", "redis %s: write: unexpected reply",
	       s->spec);
out:
	freeReplyObject(r);
	return rc;
}

static int entry_name(char *out, size_t outlen, enum hw_disc_kind kind,
		      const char *key)
{
	int n = snprintf(out, outlen, PREFIX "%s:%s", hw_dstore_kind_name(kind),
			 key);

	return n > 0 && (size_t)n < outlen ? n : -ENAMETOOLONG;
}

static int rd_get(struct hw_dstore *base, enum hw_disc_kind kind,
		  const char *key, char **json, size_t *len)
{
	struct rd_store *s = (struct rd_store *)base;
	char name[NAME_MAX_LEN];
	const char *argv[3];
	redisReply *r;
	int rc;

	if ((rc = rd_ready(s)))
		return rc;
	if ((rc = entry_name(name, sizeof(name), kind, key)) < 0)
		return rc;
	argv[0] = "HGET";
	argv[1] = name;
	argv[2] = "j";
	r = call_read(s, 3, argv, NULL);
	if (!r)
		return -EIO;
	if (r->type == REDIS_REPLY_NIL) {
		rc = -ENOENT;
	} else if (r->type == REDIS_REPLY_STRING) {
		*json = malloc(r->len + 1);
		if (*json) {
			memcpy(*json, r->str, r->len);
			(*json)[r->len] = '\0';
			*len = r->len;
			rc = 0;
		} else {
			rc = -ENOMEM;
		}
	} else {
		hw_log(HW_LOG_WARN, "discovery", "redis %s: HGET %s: %s",
		       s->spec, name,
		       r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
		rc = -EIO;
	}
	freeReplyObject(r);
	return rc;
}

/* Collects the reply of one pipelined command; a lost connection is
 * dropped. */
static redisReply *collect(struct rd_store *s)
{
	void *r = NULL;

	if (redisGetReply(s->c, &r) != REDIS_OK) {
		hw_log(HW_LOG_WARN, "discovery", "redis %s: %s", s->spec,
		       s->c->errstr[0] ? s->c->errstr : "connection lost");
		rd_drop(s);
		return NULL;
	}
	return r;
}

/* Fetches the entries of members[0..n) in one pipeline and hands the live
 * ones to fn; members whose hash is gone are removed from zset. */
static int fetch_batch(struct rd_store *s, enum hw_disc_kind kind,
		       const char *zset, redisReply **members, size_t n,
		       hw_dstore_each_fn fn, void *ud)
{
	char name[NAME_MAX_LEN];
	const char *argv[3] = {"HGET", name, "j"};
	redisReply *replies[LIST_BATCH] = {0};
	size_t got = 0, gone = 0;
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		if (entry_name(name, sizeof(name), kind, members[i]->str) < 0)
			name[0] = '\0';
		if (redisAppendCommandArgv(s->c, 3, argv, NULL) != REDIS_OK) {
			rd_drop(s);
			return -EIO;
		}
	}
	for (got = 0; got < n; got++) {
		replies[got] = collect(s);
		if (!replies[got]) {
			rc = -EIO;
			goto out;
		}
	}
	for (size_t i = 0; i < n && !rc; i++) {
		if (replies[i]->type == REDIS_REPLY_STRING)
			rc = fn(replies[i]->str, replies[i]->len, ud);
		else if (replies[i]->type == REDIS_REPLY_NIL)
			gone++;
	}
	if (gone && !rc) {
		/* Lazy clean-up of members whose entry expired early. */
		for (size_t i = 0; i < n; i++) {
			const char *zargv[3] = {"ZREM", zset, members[i]->str};
			redisReply *z;

			if (replies[i]->type != REDIS_REPLY_NIL)
				continue;
			z = call(s, 3, zargv, NULL);
			if (!z)
				break;
			freeReplyObject(z);
		}
	}
out:
	for (size_t i = 0; i < got; i++)
		freeReplyObject(replies[i]);
	return rc;
}

static int rd_list(struct hw_dstore *base, enum hw_disc_kind kind,
		   const char *filter, size_t limit, hw_dstore_each_fn fn,
		   void *ud)
{
	struct rd_store *s = (struct rd_store *)base;
	char zset[NAME_MAX_LEN], min[32], count[24];
	const char *argv[7];
	redisReply *r = NULL;
	int rc, n;

	if ((rc = rd_ready(s)))
		return rc;
	if (filter)
		n = snprintf(zset, sizeof(zset), PREFIX "idx:%s:%s",
			     hw_dstore_kind_name(kind), filter);
	else
		n = snprintf(zset, sizeof(zset), PREFIX "all:%s",
			     hw_dstore_kind_name(kind));
	if (n < 0 || (size_t)n >= sizeof(zset))
		return -ENAMETOOLONG;
	snprintf(min, sizeof(min), "(%" PRId64, hw_dstore_now_ms());
	snprintf(count, sizeof(count), "%zu", limit);
	argv[0] = "ZRANGEBYSCORE";
	argv[1] = zset;
	argv[2] = min;
	argv[3] = "+inf";
	argv[4] = "LIMIT";
	argv[5] = "0";
	argv[6] = count;
	r = call_read(s, 7, argv, NULL);
	if (!r)
		return -EIO;
	if (r->type != REDIS_REPLY_ARRAY) {
		hw_log(HW_LOG_WARN, "discovery", "redis %s: ZRANGEBYSCORE: %s",
		       s->spec,
		       r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
		rc = -EIO;
		goto out;
	}
	for (size_t i = 0; i < r->elements; i++) {
		if (r->element[i]->type != REDIS_REPLY_STRING) {
			rc = -EIO;
			goto out;
		}
	}
	for (size_t i = 0; i < r->elements && !rc; i += LIST_BATCH) {
		size_t b = r->elements - i < LIST_BATCH ? r->elements - i
							: LIST_BATCH;

		rc = fetch_batch(s, kind, zset, r->element + i, b, fn, ud);
	}
out:
	freeReplyObject(r);
	return rc;
}

static int rd_count(struct hw_dstore *base, enum hw_disc_kind kind,
		    uint64_t *n)
{
	struct rd_store *s = (struct rd_store *)base;
	char zset[NAME_MAX_LEN], min[32];
	const char *argv[4];
	redisReply *r;
	int rc;

	if ((rc = rd_ready(s)))
		return rc;
	snprintf(zset, sizeof(zset), PREFIX "all:%s",
		 hw_dstore_kind_name(kind));
	snprintf(min, sizeof(min), "(%" PRId64, hw_dstore_now_ms());
	argv[0] = "ZCOUNT";
	argv[1] = zset;
	argv[2] = min;
	argv[3] = "+inf";
	r = call_read(s, 4, argv, NULL);
	if (!r)
		return -EIO;
	if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
		*n = (uint64_t)r->integer;
		rc = 0;
	} else {
		rc = -EIO;
	}
	freeReplyObject(r);
	return rc;
}

/* Removes members scored at or before max from zset; adds the count. */
static int trim(struct rd_store *s, const char *zset, const char *max,
		uint64_t *removed)
{
	const char *argv[4] = {"ZREMRANGEBYSCORE", zset, "-inf", max};
	redisReply *r = call(s, 4, argv, NULL);
	int rc = -EIO;

	if (!r)
		return -EIO;
	if (r->type == REDIS_REPLY_INTEGER) {
		if (removed && r->integer > 0)
			*removed += (uint64_t)r->integer;
		rc = 0;
	}
	freeReplyObject(r);
	return rc;
}

static int rd_sweep(struct hw_dstore *base, uint64_t *removed)
{
	static const enum hw_disc_kind kinds[] = {
		HW_DISC_VISOR, HW_DISC_RELAY, HW_DISC_TRANSPORT,
		HW_DISC_SERVICE,
	};
	struct rd_store *s = (struct rd_store *)base;
	char zset[NAME_MAX_LEN], max[24], cursor[32] = "0";
	redisReply *r = NULL;
	int rc;

	if ((rc = rd_ready(s)))
		return rc;
	snprintf(max, sizeof(max), "%" PRId64, hw_dstore_now_ms());
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		snprintf(zset, sizeof(zset), PREFIX "all:%s",
			 hw_dstore_kind_name(kinds[i]));
		if ((rc = trim(s, zset, max, removed)))
			return rc;
	}
	/* The index sets: walked with SCAN so a big keyspace never blocks
	 * Redis; a set emptied by the trim disappears by itself. */
	do {
		const char *argv[6] = {"SCAN", cursor, "MATCH",
				       PREFIX "idx:*", "COUNT", "1000"};
		redisReply *keys;

		r = call(s, 6, argv, NULL);
		if (!r)
			return -EIO;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[0]->len >= sizeof(cursor) ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			rc = -EIO;
			goto out;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		keys = r->element[1];
		for (size_t i = 0; i < keys->elements; i++) {
			if (keys->element[i]->type != REDIS_REPLY_STRING)
				continue;
			if ((rc = trim(s, keys->element[i]->str, max, NULL)))
				goto out;
		}
		freeReplyObject(r);
		r = NULL;
	} while (strcmp(cursor, "0"));
	rc = 0;
out:
	if (r)
		freeReplyObject(r);
	return rc;
}

static const struct hw_dstore_ops redis_ops = {
	.name = "redis",
	.clone = rd_clone,
	.free = rd_free,
	.write = rd_write,
	.get = rd_get,
	.list = rd_list,
	.count = rd_count,
	.sweep = rd_sweep,
};
