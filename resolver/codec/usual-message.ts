/**
 * The usual message read by hand: records of type A, CNAME and CAPA and an OPT record without
 * options, which is what stubs ask and a GRM answers. dns-packet reads every other message, and
 * a test holds the two to the same objects. Pure; the message must have been validated first.
 */
import { classes, opcodes, rcodes, typeName } from './dns-names.js';
import type { Message, WireRecord } from './message.js';

const DOT = 0x2e;
const TYPE_A = 1;
const TYPE_CNAME = 5;
const TYPE_OPT = 41;
const CACHE_FLUSH = 0x8000; // the class field's top bit (mDNS), as dns-packet splits it off
const LABEL_POINTER = 0xc0;

const u16 = (buf: Uint8Array, off: number): number => (buf[off]! << 8) | buf[off + 1]!;

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

