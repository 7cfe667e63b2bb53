/**
 * Which DNS servers the stub asks: an explicit list, else CAPA_SERVER, else /etc/resolv.conf.
 * Parsing is pure; only defaultServers() reads the file.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { CapaError, invalidArg } from './errors.js';

export const DEFAULT_DNS_PORT = 53;
export const RESOLV_CONF = '/etc/resolv.conf';

export interface ServerAddress {
  /** IP literal (IPv6 may carry a %zone, as resolv.conf allows for link-local servers). */
  address: string;
  port: number;
}

function parsePort(text: string, whole: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw invalidArg(`server "${whole}": port must be 1-65535, got "${text}"`);
  }
  return Number(text);
}

function checkAddress(address: string, whole: string): string {
  if (isIP(address) === 0) {
    throw invalidArg(`server "${whole}" is not an IP address (write 192.0.2.1, 192.0.2.1:5300, 2001:db8::1 or [2001:db8::1]:5300)`);
  }
  return address;
}

/** Accepts `host`, `host:port`, `[v6]:port`, `[v6]` and a bare IPv6 `v6` (port 53). */
export function parseServer(text: string, defaultPort = DEFAULT_DNS_PORT): ServerAddress {
  const s = text.trim();
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(s);
  if (bracketed) {
    const port = bracketed[2] === undefined ? defaultPort : parsePort(bracketed[2], s);
    return { address: checkAddress(bracketed[1]!, s), port };
  }
  const colons = s.split(':').length - 1;
  if (colons === 1) {
    const [host, port] = s.split(':') as [string, string];
    return { address: checkAddress(host, s), port: parsePort(port, s) };
  }
  return { address: checkAddress(s, s), port: defaultPort };
}

/** Comma-separated list, as in CAPA_SERVER. Empty items are skipped. */
export function parseServerList(text: string): ServerAddress[] {
  return text.split(',').filter((item) => item.trim() !== '').map((item) => parseServer(item));
}

/** `nameserver` lines of a resolv.conf, in order; other lines are not ours to judge. */
export function parseResolvConf(text: string): ServerAddress[] {
  const servers: ServerAddress[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && isIP(m[1]!) !== 0) servers.push({ address: m[1]!, port: DEFAULT_DNS_PORT });
  }
  return servers;
}

/** `host:port`, or `[v6]:port`; the form parseServer reads back. */
export function formatServer(server: ServerAddress): string {
  return isIP(server.address) === 6 ? `[${server.address}]:${server.port}` : `${server.address}:${server.port}`;
}

export type ServerSpec = string | ServerAddress;

export interface ServerSources {
  env?: NodeJS.ProcessEnv;
  resolvConf?: string;
}

/** Parsed server lists by their text: a stub asks the same few lists again and again. */
const parsedLists = new Map<string, readonly ServerAddress[]>();
const MAX_PARSED_LISTS = 64;

function parsedOnce(key: string, parse: () => ServerAddress[]): readonly ServerAddress[] {
  let list = parsedLists.get(key);
  if (list === undefined) {
    list = Object.freeze(parse().map((s) => Object.freeze(s)));
    if (parsedLists.size >= MAX_PARSED_LISTS) parsedLists.clear();
    parsedLists.set(key, list);
  }
  return list;
}

const specText = (s: ServerSpec): string => (typeof s === 'string' ? s : formatServer(s));

/**
 * Explicit servers, else CAPA_SERVER, parsed (once per distinct text; the lists are frozen);
 * undefined when neither is set and resolv.conf decides.
 */
export function configuredServers(explicit: readonly ServerSpec[] | undefined, env: NodeJS.ProcessEnv = process.env): readonly ServerAddress[] | undefined {
  if (explicit !== undefined && explicit.length > 0) {
    // Keyed by count and items, so no list can pass for another (an item may hold a comma).
    const key = explicit.length === 1 ? `1 ${specText(explicit[0]!)}` : `${explicit.length} ${JSON.stringify(explicit.map(specText))}`;
    return parsedOnce(key, () => explicit.map((s) => parseServer(specText(s))));
  }
  const fromEnv = env.CAPA_SERVER;
  if (fromEnv === undefined || fromEnv.trim() === '') return undefined;
  try {
    return parsedOnce(`env ${fromEnv}`, () => parseServerList(fromEnv));
  } catch (err) {
    throw new CapaError('ERR_CAPA_CONFIG', `CAPA_SERVER: ${(err as Error).message}`, { cause: err });
  }
}

/** Explicit servers win; else CAPA_SERVER; else the nameservers of resolv.conf. Never empty. */
export async function resolveServers(explicit: readonly ServerSpec[] | undefined, sources: ServerSources = {}): Promise<ServerAddress[]> {
  const configured = configuredServers(explicit, sources.env ?? process.env);
  if (configured !== undefined) return [...configured];
  const path = sources.resolvConf ?? RESOLV_CONF;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CapaError('ERR_CAPA_NO_SERVERS', `no DNS server: pass servers, set CAPA_SERVER=host:port, or fix ${path} (${(err as Error).message})`, { cause: err });
  }
  const servers = parseResolvConf(text);
  if (servers.length === 0) {
    throw new CapaError('ERR_CAPA_NO_SERVERS', `no DNS server: pass servers, set CAPA_SERVER=host:port, or add a nameserver line to ${path}`);
  }
  return servers;
}
