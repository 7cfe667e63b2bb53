/**
 * The nftables data plane against the real kernel, in network namespaces this test creates
 * (capa-lab's topology, without its processes): two terminals, a gateway, an outside host with
 * echo servers. The driver runs in this process and drives nft, ip and conntrack inside the
 * gateway namespace. Needs root; fails instead of skipping when CI=true.
 */
import { expect } from 'chai';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeSync } from 'node:fs';
import { runCommand } from '../../gateway-ref/lib/dataplane/command.js';
import { ElementRecords, elementsOf, STATE_MAP_LAYOUTS } from '../../gateway-ref/lib/dataplane/nft-records.js';
import { nftApply, nftDump, nftOpen, nftTableComment } from '../../native/addon/index.js';
import { parseLinkSpecs, renderRuleset, stateElement } from '../../gateway-ref/lib/dataplane/nft-rules.js';
import { NftablesDataPlane } from '../../gateway-ref/lib/dataplane/nftables.js';
import { parsePool } from '../../gateway-ref/lib/grm/pool.js';
import type { Allocation, OutsideTuple } from '../../gateway-ref/lib/grm/types.js';
import { buildNetwork, down } from '../../gateway-ref/lab/lab.js';
import { linkSpecs, planLab } from '../../gateway-ref/lab/topology.js';
import { isCapaError } from '../../resolver/codec/errors.js';
import { ECHO_SERVER, NsProcess, PinnedClient, counters, reapConntrack, requireNetns, startEcho, testPrefix, waitFor } from './helpers.js';

const AOG = '198.51.100.7';
/** Per link: inside-bound packets by their mark; the gateway's own ICMP errors by the mark they reflect. */
const RULES = ['0x3e8 -> 1000', 'iif lo 0x800003e8 -> 1000', '0x3e9 -> 1001', 'iif lo 0x800003e9 -> 1001'];
const OUTSIDE = '203.0.113.10';
const AOG6 = '2001:db8:198::7';
const OUTSIDE6 = '2001:db8:203::10';

