/** Running the Linux tools the nftables data plane and the lab drive (ip, nft, conntrack), optionally inside a network namespace. */
import { spawn, spawnSync } from 'node:child_process';
import { CapaError } from '../../../resolver/codec/errors.js';

/** The argument vector that runs `argv` inside `netns` (as is without one). */
export function inNetns(netns: string | undefined, argv: readonly string[]): string[] {
  return netns === undefined ? [...argv] : ['ip', 'netns', 'exec', netns, ...argv];
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  netns?: string;
  input?: string;
  /** Resolve with the exit code instead of rejecting when it is not 0. */
  allowFailure?: boolean;
}

function notRun(full: readonly string[], err: NodeJS.ErrnoException): CapaError {
  return new CapaError('ERR_CAPA_CONFIG', err.code === 'ENOENT' ? `${full[0]} is not installed (needed to run: ${full.join(' ')})` : `cannot run ${full.join(' ')}: ${err.message}`);
}

function failed(full: readonly string[], status: number, stderr: string, signal: string | null): CapaError {
  const why = stderr.trim() || (signal ? `killed by ${signal}` : `exit code ${status}`);
  const permission = /Operation not permitted|Permission denied/.test(stderr);
  return new CapaError(permission ? 'ERR_CAPA_PERMISSION' : 'ERR_CAPA_SERVER_FAILURE',
    `${full.join(' ')} failed: ${why}${permission ? ' (needs root / CAP_NET_ADMIN)' : ''}`);
}

/**
 * runCommand, blocking: for a step that must be done before the caller goes on synchronously
 * (a restart's new table, before its states' load is handed to another thread).
 */
export function runCommandSync(argv: readonly string[], options: Omit<CommandOptions, 'allowFailure'> = {}): void {
  const full = inNetns(options.netns, argv);
  const result = spawnSync(full[0]!, full.slice(1), { input: options.input ?? '', encoding: 'utf8', stdio: ['pipe', 'ignore', 'pipe'] });
  if (result.error) throw notRun(full, result.error as NodeJS.ErrnoException);
  if (result.status !== 0) throw failed(full, result.status ?? 128, result.stderr ?? '', result.signal);
}

/** Runs a command to completion; rejects with the command line and its stderr when it fails. */
export function runCommand(argv: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const full = inNetns(options.netns, argv);
  return new Promise((resolve, reject) => {
    const child = spawn(full[0]!, full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', (err: NodeJS.ErrnoException) => reject(notRun(full, err)));
    child.on('close', (code, signal) => {
      const status = code ?? 128;
      if (status === 0 || options.allowFailure) { resolve({ code: status, stdout, stderr }); return; }
      reject(failed(full, status, stderr, signal));
    });
    child.stdin.on('error', () => { /* the close handler reports the failure */ });
    child.stdin.end(options.input ?? '');
  });
}
