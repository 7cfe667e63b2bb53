/**
 * The GRM's state journal as data (pure: no I/O). Each allocator change is one record; a
 * snapshot is the live states and hold-downs as records too. A record is one line,
 * `<crc32 hex> <json array>\n`, so a torn last line (no newline) and a damaged one (its checksum
 * fails) are told apart. Folding the records in order gives back what the allocator held.
 */
import { crc32 } from 'node:zlib';
import { crc32Of } from './checksum.js';
import { readFlatArray } from './flat-json.js';
import { decodeSnapshotRecords, isSnapshot } from './snapshot-records.js';
import { StringCache } from './string-cache.js';
import type { OutsideTuple, ProtoNumber } from './types.js';

/** A live allocation as the journal remembers it. */
export interface JournaledState {
  terminal: string;
  tuple: OutsideTuple;
  createdAt: number;
  complete: boolean;
}

/** A released (aOG, pA) waiting out its hold-down for the tuple's destination. */
export interface JournaledHold {
  tuple: OutsideTuple;
  releasedAt: number;
}

/** An inbound binding (DESIGN.md "Inbound"): `querier`'s packets to `poolAddress` reach `terminal` until `expiresAt`. */
export interface JournaledBinding {
  querier: string;
  poolAddress: string;
  terminal: string;
  expiresAt: number;
}

export type StateRecord =
  | { kind: 'allocate'; terminal: string; tuple: OutsideTuple; createdAt: number }
  | { kind: 'confirm'; tuple: OutsideTuple }
  /** A release or an expiry: the tuple's hold-down starts at `at`. */
  | { kind: 'end'; tuple: OutsideTuple; at: number }
  /** Snapshot records. */
  | { kind: 'state'; state: JournaledState }
  | { kind: 'hold'; hold: JournaledHold }
  /** A binding made or renewed (journal), or live (snapshot). */
  | { kind: 'inbound'; binding: JournaledBinding };

type TupleFields = [ProtoNumber, string, number | null, string, number];

const tupleFields = (t: OutsideTuple): TupleFields => [t.proto, t.remoteAddress, t.remotePort ?? null, t.localAddress, t.localPort];

function tupleOf(fields: readonly unknown[], at: number): OutsideTuple {
  const proto = fields[at], remoteAddress = fields[at + 1], remotePort = fields[at + 2], localAddress = fields[at + 3], localPort = fields[at + 4];
  if ((proto !== 6 && proto !== 17) || typeof remoteAddress !== 'string' || typeof localAddress !== 'string'
    || (remotePort !== null && !isPort(remotePort)) || !isPort(localPort)) {
    throw new RangeError('bad outside tuple');
  }
  return { proto, remoteAddress, remotePort: remotePort === null ? undefined : remotePort as number, localAddress, localPort: localPort as number };
}

const isPort = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535;

function numberAt(fields: readonly unknown[], i: number): number {
  const v = fields[i];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new RangeError('bad time');
  return v;
}

function stringAt(fields: readonly unknown[], i: number): string {
  const v = fields[i];
  if (typeof v !== 'string') throw new RangeError('bad terminal');
  return v;
}

function fieldsOf(record: StateRecord): unknown[] {
  switch (record.kind) {
    case 'allocate': return ['a', record.terminal, ...tupleFields(record.tuple), record.createdAt];
    case 'confirm': return ['c', ...tupleFields(record.tuple)];
    case 'end': return ['e', ...tupleFields(record.tuple), record.at];
    case 'state': return ['s', record.state.terminal, ...tupleFields(record.state.tuple), record.state.createdAt, record.state.complete ? 1 : 0];
    case 'hold': return ['h', ...tupleFields(record.hold.tuple), record.hold.releasedAt];
    case 'inbound': return ['i', record.binding.querier, record.binding.poolAddress, record.binding.terminal, record.binding.expiresAt];
  }
}

function recordOf(fields: unknown[]): StateRecord {
  switch (fields[0]) {
    case 'a': return { kind: 'allocate', terminal: stringAt(fields, 1), tuple: tupleOf(fields, 2), createdAt: numberAt(fields, 7) };
    case 'c': return { kind: 'confirm', tuple: tupleOf(fields, 1) };
    case 'e': return { kind: 'end', tuple: tupleOf(fields, 1), at: numberAt(fields, 6) };
    case 's': return { kind: 'state', state: { terminal: stringAt(fields, 1), tuple: tupleOf(fields, 2), createdAt: numberAt(fields, 7), complete: fields[8] === 1 } };
    case 'h': return { kind: 'hold', hold: { tuple: tupleOf(fields, 1), releasedAt: numberAt(fields, 6) } };
    case 'i': return { kind: 'inbound', binding: { querier: stringAt(fields, 1), poolAddress: stringAt(fields, 2), terminal: stringAt(fields, 3), expiresAt: numberAt(fields, 4) } };
    default: throw new RangeError('unknown record kind');
  }
}

const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

/** One record as its journal line, newline included. */
export function encodeRecord(record: StateRecord): string {
  const json = JSON.stringify(fieldsOf(record));
  return `${hex8(crc32(json))} ${json}\n`;
}

/** A line that could not be read, and where it starts in its file. */
export interface RecordProblem {
  offset: number;
  why: string;
}

export interface DecodedRecords {
  records: StateRecord[];
  /** Damaged lines, skipped. */
  problems: RecordProblem[];
  /** Bytes of a torn last line (written only in part before a crash), ignored; 0 when none. */
  tornBytes: number;
}

