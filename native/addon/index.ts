/**
 * Typed access to the CAPA native addon (build/Release/capa.node, built from binding.gyp by
 * `npm install`), loaded at first use: sockets made ready to pin to an allocated (address, port),
 * the netlink calls that put that address on an interface, nf_tables set elements in bulk (the
 * gateway's nftables data plane). The one loader every part uses.
 *
 * System failures are Node-style errors (`.code` 'EADDRINUSE', 'EPERM', ..., `.errno` negative,
 * `.syscall` 'bind' | 'setsockopt' | 'netlink'); bad arguments are TypeErrors with `.code`
 * ERR_INVALID_ARG_TYPE / _VALUE.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Protocol } from '../../resolver/codec/constants.js';
import { CapaError } from '../../resolver/codec/errors.js';
import type { Family } from '../../resolver/codec/ip.js';

/** What openPinnable takes: the settings of a socket that bindPinned then gives its address. */
export interface OpenOptions {
  family: Family;
  type: Protocol;
  /** SO_BINDTODEVICE interface name. */
  device?: string;
  /** SO_MARK (needs CAP_NET_ADMIN). */
  mark?: number;
}

/** What the addon throws for a failed system call. */
export interface NativeSystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  address?: string;
  port?: number;
}

/** An nf_tables set or map of family inet, as nftApply and nftDump take it. */
export interface NftSetRef {
  table: string;
  name: string;
  /** Bytes of a key: each field of a concatenation padded to 4. */
  keyLength: number;
  /** A map: each record carries 4 bytes of data (host order) after its key. */
  map: boolean;
}

export interface NftApplyResult {
  applied: number;
  /** Records skipped for a conflict (an add of a key held with other data, a delete of an absent key). */
  conflicts: number;
}

interface CapaAddon {
  nftOpen(netns?: string): number;
  nftApply(fd: number, set: NftSetRef, op: 'add' | 'delete', records: Buffer, skipConflicts: boolean): Promise<NftApplyResult>;
  nftDump(fd: number, set: NftSetRef): Promise<Buffer>;
  nftTableComment(fd: number, table: string): string | undefined;
  openPinnable(options: OpenOptions): number;
  bindPinned(fd: number, address: string, port: number): void;
  addressAdd(ifname: string, address: string): Promise<void>;
  addressRemove(ifname: string, address: string): Promise<void>;
  addressCheck(ifname: string, address: string): Promise<boolean>;
  isLocalAddress(address: string): Promise<boolean>;
  sweepAddresses(ifname: string, idleMs?: number): number;
  setMmapThreshold(bytes: number): boolean;
}

// dist/native/addon/index.js -> <package root>/build/Release/capa.node
const ADDON_PATH = fileURLToPath(new URL('../../../build/Release/capa.node', import.meta.url));

let loaded: CapaAddon | undefined;

/** Loads the addon on first use, so importing this module never fails. */
function addon(): CapaAddon {
  if (loaded) return loaded;
  try {
    loaded = createRequire(import.meta.url)(ADDON_PATH) as CapaAddon;
  } catch (err: unknown) {
    const missing = (err as { code?: unknown }).code === 'MODULE_NOT_FOUND';
    throw new CapaError(
      'ERR_CAPA_CONFIG',
      missing
        ? 'the CAPA native addon is not built: run npm install (needs python3, make and a C++ compiler)'
        : `the CAPA native addon at ${ADDON_PATH} does not load (${(err as Error).message}): run npm rebuild`,
      { cause: err },
    );
  }
  return loaded;
}

/**
 * Creates a socket with SO_REUSEADDR and IP_FREEBIND / IPV6_FREEBIND (plus the optional device
 * and mark), not bound yet: bindPinned gives it its address. Returns its fd, the caller's.
 */
export function openPinnable(options: OpenOptions): number {
  return addon().openPinnable(options);
}

/** Binds a socket from openPinnable to (address, port); the fd stays open (and the caller's) on failure. */
export function bindPinned(fd: number, address: string, port: number): void {
  addon().bindPinned(fd, address, port);
}

/**
 * Adds address/32 (/128) to `ifname` (IPv6: waits, at most 500 ms, until the kernel delivers it
 * locally); an address already there is fine. Like every netlink call but the sweep, it runs on a
 * thread of the pool: bad arguments throw at once, a failed call rejects.
 */
export function addressAdd(ifname: string, address: string): Promise<void> {
  return addon().addressAdd(ifname, address);
}

/** Removes address/32 (/128) from `ifname`; EADDRNOTAVAIL when it is not there. */
export function addressRemove(ifname: string, address: string): Promise<void> {
  return addon().addressRemove(ifname, address);
}

/** Whether `address` is configured on `ifname` (any prefix length). */
export function addressCheck(ifname: string, address: string): Promise<boolean> {
  return addon().addressCheck(ifname, address);
}

/**
 * One look of the address sweep (native/core/address_sweep.h) at `ifname`: the addresses CAPA
 * added there that no socket of this host holds, and that an earlier look at least `idleMs`
 * (default 60 s) before found unused too, come off. Returns how many did.
 */
export function sweepAddresses(ifname: string, idleMs?: number): number {
  return addon().sweepAddresses(ifname, idleMs);
}

/** Whether the kernel delivers `address` locally (every 127/8 address, any configured one). */
export function isLocalAddress(address: string): Promise<boolean> {
  return addon().isLocalAddress(address);
}

/**
 * glibc's M_MMAP_THRESHOLD for this process: allocations of `bytes` and more are mmapped, and go
 * back to the kernel when freed. False when glibc refused it (not glibc, or out of range).
 */
export function setMmapThreshold(bytes: number): boolean {
  return addon().setMmapThreshold(bytes);
}

/**
 * A NETLINK_NETFILTER socket (its fd, the caller's to close), in the named network namespace
 * when given (that needs CAP_SYS_ADMIN), for nftApply and nftDump.
 */
export function nftOpen(netns?: string): number {
  return addon().nftOpen(netns);
}

/**
 * Adds or deletes elements of `set`, given as packed records (key, then data for a map), in
 * transactions of about 128 KiB on a thread of the pool. A transaction that fails changes
 * nothing; with `skipConflicts`, one refused for a conflict is retried in halves and the records
 * in conflict are skipped (counted). A failure rejects with `.applied`: how many went in before it.
 */
export function nftApply(fd: number, set: NftSetRef, op: 'add' | 'delete', records: Buffer, skipConflicts = false): Promise<NftApplyResult> {
  return addon().nftApply(fd, set, op, records, skipConflicts);
}

/** Every element of `set` as packed records. The kernel walks the set anew for each chunk it returns: O(n^2), about 50 s for a million. */
export function nftDump(fd: number, set: NftSetRef): Promise<Buffer> {
  return addon().nftDump(fd, set);
}

/** The comment of inet table `table`, read in one request (nft lists a table by reading every set's elements); undefined without one or without the table. */
export function nftTableComment(fd: number, table: string): string | undefined {
  return addon().nftTableComment(fd, table);
}
