/**
 * The stub resolver against in-test DNS servers that misbehave on purpose (wrong ID, wrong
 * source, wrong question, cut packets, TC=1, silence, every EDE of the DESIGN error table).
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import dnsPacket from 'dns-packet';
import { EDE, EDNS_PAYLOAD } from '../../resolver/codec/constants.js';
import { CapaError } from '../../resolver/codec/errors.js';
import { type CapaRecord } from '../../resolver/codec/rdata.js';
import { CapaResolver, resolve, type ResolveOptions } from '../../resolver/lib/resolve.js';
import { configuredServers, parseResolvConf, resolveServers } from '../../resolver/lib/servers.js';
import { formatServer, parseServer, parseServerList } from '../../resolver/codec/server-address.js';
import { fromServer } from '../../resolver/lib/transport.js';
import { checkReply } from '../../resolver/codec/reply-check.js';
import {
  addressRecord, capaRecord, type FakeDnsServer, type Handler, type ReceivedQuery, reply, startFakeDnsServer,
} from '../helpers/fake-dns-server.js';
import { capaRejection } from '../helpers/expect-error.js';

const HOST = 'apricot.example.test';
const QNAME = `_80._tcp.${HOST}`;
const AOB = '127.1.2.3';
const ALLOC: CapaRecord = { flags: 0, proto: 6, port: 8500, address: '127.64.0.5' };
const SPOOFED: CapaRecord = { flags: 0, proto: 6, port: 6666, address: '127.66.6.6' };
const FAST = { timeout: 200, deadline: 500 };
const CAPA_TYPE = 'UNKNOWN_65280';

const qtype = (q: ReceivedQuery): string | undefined => q.message?.questions[0]?.type;
const qname = (q: ReceivedQuery): string | undefined => q.message?.questions[0]?.name;

function capaReply(q: ReceivedQuery, record = ALLOC, extra: Parameters<typeof reply>[1] = {}): Buffer {
  return reply(q, {
    aa: true,
    answers: [capaRecord(qname(q) ?? QNAME, 30, record)],
    additionals: [addressRecord(HOST, 30, AOB)],
    ...extra,
  });
}

/** A well-behaved GRM: CAPA with the A in ADDITIONAL, A on request, no AAAA. */
function gateway(onCapa: (q: ReceivedQuery) => ReturnType<Handler> = (q) => capaReply(q)): Handler {
  return (q) => {
    if (qtype(q) === CAPA_TYPE) return onCapa(q);
    if (qtype(q) === 'A') return reply(q, { answers: [addressRecord(qname(q)!, 30, AOB)] });
    return reply(q);
  };
}

