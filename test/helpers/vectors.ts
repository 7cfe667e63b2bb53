/** The shared wire vectors, test/vectors/capa.json, typed. */
import dnsPacket from 'dns-packet';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CapaRecord } from '../../resolver/codec/rdata.js';
import { repoRoot } from './c-build.js';
import { walkMessage } from './wire-fuzz.js';

export interface RdataVector {
  name: string;
  fields: CapaRecord;
  wire: string;
  presentation: string;
  generic: string;
}

export interface BadVector {
  name: string;
  error: string;
}

export interface MessageVector {
  name: string;
  wire: string;
  valid: boolean;
  rcode?: string;
  capa?: CapaRecord[];
  ede?: { code: number; text: string }[];
}

export interface Vectors {
  rrtype: number;
  rdata: {
    valid: RdataVector[];
    malformed: (BadVector & { wire: string })[];
    badPresentation: (BadVector & { text: string })[];
  };
  messages: MessageVector[];
}

export const vectors: Vectors = JSON.parse(readFileSync(join(repoRoot, 'test/vectors/capa.json'), 'utf8')) as Vectors;

export function hex(text: string): Buffer {
  return Buffer.from(text, 'hex');
}

/** One answer of each type the validator frames, encoded by dns-packet (the decoder's own idea of each RDATA). */
export const WELL_FORMED: dnsPacket.Answer[] = [
  { type: 'A', name: 'a.example', data: '192.0.2.1' },
  { type: 'AAAA', name: 'a.example', data: '2001:db8::1' },
  { type: 'NS', name: 'example', data: 'ns1.example' },
  { type: 'CNAME', name: 'www.example', data: 'a.example' },
  { type: 'PTR', name: '1.2.0.192.in-addr.arpa', data: 'a.example' },
  { type: 'DNAME', name: 'old.example', data: 'example' },
  { type: 'MX', name: 'example', data: { preference: 10, exchange: 'mail.example' } },
  { type: 'SRV', name: '_sip._udp.example', data: { priority: 1, weight: 2, port: 5060, target: 'sip.example' } },
  { type: 'SOA', name: 'example', data: { mname: 'ns1.example', rname: 'admin.example', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 } },
  { type: 'TXT', name: 'example', data: ['v=spf1 -all', ''] },
  { type: 'HINFO', name: 'a.example', data: { cpu: 'x86', os: 'linux' } },
  { type: 'RP', name: 'example', data: { mbox: 'admin.example', txt: 'info.example' } },
  { type: 'NAPTR', name: 'example', data: { order: 1, preference: 2, flags: 'S', services: 'SIP+D2U', regexp: '', replacement: '_sip._udp.example' } },
  { type: 'SSHFP', name: 'a.example', data: { algorithm: 1, hash: 1, fingerprint: 'ab'.repeat(20) } },
  { type: 'SSHFP', name: 'a.example', data: { algorithm: 4, hash: 2, fingerprint: 'cd'.repeat(32) } },
  { type: 'DS', name: 'example', data: { keyTag: 1, algorithm: 8, digestType: 2, digest: Buffer.alloc(32, 1) } },
  { type: 'DNSKEY', name: 'example', data: { flags: 257, algorithm: 8, key: Buffer.alloc(64, 2) } },
  { type: 'TLSA', name: '_443._tcp.example', data: { usage: 3, selector: 1, matchingType: 1, certificate: Buffer.alloc(32, 3) } },
  { type: 'RRSIG', name: 'example', data: { typeCovered: 'A', algorithm: 8, labels: 1, originalTTL: 60, expiration: 2, inception: 1, keyTag: 9, signersName: 'example', signature: Buffer.alloc(64, 4) } },
  { type: 'NSEC', name: 'a.example', data: { nextDomain: 'b.example', rrtypes: ['A', 'AAAA', 'RRSIG', 'CAA'] } },
  { type: 'NSEC3', name: 'example', data: { algorithm: 1, flags: 0, iterations: 0, salt: Buffer.alloc(4, 5), nextDomain: Buffer.alloc(20, 6), rrtypes: ['A'] } },
  { type: 'CAA', name: 'example', data: { flags: 0, tag: 'issue', value: 'ca.example' } },
  { type: 'NULL', name: 'example', data: Buffer.alloc(3, 7) },
] as unknown as dnsPacket.Answer[];

/** A response carrying these answers, as dns-packet encodes it (no compression). */
export function responseWith(answers: dnsPacket.Answer[]): Buffer {
  return dnsPacket.encode({ type: 'response', id: 1, flags: 0, questions: [], answers });
}

