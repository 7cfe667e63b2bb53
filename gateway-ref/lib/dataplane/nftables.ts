/**
 * The `nftables` data plane: the real relaying gateway (Linux, root, run inside the gateway's
 * network namespace). States become elements of nftables maps (nft-rules.ts), written through
 * one long-lived libnftables worker with coalesced batches; `ip rule fwmark` sends each
 * terminal link's packets through its own routing table; conntrack events start and end flows.
 */
import { CapaError } from '../../../resolver/lib/errors.js';
import { canonicalIp, ipFamily } from '../../../resolver/lib/ip.js';
import { unmapIPv4 } from '../dns/realm.js';
import type { Allocation, DataPlane, FlowEvents, InboundRoute, OutsideTuple, ProtoNumber } from '../grm/types.js';
import { runCommand } from './command.js';
import { type ConntrackEvent, ConntrackWatch, listFlows } from './conntrack.js';
import { BatchWriter, DEFAULT_MAX_BATCH_OPS } from './nft-batch.js';
import {
  DEFAULT_TABLE, type ElementOp, type MapElement, type NftLayout, type NftLink, type RuleEntry,
  checkLayout, REFLECT_SYSCTLS, inboundElement, partialMapName, renderElementOps, renderRouteCleanup, renderRoutes, renderRuleset, renderTeardown, stateElement, stateMapName,
} from './nft-rules.js';
import { NftSession } from './nft-session.js';

export interface NftablesOptions {
  links: NftLink[];
  /** Pool addresses (aOG), canonical, as given to the allocator. */
  pool: string[];
  /** The `inet` table this driver owns; default `capa`. */
  table?: string;
  /** Priority of the `ip rule fwmark` rules; every rule at it belongs to this driver. Default 1000. */
  rulePriority?: number;
  /** Run nft, ip and conntrack inside this network namespace (tools and tests outside it). */
  netns?: string;
  /** Watch conntrack for flow start and end; default true. */
  flowEvents?: boolean;
  maxBatchOps?: number;
  /**
   * A state removed while its flow still lives in conntrack (release on close, FIN still in
   * flight) stays until the flow's DESTROY, at most this long; default 30 000 ms.
   */
  drainMs?: number;
  /** Problems that do not fail a call (lost events, a failed background update); default stderr. */
  log?: (message: string) => void;
  /**
   * How often the kernel is compared with the GRM while running (conntrack's flows, the state
   * maps' elements), to catch what events missed; 0: never. Default 30 000 ms.
   */
  reconcileMs?: number;
}

export const DEFAULT_RULE_PRIORITY = 1000;
export const DEFAULT_DRAIN_MS = 30_000;
export const DEFAULT_RECONCILE_MS = 30_000;

const MISSING = /No such file or directory/;
const EXISTS = /File exists/;

/** Whether the rules at `priority` are exactly the `rule add` lines of `wanted` (their tables). */
function rulesInPlace(rules: readonly RuleEntry[], wanted: readonly string[], priority: number): boolean {
  const have = rules.filter((r) => r.priority === priority).map((r) => `${r.iif ?? ''} ${Number(r.fwmark ?? -1)} ${r.table ?? ''}`).sort();
  const want = wanted.filter((l) => l.startsWith('rule ')).map((l) => {
    const [, iif, fwmark, table] = /^rule add (?:iif (\S+) )?fwmark (\S+) table (\d+) /.exec(l) ?? [];
    return `${iif ?? ''} ${Number(fwmark ?? -1)} ${table ?? ''}`;
  }).sort();
  return have.length === want.length && have.every((t, i) => t === want[i]);
}

/** The complete and partial state maps, both protocols and families. */
const STATE_MAPS: readonly string[] = ([6, 17] as const).flatMap((proto) => ([4, 6] as const).flatMap((family) => [stateMapName(proto, family), partialMapName(proto, family)]));

