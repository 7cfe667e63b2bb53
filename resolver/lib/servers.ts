/**
 * Which DNS servers the stub asks: an explicit list, else CAPA_SERVER, else /etc/resolv.conf.
 * Parsing is pure; only defaultServers() reads the file.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { CapaError } from '../codec/errors.js';
import { DEFAULT_DNS_PORT, formatServer, parseServer, parseServerList, type ServerAddress } from '../codec/server-address.js';
import { BoundedMap } from '../codec/bounded-map.js';

export const RESOLV_CONF = '/etc/resolv.conf';

/** `nameserver` lines of a resolv.conf, in order; other lines are not ours to judge. */
export function parseResolvConf(text: string): ServerAddress[] {
  const servers: ServerAddress[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && isIP(m[1]!) !== 0) servers.push({ address: m[1]!, port: DEFAULT_DNS_PORT });
  }
  return servers;
}

export type ServerSpec = string | ServerAddress;

export interface ServerSources {
  env?: NodeJS.ProcessEnv;
  resolvConf?: string;
}

/** Parsed server lists by their text: a stub asks the same few lists again and again. */
const parsedLists = new BoundedMap<string, readonly ServerAddress[]>(64);

function parsedOnce(key: string, parse: () => ServerAddress[]): readonly ServerAddress[] {
  let list = parsedLists.get(key);
  if (list === undefined) {
    list = Object.freeze(parse().map((s) => Object.freeze(s)));
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
