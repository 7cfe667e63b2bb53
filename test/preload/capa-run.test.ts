/**
 * capa-run with real, unmodified programs (curl, python3, node, socat, perl) against a real
 * capa-gateway on loopback: the outside server must see exactly the (address, port) the gateway
 * allocated, failures must fail (never connect unpinned), and the launcher must refuse what
 * LD_PRELOAD cannot reach.
 */
import { once } from 'node:events';
import net from 'node:net';
import { constants } from 'node:os';
import { existsSync } from 'node:fs';
import { expect } from 'chai';
import { EDE } from '../../resolver/codec/constants.js';
import { buildC, requireTool } from '../helpers/c-build.js';
import { unavailable } from '../helpers/ci.js';
import { capaRejection } from '../helpers/expect-error.js';
import { resolve } from '../../resolver/lib/resolve.js';
import { startSshd } from '../helpers/sshd.js';
import { addressRecord, reply, startFakeDnsServer } from '../helpers/fake-dns-server.js';
import {
  CAPA_RUN, capaRun, closedUdpPort, inPool, type JournalEvent, key, LIBRARY, OUTSIDE_HOST, OUTSIDE_NAME, type OutsideServer, pins,
  readCapaLog, run, startGateway, startTcpOutside, useLab, type Workspace, workspace,
} from './lab.js';

const CAPA_TYPE = 'UNKNOWN_65280';
const { EADDRNOTAVAIL, EINPROGRESS } = constants.errno;

