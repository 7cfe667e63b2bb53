/* CAPA wire codec: see capa_codec.h. Pure functions over caller-owned buffers. */
#include "capa_codec.h"

#include <stdio.h>
#include <string.h>

enum { HEADER = 12, MAX_WIRE_NAME = 255, MAX_LABEL = 63, MAX_NAME_TEXT = 253, CLASS_IN = 1 };

enum {
  T_A = 1, T_NS = 2, T_CNAME = 5, T_SOA = 6, T_PTR = 12, T_HINFO = 13, T_MX = 15, T_TXT = 16,
  T_RP = 17, T_AAAA = 28, T_SRV = 33, T_NAPTR = 35, T_DNAME = 39, T_OPT = 41, T_DS = 43,
  T_SSHFP = 44, T_RRSIG = 46, T_NSEC = 47, T_DNSKEY = 48, T_NSEC3 = 50, T_TLSA = 52, T_CAA = 257
};

enum { EDE_OPTION_CODE = 15, OPCODE_MASK = 0x7800, QR_FLAG = 0x8000, AA_FLAG = 0x0400,
       TC_FLAG = 0x0200, RD_FLAG = 0x0100 };

static uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static uint32_t get32(const uint8_t *p) {
  return ((uint32_t)get16(p) << 16) | get16(p + 2);
}

static void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  c = to_lower(c);
  return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* ---- addresses ------------------------------------------------------------------------------ */

/* 1-3 digits, no leading zero, at most max. Advances *p past the digits. */
static int parse_decimal_octet(const char **p, const char *end, unsigned *out) {
  const char *s = *p;
  unsigned v = 0;
  while (s < end && is_digit(*s) && s - *p < 3) v = v * 10 + (unsigned)(*s++ - '0');
  if (s == *p || (s - *p > 1 && **p == '0') || v > 255) return CAPA_EINVAL;
  *p = s;
  *out = v;
  return CAPA_OK;
}

static int parse_ipv4(const char *s, size_t n, uint8_t out[4]) {
  const char *end = s + n;
  for (int i = 0; i < 4; i++) {
    unsigned v;
    if (i > 0 && (s >= end || *s++ != '.')) return CAPA_EINVAL;
    if (parse_decimal_octet(&s, end, &v) != CAPA_OK) return CAPA_EINVAL;
    out[i] = (uint8_t)v;
  }
  return s == end ? CAPA_OK : CAPA_EINVAL;
}

/* IPv6 groups parsed so far: head groups, and where "::" stood (-1 when absent). */
struct v6_groups {
  uint16_t g[8];
  int n;
  int gap_at;
};

/* One hex group (1-4 digits) or, when a '.' follows the digits, an IPv4 tail ending the text. */
static int parse_v6_piece(const char **p, const char *end, struct v6_groups *v) {
  const char *q = *p;
  unsigned value = 0;
  while (q < end && hex_value(*q) >= 0 && q - *p < 5) value = value * 16 + (unsigned)hex_value(*q++);
  if (q < end && *q == '.') {
    uint8_t four[4];
    if (v->n > 6 || parse_ipv4(*p, (size_t)(end - *p), four) != CAPA_OK) return CAPA_EINVAL;
    v->g[v->n++] = (uint16_t)((four[0] << 8) | four[1]);
    v->g[v->n++] = (uint16_t)((four[2] << 8) | four[3]);
    *p = end;
    return CAPA_OK;
  }
  if (q == *p || q - *p > 4 || v->n >= 8) return CAPA_EINVAL;
  v->g[v->n++] = (uint16_t)value;
  *p = q;
  return CAPA_OK;
}

/* After a piece: end of text, ':' before the next piece, or "::" (once). */
static int parse_v6_separator(const char **p, const char *end, struct v6_groups *v) {
  const char *s = *p;
  if (s == end) return CAPA_OK;
  if (*s != ':') return CAPA_EINVAL;
  if (s + 1 < end && s[1] == ':') {
    if (v->gap_at >= 0) return CAPA_EINVAL;
    v->gap_at = v->n;
    *p = s + 2;
    return CAPA_OK;
  }
  if (s + 1 == end) return CAPA_EINVAL;
  *p = s + 1;
  return CAPA_OK;
}

static void expand_v6(const struct v6_groups *v, uint8_t out[16]) {
  int zeros = 8 - v->n;
  int head = v->gap_at < 0 ? v->n : v->gap_at;
  int k = 0;
  memset(out, 0, 16);
  for (int i = 0; i < v->n; i++) {
    if (i == head) k += zeros;
    put16(out + 2 * k++, v->g[i]);
  }
}

