/**
 * GRM allocator: allocate+release pairs per second at 1 % and 99 % occupancy of one destination,
 * and bytes per live state at 1,000,000 states over 10,000 destinations, each next to a naive
 * Map/Set allocator (the peer: retry random ports / scan from 1024, one object per state).
 * Targets: >= 1,000,000 pairs/s; 99 % costs at most 2x 1 %; <= 150 bytes per state.
 * Rates are per CPU-second of this process (process.cpuUsage: user + system, GC threads
 * included), so other load on a shared machine does not count against them; wall-clock
 * rates are printed beside them.
 *
 *   node dist/bench/allocator.js [--rounds 7] [--round-ms 200] [--states 1000000] [--check]
 */
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Allocator } from '../gateway-ref/lib/grm/allocator.js';
import { FIRST_PORT, PORT_COUNT } from '../gateway-ref/lib/grm/port-set.js';
import { cryptoRandom } from '../gateway-ref/lib/grm/random.js';
import type { Allocation, Destination, PortStrategy } from '../gateway-ref/lib/grm/types.js';
import { benchCommandLine, median } from './lib.js';

const TARGET_PAIRS_PER_S = 1_000_000;
const TARGET_COST_RATIO = 2;
const TARGET_BYTES_PER_STATE = 150;
/** Hold-down in the throughput runs, on a clock that advances 1 ms per pair: ~100 ports held. */
const BENCH_HOLD_DOWN_MS = 100;

const argv = benchCommandLine('allocator', (y) => y
  .usage('$0 [options]\n\nGRM allocator speed and memory next to a naive Map/Set allocator.')
  .option('rounds', { type: 'number', default: 7, describe: 'measured rounds per case (the median is reported)' })
  .option('round-ms', { type: 'number', default: 200, describe: 'length of one round in milliseconds' })
  .option('states', { type: 'number', default: 1_000_000, describe: 'live states in the memory measurement' })
  .option('destinations', { type: 'number', default: 10_000, describe: 'destinations the memory states are spread over' })
  .option('check', { type: 'boolean', default: false, describe: 'exit 1 when a target is missed (the random, default strategy)' })
  .option('memory-child', { type: 'string', choices: ['capa', 'naive'], hidden: true, describe: 'internal: measure one memory case' })
  .check((a) => {
    if (!(a.rounds >= 1) || !(a['round-ms'] >= 10)) throw new Error('--rounds must be >= 1 and --round-ms >= 10');
    if (!(a.states >= 1) || !(a.destinations >= 1)) throw new Error('--states and --destinations must be >= 1');
    return true;
  }))
  .parseSync();

/** What both allocators offer the benchmark. */
interface BenchAllocator {
  allocate(terminal: string, destination: Destination): Allocation;
  release(id: number): Allocation;
  confirm(allocation: Allocation): void;
  live(): number;
  /** Brings one destination to `count` live states, as repeated allocate() calls would. */
  fill(terminal: string, destination: Destination, count: number): void;
}

/**
 * The peer: what one writes first. One object per state in a Map, a Set of used ports per
 * (destination, aOG); `random` retries random ports until one is free, `sequential` scans from 1024.
 * Complete states only; the same hold-down queue.
 */
class NaiveAllocator implements BenchAllocator {
  private readonly states = new Map<number, Allocation & { key: string }>();
  private readonly used = new Map<string, Set<number>>();
  private readonly held: { key: string; port: number; at: number }[] = [];
  private heldHead = 0;
  private nextId = 1;

  constructor(
    private readonly pool: string[],
    private readonly strategy: PortStrategy,
    private readonly holdDownMs: number,
    private readonly now: () => number,
    private readonly random: () => number,
  ) {}

