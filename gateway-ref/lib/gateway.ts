/**
 * Assembles a running gateway from its configuration: zone, names, GRM service, data plane,
 * DNS listener, journal and metrics. Used by `capa-gateway`, the tests and the benchmarks.
 */
import { open, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Writable } from 'node:stream';
import { CapaError } from '../../resolver/codec/errors.js';
import { type ServerAddress, formatServer, parseServer } from '../../resolver/codec/server-address.js';
import { type DataPlaneName, createDataPlane } from './dataplane/index.js';
import { Realm } from './dns/realm.js';
import { respond } from './dns/responder.js';
import { DnsServer } from './dns/server.js';
import { DEFAULT_HOLD_DOWN_MS, DEFAULT_LEASE_MS } from './grm/allocator.js';
import { GrmService } from './grm/service.js';
import { StateJournal } from './grm/state-journal.js';
import type { DataPlane, PortStrategy } from './grm/types.js';
import { GatewayMetrics, type StateCounts, serveMetrics } from './metrics.js';
import { Names } from './zone/names.js';
import { Upstream } from './zone/upstream.js';
import { parseZoneFile } from './zone/zone-file.js';
import { Zone } from './zone/zone.js';

export interface GatewayConfig {
  /** Port 0: a free port the kernel picks (see RunningGateway.listen). */
  listen: ServerAddress;
  /** Pool addresses, canonical (parsePool). */
  pool: string[];
  /** Prefixes of the inside realm. */
  inside: string[];
  /**
   * Destinations reached without the gateway (answered without CAPA). Default: the inside
   * prefixes, except with the loopback data plane, where 127/8 hosts stand for outside hosts.
   */
  direct?: string[];
  zoneFile?: string;
  upstream?: ServerAddress;
  portStrategy?: PortStrategy;
  quota?: number;
  leaseSeconds?: number;
  holdDownSeconds?: number;
  /** Journal file, appended to. */
  logFile?: string;
  /**
   * Folder of the state journal (grm/state-journal.ts): every state is written there before its
   * answer leaves and put back at the next start. Without it, states live as long as the process.
   */
  stateDir?: string;
  /** fdatasync the state journal before answers leave: a power cut loses nothing answered. */
  stateFsync?: boolean;
  /** On close, remove every state from the data plane and the state folder; default: keep them for the next start. */
  clearOnStop?: boolean;
  metrics?: ServerAddress;
  dataPlane?: DataPlaneName | DataPlane;
  /** --nft-link specifications for the nftables data plane. */
  nftLinks?: string[];
  rrtype?: number;
  now?: () => number;
  /** Unexpected failures, one line each; default stderr. */
  log?: (message: string) => void;
}

export interface RunningGateway {
  /** The address actually listened on (the real port when 0 was asked). */
  listen: ServerAddress;
  /**
   * Reads the zone file again and serves it; a file that does not load keeps the old zone and
   * rejects with the error (file and line). States are not touched.
   */
  reloadZone(): Promise<void>;
  metricsListen: ServerAddress | undefined;
  service: GrmService;
  metrics: GatewayMetrics;
  close(): Promise<void>;
}

/** `host:port` or `[v6]:port`; port 0 asks for any free port. */
export function parseListen(text: string): ServerAddress {
  const anyPort = /^(\[[^\]]+\]|[^:]+):0$/.exec(text.trim());
  return anyPort ? parseServer(anyPort[1]!, 0) : parseServer(text);
}

/** Reads and checks a zone file; errors are ERR_CAPA_CONFIG naming file and line. */
export async function loadZone(file: string): Promise<Zone> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CapaError('ERR_CAPA_CONFIG', `cannot read zone file ${file}: ${(err as Error).message}`);
  }
  return new Zone(parseZoneFile(text, file), file);
}

/** How long journal lines may wait to be written together. */
const JOURNAL_FLUSH_MS = 100;

/**
 * The journal file. Lines are gathered and written together at most JOURNAL_FLUSH_MS later: at
 * thousands of allocations per second, one write per line would cost more than the allocations.
 */
class JournalFile {
  private pending: string[] = [];

  private constructor(private readonly stream: Writable, log: (message: string) => void) {
    stream.on('error', (err) => log(`capa-gateway: journal write failed: ${err.message}`));
  }

  static async open(file: string, log: (message: string) => void): Promise<JournalFile> {
    try {
      return new JournalFile((await open(file, 'a')).createWriteStream(), log);
    } catch (err) {
      throw new CapaError('ERR_CAPA_CONFIG', `cannot open log file ${file}: ${(err as Error).message}`);
    }
  }

