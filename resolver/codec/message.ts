/** DNS messages for CAPA: query encoding, validated decoding, and reading CAPA / EDE out of a reply. */
import dnsPacket from 'dns-packet';
import { DEFAULT_CAPA_RRTYPE, EDE_OPTION_CODE, EDNS_PAYLOAD, dnsPacketTypeName } from './constants.js';
import { CapaError, malformed } from './errors.js';
import { type CapaRecord, decode as decodeRdata } from './rdata.js';
import { typeNumber } from './dns-names.js';
import { usualMessage } from './usual-message.js';
import { validateMessage } from './validate.js';

/** A resource record as dns-packet yields it, typed only as far as we rely on it. */
export interface WireRecord {
  name: string;
  type: string;
  class?: string;
  /** The class field's top bit, which both decoders split off as mDNS's cache-flush bit. */
  flush?: boolean;
  ttl?: number;
  data?: unknown;
  options?: { code: number; data?: Buffer }[];
}

export interface Message {
  id: number;
  flags: number;
  rcode: string;
  opcode: string;
  questions: { name: string; type: string; class: string }[];
  answers: WireRecord[];
  authorities: WireRecord[];
  additionals: WireRecord[];
}

const CLASS_IN = 1;
const TYPE_OPT = 41;

export interface QuerySpec {
  id: number;
  name: string;
  /** dns-packet type name ('A', 'AAAA', 'UNKNOWN_65280'). */
  type: string;
  /** Recursion desired: off for CAPA (the GRM is authoritative), on for a plain A/AAAA fallback. */
  rd?: boolean;
  /** Attach an OPT record (payload 1232) so Extended DNS Errors can come back. Default on. */
  edns?: boolean;
}

const DOT = 0x2e;


/** The name as dns-packet trims it: a leading and a trailing dot off each line. */
function trimmed(name: string): string {
  const plain = name.charCodeAt(0) !== DOT && name.charCodeAt(name.length - 1) !== DOT && !/[\n\r\u2028\u2029]/.test(name);
  return plain ? name : name.replace(/^\.|\.$/gm, '');
}

const OPT_RR_LENGTH = 11;

/** Wire length of a name without leading or trailing dot ('' is the root). */
export function nameLength(name: string): number {
  return name === '' ? 1 : Buffer.byteLength(name) + 2;
}

/**
 * Writes a name without leading or trailing dot ('' is the root) as labels at `off`, as dns-packet
 * does, and returns the offset after it. The text goes in with one write, whose dots then become
 * label lengths (a '.' is byte 0x2e in UTF-8, and no other character contains that byte).
 */
export function writeName(buf: Buffer, off: number, name: string): number {
  if (name === '') {
    buf[off] = 0;
    return off + 1;
  }
  const end = off + 1 + buf.write(name, off + 1);
  let lengthAt = off;
  for (let i = off + 1; i < end; i++) {
    if (buf[i] !== DOT) continue;
    buf[lengthAt] = i - lengthAt - 1;
    lengthAt = i;
  }
  buf[lengthAt] = end - lengthAt - 1;
  buf[end] = 0;
  return end + 1;
}

/**
 * The query, byte for byte as dns-packet would encode it, written straight into one buffer:
 * every CAPA lookup sends one, and the generic encoder costs several times more.
 */
export function encodeQuery(spec: QuerySpec): Buffer {
  const name = trimmed(spec.name);
  const edns = spec.edns !== false;
  const buf = Buffer.allocUnsafe(12 + nameLength(name) + 4 + (edns ? OPT_RR_LENGTH : 0));
  buf.writeUInt16BE(spec.id, 0);
  buf.writeUInt16BE(spec.rd ? dnsPacket.RECURSION_DESIRED : 0, 2);
  buf.writeUInt16BE(1, 4); // QDCOUNT
  buf.writeUInt32BE(0, 6); // ANCOUNT, NSCOUNT
  buf.writeUInt16BE(edns ? 1 : 0, 10); // ARCOUNT
  let off = writeName(buf, 12, name);
  off = buf.writeUInt16BE(typeNumber(spec.type), off);
  off = buf.writeUInt16BE(CLASS_IN, off);
  if (edns) {
    buf[off] = 0; // root owner
    off = buf.writeUInt16BE(TYPE_OPT, off + 1);
    off = buf.writeUInt16BE(EDNS_PAYLOAD, off);
    buf.writeUInt32BE(0, off); // extended rcode, version, flags
    buf.writeUInt16BE(0, off + 4); // no options
  }
  return buf;
}

