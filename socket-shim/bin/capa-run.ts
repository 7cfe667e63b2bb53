#!/usr/bin/env node
/**
 * capa-run: runs an unmodified program with the CAPA LD_PRELOAD library
 * (build/Release/libcapa_preload.so), so its name lookups ask the gateway for CAPA allocations
 * and its sockets are pinned to them, under the seccomp supervisor (build/Release/capa_supervise)
 * that pins what the library cannot reach. Exit codes follow env(1)/timeout(1): the program's
 * own, 125 capa-run itself failed (bad flags, library or supervisor missing, supervisor died),
 * 126 the program cannot run under capa-run (setuid/setgid, file capabilities, other machine),
 * 127 program not found, 128+N when the program was killed by signal N (as shells report it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, openSync, readSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandLine, usageExit } from '../../resolver/lib/cli.js';
import { isCapaError } from '../../resolver/lib/errors.js';
import { hasFileCapabilities } from '../lib/native.js';
import { ADDRESS_IDLE_MS, sweepAddresses } from '../lib/address-sweep.js';
import { Ledger } from '../lib/ledger.js';
import { inspectExecutable, type Executable, parseExempt, preloadValue, privilegeRefusal, type Reach, reachOf } from '../lib/preload-target.js';

const EXIT_FAILED = 125;
const EXIT_REFUSED = 126;
const EXIT_NOT_FOUND = 127;
/** `#!` chains longer than this are not followed (the kernel itself allows a few levels). */
const MAX_SCRIPT_DEPTH = 4;
/** How long capa-run waits for each release a dead program left to it. */
const LEDGER_RELEASE_MS = 500;

// dist/socket-shim/bin/capa-run.js -> <package root>/build/Release/libcapa_preload.so
const LIBRARY = fileURLToPath(new URL('../../../build/Release/libcapa_preload.so', import.meta.url));
const SUPERVISOR = fileURLToPath(new URL('../../../build/Release/capa_supervise', import.meta.url));

function quit(code: number, message: string): never {
  process.stderr.write(`capa-run: ${message}\n`);
  process.exit(code);
}

const argv = commandLine('capa-run', process.argv.slice(2), usageExit('capa-run', EXIT_FAILED, 'flags'), (y) => y
  .usage('$0 [options] -- <program> [args...]')
  .epilog('Runs <program> with the CAPA LD_PRELOAD library: getaddrinfo/gethostbyname ask the CAPA server for '
    + '_<port>._<proto>.<host> and return the destination address; connect (and the first send of an unbound UDP '
    + 'socket) binds the socket to the allocated (address, port) before it goes out; close hands the allocation back. '
    + 'A CAPA failure fails the lookup or the connect: nothing is connected unpinned. Every program runs under a seccomp '
    + 'supervisor that pins what the library cannot reach (static programs, children that drop LD_PRELOAD); set-user-ID '
    + 'and capability-carrying programs are refused (the dynamic linker would not load the library, and no-new-privs would '
    + 'run them without their privileges). '
    + 'Exit codes: the program\'s own; 125 capa-run failed; 126 the program cannot run under capa-run; 127 not found.')
  .example('$0 --server 127.0.0.1:5300 -- curl http://outside.test:8080/', 'fetch through a loopback CAPA gateway')
  .parserConfiguration({ 'halt-at-non-option': true, 'populate--': true })
  .option('server', { type: 'string', array: true, nargs: 1, describe: 'CAPA server ip[:port] or [ipv6]:port (default port 53), in order; repeat or comma-separate. Default: the nameservers of /etc/resolv.conf (CAPA_SERVER)' })
  .option('strict', { type: 'boolean', default: false, describe: 'Where the library runs without the supervisor, refuse (EPERM) an exec it cannot follow (an environment without LD_PRELOAD, a static or set-user-ID program) instead of naming it on stderr; under capa-run the supervisor pins those, so nothing is left to refuse (CAPA_STRICT)' })
  .option('quiet', { type: 'boolean', default: false, describe: 'Keep the library\'s CAPA error lines off stderr (CAPA_QUIET)' })
  .option('log', { type: 'string', describe: 'Append one JSON line per CAPA event (allocate, pin, release, direct, error) to this file (CAPA_LOG)' })
  .option('exempt', { type: 'string', array: true, nargs: 1, describe: 'Destination prefix (CIDR or one address) connected without CAPA; repeat for more (CAPA_EXEMPT)' })
  .option('interface', { type: 'string', describe: 'Interface to add allocated addresses to when they are not local yet; needs CAP_NET_ADMIN (CAPA_INTERFACE)' })
  .option('address-idle', { type: 'number', default: ADDRESS_IDLE_MS / 1000, describe: 'With --interface (or CAPA_INTERFACE): when the program ends, remove each address CAPA added to the interface that no socket uses and that an end at least this many seconds earlier found unused too' })
  .option('timeout', { type: 'number', describe: 'Deadline of one CAPA lookup in ms, default 2000 (CAPA_TIMEOUT_MS)' }))
  .parseSync();

