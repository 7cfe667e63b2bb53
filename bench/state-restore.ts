/**
 * How long a restarted GRM takes to put its states back: a state folder holding N complete
 * states (a snapshot, as a compaction leaves it) is read, decoded and folded, the states go back
 * into the allocator, and the data plane starts with them in place: loopback (watches) and, as
 * root, nftables (the whole table and its elements in one transaction, in a network namespace of
 * its own). The peer, in the same run: the allocator handing out N fresh states. Target: 1M
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
}

async function restore(dir: string, plane: DataPlane): Promise<Timing> {
  let t = performance.now();
  const { journal, states: folded } = await StateJournal.open({ dir });
  const read = ms(t);
  t = performance.now();
  const allocator = new Allocator({ pool: POOL, holdDownMs: 0 });
  const restored: Allocation[] = [];
  allocator.reserve(folded.live.length);
  for (const s of folded.live) {
    const a = allocator.restore(s);
    if (a) restored.push(a);
  }
  const inAllocator = ms(t);
  if (restored.length !== folded.live.length) throw new Error(`restored ${restored.length} of ${folded.live.length} states`);
  t = performance.now();
  await plane.start({ flowStarted: () => undefined, flowEnded: () => undefined }, restored);
  const dataPlane = ms(t);
  await plane.stop();
  await journal.close();
  return { read, allocator: inAllocator, dataPlane };
}

function freshAllocations(n: number): number {
  const allocator = new Allocator({ pool: POOL, portStrategy: 'sequential', holdDownMs: 0 });
  const t = performance.now();
  for (let i = 0; i < n; i++) allocator.allocate(TERMINALS[i % TERMINALS.length]!, { proto: 6, address: '203.0.113.10', port: 80 });
  return ms(t);
}

/** A namespace with one link per terminal, for the nftables data plane; removed by the returned function. */
function nftablesPlane(): { plane: NftablesDataPlane; remove: () => void } {
  const ns = `capa-bench-restore-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const links = TERMINALS.map((t, i) => ({ address: t, ifname: `t${i + 1}` }));
  for (const link of links) {
    execFileSync('ip', ['-n', ns, 'link', 'add', link.ifname, 'type', 'veth', 'peer', 'name', `${link.ifname}p`]);
    execFileSync('ip', ['-n', ns, 'link', 'set', `${link.ifname}p`, 'up']);
    execFileSync('ip', ['-n', ns, 'link', 'set', link.ifname, 'up']);
    execFileSync('ip', ['-n', ns, 'address', 'add', `${link.address.replace(/\d+$/, (d) => String(Number(d) - 1))}/30`, 'dev', link.ifname]);
  }
  const plane = new NftablesDataPlane({
    links: links.map((l, i) => ({ ifname: l.ifname, terminals: [l.address], mark: 1000 + i })),
    pool: POOL,
    netns: ns,
    flowEvents: false,
  });
  return { plane, remove: () => execFileSync('ip', ['netns', 'del', ns]) };
}

async function main(): Promise<void> {
  const rows: string[][] = [['states', 'data plane', 'read + fold ms', 'allocator ms', 'data plane ms', 'total ms', 'fresh allocate ms (peer)', `<= ${TARGET_MS} ms`]];
  for (const n of argv.states.split(',').map(Number)) {
    const dir = await mkdtemp(join(tmpdir(), 'capa-bench-restore-'));
    try {
      await writeSnapshot(dir, n);
      const peer = freshAllocations(n);
      const planes: [string, () => { plane: DataPlane; remove: () => void }][] = [['loopback', () => ({ plane: createDataPlane('loopback', { pool: POOL }), remove: () => undefined })]];
      if (argv.nftables) planes.push(['nftables', nftablesPlane]);
      for (const [name, make] of planes) {
        const { plane, remove } = make();
        try {
          const t = await restore(dir, plane);
          const total = t.read + t.allocator + t.dataPlane;
          rows.push([String(n), name, t.read.toFixed(0), t.allocator.toFixed(0), t.dataPlane.toFixed(0), total.toFixed(0), peer.toFixed(0), total <= TARGET_MS ? 'met' : 'NOT met']);
        } finally {
          remove();
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  console.log('GRM restore: N complete states from a snapshot, into the allocator and the data plane');
  console.log(table(rows));
}

await main();
