/**
 * The CAPA settings a terminal-side socket needs, from explicit options and the environment:
 * which GRMs to ask, from which inside address, and which interface gets the allocated address.
 */
import { invalidArg } from '../../resolver/codec/errors.js';
import { type CapaResolver, defaultResolver } from '../../resolver/lib/resolve.js';
import type { ServerSpec } from '../../resolver/lib/servers.js';
import type { TimingOptions } from '../../resolver/lib/transport.js';

export interface CapaOptions {
  /** GRMs to ask, in order ("127.0.0.1:5300", "[::1]:53", ...). Default: CAPA_SERVER, else /etc/resolv.conf. */
  servers?: readonly ServerSpec[];
  /**
   * Interface that gets the allocated source address (aOG/32 or /128) when it is not local yet.
   * Default: CAPA_INTERFACE; unset: the address is used as it is (IP_FREEBIND).
   */
  interface?: string;
  /**
   * Inside address the DNS queries and releases leave from. The GRM knows a terminal by it, so
   * it must be the same for the query and the release. Default: the kernel's choice.
   */
  terminalAddress?: string;
  /** Per-try DNS timeout in ms (default 1000). */
  dnsTimeout?: number;
  /** Overall deadline in ms of the CAPA resolution or of the release (default 5000). */
  dnsDeadline?: number;
  /** CAPA RR type; default CAPA_RRTYPE, else 65280. */
  rrtype?: number;
  /**
   * Called when a release fails (the GRM then reclaims the allocation itself, at lease end or
   * when its data plane sees the flow gone). Default: a process warning.
   */
  onReleaseError?: (err: Error) => void;
  /** The resolver whose spare query sockets and caches the calls share; default: the process's (defaultResolver()). */
  resolver?: CapaResolver;
}

/** CapaOptions with the environment applied, as the resolver calls take them. */
export interface Settings {
  servers: readonly ServerSpec[] | undefined;
  interface: string | undefined;
  rrtype: number | undefined;
  /** Timing and source address of every resolver call (resolve and release). */
  call: TimingOptions;
  onReleaseError: (err: Error) => void;
  resolver: CapaResolver;
}

function warn(err: Error): void {
  process.emitWarning(`CAPA release failed: ${err.message}`, { code: 'CAPA_RELEASE' });
}

export function settingsOf(options: CapaOptions = {}, env: NodeJS.ProcessEnv = process.env): Settings {
  const call: TimingOptions = {};
  if (options.dnsTimeout !== undefined) call.timeout = options.dnsTimeout;
  if (options.dnsDeadline !== undefined) call.deadline = options.dnsDeadline;
  if (options.terminalAddress !== undefined) call.localAddress = options.terminalAddress;
  const ifname = options.interface ?? env.CAPA_INTERFACE;
  return {
    servers: options.servers,
    interface: ifname === '' ? undefined : ifname,
    rrtype: options.rrtype,
    call,
    onReleaseError: options.onReleaseError ?? warn,
    resolver: options.resolver ?? defaultResolver(),
  };
}

/** A destination port as net.connect takes it (number or numeric string), checked: 1-65535. */
export function destinationPort(port: unknown): number {
  const n = typeof port === 'string' && /^\d+$/.test(port) ? Number(port) : port;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw invalidArg(`port must be a destination port 1-65535, got ${JSON.stringify(port)}`);
  }
  return n;
}
