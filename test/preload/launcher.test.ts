/**
 * The capa-run launcher: what it refuses (static, set-user-ID, file capabilities, scripts whose
 * interpreter is static), what it passes on (exit codes, LD_PRELOAD, CAPA_* variables), and its
 * errors for bad flags and missing programs. Plus the pure rules of socket-shim/lib/preload-target.ts.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { isCapaError } from '../../resolver/lib/errors.js';
import { inspectExecutable, parseExempt, preloadValue, privilegeRefusal, reachOf } from '../../socket-shim/lib/preload-target.js';
import { buildC, requireTool } from '../helpers/c-build.js';
import { CAPA_RUN, LIBRARY, run, type Workspace, workspace } from './lab.js';

const EXIT_FAILED = 125;
const EXIT_REFUSED = 126;
const EXIT_NOT_FOUND = 127;

const capaRun = (args: string[], env: NodeJS.ProcessEnv = {}) => run(process.execPath, [CAPA_RUN, ...args], { env, timeoutMs: 15_000 });

function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isCapaError(err) ? err.code : 'not a CapaError';
  }
  return undefined;
}

/** A 64-byte ELF header of the given class with no program headers. */
function elfHeader(elfClass: 1 | 2, machine: number): Buffer {
  const head = Buffer.alloc(64);
  head.set([0x7f, 0x45, 0x4c, 0x46, elfClass, 1, 1]);
  head.writeUInt16LE(machine, 0x12);
  return head;
}

