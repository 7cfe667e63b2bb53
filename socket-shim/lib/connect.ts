/**
 * CAPA-aware TCP connect with net.connect's option shape: resolve CAPA, pin the socket to the
 * allocated (aOG, pA), connect it to (aOB, pB). A plain connect happens only where the design
 * allows it (the server does not know CAPA, or the destination is inside); a CAPA failure never
 * becomes an unpinned connect.
 */
import net from 'node:net';
import { addAbortSignal } from 'node:stream';
import { invalidArg } from '../../resolver/codec/errors.js';
import { type Family, ipFamily } from '../../resolver/codec/ip.js';
import type { CapaEndpoint, CapaResolver } from '../../resolver/lib/resolve.js';
import { type Opened, openAllocated, type SocketAllocation } from './allocation.js';
import { PinnableTcpSocket } from './pinned.js';
import { type CapaOptions, destinationPort, settingsOf } from './options.js';

export interface CapaConnectOptions extends net.TcpNetConnectOpts {
  capa?: CapaOptions;
}

/** A net.Socket; `capa` is its allocation, undefined when the design allowed a plain connect. */
export type CapaSocket = net.Socket & { capa: SocketAllocation | undefined };

/** Options that would let something other than the GRM choose the source or the destination. */
const REFUSED_OPTIONS: Record<string, string> = {
  localAddress: 'the GRM allocates the source address',
  localPort: 'the GRM allocates the source port',
  lookup: 'the CAPA resolver looks the host up itself',
  fd: 'a pinned connection always opens a new socket',
  onread: 'pinned sockets read as streams',
};

const REFUSED_KEYS = Object.keys(REFUSED_OPTIONS);

function checkOptions(options: CapaConnectOptions): number {
  if (options === null || typeof options !== 'object') throw invalidArg('connect options must be an object like { host, port }');
  for (const key of REFUSED_KEYS) {
    if ((options as unknown as Record<string, unknown>)[key] !== undefined) throw invalidArg(`option ${key} is not supported: ${REFUSED_OPTIONS[key]}; remove it`);
  }
  if (options.host !== undefined && typeof options.host !== 'string') throw invalidArg('host must be a string');
  return destinationPort(options.port);
}

/** What net.connect would have done with these options, for a socket made from a pinned fd. */
function applySocketOptions(socket: net.Socket, options: CapaConnectOptions): void {
  if (options.timeout !== undefined) socket.setTimeout(options.timeout);
  if (options.noDelay) socket.setNoDelay(true);
  if (options.keepAlive) socket.setKeepAlive(true, options.keepAliveInitialDelay ?? 0);
  if (options.allowHalfOpen) socket.allowHalfOpen = true;
  if (options.signal) addAbortSignal(options.signal, socket);
}

/** The design's plain case: an ordinary connect to the first address of the wanted family. */
function plainSocket(addresses: string[], port: number, options: CapaConnectOptions): net.Socket {
  const { capa, host, ...rest } = options;
  const wanted = options.family === 4 || options.family === 6 ? addresses.find((a) => ipFamily(a) === options.family) : undefined;
  return net.connect({ ...rest, host: wanted ?? addresses[0]!, port });
}

/**
 * The family of each resolver's last allocation: a pool seldom changes, so its next one likely
 * has it too. Kept with the resolver (it lives as long as that does), not for the whole process.
 */
const lastFamilies = new WeakMap<CapaResolver, Family>();

/**
 * The socket of the coming connection, made ready (PinnableTcpSocket) while the CAPA query is
 * in flight: the terminal is idle until the reply is in, and what the socket needs before its
 * address is known costs more than the bind and connect after it. The immediate runs once the
 * query has been sent (the send is queued on process.nextTick), so it never delays the query.
 */
class SocketInWaiting {
  private pinnable: PinnableTcpSocket | undefined;
  private readonly immediate = setImmediate(() => {
    try {
      this.pinnable = PinnableTcpSocket.open(lastFamilies.get(this.resolver) ?? 4);
    } catch {
      // Out of descriptors, say: take() opens the socket again and reports what fails then.
    }
  });

