/**
 * Runs addon calls in the process's own network namespace (the netlink test
 * starts it with `ip netns exec`) and prints their outcomes as one JSON array.
 * Usage: node netns-child.js '<JSON array of NetnsStep>'
 */
import { closeSync } from 'node:fs';
import * as native from '../../native/addon/index.js';

export type NetnsStep =
  | { op: 'add' | 'remove' | 'check'; ifname: string; address: string }
  | { op: 'isLocal'; address: string }
  | { op: 'pin'; options: native.OpenOptions & { address: string; port: number } };

export type NetnsOutcome =
  | { ok: true; value: boolean | null }
  | { ok: false; error: { name: string; code?: string; errno?: number; syscall?: string; message: string } };

/** Opens a pinnable socket and binds it, as capa-socket pins one; closes it either way. */
function pin(options: native.OpenOptions & { address: string; port: number }): void {
  const { address, port, ...open } = options;
  const fd = native.openPinnable(open);
  try {
    native.bindPinned(fd, address, port);
  } finally {
    closeSync(fd);
  }
}

async function run(step: NetnsStep): Promise<boolean | null> {
  switch (step.op) {
    case 'add': await native.addressAdd(step.ifname, step.address); return null;
    case 'remove': await native.addressRemove(step.ifname, step.address); return null;
    case 'check': return native.addressCheck(step.ifname, step.address);
    case 'isLocal': return native.isLocalAddress(step.address);
    case 'pin': pin(step.options); return null;
  }
}

async function outcome(step: NetnsStep): Promise<NetnsOutcome> {
  try {
    return { ok: true, value: await run(step) };
  } catch (err: unknown) {
    const e = err as native.NativeSystemError;
    return { ok: false, error: { name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, message: e.message } };
  }
}

const steps = JSON.parse(process.argv[2] ?? '[]') as NetnsStep[];
// One after another: a step may depend on the one before (add, then check).
const outcomes: NetnsOutcome[] = [];
for (const step of steps) outcomes.push(await outcome(step));
process.stdout.write(JSON.stringify(outcomes));
