/* DNS UPDATE release encoder: see update.h. */
#include "capa_update.h"

#include <string.h>

enum { HEADER = 12, TYPE_SOA = 6, CLASS_NONE = 254, OPCODE_UPDATE = 5, TTL_AND_RDLENGTH = 6 };

static void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

int capa_release_encode(uint16_t id, const char *zone, const char *qname, const struct capa_record *rec,
                        uint16_t rrtype, uint8_t *buf, size_t len, size_t *written) {
  uint8_t owner[HEADER + CAPA_NAME_TEXT_MAX + 6], rdata[CAPA_RDLENGTH_V6];
  size_t off, owner_len, rdlen;
  /* The codec's query encoder already writes a header, one uncompressed name and TYPE/CLASS:
   * the zone section is such a question (zone IN SOA), and the update RR starts like one. */
  int rc = capa_query_encode(id, zone, TYPE_SOA, 0, 0, buf, len, &off);
  if (rc == CAPA_OK) rc = capa_query_encode(0, qname, rrtype, 0, 0, owner, sizeof owner, &owner_len);
  if (rc == CAPA_OK) rc = capa_rdata_encode(rec, rdata, sizeof rdata, &rdlen);
  if (rc != CAPA_OK) return rc;
  size_t rr_len = owner_len - HEADER + TTL_AND_RDLENGTH + rdlen;
  if (len - off < rr_len) return CAPA_ENOSPC;
  put16(buf + 2, OPCODE_UPDATE << 11);
  put16(buf + 8, 1); /* UPCOUNT: the one RR to delete */
  memcpy(buf + off, owner + HEADER, owner_len - HEADER);
  off += owner_len - HEADER;
  put16(buf + off - 2, CLASS_NONE); /* "delete this RR" */
  memset(buf + off, 0, 4);          /* TTL 0, as RFC 2136 requires for deletions */
  put16(buf + off + 4, (unsigned)rdlen);
  memcpy(buf + off + TTL_AND_RDLENGTH, rdata, rdlen);
  *written = off + TTL_AND_RDLENGTH + rdlen;
  return CAPA_OK;
}
