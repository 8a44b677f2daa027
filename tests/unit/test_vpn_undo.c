/* The VPN client's undo.json (src/apps/vpn/undo.c with nl.c and
 * status.c, compiled into this test: apps are not part of hwcore): the
 * file handling only, without touching the host's routes: malformed
 * records are refused and kept, records of interfaces that are gone
 * count as undone. No netlink socket is opened (nl is NULL throughout),
 * so a test that reached the kernel would crash. */
#include <errno.h>
#include <net/if.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "hwtest.h"
#include "../../src/apps/vpn/undo.h"

/* An interface name no host has. */
#define GONE "hwnoif9x"

static char dir[64], path[128];
static char err[512];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/hw-test-vpnundo-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/undo.json", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	hw_test_rm_tree(dir);
	return 0;
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* Replays text expecting -EINVAL naming want; the file is kept. */
static void replay_bad(const char *text, const char *want)
{
	int done = -1;

	write_file(text);
	err[0] = '\0';
	assert_int_equal(hw_vpn_undo_replay(path, NULL, &done, err,
					    sizeof(err)), -EINVAL);
	assert_int_equal(done, 0);
	if (!strstr(err, want) || !strstr(err, path))
		fail_msg("'%s': error '%s' does not say '%s' of %s", text,
			 err, want, path);
	/* Kept for the operator to look at. */
	assert_int_equal(access(path, F_OK), 0);
}

#define R(fields) "{\"op\": \"route\", " fields "}"
#define OK4 R("\"family\": 4, \"dst\": \"0.0.0.0\", \"prefix\": 1, " \
	      "\"dev\": \"" GONE "\"")

static void test_replay(void **state)
{
	int done = -1;

	(void)state;
	assert_int_equal(if_nametoindex(GONE), 0);
	/* No file: nothing to do. */
	assert_int_equal(hw_vpn_undo_replay(path, NULL, &done, err,
					    sizeof(err)), 0);
	assert_int_equal(done, 0);

	replay_bad("", "line");
	replay_bad("[]", "not a JSON object");
	replay_bad("{}", "\"changes\" is not an array");
	replay_bad("{\"changes\": {}}", "\"changes\" is not an array");
	replay_bad("{\"changes\": [7]}", "changes[0] is not a route");
	replay_bad("{\"changes\": [" R("\"family\": 5, \"dst\": \"0.0.0.0\", "
				      "\"prefix\": 1, \"dev\": \"lo\"") "]}",
		   "changes[0]");
	replay_bad("{\"changes\": [" R("\"family\": 4, \"dst\": \"0.0.0.0\", "
				      "\"prefix\": 33, \"dev\": \"lo\"") "]}",
		   "changes[0]");
	replay_bad("{\"changes\": [" R("\"family\": 4, \"dst\": \"0.0.0.0\", "
				      "\"prefix\": -1, \"dev\": \"lo\"") "]}",
		   "changes[0]");
	replay_bad("{\"changes\": [" R("\"family\": 4, \"dst\": \"::\", "
				      "\"prefix\": 1, \"dev\": \"lo\"") "]}",
		   "changes[0]");
	replay_bad("{\"changes\": [" R("\"family\": 6, \"dst\": \"::\", "
				      "\"prefix\": 129, \"dev\": \"lo\"") "]}",
		   "changes[0]");
	replay_bad("{\"changes\": [" R("\"family\": 4, \"dst\": \"1.2.3.4\", "
				      "\"prefix\": 32, \"gw\": 5, "
				      "\"dev\": \"lo\"") "]}", "changes[0]");
	replay_bad("{\"changes\": [" R("\"family\": 4, \"dst\": \"1.2.3.4\", "
				      "\"prefix\": 32, \"gw\": \"::1\", "
				      "\"dev\": \"lo\"") "]}", "changes[0]");
	replay_bad("{\"changes\": [" R("\"family\": \"4\", \"dst\": "
				      "\"1.2.3.4\", \"prefix\": 32, "
				      "\"dev\": \"lo\"") "]}", "changes[0]");
	replay_bad("{\"changes\": [" R("\"family\": 4, \"dst\": \"1.2.3.4\", "
				      "\"prefix\": 32") "]}", "changes[0]");
	replay_bad("{\"changes\": [{\"op\": \"addr\", \"family\": 4, "
		   "\"dst\": \"1.2.3.4\", \"prefix\": 32, \"dev\": \"lo\"}]}",
		   "changes[0]");
	/* A bad record after good ones: nothing is undone, all kept (the
	 * whole file is checked before the first route goes). */
	replay_bad("{\"changes\": [" OK4 ", " R("\"family\": 4, \"dst\": "
				      "\"0.0.0.0\", \"prefix\": 1, \"dev\": "
				      "\"lo\", \"gw\": \"x\"") "]}",
		   "changes[1]");

	/* Routes on interfaces that are gone are gone too: the record is
	 * done with and removed, no route counted. */
	write_file("{\"version\": 1, \"changes\": [" OK4 ", "
		   R("\"family\": 6, \"dst\": \"::\", \"prefix\": 0, "
		     "\"gw\": \"fe80::1\", \"dev\": \"" GONE "\"") "]}");
	done = -1;
	assert_int_equal(hw_vpn_undo_replay(path, NULL, &done, err,
					    sizeof(err)), 0);
	assert_int_equal(done, 0);
	assert_int_equal(access(path, F_OK), -1);
}

static void test_record(void **state)
{
	struct hw_vpn_undo *u = NULL;
	struct hw_vpn_route r = {.family = 4, .prefix = 1};
	char name[IF_NAMESIZE];

	(void)state;
	assert_int_equal(hw_vpn_undo_new(&u, path), 0);
	assert_non_null(u);
	/* A route whose interface does not exist is not recorded nor
	 * tried. */
	r.oif = 0x7ffffff0;
	assert_null(if_indextoname((unsigned)r.oif, name));
	assert_int_equal(hw_vpn_undo_route_add(u, NULL, &r), -ENODEV);
	assert_int_equal(access(path, F_OK), -1);
	/* Nothing recorded: nothing undone, no file written. */
	assert_int_equal(hw_vpn_undo_all(u, NULL), 0);
	assert_int_equal(access(path, F_OK), -1);
	hw_vpn_undo_free(u);
	hw_vpn_undo_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