  constructor(private readonly resolver: CapaResolver) {}

  /** The socket made in waiting, or a new one when the reply came first, had another family, or for a retry. */
  take(family: Family): PinnableTcpSocket {
    clearImmediate(this.immediate);
    lastFamilies.set(this.resolver, family);
    const pinnable = this.pinnable?.family === family ? this.pinnable : PinnableTcpSocket.open(family);
    if (pinnable !== this.pinnable) this.pinnable?.destroy();
    this.pinnable = undefined;
    return pinnable;
  }

  /** Nothing was connected: closes the socket made in waiting, if it was not taken. */
  cancel(): void {
    clearImmediate(this.immediate);
    this.pinnable?.destroy();
    this.pinnable = undefined;
  }
}

/** The pinned socket of an allocation; a failed bind throws (openAllocated retries EADDRINUSE) and closes it. */
function pinnedSocket(endpoint: CapaEndpoint, waiting: SocketInWaiting): net.Socket {
  return waiting.take(ipFamily(endpoint.local.address) as Family)
    .connect({ localAddress: endpoint.local.address, localPort: endpoint.local.port, address: endpoint.remote.address, port: endpoint.remote.port });
}

/**
 * Resolves and opens the socket; it is connecting, not yet connected, when this resolves
 * (listen for 'connect' and 'error' as with net.connect). CAPA failures reject with the
 * resolver's CapaError codes, before any socket exists.
 */
export async function openSocket(options: CapaConnectOptions): Promise<CapaSocket> {
  const port = checkOptions(options);
  const host = options.host ?? 'localhost';
  const settings = settingsOf(options.capa);
  const waiting = new SocketInWaiting(settings.resolver);
  let opened: Opened<net.Socket>;
  try {
    opened = await openAllocated({ host, port, protocol: 'tcp', signal: options.signal }, settings, (endpoint) => {
      options.signal?.throwIfAborted();
      return pinnedSocket(endpoint, waiting);
    });
  } finally {
    waiting.cancel();
  }
  if (opened.kind === 'plain') return Object.assign(plainSocket(opened.addresses, port, options), { capa: undefined });
  applySocketOptions(opened.socket, options);
  return opened.socket;
}

function timedOut(socket: net.Socket): Error {
  const where = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  return Object.assign(new Error(`connect ETIMEDOUT ${where}`), { code: 'ETIMEDOUT', syscall: 'connect' });
}

/** Waits for the handshake; a failure or the `timeout` option destroys the socket (which releases it). */
function connected(socket: CapaSocket): Promise<CapaSocket> {
  return new Promise((resolve, reject) => {
    const stop = (): void => {
      socket.off('connect', onConnect);
      socket.off('error', onError);
      socket.off('timeout', onTimeout);
    };
    const onConnect = (): void => { stop(); resolve(socket); };
    const onError = (err: Error): void => { stop(); socket.destroy(); reject(err); };
    const onTimeout = (): void => onError(timedOut(socket));
    socket.once('connect', onConnect);
    socket.once('error', onError);
    socket.once('timeout', onTimeout);
  });
}

/** Resolves with a connected socket; rejects (nothing left open or allocated) on any failure. */
export async function connect(options: CapaConnectOptions): Promise<CapaSocket> {
  return connected(await openSocket(options));
}

export type ConnectionCallback = (err: Error | null, socket?: CapaSocket) => void;

/**
 * Callback form, as http.Agent's createConnection and undici's connector take it: `callback`
 * gets the socket as soon as it is connecting; connect errors then arrive as 'error' events.
 */
export function createConnection(options: CapaConnectOptions, callback: ConnectionCallback): void {
  if (typeof callback !== 'function') throw invalidArg('createConnection needs a callback (err, socket): the CAPA resolution is asynchronous');
  openSocket(options).then((socket) => callback(null, socket), (err: Error) => callback(err));
}
