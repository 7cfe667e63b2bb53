/**
 * Sets of ports 1024-65535 with rank and "k-th free port" queries in O(log P), so the allocator
 * never scans from 1024. Small sets are a sorted Uint16Array (2 bytes a port); large ones a bitmap
 * with a Fenwick tree of per-word counts (12 KiB whatever the size).
 */

/** The first port a gateway hands out; the well-known ports below it stay reserved. */
export const FIRST_PORT = 1024;
/** Ports a pool address offers to one destination: 64,512. */
export const PORT_COUNT = 65536 - FIRST_PORT;

const WORDS = PORT_COUNT / 32; // 2016 bitmap words
const TOP_STEP = 1024; // highest power of two <= WORDS, where the Fenwick descent starts
/** Above this many ports the bitmap is smaller and a sorted insert too long. */
const DENSE_ABOVE = 2048;
/** Back to sparse below this; the gap keeps a set near the threshold from flapping. */
const SPARSE_BELOW = 512;
const INITIAL_CAPACITY = 4;

export function popcount32(x: number): number {
  let v = x - ((x >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** Bit position of the k-th (0-based) set bit of x; x must have more than k bits set. */
export function selectBit(x: number, k: number): number {
  let word = x >>> 0;
  let rest = k;
  let pos = 0;
  for (let width = 16; width > 0; width >>= 1) {
    const low = popcount32(word & ((1 << width) - 1));
    if (rest >= low) {
      rest -= low;
      word >>>= width;
      pos += width;
    }
  }
  return pos;
}

export class PortSet {
  private count = 0;
  /** Sparse form: port offsets (port - FIRST_PORT) in increasing order, `count` of them used. */
  private list: Uint16Array | undefined = new Uint16Array(INITIAL_CAPACITY);
  /** Dense form: one bit per port offset, and a Fenwick tree (1-based) over the words' popcounts. */
  private bits: Uint32Array | undefined;
  private tree: Uint16Array | undefined;

  get size(): number {
    return this.count;
  }

  has(port: number): boolean {
    const v = port - FIRST_PORT;
    if (this.bits) return (this.bits[v >>> 5]! & (1 << (v & 31))) !== 0;
    const i = this.lowerBound(v);
    return i < this.count && this.list![i] === v;
  }

  /** Adds a port; false if it was already there. */
  add(port: number): boolean {
    const v = port - FIRST_PORT;
    if (this.bits) return this.setBit(v);
    const list = this.list!;
    const i = this.lowerBound(v);
    if (i < this.count && list[i] === v) return false;
    if (this.count === DENSE_ABOVE) {
      this.toDense();
      return this.setBit(v);
    }
    const target = this.count === list.length ? this.resized(list.length * 2) : list;
    target.copyWithin(i + 1, i, this.count);
    target[i] = v;
    this.count++;
    return true;
  }

  /** Removes a port; false if it was not there. */
  delete(port: number): boolean {
    const v = port - FIRST_PORT;
    if (this.bits) {
      if (!this.clearBit(v)) return false;
      if (this.count < SPARSE_BELOW) this.toSparse();
      return true;
    }
    const list = this.list!;
    const i = this.lowerBound(v);
    if (i >= this.count || list[i] !== v) return false;
    list.copyWithin(i, i + 1, this.count);
    this.count--;
    if (list.length > INITIAL_CAPACITY && this.count * 4 <= list.length) this.resized(list.length / 2);
    return true;
  }

  /** How many members are below `port`. */
  rank(port: number): number {
    const v = port - FIRST_PORT;
    if (v <= 0) return 0;
    if (v >= PORT_COUNT) return this.count;
    if (!this.bits) return this.lowerBound(v);
    const w = v >>> 5;
    let sum = popcount32(this.bits[w]! & ((1 << (v & 31)) - 1));
    const tree = this.tree!;
    for (let i = w; i > 0; i &= i - 1) sum += tree[i]!;
    return sum;
  }

  /** The k-th (0-based) port NOT in the set, in increasing order; k < PORT_COUNT - size. */
  selectFree(k: number): number {
    return FIRST_PORT + (this.bits ? this.selectFreeDense(k) : this.selectFreeSparse(k));
  }

  *ports(): IterableIterator<number> {
    if (this.bits) {
      for (let w = 0; w < WORDS; w++) {
        for (let word = this.bits[w]!; word !== 0; word &= word - 1) {
          yield FIRST_PORT + w * 32 + selectBit(word, 0);
        }
      }
      return;
    }
    for (let i = 0; i < this.count; i++) yield FIRST_PORT + this.list![i]!;
  }

  /** Index of the first member >= v (sparse form). */
  private lowerBound(v: number): number {
    const list = this.list!;
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]! < v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The free offset k satisfies: answer = k + (members below it); members' "free before" is list[i] - i. */
  private selectFreeSparse(k: number): number {
    const list = this.list!;
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]! - mid <= k) lo = mid + 1;
      else hi = mid;
    }
    return k + lo;
  }

  private selectFreeDense(k: number): number {
    const tree = this.tree!;
    let rest = k;
    let pos = 0;
    for (let step = TOP_STEP; step > 0; step >>= 1) {
      const next = pos + step;
      if (next > WORDS) continue;
      const free = step * 32 - tree[next]!;
      if (free <= rest) {
        rest -= free;
        pos = next;
      }
    }
    return pos * 32 + selectBit(~this.bits![pos]!, rest);
  }

  private setBit(v: number): boolean {
    const w = v >>> 5;
    const mask = 1 << (v & 31);
    const bits = this.bits!;
    if ((bits[w]! & mask) !== 0) return false;
    bits[w] = bits[w]! | mask;
    const tree = this.tree!;
    for (let i = w + 1; i <= WORDS; i += i & -i) tree[i]!++;
    this.count++;
    return true;
  }

  private clearBit(v: number): boolean {
    const w = v >>> 5;
    const mask = 1 << (v & 31);
    const bits = this.bits!;
    if ((bits[w]! & mask) === 0) return false;
    bits[w] = bits[w]! & ~mask;
    const tree = this.tree!;
    for (let i = w + 1; i <= WORDS; i += i & -i) tree[i]!--;
    this.count--;
    return true;
  }

  private resized(capacity: number): Uint16Array {
    const list = new Uint16Array(capacity);
    list.set(this.list!.subarray(0, this.count));
    this.list = list;
    return list;
  }

  private toDense(): void {
    const bits = new Uint32Array(WORDS);
    const list = this.list!;
    for (let i = 0; i < this.count; i++) bits[list[i]! >>> 5] = bits[list[i]! >>> 5]! | (1 << (list[i]! & 31));
    // Linear-time Fenwick build: each node pushes its sum to its parent.
    const tree = new Uint16Array(WORDS + 1);
    for (let w = 0; w < WORDS; w++) tree[w + 1] = popcount32(bits[w]!);
    for (let i = 1; i <= WORDS; i++) {
      const parent = i + (i & -i);
      if (parent <= WORDS) tree[parent] = tree[parent]! + tree[i]!;
    }
    this.bits = bits;
    this.tree = tree;
    this.list = undefined;
  }

  private toSparse(): void {
    let capacity = INITIAL_CAPACITY;
    while (capacity < this.count * 2) capacity *= 2;
    const list = new Uint16Array(capacity);
    let n = 0;
    for (const port of this.ports()) list[n++] = port - FIRST_PORT;
    this.list = list;
    this.bits = undefined;
    this.tree = undefined;
  }
}

/**
 * The k-th (0-based) port in neither `a` nor `b`, which must be disjoint. A binary search on the
 * port with both ranks: O(log P · log n), used only when partial states share an address.
 */
export function selectFreeInBoth(a: PortSet, b: PortSet, k: number): number {
  let lo = FIRST_PORT + k;
  let hi = 65535;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const freeUpToMid = mid + 1 - FIRST_PORT - a.rank(mid + 1) - b.rank(mid + 1);
    if (freeUpToMid > k) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Ports with a multiplicity: a port stays a member until every add is matched by a delete. */
export class PortMultiset {
  readonly distinct = new PortSet();
  /** Count of the ports added more than once (usually none: it takes several pB on one (aOG, pA)). */
  private readonly repeats = new Map<number, number>();

  add(port: number): void {
    if (!this.distinct.add(port)) this.repeats.set(port, (this.repeats.get(port) ?? 1) + 1);
  }

  delete(port: number): void {
    const n = this.repeats.get(port);
    if (n === undefined) this.distinct.delete(port);
    else if (n === 2) this.repeats.delete(port);
    else this.repeats.set(port, n - 1);
  }
}
