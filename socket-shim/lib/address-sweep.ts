/**
 * Addresses CAPA put on an interface (capa-run's library, capa-socket; the kernel keeps them
 * marked as CAPA's) come off again once nothing uses them: when a capa-run program ends, it
 * looks at the CAPA addresses of its interface and removes each that no socket of this host
 * holds, if an earlier look at least `idleMs` before found it unused too. The looks are kept per
 * network namespace and interface in a small file in the temporary folder. The decision is pure;
 * netlink, the socket tables and the file are the shell around it.
 */
import { readFileSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalIp } from '../../resolver/lib/ip.js';
import { addressAdd, addressRemove, type CapaAddress, capaAddresses } from './native.js';
import { liveSockets } from './socket-table.js';

/** How long an address must have been seen unused before it comes off (capa-run --address-idle). */
export const ADDRESS_IDLE_MS = 60_000;

export interface SweepDecision {
  /** Addresses to take off the interface now. */
  remove: string[];
  /**
   * When each address still there was first seen unused (ms), for the next look, keyed by the
   * address and its creation time: a look at an address removed and added again since (or at a
   * namespace that reuses an old one's number) finds no record of it.
   */
  idleSince: Record<string, number>;
}

const recordKey = (a: CapaAddress): string => `${a.address}@${a.created}`;

/** Pure: which of the `marked` addresses to remove, given the ones in use and the earlier looks. */
export function decideSweep(marked: readonly CapaAddress[], inUse: ReadonlySet<string>, idleSince: Readonly<Record<string, number>>,
  now: number, idleMs: number): SweepDecision {
  const decision: SweepDecision = { remove: [], idleSince: {} };
  for (const a of marked) {
    if (inUse.has(a.address)) continue;
    const since = idleSince[recordKey(a)];
    if (since !== undefined && now - since >= idleMs) decision.remove.push(a.address);
    else decision.idleSince[recordKey(a)] = since ?? now;
  }
  return decision;
}

function stateFile(ifname: string): string {
  const netns = /\d+/.exec(readlinkSync('/proc/self/ns/net'))?.[0] ?? 'host';
  return join(tmpdir(), `capa-idle-addresses-${netns}-${ifname}.json`);
}

function readState(path: string): Record<string, number> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? parsed as Record<string, number> : {};
  } catch {
    return {}; // none yet, or torn: start the count again
  }
}

const inUseNow = (): Set<string> => new Set(liveSockets().map((s) => canonicalIp(s.localAddress)));

/** One look at `ifname`; returns the addresses it removed. Throws the addon's errors (EPERM, ENODEV). */
export function sweepAddresses(ifname: string, idleMs: number, now = Date.now()): string[] {
  const path = stateFile(ifname);
  const marked = capaAddresses(ifname).map((a) => ({ address: canonicalIp(a.address), created: a.created }));
  const decision = decideSweep(marked, inUseNow(), readState(path), now, idleMs);
  for (const address of decision.remove) addressRemove(ifname, address);
  // A process that found the address local a moment ago may have bound to it since: give it back.
  const after = decision.remove.length > 0 ? inUseNow() : new Set<string>();
  for (const address of decision.remove) if (after.has(address)) addressAdd(ifname, address);
  const temporary = `${path}.${process.pid}`;
  writeFileSync(temporary, JSON.stringify(decision.idleSince));
  renameSync(temporary, path);
  return decision.remove.filter((a) => !after.has(a));
}