/** A TCP port free on the outside host's address. */
async function freeTcpPort(): Promise<number> {
  const server = net.createServer().listen(0, OUTSIDE_HOST);
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** Parses the last stdout line of a program that prints JSON. */
function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

describe('capa-run (LD_PRELOAD library) with unmodified programs', function () {
  const lab = useLab({ extra: ['--hold-down', '0'] });
  const newLog = (): string => lab.newLog();

  /** The gateway writes its journal through a stream: a line may land a moment after the reply. */
  async function journalHas(match: (j: JournalEvent) => boolean): Promise<boolean> {
    for (let i = 0; i < 50; i++) {
      if (lab.gateway.journal().some(match)) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }

  /** A pin of the run, checked against what the outside server saw and the gateway allocated. */
  async function expectPinnedPeer(log: string, peer: { address: string; port: number }): Promise<void> {
    const pinned = pins(readCapaLog(log));
    expect(pinned.map((p) => key(p.aOG, p.pA))).to.include(key(peer.address, peer.port));
    expect(inPool(peer.address), `${peer.address} is a pool address`).to.equal(true);
    const allocated = await journalHas((j) => j.event === 'allocate' && key(j.aOG, j.pA) === key(peer.address, peer.port));
    expect(allocated, `gateway journal allocates ${key(peer.address, peer.port)}`).to.equal(true);
  }

  describe('programs', function () {
    it('curl: an HTTP GET goes out from the allocated (address, port), which is released on close', async function () {
      const curl = requireTool(this, 'curl', 'capa-run tests');
      const log = newLog();
      const result = await capaRun(lab.gateway.server, log, [curl, '-sS', `http://${OUTSIDE_NAME}:${lab.tcp.port}/`]);
      expect(result.code, result.stderr).to.equal(0);
      const peer = JSON.parse(result.stdout) as { address: string; port: number };
      expect(lab.tcp.peers).to.deep.include(peer);
      await expectPinnedPeer(log, peer);
      const [pin] = pins(readCapaLog(log));
      expect(pin!.qname).to.equal(`_${lab.tcp.port}._tcp.${OUTSIDE_NAME}`);
      const release = readCapaLog(log).find((e) => e.event === 'release');
      expect(release, 'release event').to.include({ why: 'close', aOG: peer.address, pA: peer.port, outcome: 'released' });
      expect(await journalHas((j) => j.event === 'release' && j.aOG === peer.address && j.pA === peer.port)).to.equal(true);
    });

    it('curl without --log: the release still reaches the gateway (the close does not wait for its reply)', async function () {
      const curl = requireTool(this, 'curl', 'capa-run tests');
      const result = await run(CAPA_RUN, ['--server', lab.gateway.server, '--', curl, '-sS', `http://${OUTSIDE_NAME}:${lab.tcp.port}/`]);
      expect(result.code, result.stderr).to.equal(0);
      const peer = JSON.parse(result.stdout) as { address: string; port: number };
      const released = await journalHas((j) => j.event === 'release' && j.aOG === peer.address && j.pA === peer.port);
      expect(released, 'release in the gateway journal').to.equal(true);
    });

    it('python3: socket.create_connection and urllib both connect pinned', async function () {
      const python = requireTool(this, 'python3', 'capa-run tests');
      const log = newLog();
      const script = [
        'import json, socket, sys, urllib.request',
        `s = socket.create_connection((${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port}))`,
        'print(json.dumps({"address": s.getsockname()[0], "port": s.getsockname()[1]}))',
        's.close()',
        `print(urllib.request.urlopen("http://${OUTSIDE_NAME}:${lab.tcp.port}/", timeout=10).read().decode().strip())`,
      ].join('\n');
      const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      const [own, seen] = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { address: string; port: number });
      expect(lab.tcp.peers).to.deep.include(own);
      expect(lab.tcp.peers).to.deep.include(seen);
      expect(own).to.not.deep.equal(seen);
      await expectPinnedPeer(log, own!);
      await expectPinnedPeer(log, seen!);
    });

    it('node: fetch and http.get (non-blocking sockets) connect pinned', async function () {
      const log = newLog();
      const url = `http://${OUTSIDE_NAME}:${lab.tcp.port}/`;
      const script = `
        const http = require('node:http');
        (async () => {
          console.log((await (await fetch(${JSON.stringify(url)})).text()).trim());
          http.get(${JSON.stringify(url)}, { agent: false }, (res) => {
            let body = ''; res.on('data', (d) => { body += d; }); res.on('end', () => console.log(body.trim()));
          });
        })();`;
      const result = await capaRun(lab.gateway.server, log, [process.execPath, '-e', script]);
      expect(result.code, result.stderr).to.equal(0);
      const peers = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { address: string; port: number });
      expect(peers).to.have.length(2);
      for (const peer of peers) {
        expect(lab.tcp.peers).to.deep.include(peer);
        await expectPinnedPeer(log, peer);
      }
    });

    it('socat over UDP: the datagrams come from the allocated (address, port)', async function () {
      const socat = requireTool(this, 'socat', 'capa-run tests');
      const log = newLog();
      const result = await capaRun(lab.gateway.server, log, [socat, '-t', '2', '-', `UDP:${OUTSIDE_NAME}:${lab.udp.port}`], { input: 'hello\n' });
      expect(result.code, result.stderr).to.equal(0);
      const peer = JSON.parse(result.stdout) as { address: string; port: number };
      expect(lab.udp.peers).to.deep.include(peer);
      await expectPinnedPeer(log, peer);
      expect(pins(readCapaLog(log))[0]!.proto).to.equal(17);
    });

    it('python3: the first sendto of an unbound UDP socket pins it, later sends keep to it', async function () {
      const python = requireTool(this, 'python3', 'capa-run tests');
      const log = newLog();
      const script = [
        'import socket',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)',
        `s.sendto(b"1", (${JSON.stringify(OUTSIDE_HOST)}, ${lab.udp.port})); print(s.recvfrom(200)[0].decode().strip())`,
        `s.sendto(b"2", (${JSON.stringify(OUTSIDE_HOST)}, ${lab.udp.port})); print(s.recvfrom(200)[0].decode().strip())`,
      ].join('\n');
      const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      const [first, second] = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { address: string; port: number });
      expect(second).to.deep.equal(first);
      await expectPinnedPeer(log, first!);
      expect(pins(readCapaLog(log))).to.have.length(1);
    });

    it('ssh: a session to a local sshd comes from the allocated (address, port), released when ssh exits', async function () {
      if (process.getuid?.() !== 0) unavailable(this, 'the sshd test needs root (sshd privilege separation) in CI');
      const sshd = await startSshd(requireTool(this, 'sshd', 'the ssh test'), requireTool(this, 'ssh-keygen', 'the ssh test'), OUTSIDE_HOST, await freeTcpPort());
      try {
        const log = newLog();
        const result = await capaRun(lab.gateway.server, log, [requireTool(this, 'ssh', 'the ssh test'), ...sshd.clientArgs, 'echo $SSH_CONNECTION']);
        expect(result.code, result.stderr).to.equal(0);
        const [address, port] = result.stdout.trim().split(' ');
        const peer = { address: address!, port: Number(port) };
        await expectPinnedPeer(log, peer);
        expect(await journalHas((j) => j.event === 'release' && key(j.aOG, j.pA) === key(peer.address, peer.port))).to.equal(true);
      } finally {
        await sshd.stop();
      }
    });

    it('perl: gethostbyname returns aOB and the connect that follows is pinned (partial allocation)', async function () {
      const perl = requireTool(this, 'perl', 'capa-run tests');
      const log = newLog();
      const script = `use Socket;
        my @h = gethostbyname("${OUTSIDE_NAME}") or die "gethostbyname: $?";
        socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
        connect($s, pack_sockaddr_in(${lab.tcp.port}, $h[4])) or die "connect: $!";
        my ($port, $addr) = unpack_sockaddr_in(getsockname($s));
        print inet_ntoa($h[4]), " ", inet_ntoa($addr), " $port\\n";`;
      const result = await capaRun(lab.gateway.server, log, [perl, '-e', script]);
      expect(result.code, result.stderr).to.equal(0);
      const [aob, address, port] = result.stdout.trim().split(' ');
      expect(aob).to.equal(OUTSIDE_HOST);
      const peer = { address: address!, port: Number(port) };
      expect(lab.tcp.peers).to.deep.include(peer);
      await expectPinnedPeer(log, peer);
      const [pin] = pins(readCapaLog(log));
      expect(pin).to.include({ qname: OUTSIDE_NAME, pB: lab.tcp.port });
    });
  });

  describe('resolver hooks', function () {
    it('gethostbyname, gethostbyname2 and the _r forms: aOB, NO_DATA for another family, ERANGE for a small buffer, one allocation for all', async function () {
      requireTool(this, 'cc', 'the gethostbyname test program');
      const build = buildC({ sources: ['test/preload/fixtures/hostent.c'], kind: 'executable', flags: ['-O2', '-Wall', '-Werror'], name: 'hostent' });
      try {
        const log = newLog();
        const result = await capaRun(lab.gateway.server, log, [build.path, OUTSIDE_NAME, String(lab.tcp.port)]);
        expect(result.code, result.stderr).to.equal(0);
        const lines = result.stdout.trim().split('\n');
        expect(lines.slice(0, 5)).to.deep.equal([
          `gethostbyname 0 ${OUTSIDE_HOST}`,
          'gethostbyname2-inet6 4', // NO_DATA: the allocation is IPv4
          `gethostbyname2_r 0 ${OUTSIDE_HOST}`,
          'gethostbyname_r-tiny 34', // ERANGE
          `gethostbyname_r 0 ${OUTSIDE_HOST}`,
        ]);
        const [, address, port] = lines[5]!.split(' ');
        await expectPinnedPeer(log, { address: address!, port: Number(port) });
        // Each lookup repeats the first one with no connect in between, so it reuses its allocation.
        const events = readCapaLog(log);
        expect(events.filter((e) => e.event === 'allocate')).to.have.length(1);
        expect(events.filter((e) => e.event === 'release').map((e) => e.why)).to.deep.equal(['close']);
      } finally {
        build.remove();
      }
    });

    it('an AF_INET6 socket reaching an IPv4 destination (AI_V4MAPPED) is pinned to the v4-mapped allocation', async function () {
      const python = requireTool(this, 'python3', 'capa-run tests');
      const log = newLog();
      const script = [
        'import json, socket',
        `ai = socket.getaddrinfo(${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port}, socket.AF_INET6, socket.SOCK_STREAM, 0, socket.AI_V4MAPPED)[0]`,
        's = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); s.connect(ai[4])',
        'print(json.dumps({"remote": ai[4][0], "local": s.getsockname()[:2]}))',
      ].join('\n');
      const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      const out = lastJson<{ remote: string; local: [string, number] }>(result.stdout);
      expect(out.remote).to.equal(`::ffff:${OUTSIDE_HOST}`);
      expect(out.local[0]).to.match(/^::ffff:127\.66\.80\.[1-4]$/);
      await expectPinnedPeer(log, { address: out.local[0].slice('::ffff:'.length), port: out.local[1] });
    });
  });

  describe('concurrency and processes', function () {
    it('100 threads connecting at once each get their own allocation, none unpinned', async function () {
      const python = requireTool(this, 'python3', 'capa-run tests');
      const log = newLog();
      const before = lab.tcp.peers.length;
      const script = [
        'import json, socket, threading',
        'N = 100',
        'start, done = threading.Barrier(N), threading.Barrier(N)',
        'local = [None] * N',
        'def work(i):',
        '    start.wait()',
        `    s = socket.create_connection((${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port}), timeout=15)`,
        '    local[i] = s.getsockname()',
        '    done.wait()  # every connection is open at the same time',
        '    s.close()',
        'threads = [threading.Thread(target=work, args=(i,)) for i in range(N)]',
        '[t.start() for t in threads]; [t.join() for t in threads]',
        'print(json.dumps([{"address": a, "port": p} for a, p in local]))',
      ].join('\n');
      const result = await capaRun(lab.gateway.server, log, [python, '-c', script], { timeoutMs: 25_000 });
      expect(result.code, result.stderr).to.equal(0);
      const locals = lastJson<{ address: string; port: number }[]>(result.stdout);
      const distinct = new Set(locals.map((l) => key(l.address, l.port)));
      expect(distinct.size).to.equal(100);
      expect(locals.every((l) => inPool(l.address))).to.equal(true);
      const seen = new Set(lab.tcp.peers.slice(before).map((p) => key(p.address, p.port)));
      expect(seen).to.deep.equal(distinct);
      expect(new Set(pins(readCapaLog(log)).map((p) => key(p.aOG, p.pA)))).to.deep.equal(distinct);
    });

    it('a forked child does not use the parent\'s allocation: it asks for its own', async function () {
      const python = requireTool(this, 'python3', 'capa-run tests');
      const log = newLog();
      const script = [
        'import json, os, socket, sys',
        `addr = socket.getaddrinfo(${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port}, socket.AF_INET, socket.SOCK_STREAM)[0][4]`,
        'pid = os.fork()',
        'if pid == 0:',
        '    s = socket.create_connection(addr)',
        '    print(json.dumps({"who": "child", "pid": os.getpid(), "local": s.getsockname()})); sys.stdout.flush()',
        '    s.close(); os._exit(0)',
        'os.waitpid(pid, 0)',
        's = socket.create_connection(addr)',
        'print(json.dumps({"who": "parent", "pid": os.getpid(), "local": s.getsockname()}))',
      ].join('\n');
      const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      const runs = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { who: string; pid: number; local: [string, number] });
      const child = runs.find((r) => r.who === 'child')!;
      const parent = runs.find((r) => r.who === 'parent')!;
      const byPid = (pid: number) => pins(readCapaLog(log)).filter((p) => p.pid === pid);
      expect(byPid(child.pid).map((p) => p.qname)).to.deep.equal([`_${lab.tcp.port}._tcp.1.80.67.127.in-addr.arpa`]);
      expect(byPid(parent.pid).map((p) => p.qname)).to.deep.equal([`_${lab.tcp.port}._tcp.${OUTSIDE_NAME}`]);
      expect(key(...child.local)).to.not.equal(key(...parent.local));
      for (const r of [child, parent]) {
        await expectPinnedPeer(log, { address: r.local[0], port: r.local[1] });
        expect(lab.tcp.peers).to.deep.include({ address: r.local[0], port: r.local[1] });
      }
    });

    it('a non-blocking connect stays non-blocking (EINPROGRESS) and is pinned', async function () {
      const python = requireTool(this, 'python3', 'capa-run tests');
      const log = newLog();
      const script = [
        'import json, select, socket',
        `addr = socket.getaddrinfo(${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port}, socket.AF_INET, socket.SOCK_STREAM)[0][4]`,
        's = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.setblocking(False)',
        'rc = s.connect_ex(addr)',
        'select.select([], [s], [], 10)',
        'print(json.dumps({"rc": rc, "error": s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), "local": s.getsockname()}))',
      ].join('\n');
      const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      const out = lastJson<{ rc: number; error: number; local: [string, number] }>(result.stdout);
      expect(out.rc).to.equal(EINPROGRESS);
      expect(out.error).to.equal(0);
      await expectPinnedPeer(log, { address: out.local[0], port: out.local[1] });
    });

    it('os.closerange (close_range) releases the allocation at once; the reused number is pinned afresh', async function () {
      const python = requireTool(this, 'python3', 'capa-run tests');
      const log = newLog();
      const script = [
        'import json, os, socket',
        `target = (${JSON.stringify(OUTSIDE_NAME)}, ${lab.tcp.port})`,
        'fd = socket.create_connection(target).detach()',
        'os.closerange(fd, fd + 1)  # close_range(2), not close()',
        's = socket.create_connection(target)',
        'print(json.dumps({"reused": s.fileno() == fd, "local": s.getsockname()}))',
      ].join('\n');
      const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      const out = lastJson<{ reused: boolean; local: [string, number] }>(result.stdout);
      expect(out.reused).to.equal(true);
      await expectPinnedPeer(log, { address: out.local[0], port: out.local[1] });
      const first = pins(readCapaLog(log))[0]!;
      const releases = readCapaLog(log).filter((e) => e.event === 'release');
      expect(releases.map((e) => [e.why, key(e.aOG, e.pA)])).to.deep.equal([['close_range', key(first.aOG, first.pA)], ['close', key(out.local[0], out.local[1])]]);
    });
  });

  describe('calls that close descriptors', function () {
    let build: ReturnType<typeof buildC> | undefined;

    before(function () {
      requireTool(this, 'cc', 'the closing test program');
      build = buildC({ sources: ['test/preload/fixtures/closers.c'], kind: 'executable', flags: ['-O2', '-Wall', '-Werror'], name: 'closers' });
    });

    after(function () {
      build?.remove();
    });

    // The release reasons, in order, of: the two pinned sockets closed by `how`, then what is left by close().
    const cases: [string, string[]][] = [
      ['close_range', ['close_range', 'close_range']],
      ['syscall_close_range', ['close_range', 'close']],
      ['closefrom', ['closefrom', 'closefrom']],
      ['dup2', ['dup2', 'close']],
      ['dup3', ['dup3', 'close']],
      ['dup2_bad', ['close', 'close']], // EBADF: the pinned socket stays open and pinned
      ['close_range_cloexec', ['close', 'close']], // only marks them close-on-exec
      ['raw_close', ['socket gone', 'close', 'close']], // no libc call: found stale when the number is reused
    ];
    for (const [how, whys] of cases) {
      it(`${how}: ${whys.join(', ')}`, async function () {
        const log = newLog();
        const result = await capaRun(lab.gateway.server, log, [build!.path, OUTSIDE_NAME, String(lab.tcp.port), how]);
        expect(result.code, result.stderr).to.equal(0);
        const lines = result.stdout.trim().split('\n');
        const pinnedLines = lines.filter((l) => l.startsWith('pinned ')).map((l) => l.split(' '));
        const outcome = lines.find((l) => l.startsWith(`${how} `))!.split(' ').slice(1).map(Number);
        const firstFd = Number(pinnedLines[0]![1]);
        expect(outcome, 'rc and errno').to.deep.equal(how === 'dup2_bad' ? [-1, constants.errno.EBADF] : how.startsWith('dup') ? [firstFd, 0] : [0, 0]);
        const events = readCapaLog(log);
        const releases = events.filter((e) => e.event === 'release');
        expect(releases.map((e) => e.why)).to.deep.equal(whys);
        expect(releases.every((e) => e.outcome === 'released'), JSON.stringify(releases)).to.equal(true);
        // Each allocation is released once, the ones pinned here and no other.
        const pinned = pins(events).map((p) => key(p.aOG, p.pA));
        expect(pinned).to.deep.equal(pinnedLines.map((l) => key(l[2], Number(l[3]))));
        expect(releases.map((e) => key(e.aOG, e.pA)).sort()).to.deep.equal([...pinned].sort());
      });
    }
  });

  describe('exemptions', function () {
    it('--exempt connects the prefix directly and hands back the allocation its lookup made', async function () {
      const curl = requireTool(this, 'curl', 'capa-run tests');
      const log = newLog();
      const result = await capaRun(lab.gateway.server, log, [curl, '-sS', `http://${OUTSIDE_NAME}:${lab.tcp.port}/`], { flags: ['--exempt', '127.67.0.0/16'] });
      expect(result.code, result.stderr).to.equal(0);
      const peer = JSON.parse(result.stdout) as { address: string; port: number };
      expect(inPool(peer.address)).to.equal(false);
      const events = readCapaLog(log);
      expect(pins(events)).to.have.length(0);
      expect(events.find((e) => e.event === 'release')).to.include({ why: 'exempt destination', outcome: 'released' });
    });

    it('connects to the CAPA server itself are not subject to CAPA', async function () {
      const python = requireTool(this, 'python3', 'capa-run tests');
      const log = newLog();
      const [host, port] = lab.gateway.server.split(':');
      const script = `import socket; s = socket.create_connection((${JSON.stringify(host)}, ${port})); print(s.getsockname()[0])`;
      const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      expect(inPool(result.stdout.trim())).to.equal(false);
      expect(pins(readCapaLog(log))).to.have.length(0);
    });
  });
});

