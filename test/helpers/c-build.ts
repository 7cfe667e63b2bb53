/** Compiles C sources for tests into a temporary shared library or executable. */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unavailable } from './ci.js';

/** The checkout root: the nearest folder above this file that holds package.json. */
export const repoRoot: string = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above the test helpers');
    dir = up;
  }
  return dir;
})();

/** The flags the native code must build cleanly with. */
export const STRICT_C_FLAGS = ['-std=c99', '-O2', '-Wall', '-Wextra', '-Werror'];

/** Absolute path of an executable found on PATH, or undefined. */
export function findTool(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this PATH entry
    }
  }
  return undefined;
}

/**
 * The tool's path. Outside CI a missing tool skips the calling test or hook; with CI=true it fails,
 * so the CI machine cannot silently lose coverage.
 */
export function requireTool(ctx: Mocha.Context, name: string, purpose: string): string {
  const path = findTool(name);
  if (path !== undefined) return path;
  return unavailable(ctx, `${name} is required in CI for ${purpose} but is not on PATH`);
}

export interface CBuild {
  /** The built file. */
  path: string;
  /** Its temporary folder, also free for other artefacts of the test. */
  dir: string;
  /** Deletes the folder. */
  remove(): void;
}

export interface CBuildOptions {
  /** Source files, relative to the checkout root. */
  sources: string[];
  kind: 'shared' | 'executable';
  /** Compiler executable (default cc). */
  compiler?: string;
  /** Flags before the sources (default STRICT_C_FLAGS). */
  flags?: string[];
  /** File name of the output inside the temporary folder. */
  name?: string;
}

/** Builds into a fresh temporary folder; throws with the compiler's output when it fails. */
export function buildC(options: CBuildOptions): CBuild {
  const dir = mkdtempSync(join(tmpdir(), 'capa-c-'));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  const path = join(dir, options.name ?? (options.kind === 'shared' ? 'libcapa-test.so' : 'capa-test'));
  const compiler = options.compiler ?? 'cc';
  const args = [
    ...(options.flags ?? STRICT_C_FLAGS),
    ...(options.kind === 'shared' ? ['-shared', '-fPIC'] : []),
    '-o', path,
    ...options.sources.map((s) => resolve(repoRoot, s)),
  ];
  const run = spawnSync(compiler, args, { encoding: 'utf8' });
  if (run.error !== undefined || run.status !== 0) {
    remove();
    const output = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim();
    throw new Error(`${compiler} ${args.join(' ')} failed (${run.error?.message ?? `exit ${run.status}`}):\n${output}`);
  }
  return { path, dir, remove };
}

/** struct capa_record as koffi marshals it. */
export interface CRecord {
  flags: number;
  proto: number;
  port: number;
  family: number;
  addr: number[];
}
