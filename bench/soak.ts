/**
 * Soak (not run in CI): capa-gateway with its state journal under churn for a while — answers
 * that are never used (their leases expire), flows connected and released — and the gateway's
 * resident memory once warmed up and at the end (its floor over 30 s each; target: within ±5 %), its journal folder's
 * size, and the errors seen (target: none). The peer is the gateway's own start: memory after the
 * warm-up is what the end is compared with. Beside RSS, the heap the gateway's latest full
 * garbage collection left (its --trace-gc lines): a heap that stays flat while RSS grows is V8 or
 * memory outside the heap, not a leak of objects.
 *
 *   node dist/bench/soak.js [--minutes 10] [--warmup-s 90]
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { release, resolve } from '../resolver/lib/resolve.js';
import { startReady } from '../common/ready-process.js';
import { benchCommandLine, table } from './lib.js';

const GATEWAY_JS = fileURLToPath(new URL('../gateway-ref/bin/capa-gateway.js', import.meta.url));
const POOL = '127.64.20.1-127.64.20.4';
const OUTSIDE = '127.1.20.1';
const TERMINALS = ['127.10.20.1', '127.10.20.2', '127.10.20.3', '127.10.20.4'];
const TARGET_RSS_CHANGE = 0.05;
/**
 * The default hold-down is as long as TIME_WAIT (60 s), as a gateway runs: shorter, a reissued (aOG, pA) can
 * meet its last flow's socket still in TIME_WAIT (EADDRINUSE). The churn hands out a few
 * thousand tuples a second, each held down after; one destination's 4 x 64512 tuples would run
 * out (ERR_CAPA_EXHAUSTED), so the answers left to expire go round DESTINATIONS - 1 ports of the
 * outside host. The flows all go to the first one: the terminals share this host, and two of
 * its sockets cannot both bind one (aOG, pA), which the GRM rightly gives to two destinations.
 */
const DESTINATIONS = 16;

const argv = benchCommandLine('soak', (y) => y
  .usage('$0 [options]\n\nChurn against capa-gateway with its state journal: resident memory after the warm-up and at the end, errors.')
  .option('minutes', { type: 'number', default: 10, describe: 'how long the churn runs after the warm-up' })
  .option('warmup-s', { type: 'number', default: 90, describe: 'churn before the first memory reading (longer than the hold-down, so the held tuples are at their steady number)' })
  .option('hold-down', { type: 'number', default: 60, describe: 'the gateway\'s --hold-down in seconds (Linux keeps TIME_WAIT up to a few seconds past 60 s: its timer wheel rounds up)' })
  .option('heap-snapshots', { type: 'string', describe: 'write a heap snapshot of the gateway into this folder after the warm-up and at the end, to compare in Chrome DevTools (each pauses the gateway for seconds: expect timeouts counted as errors)' })
  .check((a) => {
    if (!(a.minutes > 0) || !(a['warmup-s'] >= 0)) throw new Error('--minutes must be > 0 and --warmup-s >= 0');
    return true;
  }))
  .parseSync();

/** How long each memory reading samples RSS; its floor is what is compared. */
const WINDOW_MS = 30_000;

/**
 * The lowest RSS over WINDOW_MS (sampled every 250 ms), and the last sample: a point reading
 * lands anywhere in V8's cycle of growing the young generation and collecting it (tens of MB
 * here), while the floor is what the process keeps between collections.
 */
async function rssOver(pid: number): Promise<{ floor: number; last: number }> {
  let floor = Infinity;
  let last = 0;
  for (const until = performance.now() + WINDOW_MS; performance.now() < until;) {
    last = await rssKiB(pid);
    floor = Math.min(floor, last);
    await new Promise((r) => setTimeout(r, 250));
  }
  return { floor, last };
}

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** The heap (MB) the latest Mark-Compact of the gateway left, and how many there were. */
interface FullGcs {
  heapMB: number;
  count: number;
}

