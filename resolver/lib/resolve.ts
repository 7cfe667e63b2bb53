/**
 * The stub resolver: ask the GRM for a CAPA allocation and turn the reply into a pinned endpoint,
 * or into plain addresses when the server does not know CAPA (DESIGN "Errors" table). A CAPA
 * failure never becomes a plain result. Also release(), which hands an allocation back.
 */
import { capaRrtype, dnsPacketTypeName, EDE, IPPROTO, type Protocol } from '../codec/constants.js';
import { CapaError, type CapaErrorCode, type CapaErrorDetails, invalidArg, malformed } from '../codec/errors.js';
import { canonicalIp, ipFamily, type Family } from '../codec/ip.js';
import { type CapaAnswer, capaAnswers, encodeQuery, extendedErrors, type ExtendedError, extendedRcodeBits, isClassIn, type Message, type WireRecord } from '../codec/message.js';
import { normalizeHost, queryNameOf, sameName } from '../codec/qname.js';
import type { CapaRecord } from '../codec/rdata.js';
import { configuredServers, resolveServers, type ServerSpec } from './servers.js';
import { formatServer, parseServer, type ServerAddress } from '../codec/server-address.js';
import { askServers, type Reply, startTiming, type Timing, type TimingOptions, type Verdict } from './transport.js';
import { checkReply, type Question } from '../codec/reply-check.js';
import { encodeRelease } from '../codec/update.js';
import { BoundedMap } from '../codec/bounded-map.js';
import { SpareSockets } from './spare-sockets.js';

export interface Endpoint {
  address: string;
  port: number;
}

/** An allocation: bind the socket to `local` (aOG, pA), connect it to `remote` (aOB, pB). */
export interface CapaEndpoint {
  kind: 'capa';
  local: Endpoint;
  /** Port 0 when the query was for the bare host (destination port unknown, a partial allocation). */
  remote: Endpoint;
  protocol: Protocol;
  /** The CAPA TTL: the lease, in seconds, within which the flow must start. */
  ttl: number;
  /** The GRM that made the allocation, as host:port; release() goes there. */
  server: string;
  /** The queried host, normalized (IP literals as their reverse name): the zone of a release. */
  host: string;
  qname: string;
  /** The CAPA RDATA as received; a release must repeat it exactly. */
  record: CapaRecord;
}

/** The server does not know CAPA (or the destination needs no gateway): connect normally. */
export interface PlainResult {
  kind: 'plain';
  addresses: string[];
}

export type Resolution = CapaEndpoint | PlainResult;

export interface ResolveOptions extends TimingOptions {
  host: string;
  /** Destination port; omit to ask for the bare host (partial allocation). */
  port?: number;
  /** Default 'tcp'. */
  protocol?: Protocol;
  /** Default: CAPA_SERVER, else the nameservers of /etc/resolv.conf. */
  servers?: readonly ServerSpec[];
  /** Default: capaRrtype(process.env). */
  rrtype?: number;
}

interface Target {
  host: string;
  qname: string;
  port: number | undefined;
  protocol: Protocol;
  /** The destination when the caller gave an IP literal. */
  literal: string | undefined;
  rrtype: number;
  question: Question;
  /** The CAPA query under ID 0; each try sends a copy under its own ID. */
  query: Buffer;
}

type CapaOutcome =
  | { kind: 'allocation'; answer: CapaAnswer; reply: Reply }
  | { kind: 'fallback'; reply: Reply };

function rcodeError(code: CapaErrorCode, what: string, message: Message, server: ServerAddress, ede?: ExtendedError): CapaError {
  const details: CapaErrorDetails = { server: formatServer(server), rcode: message.rcode };
  let text = `${what} (${message.rcode} from ${formatServer(server)}`;
  if (ede !== undefined) {
    details.ede = ede.code;
    details.edeText = ede.text;
    text += `, EDE ${ede.code}${ede.text === '' ? '' : `: ${ede.text}`}`;
  }
  return new CapaError(code, `${text})`, details);
}

