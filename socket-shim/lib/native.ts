/**
 * Typed access to the CAPA native addon (build/Release/capa.node, built from
 * binding.gyp by `npm install`): sockets pinned to an allocated (address, port),
 * the netlink calls that put that address on an interface, and capa-run's
 * file-capability check.
 *
 * System failures are Node-style errors (`.code` 'EADDRINUSE', 'EPERM', ...,
 * `.errno` negative, `.syscall` 'bind' | 'setsockopt' | 'netlink'); bad
 * arguments are TypeErrors with `.code` ERR_INVALID_ARG_TYPE / _VALUE.
 */
import { closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP, Socket } from 'node:net';
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

interface CapaAddon {
  pinSocket(options: PinOptions): number;
  addressAdd(ifname: string, address: string): void;
  addressRemove(ifname: string, address: string): void;
  addressCheck(ifname: string, address: string): boolean;
  isLocalAddress(address: string): boolean;
  hasFileCapabilities(path: string): boolean;
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

/** Whether the kernel delivers `address` locally (every 127/8 address, any configured one). */
export function isLocalAddress(address: string): boolean {
  return addon().isLocalAddress(address);
}

/**
 * Whether the file (symbolic links followed, as execve follows them) carries
 * file capabilities: its security.capability attribute, what getcap prints.
 * Throws a system error (`.syscall` 'getxattr') when the file cannot be read.
 */
export function hasFileCapabilities(path: string): boolean {
  return addon().hasFileCapabilities(path);
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
 * A net.Socket bound to (localAddress, localPort) and connecting to
 * (address, port); listen for 'connect' / 'error' as with net.connect().
 *
 * Why connect() runs in the same tick as `new net.Socket({ fd })`: the
 * constructor starts reading at once, and on Node 20 an unconnected TCP fd
 * polls as hung up, so if the event loop turned before connect() the socket
 * would fail with ENOTCONN and be destroyed (a later connect() would then open
 * a new, unpinned socket). Connecting to an IP literal issues connect(2) from
 * process.nextTick, before the loop polls, hence the IP-literal requirement.
 * The socket then behaves like any net.connect() socket ('connect' event,
 * ECONNREFUSED with syscall 'connect', setTimeout, ...).
 */
export function pinnedTcpSocket(options: PinnedTcpOptions): Socket {
  const family = familyOf(options.localAddress, 'localAddress');
  if (isIP(options.address) !== family) {
    throw Object.assign(
      new TypeError(
        `The "address" option must be an IPv${family} literal like localAddress ${options.localAddress}, got ${JSON.stringify(options.address)}`,
      ),
      { code: 'ERR_INVALID_ARG_VALUE' },
    );
  }
  const fd = pinSocket(pinOptions(family, 'tcp', options));
  const socket = adopt(fd, (pinned) => new Socket({ fd: pinned }));
  return socket.connect({ host: options.address, port: options.port, family });
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
