/**
 * Blocking: flows offered to one destination socket against flows admitted, for N = 1, 4, 16 pool
 * addresses. CAPA (the real allocator) against the peer it replaces: terminals sharing the pool
 * (RSIP / REBEKAH-IP style) that each pick a random source port without coordination, so a flow
 * fails when another terminal already uses that (aOG, pA) towards the same destination.
 * Writes docs/blocking.md (table) and docs/blocking.svg (plot) unless --no-write.
 *
 *   node dist/bench/blocking.js [--max-load 1.25] [--steps 25] [--terminals 1000] [--no-write]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Allocator } from '../gateway-ref/lib/grm/allocator.js';
import { PORT_COUNT } from '../gateway-ref/lib/grm/port-set.js';
import { cryptoRandom } from '../gateway-ref/lib/grm/random.js';
import type { Destination } from '../gateway-ref/lib/grm/types.js';
import { benchCommandLine } from './lib.js';

const POOL_SIZES = [1, 4, 16];
const DESTINATION: Destination = { proto: 6, address: '203.0.113.10', port: 443 };
/** Loads (offered / bound) listed in the table; the plot uses every step. */
const TABLE_LOADS = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 1, 1.1, 1.25];

const argv = benchCommandLine('blocking', (y) => y
  .usage('$0 [options]\n\nFlows admitted to one destination socket: CAPA against uncoordinated random source ports.')
  .option('max-load', { type: 'number', default: 1.25, describe: 'largest offered load, as a multiple of the bound (65536 - 1024) x N' })
  .option('steps', { type: 'number', default: 25, describe: 'points per curve in the plot' })
  .option('terminals', { type: 'number', default: 1000, describe: 'inside terminals sharing the pool (flows are spread over them round-robin)' })
  .option('write', { type: 'boolean', default: true, describe: 'write docs/blocking.md and docs/blocking.svg (--no-write: print only)' })
  .option('out-dir', { type: 'string', describe: 'where to write them (default: the repository\'s docs/)' })
  .check((a) => {
    if (!(a['max-load'] > 0 && a['max-load'] <= 4)) throw new Error('--max-load must be in (0, 4]');
    if (!(Number.isInteger(a.steps) && a.steps >= 2 && a.steps <= 200)) throw new Error('--steps must be an integer 2-200');
    if (!(Number.isInteger(a.terminals) && a.terminals >= 1)) throw new Error('--terminals must be an integer >= 1');
    return true;
  }))
  .parseSync();

/** Offered counts (cumulative, increasing) at which a curve is sampled. */
function checkpoints(bound: number): number[] {
  const loads = new Set([...TABLE_LOADS.filter((l) => l <= argv['max-load'] + 1e-9)]);
  for (let i = 1; i <= argv.steps; i++) loads.add((argv['max-load'] * i) / argv.steps);
  return [...loads].map((l) => Math.round(l * bound)).sort((a, b) => a - b);
}

/** Admitted flows at each checkpoint when `offer(i)` says whether flow i got through. */
function admittedAt(points: number[], offer: (i: number) => boolean): number[] {
  const out: number[] = [];
  let admitted = 0;
  let offered = 0;
  for (const point of points) {
    for (; offered < point; offered++) if (offer(offered)) admitted++;
    out.push(admitted);
  }
  return out;
}

function terminalName(i: number): string {
  return `100.64.${(i >> 8) & 255}.${i & 255}`;
}

function poolOf(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `198.51.100.${i + 1}`);
}

/** CAPA: the real allocator, nothing ever released. */
function capaCurve(n: number, points: number[]): number[] {
  const allocator = new Allocator({ pool: poolOf(n), now: () => 0 });
  return admittedAt(points, (i) => {
    try {
      allocator.allocate(terminalName(i % argv.terminals), DESTINATION);
      return true;
    } catch {
      return false;
    }
  });
}

/** The peer: terminal t sends from pool address t mod N and a port of its own random choice. */
function randomCurve(n: number, points: number[]): { admitted: number[]; firstBlocked: number } {
  const used = Array.from({ length: n }, () => new Uint8Array(PORT_COUNT));
  const random = cryptoRandom();
  let firstBlocked = -1;
  const admitted = admittedAt(points, (i) => {
    const ports = used[(i % argv.terminals) % n]!;
    const port = Math.floor(random() * PORT_COUNT);
    if (ports[port] === 0) {
      ports[port] = 1;
      return true;
    }
    if (firstBlocked < 0) firstBlocked = i + 1;
    return false;
  });
  return { admitted, firstBlocked };
}

