/* The layout of a testnet: which processes, their names, ports, keys and
 * folders under DIR, and the visors' configs (a line v1 - v2 - ... - vN,
 * each dialing the next, with the chat, hello, SOCKS and forward apps). */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "discovery/routefind.h"
#include "testnet/node.h"
#include "testnet/tn_priv.h"
#include "util/err.h"

_Static_assert(HW_TN_ROUTE_MAX_HOPS == HW_RF_MAX_HOPS,
	       "testnet.h's HW_TN_ROUTE_MAX_HOPS is discovery's limit");
#include "visor/config.h"

/* Loads the key file at path, or makes it. */
static int ensure_key(const struct hw_tn *tn, const char *path,
		      char pk[HW_TN_PK_HEXLEN + 1])
{
	int created, rc = hw_node_key_ensure(path, pk, &created);

	if (rc)
		hw_tn_err(tn, "testnet up: key file %s: %s", path,
			  hw_strerror(rc));
	return rc;
}

/* n distinct free TCP ports on 127.0.0.1: all held open until every one
 * is picked, so none comes twice. */
static int free_ports(uint16_t *ports, int n)
{
	int fds[HW_TN_MAX_PROCS * 3], rc = 0, i;

	for (i = 0; i < n; i++) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_addr.s_addr =
						 htonl(INADDR_LOOPBACK)};
		socklen_t sl = sizeof(sa);

		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 ||
		    bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    getsockname(fds[i], (struct sockaddr *)&sa, &sl) < 0) {
			rc = -errno;
			if (fds[i] >= 0)
				close(fds[i]);
			break;
		}
		ports[i] = ntohs(sa.sin_port);
	}
	while (i-- > 0)
		close(fds[i]);
	return rc;
}

/* The config of visor k: the defaults, a quick redial, a persistent
 * transport to the next visor of the line, the setup node, the apps.
 * NULL when out of memory. */
static json_t *visor_config(const struct hw_tn *tn, int k, const char *key,
			    const char *local, const char *setup_pk,
			    const char *disc_url)
{
	const struct hw_tn_proc *p = &tn->p[3 + k], *next = NULL;
	char chat_listen[HW_TN_ADDR_MAX];
	json_t *root, *tp, *apps;

	if (k + 1 < tn->nvisors)
		next = &tn->p[3 + k + 1];
	/* The chat URL is http://HOST:PORT; the app listens on HOST:PORT. */
	snprintf(chat_listen, sizeof(chat_listen), "%s",
		 p->chat + strlen("http://"));
	if (!(root = hw_config_default(key, local, p->addr, disc_url)))
		return NULL;
	tp = json_object_get(root, "transport");
	json_object_set_new(tp, "redial_max_ms",
			    json_integer(HW_TN_REDIAL_MAX_MS));
	if (next)
		json_array_append_new(json_object_get(tp, "persistent"),
				      json_pack("{s:s, s:s, s:s}", "pk",
						next->pk, "type", "tcp",
						"addr", next->addr));
	json_array_append_new(json_object_get(json_object_get(root,
							      "routing"),
					      "setup_nodes"),
			      json_string(setup_pk));
	/* The SOCKS exit takes anyone and reaches loopback (the testnet is
	 * local); the client has no exit, a TCP port of its own and port 4
	 * (the config needs one; nobody dials it): tests point their own
	 * client somewhere. The forward app starts with no settings.
	 * Should its binary be missing, the launcher marks it failed and
	 * the rest runs on. */
	apps = json_pack("[{s:s, s:s, s:[s, s], s:i, s:b},"
			 " {s:s, s:s, s:[s], s:i, s:b},"
			 " {s:s, s:s, s:[s, s, s], s:i, s:b},"
			 " {s:s, s:s, s:[s, s], s:i, s:b},"
			 " {s:s, s:s, s:[], s:i, s:b}]",
			 "name", HW_TN_CHAT_APP, "binary", HW_TN_CHAT_BIN,
			 "args", "--http", chat_listen, "port",
			 HW_TN_CHAT_PORT, "autostart", 1, "name",
			 HW_TN_HELLO_APP, "binary", "hopwire-hello", "args",
			 "server", "port", HW_TN_HELLO_PORT, "autostart", 1,
			 "name", "socks", "binary", "hopwire-socks", "args",
			 "--allow", "any", "--allow-loopback", "port", 3,
			 "autostart", 1, "name", "socks-client", "binary",
			 "hopwire-socks-client", "args", "--listen",
			 p->socks, "port", 4, "autostart", 1, "name",
			 HW_TN_FORWARD_APP, "binary", HW_TN_FORWARD_BIN,
			 "args", "port", HW_TN_FORWARD_PORT, "autostart", 1);
	if (!apps || json_object_set_new(root, "apps", apps)) {
		json_decref(root);
		return NULL;
	}
	return root;
}

