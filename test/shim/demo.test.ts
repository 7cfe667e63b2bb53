/**
 * The `npm start` demo as a user runs it (a separate process: gateway, outside host and
 * terminals all real), and the reading of terminal reports.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { parseReport, reportFromCapaRunLog } from '../../socket-shim/demo/report.js';

const DEMO = fileURLToPath(new URL('../../socket-shim/demo/main.js', import.meta.url));

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

describe('shim: the npm start demo', () => {
  it('exits 0 with every flow seen by the outside host as assigned, and a shared gateway address', async () => {
    const { code, stdout, stderr } = await run([]);
    expect(code, `${stdout}\n${stderr}`).to.equal(0);
    const rows = stdout.split('\n').filter((line) => /^[A-D] /.test(line));
    expect(rows.length).to.be.at.least(6, stdout);
    for (const row of rows) {
      const cells = row.split(/\s{2,}/);
      expect(cells.at(-1), row).to.equal('yes');
      expect(cells.at(-2), row).to.equal(cells.at(-3));
      expect(cells.at(-3), row).to.match(/^127\.64\.0\.[12]:\d+$/);
    }
    expect(stdout).to.match(/shared by terminals: 127\.64\.0\.[12] by [A-D], [A-D]/);
  });

  it('documents itself with --help and rejects unknown flags with exit code 2', async () => {
    const help = await run(['--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.include('Exit codes');
    const bad = await run(['--pool', 'x']);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include('Unknown argument');
  });

  it('reads terminal reports and turns unusable output into an error', () => {
    expect(parseReport('A', 'ready\n{"name":"A","flows":[{"proto":"tcp","assigned":"127.64.0.1:1024"}]}\n'))
      .to.deep.equal({ name: 'A', flows: [{ proto: 'tcp', assigned: '127.64.0.1:1024' }] });
    expect(parseReport('A', '{"name":"B","flows":[]}')).to.have.property('error');
    expect(parseReport('A', 'ready\n')).to.have.property('error').that.includes('no report');
  });

  it("reads a capa-run log's pin events, and reports a log without pins or with broken lines", () => {
    const log = [
      '{"event":"allocate","proto":6,"aOG":"127.64.0.1","pA":2000}',
      '{"event":"pin","fd":5,"proto":6,"aOG":"127.64.0.1","pA":2000}',
      '{"event":"pin","fd":6,"proto":17,"aOG":"127.64.0.2","pA":3000}',
    ].join('\n');
    expect(reportFromCapaRunLog('D', log)).to.deep.equal({
      name: 'D',
      flows: [{ proto: 'tcp', assigned: '127.64.0.1:2000' }, { proto: 'udp', assigned: '127.64.0.2:3000' }],
    });
    expect(reportFromCapaRunLog('D', '{"event":"allocate"}\n')).to.have.property('error');
    expect(reportFromCapaRunLog('D', 'garbage\n')).to.have.property('error').that.includes('not JSON');
  });
});
