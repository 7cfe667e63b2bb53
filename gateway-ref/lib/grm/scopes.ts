/**
 * Uniqueness scopes. A destination (proto, aOB, pB) holds the ports its complete states use on
 * each aOG; its host (proto, aOB) holds the ports of partial states (pB unknown), which block
 * every pB, and the union over all its destinations, which a new partial state must avoid.
 * Complete and partial ports on one (host, aOG) are disjoint, so the ports free for a destination
 * are those in neither its own set nor its host's partial set, and likewise for a partial state.
 * Held-down ports stay members until their hold-down ends.
 */
import { isIP } from 'node:net';
import { invalidArg } from '../../../resolver/codec/errors.js';
import { canonicalIp } from '../../../resolver/codec/ip.js';
import { PortMultiset, PortSet } from './port-set.js';
import type { ProtoNumber } from './types.js';

export abstract class Scope {
  /** Ports in use (live or held down) by pool index. */
  readonly sets = new Map<number, PortSet>();
  /** Sum of the sets' sizes. */
  total = 0;
  /** Live states and held-down ports that name this scope. */
  refs = 0;

  constructor(readonly idx: number) {}

  abstract readonly host: HostScope;
  /** pB, or undefined for a host's partial states. */
  abstract readonly remotePort: number | undefined;
  /** The other scope's ports that this one must avoid on a pool address. */
  abstract blocking(address: number): PortSet | undefined;
  /** How many of those there are over all pool addresses. */
  abstract blockingTotal(): number;

  occupy(address: number, port: number): void {
    let set = this.sets.get(address);
    if (!set) this.sets.set(address, (set = new PortSet()));
    set.add(port);
    this.total++;
  }

  vacate(address: number, port: number): void {
    const set = this.sets.get(address)!;
    set.delete(port);
    this.total--;
    if (set.size === 0) this.sets.delete(address);
  }

  /** Ports of `address` unavailable here: own ones plus blocking ones (disjoint). */
  taken(address: number): number {
    return (this.sets.get(address)?.size ?? 0) + (this.blocking(address)?.size ?? 0);
  }
}

export class HostScope extends Scope {
  readonly destinations = new Map<number, DestinationScope>();
  /**
   * Ports used by any destination of this host, per pool address: what a new partial state must
   * avoid. Built at the host's first partial request and kept up to date from then on, so hosts
   * only ever reached with a known pB never pay for it.
   */
  private union: Map<number, PortMultiset> | undefined;
  /** Distinct ports in `union`, over all pool addresses. */
  private unionTotal = 0;

  constructor(
    idx: number,
    readonly proto: ProtoNumber,
    readonly address: string,
    readonly family: 4 | 6,
  ) {
    super(idx);
  }

  get host(): HostScope {
    return this;
  }

  get remotePort(): undefined {
    return undefined;
  }

  blocking(address: number): PortSet | undefined {
    return this.trackedUnion().get(address)?.distinct;
  }

  blockingTotal(): number {
    this.trackedUnion();
    return this.unionTotal;
  }

  unionAdd(address: number, port: number): void {
    if (!this.union) return;
    let ports = this.union.get(address);
    if (!ports) this.union.set(address, (ports = new PortMultiset()));
    const before = ports.distinct.size;
    ports.add(port);
    this.unionTotal += ports.distinct.size - before;
  }

  unionDelete(address: number, port: number): void {
    if (!this.union) return;
    const ports = this.union.get(address)!;
    const before = ports.distinct.size;
    ports.delete(port);
    this.unionTotal += ports.distinct.size - before;
    if (ports.distinct.size === 0) this.union.delete(address);
  }

  private trackedUnion(): Map<number, PortMultiset> {
    if (this.union) return this.union;
    this.union = new Map();
    for (const destination of this.destinations.values()) {
      for (const [address, ports] of destination.sets) for (const port of ports.ports()) this.unionAdd(address, port);
    }
    return this.union;
  }

