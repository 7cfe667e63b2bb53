/**
 * How long a restarted GRM takes to put its states back, as GrmService.start does before it
 * serves: a state folder holding N complete states (a snapshot, as a compaction leaves it) is
 * read, decoded and folded, the states go back into the allocator, the data plane starts with
 * them in place, and its first reconcile reads the kernel's flows back. Data planes: loopback
 * (watches) and, as root, nftables in a network namespace of its own, twice: into a new table
 * (a first start, or another layout) and into the table the first left (a restart after kill -9
 * or SIGTERM). Each restore runs in a process of its own, as a restart does (no heap left by the
 * one before). The peer, in the same run: the allocator handing out N fresh states. Target: 1M
 * states restored in at most 2 s.
 *
 *   node dist/bench/state-restore.js [--states 100000,1000000] [--nftables]
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDataPlane } from '../gateway-ref/lib/dataplane/index.js';
import { NftablesDataPlane } from '../gateway-ref/lib/dataplane/nftables.js';
import { Allocator } from '../gateway-ref/lib/grm/allocator.js';
import { StateJournal } from '../gateway-ref/lib/grm/state-journal.js';
import type { StateRecord } from '../gateway-ref/lib/grm/state-records.js';
import type { Allocation, DataPlane } from '../gateway-ref/lib/grm/types.js';
import { benchCommandLine, table } from './lib.js';

const TARGET_MS = 2000;
const POOL = Array.from({ length: 16 }, (_, i) => `198.51.100.${i + 1}`);
const PORTS_PER_ADDRESS = 65536 - 1024;
const TERMINALS = ['100.64.0.6', '100.64.0.10'];

const argv = benchCommandLine('state-restore', (y) => y
  .usage('$0 [options]\n\nRestore time of the GRM state journal: N live states read back, put into the allocator and the data plane.')
  .option('states', { type: 'string', default: '100000,1000000', describe: 'comma-separated numbers of live states to restore' })
  .option('nftables', { type: 'boolean', default: process.getuid?.() === 0, describe: 'also restore into the nftables data plane (root; default when root)' })
  .option('restore', { type: 'string', hidden: true, describe: 'internal: restore the state folder given here, print the timing, exit' })
  .option('plane', { choices: ['loopback', 'nftables'] as const, hidden: true, describe: 'internal: the data plane of --restore' })
  .option('netns', { type: 'string', hidden: true, describe: 'internal: the namespace of --plane nftables' })
  .check((a) => {
    if (!a.states.split(',').every((n) => /^\d+$/.test(n) && Number(n) > 0 && Number(n) <= POOL.length * PORTS_PER_ADDRESS)) {
      throw new Error(`--states must list whole numbers from 1 to ${POOL.length * PORTS_PER_ADDRESS}`);
    }
    return true;
  }))
  .parseSync();

/** N complete states to one outside host and port, spread over the pool and the terminals. */
function states(n: number): StateRecord[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i): StateRecord => ({
    kind: 'state',
    state: {
      terminal: TERMINALS[i % TERMINALS.length]!,
      tuple: { proto: 6, remoteAddress: '203.0.113.10', remotePort: 80, localAddress: POOL[i % POOL.length]!, localPort: 1024 + Math.floor(i / POOL.length) },
      createdAt: now,
      complete: true,
    },
  }));
}

/** A state folder whose snapshot holds N states; the records are not kept (a restarted GRM has none in memory). */
async function writeSnapshot(dir: string, n: number): Promise<void> {
  const { journal } = await StateJournal.open({ dir });
  await journal.compact(() => states(n));
  await journal.close();
}

const ms = (from: number): number => performance.now() - from;

interface Timing {
  read: number;
  allocator: number;
  dataPlane: number;
  reconcile: number;
}

