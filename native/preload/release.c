/* Release on close: see release.h. */
#include "release.h"

#include <stdio.h>

#include "dns_client.h"
#include "ledger.h"
#include "log.h"
#include "../core/capa_update.h"

#define UPDATE_MAX 600
#define HEADER 12
#define QR_BIT 0x80
#define OPCODE_UPDATE 5

struct update_match {
  uint16_t id;
  uint16_t rrtype;
  int rcode;
};

/* Our ID, QR=1, opcode UPDATE, a well-formed message (the source was checked by connect()). */
static int match_update(const uint8_t *msg, size_t len, void *ctx) {
  struct update_match *m = ctx;
  if (len < HEADER || ((msg[0] << 8) | msg[1]) != m->id || !(msg[2] & QR_BIT) || ((msg[2] >> 3) & 0xf) != OPCODE_UPDATE) {
    return 0;
  }
  if (capa_validate_message(msg, len, m->rrtype) != CAPA_OK) return -1;
  m->rcode = msg[3] & 0xf;
  return 1;
}

static const char *outcome(enum capa_dns_status status, int rcode) {
  static const char *const rcodes[] = {"released", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "refused (not owner)",
                                       "YXDOMAIN", "YXRRSET", "no such allocation"};
  if (status == CAPA_DNS_TIMEOUT) return "no reply yet";
  if (status != CAPA_DNS_OK) return "not sent";
  return rcode < (int)(sizeof rcodes / sizeof rcodes[0]) ? rcodes[rcode] : "unexpected rcode";
}

void capa_release(const struct capa_config *cfg, const struct capa_allocation *a, const char *why) {
  uint8_t msg[UPDATE_MAX];
  size_t len;
  char aog[CAPA_ADDRESS_TEXT_MAX];
  struct update_match m = {.id = capa_dns_random_id(), .rrtype = cfg->rrtype, .rcode = -1};
  enum capa_dns_status status = CAPA_DNS_UNREACHABLE;
  if (capa_release_encode(m.id, a->host, a->qname, &a->record, cfg->rrtype, msg, sizeof msg, &len) == CAPA_OK) {
    struct capa_exchange ex = {.server = &cfg->servers[a->server], .query = msg, .query_len = len, .id = m.id,
                               .until_ms = capa_now_ms() + (cfg->log_path[0] ? RELEASE_WAIT_MS : 0),
                               .match = match_update, .ctx = &m};
    status = capa_dns_exchange_udp(&ex);
  }
  capa_ledger_note(cfg, '-', a);
  capa_address_format(a->record.family, a->record.addr, aog, sizeof aog);
  capa_log_event(cfg, "release", "\"why\":\"%s\",\"qname\":\"%s\",\"aOG\":\"%s\",\"pA\":%u,\"outcome\":\"%s\"", why,
                 a->qname, aog, (unsigned)a->record.port, outcome(status, m.rcode));
}
