/**
 * The GRM's vocabulary, shared by the allocator (pure core), the DNS front end and the data
 * planes. Times are milliseconds from an injected clock.
 */

/** IANA protocol number: 6 TCP, 17 UDP. */
export type ProtoNumber = 6 | 17;

/** Where a terminal wants to go. `port` undefined: destination port unknown (partial state). */
export interface Destination {
  proto: ProtoNumber;
  /** aOB: the outside host's address (IPv4 or IPv6 text, canonical). */
  address: string;
  /** pB, or undefined for a bare-host query. */
  port?: number;
}

/** (proto, aOB, pB, aOG, pA); pB undefined for a partial state. */
export interface OutsideTuple {
  proto: ProtoNumber;
  remoteAddress: string;
  remotePort: number | undefined;
  localAddress: string;
  localPort: number;
}

export type AllocationState = 'pending' | 'complete';

export interface Allocation {
  /** Unique while the allocation lives; stable handle for confirm/release. */
  id: number;
  /** The inside terminal that owns it (its inside address). */
  terminal: string;
  tuple: OutsideTuple;
  state: AllocationState;
  /** When a pending allocation is reclaimed (lease end); Infinity once complete. */
  leaseExpiresAt: number;
  createdAt: number;
}

export type PortStrategy = 'random' | 'sequential';

export interface AllocatorOptions {
  /** Pool of outside addresses (aOG), canonical text, in rotation order. */
  pool: string[];
  portStrategy?: PortStrategy; // default 'random'
  /** Most live allocations per terminal; default Infinity. */
  quota?: number;
  /** Lease of a pending allocation; default 30 000 ms. */
  leaseMs?: number;
  /** Hold-down before a released (aOG, pA) is reissued for the same destination; default 60 000 ms. */
  holdDownMs?: number;
  /** Injected clock (ms); default Date.now. */
  now?: () => number;
  /** Injected randomness in [0, 1); default crypto-backed. */
  random?: () => number;
}

export type AllocationEventKind = 'allocate' | 'confirm' | 'release' | 'expire';

/** One line of the operators' JSON-lines journal. */
export interface AllocationEvent {
  event: AllocationEventKind;
  time: number;
  terminal: string;
  tuple: OutsideTuple;
}

/**
 * A gateway data plane: makes allocated states real (or, for `loopback`, only watches them).
 * install() resolves once the state is in place, before the CAPA answer leaves the GRM.
 */
export interface DataPlane {
  readonly name: string;
  /**
   * Starts with `restored` in place: the states a restarted GRM put back (a complete one is a
   * flow believed running). Whatever an earlier run left that is not among them goes.
   */
  start(events: FlowEvents, restored?: readonly Allocation[]): Promise<void>;
  /**
   * Begins putting a restart's states into the kernel (synchronously handing the work to another
   * thread) before the allocator takes them back, so the two overlap; start() waits for it and
   * is then given the same states as allocations. Absent where there is nothing to load.
   */
  preload?(states: readonly RestoringState[]): void;
  install(allocation: Allocation): Promise<void>;
  remove(allocation: Allocation): Promise<void>;
  /** Stops; the kernel's states are removed unless `keepStates` (a restart will take them over). */
  stop(options?: { keepStates?: boolean }): Promise<void>;
  /**
   * One look at the kernel's flows, reported as events: a state's flow that runs starts it (if
   * it had not), a complete state whose flow is gone ends. Absent where events see everything.
   */
  reconcile?(): Promise<void>;
  /**
   * Inbound path (DESIGN.md "Inbound"): `querier`'s packets to `poolAddress` go to `terminal`
   * until ttlMs passes without a renewal. Resolves once in place, before the A/AAAA answer
   * leaves. Absent where the kernel routes everything (loopback).
   */
  routeInbound?(route: InboundRoute): Promise<void>;
}

/** A state a restart puts back, as the state journal holds it. */
export interface RestoringState {
  terminal: string;
  tuple: OutsideTuple;
}

/** One inbound binding as the data plane installs it. */
export interface InboundRoute {
  querier: string;
  poolAddress: string;
  terminal: string;
  ttlMs: number;
}

/** What a reconcile found and put right: a flow gone whose end no event reported, a kernel element no state owns, a flow no state named. */
export type MendKind = 'flow-gone' | 'orphan-element' | 'adopted-flow';

/** What a data plane reports back to the GRM. */
export interface FlowEvents {
  /** The flow's first packet / pinned socket was seen: pending -> complete (pB filled for partial states). */
  flowStarted(tuple: OutsideTuple): void;
  /** The flow ended (socket gone, conntrack DESTROY). */
  flowEnded(tuple: OutsideTuple): void;
  /** Whether the GRM holds a state for the tuple (a reconcile removes kernel elements it does not). */
  known?(tuple: OutsideTuple): boolean;
  /** A reconcile put something right (counted in the metrics). */
  mended?(kind: MendKind): void;
  /**
   * A flow the kernel carries from a pool address that no state names (its record lost): the GRM
   * takes it as a complete state, so its tuple is not handed out again.
   */
  adopt?(tuple: OutsideTuple): void;
  /**
   * The ports the host itself holds for `proto` on every `family` pool address, as a read just
   * found them (loopback: wildcard-bound sockets, which take the port from every local address).
   */
  hostPorts?(proto: ProtoNumber, family: 4 | 6, ports: readonly number[]): void;
}

/** What a release UPDATE found: the allocation ended, none matched, or it is another terminal's. */
export type ReleaseOutcome = 'released' | 'absent' | 'not-owner';
