#include "visor/config.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/addr.h"
#include "util/err.h"

static int bad(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

json_t *hw_config_default(const char *key_file, const char *local_dir,
			  const char *tcp_listen, const char *discovery_url)
{
	char listen[HW_ADDR_MAX];

	snprintf(listen, sizeof(listen), "0.0.0.0:%d", HW_DEFAULT_TCP_PORT);
	return json_pack(
		"{s:i, s:s, s:s, s:s, s:{s:s, s:s, s:i, s:i, s:i, s:i, s:i,"
		" s:[]}, s:{s:s, s:i, s:i}, s:{s:[]}, s:{s:s}}",
		"version", 1, "key_file", key_file, "local_dir", local_dir,
		"log_level", "info", "transport", "tcp_listen",
		tcp_listen ? tcp_listen : listen, "public_addr", "",
		"keepalive_interval_ms",
		HW_DEFAULT_KEEPALIVE_MS, "handshake_timeout_ms",
		HW_DEFAULT_HANDSHAKE_TIMEOUT_MS, "max_pending_handshakes",
		HW_DEFAULT_MAX_PENDING_HANDSHAKES, "redial_min_ms",
		HW_DEFAULT_REDIAL_MIN_MS, "redial_max_ms",
		HW_DEFAULT_REDIAL_MAX_MS, "persistent", "discovery", "url",
		discovery_url ? discovery_url : "", "refresh_ms",
		HW_DEFAULT_DISCOVERY_REFRESH_MS, "relay_sessions",
		HW_DEFAULT_RELAY_SESSIONS, "routing", "setup_nodes", "control",
		"socket", "");
}

/* Resolves a path from the config relative to the config's folder. */
static int resolve(const struct hw_config *cfg, const char *field,
		   const char *value, char out[PATH_MAX], char *err,
		   size_t errlen)
{
	const char *slash = strrchr(cfg->path, '/');
	int n;

	if (!value[0])
		return bad(err, errlen, "%s: must not be empty", field);
	if (value[0] == '/' || !slash)
		n = snprintf(out, PATH_MAX, "%s", value);
	else
		n = snprintf(out, PATH_MAX, "%.*s/%s",
			     (int)(slash - cfg->path), cfg->path, value);
	if (n < 0 || n >= PATH_MAX)
		return bad(err, errlen, "%s: path too long", field);
	return 0;
}

/* Checks that obj has only the keys in allowed (NULL-terminated). */
static int only_keys(json_t *obj, const char *prefix,
		     const char *const *allowed, char *err, size_t errlen)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		int ok = 0;
		for (size_t i = 0; allowed[i]; i++)
			ok |= !strcmp(key, allowed[i]);
		if (!ok)
			return bad(err, errlen, "%s%s: unknown setting", prefix,
				   key);
	}
	return 0;
}

static int get_str(json_t *obj, const char *key, const char *field,
		   const char **out, int required, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		if (required)
			return bad(err, errlen, "%s: missing", field);
		return 0;
	}
	if (!json_is_string(v))
		return bad(err, errlen, "%s: must be a string", field);
	*out = json_string_value(v);
	return 0;
}

static int get_uint(json_t *obj, const char *key, const char *field,
		    unsigned *out, unsigned min, unsigned max, char *err,
		    size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	json_int_t i;

	if (!v)
		return 0;
	if (!json_is_integer(v))
		return bad(err, errlen, "%s: must be a whole number", field);
	i = json_integer_value(v);
	if (i < min || i > max)
		return bad(err, errlen, "%s: %lld is out of range %u..%u",
			   field, (long long)i, min, max);
	*out = (unsigned)i;
	return 0;
}

static int copy_str(char *dst, size_t cap, const char *src, const char *field,
		    char *err, size_t errlen)
{
	if (strlen(src) >= cap)
		return bad(err, errlen, "%s: too long", field);
	if (dst != src) /* a default may already be in place */
		strcpy(dst, src);
	return 0;
}

static int check_addr(const char *field, const char *addr, int allow_empty,
		      char *err, size_t errlen)
{
	char host[HW_HOST_MAX];
	uint16_t port;

	if (!addr[0] && allow_empty)
		return 0;
	if (hw_addr_split(addr, host, &port))
		return bad(err, errlen, "%s: '%s' is not HOST:PORT", field,
			   addr);
	return 0;
}

