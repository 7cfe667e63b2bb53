/*
 * The CAPA round trip of the terminal: ask the servers for CAPA of `_<port>._<proto>.<host>`
 * (the bare host when the port is unknown, the reverse name for an IP literal) and judge the
 * reply by the DESIGN error table. Call only under the guard (real.h).
 */
#ifndef CAPA_PRELOAD_LOOKUP_H
#define CAPA_PRELOAD_LOOKUP_H

#include <stdint.h>

#include "../core/capa_codec.h"
#include "../core/capa_judge.h"
#include "config.h"

enum capa_outcome {
  CAPA_ALLOCATED, /* pin to alloc.record, connect to alloc.remote */
  CAPA_PLAIN,     /* the server does not know CAPA, or the destination needs no gateway: connect to addrs */
  CAPA_FAILED     /* never connect this destination unpinned */
};

struct capa_allocation {
  struct capa_record record; /* as received: aOG, pA, proto; a release repeats it */
  uint32_t ttl;              /* lease, seconds */
  struct capa_address remote;     /* aOB */
  uint16_t remote_port;      /* pB; 0 for a partial allocation (bare host) */
  int server;                /* index in the configuration of the GRM that allocated it */
  char host[CAPA_NAME_TEXT_MAX];  /* zone of the release */
  char qname[CAPA_NAME_TEXT_MAX]; /* owner of the CAPA RR */
};

struct capa_lookup {
  enum capa_outcome outcome;
  struct capa_allocation alloc; /* CAPA_ALLOCATED */
  int n_addrs;                  /* CAPA_PLAIN: the destination's addresses (at least one) */
  struct capa_address addrs[CAPA_MAX_ADDRS];
  enum capa_failure failure; /* CAPA_FAILED */
  char message[320];         /* CAPA_FAILED: what happened, for people */
};

/* What a failure becomes for the app. connect()/send: EHOSTUNREACH (no such name), EPERM
 * (refused), EADDRNOTAVAIL (pool exhausted or quota: the kernel's own "no free local port"),
 * ENETUNREACH (no working CAPA server, bad configuration). getaddrinfo: EAI_NONAME (no such
 * name), EAI_AGAIN (exhausted, quota, server failure, no answer: may pass), EAI_FAIL (refused,
 * malformed replies, bad configuration). gethostbyname*: HOST_NOT_FOUND, TRY_AGAIN, NO_RECOVERY
 * along the getaddrinfo lines. */
struct capa_failure_codes {
  int errno_value;
  int eai;
  int h_errno_value;
};
const struct capa_failure_codes *capa_failure_codes(enum capa_failure failure);

/* host: a name or an IP literal; port 0: unknown (bare host); proto: 6 or 17. */
void capa_lookup(const struct capa_config *cfg, const char *host, uint16_t port, int proto,
                 struct capa_lookup *out);

#endif
