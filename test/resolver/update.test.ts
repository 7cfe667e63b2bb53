/**
 * The release message (DNS UPDATE deleting one CAPA RR): its codec, checked against dns-packet
 * and BIND's nsupdate as independent implementations, and release() against a scriptable server.
 */
import { execFile } from 'node:child_process';
import { expect } from 'chai';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { CapaError } from '../../resolver/codec/errors.js';
import { type CapaRecord } from '../../resolver/codec/rdata.js';
import { type CapaEndpoint, release, resolve } from '../../resolver/lib/resolve.js';
import { decodeRelease } from '../../gateway-ref/lib/dns/release.js';
import { encodeRelease } from '../../resolver/codec/update.js';
import { unavailable } from '../helpers/ci.js';
import { addressRecord, capaRecord, type FakeDnsServer, type Handler, reply, startFakeDnsServer } from '../helpers/fake-dns-server.js';
import { capaRejection } from '../helpers/expect-error.js';

const HOST = 'apricot.example.test';
const QNAME = `_80._tcp.${HOST}`;
const ALLOC: CapaRecord = { flags: 0, proto: 6, port: 8500, address: '129.94.230.85' };
const FAST = { timeout: 200, deadline: 500 };

function endpointAt(server: string): CapaEndpoint {
  return {
    kind: 'capa', local: { address: ALLOC.address, port: ALLOC.port }, remote: { address: '127.1.2.3', port: 80 },
    protocol: 'tcp', ttl: 30, server, host: HOST, qname: QNAME, record: ALLOC,
  };
}

describe('resolver: release message codec', () => {
  const wire = encodeRelease({ id: 0x1234, zone: HOST, qname: QNAME, record: ALLOC });

  it('is an UPDATE with zone <host> IN SOA and one delete-RR (CLASS NONE, TTL 0, TYPE CAPA)', () => {
    expect(wire.readUInt16BE(0)).to.equal(0x1234);
    expect(wire.readUInt16BE(2)).to.equal(5 << 11, 'opcode 5, QR=0, no other flag');
    expect([4, 6, 8, 10].map((o) => wire.readUInt16BE(o))).to.deep.equal([1, 0, 1, 0]);
    const packet = dnsPacket.decode(wire) as unknown as {
      opcode: string; questions: unknown[]; authorities: { name: string; type: string; class: string; ttl: number; data: Buffer }[];
    };
    expect(packet.opcode).to.equal('UPDATE');
    expect(packet.questions).to.deep.equal([{ name: HOST, type: 'SOA', class: 'IN' }]);
    const rr = packet.authorities[0]!;
    expect(rr).to.include({ name: QNAME, type: 'UNKNOWN_65280', class: 'UNKNOWN_254', ttl: 0 });
    expect(rr.data.toString('hex')).to.equal('00062134815ee655');
  });

  it('decodes back to what was encoded', () => {
    expect(decodeRelease(wire)).to.deep.equal({ id: 0x1234, zone: HOST, qname: QNAME, record: ALLOC });
  });

  it('round-trips any allocation, IPv4 or IPv6, with or without port label', () => {
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
    fc.assert(fc.property(
      fc.array(label, { minLength: 1, maxLength: 4 }), fc.option(fc.integer({ min: 1, max: 65535 })), fc.constantFrom('tcp', 'udp'),
      fc.record({ flags: fc.integer({ min: 0, max: 255 }), proto: fc.constantFrom(0, 6, 17), port: fc.integer({ min: 1, max: 65535 }) }),
      fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 0, max: 65535 }),
      (labels, port, proto, fields, address, id) => {
        const zone = labels.join('.');
        const qname = port === null ? zone : `_${port}._${proto}.${zone}`;
        const decoded = decodeRelease(encodeRelease({ id, zone, qname, record: { ...fields, address } }));
        expect(decoded.zone).to.equal(zone);
        expect(decoded.qname).to.equal(qname);
        expect(decoded.id).to.equal(id);
        expect(decoded.record).to.deep.include(fields);
      }));
  });

  it('decodes a release sent by BIND nsupdate (independent encoder)', async function () {
    const server = await startFakeDnsServer((q) => reply(q));
    try {
      const script = `server 127.0.0.1 ${server.port}\nzone ${HOST}\nupdate delete ${QNAME} TYPE65280 \\# 8 00062134815EE655\nsend\n`;
      const child = execFile('nsupdate', ['-t', '2'], () => undefined);
      child.stdin?.end(script);
      await new Promise((r) => child.on('close', r));
      if (server.queries.length === 0) {
        unavailable(this, 'nsupdate (bind9-dnsutils) is needed for this test when CI=true');
      }
      expect(decodeRelease(server.queries[0]!.bytes)).to.deep.include({ zone: HOST, qname: QNAME, record: ALLOC });
    } finally {
      await server.close();
    }
  });

  describe('rejects with ERR_CAPA_MALFORMED', () => {
    const patched = (offset: number, bytes: number[]): Buffer => {
      const copy = Buffer.from(wire);
      copy.set(bytes, offset);
      return copy;
    };
    const updateRr = wire.length - 8 - 10; // RDATA (8) and type..rdlength (10) of the last RR
    const cases: [string, Buffer][] = [
      ['a response (QR=1)', patched(2, [0xa8, 0])],
      ['opcode QUERY', patched(2, [0, 0])],
      ['zone of type A', patched(12 + HOST.length + 2, [0, 1])],
      ['CLASS IN (an add, not a delete)', patched(updateRr + 2, [0, 1])],
      ['CLASS ANY (delete a whole RRset)', patched(updateRr + 2, [0, 255])],
      ['TTL not 0', patched(updateRr + 4, [0, 0, 0, 30])],
      ['type A instead of CAPA', patched(updateRr, [0, 1])],
      ['owner outside the zone', encodeRelease({ id: 1, zone: 'other.test', qname: '_80._tcp.other.test', record: ALLOC }).fill(0x7a, 13, 18)],
      ['no zone', dnsPacket.encode({ type: 'query', id: 1, flags: 5 << 11, questions: [] } as unknown as dnsPacket.Packet)],
      ['cut short', wire.subarray(0, wire.length - 1)],
      ['trailing octet', Buffer.concat([wire, Buffer.from([0])])],
    ];
    for (const [name, bytes] of cases) {
      it(name, () => {
        expect(() => decodeRelease(bytes)).to.throw(CapaError).with.property('code', 'ERR_CAPA_MALFORMED');
      });
    }
  });

  it('refuses to encode an owner outside the zone', () => {
    expect(() => encodeRelease({ id: 1, zone: HOST, qname: '_80._tcp.other.test', record: ALLOC }))
      .to.throw(CapaError).with.property('code', 'ERR_CAPA_INVALID_ARG');
  });
});

