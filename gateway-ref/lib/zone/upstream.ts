/**
 * Forwarding of A/AAAA lookups for names outside the zone to an optional upstream DNS server.
 * As a forwarder does it, not a stub: one UDP socket connected to the upstream carries every
 * query, replies find their query by ID (RFC 5452 matching), and a truncated reply is asked
 * again over TCP.
 */
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { DEFAULT_CAPA_RRTYPE } from '../../../resolver/codec/constants.js';
import { CapaError } from '../../../resolver/codec/errors.js';
import { canonicalIp, ipFamily } from '../../../resolver/codec/ip.js';
import { encodeQuery, type Message } from '../../../resolver/codec/message.js';
import { checkReply, type Expectation } from '../../../resolver/codec/reply-check.js';
import { formatServer, type ServerAddress } from '../../../resolver/codec/server-address.js';
import { frame, unframe } from '../../../resolver/codec/tcp-frame.js';
import type { DataRecord } from './zone-file.js';
import type { AddressType } from './zone.js';

export interface LookupResult {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL';
  /** CNAME chain, then the A/AAAA records (empty with NOERROR: NODATA). */
  records: DataRecord[];
  /** True when the data comes from our own zone. */
  authoritative: boolean;
}

export const DEFAULT_UPSTREAM_TIMEOUT_MS = 2000;

function toDataRecord(rr: { name: string; type: string; ttl?: number; data?: unknown }): DataRecord | undefined {
  if (typeof rr.data !== 'string') return undefined;
  const base = { name: rr.name.replace(/\.$/, '').toLowerCase(), ttl: rr.ttl ?? 0 };
  if (rr.type === 'A' || rr.type === 'AAAA') return { ...base, type: rr.type, data: canonicalIp(rr.data) };
  if (rr.type === 'CNAME') return { ...base, type: 'CNAME', data: rr.data.replace(/\.$/, '').toLowerCase() };
  return undefined;
}

/** A query waiting for its reply on the shared UDP socket. */
interface Waiter {
  expect: Expectation;
  settle(outcome: Message | 'truncated' | Error): void;
}

export class Upstream {
  private socket: Promise<dgram.Socket> | undefined;
  private readonly waiting = new Map<number, Waiter>();

  constructor(readonly server: ServerAddress, private readonly timeoutMs = DEFAULT_UPSTREAM_TIMEOUT_MS) {}

  /** Never throws: an unreachable or failing upstream is SERVFAIL, as a forwarder reports it. */
  async lookup(name: string, type: AddressType): Promise<LookupResult> {
    try {
      const { rcode, answers } = await this.ask(name, type);
      if (rcode !== 'NOERROR' && rcode !== 'NXDOMAIN') return { rcode: 'SERVFAIL', records: [], authoritative: false };
      const records = answers.map(toDataRecord).filter((r): r is DataRecord => r !== undefined);
      return { rcode, records, authoritative: false };
    } catch {
      return { rcode: 'SERVFAIL', records: [], authoritative: false };
    }
  }

  close(): void {
    this.fail(new Error('the upstream forwarder was closed'));
    void this.socket?.then((socket) => socket.close(), () => undefined);
    this.socket = undefined;
  }

  private async ask(name: string, type: AddressType): Promise<Message> {
    const deadline = performance.now() + this.timeoutMs;
    let id = randomInt(0x10000);
    while (this.waiting.has(id)) id = (id + 1) & 0xffff;
    const query = encodeQuery({ id, name, type, rd: true });
    const expect: Expectation = { id, question: { name, type, class: 'IN' }, opcode: 'QUERY', rrtype: DEFAULT_CAPA_RRTYPE };
    const outcome = await this.overUdp(query, expect, deadline);
    return outcome === 'truncated' ? this.overTcp(query, expect, deadline) : outcome;
  }

  private overUdp(query: Buffer, expect: Expectation, deadline: number): Promise<Message | 'truncated'> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => waiter.settle(this.timedOut('udp')), Math.max(0, deadline - performance.now()));
      const waiter: Waiter = {
        expect,
        settle: (outcome) => {
          clearTimeout(timer);
          this.waiting.delete(expect.id);
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome);
        },
      };
      this.waiting.set(expect.id, waiter);
      this.udpSocket().then(
        (socket) => socket.send(query, (err) => { if (err) waiter.settle(err); }),
        (err: Error) => waiter.settle(err),
      );
    });
  }

  private overTcp(query: Buffer, expect: Expectation, deadline: number): Promise<Message> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: this.server.address, port: this.server.port });
      const done = (outcome: Message | Error): void => {
        clearTimeout(timer);
        socket.destroy();
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      const timer = setTimeout(() => done(this.timedOut('tcp')), Math.max(0, deadline - performance.now()));
      let stream: Buffer = Buffer.alloc(0);
      socket.on('connect', () => socket.write(frame(query)));
      socket.on('error', done);
      socket.on('end', () => done(new CapaError('ERR_CAPA_SERVER_FAILURE', `upstream ${formatServer(this.server)} (tcp) closed without an answer`)));
      socket.on('data', (chunk: Buffer) => {
        const { frames, rest } = unframe(Buffer.concat([stream, chunk]));
        stream = rest;
        for (const bytes of frames) {
          const check = checkReply(bytes, expect);
          if (check.kind === 'accept') done(check.message);
        }
      });
    });
  }

  /**
   * The shared socket, opened at the first query; connected (a send must wait for that), so the
   * kernel drops other sources.
   */
  private udpSocket(): Promise<dgram.Socket> {
    if (this.socket !== undefined) return this.socket;
    const socket = dgram.createSocket(ipFamily(this.server.address) === 6 ? 'udp6' : 'udp4');
    socket.on('message', (bytes) => {
      const waiter = bytes.length >= 2 ? this.waiting.get(bytes.readUInt16BE(0)) : undefined;
      if (waiter === undefined) return;
      const check = checkReply(bytes, waiter.expect);
      if (check.kind !== 'ignore') waiter.settle(check.kind === 'accept' ? check.message : 'truncated');
    });
    // An ICMP port unreachable comes back as ECONNREFUSED: every waiting query fails, the socket stays.
    socket.on('error', (err) => this.fail(err));
    socket.unref();
    this.socket = new Promise((resolve, reject) => {
      socket.connect(this.server.port, this.server.address, () => resolve(socket));
      socket.once('error', reject);
    });
    // A socket that could not connect is dropped: the next query tries a new one.
    this.socket.catch(() => { this.socket = undefined; socket.close(); });
    return this.socket;
  }

  private fail(err: Error): void {
    for (const waiter of [...this.waiting.values()]) waiter.settle(err);
  }

  private timedOut(transport: 'udp' | 'tcp'): CapaError {
    return new CapaError('ERR_CAPA_TIMEOUT', `no reply from upstream ${formatServer(this.server)} (${transport}) within ${this.timeoutMs} ms`);
  }
}
