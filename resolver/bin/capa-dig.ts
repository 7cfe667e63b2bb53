#!/usr/bin/env node
/**
 * capa-dig: one raw DNS query (CAPA by default) printed like dig, CAPA in presentation form.
 * The reply is shown as it came; after a CAPA reply, a last line says what the stub resolver
 * would do with it (the same judge as resolve(), asking the A/AAAA of a fallback as it would).
 * Exit 0 on a NOERROR reply, 1 on a DNS error rcode or no reply, 2 on usage errors.
 */
import { commandLine } from '../../common/cli.js';
import { capaRrtype, dnsPacketTypeName, type Protocol } from '../codec/constants.js';
import { CapaError, isCapaError } from '../codec/errors.js';
import { ipFamily } from '../codec/ip.js';
import { encodeQuery, extendedErrors, type Message, type WireRecord } from '../codec/message.js';
import { formatRdata, formatRR } from '../codec/presentation.js';
import { resolutionOf } from '../lib/resolve.js';
import { buildQueryName, normalizeHost } from '../codec/qname.js';
import { type CapaRecord, decode as decodeRdata } from '../codec/rdata.js';
import { resolveServers } from '../lib/servers.js';
import { parseServer, type ServerAddress } from '../codec/server-address.js';
import { askServers, DEFAULT_TIMEOUT_MS, type Reply, startTiming } from '../lib/transport.js';

const EXIT = { answer: 0, dnsError: 1, usage: 2 } as const;
const TYPES = ['CAPA', 'A', 'AAAA'] as const;
type QueryType = (typeof TYPES)[number];

const EDE_NAMES: Record<number, string> = {
  0: 'Other', 1: 'Unsupported DNSKEY Algorithm', 2: 'Unsupported DS Digest Type', 3: 'Stale Answer', 4: 'Forged Answer',
  5: 'DNSSEC Indeterminate', 6: 'DNSSEC Bogus', 7: 'Signature Expired', 8: 'Signature Not Yet Valid', 9: 'DNSKEY Missing',
  10: 'RRSIGs Missing', 11: 'No Zone Key Bit Set', 12: 'NSEC Missing', 13: 'Cached Error', 14: 'Not Ready', 15: 'Blocked',
  16: 'Censored', 17: 'Filtered', 18: 'Prohibited', 19: 'Stale NXDOMAIN Answer', 20: 'Not Authoritative', 21: 'Not Supported',
  22: 'No Reachable Authority', 23: 'Network Error', 24: 'Invalid Data',
  49152: 'CAPA pool exhausted', 49153: 'CAPA quota exceeded',
};

const FLAG_BITS: [string, number][] = [['aa', 0x400], ['tc', 0x200], ['rd', 0x100], ['ra', 0x80], ['ad', 0x20], ['cd', 0x10]];

class UsageError extends Error {}

interface Query {
  servers: ServerAddress[];
  /** The destination of a CAPA query, as resolve() takes it. */
  destination: { host: string; port: number | undefined; protocol: Protocol } | undefined;
  qname: string;
  type: QueryType;
  rrtype: number;
  timeoutMs: number;
  tcp: boolean;
}

/** `@server` is dig syntax, not a flag yargs knows: take it out first. */
function takeServer(argv: string[]): { server: string | undefined; rest: string[] } {
  const at = argv.filter((a) => a.startsWith('@'));
  if (at.length > 1) throw new UsageError(`give one @server, got ${at.join(' ')}`);
  return { server: at[0]?.slice(1), rest: argv.filter((a) => !a.startsWith('@')) };
}

function parseService(text: string): { port: number; protocol: Protocol } {
  const m = /^(\d{1,5})\/(tcp|udp)$/i.exec(text);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) {
    throw new UsageError(`"${text}" is not <port>/<tcp|udp> with a port 1-65535, e.g. 80/tcp`);
  }
  return { port: Number(m[1]), protocol: m[2]!.toLowerCase() as Protocol };
}

function checkPort(port: number | undefined): number | undefined {
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
    throw new UsageError(`-p/--port must be a port number 1-65535, got ${String(port)}`);
  }
  return port;
}

interface DigOptions {
  host: string;
  service: string | undefined;
  port: number | undefined;
  timeout: number;
  tcp: boolean;
  json: boolean;
  type: QueryType;
}

