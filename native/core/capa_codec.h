/*
 * CAPA wire codec in C: the same contract as resolver/lib (rdata.ts, presentation.ts, qname.ts,
 * validate.ts, message.ts encodeQuery), checked against test/vectors/capa.json by
 * test/native/codec.test.ts. C99, no globals, no allocation; every function returns CAPA_OK or a
 * negative enum capa_status.
 */
#ifndef CAPA_CODEC_H
#define CAPA_CODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum capa_status {
  CAPA_OK = 0,
  CAPA_EMALFORMED = -1, /* wire bytes break the DNS or CAPA rules */
  CAPA_EINVAL = -2,     /* bad argument or presentation text */
  CAPA_ENOSPC = -3,     /* output buffer too small */
  CAPA_EMISMATCH = -4   /* a well-formed reply that does not answer our query (ID, QR, question) */
};

#define CAPA_DEFAULT_RRTYPE 65280
#define CAPA_TYPE_A 1
#define CAPA_TYPE_AAAA 28
#define CAPA_EDNS_PAYLOAD 1232
#define CAPA_RDLENGTH_V4 8
#define CAPA_RDLENGTH_V6 20
/* Longest name text without the trailing dot (a 255-octet wire name), plus the NUL. */
#define CAPA_NAME_TEXT_MAX 254
/* Longest `flags proto port address` text, plus the NUL. */
#define CAPA_RECORD_TEXT_MAX 64
/* Longest address text (IPv6 with embedded IPv4 is shorter than this), plus the NUL. */
#define CAPA_ADDRESS_TEXT_MAX 46
/* A/AAAA additionals kept by capa_response_parse; more are counted but not stored. */
#define CAPA_MAX_ADDRS 8

/* family is the IP version, 4 or 6, which also fixes the RDLENGTH (8 or 20). */
struct capa_record {
  uint8_t flags; /* send 0, ignore unknown bits */
  uint8_t proto; /* IANA protocol number: 6 TCP, 17 UDP, 0 any */
  uint16_t port; /* host byte order */
  int family;
  uint8_t addr[16]; /* network byte order; first 4 octets used for family 4 */
};

struct capa_address {
  int family; /* 4 or 6 */
  uint8_t addr[16];
};

struct capa_response {
  int rcode;            /* header RCODE, with the OPT extended bits above bit 3 */
  int aa, tc;           /* header flags; tc=1: retry over TCP */
  int has_opt;          /* 1 when the additional section holds an OPT RR (the first one is read) */
  int has_capa;         /* 1 when the answer section holds a CAPA RR owned by the QNAME */
  int foreign_capa;     /* CAPA RRs in the answer section owned by another name */
  struct capa_record capa;
  uint32_t capa_ttl;    /* lease, seconds */
  int addr_count;       /* A/AAAA additionals owned by the host part (may exceed CAPA_MAX_ADDRS) */
  struct capa_address addrs[CAPA_MAX_ADDRS];
  int ede;              /* first Extended DNS Error info-code, -1 when none */
  size_t ede_text_off;  /* EDE text: offset into the message and length (UTF-8, not NUL-ended) */
  size_t ede_text_len;
};

/* RDATA without the RDLENGTH prefix: 8 or 20 octets. */
int capa_rdata_encode(const struct capa_record *rec, uint8_t *buf, size_t len, size_t *written);
/* Exactly rdlen octets; any length but 8 or 20 is CAPA_EMALFORMED. */
int capa_rdata_decode(const uint8_t *rdata, size_t rdlen, struct capa_record *out);

/* `flags proto port address` (RFC 5952 canonical address), NUL-terminated. */
int capa_record_format(const struct capa_record *rec, char *out, size_t len);
/* The CAPA form above or the RFC 3597 generic form `\# <len> <hex...>`. */
int capa_record_parse(const char *text, struct capa_record *out);

/* Dotted-quad IPv4 (no leading zeros) or IPv6 text (no zone) to family + bytes. */
int capa_address_parse(const char *text, int *family, uint8_t addr[16]);
/* IPv4 dotted quad or RFC 5952 IPv6 (lower case, longest zero run as "::"). */
int capa_address_format(int family, const uint8_t *addr, char *out, size_t len);

/*
 * Strict whole-message check before any field is trusted (the rules of resolver/codec/validate.ts):
 * counts, labels <= 63, names <= 255, compression pointers strictly backwards and >= 12,
 * every RDLENGTH inside the message, typed RDATA framed exactly, no trailing octets.
 */
int capa_validate_message(const uint8_t *msg, size_t len, uint16_t rrtype);

/*
 * `_<port>._<tcp|udp>.<host>`; port 0 builds the bare host (destination port unknown).
 * proto is 6 (tcp) or 17 (udp). IP literals become their reverse name. Lower case, no trailing dot.
 */
int capa_qname_build(const char *host, int port, int proto, char *out, size_t len);

/* Same bytes as resolver/codec/message.ts encodeQuery: header, one IN question, OPT(1232) if edns. */
int capa_query_encode(uint16_t id, const char *qname, uint16_t qtype, int rd, int edns,
                      uint8_t *buf, size_t len, size_t *written);

/*
 * Validates a reply, checks it answers (expected_id, qname, qtype, IN) with QR=1, and reads the
 * rcode, the first CAPA answer owned by qname, the A/AAAA additionals owned by the host part of
 * qname, and the first EDE. CAPA_EMISMATCH when it is not the reply to this query.
 */
int capa_response_parse(const uint8_t *msg, size_t len, uint16_t rrtype, uint16_t expected_id,
                        const char *qname, uint16_t qtype, struct capa_response *out);

/*
 * The answer to an A or AAAA query (qtype CAPA_TYPE_A or CAPA_TYPE_AAAA), read as
 * resolver/lib/resolve.ts reads it: the records of qtype in the answer section owned by name, or
 * by the end of a CNAME chain from it (at most 8 hops). Validates msg but not its question (check
 * that with capa_response_parse). Stores the first CAPA_MAX_ADDRS in out and returns how many
 * there are (0 when none), or a negative capa_status.
 */
int capa_answer_addresses(const uint8_t *msg, size_t len, uint16_t rrtype, const char *name, uint16_t qtype,
                          struct capa_address out[CAPA_MAX_ADDRS]);

#ifdef __cplusplus
}
#endif

#endif
