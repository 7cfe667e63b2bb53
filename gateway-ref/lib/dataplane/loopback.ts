/**
 * The `loopback` data plane: pool and outside hosts are 127/8 addresses, so the kernel routes
 * every packet and this driver forwards nothing. It watches the kernel's socket tables instead
 * (no privileges needed): a process-held socket bound to (aOG, pA) and connected to (aOB, pB)
 * starts the flow; once seen, its disappearance ends it.
 *
 * Reading the tables is the costly part (the kernel prints every socket, TIME_WAIT ones
 * included), so it happens only when it can tell something: while flows run, or once a state
 * has been waiting pollMs (most CAPA sockets are given back sooner, and their states never
 * cost a read); only the tables that can show a watched socket are read, off the event loop,
 * and only their watched lines are parsed; reads that find nothing new space out to maxPollMs.
 *
 * The pool addresses are the host's own, so a socket bound to the wildcard address anywhere on
 * the host (a server on 0.0.0.0:2024) takes its port from every one of them: every read also
 * notes those (they are few) and the GRM hands none of their ports out. Each table is read at
 * least every maxPollMs for that, flows or not.
 */
import { endianness } from 'node:os';
import type { Allocation, DataPlane, FlowEvents, OutsideTuple, ProtoNumber } from '../grm/types.js';
import { addressKey, type EndpointKey, endpointKey, scanProcNet, type SocketEntry } from './proc-net.js';
import { ProcNetReader } from './proc-net-reader.js';

export interface LoopbackOptions {
  /** Pool addresses: a reconcile adopts connected sockets bound to them that no state names. */
  pool?: string[];
  /** How soon a new state is looked for, and how often the tables are read while flows change; default 200 ms. */
  pollMs?: number;
  /** The longest wait between reads while nothing changes; default 1 s. Keep it well under the lease. */
  maxPollMs?: number;
}

interface Table {
  path: string;
  proto: ProtoNumber;
}

const TABLES: readonly Table[] = [
  { path: '/proc/net/tcp', proto: 6 },
  { path: '/proc/net/tcp6', proto: 6 },
  { path: '/proc/net/udp', proto: 17 },
  { path: '/proc/net/udp6', proto: 17 },
];
/**
 * Indexes in TABLES of the tables that can show a socket of (protocol, IPv4 or IPv6): the IPv6
 * tables also show IPv4 endpoints of dual-stack sockets (as IPv4-mapped addresses).
 */
const SHOWN_IN: Record<ProtoNumber, Record<4 | 6, readonly number[]>> = {
  6: { 4: [0, 1], 6: [1] },
  17: { 4: [2, 3], 6: [3] },
};
const TCP_LISTEN = 0x0a;
const WILDCARD6 = '0'.repeat(32);

/** The port of a wildcard-bound socket's key (0.0.0.0, ::, ::ffff:0.0.0.0), else -1. */
function wildcardPort(key: EndpointKey): number {
  if (typeof key === 'number') return key < 65536 ? key : -1;
  return key.startsWith(WILDCARD6) ? parseInt(key.slice(33), 16) : -1;
}

/** Ports of wildcard-bound sockets one table showed, by the family of pool addresses they take. */
interface Wildcards {
  4: number[];
  6: number[];
}

const noWildcards = (): Wildcards => ({ 4: [], 6: [] });

/** Notes a wildcard socket's port: one on :: takes IPv4 too (the tables do not show IPV6_V6ONLY). */
function addWildcard(found: Wildcards, key: EndpointKey): void {
  const port = wildcardPort(key);
  found[4].push(port);
  if (typeof key === 'string') found[6].push(port);
}

interface Watch {
  id: number;
  tuple: OutsideTuple;
  /** Whole milliseconds of performance.now() at install (a small integer, stored unboxed). */
  since: number;
  started: boolean;
}

/** Does this socket carry the watched flow? An unconnected UDP socket on (aOG, pA) counts. */
function carries(tuple: OutsideTuple, socket: SocketEntry): boolean {
  if (socket.proto === 17 && socket.remotePort === 0) return true;
  return socket.remoteAddress === tuple.remoteAddress && (tuple.remotePort === undefined || socket.remotePort === tuple.remotePort);
}

const NO_WATCHES: readonly Watch[] = [];

