/**
 * The live allocations, one slot each, stored column-wise in typed arrays (33 bytes a slot) so a
 * million states cost tens of megabytes rather than a million objects. Also keeps the pending
 * slots in a list ordered by creation, which is lease order since the lease is constant.
 */

/** Slots per generation: ids are generation * SLOT_LIMIT + slot, below 2^52. */
const SLOT_LIMIT = 2 ** 26;
const INITIAL_CAPACITY = 1024;
const LIVE = 1;
const PENDING = 2;
const NONE = -1;

export class SlotTable {
  terminal = new Uint32Array(INITIAL_CAPACITY);
  scope = new Uint32Array(INITIAL_CAPACITY);
  /** Index of aOG in the pool. */
  address = new Uint16Array(INITIAL_CAPACITY);
  /** pA. */
  port = new Uint16Array(INITIAL_CAPACITY);
  createdAt = new Float64Array(INITIAL_CAPACITY);
  private flags = new Uint8Array(INITIAL_CAPACITY);
  /** Bumped at each reuse of a slot, so a stale id never names the slot's next occupant. */
  private generation = new Uint32Array(INITIAL_CAPACITY);
  private prev = new Int32Array(INITIAL_CAPACITY);
  /** Pending-list successor of a pending slot; free-list successor of a free slot. */
  private next = new Int32Array(INITIAL_CAPACITY);

  private used = 0; // slots ever handed out (high-water mark)
  private freeHead = NONE;
  private liveCount = 0;
  private pendingHead = NONE;
  private pendingTail = NONE;
  private pendingCount = 0;

  get live(): number {
    return this.liveCount;
  }

  get pending(): number {
    return this.pendingCount;
  }

  /** A free slot, marked live; the caller fills its columns. */
  acquire(): number {
    let slot = this.freeHead;
    if (slot !== NONE) {
      this.freeHead = this.next[slot]!;
    } else {
      if (this.used === SLOT_LIMIT) throw new RangeError(`more than ${SLOT_LIMIT} live allocations`);
      if (this.used === this.flags.length) this.grow(this.flags.length * 2);
      slot = this.used++;
    }
    this.generation[slot] = (this.generation[slot]! % (SLOT_LIMIT - 1)) + 1;
    this.flags[slot] = LIVE;
    this.liveCount++;
    return slot;
  }

  /** Frees a live slot (unlinking it from the pending list first). */
  release(slot: number): void {
    if (this.isPending(slot)) this.makeComplete(slot);
    this.flags[slot] = 0;
    this.next[slot] = this.freeHead;
    this.freeHead = slot;
    this.liveCount--;
  }

  id(slot: number): number {
    return this.generation[slot]! * SLOT_LIMIT + slot;
  }

  /** The live slot an id names, or -1. */
  slotOf(id: number): number {
    if (!Number.isSafeInteger(id) || id < 0) return NONE;
    const slot = id % SLOT_LIMIT;
    if (slot >= this.used || (this.flags[slot]! & LIVE) === 0) return NONE;
    return this.generation[slot] === (id - slot) / SLOT_LIMIT ? slot : NONE;
  }

  isPending(slot: number): boolean {
    return (this.flags[slot]! & PENDING) !== 0;
  }

  /** Marks a live slot pending, last in lease order. */
  makePending(slot: number): void {
    this.flags[slot] = LIVE | PENDING;
    this.prev[slot] = this.pendingTail;
    this.next[slot] = NONE;
    if (this.pendingTail === NONE) this.pendingHead = slot;
    else this.next[this.pendingTail] = slot;
    this.pendingTail = slot;
    this.pendingCount++;
  }

  /** pending -> complete: leaves the lease list. */
  makeComplete(slot: number): void {
    const before = this.prev[slot]!;
    const after = this.next[slot]!;
    if (before === NONE) this.pendingHead = after;
    else this.next[before] = after;
    if (after === NONE) this.pendingTail = before;
    else this.prev[after] = before;
    this.flags[slot] = LIVE;
    this.pendingCount--;
  }

  /** The oldest pending slot, or -1. */
  oldestPending(): number {
    return this.pendingHead;
  }

  *liveSlots(): IterableIterator<number> {
    for (let slot = 0; slot < this.used; slot++) if ((this.flags[slot]! & LIVE) !== 0) yield slot;
  }

  /** Room for `n` slots in all, made at once (a restart knows how many states come back). */
  reserve(n: number): void {
    let capacity = this.flags.length;
    while (capacity < Math.min(n, SLOT_LIMIT)) capacity *= 2;
    if (capacity > this.flags.length) this.grow(capacity);
  }

  private grow(capacity: number): void {
    const widen = <T extends Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array>(
      old: T,
      make: (n: number) => T,
    ): T => {
      const wider = make(capacity);
      wider.set(old);
      return wider;
    };
    this.terminal = widen(this.terminal, (n) => new Uint32Array(n));
    this.scope = widen(this.scope, (n) => new Uint32Array(n));
    this.address = widen(this.address, (n) => new Uint16Array(n));
    this.port = widen(this.port, (n) => new Uint16Array(n));
    this.createdAt = widen(this.createdAt, (n) => new Float64Array(n));
    this.flags = widen(this.flags, (n) => new Uint8Array(n));
    this.generation = widen(this.generation, (n) => new Uint32Array(n));
    this.prev = widen(this.prev, (n) => new Int32Array(n));
    this.next = widen(this.next, (n) => new Int32Array(n));
  }
}