static int load_persistent(struct hw_config *cfg, json_t *list, char *err,
			   size_t errlen)
{
	static const char *const keys[] = {"pk", "type", "addr", NULL};
	char field[64];
	size_t i;
	json_t *e;
	int rc;

	if (!json_is_array(list))
		return bad(err, errlen, "transport.persistent: must be a list");
	cfg->persistent = calloc(json_array_size(list) + 1,
				 sizeof(*cfg->persistent));
	if (!cfg->persistent)
		return -ENOMEM;
	json_array_foreach(list, i, e) {
		struct hw_config_tp *tp = &cfg->persistent[i];
		const char *pk = NULL, *type = "tcp", *addr = NULL;

		snprintf(field, sizeof(field), "transport.persistent[%zu]", i);
		if (!json_is_object(e))
			return bad(err, errlen, "%s: must be an object", field);
		snprintf(field, sizeof(field), "transport.persistent[%zu].", i);
		if ((rc = only_keys(e, field, keys, err, errlen)))
			return rc;
		snprintf(field, sizeof(field), "transport.persistent[%zu].pk",
			 i);
		if ((rc = get_str(e, "pk", field, &pk, 1, err, errlen)))
			return rc;
		if ((rc = hw_pk_parse(pk, strlen(pk), tp->pk)))
			return bad(err, errlen, "%s: %s", field,
				   hw_strerror(rc));
		snprintf(field, sizeof(field),
			 "transport.persistent[%zu].type", i);
		if ((rc = get_str(e, "type", field, &type, 0, err, errlen)))
			return rc;
		if (strcmp(type, "tcp") && strcmp(type, "relay"))
			return bad(err, errlen,
				   "%s: '%s' is not a transport type this "
				   "visor has (tcp, relay)",
				   field, type);
		strcpy(tp->type, type);
		snprintf(field, sizeof(field),
			 "transport.persistent[%zu].addr", i);
		/* A relay transport's address may be left to discovery. */
		if ((rc = get_str(e, "addr", field, &addr, type[0] == 't', err,
				  errlen)))
			return rc;
		if (!addr)
			addr = "";
		if ((type[0] == 't' &&
		     (rc = check_addr(field, addr, 0, err, errlen))) ||
		    (rc = copy_str(tp->addr, sizeof(tp->addr), addr, field,
				   err, errlen)))
			return rc;
		cfg->npersistent++;
	}
	return 0;
}

static int load_transport(struct hw_config *cfg, json_t *t, char *err,
			  size_t errlen)
{
	static const char *const keys[] = {
		"tcp_listen",    "keepalive_interval_ms", "handshake_timeout_ms",
		"max_pending_handshakes", "redial_min_ms", "redial_max_ms",
		"persistent",    "public_addr", NULL};
	const char *listen = cfg->tcp_listen, *pub = "";
	json_t *list;
	int rc;

	if (!json_is_object(t))
		return bad(err, errlen, "transport: must be an object");
	if ((rc = only_keys(t, "transport.", keys, err, errlen)) ||
	    (rc = get_str(t, "tcp_listen", "transport.tcp_listen", &listen, 0,
			  err, errlen)) ||
	    (rc = check_addr("transport.tcp_listen", listen, 1, err, errlen)) ||
	    (rc = copy_str(cfg->tcp_listen, sizeof(cfg->tcp_listen), listen,
			   "transport.tcp_listen", err, errlen)) ||
	    (rc = get_str(t, "public_addr", "transport.public_addr", &pub, 0,
			  err, errlen)) ||
	    (rc = check_addr("transport.public_addr", pub, 1, err, errlen)) ||
	    (rc = copy_str(cfg->public_addr, sizeof(cfg->public_addr), pub,
			   "transport.public_addr", err, errlen)) ||
	    (rc = get_uint(t, "keepalive_interval_ms",
			   "transport.keepalive_interval_ms",
			   &cfg->keepalive_ms, 100, 3600000, err, errlen)) ||
	    (rc = get_uint(t, "handshake_timeout_ms",
			   "transport.handshake_timeout_ms",
			   &cfg->handshake_timeout_ms, 100, 600000, err,
			   errlen)) ||
	    (rc = get_uint(t, "max_pending_handshakes",
			   "transport.max_pending_handshakes",
			   &cfg->max_pending_handshakes, 1, 100000, err,
			   errlen)) ||
	    (rc = get_uint(t, "redial_min_ms", "transport.redial_min_ms",
			   &cfg->redial_min_ms, 10, 3600000, err, errlen)) ||
	    (rc = get_uint(t, "redial_max_ms", "transport.redial_max_ms",
			   &cfg->redial_max_ms, 10, 86400000, err, errlen)))
		return rc;
	if (cfg->redial_max_ms < cfg->redial_min_ms)
		return bad(err, errlen,
			   "transport.redial_max_ms: %u is below "
			   "transport.redial_min_ms (%u)",
			   cfg->redial_max_ms, cfg->redial_min_ms);
	list = json_object_get(t, "persistent");
	return list ? load_persistent(cfg, list, err, errlen) : 0;
}

