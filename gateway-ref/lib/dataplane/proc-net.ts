/**
 * Parser for the kernel's socket tables /proc/net/{tcp,tcp6,udp,udp6} (readable without
 * privileges). Pure: text in, entries out. Addresses there are hex 32-bit words printed in host
 * byte order (little-endian on x86 and ARM), ports are plain big-endian hex.
 */
import { bytesToIp, ipFamily, ipToBytes } from '../../../resolver/codec/ip.js';
import type { ProtoNumber } from '../grm/types.js';
import { unmapIPv4 } from '../../../resolver/codec/ip.js';

export interface SocketEntry {
  proto: ProtoNumber;
  localAddress: string;
  localPort: number;
  /** 0.0.0.0 / :: with port 0 for an unconnected socket. */
  remoteAddress: string;
  remotePort: number;
  /** Kernel state code: 0x01 ESTABLISHED, 0x02 SYN_SENT, 0x06 TIME_WAIT, 0x07 CLOSE, 0x0A LISTEN... */
  state: number;
  /** 0 when no process holds the socket any more (TIME_WAIT, orphaned FIN_WAIT). */
  inode: number;
}

const HEX_ADDRESS = /^(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{32})$/;

function decodeEndpoint(text: string, littleEndian: boolean): { address: string; port: number } | undefined {
  const [hexAddress = '', hexPort = ''] = text.split(':');
  if (!HEX_ADDRESS.test(hexAddress) || !/^[0-9A-Fa-f]{4}$/.test(hexPort)) return undefined;
  const bytes = Buffer.from(hexAddress, 'hex');
  if (littleEndian) for (let w = 0; w < bytes.length; w += 4) bytes.subarray(w, w + 4).reverse();
  return { address: unmapIPv4(bytes.length === 4 ? bytesToIp(bytes, 0, 4) : bytesToIp(bytes, 0, 16)), port: parseInt(hexPort, 16) };
}

/** One line of a table, or undefined for the header and lines that do not parse. */
export function parseProcNetLine(line: string, proto: ProtoNumber, littleEndian: boolean): SocketEntry | undefined {
  const f = line.trim().split(/\s+/);
  if (f.length < 10 || !/^\d+:$/.test(f[0]!)) return undefined;
  const local = decodeEndpoint(f[1]!, littleEndian);
  const remote = decodeEndpoint(f[2]!, littleEndian);
  if (local === undefined || remote === undefined || !/^[0-9A-Fa-f]{2}$/.test(f[3]!) || !/^\d+$/.test(f[9]!)) return undefined;
  return {
    proto,
    localAddress: local.address,
    localPort: local.port,
    remoteAddress: remote.address,
    remotePort: remote.port,
    state: parseInt(f[3]!, 16),
    inode: Number(f[9]),
  };
}

/** Parses one table; the header line and lines that do not parse are skipped. */
export function parseProcNet(text: string, proto: ProtoNumber, littleEndian: boolean): SocketEntry[] {
  const out: SocketEntry[] = [];
  for (const line of text.split('\n')) {
    const entry = parseProcNetLine(line, proto, littleEndian);
    if (entry !== undefined) out.push(entry);
  }
  return out;
}

/**
 * A local endpoint as a table prints it, in a form that is cheap to take from a line: IPv4 (also
 * IPv4-mapped IPv6) as the printed address word times 65536 plus the port, other IPv6 as the
 * field's text (`<32 hex>:<4 hex>`).
 */
export type EndpointKey = number | string;

/** A 32-bit word as the kernel prints it: in host byte order. */
function printedWord(bytes: Uint8Array, at: number, littleEndian: boolean): number {
  let word = 0;
  for (let i = 0; i < 4; i++) word = word * 256 + bytes[at + (littleEndian ? 3 - i : i)]!;
  return word;
}

const hex = (value: number, digits: number): string => value.toString(16).toUpperCase().padStart(digits, '0');

/** The address part of an endpoint key (see endpointKey); the same for every port, so worth keeping. */
export function addressKey(address: string, littleEndian: boolean): number | string {
  const plain = unmapIPv4(address);
  const bytes = ipToBytes(plain);
  if (ipFamily(plain) === 4) return printedWord(bytes, 0, littleEndian);
  let text = '';
  for (let w = 0; w < 16; w += 4) text += hex(printedWord(bytes, w, littleEndian), 8);
  return text;
}

/** The key under which a socket bound to (address, port) shows in the tables (see scanProcNet). */
export function endpointKey(address: number | string, port: number): EndpointKey {
  return typeof address === 'number' ? address * 65536 + port : `${address}:${hex(port, 4)}`;
}

const COLON = 0x3a;
const SPACE = 0x20;

/** Value of `digits` upper-case hex characters (as the kernel prints them), or -1. */
function hexAt(table: Uint8Array, at: number, digits: number): number {
  let value = 0;
  for (let i = at; i < at + digits; i++) {
    const c = table[i]!;
    const nibble = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
    if (nibble < 0) return -1;
    value = value * 16 + nibble;
  }
  return value;
}

/** `0000000000000000FFFF0000` (little-endian) or `00000000000000000000FFFF`: the IPv4-mapped prefix as printed. */
function isMappedPrefix(table: Uint8Array, at: number, littleEndian: boolean): boolean {
  const ffff = littleEndian ? 16 : 20;
  for (let i = at; i < at + 24; i++) {
    const inOnes = i >= at + ffff && i < at + ffff + 4;
    if (table[i] !== (inOnes ? 0x46 : 0x30)) return false;
  }
  return true;
}

/** Key of the local endpoint field of the line starting at `start` (`   12: 0100007F:0035 ...`), if it has one. */
function lineKey(table: Uint8Array, start: number, end: number, littleEndian: boolean): EndpointKey | undefined {
  let colon = start;
  while (colon < end && table[colon] !== COLON) colon++;
  const field = colon + 2;
  if (field >= end || table[colon + 1] !== SPACE) return undefined;
  let address = field;
  if (table[field + 32] === COLON && field + 37 <= end) {
    if (!isMappedPrefix(table, field, littleEndian)) return Buffer.from(table.buffer, table.byteOffset + field, 37).toString('latin1');
    address = field + 24;
  } else if (table[field + 8] !== COLON || field + 13 > end) {
    return undefined;
  }
  const word = hexAt(table, address, 8);
  const port = hexAt(table, address + 9, 4);
  return word < 0 || port < 0 ? undefined : word * 65536 + port;
}

export interface ScannedSocket {
  key: EndpointKey;
  socket: SocketEntry;
}

/**
 * The sockets of a table (its raw bytes) whose local endpoint is `wanted`. Only those lines are
 * parsed: the others (thousands of TIME_WAIT lines on a busy host) cost a key, not a parse.
 */
export function scanProcNet(table: Uint8Array, proto: ProtoNumber, littleEndian: boolean, wanted: (key: EndpointKey) => boolean): ScannedSocket[] {
  const out: ScannedSocket[] = [];
  for (let start = 0; start < table.length;) {
    let end = table.indexOf(0x0a, start);
    if (end < 0) end = table.length;
    const key = lineKey(table, start, end, littleEndian);
    if (key !== undefined && wanted(key)) {
      const line = Buffer.from(table.buffer, table.byteOffset + start, end - start).toString('latin1');
      const socket = parseProcNetLine(line, proto, littleEndian);
      if (socket !== undefined) out.push({ key, socket });
    }
    start = end + 1;
  }
  return out;
}