/** The elements `nft -j list map` shows, as outside tuples and the elements to delete them by. */
function elementsOf(json: string, map: string): { tuple: OutsideTuple; element: MapElement }[] {
  const proto: ProtoNumber = map.includes('udp') ? 17 : 6;
  const out: { tuple: OutsideTuple; element: MapElement }[] = [];
  const parsed = JSON.parse(json) as { nftables?: { map?: { elem?: [{ concat: (string | number)[] }, number][] } }[] };
  for (const item of parsed.nftables ?? []) {
    for (const [key, mark] of item.map?.elem ?? []) {
      const parts = key.concat;
      const tuple: OutsideTuple = parts.length === 4
        ? { proto, remoteAddress: String(parts[0]), remotePort: Number(parts[1]), localAddress: String(parts[2]), localPort: Number(parts[3]) }
        : { proto, remoteAddress: String(parts[0]), remotePort: undefined, localAddress: String(parts[1]), localPort: Number(parts[2]) };
      out.push({ tuple, element: stateElement(tuple, mark) });
    }
  }
  return out;
}

/** The DESTROY event of a complete state's key (`<map> <aOB> . <pB> . <aOG> . <pA>`). */
function destroyOf(map: string, key: string): ConntrackEvent {
  const [dst, dport, src, sport] = key.split(' . ');
  return { kind: 'destroy', proto: map.includes('udp') ? 17 : 6, src: src!, dst: dst!, sport: Number(sport), dport: Number(dport) };
}

function elementKey(element: MapElement): string {
  return `${element.map} ${element.key}`;
}

