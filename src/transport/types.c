/* The transport types a visor knows: one line each. */
#include <string.h>

#include "transport/type.h"

extern const struct hw_tp_type hw_tp_type_tcp;
extern const struct hw_tp_type hw_tp_type_relay;

const struct hw_tp_type *const hw_tp_types[] = {
	&hw_tp_type_tcp,
	&hw_tp_type_relay,
	NULL,
};
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
