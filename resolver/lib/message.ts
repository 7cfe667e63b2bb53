/** DNS messages for CAPA: query encoding, validated decoding, and reading CAPA / EDE out of a reply. */
import dnsPacket from 'dns-packet';
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

export function encodeQuery(spec: QuerySpec): Buffer {
  const packet = {
    type: 'query' as const,
    id: spec.id,
    flags: spec.rd ? dnsPacket.RECURSION_DESIRED : 0,
    questions: [{ name: spec.name, type: spec.type, class: 'IN' }],
    additionals: spec.edns === false ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_PAYLOAD, flags: 0, options: [] }],
  };
  return dnsPacket.encode(packet as unknown as dnsPacket.Packet);
}

/** Validates, then decodes. Any defect (ours or one dns-packet trips on) is ERR_CAPA_MALFORMED. */
export function decodeMessage(buf: Uint8Array, rrtype = DEFAULT_CAPA_RRTYPE): Message {
  validateMessage(buf, rrtype);
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
  return message.answers
    .filter((rr) => rr.type === type && Buffer.isBuffer(rr.data))
    .map((rr) => ({ name: rr.name, ttl: rr.ttl ?? 0, record: decodeRdata(rr.data as Buffer) }));
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
