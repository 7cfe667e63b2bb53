/**
 * The GRM service: ties the allocator (pure core) to a data plane, the name data, the journals
 * (the operators' log and the state journal that a restart restores from), the lease timer and
 * the metrics, and is the context the DNS responder works against.
 */
import { DEFAULT_CAPA_RRTYPE } from '../../../resolver/codec/constants.js';
import { CapaError, isCapaError } from '../../../resolver/codec/errors.js';
import { ipFamily } from '../../../resolver/codec/ip.js';
import type { Realm } from '../dns/realm.js';
import type { GatewayMetrics } from '../metrics.js';
import type { Names } from '../zone/names.js';
import type { LookupResult } from '../zone/upstream.js';
import type { AddressType } from '../zone/zone.js';
import { Allocator, DEFAULT_LEASE_MS } from './allocator.js';
import { InboundBindings } from './inbound.js';
import { formatEvent } from './journal.js';
import type { StateJournal } from './state-journal.js';
import type { FoldedStates, StateRecord } from './state-records.js';
import type { Allocation, AllocationEvent, AllocatorOptions, DataPlane, Destination, OutsideTuple, ReleaseOutcome } from './types.js';

export interface GrmServiceOptions {
  allocator: AllocatorOptions;
  dataPlane: DataPlane;
  names: Names;
  /** Requesters allowed to allocate. */
  realm: Realm;
  /** Destinations reached without the gateway; default none. */
  direct?: Realm;
  rrtype?: number;
  /** Receives one JSON line (no newline) per allocation event: the operators' journal. */
  journal?: (line: string) => void;
  /**
   * The state journal: every change is written to it, an allocation before its answer leaves;
   * `restored` is what it held at start, put back before the service serves.
   */
  state?: { journal: StateJournal; restored: FoldedStates };
  metrics?: GatewayMetrics;
  /** Unexpected failures, one line each (the command line sends them to stderr). */
  log: (message: string) => void;
}

/** setTimeout's longest delay; a longer lease just means one more wake-up. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The state journal is compacted once its tail has this many records and twice as many as the live states. */
const COMPACT_MIN_RECORDS = 100_000;
/** The terminal of a state adopted from the kernel: which terminal holds the socket is not known. */
const ADOPTED_TERMINAL = 'adopted';

const describeTuple = (t: OutsideTuple): string => `${t.proto === 6 ? 'tcp' : 'udp'} ${t.localAddress}:${t.localPort} -> ${t.remoteAddress}:${t.remotePort ?? '*'}`;

function recordOf(event: AllocationEvent): StateRecord {
  switch (event.event) {
    case 'allocate': return { kind: 'allocate', terminal: event.terminal, tuple: event.tuple, createdAt: event.time };
    case 'confirm': return { kind: 'confirm', tuple: event.tuple };
    case 'release':
    case 'expire': return { kind: 'end', tuple: event.tuple, at: event.time };
  }
}

/** The GRM: what the DNS front end (dns/responder.ts) asks of it, over its allocator and data plane. */
export class GrmService {
  readonly allocator: Allocator;
  readonly rrtype: number;
  readonly leaseSeconds: number;
  readonly poolFamilies: ReadonlySet<number>;
  private readonly now: () => number;
  private readonly inbound: InboundBindings;
  private readonly leaseMs: number;
  private readonly log: (message: string) => void;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiryAt = Infinity;
  /** The state journal's write of the latest event: an allocation's answer waits for it. */
  private lastWrite: Promise<void> = Promise.resolve();
  private compacting: Promise<void> | undefined;

  constructor(private readonly options: GrmServiceOptions) {
    const leaseMs = options.allocator.leaseMs ?? DEFAULT_LEASE_MS;
    this.leaseMs = leaseMs;
    this.now = options.allocator.now ?? Date.now;
    this.allocator = new Allocator(options.allocator, (event) => this.onAllocationEvent(event));
    this.rrtype = options.rrtype ?? DEFAULT_CAPA_RRTYPE;
    this.leaseSeconds = Math.ceil(leaseMs / 1000);
    this.poolFamilies = new Set(options.allocator.pool.map((a) => ipFamily(a)));
    this.inbound = new InboundBindings(options.allocator.pool, { ttlMs: leaseMs, now: this.now });
    this.log = options.log;
  }

  get dataPlane(): DataPlane {
    return this.options.dataPlane;
  }

  get recursive(): boolean {
    return this.options.names.recursive;
  }

