/**
 * capa-run overhead: wall time of one `curl` HTTP GET of a local server, plain next to the same
 * curl under the CAPA LD_PRELOAD library, through the same name-resolution path. To give plain
 * curl that path, everything runs in a network namespace whose /etc/resolv.conf (ip netns
 * exec's /etc/netns/<ns>/resolv.conf) names capa-gateway on 127.0.0.1:53: plain curl's glibc
 * asks it for A/AAAA, the library asks it for CAPA (and releases on close). Rows, interleaved
 * in the same run:
 *   plain curl (peer)                  curl, glibc resolver -> gateway
 *   curl + libcapa_preload.so          what capa-run gives the program: LD_PRELOAD + CAPA_SERVER
 *   capa-run -- curl                   the same under the native launcher and its supervisor
 *   bin/capa-run -- curl               the same through the package's bin script (npm's command)
 *   true (peer), capa-run -- true,     the launcher's own cost on a program that does nothing
 *   bin/capa-run -- true
 * Targets (medians): the library and capa-run at most 1.1x plain curl; capa-run -- true at most
 * 2 ms over true. Needs root (network namespace).
 *
 *   node dist/bench/capa-run-curl.js [--runs 100] [--check]
 */
import { type ChildProcess, spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchCommandLine, median, percentile, table } from './lib.js';
import { startReady } from '../common/ready-process.js';

