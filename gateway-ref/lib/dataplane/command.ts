/** Running the Linux tools the nftables data plane and the lab drive (ip, nft, conntrack), optionally inside a network namespace. */
import { spawn } from 'node:child_process';
import { CapaError } from '../../../resolver/lib/errors.js';

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

/** Runs a command to completion; rejects with the command line and its stderr when it fails. */
export function runCommand(argv: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const full = inNetns(options.netns, argv);
  return new Promise((resolve, reject) => {
    const child = spawn(full[0]!, full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(new CapaError('ERR_CAPA_CONFIG', err.code === 'ENOENT' ? `${full[0]} is not installed (needed to run: ${full.join(' ')})` : `cannot run ${full.join(' ')}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      const status = code ?? 128;
      if (status === 0 || options.allowFailure) { resolve({ code: status, stdout, stderr }); return; }
      const why = stderr.trim() || (signal ? `killed by ${signal}` : `exit code ${status}`);
      const permission = /Operation not permitted|Permission denied/.test(stderr);
      reject(new CapaError(permission ? 'ERR_CAPA_PERMISSION' : 'ERR_CAPA_SERVER_FAILURE',
        `${full.join(' ')} failed: ${why}${permission ? ' (needs root / CAP_NET_ADMIN)' : ''}`));
    });
    child.stdin.on('error', () => { /* the close handler reports the failure */ });
    child.stdin.end(options.input ?? '');
  });
}
