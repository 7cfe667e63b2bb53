/**
 * The loopback lab of the capa-run tests: a real capa-gateway on 127.0.0.1 with a 127.66.80/24
 * pool, outside servers on 127.67.80.x that report each peer's (address, port), and a runner
 * for `capa-run` with a hard time bound that kills the whole process group.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../helpers/c-build.js';
import { type Peer, startOutsideHost } from '../../common/outside-host.js';
import { startReady } from '../../common/ready-process.js';

export const CAPA_RUN = join(repoRoot, 'build/Release/capa-run');
export const LIBRARY = join(repoRoot, 'build/Release/libcapa_preload.so');
const GATEWAY = join(repoRoot, 'dist/gateway-ref/bin/capa-gateway.js');

export const POOL = '127.66.80.1-127.66.80.4';
export const OUTSIDE_HOST = '127.67.80.1';
export const OUTSIDE_NAME = 'outside.test';

export type { Peer } from '../../common/outside-host.js';

export const inPool = (address: string): boolean => /^127\.66\.80\.[1-4]$/.test(address);

/** A CAPA_LOG line (see native/preload/log.h). */
export interface CapaEvent {
  pid: number;
  event: string;
  qname?: string;
  aOG?: string;
  pA?: number;
  aOB?: string;
  pB?: number;
  proto?: number;
  why?: string;
  outcome?: string;
  message?: string;
}

/** A gateway journal line (gateway-ref/lib/grm/journal.ts). */
export interface JournalEvent {
  event: string;
  proto: number;
  aOG: string;
  pA: number;
  aOB: string;
  pB: number | null;
}

function jsonLines<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as T);
}

export const readCapaLog = (path: string): CapaEvent[] => jsonLines<CapaEvent>(path);

export interface Workspace {
  dir: string;
  file(name: string): string;
  remove(): Promise<void>;
}

export async function workspace(): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), 'capa-run-test-'));
  return { dir, file: (name) => join(dir, name), remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface Gateway {
  /** host:port of its DNS front end. */
  server: string;
  journal(): JournalEvent[];
  stop(): Promise<void>;
}

export interface GatewayOptions {
  /** Flags added to the command line. */
  extra?: string[];
  pool?: string;
  /** Address of outside.test in the zone. */
  outside?: string;
  /** More zone lines (names relative to test.). */
  zone?: string[];
  /** Command the gateway runs under, e.g. ['ip', 'netns', 'exec', ns]. */
  wrap?: string[];
}

/** Starts capa-gateway (loopback data plane) with `outside.test` in its zone; waits for its ready line. */
export async function startGateway(ws: Workspace, options: GatewayOptions = {}): Promise<Gateway> {
  const zone = ws.file(`zone-${Date.now()}-${Math.random()}.txt`);
  const journal = ws.file(`gateway-${Date.now()}-${Math.random()}.log`);
  await writeFile(zone, [`$ORIGIN test.\n$TTL 60\noutside A ${options.outside ?? OUTSIDE_HOST}`, ...options.zone ?? [], ''].join('\n'));
  const command = [...(options.wrap ?? []), process.execPath, GATEWAY, '--listen', '127.0.0.1:0', '--pool', options.pool ?? POOL,
    '--zone', zone, '--log', journal, ...(options.extra ?? [])];
  const gateway = await startReady(command, /listening on (127\.0\.0\.1:\d+)/);
  const server = gateway.match[1]!;
  return {
    server,
    journal: () => jsonLines<JournalEvent>(journal),
    stop: () => gateway.stop(),
  };
}

export interface OutsideServer {
  port: number;
  /** Every peer, in the order connections or datagrams arrived. */
  peers: Peer[];
  close(): Promise<void>;
}

/** A TCP server that answers each connection with its peer's report line (an HTTP response when asked HTTP). */
export async function startTcpOutside(host = OUTSIDE_HOST): Promise<OutsideServer> {
  const outside = await startOutsideHost(host);
  return { port: outside.tcpPort, peers: outside.peers.tcp, close: outside.close };
}

/** A UDP server that answers each datagram with its peer's report line. */
export async function startUdpOutside(host = OUTSIDE_HOST): Promise<OutsideServer> {
  const outside = await startOutsideHost(host);
  return { port: outside.udpPort, peers: outside.peers.udp, close: outside.close };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** Hard bound; the process group is killed and the promise rejects. Default 20 s. */
  timeoutMs?: number;
}

/** Runs a command in its own process group, asynchronously (the outside servers live in this process). */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const env = { ...process.env, ...options.env };
  for (const proxy of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'all_proxy']) delete env[proxy];
  const child = spawn(command, args, { env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  child.stdin.on('error', () => { /* a program that exits without reading its input (EPIPE) */ });
  child.stdin.end(options.input ?? '');
  const limit = options.timeoutMs ?? 20_000;
  return new Promise<RunResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${limit} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, limit);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

/** `capa-run <flags> -- <program> <args>` against a CAPA server, logging to `log`. */
export function capaRun(server: string, log: string, program: string[], options: RunOptions & { flags?: string[] } = {}): Promise<RunResult> {
  return run(CAPA_RUN, ['--server', server, '--log', log, ...(options.flags ?? []), '--', ...program], options);
}

/** The pins of a run, by (aOG, pA). */
export function pins(events: CapaEvent[]): CapaEvent[] {
  return events.filter((e) => e.event === 'pin');
}

export const key = (address: string | undefined, port: number | undefined): string => `${address}:${port}`;

/** A loopback UDP port nothing listens on (bound, read, closed). */
export async function closedUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** What a suite of capa-run tests works against; filled in by the hooks useLab registers. */
export interface Lab {
  ws: Workspace;
  gateway: Gateway;
  tcp: OutsideServer;
  udp: OutsideServer;
  /** A fresh CAPA_LOG path in the workspace. */
  newLog(): string;
}

/**
 * Registers the before/after hooks of a suite that runs capa-run against a loopback gateway
 * (started with `gateway`) and outside TCP and UDP servers on `outside` (default OUTSIDE_HOST).
 */
export function useLab(gateway: GatewayOptions = {}, outside = OUTSIDE_HOST): Lab {
  let logs = 0;
  const lab = { newLog: () => lab.ws.file(`capa-${++logs}.log`) } as Lab;
  before(async function () {
    if (!existsSync(LIBRARY)) throw new Error(`${LIBRARY} is missing: build it with "npx node-gyp rebuild"`);
    lab.ws = await workspace();
    lab.gateway = await startGateway(lab.ws, gateway);
    lab.tcp = await startTcpOutside(outside);
    lab.udp = await startUdpOutside(outside);
  });
  after(async function () {
    await lab.tcp?.close();
    await lab.udp?.close();
    await lab.gateway?.stop();
    await lab.ws?.remove();
  });
  return lab;
}
