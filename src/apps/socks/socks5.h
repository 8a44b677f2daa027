/* A strict codec of SOCKS version 5 (RFC 1928) and its username/password
 * sub-negotiation (RFC 1929). Incremental: a parser given too few bytes
 * returns -EAGAIN ("need more"), then the caller appends and calls again
 * with the whole buffer. Every length is checked; nothing is allocated. */
#ifndef HW_SOCKS5_H
#define HW_SOCKS5_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HW_S5_VERSION 5
#define HW_S5_AUTH_VERSION 1
#define HW_S5_METHOD_NONE 0x00
#define HW_S5_METHOD_USERPASS 0x02
#define HW_S5_METHOD_REFUSED 0xff

#define HW_S5_CMD_CONNECT 1
#define HW_S5_CMD_BIND 2
#define HW_S5_CMD_UDP 3

#define HW_S5_ATYP_IPV4 1
#define HW_S5_ATYP_DOMAIN 3
#define HW_S5_ATYP_IPV6 4

/* Reply codes (RFC 1928 section 6). */
#define HW_S5_OK 0x00
#define HW_S5_FAILURE 0x01
#define HW_S5_NOT_ALLOWED 0x02
#define HW_S5_NET_UNREACH 0x03
#define HW_S5_HOST_UNREACH 0x04
#define HW_S5_REFUSED 0x05
#define HW_S5_TTL_EXPIRED 0x06
#define HW_S5_CMD_UNSUPPORTED 0x07
#define HW_S5_ATYP_UNSUPPORTED 0x08

/* The longest request: 4 + 1 + 255 + 2. */
#define HW_S5_REQUEST_MAX 262
/* The longest reply: 4 + 16 + 2. */
#define HW_S5_REPLY_MAX 22

struct hw_s5_greeting {
	uint8_t nmethods;     /* 1..255 */
	uint8_t methods[255]; /* the first nmethods are valid */
};

struct hw_s5_request {
	uint8_t cmd;  /* as sent: CONNECT, BIND, UDP, or any other value */
	uint8_t atyp; /* IPV4, IPV6 or DOMAIN */
	uint8_t addr[16]; /* IPv4 (4 bytes) or IPv6 (16), network order */
	char host[256];   /* DOMAIN: the name, NUL-terminated */
	uint16_t port;    /* host order */
};

struct hw_s5_auth {
	char user[256]; /* NUL-terminated, 1..255 bytes */
	char pass[256]; /* NUL-terminated, 1..255 bytes */
};

/* Parses the greeting (VER NMETHODS METHODS) at the start of p[0..n).
 * Returns 0 and sets *used to its length, -EAGAIN when more bytes are
 * needed, -EPROTO when it is not a SOCKS5 greeting (version not 5,
 * NMETHODS 0). */
int hw_s5_parse_greeting(const uint8_t *p, size_t n,
			 struct hw_s5_greeting *g, size_t *used);

/* 1 when the greeting offers method m, else 0. */
int hw_s5_greeting_has(const struct hw_s5_greeting *g, uint8_t m);

/* Parses a request (VER CMD RSV ATYP DST.ADDR DST.PORT). Returns 0 and
 * *used, -EAGAIN for more bytes, -EPROTO when malformed (version not 5,
 * RSV not 0, a domain of length 0 or holding a NUL byte),
 * -EAFNOSUPPORT for an unknown ATYP (answer HW_S5_ATYP_UNSUPPORTED).
 * An unknown CMD is not an error here: r->cmd tells the caller. */
int hw_s5_parse_request(const uint8_t *p, size_t n, struct hw_s5_request *r,
			size_t *used);

/* Parses an RFC 1929 request (VER ULEN UNAME PLEN PASSWD). Returns 0 and
 * *used, -EAGAIN, or -EPROTO (version not 1, ULEN or PLEN 0, a NUL byte
 * inside). */
int hw_s5_parse_auth(const uint8_t *p, size_t n, struct hw_s5_auth *a,
		     size_t *used);

/* Parses a reply (VER REP RSV ATYP BND.ADDR BND.PORT); *rep gets REP.
 * Returns 0 and *used, -EAGAIN, -EPROTO, -EAFNOSUPPORT. */
int hw_s5_parse_reply(const uint8_t *p, size_t n, uint8_t *rep,
		      size_t *used);

/* Writes a reply with code rep and bound address sa (an AF_INET or
 * AF_INET6 sockaddr; NULL or another family gives 0.0.0.0:0) into out,
 * which holds HW_S5_REPLY_MAX bytes. Returns its length. */
size_t hw_s5_build_reply(uint8_t out[HW_S5_REPLY_MAX], uint8_t rep,
			 const struct sockaddr *sa);

/* Writes a request for CONNECT to r into out (HW_S5_REQUEST_MAX bytes).
 * Returns its length, or 0 when r is not valid. */
size_t hw_s5_build_request(uint8_t out[HW_S5_REQUEST_MAX],
			   const struct hw_s5_request *r);

/* The meaning of reply code rep ("host unreachable"). */
const char *hw_s5_reply_str(uint8_t rep);

#endif
