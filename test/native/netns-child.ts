/**
 * Runs addon calls in the process's own network namespace (the netlink test
 * starts it with `ip netns exec`) and prints their outcomes as one JSON array.
 * Usage: node netns-child.js '<JSON array of NetnsStep>'
 */
import { closeSync } from 'node:fs';
import * as native from '../../socket-shim/lib/native.js';

export type NetnsStep =
  | { op: 'add' | 'remove' | 'check'; ifname: string; address: string }
  | { op: 'isLocal'; address: string }
  | { op: 'pin'; options: native.PinOptions };

export type NetnsOutcome =
  | { ok: true; value: boolean | null }
  | { ok: false; error: { name: string; code?: string; errno?: number; syscall?: string; message: string } };

function run(step: NetnsStep): boolean | null {
  switch (step.op) {
    case 'add': native.addressAdd(step.ifname, step.address); return null;
    case 'remove': native.addressRemove(step.ifname, step.address); return null;
    case 'check': return native.addressCheck(step.ifname, step.address);
    case 'isLocal': return native.isLocalAddress(step.address);
    case 'pin': closeSync(native.pinSocket(step.options)); return null;
  }
}

function outcome(step: NetnsStep): NetnsOutcome {
  try {
    return { ok: true, value: run(step) };
  } catch (err: unknown) {
    const e = err as native.NativeSystemError;
    return { ok: false, error: { name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, message: e.message } };
  }
}

const steps = JSON.parse(process.argv[2] ?? '[]') as NetnsStep[];
process.stdout.write(JSON.stringify(steps.map(outcome)));
