/* Discovery storage: the spec dispatch and the checks every backend relies
 * on, so that a backend only ever sees well-formed requests. */
#include "discovery/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const char *hw_dstore_kind_name(enum hw_disc_kind kind)
{
	switch (kind) {
	case HW_DISC_VISOR: return "visor";
	case HW_DISC_RELAY: return "relay";
	case HW_DISC_TRANSPORT: return "transport";
	case HW_DISC_SERVICE: return "service";
	default: return NULL;
	}
}

int64_t hw_dstore_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keys and index values end up in Redis key names and SQL text columns:
 * printable ASCII only, bounded, so neither can be confused. */
static int check_token(const char *s, size_t max)
{
	size_t i;

	if (!s)
		return -EINVAL;
	for (i = 0; s[i]; i++) {
		if (i + 1 >= max)
			return -EINVAL;
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return -EINVAL;
	}
	return i ? 0 : -EINVAL;
}

int hw_dstore_new(struct hw_dstore **out, const char *spec, char *err,
		  size_t errlen)
{
	if (!out || !spec)
		return -EINVAL;
	*out = NULL;
	if (!strncmp(spec, "sqlite:", 7))
		return hw_dstore_sqlite_new(out, spec + 7, err, errlen);
	if (!strncmp(spec, "redis://", 8))
		return hw_dstore_redis_new(out, spec + 8, err, errlen);
	snprintf(err, errlen,
		 "store '%s': not sqlite:PATH, sqlite::memory: or "
		 "redis://HOST:PORT[/DB]", spec);
	return -EINVAL;
}

int hw_dstore_clone(struct hw_dstore *s, struct hw_dstore **out, char *err,
		    size_t errlen)
{
	if (!s || !out)
		return -EINVAL;
	*out = NULL;
	return s->ops->clone(s, out, err, errlen);
}

void hw_dstore_free(struct hw_dstore *s)
{
	if (s)
		s->ops->free(s);
}

const char *hw_dstore_name(const struct hw_dstore *s)
{
	return s ? s->ops->name : NULL;
}

int hw_dstore_write(struct hw_dstore *s, const struct hw_dstore_write *w,
		    struct hw_dstore_result *res)
{
	if (!s || !w || !res)
		return -EINVAL;
	memset(res, 0, sizeof(*res));
	if (w->signer && (w->seq == 0 || w->seq > INT64_MAX))
		return -EINVAL;
	switch (w->op) {
	case HW_DSTORE_NONE:
		if (!w->signer)
			return -EINVAL;
		return s->ops->write(s, w, res);
	case HW_DSTORE_PUT:
		if (!w->json || w->json_len == 0 ||
		    w->json_len > HW_DSTORE_JSON_MAX ||
		    memchr(w->json, '\0', w->json_len))
			return -EINVAL;
		for (int i = 0; i < 2; i++)
			if (w->idx[i] &&
			    check_token(w->idx[i], HW_DSTORE_IDX_MAX))
				return -EINVAL;
		break;
	case HW_DSTORE_DEL:
		if (w->need_idx && check_token(w->need_idx, HW_DSTORE_IDX_MAX))
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	if (!hw_dstore_kind_name(w->kind) ||
	    check_token(w->key, HW_DSTORE_KEY_MAX))
		return -EINVAL;
	return s->ops->write(s, w, res);
}

int hw_dstore_put(struct hw_dstore *s, enum hw_disc_kind kind,
		  const char *key, const char *json, size_t len,
		  const char *idx0, const char *idx1, int64_t expires_ms)
{
	struct hw_dstore_write w = {
		.op = HW_DSTORE_PUT, .kind = kind, .key = key, .json = json,
		.json_len = len, .idx = {idx0, idx1},
		.expires_ms = expires_ms,
	};
	struct hw_dstore_result res;

	return hw_dstore_write(s, &w, &res);
}

int hw_dstore_del(struct hw_dstore *s, enum hw_disc_kind kind,
		  const char *key)
{
	struct hw_dstore_write w = {
		.op = HW_DSTORE_DEL, .kind = kind, .key = key,
	};
	struct hw_dstore_result res;
	int rc = hw_dstore_write(s, &w, &res);

	if (rc)
		return rc;
	return res.outcome == HW_DSTORE_OK ? 0 : -ENOENT;
}

int hw_dstore_seq_cas(struct hw_dstore *s, const uint8_t signer[HW_PK_LEN],
		      uint64_t seq, uint64_t *last)
{
	struct hw_dstore_write w = {
		.signer = signer, .seq = seq, .op = HW_DSTORE_NONE,
	};
	struct hw_dstore_result res;
	int rc;

	if (!signer)
		return -EINVAL;
	rc = hw_dstore_write(s, &w, &res);
	if (rc)
		return rc;
	if (res.outcome == HW_DSTORE_REPLAY) {
		if (last)
			*last = res.last_seq;
		return -EALREADY;
	}
	return 0;
}

int hw_dstore_get(struct hw_dstore *s, enum hw_disc_kind kind,
		  const char *key, char **json, size_t *len)
{
	if (!s || !json || !len)
		return -EINVAL;
	*json = NULL;
	*len = 0;
	if (!hw_dstore_kind_name(kind) || check_token(key, HW_DSTORE_KEY_MAX))
		return -EINVAL;
	return s->ops->get(s, kind, key, json, len);
}

int hw_dstore_list(struct hw_dstore *s, enum hw_disc_kind kind,
		   const char *filter, size_t limit, hw_dstore_each_fn fn,
		   void *ud)
{
	if (!s || !fn || !hw_dstore_kind_name(kind))
		return -EINVAL;
	if (filter && check_token(filter, HW_DSTORE_IDX_MAX))
		return -EINVAL;
	if (limit == 0)
		return 0;
	return s->ops->list(s, kind, filter, limit, fn, ud);
}

int hw_dstore_count(struct hw_dstore *s, enum hw_disc_kind kind,
		    uint64_t *n)
{
	if (!s || !n || !hw_dstore_kind_name(kind))
		return -EINVAL;
	*n = 0;
	return s->ops->count(s, kind, n);
}

int hw_dstore_sweep(struct hw_dstore *s, uint64_t *removed)
{
	uint64_t dummy;

	if (!s)
		return -EINVAL;
	if (!removed)
		removed = &dummy;
	*removed = 0;
	return s->ops->sweep(s, removed);
}
