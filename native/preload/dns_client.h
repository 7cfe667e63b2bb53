/*
 * The library's DNS transport (RFC 5452, RFC 7766): one exchange with one server over a fresh
 * connected UDP socket (the kernel picks a random source port and drops other sources; ICMP
 * port-unreachable comes back as ECONNREFUSED), retried over TCP when the reply is truncated.
 * Call only under the guard (real.h): these sockets must not meet the hooks.
 */
#ifndef CAPA_PRELOAD_DNS_CLIENT_H
#define CAPA_PRELOAD_DNS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/capa_codec.h"
#include "../core/capa_judge.h"
#include "config.h"

enum capa_dns_status {
  CAPA_DNS_OK = 0,
  CAPA_DNS_TIMEOUT = 1,    /* nothing that answers the query arrived in time */
  CAPA_DNS_MALFORMED = 2,  /* only replies that broke the DNS rules arrived */
  CAPA_DNS_UNREACHABLE = 3 /* the socket failed: errno value in the exchange's `error` */
};

/* How a caller recognises its reply: 1 accept, 0 not ours (ignore), -1 malformed (ignore). */
typedef int (*capa_dns_match)(const uint8_t *msg, size_t len, void *ctx);

struct capa_exchange {
  const struct capa_server *server;
  const uint8_t *query;
  size_t query_len;
  uint16_t id;         /* the query's ID, to recognise a truncated reply by its header */
  int64_t until_ms;    /* capa_now_ms() value at which the exchange gives up */
  capa_dns_match match;
  void *ctx;
  int error;           /* errno of CAPA_DNS_UNREACHABLE */
  int tcp;             /* 1 when the answer came over TCP */
};

/* Sends the query over UDP, waits for a reply `match` accepts; TC=1 repeats it over TCP. */
enum capa_dns_status capa_dns_exchange(struct capa_exchange *ex);

/* Sends the query over UDP and waits at most until until_ms, for callers that only want to know
 * the outcome if it comes quickly (releases). */
enum capa_dns_status capa_dns_exchange_udp(struct capa_exchange *ex);

/* A random 16-bit query ID (getrandom). */
uint16_t capa_dns_random_id(void);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t capa_now_ms(void);

/* A reply to a CAPA, A or AAAA query, read by capa_response_parse (and, for A or AAAA, by
 * capa_answer_addresses); a CAPA reply is judged by capa_judge_reply as it arrives. */
struct capa_dns_answer {
  struct capa_response response;
  struct capa_judgement judgement; /* CAPA queries */
  char ede_text[128]; /* NUL-terminated copy of the EDE text */
  int tcp;
  int answer_count;   /* A/AAAA queries: addresses in the answer section (may exceed CAPA_MAX_ADDRS) */
  struct capa_address answers[CAPA_MAX_ADDRS];
};

/* What one query asks: (qname, qtype), RD, and for CAPA (qtype == rrtype) the destination port
 * (0: bare host) and protocol its reply is judged for. */
struct capa_question {
  const char *qname;
  uint16_t qtype;
  int rd;
  uint16_t rrtype;
  uint16_t port;
  int proto;
};

/* One QUERY to one server with a fresh random ID; error as in capa_exchange. */
enum capa_dns_status capa_dns_query(const struct capa_server *server, const struct capa_question *question,
                                    int64_t until_ms, struct capa_dns_answer *out, int *error);

#endif