export class NftablesDataPlane implements DataPlane {
  readonly name = 'nftables';
  private readonly layout: NftLayout;
  private readonly priority: number;
  private readonly linkOfTerminal = new Map<string, NftLink>();
  private readonly poolSet: Set<string>;
  private readonly log: (message: string) => void;
  private session: NftSession | undefined;
  private watch: ConntrackWatch | undefined;
  private events: FlowEvents | undefined;
  private readonly writer: BatchWriter;
  /** Partial states by allocation id, and their keys: complete states need no record (their element follows from the allocation). */
  private readonly partialById = new Map<number, MapElement>();
  private readonly partialByKey = new Map<string, number>();
  /** Keys of complete states whose flow conntrack has seen start and not yet end. */
  private readonly liveFlows = new Set<string>();
  /** Removed states waiting for their flow's end, by key. */
  private readonly draining = new Map<string, { element: MapElement; timer: NodeJS.Timeout }>();
  /** Complete states a restart put back, by key, until reconcile() has seen whether their flow runs. */
  private readonly restoredComplete = new Map<string, OutsideTuple>();
  private reconcileTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: NftablesOptions) {
    this.layout = { table: options.table ?? DEFAULT_TABLE, links: options.links, pool: options.pool };
    checkLayout(this.layout);
    this.priority = options.rulePriority ?? DEFAULT_RULE_PRIORITY;
    for (const link of options.links) for (const terminal of link.terminals) this.linkOfTerminal.set(canonicalIp(terminal), link);
    this.poolSet = new Set(options.pool);
    this.log = options.log ?? ((message) => process.stderr.write(`capa-gateway: nftables: ${message}\n`));
    this.writer = new BatchWriter((ops) => this.applyOps(ops), options.maxBatchOps ?? DEFAULT_MAX_BATCH_OPS);
  }

  /**
   * Replaces whatever an earlier run left with the table holding exactly `restored`, in one
   * transaction (a flow a restart took over never misses its element), keeps fwmark rules that
   * are already right, then watches conntrack.
   */
  async start(events: FlowEvents, restored: readonly Allocation[] = []): Promise<void> {
    if (this.session) throw new CapaError('ERR_CAPA_INVALID_ARG', 'the nftables data plane is already started');
    this.events = events;
    const session = await NftSession.open(this.options.netns);
    this.session = session;
    try {
      await session.run(renderRuleset(this.layout) + renderElementOps(this.layout.table, this.restoredOps(restored)));
      await this.resetRoutes(true);
      await runCommand(['sysctl', '-q', '-w', ...REFLECT_SYSCTLS], { netns: this.options.netns });
      const every = this.options.reconcileMs ?? DEFAULT_RECONCILE_MS;
      if (every > 0) {
        this.reconcileTimer = setInterval(() => {
          this.reconcile().catch((err: unknown) => this.log(`periodic reconcile failed: ${(err as Error).message}`));
        }, every);
        this.reconcileTimer.unref();
      }
      if (this.options.flowEvents ?? true) {
        this.watch = await ConntrackWatch.start({
          netns: this.options.netns,
          onEvent: (event) => this.onConntrack(event),
          onProblem: (message) => this.log(message),
        });
      }
    } catch (err) {
      await this.stop().catch(() => undefined);
      throw err;
    }
  }

  /** Resolves once the element is in the kernel: the CAPA answer may leave. */
  async install(allocation: Allocation): Promise<void> {
    const element = stateElement(allocation.tuple, this.linkOf(allocation.terminal).mark);
    this.requireStarted();
    const partial = allocation.tuple.remotePort === undefined;
    if (partial) this.trackPartial(allocation.id, element);
    // The same tuple may still be draining (hold-down shorter than the drain): take it over.
    const drained = this.undrain(elementKey(element));
    const ops: ElementOp[] = drained ? [{ action: 'delete', element: drained }] : [];
    ops.push({ action: 'add', element });
    try {
      await this.writer.submit({ ops });
    } catch (err) {
      if (partial) this.untrackPartial(allocation.id);
      throw err;
    }
  }

  async remove(allocation: Allocation): Promise<void> {
    this.requireStarted();
    const element = this.partialById.get(allocation.id) ?? stateElement(allocation.tuple, this.linkOf(allocation.terminal).mark);
    this.untrackPartial(allocation.id);
    const key = elementKey(element);
    if (this.liveFlows.has(key) && !this.draining.has(key)) {
      const timer = setTimeout(() => this.endDrain(key), this.options.drainMs ?? DEFAULT_DRAIN_MS);
      timer.unref();
      this.draining.set(key, { element, timer });
      return;
    }
    await this.delete(element);
  }

  /** Installs or renews an inbound binding; the kernel drops it after ttlMs unless renewed. */
  async routeInbound(route: InboundRoute): Promise<void> {
    this.requireStarted();
    const terminal = canonicalIp(unmapIPv4(route.terminal));
    this.linkOf(terminal);
    const element = inboundElement(canonicalIp(route.querier), canonicalIp(route.poolAddress), terminal);
    const add: ElementOp = { action: 'add', element, timeoutMs: route.ttlMs };
    // The same key still bound to another terminal (the GRM's binding ended first): replace it.
    await this.writer.submit({ ops: [add], fallback: { when: EXISTS, ops: [{ action: 'delete', element }, add] } });
  }

  /**
   * Conntrack's running flows: each of the pool starts its state (as its NEW event would have);
   * a restored complete state with no flow any more ends.
   */
  async reconcile(): Promise<void> {
    this.requireStarted();
    const running = new Set<string>();
    const seen = new Set(this.liveFlows);
    for (const flow of await listFlows(this.options.netns)) {
      if (!this.poolSet.has(flow.src)) continue;
      const key = elementKey(stateElement({ proto: flow.proto, remoteAddress: flow.dst, remotePort: flow.dport, localAddress: flow.src, localPort: flow.sport }, 0));
      running.add(key);
      if (!this.liveFlows.has(key)) this.onConntrack(flow);
    }
    for (const [key, tuple] of this.restoredComplete) if (!running.has(key)) this.events?.flowEnded(tuple);
    this.restoredComplete.clear();
    // Flows conntrack no longer has, whose DESTROY never came (the event buffer overflowed).
    for (const key of seen) {
      if (running.has(key) || !this.liveFlows.has(key)) continue;
      const [map, ...fields] = key.split(' ');
      this.onConntrack(destroyOf(map!, fields.join(' ')));
      this.events?.mended?.('flow-gone');
    }
    await this.removeOrphans();
  }

  /** Elements of the state maps that no GRM state owns (a lost removal) go. */
  private async removeOrphans(): Promise<void> {
    const known = this.events?.known;
    if (known === undefined) return;
    const orphans: ElementOp[] = [];
    for (const map of this.layout.pool.length > 0 ? STATE_MAPS : []) {
      const listed = await runCommand(['nft', '-j', 'list', 'map', 'inet', this.layout.table, map], { netns: this.options.netns, allowFailure: true });
      if (listed.code !== 0) continue;
      for (const { tuple, element } of elementsOf(listed.stdout, map)) {
        if (!known(tuple) && !this.draining.has(elementKey(element))) orphans.push({ action: 'delete', element });
      }
    }
    if (orphans.length === 0) return;
    await this.writer.submit({ ops: orphans, fallback: { when: MISSING, ops: [] } });
    for (let i = 0; i < orphans.length; i++) this.events?.mended?.('orphan-element');
  }

  /** Removes everything start() installed, unless `keepStates`: then the kernel keeps relaying for the next start. */
  async stop(options: { keepStates?: boolean } = {}): Promise<void> {
    const session = this.session;
    if (session === undefined) return;
    clearInterval(this.reconcileTimer);
    this.reconcileTimer = undefined;
    await this.watch?.stop();
    this.watch = undefined;
    for (const key of [...this.draining.keys()]) this.undrain(key);
    this.liveFlows.clear();
    this.restoredComplete.clear();
    await this.writer.idle();
    try {
      if (!(options.keepStates ?? false)) {
        await session.run(renderTeardown(this.layout.table));
        await this.resetRoutes(false);
      }
    } finally {
      this.session = undefined;
      this.partialById.clear();
      this.partialByKey.clear();
      await session.close();
    }
  }

  /** The restored states as element additions (those of a terminal without a link left out, and said). */
  private restoredOps(restored: readonly Allocation[]): ElementOp[] {
    const ops: ElementOp[] = [];
    for (const allocation of restored) {
      let element: MapElement;
      try {
        element = stateElement(allocation.tuple, this.linkOf(allocation.terminal).mark);
      } catch (err) {
        this.log(`restored state of ${allocation.terminal} not installed: ${(err as Error).message}`);
        continue;
      }
      if (allocation.tuple.remotePort === undefined) this.trackPartial(allocation.id, element);
      else if (allocation.state === 'complete') this.restoredComplete.set(elementKey(stateElement(allocation.tuple, 0)), allocation.tuple);
      ops.push({ action: 'add', element });
    }
    return ops;
  }

  private delete(element: MapElement): Promise<void> {
    // Already gone (never installed, or removed twice) is what a delete wants.
    return this.writer.submit({ ops: [{ action: 'delete', element }], fallback: { when: MISSING, ops: [] } });
  }

  /** Stops waiting for a draining state's flow; returns its element, still installed. */
  private undrain(key: string): MapElement | undefined {
    const entry = this.draining.get(key);
    if (entry === undefined) return undefined;
    clearTimeout(entry.timer);
    this.draining.delete(key);
    return entry.element;
  }

  private endDrain(key: string): void {
    const element = this.undrain(key);
    if (element) this.delete(element).catch((err: unknown) => this.log(`could not remove the state ${key}: ${(err as Error).message}`));
  }

  private requireStarted(): void {
    if (this.session === undefined) throw new CapaError('ERR_CAPA_INVALID_ARG', 'the nftables data plane is not started');
  }

  private linkOf(terminal: string): NftLink {
    const known = this.linkOfTerminal.get(terminal);
    if (known) return known;
    const plain = unmapIPv4(terminal);
    const link = ipFamily(plain) === 0 ? undefined : this.linkOfTerminal.get(canonicalIp(plain));
    if (link === undefined) {
      throw new CapaError('ERR_CAPA_CONFIG', `no terminal link is configured for ${terminal}; give it one (e.g. --nft-link ${plain}=<gateway-side interface>)`);
    }
    // Requester addresses come in whatever form the socket gave; normalise each form once.
    this.linkOfTerminal.set(terminal, link);
    return link;
  }

  private applyOps(ops: readonly ElementOp[]): Promise<void> {
    const session = this.session;
    if (session === undefined) return Promise.reject(new CapaError('ERR_CAPA_INVALID_ARG', 'the nftables data plane is stopped'));
    return session.run(renderElementOps(this.layout.table, ops));
  }

  /**
   * Removes every fwmark rule at our priority and the tables they used; with `install`, adds
   * ours. Rules that are already ours (a restart) stay, so marked flows never lose their route.
   */
  private async resetRoutes(install: boolean): Promise<void> {
    const routes = renderRoutes(this.layout.links, this.priority);
    for (const family of [4, 6] as const) {
      const flag = `-${family}`;
      const shown = await runCommand(['ip', flag, '-j', 'rule', 'show'], { netns: this.options.netns });
      const rules = JSON.parse(shown.stdout.trim() || '[]') as RuleEntry[];
      const inPlace = install && rulesInPlace(rules, routes[family], this.priority);
      const cleanup = inPlace ? [] : renderRouteCleanup(rules, this.priority);
      // -force: a table that is already empty must not stop the rest.
      if (cleanup.length > 0) await runCommand(['ip', flag, '-force', '-batch', '-'], { netns: this.options.netns, input: `${cleanup.join('\n')}\n`, allowFailure: true });
      const lines = inPlace ? routes[family].filter((l) => !l.startsWith('rule ')) : routes[family];
      if (install && lines.length > 0) {
        await runCommand(['ip', flag, '-batch', '-'], { netns: this.options.netns, input: `${lines.join('\n')}\n` });
      }
    }
  }

  private trackPartial(id: number, element: MapElement): void {
    this.partialById.set(id, element);
    this.partialByKey.set(elementKey(element), id);
  }

  private untrackPartial(id: number): void {
    const element = this.partialById.get(id);
    if (element === undefined) return;
    this.partialById.delete(id);
    this.partialByKey.delete(elementKey(element));
  }

  /** Flows from the pool only: the original direction is (aOG, pA) -> (aOB, pB). */
  private onConntrack(event: ConntrackEvent): void {
    if (!this.poolSet.has(event.src) || this.events === undefined) return;
    const tuple: OutsideTuple = { proto: event.proto, remoteAddress: event.dst, remotePort: event.dport, localAddress: event.src, localPort: event.sport };
    const key = elementKey(stateElement(tuple, 0));
    if (event.kind === 'destroy') {
      this.liveFlows.delete(key);
      this.endDrain(key);
      this.events.flowEnded(tuple);
      return;
    }
    this.narrowPartial(tuple);
    this.liveFlows.add(key);
    this.events.flowStarted(tuple);
  }

  /** The first packet fixed pB: the partial element gives way to the complete one, so other pB are free again. */
  private narrowPartial(tuple: OutsideTuple): void {
    const partialKey = elementKey(stateElement({ ...tuple, remotePort: undefined }, 0));
    const id = this.partialByKey.get(partialKey);
    if (id === undefined) return;
    const partial = this.partialById.get(id)!;
    this.untrackPartial(id);
    const complete = stateElement(tuple, Number(partial.value));
    this.writer.submit({ ops: [{ action: 'delete', element: partial }, { action: 'add', element: complete }] })
      .catch((err: unknown) => this.log(`could not complete the partial state ${partialKey}: ${(err as Error).message}`));
  }
}
