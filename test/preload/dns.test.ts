/**
 * The library's DNS client against scripted servers (test/helpers/fake-dns-server.ts): RFC 5452
 * matching (spoofed source, wrong ID, malformed replies are ignored), TC=1 retried over TCP,
 * several servers in order, and the error table (REFUSED, NXDOMAIN), seen through real programs.
 */
import dnsPacket from 'dns-packet';
import { constants } from 'node:os';
import { existsSync } from 'node:fs';
import { expect } from 'chai';
import { EDE } from '../../resolver/codec/constants.js';
import { parseQueryName } from '../../resolver/codec/qname.js';
import type { CapaRecord } from '../../resolver/codec/rdata.js';
import { requireTool } from '../helpers/c-build.js';
import { addressRecord, capaRecord, type FakeDnsServer, type Handler, type ReceivedQuery, reply, startFakeDnsServer } from '../helpers/fake-dns-server.js';
import { capaRun, closedUdpPort, key, LIBRARY, OUTSIDE_HOST, OUTSIDE_NAME, type OutsideServer, pins, readCapaLog, run, CAPA_RUN, startTcpOutside, type Workspace, workspace } from './lab.js';

const CAPA_TYPE = 'UNKNOWN_65280';
const GENUINE: CapaRecord = { flags: 0, proto: 6, port: 40001, address: '127.66.81.1' };
const SPOOFED: CapaRecord = { flags: 0, proto: 6, port: 40002, address: '127.66.81.2' };

/** glibc's EAI_* codes, as Python's socket.gaierror reports them (README: a CAPA failure fails the lookup with one). */
const EAI_NONAME = -2;
const EAI_FAIL = -4;

const isCapa = (q: ReceivedQuery): boolean => q.message?.questions[0]?.type === CAPA_TYPE;

/** A CAPA answer for the query's own name, with the host's A record in ADDITIONAL. */
function capaAnswer(q: ReceivedQuery, record: CapaRecord, shape: Parameters<typeof reply>[1] = {}): Buffer {
  const qname = q.message!.questions[0]!.name;
  return reply(q, {
    aa: true,
    answers: [capaRecord(qname, 30, record)],
    additionals: [addressRecord(parseQueryName(qname).host, 30, OUTSIDE_HOST)],
    ...shape,
  });
}

/** What the server received, in order: type (or opcode UPDATE), name, RD. */
function asked(dns: FakeDnsServer): string[] {
  return dns.queries.map((q) => {
    const question = q.message!.questions[0]!;
    const rd = (q.message!.flags & dnsPacket.RECURSION_DESIRED) !== 0 ? ' rd' : '';
    return q.message!.opcode === 'UPDATE' ? `UPDATE ${question.name}` : `${question.type} ${question.name}${rd}`;
  });
}

/** A gateway that answers CAPA with `record` but leaves ADDITIONAL empty, and A/AAAA with `onAddress`. */
function noAdditional(record: CapaRecord, onAddress: (q: ReceivedQuery) => Buffer): Handler {
  return (q) => {
    if (isCapa(q)) return reply(q, { aa: true, answers: [capaRecord(q.message!.questions[0]!.name, 30, record)] });
    return q.message?.opcode === 'UPDATE' ? reply(q) : onAddress(q);
  };
}

function fakeGateway(onCapa: (q: ReceivedQuery) => ReturnType<Handler>): Handler {
  return (q) => (isCapa(q) ? onCapa(q) : reply(q, { rcode: 'NXDOMAIN' }));
}

