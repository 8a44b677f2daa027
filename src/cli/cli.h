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
int hw_cli_testnet(int argc, char **argv);

#endif
