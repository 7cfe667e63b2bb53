/**
 * Interface addresses through the addon's netlink calls, inside a network
 * namespace this test creates (never the host's interfaces). Needs root and
 * `ip netns`: skipped without them, a failure when CI=true.
 */
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { ip, requireNamespaces, TestNamespace } from '../helpers/netns.js';
import type { NetnsOutcome, NetnsStep } from './netns-child.js';

const ns = new TestNamespace('capa-test');
const IFACE = 'capa0';
const PEER = 'capa1';
const CHILD = fileURLToPath(new URL('./netns-child.js', import.meta.url));

/** Runs the steps in the namespace (optionally as nobody, without capabilities). */
function inNamespace(steps: NetnsStep[], asNobody = false): NetnsOutcome[] {
  return ns.runJson<NetnsOutcome[]>(CHILD, [JSON.stringify(steps)], asNobody);
}

function one(step: NetnsStep, asNobody = false): NetnsOutcome {
  return inNamespace([step], asNobody)[0]!;
}

/** The addresses `ip` itself reports on an interface of the namespace. */
function ipAddresses(ifname: string): string {
  return ns.ip('-o', 'addr', 'show', 'dev', ifname);
}

describe('native netlink: interface addresses in a network namespace', function () {
  let hostAddressesBefore = '';

  before(function () {
    requireNamespaces(this, 'netlink tests');
    hostAddressesBefore = ip('-o', 'addr', 'show');
    ns.create();
    ns.ip('link', 'add', IFACE, 'type', 'veth', 'peer', 'name', PEER);
  });

  after(function () {
    ns.remove();
    if (hostAddressesBefore === '') return;
    expect(ip('-o', 'addr', 'show'), 'the host interfaces are untouched').to.equal(hostAddressesBefore);
  });

  for (const [address, shown] of [
    ['198.51.100.7', 'inet 198.51.100.7/32'],
    ['2001:db8::7', 'inet6 2001:db8::7/128'],
  ] as const) {
    it(`adds, checks and removes ${address} idempotently`, function () {
      const results = inNamespace([
        { op: 'check', ifname: IFACE, address },
        { op: 'isLocal', address },
        { op: 'add', ifname: IFACE, address },
        { op: 'add', ifname: IFACE, address },
        { op: 'check', ifname: IFACE, address },
        { op: 'check', ifname: PEER, address },
        { op: 'isLocal', address },
      ]);
      expect(results).to.deep.equal([
        { ok: true, value: false },
        { ok: true, value: false },
        { ok: true, value: null },
        { ok: true, value: null },
        { ok: true, value: true },
        { ok: true, value: false },
        { ok: true, value: true },
      ]);
      const configured = ipAddresses(IFACE);
      expect(configured).to.include(shown);
      // Usable at once: no duplicate address detection pending.
      expect(configured).not.to.include('tentative');
      expect(configured.match(new RegExp(shown.replace(/\./g, '\\.'), 'g'))).to.have.length(1);

      const removal = inNamespace([
        { op: 'remove', ifname: IFACE, address },
        { op: 'check', ifname: IFACE, address },
        { op: 'remove', ifname: IFACE, address },
      ]);
      expect(removal.slice(0, 2)).to.deep.equal([{ ok: true, value: null }, { ok: true, value: false }]);
      expect(removal[2]).to.deep.include({ ok: false });
      expect(removal[2]).to.have.nested.property('error.code', 'EADDRNOTAVAIL');
      expect(ipAddresses(IFACE)).not.to.include(shown);
    });
  }

  it('returns from an IPv6 add only once the address is local (the kernel installs its route after the ack)', function () {
    // 200 fresh addresses: without the wait about one add in twenty returned first.
    const addresses = Array.from({ length: 200 }, (_, i) => `2001:db8:1::${(i + 1).toString(16)}`);
    const results = inNamespace(addresses.flatMap((address): NetnsStep[] => [
      { op: 'add', ifname: IFACE, address },
      { op: 'isLocal', address },
    ]));
    const outcomes = (step: number): NetnsOutcome[] => results.filter((_, i) => i % 2 === step);
    expect(outcomes(0).filter((r) => !r.ok), 'failed adds').to.deep.equal([]);
    const late = addresses.filter((_, i) => { const r = outcomes(1)[i]; return !(r?.ok === true && r.value === true); });
    expect(late, 'not yet local when the add returned').to.deep.equal([]);
  });

  it('sees addresses configured by ip(8), and 127/8 as local', function () {
    ns.ip('addr', 'add', '203.0.113.9/24', 'dev', PEER);
    expect(inNamespace([
      { op: 'check', ifname: PEER, address: '203.0.113.9' },
      { op: 'check', ifname: IFACE, address: '203.0.113.9' },
      { op: 'isLocal', address: '127.0.0.42' },
      { op: 'isLocal', address: '::1' },
    ])).to.deep.equal([
      { ok: true, value: true },
      { ok: true, value: false },
      { ok: true, value: true },
      { ok: true, value: true },
    ]);
  });

  it('fails with ENODEV for an interface that does not exist', function () {
    for (const op of ['add', 'remove', 'check'] as const) {
      const result = one({ op, ifname: 'nope0', address: '198.51.100.7' });
      expect(result.ok, op).to.equal(false);
      expect(result).to.have.nested.property('error.code', 'ENODEV');
      expect(result).to.have.nested.property('error.errno', -19);
      expect(result).to.have.nested.property('error.syscall', 'netlink');
      expect(result).to.have.nested.property('error.message').that.includes('nope0');
    }
  });

  it('names CAP_NET_ADMIN when an unprivileged user changes addresses', function () {
    const results = inNamespace([
      { op: 'add', ifname: IFACE, address: '198.51.100.7' },
      { op: 'remove', ifname: IFACE, address: '2001:db8::7' },
      { op: 'check', ifname: IFACE, address: '198.51.100.7' },
    ], true);
    expect(results[0]).to.deep.equal({
      ok: false,
      error: {
        name: 'Error', code: 'EPERM', errno: -1, syscall: 'netlink',
        message: `adding 198.51.100.7/32 to ${IFACE} needs CAP_NET_ADMIN (run as root or grant the capability)`,
      },
    });
    expect(results[1]).to.have.nested.property('error.message',
      `removing 2001:db8::7/128 from ${IFACE} needs CAP_NET_ADMIN (run as root or grant the capability)`);
    // Reading needs no privilege.
    expect(results[2]).to.deep.equal({ ok: true, value: false });
    expect(ipAddresses(IFACE)).not.to.include('198.51.100.7');
  });

  it('names CAP_NET_ADMIN when an unprivileged user asks for SO_MARK', function () {
    const result = one({ op: 'pin', options: { family: 4, type: 'udp', address: '127.0.0.1', port: 0, mark: 7 } }, true);
    expect(result).to.have.nested.property('error.code', 'EPERM');
    expect(result).to.have.nested.property('error.syscall', 'setsockopt');
    expect(result).to.have.nested.property('error.message').that.includes('SO_MARK needs CAP_NET_ADMIN');
    // Without the mark the same user can pin.
    expect(one({ op: 'pin', options: { family: 4, type: 'udp', address: '127.0.0.1', port: 0 } }, true))
      .to.deep.equal({ ok: true, value: null });
  });
});