describe('resolver: release()', () => {
  let server: FakeDnsServer | undefined;
  const start = async (handler: Handler): Promise<FakeDnsServer> => {
    server = await startFakeDnsServer(handler);
    return server;
  };
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('sends the release of the allocation to the GRM that made it; NOERROR resolves', async () => {
    const s = await start((q) => {
      if (q.message?.opcode === 'UPDATE') return reply(q);
      if (q.message?.questions[0]?.type === 'A') return reply(q, { answers: [addressRecord(HOST, 30, '127.1.2.3')] });
      return reply(q, { aa: true, answers: [capaRecord(QNAME, 30, ALLOC)] });
    });
    const endpoint = await resolve({ host: HOST, port: 80, servers: [s.server], ...FAST });
    expect(endpoint.kind).to.equal('capa');
    await release(endpoint as CapaEndpoint, FAST);
    const update = s.queries.find((q) => q.message?.opcode === 'UPDATE');
    expect(decodeRelease(update!.bytes)).to.deep.include({ zone: HOST, qname: QNAME, record: ALLOC });
  });

  const outcomes: [string, string][] = [
    ['NXRRSET', 'ERR_CAPA_NO_ALLOCATION'],
    ['REFUSED', 'ERR_CAPA_NOT_OWNER'],
    ['NOTIMP', 'ERR_CAPA_SERVER_FAILURE'],
  ];
  for (const [rcode, code] of outcomes) {
    it(`${rcode} -> ${code}`, async () => {
      const s = await start((q) => reply(q, { rcode }));
      const err = await capaRejection(release(endpointAt(s.server), FAST));
      expect(err).to.include({ code, rcode, server: s.server });
    });
  }

  it('ignores a reply with opcode QUERY and times out', async () => {
    const s = await start((q) => {
      const bytes = reply(q);
      bytes.writeUInt16BE(bytes.readUInt16BE(2) & ~(0xf << 11), 2);
      return bytes;
    });
    const err = await capaRejection(release(endpointAt(s.server), FAST));
    expect(err.code).to.equal('ERR_CAPA_TIMEOUT');
    expect(s.queries.length).to.be.greaterThan(1, 'retried within the deadline');
  });

  it('rejects a plain result', async () => {
    const plain = { kind: 'plain', addresses: ['127.0.0.1'] } as unknown as CapaEndpoint;
    expect((await capaRejection(release(plain))).code).to.equal('ERR_CAPA_INVALID_ARG');
  });
});
