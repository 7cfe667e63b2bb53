/**
 * capa-dig as a user runs it: the compiled script spawned against a scriptable server and a real
 * dnsmasq, its output compared with BIND's dig where both can speak.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import dnsPacket from 'dns-packet';
import { EDE } from '../../resolver/codec/constants.js';
import { parseRdata } from '../../resolver/codec/presentation.js';
import { encode as encodeRdata, type CapaRecord } from '../../resolver/codec/rdata.js';
import { unavailable } from '../helpers/ci.js';
import { type Dnsmasq, requireDnsmasq, startDnsmasq } from '../helpers/dnsmasq.js';
import { addressRecord, capaRecord, type FakeDnsServer, type Handler, type ReceivedQuery, reply, startFakeDnsServer } from '../helpers/fake-dns-server.js';

const SCRIPT = fileURLToPath(new URL('../../resolver/bin/capa-dig.js', import.meta.url));
const HOST = 'apricot.ee.unsw.edu.au';
const QNAME = `_80._tcp.${HOST}`;
const ALLOC: CapaRecord = { flags: 0, proto: 6, port: 8500, address: '129.94.230.85' };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function capaDig(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [SCRIPT, ...args], { env: { ...process.env, CAPA_SERVER: '', ...env }, timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      done({ code, stdout, stderr });
    });
  });
}

const qtype = (q: ReceivedQuery): string | undefined => q.message?.questions[0]?.type;

/** The design's example GRM: CAPA in ANSWER, the A of aOB in ADDITIONAL. */
const grm: Handler = (q) => {
  if (qtype(q) === 'A') return reply(q, { aa: true, answers: [addressRecord(HOST, 30, ALLOC.address)] });
  return reply(q, { aa: true, answers: [capaRecord(q.message!.questions[0]!.name, 30, ALLOC)], additionals: [addressRecord(HOST, 30, ALLOC.address)] });
};