/** A slot's watches with one more: the array only once a second one shares it. */
function joined(sharing: Watch | Watch[] | undefined, watch: Watch): Watch | Watch[] {
  if (sharing === undefined) return watch;
  if (!Array.isArray(sharing)) return [sharing, watch];
  sharing.push(watch);
  return sharing;
}

/**
 * Watches by the local endpoint a table shows them at (see endpointKey), for one read. IPv4
 * keys (address word x 65536 + port) pass 2^31, where a Map hashes them as heap numbers: a
 * million restored watches took half a second to index. They go into an array per address
 * word, indexed by port, instead; IPv6 keys (strings) stay in a Map. A slot holds its watch, or
 * its watches when several destinations share one (aOG, pA) (an array only then).
 */
class WatchIndex {
  private readonly byWord = new Map<number, (Watch | Watch[] | undefined)[]>();
  private readonly byText = new Map<string, Watch | Watch[]>();

  add(key: EndpointKey, watch: Watch): void {
    if (typeof key === 'string') {
      this.byText.set(key, joined(this.byText.get(key), watch));
      return;
    }
    const word = Math.floor(key / 65536);
    let ports = this.byWord.get(word);
    if (ports === undefined) this.byWord.set(word, (ports = new Array<Watch | Watch[] | undefined>(65536)));
    const port = key - word * 65536;
    ports[port] = joined(ports[port], watch);
  }

  has(key: EndpointKey): boolean {
    return typeof key === 'string' ? this.byText.has(key) : this.slot(key) !== undefined;
  }

  at(key: EndpointKey): readonly Watch[] {
    const found = typeof key === 'string' ? this.byText.get(key) : this.slot(key);
    return found === undefined ? NO_WATCHES : Array.isArray(found) ? found : [found];
  }

  private slot(key: number): Watch | Watch[] | undefined {
    const word = Math.floor(key / 65536);
    return this.byWord.get(word)?.[key - word * 65536];
  }
}

