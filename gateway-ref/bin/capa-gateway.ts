#!/usr/bin/env node
/**
 * capa-gateway: the reference gateway resource manager with its DNS front end.
 * Exit codes: 0 clean stop (SIGINT/SIGTERM), 1 runtime failure (e.g. address in use),
 * 2 bad flags or configuration (zone file errors name the line).
 */
import { commandLine, usageExit } from '../../common/cli.js';
import { capaRrtype } from '../../resolver/codec/constants.js';
import { isCapaError } from '../../resolver/codec/errors.js';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { formatServer, parseServer, type ServerAddress } from '../../resolver/codec/server-address.js';
import { setMmapThreshold } from '../../native/addon/index.js';
import { DATA_PLANES } from '../lib/dataplane/index.js';
import { type RunningGateway, parseListen, startGateway } from '../lib/gateway.js';
import { DEFAULT_HOLD_DOWN_MS, DEFAULT_LEASE_MS } from '../lib/grm/allocator.js';
import { parsePool } from '../lib/grm/pool.js';

const DEFAULT_LISTEN = '127.0.0.1:5300';
const EXIT_RUNTIME = 1;
const EXIT_USAGE = 2;

const usageError = usageExit('capa-gateway', EXIT_USAGE, 'flags');

/**
 * Where the state journal lives unless --state-dir says: one folder per listening address, so a
 * restart with the same command line finds it; none for port 0 (a new port each run).
 */
function defaultStateDir(listen: ServerAddress): string | undefined {
  if (listen.port === 0) return undefined;
  const base = process.getuid?.() === 0 ? '/var/lib/capa-gateway'
    : join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'capa-gateway');
  return join(base, formatServer(listen).replace(/[[\]]/g, '').replace(/:/g, '_'));
}

/** yargs turns a repeated flag into an array; for single-valued flags that is a usage error. */
function once<T>(name: string, value: T | T[]): T {
  if (Array.isArray(value)) throw new Error(`--${name} was given ${value.length} times; give it once`);
  return value;
}

function single(name: string) {
  return (value: string | string[]): string => once(name, value);
}

function positiveInteger(name: string, min: number) {
  return (raw: number | number[] | undefined): number | undefined => {
    const value = raw === undefined ? undefined : once(name, raw);
    if (value !== undefined && (!Number.isInteger(value) || value < min)) {
      throw new Error(`--${name} must be a whole number >= ${min}, got ${String(value)}`);
    }
    return value;
  };
}

const argv = commandLine('capa-gateway', process.argv.slice(2), usageError, (y) => y
  .usage('$0 --pool <addresses> [options]')
  .epilog('Reference CAPA gateway resource manager. It answers CAPA queries (_<port>._<tcp|udp>.<host> TYPE65280) '
    + 'from the inside realm with a fresh (source address, source port) from the pool, installs the state in the '
    + 'data plane before answering, and serves A/AAAA/CNAME from the zone file. Release is a DNS UPDATE deleting '
    + 'the CAPA RR. Prints one "capa-gateway listening on ..." line when ready; stops cleanly on SIGINT/SIGTERM, keeping its states for the next start; SIGHUP reloads the zone file. '
    + 'Exit codes: 0 clean stop, 1 runtime failure (e.g. address in use), 2 bad flags or configuration.')
  .example('$0 --listen 127.0.0.1:5300 --pool 127.64.0.1-127.64.0.4 --inside 127.0.0.0/8 --zone zone.txt', 'loopback gateway with four pool addresses')
  .option('listen', { type: 'string', default: DEFAULT_LISTEN, describe: 'Address and port of the DNS front end, UDP and TCP: ip:port or [ipv6]:port (port 0 = any free port, printed when ready)' })
  .option('pool', { type: 'string', array: true, demandOption: 'give the outside addresses to allocate from, e.g. --pool 127.64.0.1-127.64.0.4', describe: 'Outside addresses (aOG) to allocate: a-b ranges, CIDR blocks or single addresses; repeat or comma-separate' })
  .option('inside', { type: 'string', array: true, default: ['127.0.0.0/8', '::1/128'], describe: 'Prefixes of the inside realm: only these requesters get CAPA allocations; others get REFUSED (EDE 18)' })
  .option('direct', { type: 'string', array: true, describe: 'Prefixes of destinations reached without the gateway (inside-to-inside): answered with their A/AAAA and no CAPA. Default: the --inside prefixes; none with --data-plane loopback, where 127/8 hosts stand for outside hosts' })
  .option('zone', { type: 'string', describe: 'Zone file in RFC 1035 master-file syntax ($ORIGIN, $TTL, A, AAAA, CNAME) with the destination names' })
  .option('upstream', { type: 'string', describe: 'DNS server (ip[:port], default port 53) asked for names not in the zone; without it they are NXDOMAIN' })
  .option('port-strategy', { choices: ['random', 'sequential'] as const, default: 'random' as const, describe: 'How source ports are chosen: random (RFC 6056, unpredictable) or sequential (first free port)' })
  .option('quota', { type: 'number', describe: 'Most live allocations per terminal (default: no limit); over it: SERVFAIL with EDE 49153' })
  .option('lease', { type: 'number', default: DEFAULT_LEASE_MS / 1000, describe: 'Seconds a terminal has to start its flow (the CAPA TTL); unused allocations are reclaimed after it' })
  .option('hold-down', { type: 'number', default: DEFAULT_HOLD_DOWN_MS / 1000, describe: 'Seconds before a released (address, port) is reissued for the same destination (2 MSL, so TIME_WAIT never collides)' })
  .option('log', { type: 'string', describe: 'Append the allocation journal (one JSON line per allocate/confirm/release/expire) to this file (/dev/stdout to print it)' })
  .option('state-dir', { type: 'string', describe: 'Folder of the state journal: every allocation is written there before its answer leaves, and a restart (after a crash, kill -9 or an upgrade) puts every state back and keeps every flow. Default: /var/lib/capa-gateway/<listen address> as root, else $XDG_STATE_HOME/capa-gateway/<listen address> (~/.local/state); none with --listen port 0. "none": keep no journal' })
  .option('state-fsync', { type: 'boolean', default: false, describe: 'Flush the state journal to the disk (fdatasync) before answers leave: a power cut then loses no answered allocation (a kill -9 never does); costs a disk flush per batch of answers' })
  .option('clear-on-stop', { type: 'boolean', default: false, describe: 'On SIGINT/SIGTERM remove every state from the data plane and the state folder (a decommission); by default a stop leaves them, so a restart with the same command line carries every flow on' })
  .option('metrics', { type: 'string', describe: 'Serve Prometheus metrics at http://host:port/metrics' })
  .option('data-plane', { choices: DATA_PLANES, default: 'loopback' as const, describe: 'Data-plane driver: loopback watches the kernel socket table (no privileges; pool and hosts in 127/8); nftables relays between terminal links and the outside (root, Linux; run it in the gateway namespace)' })
  .option('nft-link', { type: 'string', array: true, describe: 'With --data-plane nftables: a terminal link, <terminal inside address>=<gateway-side interface> (e.g. 100.64.0.6=t1); repeat or comma-separate, one per terminal. Links get marks/routing tables 1000, 1001, ... in order' })
  .coerce('listen', single('listen'))
  .coerce('zone', single('zone'))
  .coerce('upstream', single('upstream'))
  .coerce('log', single('log'))
  .coerce('metrics', single('metrics'))
  .coerce('state-dir', single('state-dir'))
  .coerce('quota', positiveInteger('quota', 1))
  .coerce('lease', positiveInteger('lease', 1))
  .coerce('hold-down', positiveInteger('hold-down', 0)))
  .parseSync();

