/**
 * The GRM's allocator (pure core: no I/O, injected clock and randomness). It hands each flow an
 * (aOG, pA) such that the outside tuple (proto, aOB, pB, aOG, pA) matches no other live or
 * held-down state, tracks pending leases, per-terminal quotas and hold-downs, and reports every
 * change as an AllocationEvent for the journal. See DESIGN.md, "Allocation (GRM)".
 */
import { CapaError } from '../../../resolver/codec/errors.js';
import { canonicalIp, ipFamily } from '../../../resolver/codec/ip.js';
import { HoldDownQueue, type HeldPort } from './hold-down.js';
import { MAX_POOL_ADDRESSES } from './pool.js';
import { FIRST_PORT, PORT_COUNT, selectFreeInBoth } from './port-set.js';
import { cryptoRandom } from './random.js';
import { HostScope, type Scope, ScopeRegistry } from './scopes.js';
import { SlotTable } from './slot-table.js';
import type { JournaledHold, JournaledState } from './state-records.js';
import { type Terminal, TerminalRegistry } from './terminals.js';
import { TupleIndex } from './tuple-index.js';
import type {
  Allocation,
  AllocationEventKind,
  AllocationEvent,
  AllocatorOptions,
  Destination,
  OutsideTuple,
  PortStrategy,
  ProtoNumber,
} from './types.js';

export const DEFAULT_LEASE_MS = 30_000;
export const DEFAULT_HOLD_DOWN_MS = 60_000;

export interface AllocatorStats {
  /** Live allocations (pending + complete). */
  live: number;
  pending: number;
  complete: number;
  /** Released (aOG, pA) still waiting out their hold-down. */
  heldDown: number;
  poolAddresses: number;
  /** Terminals holding at least one live allocation. */
  terminals: number;
  /** Outside hosts (proto, aOB) and destinations (proto, aOB, pB) with live or held-down states. */
  hosts: number;
  destinations: number;
}

/** The rotating list of one address family's pool addresses: `cursor` is its head. */
interface Rotation {
  members: number[];
  cursor: number;
}

function configError(message: string): CapaError {
  return new CapaError('ERR_CAPA_CONFIG', message);
}

function checkDuration(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw configError(`${name} must be a finite number of milliseconds >= 0, got ${String(value)}`);
  }
  return value;
}

function checkQuota(quota: number | undefined): number {
  if (quota === undefined || quota === Infinity) return Infinity;
  if (!Number.isInteger(quota) || quota < 1) throw configError(`quota must be an integer >= 1 or Infinity, got ${String(quota)}`);
  return quota;
}

function checkStrategy(strategy: PortStrategy | undefined): PortStrategy {
  if (strategy === undefined) return 'random';
  if (strategy !== 'random' && strategy !== 'sequential') {
    throw configError(`portStrategy must be "random" or "sequential", got "${String(strategy)}"`);
  }
  return strategy;
}

function checkPool(pool: readonly string[]): string[] {
  if (!Array.isArray(pool) || pool.length === 0) throw configError('the pool must list at least one outside address');
  if (pool.length > MAX_POOL_ADDRESSES) {
    throw configError(`the pool has ${pool.length} addresses; at most ${MAX_POOL_ADDRESSES} are supported`);
  }
  const seen = new Set<string>();
  return pool.map((entry) => {
    if (typeof entry !== 'string' || ipFamily(entry) === 0) throw configError(`pool entry is not an IP address: "${String(entry)}"`);
    const address = canonicalIp(entry);
    if (seen.has(address)) throw configError(`pool address ${address} is listed twice`);
    seen.add(address);
    return address;
  });
}

function scopeText(scope: Scope): string {
  const { proto, address, family } = scope.host;
  const host = family === 6 ? `[${address}]` : address;
  return `${proto === 6 ? 'tcp' : 'udp'}/${host}:${scope.remotePort ?? '*'}`;
}

