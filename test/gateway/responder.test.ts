/**
 * The DNS front end as a pure function, against the real GRM service (allocator, zone, journal)
 * and a recording data plane: every case of DESIGN.md "Answer", "Errors" and "Release".
 * No sockets: request bytes in, response bytes out.
 */
import { expect } from 'chai';
import dnsPacket from 'dns-packet';
import { Realm } from '../../gateway-ref/lib/dns/realm.js';
import { type Transport, respond } from '../../gateway-ref/lib/dns/responder.js';
import { GrmService } from '../../gateway-ref/lib/grm/service.js';
import type { Allocation, DataPlane, FlowEvents } from '../../gateway-ref/lib/grm/types.js';
import { GatewayMetrics } from '../../gateway-ref/lib/metrics.js';
import { Names } from '../../gateway-ref/lib/zone/names.js';
import { parseZoneFile } from '../../gateway-ref/lib/zone/zone-file.js';
import { Zone } from '../../gateway-ref/lib/zone/zone.js';
import { DEFAULT_CAPA_RRTYPE, EDE, dnsPacketTypeName } from '../../resolver/codec/constants.js';
import { type Message, capaAnswers, decodeMessage, encodeQuery, extendedErrors } from '../../resolver/codec/message.js';
import { encodeRelease } from '../../resolver/codec/update.js';

const CAPA = dnsPacketTypeName(DEFAULT_CAPA_RRTYPE);
const TERMINAL = '100.64.0.7';
const OTHER_TERMINAL = '100.64.0.8';
const OUTSIDER = '203.0.113.99';
const POOL = ['198.51.100.1', '198.51.100.2'];
const LEASE_S = 30;

const ZONE = `$ORIGIN example.
$TTL 300
www       A     203.0.113.80
www6      AAAA  2001:db8::80
alias     CNAME www
intranet  A     10.1.2.3
printer   A     100.64.0.50
many      A     203.0.113.1
`;

/** Keeps installed states in memory; can be told to fail. */
class RecordingDataPlane implements DataPlane {
  readonly name = 'recording';
  readonly installed = new Map<number, Allocation>();
  events: FlowEvents | undefined;
  failInstall = false;
  async start(events: FlowEvents): Promise<void> { this.events = events; }
  async install(allocation: Allocation): Promise<void> {
    if (this.failInstall) throw new Error('table full');
    this.installed.set(allocation.id, allocation);
  }
  async remove(allocation: Allocation): Promise<void> { this.installed.delete(allocation.id); }
  async stop(): Promise<void> { this.installed.clear(); }
}

interface Lab {
  service: GrmService;
  dataPlane: RecordingDataPlane;
  clock: { t: number };
  journal: string[];
  errors: string[];
  metrics: GatewayMetrics;
}

function lab(options: { quota?: number; pool?: string[]; zone?: string } = {}): Lab {
  const clock = { t: 1_000_000 };
  const dataPlane = new RecordingDataPlane();
  const journal: string[] = [];
  const errors: string[] = [];
  const zoneText = options.zone ?? ZONE + Array.from({ length: 40 }, (_, i) => `many A 203.0.113.${i + 2}`).join('\n');
  const zone = new Zone(parseZoneFile(zoneText, 'lab.zone'));
  let service: GrmService | undefined;
  const metrics = new GatewayMetrics(() => service!.allocator.stats());
  service = new GrmService({
    allocator: { pool: options.pool ?? POOL, quota: options.quota, leaseMs: LEASE_S * 1000, holdDownMs: 60_000, now: () => clock.t },
    dataPlane,
    names: new Names(zone),
    realm: new Realm(['100.64.0.0/10']),
    direct: new Realm(['10.0.0.0/8', '100.64.0.0/10']),
    journal: (line) => journal.push(line),
    metrics,
    log: (line) => errors.push(line),
  });
  return { service, dataPlane, clock, journal, errors, metrics };
}

interface Asked {
  bytes: Buffer;
  message: Message;
}

async function ask(l: Lab, request: Buffer, from = TERMINAL, transport: Transport = 'udp'): Promise<Asked> {
  const bytes = await respond(request, { address: from, transport }, l.service);
  expect(bytes, 'a response').to.not.equal(undefined);
  return { bytes: bytes!, message: decodeMessage(bytes!) };
}