describe('resolver: resolve() against a scriptable server', () => {
  let servers: FakeDnsServer[] = [];
  const start = async (handler: Handler): Promise<FakeDnsServer> => {
    const s = await startFakeDnsServer(handler);
    servers.push(s);
    return s;
  };
  const ask = (s: FakeDnsServer | FakeDnsServer[], extra: Partial<ResolveOptions> = {}): ReturnType<typeof resolve> =>
    resolve({ host: HOST, port: 80, protocol: 'tcp', servers: [s].flat().map((x) => x.server), ...FAST, ...extra });

  afterEach(async () => {
    await Promise.all(servers.map((s) => s.close()));
    servers = [];
  });

  describe('the CAPA path', () => {
    it('returns the pinned endpoint of the answer, aOB from ADDITIONAL', async () => {
      const s = await start(gateway());
      const r = await ask(s);
      expect(r).to.deep.include({
        kind: 'capa',
        local: { address: '127.64.0.5', port: 8500 },
        remote: { address: AOB, port: 80 },
        protocol: 'tcp',
        ttl: 30,
        server: s.server,
        host: HOST,
        qname: QNAME,
      });
      expect(s.queries).to.have.length(1, 'no A query when ADDITIONAL has it');
    });

    it('asks with RD=0, QTYPE 65280 and an OPT of payload 1232', async () => {
      const s = await start(gateway());
      await ask(s);
      const q = s.queries[0]!;
      expect(q.message!.flags & dnsPacket.RECURSION_DESIRED).to.equal(0);
      expect(q.message!.questions).to.deep.equal([{ name: QNAME, type: CAPA_TYPE, class: 'IN' }]);
      const opt = q.message!.additionals.find((rr) => rr.type === 'OPT') as { udpPayloadSize?: number } | undefined;
      expect(opt?.udpPayloadSize).to.equal(EDNS_PAYLOAD);
    });

    it('uses a fresh source port and a fresh random ID for every query', async () => {
      const s = await start(gateway());
      for (let i = 0; i < 6; i++) await ask(s);
      expect(new Set(s.queries.map((q) => q.message!.id)).size).to.be.greaterThan(1);
      // The next query's socket is opened (ahead) while this one is still open, so even a kernel
      // that hands out ports in order cannot give two queries in a row the same one.
      const ports = s.queries.map((q) => q.from.port);
      ports.slice(1).forEach((port, i) => expect(port, `query ${i + 2}`).to.not.equal(ports[i]));
    });

    it('holds no event loop open with the sockets it opens ahead', async function () {
      this.timeout(20_000);
      const s = await start(gateway());
      // The child resolves twice (so a socket has been opened ahead) and must then exit by
      // itself, well before an unused spare would close (10 s).
      const script = `import { resolve } from ${JSON.stringify(new URL('../../resolver/lib/resolve.js', import.meta.url).href)};
        for (let i = 0; i < 2; i++) await resolve({ host: ${JSON.stringify(HOST)}, port: 80, servers: [${JSON.stringify(s.server)}] });`;
      const started = Date.now();
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'] });
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).to.equal(0);
      expect(Date.now() - started, 'ms until the child exited').to.be.below(8_000);
      expect(s.queries.filter((q) => qtype(q) === CAPA_TYPE)).to.have.length(2);
    });

    it('queries A (RD=1) from the same server when ADDITIONAL lacks it', async () => {
      const s = await start(gateway((q) => reply(q, { aa: true, answers: [capaRecord(QNAME, 30, ALLOC)] })));
      const r = await ask(s);
      expect(r).to.deep.include({ kind: 'capa', remote: { address: AOB, port: 80 } });
      const a = s.queries.find((q) => qtype(q) === 'A');
      expect(qname(a!)).to.equal(HOST);
      expect(a!.message!.flags & dnsPacket.RECURSION_DESIRED).to.not.equal(0);
    });

    it('ignores additional records not owned by <host>', async () => {
      const s = await start(gateway((q) => capaReply(q, ALLOC, { additionals: [addressRecord('evil.example.test', 30, '127.9.9.9')] })));
      const r = await ask(s);
      expect(r).to.deep.include({ remote: { address: AOB, port: 80 } });
    });

    it('takes the AAAA for an IPv6 allocation', async () => {
      const v6: CapaRecord = { flags: 0, proto: 6, port: 4000, address: '2001:db8::5' };
      const s = await start(gateway((q) => capaReply(q, v6, {
        additionals: [addressRecord(HOST, 30, '127.1.2.3'), addressRecord(HOST, 30, '2001:db8::b')],
      })));
      expect(await ask(s)).to.deep.include({ local: { address: '2001:db8::5', port: 4000 }, remote: { address: '2001:db8::b', port: 80 } });
    });

    it('accepts PROTO 0 (any) and a question echoed in other letter case', async () => {
      const s = await start(gateway((q) => capaReply(q, { ...ALLOC, proto: 0 }, {
        questions: [{ name: QNAME.toUpperCase(), type: CAPA_TYPE, class: 'IN' }],
      })));
      expect(await ask(s)).to.deep.include({ kind: 'capa', local: { address: ALLOC.address, port: ALLOC.port } });
    });

    it('asks an IP-literal destination by reverse name and uses the literal as aOB', async () => {
      const s = await start(gateway());
      const r = await ask(s, { host: '127.1.2.3', port: 443 });
      expect(qname(s.queries[0]!)).to.equal('_443._tcp.3.2.1.127.in-addr.arpa');
      expect(r).to.deep.include({ kind: 'capa', remote: { address: '127.1.2.3', port: 443 }, host: '3.2.1.127.in-addr.arpa' });
    });

    it('asks for the bare host when no port is given (remote port 0)', async () => {
      const s = await start(gateway());
      const r = await ask(s, { port: undefined });
      expect(qname(s.queries[0]!)).to.equal(HOST);
      expect(r).to.deep.include({ kind: 'capa', remote: { address: AOB, port: 0 }, qname: HOST });
    });

    it('asks _<port>._udp for UDP and checks PROTO against it', async () => {
      const s = await start(gateway((q) => capaReply(q, { ...ALLOC, proto: 17 })));
      const r = await ask(s, { protocol: 'udp', port: 53 });
      expect(qname(s.queries[0]!)).to.equal(`_53._udp.${HOST}`);
      expect(r).to.deep.include({ kind: 'capa', protocol: 'udp' });
    });
  });

  describe('CAPA answers that must not be used', () => {
    const cases: [string, (q: ReceivedQuery) => Buffer, Partial<ResolveOptions>?][] = [
      ['owned by another name', (q) => reply(q, { answers: [capaRecord(`_81._tcp.${HOST}`, 30, ALLOC)] })],
      ['for another protocol', (q) => capaReply(q, { ...ALLOC, proto: 17 })],
      ['with port 0', (q) => capaReply(q, { ...ALLOC, port: 0 })],
      ['IPv6 source for an IPv4 literal', (q) => capaReply(q, { ...ALLOC, address: '2001:db8::5' }), { host: '127.1.2.3' }],
    ];
    for (const [name, answer, extra] of cases) {
      it(`fails ERR_CAPA_MALFORMED for a CAPA answer ${name}`, async () => {
        const s = await start(gateway(answer));
        const err = await capaRejection(ask(s, extra));
        expect(err.code).to.equal('ERR_CAPA_MALFORMED');
        expect(err.server).to.equal(s.server);
      });
    }

    it('fails ERR_CAPA_NOT_FOUND when <host> has no address of the allocation family', async () => {
      const s = await start((q) => (qtype(q) === CAPA_TYPE ? reply(q, { answers: [capaRecord(QNAME, 30, ALLOC)] }) : reply(q)));
      const err = await capaRejection(ask(s));
      expect(err.code).to.equal('ERR_CAPA_NOT_FOUND');
      expect(err.message).to.match(/no A record/);
    });
  });

  describe('RFC 5452 matching: bad replies are ignored and the wait goes on', () => {
    const genuineLater = (q: ReceivedQuery, bad: Buffer, spoof = false): ReturnType<Handler> =>
      [{ bytes: bad, spoof }, { bytes: capaReply(q), delayMs: 30 }];
    const cases: [string, (q: ReceivedQuery) => ReturnType<Handler>][] = [
      ['wrong ID', (q) => genuineLater(q, capaReply(q, SPOOFED, { id: (q.message!.id + 1) & 0xffff }))],
      ['wrong source port', (q) => genuineLater(q, capaReply(q, SPOOFED), true)],
      ['wrong question name', (q) => genuineLater(q, capaReply(q, SPOOFED, { questions: [{ name: `_81._tcp.${HOST}`, type: CAPA_TYPE, class: 'IN' }] }))],
      ['wrong question type', (q) => genuineLater(q, capaReply(q, SPOOFED, { questions: [{ name: QNAME, type: 'A', class: 'IN' }] }))],
      ['no question', (q) => genuineLater(q, capaReply(q, SPOOFED, { questions: [] }))],
      ['a query instead of a response', (q) => genuineLater(q, q.bytes)],
      ['a packet cut short', (q) => genuineLater(q, capaReply(q, SPOOFED).subarray(0, 60))],
      ['one trailing octet', (q) => genuineLater(q, Buffer.concat([capaReply(q, SPOOFED), Buffer.from([0])]))],
      ['shorter than a header', (q) => genuineLater(q, Buffer.from([0, 1, 2]))],
    ];
    for (const [name, handler] of cases) {
      it(`ignores a reply with ${name}`, async () => {
        const s = await start(gateway(handler));
        const r = await ask(s, { timeout: 500, deadline: 1000 });
        expect(r).to.deep.include({ kind: 'capa', local: { address: ALLOC.address, port: ALLOC.port } });
      });
    }

    it('fails ERR_CAPA_MALFORMED when only malformed replies came before the deadline', async () => {
      const s = await start(gateway((q) => capaReply(q).subarray(0, 40)));
      const err = await capaRejection(ask(s));
      expect(err.code).to.equal('ERR_CAPA_MALFORMED');
    });

    it('fails ERR_CAPA_TIMEOUT when only spoofs came', async () => {
      const s = await start(gateway((q) => ({ bytes: capaReply(q, SPOOFED), spoof: true })));
      const err = await capaRejection(ask(s));
      expect(err.code).to.equal('ERR_CAPA_TIMEOUT');
    });

    it('checkReply / fromServer judge a reply by ID, QR, question, opcode and source', () => {
      const id = 0x1234;
      const question = { name: QNAME, type: CAPA_TYPE, class: 'IN' };
      const q: ReceivedQuery = {
        transport: 'udp', bytes: Buffer.alloc(0), from: { address: '127.0.0.1', port: 1 },
        message: { id, flags: 0, rcode: 'NOERROR', opcode: 'QUERY', questions: [question], answers: [], authorities: [], additionals: [] },
      };
      const expectation = { id, question, opcode: 'QUERY', rrtype: 65280 };
      expect(checkReply(capaReply(q), expectation).kind).to.equal('accept');
      expect(checkReply(capaReply(q), { ...expectation, opcode: 'UPDATE' }).kind).to.equal('ignore');
      expect(checkReply(capaReply(q, ALLOC, { tc: true }), expectation).kind).to.equal('truncated');
      expect(fromServer({ address: '127.0.0.1', port: 53 }, parseServer('127.0.0.1'))).to.equal(true);
      expect(fromServer({ address: '::1', port: 53 }, parseServer('0:0:0:0:0:0:0:1'))).to.equal(true);
      expect(fromServer({ address: '127.0.0.2', port: 53 }, parseServer('127.0.0.1'))).to.equal(false);
      expect(fromServer({ address: '127.0.0.1', port: 54 }, parseServer('127.0.0.1'))).to.equal(false);
    });
  });

  describe('transport', () => {
    it('retries over TCP (2-octet framing) when the UDP reply has TC=1', async () => {
      const s = await start((q) => {
        if (q.transport === 'udp') return reply(q, { tc: true });
        return gateway()(q);
      });
      const r = await ask(s);
      expect(r).to.deep.include({ kind: 'capa', local: { address: ALLOC.address, port: ALLOC.port } });
      expect(s.queries.map((q) => q.transport)).to.deep.equal(['udp', 'tcp']);
    });

    it('asks over TCP again when the TCP reply is malformed, within the deadline', async () => {
      const s = await start((q) => (q.transport === 'udp' ? reply(q, { tc: true }) : capaReply(q).subarray(0, 50)));
      const err = await capaRejection(ask(s));
      expect(err.code).to.equal('ERR_CAPA_MALFORMED');
    });

    it('retries a silent server within the deadline, then fails ERR_CAPA_TIMEOUT', async () => {
      const s = await start(() => undefined);
      const err = await capaRejection(ask(s));
      expect(err.code).to.equal('ERR_CAPA_TIMEOUT');
      expect(err.message).to.include(s.server);
      expect(s.queries.length).to.be.greaterThan(1);
      expect(new Set(s.queries.map((q) => q.message!.id)).size).to.equal(s.queries.length, 'a new ID per try');
    });

    it('moves on to the next server when the first is silent', async () => {
      const silent = await start(() => undefined);
      const good = await start(gateway());
      const r = await ask([silent, good]);
      expect(r).to.deep.include({ kind: 'capa', server: good.server });
    });

    it('moves on at once when the first server port is closed (ICMP refused)', async () => {
      const socket = dgram.createSocket('udp4');
      socket.bind(0, '127.0.0.1');
      await once(socket, 'listening');
      const closed = `127.0.0.1:${socket.address().port}`;
      await new Promise<void>((r) => socket.close(() => r()));
      const good = await start(gateway());
      const r = await resolve({ host: HOST, port: 80, servers: [closed, good.server], timeout: 5000, deadline: 5000 });
      expect(r).to.deep.include({ kind: 'capa', server: good.server });
      const err = await capaRejection(resolve({ host: HOST, port: 80, servers: [closed], ...FAST }));
      expect(err.code).to.equal('ERR_CAPA_SERVER_FAILURE');
      expect(err.message).to.match(/refused/);
    });

    it('gives up at the AbortSignal with its reason', async () => {
      const s = await start(() => undefined);
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 50);
      let caught: unknown;
      try {
        await ask(s, { timeout: 5000, deadline: 5000, signal: controller.signal });
      } catch (err) {
        caught = err;
      }
      expect((caught as Error).name).to.equal('AbortError');
    });
  });

  describe('the error table', () => {
    const fail = (rcode: string, ede?: { code: number; text: string }): Handler =>
      gateway((q) => reply(q, { rcode, ...(ede ? { ede: [ede] } : {}) }));

    it('NXDOMAIN for the name and the host -> ERR_CAPA_NOT_FOUND, no other server asked', async () => {
      const a = await start((q) => reply(q, { rcode: 'NXDOMAIN' }));
      const b = await start(gateway());
      const err = await capaRejection(ask([a, b]));
      expect(err).to.include({ code: 'ERR_CAPA_NOT_FOUND', rcode: 'NXDOMAIN', server: a.server });
      expect(b.queries).to.have.length(0);
    });

    it('NXDOMAIN for _80._tcp.<host> while <host> exists (a plain DNS server) -> A/AAAA fallback', async () => {
      const a = await start(fail('NXDOMAIN'));
      const result = await ask(a);
      expect(result).to.deep.equal({ kind: 'plain', addresses: [AOB] });
    });

    it('REFUSED + EDE 18 -> ERR_CAPA_REFUSED with the EDE text, no other server asked', async () => {
      const a = await start(fail('REFUSED', { code: EDE.PROHIBITED, text: 'not in the inside realm' }));
      const b = await start(gateway());
      const err = await capaRejection(ask([a, b]));
      expect(err).to.include({ code: 'ERR_CAPA_REFUSED', ede: 18, edeText: 'not in the inside realm' });
      expect(err.message).to.include('not in the inside realm');
      expect(b.queries).to.have.length(0);
    });

    it('REFUSED without EDE 18 (a server that is not a GRM) -> A/AAAA fallback', async () => {
      expect(await ask(await start(fail('REFUSED')))).to.deep.equal({ kind: 'plain', addresses: [AOB] });
      expect(await ask(await start(fail('REFUSED', { code: 14, text: '' })))).to.deep.equal({ kind: 'plain', addresses: [AOB] });
    });

    it('REFUSED without EDE 18 for CAPA and for A/AAAA -> ERR_CAPA_REFUSED, never a connect', async () => {
      const err = await capaRejection(ask(await start((q) => reply(q, { rcode: 'REFUSED' }))));
      expect(err).to.include({ code: 'ERR_CAPA_REFUSED', ede: undefined });
    });

    it('SERVFAIL + EDE 49152 -> the next server answers', async () => {
      const a = await start(fail('SERVFAIL', { code: EDE.POOL_EXHAUSTED, text: 'CAPA pool exhausted' }));
      const b = await start(gateway());
      expect(await ask([a, b])).to.deep.include({ kind: 'capa', server: b.server });
    });

    it('SERVFAIL + EDE 49152 everywhere -> ERR_CAPA_EXHAUSTED, each server asked once', async () => {
      const exhausted = fail('SERVFAIL', { code: EDE.POOL_EXHAUSTED, text: 'CAPA pool exhausted' });
      const a = await start(exhausted);
      const b = await start(exhausted);
      const err = await capaRejection(ask([a, b]));
      expect(err).to.include({ code: 'ERR_CAPA_EXHAUSTED', ede: 49152, edeText: 'CAPA pool exhausted' });
      expect([a.queries.length, b.queries.length]).to.deep.equal([1, 1]);
    });

    it('SERVFAIL + EDE 49153 -> ERR_CAPA_QUOTA at once', async () => {
      const a = await start(fail('SERVFAIL', { code: EDE.QUOTA_EXCEEDED, text: 'CAPA quota exceeded' }));
      const b = await start(gateway());
      const err = await capaRejection(ask([a, b]));
      expect(err).to.include({ code: 'ERR_CAPA_QUOTA', ede: 49153, edeText: 'CAPA quota exceeded' });
      expect(b.queries).to.have.length(0);
    });

    it('SERVFAIL without EDE -> next server, else ERR_CAPA_SERVER_FAILURE', async () => {
      const a = await start(fail('SERVFAIL'));
      const b = await start(gateway());
      expect(await ask([a, b])).to.deep.include({ kind: 'capa', server: b.server });
      const err = await capaRejection(ask(a));
      expect(err).to.include({ code: 'ERR_CAPA_SERVER_FAILURE', rcode: 'SERVFAIL' });
    });

    it('an exhausted answer is reported rather than a later server\'s silence', async () => {
      const a = await start(fail('SERVFAIL', { code: EDE.POOL_EXHAUSTED, text: 'CAPA pool exhausted' }));
      const b = await start(() => undefined);
      const err = await capaRejection(ask([a, b]));
      expect(err.code).to.equal('ERR_CAPA_EXHAUSTED');
    });
  });

  describe('fallback to A/AAAA when the server does not know CAPA', () => {
    const plainServer = (capaRcode: string): Handler => (q) => {
      if (qtype(q) === CAPA_TYPE) return reply(q, { rcode: capaRcode });
      if (qtype(q) === 'A') return reply(q, { answers: [addressRecord(HOST, 30, '127.1.2.4')] });
      return reply(q, { answers: [addressRecord(HOST, 30, '2001:db8::4')] });
    };
    for (const rcode of ['NOERROR', 'NOTIMP', 'FORMERR']) {
      it(`${rcode} -> plain addresses from A and AAAA queries with RD=1`, async () => {
        const s = await start(plainServer(rcode));
        expect(await ask(s)).to.deep.equal({ kind: 'plain', addresses: ['127.1.2.4', '2001:db8::4'] });
        const lookups = s.queries.filter((q) => qtype(q) !== CAPA_TYPE);
        expect(lookups.map(qtype).sort()).to.deep.equal(['A', 'AAAA']);
        for (const q of lookups) expect(q.message!.flags & dnsPacket.RECURSION_DESIRED).to.not.equal(0);
      });
    }

    it('NODATA with A/AAAA of <host> in ADDITIONAL -> those, no further query', async () => {
      const s = await start((q) => reply(q, { additionals: [addressRecord(HOST, 30, '127.1.2.5'), addressRecord('other.test', 30, '127.9.9.9')] }));
      expect(await ask(s)).to.deep.equal({ kind: 'plain', addresses: ['127.1.2.5'] });
      expect(s.queries).to.have.length(1);
    });

    it('follows a CNAME chain in the A answer', async () => {
      const s = await start((q) => {
        if (qtype(q) !== 'A') return reply(q);
        return reply(q, { answers: [{ name: HOST, type: 'CNAME', ttl: 30, data: 'real.example.test' }, addressRecord('real.example.test', 30, '127.1.2.6')] });
      });
      expect(await ask(s)).to.deep.equal({ kind: 'plain', addresses: ['127.1.2.6'] });
    });

    it('an IP literal falls back to itself', async () => {
      const s = await start((q) => reply(q));
      expect(await ask(s, { host: '::1' })).to.deep.equal({ kind: 'plain', addresses: ['::1'] });
    });

    it('NXDOMAIN on the address lookup -> ERR_CAPA_NOT_FOUND', async () => {
      const s = await start((q) => reply(q, { rcode: qtype(q) === CAPA_TYPE ? 'NOERROR' : 'NXDOMAIN' }));
      expect((await capaRejection(ask(s))).code).to.equal('ERR_CAPA_NOT_FOUND');
    });

    it('no address at all -> ERR_CAPA_NOT_FOUND', async () => {
      const s = await start((q) => reply(q));
      const err = await capaRejection(ask(s));
      expect(err.code).to.equal('ERR_CAPA_NOT_FOUND');
      expect(err.message).to.match(/no A or AAAA/);
    });
  });

  describe('bad arguments', () => {
    const cases: [string, Partial<ResolveOptions>][] = [
      ['port 0', { port: 0 }],
      ['port 65536', { port: 65536 }],
      ['a bad host name', { host: 'bad..name' }],
      ['a negative timeout', { timeout: -1 }],
      ['a zero deadline', { deadline: 0 }],
      ['a server that is not an address', { servers: ['dns.example.test'] }],
      ['a server with a bad port', { servers: ['127.0.0.1:99999'] }],
    ];
    for (const [name, options] of cases) {
      it(`rejects ${name} with ERR_CAPA_INVALID_ARG`, async () => {
        const err = await capaRejection(resolve({ host: HOST, port: 80, servers: ['127.0.0.1:9'], ...options }));
        expect(err.code).to.equal('ERR_CAPA_INVALID_ARG');
      });
    }
  });
});