const NEWLINE = 0x0a;
const SPACE = 0x20;

/** The number that 8 lowercase hex digits at bytes[at..at+8) spell, or -1. */
function hexAt(bytes: Buffer, at: number): number {
  let value = 0;
  for (let i = at; i < at + 8; i++) {
    const c = bytes[i]!;
    const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

/**
 * The records of one file, in order: a binary snapshot (snapshot-records.ts) or journal lines,
 * as a snapshot also was before. Lines are read on the bytes: the checksum is taken of each line in
 * place and its fields are read there too, each distinct string made once.
 */
export function decodeRecords(data: Buffer | string): DecodedRecords {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  if (isSnapshot(bytes)) return decodeSnapshotRecords(bytes);
  const out: DecodedRecords = { records: [], problems: [], tornBytes: 0 };
  const strings = new StringCache();
  let offset = 0;
  while (offset < bytes.length) {
    const start = offset;
    const end = bytes.indexOf(NEWLINE, start);
    if (end < 0) {
      out.tornBytes = bytes.length - start;
      break;
    }
    offset = end + 1;
    if (end - start < 10 || bytes[start + 8] !== SPACE || hexAt(bytes, start) !== crc32Of(bytes, start + 9, end)) {
      out.problems.push({ offset: start, why: 'checksum mismatch' });
      continue;
    }
    try {
      const fields: unknown = readFlatArray(bytes, start + 9, end, strings) ?? JSON.parse(bytes.toString('utf8', start + 9, end));
      if (!Array.isArray(fields)) throw new RangeError('not a record');
      out.records.push(recordOf(fields));
    } catch (err) {
      out.problems.push({ offset: start, why: (err as Error).message });
    }
  }
  return out;
}

function tupleOfRecord(record: StateRecord): OutsideTuple | undefined {
  return record.kind === 'state' ? record.state.tuple : record.kind === 'hold' ? record.hold.tuple : record.kind === 'inbound' ? undefined : record.tuple;
}

const keyOf = (t: OutsideTuple): string => `${t.proto} ${t.remoteAddress} ${t.remotePort ?? '*'} ${t.localAddress} ${t.localPort}`;

export interface FoldedStates {
  live: JournaledState[];
  /** Oldest release first (the allocator's hold-down queue is in that order). */
  holds: JournaledHold[];
  /** The latest record of each (querier, pool address), expired ones included (the restore drops them). */
  bindings: JournaledBinding[];
}

/**
 * What the records leave, applied in order: the live states (oldest first) and the
 * hold-downs. A confirm with pB fills a partial state's port; an allocation of a tuple ends its
 * earlier hold-down (it could only be reissued once that was over). The first `folded` records
 * may be a snapshot (what compaction wrote: states and hold-downs, each tuple once): those on a
 * port no later record names are taken as they are, unkeyed (keying a million of them was most
 * of a restart).
 */
export function foldRecords(records: readonly StateRecord[], folded = 0): FoldedStates {
  const tailPorts = new Set<number>();
  for (let i = folded; i < records.length; i++) {
    const tuple = tupleOfRecord(records[i]!);
    if (tuple !== undefined) tailPorts.add(tuple.localPort);
  }
  const unkeyed: JournaledState[] = [];
  const unkeyedHolds: JournaledHold[] = [];
  const live = new Map<string, JournaledState>();
  const holds = new Map<string, JournaledHold>();
  const bindings = new Map<string, JournaledBinding>();
  const add = (state: JournaledState): void => {
    const key = keyOf(state.tuple);
    holds.delete(key);
    live.set(key, state);
  };
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    if (i < folded && (record.kind === 'state' || record.kind === 'hold') && !tailPorts.has(tupleOfRecord(record)!.localPort)) {
      if (record.kind === 'state') unkeyed.push(record.state);
      else unkeyedHolds.push(record.hold);
      continue;
    }
    switch (record.kind) {
      case 'allocate':
        add({ terminal: record.terminal, tuple: record.tuple, createdAt: record.createdAt, complete: false });
        break;
      case 'state':
        add(record.state);
        break;
      case 'confirm': {
        const exact = live.get(keyOf(record.tuple));
        const partialKey = keyOf({ ...record.tuple, remotePort: undefined });
        const partial = exact ?? live.get(partialKey);
        if (partial === undefined) break;
        if (exact === undefined) {
          live.delete(partialKey);
          live.set(keyOf(record.tuple), partial);
        }
        partial.tuple = record.tuple;
        partial.complete = true;
        break;
      }
      case 'end': {
        const key = keyOf(record.tuple);
        live.delete(key);
        holds.delete(key);
        holds.set(key, { tuple: record.tuple, releasedAt: record.at });
        break;
      }
      case 'hold':
        holds.set(keyOf(record.hold.tuple), record.hold);
        break;
      case 'inbound':
        bindings.set(`${record.binding.querier} ${record.binding.poolAddress}`, record.binding);
        break;
    }
  }
  const byTime = <T>(time: (x: T) => number) => (a: T, b: T): number => time(a) - time(b);
  return {
    live: [...unkeyed, ...live.values()].sort(byTime((s) => s.createdAt)),
    holds: [...unkeyedHolds, ...holds.values()].sort(byTime((h) => h.releasedAt)),
    bindings: [...bindings.values()],
  };
}
