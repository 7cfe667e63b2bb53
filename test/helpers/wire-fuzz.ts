/**
 * Mutation fuzzing of DNS messages for the codec tests: a seeded PRNG (failures reproduce from the
 * printed seed), structure-blind and structure-aware mutators, and an independent message walker
 * that shares no code with resolver/lib/validate.ts.
 */

/** mulberry32: small, fast, good enough to drive mutations; the same seed gives the same stream. */
export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

export interface WalkedRecord {
  section: 'answer' | 'authority' | 'additional';
  /** Offset of the owner name. */
  nameOffset: number;
  /** Owner name as dot-joined labels ('.' for the root), labels decoded as UTF-8. */
  name: string;
  /** Offset of the TYPE field. */
  typeOffset: number;
  type: number;
  rdataOffset: number;
  rdlength: number;
}

export interface Walk {
  questions: { name: string; type: number }[];
  records: WalkedRecord[];
}

/**
 * Walks a message by its counts and RDLENGTHs only. Returns undefined when any part lies outside
 * the buffer or bytes are left over. Pointers are followed with a hop budget instead of the
 * validator's ordering rule, so the two decide independently.
 */
export function walkMessage(buf: Uint8Array): Walk | undefined {
  if (buf.length < 12) return undefined;
  const count = (at: number): number => buf[at]! * 256 + buf[at + 1]!;
  const walk: Walk = { questions: [], records: [] };
  let off = 12;
  for (let i = count(4); i > 0; i--) {
    const name = readName(buf, off);
    if (name === undefined || name.end + 4 > buf.length) return undefined;
    walk.questions.push({ name: name.text, type: count(name.end) });
    off = name.end + 4;
  }
  const sections = [
    ['answer', count(6)], ['authority', count(8)], ['additional', count(10)],
  ] as const;
  for (const [section, n] of sections) {
    for (let i = 0; i < n; i++) {
      const name = readName(buf, off);
      if (name === undefined || name.end + 10 > buf.length) return undefined;
      const rdlength = count(name.end + 8);
      const rdataOffset = name.end + 10;
      if (rdataOffset + rdlength > buf.length) return undefined;
      walk.records.push({
        section, nameOffset: off, name: name.text, typeOffset: name.end, type: count(name.end), rdataOffset, rdlength,
      });
      off = rdataOffset + rdlength;
    }
  }
  return off === buf.length ? walk : undefined;
}

function readName(buf: Uint8Array, start: number): { text: string; end: number } | undefined {
  const labels: string[] = [];
  let off = start;
  let end = -1;
  for (let hops = 0; hops < 128; hops++) {
    if (off >= buf.length) return undefined;
    const len = buf[off]!;
    if (len >= 0xc0) {
      if (off + 1 >= buf.length) return undefined;
      if (end < 0) end = off + 2;
      off = ((len & 0x3f) << 8) | buf[off + 1]!;
    } else if (len === 0) {
      return { text: labels.length === 0 ? '.' : labels.join('.'), end: end < 0 ? off + 1 : end };
    } else {
      if (len > 63 || off + 1 + len > buf.length) return undefined;
      labels.push(Buffer.from(buf.subarray(off + 1, off + 1 + len)).toString('utf8'));
      off += 1 + len;
    }
  }
  return undefined;
}

/** Types whose RDATA dns-packet reads field by field, plus CAPA and an opaque one. */
export const INTERESTING_TYPES = [
  1, 2, 5, 6, 10, 12, 13, 15, 16, 17, 28, 33, 35, 39, 41, 43, 44, 46, 47, 48, 50, 52, 257, 4660, 65280,
] as const;

const INTERESTING_BYTES = [0x00, 0x01, 0x03, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xff] as const;

type Mutator = (buf: Buffer, rng: Prng) => Buffer;

function put16(buf: Buffer, at: number, value: number): Buffer {
  if (at + 2 <= buf.length) buf.writeUInt16BE(value & 0xffff, at);
  return buf;
}

const MUTATORS: readonly Mutator[] = [
  function bitFlip(buf, rng) {
    if (buf.length > 0) buf[rng.below(buf.length)]! ^= 1 << rng.below(8);
    return buf;
  },
  function byteSet(buf, rng) {
    if (buf.length > 0) buf[rng.below(buf.length)] = rng.below(2) ? rng.pick(INTERESTING_BYTES) : rng.below(256);
    return buf;
  },
  function truncate(buf, rng) {
    return buf.subarray(0, rng.below(buf.length + 1));
  },
  function insert(buf, rng) {
    const at = rng.below(buf.length + 1);
    const extra = Buffer.from(Array.from({ length: 1 + rng.below(8) }, () => rng.below(256)));
    return Buffer.concat([buf.subarray(0, at), extra, buf.subarray(at)]);
  },
  function remove(buf, rng) {
    const at = rng.below(buf.length + 1);
    return Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + rng.below(8))]);
  },
  function countBump(buf, rng) {
    const at = 4 + 2 * rng.below(4);
    if (buf.length < at + 2) return buf;
    return put16(buf, at, buf.readUInt16BE(at) + rng.pick([-1, 1, 2, 0x7fff]));
  },
  function pointer(buf, rng) {
    const at = rng.below(buf.length + 1);
    return put16(buf, at, 0xc000 | rng.below(Math.max(buf.length + 16, 13)));
  },
  function retype(buf, rng) {
    const walk = walkMessage(buf);
    if (walk === undefined || walk.records.length === 0) return put16(buf, rng.below(buf.length), rng.pick(INTERESTING_TYPES));
    return put16(buf, rng.pick(walk.records).typeOffset, rng.pick(INTERESTING_TYPES));
  },
  function rdlength(buf, rng) {
    const walk = walkMessage(buf);
    if (walk === undefined || walk.records.length === 0) return buf;
    const rr = rng.pick(walk.records);
    return put16(buf, rr.rdataOffset - 2, rr.rdlength + rng.pick([-3, -2, -1, 1, 2, 12]));
  },
];

/** One to three random mutations of a copy of seed. */
export function mutate(seed: Uint8Array, rng: Prng): Buffer {
  let buf = Buffer.from(seed);
  for (let n = 1 + rng.below(3); n > 0; n--) buf = Buffer.from(rng.pick(MUTATORS)(buf, rng));
  return buf;
}
