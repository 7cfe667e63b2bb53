/**
 * The state maps' elements as the kernel holds them, for the addon's bulk calls (native/core/
 * nft_set.h): a restart loads a million in one pass instead of parsing nft text. Pure.
 *
 * A key is the concatenation nft-rules.ts declares, inside-bound: aOB . pB . aOG . pA (complete)
 * or aOB . aOG . pA (partial), each field padded to 4 bytes (ports: 2 bytes, network order);
 * the data is the link's mark, in host order.
 */
import { endianness } from 'node:os';
import { bytesToIp, type Family, ipToBytes } from '../../../resolver/codec/ip.js';
import type { NftSetRef } from '../../../native/addon/index.js';
import type { OutsideTuple, ProtoNumber } from '../grm/types.js';
import { partialMapName, stateMapName } from './nft-rules.js';

const LITTLE_ENDIAN = endianness() === 'LE';
const MIN_RECORDS = 1024;

/** One state map's place in the layout. */
export interface StateMap {
  name: string;
  proto: ProtoNumber;
  family: Family;
  partial: boolean;
  keyLength: number;
}

/** Every state map: both protocols and families, complete and partial. */
export const STATE_MAP_LAYOUTS: readonly StateMap[] = ([6, 17] as const).flatMap((proto) => ([4, 6] as const).flatMap((family) => {
  const address = family === 4 ? 4 : 16;
  return [
    { name: stateMapName(proto, family), proto, family, partial: false, keyLength: 2 * address + 8 },
    { name: partialMapName(proto, family), proto, family, partial: true, keyLength: 2 * address + 4 },
  ];
}));

/** The state map of a tuple: STATE_MAP_LAYOUTS is in (proto, family, partial) order. */
export function stateMapOf(tuple: OutsideTuple): StateMap {
  return STATE_MAP_LAYOUTS[(tuple.proto === 6 ? 0 : 4) + (tuple.localAddress.includes(':') ? 2 : 0) + (tuple.remotePort === undefined ? 1 : 0)]!;
}

export function setOf(table: string, map: StateMap): NftSetRef {
  return { table, name: map.name, keyLength: map.keyLength, map: true };
}

/** Packs elements map by map. */
export class ElementRecords {
  private readonly buffers = new Map<StateMap, { bytes: Buffer; length: number }>();
  private readonly addresses = new Map<string, Uint8Array>();

  add(tuple: OutsideTuple, mark: number): void {
    const map = stateMapOf(tuple);
    const size = map.keyLength + 4;
    let out = this.buffers.get(map);
    if (out === undefined) this.buffers.set(map, (out = { bytes: Buffer.alloc(MIN_RECORDS * size), length: 0 }));
    if (out.length + size > out.bytes.length) {
      const grown = Buffer.alloc(out.bytes.length * 2);
      out.bytes.copy(grown, 0, 0, out.length);
      out.bytes = grown;
    }
    let at = out.length;
    at = this.address(out.bytes, at, tuple.remoteAddress);
    if (!map.partial) at = port(out.bytes, at, tuple.remotePort!);
    at = this.address(out.bytes, at, tuple.localAddress);
    at = port(out.bytes, at, tuple.localPort);
    if (LITTLE_ENDIAN) out.bytes.writeUInt32LE(mark, at);
    else out.bytes.writeUInt32BE(mark, at);
    out.length = at + 4;
  }

  /** The packed records of each map that holds at least one element. */
  maps(): { map: StateMap; records: Buffer }[] {
    return [...this.buffers].map(([map, { bytes, length }]) => ({ map, records: bytes.subarray(0, length) }));
  }

  private address(out: Buffer, at: number, address: string): number {
    let bytes = this.addresses.get(address);
    if (bytes === undefined) this.addresses.set(address, (bytes = ipToBytes(address)));
    out.set(bytes, at);
    return at + bytes.length;
  }
}

function port(out: Buffer, at: number, value: number): number {
  out[at] = value >> 8;
  out[at + 1] = value & 0xff;
  out[at + 2] = 0;
  out[at + 3] = 0;
  return at + 4;
}

/** The elements of one map's records, as tuples and marks. */
export function elementsOf(map: StateMap, records: Buffer): { tuple: OutsideTuple; mark: number }[] {
  const size = map.keyLength + 4;
  const address = map.family === 4 ? 4 : 16;
  const out: { tuple: OutsideTuple; mark: number }[] = [];
  for (let at = 0; at + size <= records.length; at += size) {
    let p = at;
    const remoteAddress = bytesToIp(records, p, address);
    p += address;
    const remotePort = map.partial ? undefined : (records[p]! << 8) | records[p + 1]!;
    if (!map.partial) p += 4;
    const localAddress = bytesToIp(records, p, address);
    p += address;
    const localPort = (records[p]! << 8) | records[p + 1]!;
    const mark = LITTLE_ENDIAN ? records.readUInt32LE(p + 4) : records.readUInt32BE(p + 4);
    out.push({ tuple: { proto: map.proto, remoteAddress, remotePort, localAddress, localPort }, mark });
  }
  return out;
}