static int load_routing(struct hw_config *cfg, json_t *r, char *err,
			size_t errlen)
{
	static const char *const keys[] = {"setup_nodes", "tap_file",
					   "heal_timeout_ms", NULL};
	const char *tap = NULL;
	json_t *list, *e;
	size_t i;
	int rc;

	if (!json_is_object(r))
		return bad(err, errlen, "routing: must be an object");
	if ((rc = only_keys(r, "routing.", keys, err, errlen)) ||
	    (rc = get_uint(r, "heal_timeout_ms", "routing.heal_timeout_ms",
			   &cfg->heal_timeout_ms, 0, 3600000, err, errlen)) ||
	    (rc = get_str(r, "tap_file", "routing.tap_file", &tap, 0, err,
			  errlen)) ||
	    (tap && tap[0] && (rc = resolve(cfg, "routing.tap_file", tap,
					    cfg->tap_file, err, errlen))))
		return rc;
	list = json_object_get(r, "setup_nodes");
	if (!list)
		return 0;
	if (!json_is_array(list))
		return bad(err, errlen, "routing.setup_nodes: must be a list "
			   "of public keys");
	if (json_array_size(list) > HW_MAX_SETUP_NODES)
		return bad(err, errlen, "routing.setup_nodes: more than %d",
			   HW_MAX_SETUP_NODES);
	json_array_foreach(list, i, e) {
		const char *s = json_string_value(e);
		if (!s || hw_pk_parse(s, strlen(s),
				      cfg->setup_nodes[cfg->nsetup_nodes]))
			return bad(err, errlen, "routing.setup_nodes[%zu]: not "
				   "a 64-character hex public key", i);
		cfg->nsetup_nodes++;
	}
	return 0;
}

int hw_config_app_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > HW_CONFIG_APP_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '-' &&
		    name[i] != '_')
			return -EINVAL;
	return 0;
}

/* Reads the list key of e ("args", "cleanup_args") into *out, *n:
 * strings, at most HW_APP_MAX_ARGS, NULL-terminated (also when empty). */
static int load_strings(json_t *e, const char *key, const char *pre,
			char ***out, size_t *n, char *err, size_t errlen)
{
	json_t *list = json_object_get(e, key), *v;
	size_t j;

	if (list && !json_is_array(list))
		return bad(err, errlen, "%s%s: must be a list of strings",
			   pre, key);
	if (list && json_array_size(list) > HW_APP_MAX_ARGS)
		return bad(err, errlen, "%s%s: more than %d", pre, key,
			   HW_APP_MAX_ARGS);
	if (!(*out = calloc(json_array_size(list) + 1, sizeof(char *))))
		return -ENOMEM;
	json_array_foreach(list, j, v) {
		if (!json_is_string(v))
			return bad(err, errlen, "%s%s[%zu]: must be a string",
				   pre, key, j);
		if (!((*out)[j] = strdup(json_string_value(v))))
			return -ENOMEM;
		(*n)++;
	}
	return 0;
}

/* The capabilities an app may be given (docs/apps.md), by name. */
static const struct {
	const char *name;
	uint64_t bit;
} app_caps[] = {{"CAP_NET_ADMIN", HW_APP_CAP_NET_ADMIN}};

