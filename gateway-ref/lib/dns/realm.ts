/** The inside realm: address prefixes whose hosts are terminals of this gateway. Pure. */
import { CapaError } from '../../../resolver/lib/errors.js';
import { bytesToIp, ipFamily, ipToBytes } from '../../../resolver/lib/ip.js';

interface Prefix {
  bytes: Uint8Array;
  length: number;
}

/**
 * A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d (the kernel's tables as ::ffff:7f00:1);
 * the realm and the pool speak plain IPv4.
 */
export function unmapIPv4(address: string): string {
  if (!/^::ffff:/i.test(address) || ipFamily(address) !== 6 || address.includes('%')) return address;
  const bytes = ipToBytes(address);
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? bytesToIp(bytes, 12, 4) : address;
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

/** Answers remembered per address: the same terminals and destinations come back all the time. */
const CACHE_SIZE = 4096;

export class Realm {
  private readonly prefixes: Prefix[];
  private readonly cache = new Map<string, boolean>();

  constructor(prefixes: readonly string[]) {
    this.prefixes = prefixes.map(parsePrefix);
  }

  /** False for anything that is not an IP address (scoped link-local addresses included). */
  contains(address: string): boolean {
    let inside = this.cache.get(address);
    if (inside === undefined) {
      inside = this.match(unmapIPv4(address));
      if (this.cache.size >= CACHE_SIZE) this.cache.clear();
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
