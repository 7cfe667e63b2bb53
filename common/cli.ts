/** The command-line conventions every CAPA program shares. */
import { createRequire } from 'node:module';
import type { Argv } from 'yargs';
import type Yargs from 'yargs/yargs';

// yargs' CommonJS build: its ES module build wraps help text in the middle of words, and the
// CommonJS one loads in about half the time.
const yargs = createRequire(import.meta.url)('yargs/yargs') as typeof Yargs;

/** What a program does with a bad command line; never returns. */
export type UsageErrorHandler = (message: string) => never;

/**
 * Prints `<program>: <message>` to stderr, then `Run <program> --help for the <helpTopic>.` when
 * a topic is given, and exits with `exitCode`.
 */
export function usageExit(program: string, exitCode: number, helpTopic?: string): UsageErrorHandler {
  return (message) => {
    const hint = helpTopic === undefined ? '' : `Run ${program} --help for the ${helpTopic}.\n`;
    process.stderr.write(`${program}: ${message}\n${hint}`);
    process.exit(exitCode);
  };
}

/**
 * yargs for `program` over `args` with the flags, commands and texts `define` adds, set up as
 * every CAPA command line is: unknown flags refused, no --version, -h/--help (listed last),
 * help wrapped at word boundaries to the terminal (110 columns at most); a bad command line goes
 * to `onUsageError`.
 */
export function commandLine<T>(program: string, args: readonly string[], onUsageError: UsageErrorHandler, define: (y: Argv) => Argv<T>): Argv<T> {
  return define(yargs(args).scriptName(program))
    .strict()
    .version(false)
    .help()
    .alias('help', 'h')
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((message, err) => onUsageError(message ?? err?.message ?? 'bad command line'));
}