const char *hw_config_cap_name(uint64_t bit)
{
	for (size_t i = 0; i < sizeof(app_caps) / sizeof(app_caps[0]); i++)
		if (app_caps[i].bit == bit)
			return app_caps[i].name;
	return NULL;
}

static int load_caps(json_t *e, const char *pre, uint64_t *caps, char *err,
		     size_t errlen)
{
	json_t *list = json_object_get(e, "capabilities"), *v;
	size_t j, i;

	*caps = 0;
	if (!list)
		return 0;
	if (!json_is_array(list))
		return bad(err, errlen, "%scapabilities: must be a list such "
			   "as [\"CAP_NET_ADMIN\"]", pre);
	json_array_foreach(list, j, v) {
		const char *s = json_string_value(v);
		for (i = 0; s && i < sizeof(app_caps) / sizeof(app_caps[0]);
		     i++)
			if (!strcmp(s, app_caps[i].name))
				break;
		if (!s || i == sizeof(app_caps) / sizeof(app_caps[0]))
			return bad(err, errlen, "%scapabilities[%zu]: '%s' is "
				   "not a capability an app may have (only "
				   "CAP_NET_ADMIN)", pre, j,
				   s ? s : "(not a string)");
		*caps |= app_caps[i].bit;
	}
	return 0;
}

/* Reads one app's settings from e into a; field names in messages start
 * with pre ("apps[3]." in a file, "" for one app on its own). */
static int load_app(struct hw_config *cfg, struct hw_config_app *a,
		    json_t *e, const char *pre, int with_name, char *err,
		    size_t errlen)
{
	static const char *const keys[] = {"name", "binary", "args", "port",
					   "autostart", "capabilities",
					   "cleanup_args", NULL};
	const char *name = NULL, *binary = NULL;
	unsigned port = 0;
	char field[64];
	json_t *v;
	int rc;

	if ((rc = only_keys(e, pre, with_name ? keys : keys + 1, err,
			    errlen)))
		return rc;
	if (with_name) {
		snprintf(field, sizeof(field), "%sname", pre);
		if ((rc = get_str(e, "name", field, &name, 1, err, errlen)))
			return rc;
		if (hw_config_app_name_ok(name))
			return bad(err, errlen, "%s: '%s' is not 1 to %d "
				   "letters, digits, '-' or '_'", field, name,
				   HW_CONFIG_APP_NAME_MAX);
		strcpy(a->name, name);
	}
	snprintf(field, sizeof(field), "%sbinary", pre);
	if ((rc = get_str(e, "binary", field, &binary, 1, err, errlen)) ||
	    (rc = copy_str(a->binary, sizeof(a->binary), binary, field, err,
			   errlen)))
		return rc;
	if (!binary[0])
		return bad(err, errlen, "%s: must not be empty", field);
	if (strchr(binary, '/') &&
	    (rc = resolve(cfg, field, binary, a->binary, err, errlen)))
		return rc;
	snprintf(field, sizeof(field), "%sport", pre);
	if (!json_object_get(e, "port"))
		return bad(err, errlen, "%s: missing", field);
	/* 0: no port, the app only dials (the VPN client). */
	if ((rc = get_uint(e, "port", field, &port, 0, 65535, err, errlen)))
		return rc;
	a->port = (uint16_t)port;
	a->autostart = 1;
	if ((v = json_object_get(e, "autostart"))) {
		if (!json_is_boolean(v))
			return bad(err, errlen, "%sautostart: must be true or "
				   "false", pre);
		a->autostart = json_is_true(v);
	}
	if ((rc = load_caps(e, pre, &a->caps, err, errlen)) ||
	    (rc = load_strings(e, "args", pre, &a->args, &a->nargs, err,
			       errlen)))
		return rc;
	return load_strings(e, "cleanup_args", pre, &a->cleanup_args,
			    &a->ncleanup_args, err, errlen);
}

