/**
 * http/https agents whose every pooled socket is a pinned CAPA connection (its own allocation,
 * released when the pool closes it). TLS runs over the pinned socket with SNI and the
 * certificate check against the host name of the request, never against the allocated address.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { invalidArg } from '../../resolver/codec/errors.js';
import { type CapaConnectOptions, type CapaSocket, openSocket } from './connect.js';
import type { CapaOptions } from './options.js';

export interface CapaAgentOptions extends http.AgentOptions {
  capa?: CapaOptions;
}

export interface CapaHttpsAgentOptions extends https.AgentOptions {
  capa?: CapaOptions;
}

type AgentCallback = (err: Error | null, stream: Duplex) => void;

/** Node's agents take the error alone on failure; the typings always ask for a stream. */
function fail(callback: AgentCallback, err: Error): void {
  (callback as (err: Error, stream?: Duplex) => void)(err);
}

/** The TCP part of a request's connection options, as the agent hands them over. */
function tcpOptions(options: http.ClientRequestArgs, defaultPort: number, capa: CapaOptions | undefined): CapaConnectOptions {
  const tcp: CapaConnectOptions = {
    host: options.hostname ?? options.host ?? 'localhost',
    port: Number(options.port ?? defaultPort),
  };
  if (options.timeout !== undefined) tcp.timeout = options.timeout;
  if (options.family !== undefined) tcp.family = options.family;
  if (options.signal !== undefined) tcp.signal = options.signal;
  if (options.localAddress !== undefined) tcp.localAddress = options.localAddress;
  if (capa !== undefined) tcp.capa = capa;
  return tcp;
}

/** Opens the pinned socket, passes it through `wrap` (TLS), and reports to the agent's callback. */
function pinnedConnection(options: http.ClientRequestArgs, defaultPort: number, capa: CapaOptions | undefined,
  callback: AgentCallback | undefined, wrap: (socket: CapaSocket) => Duplex): undefined {
  if (typeof callback !== 'function') throw invalidArg('a CAPA agent opens connections asynchronously: createConnection needs a callback');
  openSocket(tcpOptions(options, defaultPort, capa)).then((socket) => {
    let stream: Duplex;
    try {
      stream = wrap(socket);
    } catch (err) {
      socket.destroy();
      fail(callback, err as Error);
      return;
    }
    callback(null, stream);
  }, (err: Error) => fail(callback, err));
  return undefined;
}

/** `new http.Agent(options)` whose connections go through CAPA: `http.get(url, { agent })`. */
export class CapaAgent extends http.Agent {
  private readonly capa: CapaOptions | undefined;

  constructor(options: CapaAgentOptions = {}) {
    const { capa, ...agent } = options;
    super(agent);
    this.capa = capa;
  }

  override createConnection(options: http.ClientRequestArgs, callback?: AgentCallback): undefined {
    return pinnedConnection(options, 80, this.capa, callback, (socket) => socket);
  }
}

/** `new https.Agent(options)` over pinned CAPA connections; TLS options (ca, ...) as for https.Agent. */
export class CapaHttpsAgent extends https.Agent {
  private readonly capa: CapaOptions | undefined;

  constructor(options: CapaHttpsAgentOptions = {}) {
    const { capa, ...agent } = options;
    super(agent);
    this.capa = capa;
  }

  override createConnection(options: https.RequestOptions, callback?: AgentCallback): undefined {
    return pinnedConnection(options, 443, this.capa, callback, (socket) => {
      // https.Agent's own createConnection: TLS session reuse and checks against options.host / servername.
      const tls = super.createConnection({ ...options, socket } as https.RequestOptions) as TLSSocket;
      return Object.assign(tls, { capa: socket.capa });
    });
  }
}
