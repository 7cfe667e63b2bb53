/**
 * capa-run --interface: an allocated address that is not local yet is put on the interface
 * (netlink RTM_NEWADDR) before the socket is pinned to it. Runs in a network namespace the test
 * creates (lab addresses: pool 198.51.100.0/24, outside host 203.0.113.10); needs root and
 * `ip netns`, skipped without them, a failure when CI=true.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { expect } from 'chai';
import { requireTool } from '../helpers/c-build.js';
import { CAPA_RUN, type Gateway, LIBRARY, readCapaLog, run, startGateway, type Workspace, workspace } from './lab.js';

const NS = `capa-run-test-${process.pid}`;
const IFACE = 'capa0';
const PEER = 'capa1';
const OUTSIDE = '203.0.113.10';
const POOL = '198.51.100.10-198.51.100.11';
const PORT = 8080;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
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

/** An HTTP server in the namespace answering with the peer's address:port. */
async function startOutside(): Promise<ChildProcess> {
  const script = `require('node:http').createServer((q, r) => r.end(q.socket.remoteAddress + ':' + q.socket.remotePort))
    .listen(${PORT}, '${OUTSIDE}', () => console.log('ready'));`;
  const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await once(child.stdout, 'data');
  return child;
}

describe('capa-run --interface in a network namespace', function () {
  let ws: Workspace | undefined;
  let gateway: Gateway | undefined;
  let outside: ChildProcess | undefined;
  let created = false;

  before(async function () {
    const problem = namespacesUsable();
    if (problem !== undefined) {
      if (process.env.CI === 'true') throw new Error(`capa-run --interface tests need root and ip netns in CI: ${problem}`);
      this.skip();
    }
    if (!existsSync(LIBRARY)) throw new Error(`${LIBRARY} is missing: build it with "npx node-gyp rebuild"`);
    ip('netns', 'add', NS);
    created = true;
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    ip('-n', NS, 'link', 'add', IFACE, 'type', 'veth', 'peer', 'name', PEER);
    ip('-n', NS, 'link', 'set', IFACE, 'up');
    ip('-n', NS, 'link', 'set', PEER, 'up');
    ip('-n', NS, 'addr', 'add', `${OUTSIDE}/24`, 'dev', PEER);
    ws = await workspace();
    gateway = await startGateway(ws, { pool: POOL, outside: OUTSIDE, wrap: ['ip', 'netns', 'exec', NS] });
    outside = await startOutside();
  });

  after(async function () {
    outside?.kill('SIGTERM');
    await gateway?.stop();
    await ws?.remove();
    if (created) ip('netns', 'del', NS);
  });

  it('puts the allocated address on the interface, then connects from it', async function () {
    const curl = requireTool(this, 'curl', 'capa-run --interface test');
    expect(ip('-n', NS, '-o', 'addr', 'show', 'dev', IFACE)).to.not.include('198.51.100.');
    const log = ws!.file('capa.log');
    const result = await run('ip', ['netns', 'exec', NS, CAPA_RUN, '--server', gateway!.server,
      '--interface', IFACE, '--log', log, '--', curl, '-sS', '-m', '10', `http://outside.test:${PORT}/`]);
    expect(result.code, result.stderr).to.equal(0);
    const [address, port] = result.stdout.trim().split(':');
    const pin = readCapaLog(log).find((e) => e.event === 'pin');
    expect(pin).to.include({ aOG: address, pA: Number(port), aOB: OUTSIDE, pB: PORT });
    expect(ip('-n', NS, '-o', 'addr', 'show', 'dev', IFACE)).to.include(`inet ${address}/32`);
  });

  /** capa-run with a program that does nothing, so only its end (the address sweep) acts. */
  const endOfRun = (): ReturnType<typeof run> => run('ip', ['netns', 'exec', NS, CAPA_RUN, '--server', gateway!.server,
    '--interface', IFACE, '--address-idle', '1', '--', 'true']);
  const onInterface = (): string => ip('-n', NS, '-o', 'addr', 'show', 'dev', IFACE);

  it('an added address no socket uses comes off once two ends, a second or more apart, found it unused; others stay', async function () {
    const address = readCapaLog(ws!.file('capa.log')).find((e) => e.event === 'pin')!.aOG!;
    ip('-n', NS, 'addr', 'add', '198.51.100.99/32', 'dev', IFACE); // the operator's: not CAPA's to remove
    expect(onInterface()).to.include(`inet ${address}/32`);
    // Held by a socket: kept however long it has been idle before.
    const holder = spawn('ip', ['netns', 'exec', NS, 'python3', '-c',
      `import socket, time; s = socket.socket(); s.bind(("${address}", 0)); s.listen(); print("ready", flush=True); time.sleep(30)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await once(holder.stdout!, 'data');
      expect((await endOfRun()).code).to.equal(0);
      await new Promise((r) => setTimeout(r, 1200));
      expect((await endOfRun()).code).to.equal(0);
      expect(onInterface(), 'in use: kept').to.include(`inet ${address}/32`);
    } finally {
      holder.kill('SIGKILL');
      await once(holder, 'exit');
    }
    expect((await endOfRun()).code).to.equal(0); // first seen unused
    expect(onInterface(), 'one look is not enough').to.include(`inet ${address}/32`);
    await new Promise((r) => setTimeout(r, 1200));
    expect((await endOfRun()).code).to.equal(0);
    expect(onInterface(), 'unused at two looks 1 s apart: removed').to.not.include(`inet ${address}/32`);
    expect(onInterface(), 'the operator\'s address stays').to.include('inet 198.51.100.99/32');
    ip('-n', NS, 'addr', 'del', '198.51.100.99/32', 'dev', IFACE);
  });

  it('fails the connect, unpinned never, when the interface does not exist', async function () {
    const curl = requireTool(this, 'curl', 'capa-run --interface test');
    ip('-n', NS, 'addr', 'flush', 'dev', IFACE, 'scope', 'global'); // no pool address is local any more
    const result = await run('ip', ['netns', 'exec', NS, CAPA_RUN, '--server', gateway!.server,
      '--interface', 'nosuchif0', '--', curl, '-sS', '-m', '10', `http://outside.test:${PORT}/`]);
    expect(result.code).to.equal(7); // curl: failed to connect
    expect(result.stderr).to.include('cannot put CAPA address 198.51.100.');
    expect(result.stderr).to.include('on interface nosuchif0');
  });
});
