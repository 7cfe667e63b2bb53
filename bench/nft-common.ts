/** What the nftables benchmarks share: a throwaway lab network, the driver on it, state tuples. */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLinkSpecs } from '../gateway-ref/lib/dataplane/nft-rules.js';
import { NftablesDataPlane } from '../gateway-ref/lib/dataplane/nftables.js';
import { parsePool } from '../gateway-ref/lib/grm/pool.js';
import type { Allocation, OutsideTuple } from '../gateway-ref/lib/grm/types.js';
import { buildNetwork, down } from '../gateway-ref/lab/lab.js';
import { type LabPlan, linkSpecs, planLab } from '../gateway-ref/lab/topology.js';

export const OUTSIDE = '203.0.113.10';

export interface BenchLab {
  plan: LabPlan;
  pool: string[];
  newDriver(): NftablesDataPlane;
}

/**
 * Builds `count` separate 2-terminal lab networks (no processes; same addresses, different
 * namespaces), runs `body`, removes them even on Ctrl-C.
 */
export async function withBenchLabs(count: number, body: (labs: BenchLab[]) => Promise<void>): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('this benchmark needs root: it builds network namespaces and nftables rules\n');
    process.exit(1);
  }
  const plans = Array.from({ length: count }, (_, i) => planLab(`capa-bench-${process.pid}-${i}-`, 2));
  const stateDir = await mkdtemp(join(tmpdir(), 'capa-bench-'));
  const cleanup = (): Promise<unknown> => Promise.all(plans.map((plan) => down({ prefix: plan.prefix, stateDir })));
  process.once('SIGINT', () => { void cleanup().finally(() => process.exit(130)); });
  try {
    const labs = plans.map((plan): BenchLab => {
      const pool = parsePool(plan.pool);
      const links = parseLinkSpecs(linkSpecs(plan));
      return { plan, pool, newDriver: () => new NftablesDataPlane({ links, pool, netns: plan.gateway.netns, flowEvents: false }) };
    });
    for (const lab of labs) await buildNetwork(lab.plan);
    await body(labs);
  } finally {
    await cleanup();
  }
}

/** The i-th of many distinct complete states: every pool address, then the next source port. */
export function bulkAllocation(lab: BenchLab, i: number): Allocation {
  const tuple: OutsideTuple = {
    proto: 6,
    remoteAddress: OUTSIDE,
    remotePort: 443,
    localAddress: lab.pool[i % lab.pool.length]!,
    localPort: 1024 + Math.floor(i / lab.pool.length),
  };
  return { id: i + 1, terminal: lab.plan.terminals[i % 2]!.address, tuple, state: 'pending', leaseExpiresAt: Infinity, createdAt: 0 };
}

/**
 * Installs states [from, to) through the driver as a steady stream of requests would: chunks
 * keep arriving while earlier ones are in the kernel, at most a few chunks outstanding.
 */
export async function installBulk(lab: BenchLab, driver: NftablesDataPlane, from: number, to: number): Promise<void> {
  const CHUNK = 10_000;
  const OUTSTANDING = 4;
  const chunks: Promise<void[]>[] = [];
  for (let start = from; start < to; start += CHUNK) {
    if (chunks.length >= OUTSTANDING) await chunks.shift();
    const pending: Promise<void>[] = [];
    for (let i = start; i < Math.min(to, start + CHUNK); i++) pending.push(driver.install(bulkAllocation(lab, i)));
    chunks.push(Promise.all(pending));
    // Let the writer pick up what is queued before the next chunk is made.
    await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(chunks);
}
