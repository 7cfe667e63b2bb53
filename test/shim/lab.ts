/**
 * A loopback CAPA lab for the socket-shim tests: the real gateway (in process, loopback data
 * plane) with a zone file naming the outside hosts, and outside servers that record the peer
 * (address, port) of every connection or datagram, as a remote host would see it.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningGateway, startGateway } from '../../gateway-ref/lib/gateway.js';
import type { PortStrategy } from '../../gateway-ref/lib/grm/types.js';
import type { CapaOptions } from '../../socket-shim/lib/options.js';

export interface Peer {
  address: string;
  port: number;
}

export const peerKey = (p: Peer): string => `${p.address}:${p.port}`;

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

export interface OutsideTcp {
  address: string;
  port: number;
  /** Peer of every accepted connection, in order. */
  peers: Peer[];
  /** Connections still open. */
  open: Set<net.Socket>;
  close(): Promise<void>;
}

/** An outside TCP host: writes "address:port\n" of the peer and keeps the connection open. */
export async function startOutsideTcp(address: string): Promise<OutsideTcp> {
  const open = new Set<net.Socket>();
  const peers: Peer[] = [];
  const server = net.createServer((socket) => {
    open.add(socket);
    const peer = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    peers.push(peer);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => open.delete(socket));
    socket.on('end', () => socket.end());
    socket.write(`${peerKey(peer)}\n`);
  });
  server.listen(0, address);
  await once(server, 'listening');
  return {
    address,
    port: (server.address() as net.AddressInfo).port,
    peers,
    open,
    async close() {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface OutsideUdp {
  address: string;
  port: number;
  peers: Peer[];
  close(): Promise<void>;
}

/** An outside UDP host: answers each datagram with "address:port" of its sender. */
export async function startOutsideUdp(address: string): Promise<OutsideUdp> {
  const socket = dgram.createSocket('udp4');
  const peers: Peer[] = [];
  socket.on('message', (_msg, from) => {
    const peer = { address: from.address, port: from.port };
    peers.push(peer);
    socket.send(peerKey(peer), from.port, from.address);
  });
  socket.bind(0, address);
  await once(socket, 'listening');
  return {
    address,
    port: socket.address().port,
    peers,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** The first line a connected socket receives (what the outside host saw of it); the socket stays open. */
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
