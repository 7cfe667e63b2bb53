/**
 * UDP sockets opened ahead of the query they will carry. Creating, binding and connecting a
 * socket is most of what a query does before it leaves, so the stub does it while the terminal
 * waits for an earlier reply instead of in front of the next query. RFC 5452 §9.2 still holds:
 * every socket gets its own random ephemeral port from the kernel and carries exactly one query.
 * Spares hold no event loop open and are closed when left unused for IDLE_MS (at most 1.5x that),
 * or by close(). Each CapaResolver owns one set.
 */
import dgram from 'node:dgram';
import { ipFamily } from '../codec/ip.js';
import type { ServerAddress } from '../codec/server-address.js';

/** Ready spares kept per (source address, server). */
const SPARES_PER_ROUTE = 2;
/** (source address, server) pairs with spares; past this the least recently used goes. */
const MAX_ROUTES = 16;
/** An unused spare is closed after this long. */
const IDLE_MS = 10_000;

interface Spare {
  socket: dgram.Socket;
  ready: boolean;
  /** performance.now() when it was opened. */
  openedAt: number;
}

function routeKey(server: ServerAddress, localAddress: string | undefined): string {
  return `${localAddress ?? '*'} ${server.address} ${server.port}`;
}

/** A socket for `server`, connected (the kernel then drops other sources), bound to `localAddress` if given. */
export function openQuerySocket(server: ServerAddress, localAddress: string | undefined, onReady: () => void): dgram.Socket {
  const socket = dgram.createSocket(ipFamily(server.address) === 6 ? 'udp6' : 'udp4');
  const connect = (): void => { socket.connect(server.port, server.address, onReady); };
  // Still a random ephemeral port: only the address is chosen.
  if (localAddress === undefined) connect();
  else socket.bind({ address: localAddress, port: 0 }, connect);
  return socket;
}

export class SpareSockets {
  private readonly routes = new Map<string, Spare[]>();
  /**
   * Closes spares left unused for IDLE_MS. One timer for all of them, set while any exist: a timer
   * per spare would be armed and cleared on every query.
   */
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * A ready socket for a query to `server` from `localAddress`, or undefined (the caller opens
   * one). Either way a replacement is opened once the caller's query has gone out.
   */
  take(server: ServerAddress, localAddress: string | undefined): dgram.Socket | undefined {
    const key = routeKey(server, localAddress);
    const list = this.routes.get(key);
    let socket: dgram.Socket | undefined;
    if (list !== undefined) {
      this.routes.delete(key); // re-inserted: the Map's order is least recently used first
      this.routes.set(key, list);
      const at = list.findIndex((s) => s.ready);
      if (at >= 0) {
        const [spare] = list.splice(at, 1) as [Spare];
        spare.socket.removeAllListeners('error');
        socket = spare.socket.ref();
      }
    }
    setImmediate(() => {
      if (!this.closed && (this.routes.get(key)?.length ?? 0) < SPARES_PER_ROUTE) this.add(key, server, localAddress);
    });
    return socket;
  }

  /** Closes every spare; later take()s open none. */
  close(): void {
    this.closed = true;
    for (const [key, list] of [...this.routes]) for (const spare of [...list]) this.discard(key, spare);
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private sweep(): void {
    const before = performance.now() - IDLE_MS;
    for (const [key, list] of [...this.routes]) {
      for (const spare of list.filter((s) => s.openedAt <= before)) this.discard(key, spare);
    }
    if (this.routes.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private discard(key: string, spare: Spare): void {
    spare.socket.close();
    const list = this.routes.get(key);
    const at = list?.indexOf(spare) ?? -1;
    if (at >= 0) list!.splice(at, 1);
    if (list?.length === 0) this.routes.delete(key);
  }

  private add(key: string, server: ServerAddress, localAddress: string | undefined): void {
    let list = this.routes.get(key);
    if (list === undefined) {
      if (this.routes.size >= MAX_ROUTES) {
        const [oldest, spares] = this.routes.entries().next().value as [string, Spare[]];
        for (const spare of [...spares]) this.discard(oldest, spare);
      }
      list = [];
      this.routes.set(key, list);
    }
    const spare: Spare = {
      socket: openQuerySocket(server, localAddress, () => { spare.ready = true; }),
      ready: false,
      openedAt: performance.now(),
    };
    this.sweeper ??= setInterval(() => this.sweep(), IDLE_MS / 2).unref();
    // A spare that cannot be opened (the source address went away, say) is just dropped: the
    // query that would have used it opens its own socket and reports the failure.
    spare.socket.on('error', () => this.discard(key, spare));
    spare.socket.unref();
    list.push(spare);
  }
}
