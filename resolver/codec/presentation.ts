/** CAPA presentation format (zone-file text) and the RFC 3597 generic form. Pure, no I/O. */
import { DEFAULT_CAPA_RRTYPE } from './constants.js';
import { invalidArg } from './errors.js';
import { type CapaRecord, decode, encode } from './rdata.js';

export interface CapaRR {
  /** Owner name, without the trailing dot. */
  name: string;
  ttl: number;
  record: CapaRecord;
}

/** `<flags> <proto> <port> <address>` */
export function formatRdata(record: CapaRecord): string {
  encode(record); // validates the fields
  return `${record.flags} ${record.proto} ${record.port} ${record.address}`;
}

/** RFC 3597 §5: `\# <length> <hex>` */
export function formatGenericRdata(record: CapaRecord): string {
  const bytes = encode(record);
  return `\\# ${bytes.length} ${Buffer.from(bytes).toString('hex').toUpperCase()}`;
}

function parseUint(token: string | undefined, what: string, max: number): number {
  if (token === undefined || !/^\d{1,10}$/.test(token) || Number(token) > max) {
    throw invalidArg(`CAPA ${what} must be a number 0-${max}, got "${token ?? ''}"`);
  }
  return Number(token);
}

/** Parses RDATA text in either the CAPA form or the RFC 3597 generic form. */
export function parseRdata(text: string): CapaRecord {
  const tokens = text.trim().split(/\s+/);
  if (tokens[0] === '\\#') {
    const length = parseUint(tokens[1], 'generic RDATA length', 65535);
    const hex = tokens.slice(2).join('');
    if (!/^([0-9a-fA-F]{2})*$/.test(hex) || hex.length / 2 !== length) {
      throw invalidArg(`generic RDATA says ${length} octets but has "${hex}"`);
    }
    try {
      return decode(Buffer.from(hex, 'hex'));
    } catch (err) {
      throw invalidArg(`generic RDATA is not a CAPA record: ${(err as Error).message}`);
    }
  }
  if (tokens.length !== 4) throw invalidArg(`CAPA RDATA is "<flags> <proto> <port> <address>", got "${text.trim()}"`);
  const record: CapaRecord = {
    flags: parseUint(tokens[0], 'flags', 255),
    proto: parseUint(tokens[1], 'proto', 255),
    port: parseUint(tokens[2], 'port', 65535),
    address: tokens[3]!,
  };
  encode(record); // validates the address
  return record;
}

/** `owner. TTL IN CAPA <flags> <proto> <port> <address>` */
export function formatRR(rr: CapaRR): string {
  return `${rr.name.replace(/\.$/, '')}. ${rr.ttl} IN CAPA ${formatRdata(rr.record)}`;
}

/**
 * Parses `owner [TTL] [IN] CAPA|TYPE<n> rdata`; TTL and class may come in either order
 * as in RFC 1035 master files. A missing TTL is 0.
 */
export function parseRR(line: string, rrtype = DEFAULT_CAPA_RRTYPE): CapaRR {
  const tokens = line.trim().split(/\s+/);
  const name = tokens.shift();
  if (name === undefined || name === '') throw invalidArg('empty CAPA record line');
  let ttl = 0;
  for (let i = 0; i < 2 && tokens.length > 0; i++) {
    const t = tokens[0]!;
    if (/^\d+$/.test(t)) ttl = parseUint(tokens.shift(), 'TTL', 2 ** 31 - 1);
    else if (t.toUpperCase() === 'IN') tokens.shift();
  }
  const type = (tokens.shift() ?? '').toUpperCase();
  if (type !== 'CAPA' && type !== `TYPE${rrtype}`) {
    throw invalidArg(`expected type CAPA or TYPE${rrtype}, got "${type}"`);
  }
  return { name: name.replace(/\.$/, ''), ttl, record: parseRdata(tokens.join(' ')) };
}