describe('nftables data plane (network namespaces, root)', function () {
  this.timeout(120_000);
  const prefix = testPrefix('dp');
  const plan = planLab(prefix, 2);
  const [t1, t2] = plan.terminals as [typeof plan.terminals[0], typeof plan.terminals[0]];
  const gw = plan.gateway.netns;
  const links = parseLinkSpecs(linkSpecs(plan));
  const pool = parsePool(plan.pool);
  const started: OutsideTuple[] = [];
  const ended: OutsideTuple[] = [];
  const problems: string[] = [];
  let stateDir = '';
  let echo: NsProcess | undefined;
  let driver: NftablesDataPlane;
  let nextId = 1;

  function allocation(terminal: string, tuple: Partial<OutsideTuple> & { localPort: number }): Allocation {
    return {
      id: nextId++,
      terminal,
      state: 'pending',
      leaseExpiresAt: Infinity,
      createdAt: 0,
      tuple: { proto: 6, remoteAddress: OUTSIDE, remotePort: 80, localAddress: AOG, ...tuple },
    };
  }

  function newDriver(): NftablesDataPlane {
    return new NftablesDataPlane({ links, pool, netns: gw, log: (m) => problems.push(m) });
  }

  /** Is the element of this tuple (keyed as the driver keys it) in the kernel? Asks for that one element only. */
  async function hasElement(tuple: OutsideTuple): Promise<boolean> {
    const element = stateElement(tuple, 0);
    const { code } = await runCommand(['nft', 'get', 'element', 'inet', 'capa', element.map, `{ ${element.key} }`], { netns: gw, allowFailure: true });
    return code === 0;
  }

  async function fwmarkRules(): Promise<string[]> {
    const { stdout } = await runCommand(['ip', '-j', 'rule', 'show', 'pref', '1000'], { netns: gw });
    return (JSON.parse(stdout || '[]') as { fwmark?: string; table?: string; iif?: string }[]).map((r) => `${r.iif === undefined ? '' : `iif ${r.iif} `}${r.fwmark} -> ${r.table}`);
  }

  before(async function () {
    await requireNetns(this);
    stateDir = await mkdtemp(join(tmpdir(), 'capa-dp-'));
    await down({ prefix, stateDir });
    await buildNetwork(plan);
    for (const t of plan.terminals) {
      await runCommand(['ip', 'address', 'add', `${AOG}/32`, 'dev', t.ifname], { netns: t.netns });
      await runCommand(['ip', 'address', 'add', `${AOG6}/128`, 'dev', t.ifname, 'nodad'], { netns: t.netns });
    }
    echo = await NsProcess.start(plan.outside.netns, [process.execPath, ECHO_SERVER, '--http', `${OUTSIDE}:80`, '--udp', `${OUTSIDE}:7`, '--udp', `[${OUTSIDE6}]:7`], /echo-server ready/);
  });

  after(async () => {
    if (process.getuid?.() !== 0) return;
    await driver?.stop();
    await echo?.stop();
    await down({ prefix, stateDir });
  });

  it('replaces what an earlier run of another layout left (table, elements, fwmark rules, tables) and duplicates nothing on restart', async () => {
    const stale = { proto: 6 as const, remoteAddress: OUTSIDE, remotePort: 80, localAddress: '198.51.100.99', localPort: 5555 };
    const older = { table: 'capa', links, pool: pool.slice(0, 3) };
    await runCommand(['nft', '-f', '-'], { netns: gw, input: `${renderRuleset(older)}add element inet capa state_tcp4 { ${stateElement(stale, 1000).key} : 1000 }\n` });
    await runCommand(['ip', '-batch', '-'], { netns: gw, input: `rule add fwmark 77 table 77 priority 1000\nroute add default via ${t1.address} dev ${t1.gatewayIfname} table 77\n` });
    expect(await hasElement(stale)).to.equal(true);

    driver = newDriver();
    await driver.start({ flowStarted: (t) => started.push(t), flowEnded: (t) => ended.push(t) });
    expect(await hasElement(stale)).to.equal(false);
    expect(await fwmarkRules()).to.deep.equal(RULES);
    expect((await runCommand(['ip', 'route', 'show', 'table', '77'], { netns: gw, allowFailure: true })).stdout.trim()).to.equal('');

    await driver.stop();
    driver = newDriver();
    await driver.start({ flowStarted: (t) => started.push(t), flowEnded: (t) => ended.push(t) });
    expect(await fwmarkRules()).to.deep.equal(RULES);
    const tables = (await runCommand(['nft', 'list', 'tables'], { netns: gw })).stdout;
    expect(tables.match(/table inet capa\b/g)).to.have.length(1);
    expect((await runCommand(['ip', 'route', 'show', 'table', '1000'], { netns: gw })).stdout).to.contain(`default via ${t1.address} dev ${t1.gatewayIfname}`);
  });

  it('has the state in the kernel when install() resolves, and two terminals on one (aOG) reach one outside socket at once', async () => {
    const a1 = allocation(t1.address, { localPort: 40001 });
    const a2 = allocation(t2.address, { localPort: 40002 });
    await Promise.all([driver.install(a1), driver.install(a2)]);
    expect(await hasElement(a1.tuple)).to.equal(true);
    expect(await hasElement(a2.tuple)).to.equal(true);
    const c1 = new PinnedClient(t1.netns, { proto: 'tcp', localAddress: AOG, localPort: 40001, host: OUTSIDE, port: 80, hold: true });
    const c2 = new PinnedClient(t2.netns, { proto: 'tcp', localAddress: AOG, localPort: 40002, host: OUTSIDE, port: 80, hold: true });
    await Promise.all([c1.ready, c2.ready]);
    c1.go();
    c2.go();
    const [r1, r2] = await Promise.all([c1.report(), c2.report()]);
    expect([r1.remoteAddress, r1.remotePort]).to.deep.equal([AOG, 40001]);
    expect([r2.remoteAddress, r2.remotePort]).to.deep.equal([AOG, 40002]);
    await waitFor('flow starts', () => (started.filter((t) => t.localPort === 40001 || t.localPort === 40002).length === 2 ? true : undefined), 10_000);
    await driver.remove(a1);
    await driver.remove(a2);
  });

  it('drops a terminal sending from another terminal\'s (aOG, pA), from an unassigned port, or from its inside address', async () => {
    const a2 = allocation(t2.address, { localPort: 40010 });
    await driver.install(a2);
    const before = await counters(gw);
    const attempts = [
      new PinnedClient(t1.netns, { proto: 'tcp', localAddress: AOG, localPort: 40010, host: OUTSIDE, port: 80, timeoutMs: 1500 }),
      new PinnedClient(t1.netns, { proto: 'tcp', localAddress: AOG, localPort: 40011, host: OUTSIDE, port: 80, timeoutMs: 1500 }),
      new PinnedClient(t1.netns, { proto: 'tcp', localAddress: t1.address, localPort: 40012, host: OUTSIDE, port: 80, timeoutMs: 1500 }),
    ];
    for (const attempt of attempts) expect(await attempt.done).to.deep.equal({ event: 'timeout' });
    expect((await counters(gw)).spoofed - before.spoofed).to.be.at.least(3);
    // The owner still gets through on the same (aOG, pA).
    const owner = new PinnedClient(t2.netns, { proto: 'tcp', localAddress: AOG, localPort: 40010, host: OUTSIDE, port: 80 });
    expect((await owner.report()).remotePort).to.equal(40010);
    await driver.remove(a2);
  });

  it('does not deliver inside-bound packets for a tuple no state names', async () => {
    const before = await counters(gw);
    const probe = new PinnedClient(plan.outside.netns, { proto: 'udp', localAddress: OUTSIDE, localPort: 7070, host: AOG, port: 40020, timeoutMs: 1500 });
    expect(await probe.done).to.deep.equal({ event: 'timeout' });
    expect((await counters(gw)).unmatched - before.unmatched).to.equal(1);
  });

  it('completes a partial state with the first packet\'s destination port', async () => {
    const partial = allocation(t1.address, { proto: 17, remotePort: undefined, localPort: 40030 });
    await driver.install(partial);
    expect(await hasElement(partial.tuple)).to.equal(true);
    const client = new PinnedClient(t1.netns, { proto: 'udp', localAddress: AOG, localPort: 40030, host: OUTSIDE, port: 7 });
    const report = await client.report();
    expect([report.remoteAddress, report.remotePort]).to.deep.equal([AOG, 40030]);
    const complete = { ...partial.tuple, remotePort: 7 };
    await waitFor('the complete element', async () => ((await hasElement(complete)) && !(await hasElement(partial.tuple)) ? true : undefined), 10_000);
    expect(started).to.deep.include(complete);
    await driver.remove({ ...partial, tuple: complete });
  });

  it('keeps a removed state until conntrack ends its flow, so the connection closes cleanly', async () => {
    const a = allocation(t1.address, { localPort: 40040 });
    await driver.install(a);
    const client = new PinnedClient(t1.netns, { proto: 'tcp', localAddress: AOG, localPort: 40040, host: OUTSIDE, port: 80, hold: true });
    await client.ready;
    await waitFor('the flow start', () => (started.some((t) => t.localPort === 40040) ? true : undefined), 10_000);
    await driver.remove(a);
    expect(await hasElement(a.tuple)).to.equal(true);
    client.go();
    expect((await client.report()).remotePort).to.equal(40040);
    await waitFor('the flow end', () => (ended.some((t) => t.localPort === 40040) ? true : undefined), 60_000, () => reapConntrack(gw));
    await waitFor('the element to go', async () => (!(await hasElement(a.tuple)) ? true : undefined), 10_000);
  });

  it('routes a bound querier\'s packets for a pool address to the terminal (inbound path), and nobody else\'s', async () => {
    const server = await startEcho(t1.netns, [`${t1.address}:8000`], `${t1.address}:8001`);
    try {
      await driver.routeInbound({ querier: OUTSIDE, poolAddress: '198.51.100.200', terminal: t1.address, ttlMs: 30_000 });
      const report = await new PinnedClient(plan.outside.netns, { proto: 'tcp', localAddress: OUTSIDE, localPort: 0, host: '198.51.100.200', port: 8000 }).report();
      expect([report.remoteAddress, report.localAddress]).to.deep.equal([OUTSIDE, t1.address]);
      await runCommand(['ip', 'address', 'add', '203.0.113.11/24', 'dev', plan.outside.ifname], { netns: plan.outside.netns });
      const stranger = new PinnedClient(plan.outside.netns, { proto: 'tcp', localAddress: '203.0.113.11', localPort: 0, host: '198.51.100.200', port: 8000, timeoutMs: 1500 });
      expect(await stranger.done).to.deep.equal({ event: 'timeout' });
      // Rebinding the address for this querier to another terminal replaces the binding.
      await driver.routeInbound({ querier: OUTSIDE, poolAddress: '198.51.100.200', terminal: t2.address, ttlMs: 30_000 });
      const { stdout } = await runCommand(['nft', 'get', 'element', 'inet', 'capa', 'inbound4', `{ ${OUTSIDE} . 198.51.100.200 }`], { netns: gw });
      expect(stdout).to.contain(`: ${t2.address}`);
    } finally {
      await server.stop();
    }
  });

  it('takes over an element the kernel holds for a tuple the allocator handed out, and refuses a terminal without a link', async () => {
    const x1 = allocation(t1.address, { localPort: 40050 });
    const x2 = allocation(t2.address, { localPort: 40050 });
    const y = allocation(t2.address, { localPort: 40051 });
    const results = await Promise.allSettled([driver.install(x1), driver.install(x2), driver.install(y)]);
    expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled']);
    const { stdout } = await runCommand(['nft', 'get', 'element', 'inet', 'capa', 'state_tcp4', `{ ${stateElement(x2.tuple, 0).key} }`], { netns: gw });
    expect(stdout, 'the later install (a stale element is the only way to meet one)').to.contain(': 0x000003e9');
    expect(await hasElement(y.tuple)).to.equal(true);
    let refused: unknown;
    await driver.install(allocation('100.64.9.9', { localPort: 40052 })).catch((err: unknown) => { refused = err; });
    expect(isCapaError(refused, 'ERR_CAPA_CONFIG')).to.equal(true);
    expect(String(refused)).to.match(/--nft-link 100\.64\.9\.9=/);
    await driver.remove(x1);
    await driver.remove(y);
  });

  it('loads, reads back and skips conflicts in bulk through the addon, and says what is wrong', async () => {
    await runCommand(['nft', '-f', '-'], { netns: gw, input: 'table inet capa_bulk { comment "bulk test"; map m { typeof ip saddr . th sport . ip daddr . th dport : meta mark; }; }\n' });
    const fd = nftOpen(gw);
    try {
      const set = { table: 'capa_bulk', name: 'm', keyLength: 16, map: true };
      const layout = STATE_MAP_LAYOUTS.find((m) => m.name === 'state_tcp4')!;
      const records = new ElementRecords();
      for (let i = 0; i < 5000; i++) records.add({ proto: 6, remoteAddress: OUTSIDE, remotePort: 80, localAddress: AOG, localPort: 1024 + i }, 1000 + (i % 2));
      const bytes = records.maps()[0]!.records;
      expect(await nftApply(fd, set, 'add', bytes)).to.deep.equal({ applied: 5000, conflicts: 0 });
      expect(await nftApply(fd, set, 'add', bytes), 'the same again: no error').to.deep.equal({ applied: 5000, conflicts: 0 });
      const back = elementsOf(layout, await nftDump(fd, set));
      expect(back).to.have.length(5000);
      expect(back).to.deep.include({ tuple: { proto: 6, remoteAddress: OUTSIDE, remotePort: 80, localAddress: AOG, localPort: 1025 }, mark: 1001 });
      // One key with another mark: refused as a whole without skipping, skipped alone with it.
      const other = new ElementRecords();
      other.add({ proto: 6, remoteAddress: OUTSIDE, remotePort: 80, localAddress: AOG, localPort: 1024 }, 1007);
      other.add({ proto: 6, remoteAddress: OUTSIDE, remotePort: 80, localAddress: AOG, localPort: 9999 }, 1007);
      const mixed = other.maps()[0]!.records;
      const refused = await nftApply(fd, set, 'add', mixed).then(() => undefined, (err: unknown) => err as { code: string; applied: number });
      expect([refused?.code, refused?.applied]).to.deep.equal(['EEXIST', 0]);
      expect(await nftApply(fd, set, 'add', mixed, true)).to.deep.equal({ applied: 1, conflicts: 1 });
      expect(nftTableComment(fd, 'capa_bulk')).to.equal('bulk test');
      expect(nftTableComment(fd, 'no_such_table')).to.equal(undefined);
      const missing = await nftDump(fd, { ...set, name: 'nope' }).then(() => undefined, (err: unknown) => err as Error & { code: string });
      expect(missing?.code).to.equal('ENOENT');
      expect(missing?.message).to.contain('reading the elements of inet capa_bulk nope');
    } finally {
      closeSync(fd);
      await runCommand(['nft', 'delete', 'table', 'inet', 'capa_bulk'], { netns: gw });
    }
    expect(() => nftOpen('../etc')).to.throw(/must be a network namespace name/);
    expect(() => nftOpen('capa-no-such-namespace')).to.throw(/cannot open an nf_tables netlink socket in \/run\/netns\/capa-no-such-namespace: ENOENT/);
  });

  /**
   * Runs a UDP probe in t1 from (AOG or AOG6, localPort) to the outside host, and returns what it
   * saw: with `size`, don't-fragment datagrams of that size (the path MTU the kernel then knows,
   * and whether a second send is refused); without, one small datagram and the error a
   * reply-less receive ends with.
   */
  async function udpProbe(family: 4 | 6, localPort: number, port: number, size?: number): Promise<{ mtu?: number; second?: string; error?: string }> {
    // (level, IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU) of linux/in.h and in6.h; Python's socket lacks them.
    const [level, discover, always, mtu] = family === 4 ? ['socket.IPPROTO_IP', 10, 2, 14] : ['socket.IPPROTO_IPV6', 23, 2, 24];
    const script = [
      'import json, socket, time',
      `s = socket.socket(socket.AF_INET${family === 6 ? '6' : ''}, socket.SOCK_DGRAM)`,
      `s.bind((${JSON.stringify(family === 4 ? AOG : AOG6)}, ${localPort}))`,
      `s.connect((${JSON.stringify(family === 4 ? OUTSIDE : OUTSIDE6)}, ${port}))`,
      's.settimeout(2)',
      size === undefined ? [
        's.send(b"probe")',
        'try:',
        '    s.recv(100); print(json.dumps({"error": "none"}))',
        'except OSError as e:',
        '    print(json.dumps({"error": type(e).__name__}))',
      ].join('\n') : [
        `s.setsockopt(${level}, ${discover}, ${always})`,
        `s.send(b"x" * ${size})`,
        'time.sleep(0.5)',
        `mtu = s.getsockopt(${level}, ${mtu})`,
        'try:',
        `    s.send(b"x" * ${size}); second = "sent"`,
        'except OSError as e:',
        '    second = e.strerror',
        'print(json.dumps({"mtu": mtu, "second": second}))',
      ].join('\n'),
    ].join('\n');
    const { stdout } = await runCommand(['python3', '-c', script], { netns: t1.netns });
    return JSON.parse(stdout) as { mtu?: number; second?: string; error?: string };
  }

  it('passes an outside host\'s ICMP port unreachable for a live flow on to its terminal', async () => {
    const a = allocation(t1.address, { proto: 17, remotePort: 9, localPort: 40060 });
    await driver.install(a);
    expect(await udpProbe(4, 40060, 9)).to.deep.equal({ error: 'ConnectionRefusedError' });
    await driver.remove(a);
  });

  it('tells a terminal the path MTU when the outside link is narrower (the gateway\'s own ICMP error reaches it), IPv4 and IPv6', async () => {
    const a4 = allocation(t1.address, { proto: 17, remotePort: 7, localPort: 40061 });
    const a6 = allocation(t1.address6, { proto: 17, remotePort: 7, localPort: 40062, localAddress: AOG6, remoteAddress: OUTSIDE6 });
    await driver.install(a4);
    await driver.install(a6);
    const out = plan.gateway.outsideIfname;
    await runCommand(['ip', 'link', 'set', out, 'mtu', '1280'], { netns: gw });
    try {
      expect(await udpProbe(4, 40061, 7, 1400)).to.deep.equal({ mtu: 1280, second: 'Message too long' });
      expect(await udpProbe(6, 40062, 7, 1400)).to.deep.equal({ mtu: 1280, second: 'Message too long' });
    } finally {
      await runCommand(['ip', 'link', 'set', out, 'mtu', '1500'], { netns: gw });
    }
    await driver.remove(a4);
    await driver.remove(a6);
  });

  it('renders an IPv6 ruleset the kernel accepts', async () => {
    const v6 = renderRuleset({ table: 'capa6check', links: parseLinkSpecs(['2001:db8:1::6=t1', '100.64.0.6=t1']), pool: ['2001:db8:ff::1', '2001:db8:ff::2'] });
    await runCommand(['nft', '-c', '-f', '-'], { netns: gw, input: v6 });
  });

  it('a restart takes its states over: stop({ keepStates }) leaves the table, start(restored) keeps it, the first reconcile removes what no state owns', async () => {
    const kept = { ...allocation(t1.address, { localPort: 41001 }), state: 'complete' as const };
    const gone = allocation(t2.address, { localPort: 41002 });
    await driver.install(kept);
    await driver.install(gone);
    await driver.stop({ keepStates: true });
    expect(await hasElement(kept.tuple), 'kept by a stop for a restart').to.equal(true);
    driver = newDriver();
    const ends: OutsideTuple[] = [];
    const missing = { ...allocation(t2.address, { localPort: 41003 }), state: 'complete' as const };
    await driver.start({
      flowStarted: (t) => started.push(t), flowEnded: (t) => ends.push(t), known: (t) => t.localPort === kept.tuple.localPort || t.localPort === missing.tuple.localPort,
    }, [kept, missing]);
    expect(await hasElement(kept.tuple), 'restored').to.equal(true);
    expect(await hasElement(missing.tuple), 'restored where the kernel had lost it').to.equal(true);
    expect(await fwmarkRules()).to.deep.equal(RULES);
    expect(await hasElement(gone.tuple), 'the kept table holds it until the reconcile').to.equal(true);
    // Their flows do not run (no conntrack entry), and nothing owns `gone`: the first reconcile ends and removes them.
    await driver.reconcile();
    expect(ends).to.deep.include.members([kept.tuple, missing.tuple]);
    expect(await hasElement(gone.tuple), 'not restored: removed').to.equal(false);
  });

  it('a periodic reconcile ends a flow whose DESTROY was lost and removes an element no state owns', async () => {
    await driver.stop();
    const flow = { proto: 6 as const, remoteAddress: OUTSIDE, remotePort: 80, localAddress: AOG, localPort: 42001 };
    const orphan = { ...flow, localPort: 42002 };
    const mended: string[] = [];
    const ends: OutsideTuple[] = [];
    driver = new NftablesDataPlane({ links, pool, netns: gw, log: (m) => problems.push(m), flowEvents: false, reconcileMs: 300 });
    await driver.start({
      flowStarted: (t) => started.push(t), flowEnded: (t) => ends.push(t),
      known: (t) => t.localPort === flow.localPort, mended: (kind) => mended.push(kind),
    });
    await driver.install(allocation(t1.address, { localPort: flow.localPort }));
    await runCommand(['nft', 'add', 'element', 'inet', 'capa', 'state_tcp4', `{ ${stateElement(orphan, 1000).key} : 1000 }`], { netns: gw });
    // A running flow (as conntrack lists it), then gone without an event: the watch is off.
    const entry = ['-s', AOG, '-d', OUTSIDE, '-p', 'tcp', '--sport', String(flow.localPort), '--dport', '80'];
    await runCommand(['conntrack', '-I', ...entry, '--state', 'ESTABLISHED', '-t', '120', '-u', 'ASSURED'], { netns: gw });
    await waitFor('the reconcile to see the flow', () => (started.some((t) => t.localPort === flow.localPort) ? true : undefined), 5000);
    await waitFor('the orphan removed', async () => (!(await hasElement(orphan)) ? true : undefined), 5000);
    expect(await hasElement(flow), 'a state the GRM owns stays').to.equal(true);
    await runCommand(['conntrack', '-D', ...entry], { netns: gw });
    await waitFor('the lost end found', () => (ends.some((t) => t.localPort === flow.localPort) ? true : undefined), 5000);
    expect(mended).to.include('orphan-element');
    expect(mended).to.include('flow-gone');
  });

  it('removes everything it installed on stop', async () => {
    await driver.stop();
    expect((await runCommand(['nft', 'list', 'tables'], { netns: gw })).stdout).not.to.match(/inet capa\b/);
    expect(await fwmarkRules()).to.deep.equal([]);
    expect((await runCommand(['ip', 'route', 'show', 'table', '1000'], { netns: gw, allowFailure: true })).stdout.trim()).to.equal('');
    expect(problems).to.deep.equal([]);
  });
});
