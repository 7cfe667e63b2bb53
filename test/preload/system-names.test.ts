/**
 * Names the program's own system resolves without DNS keep resolving under capa-run: localhost,
 * the machine's hostname, and /etc/hosts entries when nsswitch.conf puts `files` before `dns`.
 * The connect that follows is still pinned, by reverse name. The /etc/hosts cases bind-mount a
 * hosts file and an nsswitch.conf of the test's own in a private mount namespace (root).
 */
import { expect } from 'chai';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { requireTool } from '../helpers/c-build.js';
import { unavailable } from '../helpers/ci.js';
import { startFakeDnsServer, reply } from '../helpers/fake-dns-server.js';
import { CAPA_RUN, capaRun, inPool, type Peer, pins, readCapaLog, run, useLab } from './lab.js';

const HOSTS_ONLY = 'hosts-only.test';
const HOSTS_ADDRESS = '127.67.82.1';

describe('capa-run: names resolved without DNS', function () {
  const lab = useLab({}, HOSTS_ADDRESS);

  const connectScript = (host: string): string =>
    `import json, socket; s = socket.create_connection((${JSON.stringify(host)}, ${lab.tcp.port})); a = s.getsockname(); print(json.dumps({"address": a[0], "port": a[1]}))`;

  it('localhost and the hostname are never asked of the CAPA server', async function () {
    const python = requireTool(this, 'python3', 'system-name tests');
    const dns = await startFakeDnsServer((q) => reply(q, { rcode: 'NOTIMP' }));
    try {
      const script = 'import socket; print(len(socket.getaddrinfo("localhost", 80)) > 0, len(socket.getaddrinfo(socket.gethostname(), 80)) > 0)';
      const result = await capaRun(dns.server, lab.newLog(), [python, '-c', script]);
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout.trim()).to.equal('True True');
      expect(dns.queries.map((q) => q.message?.questions[0]?.name), `hostname ${hostname()}`).to.deep.equal([]);
    } finally {
      await dns.close();
    }
  });

  /** Runs capa-run in a mount namespace where /etc/hosts, nsswitch.conf and resolv.conf are the test's. */
  async function withSystemFiles(ctx: Mocha.Context, nsswitch: string, program: string[], nameserver = '127.0.0.1') {
    const unshare = requireTool(ctx, 'unshare', 'the /etc/hosts tests');
    if (process.getuid?.() !== 0) unavailable(ctx, 'the /etc/hosts tests need root (a private mount namespace) in CI');
    const id = Math.random().toString(36).slice(2);
    const hosts = lab.ws.file(`hosts-${id}`);
    const ns = lab.ws.file(`nsswitch-${id}`);
    const resolvConf = lab.ws.file(`resolv-${id}`);
    await writeFile(hosts, `127.0.0.1 localhost\n${HOSTS_ADDRESS} ${HOSTS_ONLY} # a name no DNS server knows\n`);
    await writeFile(ns, `passwd: files\nhosts: ${nsswitch}\n`);
    // libc's own DNS step (dns before files) must not leave the machine: nothing listens there.
    await writeFile(resolvConf, `nameserver ${nameserver}\n`);
    const log = lab.newLog();
    const inner = 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/nsswitch.conf && mount --bind "$3" /etc/resolv.conf && shift 3 && exec "$@"';
    const result = await run(unshare, ['--mount', '--propagation', 'private', 'sh', '-c', inner, 'sh', hosts, ns, resolvConf,
      CAPA_RUN, '--server', lab.gateway.server, '--log', log, '--', ...program]);
    return { result, events: readCapaLog(log) };
  }

  it('an /etc/hosts name (files before dns) resolves as the system does, and its connect is pinned by reverse name', async function () {
    const python = requireTool(this, 'python3', 'system-name tests');
    const { result, events } = await withSystemFiles(this, 'files dns', [python, '-c', connectScript(HOSTS_ONLY)]);
    expect(result.code, result.stderr).to.equal(0);
    const peer = JSON.parse(result.stdout) as Peer;
    expect(lab.tcp.peers).to.deep.include(peer);
    expect(inPool(peer.address), `${peer.address} is a pool address`).to.equal(true);
    expect(pins(events).map((p) => p.qname)).to.deep.equal([`_${lab.tcp.port}._tcp.1.82.67.127.in-addr.arpa`]);
    expect(events.some((e) => e.qname?.includes(HOSTS_ONLY))).to.equal(false);
  });

  it('with dns before files, CAPA is asked first, and a name it does not know goes on to the hosts file, as glibc does (the connect still pinned)', async function () {
    const python = requireTool(this, 'python3', 'system-name tests');
    const { result, events } = await withSystemFiles(this, 'dns files', [python, '-c', connectScript(HOSTS_ONLY)]);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stderr).to.not.include('cannot resolve');
    const peer = JSON.parse(result.stdout) as Peer;
    expect(inPool(peer.address), `${peer.address} is a pool address`).to.equal(true);
    expect(pins(events).map((p) => p.qname)).to.deep.equal([`_${lab.tcp.port}._tcp.1.82.67.127.in-addr.arpa`]);
  });

  it('the program\'s own DNS to its resolv.conf nameserver (port 53) is neither allocated nor pinned', async function () {
    const dig = requireTool(this, 'dig', 'the own-DNS test');
    const nameserver = '127.0.0.53';
    const dns = await startFakeDnsServer((q) => reply(q, { answers: [{ name: 'own.test', type: 'A', ttl: 30, data: '192.0.2.9' }] }), nameserver, undefined, 53);
    try {
      const { result, events } = await withSystemFiles(this, 'files dns', [dig, '+short', '+tries=1', 'own.test'], nameserver);
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout.trim()).to.equal('192.0.2.9');
      expect(dns.queries.map((q) => q.message?.questions[0]?.name)).to.deep.equal(['own.test']);
      expect(events.filter((e) => e.event === 'allocate' || e.event === 'pin')).to.deep.equal([]);
    } finally {
      await dns.close();
    }
  });

  it('a name in neither fails as not found', async function () {
    const python = requireTool(this, 'python3', 'system-name tests');
    const { result } = await withSystemFiles(this, 'dns files', [python, '-c', connectScript('neither.test')]);
    expect(result.code).to.not.equal(0);
    expect(result.stderr).to.include('cannot resolve neither.test: name does not exist');
  });
});
