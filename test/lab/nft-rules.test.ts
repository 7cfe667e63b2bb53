/** The nftables data plane's pure part: link specifications, pool ranges, ruleset and element scripts. */
import { expect } from 'chai';
import {
  CHAIN_NAMES, inboundElement, renderChains, parseLinkSpecs, poolRanges, renderElementOps, renderRouteCleanup, renderRoutes, renderRuleset, renderTeardown, stateElement,
} from '../../gateway-ref/lib/dataplane/nft-rules.js';
import type { OutsideTuple } from '../../gateway-ref/lib/grm/types.js';
import { capaThrown } from '../helpers/expect-error.js';

function expectConfigError(fn: () => unknown, pattern: RegExp): void {
  expect(capaThrown(fn, 'ERR_CAPA_CONFIG').message).to.match(pattern);
}

const complete: OutsideTuple = { proto: 6, remoteAddress: '203.0.113.10', remotePort: 80, localAddress: '198.51.100.7', localPort: 40001 };

describe('nft-rules: terminal links', () => {
  it('numbers links in order of first appearance and lets several addresses share one', () => {
    const links = parseLinkSpecs(['100.64.0.6=t1,100.64.0.10=t2', '2001:DB8:0:0::6=t1']);
    expect(links).to.deep.equal([
      { ifname: 't1', terminals: ['100.64.0.6', '2001:db8::6'], mark: 1000 },
      { ifname: 't2', terminals: ['100.64.0.10'], mark: 1001 },
    ]);
    expect(parseLinkSpecs(['100.64.0.6=t1'], 5000)[0]!.mark).to.equal(5000);
  });

  it('rejects what is not ADDRESS=IFNAME, a terminal on two links, and an empty list', () => {
    expectConfigError(() => parseLinkSpecs(['t1=100.64.0.6']), /must look like 100\.64\.0\.2=veth-t1/);
    expectConfigError(() => parseLinkSpecs(['100.64.0.6=t1=x']), /must look like/);
    expectConfigError(() => parseLinkSpecs(['100.64.0.6=this-name-is-too-long']), /not an interface name/);
    expectConfigError(() => parseLinkSpecs(['100.64.0.6=t1', '100.64.0.6=t2']), /two links, t1 and t2/);
    expectConfigError(() => parseLinkSpecs(['', ' , ']), /no terminal links/);
  });
});

describe('nft-rules: pool ranges', () => {
  it('collapses consecutive addresses per family, whatever the input order', () => {
    expect(poolRanges(['198.51.100.3', '198.51.100.1', '198.51.100.2', '198.51.100.9', '2001:db8::ffff', '2001:db8::1:0'])).to.deep.equal({
      4: ['198.51.100.1-198.51.100.3', '198.51.100.9'],
      6: ['2001:db8::ffff-2001:db8::1:0'],
    });
  });

  it('rejects an entry that is not an address', () => {
    expectConfigError(() => poolRanges(['198.51.100.0/24']), /not an IP address/);
  });
});