describe('resolver: server selection', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'capa-servers-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('parses host, host:port, [v6]:port and bare v6', () => {
    expect(parseServer('192.0.2.1')).to.deep.equal({ address: '192.0.2.1', port: 53 });
    expect(parseServer('192.0.2.1:5300')).to.deep.equal({ address: '192.0.2.1', port: 5300 });
    expect(parseServer('[2001:db8::1]:5300')).to.deep.equal({ address: '2001:db8::1', port: 5300 });
    expect(parseServer('[2001:db8::1]')).to.deep.equal({ address: '2001:db8::1', port: 53 });
    expect(parseServer('2001:db8::1')).to.deep.equal({ address: '2001:db8::1', port: 53 });
    expect(parseServerList(' 127.0.0.1:1, ,[::1]:2')).to.deep.equal([{ address: '127.0.0.1', port: 1 }, { address: '::1', port: 2 }]);
    expect(formatServer({ address: '::1', port: 53 })).to.equal('[::1]:53');
  });

  for (const bad of ['', 'dns.example', '127.0.0.1:', '127.0.0.1:0', '127.0.0.1:65536', '[::1]:x', '300.1.1.1']) {
    it(`rejects server "${bad}"`, () => {
      expect(() => parseServer(bad)).to.throw(CapaError).with.property('code', 'ERR_CAPA_INVALID_ARG');
    });
  }

  it('reads nameserver lines of resolv.conf, skipping the rest', () => {
    const text = '# comment\nsearch example.test\nnameserver 127.0.0.53\nnameserver ::1\nnameserver bogus\noptions edns0\n';
    expect(parseResolvConf(text)).to.deep.equal([{ address: '127.0.0.53', port: 53 }, { address: '::1', port: 53 }]);
  });

  it('prefers explicit servers, then CAPA_SERVER, then resolv.conf', async () => {
    const conf = join(dir, 'resolv.conf');
    await writeFile(conf, 'nameserver 127.0.0.9\n');
    const env = { CAPA_SERVER: '127.0.0.7:5300,127.0.0.8' };
    expect(await resolveServers(['127.0.0.6'], { env, resolvConf: conf })).to.deep.equal([{ address: '127.0.0.6', port: 53 }]);
    expect(await resolveServers(undefined, { env, resolvConf: conf })).to.deep.equal([{ address: '127.0.0.7', port: 5300 }, { address: '127.0.0.8', port: 53 }]);
    expect(await resolveServers(undefined, { env: {}, resolvConf: conf })).to.deep.equal([{ address: '127.0.0.9', port: 53 }]);
  });

  it('keeps parsed lists apart: one item holding a comma is not the two-item list, and callers get copies', async () => {
    const two = await resolveServers(['127.0.0.1:5301', '127.0.0.2:5302']);
    expect(two).to.deep.equal([{ address: '127.0.0.1', port: 5301 }, { address: '127.0.0.2', port: 5302 }]);
    expect(() => configuredServers(['127.0.0.1:5301,127.0.0.2:5302'])).to.throw(CapaError).with.property('code', 'ERR_CAPA_INVALID_ARG');
    two.pop();
    expect(await resolveServers(['127.0.0.1:5301', '127.0.0.2:5302']), 'a caller changing its copy changes no later answer').to.have.length(2);
    expect(configuredServers([{ address: '127.0.0.1', port: 5301 }])).to.deep.equal([{ address: '127.0.0.1', port: 5301 }]);
    expect(configuredServers(undefined, {})).to.equal(undefined);
  });

  it('fails ERR_CAPA_CONFIG on a bad CAPA_SERVER and ERR_CAPA_NO_SERVERS when there is none', async () => {
    const empty = join(dir, 'empty.conf');
    await writeFile(empty, 'search example.test\n');
    const bad = await capaRejection(resolveServers(undefined, { env: { CAPA_SERVER: 'nope' }, resolvConf: empty }));
    expect(bad.code).to.equal('ERR_CAPA_CONFIG');
    expect(bad.message).to.include('CAPA_SERVER');
    for (const resolvConf of [empty, join(dir, 'missing.conf')]) {
      const err = await capaRejection(resolveServers(undefined, { env: {}, resolvConf }));
      expect(err.code).to.equal('ERR_CAPA_NO_SERVERS');
    }
  });

  it('resolve() uses CAPA_SERVER when no servers are given', async () => {
    const s = await startFakeDnsServer(gateway());
    const saved = process.env.CAPA_SERVER;
    process.env.CAPA_SERVER = s.server;
    try {
      expect(await resolve({ host: HOST, port: 80, ...FAST })).to.deep.include({ kind: 'capa', server: s.server });
    } finally {
      if (saved === undefined) delete process.env.CAPA_SERVER;
      else process.env.CAPA_SERVER = saved;
      await s.close();
    }
  });
});

