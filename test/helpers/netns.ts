/**
 * Plumbing for tests that run inside network namespaces they create themselves, never on the
 * host's interfaces.
 */
import { execFileSync } from 'node:child_process';
import { unavailable } from './ci.js';

/** Runs the rest of a command line as nobody, without groups or capabilities. */
const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** ip(8); throws with its stderr when it fails. */
export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
}

/** Why this process cannot make network namespaces, or undefined when it can. */
function namespacesProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'not running as root';
  const probe = `capa-test-${process.pid}-probe`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
    return undefined;
  } catch (err: unknown) {
    return `ip netns does not work: ${(err as Error).message}`;
  }
}

/**
 * For a before() hook: skips the suite when network namespaces cannot be made here, a failure
 * under CI=true. `suite` names the tests in the message, e.g. 'netlink tests'.
 */
export function requireNamespaces(ctx: Mocha.Context, suite: string): void {
  const problem = namespacesProblem();
  if (problem !== undefined) unavailable(ctx, `${suite} need root and ip netns in CI: ${problem}`);
}

/** A namespace `<prefix>-<pid>` of this test run: create() in a before hook, remove() in the after hook. */
export class TestNamespace {
  readonly name: string;
  private created = false;

  constructor(prefix: string) {
    this.name = `${prefix}-${process.pid}`;
  }

  /** Adds the namespace with its loopback up. */
  create(): void {
    ip('netns', 'add', this.name);
    this.created = true;
    this.ip('link', 'set', 'lo', 'up');
  }

  /** ip(8) acting inside the namespace. */
  ip(...args: string[]): string {
    return ip('-n', this.name, ...args);
  }

  /** Runs a Node script inside the namespace (as nobody when asked) and parses the JSON it prints. */
  runJson<T>(script: string, args: string[], asNobody = false): T {
    const command = [...(asNobody ? AS_NOBODY : []), process.execPath, script, ...args];
    return JSON.parse(execFileSync('ip', ['netns', 'exec', this.name, ...command], { encoding: 'utf8', timeout: 20_000 })) as T;
  }

  /** Deletes the namespace, with everything in it; nothing to do when create() did not get that far. */
  remove(): void {
    if (!this.created) return;
    ip('netns', 'del', this.name);
    this.created = false;
  }
}
