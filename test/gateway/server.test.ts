/**
 * The gateway over real UDP and TCP on 127.0.0.1: with dig (bind9-dnsutils) as an independent
 * client, with the project's own resolver (resolve + release), with an upstream server, and the
 * listener's connection handling.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DnsServer } from '../../gateway-ref/lib/dns/server.js';
import { type RunningGateway, startGateway } from '../../gateway-ref/lib/gateway.js';
import { parsePool } from '../../gateway-ref/lib/grm/pool.js';
import { DEFAULT_CAPA_RRTYPE, dnsPacketTypeName } from '../../resolver/codec/constants.js';
import { isCapaError } from '../../resolver/codec/errors.js';
import { capaAnswers, decodeMessage, encodeQuery } from '../../resolver/codec/message.js';
import { decode as decodeRdata } from '../../resolver/codec/rdata.js';
import { release, resolve } from '../../resolver/lib/resolve.js';
import { frame, unframe } from '../../resolver/codec/tcp-frame.js';
import { addressRecord, reply, startFakeDnsServer, type FakeDnsServer } from '../helpers/fake-dns-server.js';

const run = promisify(execFile);
const POOL = parsePool('127.64.0.1-127.64.0.4');
const ZONE = `$ORIGIN example.
$TTL 300
www    IN A 127.0.0.80
alias  IN CNAME www
ext    IN CNAME up.test.
`;

/** dig from bind9-dnsutils: required in CI, elsewhere its tests may skip. */
async function findDig(): Promise<boolean> {
  try {
    await run('dig', ['-v']);
    return true;
  } catch {
    if (process.env.CI === 'true') throw new Error('dig is not installed but CI=true: install Debian package bind9-dnsutils (.ci/run does)');
    return false;
  }
}

async function dig(gateway: RunningGateway, args: string[]): Promise<string> {
  const { stdout } = await run('dig', [`@${gateway.listen.address}`, '-p', String(gateway.listen.port), '+time=2', '+tries=1', ...args], { timeout: 10_000 });
  return stdout;
}

/** The CAPA record in dig's RFC 3597 rendering: `TYPE65280 \# 8 0006...`. */
function digCapa(output: string): ReturnType<typeof decodeRdata> {
  const m = /^_80\._tcp\.www\.example\.\s+30\s+IN\s+TYPE65280\s+\\# 8 ([0-9A-Fa-f ]+)$/m.exec(output);
  expect(m, `a CAPA RR in dig's answer section:\n${output}`).to.not.equal(null);
  return decodeRdata(Buffer.from(m![1]!.replace(/\s/g, ''), 'hex'));
}