describe('resolver: a CapaResolver of its own', () => {
  /** UDP sockets this process holds, from its fd table. */
  const udpSockets = async (): Promise<number> => {
    const { readdir, readlink } = await import('node:fs/promises');
    const links = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
    return links.filter((l) => l.startsWith('socket:')).length;
  };

  it('asks its own servers and rrtype by default, keeps spare query sockets, and closes them', async () => {
    const s = await startFakeDnsServer(gateway());
    const resolver = new CapaResolver({ servers: [s.server] });
    try {
      const before = await udpSockets();
      const r = await resolver.resolve({ host: HOST, port: 80, ...FAST });
      expect(r).to.deep.include({ kind: 'capa', server: s.server, local: { address: ALLOC.address, port: ALLOC.port } });
      await new Promise((done) => setTimeout(done, 50)); // the spare for the next query opens after this one
      expect(await udpSockets(), 'spare query sockets kept for the next query').to.be.above(before);
      await resolver.release(r as Parameters<CapaResolver['release']>[0], FAST).catch(() => undefined);
      resolver.close();
      await new Promise((done) => setTimeout(done, 50));
      expect(await udpSockets(), 'close() gives them back').to.be.at.most(before);
      const err = await capaRejection(resolver.resolve({ host: HOST, port: 80, ...FAST }));
      expect(err).to.include({ code: 'ERR_CAPA_CONFIG', message: 'this CapaResolver was closed' });
    } finally {
      resolver.close();
      await s.close();
    }
  });
});
