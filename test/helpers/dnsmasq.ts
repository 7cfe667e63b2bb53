/**
 * Starts a real dnsmasq on a free loopback port for a test, serving the given host records and
 * raw RRs (CAPA as `--dns-rr=<name>,65280,<hex>`), and stops it again. Names under `local`
 * domains that are not configured get NXDOMAIN; everything else gets REFUSED (no upstream).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { access, constants, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { encodeQuery } from '../../resolver/lib/message.js';
import { exchange } from '../../resolver/lib/transport.js';

export interface DnsmasqOptions {
  /** `--host-record=<name>,<addr>[,<addr>]`: A and AAAA records. */
  hostRecords?: { name: string; addresses: string[] }[];
  /** `--dns-rr=<name>,<rrtype>,<hex>`: an RR of every type, as raw RDATA. */
  rawRecords?: { name: string; rrtype: number; hex: string }[];
  /** `--txt-record=<name>,<text>`. */
  txtRecords?: { name: string; text: string }[];
  /** Domains answered only from the records above (`--local=/<domain>/`). */
  local?: string[];
  /** TTL of the records above (dnsmasq's default is 0). */
  ttl?: number;
}

export interface Dnsmasq {
  address: string;
  port: number;
  /** host:port, as the resolver's `servers` option takes it. */
  server: string;
  /** What dnsmasq printed (its query log), for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

const ADDRESS = '127.0.0.1';
const SEARCH = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];

/** Full path of the dnsmasq binary, or undefined when it is not installed. */
export async function findDnsmasq(): Promise<string | undefined> {
  for (const dir of SEARCH) {
    const path = join(dir, 'dnsmasq');
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * In CI (CI=true) a missing dnsmasq is a failure of the test run, elsewhere the caller may skip.
 * Returns the binary's path, or undefined when the caller should skip.
 */
export async function requireDnsmasq(): Promise<string | undefined> {
  const path = await findDnsmasq();
  if (path === undefined && process.env.CI === 'true') {
    throw new Error('dnsmasq is not installed but CI=true: install Debian package dnsmasq-base (.ci/run does)');
  }
  return path;
}

async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  socket.bind(0, ADDRESS);
  await once(socket, 'listening');
  const { port } = socket.address();
  await new Promise<void>((r) => socket.close(() => r()));
  return port;
}

function args(options: DnsmasqOptions, port: number, pidFile: string): string[] {
  const out = [
    '--no-daemon', '--no-resolv', '--no-hosts', `--port=${port}`, `--listen-address=${ADDRESS}`, '--bind-interfaces',
    `--pid-file=${pidFile}`, '--conf-file=/dev/null', '--log-facility=-', '--log-queries', `--local-ttl=${options.ttl ?? 0}`,
  ];
  // As root, dnsmasq drops to a user that may not exist on a fresh machine; nobody always does.
  if (process.getuid?.() === 0) out.push('--user=nobody');
  for (const h of options.hostRecords ?? []) out.push(`--host-record=${[h.name, ...h.addresses].join(',')}`);
  for (const r of options.rawRecords ?? []) out.push(`--dns-rr=${r.name},${r.rrtype},${r.hex}`);
  for (const t of options.txtRecords ?? []) out.push(`--txt-record=${t.name},"${t.text}"`);
  for (const d of options.local ?? []) out.push(`--local=/${d}/`);
  return out;
}

/** Polls with an A query until dnsmasq answers anything, even REFUSED (bounded to ~5 s). */
async function waitUntilAnswering(port: number, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (child.exitCode !== null) throw new Error(`dnsmasq exited with ${child.exitCode}:\n${log()}`);
    try {
      await exchange({
        server: { address: ADDRESS, port },
        encode: (id) => encodeQuery({ id, name: 'ready.invalid', type: 'A' }),
        question: { name: 'ready.invalid', type: 'A', class: 'IN' },
        timeoutMs: 100,
      });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100)); // not listening yet
    }
  }
  throw new Error(`dnsmasq did not answer on ${ADDRESS}:${port} within 5 s:\n${log()}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

export async function startDnsmasq(binary: string, options: DnsmasqOptions = {}): Promise<Dnsmasq> {
  const dir = await mkdtemp(join(tmpdir(), 'capa-dnsmasq-'));
  let lastError: unknown;
  // The free port may be taken between our probe and dnsmasq's bind; try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freeUdpPort();
    const child = spawn(binary, args(options, port, join(dir, 'dnsmasq.pid')), { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { output += d.toString(); });
    const log = (): string => output;
    try {
      await waitUntilAnswering(port, child, log);
    } catch (err) {
      lastError = err;
      await stopChild(child);
      continue;
    }
    return {
      address: ADDRESS,
      port,
      server: `${ADDRESS}:${port}`,
      log,
      async stop() {
        await stopChild(child);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}