function capaQuery(name: string, id = 4242): Buffer {
  return encodeQuery({ id, name, type: CAPA, rd: false });
}

function live(l: Lab): Allocation[] {
  return [...l.service.allocator.allocations()];
}

describe('gateway responder: CAPA answers', () => {
  it('allocates from the pool, installs the state, and answers NOERROR AA with one CAPA RR and the A of the host', async () => {
    const l = lab();
    const { bytes, message } = await ask(l, capaQuery('_80._tcp.www.example'));
    expect(message.rcode).to.equal('NOERROR');
    expect(message.flags & dnsPacket.AUTHORITATIVE_ANSWER, 'AA').to.not.equal(0);
    expect(bytes[2]! & 0x80, 'QR').to.not.equal(0);
    const capa = capaAnswers(message);
    expect(capa).to.have.length(1);
    expect(message.answers).to.have.length(1);
    expect(capa[0]!.name).to.equal('_80._tcp.www.example');
    expect(capa[0]!.ttl).to.equal(LEASE_S);
    const { record } = capa[0]!;
    expect(record).to.include({ flags: 0, proto: 6 });
    expect(POOL).to.include(record.address);
    expect(record.port).to.be.within(1024, 65535);
    const additional = message.additionals.filter((rr) => rr.type !== 'OPT');
    expect(additional).to.deep.equal([{ name: 'www.example', type: 'A', ttl: 300, class: 'IN', flush: false, data: '203.0.113.80' }]);
    expect(message.additionals.some((rr) => rr.type === 'OPT'), 'OPT echoed').to.equal(true);

    const [allocation] = live(l);
    expect(allocation!.terminal).to.equal(TERMINAL);
    expect(allocation!.state).to.equal('pending');
    expect(allocation!.tuple).to.deep.equal({ proto: 6, remoteAddress: '203.0.113.80', remotePort: 80, localAddress: record.address, localPort: record.port });
    expect(l.dataPlane.installed.get(allocation!.id), 'installed in the data plane').to.deep.equal(allocation);
    expect(l.journal.map((line) => JSON.parse(line) as Record<string, unknown>)).to.deep.equal([{
      time: new Date(l.clock.t).toISOString(), event: 'allocate', terminal: TERMINAL, proto: 6,
      aOG: record.address, pA: record.port, aOB: '203.0.113.80', pB: 80,
    }]);
  });

  it('echoes the ID and the question byte for byte (mixed case included)', async () => {
    const l = lab();
    const request = capaQuery('_443._TCP.WwW.ExAmPlE', 0xbeef);
    const { bytes, message } = await ask(l, request);
    expect(message.id).to.equal(0xbeef);
    const questionLength = request.length - 12 - 11; // minus the header and the OPT record
    expect(bytes.subarray(12, 12 + questionLength).equals(request.subarray(12, 12 + questionLength))).to.equal(true);
    expect(capaAnswers(message)[0]!.name).to.equal('_443._TCP.WwW.ExAmPlE');
  });

  it('gives every query a fresh allocation', async () => {
    const l = lab();
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const { record } = capaAnswers((await ask(l, capaQuery('_80._tcp.www.example', i))).message)[0]!;
      seen.add(`${record.address} ${record.port}`);
    }
    expect(seen.size).to.equal(50);
    expect(live(l)).to.have.length(50);
  });

  it('allocates UDP for _<port>._udp', async () => {
    const l = lab();
    const { message } = await ask(l, capaQuery('_53._udp.www.example'));
    expect(capaAnswers(message)[0]!.record.proto).to.equal(17);
    expect(live(l)[0]!.tuple).to.include({ proto: 17, remotePort: 53 });
  });

  it('makes a partial allocation (pB unknown) for a bare host', async () => {
    const l = lab();
    const { message } = await ask(l, capaQuery('www.example'));
    expect(capaAnswers(message)[0]!.name).to.equal('www.example');
    expect(live(l)[0]!.tuple.remotePort).to.equal(undefined);
  });

  it('takes an IP-literal destination from its reverse name', async () => {
    const l = lab();
    const { message } = await ask(l, capaQuery('_80._tcp.7.113.0.203.in-addr.arpa'));
    expect(capaAnswers(message)).to.have.length(1);
    expect(live(l)[0]!.tuple.remoteAddress).to.equal('203.0.113.7');
    expect(message.additionals.find((rr) => rr.type === 'A')).to.include({ name: '7.113.0.203.in-addr.arpa', data: '203.0.113.7' });
  });

  it('follows a CNAME and still owns the additional record by <host>', async () => {
    const l = lab();
    const { message } = await ask(l, capaQuery('_80._tcp.alias.example'));
    expect(capaAnswers(message)).to.have.length(1);
    expect(message.additionals.find((rr) => rr.type === 'A')).to.include({ name: 'alias.example', data: '203.0.113.80' });
  });

  it('answers an inside destination with NOERROR, no CAPA, its A in the additional section, and allocates nothing', async () => {
    const l = lab();
    const { message } = await ask(l, capaQuery('_631._tcp.intranet.example'));
    expect(message.rcode).to.equal('NOERROR');
    expect(message.answers).to.deep.equal([]);
    expect(message.additionals.find((rr) => rr.type === 'A')).to.include({ name: 'intranet.example', data: '10.1.2.3' });
    expect(live(l)).to.deep.equal([]);
  });

  it('answers NXDOMAIN for a name that exists nowhere (no upstream)', async () => {
    const l = lab();
    const { message } = await ask(l, capaQuery('_80._tcp.nothere.example'));
    expect(message.rcode).to.equal('NXDOMAIN');
    expect(live(l)).to.deep.equal([]);
  });

  it('refuses a requester outside the inside realm: REFUSED + EDE 18, nothing allocated', async () => {
    const l = lab();
    const { message } = await ask(l, capaQuery('_80._tcp.www.example'), OUTSIDER);
    expect(message.rcode).to.equal('REFUSED');
    expect(extendedErrors(message).map((e) => e.code)).to.deep.equal([EDE.PROHIBITED]);
    expect(live(l)).to.deep.equal([]);
  });

  it('answers SERVFAIL + EDE 49152 "CAPA pool exhausted" when no (aOG, pA) is free for the destination', async () => {
    const l = lab({ pool: ['198.51.100.1'] });
    for (let i = 0; i < 65536 - 1024; i++) l.service.allocator.allocate(TERMINAL, { proto: 6, address: '203.0.113.80', port: 80 });
    const { message } = await ask(l, capaQuery('_80._tcp.www.example'));
    expect(message.rcode).to.equal('SERVFAIL');
    expect(extendedErrors(message)).to.deep.equal([{ code: 49152, text: 'CAPA pool exhausted' }]);
    const other = await ask(l, capaQuery('_443._tcp.www.example'));
    expect(capaAnswers(other.message), 'another destination port still succeeds').to.have.length(1);
    expect(await l.metrics.text()).to.match(/capa_blocked_total\{reason="exhausted"\} 1/);
  });

  it('answers SERVFAIL + EDE 49152 "the gateway has no IPv6 pool" (not "exhausted") when the host has only addresses of a family the pool lacks', async () => {
    const l = lab();
    const { message } = await ask(l, capaQuery('_80._tcp.www6.example'));
    expect(message.rcode).to.equal('SERVFAIL');
    expect(extendedErrors(message)).to.deep.equal([{ code: 49152, text: 'the gateway has no IPv6 pool' }]);
  });

  it('answers SERVFAIL + EDE 49153 "CAPA quota exceeded" past the terminal quota, other terminals unaffected', async () => {
    const l = lab({ quota: 2 });
    await ask(l, capaQuery('_80._tcp.www.example', 1));
    await ask(l, capaQuery('_80._tcp.www.example', 2));
    const { message } = await ask(l, capaQuery('_80._tcp.www.example', 3));
    expect(message.rcode).to.equal('SERVFAIL');
    expect(extendedErrors(message)).to.deep.equal([{ code: 49153, text: 'CAPA quota exceeded' }]);
    expect(capaAnswers((await ask(l, capaQuery('_80._tcp.www.example', 4), OTHER_TERMINAL)).message)).to.have.length(1);
    expect(await l.metrics.text()).to.match(/capa_blocked_total\{reason="quota"\} 1/);
  });

  it('answers SERVFAIL and keeps no allocation when the data plane cannot install the state', async () => {
    const l = lab();
    l.dataPlane.failInstall = true;
    const { message } = await ask(l, capaQuery('_80._tcp.www.example'));
    expect(message.rcode).to.equal('SERVFAIL');
    expect(message.answers).to.deep.equal([]);
    expect(live(l)).to.deep.equal([]);
    expect(l.errors.join('\n')).to.match(/data plane recording could not install the state: table full/);
  });

  it('sends no OPT (and so no EDE) when the query had none, as RFC 6891 requires', async () => {
    const l = lab();
    const { message } = await ask(l, encodeQuery({ id: 1, name: '_80._tcp.www.example', type: CAPA, edns: false }), OUTSIDER);
    expect(message.rcode).to.equal('REFUSED');
    expect(message.additionals).to.deep.equal([]);
  });
});

