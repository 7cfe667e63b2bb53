/**
 * test/vectors/outcomes.json, typed, with each case's reply turned into bytes: the query is
 * encoded as the stub sends it, the reply shaped from it by the fake DNS server's encoder.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dnsPacketTypeName, type Protocol } from '../../resolver/codec/constants.js';
import { decodeMessage, encodeQuery, type ExtendedError } from '../../resolver/codec/message.js';
import { parseRdata } from '../../resolver/codec/presentation.js';
import { buildQueryName } from '../../resolver/codec/qname.js';
import { repoRoot } from './c-build.js';
import { capaRecord, type RecordSpec, reply, type ReplyShape } from './fake-dns-server.js';

export interface OutcomeQuery {
  host: string;
  /** null: the bare host. */
  port: number | null;
  protocol: Protocol;
  id: number;
}

interface RecordDescription extends RecordSpec {
  data?: unknown;
}

interface ReplyDescription {
  rcode?: string;
  aa?: boolean;
  tc?: boolean;
  id?: number;
  questions?: { name: string; type: string }[];
  answers?: RecordDescription[];
  authorities?: RecordDescription[];
  additionals?: RecordDescription[];
  ede?: ExtendedError[];
}

interface OutcomeCase {
  name: string;
  outcome: string;
  query?: Partial<OutcomeQuery>;
  reply: ReplyDescription;
  qr?: boolean;
  opcode?: number;
  cut?: number;
  trailing?: number;
}

interface OutcomeFile {
  rrtype: number;
  query: OutcomeQuery;
  cases: OutcomeCase[];
}

/** One case ready to judge: the question, the reply bytes and the expected outcome. */
export interface OutcomeVector {
  name: string;
  query: OutcomeQuery;
  qname: string;
  reply: Buffer;
  /** 'capa', 'fallback', 'tcp', 'ignore', 'malformed', or 'fail CODE' / 'next CODE'. */
  outcome: string;
}

const file = JSON.parse(readFileSync(join(repoRoot, 'test/vectors/outcomes.json'), 'utf8')) as OutcomeFile;
export const OUTCOME_RRTYPE = file.rrtype;

function record(rr: RecordDescription, rrtype: number): RecordSpec {
  if (rr.type !== 'CAPA') return { class: 'IN', ttl: 30, ...rr };
  const data = rr.data as string | { hex: string };
  if (typeof data === 'string') return capaRecord(rr.name, rr.ttl ?? 30, parseRdata(data), rrtype);
  return { name: rr.name, type: dnsPacketTypeName(rrtype), class: 'IN', ttl: rr.ttl ?? 30, data: Buffer.from(data.hex, 'hex') };
}

function replyBytes(c: OutcomeCase, query: OutcomeQuery, qname: string, rrtype: number): Buffer {
  const type = dnsPacketTypeName(rrtype);
  const sent = encodeQuery({ id: query.id, name: qname, type, rd: false });
  const received = { transport: 'udp' as const, bytes: sent, message: decodeMessage(sent, rrtype), from: { address: '127.0.0.1', port: 53 } };
  const r = c.reply;
  const shape: ReplyShape = {
    ...(r.rcode === undefined ? {} : { rcode: r.rcode }),
    ...(r.aa === undefined ? {} : { aa: r.aa }),
    ...(r.tc === undefined ? {} : { tc: r.tc }),
    ...(r.id === undefined ? {} : { id: r.id }),
    ...(r.ede === undefined ? {} : { ede: r.ede }),
    ...(r.questions === undefined ? {} : { questions: r.questions.map((q) => ({ name: q.name, type: q.type === 'CAPA' ? type : q.type, class: 'IN' })) }),
    answers: (r.answers ?? []).map((rr) => record(rr, rrtype)),
    authorities: (r.authorities ?? []).map((rr) => record(rr, rrtype)),
    additionals: (r.additionals ?? []).map((rr) => record(rr, rrtype)),
  };
  let bytes = reply(received, shape);
  if (c.qr === false) bytes[2]! &= 0x7f;
  if (c.opcode !== undefined) bytes[2] = (bytes[2]! & 0x87) | (c.opcode << 3);
  if (c.cut !== undefined) bytes = bytes.subarray(0, bytes.length - c.cut);
  if (c.trailing !== undefined) bytes = Buffer.concat([bytes, Buffer.alloc(c.trailing)]);
  return bytes;
}

export const outcomeVectors: OutcomeVector[] = file.cases.map((c) => {
  const query = { ...file.query, ...c.query };
  const qname = buildQueryName({ host: query.host, port: query.port ?? undefined, protocol: query.protocol });
  return { name: c.name, query, qname, reply: replyBytes(c, query, qname, file.rrtype), outcome: c.outcome };
});