describe('capa-run DNS client against scripted servers', function () {
  let ws: Workspace;
  let tcp: OutsideServer;
  const servers: FakeDnsServer[] = [];
  let logCount = 0;
  const newLog = (): string => ws.file(`capa-${++logCount}.log`);

  async function server(handler: Handler): Promise<FakeDnsServer> {
    const s = await startFakeDnsServer(handler);
    servers.push(s);
    return s;
  }

  /** python3 connecting to outside.test under capa-run; returns the local (address, port) or the errno. */
  async function pythonConnect(ctx: Mocha.Context, serverList: string, log: string, host = OUTSIDE_NAME) {
    const python = requireTool(ctx, 'python3', 'capa-run DNS tests');
    const script = [
      'import json, socket',
      'try:',
      `    s = socket.create_connection((${JSON.stringify(host)}, ${tcp.port}))`,
      '    print(json.dumps({"local": s.getsockname()}))',
      'except socket.gaierror as e:',
      '    print(json.dumps({"gai": e.errno}))',
      'except OSError as e:',
      '    print(json.dumps({"errno": e.errno}))',
    ].join('\n');
    const result = await capaRun(serverList, log, [python, '-c', script]);
    expect(result.code, result.stderr).to.equal(0);
    return { ...(JSON.parse(result.stdout) as { local?: [string, number]; errno?: number; gai?: number }), stderr: result.stderr };
  }

  before(async function () {
    if (!existsSync(LIBRARY)) throw new Error(`${LIBRARY} is missing: build it with "npx node-gyp rebuild"`);
    ws = await workspace();
    tcp = await startTcpOutside();
  });

  afterEach(async function () {
    for (const s of servers.splice(0)) await s.close();
    tcp.peers.length = 0;
  });

  after(async function () {
    await tcp?.close();
    await ws?.remove();
  });

  it('ignores a spoofed reply (other source port), a wrong ID and a malformed reply', async function () {
    const dns = await server(fakeGateway((q) => [
      { bytes: capaAnswer(q, SPOOFED), spoof: true },
      capaAnswer(q, SPOOFED, { id: (q.message!.id + 1) & 0xffff }),
      capaAnswer(q, SPOOFED).subarray(0, 40),
      { bytes: capaAnswer(q, GENUINE), delayMs: 50 },
    ]));
    const log = newLog();
    const out = await pythonConnect(this, dns.server, log);
    expect(out.local).to.deep.equal([GENUINE.address, GENUINE.port]);
    expect(tcp.peers).to.deep.equal([{ address: GENUINE.address, port: GENUINE.port }]);
  });

  it('retries over TCP when the UDP reply is truncated', async function () {
    const dns = await server(fakeGateway((q) => (q.transport === 'udp' ? reply(q, { tc: true }) : capaAnswer(q, GENUINE))));
    const out = await pythonConnect(this, dns.server, newLog());
    expect(out.local).to.deep.equal([GENUINE.address, GENUINE.port]);
    expect(dns.queries.filter(isCapa).map((q) => q.transport)).to.deep.equal(['udp', 'tcp']);
  });

  it('asks the next server when one is unreachable or its pool is exhausted', async function () {
    const exhausted = await server(fakeGateway((q) => reply(q, { rcode: 'SERVFAIL', ede: [{ code: EDE.POOL_EXHAUSTED, text: 'CAPA pool exhausted' }] })));
    const good = await server(fakeGateway((q) => capaAnswer(q, GENUINE)));
    const dead = `127.0.0.1:${await closedUdpPort()}`;
    const out = await pythonConnect(this, `${dead},${exhausted.server},${good.server}`, newLog());
    expect(out.local).to.deep.equal([GENUINE.address, GENUINE.port]);
    expect(exhausted.queries).to.have.length(1);
  });

  it('REFUSED (EDE 18): the lookup fails without trying further, a literal connect fails with EPERM', async function () {
    const refusing = await server(fakeGateway((q) => reply(q, { rcode: 'REFUSED', ede: [{ code: EDE.PROHIBITED, text: 'not inside' }] })));
    const other = await server(fakeGateway((q) => capaAnswer(q, GENUINE)));
    const byName = await pythonConnect(this, `${refusing.server},${other.server}`, newLog());
    expect(byName.gai, 'REFUSED is final: EAI_FAIL').to.equal(EAI_FAIL);
    expect(byName.stderr).to.include('CAPA refused (REFUSED from');
    expect(byName.stderr).to.include('EDE 18: not inside');
    const literal = await pythonConnect(this, `${refusing.server},${other.server}`, newLog(), OUTSIDE_HOST);
    expect(literal.errno).to.equal(constants.errno.EPERM);
    expect(other.queries).to.have.length(0);
    expect(tcp.peers).to.have.length(0);
  });

  it('NXDOMAIN: curl cannot resolve the host and the reason is printed', async function () {
    const curl = requireTool(this, 'curl', 'capa-run DNS tests');
    const dns = await server(fakeGateway((q) => reply(q, { rcode: 'NXDOMAIN' })));
    const result = await capaRun(dns.server, newLog(), [curl, '-sS', `http://nowhere.test:${tcp.port}/`]);
    expect(result.code).to.equal(6);
    expect(result.stderr).to.include(`cannot resolve nowhere.test: name does not exist (NXDOMAIN from ${dns.server}`);
  });

  it('--quiet keeps the reasons off stderr but not out of the log', async function () {
    const curl = requireTool(this, 'curl', 'capa-run DNS tests');
    const dns = await server(fakeGateway((q) => reply(q, { rcode: 'NXDOMAIN' })));
    const log = newLog();
    const result = await run(CAPA_RUN, ['--quiet', '--server', dns.server, '--log', log, '--', curl, '-sS', `http://nowhere.test:${tcp.port}/`]);
    expect(result.code).to.equal(6);
    expect(result.stderr).to.not.include('capa-run');
    expect(readCapaLog(log).find((e) => e.event === 'error')?.message).to.include('name does not exist');
  });

  it('asks a server on IPv6 ([::1]:port)', async function () {
    const dns = await startFakeDnsServer(fakeGateway((q) => capaAnswer(q, GENUINE)), '::1');
    servers.push(dns);
    const out = await pythonConnect(this, dns.server, newLog());
    expect(out.local).to.deep.equal([GENUINE.address, GENUINE.port]);
    expect(dns.queries[0]!.from.address).to.equal('::1');
  });

  it('CAPA_RRTYPE changes the record type it asks for and reads', async function () {
    const python = requireTool(this, 'python3', 'capa-run DNS tests');
    const rrtype = 65400;
    const dns = await startFakeDnsServer((q) => {
      const question = q.message?.questions[0];
      if (question?.type !== `UNKNOWN_${rrtype}`) return reply(q, { rcode: 'REFUSED' });
      return reply(q, { aa: true, answers: [capaRecord(question.name, 30, GENUINE, rrtype)], additionals: [addressRecord(OUTSIDE_NAME, 30, OUTSIDE_HOST)] });
    }, '127.0.0.1', rrtype);
    servers.push(dns);
    const script = `import socket; print(socket.create_connection((${JSON.stringify(OUTSIDE_NAME)}, ${tcp.port})).getsockname())`;
    const result = await run(CAPA_RUN, ['--server', dns.server, '--', python, '-c', script], { env: { CAPA_RRTYPE: String(rrtype) } });
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout.trim()).to.equal(`('${GENUINE.address}', ${GENUINE.port})`);
  });

  it('multicast, broadcast and link-local destinations are sent without asking CAPA', async function () {
    const python = requireTool(this, 'python3', 'capa-run DNS tests');
    const dns = await server(fakeGateway((q) => capaAnswer(q, GENUINE)));
    const script = [
      'import socket',
      'for dest in [("239.255.0.1", 9), ("255.255.255.255", 9), ("169.254.1.1", 9)]:',
      '    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)',
      '    try: s.sendto(b"x", dest)',
      '    except OSError: pass  # no route on this host: the kernel decides, not CAPA',
      '    print(s.getsockname()[0])',
    ].join('\n');
    const log = newLog();
    const result = await capaRun(dns.server, log, [python, '-c', script]);
    expect(result.code, result.stderr).to.equal(0);
    expect(dns.queries).to.have.length(0);
    expect(result.stdout).to.not.include(GENUINE.address);
    expect(pins(readCapaLog(log))).to.have.length(0);
  });

  it('a CAPA answer for a protocol the program did not ask for is refused, not used', async function () {
    const dns = await server(fakeGateway((q) => capaAnswer(q, { ...GENUINE, proto: 17 })));
    const log = newLog();
    const out = await pythonConnect(this, dns.server, log);
    expect(out.gai, 'an answer that cannot be used is malformed: EAI_FAIL').to.equal(EAI_FAIL);
    expect(out.stderr).to.include('is for another protocol');
    expect(pins(readCapaLog(log)).map((p) => key(p.aOG, p.pA))).to.deep.equal([]);
    expect(tcp.peers).to.have.length(0);
  });

  it('a CAPA answer without the A record: asks the same server for it (RD=1), follows a CNAME, connects pinned', async function () {
    const dns = await server(noAdditional(GENUINE, (q) => reply(q, {
      answers: [{ name: OUTSIDE_NAME, type: 'CNAME', class: 'IN', ttl: 30, data: 'alias.test' }, addressRecord('alias.test', 30, OUTSIDE_HOST)],
    })));
    const other = await server(fakeGateway((q) => capaAnswer(q, SPOOFED)));
    const log = newLog();
    const out = await pythonConnect(this, `${dns.server},${other.server}`, log);
    expect(out.local, out.stderr).to.deep.equal([GENUINE.address, GENUINE.port]);
    expect(tcp.peers).to.deep.equal([{ address: GENUINE.address, port: GENUINE.port }]);
    // ...and the release when Python closes the socket.
    expect(asked(dns)).to.deep.equal([`${CAPA_TYPE} _${tcp.port}._tcp.${OUTSIDE_NAME}`, `A ${OUTSIDE_NAME} rd`, `UPDATE ${OUTSIDE_NAME}`]);
    expect(readCapaLog(log).filter((e) => e.event === 'release').map((e) => e.why)).to.deep.equal(['close']);
    expect(other.queries).to.have.length(0);
    expect(readCapaLog(log).find((e) => e.event === 'allocate')?.aOB).to.equal(OUTSIDE_HOST);
  });

  it('no A record to go with the allocation: fails closed and hands the allocation back', async function () {
    const dns = await server(noAdditional(GENUINE, (q) => reply(q, { answers: [addressRecord('elsewhere.test', 30, OUTSIDE_HOST)] })));
    const log = newLog();
    const out = await pythonConnect(this, dns.server, log);
    expect(out.gai, 'no destination address: EAI_NONAME').to.equal(EAI_NONAME);
    expect(out.stderr).to.include(`${OUTSIDE_NAME} has no A record (asked ${dns.server}) to go with its IPv4 CAPA allocation`);
    expect(asked(dns)).to.deep.equal([`${CAPA_TYPE} _${tcp.port}._tcp.${OUTSIDE_NAME}`, `A ${OUTSIDE_NAME} rd`, `UPDATE ${OUTSIDE_NAME}`]);
    const release = readCapaLog(log).find((e) => e.event === 'release');
    expect(release).to.include({ why: 'no destination address', aOG: GENUINE.address, pA: GENUINE.port, outcome: 'released' });
    expect(tcp.peers).to.have.length(0);
  });

  it('an IPv6 allocation asks AAAA, and an NXDOMAIN for it fails the lookup', async function () {
    const v6: CapaRecord = { flags: 0, proto: 6, port: 40003, address: '2001:db8:ca9a::1' };
    const dns = await server(noAdditional(v6, (q) => reply(q, { rcode: 'NXDOMAIN' })));
    const out = await pythonConnect(this, dns.server, newLog());
    expect(out.gai).to.equal(EAI_NONAME);
    expect(out.stderr).to.include(`name does not exist (NXDOMAIN from ${dns.server}) for ${OUTSIDE_NAME}`);
    expect(asked(dns).slice(1, 2)).to.deep.equal([`AAAA ${OUTSIDE_NAME} rd`]);
  });

  it('an allocation of the other family than a literal destination is handed back', async function () {
    const v6: CapaRecord = { flags: 0, proto: 6, port: 40004, address: '2001:db8:ca9a::2' };
    const dns = await server(noAdditional(v6, (q) => reply(q, { rcode: 'REFUSED' })));
    const log = newLog();
    const out = await pythonConnect(this, dns.server, log, OUTSIDE_HOST);
    expect(out.errno).to.equal(constants.errno.ENETUNREACH);
    expect(out.stderr).to.include('gives an IPv6 source for an IPv4 destination');
    expect(asked(dns)).to.deep.equal([`${CAPA_TYPE} _${tcp.port}._tcp.1.80.67.127.in-addr.arpa`, 'UPDATE 1.80.67.127.in-addr.arpa']);
    expect(readCapaLog(log).find((e) => e.event === 'release')?.aOG).to.equal(v6.address);
  });
});