static int parse_ipv6(const char *s, size_t n, uint8_t out[16]) {
  const char *end = s + n;
  struct v6_groups v = { { 0 }, 0, -1 };
  if (n >= 2 && s[0] == ':' && s[1] == ':') {
    v.gap_at = 0;
    s += 2;
  }
  while (s < end) {
    if (parse_v6_piece(&s, end, &v) != CAPA_OK) return CAPA_EINVAL;
    if (parse_v6_separator(&s, end, &v) != CAPA_OK) return CAPA_EINVAL;
  }
  if (v.gap_at < 0 ? v.n != 8 : v.n > 7) return CAPA_EINVAL;
  expand_v6(&v, out);
  return CAPA_OK;
}

static int parse_address(const char *s, size_t n, int *family, uint8_t addr[16]) {
  if (memchr(s, ':', n) == NULL) {
    memset(addr, 0, 16);
    *family = 4;
    return parse_ipv4(s, n, addr);
  }
  *family = 6;
  return parse_ipv6(s, n, addr);
}

int capa_address_parse(const char *text, int *family, uint8_t addr[16]) {
  if (text == NULL || family == NULL || addr == NULL) return CAPA_EINVAL;
  return parse_address(text, strlen(text), family, addr);
}

/* The longest run (>= 2) of zero groups, first one on ties; *start = -1 when none. */
static void longest_zero_run(const uint8_t *addr, int *start, int *length) {
  *start = -1;
  *length = 1;
  for (int i = 0; i < 8;) {
    int j = i;
    while (j < 8 && get16(addr + 2 * j) == 0) j++;
    if (j - i > *length) {
      *start = i;
      *length = j - i;
    }
    i = j > i ? j : i + 1;
  }
}

static int format_ipv6(const uint8_t *addr, char *out, size_t len) {
  int start, run;
  size_t used = 0;
  longest_zero_run(addr, &start, &run);
  for (int i = 0; i < 8; i++) {
    int w;
    if (i == start) {
      w = snprintf(out + used, len - used, "::");
      i += run - 1;
    } else {
      int colon = i > 0 && i != start + run;
      w = snprintf(out + used, len - used, colon ? ":%x" : "%x", (unsigned)get16(addr + 2 * i));
    }
    if (w < 0 || (size_t)w >= len - used) return CAPA_ENOSPC;
    used += (size_t)w;
  }
  return CAPA_OK;
}

int capa_address_format(int family, const uint8_t *addr, char *out, size_t len) {
  if (addr == NULL || out == NULL || len == 0) return CAPA_EINVAL;
  if (family == 6) return format_ipv6(addr, out, len);
  if (family != 4) return CAPA_EINVAL;
  int w = snprintf(out, len, "%u.%u.%u.%u", addr[0], addr[1], addr[2], addr[3]);
  return (w < 0 || (size_t)w >= len) ? CAPA_ENOSPC : CAPA_OK;
}

/* ---- RDATA ---------------------------------------------------------------------------------- */

int capa_rdata_encode(const struct capa_record *rec, uint8_t *buf, size_t len, size_t *written) {
  if (rec == NULL || buf == NULL || written == NULL) return CAPA_EINVAL;
  if (rec->family != 4 && rec->family != 6) return CAPA_EINVAL;
  size_t alen = rec->family == 4 ? 4 : 16;
  if (len < 4 + alen) return CAPA_ENOSPC;
  buf[0] = rec->flags;
  buf[1] = rec->proto;
  put16(buf + 2, rec->port);
  memcpy(buf + 4, rec->addr, alen);
  *written = 4 + alen;
  return CAPA_OK;
}

int capa_rdata_decode(const uint8_t *rdata, size_t rdlen, struct capa_record *out) {
  if (out == NULL || (rdata == NULL && rdlen > 0)) return CAPA_EINVAL;
  if (rdlen != CAPA_RDLENGTH_V4 && rdlen != CAPA_RDLENGTH_V6) return CAPA_EMALFORMED;
  memset(out, 0, sizeof *out);
  out->flags = rdata[0];
  out->proto = rdata[1];
  out->port = get16(rdata + 2);
  out->family = rdlen == CAPA_RDLENGTH_V4 ? 4 : 6;
  memcpy(out->addr, rdata + 4, rdlen - 4);
  return CAPA_OK;
}

/* ---- presentation --------------------------------------------------------------------------- */

