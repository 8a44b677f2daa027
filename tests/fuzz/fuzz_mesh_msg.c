/* The mesh messages (mesh/msg.c) a visor reads from any peer on a
 * transport: what parses builds back to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mesh/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hw_mesh_msg m;
	static uint8_t out[HW_MESH_MSG_MAX];
	char why[200];
	size_t n;

	if (hw_mesh_parse(data, size, &m, why, sizeof(why)))
		return strlen(why) >= sizeof(why) ? (__builtin_trap(), 0) : 0;
	if (m.npeers > HW_MESH_PEERS_MAX)
		__builtin_trap();
	n = hw_mesh_build(&m, out);
	if (n != size || memcmp(out, data, n))
		__builtin_trap();
	return 0;
}
