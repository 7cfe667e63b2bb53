/** capa-lab's command line without building anything: help and usage errors (no root needed). */
import { expect } from 'chai';
import { runCommand } from '../../gateway-ref/lib/dataplane/command.js';
import { CAPA_LAB } from './helpers.js';

function lab(args: string[]): ReturnType<typeof runCommand> {
  return runCommand([process.execPath, CAPA_LAB, ...args], { allowFailure: true });
}

describe('capa-lab command line', () => {
  it('explains every command and flag', async () => {
    const top = await lab(['--help']);
    expect(top.code).to.equal(0);
    for (const text of ['capa-lab up', 'capa-lab down', 'capa-lab status', 'capa-lab exec <host> [command..]', '--prefix', '--state-dir', 'Exit codes']) {
      expect(top.stdout).to.contain(text);
    }
    const up = await lab(['up', '--help']);
    for (const flag of ['--terminals', '--pool', '--port-strategy', '--lease', '--hold-down']) expect(up.stdout).to.contain(flag);
  });

  it('exits 2 with the reason on bad usage, before touching anything', async () => {
    for (const [args, message] of [
      [[], /give a command: up, down, status, restart-gateway or exec/],
      [['frob'], /Unknown argument: frob/],
      [['up', '--terminals', '0'], /--terminals must be a whole number from 1 to 1000, got 0/],
      [['up', '--lease', '0'], /--lease must be a whole number of seconds >= 1/],
      [['up', '--pool', '203.0.113.7'], /not in the lab's pool prefixes 198\.51\.100\.0\/24 and 2001:db8:198::\/64/],
      [['status', '--prefix', 'Bad_Prefix'], /namespace prefix "Bad_Prefix" must be lower-case/],
    ] as [string[], RegExp][]) {
      const result = await lab(args);
      expect(result.code, args.join(' ')).to.equal(2);
      expect(result.stderr, args.join(' ')).to.match(message);
    }
  });
});
