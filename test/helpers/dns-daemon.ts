/**
 * Starts a real DNS server program (dnsmasq, BIND's named, Knot Resolver) on a free loopback
 * port for a test, waits until it answers, and stops it again. Each server's own helper only
 * says how to lay out its folder and command line for a port.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { access, constants, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { encodeQuery } from '../../resolver/codec/message.js';
import { exchange } from '../../resolver/lib/transport.js';
import { stopChild } from '../../common/ready-process.js';

export const DAEMON_ADDRESS = '127.0.0.1';
const SEARCH = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];

export interface DnsDaemon {
  address: string;
  port: number;
  /** host:port, as the resolver's `servers` option and capa-run --server take it. */
  server: string;
  /** What the program printed, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

/** Full path of a server binary, or undefined when it is not installed. */
export async function findBinary(name: string): Promise<string | undefined> {
  for (const dir of SEARCH) {
    const path = join(dir, name);
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
 * The binary's path; undefined when the caller should skip. With CI=true a missing one is a
 * failure of the run, naming the Debian package that brings it.
 */
export async function requireBinary(name: string, debianPackage: string): Promise<string | undefined> {
  const path = await findBinary(name);
  if (path === undefined && process.env.CI === 'true') {
    throw new Error(`${name} is not installed but CI=true: install Debian package ${debianPackage} (.ci/run does)`);
  }
  return path;
}

async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  socket.bind(0, DAEMON_ADDRESS);
  await once(socket, 'listening');
  const { port } = socket.address();
  await new Promise<void>((r) => socket.close(() => r()));
  return port;
}

/** Polls with an A query until the server answers anything, even REFUSED (bounded to ~10 s). */
async function waitUntilAnswering(name: string, port: number, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}:\n${log()}`);
    try {
      await exchange({
        server: { address: DAEMON_ADDRESS, port },
        encode: (id) => encodeQuery({ id, name: 'ready.invalid', type: 'A' }),
        question: { name: 'ready.invalid', type: 'A', class: 'IN' },
        timeoutMs: 100,
      });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100)); // not listening yet
    }
  }
  throw new Error(`${name} did not answer on ${DAEMON_ADDRESS}:${port} within 10 s:\n${log()}`);
}

/**
 * Starts `binary` with the arguments `setup` returns for a port and a fresh folder (which it may
 * fill with configuration). The free port may be taken between the probe and the server's bind,
 * so a few ports are tried.
 */
export async function startDnsDaemon(name: string, binary: string,
  setup: (port: number, dir: string) => Promise<string[]> | string[], cwd?: (dir: string) => string): Promise<DnsDaemon> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), `capa-${name}-`));
    const port = await freeUdpPort();
    const child = spawn(binary, await setup(port, dir), { stdio: ['ignore', 'pipe', 'pipe'], cwd: cwd?.(dir) ?? dir });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { output += d.toString(); });
    const log = (): string => output;
    try {
      await waitUntilAnswering(name, port, child, log);
    } catch (err) {
      lastError = err;
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
      continue;
    }
    return {
      address: DAEMON_ADDRESS,
      port,
      server: `${DAEMON_ADDRESS}:${port}`,
      log,
      async stop() {
        await stopChild(child);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  throw lastError;
}
