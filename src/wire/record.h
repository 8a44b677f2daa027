/* The record layer every stream transport uses:
 *
 *   length u16 big-endian | record (length bytes)
 *
 * A record is a Noise message, so it is at most 65535 bytes and, once a
 * session is encrypted, at least one AEAD tag long. On libuv streams the
 * records are read by the Noise stream engine (wire/nstream.c, framed by
 * transport/conn.c); here are the codec pieces and blocking helpers. */
#ifndef HW_WIRE_RECORD_H
#define HW_WIRE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/cipher.h"

#define HW_RECORD_HDR 2
#define HW_RECORD_MAX 65535
/* Largest plaintext that fits one encrypted record. */
#define HW_RECORD_MAX_PLAINTEXT (HW_RECORD_MAX - HW_CIPHER_TAGLEN)

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
