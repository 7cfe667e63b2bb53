/**
 * A loopback CAPA lab for the socket-shim tests: the real gateway (in process, loopback data
 * plane) with a zone file naming the outside hosts, and outside servers that record the peer
 * (address, port) of every connection or datagram, as a remote host would see it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningGateway, startGateway } from '../../gateway-ref/lib/gateway.js';
import type { PortStrategy } from '../../gateway-ref/lib/grm/types.js';
import type { CapaOptions } from '../../socket-shim/lib/options.js';
import { type Peer, parsePeer, peerKey, startOutsideHost } from '../../common/outside-host.js';

export { type Peer, peerKey } from '../../common/outside-host.js';

export interface LabOptions {
  pool: string[];
  /** Zone records: name (relative to outside.example) -> IPv4 address. */
  hosts: Record<string, string>;
  quota?: number;
  holdDownSeconds?: number;
  portStrategy?: PortStrategy;
}

export interface Lab {
  gateway: RunningGateway;
  /** The gateway's DNS front end, as `capa.servers` takes it. */
  server: string;
  /** CAPA options of a terminal whose queries come from `terminalAddress`. */
  terminal(terminalAddress: string): CapaOptions;
  close(): Promise<void>;
}

/** Terminals live in 127.10.0.0/16, the inside realm of every lab; outside hosts elsewhere in 127/8. */
export const INSIDE = '127.10.0.0/16';
export const ZONE = 'outside.example';

export async function startLab(options: LabOptions): Promise<Lab> {
  const dir = await mkdtemp(join(tmpdir(), 'capa-shim-'));
  const zoneFile = join(dir, 'zone.txt');
  const lines = Object.entries(options.hosts).map(([name, address]) => `${name} 60 IN A ${address}`);
  await writeFile(zoneFile, `$ORIGIN ${ZONE}.\n${lines.join('\n')}\n`);
  const gateway = await startGateway({
    listen: { address: '127.0.0.1', port: 0 },
    pool: options.pool,
    inside: [INSIDE],
    // Inside-to-inside destinations need no gateway (DESIGN "Answer"); loopback has no such default.
    direct: [INSIDE],
    zoneFile,
    quota: options.quota,
    holdDownSeconds: options.holdDownSeconds,
    portStrategy: options.portStrategy,
  }).catch(async (err: unknown) => { await rm(dir, { recursive: true }); throw err; });
  const server = `127.0.0.1:${gateway.listen.port}`;
  return {
    gateway,
    server,
    terminal: (terminalAddress) => ({ servers: [server], terminalAddress, dnsTimeout: 1000, dnsDeadline: 3000 }),
    async close() {
      await gateway.close();
      await rm(dir, { recursive: true });
    },
  };
}

export interface OutsideServer {
  address: string;
  port: number;
  /** Peer of every connection or datagram, in order. */
  peers: Peer[];
  /** TCP connections still open. */
  open: Set<net.Socket>;
  close(): Promise<void>;
}
export type OutsideTcp = OutsideServer;
export type OutsideUdp = OutsideServer;

/** An outside TCP host that speaks first: the peer's report line, the connection kept open. */
export async function startOutsideTcp(address: string): Promise<OutsideTcp> {
  const host = await startOutsideHost(address, { tcp: 'greet' });
  return { address, port: host.tcpPort, peers: host.peers.tcp, open: host.open, close: host.close };
}

/** An outside UDP host: answers each datagram with its sender's report line. */
export async function startOutsideUdp(address: string): Promise<OutsideUdp> {
  const host = await startOutsideHost(address);
  return { address, port: host.udpPort, peers: host.peers.udp, open: host.open, close: host.close };
}

/** `address:port` of the peer the outside host reports in its first line to this socket; the socket stays open. */
export async function peerSeen(socket: net.Socket): Promise<string> {
  return peerKey(parsePeer(await firstLine(socket)));
}

/** The first line a connected socket receives; the socket stays open. */
export function firstLine(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const stop = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
    };
    const onData = (chunk: Buffer): void => {
      text += String(chunk);
      const end = text.indexOf('\n');
      if (end >= 0) { stop(); resolve(text.slice(0, end)); }
    };
    const onEnd = (): void => { stop(); reject(new Error(`the connection ended before a whole line (got "${text}")`)); };
    const onError = (err: Error): void => { stop(); reject(err); };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
  });
}

/**
 * Waits until `check` holds, for things that follow an event the test cannot see (a release
 * after a failed connect). Bounded; a failure names what did not happen.
 */
export async function eventually(check: () => boolean, what: string, limitMs = 3000): Promise<void> {
  const until = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`${what} did not happen within ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
