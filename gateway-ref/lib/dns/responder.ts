/**
 * The GRM's DNS front end as one function: request bytes and requester in, response bytes out
 * (undefined: drop). No sockets here; the GRM (allocation, data plane, names) is injected, and
 * is async only because installing a state and asking an upstream take time.
 * The cases and their answers are DESIGN.md "Query", "Answer", "Errors" and "Release".
 */
import { EDE, EDE_TEXT, EDNS_PAYLOAD, dnsPacketTypeName } from '../../../resolver/codec/constants.js';
import { isCapaError } from '../../../resolver/codec/errors.js';
import { ipFamily } from '../../../resolver/codec/ip.js';
import { type ExtendedError, type Message, type WireRecord, decodeMessage } from '../../../resolver/codec/message.js';
import { type ParsedQueryName, parseQueryName } from '../../../resolver/codec/qname.js';
import { encode as encodeRdata } from '../../../resolver/codec/rdata.js';
import { encodeExtendedError } from './ede.js';
import { decodeRelease } from './release.js';
import { skipName } from '../../../resolver/codec/validate.js';
import type { Allocation, Destination, OutsideTuple, ProtoNumber, ReleaseOutcome } from '../grm/types.js';
import type { LookupResult } from '../zone/upstream.js';
import type { DataRecord } from '../zone/zone-file.js';
import type { AddressType } from '../zone/zone.js';
import { FLAG, QUESTION_NAME, type ResourceRecord, dataRecord, encodeResponse } from './wire.js';

export type Transport = 'udp' | 'tcp';

export interface Requester {
  /** Plain IPv4 or IPv6 text (IPv4-mapped addresses already unmapped). */
  address: string;
  transport: Transport;
}

/** What the front end needs from the GRM. */
export interface ResponderContext {
  readonly rrtype: number;
  /** TTL of a CAPA answer: the lease of a pending state. */
  readonly leaseSeconds: number;
  /** Address families (4, 6) the pool can allocate from. */
  readonly poolFamilies: ReadonlySet<number>;
  /** An upstream answers names outside the zone. */
  readonly recursive: boolean;
  /** Requesters: only terminals of the inside realm get allocations. */
  isInside(address: string): boolean;
  /** Destinations reached without the gateway (inside-to-inside): no CAPA, just their address. */
  isDirect(address: string): boolean;
  lookup(name: string, type: AddressType, forward: boolean): Promise<LookupResult>;
  /** Allocates and installs the state in the data plane. Throws ERR_CAPA_EXHAUSTED / ERR_CAPA_QUOTA. */
  allocate(terminal: string, destination: Destination): Promise<Allocation>;
  /** Releases the live allocation matching one of the candidate tuples. */
  release(terminal: string, candidates: OutsideTuple[]): Promise<ReleaseOutcome>;
  /** Inbound path: a pool address of `family` bound to (querier, terminal). Throws ERR_CAPA_EXHAUSTED. */
  bindInbound(querier: string, terminal: string, family: 4 | 6): Promise<string>;
  /** Unexpected failures (answered SERVFAIL) go here to be logged. */
  reportError(err: unknown): void;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, NXRRSET: 8, BADVERS: 16 } as const;
const OPCODE_QUERY = 0;
const OPCODE_UPDATE = 5;
const HEADER = 12;
const CLASSIC_UDP_SIZE = 512;
const ADDRESS_TYPES: readonly AddressType[] = ['A', 'AAAA'];

interface Reply {
  rcode: number;
  aa?: boolean;
  answers?: ResourceRecord[];
  additionals?: ResourceRecord[];
  ede?: ExtendedError;
}

interface Request {
  bytes: Uint8Array;
  message: Message;
  requester: Requester;
  inside: boolean;
}

interface OptRecord extends WireRecord {
  udpPayloadSize?: number;
  ednsVersion?: number;
}

const REFUSED_OUTSIDE: Reply = {
  rcode: RCODE.REFUSED,
  ede: { code: EDE.PROHIBITED, text: 'requester is not in the inside realm of this gateway' },
};

function protoOf(parsed: ParsedQueryName): ProtoNumber {
  // A bare host names no protocol; TCP is what stream clients (the common case) need.
  return parsed.protocol === 'udp' ? 17 : 6;
}

function familyOf(type: AddressType): 4 | 6 {
  return type === 'A' ? 4 : 6;
}

const POOL_EXHAUSTED: Reply = {
  rcode: RCODE.SERVFAIL,
  ede: { code: EDE.POOL_EXHAUSTED, text: EDE_TEXT[EDE.POOL_EXHAUSTED] },
};

