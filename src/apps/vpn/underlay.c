/* The visor's underlay addresses, fetched by a thread (underlay.h). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "underlay.h"

#define ANSWER_MAX (4u << 20)

struct hw_vpn_underlay {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	char *api;
	struct hw_vpn_underlay_set set; /* under mu */
};

int hw_vpn_host_of(const char *s, char *host, size_t len)
{
	const char *p = strstr(s, "://"), *at, *end;
	size_t n;

	p = p ? p + 3 : s;
	if ((at = strchr(p, '@')) && (!strchr(p, '/') || at < strchr(p, '/')))
		p = at + 1;
	if (*p == '[') {
		if (!(end = strchr(++p, ']')))
			return -EINVAL;
	} else {
		end = p + strcspn(p, ":/");
	}
	n = (size_t)(end - p);
	if (!n || n >= len)
		return -EINVAL;
	memcpy(host, p, n);
	host[n] = '\0';
	return 0;
}

static int is_loopback(const struct hw_vpn_ip *ip)
{
	static const uint8_t v6lo[16] = {[15] = 1};

	return ip->family == 4 ? ip->a[0] == 127
			       : !memcmp(ip->a, v6lo, 16);
}

static void add_ip(struct hw_vpn_underlay_set *set, const struct hw_vpn_ip *ip)
{
	if (is_loopback(ip) || set->n == HW_VPN_UNDERLAY_MAX)
		return;
	for (int i = 0; i < set->n; i++)
		if (set->ip[i].family == ip->family &&
		    !memcmp(set->ip[i].a, ip->a, ip->family == 4 ? 4 : 16))
			return;
	set->ip[set->n++] = *ip;
}

/* Adds the addresses of the address string s (names resolved). */
static void add_addr(struct hw_vpn_underlay_set *set, const char *s)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *r;
	char host[256];
	struct hw_vpn_ip ip = {0};

	if (!s || !*s || hw_vpn_host_of(s, host, sizeof(host)))
		return;
	if (inet_pton(AF_INET, host, ip.a) == 1) {
		ip.family = 4;
		add_ip(set, &ip);
		return;
	}
	if (inet_pton(AF_INET6, host, ip.a) == 1) {
		ip.family = 6;
		add_ip(set, &ip);
		return;
	}
	if (getaddrinfo(host, NULL, &hints, &res))
		return;
	for (r = res; r; r = r->ai_next) {
		memset(&ip, 0, sizeof(ip));
		if (r->ai_family == AF_INET) {
			ip.family = 4;
			memcpy(ip.a, &((struct sockaddr_in *)r->ai_addr)
					      ->sin_addr, 4);
		} else if (r->ai_family == AF_INET6) {
			ip.family = 6;
			memcpy(ip.a, &((struct sockaddr_in6 *)r->ai_addr)
					      ->sin6_addr, 16);
		} else {
			continue;
		}
		add_ip(set, &ip);
	}
	freeaddrinfo(res);
}

void hw_vpn_underlay_collect(json_t *transports, json_t *info,
			     struct hw_vpn_underlay_set *set)
{
	json_t *t, *net = json_object_get(info, "network"), *r;
	size_t i;

	json_array_foreach(transports, i, t) {
		add_addr(set, json_string_value(json_object_get(t, "addr")));
		add_addr(set, json_string_value(json_object_get(
				      t, "remote_addr")));
	}
	add_addr(set, json_string_value(json_object_get(net, "discovery")));
	json_array_foreach(json_object_get(net, "relays"), i, r)
		add_addr(set, json_string_value(json_object_get(r, "addr")));
}

struct answer {
	char *p;
	size_t len;
};

static size_t on_body(char *d, size_t sz, size_t nm, void *ud)
{
	struct answer *a = ud;
	size_t n = sz * nm;
	char *p;

	if (a->len + n > ANSWER_MAX || !(p = realloc(a->p, a->len + n + 1)))
		return 0;
	memcpy(p + a->len, d, n);
	a->p = p;
	a->len += n;
	a->p[a->len] = '\0';
	return n;
}