/**
 * Validates, then decodes. Any defect (ours or one dns-packet trips on) is ERR_CAPA_MALFORMED.
 * The usual message (see usualMessage) is read by hand, the rest by dns-packet; both give the
 * same objects. Requests and replies alike: a GRM decodes one per query, a terminal one per answer.
 */
export function decodeMessage(buf: Uint8Array, rrtype = DEFAULT_CAPA_RRTYPE): Message {
  validateMessage(buf, rrtype);
  return usualMessage(buf, rrtype) ?? decodeValidated(buf);
}

function decodeValidated(buf: Uint8Array): Message {
  const bytes = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  try {
    const packet = dnsPacket.decode(bytes) as unknown as Partial<Message>;
    if (dnsPacket.decode.bytes !== bytes.length) throw malformed('message length does not match its contents');
    return {
      id: packet.id ?? 0,
      flags: packet.flags ?? 0,
      rcode: packet.rcode ?? 'NOERROR',
      opcode: packet.opcode ?? 'QUERY',
      questions: packet.questions ?? [],
      answers: packet.answers ?? [],
      authorities: packet.authorities ?? [],
      additionals: packet.additionals ?? [],
    };
  } catch (err) {
    if (err instanceof CapaError) throw err;
    throw malformed(`undecodable DNS message: ${(err as Error).message}`);
  }
}

export interface CapaAnswer {
  name: string;
  ttl: number;
  record: CapaRecord;
}

/** The CAPA records of the answer section. */
export function capaAnswers(message: Message, rrtype = DEFAULT_CAPA_RRTYPE): CapaAnswer[] {
  const type = dnsPacketTypeName(rrtype);
  const out: CapaAnswer[] = [];
  for (const rr of message.answers) {
    if (rr.type === type && isClassIn(rr) && Buffer.isBuffer(rr.data)) out.push({ name: rr.name, ttl: rr.ttl ?? 0, record: decodeRdata(rr.data) });
  }
  return out;
}

/**
 * The upper 8 bits of a 12-bit RCODE (RFC 6891 §6.1.3), from the first OPT record; 0 without one.
 * A reply whose header says NOERROR but whose OPT says otherwise did not answer NOERROR.
 */
export function extendedRcodeBits(message: Message): number {
  const opt = message.additionals.find((rr) => rr.type === 'OPT') as (WireRecord & { extendedRcode?: number }) | undefined;
  return opt?.extendedRcode ?? 0;
}

/** Class IN exactly (1): in unicast DNS the top bit is part of the class, so 0x8001 is not IN. */
export function isClassIn(rr: WireRecord): boolean {
  return rr.class === 'IN' && rr.flush !== true;
}

export interface ExtendedError {
  code: number;
  text: string;
}

/** Extended DNS Errors (RFC 8914) carried in the OPT record. */
export function extendedErrors(message: Message): ExtendedError[] {
  const out: ExtendedError[] = [];
  for (const rr of message.additionals) {
    if (rr.type !== 'OPT') continue;
    for (const opt of rr.options ?? []) {
      if (opt.code !== EDE_OPTION_CODE || !opt.data || opt.data.length < 2) continue;
      out.push({ code: opt.data.readUInt16BE(0), text: opt.data.subarray(2).toString('utf8') });
    }
  }
  return out;
}
