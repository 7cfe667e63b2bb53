/**
 * Throughput through the gateway: one pinned TCP flow between a terminal and the outside host,
 * download (inside-bound: state lookup + fwmark routing per packet) and upload (outside-bound:
 * the anti-spoofing lookup before conntrack), with the nftables data plane holding 100,000 and
 * then 1,000,000 other states, against plain forwarding (a route to the terminal, no nftables,
 * no conntrack). Target: >= 0.9x of plain forwarding. Needs root.
 *
 * A shared machine's load drifts faster than one can alternate configurations, so two identical
 * lab networks run their transfers at the same moment: A with the data plane, B plain. Each
 * round also runs a calibration pair with A's chains removed (both plain), and the reported
 * ratio is median(A/B with the data plane) / median(A/B both plain). Absolute figures are the
 * medians of the paired runs.
 *
 *   node dist/bench/nft-throughput.js [--seconds 1] [--rounds 4] [--states 100000,1000000]
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../gateway-ref/lib/dataplane/command.js';
import { CHAIN_NAMES, renderChains } from '../gateway-ref/lib/dataplane/nft-rules.js';
import type { NftablesDataPlane } from '../gateway-ref/lib/dataplane/nftables.js';
import { benchCommandLine, median, table } from './lib.js';
import { type BenchLab, OUTSIDE, installBulk, withBenchLabs } from './nft-common.js';

const TARGET_RATIO = 0.9;
const FLOW_TOOL = fileURLToPath(new URL('./nft-flow.js', import.meta.url));
const AOG = '198.51.100.7';
const SERVER_PORT = 5001;

const argv = benchCommandLine('nft-throughput', (y) => y
  .usage('$0 [options]\n\nTCP throughput through the nftables data plane with many states vs plain forwarding, measured side by side.')
  .option('seconds', { type: 'number', default: 1, describe: 'length of each transfer' })
  .option('rounds', { type: 'number', default: 4, describe: 'paired measurements (and calibrations) per state count and direction' })
  .option('states', { type: 'string', default: '100000,1000000', describe: 'installed-state counts to measure at, ascending, comma-separated' })
  .check((a) => {
    if (!(a.seconds > 0)) throw new Error('--seconds must be > 0');
    if (!(Number.isInteger(a.rounds) && a.rounds >= 1)) throw new Error('--rounds must be a whole number >= 1');
    const counts = a.states.split(',').map(Number);
    if (!counts.every((n, i) => Number.isInteger(n) && n >= 0 && (i === 0 || n > counts[i - 1]!))) throw new Error('--states must be ascending whole numbers');
    return true;
  }))
  .parseSync();

type Direction = 'download' | 'upload';
const DIRECTIONS: Direction[] = ['download', 'upload'];

/** A long-running program in a namespace, talked to by lines. */
class LineProcess {
  private readonly waiters: ((line: string) => void)[] = [];
  private readonly child: ChildProcessWithoutNullStreams;

  constructor(netns: string, argv: string[]) {
    this.child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.pipe(process.stderr);
    createInterface({ input: this.child.stdout }).on('line', (line) => this.waiters.shift()?.(line));
  }

  next(): Promise<string> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  ask(line: string): Promise<string> {
    const answer = this.next();
    this.child.stdin.write(`${line}\n`);
    return answer;
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }
}

/** One lab's traffic ends: the outside host's server and terminal t1's client. */
class Path {
  private nextPort = 60_000;
  private constructor(readonly lab: BenchLab, private readonly server: LineProcess, private readonly client: LineProcess) {}

  static async open(lab: BenchLab): Promise<Path> {
    const t1 = lab.plan.terminals[0]!;
    await runCommand(['ip', 'address', 'add', `${AOG}/32`, 'dev', t1.ifname], { netns: t1.netns });
    const server = new LineProcess(lab.plan.outside.netns, [process.execPath, FLOW_TOOL, 'server', `${OUTSIDE}:${SERVER_PORT}`]);
    const client = new LineProcess(t1.netns, [process.execPath, FLOW_TOOL, 'client', `${OUTSIDE}:${SERVER_PORT}`]);
    await Promise.all([server.next(), client.next()]);
    return new Path(lab, server, client);
  }

