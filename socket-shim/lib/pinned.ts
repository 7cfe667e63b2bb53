/**
 * Node sockets pinned to an allocated (address, port), over the native addon: a TCP socket
 * opened ahead and bound at connect time, a UDP socket bound at creation. Both are opened
 * pinnable (SO_REUSEADDR, IP_FREEBIND) and then bound to the allocation.
 */
import { closeSync } from 'node:fs';
import { isIP, Socket, type SocketConstructorOpts } from 'node:net';
import dgram from 'node:dgram';
import type { Protocol } from '../../resolver/codec/constants.js';
import type { Family } from '../../resolver/codec/ip.js';
import { bindPinned, type OpenOptions, openPinnable } from '../../native/addon/index.js';

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
function wrapFd<T>(fd: number, wrap: (fd: number) => T): T {
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
    this.socket = wrapFd(fd, (own) => new Socket({ fd: own, manualStart: true } as SocketConstructorOpts));
  }

  static open(family: Family, options: { device?: string | undefined; mark?: number | undefined } = {}): PinnableTcpSocket {
    return new PinnableTcpSocket(family, openFor(family, 'tcp', options));
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
  return wrapFd(openFor(family, 'udp', options), (pinned) => {
    bindPinned(pinned, options.localAddress, options.localPort);
    const socket = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    try {
      return socket.bind({ fd: pinned });
    } catch (err: unknown) {
      socket.close();
      throw err;
    }
  });
}

/** A pinnable socket of `type` with the optional device and mark; its fd is the caller's. */
function openFor(family: Family, type: Protocol, options: { device?: string | undefined; mark?: number | undefined }): number {
  const open: OpenOptions = { family, type };
  if (options.device !== undefined) open.device = options.device;
  if (options.mark !== undefined) open.mark = options.mark;
  return openPinnable(open);
}
