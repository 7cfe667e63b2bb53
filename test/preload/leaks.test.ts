/**
 * Nothing leaked: every allocation a program under capa-run received goes back to the gateway
 * when the program no longer needs it, whatever the program does: closes, exits without
 * closing, _exit()s, is killed, looks a name up and never connects, looks it up again and again.
 * Each case is checked against what the gateway's journal says, and the held case runs six
 * wget in a row under a quota of three.
 */
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { requireTool } from '../helpers/c-build.js';
import { type CapaEvent, capaRun, type JournalEvent, key, OUTSIDE_HOST, OUTSIDE_NAME, readCapaLog, startGateway, useLab } from './lab.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('capa-run leaks nothing', function () {
  this.timeout(60_000);
  // A long lease: only a release (never the lease) can give an allocation back here.
  const lab = useLab({ extra: ['--hold-down', '0', '--lease', '300'] });

  /** Allocations of the run's log that the gateway journal has not seen released, after waiting up to `ms`. */
  async function unreleased(events: CapaEvent[], ms = 3000): Promise<string[]> {
    const mine = new Set(events.filter((e) => e.event === 'allocate').map((e) => key(e.aOG, e.pA)));
    const open = (): string[] => {
      const journal = lab.gateway.journal();
      const released = new Set(journal.filter((j: JournalEvent) => j.event === 'release' || j.event === 'expire').map((j) => key(j.aOG, j.pA)));
      return [...mine].filter((k) => !released.has(k));
    };
    for (let waited = 0; waited < ms && open().length > 0; waited += 100) await sleep(100);
    return open();
  }

  const releases = (events: CapaEvent[]): string[] => events.filter((e) => e.event === 'release').map((e) => `${e.why} ${e.outcome}`);

  it('a program that exits without closing its socket gives the allocation back at exit', async function () {
    const python = requireTool(this, 'python3', 'leak tests');
    const log = lab.newLog();
    const script = `import socket, sys; s = socket.create_connection((${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port})); s.sendall(b"hi\\n"); s.recv(100); s.detach(); sys.exit(0)  # detach: Python will not close it`;
    const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
    expect(result.code, result.stderr).to.equal(0);
    const events = readCapaLog(log);
    expect(releases(events)).to.deep.equal(['exit released']);
    expect(await unreleased(events)).to.deep.equal([]);
  });

  it('os._exit() without closing: the _exit hook gives it back', async function () {
    const python = requireTool(this, 'python3', 'leak tests');
    const log = lab.newLog();
    const script = `import os, socket; s = socket.create_connection((${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port})); s.sendall(b"hi\\n"); s.recv(100); os._exit(3)`;
    const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
    expect(result.code, result.stderr).to.equal(3);
    expect(releases(readCapaLog(log))).to.deep.equal(['exit released']);
    expect(await unreleased(readCapaLog(log))).to.deep.equal([]);
  });

  it('a program killed by SIGKILL: capa-run releases what it held, from the ledger', async function () {
    const python = requireTool(this, 'python3', 'leak tests');
    const log = lab.newLog();
    const script = [
      'import os, signal, socket',
      `a = socket.create_connection((${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port})); a.sendall(b"hi\\n"); a.recv(100)`,
      `socket.getaddrinfo(${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port + 1}, type=socket.SOCK_STREAM)  # pending, never used`,
      'os.kill(os.getpid(), signal.SIGKILL)',
    ].join('\n');
    const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
    expect(result.code).to.equal(128 + 9);
    const events = readCapaLog(log);
    expect(events.filter((e) => e.event === 'allocate')).to.have.length(2);
    expect(releases(events)).to.deep.equal(['process gone released', 'process gone released']);
    expect(await unreleased(events)).to.deep.equal([]);
  });

  it('a flow a forked child carries on (ssh -f): the parent\'s close and exit leave it alone, and so does capa-run', async function () {
    const python = requireTool(this, 'python3', 'leak tests');
    const log = lab.newLog();
    const out = lab.ws.file('child-report.json');
    const script = [
      'import json, os, socket, sys, time',
      `s = socket.create_connection((${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port}))`,
      'if os.fork() == 0:',
      '    time.sleep(1.5)  # well past the parent',
      '    s.sendall(b"hi\\n"); reply = s.recv(200).decode()',
      `    open(${JSON.stringify(out)}, "w").write(reply); os._exit(0)`,
      's.close(); sys.exit(0)',
    ].join('\n');
    // capa-run (its supervisor) waits for the whole tree, the child included.
    const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
    expect(result.code, result.stderr).to.equal(0);
    const events = readCapaLog(log);
    const [pin] = events.filter((e) => e.event === 'pin');
    expect(events.filter((e) => e.event === 'keep').map((e) => e.why)).to.deep.equal(['close, shared with a child']);
    expect(existsSync(out), 'the child was done when capa-run returned').to.equal(true);
    expect(JSON.parse(readFileSync(out, 'utf8')), 'the child still spoke from the pinned source').to.deep.equal({ address: pin!.aOG, port: pin!.pA });
    // Neither the parent's close nor its exit released the flow; once the child's end left it, capa-run did.
    expect(releases(events).filter((r) => !r.startsWith('process gone')), 'nothing released under the child').to.deep.equal([]);
    expect(await unreleased(events, 5000)).to.deep.equal([]);
  });

  it('a lookup no connect uses is handed back after about a second, while the program still runs', async function () {
    const python = requireTool(this, 'python3', 'leak tests');
    const log = lab.newLog();
    const script = [
      'import socket, time',
      `socket.getaddrinfo(${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port}, type=socket.SOCK_STREAM)`,
      'time.sleep(2.5)',
      'print("done")',
    ].join('\n');
    const started = Date.now();
    const run = capaRun(lab.gateway.server, log, [python, '-c', script]);
    await sleep(2000);
    const early = readCapaLog(log);
    expect(releases(early), 'released before the program ends').to.deep.equal(['unused released']);
    const release = early.find((e) => e.event === 'release') as CapaEvent & { time: number };
    const allocate = early.find((e) => e.event === 'allocate') as CapaEvent & { time: number };
    expect(release.time - allocate.time).to.be.within(0.9, 1.6);
    expect((await run).code).to.equal(0);
    expect(Date.now() - started).to.be.lessThan(15_000);
    expect(await unreleased(readCapaLog(log))).to.deep.equal([]);
  });

  it('getent hosts (a lookup, then exit): released at once, not at the end of the lease', async function () {
    const getent = requireTool(this, 'getent', 'leak tests');
    const log = lab.newLog();
    const result = await capaRun(lab.gateway.server, log, [getent, 'hosts', OUTSIDE_NAME]);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.include(OUTSIDE_HOST);
    expect(await unreleased(readCapaLog(log))).to.deep.equal([]);
  });

  it('repeated lookups of one destination with no connect between reuse one allocation', async function () {
    const python = requireTool(this, 'python3', 'leak tests');
    const log = lab.newLog();
    const script = `import socket\nfor _ in range(5): socket.getaddrinfo(${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port}, type=socket.SOCK_STREAM)`;
    const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
    expect(result.code, result.stderr).to.equal(0);
    const events = readCapaLog(log);
    expect(events.filter((e) => e.event === 'allocate')).to.have.length(1);
    expect(await unreleased(events)).to.deep.equal([]);
  });

  it('python sendto(data, (host, port)), which resolves on every call: one flow, every allocation given back', async function () {
    const python = requireTool(this, 'python3', 'leak tests');
    const log = lab.newLog();
    const script = [
      'import socket',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)',
      'for i in range(5):',
      `    s.sendto(b"x", (${JSON.stringify(OUTSIDE_NAME)}, ${lab.udp.port})); s.recvfrom(200)`,
      'print(s.getsockname()[1])',
    ].join('\n');
    const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
    expect(result.code, result.stderr).to.equal(0);
    const events = readCapaLog(log);
    expect(events.filter((e) => e.event === 'pin')).to.have.length(1);
    // The first lookup's allocation is pinned; each later one reuses the single spare, so at most two.
    expect(events.filter((e) => e.event === 'allocate').length).to.be.within(1, 2);
    expect(await unreleased(events)).to.deep.equal([]);
  });

  it('a lookup without a port, then a connect: one flow, one allocation', async function () {
    const perl = requireTool(this, 'perl', 'leak tests');
    const log = lab.newLog();
    const script = `use Socket; my @h = gethostbyname("${OUTSIDE_NAME}") or die; socket(my $s, PF_INET, SOCK_STREAM, 0) or die;
      connect($s, pack_sockaddr_in(${lab.tcp.port}, $h[4])) or die "connect: $!"; close($s);`;
    const result = await capaRun(lab.gateway.server, log, [perl, '-e', script]);
    expect(result.code, result.stderr).to.equal(0);
    const events = readCapaLog(log);
    expect(events.filter((e) => e.event === 'allocate').map((e) => e.qname)).to.deep.equal([OUTSIDE_NAME]);
    expect(events.filter((e) => e.event === 'pin')).to.have.length(1);
  });

  it('held: six wget in a row under --quota 3 all succeed', async function () {
    const wget = requireTool(this, 'wget', 'leak tests');
    const quota = await startGateway(lab.ws, { extra: ['--hold-down', '0', '--lease', '300', '--quota', '3'] });
    try {
      const log = lab.newLog();
      const url = `http://${OUTSIDE_NAME}:${lab.tcp.port}/`;
      const result = await capaRun(quota.server, log, ['sh', '-c', `for i in 1 2 3 4 5 6; do "$0" -q -O - "$1" || exit 1; done`, wget, url], { timeoutMs: 30_000 });
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout.trim().split('\n')).to.have.length(6);
      const events = readCapaLog(log);
      expect(events.filter((e) => e.event === 'pin')).to.have.length(6);
      expect(events.filter((e) => e.event === 'allocate'), 'one allocation per flow').to.have.length(6);
    } finally {
      await quota.stop();
    }
  });
});