describe('gateway server over real UDP and TCP', function () {
  this.timeout(20_000);
  let dir: string;
  let upstream: FakeDnsServer;
  let gateway: RunningGateway;
  let haveDig = false;

  before(async () => {
    haveDig = await findDig();
    dir = await mkdtemp(join(tmpdir(), 'capa-gw-'));
    await writeFile(join(dir, 'zone.txt'), ZONE);
    upstream = await startFakeDnsServer((query) => {
      const q = query.message?.questions[0];
      if (q?.name === 'up.test' && q.type === 'A') return reply(query, { answers: [addressRecord('up.test', 60, '127.0.0.90')] });
      if (q?.name === 'broken.test') return reply(query, { rcode: 'SERVFAIL' });
      return reply(query, { rcode: 'NXDOMAIN' });
    });
    gateway = await startGateway({
      listen: { address: '127.0.0.1', port: 0 },
      pool: POOL,
      inside: ['127.0.0.0/8'],
      zoneFile: join(dir, 'zone.txt'),
      upstream: { address: upstream.address, port: upstream.port },
      leaseSeconds: 30,
      logFile: join(dir, 'journal.jsonl'),
      metrics: { address: '127.0.0.1', port: 0 },
    });
  });

  after(async () => {
    await gateway?.close();
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('dig over UDP: _80._tcp.www.example TYPE65280 +norec gets a pool allocation and the A record in the additional section', async function () {
    if (!haveDig) this.skip();
    const out = await dig(gateway, ['_80._tcp.www.example', 'TYPE65280', '+norec']);
    expect(out).to.match(/status: NOERROR/);
    expect(out).to.match(/flags: qr aa;/);
    const record = digCapa(out);
    expect(POOL).to.include(record.address);
    expect(record).to.include({ flags: 0, proto: 6 });
    expect(out).to.match(/;; ADDITIONAL SECTION:\nwww\.example\.\s+300\s+IN\s+A\s+127\.0\.0\.80/);
    expect(out).to.match(/\(UDP\)/);
  });

  it('dig over TCP gets a different allocation for the same destination', async function () {
    if (!haveDig) this.skip();
    const udp = digCapa(await dig(gateway, ['_80._tcp.www.example', 'TYPE65280', '+norec']));
    const out = await dig(gateway, ['_80._tcp.www.example', 'TYPE65280', '+norec', '+tcp']);
    expect(out).to.match(/\(TCP\)/);
    const tcp = digCapa(out);
    expect(`${tcp.address}:${tcp.port}`).to.not.equal(`${udp.address}:${udp.port}`);
  });

  it('dig sees NXDOMAIN for an unknown name and the zone data for A queries', async function () {
    if (!haveDig) this.skip();
    expect(await dig(gateway, ['nothere.example', 'A'])).to.match(/status: NXDOMAIN/);
    expect((await dig(gateway, ['alias.example', 'A', '+short'])).trim().split('\n')).to.deep.equal(['www.example.', '127.0.0.80']);
  });

  it('the resolver gets an allocation (resolve) and hands it back (release)', async () => {
    const endpoint = await resolve({ host: 'www.example', port: 80, servers: [`127.0.0.1:${gateway.listen.port}`], timeout: 1000 });
    expect(endpoint.kind).to.equal('capa');
    if (endpoint.kind !== 'capa') return;
    expect(POOL).to.include(endpoint.local.address);
    expect(endpoint.remote).to.deep.equal({ address: '127.0.0.80', port: 80 });
    expect(endpoint.ttl).to.equal(30);
    const find = (): unknown => gateway.service.allocator.find({ proto: 6, remoteAddress: '127.0.0.80', remotePort: 80, localAddress: endpoint.local.address, localPort: endpoint.local.port });
    expect(find(), 'live before release').to.not.equal(undefined);
    await release(endpoint, { timeout: 1000 });
    expect(find(), 'gone after release').to.equal(undefined);
    try {
      await release(endpoint, { timeout: 1000 });
      expect.fail('a second release must fail');
    } catch (err) {
      expect(isCapaError(err, 'ERR_CAPA_NO_ALLOCATION'), String(err)).to.equal(true);
    }
  });

  it('a release from another terminal (another 127/8 source address) is refused', async () => {
    const servers = [`127.0.0.1:${gateway.listen.port}`];
    const endpoint = await resolve({ host: 'www.example', port: 443, servers, localAddress: '127.0.0.2' });
    if (endpoint.kind !== 'capa') return expect.fail('expected an allocation');
    expect(gateway.service.allocator.find({ proto: 6, remoteAddress: '127.0.0.80', remotePort: 443, localAddress: endpoint.local.address, localPort: endpoint.local.port })!.terminal).to.equal('127.0.0.2');
    try {
      await release(endpoint, { localAddress: '127.0.0.3' });
      expect.fail('release by another terminal must fail');
    } catch (err) {
      expect(isCapaError(err, 'ERR_CAPA_NOT_OWNER'), String(err)).to.equal(true);
    }
    await release(endpoint, { localAddress: '127.0.0.2' });
  });

  it('forwards names outside the zone to the upstream server (A and CAPA); its NXDOMAIN and SERVFAIL pass through', async () => {
    const servers = [`127.0.0.1:${gateway.listen.port}`];
    const endpoint = await resolve({ host: 'up.test', port: 8080, servers });
    expect(endpoint.kind === 'capa' && endpoint.remote).to.deep.equal({ address: '127.0.0.90', port: 8080 });
    const ask = async (name: string, type: string): Promise<string> => {
      const r = await exchangeUdp(gateway.listen.port, encodeQuery({ id: 9, name, type, rd: true }));
      return decodeMessage(r).rcode;
    };
    const viaCname = decodeMessage(await exchangeUdp(gateway.listen.port, encodeQuery({ id: 10, name: 'ext.example', type: 'A', rd: true })));
    expect(viaCname.answers.map((rr) => `${rr.name} ${rr.type} ${String(rr.data)}`), 'a CNAME leaving the zone is chased upstream').to.deep.equal([
      'ext.example CNAME up.test',
      'up.test A 127.0.0.90',
    ]);
    expect(await ask('none.test', 'A')).to.equal('NXDOMAIN');
    expect(await ask('broken.test', 'A')).to.equal('SERVFAIL');
    expect(upstream.queries.some((q) => q.message?.questions[0]?.name === 'up.test'), 'the upstream was asked').to.equal(true);
  });

  it('answers several pipelined queries on one TCP connection, each under its own ID', async () => {
    const socket = net.connect(gateway.listen.port, '127.0.0.1');
    await once(socket, 'connect');
    const type = dnsPacketTypeName(DEFAULT_CAPA_RRTYPE);
    const replies = readFrames(socket, 3);
    socket.write(Buffer.concat([1, 2, 3].map((id) => frame(encodeQuery({ id, name: `_${id}0._tcp.www.example`, type })))));
    const frames = await replies;
    socket.destroy();
    const byId = new Map(frames.map((r) => [decodeMessage(r).id, decodeMessage(r)]));
    expect([...byId.keys()].sort()).to.deep.equal([1, 2, 3]);
    for (const id of [1, 2, 3]) expect(capaAnswers(byId.get(id)!)[0]!.name).to.equal(`_${id}0._tcp.www.example`);
  });

  it('serves Prometheus metrics at /metrics', async () => {
    const text = await new Promise<string>((resolveText, reject) => {
      http.get(`http://127.0.0.1:${gateway.metricsListen!.port}/metrics`, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => { body += d.toString(); });
        res.on('end', () => resolveText(body));
      }).on('error', reject);
    });
    expect(text).to.match(/^capa_dns_responses_total\{rcode="NOERROR"\} [1-9]\d*$/m);
    expect(text).to.match(/^capa_allocation_events_total\{event="allocate"\} [1-9]\d*$/m);
    expect(text).to.match(/^capa_live_states\{state="pending"\} \d+$/m);
    expect(text).to.match(/^capa_pool_utilisation_ratio [\d.e-]+$/m);
  });
});

