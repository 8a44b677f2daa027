#include "wire/tpid.h"

#include <sodium.h>
#include <string.h>

void hw_tp_id(const uint8_t pk_a[HW_PK_LEN], const uint8_t pk_b[HW_PK_LEN],
	      const char *type, uint8_t id[HW_TP_ID_LEN])
{
	static const char label[] = "hopwire/1 transport id";
	crypto_generichash_blake2b_state st;
	int a_first = memcmp(pk_a, pk_b, HW_PK_LEN) < 0;

	crypto_generichash_blake2b_init(&st, NULL, 0, HW_TP_ID_LEN);
	crypto_generichash_blake2b_update(&st, (const uint8_t *)label,
					  sizeof(label));
	crypto_generichash_blake2b_update(&st, a_first ? pk_a : pk_b,
					  HW_PK_LEN);
	crypto_generichash_blake2b_update(&st, a_first ? pk_b : pk_a,
					  HW_PK_LEN);
	crypto_generichash_blake2b_update(&st, (const uint8_t *)type,
					  strlen(type) + 1);
	crypto_generichash_blake2b_final(&st, id, HW_TP_ID_LEN);
}