describe('nft-rules: ruleset', () => {
  const layout = { table: 'capa', links: parseLinkSpecs(['100.64.0.6=t1', '100.64.0.10=t2']), pool: ['198.51.100.7', '198.51.100.8'] };
  const text = renderRuleset(layout);

  it('replaces an earlier copy of the table in the same script', () => {
    expect(text.split('\n').slice(0, 3)).to.deep.equal(['table inet capa {}', 'delete table inet capa', 'table inet capa {']);
    expect(renderTeardown('capa')).to.equal('table inet capa {}\ndelete table inet capa\n');
  });

  it('names the links, their owners, their terminals and the pool', () => {
    expect(text).to.contain('set links { type ifname; elements = { "t1", "t2" }; }');
    expect(text).to.contain('set owners { type mark . ifname; elements = { 1000 . "t1", 1001 . "t2" }; }');
    expect(text).to.contain('set terminals4 { type ifname . ipv4_addr; elements = { "t1" . 100.64.0.6, "t2" . 100.64.0.10 }; }');
    expect(text).to.contain('set pool4 { type ipv4_addr; flags interval; elements = { 198.51.100.7-198.51.100.8 }; }');
    expect(text).to.contain('set pool6 { type ipv6_addr; flags interval; }');
  });

  it('checks outside-bound packets before conntrack, marks inside-bound ones before dstnat and drops the unmatched after it', () => {
    expect(text).to.match(/chain outbound \{\n\s+type filter hook prerouting priority raw;/);
    expect(text).to.match(/chain route_inbound \{\n\s+type filter hook prerouting priority mangle;/);
    expect(text).to.match(/chain drop_unmatched \{\n\s+type filter hook prerouting priority dstnat \+ 10;/);
    expect(text).to.contain('meta l4proto tcp meta mark set ip daddr . th dport . ip saddr . th sport map @state_tcp4 meta mark . iifname @owners meta mark set meta mark | 0x80000000 accept');
    expect(text).to.contain('meta l4proto udp meta mark set ip6 saddr . ip6 daddr . th dport map @partial_udp6 accept');
    expect(text).to.contain('meta mark 0 ip daddr @pool4 counter name unmatched drop');
    expect(text).to.contain('iifname != @links meta mark 0 dnat ip to ip saddr . ip daddr map @inbound4');
  });

  it('sends a flow\'s ICMP errors to its terminal: a new flow\'s conntrack entry keeps its link\'s mark, and related errors take it', () => {
    expect(text).to.contain('ct state new ct mark set meta mark & 0x7fffffff');
    expect(text).to.match(/chain route_inbound \{\n.*\n\s+iifname @links return\n\s+meta l4proto \{ icmp, ipv6-icmp \} ct state related ct mark != 0 meta mark set ct mark accept\n/);
  });

  it('lists every chain it declares by name', () => {
    expect([...renderChains().join('\n').matchAll(/chain (\w+) \{/g)].map((m) => m[1])).to.have.members([...CHAIN_NAMES]);
  });

  it('refuses a table name nft would misread and a mark below 256', () => {
    expectConfigError(() => renderRuleset({ ...layout, table: 'capa; flush ruleset' }), /table name/);
    expectConfigError(() => renderRuleset({ ...layout, links: [{ ifname: 't1', terminals: ['100.64.0.6'], mark: 255 }] }), /mark\/table 255/);
  });
});

describe('nft-rules: elements', () => {
  it('keys a complete state by the inside-bound tuple and a partial one without the remote port', () => {
    expect(stateElement(complete, 1000)).to.deep.equal({ map: 'state_tcp4', key: '203.0.113.10 . 80 . 198.51.100.7 . 40001', value: '1000' });
    expect(stateElement({ ...complete, proto: 17, remotePort: undefined }, 1001))
      .to.deep.equal({ map: 'partial_udp4', key: '203.0.113.10 . 198.51.100.7 . 40001', value: '1001' });
    expect(stateElement({ ...complete, remoteAddress: '2001:db8::10', localAddress: '2001:db8:1::7' }, 1000).map).to.equal('state_tcp6');
  });

  it('refuses a tuple that mixes address families', () => {
    expect(() => stateElement({ ...complete, remoteAddress: '2001:db8::10' }, 1000)).to.throw(/mixes or lacks address families/);
    expect(() => inboundElement('203.0.113.10', '198.51.100.7', '2001:db8::6')).to.throw(/mixes or lacks address families/);
  });

  it('renders one command per run of changes to one map, with timeouts, deletes by key only', () => {
    const a = stateElement(complete, 1000);
    const b = stateElement({ ...complete, localPort: 40002 }, 1001);
    const inbound = inboundElement('203.0.113.10', '198.51.100.200', '100.64.0.6');
    expect(renderElementOps('capa', [
      { action: 'add', element: a }, { action: 'add', element: b }, { action: 'delete', element: a },
      { action: 'add', element: inbound, timeoutMs: 29_001 },
    ])).to.equal([
      'add element inet capa state_tcp4 { 203.0.113.10 . 80 . 198.51.100.7 . 40001 : 1000, 203.0.113.10 . 80 . 198.51.100.7 . 40002 : 1001 }',
      'delete element inet capa state_tcp4 { 203.0.113.10 . 80 . 198.51.100.7 . 40001 }',
      'add element inet capa inbound4 { 203.0.113.10 . 198.51.100.200 timeout 30s : 100.64.0.6 }',
      '',
    ].join('\n'));
    expect(renderElementOps('capa', [])).to.equal('');
  });
});

describe('nft-rules: routing', () => {
  it('gives each link a fwmark rule and a default route via its terminal, per family', () => {
    const routes = renderRoutes(parseLinkSpecs(['100.64.0.6=t1', '2001:db8::6=t1', '100.64.0.10=t2']), 1000);
    expect(routes[4]).to.deep.equal([
      'rule add fwmark 1000 table 1000 priority 1000', 'rule add iif lo fwmark 0x800003e8 table 1000 priority 1000', 'route replace default via 100.64.0.6 dev t1 table 1000',
      'rule add fwmark 1001 table 1001 priority 1000', 'rule add iif lo fwmark 0x800003e9 table 1001 priority 1000', 'route replace default via 100.64.0.10 dev t2 table 1001',
    ]);
    expect(routes[6]).to.deep.equal(['rule add fwmark 1000 table 1000 priority 1000', 'rule add iif lo fwmark 0x800003e8 table 1000 priority 1000', 'route replace default via 2001:db8::6 dev t1 table 1000']);
  });

  it('removes every rule at its priority and flushes the tables they used, nothing else', () => {
    const rules = [
      { priority: 0, table: 'local' }, { priority: 1000, table: '1000' }, { priority: 1000, table: '99' },
      { priority: 1000, table: '99' }, { priority: 32766, table: 'main' },
    ];
    expect(renderRouteCleanup(rules, 1000)).to.deep.equal([
      'rule del priority 1000', 'rule del priority 1000', 'rule del priority 1000', 'route flush table 1000', 'route flush table 99',
    ]);
    expect(renderRouteCleanup(rules, 2000)).to.deep.equal([]);
  });
});