/** Collects `count` DNS frames from a TCP socket (listening from the start, so no chunk is missed). */
function readFrames(socket: net.Socket, count: number): Promise<Buffer[]> {
  return new Promise((resolveFrames, reject) => {
    let stream: Buffer = Buffer.alloc(0);
    const frames: Buffer[] = [];
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`connection closed after ${frames.length} of ${count} replies`)));
    socket.on('data', (chunk: Buffer) => {
      const split = unframe(Buffer.concat([stream, chunk]));
      frames.push(...split.frames);
      stream = split.rest;
      if (frames.length >= count) resolveFrames(frames);
    });
  });
}

async function exchangeUdp(port: number, query: Buffer): Promise<Buffer> {
  const dgram = await import('node:dgram');
  const socket = dgram.createSocket('udp4');
  try {
    socket.send(query, port, '127.0.0.1');
    const [msg] = (await Promise.race([
      once(socket, 'message'),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no reply within 3 s')), 3000).unref()),
    ])) as [Buffer];
    return msg;
  } finally {
    socket.close();
  }
}

describe('gateway DNS listener: TCP connection limits', function () {
  this.timeout(10_000);
  const echo = async (request: Buffer): Promise<Buffer> => request;

  it('closes an idle TCP connection after the idle timeout', async () => {
    const server = await DnsServer.listen({ host: '127.0.0.1', port: 0, handle: echo, tcpIdleMs: 200 });
    try {
      const socket = net.connect(server.port, '127.0.0.1');
      await once(socket, 'connect');
      const connected = performance.now();
      await once(socket, 'close'); // the mocha timeout bounds this
      expect(performance.now() - connected, 'closed by the idle timer (200 ms), not at once').to.be.within(150, 5000);
    } finally {
      await server.close();
    }
  });

  it('accepts at most maxTcpConnections at once; the connections it holds keep working', async () => {
    const server = await DnsServer.listen({ host: '127.0.0.1', port: 0, handle: echo, maxTcpConnections: 2 });
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const s = net.connect(server.port, '127.0.0.1');
        sockets.push(s);
        await once(s, 'connect');
      }
      const third = net.connect(server.port, '127.0.0.1');
      sockets.push(third);
      await once(third, 'close');
      const echoed = readFrames(sockets[0]!, 1);
      sockets[0]!.write(frame(Buffer.from('hello world!')));
      expect((await echoed)[0]!.toString()).to.equal('hello world!');
    } finally {
      for (const s of sockets) s.destroy();
      await server.close();
    }
  });

  it('rejects a second listener on the same address and port with EADDRINUSE', async () => {
    const server = await DnsServer.listen({ host: '127.0.0.1', port: 0, handle: echo });
    try {
      await DnsServer.listen({ host: '127.0.0.1', port: server.port, handle: echo });
      expect.fail('the second listen must fail');
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).to.equal('EADDRINUSE');
    } finally {
      await server.close();
    }
  });
});