/** The flags as the library's environment variables; exits 125 on a bad value. */
async function capaEnvironment(): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  try {
    if (argv.server !== undefined) {
      // Loaded only when needed: every module is start-up time of every program run.
      const { formatServer, parseServerList } = await import('../../resolver/lib/servers.js');
      env.CAPA_SERVER = argv.server.flatMap((s) => parseServerList(s)).map(formatServer).join(',');
    }
    if (argv.exempt !== undefined) env.CAPA_EXEMPT = argv.exempt.flatMap((e) => e.split(',')).filter((e) => e.trim() !== '').map(parseExempt).join(',');
  } catch (err) {
    if (!isCapaError(err)) throw err;
    quit(EXIT_FAILED, err.message);
  }
  if (argv.server !== undefined && env.CAPA_SERVER === '') quit(EXIT_FAILED, '--server needs at least one ip[:port]');
  if (argv.log !== undefined) env.CAPA_LOG = resolve(argv.log); // the program may change its directory
  if (argv.quiet) env.CAPA_QUIET = '1';
  if (argv.strict) env.CAPA_STRICT = '1';
  if (argv.interface !== undefined) {
    if (!/^[^\s/:]{1,15}$/.test(argv.interface)) quit(EXIT_FAILED, `--interface "${argv.interface}" is not an interface name (1-15 characters, no spaces, / or :)`);
    env.CAPA_INTERFACE = argv.interface;
  }
  if (!Number.isFinite(argv['address-idle']) || argv['address-idle'] < 0) quit(EXIT_FAILED, `--address-idle must be a number of seconds >= 0, got ${argv['address-idle']}`);
  if (argv.timeout !== undefined) {
    if (!Number.isInteger(argv.timeout) || argv.timeout < 1 || argv.timeout > 600000) quit(EXIT_FAILED, `--timeout must be a whole number of ms, 1-600000, got ${argv.timeout}`);
    env.CAPA_TIMEOUT_MS = String(argv.timeout);
  }
  return env;
}

/** Best effort: a program that ran without CAP_NET_ADMIN cannot have added addresses either. */
function sweepInterface(ifname: string | undefined): void {
  if (ifname === undefined || ifname === '') return;
  try {
    sweepAddresses(ifname, argv['address-idle'] * 1000);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENODEV' && !argv.quiet) process.stderr.write(`capa-run: could not tidy the CAPA addresses of ${ifname}: ${(err as Error).message}\n`);
  }
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The program's path as execvp would find it. */
function findProgram(name: string): string | undefined {
  if (name.includes('/')) return isExecutableFile(name) ? resolve(name) : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir === '' ? '.' : dir, name);
    if (isExecutableFile(candidate)) return isAbsolute(candidate) ? candidate : resolve(candidate);
  }
  return undefined;
}

function inspectFile(path: string): Executable {
  const fd = openSync(path, 'r');
  try {
    return inspectExecutable((offset, length) => {
      const buf = Buffer.alloc(length);
      return buf.subarray(0, readSync(fd, buf, 0, length, offset));
    });
  } catch (err) {
    if (err instanceof RangeError) return { kind: 'other' };
    throw err;
  } finally {
    closeSync(fd);
  }
}

