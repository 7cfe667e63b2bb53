#!/usr/bin/env node
/**
 * `npm start`: CAPA end to end on loopback, without root, in a few seconds. It starts
 * capa-gateway (pool of two 127.64.0.x addresses, loopback data plane) as a child process, an
 * outside HTTP and UDP echo host named in the gateway's zone, then the terminals, which connect
 * at the same time: three capa-socket Node processes whose DNS queries come from three inside
 * addresses, and curl under capa-run when that is built. The GRM keeps a terminal on the
 * address it already holds (paired pooling), so sharing needs more terminals than addresses:
 * with three or four on two, at least two share one. It prints what each terminal was assigned
 * and what the outside host saw. Exit codes: 0 every flow matched, 1 a mismatch or a failure,
 * 2 bad flags.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandLine, usageExit } from '../../common/cli.js';
import { peerKey, startOutsideHost } from '../../common/outside-host.js';
import { startReady } from '../../common/ready-process.js';
import { type FlowProto, parseReport, reportFromCapaRunLog, type TerminalReport } from './report.js';

const POOL = '127.64.0.1-127.64.0.2';
const OUTSIDE = '127.0.0.50';
const HOST = 'echo.outside.example';
/** capa-socket terminals, each a Node process whose DNS queries come from its own inside address. */
const NODE_TERMINALS = [
  { name: 'A', address: '127.10.0.1' },
  { name: 'B', address: '127.10.0.2' },
  { name: 'C', address: '127.10.0.3' },
];
/** The capa-run terminal (curl): its queries come from the kernel's choice, 127.0.0.1. */
const RUN_TERMINAL = { name: 'D', address: '127.0.0.1' };
const INSIDE = ['127.10.0.0/16', `${RUN_TERMINAL.address}/32`];
/** A guard against a hung run; a normal run takes 1-3 s. */
const LIMIT_MS = 15_000;
const GATEWAY_JS = fileURLToPath(new URL('../../gateway-ref/bin/capa-gateway.js', import.meta.url));
const TERMINAL_JS = fileURLToPath(new URL('./terminal.js', import.meta.url));
const CAPA_RUN = fileURLToPath(new URL('../../../build/Release/capa-run', import.meta.url));
const PRELOAD_LIBRARY = fileURLToPath(new URL('../../../build/Release/libcapa_preload.so', import.meta.url));

commandLine('capa-demo', process.argv.slice(2), usageExit('capa-demo', 2), (y) => y
  .usage('$0')
  .epilog(`CAPA end to end on loopback: capa-gateway with pool ${POOL}, an outside HTTP + UDP echo host ${HOST} (${OUTSIDE}), `
    + `${NODE_TERMINALS.length} capa-socket terminals and, when capa-run and curl are available, curl under capa-run, all `
    + 'connecting at once. Prints, per flow, the (address, port) the gateway '
    + `assigned and the one the outside host saw. No root needed; gives up after ${LIMIT_MS / 1000} s. `
    + 'Exit codes: 0 every flow matched, 1 a mismatch or a failure, 2 bad flags.'))
  .parseSync();

const exists = (file: string): Promise<boolean> => access(file).then(() => true, () => false);

interface Outside {
  httpPort: number;
  udpPort: number;
  /** The peer address:port the host saw for `<terminal> <proto>` (HTTP GET /<terminal>, a datagram "<terminal>"). */
  seen(name: string, proto: FlowProto): string | undefined;
  close(): Promise<void>;
}

/** The outside host, answering HTTP and UDP with the peer it saw. */
async function startOutside(): Promise<Outside> {
  const seen = new Map<string, string>();
  const host = await startOutsideHost(OUTSIDE, {
    onPeer: (proto, peer, said) => seen.set(`${proto === 'tcp' ? decodeURIComponent(said.slice(1)) : said} ${proto}`, peerKey(peer)),
  });
  return {
    httpPort: host.tcpPort,
    udpPort: host.udpPort,
    seen: (name, proto) => seen.get(`${name} ${proto}`),
    close: host.close,
  };
}