export class Allocator {
  private readonly pool: readonly string[];
  private readonly poolIndex = new Map<string, number>();
  private readonly poolFamily: Uint8Array;
  private readonly rotations: Record<4 | 6, Rotation> = { 4: { members: [], cursor: 0 }, 6: { members: [], cursor: 0 } };
  private readonly sequential: boolean;
  private readonly quota: number;
  private readonly leaseMs: number;
  private readonly holdDownMs: number;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly slots = new SlotTable();
  private readonly index = new TupleIndex(this.slots);
  private readonly scopes = new ScopeRegistry();
  private readonly terminals = new TerminalRegistry();
  private readonly holds = new HoldDownQueue();
  /**
   * Ports the gateway host itself holds on every pool address of a family (wildcard listeners,
   * with the loopback data plane), sorted: a bind to one of them would fail, so none is handed out.
   */
  private readonly hostPorts: Record<ProtoNumber, Record<4 | 6, readonly number[]>> = { 6: { 4: [], 6: [] }, 17: { 4: [], 6: [] } };

  constructor(
    options: AllocatorOptions,
    private readonly onEvent?: (event: AllocationEvent) => void,
  ) {
    this.pool = checkPool(options.pool);
    this.poolFamily = new Uint8Array(this.pool.length);
    this.pool.forEach((address, i) => {
      const family = ipFamily(address) as 4 | 6;
      this.poolIndex.set(address, i);
      this.poolFamily[i] = family;
      this.rotations[family].members.push(i);
    });
    this.sequential = checkStrategy(options.portStrategy) === 'sequential';
    this.quota = checkQuota(options.quota);
    this.leaseMs = checkDuration('leaseMs', options.leaseMs, DEFAULT_LEASE_MS);
    this.holdDownMs = checkDuration('holdDownMs', options.holdDownMs, DEFAULT_HOLD_DOWN_MS);
    this.now = options.now ?? Date.now;
    this.random = options.random ?? cryptoRandom();
  }

  /** Throws CapaError ERR_CAPA_EXHAUSTED (no free (aOG, pA) for this destination) or ERR_CAPA_QUOTA. */
  allocate(terminal: string, destination: Destination): Allocation {
    const now = this.now();
    this.endHoldDowns(now);
    const owner = this.terminals.admit(terminal, this.quota);
    const host = this.scopes.host(destination.proto, destination.address);
    const scope = destination.port === undefined ? host : this.scopes.destination(host, destination.port);
    const address = this.chooseAddress(scope, owner);
    if (address < 0) {
      this.scopes.dropIfUnused(scope);
      throw this.exhausted(scope);
    }
    const slot = this.place(terminal, owner, scope, address, this.choosePort(scope, address), now);
    return this.emit('allocate', now, this.view(slot));
  }

  /**
   * The ports the host holds for `proto` on every `family` pool address, as last seen (replacing
   * what was set before). States already on them stay; new allocations avoid them.
   */
  setHostPorts(proto: ProtoNumber, family: 4 | 6, ports: Iterable<number>): void {
    this.hostPorts[proto][family] = [...new Set(ports)].filter((p) => Number.isInteger(p) && p >= FIRST_PORT && p <= 65535).sort((a, b) => a - b);
  }

  /** Makes room for `n` more live states at once, before a restore puts them back. */
  reserve(n: number): void {
    this.slots.reserve(this.slots.live + n);
    this.index.reserve(this.slots.live + n);
  }

  /**
   * Puts back a live state the state journal remembers, as it was; no event (nothing changed).
   * Its quota is not checked again. Undefined when its aOG is no longer in the pool, or its
   * (aOG, pA) is already taken for its destination.
   */
  restore(state: JournaledState): Allocation | undefined {
    const { tuple } = state;
    const found = this.restoredScope(tuple);
    if (found === undefined) return undefined;
    const slot = this.place(state.terminal, this.terminals.admit(state.terminal, Infinity), found.scope, found.address, tuple.localPort, state.createdAt);
    if (state.complete) this.slots.makeComplete(slot);
    return this.view(slot);
  }

  /** Puts back a hold-down the state journal remembers (oldest first), unless it is over; false when it cannot be. */
  restoreHoldDown(hold: JournaledHold): boolean {
    if (hold.releasedAt <= this.now() - this.holdDownMs) return true;
    const found = this.restoredScope(hold.tuple);
    if (found === undefined) return false;
    found.scope.occupy(found.address, hold.tuple.localPort);
    found.scope.refs++;
    this.holds.push(found.scope.idx, found.address, hold.tuple.localPort, hold.releasedAt);
    return true;
  }

