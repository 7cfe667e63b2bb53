/**
 * The capa-run launcher (native/launcher/): what it refuses (set-user-ID, file capabilities,
 * another machine's programs), what it runs under the supervisor alone (static programs, scripts
 * whose interpreter is static), what it passes on (exit codes, LD_PRELOAD, CAPA_* variables),
 * and its errors for bad flags, missing programs and a library LD_PRELOAD cannot carry; the
 * package's bin script that reaches it.
 */
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { buildC, repoRoot, requireTool } from '../helpers/c-build.js';
import { CAPA_RUN, LIBRARY, run, type Workspace, workspace } from './lab.js';

const EXIT_FAILED = 125;
const EXIT_REFUSED = 126;
const EXIT_NOT_FOUND = 127;

const capaRun = (args: string[], env: NodeJS.ProcessEnv = {}) => run(CAPA_RUN, args, { env, timeoutMs: 15_000 });

/**
 * A dynamically linked 32-bit i386 program as far as the ELF headers go: a 52-byte header, one
 * PT_INTERP program header naming /lib/ld-linux.so.2, and the name.
 */
function i386Program(): Buffer {
  const interp = Buffer.from('/lib/ld-linux.so.2\0', 'latin1');
  const file = Buffer.alloc(52 + 32 + interp.length);
  file.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  file.writeUInt16LE(2, 0x10); // ET_EXEC
  file.writeUInt16LE(3, 0x12); // EM_386
  file.writeUInt32LE(1, 0x14);
  file.writeUInt32LE(52, 0x1c); // e_phoff
  file.writeUInt16LE(52, 0x28); // e_ehsize
  file.writeUInt16LE(32, 0x2a); // e_phentsize
  file.writeUInt16LE(1, 0x2c); // e_phnum
  file.writeUInt32LE(3, 52); // PT_INTERP
  file.writeUInt32LE(84, 56); // p_offset
  file.writeUInt32LE(interp.length, 68); // p_filesz
  interp.copy(file, 84);
  return file;
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
    const link = ws.file('cap-link');
    await symlink(copy, link);
    const linked = await capaRun(['--', link], { PATH: path });
    expect(linked.code, 'a symbolic link to the file: the capabilities execve would grant').to.equal(EXIT_REFUSED);
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
    for (const flag of ['--server', '--strict', '--quiet', '--log', '--exempt', '--interface', '--address-idle', '--timeout']) {
      expect(result.stdout).to.include(flag);
    }
  });

  it('refuses a dynamically linked program of another ELF class and machine (126)', async function () {
    const program = ws.file('i386-prog');
    await writeFile(program, i386Program(), { mode: 0o755 });
    const result = await capaRun(['--', program]);
    expect(result.code, result.stderr).to.equal(EXIT_REFUSED);
    expect(result.stderr).to.include(`${program} is a 32-bit program for ELF machine 3, but the capa-run library is 64-bit for machine 62`);
  });

  it('refuses to run from a folder whose path LD_PRELOAD cannot carry (125)', async function () {
    const dir = ws.file('with space');
    await mkdir(dir, { recursive: true });
    for (const file of ['capa-run', 'libcapa_preload.so']) await copyFile(join(repoRoot, 'build/Release', file), join(dir, file));
    await chmod(join(dir, 'capa-run'), 0o755);
    const result = await run(join(dir, 'capa-run'), ['--', sh, '-c', 'exit 0'], { timeoutMs: 15_000 });
    expect(result.code).to.equal(EXIT_FAILED);
    expect(result.stderr).to.include('holds a space or colon, which LD_PRELOAD cannot carry');
  });

  it('is reached through the package\'s bin script, directly and through a link as npm makes them', async function () {
    const bin = join(repoRoot, 'bin/capa-run');
    const direct = await run(bin, ['--', sh, '-c', 'exit 4'], { timeoutMs: 15_000 });
    expect(direct.code, direct.stderr).to.equal(4);
    const linkDir = ws.file('node_modules-bin');
    await mkdir(linkDir, { recursive: true });
    await symlink(bin, join(linkDir, 'capa-run'));
    const linked = await run(join(linkDir, 'capa-run'), ['--', sh, '-c', 'echo "$LD_PRELOAD"'], { timeoutMs: 15_000 });
    expect(linked.code, linked.stderr).to.equal(0);
    expect(linked.stdout.trim()).to.equal(LIBRARY);
    // A package whose install script has not built the launcher yet: said so, 125.
    const unbuilt = ws.file('unbuilt/bin');
    await mkdir(unbuilt, { recursive: true });
    await copyFile(bin, join(unbuilt, 'capa-run'));
    const missing = await run(join(unbuilt, 'capa-run'), ['--', sh], { timeoutMs: 15_000 });
    expect(missing.code).to.equal(EXIT_FAILED);
    expect(missing.stderr).to.include('is not built; run "npx node-gyp rebuild" in the package folder');
  });
});
