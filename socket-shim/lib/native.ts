/**
 * Typed access to the CAPA native addon (build/Release/capa.node, built from
 * binding.gyp by `npm install`): sockets pinned to an allocated (address, port),
 * the netlink calls that put that address on an interface, nf_tables set
 * elements in bulk (the gateway's nftables data plane), and capa-run's
 * file-capability check.
 *
 * System failures are Node-style errors (`.code` 'EADDRINUSE', 'EPERM', ...,
 * `.errno` negative, `.syscall` 'bind' | 'setsockopt' | 'netlink'); bad
 * arguments are TypeErrors with `.code` ERR_INVALID_ARG_TYPE / _VALUE.
 */
import { closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP, Socket, type SocketConstructorOpts } from 'node:net';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { CapaError } from '../../resolver/lib/errors.js';
import type { Protocol } from '../../resolver/lib/constants.js';
import type { Family } from '../../resolver/lib/ip.js';

export interface PinOptions {
  family: Family;
  type: Protocol;
  /** Source address; need not be configured yet (IP_FREEBIND). */
  address: string;
  port: number;
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

/** What openPinnable takes: a pinned socket's settings but its address. */
export type OpenOptions = Omit<PinOptions, 'address' | 'port'>;

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
  pinSocket(options: PinOptions): number;
  openPinnable(options: OpenOptions): number;
  bindPinned(fd: number, address: string, port: number): void;
  addressAdd(ifname: string, address: string): void;
  addressRemove(ifname: string, address: string): void;
  addressCheck(ifname: string, address: string): boolean;
  isLocalAddress(address: string): boolean;
  sweepAddresses(ifname: string, idleMs?: number): number;
}

// dist/socket-shim/lib/native.js -> <package root>/build/Release/capa.node
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
 * Creates a socket with SO_REUSEADDR and IP_FREEBIND / IPV6_FREEBIND (plus the
 * optional device and mark) bound to (address, port). Returns its fd, which
 * the caller owns (hand it to net.Socket / dgram, or fs.closeSync it).
 */
export function pinSocket(options: PinOptions): number {
  return addon().pinSocket(options);
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

/** Adds address/32 (/128) to `ifname` (IPv6: waits, at most 500 ms, until the kernel delivers it locally); an address already there is fine. */
export function addressAdd(ifname: string, address: string): void {
  addon().addressAdd(ifname, address);
}

/** Removes address/32 (/128) from `ifname`; EADDRNOTAVAIL when it is not there. */
export function addressRemove(ifname: string, address: string): void {
  addon().addressRemove(ifname, address);
}

/** Whether `address` is configured on `ifname` (any prefix length). */
export function addressCheck(ifname: string, address: string): boolean {
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
export function isLocalAddress(address: string): boolean {
  return addon().isLocalAddress(address);
}

export interface PinnedTcpOptions {
  /** Allocated source address (aOG) and port (pA). */
  localAddress: string;
  localPort: number;
  /** Destination (aOB, pB): an IP literal of the same family. */
  address: string;
  port: number;
  device?: string;
  mark?: number;
}

export interface PinnedUdpOptions {
  localAddress: string;
  localPort: number;
  device?: string;
  mark?: number;
}

function familyOf(address: string, name: string): Family {
  const family = isIP(address);
  if (family === 0) {
    throw Object.assign(new TypeError(`The "${name}" option must be an IP address, got ${JSON.stringify(address)}`), {
      code: 'ERR_INVALID_ARG_VALUE',
    });
  }
  return family as Family;
}

/** Wraps a freshly pinned fd; the fd is closed if wrapping fails, so nothing leaks. */
function adopt<T>(fd: number, wrap: (fd: number) => T): T {
  try {
    return wrap(fd);
  } catch (err: unknown) {
    closeSync(fd);
    throw err;
  }
}

/**
 * A TCP socket made ready for an allocation before the allocation is known: socket(), its
 * options and the net.Socket around it cost more than the bind and connect that remain, and a
 * terminal can do them while its CAPA query is in flight.
 *
 * The net.Socket does not read until it is connected (`manualStart`, the option Node's own
 * child_process stdio uses): an unconnected TCP fd polls as hung up, so a socket that read
 * before connect() would fail with ENOTCONN and be destroyed.
 */
export class PinnableTcpSocket {
  readonly socket: Socket;

  private constructor(readonly family: Family, private readonly fd: number) {
    this.socket = adopt(fd, (own) => new Socket({ fd: own, manualStart: true } as SocketConstructorOpts));
  }

  static open(family: Family, options: { device?: string | undefined; mark?: number | undefined } = {}): PinnableTcpSocket {
    const open: OpenOptions = { family, type: 'tcp' };
    if (options.device !== undefined) open.device = options.device;
    if (options.mark !== undefined) open.mark = options.mark;
    return new PinnableTcpSocket(family, openPinnable(open));
  }

  /**
   * Binds to (localAddress, localPort) and connects to (address, port), an IP literal of this
   * socket's family; listen for 'connect' / 'error' as with net.connect(). Anything that fails
   * here (a bind with `.syscall` 'bind', a bad argument) throws and closes the socket.
   */
  connect(options: Pick<PinnedTcpOptions, 'localAddress' | 'localPort' | 'address' | 'port'>): Socket {
    try {
      this.checkFamilies(options.localAddress, options.address);
      bindPinned(this.fd, options.localAddress, options.localPort);
    } catch (err: unknown) {
      this.destroy();
      throw err;
    }
    return this.socket.connect({ host: options.address, port: options.port, family: this.family });
  }

  private checkFamilies(localAddress: string, address: string): void {
    const invalid = (message: string): TypeError => Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_VALUE' });
    if (familyOf(localAddress, 'localAddress') !== this.family) {
      throw invalid(`The "localAddress" option must be an IPv${this.family} address for this IPv${this.family} socket, got ${JSON.stringify(localAddress)}`);
    }
    if (isIP(address) !== this.family) {
      throw invalid(`The "address" option must be an IPv${this.family} literal like localAddress ${localAddress}, got ${JSON.stringify(address)}`);
    }
  }

  /** Closes the socket (its fd with it). */
  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * A net.Socket bound to (localAddress, localPort) and connecting to (address, port), an IP
 * literal of the same family; listen for 'connect' / 'error' as with net.connect().
 */
export function pinnedTcpSocket(options: PinnedTcpOptions): Socket {
  return PinnableTcpSocket.open(familyOf(options.localAddress, 'localAddress'), options).connect(options);
}

/**
 * A dgram socket bound to (localAddress, localPort) through the documented
 * `socket.bind({ fd })` path; it is bound (and 'listening') when this returns.
 */
export function pinnedUdpSocket(options: PinnedUdpOptions): dgram.Socket {
  const family = familyOf(options.localAddress, 'localAddress');
  const fd = pinSocket(pinOptions(family, 'udp', options));
  return adopt(fd, (pinned) => {
    const socket = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    try {
      return socket.bind({ fd: pinned });
    } catch (err: unknown) {
      socket.close();
      throw err;
    }
  });
}

function pinOptions(family: Family, type: Protocol, options: PinnedUdpOptions): PinOptions {
  const pin: PinOptions = { family, type, address: options.localAddress, port: options.localPort };
  if (options.device !== undefined) pin.device = options.device;
  if (options.mark !== undefined) pin.mark = options.mark;
  return pin;
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
