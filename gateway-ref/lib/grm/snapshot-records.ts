/**
 * The snapshot's records in binary (pure: no I/O). A snapshot is written whole by compaction
 * and read whole by a restart, where a million JSON lines took a second: here a state is 33
 * bytes read in place, and each distinct string (terminal, address) is written once, in a
 * record of its own before the first record that names it. Like a journal line, every record
 * carries its own checksum, so a damaged one is reported by its offset and skipped (with the
 * records that name a damaged string), and a torn end is told apart.
 *
 *   file:   MAGIC, then records
 *   record: u32 crc32 of the rest | u16 body length | body
 *   body:   u8 kind = 3 (string) | u32 index | UTF-8 bytes
 *        or u8 kind (1 state, 2 hold) | u8 proto | u8 flags (1 complete, 2 remote port known)
 *           | u16 remote port | u16 local port | f64 createdAt or releasedAt
 *           | u32 remote address | u32 local address | u32 terminal (states only): string indexes
 *        or u8 kind = 4 (inbound binding) | f64 expiresAt | u32 querier | u32 pool address | u32 terminal
 * Numbers are little-endian.
 */
import { crc32Of } from './checksum.js';
import type { DecodedRecords, JournaledBinding, StateRecord } from './state-records.js';
import type { OutsideTuple, ProtoNumber } from './types.js';

export const SNAPSHOT_MAGIC = Buffer.from('CAPA-SNAPSHOT 1\n');
const HEAD = 6;
const STATE = 1, HOLD = 2, STRING = 3, INBOUND = 4;
const INBOUND_BODY = 21;
const COMPLETE = 1, REMOTE_PORT = 2;
const TUPLE_BODY = 23; // kind .. local address
const MAX_STRING = 255;
const MAX_BODY = 5 + MAX_STRING;

/** Does this file hold a binary snapshot? */
export function isSnapshot(bytes: Buffer): boolean {
  return bytes.length >= SNAPSHOT_MAGIC.length && bytes.subarray(0, SNAPSHOT_MAGIC.length).equals(SNAPSHOT_MAGIC);
}

/** A record as its fields: a tuple's (state, hold) or a binding's. */
type Parts =
  | { kind: typeof STATE | typeof HOLD; tuple: OutsideTuple; time: number; complete: boolean; terminal?: string }
  | { kind: typeof INBOUND; binding: JournaledBinding };

function partsOf(r: StateRecord): Parts {
  if (r.kind === 'state') return { kind: STATE, tuple: r.state.tuple, time: r.state.createdAt, complete: r.state.complete, terminal: r.state.terminal };
  if (r.kind === 'hold') return { kind: HOLD, tuple: r.hold.tuple, time: r.hold.releasedAt, complete: false };
  if (r.kind === 'inbound') return { kind: INBOUND, binding: r.binding };
  throw new RangeError(`a snapshot holds states, hold-downs and inbound bindings, not "${r.kind}" records`);
}

/** The strings a record names, in the order its body lists them. */
function stringsOf(p: Parts): string[] {
  if (p.kind === INBOUND) return [p.binding.querier, p.binding.poolAddress, p.binding.terminal];
  return p.terminal === undefined ? [p.tuple.remoteAddress, p.tuple.localAddress] : [p.tuple.remoteAddress, p.tuple.localAddress, p.terminal];
}

/** Writes one snapshot's records; strings are numbered across all its encode() calls. */
export class SnapshotEncoder {
  private readonly indexes = new Map<string, number>();

  /** Snapshot records (states and hold-downs) in binary, with the string records they need first; no magic. */
  encode(records: readonly StateRecord[]): Buffer {
    const parts = records.map(partsOf);
    const fresh: string[] = [];
    const index = (s: string): number => {
      let i = this.indexes.get(s);
      if (i === undefined) {
        if (Buffer.byteLength(s) > MAX_STRING) throw new RangeError(`"${s.slice(0, 40)}..." is too long for a snapshot record`);
        i = this.indexes.size;
        this.indexes.set(s, i);
        fresh.push(s);
      }
      return i;
    };
    const refs = parts.map((p) => stringsOf(p).map(index));
    let size = 0;
    for (const s of fresh) size += HEAD + 5 + Buffer.byteLength(s);
    for (const p of parts) size += HEAD + (p.kind === INBOUND ? INBOUND_BODY : TUPLE_BODY + (p.terminal === undefined ? 0 : 4));
    const out = Buffer.allocUnsafe(size);
    let at = 0;
    const seal = (start: number): void => {
      out.writeUInt16LE(at - start - HEAD, start + 4);
      out.writeUInt32LE(crc32Of(out, start + 4, at), start);
    };
    for (const s of fresh) {
      const start = at;
      out[start + HEAD] = STRING;
      out.writeUInt32LE(this.indexes.get(s)!, start + HEAD + 1);
      at = start + HEAD + 5 + out.write(s, start + HEAD + 5, 'utf8');
      seal(start);
    }
    parts.forEach((p, i) => {
      const start = at;
      const b = start + HEAD;
      out[b] = p.kind;
      if (p.kind === INBOUND) {
        out.writeDoubleLE(p.binding.expiresAt, b + 1);
        at = b + 9;
      } else {
        const { tuple } = p;
        out[b + 1] = tuple.proto;
        out[b + 2] = (p.complete ? COMPLETE : 0) | (tuple.remotePort === undefined ? 0 : REMOTE_PORT);
        out.writeUInt16LE(tuple.remotePort ?? 0, b + 3);
        out.writeUInt16LE(tuple.localPort, b + 5);
        out.writeDoubleLE(p.time, b + 7);
        at = b + 15;
      }
      for (const ref of refs[i]!) {
        out.writeUInt32LE(ref, at);
        at += 4;
      }
      seal(start);
    });
    return out;
  }
}