function parseArgs(argv: string[]): Promise<DigOptions> {
  return commandLine('capa-dig', argv, (message) => { throw new UsageError(message); }, (y) => y
    .usage([
      'Usage: $0 [@server] [-p port] <host> [port/proto] [options]',
      '',
      'Sends one DNS query and prints the reply like dig, CAPA records in presentation form.',
      'With port/proto it asks CAPA of _<port>._<proto>.<host>; without, of the bare host',
      '(a partial allocation). An IP address as <host> is asked by its reverse name.',
      '',
      '  @server  the DNS server: 192.0.2.1, 192.0.2.1:5300, 2001:db8::1 or [2001:db8::1]:5300',
      '           (default: CAPA_SERVER, else the nameservers of /etc/resolv.conf)',
    ].join('\n'))
    .command('$0 <host> [service]', false, (y) => y
      .positional('host', { type: 'string', describe: 'destination host name or IP address' })
      .positional('service', { type: 'string', describe: 'destination port and protocol, e.g. 80/tcp or 53/udp' }))
    .option('port', { alias: 'p', type: 'number', describe: 'port of the DNS server (overrides the one in @server or the defaults)' })
    .option('timeout', { type: 'number', default: DEFAULT_TIMEOUT_MS, describe: 'milliseconds to wait for each server' })
    .option('tcp', { type: 'boolean', default: false, describe: 'ask over TCP (default: UDP, TCP only after a truncated reply)' })
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON object instead of dig text' })
    .option('type', { alias: 't', choices: TYPES, default: 'CAPA' as QueryType, describe: 'query type' })
    .example('$0 @127.0.0.1 -p 5300 apricot.ee.unsw.edu.au 80/tcp', 'CAPA allocation for a TCP connection to port 80')
    .example('$0 @127.0.0.1 -p 5300 --type A apricot.ee.unsw.edu.au', 'the A record, as dig would ask it')
    .epilog('Exit status: 0 NOERROR reply, 1 DNS error rcode or no reply, 2 usage error.'))
    // The usage text above is laid out by hand.
    .wrap(null)
    // yargs' types drop what a default command's builder adds, so the positionals are re-typed here.
    .parseAsync() as unknown as Promise<DigOptions>;
}

