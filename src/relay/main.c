/* hopwire-relay: the relay server daemon (docs/relay.md). */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "crypto/identity.h"
#include "discovery/client.h"
#include "relay/server.h"
#include "util/addr.h"
#include "util/err.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/version.h"

#define PROG "hopwire-relay"
#define LOG "relay"
#define REGISTER_EVERY_MS 60000
#define REGISTER_RETRY_MIN_MS 1000

static struct {
	uv_loop_t loop;
	uv_signal_t sigint, sigterm, sigusr1;
	uv_timer_t reg_timer;
	struct hw_relay_server *srv;
	struct hw_disc_client *disc;
	struct hw_disc_relay entry;
	uint64_t retry_ms;
	int registered_once;
	int stopping;
} g;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " --key FILE --listen HOST:PORT [options]\n"
		"\n"
		"Relays streams between Hopwire visors that hold a session to "
		"it, so visors\nbehind NAT reach each other. It forwards "
		"end-to-end ciphertext only.\n"
		"\n"
		"  --key FILE            the relay's identity (create one with "
		"'hopwire keygen')\n"
		"  --listen HOST:PORT    address to accept sessions on "
		"(numeric HOST; ':PORT'\n"
		"                        for every address)\n"
		"  --discovery URL       register in this discovery service "
		"(e.g.\n"
		"                        http://127.0.0.1:9090) at start and "
		"every 60 s\n"
		"  --public-addr HOST:PORT  address visors dial, as "
		"registered (default: the\n"
		"                        listen address)\n"
		"  --state-dir DIR       where the discovery sequence number "
		"is kept (file\n"
		"                        relay-seq; default: the key file's "
		"directory)\n"
		"  --max-sessions N      visor sessions at once (default "
		"4096)\n"
		"  --max-streams N       streams per session (default 256)\n"
		"  --max-buffered BYTES  buffer budget, e.g. 256MiB, 1GiB "
		"(default 1GiB);\n"
		"                        each stream reserves 512KiB of it\n"
		"  --keepalive-ms MS     ping idle sessions this often; drop "
		"one silent for\n"
		"                        three intervals (default 5000)\n"
		"  --log-level L         debug, info, warn or error (default "
		"info)\n"
		"  --help, --version\n"
		"\n"
		"Logs go to stderr. SIGINT or SIGTERM stops it cleanly; "
		"SIGUSR1 logs its\ncounters as JSON.\n");
}

