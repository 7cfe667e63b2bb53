/**
 * CAPA for UDP: one dgram socket per destination, bound to the allocated (aOG, pA) and
 * connected to (aOB, pB), so `send(msg)` needs no address and only that peer's datagrams arrive.
 * Closing the socket releases the allocation.
 */
import dgram from 'node:dgram';
import { invalidArg } from '../../resolver/codec/errors.js';
import { ipFamily } from '../../resolver/codec/ip.js';
import { openAllocated, type SocketAllocation } from './allocation.js';
import { pinnedUdpSocket } from './pinned.js';
import { type CapaOptions, destinationPort, settingsOf } from './options.js';

export interface CapaUdpOptions {
  /** Destination name or IP literal; default 'localhost'. */
  host?: string;
  port: number;
  /** Closes the socket (and so releases the allocation) when aborted. */
  signal?: AbortSignal;
  capa?: CapaOptions;
}

/** A connected dgram socket; `capa` is its allocation, undefined for a plain (design-allowed) socket. */
export type CapaUdpSocket = dgram.Socket & { capa: SocketAllocation | undefined };

function connectTo(socket: dgram.Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.connect(port, address, (err?: Error) => (err ? reject(err) : resolve()));
  });
}

function closeOnAbort(socket: dgram.Socket, signal: AbortSignal | undefined): void {
  if (signal === undefined) return;
  const onAbort = (): void => { socket.close(); };
  signal.addEventListener('abort', onAbort, { once: true });
  socket.once('close', () => signal.removeEventListener('abort', onAbort));
}

/** Resolves with a socket connected to the destination; on failure nothing stays open or allocated. */
export async function connectUdp(options: CapaUdpOptions): Promise<CapaUdpSocket> {
  if (options === null || typeof options !== 'object') throw invalidArg('connectUdp options must be an object like { host, port }');
  const port = destinationPort(options.port);
  const host = options.host ?? 'localhost';
  const settings = settingsOf(options.capa);
  const opened = await openAllocated({ host, port, protocol: 'udp', signal: options.signal }, settings, (endpoint) => {
    options.signal?.throwIfAborted();
    return pinnedUdpSocket({ localAddress: endpoint.local.address, localPort: endpoint.local.port });
  });
  let socket: CapaUdpSocket;
  let remote: string;
  if (opened.kind === 'capa') {
    socket = opened.socket;
    remote = opened.socket.capa.remote.address;
  } else {
    remote = opened.addresses[0]!;
    socket = Object.assign(dgram.createSocket(ipFamily(remote) === 6 ? 'udp6' : 'udp4'), { capa: undefined });
  }
  try {
    await connectTo(socket, remote, port);
  } catch (err) {
    socket.close();
    throw err;
  }
  closeOnAbort(socket, options.signal);
  return socket;
}