describe('gateway responder: A/AAAA and other types', () => {
  it('answers A from the zone, with the CNAME chain', async () => {
    const l = lab();
    const { message } = await ask(l, encodeQuery({ id: 1, name: 'alias.example', type: 'A', rd: true }));
    expect(message.rcode).to.equal('NOERROR');
    expect(message.answers.map((rr) => `${rr.name} ${rr.type} ${String(rr.data)}`)).to.deep.equal([
      'alias.example CNAME www.example',
      'www.example A 203.0.113.80',
    ]);
    expect(live(l), 'no allocation for A queries').to.deep.equal([]);
  });

  it('answers AAAA, NODATA for a missing type, NXDOMAIN for a missing name, NODATA for other types', async () => {
    const l = lab();
    const aaaa = await ask(l, encodeQuery({ id: 1, name: 'www6.example', type: 'AAAA' }));
    expect(aaaa.message.answers.map((rr) => rr.data)).to.deep.equal(['2001:db8::80']);
    const nodata = await ask(l, encodeQuery({ id: 2, name: 'www.example', type: 'AAAA' }));
    expect([nodata.message.rcode, nodata.message.answers.length]).to.deep.equal(['NOERROR', 0]);
    const nx = await ask(l, encodeQuery({ id: 3, name: 'nothere.example', type: 'A' }));
    expect(nx.message.rcode).to.equal('NXDOMAIN');
    const mx = await ask(l, encodeQuery({ id: 4, name: 'www.example', type: 'MX' }));
    expect([mx.message.rcode, mx.message.answers.length]).to.deep.equal(['NOERROR', 0]);
  });

  it('sets TC over UDP when the answer does not fit 512 octets without EDNS, and answers in full over TCP', async () => {
    const l = lab();
    const query = encodeQuery({ id: 1, name: 'many.example', type: 'A', edns: false });
    const udp = await ask(l, query);
    expect(udp.message.flags & dnsPacket.TRUNCATED_RESPONSE, 'TC').to.not.equal(0);
    expect(udp.message.answers).to.deep.equal([]);
    expect(udp.bytes.length).to.be.at.most(512);
    const tcp = await ask(l, query, TERMINAL, 'tcp');
    expect(tcp.message.flags & dnsPacket.TRUNCATED_RESPONSE).to.equal(0);
    expect(tcp.message.answers).to.have.length(41);
  });

  it('gives an outside querier of an inside terminal name a pool address bound to it (inbound path)', async () => {
    const l = lab();
    const first = await ask(l, encodeQuery({ id: 1, name: 'printer.example', type: 'A' }), OUTSIDER);
    const bound = first.message.answers[0]!.data as string;
    expect(POOL).to.include(bound);
    const again = await ask(l, encodeQuery({ id: 2, name: 'printer.example', type: 'A' }), OUTSIDER);
    expect(again.message.answers[0]!.data, 'the same binding').to.equal(bound);
    const inside = await ask(l, encodeQuery({ id: 3, name: 'printer.example', type: 'A' }));
    expect(inside.message.answers[0]!.data, 'terminals get the inside address').to.equal('100.64.0.50');
    const publicName = await ask(l, encodeQuery({ id: 4, name: 'www.example', type: 'A' }), OUTSIDER);
    expect(publicName.message.answers[0]!.data).to.equal('203.0.113.80');
  });
});