static int load_apps(struct hw_config *cfg, json_t *list, char *err,
		     size_t errlen)
{
	size_t i;
	json_t *e;
	int rc;

	if (!json_is_array(list))
		return bad(err, errlen, "apps: must be a list");
	if (json_array_size(list) > HW_MAX_APPS)
		return bad(err, errlen, "apps: more than %d", HW_MAX_APPS);
	cfg->apps = calloc(json_array_size(list) + 1, sizeof(*cfg->apps));
	if (!cfg->apps)
		return -ENOMEM;
	json_array_foreach(list, i, e) {
		char pre[32];

		if (!json_is_object(e))
			return bad(err, errlen, "apps[%zu]: must be an object",
				   i);
		snprintf(pre, sizeof(pre), "apps[%zu].", i);
		if ((rc = load_app(cfg, &cfg->apps[i], e, pre, 1, err,
				   errlen)))
			return rc;
		cfg->napps++;
		for (size_t k = 0; k < i; k++) {
			if (!strcmp(cfg->apps[k].name, cfg->apps[i].name))
				return bad(err, errlen, "apps[%zu].name: '%s' "
					   "is used twice", i,
					   cfg->apps[i].name);
			if (cfg->apps[i].port &&
			    cfg->apps[k].port == cfg->apps[i].port)
				return bad(err, errlen, "apps[%zu].port: %u is "
					   "also %s's port", i,
					   cfg->apps[i].port,
					   cfg->apps[k].name);
		}
	}
	return 0;
}

int hw_config_load(struct hw_config *cfg, const char *path, char *err,
		   size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	if (!(f = fopen(path, "r")))
		return bad(err, errlen, "cannot read: %s", strerror(errno));
	/* One byte more than allowed, to tell a file that is too large. */
	text = malloc(HW_CONFIG_MAX_SIZE + 1);
	if (text)
		len = fread(text, 1, HW_CONFIG_MAX_SIZE + 1, f);
	if (!text)
		rc = -ENOMEM;
	else if (ferror(f))
		rc = bad(err, errlen, "cannot read: %s", strerror(errno));
	else if (len > HW_CONFIG_MAX_SIZE)
		rc = bad(err, errlen, "larger than %d bytes",
			 HW_CONFIG_MAX_SIZE);
	else
		rc = hw_config_parse(cfg, path, text, len, err, errlen);
	fclose(f);
	free(text);
	return rc;
}

