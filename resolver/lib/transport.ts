/**
 * DNS transport of the stub (RFC 5452, RFC 7766): one exchange with one server over a fresh UDP
 * socket (TCP when the reply is truncated), and the policy of asking several servers in turn
 * within one overall deadline.
 */
import { randomInt } from 'node:crypto';
import net from 'node:net';
import { DEFAULT_CAPA_RRTYPE } from '../codec/constants.js';
import { CapaError, invalidArg, isCapaError } from '../codec/errors.js';
import { canonicalIp, ipFamily } from '../codec/ip.js';
import type { Message } from '../codec/message.js';
import { checkReply, type Expectation, type Question } from '../codec/reply-check.js';
import { formatServer, type ServerAddress } from '../codec/server-address.js';
import { frame, unframe } from '../codec/tcp-frame.js';
import { openQuerySocket, type SpareSockets } from './spare-sockets.js';

export const DEFAULT_TIMEOUT_MS = 1000;
export const DEFAULT_DEADLINE_MS = 5000;

/** True when a datagram came from the server's address and port. */
export function fromServer(from: { address: string; port: number }, server: ServerAddress): boolean {
  if (from.port !== server.port) return false;
  if (from.address === server.address) return true;
  const bare = (a: string): string => canonicalIp(a.replace(/%.*$/, ''));
  return bare(from.address) === bare(server.address);
}

export function randomId(): number {
  return randomInt(0x10000);
}

export type TransportName = 'udp' | 'tcp';

export interface Reply {
  message: Message;
  /** The reply as received (its size is what dig calls MSG SIZE). */
  bytes: Buffer;
  transport: TransportName;
  server: ServerAddress;
}

export interface ExchangeRequest {
  server: ServerAddress;
  /** Encodes the query under the given ID; each try gets a fresh random ID. */
  encode: (id: number) => Buffer;
  question: Question;
  /** Default 'QUERY'. */
  opcode?: string;
  /** Default DEFAULT_CAPA_RRTYPE. */
  rrtype?: number;
  /** Time for the whole try, the TCP retry after a truncated reply included. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Skip UDP and ask over TCP at once. */
  tcp?: boolean;
  /** Source address of the query (IP literal); default: the kernel's choice. */
  localAddress?: string;
  /** Where a ready query socket may be taken from (a CapaResolver's); without, each query opens its own. */
  spares?: SpareSockets;
}

interface InFlight<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

/**
 * Runs one socket conversation: `start` opens it and returns its cleanup; the conversation ends
 * on the first resolve/reject, on the timer (error from `onTimeout`) or on the abort signal.
 */
function converse<T>(timeoutMs: number, signal: AbortSignal | undefined, onTimeout: () => Error,
  start: (inFlight: InFlight<T>) => () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason); return; }
    let cleanup = (): void => {};
    let done = false;
    const finish = (): void => {
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      cleanup();
    };
    const inFlight: InFlight<T> = {
      resolve: (value) => { if (!done) { finish(); resolve(value); } },
      reject: (err) => { if (!done) { finish(); reject(err); } },
    };
    const onAbort = (): void => inFlight.reject(signal?.reason);
    const timer = setTimeout(() => inFlight.reject(onTimeout()), Math.max(0, timeoutMs));
    signal?.addEventListener('abort', onAbort, { once: true });
    cleanup = start(inFlight);
    if (done) cleanup();
  });
}

function noReply(server: ServerAddress, transport: TransportName, timeoutMs: number, sawMalformed: boolean): CapaError {
  const where = `${formatServer(server)} (${transport})`;
  return sawMalformed
    ? new CapaError('ERR_CAPA_MALFORMED', `only malformed replies from ${where} within ${Math.round(timeoutMs)} ms`, { server: formatServer(server) })
    : new CapaError('ERR_CAPA_TIMEOUT', `no reply from ${where} within ${Math.round(timeoutMs)} ms`, { server: formatServer(server) });
}

function unreachable(server: ServerAddress, transport: TransportName, err: unknown): CapaError {
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  const why = code === 'ECONNREFUSED' ? 'refused the connection (nothing listens on that port)' : `could not be reached (${code})`;
  return new CapaError('ERR_CAPA_SERVER_FAILURE', `DNS server ${formatServer(server)} (${transport}) ${why}`,
    { server: formatServer(server), cause: err });
}

