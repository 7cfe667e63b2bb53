/**
 * DNS front-end throughput: CAPA queries per second that capa-gateway answers with <= 0.1 % loss,
 * every answer a fresh allocation, side by side with NSD (rate limiting off) serving the same
 * names as static CAPA records. dnsperf offers fixed rates (-Q); the rate climbs until the loss
 * limit is broken, then a bisection narrows the highest passing rate. Both servers run on
 * 127.0.0.1 in the same run, one after the other (the gateway twice: without and with its state
 * journal), so the machine's load is shared alike. The
 * highest rate swings with whatever else the machine runs; the CPU time each server spends per
 * answered query at one fixed rate (from /proc, the server's processes summed) is steadier.
 *
 *   node dist/bench/dns-frontend.js [--seconds 3] [--max-loss 0.1] [--start 2000] [--bisect 3]
 *
 * Needs dnsperf and nsd (Debian packages dnsperf, nsd).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { availableParallelism, loadavg } from 'node:os';
import { encode as encodeRdata } from '../resolver/codec/rdata.js';
import { benchCommandLine } from './lib.js';
import { startReady, stopChild as stop } from '../common/ready-process.js';

const run = promisify(execFile);
const GATEWAY_BIN = join(dirname(fileURLToPath(import.meta.url)), '../gateway-ref/bin/capa-gateway.js');
/** Destination ports in the query mix: 100 destinations (proto, aOB, pB), as a busy GRM sees. */
const DESTINATION_PORTS = Array.from({ length: 100 }, (_, i) => 8000 + i);
const HOST_B = '127.0.0.80';

const args = benchCommandLine('dns-frontend', (y) => y
  .usage('$0 [options]\n\nCAPA queries per second capa-gateway answers at a loss limit, next to NSD serving static CAPA records (dnsperf).')
  .option('seconds', { type: 'number', default: 3, describe: 'Length of each dnsperf run at one rate' })
  .option('max-loss', { type: 'number', default: 0.1, describe: 'Highest loss (percent, failures included) a passing rate may have' })
  .option('start', { type: 'number', default: 2000, describe: 'First rate tried (queries/s); it doubles until a run fails' })
  .option('max-rate', { type: 'number', default: 512_000, describe: 'Highest rate tried' })
  .option('bisect', { type: 'number', default: 3, describe: 'Bisection steps between the last passing and the first failing rate' })
  .option('cpu-rate', { type: 'number', default: 8000, describe: 'Fixed rate (queries/s) at which each server\'s CPU time per answered query is measured, before the search' })
  .check((a) => {
    if (!(a.seconds >= 1) || !(a.start >= 1) || !(a['cpu-rate'] >= 1) || !(a['max-rate'] >= a.start) || !(a['max-loss'] >= 0) || !Number.isInteger(a.bisect) || a.bisect < 0) {
      throw new Error('--seconds, --start and --cpu-rate must be >= 1, --max-rate >= --start, --max-loss >= 0, --bisect a whole number >= 0');
    }
    return true;
  }))
  .parseSync();

interface PerfRun {
  rate: number;
  sent: number;
  lost: number;
  /** Responses other than NOERROR (e.g. SERVFAIL for an exhausted pool). */
  failed: number;
  qps: number;
  latencyMs: number;
}

/** Reads dnsperf's statistics block. */
function parseDnsperf(output: string, rate: number): PerfRun {
  const number = (re: RegExp): number => {
    const m = re.exec(output);
    if (!m) throw new Error(`dnsperf output lacks ${re.source}:\n${output}`);
    return Number(m[1]);
  };
  const codes = /Response codes:\s+(.*)/.exec(output)?.[1] ?? '';
  const failed = [...codes.matchAll(/(\w+) (\d+) \(/g)].filter((m) => m[1] !== 'NOERROR').reduce((n, m) => n + Number(m[2]), 0);
  return {
    rate,
    sent: number(/Queries sent:\s+(\d+)/),
    lost: number(/Queries lost:\s+(\d+)/),
    failed,
    qps: number(/Queries per second:\s+([\d.]+)/),
    latencyMs: number(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
  };
}

function lossPercent(r: PerfRun): number {
  return r.sent === 0 ? 100 : ((r.lost + r.failed) / r.sent) * 100;
}

async function dnsperf(port: number, queries: string, rate: number): Promise<PerfRun> {
  const { stdout } = await run('dnsperf', [
    '-s', '127.0.0.1', '-p', String(port), '-d', queries, '-e', '-l', String(args.seconds),
    '-Q', String(rate), '-t', '1', '-q', '2000', '-c', '4',
  ], { timeout: (args.seconds + 30) * 1000 });
  return parseDnsperf(stdout, rate);
}

/** Doubles the rate until a run breaks the loss limit, then bisects; returns every run made. */
async function search(port: number, queries: string): Promise<{ runs: PerfRun[]; best: PerfRun | undefined }> {
  const runs: PerfRun[] = [];
  const passes = (r: PerfRun): boolean => lossPercent(r) <= args['max-loss'] && r.qps >= r.rate * 0.95;
  let best: PerfRun | undefined;
  let failRate: number | undefined;
  for (let rate = args.start; rate <= args['max-rate']; rate *= 2) {
    const r = await dnsperf(port, queries, rate);
    runs.push(r);
    if (!passes(r)) { failRate = rate; break; }
    best = r;
  }
  let low = best?.rate ?? 0;
  for (let step = 0; failRate !== undefined && step < args.bisect; step++) {
    const rate = Math.round((low + failRate) / 2);
    const r = await dnsperf(port, queries, rate);
    runs.push(r);
    if (passes(r)) { best = r; low = rate; } else failRate = rate;
  }
  return { runs, best };
}

/** utime + stime of one process, in clock ticks, and its parent: fields 14, 15 and 4 of /proc/<pid>/stat. */
async function procTimes(pid: number): Promise<{ pid: number; ticks: number; ppid: number } | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone meanwhile
  }
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // the name may hold spaces; fields from 3 on
  return { pid, ticks: Number(f[11]) + Number(f[12]), ppid: Number(f[1]) };
}

