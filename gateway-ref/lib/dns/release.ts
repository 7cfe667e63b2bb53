/**
 * A release (DNS UPDATE deleting one CAPA RR, resolver/codec/update.ts) as the gateway receives
 * it: decoded and checked; any deviation is ERR_CAPA_MALFORMED. Pure.
 */
import { DEFAULT_CAPA_RRTYPE, dnsPacketTypeName } from '../../../resolver/codec/constants.js';
import { isCapaError, malformed } from '../../../resolver/codec/errors.js';
import { decodeMessage, type Message } from '../../../resolver/codec/message.js';
import { parseQueryName } from '../../../resolver/codec/qname.js';
import { decode as decodeRdata } from '../../../resolver/codec/rdata.js';
import { DNS_PACKET_CLASS_NONE, normalizeName, type Release } from '../../../resolver/codec/update.js';

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
    zone = normalizeName(zones[0]!.name);
    qname = normalizeName(rr.name);
    if (parseQueryName(qname).host !== zone) throw malformed(`release owner "${qname}" is not in zone "${zone}"`);
  } catch (err) {
    if (isCapaError(err, 'ERR_CAPA_MALFORMED')) throw err;
    throw malformed(`release names: ${(err as Error).message}`);
  }
  return { id: message.id, zone, qname, record: decodeRdata(rr.data) };
}