int capa_record_format(const struct capa_record *rec, char *out, size_t len) {
  char address[CAPA_ADDRESS_TEXT_MAX];
  if (rec == NULL || out == NULL) return CAPA_EINVAL;
  int rc = capa_address_format(rec->family, rec->addr, address, sizeof address);
  if (rc != CAPA_OK) return rc;
  int w = snprintf(out, len, "%u %u %u %s", rec->flags, rec->proto, rec->port, address);
  return (w < 0 || (size_t)w >= len) ? CAPA_ENOSPC : CAPA_OK;
}

struct token {
  const char *s;
  size_t n;
};

/* Splits on ASCII white space; returns the number of tokens, at most max. */
static size_t split_tokens(const char *text, struct token *tokens, size_t max, int *more) {
  size_t count = 0;
  *more = 0;
  for (const char *p = text; *p;) {
    while (is_space(*p)) p++;
    if (!*p) break;
    const char *start = p;
    while (*p && !is_space(*p)) p++;
    if (count == max) {
      *more = 1;
      break;
    }
    tokens[count].s = start;
    tokens[count++].n = (size_t)(p - start);
  }
  return count;
}

/* 1-10 decimal digits, value at most max (the rule of presentation.ts parseUint). */
static int parse_uint(const struct token *t, uint32_t max, uint32_t *out) {
  uint64_t v = 0;
  if (t->n < 1 || t->n > 10) return CAPA_EINVAL;
  for (size_t i = 0; i < t->n; i++) {
    if (!is_digit(t->s[i])) return CAPA_EINVAL;
    v = v * 10 + (uint64_t)(t->s[i] - '0');
  }
  if (v > max) return CAPA_EINVAL;
  *out = (uint32_t)v;
  return CAPA_OK;
}

/* `\# <length> <hex...>`: hex may be split over any number of tokens. */
static int parse_generic(const struct token *tokens, size_t count, struct capa_record *out) {
  uint8_t bytes[CAPA_RDLENGTH_V6];
  uint32_t length;
  size_t nibbles = 0;
  if (count < 2 || parse_uint(&tokens[1], 65535, &length) != CAPA_OK) return CAPA_EINVAL;
  if (length != CAPA_RDLENGTH_V4 && length != CAPA_RDLENGTH_V6) return CAPA_EINVAL;
  for (size_t t = 2; t < count; t++) {
    for (size_t i = 0; i < tokens[t].n; i++, nibbles++) {
      int h = hex_value(tokens[t].s[i]);
      if (h < 0 || nibbles >= 2 * (size_t)length) return CAPA_EINVAL;
      if (nibbles % 2 == 0) bytes[nibbles / 2] = (uint8_t)(h << 4);
      else bytes[nibbles / 2] |= (uint8_t)h;
    }
  }
  if (nibbles != 2 * (size_t)length) return CAPA_EINVAL;
  return capa_rdata_decode(bytes, length, out) == CAPA_OK ? CAPA_OK : CAPA_EINVAL;
}

static int parse_fields(const struct token *tokens, struct capa_record *out) {
  uint32_t flags, proto, port;
  memset(out, 0, sizeof *out);
  if (parse_uint(&tokens[0], 255, &flags) != CAPA_OK || parse_uint(&tokens[1], 255, &proto) != CAPA_OK ||
      parse_uint(&tokens[2], 65535, &port) != CAPA_OK) {
    return CAPA_EINVAL;
  }
  out->flags = (uint8_t)flags;
  out->proto = (uint8_t)proto;
  out->port = (uint16_t)port;
  return parse_address(tokens[3].s, tokens[3].n, &out->family, out->addr);
}

int capa_record_parse(const char *text, struct capa_record *out) {
  struct token tokens[64];
  int more;
  if (text == NULL || out == NULL) return CAPA_EINVAL;
  size_t count = split_tokens(text, tokens, sizeof tokens / sizeof tokens[0], &more);
  if (more) return CAPA_EINVAL; /* no CAPA RDATA text needs that many tokens */
  if (count >= 1 && tokens[0].n == 2 && tokens[0].s[0] == '\\' && tokens[0].s[1] == '#') {
    return parse_generic(tokens, count, out);
  }
  return count == 4 ? parse_fields(tokens, out) : CAPA_EINVAL;
}

/* ---- message validation --------------------------------------------------------------------- */

/*
 * Checks the name at start and sets *next just past it in place. Labels 0-63 octets, the whole
 * name at most 255, each pointer strictly before the previous jump target (so the walk ends)
 * and not into the header.
 */
