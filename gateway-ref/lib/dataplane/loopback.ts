/**
 * The `loopback` data plane: pool and outside hosts are 127/8 addresses, so the kernel routes
 * every packet and this driver forwards nothing. It watches the kernel's socket tables instead
 * (no privileges needed): a process-held socket bound to (aOG, pA) and connected to (aOB, pB)
 * starts the flow; once seen, its disappearance ends it. It polls only while it has states.
 */
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { Allocation, DataPlane, FlowEvents, OutsideTuple, ProtoNumber } from '../grm/types.js';
import { type SocketEntry, parseProcNet } from './proc-net.js';

export interface LoopbackOptions {
  /** How often the socket tables are read while states are watched; default 200 ms. */
  pollMs?: number;
}

const TABLES: { path: string; proto: ProtoNumber }[] = [
  { path: '/proc/net/tcp', proto: 6 },
  { path: '/proc/net/tcp6', proto: 6 },
  { path: '/proc/net/udp', proto: 17 },
  { path: '/proc/net/udp6', proto: 17 },
];
const TCP_LISTEN = 0x0a;

interface Watch {
  tuple: OutsideTuple;
  started: boolean;
}

function localKey(proto: ProtoNumber, address: string, port: number): string {
  return `${proto}|${address}|${port}`;
}

/** Does this socket carry the watched flow? An unconnected UDP socket on (aOG, pA) counts. */
function carries(tuple: OutsideTuple, socket: SocketEntry): boolean {
  if (socket.proto === 17 && socket.remotePort === 0) return true;
  return socket.remoteAddress === tuple.remoteAddress && (tuple.remotePort === undefined || socket.remotePort === tuple.remotePort);
}

async function readTable(path: string, proto: ProtoNumber, littleEndian: boolean): Promise<SocketEntry[]> {
  try {
    return parseProcNet(await readFile(path, 'utf8'), proto, littleEndian);
  } catch (err) {
    // tcp6/udp6 are absent when IPv6 is disabled: nothing to watch there.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export class LoopbackDataPlane implements DataPlane {
  readonly name = 'loopback';
  private readonly pollMs: number;
  private readonly littleEndian = endianness() === 'LE';
  private events: FlowEvents | undefined;
  private readonly watches = new Map<number, Watch>();
  /**
   * (proto, aOG, pA) -> allocation ids (usually one; several destinations may share it), so a
   * poll costs O(sockets + started flows), not O(watched states).
   */
  private readonly byLocal = new Map<string, number[]>();
  private readonly started = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: LoopbackOptions = {}) {
    this.pollMs = options.pollMs ?? 200;
  }

  async start(events: FlowEvents): Promise<void> {
    this.events = events;
    this.stopped = false;
  }

  async install(allocation: Allocation): Promise<void> {
    // The allocator hands out fresh objects, so the tuple is ours to keep (and to fill pB into).
    const { tuple } = allocation;
    this.watches.set(allocation.id, { tuple, started: false });
    const key = localKey(tuple.proto, tuple.localAddress, tuple.localPort);
    const ids = this.byLocal.get(key);
    if (ids === undefined) this.byLocal.set(key, [allocation.id]);
    else ids.push(allocation.id);
    this.schedule();
  }

  async remove(allocation: Allocation): Promise<void> {
    this.forget(allocation.id);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.watches.clear();
    this.byLocal.clear();
    this.started.clear();
  }

  /** Number of states being watched (for tests and metrics). */
  get size(): number {
    return this.watches.size;
  }

  private forget(id: number): void {
    const watch = this.watches.get(id);
    if (watch === undefined) return;
    this.watches.delete(id);
    this.started.delete(id);
    const key = localKey(watch.tuple.proto, watch.tuple.localAddress, watch.tuple.localPort);
    const ids = this.byLocal.get(key) ?? [];
    ids.splice(ids.indexOf(id), 1);
    if (ids.length === 0) this.byLocal.delete(key);
  }

  private schedule(): void {
    if (this.timer !== undefined || this.stopped || this.watches.size === 0) return;
    this.timer = setTimeout(() => void this.tick(), this.pollMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await this.poll();
    } catch (err) {
      process.emitWarning(`loopback data plane: cannot read the socket tables: ${(err as Error).message}`);
    }
    this.timer = undefined;
    this.schedule();
  }

  /** One pass over the socket tables: report new flows, then flows whose socket is gone. */
  async poll(): Promise<void> {
    const tables = await Promise.all(TABLES.map((t) => readTable(t.path, t.proto, this.littleEndian)));
    if (this.stopped || this.events === undefined) return;
    const present = new Set<number>();
    for (const socket of tables.flat()) {
      if (socket.inode === 0 || (socket.proto === 6 && socket.state === TCP_LISTEN)) continue;
      const ids = this.byLocal.get(localKey(socket.proto, socket.localAddress, socket.localPort));
      if (ids === undefined) continue;
      for (const id of ids) {
        const watch = this.watches.get(id)!;
        if (!carries(watch.tuple, socket)) continue;
        present.add(id);
        if (watch.started) continue;
        watch.started = true;
        this.started.add(id);
        if (watch.tuple.remotePort === undefined && socket.remotePort !== 0) watch.tuple.remotePort = socket.remotePort;
        this.events.flowStarted({ ...watch.tuple });
      }
    }
    for (const id of [...this.started]) {
      if (present.has(id)) continue;
      const { tuple } = this.watches.get(id)!;
      this.forget(id);
      this.events.flowEnded({ ...tuple });
    }
  }
}