  /**
   * Puts back what the state journal held, starts the data plane with those states in place,
   * lets the kernel's flows settle which are running (the data plane wins), reclaims pending
   * states whose lease ran out meanwhile, and starts a fresh journal generation.
   */
  async start(): Promise<void> {
    // The kernel's load of the restored states runs on another thread while the allocator takes them back.
    const live = this.options.state?.restored.live ?? [];
    if (live.length > 0) this.dataPlane.preload?.(live);
    const restored = this.restore();
    await this.dataPlane.start({
      flowStarted: (tuple) => { this.allocator.confirm(tuple); },
      flowEnded: (tuple) => this.flowEnded(tuple),
      known: (tuple) => this.allocator.find(tuple) !== undefined,
      adopt: (tuple) => this.adopt(tuple),
      hostPorts: (proto, family, ports) => this.allocator.setHostPorts(proto, family, ports),
      mended: (kind) => this.options.metrics?.onMended(kind),
    }, restored);
    // The kernel's flows settle which states run, and name those the journal lost.
    await this.dataPlane.reconcile?.();
    await this.rerouteInbound();
    await this.expire();
    // The restored journal folds into a fresh generation behind the serving (a million states take a second to write).
    if (this.options.state) this.compactBehind();
  }

  /** Stops serving; with `keepStates`, the data plane keeps the kernel's states for the next start. */
  async stop(keepStates = false): Promise<void> {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    await this.dataPlane.stop({ keepStates });
    await this.compacting;
  }

  isInside(address: string): boolean {
    return this.options.realm.contains(address);
  }

  isDirect(address: string): boolean {
    return this.options.direct?.contains(address) ?? false;
  }

  lookup(name: string, type: AddressType, forward: boolean): Promise<LookupResult> {
    return this.options.names.lookup(name, type, forward);
  }

  /** Allocates, then installs the state before anyone can use the answer. */
  async allocate(terminal: string, destination: Destination): Promise<Allocation> {
    let allocation: Allocation;
    try {
      allocation = this.allocator.allocate(terminal, destination);
    } catch (err) {
      if (isCapaError(err, 'ERR_CAPA_EXHAUSTED')) this.options.metrics?.onBlocked('exhausted');
      if (isCapaError(err, 'ERR_CAPA_QUOTA')) this.options.metrics?.onBlocked('quota');
      throw err;
    }
    const written = this.lastWrite;
    const [installed, journaled] = await Promise.allSettled([this.dataPlane.install(allocation), written]);
    if (installed.status === 'rejected' || journaled.status === 'rejected') {
      // Never hand out what the data plane lacks or a restart would forget.
      this.allocator.release(allocation.id);
      if (installed.status === 'fulfilled') this.dataPlane.remove(allocation).catch((err: unknown) => this.reportError(err));
      if (installed.status === 'rejected') {
        const err = installed.reason as Error;
        throw new CapaError('ERR_CAPA_SERVER_FAILURE', `data plane ${this.dataPlane.name} could not install the state: ${err.message}`, { cause: err });
      }
      throw this.unjournaled((journaled as PromiseRejectedResult).reason, 'allocations');
    }
    this.scheduleExpiry();
    this.maybeCompact();
    return allocation;
  }

  async release(terminal: string, candidates: OutsideTuple[]): Promise<ReleaseOutcome> {
    for (const tuple of candidates) {
      const allocation = this.allocator.find(tuple);
      if (allocation === undefined) continue;
      if (allocation.terminal !== terminal) return 'not-owner';
      this.allocator.release(allocation.id, terminal);
      await this.dataPlane.remove(allocation);
      return 'released';
    }
    return 'absent';
  }

  /**
   * Binds a pool address to (querier, terminal) and has the data plane route it (and the state
   * journal remember it) before the answer leaves.
   */
  async bindInbound(querier: string, terminal: string, family: 4 | 6): Promise<string> {
    this.inbound.expire();
    const poolAddress = this.inbound.bind(querier, terminal, family);
    const journal = this.options.state?.journal;
    const written = journal?.append({ kind: 'inbound', binding: { querier, poolAddress, terminal, expiresAt: this.now() + this.leaseMs } });
    const [routed, journaled] = await Promise.allSettled([this.dataPlane.routeInbound?.({ querier, poolAddress, terminal, ttlMs: this.leaseMs }), written]);
    if (routed.status === 'rejected') throw routed.reason;
    if (journaled.status === 'rejected') throw this.unjournaled(journaled.reason, 'a binding');
    this.maybeCompact();
    return poolAddress;
  }

  /** A state journal write that failed, said once per answer: the answer is SERVFAIL. */
  private unjournaled(reason: unknown, what: string): Error {
    const err = reason as Error;
    this.log(`capa-gateway: ${err.message}; answering SERVFAIL rather than hand out ${what} a restart would forget`);
    return err;
  }

  /** The restored inbound bindings go back into the data plane, for what is left of their TTL. */
  private async rerouteInbound(): Promise<void> {
    const route = this.dataPlane.routeInbound?.bind(this.dataPlane);
    if (route === undefined) return;
    const now = this.now();
    for (const b of this.inbound.bindings()) await route({ querier: b.querier, poolAddress: b.poolAddress, terminal: b.terminal, ttlMs: b.expiresAt - now });
  }

