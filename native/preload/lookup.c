/* The CAPA round trip and the DESIGN error table: see lookup.h. */
#define _GNU_SOURCE
#include "lookup.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dns_client.h"
#include "ledger.h"
#include "release.h"

#define PER_TRY_MS 1000 /* one try of one server; CAPA_TIMEOUT_MS bounds the whole lookup */

enum { RCODE_NOERROR = 0, RCODE_NXDOMAIN = 3, RCODE_REFUSED = 5 };

/* How telling a failure is when every server failed: an answer beats malformed replies, which
 * beat unreachable servers, which beat silence. */
enum rank { RANK_NONE = -1, RANK_SILENT, RANK_UNREACHABLE, RANK_MALFORMED, RANK_ANSWERED };

/* A judge's word on one answer: final (stop asking) or ask the next server. */
enum { NEXT = 0, FINAL = 1 };

struct target {
  uint16_t port;
  int proto;
  int literal;      /* the name is an IP literal: aOB is that address */
  struct capa_address literal_ip;
  int64_t until_ms; /* the whole lookup's deadline (capa_now_ms) */
};

/* One round of questions: whom to ask, in order, and how to judge each answer into out. */
struct asking {
  struct capa_question question;
  int order[CAPA_MAX_SERVERS];
  int n_order;
  int (*judge)(const struct capa_config *cfg, const struct asking *a, int server, const struct capa_dns_answer *ans,
               struct capa_lookup *out);
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

static const char *address_type(uint16_t qtype) { return qtype == CAPA_TYPE_A ? "A" : "AAAA"; }

/* The A/AAAA column (resolve.ts judgeAddresses): addresses (maybe none) from NOERROR, NOT_FOUND
 * from NXDOMAIN, any other answer asks the next server. */
static int judge_addresses(const struct capa_config *cfg, const struct asking *a, int server,
                           const struct capa_dns_answer *ans, struct capa_lookup *out) {
  const struct capa_server *s = &cfg->servers[server];
  const char *type = address_type(a->question.qtype);
  char what[32];
  switch (ans->response.rcode) {
  case RCODE_NOERROR:
    out->outcome = CAPA_PLAIN;
    out->n_addrs = ans->answer_count < CAPA_MAX_ADDRS ? ans->answer_count : CAPA_MAX_ADDRS;
    for (int i = 0; i < out->n_addrs; i++) {
      out->addrs[i].family = ans->answers[i].family;
      memcpy(out->addrs[i].addr, ans->answers[i].addr, 16);
    }
    return FINAL;
  case RCODE_NXDOMAIN:
    fail_answer(out, CAPA_FAIL_NOT_FOUND, "name does not exist", s, ans, out->alloc.host);
    return FINAL;
  default:
    snprintf(what, sizeof what, "%s query %s", type, ans->response.rcode == RCODE_REFUSED ? "refused" : "failed");
    fail_answer(out, ans->response.rcode == RCODE_REFUSED ? CAPA_FAIL_REFUSED : CAPA_FAIL_SERVER, what, s, ans,
                out->alloc.host);
    return NEXT;
  }
}

/* The CAPA column: capa_judge_reply already judged the answer as it arrived (dns_client.c). */
static int judge_capa(const struct capa_config *cfg, const struct asking *a, int server,
                      const struct capa_dns_answer *ans, struct capa_lookup *out) {
  const struct capa_judgement *j = &ans->judgement;
  const struct capa_response *r = &ans->response;
  (void)a;
  switch (j->verdict) {
  case CAPA_VERDICT_CAPA:
  case CAPA_VERDICT_FALLBACK:
    /* The A/AAAA sent along: aOB of an allocation, the addresses of a fallback. */
    out->outcome = j->verdict == CAPA_VERDICT_CAPA ? CAPA_ALLOCATED : CAPA_PLAIN;
    out->alloc.record = r->capa;
    out->alloc.ttl = r->capa_ttl;
    out->alloc.server = server;
    out->n_addrs = r->addr_count < CAPA_MAX_ADDRS ? r->addr_count : CAPA_MAX_ADDRS;
    for (int i = 0; i < out->n_addrs; i++) {
      out->addrs[i].family = r->addrs[i].family;
      memcpy(out->addrs[i].addr, r->addrs[i].addr, 16);
    }
    return FINAL;
  default:
    fail_answer(out, j->failure, j->what, &cfg->servers[server], ans, out->alloc.qname);
    return j->verdict == CAPA_VERDICT_FAIL ? FINAL : NEXT;
  }
}

/* Records a transport failure when it is the most telling so far; returns 1 to try the server
 * again in the next round (silence), 0 not to (unreachable). */
static int transport_failure(const struct capa_config *cfg, const char *qname, int server, enum capa_dns_status status,
                             int error, enum rank *best, struct capa_lookup *out) {
  const char *where = cfg->servers[server].text;
  char why[160];
  enum rank rank = status == CAPA_DNS_MALFORMED ? RANK_MALFORMED
                 : status == CAPA_DNS_UNREACHABLE ? RANK_UNREACHABLE : RANK_SILENT;
  if (rank > *best) {
    *best = rank;
    if (rank == RANK_MALFORMED) {
      fail(out, CAPA_FAIL_MALFORMED, "only malformed replies from %s for %s", where, qname);
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

/* The servers of `a` in order, round after round, until a final verdict or the deadline (as the
 * TypeScript resolver's askServers does). out keeps the most telling failure. */
static void ask_servers(const struct capa_config *cfg, const struct target *t, const struct asking *a,
                        struct capa_lookup *out) {
  int again[CAPA_MAX_SERVERS], n_again = a->n_order;
  enum rank best = RANK_NONE;
  memcpy(again, a->order, sizeof again);
  while (n_again > 0 && capa_now_ms() < t->until_ms) {
    int candidates[CAPA_MAX_SERVERS], n = n_again;
    memcpy(candidates, again, sizeof candidates);
    n_again = 0;
    for (int i = 0; i < n && capa_now_ms() < t->until_ms; i++) {
      struct capa_dns_answer ans;
      int error = 0, server = candidates[i];
      enum capa_dns_status status = capa_dns_query(&cfg->servers[server], &a->question, try_until(t->until_ms), &ans, &error);
      if (status != CAPA_DNS_OK) {
        if (transport_failure(cfg, a->question.qname, server, status, error, &best, out)) again[n_again++] = server;
        continue;
      }
      struct capa_lookup candidate = *out;
      int final = a->judge(cfg, a, server, &ans, &candidate);
      if (final || best < RANK_ANSWERED) *out = candidate;
      if (final) return;
      best = RANK_ANSWERED;
    }
  }
  if (best == RANK_NONE) {
    fail(out, CAPA_FAIL_NO_ANSWER, "no CAPA server could be asked for %s within %d ms", a->question.qname,
         cfg->timeout_ms);
  }
}

/* Asks the A or AAAA of the host: the servers from `first` on, then those before it. */
static void ask_addresses(const struct capa_config *cfg, const struct target *t, uint16_t qtype, int first, int only_first,
                          struct capa_lookup *out) {
  struct asking a = {.question = {.qname = out->alloc.host, .qtype = qtype, .rd = 1, .rrtype = cfg->rrtype},
                     .judge = judge_addresses};
  a.n_order = only_first ? 1 : cfg->n_servers;
  for (int i = 0; i < a.n_order; i++) a.order[i] = (first + i) % cfg->n_servers;
  ask_servers(cfg, t, &a, out);
}

/* aOB when the CAPA answer carried none: the A (AAAA) of the host, of aOG's family, asked of the
 * server that made the allocation, with RD=1 (as resolve.ts remoteAddress does). 0 or -1 (failed). */
static int ask_remote(const struct capa_config *cfg, const struct target *t, struct capa_lookup *out) {
  struct capa_lookup l = *out;
  struct capa_allocation *a = &out->alloc;
  uint16_t qtype = a->record.family == 4 ? CAPA_TYPE_A : CAPA_TYPE_AAAA;
  ask_addresses(cfg, t, qtype, a->server, 1, &l);
  if (l.outcome == CAPA_FAILED) {
    fail(out, l.failure, "%s", l.message);
    return -1;
  }
  if (l.n_addrs == 0) {
    fail(out, CAPA_FAIL_NOT_FOUND, "%s has no %s record (asked %s) to go with its IPv%d CAPA allocation", a->host,
         address_type(qtype), cfg->servers[a->server].text, a->record.family);
    return -1;
  }
  a->remote = l.addrs[0];
  return 0;
}

/* aOB: the literal itself, else the A/AAAA owned by the host in ADDITIONAL, of aOG's family, else
 * asked for. 0 or -1 (failed). */
static int remote_address(const struct capa_config *cfg, const struct target *t, const struct capa_lookup *capa,
                          struct capa_lookup *out) {
  struct capa_allocation *a = &out->alloc;
  if (t->literal) {
    a->remote = t->literal_ip;
    if (t->literal_ip.family == a->record.family) return 0;
    fail(out, CAPA_FAIL_MALFORMED, "CAPA answer for %s gives an IPv%d source for an IPv%d destination", a->qname,
         a->record.family, t->literal_ip.family);
    return -1;
  }
  for (int i = 0; i < capa->n_addrs; i++) {
    if (capa->addrs[i].family != a->record.family) continue;
    a->remote = capa->addrs[i];
    return 0;
  }
  return ask_remote(cfg, t, out);
}

/* The fallback's addresses (resolve.ts plainAddresses): the literal, else the A/AAAA the server
 * sent along, else A and AAAA asked of the answering server first, then the others. */
static void fallback_addresses(const struct capa_config *cfg, const struct target *t, struct capa_lookup *out) {
  static const uint16_t types[] = {CAPA_TYPE_A, CAPA_TYPE_AAAA};
  struct capa_lookup found[2];
  int n = 0;
  if (t->literal) {
    out->n_addrs = 1;
    out->addrs[0] = t->literal_ip;
    return;
  }
  if (out->n_addrs > 0) return;
  for (int i = 0; i < 2; i++) {
    found[i] = *out;
    ask_addresses(cfg, t, types[i], out->alloc.server, 0, &found[i]);
    for (int k = 0; found[i].outcome == CAPA_PLAIN && k < found[i].n_addrs && n < CAPA_MAX_ADDRS; k++) {
      out->addrs[n++] = found[i].addrs[k];
    }
  }
  out->n_addrs = n;
  if (n > 0) return;
  for (int i = 0; i < 2; i++) {
    if (found[i].outcome == CAPA_FAILED) {
      fail(out, found[i].failure, "%s", found[i].message);
      return;
    }
  }
  fail(out, CAPA_FAIL_NOT_FOUND, "%s has no A or AAAA record (asked %s)", out->alloc.host,
       cfg->servers[out->alloc.server].text);
}

void capa_lookup(const struct capa_config *cfg, const char *host, uint16_t port, int proto,
                 struct capa_lookup *out) {
  struct target t = {.port = port, .proto = proto, .until_ms = capa_now_ms() + cfg->timeout_ms};
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
  struct asking capa = {.question = {.qname = out->alloc.qname, .qtype = cfg->rrtype, .rrtype = cfg->rrtype, .port = port,
                                     .proto = proto},
                        .n_order = cfg->n_servers, .judge = judge_capa};
  for (int i = 0; i < cfg->n_servers; i++) capa.order[i] = i;
  ask_servers(cfg, &t, &capa, out);
  if (out->outcome == CAPA_PLAIN) {
    fallback_addresses(cfg, &t, out);
  } else if (out->outcome == CAPA_ALLOCATED) {
    struct capa_lookup answer = *out;
    capa_ledger_note(cfg, '+', &out->alloc);
    out->alloc.remote_port = port;
    out->n_addrs = 0;
    if (remote_address(cfg, &t, &answer, out) < 0) {
      /* Made but of no use without a destination: hand it back rather than wait for the lease. */
      capa_release(cfg, &answer.alloc, "no destination address");
    }
  }
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