describe('capa-run launcher', function () {
  let ws: Workspace;
  const sh = '/bin/sh';

  before(async function () {
    ws = await workspace();
  });

  after(async function () {
    await ws?.remove();
  });

  it('passes the program\'s exit code through, and reports a signal death as 128+N', async function () {
    expect((await capaRun(['--', sh, '-c', 'exit 7'])).code).to.equal(7);
    expect((await capaRun(['--', sh, '-c', 'kill -TERM $$'])).code).to.equal(128 + constants.signals.SIGTERM);
  });

  it('puts the library first in LD_PRELOAD and passes the settings on as CAPA_* variables', async function () {
    const empty = ws.file('empty.c');
    await writeFile(empty, 'int capa_test_other_library;\n');
    const other = buildC({ sources: [empty], kind: 'shared' });
    try {
      const result = await capaRun(['--server', '127.0.0.1:5300,[::1]:53', '--exempt', '10.0.0.0/8', '--exempt', '192.0.2.1',
        '--quiet', '--interface', 'lo', '--timeout', '750', '--log', 'rel.log', '--',
        sh, '-c', 'echo "$LD_PRELOAD|$CAPA_SERVER|$CAPA_EXEMPT|$CAPA_QUIET|$CAPA_INTERFACE|$CAPA_TIMEOUT_MS|$CAPA_LOG"'],
      { LD_PRELOAD: other.path });
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout.trim()).to.equal(
        `${LIBRARY}:${other.path}|127.0.0.1:5300,[::1]:53|10.0.0.0/8,192.0.2.1/32|1|lo|750|${process.cwd()}/rel.log`);
    } finally {
      other.remove();
    }
  });

  it('accepts the program without "--" and leaves its flags alone', async function () {
    const result = await capaRun([sh, '-c', 'echo "$0 $1"', 'x', '--quiet']);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout.trim()).to.equal('x --quiet');
  });

  it('runs a statically linked program under the supervisor, exit code passed on', async function () {
    requireTool(this, 'cc', 'the static test program');
    const source = ws.file('static.c');
    await writeFile(source, '#include <stdio.h>\nint main(void) { puts("static ran"); return 3; }\n');
    const build = buildC({ sources: [source], kind: 'executable', flags: ['-static', '-O2'], name: 'static-prog' });
    try {
      const result = await capaRun(['--', build.path]);
      expect(result.code, result.stderr).to.equal(3);
      expect(result.stdout).to.equal('static ran\n');
    } finally {
      build.remove();
    }
  });

  it('runs a script whose interpreter is statically linked under the supervisor', async function () {
    requireTool(this, 'cc', 'the static test program');
    const source = ws.file('interp.c');
    await writeFile(source, '#include <stdio.h>\nint main(int argc, char **argv) { printf("%s\\n", argv[argc - 1]); return 0; }\n');
    const build = buildC({ sources: [source], kind: 'executable', flags: ['-static'], name: 'static-interp' });
    try {
      const script = ws.file('script');
      await writeFile(script, `#!${build.path} -x\necho hi\n`);
      await chmod(script, 0o755);
      const result = await capaRun(['--', script]);
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout.trim()).to.equal(script);
    } finally {
      build.remove();
    }
  });

  it('refuses set-user-ID and set-group-ID programs', async function () {
    for (const [mode, word] of [[0o4755, 'set-user-ID'], [0o2755, 'set-group-ID']] as const) {
      const copy = ws.file(`priv-${mode.toString(8)}`);
      await copyFile('/bin/true', copy);
      await chmod(copy, mode);
      const result = await capaRun(['--', copy]);
      expect(result.code).to.equal(EXIT_REFUSED);
      expect(result.stderr).to.include(`${copy} is ${word}; the dynamic linker ignores LD_PRELOAD`);
    }
  });

  it('refuses a program with file capabilities, with or without getcap, and runs getcap only to describe them', async function () {
    const setcap = requireTool(this, 'setcap', 'the file-capability refusal');
    const getcap = requireTool(this, 'getcap', 'the file-capability refusal');
    const copy = ws.file('cap-true');
    await copyFile('/bin/true', copy);
    const set = spawnSync(setcap, ['cap_net_raw+ep', copy], { encoding: 'utf8' });
    if (set.status !== 0) {
      if (process.env.CI === 'true') throw new Error(`setcap failed in CI (root needed): ${set.stderr}`);
      this.skip();
    }
    // A getcap first in PATH that notes each call, then runs the real one.
    const bin = ws.file('spy-bin');
    const calls = ws.file('getcap-calls');
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, 'getcap'), `#!/bin/sh\necho "$@" >> ${calls}\nexec ${getcap} "$@"\n`, { mode: 0o755 });
    await writeFile(calls, '');
    const path = `${bin}:${process.env.PATH ?? ''}`;
    expect((await capaRun(['--', '/bin/true'], { PATH: path })).code).to.equal(0);
    expect(await readFile(calls, 'utf8'), 'getcap run for a program without capabilities').to.equal('');
    const result = await capaRun(['--', copy], { PATH: path });
    expect(result.code).to.equal(EXIT_REFUSED);
    expect(result.stderr).to.include('has file capabilities (cap_net_raw=ep)');
    expect(await readFile(calls, 'utf8')).to.equal(`${copy}\n`);
    const withoutGetcap = await capaRun(['--', copy], { PATH: ws.file('no-such-dir') });
    expect(withoutGetcap.code).to.equal(EXIT_REFUSED);
    expect(withoutGetcap.stderr).to.include('has file capabilities (security.capability is set)');
  });

  it('says which program is missing (127) and what is wrong with a flag (125)', async function () {
    const missing = await capaRun(['--', 'capa-no-such-program']);
    expect(missing.code).to.equal(EXIT_NOT_FOUND);
    expect(missing.stderr).to.include('capa-no-such-program: no such program in PATH');
    const cases: [string[], string][] = [
      [['--server', 'gateway.example', '--', sh], 'is not an IP address'],
      [['--server', '127.0.0.1:0', '--', sh], 'port must be 1-65535'],
      [['--exempt', '10.0.0.0/33', '--', sh], '--exempt "10.0.0.0/33" is not a prefix'],
      [['--timeout', '0', '--', sh], '--timeout must be a whole number of ms'],
      [['--interface', 'a b', '--', sh], 'is not an interface name'],
      [['--bogus', '--', sh], 'Unknown argument: bogus'],
      [[], 'no program given'],
    ];
    for (const [args, message] of cases) {
      const result = await capaRun(args);
      expect(result.code, args.join(' ')).to.equal(EXIT_FAILED);
      expect(result.stderr, args.join(' ')).to.include(message);
    }
  });

  it('--help explains every flag', async function () {
    const result = await capaRun(['--help']);
    expect(result.code).to.equal(0);
    for (const flag of ['--server', '--quiet', '--log', '--exempt', '--interface', '--timeout']) expect(result.stdout).to.include(flag);
  });
});