  reportError(err: unknown): void {
    this.log(`capa-gateway: unexpected error answered SERVFAIL: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  }

  /** Reclaims pending states past their lease and removes them from the data plane (the timer runs this). */
  async expire(): Promise<Allocation[]> {
    const expired = this.allocator.expire();
    await Promise.all(expired.map((a) => this.dataPlane.remove(a)));
    this.scheduleExpiry();
    return expired;
  }

  /** A flow the data plane found that no state names: a complete state of an unknown terminal, journaled. */
  private adopt(tuple: OutsideTuple): void {
    if (this.allocator.find(tuple) !== undefined) return;
    const state = { terminal: ADOPTED_TERMINAL, tuple, createdAt: this.now(), complete: true };
    const allocation = this.allocator.restore(state);
    if (allocation === undefined) {
      this.log(`capa-gateway: the kernel carries ${describeTuple(tuple)}, outside the pool or on a taken (aOG, pA); not adopted`);
      return;
    }
    this.log(`capa-gateway: adopted ${describeTuple(tuple)}: the kernel carries it and no state named it`);
    this.options.metrics?.onMended('adopted-flow');
    this.options.state?.journal.append({ kind: 'state', state }).catch((err: unknown) => this.log(`capa-gateway: ${(err as Error).message}`));
    this.dataPlane.install(allocation).catch((err: unknown) => this.reportError(err));
  }

  private flowEnded(tuple: OutsideTuple): void {
    const allocation = this.allocator.find(tuple);
    if (allocation === undefined) return;
    this.allocator.release(allocation.id);
    this.dataPlane.remove(allocation).catch((err: unknown) => this.reportError(err));
  }

  private onAllocationEvent(event: AllocationEvent): void {
    this.options.journal?.(formatEvent(event));
    this.options.metrics?.onEvent(event);
    const state = this.options.state;
    if (state === undefined) return;
    const write = state.journal.append(recordOf(event));
    this.lastWrite = write;
    // Only an allocation's answer waits for its write; the others' failures are logged once each batch.
    if (event.event !== 'allocate') write.catch((err: unknown) => this.log(`capa-gateway: ${(err as Error).message}`));
  }

  /** The journal's states back into the allocator; returns the live ones (oldest first). */
  private restore(): Allocation[] {
    const state = this.options.state;
    if (state === undefined) return [];
    const { live, holds, bindings } = state.restored;
    for (const hold of holds) this.allocator.restoreHoldDown(hold);
    for (const binding of bindings) this.inbound.restore(binding);
    const restored: Allocation[] = [];
    this.allocator.reserve(live.length);
    for (const s of live) {
      const allocation = this.allocator.restore(s);
      if (allocation) restored.push(allocation);
      else this.log(`capa-gateway: state journal: ${s.tuple.localAddress}:${s.tuple.localPort} for ${s.terminal} is outside the pool or taken twice; not restored`);
    }
    return restored;
  }

  private maybeCompact(): void {
    const journal = this.options.state?.journal;
    if (journal === undefined || this.compacting !== undefined) return;
    if (journal.tail < COMPACT_MIN_RECORDS || journal.tail < 2 * this.allocator.stats().live) return;
    this.compactBehind();
  }

  private compactBehind(): void {
    if (this.compacting !== undefined) return;
    this.compacting = this.compact()
      .catch((err: unknown) => this.log(`capa-gateway: state journal compaction failed (the journal keeps growing): ${(err as Error).message}`))
      .finally(() => { this.compacting = undefined; });
  }

  /** A snapshot of the live states and hold-downs starts the journal's next generation. */
  private compact(): Promise<void> {
    return this.options.state!.journal.compact(() => {
      const records: StateRecord[] = [];
      for (const hold of this.allocator.holdDowns()) records.push({ kind: 'hold', hold });
      for (const binding of this.inbound.bindings()) records.push({ kind: 'inbound', binding });
      for (const a of this.allocator.allocations()) {
        records.push({ kind: 'state', state: { terminal: a.terminal, tuple: a.tuple, createdAt: a.createdAt, complete: a.state === 'complete' } });
      }
      return records;
    });
  }

  /** One timer, set for the earliest lease end; leases are constant, so it rarely moves. */
  private scheduleExpiry(): void {
    const next = this.allocator.nextExpiry();
    if (next === undefined || next >= this.expiryAt) return;
    clearTimeout(this.expiryTimer);
    this.expiryAt = next;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.expiryAt = Infinity;
      this.expire().catch((err: unknown) => this.reportError(err));
    }, Math.min(Math.max(next - this.now(), 0), MAX_TIMER_MS));
    this.expiryTimer.unref();
  }
}
