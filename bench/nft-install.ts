/**
 * nftables data plane: state install rate and allocation-to-installed latency, in a throwaway
 * lab network (root). Targets: >= 50,000 states/s in batches; p99 <= 5 ms from allocate() to
 * the state being in the kernel.
 *
 * Peers in the same run: for the rate, one `nft -f` file holding the same elements (what the
 * design measured: 200,000 in under 4 s); for the latency, a fresh `nft -f -` process per state
 * (what a driver without a long-lived worker pays).
 *
 *   node dist/bench/nft-install.js [--states 200000] [--samples 2000] [--peer-samples 100] [--concurrency 64]
 */
import { Allocator } from '../gateway-ref/lib/grm/allocator.js';
import type { Destination } from '../gateway-ref/lib/grm/types.js';
import { runCommand } from '../gateway-ref/lib/dataplane/command.js';
import { renderElementOps, stateElement } from '../gateway-ref/lib/dataplane/nft-rules.js';
import type { NftablesDataPlane } from '../gateway-ref/lib/dataplane/nftables.js';
import { benchCommandLine, percentile, table } from './lib.js';
import { type BenchLab, OUTSIDE, bulkAllocation, installBulk, withBenchLabs } from './nft-common.js';

const TARGET_RATE = 50_000;
const TARGET_P99_MS = 5;

const argv = benchCommandLine('nft-install', (y) => y
  .usage('$0 [options]\n\nnftables data plane: install rate and allocation-to-installed latency next to plain nft processes.')
  .option('states', { type: 'number', default: 200_000, describe: 'states installed in the rate measurement' })
  .option('samples', { type: 'number', default: 2000, describe: 'allocations timed one at a time and again with --concurrency in flight' })
  .option('concurrency', { type: 'number', default: 64, describe: 'allocations in flight in the loaded latency run' })
  .option('peer-samples', { type: 'number', default: 100, describe: 'states installed by one nft process each (the latency peer)' })
  .check((a) => {
    for (const k of ['states', 'samples', 'concurrency', 'peer-samples'] as const) if (!(Number.isInteger(a[k]) && a[k] >= 1)) throw new Error(`--${k} must be a whole number >= 1`);
    return true;
  }))
  .parseSync();

function elapsedMs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function flushStates(lab: BenchLab): Promise<void> {
  await runCommand(['nft', 'flush', 'map', 'inet', 'capa', 'state_tcp4'], { netns: lab.plan.gateway.netns });
}

/** The peer of the rate: the same elements written to one file and loaded by one `nft -f`. */
async function peerRate(lab: BenchLab, states: number): Promise<number> {
  const ops = Array.from({ length: states }, (_, i) => {
    const a = bulkAllocation(lab, i);
    return { action: 'add' as const, element: stateElement(a.tuple, 1000) };
  });
  const script = renderElementOps('capa', ops);
  const start = process.hrtime.bigint();
  await runCommand(['nft', '-f', '-'], { netns: lab.plan.gateway.netns, input: script });
  return states / (elapsedMs(start) / 1000);
}

/** allocate() -> install() resolved, per allocation, with `inFlight` running at once. */
async function latencies(lab: BenchLab, driver: NftablesDataPlane, samples: number, inFlight: number): Promise<number[]> {
  const allocator = new Allocator({ pool: lab.pool, leaseMs: 3_600_000 });
  const destination: Destination = { proto: 6, address: OUTSIDE, port: 8443 };
  const times: number[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < samples) {
      next++;
      const start = process.hrtime.bigint();
      const allocation = allocator.allocate(lab.plan.terminals[next % 2]!.address, destination);
      await driver.install(allocation);
      times.push(elapsedMs(start));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return times.sort((x, y) => x - y);
}

/** The peer of the latency: one `nft -f -` process per state, as a driver without a worker would. */
async function peerLatencies(lab: BenchLab, samples: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const tuple = { proto: 6 as const, remoteAddress: OUTSIDE, remotePort: 9443, localAddress: lab.pool[0]!, localPort: 2000 + i };
    const start = process.hrtime.bigint();
    await runCommand(['nft', '-f', '-'], { netns: lab.plan.gateway.netns, input: renderElementOps('capa', [{ action: 'add', element: stateElement(tuple, 1000) }]) });
    times.push(elapsedMs(start));
  }
  return times.sort((x, y) => x - y);
}

function row(name: string, sorted: number[]): string[] {
  return [name, String(sorted.length), percentile(sorted, 50).toFixed(2), percentile(sorted, 99).toFixed(2), sorted.at(-1)!.toFixed(2)];
}

await withBenchLabs(1, async ([lab]) => {
  if (lab === undefined) return;
  const driver = lab.newDriver();
  await driver.start({ flowStarted: () => undefined, flowEnded: () => undefined });
  try {
    const peer = await peerRate(lab, argv.states);
    await flushStates(lab);
    const start = process.hrtime.bigint();
    await installBulk(lab, driver, 0, argv.states);
    const rate = argv.states / (elapsedMs(start) / 1000);

    const lone = await latencies(lab, driver, argv.samples, 1);
    const loaded = await latencies(lab, driver, argv.samples, argv.concurrency);
    const peerLat = await peerLatencies(lab, argv['peer-samples']);

    process.stdout.write(`\nnftables data plane: install rate (${argv.states} states, maps empty at start)\n`);
    process.stdout.write(`${table([
      ['', 'states/s', 'vs target'],
      ['driver (worker, coalesced batches)', rate.toFixed(0), `${(rate / TARGET_RATE).toFixed(2)}x of ${TARGET_RATE}`],
      ['peer: one nft -f file', peer.toFixed(0), ''],
      ['driver / peer', (rate / peer).toFixed(2), ''],
    ])}\n`);
    process.stdout.write(`\nallocation -> installed, ms (with ${argv.states} states installed)\n`);
    process.stdout.write(`${table([
      ['', 'n', 'p50', 'p99', 'max'],
      row('driver, one at a time', lone),
      row(`driver, ${argv.concurrency} in flight`, loaded),
      row('peer: nft -f - per state', peerLat),
    ])}\n`);
    const p99 = percentile(lone, 99);
    process.stdout.write(`\ntargets: rate >= ${TARGET_RATE}/s: ${rate >= TARGET_RATE ? 'met' : 'MISSED'}; `
      + `p99 <= ${TARGET_P99_MS} ms (one at a time): ${p99 <= TARGET_P99_MS ? 'met' : 'MISSED'}\n`);
  } finally {
    await driver.stop();
  }
});
