/*
 * The reply -> outcome table of DESIGN "Errors" for one CAPA query: which replies are ours, and
 * what the terminal does with each (pin, fall back to A/AAAA, fail, ask the next server, retry
 * over TCP). Pure: no I/O, no globals. The preload library and the supervisor judge with it;
 * resolver/lib/resolve.ts is the TypeScript twin, and both pass test/vectors/outcomes.json.
 */
#ifndef CAPA_JUDGE_H
#define CAPA_JUDGE_H

#include <stddef.h>
#include <stdint.h>

#include "capa_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

enum capa_verdict {
  CAPA_VERDICT_CAPA = 0,     /* an allocation: pin to it */
  CAPA_VERDICT_FALLBACK = 1, /* the server does not know CAPA (or no gateway is needed): A/AAAA */
  CAPA_VERDICT_FAIL = 2,     /* final: never connect unpinned */
  CAPA_VERDICT_NEXT = 3,     /* this server failed: ask the next one, fail with `failure` if none */
  CAPA_VERDICT_TCP = 4,      /* truncated: ask the same server again over TCP */
  CAPA_VERDICT_IGNORE = 5,   /* not the reply to this query (ID, QR, opcode, question): keep waiting */
  CAPA_VERDICT_MALFORMED = 6 /* breaks the DNS rules: ignored like IGNORE, reported if nothing else comes */
};

/* Why a lookup failed; capa_failure_code names each as the TypeScript CapaError codes do. */
enum capa_failure {
  CAPA_FAIL_NOT_FOUND = 0, /* NXDOMAIN for the host, or no usable name */
  CAPA_FAIL_REFUSED,       /* REFUSED + EDE 18: this terminal may not use the gateway */
  CAPA_FAIL_EXHAUSTED,     /* SERVFAIL + EDE 49152 */
  CAPA_FAIL_QUOTA,         /* SERVFAIL + EDE 49153 */
  CAPA_FAIL_SERVER,        /* other server failures */
  CAPA_FAIL_NO_ANSWER,     /* every server silent or unreachable */
  CAPA_FAIL_MALFORMED,     /* only replies that break the rules */
  CAPA_FAIL_CONFIG         /* the configuration is unusable */
};

#define CAPA_EDE_PROHIBITED 18
#define CAPA_EDE_POOL_EXHAUSTED 49152
#define CAPA_EDE_QUOTA_EXCEEDED 49153

struct capa_judgement {
  enum capa_verdict verdict;
  enum capa_failure failure; /* FAIL and NEXT */
  const char *what;          /* FAIL and NEXT: a short phrase for people ("CAPA pool exhausted") */
};

/* "ERR_CAPA_NOT_FOUND", ... */
const char *capa_failure_code(enum capa_failure failure);

/*
 * Judges a parsed reply (capa_response_parse) to the CAPA query for port (0: the bare host) and
 * proto (6 or 17).
 */
void capa_judge_response(const struct capa_response *r, uint16_t port, int proto, struct capa_judgement *out);

/*
 * The whole table for one received message: TC=1 (on the header alone), mismatch, malformed,
 * then capa_judge_response. `r` receives the parsed reply when the verdict is CAPA, FALLBACK,
 * FAIL or NEXT.
 */
void capa_judge_reply(const uint8_t *msg, size_t len, uint16_t rrtype, uint16_t id, const char *qname, uint16_t port,
                      int proto, struct capa_response *r, struct capa_judgement *out);

#ifdef __cplusplus
}
#endif

#endif
