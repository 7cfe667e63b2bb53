/**
 * libnftables (the library behind `nft`) called in-process through koffi: one context for the
 * process's life, so an update costs a netlink round trip instead of a process start (~10 ms
 * here), and errors come back per script instead of interleaved on a terminal.
 */
import koffi from 'koffi';
import { CapaError } from '../../../resolver/codec/errors.js';

const LIBRARY = 'libnftables.so.1';

/** The kernel's answer in nft's message (strerror text), classified once, here, where nft said it. */
const ERRNO_TEXTS: readonly [RegExp, string][] = [
  [/File exists/, 'EEXIST'],
  [/No such file or directory/, 'ENOENT'],
  [/Operation not permitted/, 'EPERM'],
  [/Device or resource busy/, 'EBUSY'],
];

export function errnoOf(text: string): string | undefined {
  return ERRNO_TEXTS.find(([pattern]) => pattern.test(text))?.[1];
}

export class Libnftables {
  private readonly runScript: (ctx: unknown, script: string) => number;
  private readonly errorText: (ctx: unknown) => string;
  private readonly ctx: unknown;

  constructor() {
    let lib: ReturnType<typeof koffi.load>;
    try {
      lib = koffi.load(LIBRARY);
    } catch (err) {
      throw new CapaError('ERR_CAPA_CONFIG', `cannot load ${LIBRARY} (install the nftables package): ${(err as Error).message}`);
    }
    const newContext = lib.func('void *nft_ctx_new(uint32_t flags)') as (flags: number) => unknown;
    const bufferOutput = lib.func('int nft_ctx_buffer_output(void *ctx)') as (ctx: unknown) => number;
    const bufferError = lib.func('int nft_ctx_buffer_error(void *ctx)') as (ctx: unknown) => number;
    this.runScript = lib.func('int nft_run_cmd_from_buffer(void *ctx, const char *buf)');
    this.errorText = lib.func('const char *nft_ctx_get_error_buffer(void *ctx)');
    const ctx = newContext(0);
    // Buffered, so nothing reaches this process's stdout (the worker's message channel).
    if (ctx === null || bufferOutput(ctx) !== 0 || bufferError(ctx) !== 0) {
      throw new CapaError('ERR_CAPA_SERVER_FAILURE', 'libnftables: cannot create a context');
    }
    this.ctx = ctx;
  }

  /** Runs a script as one transaction; throws with nft's own message (naming the line) when it fails. */
  run(script: string): void {
    if (this.runScript(this.ctx, script) === 0) return;
    const text = this.errorText(this.ctx).trim();
    const errno = errnoOf(text);
    throw new CapaError(errno === 'EPERM' ? 'ERR_CAPA_PERMISSION' : 'ERR_CAPA_SERVER_FAILURE',
      text === '' ? 'nft: the script failed without a message' : `nft: ${text}`, errno === undefined ? {} : { errno });
  }
}
