/**
 * capa-lab end to end, through its command line: the lab's gateway (reference GRM + DNS front
 * end + nftables data plane) in its namespace, terminals asking it with capa-dig and pinning
 * sockets, the outside host's echo servers reporting what they see. Needs root; fails instead
 * of skipping when CI=true. Namespaces are named capa-test-<pid>-lab-*, never a user's lab.
 */
import { expect } from 'chai';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CommandResult, runCommand } from '../../gateway-ref/lib/dataplane/command.js';
import { CAPA_DIG, CAPA_LAB, ECHO_SERVER, NsProcess, PinnedClient, counters, reapConntrack, requireNetns, sleep, testPrefix, waitFor } from './helpers.js';

const AOG = '198.51.100.7';
const AOG6 = '2001:db8:198::7';
const OUTSIDE = '203.0.113.10';
const HOLD_DOWN_S = 10;

interface JournalLine {
  time: string;
  event: string;
  terminal: string;
  aOG: string;
  pA: number;
  aOB: string;
  pB: number;
}

describe('capa-lab (network namespaces, root)', function () {
  this.timeout(180_000);
  const prefix = testPrefix('lab');
  let stateDir = '';

  function lab(args: string[], allowFailure = true): Promise<CommandResult> {
    return runCommand([process.execPath, CAPA_LAB, '--prefix', prefix, '--state-dir', stateDir, ...args], { allowFailure });
  }

  async function inHost(host: string, argv: string[]): Promise<CommandResult> {
    return lab(['exec', host, '--', ...argv]);
  }

  /** A CAPA allocation for `host` `port`/tcp, asked from terminal `terminal` with capa-dig. */
  async function allocate(terminal: string, host: string, port: number): Promise<{ address: string; port: number }> {
    const { stdout, stderr, code } = await inHost(terminal, [process.execPath, CAPA_DIG, host, `${port}/tcp`, '--json']);
    expect(code, stderr).to.equal(0);
    const data = (JSON.parse(stdout) as { answer: { data: { address: string; port: number } }[] }).answer[0]!.data;
    return { address: data.address, port: data.port };
  }

  function journal(): JournalLine[] {
    const file = join(stateDir, 'journal.jsonl');
    return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as JournalLine) : [];
  }

  async function addresses(terminal: string): Promise<string> {
    return (await inHost(terminal, ['ip', '-o', 'address', 'show', 'dev', 'gw0'])).stdout;
  }

  before(async function () {
    await requireNetns(this);
    stateDir = await mkdtemp(join(tmpdir(), 'capa-lab-'));
    await lab(['down']);
    const result = await lab(['up', '--terminals', '2', '--pool', `${AOG},${AOG6}`, '--port-strategy', 'sequential', '--hold-down', String(HOLD_DOWN_S)]);
    expect(result.code, result.stderr).to.equal(0);
  });

  after(async () => {
    if (process.getuid?.() === 0) await lab(['down']);
  });

  it('reports a lab that is up', async () => {
    const result = await lab(['status']);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.contain(`t1        ${prefix}t1  100.64.0.6 on gw0`);
    expect(result.stdout).to.match(/gateway: running \(pid \d+\)/);
    expect(result.stdout).to.match(/capa-lab: up\n$/);
  });

  it('runs capa-run curl in a terminal as README shows it: the address is configured through netlink and the outside host sees the pinned tuple', async () => {
    expect(await addresses('t2')).not.to.contain(`${AOG}/32`);
    // `capa-run` by name: exec puts the package's commands on PATH, also from a checkout.
    const result = await inHost('t2', ['capa-run', '--', 'curl', '-s', '-m', '10', 'http://out.lab.example/']);
    expect(result.code, result.stderr).to.equal(0);
    const seen = JSON.parse(result.stdout) as { remoteAddress: string; remotePort: number };
    // The journal is written asynchronously.
    const allocated = await waitFor('the allocation in the journal', () => journal().find((l) => l.event === 'allocate' && l.terminal === '100.64.0.10'), 5000);
    expect([seen.remoteAddress, seen.remotePort, allocated.pB]).to.deep.equal([allocated.aOG, allocated.pA, 80]);
    expect(await addresses('t2')).to.contain(`${AOG}/32`);
  });

  it('carries an IPv6 flow end to end: capa-run curl to an AAAA-only host leaves from the IPv6 pool address the GRM assigned', async () => {
    const result = await inHost('t1', ['capa-run', '--', 'curl', '-s', '-m', '10', 'http://out6.lab.example/']);
    expect(result.code, result.stderr).to.equal(0);
    const seen = JSON.parse(result.stdout) as { remoteAddress: string; remotePort: number; localAddress: string };
    const allocated = await waitFor('the allocation in the journal', () => journal().find((l) => l.event === 'allocate' && l.aOG === AOG6), 5000);
    expect([seen.remoteAddress, seen.remotePort, seen.localAddress]).to.deep.equal([AOG6, allocated.pA, '2001:db8:203::10']);
    expect(allocated.terminal).to.equal('100.64.0.6');
    expect(await addresses('t1')).to.contain(`${AOG6}/128`);
  });

  it('lets two terminals with the same pool address reach the same outside host and port at the same time, each with its own replies', async () => {
    const [a1, a2] = [await allocate('t1', 'out.lab.example', 80), await allocate('t2', 'out.lab.example', 80)];
    expect([a1.address, a2.address]).to.deep.equal([AOG, AOG]);
    expect(a1.port).not.to.equal(a2.port);
    await inHost('t1', ['ip', 'address', 'replace', `${AOG}/32`, 'dev', 'gw0']);
    const c1 = new PinnedClient(`${prefix}t1`, { proto: 'tcp', localAddress: AOG, localPort: a1.port, host: OUTSIDE, port: 80, hold: true });
    const c2 = new PinnedClient(`${prefix}t2`, { proto: 'tcp', localAddress: AOG, localPort: a2.port, host: OUTSIDE, port: 80, hold: true });
    await Promise.all([c1.ready, c2.ready]);
    c1.go();
    c2.go();
    const [r1, r2] = await Promise.all([c1.report(), c2.report()]);
    expect([r1.remoteAddress, r1.remotePort]).to.deep.equal([AOG, a1.port]);
    expect([r2.remoteAddress, r2.remotePort]).to.deep.equal([AOG, a2.port]);
    const confirmed = (): string[] => journal().filter((l) => l.event === 'confirm').map((l) => `${l.terminal} ${l.pA}`);
    await waitFor('both confirmations in the journal', () => (confirmed().includes(`100.64.0.6 ${a1.port}`) && confirmed().includes(`100.64.0.10 ${a2.port}`) ? true : undefined), 5000);
  });

  it('drops a terminal sending from a port it was not assigned, and does not deliver inside-bound packets for an unallocated tuple', async () => {
    const gw = `${prefix}gw`;
    const before = await counters(gw);
    const spoof = new PinnedClient(`${prefix}t1`, { proto: 'tcp', localAddress: AOG, localPort: 65000, host: OUTSIDE, port: 80, timeoutMs: 1500 });
    expect(await spoof.done).to.deep.equal({ event: 'timeout' });
    expect((await counters(gw)).spoofed).to.be.above(before.spoofed);
    const probe = new PinnedClient(`${prefix}out`, { proto: 'udp', localAddress: OUTSIDE, localPort: 7071, host: AOG, port: 65001, timeoutMs: 1500 });
    expect(await probe.done).to.deep.equal({ event: 'timeout' });
    expect((await counters(gw)).unmatched).to.equal(before.unmatched + 1);
  });

  it('a UDP flow keeps flowing across a kill -9 and restart of the gateway; no live port is reissued', async () => {
    const { stdout, code, stderr } = await inHost('t1', [process.execPath, CAPA_DIG, 'out.lab.example', '7/udp', '--json']);
    expect(code, stderr).to.equal(0);
    const udp = (JSON.parse(stdout) as { answer: { data: { address: string; port: number } }[] }).answer[0]!.data;
    await inHost('t1', ['ip', 'address', 'replace', `${AOG}/32`, 'dev', 'gw0']);
    const client = new PinnedClient(`${prefix}t1`, { proto: 'udp', localAddress: AOG, localPort: udp.port, host: OUTSIDE, port: 7, repeat: { count: 60, everyMs: 100 }, timeoutMs: 20_000 });
    await client.ready;
    await sleep(1500);
    const restart = await lab(['restart-gateway', '--kill']);
    expect(restart.code, restart.stderr).to.equal(0);
    const restartedAt = Date.now();
    const end = await client.done;
    expect(end.event, JSON.stringify(end)).to.equal('replies');
    const { sent, at } = end as { sent: number; at: number[] };
    expect(sent).to.equal(60);
    expect(at.length, 'replies lost around the restart').to.be.at.least(sent - 5);
    expect(at.filter((t) => t > restartedAt).length, 'replies after the restart').to.be.at.least(10);
    // The restarted GRM remembers the flow: a new UDP allocation for the same destination gets another port.
    const next = await inHost('t2', [process.execPath, CAPA_DIG, 'out.lab.example', '7/udp', '--json']);
    expect((JSON.parse(next.stdout) as { answer: { data: { port: number } }[] }).answer[0]!.data.port).to.not.equal(udp.port);
  });

  it('releases a finished flow\'s state when conntrack ends it, and reissues the port only after the hold-down', async () => {
    const first = await allocate('t1', 'out.lab.example', 8080);
    const client = new PinnedClient(`${prefix}t1`, { proto: 'tcp', localAddress: AOG, localPort: first.port, host: OUTSIDE, port: 8080 });
    expect((await client.report()).remotePort).to.equal(first.port);
    const gw = `${prefix}gw`;
    const release = await waitFor('the release in the journal',
      () => journal().find((l) => l.event === 'release' && l.pA === first.port && l.pB === 8080), 70_000, () => reapConntrack(gw));
    const heldDown = await allocate('t1', 'out.lab.example', 8080);
    expect(Date.now()).to.be.below(Date.parse(release.time) + HOLD_DOWN_S * 1000);
    expect(heldDown.port).not.to.equal(first.port);
    await sleep(Date.parse(release.time) + HOLD_DOWN_S * 1000 + 500 - Date.now());
    expect((await allocate('t1', 'out.lab.example', 8080)).port).to.equal(first.port);
  });

  it('lets the outside host resolve a terminal by name through the GRM and connect to it through the gateway (inbound path)', async () => {
    const server = await NsProcess.start(`${prefix}t1`, [process.execPath, ECHO_SERVER, '--http', '100.64.0.6:8000', '--udp', '100.64.0.6:8001'], /echo-server ready/);
    try {
      const { stdout, code, stderr } = await inHost('out', [process.execPath, CAPA_DIG, '--type', 'A', 't1.lab.example', '--json']);
      expect(code, stderr).to.equal(0);
      const bound = (JSON.parse(stdout) as { answer: { data: string }[] }).answer[0]!.data;
      expect(bound).to.equal(AOG);
      const report = await new PinnedClient(`${prefix}out`, { proto: 'tcp', localAddress: OUTSIDE, localPort: 0, host: bound, port: 8000 }).report();
      expect([report.remoteAddress, report.localAddress, report.localPort]).to.deep.equal([OUTSIDE, '100.64.0.6', 8000]);
    } finally {
      await server.stop();
    }
  });

  it('runs a command in a lab host with its exit code, and refuses an unknown host', async () => {
    expect((await inHost('out', ['sh', '-c', 'ip -o address show dev gw0; exit 7'])).code).to.equal(7);
    expect((await inHost('out', ['ip', '-o', 'address', 'show', 'dev', 'gw0'])).stdout).to.contain(`${OUTSIDE}/24`);
    const unknown = await inHost('t9', ['true']);
    expect(unknown.code).to.equal(2);
    expect(unknown.stderr).to.contain('unknown host "t9": use gw, out or t1..t2');
  });

  it('refuses a second lab with the same prefix', async () => {
    const again = await lab(['up', '--terminals', '1']);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.contain(`a lab with prefix "${prefix}" is already up`);
  });

  it('removes everything with down, also after an interrupted run and a failed up', async () => {
    for (const name of ['gateway', 'echo']) process.kill(Number(readFileSync(join(stateDir, `${name}.pid`), 'utf8')), 'SIGKILL');
    const status = await lab(['status']);
    expect(status.code).to.equal(1);
    expect(status.stdout).to.contain('gateway: not running');
    const removed = await lab(['down']);
    expect(removed.code, removed.stderr).to.equal(0);
    expect(removed.stdout).to.contain(`removed ${prefix}`);
    const leftovers = async (): Promise<string[]> => [
      ...(await runCommand(['ip', 'netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(prefix)),
      ...(existsSync('/etc/netns') ? readdirSync('/etc/netns').filter((n) => n.startsWith(prefix)) : []),
      ...(existsSync(stateDir) ? [stateDir] : []),
    ];
    expect(await leftovers()).to.deep.equal([]);
    expect((await lab(['down'])).stdout).to.contain('nothing to remove');

    await runCommand(['ip', 'netns', 'add', `${prefix}t1`]);
    const failed = await lab(['up', '--terminals', '1']);
    expect(failed.code).to.equal(1);
    expect((await lab(['down'])).code).to.equal(0);
    expect(await leftovers()).to.deep.equal([]);
    expect((await lab(['status'])).stdout).to.equal('capa-lab: down\n');
  });
});
