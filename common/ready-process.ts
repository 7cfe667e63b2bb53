/**
 * A long-running program that says when it is ready with a line on stdout (capa-gateway's
 * "listening on ...", the lab echo server's "ready"): started, and handed back once that line is
 * out, with its match. The demo, the tests and the benchmarks start their programs with it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';

export interface ReadyOptions {
  /** How long the ready line may take (default 10 s); then the program is killed and this rejects. */
  timeoutMs?: number;
  /** The program's stderr: kept for errors and output() (the default), or passed through to ours. */
  stderr?: 'pipe' | 'inherit';
  /** A pipe to write to (child.stdin), or nothing (the default). */
  stdin?: 'pipe' | 'ignore';
  env?: NodeJS.ProcessEnv;
}

export interface ReadyProcess {
  readonly child: ChildProcess;
  /** The ready line's match against stdout. */
  readonly match: RegExpExecArray;
  /** What it printed so far (the last MAX_KEPT characters of each stream). */
  output(): { stdout: string; stderr: string };
  /** stopChild: SIGTERM, SIGKILL after a grace time, and the exit. */
  stop(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** Output kept per stream: a long run (a soak with --trace-gc) must not keep all of it. */
const MAX_KEPT = 1 << 20;

function kept(text: string): string {
  return text.length > MAX_KEPT ? text.slice(-MAX_KEPT) : text;
}

/** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves at the exit, at once when it has exited. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Starts argv[0] with the rest as its arguments; rejects with what it said if it exits or times out before `ready`. */
export function startReady(argv: readonly string[], ready: RegExp, options: ReadyOptions = {}): Promise<ReadyProcess> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: [options.stdin ?? 'ignore', 'pipe', options.stderr ?? 'pipe'], env: options.env ?? process.env });
  const out = { stdout: '', stderr: '' };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { out.stdout = kept(out.stdout + chunk); });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { out.stderr = kept(out.stderr + chunk); });
  const said = (): string => (out.stderr.trim() || out.stdout.trim()).slice(-4000);
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      done();
      child.kill('SIGKILL');
      reject(new Error(`${argv.join(' ')} ${why}${said() === '' ? '' : `:\n${said()}`}`));
    };
    const check = (): void => {
      const match = ready.exec(out.stdout);
      if (match === null) return;
      done();
      resolve({ child, match, output: () => ({ ...out }), stop: () => stopChild(child) });
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => fail(`exited (${signal ?? code}) before it was ready`);
    const onError = (err: Error): void => fail(`could not start (${err.message})`);
    const timer = setTimeout(() => fail(`was not ready within ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const done = (): void => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.off('exit', onExit);
      child.off('error', onError);
    };
    // After the handler above that appends the chunk, so a check sees it.
    child.stdout!.on('data', check);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}
