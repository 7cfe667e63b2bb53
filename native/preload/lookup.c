/* The CAPA round trip and the DESIGN error table: see lookup.h. */
#define _GNU_SOURCE
#include "lookup.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dns_client.h"
#include "release.h"

#define PER_TRY_MS 1000 /* one try of one server; CAPA_TIMEOUT_MS bounds the whole lookup */

enum { RCODE_NOERROR = 0, RCODE_FORMERR = 1, RCODE_SERVFAIL = 2, RCODE_NXDOMAIN = 3, RCODE_NOTIMP = 4,
       RCODE_REFUSED = 5 };
enum { EDE_POOL_EXHAUSTED = 49152, EDE_QUOTA_EXCEEDED = 49153 };

/* How telling a failure is when every server failed: an answer beats malformed replies, which
 * beat unreachable servers, which beat silence. */
enum rank { RANK_NONE = -1, RANK_SILENT, RANK_UNREACHABLE, RANK_MALFORMED, RANK_ANSWERED };

struct target {
  const char *name; /* as the caller gave it */
  uint16_t port;
  int proto;
  int literal;      /* name is an IP literal: aOB is that address */
  struct capa_ip literal_ip;
  int64_t until_ms; /* the whole lookup's deadline (capa_now_ms) */
};

static const char *rcode_name(int rcode) {
  static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"};
  return rcode >= 0 && rcode < (int)(sizeof names / sizeof names[0]) ? names[rcode] : "unexpected rcode";
}

__attribute__((format(printf, 3, 4)))
static void fail(struct capa_lookup *out, enum capa_failure failure, const char *fmt, ...) {
  va_list ap;
  out->outcome = CAPA_FAILED;
  out->failure = failure;
  va_start(ap, fmt);
  vsnprintf(out->message, sizeof out->message, fmt, ap);
  va_end(ap);
}

/* "<what> (SERVFAIL from 127.0.0.1:5300, EDE 49152: CAPA pool exhausted) for <name>" */
static void fail_answer(struct capa_lookup *out, enum capa_failure failure, const char *what,
                        const struct capa_server *server, const struct capa_dns_answer *ans, const char *name) {
  char detail[200] = "";
  if (ans->response.ede >= 0) {
    snprintf(detail, sizeof detail, ", EDE %d%s%s", ans->response.ede, ans->ede_text[0] ? ": " : "", ans->ede_text);
  }
  char tail[260];
  snprintf(tail, sizeof tail, "(%s from %s%s)", rcode_name(ans->response.rcode), server->text, detail);
  fail(out, failure, "%s %s for %s", what, tail, name);
}

/* One try's deadline: PER_TRY_MS from now, within the lookup's. */
static int64_t try_until(int64_t until_ms) {
  int64_t now = capa_now_ms();
  return now + PER_TRY_MS < until_ms ? now + PER_TRY_MS : until_ms;
}

/* Judges the reply to the A/AAAA query of ask_address: 0 with aOB set, or -1 (failed). */
static int judge_address(const struct capa_server *s, const char *type, const struct capa_dns_answer *ans,
                         struct capa_lookup *out) {
  struct capa_allocation *a = &out->alloc;
  int rcode = ans->response.rcode;
  char what[32];
  if (rcode == RCODE_NOERROR && ans->answer_count > 0) {
    a->remote.family = ans->answers[0].family;
    memcpy(a->remote.addr, ans->answers[0].addr, 16);
    return 0;
  }
  if (rcode == RCODE_NOERROR) {
    fail(out, CAPA_FAIL_NOT_FOUND, "%s has no %s record (asked %s) to go with its IPv%d CAPA allocation", a->host, type,
         s->text, a->record.family);
  } else if (rcode == RCODE_NXDOMAIN) {
    fail_answer(out, CAPA_FAIL_NOT_FOUND, "name does not exist", s, ans, a->host);
  } else {
    snprintf(what, sizeof what, "%s query %s", type, rcode == RCODE_REFUSED ? "refused" : "failed");
    fail_answer(out, rcode == RCODE_REFUSED ? CAPA_FAIL_REFUSED : CAPA_FAIL_SERVER, what, s, ans, a->host);
  }
  return -1;
}

/* aOB when the CAPA answer carried none: the A (AAAA) of the host, of aOG's family, asked of the
 * server that made the allocation, with RD=1 (as resolve.ts remoteAddress does). 0 or -1 (failed). */
static int ask_address(const struct capa_config *cfg, const struct target *t, struct capa_lookup *out) {
  struct capa_allocation *a = &out->alloc;
  const struct capa_server *s = &cfg->servers[a->server];
  const char *type = a->record.family == 4 ? "A" : "AAAA";
  struct capa_dns_answer ans;
  enum capa_dns_status status = CAPA_DNS_TIMEOUT;
  int error = 0;
  while (status == CAPA_DNS_TIMEOUT && capa_now_ms() < t->until_ms) {
    status = capa_dns_query(s, a->host, a->record.family == 4 ? CAPA_TYPE_A : CAPA_TYPE_AAAA, 1, cfg->rrtype,
                            try_until(t->until_ms), &ans, &error);
  }
  if (status == CAPA_DNS_OK) return judge_address(s, type, &ans, out);
  if (status == CAPA_DNS_MALFORMED) {
    fail(out, CAPA_FAIL_MALFORMED, "only malformed replies from %s to the %s query for %s", s->text, type, a->host);
  } else {
    fail(out, CAPA_FAIL_NO_ANSWER, "no answer from %s to the %s query for %s (%s)", s->text, type, a->host,
         status == CAPA_DNS_UNREACHABLE ? strerror(error) : "timed out");
  }
  return -1;
}

