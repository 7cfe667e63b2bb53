/**
 * The release message (DESIGN "Release"): a DNS UPDATE (opcode 5) that deletes one CAPA RR,
 * RFC 2136 §2.5.4. Zone section: `<host>` IN SOA. Update section: owner QNAME, CLASS NONE,
 * TTL 0, TYPE CAPA, RDATA of the allocation. Pure, no I/O.
 */
import { DEFAULT_CAPA_RRTYPE } from './constants.js';
import { invalidArg } from './errors.js';
import { nameLength, writeName } from './message.js';
import { checkName, parseQueryName } from './qname.js';
import { type CapaRecord, encode as encodeRdata } from './rdata.js';

const OPCODE_UPDATE = 5;
const TYPE_SOA = 6;
const CLASS_IN = 1;
/** RFC 2136 §2.5.4: class NONE (254) means "delete this RR". */
const CLASS_NONE = 254;
/** How dns-packet names class 254, which it does not know. */
export const DNS_PACKET_CLASS_NONE = `UNKNOWN_${CLASS_NONE}`;

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

/** A release's zone or owner as both ends compare it: lower case, no trailing dot, checked. */
export function normalizeName(name: string): string {
  const n = name.replace(/\.$/, '').toLowerCase();
  checkName(n);
  return n;
}

const CLASS_TYPE_LENGTH = 4;
const TTL_RDLENGTH_LENGTH = 6;

/** Encodes the release; the owner must be `<zone>` or `_<port>._<proto>.<zone>`. */
export function encodeRelease(spec: ReleaseSpec): Buffer {
  const zone = normalizeName(spec.zone);
  const qname = normalizeName(spec.qname);
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
