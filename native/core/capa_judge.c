/* The CAPA outcome table: see capa_judge.h. */
#include "capa_judge.h"

#include <string.h>

#define HEADER 12
#define QR_BIT 0x80 /* in the third header octet */
#define TC_BIT 0x02 /* in the third header octet */

enum { RCODE_NOERROR = 0, RCODE_FORMERR = 1, RCODE_SERVFAIL = 2, RCODE_NXDOMAIN = 3, RCODE_NOTIMP = 4,
       RCODE_REFUSED = 5 };

const char *capa_failure_code(enum capa_failure failure) {
  static const char *const codes[] = {
      [CAPA_FAIL_NOT_FOUND] = "ERR_CAPA_NOT_FOUND",       [CAPA_FAIL_REFUSED] = "ERR_CAPA_REFUSED",
      [CAPA_FAIL_EXHAUSTED] = "ERR_CAPA_EXHAUSTED",       [CAPA_FAIL_QUOTA] = "ERR_CAPA_QUOTA",
      [CAPA_FAIL_SERVER] = "ERR_CAPA_SERVER_FAILURE",     [CAPA_FAIL_NO_ANSWER] = "ERR_CAPA_TIMEOUT",
      [CAPA_FAIL_MALFORMED] = "ERR_CAPA_MALFORMED",       [CAPA_FAIL_CONFIG] = "ERR_CAPA_CONFIG",
  };
  return (unsigned)failure < sizeof codes / sizeof codes[0] ? codes[failure] : "ERR_CAPA_SERVER_FAILURE";
}

static void verdict(struct capa_judgement *out, enum capa_verdict v, enum capa_failure failure, const char *what) {
  out->verdict = v;
  out->failure = failure;
  out->what = what;
}

static void judge_allocation(const struct capa_response *r, uint16_t port, int proto, struct capa_judgement *out) {
  /* A bare host names no protocol, so the server picks one; otherwise it must be ours (or any). */
  if (port != 0 && r->capa.proto != proto && r->capa.proto != 0) {
    verdict(out, CAPA_VERDICT_FAIL, CAPA_FAIL_MALFORMED, "CAPA answer is for another protocol");
  } else if (r->capa.port == 0) {
    verdict(out, CAPA_VERDICT_FAIL, CAPA_FAIL_MALFORMED, "CAPA answer allocates port 0");
  } else {
    verdict(out, CAPA_VERDICT_CAPA, CAPA_FAIL_NOT_FOUND, NULL);
  }
}

void capa_judge_response(const struct capa_response *r, uint16_t port, int proto, struct capa_judgement *out) {
  switch (r->rcode) {
  case RCODE_NOERROR:
    if (r->has_capa) judge_allocation(r, port, proto, out);
    else if (r->foreign_capa) verdict(out, CAPA_VERDICT_FAIL, CAPA_FAIL_MALFORMED, "CAPA answer is owned by another name");
    else verdict(out, CAPA_VERDICT_FALLBACK, CAPA_FAIL_NOT_FOUND, NULL); /* NODATA */
    return;
  case RCODE_FORMERR:
  case RCODE_NOTIMP:
    verdict(out, CAPA_VERDICT_FALLBACK, CAPA_FAIL_NOT_FOUND, NULL);
    return;
  case RCODE_NXDOMAIN:
    /* A plain DNS server has no `_<port>._<proto>` names, so its NXDOMAIN says nothing of <host>:
     * the fallback's own A/AAAA lookup decides. For the bare host it is the host itself. */
    if (port != 0) verdict(out, CAPA_VERDICT_FALLBACK, CAPA_FAIL_NOT_FOUND, NULL);
    else verdict(out, CAPA_VERDICT_FAIL, CAPA_FAIL_NOT_FOUND, "name does not exist");
    return;
  case RCODE_REFUSED:
    /* Only a GRM's refusal (EDE 18) is final; any other REFUSED is a server that is not a GRM. */
    if (r->ede == CAPA_EDE_PROHIBITED) verdict(out, CAPA_VERDICT_FAIL, CAPA_FAIL_REFUSED, "CAPA refused");
    else verdict(out, CAPA_VERDICT_FALLBACK, CAPA_FAIL_NOT_FOUND, NULL);
    return;
  case RCODE_SERVFAIL:
    if (r->ede == CAPA_EDE_QUOTA_EXCEEDED) {
      verdict(out, CAPA_VERDICT_FAIL, CAPA_FAIL_QUOTA, "this terminal is over its CAPA quota");
    } else if (r->ede == CAPA_EDE_POOL_EXHAUSTED) {
      /* The EDE text says why: a full pool, or none of the destination's family. */
      verdict(out, CAPA_VERDICT_NEXT, CAPA_FAIL_EXHAUSTED, "no CAPA allocation");
    } else {
      verdict(out, CAPA_VERDICT_NEXT, CAPA_FAIL_SERVER, "CAPA server failure");
    }
    return;
  default:
    verdict(out, CAPA_VERDICT_NEXT, CAPA_FAIL_SERVER, "unexpected answer");
  }
}

void capa_judge_reply(const uint8_t *msg, size_t len, uint16_t rrtype, uint16_t id, const char *qname, uint16_t port,
                      int proto, struct capa_response *r, struct capa_judgement *out) {
  /* A truncated reply is judged on its header alone: it may be cut anywhere, and a spoofed TC
   * only costs the retry over TCP, where spoofing is much harder. */
  if (len >= HEADER && ((msg[0] << 8) | msg[1]) == id && (msg[2] & QR_BIT) && (msg[2] & TC_BIT)) {
    verdict(out, CAPA_VERDICT_TCP, CAPA_FAIL_NOT_FOUND, NULL);
    return;
  }
  int rc = capa_response_parse(msg, len, rrtype, id, qname, rrtype, r);
  if (rc == CAPA_EMISMATCH) verdict(out, CAPA_VERDICT_IGNORE, CAPA_FAIL_NOT_FOUND, NULL);
  else if (rc != CAPA_OK) verdict(out, CAPA_VERDICT_MALFORMED, CAPA_FAIL_MALFORMED, "malformed reply");
  else capa_judge_response(r, port, proto, out);
}
