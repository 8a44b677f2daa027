/* The CLI's client of the visor control API: one blocking HTTP request
 * over a UNIX socket with libcurl. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/api_client.h"

#include "util/buf.h"

/* Largest answer accepted from the visor. */
#define HW_API_MAX_RESPONSE (16 * 1024 * 1024)
#define HW_API_MAX_URL 4096

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int hw_cli_curl_local(CURL *c, long timeout_ms, struct hw_capped *rb)
{
	CURLcode rc;

	/* Local peers only: never through a proxy from the environment,
	 * never elsewhere. */
	if ((rc = curl_easy_setopt(c, CURLOPT_PROXY, "")) ||
#if LIBCURL_VERSION_NUM >= 0x075500
	    (rc = curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http")) ||
#endif
	    (rc = curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION,
				   hw_capped_curl_write)))
		return (int)rc;
	return (int)curl_easy_setopt(c, CURLOPT_WRITEDATA, rb);
}

int hw_api_call(const char *socket_path, const char *method, const char *path,
		json_t *body, long timeout_ms, long *status, json_t **resp,
		char *err, size_t errlen)
{
	char curl_err[CURL_ERROR_SIZE] = "";
	struct hw_capped rb = {.max = HW_API_MAX_RESPONSE};
	struct curl_slist *hdrs = NULL;
	char url[HW_API_MAX_URL];
	char *payload = NULL;
	json_error_t jerr;
	CURL *c = NULL;
	CURLcode cc;
	long code = 0;
	int rc = -1, n;

	if (status)
		*status = 0;
	if (resp)
		*resp = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!socket_path || !method || !*method || !path || path[0] != '/' ||
	    !status || !resp || timeout_ms <= 0) {
		set_err(err, errlen, "invalid API request");
		goto out;
	}
	n = snprintf(url, sizeof(url), "http://localhost%s", path);
	if (n < 0 || (size_t)n >= sizeof(url)) {
		set_err(err, errlen, "API path too long: %.64s...", path);
		goto out;
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		set_err(err, errlen, "cannot initialise libcurl: %s",
			curl_easy_strerror(curl_init_rc));
		goto out;
	}
	c = curl_easy_init();
	if (!c) {
		set_err(err, errlen, "cannot initialise libcurl");
		goto out;
	}

	/* After the first append the head stays hdrs; NULL means no memory
	 * and leaves the list as it was. */
	hdrs = curl_slist_append(NULL, "Accept: application/json");
	/* No "100 Continue" round trip for large bodies. */
	if (!hdrs || !curl_slist_append(hdrs, "Expect:")) {
		set_err(err, errlen, "out of memory");
		goto out;
	}
	if (body) {
		payload = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!payload) {
			set_err(err, errlen, "cannot encode the request body as JSON");
			goto out;
		}
		if (!curl_slist_append(hdrs, "Content-Type: application/json")) {
			set_err(err, errlen, "out of memory");
			goto out;
		}
	}

	if (curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path) ||
	    curl_easy_setopt(c, CURLOPT_URL, url) ||
	    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method) ||
	    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs) ||
	    hw_cli_curl_local(c, timeout_ms, &rb) ||
	    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err) ||
	    (payload &&
	     (curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload) ||
	      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
			       (curl_off_t)strlen(payload))))) {
		set_err(err, errlen, "cannot set up the request to the visor");
		goto out;
	}

	cc = curl_easy_perform(c);
	switch (cc) {
	case CURLE_OK:
		break;
	case CURLE_COULDNT_CONNECT:
		set_err(err, errlen, "cannot reach visor at %s: is it running?",
			socket_path);
		goto out;
	case CURLE_OPERATION_TIMEDOUT:
		set_err(err, errlen, "visor at %s did not answer within %ld ms",
			socket_path, timeout_ms);
		goto out;
	case CURLE_WRITE_ERROR:
		if (rb.too_big) {
			set_err(err, errlen,
				"visor at %s sent an answer over %d bytes",
				socket_path, HW_API_MAX_RESPONSE);
			goto out;
		}
		if (rb.oom) {
			set_err(err, errlen, "out of memory");
			goto out;
		}
		/* fall through */
	default:
		set_err(err, errlen, "visor at %s: %s", socket_path,
			curl_err[0] ? curl_err : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (rb.body.len) {
		*resp = json_loadb(rb.body.data, rb.body.len, JSON_DECODE_ANY, &jerr);
		if (!*resp) {
			set_err(err, errlen,
				"visor at %s answered HTTP %ld with a body that is not JSON: %s",
				socket_path, code, jerr.text);
			goto out;
		}
	}
	*status = code;
	rc = 0;
out:
	if (c)
		curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	free(payload);
	hw_buf_reset(&rb.body);
	return rc;
}
