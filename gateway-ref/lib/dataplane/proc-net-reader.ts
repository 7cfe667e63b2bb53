/**
 * Reads whole /proc/net tables on a worker thread (proc-net-worker.ts), started at the first read
 * and ended by close(): the event loop gets each table as one transferred buffer, and the kernel's
 * time generating the lines is spent off it.
 */
import { Worker } from 'node:worker_threads';
import type { ReadReply, ReadRequest } from './proc-net-worker.js';

const WORKER = new URL('./proc-net-worker.js', import.meta.url);

interface Waiter {
  resolve(tables: (Uint8Array | null)[]): void;
  reject(err: Error): void;
}

export class ProcNetReader {
  private worker: Worker | undefined;
  private readonly waiters = new Map<number, Waiter>();
  private nextId = 1;

  /** The tables' bytes, in order; null for a table that does not exist. */
  read(paths: readonly string[]): Promise<(Uint8Array | null)[]> {
    const request: ReadRequest = { id: this.nextId++, paths };
    return new Promise((resolve, reject) => {
      this.waiters.set(request.id, { resolve, reject });
      this.started().postMessage(request);
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.fail(new Error('the socket-table reader was closed'));
    await worker?.terminate();
  }

  private started(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = new Worker(WORKER);
    worker.unref(); // an idle reader must not keep the gateway alive
    worker.on('message', (reply: ReadReply) => {
      const waiter = this.waiters.get(reply.id);
      this.waiters.delete(reply.id);
      if ('error' in reply) waiter?.reject(new Error(reply.error));
      else waiter?.resolve(reply.tables);
    });
    // A dead reader fails what it was asked; the next read starts a new one.
    const lost = (err: Error): void => {
      if (this.worker !== worker) return; // closed or replaced: its reads were failed then
      this.worker = undefined;
      this.fail(err);
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`the socket-table reader stopped (exit code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private fail(err: Error): void {
    for (const waiter of this.waiters.values()) waiter.reject(err);
    this.waiters.clear();
  }
}