  readonly write = (line: string): void => {
    if (this.pending.length === 0) setTimeout(this.flush, JOURNAL_FLUSH_MS).unref();
    this.pending.push(line);
  };

  private readonly flush = (): void => {
    if (this.pending.length === 0 || this.stream.writableEnded) return;
    this.stream.write(`${this.pending.join('\n')}\n`);
    this.pending = [];
  };

  async close(): Promise<void> {
    this.flush();
    await new Promise((resolve) => this.stream.end(resolve));
  }
}

function listenError(err: unknown, what: string, flag: string): Error {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const hint = code === 'EADDRINUSE' ? 'another process has it; choose another address or port'
    : code === 'EADDRNOTAVAIL' ? 'no local interface has this address'
    : code === 'EACCES' ? 'ports below 1024 need privileges; choose a port >= 1024' : 'check the address';
  return new Error(`cannot listen on ${what}: ${(err as Error).message}; ${hint} with ${flag}`, { cause: err });
}

export async function startGateway(config: GatewayConfig): Promise<RunningGateway> {
  const zone = config.zoneFile === undefined ? new Zone([]) : await loadZone(config.zoneFile);
  const realm = new Realm(config.inside);
  const upstream = config.upstream && new Upstream(config.upstream);
  const names = new Names(zone, upstream);
  const leaseMs = config.leaseSeconds === undefined ? DEFAULT_LEASE_MS : config.leaseSeconds * 1000;
  const dataPlane = typeof config.dataPlane === 'object' ? config.dataPlane : createDataPlane(config.dataPlane ?? 'loopback', { pool: config.pool, nftLinks: config.nftLinks, leaseMs });
  const direct = new Realm(config.direct ?? (dataPlane.name === 'loopback' ? [] : config.inside));
  const log = config.log ?? ((message: string) => process.stderr.write(`${message}\n`));
  const journal = config.logFile === undefined ? undefined : await JournalFile.open(config.logFile, log);
  const state = config.stateDir === undefined ? undefined : await StateJournal.open({ dir: config.stateDir, fsync: config.stateFsync });
  for (const problem of state?.problems ?? []) log(`capa-gateway: state journal: ${problem}`);
  const keepStates = state !== undefined && !(config.clearOnStop ?? false);
  // Read at scrape time only, when `service` exists.
  const metrics: GatewayMetrics = new GatewayMetrics((): StateCounts => service.allocator.stats());
  const service: GrmService = new GrmService({
    allocator: {
      pool: config.pool,
      portStrategy: config.portStrategy,
      quota: config.quota,
      leaseMs,
      holdDownMs: config.holdDownSeconds === undefined ? DEFAULT_HOLD_DOWN_MS : config.holdDownSeconds * 1000,
      now: config.now,
    },
    dataPlane,
    names,
    realm,
    direct,
    rrtype: config.rrtype,
    journal: journal?.write,
    state: state && { journal: state.journal, restored: state.states },
    metrics,
    log,
  });
  try {
    await service.start();
  } catch (err) {
    await state?.journal.close();
    throw err;
  }
  // Run in reverse: listeners first, then the service (its lease timer writes the journal), then the journal.
  const cleanups: (() => Promise<unknown>)[] = [
    async () => journal?.close(),
    async () => upstream?.close(),
    async () => state?.journal.close(!keepStates),
    () => service.stop(keepStates),
  ];
  const close = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  };
  try {
    const server = await DnsServer.listen({
      host: config.listen.address,
      port: config.listen.port,
      handle: async (request, requester) => {
        const response = await respond(request, requester, service);
        if (response) metrics.onResponse(response);
        return response;
      },
      onError: (err) => service.reportError(err),
    }).catch((err: unknown) => { throw listenError(err, `${formatServer(config.listen)} (udp+tcp)`, '--listen'); });
    cleanups.push(() => server.close());
    let metricsListen: ServerAddress | undefined;
    if (config.metrics) {
      const where = config.metrics;
      const httpServer = await serveMetrics(metrics, where.address, where.port)
        .catch((err: unknown) => { throw listenError(err, `${formatServer(where)} (metrics)`, '--metrics'); });
      cleanups.push(() => new Promise((resolve) => { httpServer.closeAllConnections(); httpServer.close(resolve); }));
      metricsListen = { address: where.address, port: (httpServer.address() as AddressInfo).port };
    }
    return {
      listen: { address: config.listen.address, port: server.port },
      async reloadZone() {
        if (config.zoneFile !== undefined) names.replaceZone(await loadZone(config.zoneFile));
      },
      metricsListen,
      service,
      metrics,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