int hw_config_parse(struct hw_config *cfg, const char *path, const char *text,
		    size_t len, char *err, size_t errlen)
{
	static const char *const keys[] = {"version",   "key_file",
					   "local_dir", "log_level",
					   "transport", "discovery",
					   "routing",   "control",
					   "apps",      NULL};
	static const char *const url_keys[] = {"url", "refresh_ms",
					       "relay_sessions", NULL};
	static const char *const ctl_keys[] = {"socket", NULL};
	const char *s = NULL, *url = "", *sock = "";
	json_error_t jerr;
	json_t *root = NULL, *v;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = HW_LOG_INFO;
	snprintf(cfg->tcp_listen, sizeof(cfg->tcp_listen), "0.0.0.0:%d",
		 HW_DEFAULT_TCP_PORT);
	cfg->keepalive_ms = HW_DEFAULT_KEEPALIVE_MS;
	cfg->heal_timeout_ms = HW_DEFAULT_HEAL_TIMEOUT_MS;
	cfg->handshake_timeout_ms = HW_DEFAULT_HANDSHAKE_TIMEOUT_MS;
	cfg->max_pending_handshakes = HW_DEFAULT_MAX_PENDING_HANDSHAKES;
	cfg->redial_min_ms = HW_DEFAULT_REDIAL_MIN_MS;
	cfg->redial_max_ms = HW_DEFAULT_REDIAL_MAX_MS;
	cfg->discovery_refresh_ms = HW_DEFAULT_DISCOVERY_REFRESH_MS;
	cfg->relay_sessions = HW_DEFAULT_RELAY_SESSIONS;
	if (strlen(path) >= sizeof(cfg->path))
		return bad(err, errlen, "path too long");
	strcpy(cfg->path, path);

	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		rc = bad(err, errlen, "line %d: %s", jerr.line, jerr.text);
		goto out;
	}
	if (!json_is_object(root)) {
		rc = bad(err, errlen, "must be a JSON object");
		goto out;
	}
	if ((rc = only_keys(root, "", keys, err, errlen)))
		goto out;
	v = json_object_get(root, "version");
	if (!v || !json_is_integer(v) || json_integer_value(v) != 1) {
		rc = bad(err, errlen,
			 "version: must be 1 (this visor reads version 1)");
		goto out;
	}
	if ((rc = get_str(root, "key_file", "key_file", &s, 1, err, errlen)) ||
	    (rc = resolve(cfg, "key_file", s, cfg->key_file, err, errlen)) ||
	    (rc = get_str(root, "local_dir", "local_dir", &s, 1, err,
			  errlen)) ||
	    (rc = resolve(cfg, "local_dir", s, cfg->local_dir, err, errlen)))
		goto out;
	s = "info";
	if ((rc = get_str(root, "log_level", "log_level", &s, 0, err, errlen)))
		goto out;
	if (hw_log_level_parse(s, &cfg->log_level)) {
		rc = bad(err, errlen,
			 "log_level: '%s' is not debug, info, warn or error",
			 s);
		goto out;
	}
	if ((v = json_object_get(root, "transport")) &&
	    (rc = load_transport(cfg, v, err, errlen)))
		goto out;
	if ((v = json_object_get(root, "discovery"))) {
		if (!json_is_object(v)) {
			rc = bad(err, errlen, "discovery: must be an object");
			goto out;
		}
		if ((rc = only_keys(v, "discovery.", url_keys, err, errlen)) ||
		    (rc = get_str(v, "url", "discovery.url", &url, 0, err,
				  errlen)) ||
		    (rc = copy_str(cfg->discovery_url,
				   sizeof(cfg->discovery_url), url,
				   "discovery.url", err, errlen)) ||
		    (rc = get_uint(v, "refresh_ms", "discovery.refresh_ms",
				   &cfg->discovery_refresh_ms, 100, 86400000,
				   err, errlen)) ||
		    (rc = get_uint(v, "relay_sessions",
				   "discovery.relay_sessions",
				   &cfg->relay_sessions, 0, HW_MAX_RELAY_SESSIONS,
				   err, errlen)))
			goto out;
		if (url[0] && strncmp(url, "http://", 7) &&
		    strncmp(url, "https://", 8)) {
			rc = bad(err, errlen, "discovery.url: '%s' is not an "
				 "http:// or https:// URL", url);
			goto out;
		}
	}
	if ((v = json_object_get(root, "routing")) &&
	    (rc = load_routing(cfg, v, err, errlen)))
		goto out;
	if ((v = json_object_get(root, "apps")) &&
	    (rc = load_apps(cfg, v, err, errlen)))
		goto out;
	if ((v = json_object_get(root, "control"))) {
		if (!json_is_object(v)) {
			rc = bad(err, errlen, "control: must be an object");
			goto out;
		}
		if ((rc = only_keys(v, "control.", ctl_keys, err, errlen)) ||
		    (rc = get_str(v, "socket", "control.socket", &sock, 0, err,
				  errlen)))
			goto out;
	}
	if (sock[0])
		rc = resolve(cfg, "control.socket", sock, cfg->control_socket,
			     err, errlen);
	else if (snprintf(cfg->control_socket, sizeof(cfg->control_socket),
			  "%s/visor.sock", cfg->local_dir) >=
		 (int)sizeof(cfg->control_socket))
		rc = bad(err, errlen, "local_dir: path too long");
out:
	json_decref(root);
	return rc;
}

void hw_config_free(struct hw_config *cfg)
{
	free(cfg->persistent);
	cfg->persistent = NULL;
	cfg->npersistent = 0;
	for (size_t i = 0; cfg->apps && i <= cfg->napps; i++)
		hw_config_app_clear(&cfg->apps[i]);
	free(cfg->apps);
	cfg->apps = NULL;
	cfg->napps = 0;
}

void hw_config_app_clear(struct hw_config_app *a)
{
	for (size_t j = 0; a->args && a->args[j]; j++)
		free(a->args[j]);
	free(a->args);
	for (size_t j = 0; a->cleanup_args && a->cleanup_args[j]; j++)
		free(a->cleanup_args[j]);
	free(a->cleanup_args);
	memset(a, 0, sizeof(*a));
}

int hw_config_app_parse(const char *path, const char *name, json_t *spec,
			struct hw_config_app *out, char *err, size_t errlen)
{
	struct hw_config cfg;
	int rc;

