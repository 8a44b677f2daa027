/* The `hopwire` command line: shared helpers of its command files. */
#ifndef HW_CLI_CLI_H
#define HW_CLI_CLI_H

#include <jansson.h>
#include <limits.h>

/* A command's entry point: argv[0] is the command's own name. Returns the
 * process exit code (0 done, 1 failed, 2 usage). */
typedef int (*hw_cli_fn)(int argc, char **argv);

struct hw_cli_command {
	const char *name;
	hw_cli_fn fn;
	const char *summary;
};

/* Options every visor command takes, wherever they stand. */
struct hw_cli_opts {
	const char *visor;  /* --visor PATH: the control socket */
	const char *config; /* --config FILE: find the socket from it */
	int json;           /* --json */
};
extern struct hw_cli_opts hw_cli_opts;

/* Prints "hopwire: " and the formatted message to stderr. */
void hw_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Calls the visor's control API. On success returns 0 with the JSON
 * answer in *resp (caller frees). When the visor cannot be reached or
 * answers an error, prints the reason and returns the exit code (1). */
int hw_cli_call(const char *method, const char *path, json_t *body,
		long timeout_ms, json_t **resp);

/* Like hw_cli_call, but an error answer of the visor is not one: returns
 * 0 with the HTTP status in *status and its JSON (NULL when empty) in
 * *resp (caller frees); 1 with the reason printed when the visor cannot
 * be reached. */
int hw_cli_request(const char *method, const char *path, json_t *body,
		   long timeout_ms, long *status, json_t **resp);

/* The largest SIZE a command takes for --bytes (1 TiB; hw_parse_bytes). */
#define HW_CLI_SIZE_MAX (1ull << 40)

/* The entry of app name in GET /v1/apps (a new reference), or NULL when
 * there is none or the visor could not be asked: *rc is then the exit
 * code, said already (cmd_app.c). */
json_t *hw_cli_app_entry(const char *name, int *rc);

/* After a PUT: waits until the app has run a second with its new
 * settings (want_running), or is stopped (!want_running), or has failed.
 * Returns 0, or 1 having said what went wrong (an app that rejects its
 * arguments exits at once with status 1) (cmd_app.c). */
int hw_cli_app_settle(const char *name, int want_running);

/* Waits while app name, whose entry o is (taken over), is "stopping" or
 * "cleanup" (the launcher ends both: SIGKILL after the grace, a cleanup
 * after 10 s), up to 20 s, and returns its latest entry; *rc is set
 * when the visor stopped answering (cmd_app.c). */
json_t *hw_cli_app_wait_stopped(const char *name, json_t *o, int *rc);

/* PUT /v1/apps/NAME with body (binary, args, port, autostart and what
 * else the entry has), then hw_cli_app_settle (to running when the body
 * says autostart). When the app does not come up with it, what was there
 * comes back: old (the app's entry from hw_cli_app_entry, NULL for a new
 * app) is put again, or the new app is stopped and its autostart turned
 * off. Returns 0, or the exit code having said why (cmd_app.c). */
int hw_cli_app_put(const char *name, json_t *body, json_t *old);

/* Why s is not a visor's public key (a short phrase), or NULL when it is
 * one (cli_util.c). */
const char *hw_cli_pk_bad(const char *s);

/* n bytes for people: "512 B", "1.5 KiB", "3.0 MiB" (cli_util.c). */
void hw_cli_human_bytes(long long n, char *out, size_t len);

/* o[k] as a string, "" when missing or not a string (cli_util.c). */
const char *hw_cli_str(json_t *o, const char *k);

/* o[k] as an integer, 0 when missing or not an integer (cli_util.c). */
long long hw_cli_num(json_t *o, const char *k);

/* The wall clock in milliseconds since the epoch, comparable with the
 * apps' *_ms times (cli_util.c). */
long long hw_cli_now_ms(void);

/* For a command with subcommands (argv[1]): with none, usage on stderr
 * and 2; with "help", --help or -h as the subcommand or after it, usage
 * on stdout and 0; otherwise -1, go on (cli_util.c). */
int hw_cli_help(int argc, char **argv, void (*usage)(FILE *));

/* Prints j as indented JSON on stdout. */
void hw_cli_print_json(json_t *j);

int hw_cli_keygen(int argc, char **argv);
int hw_cli_pk(int argc, char **argv);
int hw_cli_config(int argc, char **argv);
int hw_cli_info(int argc, char **argv);
int hw_cli_tp(int argc, char **argv);
int hw_cli_ping(int argc, char **argv);
int hw_cli_route(int argc, char **argv);
int hw_cli_app(int argc, char **argv);
int hw_cli_socks(int argc, char **argv);
int hw_cli_forward(int argc, char **argv);
int hw_cli_vpn(int argc, char **argv);
int hw_cli_testnet(int argc, char **argv);

#endif
