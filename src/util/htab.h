/* An intrusive hash table: callers embed a struct hw_hnode in their own
 * objects, hash their keys themselves (with a secret key, e.g. SipHash via
 * crypto_shorthash, so peers cannot aim at one bucket) and walk a bucket's
 * chain to compare keys. The table grows by doubling; without memory it
 * keeps its size and the chains get longer. */
#ifndef HW_UTIL_HTAB_H
#define HW_UTIL_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct hw_hnode {
	struct hw_hnode *next;
	uint64_t h;
};

/* Zero-initialised is empty. */
struct hw_htab {
	struct hw_hnode **b;
	size_t nb, n;
};

/* Inserts x, whose h is set. */
void hw_htab_insert(struct hw_htab *t, struct hw_hnode *x);

/* Removes x if it is in t. */
void hw_htab_remove(struct hw_htab *t, struct hw_hnode *x);

/* The chain that nodes with hash h are on (NULL when empty). */
struct hw_hnode *hw_htab_bucket(const struct hw_htab *t, uint64_t h);

/* Frees the bucket array (the nodes are the caller's). */
void hw_htab_free(struct hw_htab *t);

#endif
