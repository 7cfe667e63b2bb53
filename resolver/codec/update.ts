/**
 * The release message (DESIGN "Release"): a DNS UPDATE (opcode 5) that deletes one CAPA RR,
 * RFC 2136 §2.5.4. Zone section: `<host>` IN SOA. Update section: owner QNAME, CLASS NONE,
 * TTL 0, TYPE CAPA, RDATA of the allocation. Pure, no I/O.
 */
import { DEFAULT_CAPA_RRTYPE, dnsPacketTypeName } from './constants.js';
import { invalidArg, isCapaError, malformed } from './errors.js';
import { decodeMessage, type Message, nameLength, writeName } from './message.js';
import { checkName, parseQueryName } from './qname.js';
import { type CapaRecord, decode as decodeRdata, encode as encodeRdata } from './rdata.js';

const OPCODE_UPDATE = 5;
const TYPE_SOA = 6;
const CLASS_IN = 1;
/** RFC 2136 §2.5.4: class NONE (254) means "delete this RR". */
const CLASS_NONE = 254;
/** How dns-packet names class 254, which it does not know. */
const DNS_PACKET_CLASS_NONE = `UNKNOWN_${CLASS_NONE}`;

export interface Release {
  id: number;
  /** The zone: the destination host (or its reverse name), lower case, no trailing dot. */
  zone: string;
  /** Owner of the CAPA RR: the QNAME the allocation was asked under. */
  qname: string;
  record: CapaRecord;
}

export interface ReleaseSpec extends Release {
  /** Default DEFAULT_CAPA_RRTYPE. */
  rrtype?: number;
}

function normalize(name: string): string {
  const n = name.replace(/\.$/, '').toLowerCase();
  checkName(n);
  return n;
}

const CLASS_TYPE_LENGTH = 4;
const TTL_RDLENGTH_LENGTH = 6;

/** Encodes the release; the owner must be `<zone>` or `_<port>._<proto>.<zone>`. */
export function encodeRelease(spec: ReleaseSpec): Buffer {
  const zone = normalize(spec.zone);
  const qname = normalize(spec.qname);
  if (parseQueryName(qname).host !== zone) throw invalidArg(`release owner "${qname}" is not in zone "${zone}"`);
  const rdata = encodeRdata(spec.record);
  const buf = Buffer.allocUnsafe(12 + nameLength(zone) + CLASS_TYPE_LENGTH + nameLength(qname) + CLASS_TYPE_LENGTH + TTL_RDLENGTH_LENGTH + rdata.length);
  buf.writeUInt16BE(spec.id, 0);
  buf.writeUInt16BE(OPCODE_UPDATE << 11, 2);
  buf.writeUInt32BE(0x00010000, 4); // ZOCOUNT 1, PRCOUNT 0
  buf.writeUInt32BE(0x00010000, 8); // UPCOUNT 1, ADCOUNT 0
  let off = writeName(buf, 12, zone);
  off = buf.writeUInt16BE(TYPE_SOA, off);
  off = buf.writeUInt16BE(CLASS_IN, off);
  off = writeName(buf, off, qname);
  off = buf.writeUInt16BE(spec.rrtype ?? DEFAULT_CAPA_RRTYPE, off);
  off = buf.writeUInt16BE(CLASS_NONE, off);
  off = buf.writeUInt32BE(0, off); // TTL 0, as RFC 2136 requires for deletions
  off = buf.writeUInt16BE(rdata.length, off);
  buf.set(rdata, off);
  return buf;
}

/**
 * Decodes and checks a release as the gateway receives it; any deviation is ERR_CAPA_MALFORMED.
 * `message` is buf already decoded (decodeMessage), when the caller has it: no second pass.
 */
export function decodeRelease(buf: Uint8Array, rrtype = DEFAULT_CAPA_RRTYPE, message: Message = decodeMessage(buf, rrtype)): Release {
  if ((buf[2]! & 0x80) !== 0) throw malformed('a release is a request, this message is a response');
  if (message.opcode !== 'UPDATE') throw malformed(`a release has opcode UPDATE, got ${message.opcode}`);
  const zones = message.questions;
  if (zones.length !== 1 || zones[0]!.type !== 'SOA' || zones[0]!.class !== 'IN') {
    throw malformed('a release has exactly one zone, of type SOA and class IN');
  }
  if (message.answers.length !== 0) throw malformed('a release has no prerequisites');
  if (message.additionals.some((rr) => rr.type !== 'OPT')) throw malformed('a release has no additional records but OPT');
  const updates = message.authorities;
  if (updates.length !== 1) throw malformed(`a release deletes exactly one RR, got ${updates.length}`);
  const rr = updates[0]!;
  if (rr.type !== dnsPacketTypeName(rrtype) || rr.class !== DNS_PACKET_CLASS_NONE || rr.ttl !== 0 || !Buffer.isBuffer(rr.data)) {
    throw malformed(`a release deletes a CAPA RR (TYPE${rrtype}, CLASS NONE, TTL 0)`);
  }
  let zone: string;
  let qname: string;
  try {
    zone = normalize(zones[0]!.name);
    qname = normalize(rr.name);
    if (parseQueryName(qname).host !== zone) throw malformed(`release owner "${qname}" is not in zone "${zone}"`);
  } catch (err) {
    if (isCapaError(err, 'ERR_CAPA_MALFORMED')) throw err;
    throw malformed(`release names: ${(err as Error).message}`);
  }
  return { id: message.id, zone, qname, record: decodeRdata(rr.data) };
}
