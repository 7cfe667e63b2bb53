/*
 * libFuzzer target for the C codec (run bounded by test/native/fuzz.test.ts):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined fuzz_validate.c ../core/capa_codec.c
 * The input is tried as a DNS message (validator, response reader, RDATA decoder) and as text
 * (presentation parser, address parser, query-name builder, query encoder). ASan/UBSan catch
 * overruns inside the codec; the checks below catch wrong answers that stay in bounds.
 */
#include "../core/capa_codec.h"
#include "../core/capa_judge.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_QNAME "_80._tcp.apricot.ee.unsw.edu.au"

static void require(int ok) {
  if (!ok) abort();
}

/* Independent of the codec: follows pointers with a hop budget instead of its ordering rule. */
static int walk_name(const uint8_t *m, size_t len, size_t off, size_t *next) {
  int jumped = 0;
  for (int hops = 0; hops < 128; hops++) {
    if (off >= len) return 0;
    if (m[off] >= 0xc0) {
      if (off + 1 >= len) return 0;
      if (!jumped) *next = off + 2;
      jumped = 1;
      off = ((size_t)(m[off] & 0x3f) << 8) | m[off + 1];
    } else if (m[off] == 0) {
      if (!jumped) *next = off + 1;
      return 1;
    } else {
      off += 1u + m[off];
    }
  }
  return 0;
}

/* 1 when the counts and RDLENGTHs frame the message exactly, with every part inside it. */
static int walk_message(const uint8_t *m, size_t len) {
  size_t off = 12;
  if (len < 12) return 0;
  unsigned questions = (unsigned)(m[4] << 8 | m[5]);
  unsigned records = (unsigned)(m[6] << 8 | m[7]) + (unsigned)(m[8] << 8 | m[9]) + (unsigned)(m[10] << 8 | m[11]);
  for (unsigned i = 0; i < questions; i++) {
    if (!walk_name(m, len, off, &off) || off + 4 > len) return 0;
    off += 4;
  }
  for (unsigned i = 0; i < records; i++) {
    if (!walk_name(m, len, off, &off) || off + 10 > len) return 0;
    size_t rdlen = (size_t)(m[off + 8] << 8 | m[off + 9]);
    if (off + 10 + rdlen > len) return 0;
    off += 10 + rdlen;
  }
  return off == len;
}

static void fuzz_message(const uint8_t *data, size_t size) {
  struct capa_response r;
  struct capa_record rec;
  uint8_t wire[CAPA_RDLENGTH_V6];
  size_t written;
  if (capa_validate_message(data, size, CAPA_DEFAULT_RRTYPE) == CAPA_OK) require(walk_message(data, size));
  uint16_t id = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;
  if (capa_response_parse(data, size, CAPA_DEFAULT_RRTYPE, id, FUZZ_QNAME, CAPA_DEFAULT_RRTYPE, &r) == CAPA_OK) {
    require(r.addr_count >= 0 && r.ede_text_off + r.ede_text_len <= size);
    require(!r.has_capa || r.capa.family == 4 || r.capa.family == 6);
  }
  /* The outcome table: every message gets one verdict, and only a well-formed answer to our
   * query is judged past ignore/malformed/tcp. */
  struct capa_judgement j;
  capa_judge_reply(data, size, CAPA_DEFAULT_RRTYPE, id, FUZZ_QNAME, 80, 6, &r, &j);
  require(j.verdict >= CAPA_VERDICT_CAPA && j.verdict <= CAPA_VERDICT_MALFORMED);
  if (j.verdict <= CAPA_VERDICT_NEXT) require(capa_response_parse(data, size, CAPA_DEFAULT_RRTYPE, id, FUZZ_QNAME, CAPA_DEFAULT_RRTYPE, &r) == CAPA_OK);
  if (j.verdict == CAPA_VERDICT_FAIL || j.verdict == CAPA_VERDICT_NEXT) require(j.what != NULL && strlen(capa_failure_code(j.failure)) > 0);
  if (capa_rdata_decode(data, size, &rec) == CAPA_OK) {
    require(capa_rdata_encode(&rec, wire, sizeof wire, &written) == CAPA_OK);
    require(written == size && memcmp(wire, data, size) == 0);
  }
}

static int same_record(const struct capa_record *a, const struct capa_record *b) {
  size_t alen = a->family == 4 ? 4 : 16;
  return a->flags == b->flags && a->proto == b->proto && a->port == b->port && a->family == b->family &&
         memcmp(a->addr, b->addr, alen) == 0;
}

static void fuzz_text(const char *text) {
  struct capa_record rec, again;
  char out[CAPA_NAME_TEXT_MAX];
  uint8_t query[512], addr[16], addr_again[16];
  size_t written;
  int family, family_again;
  if (capa_record_parse(text, &rec) == CAPA_OK) {
    require(capa_record_format(&rec, out, CAPA_RECORD_TEXT_MAX) == CAPA_OK);
    require(capa_record_parse(out, &again) == CAPA_OK && same_record(&rec, &again));
  }
  if (capa_address_parse(text, &family, addr) == CAPA_OK) {
    require(capa_address_format(family, addr, out, sizeof out) == CAPA_OK);
    require(capa_address_parse(out, &family_again, addr_again) == CAPA_OK && family == family_again);
    require(memcmp(addr, addr_again, family == 4 ? 4 : 16) == 0);
  }
  if (capa_qname_build(text, 443, 17, out, sizeof out) == CAPA_OK) {
    require(strlen(out) <= CAPA_NAME_TEXT_MAX - 1);
    require(capa_query_encode(1, out, CAPA_DEFAULT_RRTYPE, 0, 1, query, sizeof query, &written) == CAPA_OK);
  }
  /* Whatever name the encoder accepts, the message it writes passes the validator. */
  if (capa_query_encode(0x1234, text, 1, 1, 1, query, sizeof query, &written) == CAPA_OK) {
    require(capa_validate_message(query, written, CAPA_DEFAULT_RRTYPE) == CAPA_OK);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char text[1024];
  size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
#ifdef CAPA_FUZZ_CANARY
  /* Test of the test: test/native/fuzz.test.ts builds this in to see a crash reported. */
  require(!(size >= 6 && memcmp(data, "CANARY", 6) == 0));
#endif
  fuzz_message(data, size);
  if (n > 0) memcpy(text, data, n);
  text[n] = '\0';
  fuzz_text(text);
  return 0;
}