const TARGET_RATIO = 1.1;
/** What `capa-run -- true` may add to `true` (ms, medians). */
const TARGET_START_MS = 2;
const POOL = '127.66.90.1-127.66.90.4';
const OUTSIDE = '127.67.90.1';
const URL_TO_GET = 'http://outside.test/';
const GATEWAY_JS = fileURLToPath(new URL('../gateway-ref/bin/capa-gateway.js', import.meta.url));
const CAPA_RUN = fileURLToPath(new URL('../../build/Release/capa-run', import.meta.url));
const BIN_SCRIPT = fileURLToPath(new URL('../../bin/capa-run', import.meta.url));
const LIBRARY = fileURLToPath(new URL('../../build/Release/libcapa_preload.so', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

const argv = benchCommandLine('capa-run-curl', (y) => y
  .usage('$0 [options]\n\nWall time of curl fetching a local page: plain, under the CAPA LD_PRELOAD library, and under capa-run (same resolution path, in a network namespace; needs root); and of capa-run -- true next to true.')
  .option('runs', { type: 'number', default: 100, describe: 'measured runs per row (interleaved)' })
  .option('warmup', { type: 'number', default: 5, describe: 'unmeasured runs per row first' })
  .option('check', { type: 'boolean', default: false, describe: `exit 1 when the library's or capa-run's median is above ${TARGET_RATIO}x plain curl's, or capa-run -- true is more than ${TARGET_START_MS} ms over true` })
  .option('inner', { type: 'string', hidden: true, describe: 'internal: run the measurement inside this namespace' })
  .check((a) => {
    if (!Number.isInteger(a.runs) || a.runs < 10) throw new Error('--runs must be a whole number >= 10');
    if (!Number.isInteger(a.warmup) || a.warmup < 0) throw new Error('--warmup must be a whole number >= 0');
    return true;
  }))
  .parseSync();

interface Row {
  name: string;
  role: 'peer' | 'library' | 'launcher' | 'script' | 'true' | 'launcher true' | 'script true';
  command: string[];
  env: NodeJS.ProcessEnv;
  /** What the page must report as the client address: a pool address (CAPA rows), not one, or no page at all. */
  page: 'pool' | 'direct' | 'none';
  ms: number[];
}

function findCurl(): string {
  return execFileSync('sh', ['-c', 'command -v curl'], { encoding: 'utf8' }).trim();
}

/** Runs a child to completion and returns its wall time in ms; throws on a failed fetch. */
async function timed(row: Row): Promise<number> {
  const start = process.hrtime.bigint();
  const child = spawn(row.command[0]!, row.command.slice(1), { env: { ...process.env, ...row.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const [code] = await once(child, 'close') as [number | null];
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const client = out.trim();
  const fromPool = client.startsWith('127.66.90.');
  if (code !== 0 || (row.page === 'pool' && !fromPool) || (row.page === 'direct' && (fromPool || client === ''))) {
    throw new Error(`${row.name}: exit ${code}, page saw client "${client}"\n${err}`);
  }
  return ms;
}

async function startChild(command: string[], readyPattern: RegExp): Promise<ChildProcess> {
  return (await startReady(command, readyPattern, { stderr: 'inherit' })).child;
}

/** Inside the namespace: gateway on :53, the page on OUTSIDE:80, then the interleaved rows. */
async function measure(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'capa-bench-'));
  const zone = join(dir, 'zone.txt');
  await writeFile(zone, `$ORIGIN test.\n$TTL 60\noutside A ${OUTSIDE}\n`);
  const children: ChildProcess[] = [];
  try {
    children.push(await startChild([process.execPath, GATEWAY_JS, '--listen', '127.0.0.1:53', '--pool', POOL, '--zone', zone, '--hold-down', '0', '--state-dir', 'none'], /listening on/));
    const page = `require('node:http').createServer((q, r) => r.end(q.socket.remoteAddress + '\\n')).listen(80, '${OUTSIDE}', () => console.log('ready'))`;
    children.push(await startChild([process.execPath, '-e', page], /ready/));
    const curl = [findCurl(), '-sS', '--max-time', '10', URL_TO_GET];
    const server = ['--server', '127.0.0.1:53', '--'];
    const rows: Row[] = [
      { name: 'plain curl (peer)', role: 'peer', command: curl, env: {}, page: 'direct', ms: [] },
      { name: 'curl + libcapa_preload.so', role: 'library', command: curl, env: { LD_PRELOAD: LIBRARY, CAPA_SERVER: '127.0.0.1:53' }, page: 'pool', ms: [] },
      { name: 'capa-run -- curl', role: 'launcher', command: [CAPA_RUN, ...server, ...curl], env: {}, page: 'pool', ms: [] },
      { name: 'bin/capa-run -- curl', role: 'script', command: [BIN_SCRIPT, ...server, ...curl], env: {}, page: 'pool', ms: [] },
      { name: 'true (peer)', role: 'true', command: ['true'], env: {}, page: 'none', ms: [] },
      { name: 'capa-run -- true', role: 'launcher true', command: [CAPA_RUN, ...server, 'true'], env: {}, page: 'none', ms: [] },
      { name: 'bin/capa-run -- true', role: 'script true', command: [BIN_SCRIPT, ...server, 'true'], env: {}, page: 'none', ms: [] },
    ];
    for (let i = 0; i < argv.warmup; i++) for (const row of rows) await timed(row);
    for (let i = 0; i < argv.runs; i++) for (const row of rows) row.ms.push(await timed(row));
    report(rows);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
}

function report(rows: Row[]): void {
  const medianOf = (role: Row['role']): number => median(rows.find((r) => r.role === role)!.ms);
  const peer = medianOf('peer');
  console.log(`curl GET ${URL_TO_GET} (page on ${OUTSIDE}:80, capa-gateway on 127.0.0.1:53 in a network namespace), ${argv.runs} runs per row interleaved`);
  console.log(table([
    ['row', 'runs', 'median ms', 'p90 ms', 'mean ms', 'vs plain'],
    ...rows.map((row) => {
      const mean = row.ms.reduce((a, b) => a + b, 0) / row.ms.length;
      const base = row.role.endsWith('true') ? medianOf('true') : peer;
      return [row.name, String(row.ms.length), median(row.ms).toFixed(2), percentile([...row.ms].sort((a, b) => a - b), 90).toFixed(2),
        mean.toFixed(2), `${(median(row.ms) / base).toFixed(3)}x`];
    }),
  ]));
  const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  const library = medianOf('library') / peer;
  const launcher = medianOf('launcher') / peer;
  const start = medianOf('launcher true') - medianOf('true');
  const script = medianOf('script true') - medianOf('launcher true');
  console.log(`library / plain curl (median): ${library.toFixed(3)}x, target <= ${TARGET_RATIO}x: ${verdict(library <= TARGET_RATIO)}`);
  console.log(`capa-run / plain curl (median): ${launcher.toFixed(3)}x, target <= ${TARGET_RATIO}x: ${verdict(launcher <= TARGET_RATIO)}`);
  console.log(`capa-run -- true over true: ${start.toFixed(2)} ms, target <= ${TARGET_START_MS} ms: ${verdict(start <= TARGET_START_MS)}; `
    + `the bin script adds ${script.toFixed(2)} ms more`);
  if (argv.check && (library > TARGET_RATIO || launcher > TARGET_RATIO || start > TARGET_START_MS)) process.exitCode = 1;
}

/** Outside: a namespace whose resolv.conf names the gateway; the measurement runs in it. */
function outer(): void {
  if (process.getuid?.() !== 0) {
    console.error('capa-run-curl bench: needs root (it creates a network namespace so plain curl resolves through the gateway)');
    process.exit(1);
  }
  const ns = `capa-bench-${process.pid}`;
  const etc = `/etc/netns/${ns}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    mkdirSync(etc, { recursive: true });
    writeFileSync(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    const args = [SELF, '--inner', ns, '--runs', String(argv.runs), '--warmup', String(argv.warmup), ...(argv.check ? ['--check'] : [])];
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, ...args], { stdio: 'inherit' });
  } catch (err) {
    process.exitCode = (err as { status?: number }).status ?? 1;
  } finally {
    rmSync(etc, { recursive: true, force: true });
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

if (argv.inner === undefined) outer();
else await measure();