static int skip_name(const uint8_t *msg, size_t len, size_t start, size_t *next) {
  size_t off = start, limit = start, total = 1;
  int jumped = 0;
  for (;;) {
    if (off >= len) return CAPA_EMALFORMED;
    uint8_t l = msg[off];
    if (l == 0) break;
    if ((l & 0xc0) == 0xc0) {
      if (off + 1 >= len) return CAPA_EMALFORMED;
      size_t target = ((size_t)(l & 0x3f) << 8) | msg[off + 1];
      if (target >= limit || target < HEADER) return CAPA_EMALFORMED;
      if (!jumped) *next = off + 2;
      jumped = 1;
      limit = off = target;
      continue;
    }
    if (l & 0xc0) return CAPA_EMALFORMED;
    total += (size_t)l + 1;
    if (total > MAX_WIRE_NAME) return CAPA_EMALFORMED;
    off += (size_t)l + 1;
  }
  if (!jumped) *next = off + 1;
  return CAPA_OK;
}

/*
 * RDATA shapes, the same table as validate.ts (there, why: dns-packet frames these types by their
 * fields). Digits: that many octets; N a name; S a character-string; * any octets to the end;
 * repeated to the end: T character-strings, O EDNS options, B type-bitmap windows.
 * Types not listed are opaque.
 */
static const char *rdata_shape(unsigned type) {
  switch (type) {
    case T_A: return "4";
    case T_AAAA: return "16";
    case T_NS: case T_CNAME: case T_PTR: case T_DNAME: return "N";
    case T_MX: return "2N";
    case T_SRV: return "6N";
    case T_SOA: return "NN20";
    case T_TXT: return "T";
    case T_OPT: return "O";
    case T_HINFO: return "SS";
    case T_RP: return "NN";
    case T_NAPTR: return "4SSSN";
    case T_RRSIG: return "18N*";
    case T_DS: case T_DNSKEY: return "4*";
    case T_TLSA: return "3*";
    case T_SSHFP: return "2*";
    case T_NSEC: return "NB";
    case T_NSEC3: return "4SSB";
    case T_CAA: return "1S*";
    default: return NULL;
  }
}

/* Framing of repeated items: header size, where the length is, its size, allowed lengths. */
struct item_frame {
  size_t header, len_at;
  int wide;
  unsigned min, max;
};

static const struct item_frame TXT_ITEMS = { 1, 0, 0, 0, 255 };
static const struct item_frame OPT_ITEMS = { 4, 2, 1, 0, 65535 };
static const struct item_frame BITMAP_WINDOWS = { 2, 1, 0, 1, 32 };

static int skip_items(const uint8_t *msg, size_t *off, size_t end, const struct item_frame *f) {
  size_t p = *off;
  while (p < end) {
    if (p + f->header > end) return CAPA_EMALFORMED;
    unsigned n = f->wide ? get16(msg + p + f->len_at) : msg[p + f->len_at];
    if (n < f->min || n > f->max) return CAPA_EMALFORMED;
    p += f->header + n;
  }
  *off = p;
  return CAPA_OK;
}

static int skip_fixed(const char **shape, size_t *off, size_t end) {
  size_t n = 0;
  while (is_digit(**shape)) n = n * 10 + (size_t)(*(*shape)++ - '0');
  if (*off > end || end - *off < n) return CAPA_EMALFORMED;
  *off += n;
  return CAPA_OK;
}

static int shape_step(const uint8_t *msg, size_t len, const char **shape, size_t *off, size_t end) {
  char c = **shape;
  if (is_digit(c)) return skip_fixed(shape, off, end);
  (*shape)++;
  switch (c) {
    case 'N': return skip_name(msg, len, *off, off);
    case 'S':
      if (*off >= end || end - *off < 1u + msg[*off]) return CAPA_EMALFORMED;
      *off += 1u + msg[*off];
      return CAPA_OK;
    case 'T': return skip_items(msg, off, end, &TXT_ITEMS);
    case 'O': return skip_items(msg, off, end, &OPT_ITEMS);
    case 'B': return skip_items(msg, off, end, &BITMAP_WINDOWS);
    default: /* '*' */
      if (*off > end) return CAPA_EMALFORMED;
      *off = end;
      return CAPA_OK;
  }
}

/* SSHFP fingerprints have the length of their hash: SHA-1 20, SHA-256 32. */
static int check_sshfp(const uint8_t *rdata, size_t rdlen) {
  size_t want = rdata[1] == 1 ? 20 : rdata[1] == 2 ? 32 : 0;
  return want != 0 && rdlen == 2 + want ? CAPA_OK : CAPA_EMALFORMED;
}

