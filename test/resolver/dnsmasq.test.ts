/**
 * The stub resolver against a real DNS server: dnsmasq serving a CAPA RR as raw RDATA
 * (`--dns-rr=<name>,65280,<hex>`) and A/AAAA records. In CI a missing dnsmasq fails the run.
 */
import { expect } from 'chai';
import { encode as encodeRdata, type CapaRecord } from '../../resolver/codec/rdata.js';
import { resolve } from '../../resolver/lib/resolve.js';
import { type Dnsmasq, requireDnsmasq, startDnsmasq } from '../helpers/dnsmasq.js';
import { capaRejection } from '../helpers/expect-error.js';

const ZONE = 'example.test';
const ALLOC: CapaRecord = { flags: 0, proto: 6, port: 8500, address: '127.64.0.5' };
const ALLOC_V6: CapaRecord = { flags: 0, proto: 17, port: 4000, address: '2001:db8::5' };
const hex = (record: CapaRecord): string => Buffer.from(encodeRdata(record)).toString('hex');
const BIG = Array.from({ length: 100 }, (_, i) => `127.0.2.${i + 1}`);

describe('resolver: resolve() against a real dnsmasq', function () {
  let dnsmasq: Dnsmasq | undefined;
  const ask = (host: string, port?: number, protocol: 'tcp' | 'udp' = 'tcp'): ReturnType<typeof resolve> =>
    resolve({ host, port, protocol, servers: [dnsmasq!.server], timeout: 500, deadline: 2000 });

  before(async function () {
    const binary = await requireDnsmasq();
    if (binary === undefined) this.skip();
    dnsmasq = await startDnsmasq(binary, {
      ttl: 30,
      local: [ZONE],
      hostRecords: [
        { name: `apricot.${ZONE}`, addresses: ['127.1.2.3', '2001:db8::3'] },
        { name: `plain.${ZONE}`, addresses: ['127.1.2.4', '2001:db8::4'] },
      ],
      rawRecords: [
        { name: `_80._tcp.apricot.${ZONE}`, rrtype: 65280, hex: hex(ALLOC) },
        { name: `_53._udp.apricot.${ZONE}`, rrtype: 65280, hex: hex(ALLOC_V6) },
        // More A records than fit in 1232 octets: dnsmasq truncates, the stub must retry over TCP.
        ...BIG.map((a) => ({ name: `big.${ZONE}`, rrtype: 1, hex: Buffer.from(a.split('.').map(Number)).toString('hex') })),
      ],
      // dnsmasq answers NXDOMAIN for other types at a name that has only --dns-rr records; a TXT makes it exist.
      txtRecords: [{ name: `_80._tcp.plain.${ZONE}`, text: 'no CAPA here' }, { name: `big.${ZONE}`, text: 'many addresses' }],
    });
  });

  after(async () => {
    await dnsmasq?.stop();
  });

  it('CAPA answer -> pinned endpoint, aOB asked with A from the same server', async () => {
    const r = await ask(`apricot.${ZONE}`, 80);
    expect(r, dnsmasq!.log()).to.deep.equal({
      kind: 'capa',
      local: { address: '127.64.0.5', port: 8500 },
      remote: { address: '127.1.2.3', port: 80 },
      protocol: 'tcp',
      ttl: 30,
      server: dnsmasq!.server,
      host: `apricot.${ZONE}`,
      qname: `_80._tcp.apricot.${ZONE}`,
      record: ALLOC,
    });
  });

  it('IPv6 CAPA answer for UDP -> aOB from AAAA', async () => {
    const r = await ask(`APRICOT.${ZONE}.`, 53, 'udp');
    expect(r).to.deep.include({ kind: 'capa', local: { address: '2001:db8::5', port: 4000 }, remote: { address: '2001:db8::3', port: 53 } });
  });

  it('NODATA for _80._tcp.<host> -> A/AAAA fallback', async () => {
    expect(await ask(`plain.${ZONE}`, 80)).to.deep.equal({ kind: 'plain', addresses: ['127.1.2.4', '2001:db8::4'] });
  });

  it('NXDOMAIN for _443._tcp.<host> from a server that knows nothing of CAPA, <host> exists -> A/AAAA fallback', async () => {
    expect(await ask(`plain.${ZONE}`, 443)).to.deep.equal({ kind: 'plain', addresses: ['127.1.2.4', '2001:db8::4'] });
  });

  it('NODATA for a bare host -> A/AAAA fallback', async () => {
    expect(await ask(`plain.${ZONE}`)).to.deep.equal({ kind: 'plain', addresses: ['127.1.2.4', '2001:db8::4'] });
  });

  it('a truncated A answer is asked again over TCP and comes back whole', async () => {
    const r = await ask(`big.${ZONE}`);
    expect(r.kind).to.equal('plain');
    expect(r.kind === 'plain' && [...r.addresses].sort()).to.deep.equal([...BIG].sort());
  });

  it('NXDOMAIN -> ERR_CAPA_NOT_FOUND', async () => {
    const err = await capaRejection(ask(`nx.${ZONE}`, 80));
    expect(err).to.include({ code: 'ERR_CAPA_NOT_FOUND', rcode: 'NXDOMAIN', server: dnsmasq!.server });
  });

  it('REFUSED (no upstream for the name) -> ERR_CAPA_REFUSED with dnsmasq\'s EDE', async () => {
    const err = await capaRejection(ask('elsewhere.invalid', 80));
    expect(err).to.include({ code: 'ERR_CAPA_REFUSED', rcode: 'REFUSED' });
    expect(err.ede, 'dnsmasq 2.90 sends EDE 14 (Not Ready)').to.be.a('number');
  });
});
