/**
 * RFC 1035 §5 master files, the subset the GRM serves: A, AAAA and CNAME records, `$ORIGIN`,
 * `$TTL` (RFC 2308), relative names, `@`, `;` comments, a blank owner meaning the previous one,
 * TTL and class in either order. Pure: text in, records out; every error names file and line.
 */
import { CapaError } from '../../../resolver/codec/errors.js';
import { canonicalIp, ipFamily } from '../../../resolver/codec/ip.js';
import { checkName } from '../../../resolver/codec/qname.js';

export type ZoneRecordType = 'A' | 'AAAA' | 'CNAME';

export interface DataRecord {
  /** Owner, lower case, without the trailing dot. */
  name: string;
  type: ZoneRecordType;
  ttl: number;
  /** Canonical address text (A/AAAA) or the target name (CNAME, lower case, no trailing dot). */
  data: string;
}

export interface ZoneRecord extends DataRecord {
  /** Line in the file, for error messages about the record. */
  line: number;
}

const MAX_TTL = 2 ** 31 - 1;
const TTL_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

class LineError extends Error {}

/** `3600`, or BIND's `1h30m` form. */
function parseTtl(token: string): number | undefined {
  if (/^\d+$/.test(token)) return checkTtl(Number(token));
  if (!/^(\d+[smhdw])+$/i.test(token)) return undefined;
  let total = 0;
  for (const [, n, unit] of token.toLowerCase().matchAll(/(\d+)([smhdw])/g)) total += Number(n) * TTL_UNITS[unit!]!;
  return checkTtl(total);
}

function checkTtl(ttl: number): number {
  if (ttl > MAX_TTL) throw new LineError(`TTL ${ttl} is larger than ${MAX_TTL}`);
  return ttl;
}

function absoluteName(token: string, origin: string): string {
  let name: string;
  if (token === '@') name = origin;
  else if (token.endsWith('.')) name = token.slice(0, -1);
  else name = origin === '' ? token : `${token}.${origin}`;
  name = name.toLowerCase();
  if (name === '') throw new LineError('records at the root name are not served');
  try {
    checkName(name);
  } catch (err) {
    throw new LineError((err as Error).message);
  }
  return name;
}

function parseData(type: ZoneRecordType, rdata: string[], origin: string): string {
  if (rdata.length !== 1) throw new LineError(`${type} takes exactly one value, got ${rdata.length}`);
  const value = rdata[0]!;
  if (type === 'CNAME') return absoluteName(value, origin);
  const want = type === 'A' ? 4 : 6;
  if (ipFamily(value) !== want || value.includes('%')) throw new LineError(`"${value}" is not an IPv${want} address for ${type}`);
  return canonicalIp(value);
}

interface ParserState {
  origin: string;
  defaultTtl: number | undefined;
  lastTtl: number | undefined;
  owner: string | undefined;
}

function directive(tokens: string[], state: ParserState): void {
  const [keyword = '', value, extra] = tokens;
  const name = keyword.toUpperCase();
  if (name !== '$ORIGIN' && name !== '$TTL') throw new LineError(`unsupported directive ${keyword} (only $ORIGIN and $TTL)`);
  if (value === undefined || extra !== undefined) throw new LineError(`${name} takes exactly one value`);
  if (name === '$ORIGIN') {
    state.origin = value === '.' ? '' : absoluteName(value, state.origin);
    return;
  }
  const ttl = parseTtl(value);
  if (ttl === undefined) throw new LineError(`$TTL "${value}" is not a TTL`);
  state.defaultTtl = ttl;
}

function record(text: string, tokens: string[], state: ParserState, line: number): ZoneRecord {
  if (/^\s/.test(text)) {
    if (state.owner === undefined) throw new LineError('no owner name: the first record must start in column 1');
  } else {
    state.owner = absoluteName(tokens.shift()!, state.origin);
  }
  let ttl: number | undefined;
  for (let i = 0; i < 2 && tokens.length > 0; i++) {
    const t = tokens[0]!;
    const asTtl = ttl === undefined ? parseTtl(t) : undefined;
    if (asTtl !== undefined) ttl = asTtl;
    else if (t.toUpperCase() === 'IN') { /* the only class served */ }
    else if (/^(CH|HS|CS|ANY)$/i.test(t)) throw new LineError(`class ${t} is not served (only IN)`);
    else break;
    tokens.shift();
  }
  const typeToken = tokens.shift();
  if (typeToken === undefined) throw new LineError('missing record type');
  const type = typeToken.toUpperCase();
  if (type !== 'A' && type !== 'AAAA' && type !== 'CNAME') {
    throw new LineError(`unsupported record type "${typeToken}" (the gateway serves A, AAAA and CNAME)`);
  }
  if (ttl !== undefined) state.lastTtl = ttl;
  // RFC 2308 §4: $TTL, else RFC 1035: the last explicit TTL.
  const effective = ttl ?? state.defaultTtl ?? state.lastTtl;
  if (effective === undefined) throw new LineError('no TTL: give one on the record or add a $TTL line before it');
  return { name: state.owner, type, ttl: effective, data: parseData(type, tokens, state.origin), line };
}

/**
 * Parses a whole master file; the origin starts at the root until `$ORIGIN`.
 * Throws CapaError ERR_CAPA_CONFIG "<file>:<line>: <what>"; `file` only labels the messages.
 */
export function parseZoneFile(text: string, file = '<zone>'): ZoneRecord[] {
  const state: ParserState = { origin: '', defaultTtl: undefined, lastTtl: undefined, owner: undefined };
  const out: ZoneRecord[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const content = lines[i]!.replace(/;.*$/, '');
    const tokens = content.trim().split(/\s+/).filter((t) => t !== '');
    if (tokens.length === 0) continue;
    try {
      if (tokens[0]!.startsWith('$')) directive(tokens, state);
      else out.push(record(content, tokens, state, i + 1));
    } catch (err) {
      if (err instanceof LineError) throw new CapaError('ERR_CAPA_CONFIG', `${file}:${i + 1}: ${err.message}`);
      throw err;
    }
  }
  return out;
}
