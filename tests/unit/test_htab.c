#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "util/htab.h"

struct item {
	struct hw_hnode node;
	int key;
};

static struct item *find(struct hw_htab *t, int key)
{
	uint64_t h = (uint64_t)key * 0x9e3779b97f4a7c15ull;
	for (struct hw_hnode *x = hw_htab_bucket(t, h); x; x = x->next)
		if (x->h == h && ((struct item *)x)->key == key)
			return (struct item *)x;
	return NULL;
}

static void test_insert_find_remove(void **state)
{
	struct hw_htab t = {0};
	struct item *items = calloc(1000, sizeof(*items));

	assert_null(hw_htab_bucket(&t, 42));
	for (int i = 0; i < 1000; i++) {
		items[i].key = i;
		items[i].node.h = (uint64_t)i * 0x9e3779b97f4a7c15ull;
		hw_htab_insert(&t, &items[i].node);
	}
	assert_int_equal(t.n, 1000);
	for (int i = 0; i < 1000; i++)
		assert_ptr_equal(find(&t, i), &items[i]);
	assert_null(find(&t, 1000));
	for (int i = 0; i < 1000; i += 2)
		hw_htab_remove(&t, &items[i].node);
	hw_htab_remove(&t, &items[0].node); /* not there any more */
	assert_int_equal(t.n, 500);
	for (int i = 0; i < 1000; i++)
		assert_ptr_equal(find(&t, i), i % 2 ? &items[i] : NULL);
	hw_htab_free(&t);
	assert_int_equal(t.n, 0);
	free(items);
}

/* All keys on one hash still work: the chain carries them. */
static void test_collisions(void **state)
{
	struct hw_htab t = {0};
	struct item items[50];

	for (int i = 0; i < 50; i++) {
		items[i].key = i;
		items[i].node.h = 7;
		hw_htab_insert(&t, &items[i].node);
	}
	for (int i = 0; i < 50; i++) {
		struct hw_hnode *x = hw_htab_bucket(&t, 7);
		while (x && x != &items[i].node)
			x = x->next;
		assert_non_null(x);
	}
	hw_htab_remove(&t, &items[25].node);
	assert_int_equal(t.n, 49);
	hw_htab_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_insert_find_remove),
		cmocka_unit_test(test_collisions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