describe('capa-run preload rules (pure)', function () {
  it('reads PT_INTERP from the program headers of a real dynamic program', function () {
    const fd = openSync(process.execPath, 'r');
    try {
      const target = inspectExecutable((offset, length) => {
        const buf = Buffer.alloc(length);
        return buf.subarray(0, readSync(fd, buf, 0, length, offset));
      });
      expect(target.kind).to.equal('elf');
      expect(target.kind === 'elf' && target.interpreter).to.match(/^\/.*ld-linux.*\.so/);
    } finally {
      closeSync(fd);
    }
  });

  it('refuses a program of another ELF class or machine than the library', function () {
    const read = (head: Buffer) => (offset: number, length: number) => head.subarray(offset, offset + length);
    const lib = inspectExecutable(read(elfHeader(2, 62)));
    const i386 = inspectExecutable(read(elfHeader(1, 3)));
    expect(i386).to.deep.equal({ kind: 'elf', elfClass: 32, machine: 3, interpreter: undefined });
    const other = reachOf('/x', { ...i386, interpreter: '/lib/ld-linux.so.2' } as typeof i386, lib);
    expect(other.how === 'refused' && other.why).to.include('32-bit program');
    expect(reachOf('/x', i386, lib), 'a static program (no interpreter) goes to the supervisor').to.deep.equal({ how: 'supervisor' });
    expect(inspectExecutable(read(Buffer.from('#!/usr/bin/env node\n')))).to.deep.equal({ kind: 'script', interpreter: '/usr/bin/env' });
    expect(inspectExecutable(read(Buffer.from('plain text')))).to.deep.equal({ kind: 'other' });
  });

  it('spells CAPA_EXEMPT prefixes canonically and rejects bad ones', function () {
    expect(parseExempt('10.1.2.3/8')).to.equal('10.1.2.3/8');
    expect(parseExempt(' 2001:DB8::1 ')).to.equal('2001:db8::1/128');
    for (const bad of ['10.0.0.0/33', '::/129', 'example.com', '10.0.0.0/8/1', '10.0.0.0/x', '']) {
      expect(errorCode(() => parseExempt(bad)), bad).to.equal('ERR_CAPA_INVALID_ARG');
    }
  });

  it('puts the library first in LD_PRELOAD, refuses a path LD_PRELOAD cannot carry', function () {
    expect(preloadValue('/a/lib.so', undefined)).to.equal('/a/lib.so');
    expect(preloadValue('/a/lib.so', ' /b.so /c.so ')).to.equal('/a/lib.so:/b.so /c.so');
    expect(errorCode(() => preloadValue('/my dir/lib.so', undefined))).to.equal('ERR_CAPA_INVALID_ARG');
  });

  it('names the privilege that makes the dynamic linker ignore LD_PRELOAD', function () {
    expect(privilegeRefusal('/p', 0o100755, undefined)).to.equal(undefined);
    expect(privilegeRefusal('/p', 0o100755, '')).to.equal(undefined);
    expect(privilegeRefusal('/p', 0o104755, undefined)).to.include('is set-user-ID');
    expect(privilegeRefusal('/p', 0o102755, undefined)).to.include('is set-group-ID');
    expect(privilegeRefusal('/p', 0o100755, 'cap_net_admin=ep')).to.include('has file capabilities (cap_net_admin=ep)');
  });
});
