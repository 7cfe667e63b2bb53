/**
 * The DNS listener shell: UDP and TCP (RFC 7766: 2-octet framing, several queries per
 * connection, idle timeout, bounded connections) on one address and port. Every request goes
 * to `handle`; what it returns is sent back. Nothing a client sends can stop the listener.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { frame, unframe } from '../../../resolver/codec/tcp-frame.js';
import { unmapIPv4 } from '../../../resolver/codec/ip.js';
import type { Requester } from './responder.js';

export type Handler = (request: Buffer, requester: Requester) => Promise<Buffer | undefined>;

export interface DnsServerOptions {
  host: string;
  /** 0: a free port the kernel picks (the same one for UDP and TCP). */
  port: number;
  handle: Handler;
  /** A TCP connection with no complete query for this long is closed; default 10 s. */
  tcpIdleMs?: number;
  /** Default 256. */
  maxTcpConnections?: number;
  /** Queries of one TCP connection answered concurrently before it stops reading; default 32. */
  maxTcpPipeline?: number;
  /** UDP queries being answered at once; more are dropped (a client retries); default 10,000. */
  maxUdpInFlight?: number;
  /** SO_RCVBUF / SO_SNDBUF of the UDP socket (the kernel caps it at net.core.rmem_max); default 4 MiB. */
  udpBufferBytes?: number;
  /** Failures of the handler or of sending (logged by the caller, never fatal). */
  onError?: (err: unknown) => void;
}

/** When port 0 was asked, TCP may find the port UDP got already taken: try a few more. */
const PORT_ATTEMPTS = 8;

/**
 * A large receive buffer carries a burst of queries through a pause of the event loop (GC, a
 * socket-table poll) instead of dropping them, as NSD and other servers size theirs.
 */
const DEFAULT_UDP_BUFFER = 4 << 20;

function bindUdp(host: string, port: number, bufferBytes: number): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', recvBufferSize: bufferBytes, sendBufferSize: bufferBytes });
  return new Promise((resolve, reject) => {
    socket.once('error', (err) => { socket.close(); reject(err); });
    socket.bind(port, host, () => { socket.removeAllListeners('error'); resolve(socket); });
  });
}

function listenTcp(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.removeListener('error', reject); resolve(); });
  });
}

export class DnsServer {
  private readonly connections = new Set<net.Socket>();
  private udpInFlight = 0;

  private constructor(
    private readonly options: DnsServerOptions,
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
  ) {}

  /** Binds UDP and TCP; rejects with the Node error (EADDRINUSE, EADDRNOTAVAIL, EACCES). */
  static async listen(options: DnsServerOptions): Promise<DnsServer> {
    for (let attempt = 1; ; attempt++) {
      const udp = await bindUdp(options.host, options.port, options.udpBufferBytes ?? DEFAULT_UDP_BUFFER);
      const tcp = net.createServer();
      try {
        await listenTcp(tcp, options.host, udp.address().port);
      } catch (err) {
        udp.close();
        const retry = options.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < PORT_ATTEMPTS;
        if (retry) continue;
        throw err;
      }
      const server = new DnsServer(options, udp, tcp);
      server.start();
      return server;
    }
  }

  get port(): number {
    return this.udp.address().port;
  }

  get host(): string {
    return this.options.host;
  }

  private report(err: unknown): void {
    this.options.onError?.(err);
  }

  private start(): void {
    const maxUdp = this.options.maxUdpInFlight ?? 10_000;
    this.udp.on('message', (msg, rinfo) => {
      if (this.udpInFlight >= maxUdp) return;
      this.udpInFlight++;
      void this.answerUdp(msg, rinfo);
    });
    this.udp.on('error', (err) => this.report(err));
    this.tcp.maxConnections = this.options.maxTcpConnections ?? 256;
    this.tcp.on('connection', (socket) => this.serveConnection(socket));
    this.tcp.on('error', (err) => this.report(err));
  }

  private async answerUdp(request: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    try {
      const reply = await this.options.handle(request, { address: unmapIPv4(rinfo.address), transport: 'udp' });
      // Without a callback a send error comes as an 'error' event (reported below), and the
      // hot path skips a completion callback per datagram.
      if (reply) this.udp.send(reply, rinfo.port, rinfo.address);
    } catch (err) {
      this.report(err);
    } finally {
      this.udpInFlight--;
    }
  }

  private serveConnection(socket: net.Socket): void {
    const maxPipeline = this.options.maxTcpPipeline ?? 32;
    const requester: Requester = { address: unmapIPv4(socket.remoteAddress ?? ''), transport: 'tcp' };
    let pending = Buffer.alloc(0);
    let inFlight = 0;
    this.connections.add(socket);
    socket.setTimeout(this.options.tcpIdleMs ?? 10_000, () => socket.destroy());
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk) => {
      const { frames, rest } = unframe(pending.length === 0 ? chunk : Buffer.concat([pending, chunk]));
      pending = Buffer.from(rest); // detach from the chunk so it can be freed
      for (const request of frames) {
        if (++inFlight >= maxPipeline) socket.pause();
        this.options.handle(request, requester)
          .then((reply) => { if (reply && !socket.destroyed) socket.write(frame(reply)); })
          .catch((err: unknown) => this.report(err))
          .finally(() => {
            if (--inFlight < maxPipeline && socket.isPaused() && !socket.destroyed) socket.resume();
          });
      }
    });
  }

  async close(): Promise<void> {
    for (const socket of this.connections) socket.destroy();
    await Promise.all([
      new Promise<void>((resolve) => this.udp.close(() => resolve())),
      new Promise<void>((resolve) => this.tcp.close(() => resolve())),
    ]);
  }
}