/** Expected admissions of the random model: each address receives offered/N uniform picks. */
function expectedRandom(n: number, offered: number): number {
  return n * PORT_COUNT * (1 - Math.exp(-offered / (n * PORT_COUNT)));
}

interface Series {
  n: number;
  bound: number;
  points: number[];
  capa: number[];
  random: number[];
  firstBlocked: number;
}

const int = (v: number): string => Math.round(v).toLocaleString('en-US');
const share = (part: number, whole: number): string => (whole === 0 ? '0.0 %' : `${((100 * part) / whole).toFixed(1)} %`);

function tableRows(all: Series[]): string[][] {
  const rows: string[][] = [];
  for (const s of all) {
    for (const load of TABLE_LOADS) {
      const k = s.points.indexOf(Math.round(load * s.bound));
      if (k < 0) continue;
      const offered = s.points[k]!;
      rows.push([
        String(s.n), `${load.toFixed(2)}`, int(offered),
        int(s.capa[k]!), share(offered - s.capa[k]!, offered),
        int(s.random[k]!), share(offered - s.random[k]!, offered), int(expectedRandom(s.n, offered)),
      ]);
    }
  }
  return rows;
}

const HEADER = ['N', 'load', 'offered', 'CAPA admitted', 'CAPA blocked', 'random admitted', 'random blocked', 'random (expected)'];

function printTable(rows: string[][]): void {
  const widths = HEADER.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]): string => cells.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  console.log(line(HEADER));
  for (const row of rows) console.log(line(row));
}