  get unused(): boolean {
    return this.refs === 0 && this.destinations.size === 0;
  }
}

export class DestinationScope extends Scope {
  constructor(
    idx: number,
    readonly host: HostScope,
    readonly remotePort: number,
  ) {
    super(idx);
  }

  blocking(address: number): PortSet | undefined {
    return this.host.sets.get(address);
  }

  blockingTotal(): number {
    return this.host.total;
  }

  override occupy(address: number, port: number): void {
    super.occupy(address, port);
    this.host.unionAdd(address, port);
  }

  override vacate(address: number, port: number): void {
    super.vacate(address, port);
    this.host.unionDelete(address, port);
  }
}

/** Scopes by key and by index; a scope lives while some state or held-down port names it. */
export class ScopeRegistry {
  /** Hosts by protocol, then by canonical address (no key strings to build on each lookup). */
  private readonly tcp = new Map<string, HostScope>();
  private readonly udp = new Map<string, HostScope>();
  private readonly byIdx: (Scope | undefined)[] = [];
  private readonly freeIdx: number[] = [];
  private destinationCount = 0;

  get hostCount(): number {
    return this.tcp.size + this.udp.size;
  }

  get destinations(): number {
    return this.destinationCount;
  }

  get(idx: number): Scope {
    return this.byIdx[idx]!;
  }

  /** The host scope of (proto, address), if any state names it. Never throws. */
  findHost(proto: number, address: string): HostScope | undefined {
    const hosts = proto === 6 ? this.tcp : proto === 17 ? this.udp : undefined;
    const host = hosts?.get(address);
    if (host || !hosts || isIP(address) === 0) return host;
    // Non-canonical spellings of an address name the same host.
    const canonical = canonicalIp(address);
    return canonical === address ? undefined : hosts.get(canonical);
  }

  /** The host scope of (proto, address), created (after validation) if missing. */
  host(proto: ProtoNumber, address: string): HostScope {
    const found = this.findHost(proto, address);
    if (found) return found;
    if (proto !== 6 && proto !== 17) throw invalidArg(`protocol must be 6 (TCP) or 17 (UDP), got ${String(proto)}`);
    const family = typeof address === 'string' ? isIP(address) : 0;
    if (family === 0) throw invalidArg(`destination address is not an IP address: "${String(address)}"`);
    const canonical = canonicalIp(address);
    const host = new HostScope(this.nextIdx(), proto, canonical, family as 4 | 6);
    (proto === 6 ? this.tcp : this.udp).set(canonical, host);
    this.byIdx[host.idx] = host;
    return host;
  }

  /** The destination scope of (host, pB), created (after validation) if missing. */
  destination(host: HostScope, remotePort: number): DestinationScope {
    const found = host.destinations.get(remotePort);
    if (found) return found;
    if (!Number.isInteger(remotePort) || remotePort < 1 || remotePort > 65535) {
      this.dropIfUnused(host);
      throw invalidArg(`destination port must be an integer 1-65535, got ${String(remotePort)}`);
    }
    const destination = new DestinationScope(this.nextIdx(), host, remotePort);
    host.destinations.set(remotePort, destination);
    this.byIdx[destination.idx] = destination;
    this.destinationCount++;
    return destination;
  }

  /** Forgets a scope (and then its host) once nothing names it. */
  dropIfUnused(scope: Scope): void {
    if (scope instanceof DestinationScope) {
      if (scope.refs > 0) return;
      scope.host.destinations.delete(scope.remotePort);
      this.destinationCount--;
      this.forget(scope);
    }
    const host = scope.host;
    if (!host.unused) return;
    (host.proto === 6 ? this.tcp : this.udp).delete(host.address);
    this.forget(host);
  }

  private forget(scope: Scope): void {
    this.byIdx[scope.idx] = undefined;
    this.freeIdx.push(scope.idx);
  }

  private nextIdx(): number {
    return this.freeIdx.pop() ?? this.byIdx.length;
  }
}