/** Is a whole record with a good checksum at bytes[at..)? Its end, or -1. */
function wholeAt(bytes: Buffer, at: number): number {
  if (bytes.length - at < HEAD) return -1;
  const len = bytes[at + 4]! | (bytes[at + 5]! << 8);
  const end = at + HEAD + len;
  if (len > MAX_BODY || end > bytes.length) return -1;
  return bytes.readUInt32LE(at) === crc32Of(bytes, at + 4, end) ? end : -1;
}

const u32 = (bytes: Buffer, at: number): number => (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16)) + bytes[at + 3]! * 0x1000000;

/** The record whose body is bytes[at..end) (a string goes into `strings`), or a reason it is not one. */
function bodyAt(bytes: Buffer, at: number, end: number, strings: string[]): StateRecord | undefined | string {
  const kind = bytes[at]!;
  if (kind === STRING) {
    if (end - at < 5) return 'record too short';
    strings[u32(bytes, at + 1)] = bytes.toString('utf8', at + 5, end);
    return undefined;
  }
  if (kind === INBOUND) {
    if (end - at !== INBOUND_BODY) return 'bad record length';
    const expiresAt = bytes.readDoubleLE(at + 1);
    const querier = strings[u32(bytes, at + 9)], poolAddress = strings[u32(bytes, at + 13)], terminal = strings[u32(bytes, at + 17)];
    if (querier === undefined || poolAddress === undefined || terminal === undefined) return 'names a string that was not read';
    if (!Number.isFinite(expiresAt)) return 'bad time';
    return { kind: 'inbound', binding: { querier, poolAddress, terminal, expiresAt } };
  }
  const proto = bytes[at + 1]!, flags = bytes[at + 2]!;
  if ((kind !== STATE && kind !== HOLD) || (proto !== 6 && proto !== 17) || flags > 3) return 'bad record header';
  if (end - at !== TUPLE_BODY + (kind === STATE ? 4 : 0)) return 'bad record length';
  const time = bytes.readDoubleLE(at + 7);
  const remoteAddress = strings[u32(bytes, at + 15)], localAddress = strings[u32(bytes, at + 19)];
  const terminal = kind === STATE ? strings[u32(bytes, at + 23)] : '';
  if (remoteAddress === undefined || localAddress === undefined || terminal === undefined) return 'names a string that was not read';
  if (!Number.isFinite(time)) return 'bad time';
  const tuple: OutsideTuple = {
    proto: proto as ProtoNumber,
    remoteAddress,
    remotePort: (flags & REMOTE_PORT) !== 0 ? bytes[at + 3]! | (bytes[at + 4]! << 8) : undefined,
    localAddress,
    localPort: bytes[at + 5]! | (bytes[at + 6]! << 8),
  };
  return kind === STATE
    ? { kind: 'state', state: { terminal, tuple, createdAt: time, complete: (flags & COMPLETE) !== 0 } }
    : { kind: 'hold', hold: { tuple, releasedAt: time } };
}

/**
 * The records of a binary snapshot (magic included). A damaged record is reported and reading
 * resumes at the next offset where a whole record checks out; an incomplete last one is torn.
 */
export function decodeSnapshotRecords(bytes: Buffer): DecodedRecords {
  const out: DecodedRecords = { records: [], problems: [], tornBytes: 0 };
  const strings: string[] = [];
  let at = SNAPSHOT_MAGIC.length;
  while (at < bytes.length) {
    const end = wholeAt(bytes, at);
    if (end < 0) {
      const len = bytes.length - at >= HEAD ? bytes[at + 4]! | (bytes[at + 5]! << 8) : 0;
      if (at + HEAD + len > bytes.length && len <= MAX_BODY) {
        out.tornBytes = bytes.length - at;
        break;
      }
      out.problems.push({ offset: at, why: 'checksum mismatch' });
      let next = at + 1;
      while (next < bytes.length && wholeAt(bytes, next) < 0) next++;
      at = next;
      continue;
    }
    const record = bodyAt(bytes, at + HEAD, end, strings);
    if (typeof record === 'string') out.problems.push({ offset: at, why: record });
    else if (record !== undefined) out.records.push(record);
    at = end;
  }
  return out;
}
