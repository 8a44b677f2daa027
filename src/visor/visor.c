#include "visor/visor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/err.h"
#include "util/log.h"
#include "util/version.h"
#include "visor/visor_priv.h"

#define LOG "visor"

void hw_visor_ref(struct hw_visor *v)
{
	v->refs++;
}

void hw_visor_unref(struct hw_visor *v)
{
	if (--v->refs == 0) {
		hw_identity_wipe(&v->id);
		hw_config_free(&v->cfg);
		free(v);
	}
}

static int make_local_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST) {
		snprintf(err, errlen, "local_dir %s: %s", dir,
			 strerror(errno));
		return -errno;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "local_dir %s: not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
}

int hw_visor_new(struct hw_visor **out, uv_loop_t *loop,
		 const struct hw_config *cfg, char *err, size_t errlen)
{
	struct hw_tp_manager_params tp = {0};
	struct hw_visor *v = calloc(1, sizeof(*v));
	char state[PATH_MAX + 32], msg[512];
	int rc;

	*out = NULL;
	if (!v)
		return -ENOMEM;
	v->loop = loop;
	v->refs = 1;
	v->cfg = *cfg;
	/* The copy owns the persistent list from here on. */
	v->cfg.persistent = NULL;
	v->cfg.npersistent = 0;
	v->start_ms = uv_now(loop);

	if ((rc = hw_identity_load(&v->id, cfg->key_file))) {
		snprintf(err, errlen, "key_file %s: %s", cfg->key_file,
			 hw_strerror(rc));
		goto fail;
	}
	hw_pk_format(v->id.pk, v->pk_hex);
	if ((rc = make_local_dir(cfg->local_dir, err, errlen)))
		goto fail;
	snprintf(state, sizeof(state), "%s/transports.json", cfg->local_dir);

	tp.loop = loop;
	tp.id = &v->id;
	tp.tcp_listen = cfg->tcp_listen;
	tp.state_path = state;
	tp.keepalive_ms = cfg->keepalive_ms;
	tp.handshake_timeout_ms = cfg->handshake_timeout_ms;
	tp.max_pending_handshakes = cfg->max_pending_handshakes;
	tp.redial_min_ms = cfg->redial_min_ms;
	tp.redial_max_ms = cfg->redial_max_ms;
	if ((rc = hw_tp_manager_new(&v->tpm, &tp, msg, sizeof(msg)))) {
		snprintf(err, errlen, "transport.tcp_listen: %s", msg);
		goto fail;
	}
	for (size_t i = 0; i < cfg->npersistent; i++) {
		const struct hw_config_tp *p = &cfg->persistent[i];
		if (hw_tp_manager_add(v->tpm, p->pk, p->type, p->addr, 1, NULL,
				      NULL, msg, sizeof(msg)))
			hw_log(HW_LOG_WARN, LOG,
			       "transport.persistent[%zu]: %s", i, msg);
	}
	if ((rc = hw_api_server_new(&v->api, loop, cfg->control_socket,
				    hw_visor_api_handle, v))) {
		snprintf(err, errlen, "control socket %s: %s%s",
			 cfg->control_socket, hw_strerror(rc),
			 rc == -EADDRINUSE ? " (is another visor running?)"
					   : "");
		goto fail;
	}
	hw_log(HW_LOG_INFO, LOG, "hopwire-visor %s started: pk %s", HW_VERSION,
	       v->pk_hex);
	if (hw_tp_manager_listen_addr(v->tpm)[0])
		hw_log(HW_LOG_INFO, LOG, "listening for transports on tcp %s",
		       hw_tp_manager_listen_addr(v->tpm));
	hw_log(HW_LOG_INFO, LOG, "control API on %s", cfg->control_socket);
	*out = v;
	return 0;
fail:
	hw_visor_free(v);
	return rc;
}

void hw_visor_free(struct hw_visor *v)
{
	if (!v)
		return;
	v->closing = 1;
	hw_api_server_free(v->api);
	v->api = NULL;
	hw_tp_manager_free(v->tpm);
	v->tpm = NULL;
	hw_visor_unref(v);
}