static int check_rdata(const uint8_t *msg, size_t len, unsigned type, size_t off, size_t end, uint16_t rrtype) {
  size_t rdlen = end - off;
  if (type == rrtype && rdlen != CAPA_RDLENGTH_V4 && rdlen != CAPA_RDLENGTH_V6) return CAPA_EMALFORMED;
  const char *shape = rdata_shape(type);
  if (shape == NULL) return CAPA_OK;
  while (*shape) {
    int rc = shape_step(msg, len, &shape, &off, end);
    if (rc != CAPA_OK) return rc;
  }
  if (off != end) return CAPA_EMALFORMED;
  return type == T_SSHFP ? check_sshfp(msg + end - rdlen, rdlen) : CAPA_OK;
}

/* One resource record as the validated walk sees it. */
struct rr {
  size_t name_off;
  unsigned type, klass;
  uint32_t ttl;
  size_t rdata_off, rdlen;
};

static int read_rr(const uint8_t *msg, size_t len, size_t *off, struct rr *rr) {
  size_t p;
  if (skip_name(msg, len, *off, &p) != CAPA_OK) return CAPA_EMALFORMED;
  if (p + 10 > len) return CAPA_EMALFORMED;
  rr->name_off = *off;
  rr->type = get16(msg + p);
  rr->klass = get16(msg + p + 2);
  rr->ttl = get32(msg + p + 4);
  rr->rdlen = get16(msg + p + 8);
  rr->rdata_off = p + 10;
  if (rr->rdata_off + rr->rdlen > len) return CAPA_EMALFORMED;
  *off = rr->rdata_off + rr->rdlen;
  return CAPA_OK;
}

static unsigned record_count(const uint8_t *msg) {
  return (unsigned)get16(msg + 6) + get16(msg + 8) + get16(msg + 10);
}

/* Past the question section: *off becomes the offset of the first answer RR. */
static int skip_questions(const uint8_t *msg, size_t len, size_t *off) {
  *off = HEADER;
  for (unsigned i = get16(msg + 4); i > 0; i--) {
    if (skip_name(msg, len, *off, off) != CAPA_OK || *off + 4 > len) return CAPA_EMALFORMED;
    *off += 4;
  }
  return CAPA_OK;
}

int capa_validate_message(const uint8_t *msg, size_t len, uint16_t rrtype) {
  size_t off;
  if (msg == NULL || len < HEADER || skip_questions(msg, len, &off) != CAPA_OK) return CAPA_EMALFORMED;
  for (unsigned i = record_count(msg); i > 0; i--) {
    struct rr rr;
    if (read_rr(msg, len, &off, &rr) != CAPA_OK) return CAPA_EMALFORMED;
    if (check_rdata(msg, len, rr.type, rr.rdata_off, off, rrtype) != CAPA_OK) return CAPA_EMALFORMED;
  }
  return off == len ? CAPA_OK : CAPA_EMALFORMED;
}

/* ---- query names ---------------------------------------------------------------------------- */