/* aOB: the literal itself, else the A/AAAA owned by the host in ADDITIONAL, of aOG's family, else
 * asked for. 0 or -1 (failed). */
static int remote_address(const struct capa_config *cfg, const struct target *t, const struct capa_response *r,
                          struct capa_lookup *out) {
  struct capa_allocation *a = &out->alloc;
  if (t->literal) {
    a->remote = t->literal_ip;
    if (t->literal_ip.family == r->capa.family) return 0;
    fail(out, CAPA_FAIL_MALFORMED, "CAPA answer for %s gives an IPv%d source for an IPv%d destination", a->qname,
         r->capa.family, t->literal_ip.family);
    return -1;
  }
  int n = r->addr_count < CAPA_MAX_ADDRS ? r->addr_count : CAPA_MAX_ADDRS;
  for (int i = 0; i < n; i++) {
    if (r->addrs[i].family != r->capa.family) continue;
    a->remote.family = r->addrs[i].family;
    memcpy(a->remote.addr, r->addrs[i].addr, 16);
    return 0;
  }
  return ask_address(cfg, t, out);
}

static void judge_allocation(const struct capa_config *cfg, const struct target *t, int server,
                             const struct capa_dns_answer *ans, struct capa_lookup *out) {
  const struct capa_response *r = &ans->response;
  struct capa_allocation *a = &out->alloc;
  /* A bare host names no protocol, so the server picks one; otherwise it must be ours (or any). */
  if (t->port != 0 && r->capa.proto != t->proto && r->capa.proto != 0) {
    fail(out, CAPA_FAIL_MALFORMED, "CAPA answer for %s is for another protocol", a->qname);
    return;
  }
  if (r->capa.port == 0) {
    fail(out, CAPA_FAIL_MALFORMED, "CAPA answer for %s allocates port 0", a->qname);
    return;
  }
  a->record = r->capa;
  a->ttl = r->capa_ttl;
  a->remote_port = t->port;
  a->server = server;
  if (remote_address(cfg, t, r, out) == 0) {
    out->outcome = CAPA_ALLOCATED;
  } else {
    /* Made but of no use without a destination: hand it back rather than wait for the lease. */
    capa_release(cfg, a, "no destination address");
  }
}

static void plain(const struct capa_response *r, struct capa_lookup *out) {
  out->outcome = CAPA_PLAIN;
  out->n_addrs = r->addr_count < CAPA_MAX_ADDRS ? r->addr_count : CAPA_MAX_ADDRS;
  for (int i = 0; i < out->n_addrs; i++) {
    out->addrs[i].family = r->addrs[i].family;
    memcpy(out->addrs[i].addr, r->addrs[i].addr, 16);
  }
}

/* The CAPA column of the DESIGN error table: 1 when out is final, 0 to ask the next server. */
static int judge(const struct capa_config *cfg, const struct target *t, int server,
                            const struct capa_dns_answer *ans, struct capa_lookup *out) {
  const struct capa_response *r = &ans->response;
  const struct capa_server *s = &cfg->servers[server];
  enum { NEXT = 0, FINAL = 1 };
  switch (r->rcode) {
  case RCODE_NOERROR:
    if (r->has_capa) judge_allocation(cfg, t, server, ans, out);
    else plain(r, out);
    return FINAL;
  case RCODE_FORMERR:
  case RCODE_NOTIMP:
    plain(r, out);
    out->n_addrs = 0;
    return FINAL;
  case RCODE_NXDOMAIN:
    fail_answer(out, CAPA_FAIL_NOT_FOUND, "name does not exist", s, ans, out->alloc.qname);
    return FINAL;
  case RCODE_REFUSED:
    fail_answer(out, CAPA_FAIL_REFUSED, "CAPA refused", s, ans, out->alloc.qname);
    return FINAL;
  case RCODE_SERVFAIL:
    if (r->ede == EDE_QUOTA_EXCEEDED) {
      fail_answer(out, CAPA_FAIL_QUOTA, "this terminal is over its CAPA quota", s, ans, out->alloc.qname);
      return FINAL;
    }
    if (r->ede == EDE_POOL_EXHAUSTED) {
      fail_answer(out, CAPA_FAIL_EXHAUSTED, "CAPA pool exhausted", s, ans, out->alloc.qname);
      return NEXT;
    }
    break;
  default:
    break;
  }
  fail_answer(out, CAPA_FAIL_SERVER, "CAPA server failure", s, ans, out->alloc.qname);
  return NEXT;
}

/* Records a transport failure when it is the most telling so far; returns 1 to try the server
 * again in the next round (silence), 0 not to (unreachable). */
