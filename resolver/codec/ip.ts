/** IP address text <-> bytes, and reverse (PTR) names. Pure, no I/O. */
import { isIP } from 'node:net';
import { invalidArg } from './errors.js';

export type Family = 4 | 6;

/**
 * Dotted-quad text as a 32-bit number, exactly as net.isIP accepts it (no leading zeros, each
 * part 0-255), else -1. By hand: addresses are on every hot path, and a scan costs less than
 * net.isIP's patterns.
 */
function ipv4Value(text: string): number {
  let result = 0;
  let parts = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i === text.length ? 0x2e : text.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || parts === 4) return -1;
      result = result * 256 + value;
      parts++;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39 && !(digits === 1 && value === 0)) {
      value = value * 10 + c - 0x30;
      if (++digits > 3 || value > 255) return -1;
    } else {
      return -1;
    }
  }
  return parts === 4 ? result : -1;
}

function ipv4Bytes(value: number): Uint8Array {
  // Filled in place: building a typed array from an array literal costs several times more.
  const out = new Uint8Array(4);
  out[0] = value >>> 24;
  out[1] = (value >>> 16) & 0xff;
  out[2] = (value >>> 8) & 0xff;
  out[3] = value & 0xff;
  return out;
}

export function ipFamily(address: string): Family | 0 {
  if (ipv4Value(address) >= 0) return 4;
  // Only text with a ':' can be IPv6, and net.isIP's IPv6 pattern is long.
  return address.includes(':') && isIP(address) === 6 ? 6 : 0;
}

export function ipToBytes(address: string): Uint8Array {
  const v4 = ipv4Value(address);
  if (v4 >= 0) return ipv4Bytes(v4);
  if (address.includes(':') && isIP(address) === 6 && !address.includes('%')) return ipv6ToBytes(address);
  throw invalidArg(`not an IP address: "${address}"`);
}

/** Expects text that net.isIP accepted as IPv6 (so the shape is already valid). */
function ipv6ToBytes(address: string): Uint8Array {
  const out = new Uint8Array(16);
  let text = address;
  let tail4: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) !== -1) {
    tail4 = ipv4Bytes(ipv4Value(text.slice(lastColon + 1))); // net.isIP accepted the whole text
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined
    ? headGroups
    : [...headGroups, ...new Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  for (let i = 0; i < 8; i++) {
    const v = parseInt(groups[i] ?? '0', 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  }
  if (tail4) out.set(tail4, 12);
  return out;
}

export function bytesToIp(buf: Uint8Array, offset: number, length: 4 | 16): string {
  if (length === 4) return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((buf[offset + i * 2]! << 8) | buf[offset + i * 2 + 1]!);
  return formatIpv6(groups);
}

/** RFC 5952 canonical text: lower case, longest run (>= 2) of zero groups as "::". */
function formatIpv6(groups: number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (g: number[]): string => g.map((v) => v.toString(16)).join(':');
  if (bestStart === -1) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Canonical text of an address (IPv6 compressed per RFC 5952). */
export function canonicalIp(address: string): string {
  // Dotted-quad text that ipv4Value accepts (no leading zeros, no padding) is already canonical.
  if (ipv4Value(address) >= 0) return address;
  const bytes = ipToBytes(address);
  return bytesToIp(bytes, 0, bytes.length as 4 | 16);
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

/** `4.3.2.1.in-addr.arpa` / nibble `…ip6.arpa` name of an address, without trailing dot. */
export function reverseName(address: string): string {
  const bytes = ipToBytes(address);
  if (bytes.length === 4) return `${bytes[3]}.${bytes[2]}.${bytes[1]}.${bytes[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) nibbles.push((bytes[i]! & 0xf).toString(16), (bytes[i]! >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}

/** The address a complete reverse name stands for, or undefined if it is not one. */
export function addressFromReverseName(name: string): string | undefined {
  const lower = name.toLowerCase().replace(/\.$/, '');
  if (lower.endsWith('.in-addr.arpa')) {
    const labels = lower.slice(0, -'.in-addr.arpa'.length).split('.');
    if (labels.length !== 4 || !labels.every((l) => /^(0|[1-9]\d{0,2})$/.test(l) && Number(l) <= 255)) return undefined;
    return labels.reverse().join('.');
  }
  if (lower.endsWith('.ip6.arpa')) {
    const labels = lower.slice(0, -'.ip6.arpa'.length).split('.');
    if (labels.length !== 32 || !labels.every((l) => /^[0-9a-f]$/.test(l))) return undefined;
    const bytes = new Uint8Array(16);
    for (let i = 0; i < 16; i++) bytes[i] = parseInt(labels[31 - i * 2]! + labels[30 - i * 2]!, 16);
    return bytesToIp(bytes, 0, 16);
  }
  return undefined;
}
