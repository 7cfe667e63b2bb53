/**
 * Nothing reaches the outside unpinned: a program that binds its own source before it connects
 * (nc -p / -s, curl --local-port, ssh -b) is refused with a line that says why, one that binds
 * the wildcard address and port 0 is pinned as usual, and a bind of the allocated port that a
 * local listener holds asks for another allocation instead of connecting unpinned. Checked
 * against what the outside server saw.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import net from 'node:net';
import { requireTool } from '../helpers/c-build.js';
import { capaRun, inPool, OUTSIDE_HOST, type Peer, pins, readCapaLog, startGateway, useLab } from './lab.js';

const REFUSAL = /capa-run: \S+: not connecting tcp 127\.67\.80\.1:\d+ from [\d.]+:\d+, the source the program bound socket \d+ to/;

describe('capa-run: nothing reaches the outside unpinned', function () {
  this.timeout(30_000);
  const lab = useLab({ extra: ['--hold-down', '0'] });

  /** Peers the outside server saw that do not come from the pool. */
  const unpinnedPeers = (): Peer[] => lab.tcp.peers.filter((p) => !inPool(p.address));

  const refusals: [string, string, (port: number) => string[]][] = [
    ['nc -p 5555 (its own source port)', 'nc', (port) => ['-w', '2', '-p', '5555', OUTSIDE_HOST, String(port)]],
    ['nc -s 127.0.0.7 (its own source address)', 'nc', (port) => ['-w', '2', '-s', '127.0.0.7', OUTSIDE_HOST, String(port)]],
    ['curl --local-port', 'curl', (port) => ['-sS', '--local-port', '40100-40110', `http://${OUTSIDE_HOST}:${port}/`]],
    ['ssh -b 127.0.0.7', 'ssh', (port) => ['-F', '/dev/null', '-o', 'BatchMode=yes', '-b', '127.0.0.7', '-p', String(port), `nobody@${OUTSIDE_HOST}`, 'true']],
  ];
  for (const [name, tool, args] of refusals) {
    it(`${name}: refused with EADDRNOTAVAIL and a reason, nothing sent`, async function () {
      const program = requireTool(this, tool, 'bind tests');
      const log = lab.newLog();
      const result = await capaRun(lab.gateway.server, log, [program, ...args(lab.tcp.port)], { input: 'hello\n' });
      expect(result.code, result.stdout).to.not.equal(0);
      expect(result.stderr).to.match(REFUSAL);
      expect(result.stderr).to.include('capa-run --exempt 127.67.80.1');
      expect(unpinnedPeers()).to.deep.equal([]);
      const events = readCapaLog(log);
      expect(pins(events)).to.deep.equal([]);
      expect(events.filter((e) => e.event === 'release').map((e) => e.why)).to.include('bound by the program');
    });
  }

  it('a bind to the wildcard address and port 0 before connect is pinned like an unbound socket', async function () {
    const python = requireTool(this, 'python3', 'bind tests');
    const log = lab.newLog();
    const script = [
      'import json, socket',
      's = socket.socket(); s.bind(("0.0.0.0", 0))',
      `s.connect((${JSON.stringify(OUTSIDE_HOST)}, ${lab.tcp.port})); a = s.getsockname()`,
      'print(json.dumps({"address": a[0], "port": a[1]}))',
    ].join('\n');
    const result = await capaRun(lab.gateway.server, log, [python, '-c', script]);
    expect(result.code, result.stderr).to.equal(0);
    const peer = JSON.parse(result.stdout) as Peer;
    expect(inPool(peer.address)).to.equal(true);
    expect(lab.tcp.peers).to.deep.include(peer);
    expect(pins(readCapaLog(log))).to.have.length(1);
  });

  it('a local listener on the allocated port: the allocation goes back and the next one is pinned', async function () {
    const curl = requireTool(this, 'curl', 'bind tests');
    // One pool address, ports handed out in order and held down once released: 1024, then 1025.
    const gateway = await startGateway(lab.ws, { pool: '127.66.80.4', extra: ['--port-strategy', 'sequential'] });
    const squatter = net.createServer().listen(1024, '127.66.80.4');
    await once(squatter, 'listening');
    try {
      const log = lab.newLog();
      const result = await capaRun(gateway.server, log, [curl, '-sS', `http://${OUTSIDE_HOST}:${lab.tcp.port}/`]);
      expect(result.code, result.stderr).to.equal(0);
      expect(JSON.parse(result.stdout)).to.deep.equal({ address: '127.66.80.4', port: 1025 });
      const events = readCapaLog(log);
      expect(events.filter((e) => e.event === 'release').map((e) => `${e.why} ${e.pA}`)).to.include('address in use 1024');
      expect(pins(events).map((p) => p.pA)).to.deep.equal([1025]);
      expect(unpinnedPeers()).to.deep.equal([]);
    } finally {
      squatter.close();
      await gateway.stop();
    }
  });
});