const MARK_COMPACT = /Mark-Compact[^\n]*? -> ([\d.]+) \(/g;

async function startGateway(dir: string, gcs: FullGcs): Promise<{ child: ChildProcess; server: string }> {
  const snapshots = argv['heap-snapshots'] === undefined ? [] : ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${argv['heap-snapshots']}`];
  const gateway = await startReady([process.execPath, '--trace-gc', ...snapshots, GATEWAY_JS, '--listen', '127.0.0.1:0', '--pool', POOL, '--inside', '127.10.0.0/16',
    '--state-dir', join(dir, 'state'), '--lease', '2', '--hold-down', String(argv['hold-down'])], /listening on (\S+)/, { stderr: 'inherit' });
  gateway.child.stdout!.on('data', (d: string) => {
    for (const m of d.matchAll(MARK_COMPACT)) {
      gcs.heapMB = Number(m[1]);
      gcs.count++;
    }
  });
  return { child: gateway.child, server: gateway.match[1]! };
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) total += (await stat(join(dir, name))).size;
  return total;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'capa-soak-'));
  const servers = Array.from({ length: DESTINATIONS }, () => net.createServer((s) => { s.on('error', () => s.destroy()); s.end('hi\n'); }).listen(0, OUTSIDE));
  await Promise.all(servers.map((o) => once(o, 'listening')));
  const ports = servers.map((o) => (o.address() as net.AddressInfo).port);
  const gcs: FullGcs = { heapMB: 0, count: 0 };
  const { child, server } = await startGateway(dir, gcs);
  const counts = { answers: 0, flows: 0, releases: 0, errors: 0 };
  const errors = new Map<string, number>();
  let running = true;
  const churn = async (terminal: string, i: number): Promise<void> => {
    for (let turn = 0; running; turn++) {
      const port = i % 2 === 0 ? ports[0]! : ports[1 + (turn % (ports.length - 1))]!;
      try {
        const r = await resolve({ host: OUTSIDE, port, protocol: 'tcp', servers: [server], localAddress: terminal, deadline: 2000 });
        counts.answers++;
        if (r.kind === 'capa' && i % 2 === 0) {
          // Half the terminals use their answers (connect, then release); the others let the lease expire.
          const socket = net.connect({ host: OUTSIDE, port, localAddress: r.local.address, localPort: r.local.port });
          socket.on('error', () => undefined).resume();
          await once(socket, 'close');
          counts.flows++;
          await release(r, { localAddress: terminal });
          counts.releases++;
        }
      } catch (err) {
        counts.errors++;
        const code = (err as { code?: string }).code ?? (err as Error).message;
        errors.set(code, (errors.get(code) ?? 0) + 1);
      }
    }
  };
  const workers = TERMINALS.map((t, i) => churn(t, i));
  try {
    await new Promise((r) => setTimeout(r, Math.max(0, argv['warmup-s'] * 1000 - WINDOW_MS)));
    const warm = { rss: await rssOver(child.pid!), counts: { ...counts }, gc: { ...gcs } };
    if (argv['heap-snapshots'] !== undefined) child.kill('SIGUSR2');
    await new Promise((r) => setTimeout(r, Math.max(0, argv.minutes * 60_000 - WINDOW_MS)));
    const end = { rss: await rssOver(child.pid!), counts: { ...counts }, gc: { ...gcs } };
    running = false;
    await Promise.all(workers);
    if (argv['heap-snapshots'] !== undefined) {
      child.kill('SIGUSR2');
      await new Promise((r) => setTimeout(r, 10_000)); // the snapshot is written before the gateway takes SIGTERM
      console.log(`heap snapshots in ${argv['heap-snapshots']}: ${(await readdir(argv['heap-snapshots'])).filter((f) => f.endsWith('.heapsnapshot')).join(', ')}`);
    }
    const change = (end.rss.floor - warm.rss.floor) / warm.rss.floor;
    console.log(`soak: ${argv.minutes} min of churn after ${argv['warmup-s']} s of warm-up, lease 2 s, hold-down ${argv['hold-down']} s, ${DESTINATIONS} destination ports, ${TERMINALS.length} terminals (half connect and release, half let leases expire)`);
    console.log(table([
      ['', `gateway RSS KiB: floor over ${WINDOW_MS / 1000} s (last)`, 'heap after last full GC MB (full GCs)', 'answers', 'flows', 'releases', 'errors'],
      ...([['after warm-up (peer)', warm], ['at the end', end]] as const).map(([name, at]) => [name, `${at.rss.floor} (${at.rss.last})`, `${at.gc.heapMB.toFixed(1)} (${at.gc.count})`,
        String(at.counts.answers), String(at.counts.flows), String(at.counts.releases), String(at.counts.errors)]),
    ]));
    console.log(`RSS floor change: ${(change * 100).toFixed(1)} % (target within ±${TARGET_RSS_CHANGE * 100} %: ${Math.abs(change) <= TARGET_RSS_CHANGE ? 'met' : 'NOT met'}); `
      + `errors: ${counts.errors}${errors.size > 0 ? ` (${[...errors].map(([c, n]) => `${c} ${n}`).join(', ')})` : ''} (target 0); `
      + `state folder at the end: ${await folderBytes(join(dir, 'state'))} bytes`);
  } finally {
    running = false;
    child.kill('SIGTERM');
    await once(child, 'exit');
    for (const o of servers) o.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