/** The CAPA RR of a NOERROR answer, checked against the question; undefined when there is none (NODATA). */
function allocationOf(message: Message, target: Target): CapaAnswer | undefined {
  const all = capaAnswers(message, target.rrtype);
  if (all.length === 0) return undefined;
  const answer = all.find((a) => sameName(a.name, target.qname));
  if (answer === undefined) throw malformed(`CAPA answer is owned by "${all[0]!.name}", not by the question "${target.qname}"`);
  const { proto, port, address } = answer.record;
  // A bare host names no protocol, so the server picks one; otherwise it must be ours (or any).
  if (target.port !== undefined && proto !== IPPROTO[target.protocol] && proto !== IPPROTO.any) {
    throw malformed(`CAPA answer is for protocol ${proto}, the question asked for ${target.protocol} (${IPPROTO[target.protocol]})`);
  }
  if (port === 0) throw malformed(`CAPA answer allocates port 0 on ${address}`);
  return answer;
}

/** The CAPA column of the DESIGN error table. */
function judgeCapa(reply: Reply, target: Target): Verdict<CapaOutcome> {
  const { message, server } = reply;
  const extended = extendedRcodeBits(message);
  // An RCODE above 15 (its upper bits in OPT) is none of the table's: like any unexpected answer.
  if (extended !== 0) return { next: rcodeError('ERR_CAPA_SERVER_FAILURE', `unexpected answer (extended RCODE bits ${extended}) to ${target.qname}`, message, server) };
  if (message.rcode === 'NOERROR') {
    let answer: CapaAnswer | undefined;
    try {
      answer = allocationOf(message, target);
    } catch (err) {
      return { fail: new CapaError('ERR_CAPA_MALFORMED', `${(err as Error).message} (from ${formatServer(server)})`, { server: formatServer(server), cause: err }) };
    }
    return { done: answer === undefined ? { kind: 'fallback', reply } : { kind: 'allocation', answer, reply } };
  }
  // Only failures carry Extended DNS Errors worth reading.
  const edes = extendedErrors(message);
  const withEde = (code: number): ExtendedError | undefined => edes.find((e) => e.code === code);
  switch (message.rcode) {
    case 'NOTIMP':
    case 'FORMERR':
      return { done: { kind: 'fallback', reply } };
    case 'NXDOMAIN':
      // A plain DNS server has no `_<port>._<proto>` names, so its NXDOMAIN says nothing of <host>:
      // the fallback's own A/AAAA lookup decides, and fails with NOT_FOUND when <host> is missing too.
      if (target.port !== undefined) return { done: { kind: 'fallback', reply } };
      return { fail: rcodeError('ERR_CAPA_NOT_FOUND', `${target.host} does not exist`, message, server, edes[0]) };
    case 'REFUSED': {
      // Only a GRM's refusal (EDE 18) is final; any other REFUSED is a server that is not a GRM.
      const prohibited = withEde(EDE.PROHIBITED);
      if (prohibited === undefined) return { done: { kind: 'fallback', reply } };
      return { fail: rcodeError('ERR_CAPA_REFUSED', `CAPA refused for ${target.qname}`, message, server, prohibited) };
    }
    case 'SERVFAIL': {
      const quota = withEde(EDE.QUOTA_EXCEEDED);
      if (quota) return { fail: rcodeError('ERR_CAPA_QUOTA', 'this terminal is over its CAPA quota', message, server, quota) };
      const pool = withEde(EDE.POOL_EXHAUSTED);
      // The server's EDE text says why: a full pool, or none of the destination's family.
      if (pool) return { next: rcodeError('ERR_CAPA_EXHAUSTED', `no CAPA allocation for ${target.qname}`, message, server, pool) };
      return { next: rcodeError('ERR_CAPA_SERVER_FAILURE', `server failure for ${target.qname}`, message, server, edes[0]) };
    }
    default:
      return { next: rcodeError('ERR_CAPA_SERVER_FAILURE', `unexpected answer to ${target.qname}`, message, server, edes[0]) };
  }
}

type AddressType = 'A' | 'AAAA';

const typeOf = (family: Family): AddressType => (family === 4 ? 'A' : 'AAAA');

/** Addresses of `type` for `name` among records, following a CNAME chain (bounded) from `name`. */
function addressesOf(records: WireRecord[], name: string, type: AddressType): string[] {
  let owner = name;
  for (let hops = 0; hops < 8; hops++) {
    const cname = records.find((rr) => rr.type === 'CNAME' && sameName(rr.name, owner) && typeof rr.data === 'string');
    if (cname === undefined) break;
    owner = cname.data as string;
  }
  return records
    .filter((rr) => rr.type === type && sameName(rr.name, owner) && typeof rr.data === 'string')
    .map((rr) => canonicalIp(rr.data as string));
}

