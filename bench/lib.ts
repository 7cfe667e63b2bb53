/** What every benchmark shares: its command line, the figures and tables it prints. */
import type { Argv } from 'yargs';
import { commandLine, usageExit } from '../common/cli.js';

/** Exit status of a benchmark given bad flags (1 is kept for a missed target under --check). */
const EXIT_USAGE = 2;

/** The command line of `node dist/bench/<name>.js` with the flags `define` adds, set up as every CAPA program's. */
export function benchCommandLine<T>(name: string, define: (y: Argv) => Argv<T>): Argv<T> {
  const program = `node dist/bench/${name}.js`;
  return commandLine(program, process.argv.slice(2), usageExit(program, EXIT_USAGE, 'flags'), define);
}

/** The middle value (mean of the two middle ones for an even count); `values` is left unsorted. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The nearest-rank p-th percentile (0 < p <= 100) of values sorted ascending. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Rows as aligned text columns: the first left-aligned, the others right-aligned (figures). */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')).join('\n');
}
