/* What both SOCKS programs share: reading a negotiation with a deadline,
 * and splicing two descriptors until both directions ended. */
#ifndef HW_SOCKS_RELAY_H
#define HW_SOCKS_RELAY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How long a negotiation (greeting and request) may take. */
#define HW_SOCKS_NEGOTIATE_MS 10000

/* Milliseconds on the monotonic clock. */
long long hw_socks_now_ms(void);

/* Waits until fd is readable or deadline (hw_socks_now_ms) passes, then
 * reads what it has into buf[*len..cap). Returns the count read (>0),
 * 0 at end of file, -ETIMEDOUT, -ENOBUFS when buf is full, or a negative
 * errno (-ENETRESET: a failed loop). */
ssize_t hw_socks_read_more(int fd, uint8_t *buf, size_t *len, size_t cap,
			   long long deadline);

/* Writes all of buf to fd (blocking or not: waits with poll). Returns 0 or
 * a negative errno. */
int hw_socks_write_all(int fd, const void *buf, size_t len);

/* Bytes moved by splices, added to as they go (shared by threads). */
struct hw_socks_counts {
	_Atomic unsigned long long a_to_b, b_to_a;
};

/* Copies bytes both ways between a and b until each side ended its
 * sending (an end of file from one side is passed on as shutdown(SHUT_WR)
 * of the other) or one failed. to_b[0..to_b_len) is sent to b first.
 * Counts what b and a took into *counts when not NULL. Makes both
 * descriptors non-blocking; closes neither. Returns 0 after an orderly
 * end of both directions, else a negative errno. */
int hw_socks_splice(int a, int b, const uint8_t *to_b, size_t to_b_len,
		    struct hw_socks_counts *counts);

/* 1 when s is a public key as 64 lowercase hex characters, else 0. */
int hw_socks_pk_ok(const char *s);

#endif
