/**
 * Prometheus metrics of the gateway, in a registry of its own (not prom-client's global one, so
 * several gateways in one process, as in tests, do not collide), and the /metrics HTTP shell.
 */
import http from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import type { AllocationEvent, MendKind } from './grm/types.js';

export type BlockReason = 'exhausted' | 'quota';

/** Ports 1024-65535 of one pool address: the most states one destination can hold per address. */
const PORTS_PER_ADDRESS = 65536 - 1024;

export interface StateCounts {
  pending: number;
  complete: number;
  poolAddresses: number;
}

const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE'];

const EVENTS: readonly AllocationEvent['event'][] = ['allocate', 'confirm', 'release', 'expire'];
const BLOCK_REASONS: readonly BlockReason[] = ['exhausted', 'quota'];
const MEND_KINDS: readonly MendKind[] = ['flow-gone', 'orphan-element', 'adopted-flow'];

/**
 * The hot path only adds to plain numbers; prom-client's counters are set from them when
 * scraped (a labelled inc() hashes its labels on every response).
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly eventCounts = new Map<string, number>(EVENTS.map((e) => [e, 0]));
  private readonly blockCounts = new Map<string, number>(BLOCK_REASONS.map((r) => [r, 0]));
  private readonly mendCounts = new Map<string, number>(MEND_KINDS.map((k) => [k, 0]));
  /** By the header's 4-bit rcode. */
  private readonly rcodeCounts = new Array<number>(16).fill(0);

  /** `states` is read at each scrape, so the gauges never drift from the allocator. */
  constructor(states: () => StateCounts) {
    const registers = [this.registry];
    const { eventCounts, blockCounts, mendCounts, rcodeCounts } = this;
    new Counter({
      name: 'capa_allocation_events_total',
      help: 'Allocation lifecycle events: allocate, confirm (pending -> complete), release, expire (lease ended while pending).',
      labelNames: ['event'],
      registers,
      collect() {
        this.reset();
        for (const [event, n] of eventCounts) this.inc({ event }, n);
      },
    });
    new Counter({
      name: 'capa_blocked_total',
      help: 'CAPA requests from the inside realm not given an allocation: exhausted (no free aOG/pA for the destination), quota (terminal over its quota). Requesters outside the realm show as REFUSED responses.',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of blockCounts) this.inc({ reason }, n);
      },
    });
    new Counter({
      name: 'capa_reconcile_mended_total',
      help: 'What the data plane\'s reconcile with the kernel put right: flow-gone (a flow ended without its event: the state ends), orphan-element (a kernel element no state owns: removed), adopted-flow (a flow the kernel carries that no state named: adopted).',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const [kind, n] of mendCounts) this.inc({ kind }, n);
      },
    });
    new Counter({
      name: 'capa_dns_responses_total',
      help: 'DNS responses sent, by rcode.',
      labelNames: ['rcode'],
      registers,
      collect() {
        this.reset();
        rcodeCounts.forEach((n, rcode) => { if (n > 0) this.inc({ rcode: RCODE_NAMES[rcode] ?? String(rcode) }, n); });
      },
    });
    new Gauge({
      name: 'capa_live_states',
      help: 'Live gateway states by phase: pending (installed, flow not yet seen) and complete.',
      labelNames: ['state'],
      registers,
      collect() {
        const s = states();
        this.set({ state: 'pending' }, s.pending);
        this.set({ state: 'complete' }, s.complete);
      },
    });
    new Gauge({
      name: 'capa_pool_utilisation_ratio',
      help: 'Live states / (pool addresses x 64,512 ports): how close the pool is to its bound for a single destination.',
      registers,
      collect() {
        const s = states();
        this.set(s.poolAddresses === 0 ? 0 : (s.pending + s.complete) / (s.poolAddresses * PORTS_PER_ADDRESS));
      },
    });
  }

  onEvent(event: AllocationEvent): void {
    this.eventCounts.set(event.event, this.eventCounts.get(event.event)! + 1);
  }

  onMended(kind: MendKind): void {
    this.mendCounts.set(kind, this.mendCounts.get(kind)! + 1);
  }

  onBlocked(reason: BlockReason): void {
    this.blockCounts.set(reason, this.blockCounts.get(reason)! + 1);
  }

  /** Counts by the header's rcode (its low 4 bits: BADVERS shows as NOERROR). */
  onResponse(response: Uint8Array): void {
    this.rcodeCounts[response[3]! & 0x0f]!++;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Serves GET /metrics; resolves once listening. Rejects with the Node error (EADDRINUSE...). */
export function serveMetrics(metrics: GatewayMetrics, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.removeListener('error', reject); resolve(server); });
  });
}