function markdownTable(rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(HEADER), line(HEADER.map((_, c) => (c < 2 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

/** Three panels (one per N), offered on x, admitted on y, both 0 .. max-load x bound. */
function svg(all: Series[]): string {
  const panel = { w: 300, h: 260, left: 62, top: 40, gap: 64 };
  const width = panel.left + all.length * (panel.w + panel.gap);
  const height = panel.top + panel.h + 70;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="14">Flows to one destination socket: offered vs admitted</text>`,
  ];
  all.forEach((s, p) => {
    const x0 = panel.left + p * (panel.w + panel.gap);
    const y0 = panel.top + panel.h;
    const max = argv['max-load'] * s.bound;
    const x = (v: number): string => (x0 + (v / max) * panel.w).toFixed(1);
    const y = (v: number): string => (y0 - (v / max) * panel.h).toFixed(1);
    const path = (values: number[]): string =>
      `M${x(0)} ${y(0)} ${s.points.map((offered, i) => `L${x(offered)} ${y(values[i]!)}`).join(' ')}`;
    parts.push(
      `<rect x="${x0}" y="${panel.top}" width="${panel.w}" height="${panel.h}" fill="none" stroke="#999"/>`,
      `<text x="${x0 + panel.w / 2}" y="${panel.top - 6}" text-anchor="middle" font-size="12">N = ${s.n} (bound ${int(s.bound)})</text>`,
    );
    for (let t = 0; t <= 4; t++) {
      const v = (max * t) / 4;
      const label = v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : `${Math.round(v / 1000)}k`;
      parts.push(
        `<line x1="${x(v)}" y1="${y0}" x2="${x(v)}" y2="${y0 + 4}" stroke="#999"/>`,
        `<text x="${x(v)}" y="${y0 + 16}" text-anchor="middle">${label}</text>`,
        `<line x1="${x0 - 4}" y1="${y(v)}" x2="${x0}" y2="${y(v)}" stroke="#999"/>`,
        `<text x="${x0 - 6}" y="${Number(y(v)) + 4}" text-anchor="end">${label}</text>`,
      );
    }
    parts.push(
      `<line x1="${x(0)}" y1="${y(0)}" x2="${x(max)}" y2="${y(max)}" stroke="#ccc" stroke-dasharray="2,3"/>`,
      `<line x1="${x(s.bound)}" y1="${y0}" x2="${x(s.bound)}" y2="${panel.top}" stroke="#ccc"/>`,
      `<path d="${path(s.capa)}" fill="none" stroke="#1f6fb4" stroke-width="2"/>`,
      `<path d="${path(s.random)}" fill="none" stroke="#d0501c" stroke-width="2" stroke-dasharray="6,4"/>`,
      `<text x="${x0 + panel.w / 2}" y="${y0 + 32}" text-anchor="middle">flows offered</text>`,
    );
    if (p === 0) parts.push(`<text transform="translate(14 ${panel.top + panel.h / 2}) rotate(-90)" text-anchor="middle">flows admitted</text>`);
  });
  const ly = height - 14;
  parts.push(
    `<line x1="${panel.left}" y1="${ly - 4}" x2="${panel.left + 30}" y2="${ly - 4}" stroke="#1f6fb4" stroke-width="2"/>`,
    `<text x="${panel.left + 36}" y="${ly}">CAPA (central allocation)</text>`,
    `<line x1="${panel.left + 210}" y1="${ly - 4}" x2="${panel.left + 240}" y2="${ly - 4}" stroke="#d0501c" stroke-width="2" stroke-dasharray="6,4"/>`,
    `<text x="${panel.left + 246}" y="${ly}">uncoordinated random ports (RSIP / REBEKAH-IP style)</text>`,
    `<line x1="${panel.left + 600}" y1="${ly - 4}" x2="${panel.left + 630}" y2="${ly - 4}" stroke="#ccc" stroke-dasharray="2,3"/>`,
    `<text x="${panel.left + 636}" y="${ly}">every flow admitted</text>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}

function markdown(all: Series[], rows: string[][]): string {
  const firsts = all.map((s) => `N = ${s.n}: flow ${int(s.firstBlocked)}`).join('; ');
  const atBound = all.map((s) => `${share(s.random[s.points.indexOf(s.bound)]!, s.bound)} for N = ${s.n}`).join(', ');
  return `# Blocking: CAPA against uncoordinated source ports

Generated by \`node dist/bench/blocking.js\` (bench/blocking.ts); do not edit by hand.

Flows are offered one after another to one destination socket (TCP 203.0.113.10:443) and
never end, from ${int(argv.terminals)} inside terminals sharing a pool of N outside addresses.
The bound is (65536 - 1024) x N simultaneous flows.

- **CAPA**: the real allocator (gateway-ref/lib/grm/allocator.ts, \`random\` ports) hands out
  (aOG, pA); a flow is blocked only when every (aOG, pA) is in use towards that destination.
- **Uncoordinated random ports** (the RSIP / REBEKAH-IP style CAPA replaces): terminal t sends
  from pool address t mod N and picks its source port uniformly in 1024-65535 without knowing the
  other terminals' choices; the flow fails when that (aOG, pA) is already in use towards the same
  destination. "Expected" is the model's mean, N x 64512 x (1 - e^(-offered / (N x 64512))).

CAPA admits every flow up to the bound and blocks only beyond it. The random peer starts
blocking early (first blocked flow in this run: ${firsts}) and, offered exactly the bound,
admits ${atBound}.

![offered vs admitted flows](blocking.svg)

${markdownTable(rows)}
`;
}

function main(): void {
  console.log(`blocking benchmark: one destination socket, ${int(argv.terminals)} terminals, loads up to ${argv['max-load']} x bound, Node ${process.version}\n`);
  const all: Series[] = POOL_SIZES.map((n) => {
    const bound = PORT_COUNT * n;
    const points = checkpoints(bound);
    const capa = capaCurve(n, points);
    const { admitted, firstBlocked } = randomCurve(n, points);
    return { n, bound, points, capa, random: admitted, firstBlocked };
  });
  const rows = tableRows(all);
  printTable(rows);
  console.log(`\nfirst blocked flow, random peer: ${all.map((s) => `N=${s.n}: ${int(s.firstBlocked)}`).join(', ')}; CAPA: ${all.map((s) => `N=${s.n}: ${int(s.bound + 1)}`).join(', ')}`);
  for (const s of all) {
    const over = s.points.findIndex((o) => o > s.bound);
    const exact = s.capa[s.points.indexOf(s.bound)];
    if (exact !== s.bound || (over >= 0 && s.capa[over] !== s.bound)) throw new Error(`CAPA with N=${s.n} admitted ${exact}, not the bound ${s.bound}`);
  }
  if (!argv.write) return;
  const outDir = argv['out-dir'] ?? resolve(dirname(fileURLToPath(import.meta.url)), '../../docs');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'blocking.svg'), svg(all));
  writeFileSync(join(outDir, 'blocking.md'), markdown(all, rows));
  console.log(`\nwrote ${join(outDir, 'blocking.md')} and ${join(outDir, 'blocking.svg')}`);
}

main();
