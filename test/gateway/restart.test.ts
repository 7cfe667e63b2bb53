/**
 * The GRM survives its own restart (loopback data plane, the capa-gateway command): after a
 * kill -9 and a start with the same command line, no allocation equals a live one (sequential
 * ports make a forgetful GRM fail at once), pending answers keep their (aOG, pA), flows whose
 * sockets closed meanwhile end, and a damaged journal is reported and read past.
 */
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { decodeMessage, encodeQuery } from '../../resolver/codec/message.js';
import { resolve } from '../../resolver/lib/resolve.js';
import { connect, type CapaSocket } from '../../socket-shim/index.js';
import { repoRoot } from '../helpers/c-build.js';
import { unavailable } from '../helpers/ci.js';
import { startReady, stopChild } from '../../common/ready-process.js';
import { eventually, peerSeen, type OutsideTcp, startOutsideTcp } from '../shim/lab.js';

const GATEWAY = join(repoRoot, 'dist/gateway-ref/bin/capa-gateway.js');
const POOL = '127.64.7.1';
const OUTSIDE = '127.1.7.1';
const TERMINAL = '127.10.7.1';

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

interface Gateway {
  child: ChildProcess;
  output: () => string;
}

describe('capa-gateway restart: the state journal and the data plane bring every state back', function () {
  this.timeout(30_000);
  let dir = '';
  let port = 0;
  let outside: OutsideTcp;
  let gateway: Gateway | undefined;
  const sockets: CapaSocket[] = [];
  const server = (): string => `127.0.0.1:${port}`;
  // Releases after a test's gateway is gone fail: that is expected, not worth a warning.
  const capa = () => ({ servers: [server()], terminalAddress: TERMINAL, dnsTimeout: 1000, dnsDeadline: 3000, onReleaseError: () => undefined });

  async function start(extra: string[] = [], leaseSeconds = 30): Promise<Gateway> {
    const started = await startReady([process.execPath, GATEWAY, '--listen', server(), '--pool', POOL, '--inside', '127.10.0.0/16', '--port-strategy', 'sequential',
      '--state-dir', join(dir, 'state'), '--hold-down', '0', '--lease', String(leaseSeconds), ...extra], /listening on/);
    gateway = { child: started.child, output: () => Object.values(started.output()).join('') };
    return gateway;
  }

  async function kill9(): Promise<void> {
    const child = gateway!.child;
    child.kill('SIGKILL');
    await once(child, 'exit');
    gateway = undefined;
  }

  /** A CAPA answer for the outside host's port, not used (a pending state). */
  async function pending(): Promise<number> {
    const r = await resolve({ host: OUTSIDE, port: outside.port, protocol: 'tcp', servers: [server()], localAddress: TERMINAL });
    if (r.kind !== 'capa') throw new Error(`no CAPA answer: ${r.kind}`);
    return r.local.port;
  }

  /** An A query from `querier` (an outside host): the addresses answered, or the rcode. */
  async function askA(querier: string, name: string): Promise<string[] | string> {
    const socket = dgram.createSocket('udp4');
    try {
      await new Promise<void>((r) => socket.bind(0, querier, r));
      const reply = once(socket, 'message');
      socket.send(encodeQuery({ id: 7, name, type: 'A', rd: false }), port, '127.0.0.1');
      const [message] = await Promise.race([reply, new Promise<never>((_, fail) => setTimeout(() => fail(new Error(`no answer to A ${name}`)), 3000))]);
      const answer = decodeMessage(message as Buffer);
      return answer.rcode === 'NOERROR' ? answer.answers.map((a) => String(a.data)) : answer.rcode;
    } finally {
      socket.close();
    }
  }

  async function flow(): Promise<CapaSocket> {
    const socket = await connect({ host: OUTSIDE, port: outside.port, capa: capa() });
    sockets.push(socket);
    await peerSeen(socket);
    return socket;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'capa-restart-'));
    port = await freePort();
    outside = await startOutsideTcp(OUTSIDE);
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    if (gateway) await stopChild(gateway.child);
    gateway = undefined;
    await outside.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('kill -9 and a restart reissue no live (aOG, pA): 8 connected flows and 2 pending answers keep theirs', async () => {
    await start();
    const flows = await Promise.all(Array.from({ length: 8 }, () => flow()));
    const held = flows.map((s) => s.capa!.local.port);
    expect([...held].sort((a, b) => a - b)).to.deep.equal([1024, 1025, 1026, 1027, 1028, 1029, 1030, 1031]);
    const answered = [await pending(), await pending()];
    await kill9();
    await start();
    const next = await Promise.all(Array.from({ length: 8 }, () => pending()));
    for (const p of next) expect([...held, ...answered], `port ${p} is live already`).to.not.include(p);
    expect(next.sort((a, b) => a - b)).to.deep.equal([1034, 1035, 1036, 1037, 1038, 1039, 1040, 1041]);
    // The flows themselves never noticed: they still talk.
    for (const s of flows) expect(s.destroyed).to.equal(false);
  });

  it('a flow whose socket closed while the GRM was down ends at the restart; its port is free again', async () => {
    const log = join(dir, 'gateway.log');
    await start(['--log', log]);
    const [kept, closed] = [await flow(), await flow()];
    // Both flows seen by the data plane (complete states), as the journal says.
    const confirmed = async (): Promise<number> => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter((l) => l.includes('"confirm"')).length;
    for (let i = 0; i < 50 && await confirmed() < 2; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await confirmed()).to.equal(2);
    await kill9();
    closed.destroy();
    await eventually(() => outside.open.size === 1, 'the closed flow gone from the outside host');
    await start();
    const port1 = await pending();
    expect(port1, 'the closed flow\'s port, given again').to.equal(closed.capa!.local.port);
    expect(port1).to.not.equal(kept.capa!.local.port);
  });

  it('a SIGTERM keeps the states too; --clear-on-stop removes them', async () => {
    await start();
    const live = await flow();
    gateway!.child.kill('SIGTERM');
    await once(gateway!.child, 'exit');
    gateway = undefined;
    await start(['--clear-on-stop']);
    expect(await pending()).to.not.equal(live.capa!.local.port);
    gateway!.child.kill('SIGTERM');
    await once(gateway!.child, 'exit');
    gateway = undefined;
    expect((await readdir(join(dir, 'state'))).filter((f) => /^(snapshot|journal)\./.test(f)), 'state files after --clear-on-stop').to.deep.equal([]);
  });

  it('SIGHUP reloads the zone file and keeps every state; a zone that does not load leaves the old one serving', async () => {
    const zone = join(dir, 'zone.txt');
    await writeFile(zone, '$ORIGIN test.\n$TTL 60\nwww A 127.1.7.1\n');
    const g = await start(['--zone', zone]);
    const ask = async (): Promise<{ address: string; port: number }> => {
      const r = await resolve({ host: 'www.test', port: outside.port, protocol: 'tcp', servers: [server()], localAddress: TERMINAL });
      if (r.kind !== 'capa') throw new Error(`no CAPA answer: ${r.kind}`);
      return { address: r.remote.address, port: r.local.port };
    };
    const first = await ask();
    expect(first.address).to.equal('127.1.7.1');
    await writeFile(zone, '$ORIGIN test.\n$TTL 60\nwww A 127.1.7.2\n');
    g.child.kill('SIGHUP');
    await eventually(() => g.output().includes('zone reloaded'), 'the reload');
    const second = await ask();
    expect(second.address, 'the new zone serves').to.equal('127.1.7.2');
    await writeFile(zone, '$ORIGIN test.\n$TTL 60\nwww A not-an-address\n');
    g.child.kill('SIGHUP');
    await eventually(() => g.output().includes('zone not reloaded'), 'the failed reload');
    expect(g.output()).to.match(/zone not reloaded, the old one still serves: .*zone\.txt:3: "not-an-address" is not an IPv4 address/);
    const third = await ask();
    expect(third.address, 'the old zone still serves').to.equal('127.1.7.2');
    expect(third.port, 'the pending state of the same destination kept through both reloads').to.not.equal(second.port);
  });

  it('an inbound binding outlives a kill -9: the querier keeps its pool address, and it is not bound to another terminal', async () => {
    const zone = join(dir, 'zone.txt');
    await writeFile(zone, '$ORIGIN test.\n$TTL 60\nt1 A 127.10.7.1\nt2 A 127.10.7.2\n');
    const querier = '127.1.7.9';
    await start(['--zone', zone]);
    expect(await askA(querier, 't1.test')).to.deep.equal([POOL]);
    expect(await askA(querier, 't2.test'), 'the one pool address is bound to t1 for this querier').to.equal('SERVFAIL');
    await kill9();
    await start(['--zone', zone]);
    expect(await askA(querier, 't2.test'), 'still bound to t1 after the restart').to.equal('SERVFAIL');
    expect(await askA(querier, 't1.test')).to.deep.equal([POOL]);
    expect(await askA('127.1.7.10', 't2.test'), 'another querier may share the address').to.deep.equal([POOL]);
  });

  it('a flow the kernel carries that no record names (the journal lost) is adopted: its (aOG, pA) is not handed out again', async () => {
    await start();
    const live = await flow();
    await kill9();
    await rm(join(dir, 'state'), { recursive: true, force: true });
    const g = await start();
    const next = await pending();
    expect(next, 'a forgetful GRM would answer the live port again (sequential ports)').to.not.equal(live.capa!.local.port);
    expect(g.output()).to.match(new RegExp(`adopted tcp ${POOL}:${live.capa!.local.port} -> ${OUTSIDE}:${outside.port}: the kernel carries it and no state named it`));
  });

  it('a torn last record is ignored and a damaged one reported with its offset and skipped; the rest is restored', async () => {
    await start();
    await flow();
    const b = await flow();
    await kill9();
    const stateDir = join(dir, 'state');
    const journal = (await readdir(stateDir)).filter((f) => f.startsWith('journal.')).sort().pop()!;
    const path = join(stateDir, journal);
    const text = await readFile(path, 'utf8');
    const lines = text.split('\n');
    // Damage the first record (the allocation of a's flow) and cut a record short at the end.
    const damaged = lines[0]!.replace(/"[a-z0-9.]+"/, '"x"');
    await writeFile(path, [damaged, ...lines.slice(1)].join('\n'));
    await appendFile(path, '0badc0de ["a","127.10.7.1",6,"127.1.7.1"');
    const g = await start();
    expect(g.output()).to.match(new RegExp(`${journal}: damaged record at byte 0 skipped`));
    expect(g.output()).to.match(/torn last record \(\d+ bytes, a write cut short\) ignored/);
    const next = await pending();
    expect(next, 'b is restored: its port is not given again').to.not.equal(b.capa!.local.port);
  });

  it('kill -9 twenty times under churn: no answer ever repeats a live tuple, and the GRM ends up holding exactly the open flows', async function () {
    this.timeout(120_000);
    await start(['--hold-down', '1']);
    const open = new Map<string, net.Socket>();
    const reissued: string[] = [];
    let churning = true;
    const key = (t: { localPort: number; remotePort: number | undefined }): string => `${t.localPort}>${t.remotePort}`;
    // Each answer is checked against the flows open now, then used as it is (bound and connected).
    const churn = async (terminal: string): Promise<void> => {
      while (churning) {
        const answer = await resolve({ host: OUTSIDE, port: outside.port, protocol: 'tcp', servers: [server()], localAddress: terminal, deadline: 1500 })
          .catch(() => undefined);
        if (answer?.kind !== 'capa') {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        const k = key({ localPort: answer.local.port, remotePort: outside.port });
        if (open.has(k)) reissued.push(k);
        const socket = net.connect({ host: OUTSIDE, port: outside.port, localAddress: answer.local.address, localPort: answer.local.port });
        const ok = await new Promise<boolean>((r) => { socket.once('data', () => r(true)); socket.once('error', () => r(false)); });
        if (!ok) continue;
        // The first dozen flows stay open all along (a forgetful GRM hands their ports out again
        // first); the rest are short.
        if (open.size < 12) open.set(k, socket);
        else socket.destroy();
      }
    };
    const clients = ['127.10.7.1', '127.10.7.2', '127.10.7.3'].map((t) => churn(t));
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 150));
      await kill9();
      await start(['--hold-down', '1']);
    }
    churning = false;
    await Promise.all(clients);
    // Let the last GRM see which flows closed (its loopback data plane reads the socket tables).
    await new Promise((r) => setTimeout(r, 2500));
    gateway!.child.kill('SIGTERM');
    await once(gateway!.child, 'exit');
    gateway = undefined;
    const { StateJournal } = await import('../../gateway-ref/lib/grm/state-journal.js');
    const { journal, states } = await StateJournal.open({ dir: join(dir, 'state') });
    await journal.close();
    expect(reissued, 'answers that repeated an open flow\'s tuple').to.deep.equal([]);
    const held = new Set(states.live.map((x) => key(x.tuple)));
    for (const k of open.keys()) expect(held.has(k), `open flow ${k} is a GRM state`).to.equal(true);
    for (const x of states.live.filter((y) => y.complete)) expect([...open.keys()], `GRM state ${key(x.tuple)} has its flow open`).to.include(key(x.tuple));
    expect(open.size).to.be.greaterThan(0);
    // Quotas count what the journal holds: under --quota Q a terminal with L live states gets Q - L
    // more answers, then ERR_CAPA_QUOTA. (Its flows are still open, so the restart keeps them; a
    // long lease keeps its pending answers, which the churn never used, from running out meanwhile.)
    const terminal = states.live[0]!.terminal;
    const live = states.live.filter((x) => x.terminal === terminal).length;
    const quota = live + 2;
    await start(['--hold-down', '1', '--quota', String(quota)], 3600);
    const asked = [];
    for (let i = 0; i < 3; i++) asked.push(await resolve({ host: OUTSIDE, port: outside.port, protocol: 'tcp', servers: [server()], localAddress: terminal }).then((r) => r.kind, (err: unknown) => (err as { code?: string }).code));
    for (const s of open.values()) s.destroy();
    expect(asked, `${terminal} holds ${live} states; quota ${quota}`).to.deep.equal(['capa', 'capa', 'ERR_CAPA_QUOTA']);
  });

  it('a full state folder: SERVFAIL with a clear line rather than an allocation a restart would forget, and answers again when there is room', async function () {
    if (process.getuid?.() !== 0) unavailable(this, 'a small tmpfs for the full-disk test needs root');
    const mount = join(dir, 'small');
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkdir', ['-p', mount]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mount]);
    try {
      const started = await startReady([process.execPath, GATEWAY, '--listen', server(), '--pool', POOL, '--inside', '127.10.0.0/16', '--state-dir', mount], /listening on/);
      gateway = { child: started.child, output: () => Object.values(started.output()).join('') };
      const { output } = gateway;
      await pending();
      // Fill the folder up.
      const filler = join(mount, 'filler');
      await writeFile(filler, Buffer.alloc(60 * 1024)).catch(() => undefined);
      while (await appendFile(filler, Buffer.alloc(1024)).then(() => true, () => false));
      // The journal's last page may still have room for a few records: ask until one cannot be written.
      let failed: Error | undefined;
      for (let i = 0; i < 100 && failed === undefined; i++) failed = await pending().then(() => undefined, (err: Error) => err);
      expect(failed, 'a CAPA query on a full disk').to.be.instanceOf(Error);
      expect((failed as { code?: string }).code).to.equal('ERR_CAPA_SERVER_FAILURE');
      expect(output()).to.include('cannot be written');
      expect(output()).to.include('answering SERVFAIL rather than hand out allocations a restart would forget');
      await rm(filler);
      expect(await pending()).to.be.a('number');
    } finally {
      if (gateway) await stopChild(gateway.child);
      gateway = undefined;
      execFileSync('umount', [mount]);
    }
  });
});