type UdpOutcome = { kind: 'accept'; message: Message; bytes: Buffer } | { kind: 'truncated' };

function udpTry(req: ExchangeRequest, expect: Expectation, query: Buffer, timeoutMs: number): Promise<UdpOutcome> {
  let sawMalformed = false;
  return converse<UdpOutcome>(timeoutMs, req.signal, () => noReply(req.server, 'udp', timeoutMs, sawMalformed), (inFlight) => {
    // A socket of its own per query (opened ahead when a spare is ready): the kernel picks a random
    // ephemeral port (RFC 5452 §9.2), and connect() lets ICMP port-unreachable come back as ECONNREFUSED.
    const send = (): void => {
      socket.send(query, (err) => { if (err) inFlight.reject(unreachable(req.server, 'udp', err)); });
    };
    const spare = req.spares?.take(req.server, req.localAddress);
    const socket = spare ?? openQuerySocket(req.server, req.localAddress, send);
    socket.on('error', (err) => inFlight.reject(unreachable(req.server, 'udp', err)));
    socket.on('message', (bytes, from) => {
      // connect() already makes the kernel drop other sources; checked again so the rule does not rest on it.
      if (!fromServer(from, req.server)) return;
      const check = checkReply(bytes, expect);
      if (check.kind === 'accept') inFlight.resolve({ kind: 'accept', message: check.message, bytes });
      else if (check.kind === 'truncated') inFlight.resolve(check);
      else sawMalformed ||= check.malformed;
    });
    if (spare) send();
    return () => socket.close();
  });
}

function tcpTry(req: ExchangeRequest, expect: Expectation, query: Buffer, timeoutMs: number): Promise<Reply> {
  let sawMalformed = false;
  return converse<Reply>(timeoutMs, req.signal, () => noReply(req.server, 'tcp', timeoutMs, sawMalformed), (inFlight) => {
    const socket = net.connect({ host: req.server.address, port: req.server.port, localAddress: req.localAddress });
    let stream: Buffer = Buffer.alloc(0);
    socket.on('connect', () => socket.write(frame(query)));
    socket.on('error', (err) => inFlight.reject(unreachable(req.server, 'tcp', err)));
    socket.on('data', (chunk: Buffer) => {
      const { frames, rest } = unframe(Buffer.concat([stream, chunk]));
      stream = rest;
      for (const bytes of frames) {
        const check = checkReply(bytes, expect);
        if (check.kind === 'accept') inFlight.resolve({ message: check.message, bytes, transport: 'tcp', server: req.server });
        else sawMalformed ||= check.kind === 'ignore' && check.malformed;
      }
    });
    socket.on('end', () => inFlight.reject(sawMalformed
      ? noReply(req.server, 'tcp', timeoutMs, true)
      : new CapaError('ERR_CAPA_SERVER_FAILURE', `DNS server ${formatServer(req.server)} (tcp) closed the connection without an answer`,
        { server: formatServer(req.server) })));
    return () => socket.destroy();
  });
}

/** One query to one server: fresh socket, fresh random ID; TC=1 over UDP -> the same query over TCP. */
export async function exchange(req: ExchangeRequest): Promise<Reply> {
  const id = randomId();
  const query = req.encode(id);
  const expect: Expectation = { id, question: req.question, opcode: req.opcode ?? 'QUERY', rrtype: req.rrtype ?? DEFAULT_CAPA_RRTYPE };
  const until = performance.now() + req.timeoutMs;
  if (!req.tcp) {
    const outcome = await udpTry(req, expect, query, req.timeoutMs);
    if (outcome.kind === 'accept') return { message: outcome.message, bytes: outcome.bytes, transport: 'udp', server: req.server };
  }
  return tcpTry(req, expect, query, until - performance.now());
}

/** How the caller judges a reply: an answer, a reason to ask the next server, or a final failure. */
export type Verdict<T> = { done: T } | { next: CapaError } | { fail: CapaError };

export interface TimingOptions {
  /** Per-try timeout in ms (default 1000). */
  timeout?: number;
  /** Overall deadline in ms for everything one call does (default 5000). */
  deadline?: number;
  signal?: AbortSignal;
  /**
   * Source address of every query of the call (IP literal). A GRM knows a terminal by the
   * address its queries come from, so several terminals can share one host (loopback demos).
   */
  localAddress?: string;
}

