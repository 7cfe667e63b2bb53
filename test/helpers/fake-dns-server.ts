/**
 * A small scriptable DNS server for tests (UDP and TCP on the same loopback port). Each query goes
 * to a handler that returns what to send back: nothing (silence), raw bytes (so a reply can be
 * wrong on purpose), datagrams from another source port (spoofs), after a delay.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import dnsPacket from 'dns-packet';
import { DEFAULT_CAPA_RRTYPE, EDNS_PAYLOAD, dnsPacketTypeName } from '../../resolver/codec/constants.js';
import { encodeExtendedError } from '../../gateway-ref/lib/dns/ede.js';
import { decodeMessage, type ExtendedError, type Message } from '../../resolver/codec/message.js';
import { type CapaRecord, encode as encodeRdata } from '../../resolver/codec/rdata.js';
import { frame, unframe } from '../../resolver/codec/tcp-frame.js';

export interface ReceivedQuery {
  transport: 'udp' | 'tcp';
  bytes: Buffer;
  /** The decoded query, or undefined when it did not decode. */
  message: Message | undefined;
  from: { address: string; port: number };
}

export interface Send {
  bytes: Buffer;
  /** Over UDP, send from another port of the same address (an off-path spoof). */
  spoof?: boolean;
  delayMs?: number;
}

/** What to answer: nothing (silence), one reply or several, in order. */
export type Handler = (query: ReceivedQuery) => Buffer | Send | (Buffer | Send)[] | undefined;

export interface FakeDnsServer {
  address: string;
  port: number;
  /** host:port, as the resolver's `servers` option takes it. */
  server: string;
  /** Every query received, in order. */
  queries: ReceivedQuery[];
  handle(handler: Handler): void;
  close(): Promise<void>;
}

const RCODES: Record<string, number> = {
  NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, NXRRSET: 8, NOTAUTH: 9,
};
const OPCODES: Record<string, number> = { QUERY: 0, UPDATE: 5 };

/** A record as dns-packet encodes it. */
export interface RecordSpec {
  name: string;
  type: string;
  class?: string;
  ttl?: number;
  data?: unknown;
}

export interface ReplyShape {
  rcode?: string;
  aa?: boolean;
  tc?: boolean;
  /** Default: the query's ID. */
  id?: number;
  /** Default: the query's question. */
  questions?: { name: string; type: string; class: string }[];
  answers?: RecordSpec[];
  authorities?: RecordSpec[];
  additionals?: RecordSpec[];
  /** EDE options for the OPT record; an OPT record is added whenever the query had one or ede is set. */
  ede?: ExtendedError[];
}

/** Encodes a reply to `query` (QR=1, same opcode and RD) shaped by `shape`. */
export function reply(query: ReceivedQuery, shape: ReplyShape = {}): Buffer {
  const q = query.message;
  const opcode = OPCODES[q?.opcode ?? 'QUERY'] ?? 0;
  const rd = (q?.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  const flags = (opcode << 11) | rd | (shape.aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0)
    | (shape.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (RCODES[shape.rcode ?? 'NOERROR'] ?? 2);
  const hadOpt = q?.additionals.some((rr) => rr.type === 'OPT') ?? false;
  const opt = hadOpt || shape.ede
    ? [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_PAYLOAD, flags: 0, options: (shape.ede ?? []).map(encodeExtendedError) }]
    : [];
  const packet = {
    type: 'response',
    id: shape.id ?? q?.id ?? 0,
    flags,
    questions: shape.questions ?? q?.questions ?? [],
    answers: shape.answers ?? [],
    authorities: shape.authorities ?? [],
    additionals: [...(shape.additionals ?? []), ...opt],
  };
  return dnsPacket.encode(packet as unknown as dnsPacket.Packet);
}

export function capaRecord(name: string, ttl: number, record: CapaRecord, rrtype = DEFAULT_CAPA_RRTYPE): RecordSpec {
  return { name, type: dnsPacketTypeName(rrtype), class: 'IN', ttl, data: Buffer.from(encodeRdata(record)) };
}

export function addressRecord(name: string, ttl: number, address: string): RecordSpec {
  return { name, type: net.isIPv6(address) ? 'AAAA' : 'A', class: 'IN', ttl, data: address };
}

function toSends(out: ReturnType<Handler>): Send[] {
  if (out === undefined) return [];
  const list = Array.isArray(out) ? out : [out];
  return list.map((s) => (Buffer.isBuffer(s) ? { bytes: s } : s));
}

function decodeQuery(bytes: Buffer, rrtype: number): Message | undefined {
  try {
    return decodeMessage(bytes, rrtype);
  } catch {
    return undefined;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** UDP and TCP need the same port: retry while the kernel's UDP pick is taken for TCP (port 0). */
async function bindBoth(address: string, port: number): Promise<{ udp: dgram.Socket; tcp: net.Server }> {
  const type = net.isIPv6(address) ? 'udp6' : 'udp4';
  for (let attempt = 0; attempt < (port === 0 ? 20 : 1); attempt++) {
    const udp = dgram.createSocket(type);
    udp.bind(port, address);
    await once(udp, 'listening');
    const tcp = net.createServer();
    try {
      tcp.listen(udp.address().port, address);
      await once(tcp, 'listening');
      return { udp, tcp };
    } catch {
      udp.close();
      tcp.close();
    }
  }
  throw new Error(`no loopback port${port === 0 ? '' : ` ${port}`} on ${address} free for both UDP and TCP`);
}

/** `fixedPort` (default: a free one) lets a test stand in for a resolv.conf nameserver (53). */
export async function startFakeDnsServer(handler: Handler = () => undefined, address = '127.0.0.1',
  rrtype = DEFAULT_CAPA_RRTYPE, fixedPort = 0): Promise<FakeDnsServer> {
  const { udp, tcp } = await bindBoth(address, fixedPort);
  const spoofer = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
  spoofer.bind(0, address);
  await once(spoofer, 'listening');
  const port = udp.address().port;
  const queries: ReceivedQuery[] = [];
  const connections = new Set<net.Socket>();
  let current = handler;
  let closed = false;

  const serve = async (query: ReceivedQuery, write: (send: Send) => void): Promise<void> => {
    queries.push(query);
    for (const send of toSends(current(query))) {
      if (send.delayMs) await sleep(send.delayMs);
      if (!closed) write(send);
    }
  };

  udp.on('message', (bytes, from) => {
    const query = { transport: 'udp' as const, bytes, message: decodeQuery(bytes, rrtype), from: { address: from.address, port: from.port } };
    void serve(query, (send) => (send.spoof ? spoofer : udp).send(send.bytes, from.port, from.address));
  });
  tcp.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => socket.destroy());
    let stream: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      const { frames, rest } = unframe(Buffer.concat([stream, chunk]));
      stream = rest;
      for (const bytes of frames) {
        const query = { transport: 'tcp' as const, bytes, message: decodeQuery(bytes, rrtype), from: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 } };
        void serve(query, (send) => { if (!socket.destroyed) socket.write(frame(send.bytes)); });
      }
    });
  });

  return {
    address,
    port,
    server: net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`,
    queries,
    handle(next) { current = next; },
    async close() {
      closed = true;
      for (const socket of connections) socket.destroy();
      await Promise.all([
        new Promise<void>((r) => udp.close(() => r())),
        new Promise<void>((r) => spoofer.close(() => r())),
        new Promise<void>((r) => tcp.close(() => r())),
      ]);
    },
  };
}
