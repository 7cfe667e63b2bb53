/**
 * Live slots by (scope, aOG, pA): an open-addressing hash table of slot numbers (4 bytes an entry,
 * load at most 1/2) whose keys are read back from the slot table's columns.
 */
import type { SlotTable } from './slot-table.js';

const EMPTY = 0; // entries hold slot + 1
const MIN_CAPACITY = 1024;

function hash(scope: number, address: number, port: number): number {
  let h = Math.imul(scope, 0x9e3779b1) ^ Math.imul((address << 16) | port, 0x85ebca77);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return h ^ (h >>> 13);
}

export class TupleIndex {
  private table = new Int32Array(MIN_CAPACITY);
  private mask = MIN_CAPACITY - 1;
  private count = 0;

  constructor(private readonly slots: SlotTable) {}

  /** The slot holding (scope, address, port), or -1. */
  find(scope: number, address: number, port: number): number {
    const { table, mask } = this;
    const s = this.slots;
    for (let i = hash(scope, address, port) & mask; ; i = (i + 1) & mask) {
      const entry = table[i]!;
      if (entry === EMPTY) return -1;
      const slot = entry - 1;
      if (s.port[slot] === port && s.scope[slot] === scope && s.address[slot] === address) return slot;
    }
  }

  /** Indexes a slot under its current columns; its key must not be indexed yet. */
  insert(slot: number): void {
    if ((this.count + 1) * 2 > this.table.length) this.resize(this.table.length * 2);
    this.place(slot);
    this.count++;
  }

  /** Room for `n` entries in all without a resize on the way. */
  reserve(n: number): void {
    let capacity = this.table.length;
    while (n * 2 > capacity) capacity *= 2;
    if (capacity > this.table.length) this.resize(capacity);
  }

  /** Removes a slot (indexed under its current columns). */
  remove(slot: number): void {
    const { table, mask } = this;
    let hole = this.home(slot);
    while (table[hole] !== slot + 1) hole = (hole + 1) & mask;
    // Backward-shift deletion: pull later entries of the run into the hole when their home allows.
    for (let j = (hole + 1) & mask; table[j] !== EMPTY; j = (j + 1) & mask) {
      const home = this.home(table[j]! - 1);
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        table[hole] = table[j]!;
        hole = j;
      }
    }
    table[hole] = EMPTY;
    this.count--;
    if (this.table.length > MIN_CAPACITY && this.count * 8 < this.table.length) this.resize(this.table.length / 2);
  }

  private home(slot: number): number {
    const s = this.slots;
    return hash(s.scope[slot]!, s.address[slot]!, s.port[slot]!) & this.mask;
  }

  private place(slot: number): void {
    let i = this.home(slot);
    while (this.table[i] !== EMPTY) i = (i + 1) & this.mask;
    this.table[i] = slot + 1;
  }

  private resize(capacity: number): void {
    const old = this.table;
    this.table = new Int32Array(capacity);
    this.mask = capacity - 1;
    for (const entry of old) if (entry !== EMPTY) this.place(entry - 1);
  }
}