/** CPU ticks used so far by a server: the process and all its descendants (nsd runs as three). */
async function serverTicks(pid: number): Promise<number> {
  const all = (await Promise.all((await readdir('/proc')).filter((e) => /^\d+$/.test(e)).map((e) => procTimes(Number(e)))))
    .filter((p) => p !== undefined);
  const tree = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of all) if (!tree.has(p.pid) && tree.has(p.ppid)) { tree.add(p.pid); grew = true; }
  }
  return all.reduce((ticks, p) => ticks + (tree.has(p.pid) ? p.ticks : 0), 0);
}

/** CPU microseconds the server spends per answered query at a fixed rate, after a run of the same to warm up. */
async function cpuPerQuery(pid: number, port: number, queries: string, rate: number, ticksPerSecond: number): Promise<number> {
  await dnsperf(port, queries, rate);
  const before = await serverTicks(pid);
  const r = await dnsperf(port, queries, rate);
  const ticks = (await serverTicks(pid)) - before;
  return (ticks / ticksPerSecond) * 1e6 / Math.max(1, r.sent - r.lost);
}

async function freePort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}


async function startGateway(dir: string, extra: string[] = []): Promise<{ child: ChildProcess; port: number; metrics: number }> {
  const gateway = await startReady([process.execPath, GATEWAY_BIN,
    '--listen', '127.0.0.1:0', '--pool', '127.64.0.0/16', '--inside', '127.0.0.0/8', '--zone', join(dir, 'gateway.zone'),
    // Short lease and hold-down: dnsperf never uses nor releases its allocations.
    '--lease', '2', '--hold-down', '5', '--log', join(dir, 'journal.jsonl'), '--metrics', '127.0.0.1:0', ...extra,
  ], /listening on 127\.0\.0\.1:(\d+) .*metrics http:\/\/127\.0\.0\.1:(\d+)/, { timeoutMs: 30_000 });
  return { child: gateway.child, port: Number(gateway.match[1]), metrics: Number(gateway.match[2]) };
}

async function startNsd(dir: string, names: { name: string; port: number }[]): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const rdata = (p: number): string => Buffer.from(encodeRdata({ flags: 0, proto: 6, port: p, address: '127.64.0.1' })).toString('hex');
  await writeFile(join(dir, 'example.zone'), [
    '$ORIGIN example.', '$TTL 300',
    '@ IN SOA ns.example. admin.example. 1 3600 600 86400 300', '@ IN NS ns.example.', 'ns IN A 127.0.0.53',
    `www IN A ${HOST_B}`,
    ...names.map((n) => `${n.name}. 30 IN TYPE65280 \\# 8 ${rdata(n.port)}`),
  ].join('\n') + '\n');
  await writeFile(join(dir, 'nsd.conf'), `server:
  ip-address: 127.0.0.1@${port}
  server-count: 1
  zonesdir: "${dir}"
  pidfile: "${dir}/nsd.pid"
  database: ""
  zonelistfile: "${dir}/zone.list"
  xfrdfile: "${dir}/xfrd.state"
  xfrdir: "${dir}"
  logfile: "${dir}/nsd.log"
  username: ""
  chroot: ""
  verbosity: 0
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "example"
  zonefile: "example.zone"
`);
  const child = spawn('nsd', ['-d', '-c', join(dir, 'nsd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (let i = 0; i < 100; i++) {
    try {
      const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(port), '+short', '+time=1', '+tries=1', `${names[0]!.name}`, 'TYPE65280']);
      if (stdout.includes('\\# 8')) return { child, port };
    } catch {
      // not answering yet
    }
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stop(child);
  throw new Error(`nsd did not start on 127.0.0.1:${port} (see ${dir}/nsd.log)`);
}