export class LoopbackDataPlane implements DataPlane {
  readonly name = 'loopback';
  private readonly pollMs: number;
  private readonly maxPollMs: number;
  private readonly littleEndian = endianness() === 'LE';
  private readonly reader = new ProcNetReader();
  private events: FlowEvents | undefined;
  /**
   * Oldest first (a Map keeps insertion order). One small object per state: a state lives for
   * its lease, long enough for the young generation to copy and promote whatever it holds.
   */
  private readonly watches = new Map<number, Watch>();
  /** Watches whose flow has been seen (a count: each read walks every watch anyway). */
  private startedCount = 0;
  /** Address parts of the keys, by aOG: the pool is small and fixed. */
  private readonly addressKeys = new Map<string, number | string>();
  /** Watches each of TABLES can show. */
  private readonly perTable = TABLES.map(() => 0);
  /** What each of TABLES showed of wildcard-bound sockets at its last read, and when (performance.now()). */
  private readonly wildcards = TABLES.map(noWildcards);
  private readonly lastRead = TABLES.map(() => -Infinity);
  /** Reads every table that flows did not read within maxPollMs, so the host's ports stay known. */
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshing = false;
  /** Wait before the next read: pollMs after a change, doubling up to maxPollMs while nothing changes. */
  private delay: number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: LoopbackOptions = {}) {
    this.maxPollMs = options.maxPollMs ?? 1000;
    this.pollMs = Math.min(options.pollMs ?? 200, this.maxPollMs);
    this.delay = this.pollMs;
  }

  /** Restored states are watched like new ones; a complete one counts as seen, so its socket's absence ends it. */
  async start(events: FlowEvents, restored: readonly Allocation[] = []): Promise<void> {
    this.events = events;
    this.stopped = false;
    if (events.hostPorts !== undefined && this.refreshTimer === undefined) {
      this.refreshTimer = setInterval(() => void this.refresh(this.maxPollMs).catch((err: unknown) => this.warn(err)), this.maxPollMs);
      this.refreshTimer.unref();
    }
    const since = Math.floor(performance.now());
    for (const allocation of restored) this.watch(allocation, allocation.state === 'complete', since);
  }

  async install(allocation: Allocation): Promise<void> {
    this.watch(allocation, false, Math.floor(performance.now()));
  }

  /**
   * A restart's first look: every connected socket bound to a pool address that no state names
   * is adopted (the GRM takes it as a state), then one read settles the watched ones.
   */
  async reconcile(): Promise<void> {
    await this.adoptUnnamed();
    await this.poll();
  }

  private async adoptUnnamed(): Promise<void> {
    const events = this.events;
    if (events === undefined) return;
    const pool = new Set((this.options.pool ?? []).map((a) => this.addressKey(a)));
    // The address part of a key (endpointKey): the word above the port, or the text before it.
    const inPool = (key: EndpointKey): boolean => pool.has(typeof key === 'number' ? Math.floor(key / 65536) : key.slice(0, 32));
    const all = [...TABLES.keys()];
    const contents = await this.reader.read(TABLES.map((t) => t.path));
    const found = TABLES.map(noWildcards);
    const held = TABLES.flatMap((table, i) =>
      scanProcNet(contents[i] ?? new Uint8Array(0), table.proto, this.littleEndian, (key) => inPool(key) || wildcardPort(key) >= 0).filter(({ key, socket }) => {
        if (socket.inode === 0) return false;
        if (!inPool(key)) addWildcard(found[i]!, key);
        return inPool(key) && socket.remotePort !== 0 && !(socket.proto === 6 && socket.state === TCP_LISTEN);
      }),
    );
    this.noteWildcards(all, found);
    const adopt = events.adopt;
    if (adopt === undefined) return;
    // Indexed only when there is something to look up (a restart may bring back a million watches).
    const byKey = held.length > 0 ? this.index() : undefined;
    for (const { key, socket } of held) {
      if (byKey![socket.proto].at(key).some((w) => carries(w.tuple, socket))) continue;
      adopt({ proto: socket.proto, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, localAddress: socket.localAddress, localPort: socket.localPort });
    }
  }

  async remove(allocation: Allocation): Promise<void> {
    this.forget(allocation.id);
  }

  /**
   * Reads the tables no read looked at within maxAgeMs (all of them by default) for the ports
   * wildcard-bound sockets hold, and tells the GRM. Runs on a timer; public for tests.
   */
  async refresh(maxAgeMs = 0): Promise<void> {
    const now = performance.now();
    const stale = [...TABLES.keys()].filter((i) => now - this.lastRead[i]! >= maxAgeMs);
    if (stale.length === 0 || this.refreshing) return;
    this.refreshing = true;
    try {
      const contents = await this.reader.read(stale.map((i) => TABLES[i]!.path));
      if (this.stopped) return;
      const found = TABLES.map(noWildcards);
      stale.forEach((t, i) => {
        for (const { key, socket } of scanProcNet(contents[i] ?? new Uint8Array(0), TABLES[t]!.proto, this.littleEndian, (k) => wildcardPort(k) >= 0)) {
          if (socket.inode !== 0) addWildcard(found[t]!, key);
        }
      });
      this.noteWildcards(stale, found);
    } finally {
      this.refreshing = false;
    }
  }

  /** Keeps what the tables just read showed of wildcard sockets and tells the GRM each protocol and family they show. */
  private noteWildcards(read: readonly number[], found: readonly Wildcards[]): void {
    const now = performance.now();
    for (const i of read) {
      this.wildcards[i] = found[i]!;
      this.lastRead[i] = now;
    }
    const hostPorts = this.events?.hostPorts;
    if (hostPorts === undefined) return;
    for (const proto of [6, 17] as const) {
      for (const family of [4, 6] as const) {
        const tables = SHOWN_IN[proto][family];
        if (tables.some((i) => read.includes(i))) hostPorts(proto, family, tables.flatMap((i) => this.wildcards[i]![family]));
      }
    }
  }

  private warn(err: unknown): void {
    if (!this.stopped) process.emitWarning(`loopback data plane: cannot read the socket tables: ${(err as Error).message}`);
  }

  /** The kernel's sockets are the processes': nothing to remove or keep. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    clearInterval(this.refreshTimer);
    this.refreshTimer = undefined;
    for (const id of [...this.watches.keys()]) this.forget(id);
    await this.reader.close();
  }

  private watch(allocation: Allocation, started: boolean, since: number): void {
    // The allocator hands out fresh objects, so the tuple is ours to keep (and to fill pB into).
    const watch: Watch = { id: allocation.id, tuple: allocation.tuple, since, started };
    this.watches.set(watch.id, watch);
    if (started) this.startedCount++;
    this.count(watch, 1);
    this.arm(this.delay);
  }

  /** Number of states being watched (for tests and metrics). */
  get size(): number {
    return this.watches.size;
  }

  private addressKey(address: string): number | string {
    let key = this.addressKeys.get(address);
    if (key === undefined) {
      key = addressKey(address, this.littleEndian);
      this.addressKeys.set(address, key);
    }
    return key;
  }

  private count(watch: Watch, by: 1 | -1): void {
    const family = typeof this.addressKey(watch.tuple.localAddress) === 'number' ? 4 : 6;
    for (const i of SHOWN_IN[watch.tuple.proto][family]) this.perTable[i]! += by;
  }

  private forget(id: number): void {
    const watch = this.watches.get(id);
    if (watch === undefined) return;
    this.watches.delete(id);
    if (watch.started) this.startedCount--;
    this.count(watch, -1);
    if (this.watches.size === 0) this.delay = this.pollMs;
  }

  private arm(ms: number): void {
    if (this.timer !== undefined || this.stopped || this.watches.size === 0) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  /** Milliseconds until a read can tell something: 0 while flows run or a state has waited pollMs. */
  private untilDue(): number {
    if (this.startedCount > 0) return 0;
    // No flow seen, so the oldest watch is the oldest unseen one.
    const oldest = this.watches.values().next().value;
    return oldest === undefined ? 0 : Math.max(0, oldest.since + this.pollMs - performance.now());
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    const wait = this.untilDue();
    if (wait > 0) {
      this.arm(wait);
      return;
    }
    try {
      const changed = await this.poll();
      this.delay = changed ? this.pollMs : Math.min(this.delay * 2, this.maxPollMs);
    } catch (err) {
      this.warn(err);
    }
    this.arm(this.delay);
  }

  /**
   * Per protocol, (aOG, pA) as the tables show it -> its watches. Built for each read rather
   * than kept up to date: reads are far fewer than states, and a read then costs O(lines +
   * states), no parse per line.
   */
  private index(): Record<ProtoNumber, WatchIndex> {
    const byKey: Record<ProtoNumber, WatchIndex> = { 6: new WatchIndex(), 17: new WatchIndex() };
    let lastAddress = '';
    let lastKey: number | string = 0;
    for (const watch of this.watches.values()) {
      const { localAddress, localPort, proto } = watch.tuple;
      if (localAddress !== lastAddress) {
        lastAddress = localAddress;
        lastKey = this.addressKey(localAddress);
      }
      byKey[proto].add(endpointKey(lastKey, localPort), watch);
    }
    return byKey;
  }

  /** One read of the socket tables: reports new flows, then flows whose socket is gone. True if there was either. */
  async poll(): Promise<boolean> {
    const read = [...TABLES.keys()].filter((i) => this.perTable[i]! > 0);
    if (read.length === 0) return false;
    const contents = await this.reader.read(read.map((i) => TABLES[i]!.path));
    const events = this.events;
    if (this.stopped || events === undefined) return false;
    const byKey = this.index();
    const present = new Set<Watch>();
    const found = TABLES.map(noWildcards);
    let changed = false;
    read.forEach((t, i) => {
      const bytes = contents[i];
      const table = TABLES[t]!;
      if (bytes === null || bytes === undefined) return;
      const watched = byKey[table.proto];
      for (const { key, socket } of scanProcNet(bytes, table.proto, this.littleEndian, (k) => watched.has(k) || wildcardPort(k) >= 0)) {
        if (socket.inode === 0) continue;
        if (!watched.has(key)) {
          addWildcard(found[t]!, key);
          continue;
        }
        if (socket.proto === 6 && socket.state === TCP_LISTEN) continue;
        for (const watch of watched.at(key)) {
          if (!carries(watch.tuple, socket)) continue;
          present.add(watch);
          if (watch.started) continue;
          watch.started = true;
          changed = true;
          this.startedCount++;
          if (watch.tuple.remotePort === undefined && socket.remotePort !== 0) watch.tuple.remotePort = socket.remotePort;
          events.flowStarted({ ...watch.tuple });
        }
      }
    });
    this.noteWildcards(read, found);
    for (const watch of this.watches.values()) {
      if (!watch.started || present.has(watch)) continue;
      changed = true;
      this.forget(watch.id);
      events.flowEnded({ ...watch.tuple });
    }
    return changed;
  }
}
