/**
 * capa-run for programs LD_PRELOAD cannot reach: statically linked ones run under the seccomp
 * supervisor (native/supervisor/supervise.c), which pins their connects and sends with the
 * library's own socket step. A static C client (built here with -static) and busybox's wget,
 * each checked against what the outside server saw and what the gateway journal says.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { buildC, type CBuild, repoRoot, requireTool } from '../helpers/c-build.js';
import { unavailable } from '../helpers/ci.js';
import { CAPA_RUN, capaRun, inPool, type JournalEvent, key, OUTSIDE_HOST, type Peer, readCapaLog, run, useLab } from './lab.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Flow {
  local: Peer;
  seen: Peer;
}

/** The client's lines: "<local ip> <local port> <the server's JSON of the peer it saw>". */
function flows(stdout: string): Flow[] {
  return stdout.trim().split('\n').filter((l) => l !== '').map((line) => {
    const [address, port, ...rest] = line.split(' ');
    if (address === 'error') throw new Error(`the client failed: ${line}`);
    return { local: { address: address!, port: Number(port) }, seen: JSON.parse(rest.join(' ')) as Peer };
  });
}

describe('capa-run: static programs under the seccomp supervisor', function () {
  this.timeout(30_000);
  const lab = useLab({ extra: ['--hold-down', '0'] });
  let client: CBuild | undefined;

  before(function () {
    if (!existsSync(CAPA_RUN)) throw new Error(`${CAPA_RUN} is missing: build it with "npx node-gyp rebuild"`);
    requireTool(this, 'cc', 'the static client');
    client = buildC({ sources: ['test/preload/fixtures/static-client.c'], kind: 'executable', flags: ['-static', '-O2', '-pthread'], name: 'static-client' });
  });

  after(function () {
    client?.remove();
  });

  /** Every allocation of the journal for these local endpoints is released (waiting up to 3 s). */
  async function expectReleased(locals: Peer[]): Promise<void> {
    const wanted = new Set(locals.map((l) => key(l.address, l.port)));
    const open = (): string[] => {
      const released = new Set(lab.gateway.journal().filter((j: JournalEvent) => j.event === 'release').map((j) => key(j.aOG, j.pA)));
      return [...wanted].filter((k) => !released.has(k));
    };
    for (let i = 0; i < 30 && open().length > 0; i++) await sleep(100);
    expect(open(), 'released, none left to expire').to.deep.equal([]);
  }

  async function expectPinned(mode: string, port: number, count = 1): Promise<Flow[]> {
    const log = lab.newLog();
    const result = await capaRun(lab.gateway.server, log, [client!.path, mode, OUTSIDE_HOST, String(port)]);
    expect(result.code, result.stderr + result.stdout).to.equal(0);
    const got = flows(result.stdout);
    expect(got).to.have.length(count);
    for (const f of got) {
      expect(inPool(f.local.address), `${f.local.address} is a pool address`).to.equal(true);
      expect(f.seen, 'the outside server saw the pinned source').to.deep.equal(f.local);
    }
    expect(readCapaLog(log).filter((e) => e.event === 'pin').length).to.equal(new Set(got.map((f) => key(f.local.address, f.local.port))).size);
    await expectReleased(got.map((f) => f.local));
    return got;
  }

  it('a static TCP client is pinned and its allocation released on close', async function () {
    await expectPinned('tcp', lab.tcp.port);
  });

  it('a non-blocking connect stays non-blocking (EINPROGRESS) and is pinned', async function () {
    await expectPinned('nonblock', lab.tcp.port);
  });

  it('a static UDP client: sendto, sendmsg and sendmmsg go out pinned, from one allocation', async function () {
    for (const mode of ['udp-sendto', 'udp-sendmsg', 'udp-sendmmsg']) {
      const got = await expectPinned(mode, lab.udp.port, 2);
      expect(got[1]!.local).to.deep.equal(got[0]!.local);
    }
  });

  it('a pinned UDP socket cannot reach another destination: sendto and sendmmsg fail (EADDRNOTAVAIL), nothing goes there', async function () {
    const before = lab.udp.peers.length;
    const log = lab.newLog();
    const result = await capaRun(lab.gateway.server, log, [client!.path, 'udp-elsewhere', OUTSIDE_HOST, String(lab.udp.port)]);
    expect(result.code, result.stderr + result.stdout).to.equal(0);
    const [first, ...errors] = result.stdout.trim().split('\n');
    const [flow] = flows(first!);
    expect(flow!.seen).to.deep.equal(flow!.local);
    expect(errors).to.deep.equal(['error sendto 99', 'error sendmmsg 99']);
    expect(result.stderr).to.include('it cannot reach another destination');
    expect(lab.udp.peers.length - before, 'only the first sendto reached the outside server: the refused sendmmsg sent none').to.equal(1);
    await expectReleased([flow!.local]);
  });

  it('20 threads connecting at once each get their own allocation', async function () {
    const got = await expectPinned('threads', lab.tcp.port, 20);
    expect(new Set(got.map((f) => key(f.local.address, f.local.port))).size).to.equal(20);
  });

  it('close_range and dup2 over a pinned socket release it while the program runs', async function () {
    for (const mode of ['close-range', 'dup2']) {
      const log = lab.newLog();
      const started = Date.now();
      const result = await capaRun(lab.gateway.server, log, [client!.path, mode, OUTSIDE_HOST, String(lab.tcp.port)]);
      expect(result.code, result.stderr + result.stdout).to.equal(0);
      const [flow] = flows(result.stdout);
      expect(flow!.seen).to.deep.equal(flow!.local);
      const release = readCapaLog(log).find((e) => e.event === 'release') as { why?: string; time: number } | undefined;
      expect(release?.why, mode).to.equal('closed');
      expect(release!.time * 1000 - started, 'before the program ended').to.be.lessThan(Date.now() - started - 500);
      await expectReleased([flow!.local]);
    }
  });

  it('a child it forks and execs is supervised too', async function () {
    await expectPinned('fork-exec', lab.tcp.port);
  });

  it('a connect interrupted by SIGALRM every millisecond is still pinned', async function () {
    await expectPinned('alarm', lab.tcp.port);
  });

  it('busybox wget (static) fetches from the pinned source', async function () {
    const busybox = requireTool(this, 'busybox', 'the supervisor tests (Debian busybox-static)');
    const result = await capaRun(lab.gateway.server, lab.newLog(), [busybox, 'wget', '-q', '-O', '-', `http://${OUTSIDE_HOST}:${lab.tcp.port}/`]);
    expect(result.code, result.stderr).to.equal(0);
    const seen = JSON.parse(result.stdout) as Peer;
    expect(inPool(seen.address)).to.equal(true);
    expect(lab.tcp.peers).to.deep.include(seen);
    await expectReleased([seen]);
  });

  it('a static Go program (its own system calls, no libc) is pinned, as the outside server sees it', async function () {
    const go = requireTool(this, 'go', 'the Go client of the supervisor tests (Debian golang-go)');
    const dir = client!.dir;
    const build = await run(go, ['build', '-o', join(dir, 'go-client'), join(repoRoot, 'test/preload/fixtures/go-client.go')],
      { env: { CGO_ENABLED: '0', GOCACHE: join(dir, 'go-cache'), GOPATH: join(dir, 'go-path') }, timeoutMs: 120_000 });
    expect(build.code, build.stderr).to.equal(0);
    const log = lab.newLog();
    const result = await capaRun(lab.gateway.server, log, [join(dir, 'go-client'), OUTSIDE_HOST, String(lab.tcp.port)]);
    expect(result.code, result.stderr + result.stdout).to.equal(0);
    const [flow] = flows(result.stdout);
    expect(inPool(flow!.local.address), `${flow!.local.address} is a pool address`).to.equal(true);
    expect(flow!.seen, 'the outside server saw the pinned source').to.deep.equal(flow!.local);
    expect(readCapaLog(log).filter((e) => e.event === 'pin')).to.have.length(1);
    await expectReleased([flow!.local]);
  });

  /** capa-run as nobody (the client's folder opened to it). */
  async function asNobody(ctx: Mocha.Context, mode: string): ReturnType<typeof run> {
    if (process.getuid?.() !== 0) unavailable(ctx, 'the unprivileged runs need root to switch users in CI');
    const setpriv = requireTool(ctx, 'setpriv', 'the unprivileged supervisor runs');
    await chmod(client!.dir, 0o755);
    return run(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', CAPA_RUN, '--server', lab.gateway.server,
      '--', client!.path, mode, OUTSIDE_HOST, String(lab.tcp.port)]);
  }

  it('a target that makes itself non-dumpable cannot be inspected by an unprivileged supervisor: its connect fails (EPERM), nothing escapes', async function () {
    const before = lab.tcp.peers.length;
    const result = await asNobody(this, 'nodump');
    expect(result.stdout.trim()).to.equal('error connect 1'); // EPERM
    expect(result.stderr).to.include('refusing its call (EPERM): nothing goes out unpinned');
    expect(lab.tcp.peers.length).to.equal(before);
  });

  it('the supervisor killed with -9: the target\'s next connect fails, capa-run says so and exits 125', async function () {
    const child = spawn(CAPA_RUN, ['--server', lab.gateway.server, '--', client!.path, 'twice', OUTSIDE_HOST, String(lab.tcp.port)],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    for (let i = 0; i < 50 && !stdout.includes('\n'); i++) await sleep(100);
    // capa-run forks the supervisor (named capa-supervise), which forks the program.
    const pids = (await run('pgrep', ['-P', String(child.pid), '-x', 'capa-supervise'])).stdout.trim().split('\n').filter((p) => p !== '');
    expect(pids, 'the supervisor runs').to.have.length(1);
    process.kill(Number(pids[0]), 'SIGKILL');
    const [code] = await once(child, 'exit') as [number];
    expect(code).to.equal(125);
    expect(stderr).to.include('the CAPA supervisor of');
    for (let i = 0; i < 30 && !stdout.includes('error'); i++) await sleep(100);
    expect(stdout.trim().split('\n')[1], 'the second connect: ENOSYS').to.equal('error connect 38');
    expect(lab.tcp.peers.filter((p) => !inPool(p.address))).to.deep.equal([]);
  });

  it('needs no privileges: the same as an unprivileged user', async function () {
    const result = await asNobody(this, 'tcp');
    expect(result.code, result.stderr).to.equal(0);
    const [flow] = flows(result.stdout);
    expect(inPool(flow!.local.address)).to.equal(true);
    expect(flow!.seen).to.deep.equal(flow!.local);
  });
});
