/**
 * Coalescing of element updates: while one script is in the kernel, later updates queue and go
 * together in the next one, so the install rate grows with the offered load while a lone update
 * still goes out at once. A failed batch is retried unit by unit, so one bad update cannot fail
 * the others. No I/O of its own: `apply` runs a list of changes as one transaction.
 */
import { isCapaError } from '../../../resolver/codec/errors.js';
import type { ElementOp } from './nft-rules.js';

export interface BatchUnit {
  /** Changes that succeed or fail together (e.g. one allocation's element). */
  ops: ElementOp[];
  /** When the unit alone fails with this system error (CapaError.errno), these changes are tried instead (none: accept the failure as done). */
  fallback?: { when: 'EEXIST' | 'ENOENT'; ops: ElementOp[] };
}

interface Queued {
  unit: BatchUnit;
  resolve(): void;
  reject(err: unknown): void;
}

export const DEFAULT_MAX_BATCH_OPS = 20_000;

export class BatchWriter {
  private readonly queue: Queued[] = [];
  private running = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly apply: (ops: readonly ElementOp[]) => Promise<void>,
    private readonly maxOps = DEFAULT_MAX_BATCH_OPS,
  ) {}

  /** Resolves once the unit is in place (or its fallback is). */
  submit(unit: BatchUnit): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ unit, resolve, reject });
      void this.pump();
    });
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    while (this.queue.length > 0) {
      const batch = this.take();
      try {
        await this.apply(batch.flatMap((q) => q.unit.ops));
        for (const q of batch) q.resolve();
      } catch (err) {
        if (batch.length === 1) await this.settleAlone(batch[0]!, err);
        else for (const q of batch) await this.runAlone(q);
      }
    }
    this.running = false;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Whole units from the queue head, up to maxOps changes (at least one unit). */
  private take(): Queued[] {
    let count = 0;
    let n = 0;
    while (n < this.queue.length && (n === 0 || count + this.queue[n]!.unit.ops.length <= this.maxOps)) {
      count += this.queue[n]!.unit.ops.length;
      n++;
    }
    return this.queue.splice(0, n);
  }

  private async runAlone(q: Queued): Promise<void> {
    try {
      await this.apply(q.unit.ops);
      q.resolve();
    } catch (err) {
      await this.settleAlone(q, err);
    }
  }

  private async settleAlone(q: Queued, err: unknown): Promise<void> {
    const fallback = q.unit.fallback;
    if (fallback === undefined || !isCapaError(err) || err.errno !== fallback.when) { q.reject(err); return; }
    try {
      if (fallback.ops.length > 0) await this.apply(fallback.ops);
      q.resolve();
    } catch (fallbackErr) {
      q.reject(fallbackErr);
    }
  }
}
