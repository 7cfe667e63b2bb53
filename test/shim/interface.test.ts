/**
 * capa-socket's address configuration (DESIGN "Terminal side", Configure): an allocated source
 * address that is not local is added to the configured interface before the pinned connect.
 * Runs in a network namespace this test creates, never on the host's interfaces; needs root
 * and `ip netns`: skipped without them, a failure when CI=true.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { NetnsTerminalOutcome } from './netns-terminal.js';

const NS = `capa-shim-${process.pid}`;
const IFACE = 'capa0';
/** Lab address of the outside host (DESIGN "Data planes"), local on the test interface. */
const OUTSIDE_HOST = '203.0.113.5';
const CHILD = fileURLToPath(new URL('./netns-terminal.js', import.meta.url));
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
}

function terminal(pool: string, ifname: string, asNobody = false): NetnsTerminalOutcome {
  const command = [...(asNobody ? NOBODY : []), process.execPath, CHILD, pool, ifname, OUTSIDE_HOST];
  return JSON.parse(execFileSync('ip', ['netns', 'exec', NS, ...command], { encoding: 'utf8', timeout: 20_000 })) as NetnsTerminalOutcome;
}

function namespacesUsable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not running as root';
  try {
    ip('netns', 'list');
    return undefined;
  } catch (err: unknown) {
    return `ip netns does not work: ${(err as Error).message}`;
  }
}

describe('shim: configuring the allocated address on an interface (network namespace)', function () {
  let created = false;

  before(function () {
    const problem = namespacesUsable();
    if (problem !== undefined) {
      if (process.env.CI === 'true') throw new Error(`the interface tests need root and ip netns in CI: ${problem}`);
      this.skip();
    }
    ip('netns', 'add', NS);
    created = true;
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    // A veth pair: dummy interfaces need a kernel module these machines may lack.
    ip('-n', NS, 'link', 'add', IFACE, 'type', 'veth', 'peer', 'name', 'capa1');
    ip('-n', NS, 'link', 'set', IFACE, 'up');
    ip('-n', NS, 'link', 'set', 'capa1', 'up');
    ip('-n', NS, 'addr', 'add', `${OUTSIDE_HOST}/32`, 'dev', IFACE);
  });

  after(function () {
    if (created) ip('netns', 'del', NS);
  });

  it('adds a non-local aOG to the interface, then the outside host sees exactly (aOG, pA)', function () {
    expect(ip('-n', NS, '-o', 'addr', 'show', 'dev', IFACE)).to.not.include('198.51.100.1/');
    const outcome = terminal('198.51.100.1', IFACE);
    expect(outcome, JSON.stringify(outcome)).to.include({ ok: true, liveAfterClose: 0 });
    if (!outcome.ok) return;
    expect(outcome.assigned).to.match(/^198\.51\.100\.1:\d+$/);
    expect(outcome.seen).to.equal(outcome.assigned);
    expect(ip('-n', NS, '-o', 'addr', 'show', 'dev', IFACE)).to.include('inet 198.51.100.1/32');
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
    expect(ip('-n', NS, '-o', 'addr', 'show', 'dev', IFACE)).to.not.include('198.51.100.3/');
  });
});