int hw_tn_write_visor_config(struct hw_tn *tn, int k, const char *setup_pk,
			     const char *disc_url)
{
	struct hw_tn_proc *p = &tn->p[3 + k];
	char key[PATH_MAX], local[PATH_MAX], err[1024];
	struct hw_config cfg;
	json_t *root = NULL;
	char *text = NULL;
	int rc = -ENOMEM;

	if (hw_tn_fmt(local, sizeof(local), "%s/%s", tn->dir, p->name) ||
	    hw_tn_fmt(key, sizeof(key), "%s/visor.key", local))
		return -ENAMETOOLONG;
	if (!(root = visor_config(tn, k, key, local, setup_pk, disc_url)) ||
	    !(text = json_dumps(root, JSON_INDENT(2))))
		goto out;
	if ((rc = hw_tn_write_atomic(p->config, text, 0600))) {
		hw_tn_err(tn, "testnet up: cannot write %s: %s", p->config,
			  hw_strerror(rc));
		goto out;
	}
	rc = hw_config_load(&cfg, p->config, err, sizeof(err));
	if (rc)
		hw_tn_err(tn, "testnet up: config %s: %s", p->config, err);
	else
		snprintf(p->sock, sizeof(p->sock), "%s", cfg.control_socket);
	hw_config_free(&cfg);
out:
	if (rc == -ENOMEM)
		hw_tn_err(tn, "testnet up: out of memory");
	free(text);
	json_decref(root);
	return rc;
}

/* The folder, key and control socket or config of process k (not
 * discovery, which has none of them). */
static int plan_files(struct hw_tn *tn, int k)
{
	struct hw_tn_proc *p = &tn->p[k];
	char path[PATH_MAX];
	int rc;

	if ((rc = hw_tn_fmt(path, sizeof(path), "%s/%s", tn->dir,
			    p->name)) ||
	    (rc = hw_tn_mkdir_p(path))) {
		hw_tn_err(tn, "testnet up: cannot create %s: %s", path,
			  hw_strerror(rc));
		return rc;
	}
	if (k == 1)
		rc = hw_tn_fmt(path, sizeof(path), "%s/relay/relay.key",
			       tn->dir);
	else if (k == 2)
		rc = hw_tn_fmt(path, sizeof(path), "%s/setup/setup.key",
			       tn->dir);
	else
		rc = hw_tn_fmt(path, sizeof(path), "%s/%s/visor.key",
			       tn->dir, p->name);
	if (rc || (rc = ensure_key(tn, path, p->pk)))
		return rc;
	if (k == 2)
		rc = hw_tn_fmt(p->sock, sizeof(p->sock),
			       "%s/setup/visor.sock", tn->dir);
	else if (k > 2)
		rc = hw_tn_fmt(p->config, sizeof(p->config),
			       "%s/%s/hopwire.json", tn->dir, p->name);
	return rc;
}

int hw_tn_plan(struct hw_tn *tn)
{
	static const char *const svc[] = {"discovery", "relay", "setup"};
	uint16_t ports[HW_TN_MAX_PROCS * 3];
	int rc;

	tn->np = 3 + tn->nvisors;
	if ((rc = free_ports(ports, 3 + 3 * tn->nvisors))) {
		hw_tn_err(tn, "testnet up: cannot find free ports on "
			  "127.0.0.1: %s", hw_strerror(rc));
		return rc;
	}
	for (int k = 0; k < tn->np; k++) {
		struct hw_tn_proc *p = &tn->p[k];
		memset(p, 0, sizeof(*p));
		if (k < 3) {
			snprintf(p->name, sizeof(p->name), "%s", svc[k]);
			snprintf(p->role, sizeof(p->role), "%s", svc[k]);
		} else {
			snprintf(p->name, sizeof(p->name), "v%d", k - 2);
			snprintf(p->role, sizeof(p->role), "visor");
			snprintf(p->chat, sizeof(p->chat),
				 "http://127.0.0.1:%u",
				 (unsigned)ports[3 + tn->nvisors + k - 3]);
			snprintf(p->socks, sizeof(p->socks), "127.0.0.1:%u",
				 (unsigned)ports[3 + 2 * tn->nvisors + k - 3]);
		}
		snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%u",
			 (unsigned)ports[k]);
		if ((rc = hw_tn_fmt(p->log, sizeof(p->log), "%s/logs/%s.log",
				    tn->dir, p->name)))
			return rc;
		if (k == 0)
			snprintf(p->url, sizeof(p->url), "http://%s", p->addr);
		else if ((rc = plan_files(tn, k)))
			return rc;
	}
	return 0;
}
