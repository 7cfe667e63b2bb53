/** The inside realm: address prefixes whose hosts are terminals of this gateway. Pure. */
import { CapaError } from '../../../resolver/codec/errors.js';
import { ipFamily, ipToBytes, unmapIPv4 } from '../../../resolver/codec/ip.js';
import { BoundedMap } from '../../../resolver/codec/bounded-map.js';

interface Prefix {
  bytes: Uint8Array;
  length: number;
}

/** `a.b.c.d/len`, `x::/len`, or a bare address (a host prefix). Throws ERR_CAPA_CONFIG. */
export function parsePrefix(text: string): Prefix {
  const [address = '', len, extra] = text.trim().split('/');
  const family = ipFamily(address);
  if (family === 0 || extra !== undefined) {
    throw new CapaError('ERR_CAPA_CONFIG', `"${text}" is not an address prefix like 127.0.0.0/8 or 2001:db8::/32`);
  }
  const bits = family === 4 ? 32 : 128;
  const length = len === undefined ? bits : Number(len);
  if (!/^\d{1,3}$/.test(len ?? String(bits)) || length > bits) {
    throw new CapaError('ERR_CAPA_CONFIG', `prefix length in "${text}" must be 0-${bits}`);
  }
  return { bytes: ipToBytes(address), length };
}

function matches(prefix: Prefix, bytes: Uint8Array): boolean {
  if (prefix.bytes.length !== bytes.length) return false;
  const whole = prefix.length >> 3;
  for (let i = 0; i < whole; i++) if (prefix.bytes[i] !== bytes[i]) return false;
  const rest = prefix.length & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (prefix.bytes[whole]! & mask) === (bytes[whole]! & mask);
}

export class Realm {
  private readonly prefixes: Prefix[];
  /** Answers remembered per address: the same terminals and destinations come back all the time. */
  private readonly cache = new BoundedMap<string, boolean>(4096);

  constructor(prefixes: readonly string[]) {
    this.prefixes = prefixes.map(parsePrefix);
  }

  /** False for anything that is not an IP address (scoped link-local addresses included). */
  contains(address: string): boolean {
    let inside = this.cache.get(address);
    if (inside === undefined) {
      inside = this.match(unmapIPv4(address));
      this.cache.set(address, inside);
    }
    return inside;
  }

  private match(address: string): boolean {
    if (ipFamily(address) === 0 || address.includes('%')) return false;
    const bytes = ipToBytes(address);
    return this.prefixes.some((p) => matches(p, bytes));
  }
}