  allocate(terminal: string, destination: Destination): Allocation {
    const now = this.now();
    while (this.heldHead < this.held.length && this.held[this.heldHead]!.at + this.holdDownMs <= now) {
      const { key, port } = this.held[this.heldHead++]!;
      this.used.get(key)!.delete(port);
    }
    if (this.heldHead > 4096 && this.heldHead * 2 > this.held.length) this.held.splice(0, this.heldHead), (this.heldHead = 0);
    for (const localAddress of this.pool) {
      const key = `${destination.proto} ${destination.address} ${destination.port} ${localAddress}`;
      let ports = this.used.get(key);
      if (!ports) this.used.set(key, (ports = new Set()));
      if (ports.size === PORT_COUNT) continue;
      let port = FIRST_PORT;
      if (this.strategy === 'random') {
        do port = FIRST_PORT + Math.floor(this.random() * PORT_COUNT);
        while (ports.has(port));
      } else {
        while (ports.has(port)) port++;
      }
      ports.add(port);
      const state = {
        id: this.nextId++, terminal, key, state: 'pending' as const, leaseExpiresAt: now + 30_000, createdAt: now,
        tuple: { proto: destination.proto, remoteAddress: destination.address, remotePort: destination.port, localAddress, localPort: port },
      };
      this.states.set(state.id, state);
      return state;
    }
    throw new Error('exhausted');
  }

  release(id: number): Allocation {
    const state = this.states.get(id)!;
    this.states.delete(id);
    this.held.push({ key: state.key, port: state.tuple.localPort, at: this.now() });
    return state;
  }

  confirm(allocation: Allocation): void {
    const state = this.states.get(allocation.id)!;
    this.states.set(allocation.id, { ...state, state: 'complete', leaseExpiresAt: Infinity });
  }

  live(): number {
    return this.states.size;
  }

  fill(terminal: string, destination: Destination, count: number): void {
    if (this.strategy === 'random') {
      for (let i = 0; i < count; i++) this.allocate(terminal, destination);
      return;
    }
    // The scan's own result (ports 1024 upwards) in linear time: the quadratic fill would take minutes.
    const localAddress = this.pool[0]!;
    const key = `${destination.proto} ${destination.address} ${destination.port} ${localAddress}`;
    const ports = new Set<number>();
    this.used.set(key, ports);
    const now = this.now();
    for (let port = FIRST_PORT; port < FIRST_PORT + count; port++) {
      ports.add(port);
      const state = {
        id: this.nextId++, terminal, key, state: 'pending' as const, leaseExpiresAt: now + 30_000, createdAt: now,
        tuple: { proto: destination.proto, remoteAddress: destination.address, remotePort: destination.port, localAddress, localPort: port },
      };
      this.states.set(state.id, state);
    }
  }
}

type Kind = 'capa' | 'naive';

function makeAllocator(kind: Kind, pool: string[], strategy: PortStrategy, holdDownMs: number, now: () => number): BenchAllocator {
  if (kind === 'naive') return new NaiveAllocator(pool, strategy, holdDownMs, now, cryptoRandom());
  const allocator = new Allocator({ pool, portStrategy: strategy, holdDownMs, leaseMs: 1e12, now });
  return {
    allocate: (terminal, destination) => allocator.allocate(terminal, destination),
    release: (id) => allocator.release(id),
    confirm: (allocation) => { allocator.confirm(allocation.tuple); },
    live: () => allocator.stats().live,
    fill: (terminal, destination, count) => {
      for (let i = 0; i < count; i++) allocator.allocate(terminal, destination);
    },
  };
}

// ---- throughput -------------------------------------------------------------------------------

const DESTINATION: Destination = { proto: 6, address: '203.0.113.10', port: 443 };

interface Case {
  kind: Kind;
  occupancy: number;
  strategy: PortStrategy;
  /** One allocate+release pair on a destination kept at `occupancy`. */
  pair: () => void;
}

function makeCase(kind: Kind, occupancy: number, strategy: PortStrategy): Case {
  const clock = { t: 0 };
  const allocator = makeAllocator(kind, ['198.51.100.1'], strategy, BENCH_HOLD_DOWN_MS, () => clock.t);
  allocator.fill('100.64.0.1', DESTINATION, Math.round(PORT_COUNT * occupancy));
  return {
    kind, occupancy, strategy,
    pair: () => {
      clock.t++;
      allocator.release(allocator.allocate('100.64.0.2', DESTINATION).id);
    },
  };
}

