/** Shared by the tests that need root and network namespaces (the nftables data plane and capa-lab). */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type ReadyProcess, startReady } from '../../common/ready-process.js';
import { runCommand } from '../../gateway-ref/lib/dataplane/command.js';
import { unavailable } from '../helpers/ci.js';
import { requireNamespaces } from '../helpers/netns.js';
import type { ClientSpec } from './pinned-client.js';

const DIST = fileURLToPath(new URL('../../', import.meta.url));
export const ECHO_SERVER = `${DIST}gateway-ref/lab/echo-server.js`;
export const CAPA_LAB = `${DIST}gateway-ref/bin/capa-lab.js`;
export const CAPA_DIG = `${DIST}resolver/bin/capa-dig.js`;
const PINNED_CLIENT = `${DIST}test/lab/pinned-client.js`;

/** A namespace prefix no user's lab and no other test run uses. */
export function testPrefix(tag: string): string {
  return `capa-test-${process.pid}-${tag}-`;
}

/**
 * For a before() hook: skips the suite when this machine cannot make network namespaces or lacks
 * nft and conntrack, except under CI=true, where that is a failure (CI runs as root and must run
 * these tests).
 */
export async function requireNetns(ctx: Mocha.Context): Promise<void> {
  requireNamespaces(ctx, 'the nftables data plane and capa-lab tests');
  try {
    await runCommand(['nft', '--version']);
    await runCommand(['conntrack', '--version']);
  } catch (err) {
    unavailable(ctx, `CI=true but network-namespace tests cannot run: ${(err as Error).message}`);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `check` returns a value (not undefined), at most `timeoutMs`; `poke` runs between polls. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs: number, poke?: () => Promise<unknown>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await poke?.();
    await sleep(200);
  }
}

/** The gateway's packet counters: dropped spoofed (outside-bound) and unmatched (inside-bound) packets. */
export async function counters(gatewayNetns: string, table = 'capa'): Promise<{ spoofed: number; unmatched: number }> {
  const { stdout } = await runCommand(['nft', 'list', 'counters', 'table', 'inet', table], { netns: gatewayNetns });
  const read = (name: string): number => Number(new RegExp(`counter ${name} \\{[^}]*?packets (\\d+)`, 's').exec(stdout)?.[1] ?? NaN);
  return { spoofed: read('spoofed'), unmatched: read('unmatched') };
}

/**
 * Expired conntrack entries are reaped (and their DESTROY events sent) by a kernel worker that
 * may wait up to a minute; a dump reaps them at once. Tests use it to keep waits short.
 */
export function reapConntrack(gatewayNetns: string): Promise<unknown> {
  return runCommand(['conntrack', '-L'], { netns: gatewayNetns, allowFailure: true });
}

/** A long-running program inside a namespace that prints a ready line first. */
export class NsProcess {
  private constructor(private readonly process: ReadyProcess) {}

  static async start(netns: string, argv: string[], ready: RegExp): Promise<NsProcess> {
    return new NsProcess(await startReady(['ip', 'netns', 'exec', netns, ...argv], ready));
  }

  stop(): Promise<void> {
    return this.process.stop();
  }
}

export function startEcho(netns: string, http: string[], udp: string): Promise<NsProcess> {
  return NsProcess.start(netns, [process.execPath, ECHO_SERVER, ...http.flatMap((h) => ['--http', h]), '--udp', udp], /echo-server ready/);
}

export interface PeerReport {
  protocol: string;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

export type ClientEvent = { event: 'ready' } | { event: 'reply'; body: string } | { event: 'replies'; sent: number; at: number[] } | { event: 'timeout' } | { event: 'error'; code: string };

/** A pinned socket in a terminal namespace (pinned-client.ts). */
export class PinnedClient {
  readonly ready: Promise<void>;
  readonly done: Promise<ClientEvent>;
  private readonly child: ChildProcessWithoutNullStreams;

  constructor(netns: string, spec: ClientSpec) {
    this.child = spawn('ip', ['netns', 'exec', netns, process.execPath, PINNED_CLIENT, JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const events: ClientEvent[] = [];
    let onReady: () => void = () => undefined;
    this.ready = new Promise((resolve) => { onReady = resolve; });
    this.done = new Promise((resolve) => {
      createInterface({ input: this.child.stdout }).on('line', (line) => {
        const event = JSON.parse(line) as ClientEvent;
        events.push(event);
        if (event.event === 'ready') onReady();
      });
      this.child.on('close', () => resolve(events.at(-1) ?? { event: 'error', code: 'no output' }));
    });
  }

  /** Lets a held client send. */
  go(): void {
    this.child.stdin.write('go\n');
  }

  /** The echo server's report of this client's address, or an Error naming what happened instead. */
  async report(): Promise<PeerReport> {
    const last = await this.done;
    if (last.event !== 'reply') throw new Error(`pinned client: ${JSON.stringify(last)}`);
    return JSON.parse(last.body) as PeerReport;
  }
}
