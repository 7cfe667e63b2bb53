/**
 * The life of one CAPA allocation on the terminal: ask the GRM, put the source address on the
 * configured interface, hand the allocation to exactly one socket, and give it back (DNS UPDATE)
 * when that socket closes, or at once when the socket could not be opened. Nothing leaks.
 * A bind that fails never becomes an unpinned connect.
 */
import type { EventEmitter } from 'node:events';
import type { Protocol } from '../../resolver/codec/constants.js';
import { CapaError, isCapaError } from '../../resolver/codec/errors.js';
import type { CapaEndpoint, PlainResult, Resolution } from '../../resolver/lib/resolve.js';
import { addressAdd, isLocalAddress, sweepAddresses } from '../../native/addon/index.js';
import type { Settings } from './options.js';

/** The allocation a socket was pinned with (`socket.capa`). */
export interface SocketAllocation extends CapaEndpoint {
  /**
   * Settles once the allocation was handed back after the socket closed: undefined when the GRM
   * no longer holds it, else the failure (also passed to onReleaseError). Never rejects.
   */
  readonly released: Promise<Error | undefined>;
}

export interface Destination {
  host: string;
  port: number;
  protocol: Protocol;
  signal?: AbortSignal | undefined;
}

/**
 * Allocations tried per socket when the pinned bind finds (aOG, pA) held by a local socket (a
 * wildcard listener on that port, say): the GRM cannot know the terminal's own ports, and the
 * released pair is held down for this destination, so the next answer is another port.
 */
const PIN_TRIES = 3;

/** A fresh CAPA allocation (never cached: one per socket), or the plain addresses. */
function resolveDestination(destination: Destination, settings: Settings): Promise<Resolution> {
  const { host, port, protocol, signal } = destination;
  return settings.resolver.resolve({ host, port, protocol, servers: settings.servers, rrtype: settings.rrtype, ...settings.call, signal });
}

/** Interfaces this process put an address on: each gets one tidy-up (the address sweep) at exit. */
const tidied = new Set<string>();

function tidyAtExit(ifname: string): void {
  if (tidied.has(ifname)) return;
  tidied.add(ifname);
  process.once('exit', () => {
    try {
      sweepAddresses(ifname);
    } catch {
      // Best effort at exit: the next capa-run or capa-socket process looks again.
    }
  });
}

/** Adds aOG to the configured interface unless the kernel already delivers it locally. */
async function configure(address: string, ifname: string | undefined): Promise<void> {
  if (ifname === undefined || await isLocalAddress(address)) return;
  try {
    await addressAdd(ifname, address);
    tidyAtExit(ifname);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'EACCES') {
      throw new CapaError('ERR_CAPA_PERMISSION', `cannot add ${address} to ${ifname}: ${code} (needs CAP_NET_ADMIN, or leave CAPA_INTERFACE unset)`, { cause: err });
    }
    if (code === 'ENODEV') {
      throw new CapaError('ERR_CAPA_CONFIG', `cannot add ${address}: there is no interface ${ifname} (check the interface option or CAPA_INTERFACE)`, { cause: err });
    }
    throw err;
  }
}

/** Hands the allocation back; "no such allocation" means the GRM already ended it (flow gone, lease over). */
async function giveBack(endpoint: CapaEndpoint, settings: Settings): Promise<Error | undefined> {
  try {
    await settings.resolver.release(endpoint, { rrtype: settings.rrtype, ...settings.call });
    return undefined;
  } catch (err) {
    if (isCapaError(err, 'ERR_CAPA_NO_ALLOCATION')) return undefined;
    const error = err instanceof Error ? err : new Error(String(err));
    settings.onReleaseError(error);
    return error;
  }
}

/** A net.Socket (destroy) or a dgram.Socket (close): what tieToSocket can end when its address cannot be kept. */
type Closable = EventEmitter & { destroy?(err?: Error): void; close?(): void };

/**
 * Opens the socket of an allocation (configure, then `open`) and ties the allocation to it:
 * released when the socket emits 'close', or before this rejects when opening fails.
 */
async function tieToSocket<S extends Closable>(endpoint: CapaEndpoint, settings: Settings, open: () => S | Promise<S>): Promise<S & { capa: SocketAllocation }> {
  let socket: S;
  try {
    await configure(endpoint.local.address, settings.interface);
    socket = await open();
  } catch (err) {
    await giveBack(endpoint, settings);
    throw err;
  }
  const released = new Promise<Error | undefined>((done) => {
    socket.once('close', () => { void giveBack(endpoint, settings).then(done); });
  });
  // A tidy-up elsewhere may have taken an idle aOG off between the check and the bind: put it
  // back. Not awaited: a TCP socket is connecting, and its caller must still see 'connect'.
  if (settings.interface !== undefined) {
    configure(endpoint.local.address, settings.interface).catch((err: Error) => {
      if (socket.destroy !== undefined) socket.destroy(err);
      else {
        socket.emit('error', err);
        socket.close?.();
      }
    });
  }
  // The endpoint was made for this socket alone, so it becomes socket.capa as it is.
  return Object.assign(socket, { capa: Object.assign(endpoint, { released }) });
}

export type Opened<S> = PlainResult | { kind: 'capa'; socket: S & { capa: SocketAllocation } };

/**
 * Asks the GRM and opens the pinned socket of the allocation with `open` (see tieToSocket), or hands
 * back the plain addresses where the design allows an unpinned connect. A bind that fails with
 * EADDRINUSE is retried with a fresh allocation, up to PIN_TRIES in all; every other failure,
 * and the last one, rejects.
 */
export async function openAllocated<S extends Closable>(destination: Destination, settings: Settings,
  open: (endpoint: CapaEndpoint) => S | Promise<S>): Promise<Opened<S>> {
  for (let tries = 1; ; tries++) {
    const resolution = await resolveDestination(destination, settings);
    if (resolution.kind === 'plain') return resolution;
    try {
      return { kind: 'capa', socket: await tieToSocket(resolution, settings, () => open(resolution)) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || tries >= PIN_TRIES) throw err;
    }
  }
}
