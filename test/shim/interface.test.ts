/**
 * capa-socket's address configuration (DESIGN "Terminal side", Configure): an allocated source
 * address that is not local is added to the configured interface before the pinned connect.
 * Runs in a network namespace this test creates, never on the host's interfaces; needs root
 * and `ip netns`: skipped without them, a failure when CI=true.
 */
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { requireNamespaces, TestNamespace } from '../helpers/netns.js';
import type { NetnsTerminalOutcome } from './netns-terminal.js';

const ns = new TestNamespace('capa-shim');
const IFACE = 'capa0';
/** Lab address of the outside host (DESIGN "Data planes"), local on the test interface. */
const OUTSIDE_HOST = '203.0.113.5';
const CHILD = fileURLToPath(new URL('./netns-terminal.js', import.meta.url));

function terminal(pool: string, ifname: string, asNobody = false): NetnsTerminalOutcome {
  return ns.runJson<NetnsTerminalOutcome>(CHILD, [pool, ifname, OUTSIDE_HOST], asNobody);
}

describe('shim: configuring the allocated address on an interface (network namespace)', function () {
  before(function () {
    requireNamespaces(this, 'the interface tests');
    ns.create();
    // A veth pair: dummy interfaces need a kernel module these machines may lack.
    ns.ip('link', 'add', IFACE, 'type', 'veth', 'peer', 'name', 'capa1');
    ns.ip('link', 'set', IFACE, 'up');
    ns.ip('link', 'set', 'capa1', 'up');
    ns.ip('addr', 'add', `${OUTSIDE_HOST}/32`, 'dev', IFACE);
  });

  after(function () {
    ns.remove();
  });

  it('adds a non-local aOG to the interface, then the outside host sees exactly (aOG, pA)', function () {
    expect(ns.ip('-o', 'addr', 'show', 'dev', IFACE)).to.not.include('198.51.100.1/');
    const outcome = terminal('198.51.100.1', IFACE);
    expect(outcome, JSON.stringify(outcome)).to.include({ ok: true, liveAfterClose: 0 });
    if (!outcome.ok) return;
    expect(outcome.assigned).to.match(/^198\.51\.100\.1:\d+$/);
    expect(outcome.seen).to.equal(outcome.assigned);
    expect(ns.ip('-o', 'addr', 'show', 'dev', IFACE)).to.include('inet 198.51.100.1/32');
    const again = terminal('198.51.100.1', IFACE);
    expect(again, 'an address already there is used as it is').to.include({ ok: true });
  });

  it('fails with ERR_CAPA_CONFIG for a missing interface, releases, and connects nothing', function () {
    const outcome = terminal('198.51.100.2', 'capa-nope0');
    expect(outcome, JSON.stringify(outcome)).to.include({ ok: false, code: 'ERR_CAPA_CONFIG', live: 0, peers: 0 });
  });

  it('fails with ERR_CAPA_PERMISSION without CAP_NET_ADMIN, releases, and connects nothing', function () {
    const outcome = terminal('198.51.100.3', IFACE, true);
    expect(outcome, JSON.stringify(outcome)).to.include({ ok: false, code: 'ERR_CAPA_PERMISSION', live: 0, peers: 0 });
    expect(ns.ip('-o', 'addr', 'show', 'dev', IFACE)).to.not.include('198.51.100.3/');
  });
});