describe('capa-run failures never connect unpinned', function () {
  let ws: Workspace;
  let tcp: OutsideServer;
  let logCount = 0;
  const newLog = (): string => ws.file(`capa-${++logCount}.log`);

  before(async function () {
    if (!existsSync(LIBRARY)) throw new Error(`${LIBRARY} is missing: build it with "npx node-gyp rebuild"`);
    ws = await workspace();
    tcp = await startTcpOutside();
  });

  afterEach(function () {
    tcp.peers.length = 0;
  });

  after(async function () {
    await tcp?.close();
    await ws?.remove();
  });

  it('gateway down: a clear message at once, curl cannot resolve, nothing reaches the outside', async function () {
    const curl = requireTool(this, 'curl', 'capa-run tests');
    const server = `127.0.0.1:${await closedUdpPort()}`;
    const result = await capaRun(server, newLog(), [curl, '-sS', `http://${OUTSIDE_NAME}:${tcp.port}/`], { timeoutMs: 10_000 });
    expect(result.code).to.equal(6); // curl: could not resolve host
    expect(result.stderr).to.include(`no CAPA server answered at ${server}`);
    expect(tcp.peers).to.have.length(0);
  });

  it('a silent server: the lookup gives up within --timeout and says so', async function () {
    const curl = requireTool(this, 'curl', 'capa-run tests');
    const silent = await startFakeDnsServer(() => undefined);
    try {
      const result = await capaRun(silent.server, newLog(), [curl, '-sS', `http://${OUTSIDE_NAME}:${tcp.port}/`],
        { flags: ['--timeout', '300'], timeoutMs: 10_000 });
      expect(result.code).to.equal(6);
      expect(result.stderr).to.include(`no CAPA server answered at ${silent.server} within 300 ms`);
      expect(silent.queries.length).to.be.greaterThan(0);
      expect(tcp.peers).to.have.length(0);
    } finally {
      await silent.close();
    }
  });

  it('pool exhausted: the lookup fails, a connect to a literal fails with EADDRNOTAVAIL, nothing goes out', async function () {
    const curl = requireTool(this, 'curl', 'capa-run tests');
    const python = requireTool(this, 'python3', 'capa-run tests');
    const exhausted = await startFakeDnsServer((q) => reply(q, { rcode: 'SERVFAIL', ede: [{ code: EDE.POOL_EXHAUSTED, text: 'CAPA pool exhausted' }] }));
    try {
      const byName = await capaRun(exhausted.server, newLog(), [curl, '-sS', `http://${OUTSIDE_NAME}:${tcp.port}/`]);
      expect(byName.code).to.equal(6);
      expect(byName.stderr).to.include('CAPA pool exhausted');
      const script = `import socket\ntry:\n    socket.create_connection((${JSON.stringify(OUTSIDE_HOST)}, ${tcp.port}))\nexcept OSError as e:\n    print(e.errno)`;
      const literal = await capaRun(exhausted.server, newLog(), [python, '-c', script]);
      expect(Number(literal.stdout.trim()), literal.stderr).to.equal(EADDRNOTAVAIL);
      expect(literal.stderr).to.include(`not connecting tcp ${OUTSIDE_HOST}:${tcp.port} unpinned`);
      expect(tcp.peers).to.have.length(0);
    } finally {
      await exhausted.close();
    }
  });

  it('an IPv6-only destination and a pool without IPv6: "no IPv6 pool", not "pool exhausted", on both sides', async function () {
    const curl = requireTool(this, 'curl', 'capa-run tests');
    const gateway = await startGateway(ws, { zone: ['v6only AAAA ::1'] });
    try {
      const result = await capaRun(gateway.server, newLog(), [curl, '-sS', `http://v6only.test:${tcp.port}/`]);
      expect(result.code).to.equal(6);
      expect(result.stderr).to.include('cannot resolve v6only.test: no CAPA allocation (SERVFAIL from');
      expect(result.stderr).to.include('EDE 49152: the gateway has no IPv6 pool');
      expect(result.stderr).to.not.include('exhausted');
      const err = await capaRejection(resolve({ host: 'v6only.test', port: tcp.port, servers: [gateway.server] }));
      expect(err).to.include({ code: 'ERR_CAPA_EXHAUSTED', edeText: 'the gateway has no IPv6 pool' });
      expect(err.message).to.not.include('exhausted');
    } finally {
      await gateway.stop();
    }
  });

  it('over quota (real gateway): the second connect fails with EADDRNOTAVAIL, only the pinned one arrives', async function () {
    const python = requireTool(this, 'python3', 'capa-run tests');
    const gateway = await startGateway(ws, { extra: ['--quota', '1'] });
    try {
      const log = newLog();
      const script = [
        'import json, socket',
        `a = socket.create_connection((${JSON.stringify(OUTSIDE_HOST)}, ${tcp.port}))`,
        'try:',
        `    socket.create_connection((${JSON.stringify(OUTSIDE_HOST)}, ${tcp.port})); err = 0`,
        'except OSError as e:',
        '    err = e.errno',
        'print(json.dumps({"first": a.getsockname(), "errno": err}))',
      ].join('\n');
      const result = await capaRun(gateway.server, log, [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      const out = lastJson<{ first: [string, number]; errno: number }>(result.stdout);
      expect(out.errno).to.equal(EADDRNOTAVAIL);
      expect(result.stderr).to.include('quota');
      expect(tcp.peers).to.deep.equal([{ address: out.first[0], port: out.first[1] }]);
      expect(pins(readCapaLog(log)).map((p) => key(p.aOG, p.pA))).to.deep.equal([key(...out.first)]);
    } finally {
      await gateway.stop();
    }
  });

  it('a server that does not know CAPA (NOTIMP / NODATA): the program connects directly', async function () {
    const python = requireTool(this, 'python3', 'capa-run tests');
    const plain = await startFakeDnsServer((q) => {
      const question = q.message?.questions[0];
      if (question?.type === CAPA_TYPE && question.name.endsWith('in-addr.arpa')) return reply(q, { rcode: 'NOTIMP' });
      return reply(q, { additionals: [addressRecord(OUTSIDE_NAME, 30, OUTSIDE_HOST)] });
    });
    try {
      const log = newLog();
      const script = `import socket; s = socket.create_connection((${JSON.stringify(OUTSIDE_NAME)}, ${tcp.port})); print(s.getpeername()[0], s.getsockname()[0])`;
      const result = await capaRun(plain.server, log, [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      const [remote, local] = result.stdout.trim().split(' ');
      expect(remote).to.equal(OUTSIDE_HOST);
      expect(inPool(local!)).to.equal(false);
      expect(readCapaLog(log).some((e) => e.event === 'direct')).to.equal(true);
    } finally {
      await plain.close();
    }
  });

  it('a bad CAPA_SERVER fails closed with the reason', async function () {
    const curl = requireTool(this, 'curl', 'capa-run tests');
    const result = await run(CAPA_RUN, ['--', curl, '-sS', `http://${OUTSIDE_NAME}:${tcp.port}/`], { env: { CAPA_SERVER: '127.0.0.1:99999' } });
    expect(result.code).to.equal(6);
    expect(result.stderr).to.include('CAPA_SERVER: server "127.0.0.1:99999": port must be 1-65535');
    expect(tcp.peers).to.have.length(0);
  });
});
