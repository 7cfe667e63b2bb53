/**
 * Strict DNS message validator, run before dns-packet sees a byte: dns-packet accepts truncated
 * RDATA and trailing bytes, so every count, name and RDLENGTH is checked here first. One pass,
 * no allocation. Throws ERR_CAPA_MALFORMED.
 */
import { DEFAULT_CAPA_RRTYPE, RDLENGTH_V4, RDLENGTH_V6 } from './constants.js';
import { malformed } from './errors.js';

const HEADER = 12;
const MAX_WIRE_NAME = 255;

const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, DNAME: 39, OPT: 41 } as const;

function u16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

/**
 * Checks the name at `start` and returns the offset just past it (in place, not after pointers).
 * Labels are 0-63 octets, the whole name at most 255, and each compression pointer must go
 * strictly before the previous jump target, so following them always ends.
 */
export function skipName(buf: Uint8Array, start: number): number {
  let off = start;
  let limit = start;
  let end = -1;
  let total = 1;
  for (;;) {
    if (off >= buf.length) throw malformed(`name at offset ${start} runs past the end of the message`);
    const len = buf[off]!;
    if (len === 0) return end < 0 ? off + 1 : end;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (off + 1 >= buf.length) throw malformed(`compression pointer at offset ${off} is cut short`);
      const target = ((len & 0x3f) << 8) | buf[off + 1]!;
      if (target >= limit || target < HEADER) throw malformed(`compression pointer at offset ${off} does not point strictly backwards`);
      if (end < 0) end = off + 2;
      limit = target;
      off = target;
      continue;
    }
    if (kind !== 0) throw malformed(`unsupported label type 0x${kind.toString(16)} at offset ${off}`);
    total += len + 1;
    if (total > MAX_WIRE_NAME) throw malformed(`name at offset ${start} is longer than ${MAX_WIRE_NAME} octets`);
    off += len + 1;
  }
}

function expectLength(type: number, rdlength: number, want: number): void {
  if (rdlength !== want) throw malformed(`type ${type} RDLENGTH must be ${want}, got ${rdlength}`);
}

function expectEnd(type: number, off: number, end: number): void {
  if (off !== end) throw malformed(`type ${type} RDATA does not fill its RDLENGTH`);
}

/** Checks the RDATA of the types dns-packet decodes field by field; others are opaque bytes here. */
function checkRdata(buf: Uint8Array, type: number, off: number, end: number, rrtype: number): void {
  const rdlength = end - off;
  if (type === rrtype) {
    if (rdlength !== RDLENGTH_V4 && rdlength !== RDLENGTH_V6) {
      throw malformed(`CAPA RDLENGTH must be ${RDLENGTH_V4} or ${RDLENGTH_V6}, got ${rdlength}`);
    }
    return;
  }
  switch (type) {
    case T.A: return expectLength(type, rdlength, 4);
    case T.AAAA: return expectLength(type, rdlength, 16);
    case T.NS: case T.CNAME: case T.PTR: case T.DNAME:
      return expectEnd(type, skipName(buf, off), end);
    case T.MX:
      return expectEnd(type, rdlength < 3 ? -1 : skipName(buf, off + 2), end);
    case T.SRV:
      return expectEnd(type, rdlength < 7 ? -1 : skipName(buf, off + 6), end);
    case T.SOA: {
      const afterNames = skipName(buf, skipName(buf, off));
      return expectEnd(type, afterNames + 20, end);
    }
    case T.TXT: case T.OPT: {
      const header = type === T.TXT ? 1 : 4;
      let p = off;
      while (p < end) {
        if (p + header > end) throw malformed(`type ${type} RDATA item at offset ${p} is cut short`);
        p += header + (type === T.TXT ? buf[p]! : u16(buf, p + 2));
      }
      return expectEnd(type, p, end);
    }
    default:
  }
}

/** Validates a whole DNS message; throws ERR_CAPA_MALFORMED on the first defect. */
export function validateMessage(buf: Uint8Array, rrtype = DEFAULT_CAPA_RRTYPE): void {
  if (buf.length < HEADER) throw malformed(`message of ${buf.length} octets is shorter than the 12-octet header`);
  const qdcount = u16(buf, 4);
  const rrcount = u16(buf, 6) + u16(buf, 8) + u16(buf, 10);
  let off = HEADER;
  for (let i = 0; i < qdcount; i++) {
    off = skipName(buf, off) + 4;
    if (off > buf.length) throw malformed(`question ${i + 1} runs past the end of the message`);
  }
  for (let i = 0; i < rrcount; i++) {
    off = skipName(buf, off);
    if (off + 10 > buf.length) throw malformed(`record ${i + 1} header runs past the end of the message`);
    const type = u16(buf, off);
    const end = off + 10 + u16(buf, off + 8);
    if (end > buf.length) throw malformed(`record ${i + 1} RDLENGTH runs past the end of the message`);
    checkRdata(buf, type, off + 10, end, rrtype);
    off = end;
  }
  if (off !== buf.length) throw malformed(`${buf.length - off} trailing octets after the last record`);
}