async function restore(dir: string, plane: DataPlane): Promise<Timing> {
  let t = performance.now();
  const { journal, states: folded } = await StateJournal.open({ dir });
  const read = ms(t);
  t = performance.now();
  // As GrmService.start: the data plane's kernel load (another thread) overlaps the allocator's restore.
  plane.preload?.(folded.live);
  const allocator = new Allocator({ pool: POOL, holdDownMs: 0 });
  const restored: Allocation[] = [];
  allocator.reserve(folded.live.length);
  for (const s of folded.live) {
    const a = allocator.restore(s);
    if (a) restored.push(a);
  }
  const inAllocator = ms(t); // and the data plane's preload, which it overlaps
  if (restored.length !== folded.live.length) throw new Error(`restored ${restored.length} of ${folded.live.length} states`);
  t = performance.now();
  await plane.start({ flowStarted: () => undefined, flowEnded: () => undefined, known: () => true }, restored);
  const dataPlane = ms(t);
  t = performance.now();
  await plane.reconcile?.();
  const reconcile = ms(t);
  await plane.stop({ keepStates: true });
  await journal.close();
  return { read, allocator: inAllocator, dataPlane, reconcile };
}

function freshAllocations(n: number): number {
  const allocator = new Allocator({ pool: POOL, portStrategy: 'sequential', holdDownMs: 0 });
  const t = performance.now();
  for (let i = 0; i < n; i++) allocator.allocate(TERMINALS[i % TERMINALS.length]!, { proto: 6, address: '203.0.113.10', port: 80 });
  return ms(t);
}

const LINKS = TERMINALS.map((t, i) => ({ address: t, ifname: `t${i + 1}` }));

/** A namespace with one link per terminal, for the nftables data plane; returns its name. */
function nftablesLab(): string {
  const ns = `capa-bench-restore-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const links = LINKS;
  for (const link of links) {
    execFileSync('ip', ['-n', ns, 'link', 'add', link.ifname, 'type', 'veth', 'peer', 'name', `${link.ifname}p`]);
    execFileSync('ip', ['-n', ns, 'link', 'set', `${link.ifname}p`, 'up']);
    execFileSync('ip', ['-n', ns, 'link', 'set', link.ifname, 'up']);
    execFileSync('ip', ['-n', ns, 'address', 'add', `${link.address.replace(/\d+$/, (d) => String(Number(d) - 1))}/30`, 'dev', link.ifname]);
  }
  return ns;
}

function nftablesPlane(netns: string): NftablesDataPlane {
  return new NftablesDataPlane({
    links: LINKS.map((l, i) => ({ ifname: l.ifname, terminals: [l.address], mark: 1000 + i })),
    pool: POOL,
    netns,
    flowEvents: false,
    reconcileMs: 0,
  });
}

/** One restore in a fresh process (this script with --restore). */
function restoreApart(dir: string, plane: 'loopback' | 'nftables', netns?: string): Timing {
  const args = [process.argv[1]!, '--restore', dir, '--plane', plane, ...(netns === undefined ? [] : ['--netns', netns])];
  return JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })) as Timing;
}

async function main(): Promise<void> {
  const rows: string[][] = [['states', 'data plane', 'read + fold ms', 'allocator ms', 'data plane ms', 'reconcile ms', 'total ms', 'fresh allocate ms (peer)', `<= ${TARGET_MS} ms`]];
  for (const n of argv.states.split(',').map(Number)) {
    const dir = await mkdtemp(join(tmpdir(), 'capa-bench-restore-'));
    try {
      await writeSnapshot(dir, n);
      const peer = freshAllocations(n);
      const row = (name: string, t: Timing): void => {
        const total = t.read + t.allocator + t.dataPlane + t.reconcile;
        rows.push([String(n), name, ...[t.read, t.allocator, t.dataPlane, t.reconcile, total, peer].map((x) => x.toFixed(0)), total <= TARGET_MS ? 'met' : 'NOT met']);
      };
      row('loopback', restoreApart(dir, 'loopback'));
      if (argv.nftables) {
        const ns = nftablesLab();
        try {
          row('nftables, new table', restoreApart(dir, 'nftables', ns));
          row('nftables, kept table', restoreApart(dir, 'nftables', ns));
        } finally {
          execFileSync('ip', ['netns', 'del', ns]);
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  console.log('GRM restore: N complete states from a snapshot, into the allocator and the data plane');
  console.log(table(rows));
}

if (argv.restore === undefined) await main();
else {
  const plane: DataPlane = argv.plane === 'nftables' ? nftablesPlane(argv.netns!) : createDataPlane('loopback', { pool: POOL });
  process.stdout.write(`${JSON.stringify(await restore(argv.restore, plane))}\n`);
}