/** RDATA of the only record of a message dns-packet encoded. */
function rdataOf(type: string): Buffer {
  const wire = responseWith(WELL_FORMED.filter((a) => a.type === type).slice(0, 1));
  const rr = walkMessage(wire)!.records[0]!;
  return wire.subarray(rr.rdataOffset, rr.rdataOffset + rr.rdlength);
}

function typeNumber(type: string): number {
  return walkMessage(responseWith(WELL_FORMED.filter((a) => a.type === type).slice(0, 1)))!.records[0]!.type;
}

/** A record with the root as owner, class IN, TTL 0. */
function record(type: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(11);
  fixed.writeUInt16BE(type, 1);
  fixed.writeUInt16BE(1, 3);
  fixed.writeUInt16BE(rdata.length, 9);
  return Buffer.concat([fixed, rdata]);
}

function answerOnly(...records: Buffer[]): Buffer {
  const header = Buffer.from('123484000000000000000000', 'hex');
  header.writeUInt16BE(records.length, 6);
  return Buffer.concat([header, ...records]);
}

/**
 * Record 1 has type `type`, RDATA = its fields + 20 octets; record 2 is an opaque 11-octet record.
 * Framed by its fields instead of its RDLENGTH, record 1 ends early and the next bytes read as a
 * CAPA record whose 20-octet RDATA swallows record 2: the RDLENGTHs say [type, 4660], a field
 * reader would see [type, CAPA].
 */
function smuggler(type: number, fields: Buffer): Buffer {
  const capaHeader = Buffer.from('00ff000001000000' + '1e0014', 'hex');
  const capaStart = Buffer.from('000601bb20010db800', 'hex');
  return answerOnly(record(type, Buffer.concat([fields, capaHeader, capaStart])), record(0x1234, Buffer.alloc(0)));
}

export interface FramingCase {
  name: string;
  wire: Buffer;
  /** For smuggling cases, the type of record 1. */
  smuggles?: number;
}

/** Messages whose only defect is the framing of one typed RDATA: every one is malformed. */
export const FRAMING_CASES: FramingCase[] = ((): FramingCase[] => {
  const exact = ['A', 'AAAA', 'NS', 'CNAME', 'PTR', 'DNAME', 'MX', 'SRV', 'SOA', 'HINFO', 'RP', 'NAPTR', 'SSHFP', 'NSEC', 'NSEC3'];
  const cases: FramingCase[] = exact.map((type) => ({
    name: `${type}: fields that end before RDLENGTH cannot smuggle a record past the validator`,
    wire: smuggler(typeNumber(type), rdataOf(type)),
    smuggles: typeNumber(type),
  }));
  const minimum: [string, number][] = [['DS', 4], ['DNSKEY', 4], ['TLSA', 3], ['RRSIG', 19], ['CAA', 1], ['SSHFP', 22]];
  for (const [type, least] of minimum) {
    cases.push({ name: `${type}: RDATA shorter than its fixed fields`, wire: answerOnly(record(typeNumber(type), Buffer.alloc(least - 1, 1))) });
  }
  const sshfp = rdataOf('SSHFP');
  const nsec = rdataOf('NSEC');
  const odd: [string, number, Buffer][] = [
    ['SSHFP: fingerprint length does not match hash type 2', 44, Buffer.concat([sshfp.subarray(0, 1), Buffer.from([2]), sshfp.subarray(2)])],
    ['SSHFP: one octet after the fingerprint', 44, Buffer.concat([sshfp, Buffer.from([0])])],
    ['SSHFP: unknown hash type', 44, Buffer.concat([sshfp.subarray(0, 1), Buffer.from([3]), sshfp.subarray(2)])],
    ['NSEC: empty bitmap window', 47, Buffer.concat([nsec.subarray(0, nsec.length - 3), Buffer.from([1, 0])])],
    ['NSEC: bitmap window of 33 octets', 47, Buffer.concat([nsec.subarray(0, nsec.length - 3), Buffer.from([1, 33]), Buffer.alloc(33)])],
    ['NSEC: bitmap window cut short', 47, nsec.subarray(0, nsec.length - 1)],
    ['TXT: string runs past RDATA', 16, hex('0461626364ff')],
    ['TXT: string cut short', 16, hex('05616263')],
    ['OPT: option runs past RDATA', 41, hex('000f0002c0')],
    ['OPT: option header cut short', 41, hex('000f')],
    ['HINFO: one string only', 13, hex('03783836')],
    ['CAA: tag runs past RDATA', 257, hex('0005697373')],
  ];
  for (const [name, type, rdata] of odd) cases.push({ name, wire: answerOnly(record(type, rdata)) });
  return cases;
})();

/** Every message vector's bytes, valid and invalid, and a record of every framed type: the seeds of the mutation fuzzers. */
export const messageSeeds: Buffer[] = [...vectors.messages.map((m) => hex(m.wire)), responseWith(WELL_FORMED)];