	memset(out, 0, sizeof(*out));
	if (hw_config_app_name_ok(name))
		return bad(err, errlen, "'%s' is not an app name: 1 to %d "
			   "letters, digits, '-' or '_'", name,
			   HW_CONFIG_APP_NAME_MAX);
	if (!json_is_object(spec))
		return bad(err, errlen, "the app must be a JSON object "
			   "{\"binary\", \"args\", \"port\", "
			   "\"autostart\", \"capabilities\", "
			   "\"cleanup_args\"}");
	if (strlen(path) >= sizeof(cfg.path))
		return bad(err, errlen, "%s: path too long", path);
	/* resolve() only reads the config's path. */
	strcpy(cfg.path, path);
	strcpy(out->name, name);
	if ((rc = load_app(&cfg, out, spec, "", 0, err, errlen)))
		hw_config_app_clear(out);
	return rc;
}

/* Writes root to path atomically: a temporary file beside it, synced,
 * renamed over it. */
static int write_root(const char *path, json_t *root, char *err,
		      size_t errlen)
{
	char tmp[PATH_MAX + 8];
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return bad(err, errlen, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || json_dumpfd(root, fd, JSON_INDENT(2)) ||
	    write(fd, "\n", 1) != 1 || fsync(fd)) {
		int rc = bad(err, errlen, "cannot write %s: %s", tmp,
			     strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return rc;
	}
	close(fd);
	if (rename(tmp, path)) {
		int rc = bad(err, errlen, "cannot replace %s: %s", path,
			     strerror(errno));
		unlink(tmp);
		return rc;
	}
	return 0;
}

static json_t *load_root(const char *path, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);

	if (!root)
		bad(err, errlen, "%s: line %d: %s", path, jerr.line,
		    jerr.text);
	else if (!json_is_object(root)) {
		bad(err, errlen, "%s: must be a JSON object", path);
		json_decref(root);
		root = NULL;
	}
	return root;
}

int hw_config_put_app(const char *path, const char *name, json_t *spec,
		      char *err, size_t errlen)
{
	struct hw_config check;
	struct hw_config_app a;
	json_t *root = NULL, *apps, *e, *entry = NULL;
	char *text = NULL;
	const char *key;
	json_t *v;
	size_t i;
	int rc, found = 0;

	/* The entry alone first, so its errors name its fields. */
	if ((rc = hw_config_app_parse(path, name, spec, &a, err, errlen)))
		return rc;
	hw_config_app_clear(&a);
	if (!(root = load_root(path, err, errlen)))
		return -EINVAL;
	rc = -ENOMEM;
	if (!(entry = json_pack("{s:s}", "name", name)))
		goto out;
	json_object_foreach(spec, key, v)
		if (json_object_set(entry, key, v))
			goto out;
	if (!(apps = json_object_get(root, "apps"))) {
		if (json_object_set_new(root, "apps", apps = json_array()))
			goto out;
	}
	if (!json_is_array(apps)) {
		rc = bad(err, errlen, "%s: apps: must be a list", path);
		goto out;
	}
	json_array_foreach(apps, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		if (n && !strcmp(n, name) && !found) {
			if (json_array_set(apps, i, entry))
				goto out;
			found = 1;
		}
	}
	if (!found && json_array_append(apps, entry))
		goto out;
	/* The whole file must still load, or it is not written. */
	if (!(text = json_dumps(root, JSON_INDENT(2))))
		goto out;
	rc = hw_config_parse(&check, path, text, strlen(text), err, errlen);
	hw_config_free(&check);
	if (rc == 0)
		rc = write_root(path, root, err, errlen);
out:
	if (rc == -ENOMEM)
		bad(err, errlen, "out of memory");
	free(text);
	json_decref(entry);
	json_decref(root);
	return rc;
}

int hw_config_set_autostart(const char *path, const char *name, int on,
			    char *err, size_t errlen)
{
	json_t *root, *apps, *e;
	size_t i;
	int rc = -ENOENT;

	if (!(root = load_root(path, err, errlen)))
		return -EINVAL;
	apps = json_object_get(root, "apps");
	json_array_foreach(apps, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		if (n && !strcmp(n, name)) {
			json_object_set_new(e, "autostart", json_boolean(on));
			rc = 0;
		}
	}
	if (rc)
		bad(err, errlen, "no app named '%s' in %s", name, path);
	else
		rc = write_root(path, root, err, errlen);
	json_decref(root);
	return rc;
}
