/**
 * Execs that LD_PRELOAD cannot follow: a child started with an environment that drops the
 * library (env -i, env -u LD_PRELOAD) or a statically linked one. capa-run names each on
 * stderr; with --strict it refuses the exec, so nothing goes out unpinned.
 */
import { expect } from 'chai';
import { writeFile } from 'node:fs/promises';
import { buildC, requireTool } from '../helpers/c-build.js';
import { capaRun, inPool, OUTSIDE_NAME, type Peer, useLab } from './lab.js';

describe('capa-run: execs the library cannot follow', function () {
  this.timeout(30_000);
  const lab = useLab();
  const url = (): string => `http://${OUTSIDE_NAME}:${lab.tcp.port}/`;
  const unpinned = (): Peer[] => lab.tcp.peers.filter((p) => !inPool(p.address));

  for (const how of [['env', '-i'], ['env', '-u', 'LD_PRELOAD']]) {
    it(`${how.join(' ')} curl: named on stderr by default; refused with --strict, nothing sent`, async function () {
      const curl = requireTool(this, 'curl', 'exec tests');
      const env = requireTool(this, 'env', 'exec tests');
      // The outside name is not in /etc/hosts: an unhooked curl would resolve it through resolv.conf.
      const target = `http://127.67.80.1:${lab.tcp.port}/`;
      const loose = await capaRun(lab.gateway.server, lab.newLog(), [env, ...how.slice(1), curl, '-sS', target]);
      expect(loose.stderr).to.include(`${curl} will run without CAPA: its environment drops LD_PRELOAD`);
      expect(loose.code, 'without --strict it runs, unpinned, as the warning says').to.equal(0);
      lab.tcp.peers.length = 0;
      const strict = await capaRun(lab.gateway.server, lab.newLog(), [env, ...how.slice(1), curl, '-sS', url()], { flags: ['--strict'] });
      expect(strict.code).to.not.equal(0);
      expect(strict.stderr).to.include(`refusing to run ${curl} without CAPA: its environment drops LD_PRELOAD`);
      expect(unpinned()).to.deep.equal([]);
    });
  }

  it('a statically linked program started by a shell: named, and refused with --strict', async function () {
    requireTool(this, 'cc', 'the static test program');
    const source = lab.ws.file('static-exec.c');
    await writeFile(source, '#include <stdio.h>\nint main(void) { puts("static ran"); return 0; }\n');
    const build = buildC({ sources: [source], kind: 'executable', flags: ['-static', '-O2'], name: 'static-exec' });
    try {
      const loose = await capaRun(lab.gateway.server, lab.newLog(), ['sh', '-c', `"${build.path}"`]);
      expect(loose.stdout.trim()).to.equal('static ran');
      expect(loose.stderr).to.include(`${build.path} will run without CAPA: it is statically linked`);
      const strict = await capaRun(lab.gateway.server, lab.newLog(), ['sh', '-c', `"${build.path}"`], { flags: ['--strict'] });
      expect(strict.stdout).to.equal('');
      expect(strict.stderr).to.include(`refusing to run ${build.path} without CAPA: it is statically linked`);
    } finally {
      build.remove();
    }
  });

  it('an ordinary child keeps the library: no warning, and its connection is pinned', async function () {
    const curl = requireTool(this, 'curl', 'exec tests');
    const result = await capaRun(lab.gateway.server, lab.newLog(), ['sh', '-c', `"${curl}" -sS "${url()}"`], { flags: ['--strict'] });
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stderr).to.equal('');
    expect(inPool((JSON.parse(result.stdout) as Peer).address)).to.equal(true);
  });
});
