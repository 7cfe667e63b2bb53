/** capa-gateway as a user runs it: a separate process, its output and its exit codes. */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolve } from '../../resolver/lib/resolve.js';
import { startReady } from '../../common/ready-process.js';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '../../gateway-ref/bin/capa-gateway.js');
const ZONE = '$ORIGIN example.\n$TTL 300\nwww A 127.0.0.80\n';

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs to completion (bad flags must exit by themselves; the mocha timeout bounds it). */
function runToExit(args: string[]): Promise<Finished> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => { output.stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { output.stderr += d.toString(); });
  return once(child, 'exit').then(([code, signal]) => ({ code, signal, ...output } as Finished));
}

describe('capa-gateway command line', function () {
  this.timeout(20_000);
  let dir: string;
  let zone: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'capa-cli-'));
    zone = join(dir, 'zone.txt');
    await writeFile(zone, ZONE);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('--help explains every flag and exits 0', async () => {
    const f = await runToExit(['--help']);
    expect(f.code).to.equal(0);
    for (const flag of ['--listen', '--pool', '--inside', '--direct', '--zone', '--upstream', '--port-strategy', '--quota', '--lease', '--hold-down', '--log', '--state-dir', '--state-fsync', '--clear-on-stop', '--metrics', '--data-plane']) {
      expect(f.stdout, flag).to.match(new RegExp(`${flag}\\s+\\S.{10,}`));
    }
    expect(f.stdout.replace(/\s+/g, ' ')).to.include('Exit codes: 0 clean stop, 1 runtime failure (e.g. address in use), 2 bad flags or configuration');
  });

  const bad: [string, string[], RegExp][] = [
    ['an unknown flag', ['--pool', '127.64.0.1', '--colour'], /Unknown argument: colour/],
    ['no --pool', [], /Missing required argument: pool/],
    ['a bad pool', ['--pool', '127.64.0.9-127.64.0.1'], /the range ends before it starts/],
    ['a bad --inside prefix', ['--pool', '127.64.0.1', '--inside', '10.0.0.0/33'], /prefix length in "10\.0\.0\.0\/33" must be 0-32/],
    ['a bad --port-strategy', ['--pool', '127.64.0.1', '--port-strategy', 'lowest'], /Invalid values:[\s\S]*port-strategy/],
    ['a zero lease', ['--pool', '127.64.0.1', '--lease', '0'], /--lease must be a whole number >= 1/],
    ['a fractional quota', ['--pool', '127.64.0.1', '--quota', '1.5'], /--quota must be a whole number >= 1/],
    ['a bad --listen', ['--pool', '127.64.0.1', '--listen', 'localhost:53'], /is not an IP address/],
    ['a repeated --zone', ['--pool', '127.64.0.1', '--zone', 'a', '--zone', 'b'], /--zone was given 2 times; give it once/],
    ['a bad --upstream port', ['--pool', '127.64.0.1', '--upstream', '127.0.0.1:99999'], /port must be 1-65535/],
    ['a missing zone file', ['--pool', '127.64.0.1', '--zone', '/nonexistent/zone.txt'], /cannot read zone file \/nonexistent\/zone\.txt/],
    ['an unopenable log file', ['--pool', '127.64.0.1', '--log', '/nonexistent/dir/journal'], /cannot open log file/],
  ];
  for (const [what, args, message] of bad) {
    it(`exits 2 with an actionable message for ${what}`, async () => {
      const f = await runToExit(args.includes('--listen') ? args : ['--listen', '127.0.0.1:0', ...args]);
      expect(f.code, f.stderr).to.equal(2);
      expect(f.stderr).to.match(message);
      expect(f.stderr).to.match(/capa-gateway --help/);
    });
  }

  it('exits 2 naming file and line for a zone file error', async () => {
    const badZone = join(dir, 'bad.zone');
    await writeFile(badZone, '$TTL 60\nok.example. A 127.0.0.1\nbad.example. A 127.0.0.999\n');
    const f = await runToExit(['--listen', '127.0.0.1:0', '--pool', '127.64.0.1', '--zone', badZone]);
    expect(f.code).to.equal(2);
    expect(f.stderr).to.include(`${badZone}:3: "127.0.0.999" is not an IPv4 address`);
  });

  it('exits 1 saying which address is in use and suggesting --listen', async () => {
    const taken = dgram.createSocket('udp4');
    taken.bind(0, '127.0.0.1');
    await once(taken, 'listening');
    const { port } = taken.address();
    try {
      const f = await runToExit(['--listen', `127.0.0.1:${port}`, '--pool', '127.64.0.1', '--state-dir', join(dir, 'state')]);
      expect(f.code).to.equal(1);
      expect(f.stderr).to.include(`cannot listen on 127.0.0.1:${port}`);
      expect(f.stderr).to.match(/EADDRINUSE[\s\S]*--listen/);
    } finally {
      taken.close();
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`serves, journals, and stops cleanly with exit 0 on ${signal}`, async () => {
      const journal = join(dir, `journal-${signal}.jsonl`);
      const s = await startReady([process.execPath, BIN, '--listen', '127.0.0.1:0', '--pool', '127.64.0.1-127.64.0.4', '--zone', zone, '--log', journal],
        /capa-gateway listening on 127\.0\.0\.1:(\d+) \(udp\+tcp\)/);
      expect(s.output().stdout).to.match(/pool 4 addresses, data plane loopback/);
      const endpoint = await resolve({ host: 'www.example', port: 80, servers: [`127.0.0.1:${s.match[1]}`] });
      expect(endpoint.kind).to.equal('capa');
      const exited = once(s.child, 'close'); // after its output is all in
      s.child.kill(signal);
      expect(await exited).to.deep.equal([0, null]);
      expect(s.output().stderr).to.include(`capa-gateway: stopped (${signal})`);
      const lines = (await readFile(journal, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).to.have.length(1);
      expect(lines[0]).to.include({ event: 'allocate', terminal: '127.0.0.1', aOB: '127.0.0.80', pB: 80 });
    });
  }
});