/** Maps the GRM's expected refusals to their DNS form; anything else is unexpected. */
function blocked(err: unknown): Reply {
  if (isCapaError(err, 'ERR_CAPA_EXHAUSTED')) return POOL_EXHAUSTED;
  if (isCapaError(err, 'ERR_CAPA_QUOTA')) {
    return { rcode: RCODE.SERVFAIL, ede: { code: EDE.QUOTA_EXCEEDED, text: EDE_TEXT[EDE.QUOTA_EXCEEDED] } };
  }
  throw err;
}

/** The addresses of a CAPA destination host; a reverse name stands for its own address. */
async function addressesOf(ctx: ResponderContext, parsed: ParsedQueryName, type: AddressType): Promise<LookupResult> {
  if (parsed.address !== undefined) {
    const records: DataRecord[] = ipFamily(parsed.address) === familyOf(type)
      ? [{ name: parsed.host, type, ttl: ctx.leaseSeconds, data: parsed.address }]
      : [];
    return { rcode: 'NOERROR', records, authoritative: true };
  }
  const found = await ctx.lookup(parsed.host, type, true);
  // Without a CNAME chain (the usual case) the records are all of the asked type already.
  return found.records.every((r) => r.type === type) ? found : { ...found, records: found.records.filter((r) => r.type === type) };
}

async function capaQuery(ctx: ResponderContext, req: Request, qname: string): Promise<Reply> {
  if (!req.inside) return REFUSED_OUTSIDE;
  let parsed: ParsedQueryName;
  try {
    parsed = parseQueryName(qname);
  } catch {
    return { rcode: RCODE.FORMERR };
  }
  // The additional record is owned by <host> whatever CNAMEs led to the address (DESIGN "Answer").
  const additional = (r: DataRecord): ResourceRecord => dataRecord(r, parsed.host);
  let sawFamily: 4 | 6 | undefined;
  for (const type of ADDRESS_TYPES) {
    const found = await addressesOf(ctx, parsed, type);
    if (found.rcode !== 'NOERROR') return { rcode: RCODE[found.rcode] };
    const direct = found.records.find((r) => ctx.isDirect(r.data));
    if (direct) return { rcode: RCODE.NOERROR, aa: true, additionals: [additional(direct)] };
    const usable = found.records.find((r) => ctx.poolFamilies.has(ipFamily(r.data)));
    if (usable) {
      const proto = protoOf(parsed);
      let allocation: Allocation;
      try {
        allocation = await ctx.allocate(req.requester.address, { proto, address: usable.data, port: parsed.port });
      } catch (err) {
        return blocked(err);
      }
      const { localAddress, localPort } = allocation.tuple;
      const rdata = encodeRdata({ flags: 0, proto, port: localPort, address: localAddress });
      return {
        rcode: RCODE.NOERROR,
        aa: true,
        answers: [{ name: QUESTION_NAME, type: ctx.rrtype, ttl: ctx.leaseSeconds, rdata }],
        additionals: [additional(usable)],
      };
    }
    if (found.records.length > 0) sawFamily ??= familyOf(type);
  }
  // Addresses exist but none of a family the pool has: no (aOG, pA) can serve this destination,
  // and saying "exhausted" would send the operator looking for a full pool.
  if (sawFamily === undefined) return { rcode: RCODE.NOERROR, aa: true };
  return { rcode: RCODE.SERVFAIL, ede: { code: EDE.POOL_EXHAUSTED, text: `the gateway has no IPv${sawFamily} pool` } };
}

/** A/AAAA for terminals, and for the outside realm: zone data, inside terminals via the inbound path. */
async function addressQuery(ctx: ResponderContext, req: Request, name: string, type: AddressType): Promise<Reply> {
  const found = await ctx.lookup(name, type, req.inside);
  let records = found.records;
  if (!req.inside) {
    try {
      const bound = await Promise.all(records.map(async (r) => {
        if (r.type !== type || !ctx.isInside(r.data)) return [r];
        const family = familyOf(type);
        return ctx.poolFamilies.has(family) ? [{ ...r, data: await ctx.bindInbound(req.requester.address, r.data, family) }] : [];
      }));
      records = bound.flat();
    } catch (err) {
      return blocked(err);
    }
  }
  return { rcode: RCODE[found.rcode], aa: found.authoritative, answers: records.map((r) => dataRecord(r)) };
}

/** Other types: the name's existence decides between NODATA and NXDOMAIN. */
async function otherQuery(ctx: ResponderContext, req: Request, name: string): Promise<Reply> {
  const found = await ctx.lookup(name, 'A', req.inside);
  return { rcode: RCODE[found.rcode], aa: found.authoritative };
}