/* GET path from the visor: 0 with *out, or -1 with err. */
static int api_get(CURL *c, const char *api, const char *path, json_t **out,
		   char *err, size_t errlen)
{
	struct answer a = {0};
	char url[128];
	long status = 0;
	CURLcode cc;
	json_error_t je;

	snprintf(url, sizeof(url), "http://visor%s", path);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, api);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	*out = NULL;
	if (cc != CURLE_OK)
		snprintf(err, errlen, "visor API %s: GET %s: %s", api, path,
			 curl_easy_strerror(cc));
	else if (status != 200)
		snprintf(err, errlen, "visor API %s: GET %s: HTTP %ld", api,
			 path, status);
	else if (!(*out = json_loadb(a.p ? a.p : "", a.len, 0, &je)))
		snprintf(err, errlen, "visor API %s: GET %s: not JSON: %s",
			 api, path, je.text);
	free(a.p);
	return *out ? 0 : -1;
}

static void fetch(struct hw_vpn_underlay *u, CURL *c)
{
	struct hw_vpn_underlay_set *set = calloc(1, sizeof(*set));
	json_t *tp = NULL, *info = NULL;
	char err[sizeof(set->error)] = "";

	if (!set)
		return;
	if (!api_get(c, u->api, "/v1/transports", &tp, err, sizeof(err)) &&
	    !api_get(c, u->api, "/v1/info", &info, err, sizeof(err)))
		hw_vpn_underlay_collect(tp, info, set);
	json_decref(tp);
	json_decref(info);
	pthread_mutex_lock(&u->mu);
	if (err[0]) {
		/* Keep the last good set: an unanswered visor moved nothing. */
		memcpy(u->set.error, err, sizeof(err));
	} else {
		set->gen = u->set.gen + 1;
		u->set = *set;
	}
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	free(set);
}

static void *run(void *ud)
{
	struct hw_vpn_underlay *u = ud;
	CURL *c = curl_easy_init();
	struct timespec at;

	pthread_mutex_lock(&u->mu);
	while (!u->stop) {
		pthread_mutex_unlock(&u->mu);
		if (c)
			fetch(u, c);
		pthread_mutex_lock(&u->mu);
		if (!c)
			snprintf(u->set.error, sizeof(u->set.error),
				 "libcurl: cannot make a handle");
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += HW_VPN_UNDERLAY_MS / 1000;
		while (!u->stop &&
		       pthread_cond_timedwait(&u->cv, &u->mu, &at) == 0)
			;
	}
	pthread_mutex_unlock(&u->mu);
	curl_easy_cleanup(c);
	return NULL;
}

int hw_vpn_underlay_start(struct hw_vpn_underlay **out, const char *api)
{
	struct hw_vpn_underlay *u = calloc(1, sizeof(*u));
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (!u || !(u->api = strdup(api))) {
		free(u);
		return -ENOMEM;
	}
	pthread_mutex_init(&u->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&u->cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((rc = pthread_create(&u->th, NULL, run, u))) {
		pthread_cond_destroy(&u->cv);
		pthread_mutex_destroy(&u->mu);
		free(u->api);
		free(u);
		return -rc;
	}
	*out = u;
	return 0;
}

void hw_vpn_underlay_stop(struct hw_vpn_underlay *u)
{
	if (!u)
		return;
	pthread_mutex_lock(&u->mu);
	u->stop = 1;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	pthread_join(u->th, NULL);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	free(u->api);
	free(u);
}

void hw_vpn_underlay_get(struct hw_vpn_underlay *u,
			 struct hw_vpn_underlay_set *out, int wait_ms)
{
	struct timespec at;

	pthread_mutex_lock(&u->mu);
	if (wait_ms > 0 && !u->set.gen) {
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += wait_ms / 1000;
		at.tv_nsec += (long)(wait_ms % 1000) * 1000000;
		if (at.tv_nsec >= 1000000000) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000;
		}
		while (!u->set.gen && !u->stop &&
		       pthread_cond_timedwait(&u->cv, &u->mu, &at) == 0)
			;
	}
	*out = u->set;
	pthread_mutex_unlock(&u->mu);
}