interface Rate {
  cpu: number;
  wall: number;
}

/** Pairs per CPU-second and per wall-second over one round of roughly `ms` milliseconds. */
function round(pair: () => void, ms: number): Rate {
  const budget = ms * 1e6;
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  let n = 0;
  let elapsed = 0;
  do {
    for (let i = 0; i < 10; i++) pair();
    n += 10;
    elapsed = Number(process.hrtime.bigint() - start);
  } while (elapsed < budget);
  const cpu = process.cpuUsage(cpuStart);
  return { cpu: (n * 1e6) / (cpu.user + cpu.system), wall: (n * 1e9) / elapsed };
}

/** Rounds interleaved across the cases, so machine load and JIT drift hit all of them alike. */
function throughput(cases: Case[]): Map<Case, Rate> {
  for (const c of cases) round(c.pair, argv['round-ms']); // warm-up
  const samples = new Map(cases.map((c) => [c, [] as Rate[]]));
  for (let r = 0; r < argv.rounds; r++) for (const c of cases) samples.get(c)!.push(round(c.pair, argv['round-ms']));
  return new Map(cases.map((c) => {
    const rates = samples.get(c)!;
    return [c, { cpu: median(rates.map((x) => x.cpu)), wall: median(rates.map((x) => x.wall)) }];
  }));
}

// ---- memory -----------------------------------------------------------------------------------