/** Collects a child's output. */
function watch(child: ChildProcess): { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { out += chunk; });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { err += chunk; });
  return { stdout: () => out, stderr: () => err };
}

const children = new Set<ChildProcess>();

/** A program that runs to its end, its output piped. */
function start(program: string, args: string[]): ChildProcess {
  return track(spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
}

/** Stopped with the demo (or killed at its time limit). */
function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stopChildren(): Promise<void> {
  await Promise.all([...children].map(async (child) => {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }));
}

async function startGatewayProcess(zoneFile: string): Promise<string> {
  const gateway = await startReady([process.execPath, GATEWAY_JS, '--listen', '127.0.0.1:0', '--pool', POOL, ...INSIDE.flatMap((p) => ['--inside', p]), '--zone', zoneFile],
    /listening on (\S+)/);
  track(gateway.child);
  return gateway.match[1]!;
}

interface Terminal {
  name: string;
  /** What runs there: capa-socket, or the program under capa-run. */
  kind: string;
  address: string;
  /** Lets the terminal connect; resolves with its report once it exited. */
  go(): Promise<TerminalReport>;
}

async function startTerminal(spec: { name: string; address: string }, server: string, outside: Outside): Promise<Terminal> {
  const terminal = await startReady([process.execPath, TERMINAL_JS, '--name', spec.name, '--server', server, '--terminal-address', spec.address, '--host', HOST,
    '--http-port', String(outside.httpPort), '--udp-port', String(outside.udpPort)], /^ready$/m, { stdin: 'pipe' });
  const { child } = terminal;
  track(child);
  const output = { stdout: () => terminal.output().stdout, stderr: () => terminal.output().stderr };
  return {
    ...spec,
    kind: 'capa-socket',
    async go() {
      const exited = once(child, 'exit');
      child.stdin!.end('go\n');
      await exited;
      const report = parseReport(spec.name, output.stdout());
      return 'error' in report && output.stderr() !== '' ? { ...report, error: `${report.error} (${output.stderr().trim()})` } : report;
    },
  };
}

/** Why curl under capa-run cannot join, or undefined when it can. */
async function capaRunMissing(): Promise<string | undefined> {
  for (const file of [CAPA_RUN, PRELOAD_LIBRARY]) {
    if (!(await exists(file))) return `${file} is not built`;
  }
  const curl = (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'curl'));
  return (await Promise.all(curl.map(exists))).some(Boolean) ? undefined : 'curl is not installed';
}

/**
 * curl under capa-run, started now; `curl -K -` reads its URL from stdin, so it connects only
 * when `go` writes it, at the same time as the other terminals.
 */
function startCapaRunTerminal(server: string, outside: Outside, dir: string): Terminal {
  const log = join(dir, 'capa-run.log');
  const child = start(CAPA_RUN, ['--server', server, '--log', log, '--quiet', '--', 'curl', '-s', '-S', '--max-time', '5', '-o', '/dev/null', '-K', '-']);
  const output = watch(child);
  return {
    ...RUN_TERMINAL,
    kind: 'capa-run curl',
    async go() {
      const exited = once(child, 'exit') as Promise<[number | null]>;
      child.stdin!.end(`url = "http://${HOST}:${outside.httpPort}/${RUN_TERMINAL.name}"\n`);
      const [code] = await exited;
      const report = reportFromCapaRunLog(RUN_TERMINAL.name, await readFile(log, 'utf8').catch(() => ''));
      if (code === 0 || 'error' in report) return report;
      return { name: RUN_TERMINAL.name, error: `capa-run curl exited ${code}: ${output.stderr().trim()}` };
    },
  };
}

interface Row {
  terminal: string;
  from: string;
  proto: string;
  assigned: string;
  seen: string;
  match: boolean;
}

