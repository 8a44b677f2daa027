/* The transport types a visor knows: one line each in TYPES, naming the
 * hw_tp_type_NAME that src/transport/NAME.c defines. */
#include <string.h>

#include "transport/type.h"

#define TYPES(X) \
	X(tcp)   \
	X(relay)

#define DECLARE(name) extern const struct hw_tp_type hw_tp_type_##name;
#define ENTRY(name) &hw_tp_type_##name,

TYPES(DECLARE)

const struct hw_tp_type *const hw_tp_types[] = {TYPES(ENTRY) NULL};
_Static_assert(sizeof(hw_tp_types) / sizeof(hw_tp_types[0]) <=
		       HW_TP_TYPES_MAX + 1,
	       "more transport types than HW_TP_TYPES_MAX");

const struct hw_tp_type *hw_tp_type_find(const char *name)
{
	for (const struct hw_tp_type *const *t = hw_tp_types; *t; t++)
		if (!strcmp((*t)->name, name))
			return *t;
	return NULL;
}
