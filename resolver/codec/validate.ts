/**
 * Strict DNS message validator, run before dns-packet sees a byte: dns-packet accepts truncated
 * RDATA and trailing bytes, so every count, name and RDLENGTH is checked here first. One pass,
 * no allocation. Throws ERR_CAPA_MALFORMED.
 */
import { DEFAULT_CAPA_RRTYPE, RDLENGTH_V4, RDLENGTH_V6 } from './constants.js';
import { malformed } from './errors.js';

const HEADER = 12;
const MAX_WIRE_NAME = 255;

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

/** Repeated items that must fill the RDATA: header size, where their length is, its size, allowed lengths. */
interface ItemFrame {
  header: number;
  lengthAt: number;
  wide: boolean;
  min: number;
  max: number;
}

const TXT_STRINGS: ItemFrame = { header: 1, lengthAt: 0, wide: false, min: 0, max: 255 };
const EDNS_OPTIONS: ItemFrame = { header: 4, lengthAt: 2, wide: true, min: 0, max: 65535 };
const BITMAP_WINDOWS: ItemFrame = { header: 2, lengthAt: 1, wide: false, min: 1, max: 32 };

type Step = number | 'N' | 'S' | 'T' | 'O' | 'B' | '*';

/**
 * RDATA shapes of the types dns-packet decodes field by field. It frames those records by their
 * fields, not by RDLENGTH, so a record whose fields end anywhere but at its RDLENGTH would make it
 * read bytes the validator framed differently (a record smuggled past the checks). Digits: that
 * many octets; N a name; S a character-string; * any octets to the end; repeated to the end:
 * T character-strings, O EDNS options, B type-bitmap windows. Other types are opaque here.
 * native/core/capa_codec.c keeps the same table.
 */
const SHAPES: ReadonlyMap<number, readonly Step[]> = new Map(
  Object.entries({
    1: '4', 28: '16', // A, AAAA
    2: 'N', 5: 'N', 12: 'N', 39: 'N', // NS, CNAME, PTR, DNAME
    15: '2N', 33: '6N', 6: 'NN20', // MX, SRV, SOA
    16: 'T', 41: 'O', // TXT, OPT
    13: 'SS', 17: 'NN', 35: '4SSSN', // HINFO, RP, NAPTR
    46: '18N*', 43: '4*', 48: '4*', 52: '3*', 44: '2*', 257: '1S*', // RRSIG, DS, DNSKEY, TLSA, SSHFP, CAA
    47: 'NB', 50: '4SSB', // NSEC, NSEC3
  }).map(([type, shape]) => [Number(type), (shape.match(/\d+|\D/g) ?? []).map((t) => (/\d/.test(t) ? Number(t) : t as Step))]),
);

const SSHFP = 44;
/** SSHFP fingerprint length per hash type (RFC 4255, RFC 6594): dns-packet slices by these. */
const SSHFP_FINGERPRINT: Readonly<Record<number, number>> = { 1: 20, 2: 32 };

function skipItems(buf: Uint8Array, off: number, end: number, frame: ItemFrame, type: number): number {
  let p = off;
  while (p < end) {
    if (p + frame.header > end) throw malformed(`type ${type} RDATA item at offset ${p} is cut short`);
    const n = frame.wide ? u16(buf, p + frame.lengthAt) : buf[p + frame.lengthAt]!;
    if (n < frame.min || n > frame.max) throw malformed(`type ${type} RDATA item at offset ${p} has length ${n}`);
    p += frame.header + n;
  }
  return p;
}

/** Offset after one step of a shape; throws when the step does not fit before end. */
function skipStep(buf: Uint8Array, step: Step, off: number, end: number, type: number): number {
  if (typeof step === 'number') {
    if (off + step > end) throw malformed(`type ${type} RDATA is shorter than its fixed fields`);
    return off + step;
  }
  switch (step) {
    case 'N': return skipName(buf, off);
    case 'S':
      if (off >= end || off + 1 + buf[off]! > end) throw malformed(`type ${type} character-string at offset ${off} runs past its RDATA`);
      return off + 1 + buf[off]!;
    case 'T': return skipItems(buf, off, end, TXT_STRINGS, type);
    case 'O': return skipItems(buf, off, end, EDNS_OPTIONS, type);
    case 'B': return skipItems(buf, off, end, BITMAP_WINDOWS, type);
    default:
      if (off > end) throw malformed(`type ${type} RDATA is shorter than its fixed fields`);
      return end;
  }
}

function checkRdata(buf: Uint8Array, type: number, off: number, end: number, rrtype: number): void {
  const rdlength = end - off;
  if (type === rrtype && rdlength !== RDLENGTH_V4 && rdlength !== RDLENGTH_V6) {
    throw malformed(`CAPA RDLENGTH must be ${RDLENGTH_V4} or ${RDLENGTH_V6}, got ${rdlength}`);
  }
  const shape = SHAPES.get(type);
  if (shape === undefined) return;
  let p = off;
  for (const step of shape) p = skipStep(buf, step, p, end, type);
  if (p !== end) throw malformed(`type ${type} RDATA does not fill its RDLENGTH`);
  if (type === SSHFP && SSHFP_FINGERPRINT[buf[off + 1]!] !== rdlength - 2) {
    throw malformed(`SSHFP fingerprint of ${rdlength - 2} octets does not match hash type ${buf[off + 1]}`);
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