  /** Hold-downs in progress, oldest first (for the state journal's snapshot). */
  *holdDowns(): IterableIterator<JournaledHold> {
    this.endHoldDowns(this.now());
    for (const held of this.holds.entries()) {
      const scope = this.scopes.get(held.scope);
      yield {
        tuple: { proto: scope.host.proto, remoteAddress: scope.host.address, remotePort: scope.remotePort, localAddress: this.pool[held.address]!, localPort: held.port },
        releasedAt: held.releasedAt,
      };
    }
  }

  /**
   * pending -> complete. A partial allocation matches on (proto, aOB, aOG, pA) and gets
   * tuple.remotePort filled. Undefined if none. Idempotent for complete ones.
   */
  confirm(tuple: OutsideTuple): Allocation | undefined {
    const slot = this.lookup(tuple);
    if (slot < 0) return undefined;
    const s = this.slots;
    const scope = this.scopes.get(s.scope[slot]!);
    const remotePort = tuple.remotePort;
    const completesPartial = scope instanceof HostScope && remotePort !== undefined;
    if (!completesPartial && !s.isPending(slot)) return this.view(slot);
    if (completesPartial) this.moveToDestination(slot, scope, remotePort);
    if (s.isPending(slot)) s.makeComplete(slot);
    return this.emit('confirm', this.now(), this.view(slot));
  }

  /**
   * Exact tuple match, else the partial allocation that reserves that tuple; with remotePort
   * undefined, a partial allocation or any allocation on (proto, aOB, aOG, pA). Never throws.
   */
  find(tuple: OutsideTuple): Allocation | undefined {
    const slot = this.lookup(tuple);
    return slot < 0 ? undefined : this.view(slot);
  }

  get(id: number): Allocation | undefined {
    const slot = this.slots.slotOf(id);
    return slot < 0 ? undefined : this.view(slot);
  }

  /**
   * Ends an allocation; its (aOG, pA) is held down for that destination. Throws
   * ERR_CAPA_NO_ALLOCATION, or ERR_CAPA_NOT_OWNER when `terminal` is given and differs.
   */
  release(id: number, terminal?: string): Allocation {
    const slot = this.slots.slotOf(id);
    if (slot < 0) throw new CapaError('ERR_CAPA_NO_ALLOCATION', `no live allocation has id ${String(id)}`);
    const allocation = this.view(slot);
    if (terminal !== undefined && allocation.terminal !== terminal) {
      throw new CapaError('ERR_CAPA_NOT_OWNER', `allocation ${id} does not belong to terminal ${terminal}`);
    }
    const now = this.now();
    this.end(slot, now);
    return this.emit('release', now, allocation);
  }

  /** Reclaims pending allocations whose lease ended at now(); returns them (each also logged as 'expire'). */
  expire(): Allocation[] {
    const now = this.now();
    this.endHoldDowns(now);
    const ended: Allocation[] = [];
    const s = this.slots;
    for (let slot = s.oldestPending(); slot >= 0 && s.createdAt[slot]! + this.leaseMs <= now; slot = s.oldestPending()) {
      const allocation = this.view(slot);
      this.end(slot, now);
      ended.push(this.emit('expire', now, allocation));
    }
    return ended;
  }

  /** Earliest lease end among pending allocations, for the shell's timer. */
  nextExpiry(): number | undefined {
    const slot = this.slots.oldestPending();
    return slot < 0 ? undefined : this.slots.createdAt[slot]! + this.leaseMs;
  }

  /** Live allocations (for data-plane reconciliation and tests). */
  *allocations(): IterableIterator<Allocation> {
    for (const slot of this.slots.liveSlots()) yield this.view(slot);
  }

  /** Live allocations of one terminal (what its quota counts). */
  liveFor(terminal: string): number {
    return this.terminals.find(terminal)?.live ?? 0;
  }

  stats(): AllocatorStats {
    this.endHoldDowns(this.now());
    return {
      live: this.slots.live,
      pending: this.slots.pending,
      complete: this.slots.live - this.slots.pending,
      heldDown: this.holds.size,
      poolAddresses: this.pool.length,
      terminals: this.terminals.count,
      hosts: this.scopes.hostCount,
      destinations: this.scopes.destinations,
    };
  }