/** Addresses owned by <host> in the additional section (the only ones a stub may take from there). */
function additionalAddresses(message: Message, host: string, type: AddressType): string[] {
  return message.additionals
    .filter((rr) => rr.type === type && isClassIn(rr) && sameName(rr.name, host) && typeof rr.data === 'string')
    .map((rr) => canonicalIp(rr.data as string));
}

function judgeAddresses(reply: Reply, host: string, type: AddressType): Verdict<string[]> {
  const { message, server } = reply;
  const edes = extendedErrors(message);
  switch (message.rcode) {
    case 'NOERROR':
      return { done: addressesOf(message.answers, host, type) };
    case 'NXDOMAIN':
      return { fail: rcodeError('ERR_CAPA_NOT_FOUND', `${host} does not exist`, message, server, edes[0]) };
    case 'REFUSED':
      return { next: rcodeError('ERR_CAPA_REFUSED', `${type} query for ${host} refused`, message, server, edes[0]) };
    default:
      return { next: rcodeError('ERR_CAPA_SERVER_FAILURE', `${type} query for ${host} failed`, message, server, edes[0]) };
  }
}

/** A or AAAA of host, RD=1: the fallback may go to a plain recursive server. */
function lookup(host: string, family: Family, servers: readonly ServerAddress[], timing: Timing): Promise<string[]> {
  const type = typeOf(family);
  return askServers(servers, timing, {
    encode: (id) => encodeQuery({ id, name: host, type, rd: true }),
    question: { name: host, type, class: 'IN' },
  }, (reply) => judgeAddresses(reply, host, type));
}

/** Both families at once; addresses of either are enough, IPv4 first. */
async function lookupBoth(host: string, servers: readonly ServerAddress[], timing: Timing): Promise<string[]> {
  const results = await Promise.allSettled([lookup(host, 4, servers, timing), lookup(host, 6, servers, timing)]);
  const addresses = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
  if (addresses.length > 0) return addresses;
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  throw new CapaError('ERR_CAPA_NOT_FOUND', `${host} has no A or AAAA record`);
}

/**
 * aOB: the literal, else A/AAAA owned by <host> in ADDITIONAL, else asked of the same server.
 * Only that last case is asynchronous: the usual answer costs no extra turn of the event loop.
 * `server` is the answering GRM as host:port, for errors.
 */
function remoteAddress(outcome: CapaOutcome & { kind: 'allocation' }, target: Target, timing: Timing, server: string): string | Promise<string> {
  const family = ipFamily(outcome.answer.record.address) as Family;
  if (target.literal !== undefined) {
    if (ipFamily(target.literal) !== family) {
      throw new CapaError('ERR_CAPA_MALFORMED', `CAPA answer gives an IPv${family} source for IPv${ipFamily(target.literal)} destination ${target.literal}`, { server });
    }
    return target.literal;
  }
  const known = additionalAddresses(outcome.reply.message, target.host, typeOf(family));
  if (known.length > 0) return known[0]!;
  return lookup(target.host, family, [outcome.reply.server], timing).then((addresses) => {
    if (addresses.length === 0) {
      throw new CapaError('ERR_CAPA_NOT_FOUND', `${target.host} has no ${typeOf(family)} record to go with its IPv${family} CAPA allocation`, { server });
    }
    return addresses[0]!;
  });
}

async function plainAddresses(reply: Reply, target: Target, servers: readonly ServerAddress[], timing: Timing): Promise<string[]> {
  if (target.literal !== undefined) return [target.literal];
  const known = [...additionalAddresses(reply.message, target.host, 'A'), ...additionalAddresses(reply.message, target.host, 'AAAA')];
  if (known.length > 0) return known;
  const answering = reply.server;
  return lookupBoth(target.host, [answering, ...servers.filter((s) => s !== answering)], timing);
}

function buildTarget(host: string, port: number | undefined, protocol: Protocol, rrtype: number): Target {
  const normalized = normalizeHost(host);
  const qname = queryNameOf(normalized, port, protocol);
  const type = dnsPacketTypeName(rrtype);
  return {
    host: normalized,
    qname,
    port,
    protocol,
    literal: ipFamily(host) === 0 ? undefined : canonicalIp(host),
    rrtype,
    question: { name: qname, type, class: 'IN' },
    query: encodeQuery({ id: 0, name: qname, type, rd: false }),
  };
}

/** A copy of the query under another ID. */
function withId(query: Buffer, id: number): Buffer {
  const copy = Buffer.from(query);
  copy.writeUInt16BE(id, 0);
  return copy;
}