describe('gateway responder: malformed and unsupported requests', () => {
  const l = lab();

  it('drops what has no complete header, and responses', async () => {
    expect(await respond(Buffer.alloc(11), { address: TERMINAL, transport: 'udp' }, l.service)).to.equal(undefined);
    const response = capaQuery('_80._tcp.www.example');
    response[2]! |= 0x80;
    expect(await respond(response, { address: TERMINAL, transport: 'udp' }, l.service)).to.equal(undefined);
  });

  it('answers FORMERR, with the ID, to a message cut short', async () => {
    const query = capaQuery('_80._tcp.www.example', 777);
    const { bytes, message } = await ask(l, query.subarray(0, 20));
    expect([message.id, message.rcode, message.questions.length]).to.deep.equal([777, 'FORMERR', 0]);
    expect(bytes.length).to.equal(12);
  });

  it('answers FORMERR to trailing bytes, two OPT records, a bad CAPA name, and two questions', async () => {
    const trailing = Buffer.concat([capaQuery('_80._tcp.www.example'), Buffer.from([0])]);
    const twoOpt = dnsPacket.encode({
      type: 'query', id: 5, questions: [{ name: 'www.example', type: 'A', class: 'IN' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 }, { type: 'OPT', name: '.', udpPayloadSize: 1232 }],
    } as unknown as dnsPacket.Packet);
    const twoQuestions = dnsPacket.encode({
      type: 'query', id: 6, questions: [{ name: 'a.example', type: 'A', class: 'IN' }, { name: 'b.example', type: 'A', class: 'IN' }],
    });
    for (const request of [trailing, twoOpt, capaQuery('_http._tcp.www.example'), capaQuery('_99999._tcp.www.example'), twoQuestions]) {
      expect((await ask(l, request)).message.rcode).to.equal('FORMERR');
    }
    expect(live(l)).to.deep.equal([]);
  });

  it('answers BADVERS to EDNS version 1', async () => {
    const query = dnsPacket.encode({
      type: 'query', id: 7, questions: [{ name: 'www.example', type: 'A', class: 'IN' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, ednsVersion: 1 }],
    } as unknown as dnsPacket.Packet);
    const { message } = await ask(l, query);
    const opt = message.additionals.find((rr) => rr.type === 'OPT') as unknown as { extendedRcode: number };
    expect([message.rcode, opt.extendedRcode]).to.deep.equal(['NOERROR', 1]); // 16 = BADVERS: 1 << 4 | 0
  });

  it('answers NOTIMP to other opcodes and REFUSED to other classes', async () => {
    const status = capaQuery('_80._tcp.www.example');
    status[2] = (status[2]! & 0x87) | (2 << 3);
    expect((await ask(l, status)).message.rcode).to.equal('NOTIMP');
    const chaos = dnsPacket.encode({ type: 'query', id: 8, questions: [{ name: 'version.bind', type: 'TXT', class: 'CH' }] });
    expect((await ask(l, chaos)).message.rcode).to.equal('REFUSED');
  });
});