async function query(ctx: ResponderContext, req: Request): Promise<Reply> {
  const { questions } = req.message;
  if (questions.length !== 1) return { rcode: RCODE.FORMERR };
  const q = questions[0]!;
  if (q.class !== 'IN') return { rcode: RCODE.REFUSED };
  if (q.type === dnsPacketTypeName(ctx.rrtype)) return capaQuery(ctx, req, q.name);
  if (q.type === 'A' || q.type === 'AAAA') return addressQuery(ctx, req, q.name, q.type);
  return otherQuery(ctx, req, q.name);
}

/** DNS UPDATE deleting one CAPA RR (DESIGN "Release"). */
async function update(ctx: ResponderContext, req: Request): Promise<Reply> {
  if (!req.inside) return REFUSED_OUTSIDE;
  let release: ReturnType<typeof decodeRelease>;
  try {
    release = decodeRelease(req.bytes, ctx.rrtype, req.message);
  } catch {
    return { rcode: RCODE.FORMERR };
  }
  const parsed = parseQueryName(release.qname);
  const proto = protoOf(parsed);
  if (release.record.proto !== proto) return { rcode: RCODE.NXRRSET };
  const candidates: OutsideTuple[] = [];
  for (const type of ADDRESS_TYPES) {
    for (const r of (await addressesOf(ctx, parsed, type)).records) {
      candidates.push({
        proto,
        remoteAddress: r.data,
        remotePort: parsed.port,
        localAddress: release.record.address,
        localPort: release.record.port,
      });
    }
  }
  if (candidates.length === 0) return { rcode: RCODE.NXRRSET };
  const outcome = await ctx.release(req.requester.address, candidates);
  return { rcode: outcome === 'released' ? RCODE.NOERROR : outcome === 'absent' ? RCODE.NXRRSET : RCODE.REFUSED };
}

function headerOnly(bytes: Uint8Array, rcode: number): Buffer {
  return encodeResponse({
    id: (bytes[0]! << 8) | bytes[1]!,
    flags: (bytes[2]! & 0x78) << 8 | rcode, // opcode kept
    question: new Uint8Array(0),
    answers: [],
    additionals: [],
    edns: undefined,
  });
}

/** The response to one request, or undefined when it must be dropped (no header, or a response). */
export async function respond(bytes: Uint8Array, requester: Requester, ctx: ResponderContext): Promise<Buffer | undefined> {
  if (bytes.length < HEADER || (bytes[2]! & 0x80) !== 0) return undefined;
  let message: Message;
  try {
    message = decodeMessage(bytes, ctx.rrtype);
  } catch (err) {
    if (!isCapaError(err, 'ERR_CAPA_MALFORMED')) throw err;
    return headerOnly(bytes, RCODE.FORMERR);
  }
  const opts = message.additionals.filter((rr): rr is OptRecord => rr.type === 'OPT');
  if (opts.length > 1) return headerOnly(bytes, RCODE.FORMERR);
  const opt = opts[0];
  const opcode = (bytes[2]! >> 3) & 0x0f;
  const rd = (bytes[2]! & 0x01) !== 0;
  const req: Request = { bytes, message, requester, inside: ctx.isInside(requester.address) };
  let reply: Reply;
  try {
    if (opt !== undefined && (opt.ednsVersion ?? 0) > 0) reply = { rcode: RCODE.BADVERS };
    else if (opcode === OPCODE_QUERY) reply = await query(ctx, req);
    else if (opcode === OPCODE_UPDATE) reply = await update(ctx, req);
    else reply = { rcode: RCODE.NOTIMP };
  } catch (err) {
    ctx.reportError(err);
    reply = { rcode: RCODE.SERVFAIL };
  }
  const question = message.questions.length === 1 ? bytes.subarray(HEADER, skipName(bytes, HEADER) + 4) : new Uint8Array(0);
  const flags = (opcode << 11) | (reply.aa ? FLAG.AA : 0) | (rd ? FLAG.RD : 0)
    | (rd && req.inside && ctx.recursive ? FLAG.RA : 0) | (reply.rcode & 0x0f);
  const maxSize = requester.transport === 'tcp' ? 0xffff
    : opt === undefined ? CLASSIC_UDP_SIZE : Math.min(EDNS_PAYLOAD, Math.max(CLASSIC_UDP_SIZE, opt.udpPayloadSize ?? 0));
  return encodeResponse({
    id: message.id,
    flags,
    question,
    answers: reply.answers ?? [],
    additionals: reply.additionals ?? [],
    edns: opt === undefined ? undefined : { extendedRcode: reply.rcode >> 4, options: reply.ede ? [encodeExtendedError(reply.ede)] : [] },
  }, maxSize);
}
