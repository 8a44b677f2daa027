/* The record layer every stream transport uses:
 *
 *   length u16 big-endian | record (length bytes)
 *
 * A record is a Noise message, so it is at most 65535 bytes and, once a
 * session is encrypted, at least one AEAD tag long. The reader accumulates
 * bytes from partial reads into one fixed buffer (no allocation per record)
 * and hands out whole records in place. */
#ifndef HW_WIRE_RECORD_H
#define HW_WIRE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/cipher.h"

#define HW_RECORD_HDR 2
#define HW_RECORD_MAX 65535
/* Largest plaintext that fits one encrypted record. */
#define HW_RECORD_MAX_PLAINTEXT (HW_RECORD_MAX - HW_CIPHER_TAGLEN)

struct hw_record_reader;

/* Creates a reader that accepts records of min_len..max_len bytes
 * (max_len <= HW_RECORD_MAX); any other length is a protocol error.
 * Returns NULL when out of memory or when the bounds are impossible. */
struct hw_record_reader *hw_record_reader_new(size_t min_len, size_t max_len);

/* Frees. Accepts NULL. */
void hw_record_reader_free(struct hw_record_reader *r);

/* Changes the accepted bounds (a transport accepts shorter records while
 * handshaking than once encrypted). */
void hw_record_reader_set_bounds(struct hw_record_reader *r, size_t min_len,
				 size_t max_len);

/* Space to read into: *buf and *len (never 0). Compacts the buffer, so
 * records handed out before are invalid afterwards. */
void hw_record_reader_space(struct hw_record_reader *r, uint8_t **buf,
			    size_t *len);

/* Records that n bytes were read into the space handed out last. */
void hw_record_reader_commit(struct hw_record_reader *r, size_t n);

/* Copies n bytes from data into the reader, as much as fits; returns how
 * many were taken. For callers that do not read into the reader's space. */
size_t hw_record_reader_feed(struct hw_record_reader *r, const uint8_t *data,
			     size_t n);

/* The next whole record: returns 1 and sets *rec (inside the reader's
 * buffer, writable, valid until the next space/feed call) and *len;
 * returns 0 when more bytes are needed; HW_EPROTO when the length prefix
 * is out of bounds (the stream cannot be resynchronised: close it). */
int hw_record_reader_next(struct hw_record_reader *r, uint8_t **rec,
			  size_t *len);

/* The next n bytes (n <= HW_RECORD_MAX), not a record: bytes that follow
 * a record outside it. Returns 1 and sets *p (valid like a record) once n
 * bytes are held, 0 when more are needed. */
int hw_record_reader_take(struct hw_record_reader *r, size_t n, uint8_t **p);

/* Bytes held that are not yet part of a returned record. */
size_t hw_record_reader_pending(const struct hw_record_reader *r);

/* Writes the 2-byte length prefix of a record of len bytes. */
static inline void hw_record_put_header(uint8_t hdr[HW_RECORD_HDR],
					size_t len)
{
	hdr[0] = (uint8_t)(len >> 8);
	hdr[1] = (uint8_t)len;
}

/* Encrypts pt with cs into out as one record (header and ciphertext);
 * out must hold HW_RECORD_HDR + ptlen + HW_CIPHER_TAGLEN bytes and may
 * alias pt shifted by HW_RECORD_HDR (out + HW_RECORD_HDR == pt).
 * Returns the record's total length, or HW_ETOOBIG / a cipher error. */
int hw_record_seal(struct hw_cipher *cs, const uint8_t *pt, size_t ptlen,
		   uint8_t *out);

/* Blocking helpers for plain file descriptors (tests, tools, the app
 * SDK): read or write one whole record, retrying partial transfers and
 * EINTR. hw_record_read_fd returns 0 and *len; HW_ECLOSED on EOF before
 * a record starts, HW_EPROTO on EOF inside one or a length outside
 * min_len..cap, or a negative errno. */
int hw_record_read_fd(int fd, uint8_t *buf, size_t cap, size_t min_len,
		      size_t *len);
int hw_record_write_fd(int fd, const uint8_t *rec, size_t len);

#endif