describe('gateway responder: release by DNS UPDATE', () => {
  async function allocateOne(l: Lab, qname = '_80._tcp.www.example', host = 'www.example') {
    const record = capaAnswers((await ask(l, capaQuery(qname))).message)[0]!.record;
    return { id: 99, zone: host, qname, record };
  }

  it('releases the allocation (NOERROR), removes the state, journals it; a second release is NXRRSET', async () => {
    const l = lab();
    const spec = await allocateOne(l);
    const { message } = await ask(l, encodeRelease(spec));
    expect([message.opcode, message.rcode, message.id]).to.deep.equal(['UPDATE', 'NOERROR', 99]);
    expect(live(l)).to.deep.equal([]);
    expect(l.dataPlane.installed.size).to.equal(0);
    expect(JSON.parse(l.journal.at(-1)!)).to.include({ event: 'release', terminal: TERMINAL, pA: spec.record.port });
    expect((await ask(l, encodeRelease(spec))).message.rcode).to.equal('NXRRSET');
  });

  it('releases a partial allocation and one made for an IP literal', async () => {
    const l = lab();
    for (const [qname, host] of [['www.example', 'www.example'], ['_22._tcp.7.113.0.203.in-addr.arpa', '7.113.0.203.in-addr.arpa']] as const) {
      const spec = await allocateOne(l, qname, host);
      expect((await ask(l, encodeRelease(spec))).message.rcode, qname).to.equal('NOERROR');
    }
    expect(live(l)).to.deep.equal([]);
  });

  it('refuses a release by another terminal and from outside the realm (REFUSED)', async () => {
    const l = lab();
    const spec = await allocateOne(l);
    expect((await ask(l, encodeRelease(spec), OTHER_TERMINAL)).message.rcode).to.equal('REFUSED');
    const outside = await ask(l, encodeRelease(spec), OUTSIDER);
    expect(outside.message.rcode).to.equal('REFUSED');
    expect(outside.message.additionals, 'the release had no OPT, so no EDE can come back').to.deep.equal([]);
    expect(live(l)).to.have.length(1);
  });

  it('is NXRRSET when the RDATA does not match a live allocation (other port, other protocol)', async () => {
    const l = lab();
    const spec = await allocateOne(l);
    const otherPort = { ...spec, record: { ...spec.record, port: spec.record.port === 1024 ? 1025 : spec.record.port - 1 } };
    const otherProto = { ...spec, record: { ...spec.record, proto: 17 } };
    for (const s of [otherPort, otherProto]) expect((await ask(l, encodeRelease(s))).message.rcode).to.equal('NXRRSET');
    expect(live(l)).to.have.length(1);
  });

  it('answers FORMERR to an UPDATE that is not a CAPA release', async () => {
    const l = lab();
    const spec = await allocateOne(l);
    const update = encodeRelease(spec);
    update.writeUInt16BE(1, update.length - 8 - 2 - 4 - 2 - 2); // CLASS NONE -> IN: an "add", not a delete
    expect((await ask(l, update)).message.rcode).to.equal('FORMERR');
    expect(live(l)).to.have.length(1);
  });
});

