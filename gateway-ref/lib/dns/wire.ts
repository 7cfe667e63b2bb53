/**
 * Encoding of the GRM's responses. Written by hand rather than through dns-packet so the question
 * goes back byte for byte as it came (dns-packet re-encodes names, which loses escapes and case
 * tricks some clients check), and because this is the hot path of every allocation. Pure.
 */
import { EDNS_PAYLOAD } from '../../../resolver/codec/constants.js';
import { ipToBytes } from '../../../resolver/codec/ip.js';
import { nameLength, writeName } from '../../../resolver/codec/message.js';
import type { DataRecord } from '../zone/zone-file.js';

/** Owner placeholder: a compression pointer to the question name (offset 12). */
export const QUESTION_NAME = Symbol('question name');

export interface ResourceRecord {
  name: string | typeof QUESTION_NAME;
  type: number;
  ttl: number;
  rdata: Uint8Array;
}

export interface EdnsReply {
  /** Upper 8 bits of a 12-bit rcode (BADVERS is 1 here, 0 in the header). */
  extendedRcode: number;
  options: { code: number; data: Uint8Array }[];
}

export interface ResponseSpec {
  id: number;
  /** Header flags without QR (opcode, AA, TC, RD, RA, low 4 bits of the rcode). */
  flags: number;
  /** The question section as received: zero or one question. */
  question: Uint8Array;
  answers: readonly ResourceRecord[];
  additionals: readonly ResourceRecord[];
  /** An OPT record goes out only when the request carried one (RFC 6891 §7). */
  edns: EdnsReply | undefined;
}

export const TYPE = { A: 1, CNAME: 5, AAAA: 28, OPT: 41 } as const;
const CLASS_IN = 1;
const QR = 0x8000;
export const FLAG = { AA: 0x0400, TC: 0x0200, RD: 0x0100, RA: 0x0080 } as const;

function withoutTrailingDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

export function encodeName(name: string): Uint8Array {
  const text = withoutTrailingDot(name);
  const out = Buffer.allocUnsafe(nameLength(text));
  writeName(out, 0, text);
  return out;
}

const TYPE_OF: Record<DataRecord['type'], number> = { A: TYPE.A, AAAA: TYPE.AAAA, CNAME: TYPE.CNAME };

/** RDATA of zone records, encoded once: the same few records go out in every answer. */
const rdataOf = new WeakMap<DataRecord, Uint8Array>();

export function dataRecord(record: DataRecord, name: ResourceRecord['name'] = record.name): ResourceRecord {
  let rdata = rdataOf.get(record);
  if (rdata === undefined) {
    rdata = record.type === 'CNAME' ? encodeName(record.data) : ipToBytes(record.data);
    rdataOf.set(record, rdata);
  }
  return { name, type: TYPE_OF[record.type], ttl: record.ttl, rdata };
}

function rrLength(rr: ResourceRecord): number {
  return (rr.name === QUESTION_NAME ? 2 : nameLength(withoutTrailingDot(rr.name))) + 10 + rr.rdata.length;
}

function writeRR(buf: Buffer, off: number, rr: ResourceRecord): number {
  off = rr.name === QUESTION_NAME ? buf.writeUInt16BE(0xc00c, off) : writeName(buf, off, withoutTrailingDot(rr.name));
  off = buf.writeUInt16BE(rr.type, off);
  off = buf.writeUInt16BE(CLASS_IN, off);
  off = buf.writeUInt32BE(rr.ttl >>> 0, off);
  off = buf.writeUInt16BE(rr.rdata.length, off);
  buf.set(rr.rdata, off);
  return off + rr.rdata.length;
}

function optLength(edns: EdnsReply): number {
  return 11 + edns.options.reduce((n, o) => n + 4 + o.data.length, 0);
}

function writeOpt(buf: Buffer, off: number, edns: EdnsReply): number {
  buf[off++] = 0; // root owner
  off = buf.writeUInt16BE(TYPE.OPT, off);
  off = buf.writeUInt16BE(EDNS_PAYLOAD, off);
  buf[off++] = edns.extendedRcode;
  buf[off++] = 0; // EDNS version 0
  off = buf.writeUInt16BE(0, off); // no DO: the GRM does not sign
  off = buf.writeUInt16BE(optLength(edns) - 11, off);
  for (const o of edns.options) {
    off = buf.writeUInt16BE(o.code, off);
    off = buf.writeUInt16BE(o.data.length, off);
    buf.set(o.data, off);
    off += o.data.length;
  }
  return off;
}

/**
 * The whole response. With `maxSize` (UDP), a response that does not fit is sent as header,
 * question and OPT only, with TC set, so the client retries over TCP (RFC 7766 §5).
 */
export function encodeResponse(spec: ResponseSpec, maxSize = Infinity): Buffer {
  let recordsLength = 0;
  for (const rr of spec.answers) recordsLength += rrLength(rr);
  for (const rr of spec.additionals) recordsLength += rrLength(rr);
  const fixed = 12 + spec.question.length + (spec.edns ? optLength(spec.edns) : 0);
  const truncated = fixed + recordsLength > maxSize;
  const answers = truncated ? [] : spec.answers;
  const additionals = truncated ? [] : spec.additionals;
  // Every byte is written below, so the buffer need not be zeroed first.
  const buf = Buffer.allocUnsafe(truncated ? fixed : fixed + recordsLength);
  buf.writeUInt16BE(spec.id, 0);
  buf.writeUInt16BE(QR | spec.flags | (truncated ? FLAG.TC : 0), 2);
  buf.writeUInt16BE(spec.question.length === 0 ? 0 : 1, 4);
  buf.writeUInt16BE(answers.length, 6);
  buf.writeUInt16BE(0, 8);
  buf.writeUInt16BE(additionals.length + (spec.edns ? 1 : 0), 10);
  buf.set(spec.question, 12);
  let off = 12 + spec.question.length;
  for (const rr of answers) off = writeRR(buf, off, rr);
  for (const rr of additionals) off = writeRR(buf, off, rr);
  if (spec.edns) writeOpt(buf, off, spec.edns);
  return buf;
}