/** The question of a CAPA query, as judgeReply takes it. */
export type CapaQuestion = Pick<ResolveOptions, 'host' | 'port' | 'protocol' | 'rrtype'>;

/**
 * What the terminal does with one received message to the CAPA query under `id` (the DESIGN
 * "Errors" table), before any further query: pin to the allocation, fall back to A/AAAA, fail,
 * ask the next server, retry over TCP, or ignore it (not ours, or malformed). Pure; the C twin is
 * native/core/capa_judge.c, and test/vectors/outcomes.json is their shared contract.
 */
export type ReplyOutcome =
  | { kind: 'capa'; answer: CapaAnswer }
  | { kind: 'fallback' }
  | { kind: 'fail' | 'next'; error: CapaError }
  | { kind: 'tcp' }
  | { kind: 'ignore' | 'malformed'; reason: string };

export function judgeReply(bytes: Uint8Array, question: CapaQuestion, id: number, server: ServerAddress): ReplyOutcome {
  return defaultResolver().judgeReply(bytes, question, id, server);
}

function judgeWith(target: Target, bytes: Uint8Array, id: number, server: ServerAddress): ReplyOutcome {
  const check = checkReply(bytes, { id, question: target.question, opcode: 'QUERY', rrtype: target.rrtype });
  if (check.kind === 'truncated') return { kind: 'tcp' };
  if (check.kind === 'ignore') return { kind: check.malformed ? 'malformed' : 'ignore', reason: check.reason };
  const verdict = judgeCapa({ message: check.message, bytes: Buffer.from(bytes), transport: 'udp', server }, target);
  if ('fail' in verdict) return { kind: 'fail', error: verdict.fail };
  if ('next' in verdict) return { kind: 'next', error: verdict.next };
  return verdict.done.kind === 'allocation' ? { kind: 'capa', answer: verdict.done.answer } : { kind: 'fallback' };
}

/** The Resolution of a CAPA reply judged done: aOB for an allocation, the addresses of a fallback. */
async function resolutionFrom(outcome: CapaOutcome, target: Target, servers: readonly ServerAddress[], timing: Timing): Promise<Resolution> {
  if (outcome.kind === 'fallback') {
    return { kind: 'plain', addresses: await plainAddresses(outcome.reply, target, servers, timing) };
  }
  const { record, ttl } = outcome.answer;
  const server = formatServer(outcome.reply.server);
  const remote = remoteAddress(outcome, target, timing, server);
  return {
    kind: 'capa',
    local: { address: record.address, port: record.port },
    remote: { address: typeof remote === 'string' ? remote : await remote, port: target.port ?? 0 },
    protocol: record.proto === IPPROTO.udp ? 'udp' : record.proto === IPPROTO.tcp ? 'tcp' : target.protocol,
    ttl,
    server,
    host: target.host,
    qname: target.qname,
    record,
  };
}

export interface ReleaseOptions extends TimingOptions {
  /** Default: capaRrtype(process.env). */
  rrtype?: number;
}

function judgeRelease(reply: Reply, endpoint: CapaEndpoint): Verdict<void> {
  const { message, server } = reply;
  const ede = extendedErrors(message)[0];
  const where = `${endpoint.record.address}:${endpoint.record.port} for ${endpoint.qname}`;
  switch (message.rcode) {
    case 'NOERROR':
      return { done: undefined };
    case 'NXRRSET':
      return { fail: rcodeError('ERR_CAPA_NO_ALLOCATION', `no allocation ${where} to release`, message, server, ede) };
    case 'REFUSED':
      return { fail: rcodeError('ERR_CAPA_NOT_OWNER', `allocation ${where} belongs to another terminal`, message, server, ede) };
    default:
      return { fail: rcodeError('ERR_CAPA_SERVER_FAILURE', `release of ${where} failed`, message, server, ede) };
  }
}

export interface CapaResolverOptions {
  /** Servers a call asks when it names none (default: CAPA_SERVER, else the nameservers of /etc/resolv.conf). */
  servers?: readonly ServerSpec[];
  /** RR type of CAPA when a call gives none (default: capaRrtype(process.env)). */
  rrtype?: number;
}

/**
 * A stub resolver and what it keeps between calls: UDP query sockets opened ahead of the next
 * query, and the questions already built. close() releases them; a closed resolver refuses calls.
 */
export class CapaResolver {
  private readonly spares = new SpareSockets();
  /**
   * Targets already built, by question: the connections to one destination all ask the same
   * thing, and a connection waits for every step before its query leaves. Bounded.
   */
  private readonly targets = new BoundedMap<string, Target>(1024);
  private closed = false;

