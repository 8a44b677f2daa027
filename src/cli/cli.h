/* The `hopwire` command line: shared helpers of its command files. */
#ifndef HW_CLI_CLI_H
#define HW_CLI_CLI_H

/* A command's entry point: argv[0] is the command's own name. Returns the
 * process exit code. */
typedef int (*hw_cli_fn)(int argc, char **argv);

struct hw_cli_command {
	const char *name;
	hw_cli_fn fn;
	const char *summary;
};

/* Prints "hopwire: " and the formatted message to stderr. */
void hw_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

int hw_cli_keygen(int argc, char **argv);
int hw_cli_pk(int argc, char **argv);

#endif
