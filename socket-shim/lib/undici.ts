/**
 * undici integration: a connector whose TCP connections are pinned CAPA connections, and a
 * Dispatcher built on it, so that `fetch(url, { dispatcher })` (or setGlobalDispatcher) goes
 * through CAPA. TLS is undici's own connector run over the pinned socket (its `httpSocket`
 * path): SNI, certificate checks against the URL's host name, session cache, connect timeout.
 */
import { Agent, buildConnector } from 'undici';
import { type CapaSocket, connect } from './connect.js';
import type { CapaOptions } from './options.js';

export type CapaConnectorOptions = buildConnector.BuildOptions & { capa?: CapaOptions };

/** undici's default connect timeout, applied to the CAPA resolution plus the TCP handshake. */
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** undici's default TCP keep-alive delay. */
const KEEP_ALIVE_DELAY_MS = 60_000;

/** `[::1]` in a URL is `::1` to a socket. */
function unbracket(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

export function capaConnector(options: CapaConnectorOptions = {}): buildConnector.connector {
  const { capa, ...undiciOptions } = options;
  const tls = buildConnector(undiciOptions);
  const timeout = options.timeout ?? DEFAULT_CONNECT_TIMEOUT_MS;
  return (opts, callback) => {
    const https = opts.protocol === 'https:';
    const tcp = {
      host: unbracket(opts.hostname),
      port: Number(opts.port) || (https ? 443 : 80),
      noDelay: true,
      keepAlive: options.keepAlive ?? true,
      keepAliveInitialDelay: options.keepAliveInitialDelay ?? KEEP_ALIVE_DELAY_MS,
      capa,
      ...(timeout > 0 ? { timeout } : {}),
    };
    connect(tcp).then((socket: CapaSocket) => {
      socket.setTimeout(0); // the timeout was for connecting; undici watches idle sockets itself
      if (https) tls({ ...opts, httpSocket: socket }, callback);
      else callback(null, socket);
    }, (err: Error) => callback(err, null));
  };
}

export interface CapaDispatcherOptions extends Omit<Agent.Options, 'connect'> {
  capa?: CapaOptions;
  /** TLS and socket options of the connector (ca, rejectUnauthorized, keepAlive, timeout, ...). */
  connect?: buildConnector.BuildOptions;
}

/** An undici Agent whose connections are pinned CAPA connections: `fetch(url, { dispatcher })`. */
export class CapaDispatcher extends Agent {
  constructor(options: CapaDispatcherOptions = {}) {
    const { capa, connect: connectOptions, ...agent } = options;
    const timeout = connectOptions?.timeout ?? agent.connectTimeout;
    super({ ...agent, connect: capaConnector({ ...connectOptions, ...(timeout == null ? {} : { timeout }), capa }) });
  }
}