/**
 * The loopback plane copies whole socket tables (megabytes under churn) on a worker thread, and
 * the main thread frees them; glibc then raises its mmap threshold and keeps such blocks in its
 * heaps (RSS +40-100 % over a 10-minute soak, live objects flat). A fixed threshold hands each
 * back to the kernel when freed. Without the addon (not built) the gateway runs as before.
 */
const MMAP_THRESHOLD = 128 * 1024;

async function main(): Promise<void> {
  let gateway: RunningGateway;
  try {
    setMmapThreshold(MMAP_THRESHOLD);
  } catch {
    // Only the nftables plane needs the addon, and it reports its absence itself.
  }
  try {
    const listen = parseListen(argv.listen ?? DEFAULT_LISTEN); // typed optional only because of the coerce
    const stateDir = argv['state-dir'] === 'none' ? undefined : argv['state-dir'] ?? defaultStateDir(listen);
    gateway = await startGateway({
      listen,
      stateDir,
      stateFsync: argv['state-fsync'],
      clearOnStop: argv['clear-on-stop'],
      pool: parsePool(argv.pool),
      inside: argv.inside,
      direct: argv.direct,
      zoneFile: argv.zone,
      upstream: argv.upstream === undefined ? undefined : parseServer(argv.upstream),
      portStrategy: argv['port-strategy'],
      quota: argv.quota,
      leaseSeconds: argv.lease,
      holdDownSeconds: argv['hold-down'],
      logFile: argv.log,
      metrics: argv.metrics === undefined ? undefined : parseListen(argv.metrics),
      dataPlane: argv['data-plane'],
      nftLinks: argv['nft-link'],
      rrtype: capaRrtype(),
    });
  } catch (err) {
    if (isCapaError(err, 'ERR_CAPA_CONFIG') || isCapaError(err, 'ERR_CAPA_INVALID_ARG')) {
      usageError((err as Error).message);
    }
    process.stderr.write(`capa-gateway: ${(err as Error).message}\n`);
    process.exit(EXIT_RUNTIME);
  }
  process.stdout.write(`capa-gateway listening on ${formatServer(gateway.listen)} (udp+tcp), pool ${gateway.service.allocator.stats().poolAddresses} addresses, data plane ${gateway.service.dataPlane.name}`
    + (gateway.metricsListen ? `, metrics http://${formatServer(gateway.metricsListen)}/metrics` : '') + '\n');
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    gateway.close().then(
      () => { process.stderr.write(`capa-gateway: stopped (${signal})\n`); process.exit(0); },
      (err: unknown) => { process.stderr.write(`capa-gateway: error while stopping: ${(err as Error).message}\n`); process.exit(EXIT_RUNTIME); },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // SIGHUP: the zone file again, every state kept; a zone that does not load leaves the old one serving.
  process.on('SIGHUP', () => {
    gateway.reloadZone().then(
      () => { process.stderr.write(`capa-gateway: zone reloaded${argv.zone === undefined ? ' (none configured)' : ` from ${argv.zone}`}\n`); },
      (err: unknown) => { process.stderr.write(`capa-gateway: zone not reloaded, the old one still serves: ${(err as Error).message}\n`); },
    );
  });
}

void main();
