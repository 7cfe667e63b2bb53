/**
 * Execs LD_PRELOAD alone cannot follow: a child started with an environment that drops the
 * library (env -i, env -u LD_PRELOAD), or a statically linked child of a dynamic program. Under
 * capa-run's supervisor they are pinned all the same, and nothing needs naming or refusing.
 */
import { expect } from 'chai';
import { writeFile } from 'node:fs/promises';
import { buildC, requireTool } from '../helpers/c-build.js';
import { capaRun, inPool, OUTSIDE_HOST, type Peer, pins, readCapaLog, useLab } from './lab.js';

describe('capa-run: execs the library cannot follow', function () {
  this.timeout(30_000);
  const lab = useLab({ extra: ['--hold-down', '0'] });
  // An IP literal: the child without the library resolves names through resolv.conf.
  const url = (): string => `http://${OUTSIDE_HOST}:${lab.tcp.port}/`;

  for (const how of [['env', '-i'], ['env', '-u', 'LD_PRELOAD']]) {
    it(`${how.join(' ')} curl: the supervisor pins what the library no longer sees`, async function () {
      const curl = requireTool(this, 'curl', 'exec tests');
      const env = requireTool(this, 'env', 'exec tests');
      for (const flags of [[], ['--strict']]) {
        const log = lab.newLog();
        const result = await capaRun(lab.gateway.server, log, [env, ...how.slice(1), curl, '-sS', url()], { flags });
        expect(result.code, result.stderr).to.equal(0);
        expect(result.stderr, 'nothing to name or refuse').to.equal('');
        const peer = JSON.parse(result.stdout) as Peer;
        expect(inPool(peer.address), `${peer.address} is a pool address`).to.equal(true);
        expect(pins(readCapaLog(log)).map((p) => p.qname)).to.deep.equal([`_${lab.tcp.port}._tcp.1.80.67.127.in-addr.arpa`]);
      }
    });
  }

  for (const [what, how] of [['drops', ['-u', 'CAPA_SUPERVISOR_TOKEN']], ['forges', [`CAPA_SUPERVISOR_TOKEN=${'0'.repeat(32)}`]]] as const) {
    it(`a child that ${what} the supervisor's token keeps the library: the supervisor hears its note and lets the pinned connect by`, async function () {
      const curl = requireTool(this, 'curl', 'exec tests');
      const env = requireTool(this, 'env', 'exec tests');
      const log = lab.newLog();
      const result = await capaRun(lab.gateway.server, log, [env, ...how, curl, '-sS', `http://outside.test:${lab.tcp.port}/`]);
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stderr).to.equal('');
      const peer = JSON.parse(result.stdout) as Peer;
      expect(inPool(peer.address), `${peer.address} is a pool address`).to.equal(true);
      // Pinned once, by name: the library's pin, not a second one by the supervisor.
      expect(pins(readCapaLog(log)).map((p) => p.qname)).to.deep.equal([`_${lab.tcp.port}._tcp.outside.test`]);
      expect(lab.tcp.peers).to.deep.include({ address: peer.address, port: peer.port });
    });
  }

  it('a malformed token is a configuration error: the library says so and connects nothing', async function () {
    const curl = requireTool(this, 'curl', 'exec tests');
    const env = requireTool(this, 'env', 'exec tests');
    const before = lab.tcp.peers.length;
    const result = await capaRun(lab.gateway.server, lab.newLog(), [env, 'CAPA_SUPERVISOR_TOKEN=xyz', curl, '-sS', `http://outside.test:${lab.tcp.port}/`]);
    expect(result.code).to.not.equal(0);
    expect(result.stderr).to.include('CAPA_SUPERVISOR_TOKEN must be 32 hex digits, got "xyz"');
    expect(lab.tcp.peers.length, 'no connection reached the server').to.equal(before);
  });

  it('a statically linked program started by a shell is pinned', async function () {
    requireTool(this, 'cc', 'the static test program');
    const source = lab.ws.file('static-exec.c');
    await writeFile(source, [
      '#include <arpa/inet.h>', '#include <stdio.h>', '#include <stdlib.h>', '#include <sys/socket.h>', '#include <unistd.h>',
      'int main(int argc, char **argv) {',
      '  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))}, me; socklen_t len = sizeof me;',
      '  inet_pton(AF_INET, argv[1], &to.sin_addr); int fd = socket(AF_INET, SOCK_STREAM, 0);',
      '  if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) { perror("connect"); return 1; }',
      '  getsockname(fd, (struct sockaddr *)&me, &len); printf("%s %u\\n", inet_ntoa(me.sin_addr), ntohs(me.sin_port)); return 0;',
      '}', ''].join('\n'));
    const build = buildC({ sources: [source], kind: 'executable', flags: ['-static', '-O2'], name: 'static-exec' });
    try {
      const result = await capaRun(lab.gateway.server, lab.newLog(), ['sh', '-c', `"${build.path}" ${OUTSIDE_HOST} ${lab.tcp.port}`]);
      expect(result.code, result.stderr).to.equal(0);
      const [address, port] = result.stdout.trim().split(' ');
      expect(inPool(address!)).to.equal(true);
      expect(lab.tcp.peers).to.deep.include({ address: address!, port: Number(port) });
    } finally {
      build.remove();
    }
  });

  it('an ordinary child keeps the library: its connection is pinned by name', async function () {
    const curl = requireTool(this, 'curl', 'exec tests');
    const log = lab.newLog();
    const result = await capaRun(lab.gateway.server, log, ['sh', '-c', `"${curl}" -sS "http://outside.test:${lab.tcp.port}/"`], { flags: ['--strict'] });
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stderr).to.equal('');
    expect(inPool((JSON.parse(result.stdout) as Peer).address)).to.equal(true);
    expect(pins(readCapaLog(log)).map((p) => p.qname)).to.deep.equal([`_${lab.tcp.port}._tcp.outside.test`]);
  });
});
