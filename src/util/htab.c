#include "util/htab.h"

#include <stdlib.h>

void hw_htab_insert(struct hw_htab *t, struct hw_hnode *x)
{
	size_t i;

	if (t->n + 1 > t->nb) {
		size_t nb = t->nb ? t->nb * 2 : 16;
		struct hw_hnode **b = calloc(nb, sizeof(*b));
		if (b) {
			for (size_t k = 0; k < t->nb; k++) {
				struct hw_hnode *y = t->b[k], *next;
				for (; y; y = next) {
					next = y->next;
					y->next = b[y->h & (nb - 1)];
					b[y->h & (nb - 1)] = y;
				}
			}
			free(t->b);
			t->b = b;
			t->nb = nb;
		}
	}
	if (!t->nb)
		return; /* cannot happen once one allocation succeeded */
	i = x->h & (t->nb - 1);
	x->next = t->b[i];
	t->b[i] = x;
	t->n++;
}

void hw_htab_remove(struct hw_htab *t, struct hw_hnode *x)
{
	struct hw_hnode **pp;

	if (!t->nb)
		return;
	pp = &t->b[x->h & (t->nb - 1)];
	while (*pp && *pp != x)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = x->next;
		t->n--;
	}
}

struct hw_hnode *hw_htab_bucket(const struct hw_htab *t, uint64_t h)
{
	return t->nb ? t->b[h & (t->nb - 1)] : NULL;
}

void hw_htab_free(struct hw_htab *t)
{
	free(t->b);
	t->b = NULL;
	t->nb = t->n = 0;
}