describe('gateway GRM service: leases and flow events', () => {
  it('reclaims a pending allocation after its lease and removes it from the data plane', async () => {
    const l = lab();
    await ask(l, capaQuery('_80._tcp.www.example'));
    l.clock.t += LEASE_S * 1000 - 1;
    expect(await l.service.expire()).to.deep.equal([]);
    l.clock.t += 1;
    expect(await l.service.expire()).to.have.length(1);
    expect(live(l)).to.deep.equal([]);
    expect(l.dataPlane.installed.size).to.equal(0);
    expect(JSON.parse(l.journal.at(-1)!)).to.include({ event: 'expire' });
    await l.service.stop();
  });

  it('confirms on flowStarted (no expiry afterwards) and releases on flowEnded', async () => {
    const l = lab();
    await l.service.start();
    await ask(l, capaQuery('www.example'));
    const [allocation] = live(l);
    l.dataPlane.events!.flowStarted({ ...allocation!.tuple, remotePort: 8080 });
    expect(live(l)[0]).to.include({ state: 'complete' });
    expect(live(l)[0]!.tuple.remotePort, 'the partial state learns pB').to.equal(8080);
    l.clock.t += LEASE_S * 1000 * 2;
    expect(await l.service.expire()).to.deep.equal([]);
    l.dataPlane.events!.flowEnded({ ...allocation!.tuple, remotePort: 8080 });
    expect(live(l)).to.deep.equal([]);
    expect(l.dataPlane.installed.size).to.equal(0);
    expect(l.journal.map((line) => (JSON.parse(line) as { event: string }).event)).to.deep.equal(['allocate', 'confirm', 'release']);
    const text = await l.metrics.text();
    expect(text).to.match(/capa_allocation_events_total\{event="confirm"\} 1/);
    expect(text).to.match(/capa_live_states\{state="complete"\} 0/);
    await l.service.stop();
  });
});