static int is_label_char(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* The LABEL rule of qname.ts: [A-Za-z0-9_*] then [A-Za-z0-9_-]* ending in [A-Za-z0-9_], 1-63. */
static int check_label(const char *s, size_t n) {
  if (n < 1 || n > MAX_LABEL || !(is_label_char(s[0]) || s[0] == '*')) return CAPA_EINVAL;
  for (size_t i = 1; i < n; i++) {
    if (!(is_label_char(s[i]) || (s[i] == '-' && i + 1 < n))) return CAPA_EINVAL;
  }
  return CAPA_OK;
}

static int check_name_text(const char *name, size_t n) {
  if (n < 1 || n > MAX_NAME_TEXT) return CAPA_EINVAL;
  for (size_t start = 0; start <= n;) {
    const char *dot = memchr(name + start, '.', n - start);
    size_t end = dot ? (size_t)(dot - name) : n;
    if (check_label(name + start, end - start) != CAPA_OK) return CAPA_EINVAL;
    start = end + 1;
  }
  return CAPA_OK;
}

static int reverse_name(int family, const uint8_t *a, char *out, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t used = 0;
  if (family == 4) {
    int w = snprintf(out, len, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
    return (w < 0 || (size_t)w >= len) ? CAPA_ENOSPC : CAPA_OK;
  }
  if (len < 64 + sizeof "ip6.arpa") return CAPA_ENOSPC;
  for (int i = 15; i >= 0; i--) {
    out[used++] = hex[a[i] & 0xf];
    out[used++] = '.';
    out[used++] = hex[a[i] >> 4];
    out[used++] = '.';
  }
  memcpy(out + used, "ip6.arpa", sizeof "ip6.arpa");
  return CAPA_OK;
}

/* Lower case, one trailing dot dropped; an IP literal becomes its reverse name. */
static int normalize_host(const char *host, char out[CAPA_NAME_TEXT_MAX]) {
  uint8_t addr[16];
  int family;
  size_t n = strlen(host);
  if (parse_address(host, n, &family, addr) == CAPA_OK) return reverse_name(family, addr, out, CAPA_NAME_TEXT_MAX);
  if (n > 0 && host[n - 1] == '.') n--;
  if (n > MAX_NAME_TEXT) return CAPA_EINVAL;
  for (size_t i = 0; i < n; i++) out[i] = to_lower(host[i]);
  out[n] = '\0';
  return check_name_text(out, n);
}

int capa_qname_build(const char *host, int port, int proto, char *out, size_t len) {
  char h[CAPA_NAME_TEXT_MAX];
  if (host == NULL || out == NULL || port < 0 || port > 65535) return CAPA_EINVAL;
  int rc = normalize_host(host, h);
  if (rc != CAPA_OK) return rc;
  if (port != 0 && proto != 6 && proto != 17) return CAPA_EINVAL;
  int w = port == 0 ? snprintf(out, len, "%s", h)
                    : snprintf(out, len, "_%d._%s.%s", port, proto == 6 ? "tcp" : "udp", h);
  if (w < 0 || (size_t)w >= len) return (size_t)w > MAX_NAME_TEXT ? CAPA_EINVAL : CAPA_ENOSPC;
  return check_name_text(out, (size_t)w);
}

/* ---- query encoding ------------------------------------------------------------------------- */

/* Uncompressed wire name; one leading and one trailing dot are dropped ("." is the root). */
static int encode_name(const char *name, uint8_t *buf, size_t len, size_t *off) {
  size_t n = strlen(name);
  const char *s = name;
  if (n > 0 && s[0] == '.') {
    s++;
    n--;
  }
  if (n > 0 && s[n - 1] == '.') n--;
  size_t wire = n == 0 ? 1 : n + 2;
  if (wire > MAX_WIRE_NAME) return CAPA_EINVAL;
  if (len - *off < wire) return CAPA_ENOSPC;
  for (size_t start = 0; n > 0 && start <= n;) {
    const char *dot = memchr(s + start, '.', n - start);
    size_t end = dot ? (size_t)(dot - s) : n;
    if (end == start || end - start > MAX_LABEL) return CAPA_EINVAL;
    buf[(*off)++] = (uint8_t)(end - start);
    memcpy(buf + *off, s + start, end - start);
    *off += end - start;
    start = end + 1;
  }
  buf[(*off)++] = 0;
  return CAPA_OK;
}

int capa_query_encode(uint16_t id, const char *qname, uint16_t qtype, int rd, int edns,
                      uint8_t *buf, size_t len, size_t *written) {
  static const uint8_t opt[11] = { 0, 0, T_OPT, CAPA_EDNS_PAYLOAD >> 8, CAPA_EDNS_PAYLOAD & 0xff, 0, 0, 0, 0, 0, 0 };
  size_t off = HEADER;
  if (qname == NULL || buf == NULL || written == NULL) return CAPA_EINVAL;
  if (len < HEADER) return CAPA_ENOSPC;
  memset(buf, 0, HEADER);
  put16(buf, id);
  put16(buf + 2, rd ? RD_FLAG : 0);
  put16(buf + 4, 1);
  put16(buf + 10, edns ? 1 : 0);
  int rc = encode_name(qname, buf, len, &off);
  if (rc != CAPA_OK) return rc;
  if (off + 4 + (edns ? sizeof opt : 0) > len) return CAPA_ENOSPC;
  put16(buf + off, qtype);
  put16(buf + off + 2, CLASS_IN);
  off += 4;
  if (edns) {
    memcpy(buf + off, opt, sizeof opt);
    off += sizeof opt;
  }
  *written = off;
  return CAPA_OK;
}

/* ---- response reading ----------------------------------------------------------------------- */

/* Case-insensitive label compare; a wire label holding a '.' never equals text labels. */
static int label_equals(const uint8_t *label, const char *text, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (label[i] == '.' || to_lower((char)label[i]) != to_lower(text[i])) return 0;
  }
  return 1;
}

/*
 * The label of a (validated, see skip_name) wire name at *off, pointers followed: its length, 0
 * at the root. Its octets are at msg + *off + 1; the next label is at *off + length + 1. The one
 * walk the readers of names share.
 */
static uint8_t label_at(const uint8_t *msg, size_t *off) {
  while ((msg[*off] & 0xc0) == 0xc0) *off = ((size_t)(msg[*off] & 0x3f) << 8) | msg[*off + 1];
  return msg[*off];
}

/* Whether the (validated) wire name at off spells text, ignoring case and a trailing dot. */
static int name_equals(const uint8_t *msg, size_t off, const char *text) {
  size_t n = strlen(text), t = 0;
  if (n > 0 && text[n - 1] == '.') n--;
  for (;;) {
    uint8_t l = label_at(msg, &off);
    if (l == 0) return t == n;
    if (t > 0) {
      if (t >= n || text[t] != '.') return 0;
      t++;
    }
    if (n - t < l || !label_equals(msg + off + 1, text + t, l)) return 0;
    t += l;
    off += (size_t)l + 1;
  }
}

/* Stops at the first difference, so it never reads past the NUL of s. */
static int starts_with_ci(const char *s, const char *lower_prefix) {
  while (*lower_prefix) {
    if (to_lower(*s++) != *lower_prefix++) return 0;
  }
  return 1;
}

/* The text after a leading `_<port>._<tcp|udp>.`, or the whole name. */
static const char *host_part(const char *qname) {
  const char *p = qname;
  if (*p++ != '_' || !is_digit(*p)) return qname;
  while (is_digit(*p)) p++;
  if (p - qname > 6 || *p++ != '.' || *p++ != '_') return qname;
  int proto_ok = starts_with_ci(p, "tcp.") || starts_with_ci(p, "udp.");
  return proto_ok && p[4] != '\0' ? p + 4 : qname;
}

static int check_question(const uint8_t *msg, size_t len, uint16_t expected_id, const char *qname,
                          uint16_t qtype, size_t *off) {
  unsigned flags = get16(msg + 2);
  if (get16(msg) != expected_id || !(flags & QR_FLAG) || (flags & OPCODE_MASK) != 0 || get16(msg + 4) != 1) {
    return CAPA_EMISMATCH;
  }
  if (!name_equals(msg, HEADER, qname)) return CAPA_EMISMATCH;
  if (skip_name(msg, len, HEADER, off) != CAPA_OK) return CAPA_EMALFORMED;
  if (get16(msg + *off) != qtype || get16(msg + *off + 2) != CLASS_IN) return CAPA_EMISMATCH;
  *off += 4;
  return CAPA_OK;
}

static void read_opt(const uint8_t *msg, const struct rr *rr, struct capa_response *out) {
  size_t p = rr->rdata_off, end = rr->rdata_off + rr->rdlen;
  out->has_opt = 1;
  out->rcode |= (int)(rr->ttl >> 24) << 4;
  for (; p < end; p += 4u + get16(msg + p + 2)) {
    size_t n = get16(msg + p + 2);
    if (get16(msg + p) != EDE_OPTION_CODE || n < 2 || out->ede >= 0) continue;
    out->ede = get16(msg + p + 4);
    out->ede_text_off = p + 6;
    out->ede_text_len = n - 2;
  }
}

/* Counts an A/AAAA record and keeps it while slots (CAPA_MAX_ADDRS of them) last. */
static void store_address(const uint8_t *msg, const struct rr *rr, struct capa_address *slots, int *count) {
  size_t want = rr->type == T_A ? 4 : 16;
  if (rr->rdlen != want) return;
  if (*count < CAPA_MAX_ADDRS) {
    struct capa_address *a = &slots[*count];
    memset(a, 0, sizeof *a);
    a->family = rr->type == T_A ? 4 : 6;
    memcpy(a->addr, msg + rr->rdata_off, want);
  }
  (*count)++;
}

enum section { ANSWER, AUTHORITY, ADDITIONAL };

static void use_record(const uint8_t *msg, const struct rr *rr, enum section section, uint16_t rrtype,
                       const char *qname, struct capa_response *out) {
  if (rr->type == T_OPT) {
    if (section == ADDITIONAL && !out->has_opt) read_opt(msg, rr, out);
    return;
  }
  if (rr->klass != CLASS_IN) return;
  if (section == ANSWER && rr->type == rrtype && !name_equals(msg, rr->name_off, qname)) {
    out->foreign_capa++;
  } else if (section == ANSWER && rr->type == rrtype && !out->has_capa &&
             capa_rdata_decode(msg + rr->rdata_off, rr->rdlen, &out->capa) == CAPA_OK) {
    out->has_capa = 1;
    out->capa_ttl = rr->ttl;
  } else if (section == ADDITIONAL && (rr->type == T_A || rr->type == T_AAAA) &&
             name_equals(msg, rr->name_off, host_part(qname))) {
    store_address(msg, rr, out->addrs, &out->addr_count);
  }
}

int capa_response_parse(const uint8_t *msg, size_t len, uint16_t rrtype, uint16_t expected_id,
                        const char *qname, uint16_t qtype, struct capa_response *out) {
  size_t off;
  if (msg == NULL || qname == NULL || out == NULL) return CAPA_EINVAL;
  int rc = capa_validate_message(msg, len, rrtype);
  if (rc != CAPA_OK) return rc;
  rc = check_question(msg, len, expected_id, qname, qtype, &off);
  if (rc != CAPA_OK) return rc;
  memset(out, 0, sizeof *out);
  out->ede = -1;
  out->rcode = get16(msg + 2) & 0xf;
  out->aa = (get16(msg + 2) & AA_FLAG) != 0;
  out->tc = (get16(msg + 2) & TC_FLAG) != 0;
  unsigned an = get16(msg + 6), ns = get16(msg + 8), total = record_count(msg);
  for (unsigned i = 0; i < total; i++) {
    struct rr rr;
    if (read_rr(msg, len, &off, &rr) != CAPA_OK) return CAPA_EMALFORMED; /* the validator already framed it */
    use_record(msg, &rr, i < an ? ANSWER : i < an + ns ? AUTHORITY : ADDITIONAL, rrtype, qname, out);
  }
  return CAPA_OK;
}

/* The (validated) wire name at off as text; CAPA_EMALFORMED for a label holding '.' or NUL, which
 * the text form cannot spell. out holds CAPA_NAME_TEXT_MAX octets, enough for any wire name. */
static int name_text(const uint8_t *msg, size_t off, char *out) {
  size_t n = 0;
  for (uint8_t l = label_at(msg, &off); l != 0; l = label_at(msg, &off)) {
    if (memchr(msg + off + 1, '.', l) != NULL || memchr(msg + off + 1, '\0', l) != NULL) return CAPA_EMALFORMED;
    if (n > 0) out[n++] = '.';
    memcpy(out + n, msg + off + 1, l);
    n += l;
    off += (size_t)l + 1;
  }
  out[n] = '\0';
  return CAPA_OK;
}

/* Replaces owner by the target of the first CNAME owned by it among the an records at off;
 * 0 when there is none (or its target has no text form). */
static int follow_cname(const uint8_t *msg, size_t len, size_t off, unsigned an, char *owner) {
  char target[CAPA_NAME_TEXT_MAX];
  for (unsigned i = 0; i < an; i++) {
    struct rr rr;
    if (read_rr(msg, len, &off, &rr) != CAPA_OK) return 0;
    if (rr.type != T_CNAME || !name_equals(msg, rr.name_off, owner)) continue;
    if (name_text(msg, rr.rdata_off, target) != CAPA_OK) return 0;
    memcpy(owner, target, sizeof target);
    return 1;
  }
  return 0;
}

enum { MAX_CNAME_HOPS = 8 };

int capa_answer_addresses(const uint8_t *msg, size_t len, uint16_t rrtype, const char *name, uint16_t qtype,
                          struct capa_address out[CAPA_MAX_ADDRS]) {
  char owner[CAPA_NAME_TEXT_MAX + 1]; /* the caller's name may keep its trailing dot */
  size_t start;
  int count = 0;
  if (msg == NULL || name == NULL || out == NULL || (qtype != T_A && qtype != T_AAAA)) return CAPA_EINVAL;
  if (strlen(name) >= sizeof owner) return CAPA_EINVAL;
  int rc = capa_validate_message(msg, len, rrtype);
  if (rc != CAPA_OK) return rc;
  if (skip_questions(msg, len, &start) != CAPA_OK) return CAPA_EMALFORMED;
  unsigned an = get16(msg + 6);
  memcpy(owner, name, strlen(name) + 1);
  for (int hops = 0; hops < MAX_CNAME_HOPS && follow_cname(msg, len, start, an, owner); hops++) {
  }
  for (size_t off = start; an > 0; an--) {
    struct rr rr;
    if (read_rr(msg, len, &off, &rr) != CAPA_OK) return CAPA_EMALFORMED;
    if (rr.type == qtype && name_equals(msg, rr.name_off, owner)) store_address(msg, &rr, out, &count);
  }
  return count;
}