  constructor(private readonly defaults: CapaResolverOptions = {}) {}

  /** Asks for a CAPA allocation for (host, port, protocol); see the DESIGN error table. */
  async resolve(options: ResolveOptions): Promise<Resolution> {
    const target = this.targetOf(options);
    const timing = startTiming(options, this.spares);
    const servers = configuredServers(options.servers ?? this.defaults.servers) ?? await resolveServers(undefined);
    const outcome = await askServers(servers, timing, {
      encode: (id) => withId(target.query, id),
      question: target.question,
      rrtype: target.rrtype,
    }, (reply) => judgeCapa(reply, target));
    return resolutionFrom(outcome, target, servers, timing);
  }

  /**
   * What resolve() would make of this one reply to the CAPA query (capa-dig prints it): the
   * Resolution, or the CapaError it fails with; a failure that would ask the next server fails here.
   * Fallback and missing aOB lookups go to `servers` as resolve() sends them.
   */
  resolutionOf(reply: Reply, options: ResolveOptions, servers: readonly ServerAddress[]): Promise<Resolution> {
    const target = this.targetOf(options);
    const verdict = judgeCapa(reply, target);
    if ('fail' in verdict) return Promise.reject(verdict.fail);
    if ('next' in verdict) return Promise.reject(verdict.next);
    return resolutionFrom(verdict.done, target, [reply.server, ...servers.filter((s) => s !== reply.server)], startTiming(options, this.spares));
  }

  /** See the module function judgeReply. */
  judgeReply(bytes: Uint8Array, question: CapaQuestion, id: number, server: ServerAddress): ReplyOutcome {
    return judgeWith(this.targetOf(question), bytes, id, server);
  }

  /**
   * Hands an allocation back to the GRM that made it (DNS UPDATE, see update.ts). Over UDP a lost
   * reply is retried, so a release that did happen may then come back as ERR_CAPA_NO_ALLOCATION.
   */
  async release(endpoint: CapaEndpoint, options: ReleaseOptions = {}): Promise<void> {
    if (endpoint.kind !== 'capa') throw invalidArg('only a CAPA endpoint can be released');
    this.checkOpen();
    const rrtype = options.rrtype ?? this.defaults.rrtype ?? capaRrtype();
    const timing = startTiming(options, this.spares);
    await askServers([parseServer(endpoint.server)], timing, {
      encode: (id) => encodeRelease({ id, zone: endpoint.host, qname: endpoint.qname, record: endpoint.record, rrtype }),
      question: { name: endpoint.host, type: 'SOA', class: 'IN' },
      opcode: 'UPDATE',
      rrtype,
    }, (reply) => judgeRelease(reply, endpoint));
  }

  /** Closes the spare query sockets; calls made after it reject. */
  close(): void {
    this.closed = true;
    this.spares.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new CapaError('ERR_CAPA_CONFIG', 'this CapaResolver was closed');
  }

  private targetOf(options: CapaQuestion): Target {
    this.checkOpen();
    if (typeof options.host !== 'string') throw invalidArg('host must be a string');
    const protocol = options.protocol ?? 'tcp';
    const rrtype = options.rrtype ?? this.defaults.rrtype ?? capaRrtype();
    const key = `${rrtype} ${protocol} ${options.port} ${options.host}`;
    let target = this.targets.get(key);
    if (target === undefined) {
      target = buildTarget(options.host, options.port, protocol, rrtype);
      this.targets.set(key, target);
    }
    return target;
  }
}

let shared: CapaResolver | undefined;

/** The process's resolver, made at first use: what resolve(), release() and judgeReply() use. */
export function defaultResolver(): CapaResolver {
  shared ??= new CapaResolver();
  return shared;
}

/** Asks for a CAPA allocation with the default resolver (see CapaResolver.resolve). */
export function resolve(options: ResolveOptions): Promise<Resolution> {
  return defaultResolver().resolve(options);
}

/** What the default resolver would make of one reply (see CapaResolver.resolutionOf). */
export function resolutionOf(reply: Reply, options: ResolveOptions, servers: readonly ServerAddress[]): Promise<Resolution> {
  return defaultResolver().resolutionOf(reply, options, servers);
}

/** Hands an allocation back with the default resolver (see CapaResolver.release). */
export function release(endpoint: CapaEndpoint, options: ReleaseOptions = {}): Promise<void> {
  return defaultResolver().release(endpoint, options);
}
