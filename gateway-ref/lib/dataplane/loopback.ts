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

/** The watches an index holds at `key`. */
function watchesAt(index: Map<EndpointKey, Watch | Watch[]>, key: EndpointKey): readonly Watch[] {
  const found = index.get(key);
  return found === undefined ? [] : Array.isArray(found) ? found : [found];
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
    const adopt = this.events?.adopt;
    const pool = new Set((this.options.pool ?? []).map((a) => this.addressKey(a)));
    if (adopt === undefined || pool.size === 0) return;
    // The address part of a key (endpointKey): the word above the port, or the text before it.
    const inPool = (key: EndpointKey): boolean => pool.has(typeof key === 'number' ? Math.floor(key / 65536) : key.slice(0, 32));
    const contents = await this.reader.read(TABLES.map((t) => t.path));
    const held = TABLES.flatMap((table, i) => scanProcNet(contents[i] ?? new Uint8Array(0), table.proto, this.littleEndian, inPool))
      .filter(({ socket }) => socket.inode !== 0 && socket.remotePort !== 0 && !(socket.proto === 6 && socket.state === TCP_LISTEN));
    // Indexed only when there is something to look up (a restart may bring back a million watches).
    const byKey = held.length > 0 ? this.index() : undefined;
    for (const { key, socket } of held) {
      if (watchesAt(byKey![socket.proto], key).some((w) => carries(w.tuple, socket))) continue;
      adopt({ proto: socket.proto, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, localAddress: socket.localAddress, localPort: socket.localPort });
    }
  }

  async remove(allocation: Allocation): Promise<void> {
    this.forget(allocation.id);
  }

  /** The kernel's sockets are the processes': nothing to remove or keep. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
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
      if (!this.stopped) process.emitWarning(`loopback data plane: cannot read the socket tables: ${(err as Error).message}`);
    }
    this.arm(this.delay);
  }

  /**
   * Per protocol, (aOG, pA) as the tables show it -> its watch, or its watches when several
   * destinations share it (an array only then: a million restored states made a million). Built
   * for each read rather than kept up to date: reads are far fewer than states, and a read then
   * costs O(lines + states), no parse per line.
   */
  private index(): Record<ProtoNumber, Map<EndpointKey, Watch | Watch[]>> {
    const byKey: Record<ProtoNumber, Map<EndpointKey, Watch | Watch[]>> = { 6: new Map(), 17: new Map() };
    let lastAddress = '';
    let lastKey: number | string = 0;
    for (const watch of this.watches.values()) {
      const { localAddress, localPort, proto } = watch.tuple;
      if (localAddress !== lastAddress) {
        lastAddress = localAddress;
        lastKey = this.addressKey(localAddress);
      }
      const key = endpointKey(lastKey, localPort);
      const map = byKey[proto];
      const sharing = map.get(key);
      if (sharing === undefined) map.set(key, watch);
      else if (Array.isArray(sharing)) sharing.push(watch);
      else map.set(key, [sharing, watch]);
    }
    return byKey;
  }

  /** One read of the socket tables: reports new flows, then flows whose socket is gone. True if there was either. */
  async poll(): Promise<boolean> {
    const tables = TABLES.filter((_, i) => this.perTable[i]! > 0);
    if (tables.length === 0) return false;
    const contents = await this.reader.read(tables.map((t) => t.path));
    const events = this.events;
    if (this.stopped || events === undefined) return false;
    const byKey = this.index();
    const present = new Set<Watch>();
    let changed = false;
    tables.forEach((table, i) => {
      const bytes = contents[i];
      if (bytes === null || bytes === undefined) return;
      const watched = byKey[table.proto];
      for (const { key, socket } of scanProcNet(bytes, table.proto, this.littleEndian, (k) => watched.has(k))) {
        if (socket.inode === 0 || (socket.proto === 6 && socket.state === TCP_LISTEN)) continue;
        for (const watch of watchesAt(watched, key)) {
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
    for (const watch of this.watches.values()) {
      if (!watch.started || present.has(watch)) continue;
      changed = true;
      this.forget(watch.id);
      events.flowEnded({ ...watch.tuple });
    }
    return changed;
  }
}
