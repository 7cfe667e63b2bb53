/** capa-lab's plan: addresses, names, and the files and commands rendered from it. Pure. */
import { expect } from 'chai';
import { parseLinkSpecs } from '../../gateway-ref/lib/dataplane/nft-rules.js';
import { parseZoneFile } from '../../gateway-ref/lib/zone/zone-file.js';
import {
  isLabNamespace, linkSpecs, nameserverOf, namespaceOf, namespaces, planLab, renderLinks, renderZone, resolvConf,
} from '../../gateway-ref/lab/topology.js';
import { isCapaError } from '../../resolver/codec/errors.js';

describe('capa-lab topology', () => {
  const plan = planLab('capa-', 3);

  it('gives each terminal its own /30 link from 100.64.0.0/10 and names its namespace', () => {
    expect(plan.terminals.map((t) => [t.name, t.netns, t.address, t.gatewayAddress, t.gatewayIfname])).to.deep.equal([
      ['t1', 'capa-t1', '100.64.0.6', '100.64.0.5', 't1'],
      ['t2', 'capa-t2', '100.64.0.10', '100.64.0.9', 't2'],
      ['t3', 'capa-t3', '100.64.0.14', '100.64.0.13', 't3'],
    ]);
    expect(planLab('capa-', 1000).terminals[999]!.address).to.equal('100.64.15.162');
    expect(plan.terminals.map((t) => [t.address6, t.gatewayAddress6])).to.deep.equal([
      ['2001:db8:100:1::2', '2001:db8:100:1::1'], ['2001:db8:100:2::2', '2001:db8:100:2::1'], ['2001:db8:100:3::2', '2001:db8:100:3::1'],
    ]);
    expect(planLab('capa-', 1000).terminals[999]!.address6).to.equal('2001:db8:100:3e8::2');
    expect(namespaces(plan)).to.deep.equal(['capa-gw', 'capa-out', 'capa-t1', 'capa-t2', 'capa-t3']);
  });

  it('refuses bad prefixes, terminal counts and pools', () => {
    for (const bad of [() => planLab('Capa', 1), () => planLab('capa/', 1), () => planLab('capa-', 0), () => planLab('capa-', 1001),
      () => planLab('capa-', 1.5), () => planLab('capa-', 1, '203.0.113.7'), () => planLab('capa-', 1, 'nonsense'),
      () => planLab('capa-', 1, '2001:db8:199::1')]) {
      expect(bad).to.throw().that.satisfies((err: unknown) => isCapaError(err, 'ERR_CAPA_INVALID_ARG'));
    }
    expect(planLab('capa-', 1, '198.51.100.7').pool).to.equal('198.51.100.7');
    expect(planLab('capa-', 1, '198.51.100.7,2001:db8:198::7').pool).to.equal('198.51.100.7,2001:db8:198::7');
    expect(() => planLab('capa-', 1, '2001:db8:199::1')).to.throw('--pool: 2001:db8:199::1 is not in the lab\'s pool prefixes 198.51.100.0/24 and 2001:db8:198::/64');
  });

  it('recognises the namespaces of a lab with a given prefix, whatever its size, and nothing else', () => {
    expect(['capa-gw', 'capa-out', 'capa-t1', 'capa-t120'].every((n) => isLabNamespace('capa-', n))).to.equal(true);
    expect(['capa-gw2', 'capa-test-1-gw', 'other-gw', 'capa-t', 'capa-'].some((n) => isLabNamespace('capa-', n))).to.equal(false);
    expect(namespaceOf(plan, 'gw')).to.equal('capa-gw');
    expect(namespaceOf(plan, 't3')).to.equal('capa-t3');
    expect(namespaceOf(plan, 't4')).to.equal(undefined);
  });

  it('creates every veth pair straight into its two namespaces and routes the pool to the gateway', () => {
    const batches = renderLinks(plan);
    expect(batches[0]).to.deep.equal({
      lines: [
        'link add out0 netns capa-gw type veth peer name gw0 netns capa-out',
        'link add t1 netns capa-gw type veth peer name gw0 netns capa-t1',
        'link add t2 netns capa-gw type veth peer name gw0 netns capa-t2',
        'link add t3 netns capa-gw type veth peer name gw0 netns capa-t3',
      ],
    });
    expect(batches.find((b) => b.netns === 'capa-out')!.lines).to.include.members(['route add 198.51.100.0/24 via 203.0.113.1', 'route add 2001:db8:198::/64 via 2001:db8:203::1']);
    expect(batches.find((b) => b.netns === 'capa-t2')!.lines).to.include.members(['route add default via 100.64.0.9', 'route add ::/0 via 2001:db8:100:2::1']);
    expect(batches.find((b) => b.netns === 'capa-t2')!.lines).to.include('address add 2001:db8:100:2::2/64 dev gw0 nodad');
    expect(batches.every((b) => b.netns === undefined || namespaces(plan).includes(b.netns))).to.equal(true);
  });

  it('writes a zone the gateway reads, links the nftables driver reads, and per-namespace resolvers', () => {
    const records = parseZoneFile(renderZone(plan), 'lab.zone');
    expect(records.map((r) => `${r.name} ${r.type} ${r.data}`)).to.deep.equal([
      'out.lab.example A 203.0.113.10', 'out6.lab.example AAAA 2001:db8:203::10', 'gw.lab.example A 203.0.113.1',
      't1.lab.example A 100.64.0.6', 't2.lab.example A 100.64.0.10', 't3.lab.example A 100.64.0.14',
    ]);
    expect(parseLinkSpecs(linkSpecs(plan)).map((l) => [l.ifname, ...l.terminals])).to.deep.equal([
      ['t1', '100.64.0.6', '2001:db8:100:1::2'], ['t2', '100.64.0.10', '2001:db8:100:2::2'], ['t3', '100.64.0.14', '2001:db8:100:3::2'],
    ]);
    expect(nameserverOf(plan, 'capa-t2')).to.equal('100.64.0.9');
    expect(nameserverOf(plan, 'capa-out')).to.equal('203.0.113.1');
    expect(nameserverOf(plan, 'capa-gw')).to.equal(undefined);
    expect(resolvConf('100.64.0.9', 'lab.example')).to.contain('nameserver 100.64.0.9\nsearch lab.example\n');
  });
});