static int transport_failure(const struct capa_config *cfg, int server, enum capa_dns_status status,
                             int error, enum rank *best, struct capa_lookup *out) {
  const char *where = cfg->servers[server].text;
  char why[160];
  enum rank rank = status == CAPA_DNS_MALFORMED ? RANK_MALFORMED
                 : status == CAPA_DNS_UNREACHABLE ? RANK_UNREACHABLE : RANK_SILENT;
  if (rank > *best) {
    *best = rank;
    if (rank == RANK_MALFORMED) {
      fail(out, CAPA_FAIL_MALFORMED, "only malformed replies from CAPA server %s for %s", where, out->alloc.qname);
    } else if (rank == RANK_UNREACHABLE) {
      snprintf(why, sizeof why, "(%s%s)", strerror(error),
               error == ECONNREFUSED ? ": nothing listens on that port" : "");
      fail(out, CAPA_FAIL_NO_ANSWER, "no CAPA server answered at %s %s", where, why);
    } else {
      snprintf(why, sizeof why, "within %d ms", cfg->timeout_ms);
      fail(out, CAPA_FAIL_NO_ANSWER, "no CAPA server answered at %s %s", where, why);
    }
  }
  return rank != RANK_UNREACHABLE;
}

/* Servers in order, round after round, until a final verdict or the deadline (as the TypeScript
 * resolver's askServers does). */
static void ask_servers(const struct capa_config *cfg, const struct target *t, struct capa_lookup *out) {
  int64_t until = t->until_ms;
  int again[CAPA_MAX_SERVERS], n_again = cfg->n_servers;
  enum rank best = RANK_NONE;
  for (int i = 0; i < n_again; i++) again[i] = i;
  while (n_again > 0 && capa_now_ms() < until) {
    int candidates[CAPA_MAX_SERVERS], n = n_again;
    memcpy(candidates, again, sizeof candidates);
    n_again = 0;
    for (int i = 0; i < n && capa_now_ms() < until; i++) {
      struct capa_dns_answer ans;
      int error = 0, server = candidates[i];
      enum capa_dns_status status = capa_dns_query(&cfg->servers[server], out->alloc.qname, cfg->rrtype, 0,
                                                   cfg->rrtype, try_until(until), &ans, &error);
      if (status != CAPA_DNS_OK) {
        if (transport_failure(cfg, server, status, error, &best, out)) again[n_again++] = server;
        continue;
      }
      struct capa_lookup candidate = *out;
      int final = judge(cfg, t, server, &ans, &candidate);
      if (final || best < RANK_ANSWERED) *out = candidate;
      if (final) return;
      best = RANK_ANSWERED;
    }
  }
  if (best == RANK_NONE) {
    fail(out, CAPA_FAIL_NO_ANSWER, "no CAPA server could be asked for %s within %d ms", out->alloc.qname,
         cfg->timeout_ms);
  }
}

void capa_lookup(const struct capa_config *cfg, const char *host, uint16_t port, int proto,
                 struct capa_lookup *out) {
  struct target t = {.name = host, .port = port, .proto = proto, .until_ms = capa_now_ms() + cfg->timeout_ms};
  memset(out, 0, sizeof *out);
  if (cfg->error[0] != '\0') {
    fail(out, CAPA_FAIL_CONFIG, "%s", cfg->error);
    return;
  }
  if (capa_qname_build(host, port, proto, out->alloc.qname, sizeof out->alloc.qname) != CAPA_OK ||
      capa_qname_build(host, 0, proto, out->alloc.host, sizeof out->alloc.host) != CAPA_OK) {
    fail(out, CAPA_FAIL_NOT_FOUND, "\"%s\" is not a name CAPA can ask for", host);
    return;
  }
  t.literal = capa_address_parse(host, &t.literal_ip.family, t.literal_ip.addr) == CAPA_OK;
  ask_servers(cfg, &t, out);
}

const struct capa_failure_codes *capa_failure_codes(enum capa_failure failure) {
  static const struct capa_failure_codes codes[] = {
      [CAPA_FAIL_NOT_FOUND] = {EHOSTUNREACH, EAI_NONAME, HOST_NOT_FOUND},
      [CAPA_FAIL_REFUSED] = {EPERM, EAI_FAIL, NO_RECOVERY},
      [CAPA_FAIL_EXHAUSTED] = {EADDRNOTAVAIL, EAI_AGAIN, TRY_AGAIN},
      [CAPA_FAIL_QUOTA] = {EADDRNOTAVAIL, EAI_AGAIN, TRY_AGAIN},
      [CAPA_FAIL_SERVER] = {ENETUNREACH, EAI_AGAIN, TRY_AGAIN},
      [CAPA_FAIL_NO_ANSWER] = {ENETUNREACH, EAI_AGAIN, TRY_AGAIN},
      [CAPA_FAIL_MALFORMED] = {ENETUNREACH, EAI_FAIL, NO_RECOVERY},
      [CAPA_FAIL_CONFIG] = {ENETUNREACH, EAI_FAIL, NO_RECOVERY},
  };
  return &codes[failure];
}
