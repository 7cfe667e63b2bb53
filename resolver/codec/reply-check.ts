/**
 * RFC 5452 matching of a reply against the query it must answer: ID, QR, opcode, question; a
 * truncated reply is told apart. Pure, shared by the stub's transport and the gateway's forwarder.
 */
import { isCapaError } from './errors.js';
import { decodeMessage, type Message } from './message.js';
import { sameName } from './qname.js';

const HEADER = 12;
const QR = 0x80; // in the third header octet
const TC = 0x02; // in the third header octet

export interface Question {
  name: string;
  /** dns-packet type name ('A', 'UNKNOWN_65280', 'SOA'). */
  type: string;
  class: string;
}

/** What a reply must carry to be the answer to our query. */
export interface Expectation {
  id: number;
  question: Question;
  /** dns-packet opcode name; the reply must have the query's opcode. */
  opcode: string;
  rrtype: number;
}

export type ReplyCheck =
  | { kind: 'accept'; message: Message }
  | { kind: 'truncated' }
  | { kind: 'ignore'; reason: string; malformed: boolean };

/**
 * RFC 5452 matching of a datagram or TCP frame against the query we sent. Pure.
 * A truncated reply is judged on its header alone: it may be cut anywhere, and if a spoofer
 * sets TC the only cost is the retry over TCP, where spoofing is much harder.
 */
export function checkReply(bytes: Uint8Array, expect: Expectation): ReplyCheck {
  if (bytes.length < HEADER) return { kind: 'ignore', reason: 'shorter than a DNS header', malformed: true };
  if (((bytes[0]! << 8) | bytes[1]!) !== expect.id) return { kind: 'ignore', reason: 'wrong ID', malformed: false };
  if ((bytes[2]! & QR) === 0) return { kind: 'ignore', reason: 'not a response', malformed: false };
  if ((bytes[2]! & TC) !== 0) return { kind: 'truncated' };
  let message: Message;
  try {
    message = decodeMessage(bytes, expect.rrtype);
  } catch (err) {
    if (!isCapaError(err, 'ERR_CAPA_MALFORMED')) throw err;
    return { kind: 'ignore', reason: err.message, malformed: true };
  }
  if (message.opcode !== expect.opcode) return { kind: 'ignore', reason: `opcode ${message.opcode}`, malformed: false };
  const q = message.questions;
  const want = expect.question;
  if (q.length !== 1 || !sameName(q[0]!.name, want.name) || q[0]!.type !== want.type || q[0]!.class !== want.class) {
    return { kind: 'ignore', reason: 'wrong question', malformed: false };
  }
  return { kind: 'accept', message };
}