  /** A fresh source port for the next connection (and, with a data plane, its state). */
  async port(driver: NftablesDataPlane | undefined): Promise<number> {
    const localPort = this.nextPort++;
    await driver?.install({
      id: 10_000_000 + localPort,
      terminal: this.lab.plan.terminals[0]!.address,
      tuple: { proto: 6, remoteAddress: OUTSIDE, remotePort: SERVER_PORT, localAddress: AOG, localPort },
      state: 'pending',
      leaseExpiresAt: Infinity,
      createdAt: 0,
    });
    return localPort;
  }

  /** Gbit/s at the receiver. */
  async transfer(direction: Direction, localPort: number): Promise<number> {
    const line = await this.client.ask(`${direction === 'download' ? 'down' : 'up'} ${AOG}:${localPort} ${argv.seconds}`);
    const answer = JSON.parse(line) as { bytes: number; seconds: number; error?: string };
    if (answer.error !== undefined) throw new Error(`${direction} transfer failed: ${answer.error}`);
    return (answer.bytes * 8) / answer.seconds / 1e9;
  }

  /** plain: no nftables chains (no hooks, no conntrack), a route to t1; or back. */
  async setPlain(plain: boolean, withTable: boolean): Promise<void> {
    const t1 = this.lab.plan.terminals[0]!;
    const gw = this.lab.plan.gateway.netns;
    if (withTable) {
      const script = plain ? CHAIN_NAMES.map((c) => `delete chain inet capa ${c}\n`).join('') : `table inet capa {\n${renderChains().join('\n')}\n}\n`;
      await runCommand(['nft', '-f', '-'], { netns: gw, input: script });
    }
    await runCommand(['ip', 'route', plain ? 'add' : 'del', `${AOG}/32`, 'via', t1.address, 'dev', t1.gatewayIfname], { netns: gw });
  }

  close(): void {
    this.client.stop();
    this.server.stop();
  }
}

/** Both paths at once; returns [A, B] in Gbit/s. */
async function pair(a: Path, b: Path, driverA: NftablesDataPlane | undefined, direction: Direction): Promise<[number, number]> {
  const [portA, portB] = [await a.port(driverA), await b.port(undefined)];
  return Promise.all([a.transfer(direction, portA), b.transfer(direction, portB)]);
}

await withBenchLabs(2, async ([labA, labB]) => {
  if (labA === undefined || labB === undefined) return;
  const [a, b] = [await Path.open(labA), await Path.open(labB)];
  await b.setPlain(true, false);
  const driver = labA.newDriver();
  await driver.start({ flowStarted: () => undefined, flowEnded: () => undefined });
  const rows: string[][] = [['states', 'direction', 'nftables', 'plain', 'ratio', 'calibration A/B']];
  let worst = Infinity;
  try {
    let installed = 0;
    for (const count of argv.states.split(',').map(Number)) {
      const start = Date.now();
      await installBulk(labA, driver, installed, count);
      process.stderr.write(`installed ${count - installed} states in ${((Date.now() - start) / 1000).toFixed(1)} s\n`);
      installed = count;
      for (const direction of DIRECTIONS) {
        const measured: [number, number][] = [];
        const calibration: [number, number][] = [];
        for (let round = 0; round < argv.rounds; round++) {
          measured.push(await pair(a, b, driver, direction));
          await a.setPlain(true, true);
          calibration.push(await pair(a, b, undefined, direction));
          await a.setPlain(false, true);
        }
        const cal = median(calibration.map(([x, y]) => x / y));
        const ratio = median(measured.map(([x, y]) => x / y)) / cal;
        worst = Math.min(worst, ratio);
        rows.push([String(count), direction, median(measured.map(([x]) => x)).toFixed(2), median(measured.map(([, y]) => y)).toFixed(2), ratio.toFixed(2), cal.toFixed(2)]);
      }
    }
  } finally {
    await driver.stop();
    a.close();
    b.close();
  }
  process.stdout.write(`\nTCP throughput through the gateway, Gbit/s: one pinned flow terminal <-> outside host, ${argv.seconds} s per transfer, `
    + `${argv.rounds} rounds; nftables (lab A) and plain forwarding (lab B) measured at the same moment\n${table(rows)}\n`);
  process.stdout.write(`\ntarget >= ${TARGET_RATIO}x of plain forwarding: ${worst >= TARGET_RATIO ? 'met' : 'MISSED'} (worst ${worst.toFixed(2)}x)\n`);
});