  /** A new live slot for (scope, aOG, pA), pending since createdAt. */
  private place(terminal: string, owner: Terminal | undefined, scope: Scope, address: number, port: number, createdAt: number): number {
    const slot = this.slots.acquire();
    const s = this.slots;
    s.terminal[slot] = this.terminals.hold(terminal, owner, address).idx;
    s.scope[slot] = scope.idx;
    s.address[slot] = address;
    s.port[slot] = port;
    s.createdAt[slot] = createdAt;
    s.makePending(slot);
    this.index.insert(slot);
    scope.occupy(address, port);
    scope.refs++;
    return slot;
  }

  /** The scope and pool index a restored tuple goes back to, if its (aOG, pA) is free there. */
  private restoredScope(tuple: OutsideTuple): { scope: Scope; address: number } | undefined {
    const address = this.poolAddressIndex(tuple.localAddress);
    if (address === undefined || tuple.localPort < FIRST_PORT) return undefined;
    const host = this.scopes.host(tuple.proto, tuple.remoteAddress);
    const scope = tuple.remotePort === undefined ? host : this.scopes.destination(host, tuple.remotePort);
    if (scope.sets.get(address)?.has(tuple.localPort) || scope.blocking(address)?.has(tuple.localPort)) {
      this.scopes.dropIfUnused(scope);
      return undefined;
    }
    return { scope, address };
  }

  /**
   * The patent's address choice: an address the terminal already holds with a free port here
   * (paired pooling; held until its idle record is swept), else the head of the rotating list,
   * moved to the end; if full, the next.
   * Returns -1 when every pool address of the family is full for this scope.
   */
  private chooseAddress(scope: Scope, owner: Terminal | undefined): number {
    const family = scope.host.family;
    const rotation = this.rotations[family];
    const n = rotation.members.length;
    // Own and blocking ports are disjoint per address, so this sum reaches the bound only when all are full.
    if (scope.total + scope.blockingTotal() >= PORT_COUNT * n) return -1;
    if (owner) {
      const { addresses } = owner;
      for (let i = 0; i < addresses.length; i++) {
        const address = addresses[i]!;
        // Held means "since the record was made", not "with a live flow now": one flow after another
        // keeps one address (and one address on the terminal's interface).
        if (this.poolFamily[address] === family && this.freeCount(scope, address) > 0) return address;
      }
    }
    for (let tries = 0; tries < n; tries++) {
      const address = rotation.members[rotation.cursor]!;
      rotation.cursor = rotation.cursor + 1 === n ? 0 : rotation.cursor + 1;
      if (this.freeCount(scope, address) > 0) return address;
    }
    return -1;
  }

  /** Host ports still free in the scope on `address` (they count as taken there, but no set holds them). */
  private hostOnly(scope: Scope, address: number): readonly number[] {
    const ports = this.hostPorts[scope.host.proto][scope.host.family];
    if (ports.length === 0) return ports;
    const own = scope.sets.get(address);
    const blocking = scope.blocking(address);
    return ports.filter((p) => !own?.has(p) && !blocking?.has(p));
  }

  private freeCount(scope: Scope, address: number): number {
    return PORT_COUNT - scope.taken(address) - this.hostOnly(scope, address).length;
  }

  /** `random`: uniform among the free ports (RFC 6056); `sequential`: the first free port. */
  private choosePort(scope: Scope, address: number): number {
    const own = scope.sets.get(address);
    const blocking = scope.blocking(address);
    const host = this.hostOnly(scope, address);
    const free = PORT_COUNT - (own?.size ?? 0) - (blocking?.size ?? 0) - host.length;
    // Clamped: an injected source outside [0, 1) must not pick a port outside the free ones.
    const k = this.sequential ? 0 : Math.min(free - 1, Math.max(0, Math.floor(this.random() * free) || 0));
    const only = own ?? blocking;
    const select = (i: number): number => (own && blocking ? selectFreeInBoth(own, blocking, i) : only ? only.selectFree(i) : FIRST_PORT + i);
    // The k-th free port that is no host port: skip as many places as host ports lie at or below
    // the candidate, until that count stops growing (host ports are few; this ends in a step or two).
    for (let skipped = 0; ; ) {
      const port = select(k + skipped);
      let below = 0;
      while (below < host.length && host[below]! <= port) below++;
      if (below === skipped) return port;
      skipped = below;
    }
  }

