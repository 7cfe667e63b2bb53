/**
 * The `nftables` data plane: the real relaying gateway (Linux, root, run inside the gateway's
 * network namespace). States become elements of nftables maps (nft-rules.ts), written through
 * one long-lived libnftables worker with coalesced batches; `ip rule fwmark` sends each
 * terminal link's packets through its own routing table; conntrack events start and end flows.
 * A restart's states go in through the addon in bulk (nft-records.ts), into the table an earlier
 * run left when its layout is the same (flows never miss their element), else a new one.
 */
import { closeSync } from 'node:fs';
import { CapaError } from '../../../resolver/codec/errors.js';
import { canonicalIp, ipFamily } from '../../../resolver/codec/ip.js';
import { unmapIPv4 } from '../../../resolver/codec/ip.js';
import type { Allocation, DataPlane, FlowEvents, InboundRoute, OutsideTuple, RestoringState } from '../grm/types.js';
import { runCommand, runCommandSync } from './command.js';
import { type ConntrackEvent, ConntrackWatch, listFlows } from './conntrack.js';
import { BatchWriter, DEFAULT_MAX_BATCH_OPS } from './nft-batch.js';
import {
  DEFAULT_TABLE, type ElementOp, type MapElement, type NftLayout, type NftLink, type RuleEntry,
  checkLayout, REFLECT_SYSCTLS, inboundElement, layoutFingerprint, renderElementOps, renderRouteCleanup, renderRoutes, renderRuleset, renderTeardown, stateElement,
} from './nft-rules.js';
import { elementsOf, ElementRecords, setOf, STATE_MAP_LAYOUTS } from './nft-records.js';
import { NftSession } from './nft-session.js';
import { nftApply, nftDump, nftOpen, nftTableComment } from '../../../native/addon/index.js';

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
/**
 * Above this many states the reconcile does not read the maps back for elements no state owns:
 * the kernel walks a set from its start for every chunk of a dump (O(n^2); 50 s for 1M here).
 */
export const ORPHAN_SCAN_MAX = 200_000;


/** Whether the rules at `priority` are exactly the `rule add` lines of `wanted` (their tables). */
function rulesInPlace(rules: readonly RuleEntry[], wanted: readonly string[], priority: number): boolean {
  const have = rules.filter((r) => r.priority === priority).map((r) => `${r.iif ?? ''} ${Number(r.fwmark ?? -1)} ${r.table ?? ''}`).sort();
  const want = wanted.filter((l) => l.startsWith('rule ')).map((l) => {
    const [, iif, fwmark, table] = /^rule add (?:iif (\S+) )?fwmark (\S+) table (\d+) /.exec(l) ?? [];
    return `${iif ?? ''} ${Number(fwmark ?? -1)} ${table ?? ''}`;
  }).sort();
  return have.length === want.length && have.every((t, i) => t === want[i]);
}

