/**
 * capa-run's side of the allocation ledger (native/preload/ledger.h): the library writes a line
 * per allocation received (+) and handed back (-) into <folder>/<pid>; when the program has
 * ended, capa-run releases what the ledgers of processes that are gone still hold (killed by a
 * signal, or ended by a raw exit_group, they could not do it themselves), unless a live process
 * on this host still holds a socket bound to the allocation (a forked child carries the flow on).
 * Parsing is pure; the folder, the socket tables and the releases are the thin shell around it.
 */
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CapaRecord } from '../../resolver/lib/rdata.js';
import { liveSockets } from './socket-table.js';

/** One allocation as a ledger line spells it. */
export interface LedgerEntry {
  server: string;
  zone: string;
  qname: string;
  record: CapaRecord;
}

const keyOf = (e: LedgerEntry): string => `${e.server} ${e.zone} ${e.qname} ${e.record.proto} ${e.record.port} ${e.record.address}`;

/** The allocations a ledger still holds: every '+' line not matched by a later '-'. Pure. */
export function outstanding(text: string): LedgerEntry[] {
  const held = new Map<string, LedgerEntry[]>();
  for (const line of text.split('\n')) {
    const [sign, server, zone, qname, flags, proto, port, address, extra] = line.split(' ');
    if ((sign !== '+' && sign !== '-') || address === undefined || extra !== undefined) continue; // a torn last line
    const entry: LedgerEntry = { server: server!, zone: zone!, qname: qname!, record: { flags: Number(flags), proto: Number(proto), port: Number(port), address } };
    const key = keyOf(entry);
    const list = held.get(key) ?? [];
    if (sign === '+') list.push(entry);
    else list.pop();
    held.set(key, list);
  }
  return [...held.values()].flat();
}

const endpointOf = (proto: number, address: string, port: number): string => `${proto === 17 ? 17 : 6} ${address} ${port}`;

/** The (proto, address, port) a live process's socket on this host is bound to. */
function heldEndpoints(): Set<string> {
  return new Set(liveSockets().map((s) => endpointOf(s.proto, s.localAddress, s.localPort)));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class Ledger {
  readonly dir: string = mkdtempSync(join(tmpdir(), 'capa-run-ledger-'));

  /** Removes the folder when the program never ran. */
  discard(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Releases what the ledgers of processes that are gone still hold, each release bounded by
   * `timeoutMs`, and logs each to `log` as the library would. The ledgers of live processes
   * (a daemon the program left behind) stay with them; the folder goes when none is left.
   */
  async settle(log: string | undefined, timeoutMs: number): Promise<void> {
    const entries: { pid: number; entry: LedgerEntry }[] = [];
    let held: Set<string> | undefined;
    for (const name of readdirSync(this.dir)) {
      const pid = Number(name);
      if (!Number.isInteger(pid) || isAlive(pid)) continue;
      const path = join(this.dir, name);
      held ??= heldEndpoints();
      for (const entry of outstanding(readFileSync(path, 'utf8'))) {
        // A forked child that outlived the process still has the socket (ssh -f): its flow goes on.
        if (!held.has(endpointOf(entry.record.proto, entry.record.address, entry.record.port))) entries.push({ pid, entry });
      }
      rmSync(path, { force: true });
    }
    if (entries.length > 0) {
      // Loaded only when something is left: every module is start-up time of every program run.
      const { release } = await import('../../resolver/lib/resolve.js');
      await Promise.all(entries.map(async ({ pid, entry }) => {
        let outcome = 'released';
        try {
          await release({ kind: 'capa', local: { address: entry.record.address, port: entry.record.port }, remote: { address: '', port: 0 },
            protocol: entry.record.proto === 17 ? 'udp' : 'tcp', ttl: 0, server: entry.server, host: entry.zone, qname: entry.qname,
            record: entry.record }, { timeout: timeoutMs, deadline: timeoutMs });
        } catch (err) {
          outcome = (err as { code?: string }).code ?? 'failed';
        }
        if (log !== undefined) {
          appendFileSync(log, `${JSON.stringify({ time: Date.now() / 1000, pid, event: 'release', why: 'process gone', qname: entry.qname,
            aOG: entry.record.address, pA: entry.record.port, outcome })}\n`);
        }
      }));
    }
    if (readdirSync(this.dir).length === 0) rmSync(this.dir, { recursive: true, force: true });
  }
}
