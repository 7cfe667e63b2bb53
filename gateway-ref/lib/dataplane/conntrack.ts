/**
 * Flow start and end from the kernel's connection tracking: a thin shell over the event mode
 * of the Debian `conntrack` tool (`conntrack -E`) and its listing (`conntrack -L`), with a pure
 * parser for their lines.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { CapaError } from '../../../resolver/codec/errors.js';
import { canonicalIp, ipFamily } from '../../../resolver/codec/ip.js';
import type { ProtoNumber } from '../grm/types.js';
import { inNetns, runCommand } from './command.js';

export interface ConntrackEvent {
  /** 'new' also for a flow listed (conntrack -L): one that runs. */
  kind: 'new' | 'destroy';
  proto: ProtoNumber;
  /** The original direction: who sent the first packet, to whom. */
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

const HEAD = /^\s*(?:\[(NEW|DESTROY)\]\s+)?(tcp|udp)\s+(6|17)\s/;
const PROTOS: Record<string, ProtoNumber> = { tcp: 6, udp: 17 };

/** First `name=value` of a line: the original-direction field (the reply's come after it). */
function field(line: string, name: string): string | undefined {
  return new RegExp(`\\s${name}=(\\S+)`).exec(line)?.[1];
}

function port(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return undefined;
  const value = Number(text);
  return value <= 65535 ? value : undefined;
}

/**
 * One line of `conntrack -E` default output, e.g.
 * `    [NEW] tcp      6 120 SYN_SENT src=198.51.100.7 dst=203.0.113.10 sport=40001 dport=80 [UNREPLIED] src=...`,
 * or of `conntrack -L` (the same without the event: a running flow, 'new').
 * Undefined for other events, other protocols and anything malformed.
 */
export function parseConntrackLine(line: string): ConntrackEvent | undefined {
  const head = HEAD.exec(line);
  if (head === null) return undefined;
  const src = field(line, 'src');
  const dst = field(line, 'dst');
  const sport = port(field(line, 'sport'));
  const dport = port(field(line, 'dport'));
  if (src === undefined || dst === undefined || sport === undefined || dport === undefined) return undefined;
  if (ipFamily(src) === 0 || ipFamily(src) !== ipFamily(dst)) return undefined;
  return {
    kind: head[1] === 'DESTROY' ? 'destroy' : 'new',
    proto: PROTOS[head[2]!]!,
    src: canonicalIp(src),
    dst: canonicalIp(dst),
    sport,
    dport,
  };
}

/** The flows conntrack tracks now (TCP and UDP, both families). */
export async function listFlows(netns?: string): Promise<ConntrackEvent[]> {
  const flows: ConntrackEvent[] = [];
  for (const family of ['ipv4', 'ipv6']) {
    const listed = await runCommand(['conntrack', '-L', '-f', family], { netns, allowFailure: true });
    for (const line of listed.stdout.split('\n')) {
      const flow = parseConntrackLine(line);
      if (flow) flows.push(flow);
    }
  }
  return flows;
}

export interface ConntrackWatchOptions {
  netns?: string;
  onEvent(event: ConntrackEvent): void;
  /** Warnings from the tool (lost events) and its unexpected exit. */
  onProblem(message: string): void;
  /** Netlink receive buffer; a large one keeps bursts of events from being lost. */
  bufferBytes?: number;
}

const READY_TIMEOUT_MS = 5000;

/** `conntrack -E -e NEW,DESTROY`, running until stop(). */
export class ConntrackWatch {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly exited: Promise<void>;
  private readonly ready: Promise<void>;
  private stopping = false;

  private constructor(options: ConntrackWatchOptions) {
    const argv = inNetns(options.netns, ['conntrack', '-E', '-e', 'NEW,DESTROY', '-b', String(options.bufferBytes ?? 8 << 20)]);
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => {
      this.child.on('error', () => resolve());
      this.child.on('close', (code, signal) => {
        if (!this.stopping) options.onProblem(`conntrack event watch exited (${signal ?? `code ${code}`}); flow ends are no longer seen`);
        resolve();
      });
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const event = parseConntrackLine(line);
      if (event) options.onEvent(event);
    });
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new CapaError('ERR_CAPA_SERVER_FAILURE', `${argv.join(' ')} did not start within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      let errText = '';
      createInterface({ input: this.child.stderr }).on('line', (line) => {
        errText += `${line}\n`;
        // The tool announces the buffer size right after subscribing.
        if (/buffer size has been set/i.test(line)) { clearTimeout(timer); resolve(); return; }
        if (/WARNING|ENOBUFS|losing events/i.test(line)) options.onProblem(`conntrack: ${line.trim()}`);
      });
      this.child.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new CapaError('ERR_CAPA_CONFIG', err.code === 'ENOENT' ? `${argv[0]} is not installed (install the conntrack package)` : err.message));
      });
      this.child.on('close', (code) => {
        clearTimeout(timer);
        reject(new CapaError(/not permitted/i.test(errText) ? 'ERR_CAPA_PERMISSION' : 'ERR_CAPA_SERVER_FAILURE', `${argv.join(' ')} exited with code ${code}: ${errText.trim()}`));
      });
    });
    this.ready.catch(() => { /* start() reports it */ });
  }

  /** Resolves once the tool is subscribed, so no later event is missed. */
  static async start(options: ConntrackWatchOptions): Promise<ConntrackWatch> {
    const watch = new ConntrackWatch(options);
    try {
      await watch.ready;
    } catch (err) {
      await watch.stop();
      throw err;
    }
    return watch;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.exited;
  }
}