static void raise_nofile(void)
{
	struct rlimit rl;

	/* Every session is a descriptor: take what the hard limit allows. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* ---- discovery registration ---- */

static void reg_send(uv_timer_t *t);

static void on_registered(struct hw_disc_client *c, int status,
			  int http_status, json_t *resp, const char *msg,
			  void *ud)
{
	uint64_t next = REGISTER_EVERY_MS;

	if (g.stopping)
		return;
	if (status == 0) {
		hw_log(g.registered_once ? HW_LOG_DEBUG : HW_LOG_INFO, LOG,
		       "registered in discovery as %s (capacity %u)",
		       g.entry.addr, (unsigned)g.entry.capacity);
		g.registered_once = 1;
		g.retry_ms = REGISTER_RETRY_MIN_MS;
	} else {
		next = g.retry_ms;
		hw_log(HW_LOG_WARN, LOG, "discovery registration failed: %s; "
		       "retrying in %llu s (relaying goes on)",
		       msg ? msg : hw_strerror(status),
		       (unsigned long long)(next / 1000));
		g.retry_ms *= 2;
		if (g.retry_ms > REGISTER_EVERY_MS)
			g.retry_ms = REGISTER_EVERY_MS;
	}
	uv_timer_start(&g.reg_timer, reg_send, next, 0);
}

static void reg_send(uv_timer_t *t)
{
	int rc = hw_disc_put_relay(g.disc, &g.entry, on_registered, NULL);

	if (rc) {
		hw_log(HW_LOG_WARN, LOG, "discovery registration: %s",
		       hw_strerror(rc));
		uv_timer_start(&g.reg_timer, reg_send, REGISTER_EVERY_MS, 0);
	}
}

/* ---- signals ---- */

static void on_signal(uv_signal_t *s, int signum)
{
	if (signum == SIGUSR1) {
		json_t *j = hw_relay_server_stats_json(g.srv);
		char *text = json_dumps(j, JSON_COMPACT);
		hw_log(HW_LOG_INFO, LOG, "stats %s", text ? text : "{}");
		free(text);
		json_decref(j);
		return;
	}
	hw_log(HW_LOG_INFO, LOG, "%s: stopping",
	       signum == SIGINT ? "SIGINT" : "SIGTERM");
	g.stopping = 1;
	hw_relay_server_free(g.srv);
	g.srv = NULL;
	hw_disc_client_free(g.disc);
	g.disc = NULL;
	uv_close((uv_handle_t *)&g.reg_timer, NULL);
	uv_close((uv_handle_t *)&g.sigint, NULL);
	uv_close((uv_handle_t *)&g.sigterm, NULL);
	uv_close((uv_handle_t *)&g.sigusr1, NULL);
}

static void bad_flag(const char *flag, const char *value, const char *what)
{
	fprintf(stderr, PROG ": %s: '%s' is not %s\n", flag, value, what);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"key", required_argument, NULL, 'k'},
		{"listen", required_argument, NULL, 'l'},
		{"discovery", required_argument, NULL, 'd'},
		{"public-addr", required_argument, NULL, 'p'},
		{"state-dir", required_argument, NULL, 's'},
		{"max-sessions", required_argument, NULL, 'S'},
		{"max-streams", required_argument, NULL, 'T'},
		{"max-buffered", required_argument, NULL, 'B'},
		{"keepalive-ms", required_argument, NULL, 'K'},
		{"log-level", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *key = NULL, *listen = NULL, *disc_url = NULL;
	const char *public_addr = NULL, *state_dir = NULL;
	struct hw_relay_server_params sp;
	enum hw_log_level level = HW_LOG_INFO;
	struct hw_identity id;
	char host[HW_HOST_MAX], err[512], pk[HW_PK_HEXLEN + 1];
	char seq_path[PATH_MAX + 16], dir[PATH_MAX];
	unsigned long long v;
	uint16_t port;
	int c, rc, status = 1;

	hw_relay_server_defaults(&sp);
	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case 'l': listen = optarg; break;
		case 'd': disc_url = optarg; break;
		case 'p': public_addr = optarg; break;
		case 's': state_dir = optarg; break;
		case 'S':
			if (hw_parse_uint(optarg, 1, 1000000, &v)) {
				bad_flag("--max-sessions", optarg,
					 "a number in 1..1000000");
				return 2;
			}
			sp.max_sessions = (unsigned)v;
			break;
		case 'T':
			if (hw_parse_uint(optarg, 1, 1000000, &v)) {
				bad_flag("--max-streams", optarg,
					 "a number in 1..1000000");
				return 2;
			}
			sp.max_streams = (unsigned)v;
			break;
		case 'B':
			if (hw_parse_bytes(optarg, 512u << 10, ULLONG_MAX,
					   &v)) {
				bad_flag("--max-buffered", optarg,
					 "a byte count of at least 512KiB "
					 "(e.g. 256MiB)");
				return 2;
			}
			sp.max_buffered = v;
			break;
		case 'K':
			if (hw_parse_uint(optarg, 100, 3600000, &v)) {
				bad_flag("--keepalive-ms", optarg,
					 "a number of milliseconds in "
					 "100..3600000");
				return 2;
			}
			sp.keepalive_ms = (unsigned)v;
			break;
		case 'L':
			if (hw_log_level_parse(optarg, &level)) {
				bad_flag("--log-level", optarg,
					 "one of debug, info, warn, error");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf(PROG " %s\n", HW_VERSION); return 0;
		default:
			fprintf(stderr, "Try '" PROG " --help'.\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (!key || !listen) {
		fprintf(stderr, PROG ": %s is required (see --help)\n",
			!key ? "--key FILE" : "--listen HOST:PORT");
		return 2;
	}
	if (public_addr && hw_addr_split(public_addr, host, &port)) {
		bad_flag("--public-addr", public_addr, "HOST:PORT");
		return 2;
	}
	if (hw_addr_split(listen, host, &port)) {
		bad_flag("--listen", listen, "HOST:PORT");
		return 2;
	}
	if ((rc = hw_identity_load(&id, key))) {
		if (rc == HW_EKEYPERM)
			fprintf(stderr, PROG ": --key: %s is readable by group "
				"or others; run chmod 600 %s\n", key, key);
		else
			fprintf(stderr, PROG ": --key: cannot load %s: %s\n",
				key, hw_strerror(rc));
		return 1;
	}
	hw_log_to_stderr(level);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	uv_loop_init(&g.loop);
	sp.loop = &g.loop;
	sp.id = &id;
	if ((rc = hw_relay_server_new(&g.srv, &sp))) {
		fprintf(stderr, PROG ": %s\n", hw_strerror(rc));
		goto out;
	}
	if ((rc = hw_relay_server_listen(g.srv, host, port, err,
					 sizeof(err)))) {
		fprintf(stderr, PROG ": --listen: %s\n", err);
		hw_relay_server_free(g.srv);
		g.srv = NULL;
		uv_run(&g.loop, UV_RUN_DEFAULT);
		goto out;
	}
	hw_pk_format(id.pk, pk);
	hw_log(HW_LOG_INFO, LOG, "relay %s listening on %s:%u", pk,
	       host[0] ? host : "*", hw_relay_server_port(g.srv));
	uv_timer_init(&g.loop, &g.reg_timer);
	if (disc_url) {
		if (state_dir) {
			snprintf(dir, sizeof(dir), "%s", state_dir);
		} else {
			char copy[PATH_MAX];
			snprintf(copy, sizeof(copy), "%s", key);
			snprintf(dir, sizeof(dir), "%s", dirname(copy));
		}
		snprintf(seq_path, sizeof(seq_path), "%s/relay-seq", dir);
		if ((rc = hw_disc_client_new(&g.disc, &g.loop, disc_url, &id,
					     seq_path, err, sizeof(err)))) {
			fprintf(stderr, PROG ": --discovery: %s\n", err);
			hw_relay_server_free(g.srv);
			g.srv = NULL;
			uv_close((uv_handle_t *)&g.reg_timer, NULL);
			uv_run(&g.loop, UV_RUN_DEFAULT);
			goto out;
		}
		if (public_addr) {
			snprintf(g.entry.addr, sizeof(g.entry.addr), "%s",
				 public_addr);
		} else {
			int any = !host[0] || !strcmp(host, "0.0.0.0") ||
				  !strcmp(host, "::");
			char a[HW_HOST_MAX + 16];
			snprintf(a, sizeof(a),
				 strchr(host, ':') ? "[%s]:%u" : "%s:%u",
				 host[0] ? host : "0.0.0.0",
				 hw_relay_server_port(g.srv));
			a[HW_DISC_ADDR_MAX] = '\0';
			memcpy(g.entry.addr, a, strlen(a) + 1);
			if (any)
				hw_log(HW_LOG_WARN, LOG, "registering %s, "
				       "which visors cannot dial; set "
				       "--public-addr", g.entry.addr);
		}
		g.entry.capacity = sp.max_sessions;
		g.retry_ms = REGISTER_RETRY_MIN_MS;
		reg_send(&g.reg_timer);
	}
	uv_signal_init(&g.loop, &g.sigint);
	uv_signal_init(&g.loop, &g.sigterm);
	uv_signal_init(&g.loop, &g.sigusr1);
	uv_signal_start(&g.sigint, on_signal, SIGINT);
	uv_signal_start(&g.sigterm, on_signal, SIGTERM);
	uv_signal_start(&g.sigusr1, on_signal, SIGUSR1);
	uv_run(&g.loop, UV_RUN_DEFAULT);
	status = 0;
out:
	hw_identity_wipe(&id);
	rc = uv_loop_close(&g.loop);
	if (rc) {
		hw_log(HW_LOG_ERROR, LOG, "handles left open at exit: %s",
		       uv_strerror(rc));
		return 1;
	}
	if (status == 0)
		hw_log(HW_LOG_INFO, LOG, "stopped");
	return status;
}
