/**
 * The gateway's forwarder against a scripted upstream on loopback: one shared UDP socket, replies
 * matched by ID and question, a truncated reply asked again over TCP, failures as SERVFAIL.
 */
import { expect } from 'chai';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { Upstream } from '../../gateway-ref/lib/zone/upstream.js';
import { addressRecord, type FakeDnsServer, reply, startFakeDnsServer } from '../helpers/fake-dns-server.js';

describe('gateway upstream forwarder', function () {
  this.timeout(10_000);
  let server: FakeDnsServer;
  let upstream: Upstream;

  beforeEach(async () => {
    server = await startFakeDnsServer();
    upstream = new Upstream({ address: server.address, port: server.port }, 500);
  });

  afterEach(async () => {
    upstream.close();
    await server.close();
  });

  it('answers many lookups at once over one UDP socket, each with its own reply', async () => {
    server.handle((q) => {
      const name = q.message!.questions[0]!.name;
      return { bytes: reply(q, { answers: [addressRecord(name, 60, `127.0.0.${name.split('.')[0]!.slice(1)}`)] }), delayMs: 50 - Number(name.split('.')[0]!.slice(1)) };
    });
    const names = Array.from({ length: 20 }, (_, i) => `h${i + 1}.up.test`);
    const results = await Promise.all(names.map((name) => upstream.lookup(name, 'A')));
    expect(results.map((r) => r.records.map((rr) => rr.data))).to.deep.equal(names.map((_, i) => [`127.0.0.${i + 1}`]));
    expect(new Set(server.queries.map((q) => q.from.port)).size, 'source ports').to.equal(1);
  });

  it('ignores replies with another ID or question, and takes the right one after them', async () => {
    server.handle((q) => [
      reply(q, { id: (q.message!.id + 1) & 0xffff, answers: [addressRecord('up.test', 60, '127.0.0.66')] }),
      reply(q, { questions: [{ name: 'other.test', type: 'A', class: 'IN' }], answers: [addressRecord('other.test', 60, '127.0.0.67')] }),
      reply(q, { answers: [addressRecord('up.test', 60, '127.0.0.90')] }),
    ]);
    const result = await upstream.lookup('up.test', 'A');
    expect(result).to.deep.include({ rcode: 'NOERROR', authoritative: false });
    expect(result.records.map((r) => r.data)).to.deep.equal(['127.0.0.90']);
  });

  it('asks again over TCP when the UDP reply is truncated', async () => {
    server.handle((q) => (q.transport === 'udp' ? reply(q, { tc: true }) : reply(q, { answers: [addressRecord('big.test', 60, '127.0.0.91')] })));
    const result = await upstream.lookup('big.test', 'A');
    expect(result.records.map((r) => r.data)).to.deep.equal(['127.0.0.91']);
    expect(server.queries.map((q) => q.transport)).to.deep.equal(['udp', 'tcp']);
  });

  it('passes NXDOMAIN through; SERVFAIL for a failing, silent or unreachable upstream', async () => {
    server.handle((q) => (q.message!.questions[0]!.name === 'gone.test' ? reply(q, { rcode: 'NXDOMAIN' })
      : q.message!.questions[0]!.name === 'broken.test' ? reply(q, { rcode: 'REFUSED' }) : undefined));
    expect(await upstream.lookup('gone.test', 'A')).to.deep.equal({ rcode: 'NXDOMAIN', records: [], authoritative: false });
    expect((await upstream.lookup('broken.test', 'A')).rcode).to.equal('SERVFAIL');
    const started = performance.now();
    expect((await upstream.lookup('silent.test', 'A')).rcode, 'no reply within the timeout').to.equal('SERVFAIL');
    expect(performance.now() - started).to.be.within(400, 2000);

    const closed = dgram.createSocket('udp4').bind(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = closed.address().port;
    closed.close();
    const nobody = new Upstream({ address: '127.0.0.1', port }, 5000);
    try {
      const t0 = performance.now();
      expect((await nobody.lookup('up.test', 'A')).rcode).to.equal('SERVFAIL');
      expect(performance.now() - t0, 'port unreachable fails at once, not at the timeout').to.be.below(2000);
    } finally {
      nobody.close();
    }
  });
});