/** File capabilities (undefined when none): as getcap prints them, only asked of getcap when there are some. */
function fileCapabilities(path: string): string | undefined {
  if (!hasFileCapabilities(path)) return undefined;
  const run = spawnSync('getcap', [path], { encoding: 'utf8' });
  const described = run.error === undefined ? run.stdout.trim().slice(path.length).trim() : '';
  return described !== '' ? described : 'security.capability is set';
}

/** How capa-run reaches the program (following `#!` interpreters): LD_PRELOAD, the supervisor, or refused. */
function reach(path: string, library: Executable, depth = 0): Reach {
  const mode = statSync(path).mode;
  const privileged = privilegeRefusal(path, mode, fileCapabilities(path));
  if (privileged !== undefined) return { how: 'refused', why: privileged };
  const target = inspectFile(path);
  if (target.kind === 'script' && depth < MAX_SCRIPT_DEPTH) {
    const interpreter = findProgram(target.interpreter);
    return interpreter === undefined ? { how: 'preload' } : reach(interpreter, library, depth + 1);
  }
  return reachOf(path, target, library);
}

async function run(): Promise<void> {
  const rest: unknown = argv['--'];
  const command = Array.isArray(rest) ? rest.map(String) : [];
  if (command.length === 0) quit(EXIT_FAILED, 'no program given: capa-run [options] -- <program> [args...]');
  const [name, ...args] = command as [string, ...string[]];
  const capaEnv = await capaEnvironment();
  if (!isExecutableFile(LIBRARY)) {
    quit(EXIT_FAILED, `the CAPA library ${LIBRARY} is missing; build it with "npx node-gyp rebuild" in the package folder`);
  }
  const path = findProgram(name);
  if (path === undefined) quit(EXIT_NOT_FOUND, `${name}: no such program${name.includes('/') ? '' : ' in PATH'}`);
  let how: Reach;
  let preload: string;
  try {
    how = reach(path, inspectFile(LIBRARY));
    if (how.how === 'refused') quit(EXIT_REFUSED, how.why);
    preload = preloadValue(LIBRARY, process.env.LD_PRELOAD);
  } catch (err) {
    if (!isCapaError(err)) throw err; // ERR_CAPA_CONFIG: the addon is not built; ERR_CAPA_INVALID_ARG: the library path
    quit(EXIT_FAILED, err.message);
  }
  if (!isExecutableFile(SUPERVISOR)) {
    quit(EXIT_FAILED, `the CAPA supervisor ${SUPERVISOR} is missing; build it with "npx node-gyp rebuild" in the package folder`);
  }
  const ledger = new Ledger();
  // The supervisor runs the program and pins whatever the library does not (a static program, a
  // child that drops LD_PRELOAD); it hands the library on as CAPA_PRELOAD, loading none itself.
  const env: NodeJS.ProcessEnv = { ...process.env, ...capaEnv, CAPA_LEDGER: ledger.dir };
  delete env.LD_PRELOAD;
  if (how.how === 'preload') env.CAPA_PRELOAD = preload;
  const child = spawn(SUPERVISOR, [name, ...args], { stdio: 'inherit', env });
  const forward = (signal: NodeJS.Signals): void => { child.kill(signal); };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  for (const s of signals) process.on(s, forward);
  child.on('error', (err) => {
    ledger.discard();
    quit(EXIT_REFUSED, `cannot run ${path}: ${err.message}`);
  });
  child.on('exit', (code, signal) => {
    for (const s of signals) process.off(s, forward);
    // The supervisor reports the program's own end as an exit code; a signal is its own death.
    if (signal !== null) {
      process.stderr.write(`capa-run: the CAPA supervisor of ${name} died (${signal}); the program's further connects fail, none goes out unpinned\n`);
    }
    const status = signal !== null ? EXIT_FAILED : code ?? EXIT_FAILED;
    // The last resort against leaks: what a killed program (or its children) still held goes back,
    // and addresses nothing uses any more come off the interface.
    ledger.settle(capaEnv.CAPA_LOG ?? process.env.CAPA_LOG, LEDGER_RELEASE_MS)
      .then(() => sweepInterface(capaEnv.CAPA_INTERFACE ?? process.env.CAPA_INTERFACE))
      .finally(() => process.exit(status));
  });
}

await run();
