/**
 * Pool specifications: "127.64.0.1-127.64.0.4", "198.51.100.0/30", "2001:db8::1-2001:db8::4",
 * single addresses, and comma-separated lists of these. A CIDR block contributes every address in
 * it (a pool is a set of addresses, not a subnet to number hosts in).
 */
import { CapaError } from '../../../resolver/codec/errors.js';
import { bytesToIp, ipFamily, ipToBytes } from '../../../resolver/codec/ip.js';

/** The allocator stores a pool index in 16 bits; 65,536 addresses are ~4.2 billion flows per destination. */
export const MAX_POOL_ADDRESSES = 65536;

interface Block {
  entry: string;
  family: 4 | 6;
  first: bigint;
  count: bigint;
}

function configError(message: string): CapaError {
  return new CapaError('ERR_CAPA_CONFIG', message);
}

function toBigInt(address: string, entry: string): { family: 4 | 6; value: bigint } {
  const family = ipFamily(address);
  if (family === 0 || address.includes('%')) {
    throw configError(`pool entry "${entry}": "${address}" is not an IPv4 or IPv6 address`);
  }
  let value = 0n;
  for (const byte of ipToBytes(address)) value = (value << 8n) | BigInt(byte);
  return { family, value };
}

function fromBigInt(value: bigint, family: 4 | 6): string {
  const length = family === 4 ? 4 : 16;
  const bytes = new Uint8Array(length);
  let rest = value;
  for (let i = length - 1; i >= 0; i--) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytesToIp(bytes, 0, length);
}

function parseCidr(entry: string, address: string, lengthText: string): Block {
  const { family, value } = toBigInt(address, entry);
  const bits = family === 4 ? 32 : 128;
  const length = /^\d{1,3}$/.test(lengthText) ? Number(lengthText) : NaN;
  if (!(length >= 0 && length <= bits)) throw configError(`pool entry "${entry}": prefix length must be 0-${bits}`);
  const count = 1n << BigInt(bits - length);
  if (value % count !== 0n) {
    throw configError(`pool entry "${entry}": host bits are set; did you mean ${fromBigInt(value - (value % count), family)}/${length}?`);
  }
  return { entry, family, first: value, count };
}

function parseRange(entry: string, from: string, to: string): Block {
  const start = toBigInt(from, entry);
  const end = toBigInt(to, entry);
  if (start.family !== end.family) throw configError(`pool entry "${entry}": both ends must be of the same address family`);
  if (end.value < start.value) throw configError(`pool entry "${entry}": the range ends before it starts`);
  return { entry, family: start.family, first: start.value, count: end.value - start.value + 1n };
}

function parseEntry(entry: string): Block {
  const slash = entry.split('/');
  if (slash.length === 2) return parseCidr(entry, slash[0]!, slash[1]!);
  const dash = entry.split('-');
  if (dash.length === 2) return parseRange(entry, dash[0]!.trim(), dash[1]!.trim());
  if (slash.length > 2 || dash.length > 2) throw configError(`pool entry "${entry}" is neither an address, a range a-b nor a CIDR block`);
  const { family, value } = toBigInt(entry, entry);
  return { entry, family, first: value, count: 1n };
}

/** Expands a pool specification into canonical addresses, in order. Throws ERR_CAPA_CONFIG. */
export function parsePool(spec: string | string[]): string[] {
  const entries = (Array.isArray(spec) ? spec : [spec])
    .flatMap((part) => String(part).split(','))
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length === 0) throw configError('the pool is empty: give addresses, ranges a-b or CIDR blocks');
  const blocks = entries.map(parseEntry);
  const total = blocks.reduce((sum, block) => sum + block.count, 0n);
  if (total > BigInt(MAX_POOL_ADDRESSES)) {
    throw configError(`the pool has ${total} addresses; at most ${MAX_POOL_ADDRESSES} are supported (use a smaller range or prefix)`);
  }
  const firstEntry = new Map<string, string>();
  const addresses: string[] = [];
  for (const block of blocks) {
    for (let i = 0n; i < block.count; i++) {
      const address = fromBigInt(block.first + i, block.family);
      const earlier = firstEntry.get(address);
      if (earlier !== undefined) {
        throw configError(`pool address ${address} appears twice (in "${earlier}" and "${block.entry}")`);
      }
      firstEntry.set(address, block.entry);
      addresses.push(address);
    }
  }
  return addresses;
}