function heapBytes(): number {
  const gc = (globalThis as { gc?: () => void }).gc!;
  gc();
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

/** Runs in a child started with --expose-gc; prints bytes per state as JSON. */
function memoryChild(kind: Kind): void {
  const states = argv.states;
  const destinations = Array.from({ length: argv.destinations }, (_, d): Destination => ({
    proto: 6, address: `198.18.${(d >> 1) >> 8}.${(d >> 1) & 255}`, port: d & 1 ? 80 : 443,
  }));
  const terminals = Array.from({ length: 1000 }, (_, i) => `100.64.${i >> 8}.${i & 255}`);
  const pool = Array.from({ length: 16 }, (_, i) => `198.51.100.${i + 1}`);
  const before = heapBytes();
  const allocator = makeAllocator(kind, pool, 'random', 60_000, () => 0);
  for (let i = 0; i < states; i++) {
    const allocation = allocator.allocate(terminals[i % terminals.length]!, destinations[i % destinations.length]!);
    if (i % 2 === 0) allocator.confirm(allocation);
  }
  const after = heapBytes();
  process.stdout.write(JSON.stringify({ bytesPerState: (after - before) / states, live: allocator.live() }));
}

function memory(kind: Kind): number {
  const script = fileURLToPath(import.meta.url);
  const args = ['--states', String(argv.states), '--destinations', String(argv.destinations), '--memory-child', kind];
  const out = execFileSync(process.execPath, ['--expose-gc', script, ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
  const { bytesPerState, live } = JSON.parse(out) as { bytesPerState: number; live: number };
  if (live !== argv.states) throw new Error(`${kind} memory run holds ${live} states, not ${argv.states}`);
  return bytesPerState;
}

// ---- report -----------------------------------------------------------------------------------

const fmt = (n: number, width = 14): string => Math.round(n).toLocaleString('en-US').padStart(width);
const pct = (occupancy: number): string => `${Math.round(occupancy * 100)} %`;

function main(): number {
  console.log(`allocator benchmark: allocate+release pairs/s, median of ${argv.rounds} rounds of ${argv['round-ms']} ms, Node ${process.version}`);
  console.log(`one destination socket, one pool address (${PORT_COUNT} ports), hold-down ${BENCH_HOLD_DOWN_MS} ms at 1 ms per pair`);
  console.log(`rates per CPU-second of this process (wall-clock beside); load average ${loadavg()[0]!.toFixed(1)}\n`);
  const strategies: PortStrategy[] = ['random', 'sequential'];
  const occupancies = [0.01, 0.99];
  const cases = strategies.flatMap((s) => occupancies.flatMap((o) => (['capa', 'naive'] as Kind[]).map((k) => makeCase(k, o, s))));
  const rate = throughput(cases);
  const rateOf = (kind: Kind, occupancy: number, strategy: PortStrategy): Rate =>
    rate.get(cases.find((c) => c.kind === kind && c.occupancy === occupancy && c.strategy === strategy)!)!;

  console.log(
    `${'strategy'.padEnd(12)}${'occupancy'.padEnd(11)}${'CAPA /CPU-s'.padStart(14)}${'CAPA /wall-s'.padStart(14)}`
    + `${'naive /CPU-s'.padStart(14)}${'naive /wall-s'.padStart(15)}${'CAPA/naive'.padStart(12)}`,
  );
  for (const s of strategies) {
    for (const o of occupancies) {
      const capa = rateOf('capa', o, s);
      const naive = rateOf('naive', o, s);
      console.log(
        `${s.padEnd(12)}${pct(o).padEnd(11)}${fmt(capa.cpu)}${fmt(capa.wall)}${fmt(naive.cpu)}${fmt(naive.wall, 15)}`
        + `${`${(capa.cpu / naive.cpu).toFixed(2)}x`.padStart(12)}`,
      );
    }
  }
  const failures: string[] = [];
  console.log('');
  console.log(`${'strategy'.padEnd(12)}${'99 % cost / 1 % cost'.padStart(22)}${'(naive)'.padStart(10)}   target: CAPA <= ${TARGET_COST_RATIO}x, >= ${fmt(TARGET_PAIRS_PER_S, 0)} pairs/CPU-s`);
  for (const s of strategies) {
    const ratio = rateOf('capa', 0.01, s).cpu / rateOf('capa', 0.99, s).cpu;
    const naiveRatio = rateOf('naive', 0.01, s).cpu / rateOf('naive', 0.99, s).cpu;
    console.log(`${s.padEnd(12)}${`${ratio.toFixed(2)}x`.padStart(22)}${`${naiveRatio.toFixed(1)}x`.padStart(10)}`);
    if (s !== 'random') continue;
    if (ratio > TARGET_COST_RATIO) failures.push(`random: 99 % costs ${ratio.toFixed(2)}x the 1 % cost`);
    for (const o of occupancies) {
      const { cpu } = rateOf('capa', o, s);
      if (cpu < TARGET_PAIRS_PER_S) failures.push(`random at ${pct(o)}: ${fmt(cpu, 0)} pairs/CPU-s`);
    }
  }

  console.log(`\nmemory: ${argv.states.toLocaleString('en-US')} live states over ${argv.destinations.toLocaleString('en-US')} destinations`);
  console.log('(16 pool addresses, 1,000 terminals, half confirmed; heapUsed + arrayBuffers after gc, fresh process each)\n');
  const capaBytes = memory('capa');
  const naiveBytes = memory('naive');
  console.log(`${'allocator'.padEnd(24)}${'bytes/state'.padStart(12)}`);
  console.log(`${'CAPA'.padEnd(24)}${capaBytes.toFixed(1).padStart(12)}   target <= ${TARGET_BYTES_PER_STATE}`);
  console.log(`${'naive Map/Set (peer)'.padEnd(24)}${naiveBytes.toFixed(1).padStart(12)}   (${(naiveBytes / capaBytes).toFixed(1)}x CAPA)`);
  if (capaBytes > TARGET_BYTES_PER_STATE) failures.push(`${capaBytes.toFixed(1)} bytes per state`);

  console.log(failures.length === 0 ? '\nall targets met' : `\ntargets missed: ${failures.join('; ')}`);
  return argv.check && failures.length > 0 ? 1 : 0;
}

if (argv['memory-child'] !== undefined) memoryChild(argv['memory-child'] as Kind);
else process.exitCode = main();
