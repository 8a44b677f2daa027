/* Helpers of the unit tests that assert themselves (cmocka): include
 * after <cmocka.h>. The rest of the shared helpers are in hwtest.h. */
#ifndef HW_TESTS_SUPPORT_HWTEST_ASSERT_H
#define HW_TESTS_SUPPORT_HWTEST_ASSERT_H

#include <jansson.h>

/* The integer member k of o; fails the test when it is not one. */
static inline json_int_t hw_test_jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

/* The string member k of o; fails the test when it is not one. */
static inline const char *hw_test_jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	assert_true(json_is_string(v));
	return json_string_value(v);
}

#endif