const sameTuple = (a: OutsideTuple, b: OutsideTuple): boolean => a.localPort === b.localPort && a.remotePort === b.remotePort
  && a.proto === b.proto && a.localAddress === b.localAddress && a.remoteAddress === b.remoteAddress;

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
  /** The addon's nfnetlink socket, for bulk loads and read-backs. */
  private nft: number | undefined;
  /** preload()'s bulk load, which start() waits for. */
  private loading: Promise<void> | undefined;
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
  /** Complete states a restart put back, until reconcile() has seen whether their flow runs. */
  private restoredComplete: OutsideTuple[] = [];
  private reconcileTimer: NodeJS.Timeout | undefined;
  private reconciling = false;
  /** About how many state elements the maps hold (installs less removals): whether a read-back is affordable. */
  private elements = 0;
  private toldScanSkipped = false;

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
   * Keeps the table an earlier run left when its layout is this one (its elements go on relaying
   * flows; a restored state's element is added where missing, one the kernel holds for another
   * link is left as it is), else replaces it, and hands the states' elements to a thread of the
   * pool to load. Synchronous up to that hand-off (a new table's ruleset goes in with nft -f), so
   * the kernel's work overlaps whatever the caller does next.
   */
  preload(states: readonly RestoringState[]): void {
    if (this.loading || this.session) throw new CapaError('ERR_CAPA_INVALID_ARG', 'the nftables data plane is already started');
    this.nft = nftOpen(this.options.netns);
    const kept = this.layoutInPlace();
    if (!kept) {
      runCommandSync(['nft', '-f', '-'], { netns: this.options.netns, input: renderRuleset(this.layout) });
    }
    const records = new ElementRecords();
    for (const state of states) {
      const mark = this.markOf(state.terminal);
      if (mark !== undefined) records.add(state.tuple, mark);
    }
    this.loading = Promise.all(records.maps().map(async ({ map, records: bytes }) => {
      const { applied, conflicts } = await nftApply(this.nft!, setOf(this.layout.table, map), 'add', bytes, kept);
      this.elements += applied + conflicts;
      if (conflicts > 0) this.log(`${conflicts} restored states of ${map.name} are held in the kernel for another link; the kernel's elements kept`);
    })).then(() => undefined);
  }

  /**
   * Starts with `restored` in the kernel (loaded by preload(), or now), keeps fwmark rules that
   * are already right, then watches conntrack. Kernel elements no state owns go at the first
   * reconcile (reading a large map back is slow; an install takes such an element over).
   */
  async start(events: FlowEvents, restored: readonly Allocation[] = []): Promise<void> {
    if (this.session) throw new CapaError('ERR_CAPA_INVALID_ARG', 'the nftables data plane is already started');
    this.events = events;
    try {
      if (this.loading === undefined) this.preload(restored);
      this.session = await NftSession.open(this.options.netns);
      await this.loading;
      this.track(restored);
      await this.resetRoutes(true);
      await runCommand(['sysctl', '-q', '-w', ...REFLECT_SYSCTLS], { netns: this.options.netns });
      const every = this.options.reconcileMs ?? DEFAULT_RECONCILE_MS;
      if (every > 0) {
        this.reconcileTimer = setInterval(() => {
          if (this.reconciling) return;
          this.reconciling = true;
          this.reconcile()
            .catch((err: unknown) => this.log(`periodic reconcile failed: ${(err as Error).message}`))
            .finally(() => { this.reconciling = false; });
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
    this.elements++;
    try {
      // The allocator found the tuple free, so an element the kernel still holds for it is stale
      // (left by a run that did not journal it): the new state takes it over.
      await this.writer.submit({ ops, fallback: { when: 'EEXIST', ops: [{ action: 'delete', element }, { action: 'add', element }] } });
    } catch (err) {
      this.elements--;
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
    await this.writer.submit({ ops: [add], fallback: { when: 'EEXIST', ops: [{ action: 'delete', element }, add] } });
  }

  /**
   * Conntrack's running flows: each of the pool starts its state (as its NEW event would have);
   * a restored complete state with no flow any more ends.
   */
  async reconcile(): Promise<void> {
    this.requireStarted();
    const running = new Set<string>();
    /** The running flows' tuples by pA: a restart's million restored states are looked up without a key string each. */
    const runningAt = new Map<number, OutsideTuple[]>();
    const seen = new Set(this.liveFlows);
    for (const flow of await listFlows(this.options.netns)) {
      if (!this.poolSet.has(flow.src)) continue;
      const tuple: OutsideTuple = { proto: flow.proto, remoteAddress: flow.dst, remotePort: flow.dport, localAddress: flow.src, localPort: flow.sport };
      const key = elementKey(stateElement(tuple, 0));
      running.add(key);
      const at = runningAt.get(tuple.localPort);
      if (at === undefined) runningAt.set(tuple.localPort, [tuple]);
      else at.push(tuple);
      if (!this.liveFlows.has(key)) this.onConntrack(flow);
    }
    for (const tuple of this.restoredComplete) {
      if (!runningAt.get(tuple.localPort)?.some((f) => sameTuple(f, tuple))) this.events?.flowEnded(tuple);
    }
    this.restoredComplete = [];
    // Flows conntrack no longer has, whose DESTROY never came (the event buffer overflowed).
    for (const key of seen) {
      if (running.has(key) || !this.liveFlows.has(key)) continue;
      const [map, ...fields] = key.split(' ');
      this.onConntrack(destroyOf(map!, fields.join(' ')));
      this.events?.mended?.('flow-gone');
    }
    await this.removeOrphans();
  }

  /** Elements of the state maps that no GRM state owns (a lost removal, a run that did not journal them) go. */
  private async removeOrphans(): Promise<void> {
    const known = this.events?.known;
    if (known === undefined || this.nft === undefined) return;
    if (this.elements > ORPHAN_SCAN_MAX) {
      if (!this.toldScanSkipped) this.log(`about ${this.elements} states: too many to read the maps back for elements no state owns (over ${ORPHAN_SCAN_MAX}); an install takes such an element over`);
      this.toldScanSkipped = true;
      return;
    }
    const orphans: ElementOp[] = [];
    for (const map of this.layout.pool.length > 0 ? STATE_MAP_LAYOUTS : []) {
      for (const { tuple, mark } of elementsOf(map, await nftDump(this.nft, setOf(this.layout.table, map)))) {
        const element = stateElement(tuple, mark);
        if (!known(tuple) && !this.draining.has(elementKey(element))) orphans.push({ action: 'delete', element });
      }
    }
    if (orphans.length === 0) return;
    await this.writer.submit({ ops: orphans, fallback: { when: 'ENOENT', ops: [] } });
    this.elements -= orphans.length;
    for (let i = 0; i < orphans.length; i++) this.events?.mended?.('orphan-element');
  }

  /** Removes everything start() installed, unless `keepStates`: then the kernel keeps relaying for the next start. */
  async stop(options: { keepStates?: boolean } = {}): Promise<void> {
    const session = this.session;
    if (session === undefined) {
      await this.loading?.catch(() => undefined);
      this.closeNft();
      return;
    }
    clearInterval(this.reconcileTimer);
    this.reconcileTimer = undefined;
    await this.watch?.stop();
    this.watch = undefined;
    for (const key of [...this.draining.keys()]) this.undrain(key);
    this.liveFlows.clear();
    this.restoredComplete = [];
    await this.writer.idle();
    try {
      if (!(options.keepStates ?? false)) {
        await session.run(renderTeardown(this.layout.table));
        await this.resetRoutes(false);
      }
    } finally {
      this.session = undefined;
      this.closeNft();
      this.partialById.clear();
      this.partialByKey.clear();
      this.elements = 0;
      await session.close();
    }
  }

  private closeNft(): void {
    if (this.nft !== undefined) closeSync(this.nft);
    this.nft = undefined;
    this.loading = undefined;
  }

  /** Is the table an earlier run left here of this layout (its fingerprint is its comment)? */
  private layoutInPlace(): boolean {
    return nftTableComment(this.nft!, this.layout.table) === layoutFingerprint(this.layout);
  }

  /** The mark of a restored state's terminal's link; undefined (and said) for a terminal without a link. */
  private markOf(terminal: string): number | undefined {
    try {
      return this.linkOf(terminal).mark;
    } catch (err) {
      this.log(`restored state of ${terminal} not installed: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** Restored partial states are tracked by id; complete ones wait for the first reconcile to see their flows. */
  private track(restored: readonly Allocation[]): void {
    for (const allocation of restored) {
      let link: NftLink;
      try {
        link = this.linkOf(allocation.terminal);
      } catch {
        continue; // not loaded either; preload() said so
      }
      if (allocation.tuple.remotePort === undefined) this.trackPartial(allocation.id, stateElement(allocation.tuple, link.mark));
      else if (allocation.state === 'complete') this.restoredComplete.push(allocation.tuple);
    }
  }

  private delete(element: MapElement): Promise<void> {
    this.elements--;
    // Already gone (never installed, or removed twice) is what a delete wants.
    return this.writer.submit({ ops: [{ action: 'delete', element }], fallback: { when: 'ENOENT', ops: [] } });
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