function rowsOf(terminals: Terminal[], reports: TerminalReport[], outside: Outside): Row[] {
  return reports.flatMap((report, i): Row[] => {
    const from = terminals[i]!.address;
    const terminal = `${report.name} ${terminals[i]!.kind}`;
    if ('error' in report) return [{ terminal, from, proto: '-', assigned: `failed: ${report.error}`, seen: '-', match: false }];
    return report.flows.map((flow) => {
      const seen = outside.seen(report.name, flow.proto) ?? 'nothing';
      return { terminal, from, proto: flow.proto, assigned: flow.assigned, seen, match: seen === flow.assigned };
    });
  });
}

function table(rows: Row[]): string {
  const head = ['terminal', 'DNS from', 'flow', 'assigned (aOG:pA)', 'outside host saw', 'match'];
  const cells = [head, ...rows.map((r) => [r.terminal, r.from, r.proto, r.assigned, r.seen, r.match ? 'yes' : 'NO'])];
  const widths = head.map((_, c) => Math.max(...cells.map((row) => row[c]!.length)));
  return cells.map((row) => row.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

/** Gateway addresses used by more than one terminal, e.g. "127.64.0.1 by A, C". */
function shared(rows: Row[]): string[] {
  const users = new Map<string, Set<string>>();
  for (const row of rows.filter((r) => r.match)) {
    const address = row.assigned.slice(0, row.assigned.lastIndexOf(':'));
    users.set(address, (users.get(address) ?? new Set()).add(row.terminal.split(' ')[0]!));
  }
  return [...users].filter(([, names]) => names.size > 1).map(([address, names]) => `${address} by ${[...names].join(', ')}`);
}

async function demo(dir: string): Promise<boolean> {
  const zoneFile = join(dir, 'outside.zone');
  await writeFile(zoneFile, `$ORIGIN outside.example.\n$TTL 60\necho IN A ${OUTSIDE}\n`);
  const outside = await startOutside();
  try {
    const server = await startGatewayProcess(zoneFile);
    process.stdout.write(`capa-gateway on ${server}, pool ${POOL}; outside host ${HOST} = ${OUTSIDE} (http :${outside.httpPort}, udp :${outside.udpPort})\n`);
    const missing = await capaRunMissing();
    const terminals = [
      ...(missing === undefined ? [startCapaRunTerminal(server, outside, dir)] : []),
      ...await Promise.all(NODE_TERMINALS.map((spec) => startTerminal(spec, server, outside))),
    ].sort((a, b) => a.name.localeCompare(b.name));
    if (missing !== undefined) process.stdout.write(`(curl under capa-run does not take part: ${missing})\n`);
    const reports = await Promise.all(terminals.map((t) => t.go()));
    const rows = rowsOf(terminals, reports, outside);
    const ok = rows.every((r) => r.match);
    const sharing = shared(rows);
    process.stdout.write(`\n${table(rows)}\n\n`);
    process.stdout.write(`gateway addresses shared by terminals: ${sharing.length > 0 ? sharing.join('; ') : 'none'}\n`);
    process.stdout.write(ok ? `all ${rows.length} flows: the outside host saw exactly the assigned (address, port)\n`
      : 'MISMATCH or failure: see the rows marked NO\n');
    return ok;
  } finally {
    await stopChildren();
    await outside.close();
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'capa-demo-'));
  const limit = setTimeout(() => {
    process.stderr.write(`capa-demo: did not finish within ${LIMIT_MS / 1000} s\n`);
    for (const child of children) child.kill('SIGKILL');
    process.exit(1);
  }, LIMIT_MS);
  try {
    process.exitCode = (await demo(dir)) ? 0 : 1;
  } catch (err) {
    process.stderr.write(`capa-demo: ${(err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    clearTimeout(limit);
    await rm(dir, { recursive: true, force: true });
  }
}

void main();