  private exhausted(scope: Scope): CapaError {
    const family = scope.host.family;
    const n = this.rotations[family].members.length;
    const why = n === 0
      ? `the pool has no IPv${family} address`
      : `all ${PORT_COUNT} ports of the ${n} IPv${family} pool address${n === 1 ? '' : 'es'} are in use or held down for it${this.hostPorts[scope.host.proto][family].length > 0 ? ' or held by the gateway host' : ''}`;
    return new CapaError('ERR_CAPA_EXHAUSTED', `no free (aOG, pA) for ${scopeText(scope)}: ${why}`);
  }

  /** A partial state's first packet fixed pB: it now reserves only that destination's tuple. */
  private moveToDestination(slot: number, host: HostScope, remotePort: number): void {
    const destination = this.scopes.destination(host, remotePort);
    const s = this.slots;
    const address = s.address[slot]!;
    const port = s.port[slot]!;
    this.index.remove(slot);
    host.vacate(address, port);
    host.refs--;
    destination.occupy(address, port);
    destination.refs++;
    s.scope[slot] = destination.idx;
    this.index.insert(slot);
  }

  private lookup(tuple: OutsideTuple): number {
    const host = this.scopes.findHost(tuple.proto, tuple.remoteAddress);
    const address = this.poolAddressIndex(tuple.localAddress);
    if (!host || address === undefined) return -1;
    const { remotePort, localPort } = tuple;
    if (remotePort !== undefined) {
      const destination = host.destinations.get(remotePort);
      const slot = destination ? this.index.find(destination.idx, address, localPort) : -1;
      if (slot >= 0) return slot;
    }
    const partial = this.index.find(host.idx, address, localPort);
    if (partial >= 0 || remotePort !== undefined) return partial;
    for (const destination of host.destinations.values()) {
      const slot = this.index.find(destination.idx, address, localPort);
      if (slot >= 0) return slot;
    }
    return -1;
  }

  private poolAddressIndex(address: string): number | undefined {
    const found = this.poolIndex.get(address);
    if (found !== undefined || ipFamily(address) === 0) return found;
    return this.poolIndex.get(canonicalIp(address));
  }

  /** Frees a live slot; its port stays taken for the scope until the hold-down ends. */
  private end(slot: number, now: number): void {
    const s = this.slots;
    const scope = this.scopes.get(s.scope[slot]!);
    const address = s.address[slot]!;
    const port = s.port[slot]!;
    this.index.remove(slot);
    this.terminals.drop(this.terminals.get(s.terminal[slot]!));
    s.release(slot);
    if (this.holdDownMs > 0) this.holds.push(scope.idx, address, port, now);
    else this.vacate(scope, address, port);
  }

  private vacate(scope: Scope, address: number, port: number): void {
    scope.vacate(address, port);
    scope.refs--;
    this.scopes.dropIfUnused(scope);
  }

  private readonly endHeldPort = (held: HeldPort): void => {
    this.vacate(this.scopes.get(held.scope), held.address, held.port);
  };

  private endHoldDowns(now: number): void {
    if (this.holds.size > 0) this.holds.drain(now - this.holdDownMs, this.endHeldPort);
  }

  private view(slot: number): Allocation {
    const s = this.slots;
    const scope = this.scopes.get(s.scope[slot]!);
    const pending = s.isPending(slot);
    const createdAt = s.createdAt[slot]!;
    return {
      id: s.id(slot),
      terminal: this.terminals.get(s.terminal[slot]!).name,
      tuple: {
        proto: scope.host.proto,
        remoteAddress: scope.host.address,
        remotePort: scope.remotePort,
        localAddress: this.pool[s.address[slot]!]!,
        localPort: s.port[slot]!,
      },
      state: pending ? 'pending' : 'complete',
      leaseExpiresAt: pending ? createdAt + this.leaseMs : Infinity,
      createdAt,
    };
  }

  private emit(event: AllocationEventKind, time: number, allocation: Allocation): Allocation {
    this.onEvent?.({ event, time, terminal: allocation.terminal, tuple: { ...allocation.tuple } });
    return allocation;
  }
}
