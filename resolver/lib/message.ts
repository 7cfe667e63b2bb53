/** DNS messages for CAPA: query encoding, validated decoding, and reading CAPA / EDE out of a reply. */
import dnsPacket from 'dns-packet';
import { createRequire } from 'node:module';
import { DEFAULT_CAPA_RRTYPE, EDE_OPTION_CODE, EDNS_PAYLOAD, dnsPacketTypeName } from './constants.js';
import { CapaError, malformed } from './errors.js';
import { type CapaRecord, decode as decodeRdata } from './rdata.js';
import { validateMessage } from './validate.js';

/** A resource record as dns-packet yields it, typed only as far as we rely on it. */
export interface WireRecord {
  name: string;
  type: string;
  class?: string;
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

const require = createRequire(import.meta.url);
/** dns-packet's own tables of names, so both codecs agree on every name ('MX', 'UNKNOWN_65280', ...). */
const types = require('dns-packet/types.js') as { toType(name: string): number; toString(type: number): string };
const classes = require('dns-packet/classes.js') as { toString(klass: number): string };
const rcodes = require('dns-packet/rcodes.js') as { toString(rcode: number): string };
const opcodes = require('dns-packet/opcodes.js') as { toString(opcode: number): string };
/** Type numbers by name, looked up once: the table is a long switch. */
const typeNumbers = new Map<string, number>();
const MAX_TYPE_NAMES = 64;

function typeNumber(name: string): number {
  let type = typeNumbers.get(name);
  if (type === undefined) {
    type = types.toType(name);
    if (typeNumbers.size >= MAX_TYPE_NAMES) typeNumbers.clear();
    typeNumbers.set(name, type);
  }
  return type;
}

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

const u16 = (buf: Uint8Array, off: number): number => (buf[off]! << 8) | buf[off + 1]!;

/** Type names by number, looked up once: the table is a long switch. */
const typeNames = new Map<number, string>();

function typeName(type: number): string {
  let name = typeNames.get(type);
  if (name === undefined) {
    name = types.toString(type);
    typeNames.set(type, name); // at most 65,536, in practice a handful
  }
  return name;
}

const TYPE_A = 1;
const TYPE_CNAME = 5;
const CACHE_FLUSH = 0x8000; // the class field's top bit (mDNS), as dns-packet splits it off
const LABEL_POINTER = 0xc0;

interface Cursor {
  bytes: Buffer;
  off: number;
}

/** Room for the text of a validated name: at most 255 bytes on the wire. */
const nameText = Buffer.allocUnsafe(256);

/**
 * The name at cursor.off, as dns-packet reads it (labels as UTF-8, joined by '.', '.' for the
 * root), leaving the cursor after it. The labels are gathered with their dots and decoded once:
 * '.' is ASCII, so that equals decoding each label and joining them. The message was validated,
 * so there are only labels and pointers, and a pointer leads backwards.
 */
function readName(cursor: Cursor): string {
  const { bytes } = cursor;
  let off = cursor.off;
  let after = -1;
  let length = 0;
  for (let label = bytes[off]!; label !== 0; label = bytes[off]!) {
    if (label >= LABEL_POINTER) {
      if (after < 0) after = off + 2;
      off = ((label & 0x3f) << 8) | bytes[off + 1]!;
      continue;
    }
    if (length > 0) nameText[length++] = DOT;
    for (let i = off + 1; i <= off + label; i++) nameText[length++] = bytes[i]!;
    off += label + 1;
  }
  cursor.off = after < 0 ? off + 1 : after;
  return length === 0 ? '.' : nameText.toString('utf8', 0, length);
}

/** The offset after the (validated) name at `off`, without reading it. */
function afterName(bytes: Uint8Array, off: number): number {
  for (let label = bytes[off]!; label !== 0; label = bytes[off]!) {
    if (label >= LABEL_POINTER) return off + 2;
    off += label + 1;
  }
  return off + 1;
}

/**
 * Does a pass over the validated message, reading no name, find only usual records: A of 4
 * octets, CNAME, the CAPA type when dns-packet does not know its number (it reads it as bytes),
 * and an OPT record owned by the root without options? Others go to dns-packet whole, before
 * any work is spent on them.
 */
function isUsual(bytes: Uint8Array, rrtype: number): boolean {
  let off = 12;
  for (let i = u16(bytes, 4); i > 0; i--) off = afterName(bytes, off) + 4;
  const capaIsUnknown = typeName(rrtype).startsWith('UNKNOWN_');
  for (let i = u16(bytes, 6) + u16(bytes, 8) + u16(bytes, 10); i > 0; i--) {
    const owner = off;
    off = afterName(bytes, off);
    const type = u16(bytes, off);
    const length = u16(bytes, off + 8);
    const usual = type === TYPE_OPT ? bytes[owner] === 0 && length === 0
      : type === TYPE_A ? length === 4
        : type === TYPE_CNAME || (type === rrtype && capaIsUnknown);
    if (!usual) return false;
    off += 10 + length;
  }
  return true;
}

/** One record of a usual message, with the fields (and their order) dns-packet gives. */
function usualRecord(cursor: Cursor): WireRecord {
  const name = readName(cursor);
  const { bytes, off } = cursor;
  const type = u16(bytes, off);
  const at = off + 10;
  const length = u16(bytes, off + 8);
  cursor.off = at + length;
  if (type === TYPE_OPT) {
    const flags = u16(bytes, off + 6);
    return {
      name, type: 'OPT', udpPayloadSize: u16(bytes, off + 2), extendedRcode: bytes[off + 4]!, ednsVersion: bytes[off + 5]!,
      flags, flag_do: (flags >> 15) === 1, options: [],
    } as WireRecord;
  }
  const data = type === TYPE_A ? `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`
    : type === TYPE_CNAME ? readName({ bytes, off: at })
      : bytes.subarray(at, at + length); // the CAPA type, which dns-packet reads as bytes
  const klass = u16(bytes, off + 2);
  const ttl = bytes.readUInt32BE(off + 4);
  return { name, type: typeName(type), ttl, class: classes.toString(klass & ~CACHE_FLUSH), flush: (klass & CACHE_FLUSH) !== 0, data } as WireRecord;
}

function usualRecords(cursor: Cursor, count: number): WireRecord[] {
  const records: WireRecord[] = [];
  for (let i = 0; i < count; i++) records.push(usualRecord(cursor));
  return records;
}

/**
 * The usual message (see isUsual), read by hand after validation: what stubs ask and a GRM
 * answers. Undefined for any other message, which dns-packet then reads: the two give the same
 * objects, and a test holds them to it. A validated message ends with its last record.
 */
export function usualMessage(buf: Uint8Array, rrtype: number): Message | undefined {
  if (!isUsual(buf, rrtype)) return undefined;
  const bytes = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const cursor: Cursor = { bytes, off: 12 };
  const questions: Message['questions'] = [];
  for (let i = u16(bytes, 4); i > 0; i--) {
    const name = readName(cursor);
    questions.push({ name, type: typeName(u16(bytes, cursor.off)), class: classes.toString(u16(bytes, cursor.off + 2)) });
    cursor.off += 4;
  }
  const answers = usualRecords(cursor, u16(bytes, 6));
  const authorities = usualRecords(cursor, u16(bytes, 8));
  const additionals = usualRecords(cursor, u16(bytes, 10));
  const flags = u16(bytes, 2);
  return {
    id: u16(bytes, 0), flags: flags & 0x7fff, rcode: rcodes.toString(flags & 0x0f), opcode: opcodes.toString((flags >> 11) & 0x0f),
    questions, answers, authorities, additionals,
  };
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
    if (rr.type === type && Buffer.isBuffer(rr.data)) out.push({ name: rr.name, ttl: rr.ttl ?? 0, record: decodeRdata(rr.data) });
  }
  return out;
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

/** Encodes an EDE option body: info-code and UTF-8 text. */
export function encodeExtendedError(ede: ExtendedError): { code: number; data: Buffer } {
  const text = Buffer.from(ede.text, 'utf8');
  const data = Buffer.alloc(2 + text.length);
  data.writeUInt16BE(ede.code, 0);
  text.copy(data, 2);
  return { code: EDE_OPTION_CODE, data };
}
