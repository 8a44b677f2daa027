/* Discovery entries: their JSON form, their canonical binary encoding and
 * its Ed25519 signature (docs/discovery.md has both byte by byte).
 *
 * Every write to discovery is one of these, signed by `signer` over the
 * canonical encoding (never over JSON text), with a sequence number that
 * must exceed every earlier one of that signer and a timestamp inside the
 * server's window. The JSON decoder is strict: unknown fields, wrong types,
 * oversized strings and lists are errors that name the field. */
#ifndef HW_DISCOVERY_ENTRY_H
#define HW_DISCOVERY_ENTRY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/identity.h"

#define HW_DISC_TP_ID_LEN 16
#define HW_DISC_MAX_RELAYS 8   /* relays in one visor entry */
#define HW_DISC_MAX_ADDRS 8    /* addresses in one visor entry */
#define HW_DISC_ADDR_MAX 255   /* bytes of one HOST:PORT */
#define HW_DISC_STR_MAX 63     /* version, transport and service types */
/* Bytes of the largest canonical encoding (a visor entry with every list
 * full), so encoders can use a fixed buffer. */
#define HW_DISC_ENC_MAX 4096

enum hw_disc_kind {
	HW_DISC_VISOR = 1,
	HW_DISC_RELAY = 2,
	HW_DISC_TRANSPORT = 3,
	HW_DISC_TRANSPORT_DEL = 4,
	HW_DISC_SERVICE = 5,
	HW_DISC_SERVICE_DEL = 6,
};

struct hw_disc_visor {
	char version[HW_DISC_STR_MAX + 1];
	uint8_t relays[HW_DISC_MAX_RELAYS][HW_PK_LEN]; /* relay public keys */
	unsigned nrelays;
	char addrs[HW_DISC_MAX_ADDRS][HW_DISC_ADDR_MAX + 1]; /* TCP HOST:PORT */
	unsigned naddrs;
};

struct hw_disc_relay {
	char addr[HW_DISC_ADDR_MAX + 1]; /* HOST:PORT visors dial */
	uint32_t capacity;               /* sessions it accepts */
};

/* A transport between edges[0] and edges[1]; the signer must be one of
 * them. */
struct hw_disc_transport {
	uint8_t id[HW_DISC_TP_ID_LEN];
	char type[HW_DISC_STR_MAX + 1]; /* "tcp", "relay" */
	uint8_t edges[2][HW_PK_LEN];
	uint32_t rtt_us; /* 0: not known */
};

/* A public service (a SOCKS or VPN server) the signer offers. */
struct hw_disc_service {
	char type[HW_DISC_STR_MAX + 1]; /* "socks", "vpn" */
	uint16_t port;                  /* app port on the signer's visor */
};

struct hw_disc_entry {
	enum hw_disc_kind kind;
	uint8_t signer[HW_PK_LEN];
	uint64_t seq;
	uint64_t ts; /* unix time, seconds */
	union {
		struct hw_disc_visor visor;
		struct hw_disc_relay relay;
		struct hw_disc_transport tp;     /* TRANSPORT */
		uint8_t tp_id[HW_DISC_TP_ID_LEN]; /* TRANSPORT_DEL */
		struct hw_disc_service svc;      /* SERVICE, SERVICE_DEL (type) */
	} u;
	uint8_t sig[HW_SIG_LEN];
};

/* The canonical encoding of e without its signature into out (at least
 * HW_DISC_ENC_MAX bytes). Returns the length or a negative code when e
 * breaks a bound. */
int hw_disc_entry_encode(const struct hw_disc_entry *e, uint8_t *out,
			 size_t outlen);

/* Signs e (sets e->sig) with id, which must be e->signer's key. */
int hw_disc_entry_sign(struct hw_disc_entry *e, const struct hw_identity *id);

/* 0 when e->sig is e->signer's signature over the encoding, else
 * HW_EAUTH. */
int hw_disc_entry_verify(const struct hw_disc_entry *e);

/* The JSON form of e including signer, seq, ts and sig (new reference). */
json_t *hw_disc_entry_to_json(const struct hw_disc_entry *e);

/* Decodes the JSON form of an entry of kind (the endpoint decides the
 * kind). Returns 0, or a negative code with a message naming the field
 * ("relays[2]: not a 64-character hex public key"). Does not verify. */
int hw_disc_entry_from_json(struct hw_disc_entry *e, enum hw_disc_kind kind,
			    const json_t *j, char *err, size_t errlen);

#endif