async function buildQuery(argv: string[]): Promise<{ query: Query; json: boolean }> {
  const { server, rest } = takeServer(argv);
  const args = await parseArgs(rest);
  const port = checkPort(args.port);
  if (!Number.isFinite(args.timeout) || args.timeout <= 0) throw new UsageError(`--timeout must be a positive number of milliseconds, got ${args.timeout}`);
  let qname: string;
  let destination: Query['destination'];
  try {
    if (args.type === 'CAPA') {
      const service = args.service === undefined ? undefined : parseService(args.service);
      destination = { host: args.host, port: service?.port, protocol: service?.protocol ?? 'tcp' };
      qname = buildQueryName(destination);
    } else {
      if (args.service !== undefined) throw new UsageError(`port/proto "${args.service}" only goes with --type CAPA`);
      if (ipFamily(args.host) !== 0) throw new UsageError(`${args.host} is an address already; ask --type CAPA for its allocation`);
      qname = normalizeHost(args.host);
    }
  } catch (err) {
    if (isCapaError(err, 'ERR_CAPA_INVALID_ARG')) throw new UsageError(err.message);
    throw err;
  }
  let servers: ServerAddress[];
  if (server !== undefined) {
    try {
      servers = [parseServer(server)];
    } catch (err) {
      throw new UsageError(`@${server}: ${(err as Error).message}`);
    }
  } else {
    servers = await resolveServers(undefined);
  }
  if (port !== undefined) servers = servers.map((s) => ({ ...s, port }));
  let rrtype: number;
  try {
    rrtype = capaRrtype();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return { query: { servers, destination, qname, type: args.type, rrtype, timeoutMs: args.timeout, tcp: args.tcp }, json: args.json };
}

async function ask(query: Query): Promise<Reply> {
  const type = query.type === 'CAPA' ? dnsPacketTypeName(query.rrtype) : query.type;
  // One try per server, as a single query: the deadline is the sum of the per-server waits.
  const timing = startTiming({ timeout: query.timeoutMs, deadline: query.timeoutMs * query.servers.length });
  return askServers(query.servers, timing, {
    encode: (id) => encodeQuery({ id, name: query.qname, type, rd: query.type !== 'CAPA' }),
    question: { name: query.qname, type, class: 'IN' },
    rrtype: query.rrtype,
    tcp: query.tcp,
  }, (reply) => ({ done: reply }));
}

/* ---------- presentation ---------- */

interface OptRecord extends WireRecord {
  udpPayloadSize?: number;
  ednsVersion?: number;
  flags?: number;
}

const fqdn = (name: string): string => (name === '.' || name === '' ? '.' : `${name.replace(/\.$/, '')}.`);

function typeText(type: string, rrtype: number): string {
  if (type === dnsPacketTypeName(rrtype)) return 'CAPA';
  return type.startsWith('UNKNOWN_') ? `TYPE${type.slice('UNKNOWN_'.length)}` : type;
}

function rdataText(rr: WireRecord): string {
  const data = rr.data;
  if (Buffer.isBuffer(data)) return `\\# ${data.length} ${data.toString('hex').toUpperCase()}`;
  if (typeof data === 'string') return ['CNAME', 'NS', 'PTR', 'DNAME'].includes(rr.type) ? fqdn(data) : data;
  if (Array.isArray(data)) return data.map((s) => JSON.stringify(Buffer.isBuffer(s) ? s.toString() : String(s))).join(' ');
  if (rr.type === 'SOA') {
    const soa = data as { mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number };
    return `${fqdn(soa.mname)} ${fqdn(soa.rname)} ${soa.serial} ${soa.refresh} ${soa.retry} ${soa.expire} ${soa.minimum}`;
  }
  return JSON.stringify(data);
}

function recordText(rr: WireRecord, rrtype: number): string {
  if (rr.type === dnsPacketTypeName(rrtype)) {
    return formatRR({ name: rr.name, ttl: rr.ttl ?? 0, record: decodeRdata(rr.data as Buffer) });
  }
  return `${fqdn(rr.name)} ${rr.ttl ?? 0} ${rr.class ?? 'IN'} ${typeText(rr.type, rrtype)} ${rdataText(rr)}`;
}

function flagNames(message: Message): string[] {
  return ['qr', ...FLAG_BITS.filter(([, bit]) => (message.flags & bit) !== 0).map(([name]) => name)];
}

function edeText(code: number, text: string): string {
  const name = EDE_NAMES[code] ?? 'Unknown';
  return text === '' || text === name ? `${code} (${name})` : `${code} (${name}): (${text})`;
}

function digText(reply: Reply, query: Query, timeMs: number): string {
  const { message, bytes } = reply;
  const counts = [4, 6, 8, 10].map((o) => bytes.readUInt16BE(o));
  const lines = [
    `;; ->>HEADER<<- opcode: ${message.opcode}, status: ${message.rcode}, id: ${message.id}`,
    `;; flags: ${flagNames(message).join(' ')}; QUERY: ${counts[0]}, ANSWER: ${counts[1]}, AUTHORITY: ${counts[2]}, ADDITIONAL: ${counts[3]}`,
  ];
  const opt = message.additionals.find((rr) => rr.type === 'OPT') as OptRecord | undefined;
  if (opt) {
    lines.push('', ';; OPT PSEUDOSECTION:', `; EDNS: version: ${opt.ednsVersion ?? 0}, flags:${(opt.flags ?? 0) & 0x8000 ? ' do' : ''}; udp: ${opt.udpPayloadSize ?? 0}`);
    for (const e of extendedErrors(message)) lines.push(`; EDE: ${edeText(e.code, e.text)}`);
  }
  lines.push('', ';; QUESTION SECTION:', ...message.questions.map((q) => `;${fqdn(q.name)} ${q.class} ${typeText(q.type, query.rrtype)}`));
  const sections: [string, WireRecord[]][] = [
    ['ANSWER', message.answers], ['AUTHORITY', message.authorities], ['ADDITIONAL', message.additionals.filter((rr) => rr.type !== 'OPT')],
  ];
  for (const [name, records] of sections) {
    if (records.length > 0) lines.push('', `;; ${name} SECTION:`, ...records.map((rr) => recordText(rr, query.rrtype)));
  }
  const server = reply.server;
  lines.push('', `;; Query time: ${Math.round(timeMs)} msec`, `;; SERVER: ${server.address}#${server.port}(${reply.transport})`,
    `;; MSG SIZE  rcvd: ${bytes.length}`, '');
  return lines.join('\n');
}

function recordJson(rr: WireRecord, rrtype: number): Record<string, unknown> {
  const base = { name: fqdn(rr.name), ttl: rr.ttl ?? 0, class: rr.class ?? 'IN', type: typeText(rr.type, rrtype) };
  if (rr.type === dnsPacketTypeName(rrtype)) {
    const data: CapaRecord = decodeRdata(rr.data as Buffer);
    return { ...base, data };
  }
  return { ...base, data: Buffer.isBuffer(rr.data) ? rr.data.toString('hex') : rr.data };
}

function digJson(reply: Reply, query: Query, timeMs: number, outcome: StubOutcome | undefined): string {
  const { message } = reply;
  return `${JSON.stringify({
    id: message.id,
    opcode: message.opcode,
    rcode: message.rcode,
    flags: flagNames(message),
    question: message.questions.map((q) => ({ name: fqdn(q.name), class: q.class, type: typeText(q.type, query.rrtype) })),
    answer: message.answers.map((rr) => recordJson(rr, query.rrtype)),
    authority: message.authorities.map((rr) => recordJson(rr, query.rrtype)),
    additional: message.additionals.filter((rr) => rr.type !== 'OPT').map((rr) => recordJson(rr, query.rrtype)),
    ede: extendedErrors(message),
    server: `${reply.server.address}#${reply.server.port}`,
    transport: reply.transport,
    timeMs: Math.round(timeMs),
    ...(outcome === undefined ? {} : { outcome }),
  })}\n`;
}

/** What the stub would do with the reply, as capa-dig prints and --json carries it. */
type StubOutcome =
  | { kind: 'capa'; record: CapaRecord; remote: string }
  | { kind: 'fallback'; addresses: string[] }
  | { kind: 'error'; code: string; message: string };

async function stubOutcome(reply: Reply, query: Query): Promise<StubOutcome | undefined> {
  if (query.destination === undefined) return undefined;
  const options = { ...query.destination, rrtype: query.rrtype, timeout: query.timeoutMs, deadline: query.timeoutMs * 2 * query.servers.length };
  try {
    const r = await resolutionOf(reply, options, query.servers);
    return r.kind === 'capa' ? { kind: 'capa', record: r.record, remote: r.remote.address } : { kind: 'fallback', addresses: r.addresses };
  } catch (err) {
    if (!isCapaError(err)) throw err;
    return { kind: 'error', code: err.code, message: err.message };
  }
}

function outcomeText(outcome: StubOutcome): string {
  if (outcome.kind === 'capa') return `;; CAPA outcome: capa ${formatRdata(outcome.record)} -> ${outcome.remote}\n`;
  if (outcome.kind === 'fallback') return `;; CAPA outcome: fallback to A/AAAA ${outcome.addresses.join(' ')}\n`;
  return `;; CAPA outcome: ${outcome.code}: ${outcome.message}\n`;
}

async function main(argv: string[]): Promise<number> {
  let built: { query: Query; json: boolean };
  try {
    built = await buildQuery(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`capa-dig: ${err.message}\nRun "capa-dig --help" for usage.\n`);
    return EXIT.usage;
  }
  const { query, json } = built;
  const started = performance.now();
  let reply: Reply;
  try {
    reply = await ask(query);
  } catch (err) {
    if (!(err instanceof CapaError)) throw err;
    process.stderr.write(`;; ${err.message}\n`);
    if (json) process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message } })}\n`);
    return EXIT.dnsError;
  }
  const timeMs = performance.now() - started;
  const outcome = await stubOutcome(reply, query);
  process.stdout.write(json ? digJson(reply, query, timeMs, outcome) : digText(reply, query, timeMs) + (outcome ? outcomeText(outcome) : ''));
  return reply.message.rcode === 'NOERROR' ? EXIT.answer : EXIT.dnsError;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`capa-dig: ${(err as Error).message}\n`);
    process.exitCode = isCapaError(err) ? EXIT.dnsError : 70;
  },
);