export interface Timing {
  timeoutMs: number;
  deadlineMs: number;
  /** performance.now() value at which the overall deadline passes. */
  deadlineAt: number;
  signal?: AbortSignal;
  localAddress?: string;
  /** The resolver's spare query sockets. */
  spares?: SpareSockets;
}

function positiveMs(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw invalidArg(`${name} must be a positive number of milliseconds, got ${value}`);
  return value;
}

export function startTiming(options: TimingOptions, spares?: SpareSockets): Timing {
  const timeoutMs = positiveMs(options.timeout, DEFAULT_TIMEOUT_MS, 'timeout');
  const deadlineMs = positiveMs(options.deadline, DEFAULT_DEADLINE_MS, 'deadline');
  const timing: Timing = { timeoutMs, deadlineMs, deadlineAt: performance.now() + deadlineMs };
  if (options.signal) timing.signal = options.signal;
  if (spares) timing.spares = spares;
  if (options.localAddress !== undefined) {
    if (ipFamily(options.localAddress) === 0) throw invalidArg(`localAddress must be an IP address, got ${JSON.stringify(options.localAddress)}`);
    timing.localAddress = options.localAddress;
  }
  return timing;
}

interface Failure {
  error: CapaError;
  /** The server answered (a DNS rcode), as opposed to silence or an unreachable port. */
  answered: boolean;
}

/** The most telling failure: an answer beats malformed replies, which beat unreachable servers, then silence. */
function mostTelling(failures: Failure[]): Failure | undefined {
  const rank = (f: Failure): number => {
    if (f.answered) return 3;
    if (f.error.code === 'ERR_CAPA_MALFORMED') return 2;
    return f.error.code === 'ERR_CAPA_TIMEOUT' ? 0 : 1;
  };
  let best: Failure | undefined;
  for (const f of failures) if (best === undefined || rank(f) > rank(best)) best = f;
  return best;
}

function finalError(failures: Failure[], servers: readonly ServerAddress[], timing: Timing): CapaError {
  const best = mostTelling(failures);
  const list = servers.map(formatServer).join(', ');
  if (best === undefined) {
    return new CapaError('ERR_CAPA_TIMEOUT', `the ${timing.deadlineMs} ms deadline passed before ${list} could be asked`);
  }
  if (best.error.code !== 'ERR_CAPA_TIMEOUT') return best.error;
  return new CapaError('ERR_CAPA_TIMEOUT',
    `no reply from ${list} (${failures.length} tries of up to ${timing.timeoutMs} ms, deadline ${timing.deadlineMs} ms)`,
    best.error.server === undefined ? {} : { server: best.error.server });
}

/**
 * Asks the servers in order, round after round, until a reply is judged `done` or `fail`, or
 * the deadline passes. A server that answered `next` or is unreachable is not asked again; one
 * that stayed silent (or sent only malformed replies) is asked again in the next round.
 */
export async function askServers<T>(servers: readonly ServerAddress[], timing: Timing,
  request: Omit<ExchangeRequest, 'server' | 'timeoutMs' | 'signal' | 'localAddress' | 'spares'>,
  judge: (reply: Reply) => Verdict<T>): Promise<T> {
  const failures: Failure[] = [];
  let candidates: readonly ServerAddress[] = servers;
  while (candidates.length > 0) {
    const again: ServerAddress[] = [];
    for (const server of candidates) {
      const left = timing.deadlineAt - performance.now();
      if (left <= 0) throw finalError(failures, servers, timing);
      let reply: Reply;
      try {
        reply = await exchange({
          server,
          encode: request.encode,
          question: request.question,
          opcode: request.opcode,
          rrtype: request.rrtype,
          timeoutMs: Math.min(timing.timeoutMs, left),
          signal: timing.signal,
          tcp: request.tcp,
          localAddress: timing.localAddress,
          spares: timing.spares,
        });
      } catch (err) {
        if (!isCapaError(err)) throw err;
        failures.push({ error: err, answered: false });
        if (err.code !== 'ERR_CAPA_SERVER_FAILURE') again.push(server);
        continue;
      }
      const verdict = judge(reply);
      if ('done' in verdict) return verdict.done;
      if ('fail' in verdict) throw verdict.fail;
      failures.push({ error: verdict.next, answered: true });
    }
    candidates = again;
  }
  throw finalError(failures, servers, timing);
}