async function allocationsMade(metricsPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  const m = /^capa_allocation_events_total\{event="allocate"\} (\d+)/m.exec(await res.text());
  return Number(m?.[1] ?? NaN);
}

function row(server: string, r: PerfRun, best: boolean): string {
  return [server.padEnd(12), String(r.rate).padStart(8), String(r.sent).padStart(9), String(r.lost).padStart(7),
    String(r.failed).padStart(7), lossPercent(r).toFixed(3).padStart(8), r.qps.toFixed(0).padStart(9),
    r.latencyMs.toFixed(2).padStart(8), best ? '  <- best' : ''].join(' ');
}

async function requireTools(): Promise<void> {
  for (const [tool, versionFlag] of [['dnsperf', '-h'], ['nsd', '-v'], ['dig', '-v']] as const) {
    try {
      await run(tool, [versionFlag]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error(`${tool} is not installed: apt-get install dnsperf nsd bind9-dnsutils`);
      }
    }
  }
}

async function main(): Promise<void> {
  await requireTools();
  const dir = await mkdtemp(join(tmpdir(), 'capa-bench-dns-'));
  const names = DESTINATION_PORTS.map((port) => ({ name: `_${port}._tcp.www.example`, port }));
  const queries = join(dir, 'queries.txt');
  await writeFile(queries, names.map((n) => `${n.name} TYPE65280`).join('\n') + '\n');
  await writeFile(join(dir, 'gateway.zone'), `$ORIGIN example.\n$TTL 300\nwww A ${HOST_B}\n`);
  const children: ChildProcess[] = [];
  const ticksPerSecond = Number((await run('getconf', ['CLK_TCK'])).stdout.trim());
  try {
    const gateway = await startGateway(dir);
    children.push(gateway.child);
    const gwCpu = await cpuPerQuery(gateway.child.pid!, gateway.port, queries, args['cpu-rate'], ticksPerSecond);
    const gw = await search(gateway.port, queries);
    const noerror = gw.runs.reduce((n, r) => n + r.sent - r.lost - r.failed, 0);
    const allocations = await allocationsMade(gateway.metrics);
    await stop(gateway.child);

    // The same gateway writing its state journal: what the journal costs the front end.
    const journaled = await startGateway(dir, ['--state-dir', join(dir, 'state')]);
    children.push(journaled.child);
    const jCpu = await cpuPerQuery(journaled.child.pid!, journaled.port, queries, args['cpu-rate'], ticksPerSecond);
    const jw = await search(journaled.port, queries);
    await stop(journaled.child);

    const nsd = await startNsd(dir, names);
    children.push(nsd.child);
    const nsCpu = await cpuPerQuery(nsd.child.pid!, nsd.port, queries, args['cpu-rate'], ticksPerSecond);
    const ns = await search(nsd.port, queries);
    await stop(nsd.child);

    console.log(`DNS front end: CAPA queries/s at <= ${args['max-loss']} % loss (dnsperf -Q, ${args.seconds} s per rate, 100 destinations, EDNS on)`);
    console.log(['server'.padEnd(12), 'offered'.padStart(8), 'sent'.padStart(9), 'lost'.padStart(7), 'failed'.padStart(7),
      'loss %'.padStart(8), 'answered/s'.padStart(9), 'lat ms'.padStart(8)].join(' '));
    for (const r of gw.runs) console.log(row('capa-gateway', r, r === gw.best));
    for (const r of jw.runs) console.log(row('+journal', r, r === jw.best));
    for (const r of ns.runs) console.log(row('nsd', r, r === ns.best));
    const g = gw.best?.rate ?? 0;
    const n = ns.best?.rate ?? 0;
    console.log('');
    console.log(`capa-gateway: ${g} q/s (every answer a fresh allocation: ${allocations} allocations for ${noerror} NOERROR answers)`);
    const j = jw.best?.rate ?? 0;
    console.log(`capa-gateway with its state journal: ${j} q/s (${g === 0 ? 'n/a' : (j / g).toFixed(3)}x without; target >= 0.90x), `
      + `CPU ${jCpu.toFixed(1)} us per answered query at ${args['cpu-rate']} q/s (${(jCpu / gwCpu).toFixed(3)}x without)`);
    console.log(`nsd (static CAPA records, 1 server process, rrl off): ${n} q/s`);
    console.log(`ratio gateway / nsd: ${n === 0 ? 'n/a' : (g / n).toFixed(3)} (goal >= 0.5)`);
    console.log(`CPU time per answered query at ${args['cpu-rate']} q/s: capa-gateway ${gwCpu.toFixed(1)} us, nsd ${nsCpu.toFixed(1)} us`
      + ` (nsd / gateway ${(nsCpu / gwCpu).toFixed(3)})`);
    console.log(`machine load at the end (1, 5, 15 min): ${loadavg().map((l) => l.toFixed(2)).join(', ')} on ${availableParallelism()} CPUs`);
  } finally {
    for (const child of children) await stop(child);
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(`dns-frontend bench: ${(err as Error).message}`);
  process.exit(1);
});
