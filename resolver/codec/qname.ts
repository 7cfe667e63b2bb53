/** CAPA query names: `_<port>._<tcp|udp>.<host>` (RFC 6698 §3 style), bare host, reverse names. Pure. */
import type { Protocol } from './constants.js';
import { invalidArg } from './errors.js';
import { addressFromReverseName, ipFamily, reverseName } from './ip.js';
import { BoundedMap } from './bounded-map.js';

export interface QueryTarget {
  /** Destination host name (or IP literal when building). */
  host: string;
  /** Destination port; absent for a bare host (destination port unknown). */
  port?: number;
  protocol?: Protocol;
}

const MAX_NAME = 253; // text length of a 255-octet wire name without the trailing dot

/** Lower-cased, without trailing dot; IP literals become their reverse name. Throws on bad names. */
export function normalizeHost(host: string): string {
  const h = ipFamily(host) ? reverseName(host) : host.replace(/\.$/, '').toLowerCase();
  checkName(h);
  return h;
}

function checkLength(name: string): void {
  if (name.length === 0 || name.length > MAX_NAME) throw invalidArg(`DNS name must be 1-${MAX_NAME} characters: "${name}"`);
}

/** Letters, digits and "_" (0), "-" (1, not last), "*" (2, first only), anything else (3). */
function charClass(c: number): 0 | 1 | 2 | 3 {
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f) return 0;
  return c === 0x2d ? 1 : c === 0x2a ? 2 : 3;
}

/**
 * Is name[start, end) a label, /^[A-Za-z0-9_*](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/? A scan
 * instead of split and pattern: every query checks its names.
 */
function isLabel(name: string, start: number, end: number): boolean {
  const length = end - start;
  if (length < 1 || length > 63) return false;
  const first = charClass(name.charCodeAt(start));
  if (first === 1 || first === 3) return false;
  if (length === 1) return true;
  for (let i = start + 1; i < end - 1; i++) if (charClass(name.charCodeAt(i)) > 1) return false;
  return charClass(name.charCodeAt(end - 1)) === 0;
}

export function checkName(name: string): void {
  checkLength(name);
  for (let start = 0; start <= name.length;) {
    let end = name.indexOf('.', start);
    if (end < 0) end = name.length;
    if (!isLabel(name, start, end)) {
      throw invalidArg(`bad DNS label "${name.slice(start, end)}" in "${name}" (1-63 of letters, digits, "-", "_")`);
    }
    start = end + 1;
  }
}

/** Equal as DNS names: case-insensitive, a trailing dot ignored. */
export function sameName(a: string, b: string): boolean {
  if (a === b) return true;
  const bare = (name: string): string => (name.endsWith('.') ? name.slice(0, -1) : name).toLowerCase();
  return bare(a) === bare(b);
}

export function buildQueryName(target: QueryTarget): string {
  return queryNameOf(normalizeHost(target.host), target.port, target.protocol);
}

/** buildQueryName for a host already normalized (normalizeHost). */
export function queryNameOf(host: string, port: number | undefined, protocol: Protocol = 'tcp'): string {
  if (port === undefined) return host;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalidArg(`destination port must be 1-65535, got ${port}`);
  }
  if (protocol !== 'tcp' && protocol !== 'udp') throw invalidArg(`protocol must be tcp or udp, got "${String(protocol)}"`);
  const name = `_${port}._${protocol}.${host}`;
  checkLength(name); // the host's labels were checked, and the two added are valid labels
  return name;
}

export interface ParsedQueryName {
  host: string;
  port?: number;
  protocol?: Protocol;
  /** The destination address when host is a complete reverse name. */
  address?: string;
}

/**
 * Names already parsed: a GRM is asked the same few names over and over (one per destination),
 * and parsing is most of what it does with a question. Bounded; a full table starts over.
 */
const parsedNames = new BoundedMap<string, Readonly<ParsedQueryName>>(4096);

/** Inverse of buildQueryName. A name without the `_port._proto` prefix is a bare host. */
export function parseQueryName(qname: string): Readonly<ParsedQueryName> {
  let parsed = parsedNames.get(qname);
  if (parsed === undefined) {
    parsed = Object.freeze(parseName(qname));
    parsedNames.set(qname, parsed);
  }
  return parsed;
}

function parseName(qname: string): ParsedQueryName {
  const name = qname.replace(/\.$/, '').toLowerCase();
  checkName(name);
  const m = /^_(\d{1,5})\._(tcp|udp)\.(.+)$/.exec(name);
  const parsed: ParsedQueryName = { host: name };
  if (m) {
    const port = Number(m[1]);
    if (port < 1 || port > 65535 || m[1]!.startsWith('0')) throw invalidArg(`bad destination port label "_${m[1]}" in "${qname}"`);
    parsed.host = m[3]!;
    parsed.port = port;
    parsed.protocol = m[2] as Protocol;
  } else if (/^_[^.]*\._/.test(name)) {
    throw invalidArg(`"${qname}" is not _<port>._<tcp|udp>.<host>`);
  }
  const address = addressFromReverseName(parsed.host);
  if (address !== undefined) parsed.address = address;
  return parsed;
}
