/**
 * An outside host for the demo and the tests: a TCP and a UDP server on one address that report
 * the peer they saw, the (address, port) a pinned flow must arrive from, as one JSON line
 * `{"address":"…","port":…}`. Over TCP it either speaks first (`greet`: the line at once, the
 * connection kept open until the client ends it) or answers (`answer`: after the client's first
 * bytes, as an HTTP response when they are an HTTP request, then it closes).
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';

export interface Peer {
  address: string;
  port: number;
}

export interface OutsideHost {
  address: string;
  tcpPort: number;
  udpPort: number;
  /** Every peer per protocol, in the order connections and datagrams arrived. */
  peers: { tcp: Peer[]; udp: Peer[] };
  /** TCP connections still open. */
  open: Set<net.Socket>;
  close(): Promise<void>;
}

export interface OutsideOptions {
  /** Who speaks first over TCP; default 'answer'. */
  tcp?: 'greet' | 'answer';
  /** Told of each peer with what it sent first: an HTTP request's path, a datagram's text, '' for nothing. */
  onPeer?(proto: 'tcp' | 'udp', peer: Peer, said: string): void;
}

/** `address:port`, as people write an endpoint (and the demo prints it). */
export const peerKey = (p: Peer): string => `${p.address}:${p.port}`;

/** The report line the host sends. */
export const peerLine = (p: Peer): string => `${JSON.stringify({ address: p.address, port: p.port })}\n`;

/** The peer in a report line (what a client read from the host). */
export function parsePeer(line: string): Peer {
  const { address, port } = JSON.parse(line) as Peer;
  return { address, port };
}

const HTTP_REQUEST = /^[A-Z]+ (\S+) HTTP\/1\.[01]\r\n/;

function answer(socket: net.Socket, seen: Peer, onPeer: OutsideOptions['onPeer']): void {
  socket.once('data', (chunk: Buffer) => {
    const request = HTTP_REQUEST.exec(chunk.toString('latin1'));
    const body = peerLine(seen);
    onPeer?.('tcp', seen, request ? request[1]! : chunk.toString());
    socket.end(request
      ? `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`
      : body);
  });
}

export async function startOutsideHost(address: string, options: OutsideOptions = {}): Promise<OutsideHost> {
  const peers: OutsideHost['peers'] = { tcp: [], udp: [] };
  const open = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => socket.destroy());
    const seen: Peer = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    peers.tcp.push(seen);
    if (options.tcp === 'greet') {
      options.onPeer?.('tcp', seen, '');
      socket.on('end', () => socket.end());
      socket.write(peerLine(seen));
    } else {
      answer(socket, seen, options.onPeer);
    }
  });
  const udp = dgram.createSocket(net.isIP(address) === 6 ? 'udp6' : 'udp4');
  udp.on('message', (message, from) => {
    const seen: Peer = { address: from.address, port: from.port };
    peers.udp.push(seen);
    options.onPeer?.('udp', seen, message.toString());
    udp.send(peerLine(seen), from.port, from.address);
  });
  tcp.listen(0, address);
  udp.bind(0, address);
  await Promise.all([once(tcp, 'listening'), once(udp, 'listening')]);
  return {
    address,
    tcpPort: (tcp.address() as net.AddressInfo).port,
    udpPort: udp.address().port,
    peers,
    open,
    async close() {
      for (const socket of open) socket.destroy();
      await Promise.all([new Promise<void>((resolve) => tcp.close(() => resolve())), new Promise<void>((resolve) => udp.close(() => resolve()))]);
    },
  };
}