describe('capa-dig', () => {
  let server: FakeDnsServer;
  beforeEach(async () => { server = await startFakeDnsServer(grm); });
  afterEach(async () => { await server.close(); });
  const at = (): string[] => ['@127.0.0.1', '-p', String(server.port)];

  it('prints the CAPA answer like dig, as in the design example', async () => {
    const r = await capaDig([...at(), HOST, '80/tcp']);
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.split('\n');
    expect(lines).to.include(`;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: ${server.queries[0]!.message!.id}`);
    expect(lines).to.include(';; flags: qr aa; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 2');
    expect(lines).to.include(`;${QNAME}. IN CAPA`);
    expect(lines).to.include(`${QNAME}. 30 IN CAPA 0 6 8500 129.94.230.85`);
    expect(lines).to.include(`${HOST}. 30 IN A 129.94.230.85`);
    expect(lines).to.include('; EDNS: version: 0, flags:; udp: 1232');
    expect(lines).to.include(`;; SERVER: 127.0.0.1#${server.port}(udp)`);
    expect(r.stdout).to.match(/^;; Query time: \d+ msec$/m);
    expect(lines.indexOf(';; ANSWER SECTION:')).to.be.lessThan(lines.indexOf(';; ADDITIONAL SECTION:'));
  });

  it('asks CAPA with RD=0; --type A asks with RD=1', async () => {
    await capaDig([...at(), HOST, '80/tcp']);
    await capaDig([...at(), '--type', 'A', HOST]);
    const [capa, a] = server.queries;
    expect(capa!.message!.questions[0]).to.deep.equal({ name: QNAME, type: 'UNKNOWN_65280', class: 'IN' });
    expect(capa!.message!.flags & dnsPacket.RECURSION_DESIRED).to.equal(0);
    expect(a!.message!.questions[0]).to.deep.equal({ name: HOST, type: 'A', class: 'IN' });
    expect(a!.message!.flags & dnsPacket.RECURSION_DESIRED).to.not.equal(0);
  });

  it('asks the bare host without port/proto, and an IP by its reverse name', async () => {
    await capaDig([...at(), HOST]);
    await capaDig([...at(), '129.94.230.85', '443/udp']);
    expect(server.queries.map((q) => q.message!.questions[0]!.name)).to.deep.equal([HOST, '_443._udp.85.230.94.129.in-addr.arpa']);
  });

  it('--json prints one object with the decoded CAPA fields', async () => {
    const r = await capaDig([...at(), '--json', HOST, '80/tcp']);
    expect(r.code, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).to.deep.include({
      rcode: 'NOERROR',
      flags: ['qr', 'aa'],
      question: [{ name: `${QNAME}.`, class: 'IN', type: 'CAPA' }],
      answer: [{ name: `${QNAME}.`, ttl: 30, class: 'IN', type: 'CAPA', data: ALLOC }],
      additional: [{ name: `${HOST}.`, ttl: 30, class: 'IN', type: 'A', data: ALLOC.address }],
      ede: [],
      server: `127.0.0.1#${server.port}`,
      transport: 'udp',
    });
    expect(out.id).to.equal(server.queries[0]!.message!.id);
    expect(out.timeMs).to.be.a('number');
  });

  describe('the stub outcome line', () => {
    const AOB = '129.94.230.79';
    const outcomeLine = (stdout: string): string | undefined => stdout.split('\n').find((l) => l.startsWith(';; CAPA outcome:'));

    it('an allocation: the CAPA fields and aOB, as the stub would pin and connect', async () => {
      server.handle((q) => (qtype(q) === 'A' ? reply(q, { answers: [addressRecord(HOST, 30, AOB)] })
        : reply(q, { aa: true, answers: [capaRecord(q.message!.questions[0]!.name, 30, ALLOC)], additionals: [addressRecord(HOST, 30, AOB)] })));
      const r = await capaDig([...at(), HOST, '80/tcp']);
      expect(r.code, r.stderr).to.equal(0);
      expect(outcomeLine(r.stdout)).to.equal(`;; CAPA outcome: capa 0 6 8500 129.94.230.85 -> ${AOB}`);
      const json = JSON.parse((await capaDig([...at(), '--json', HOST, '80/tcp'])).stdout) as { outcome: unknown };
      expect(json.outcome).to.deep.equal({ kind: 'capa', record: ALLOC, remote: AOB });
    });

    it('a server that does not know CAPA: the A/AAAA the stub asks next (RD=1)', async () => {
      server.handle((q) => (qtype(q) === 'A' ? reply(q, { answers: [addressRecord(HOST, 30, '192.0.2.7')] }) : reply(q)));
      const r = await capaDig([...at(), HOST, '80/tcp']);
      expect(r.code, r.stderr).to.equal(0);
      expect(outcomeLine(r.stdout)).to.equal(';; CAPA outcome: fallback to A/AAAA 192.0.2.7');
      const asked = server.queries.map((q) => `${qtype(q)} ${(q.message!.flags & dnsPacket.RECURSION_DESIRED) !== 0 ? 'rd' : 'nord'}`);
      expect(asked).to.include.members(['UNKNOWN_65280 nord', 'A rd', 'AAAA rd']);
    });

    it('a failure: its CapaError code, and dig\'s exit status', async () => {
      server.handle((q) => reply(q, { rcode: 'REFUSED', ede: [{ code: EDE.PROHIBITED, text: 'not in the inside realm' }] }));
      const refused = await capaDig([...at(), HOST, '80/tcp']);
      expect(refused.code).to.equal(1);
      expect(outcomeLine(refused.stdout)).to.match(/^;; CAPA outcome: ERR_CAPA_REFUSED: CAPA refused .*not in the inside realm/);
      server.handle((q) => reply(q, { rcode: 'NXDOMAIN' }));
      const json = JSON.parse((await capaDig([...at(), '--json', HOST])).stdout) as { outcome: { kind: string; code: string } };
      expect(json.outcome).to.deep.include({ kind: 'error', code: 'ERR_CAPA_NOT_FOUND' });
    });

    it('none for an A query', async () => {
      const r = await capaDig([...at(), '--type', 'A', HOST]);
      expect(outcomeLine(r.stdout)).to.equal(undefined);
    });
  });

  it('shows the EDE of a SERVFAIL and exits 1', async () => {
    server.handle((q) => reply(q, { rcode: 'SERVFAIL', ede: [{ code: EDE.POOL_EXHAUSTED, text: 'CAPA pool exhausted' }] }));
    const r = await capaDig([...at(), HOST, '80/tcp']);
    expect(r.code).to.equal(1);
    expect(r.stdout).to.include('status: SERVFAIL');
    expect(r.stdout.split('\n')).to.include('; EDE: 49152 (CAPA pool exhausted)');
  });

  it('shows EDE 18 with its name and the server\'s text', async () => {
    server.handle((q) => reply(q, { rcode: 'REFUSED', ede: [{ code: EDE.PROHIBITED, text: 'not in the inside realm' }] }));
    const r = await capaDig([...at(), '--json', HOST, '80/tcp']);
    expect(r.code).to.equal(1);
    expect(JSON.parse(r.stdout)).to.deep.include({ rcode: 'REFUSED', ede: [{ code: 18, text: 'not in the inside realm' }] });
    const text = await capaDig([...at(), HOST, '80/tcp']);
    expect(text.stdout.split('\n')).to.include('; EDE: 18 (Prohibited): (not in the inside realm)');
  });

  it('exits 1 with a message when no reply comes', async () => {
    server.handle(() => undefined);
    const r = await capaDig([...at(), '--timeout', '200', HOST, '80/tcp']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/no reply from 127\.0\.0\.1/);
    expect(r.stdout).to.equal('');
  });

  it('retries over TCP after TC=1, and --tcp asks over TCP at once', async () => {
    server.handle((q) => (q.transport === 'udp' ? reply(q, { tc: true }) : grm(q)));
    const r = await capaDig([...at(), HOST, '80/tcp']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include(`;; SERVER: 127.0.0.1#${server.port}(tcp)`);
    server.handle(grm);
    server.queries.length = 0;
    await capaDig([...at(), '--tcp', HOST, '80/tcp']);
    expect(server.queries.map((q) => q.transport)).to.deep.equal(['tcp']);
  });

  it('uses CAPA_SERVER without @server, with -p overriding its port', async () => {
    const r = await capaDig([HOST, '80/tcp'], { CAPA_SERVER: server.server });
    expect(r.code, r.stderr).to.equal(0);
    const p = await capaDig(['-p', String(server.port), HOST, '80/tcp'], { CAPA_SERVER: '127.0.0.1:9' });
    expect(p.code, p.stderr).to.equal(0);
    expect(server.queries).to.have.length(2);
  });

  const usage: [string, string[], RegExp][] = [
    ['a bad -p', ['@127.0.0.1', '-p', '0', HOST], /port must be a port number 1-65535/],
    ['a non-numeric -p', ['@127.0.0.1', '-p', 'abc', HOST], /port/],
    ['a bad port/proto', ['@127.0.0.1', HOST, '80/sctp'], /<port>\/<tcp\|udp>/],
    ['port 0 in port/proto', ['@127.0.0.1', HOST, '0/tcp'], /<port>\/<tcp\|udp>/],
    ['an unknown flag', ['@127.0.0.1', HOST, '--bogus'], /Unknown argument/i],
    ['no host', ['@127.0.0.1'], /Not enough non-option arguments/],
    ['two @servers', ['@127.0.0.1', '@127.0.0.2', HOST], /one @server/],
    ['a server name', ['@dns.example', HOST], /not an IP address/],
    ['a bad --type', ['@127.0.0.1', '--type', 'MX', HOST], /Invalid values/],
    ['port/proto with --type A', ['@127.0.0.1', '--type', 'A', HOST, '80/tcp'], /only goes with --type CAPA/],
    ['a bad host name', ['@127.0.0.1', 'bad..name'], /bad DNS label/],
    ['a bad --timeout', ['@127.0.0.1', '--timeout', '-5', HOST], /--timeout must be a positive number/],
  ];
  for (const [name, args, message] of usage) {
    it(`exits 2 on ${name}, saying what to fix`, async () => {
      const r = await capaDig(args);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.match(message);
      expect(r.stderr).to.include('capa-dig --help');
    });
  }

  it('--help explains every flag and exits 0', async () => {
    const r = await capaDig(['--help']);
    expect(r.code).to.equal(0);
    for (const flag of ['@server', '--port', '--timeout', '--tcp', '--json', '--type', '<host>', 'port/proto']) expect(r.stdout).to.include(flag);
  });
});

describe('capa-dig against a real dnsmasq, compared with dig', function () {
  let dnsmasq: Dnsmasq | undefined;
  const wire = Buffer.from(encodeRdata(ALLOC)).toString('hex');

  before(async function () {
    const binary = await requireDnsmasq();
    if (binary === undefined) this.skip();
    dnsmasq = await startDnsmasq(binary, {
      ttl: 30,
      local: ['edu.au'],
      hostRecords: [{ name: HOST, addresses: [ALLOC.address] }],
      rawRecords: [{ name: QNAME, rrtype: 65280, hex: wire }],
    });
  });
  after(async () => { await dnsmasq?.stop(); });

  it('prints the same CAPA RDATA that dig shows in RFC 3597 form', async function () {
    const r = await capaDig(['@127.0.0.1', '-p', String(dnsmasq!.port), '--json', HOST, '80/tcp']);
    expect(r.code, r.stderr).to.equal(0);
    const ours = (JSON.parse(r.stdout) as { answer: { data: CapaRecord }[] }).answer[0]!.data;
    const dig = await new Promise<string>((done, fail) => {
      execFile('dig', ['@127.0.0.1', '-p', String(dnsmasq!.port), '+norec', '+short', QNAME, 'TYPE65280'], (err, stdout) => {
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') done('');
        else if (err) fail(err);
        else done(stdout.trim());
      });
    });
    if (dig === '') unavailable(this, 'dig (bind9-dnsutils) is needed for this test when CI=true');
    expect(ours).to.deep.equal(parseRdata(dig));
    expect(ours).to.deep.equal(ALLOC);
  });

  it('prints NXDOMAIN and exits 1', async () => {
    const r = await capaDig(['@127.0.0.1', '-p', String(dnsmasq!.port), `nx.${HOST}`, '80/tcp']);
    expect(r.code).to.equal(1);
    expect(r.stdout).to.include('status: NXDOMAIN');
  });
});
