/** A line of the worker as a reply, or undefined when it is not one. */
function parseReply(line: string): WorkerReply | undefined {
  try {
    const reply = JSON.parse(line) as unknown;
    return typeof reply === 'object' && reply !== null && ('id' in reply || 'ready' in reply || 'fatal' in reply) ? reply as WorkerReply : undefined;
  } catch {
    return undefined;
  }
}

/** The driver's side of the nft worker (nft-worker.ts): one long-lived process, scripts run in order. */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { CapaError, type CapaErrorCode } from '../../../resolver/codec/errors.js';
import { inNetns } from './command.js';
import type { WorkerReply, WorkerRequest } from './nft-worker.js';

const WORKER = fileURLToPath(new URL('./nft-worker.js', import.meta.url));
const START_TIMEOUT_MS = 10_000;

interface InFlight {
  resolve(): void;
  reject(err: Error): void;
}

const KNOWN_CODES = new Set<string>(['ERR_CAPA_PERMISSION', 'ERR_CAPA_CONFIG', 'ERR_CAPA_SERVER_FAILURE']);

export class NftSession {
  private readonly inFlight = new Map<number, InFlight>();
  private nextId = 1;
  private failure: Error | undefined;
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcessWithoutNullStreams, ready: (reply: WorkerReply) => void) {
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-2000); });
    this.exited = new Promise((resolve) => {
      child.on('error', (err) => { this.fail(`cannot start the nft worker: ${err.message}`); resolve(); });
      child.on('close', (code, signal) => {
        this.fail(`the nft worker exited (${signal ?? `code ${code}`})${stderr.trim() === '' ? '' : `: ${stderr.trim()}`}`);
        resolve();
      });
    });
    // A dead worker is reported by the close handler; writes to it must not crash the process.
    child.stdin.on('error', () => undefined);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const reply = parseReply(line);
      if (reply === undefined) {
        // Not the worker's protocol (a library writing to stdout?): what is in flight cannot be matched any more.
        this.fail(`the nft worker wrote a line that is not a reply: ${line.slice(0, 200)}`);
        child.kill();
        return;
      }
      if (!('id' in reply)) { ready(reply); return; }
      const waiter = this.inFlight.get(reply.id);
      this.inFlight.delete(reply.id);
      if (reply.error === undefined) waiter?.resolve();
      else {
        const code = KNOWN_CODES.has(reply.code ?? '') ? reply.code as CapaErrorCode : 'ERR_CAPA_SERVER_FAILURE';
        waiter?.reject(new CapaError(code, reply.error, reply.errno === undefined ? {} : { errno: reply.errno }));
      }
    });
  }

  /** Starts the worker (inside `netns` when given) and waits until libnftables is loaded. */
  static async open(netns?: string): Promise<NftSession> {
    const argv = inNetns(netns, [process.execPath, WORKER]);
    let settle: (reply: WorkerReply) => void = () => undefined;
    const ready = new Promise<WorkerReply>((resolve) => { settle = resolve; });
    const session = new NftSession(spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] }), (reply) => settle(reply));
    const timeout = new Promise<WorkerReply>((resolve) => setTimeout(() => resolve({ fatal: `no answer within ${START_TIMEOUT_MS} ms` }), START_TIMEOUT_MS).unref());
    const exit = session.exited.then((): WorkerReply => ({ fatal: session.failure?.message ?? 'exited' }));
    const first = await Promise.race([ready, timeout, exit]);
    if ('fatal' in first) {
      await session.close();
      throw new CapaError('ERR_CAPA_SERVER_FAILURE', `the nft worker (${argv.join(' ')}) did not start: ${first.fatal}`);
    }
    return session;
  }

  /** Runs one script as one transaction; rejects with nft's message. */
  run(script: string): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const request: WorkerRequest = { id: this.nextId++, script };
    return new Promise((resolve, reject) => {
      this.inFlight.set(request.id, { resolve, reject });
      this.child.stdin.write(`${JSON.stringify(request)}\n`);
    });
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  private fail(message: string): void {
    this.failure ??= new CapaError('ERR_CAPA_SERVER_FAILURE', message);
    for (const waiter of this.inFlight.values()) waiter.reject(this.failure);
    this.inFlight.clear();
  }
}
