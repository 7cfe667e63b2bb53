/**
 * Released (scope, aOG, pA) waiting out their hold-down. The hold-down is the same for all, so
 * release order is expiry order and a FIFO ring (16 bytes an entry) suffices.
 */

const INITIAL_CAPACITY = 256;

export interface HeldPort {
  scope: number;
  address: number;
  port: number;
}

export class HoldDownQueue {
  private scope = new Uint32Array(INITIAL_CAPACITY);
  private address = new Uint16Array(INITIAL_CAPACITY);
  private port = new Uint16Array(INITIAL_CAPACITY);
  private releasedAt = new Float64Array(INITIAL_CAPACITY);
  private head = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(scope: number, address: number, port: number, releasedAt: number): void {
    if (this.count === this.scope.length) this.grow();
    const i = (this.head + this.count) & (this.scope.length - 1);
    this.scope[i] = scope;
    this.address[i] = address;
    this.port[i] = port;
    this.releasedAt[i] = releasedAt;
    this.count++;
  }

  /** Every entry, oldest first, without removing them. */
  *entries(): IterableIterator<HeldPort & { releasedAt: number }> {
    const mask = this.scope.length - 1;
    for (let n = 0; n < this.count; n++) {
      const i = (this.head + n) & mask;
      yield { scope: this.scope[i]!, address: this.address[i]!, port: this.port[i]!, releasedAt: this.releasedAt[i]! };
    }
  }

  /** Removes and passes on, oldest first, every entry released at or before `releasedBy`. */
  drain(releasedBy: number, free: (held: HeldPort) => void): void {
    const held: HeldPort = { scope: 0, address: 0, port: 0 };
    const mask = this.scope.length - 1;
    while (this.count > 0 && this.releasedAt[this.head]! <= releasedBy) {
      held.scope = this.scope[this.head]!;
      held.address = this.address[this.head]!;
      held.port = this.port[this.head]!;
      this.head = (this.head + 1) & mask;
      this.count--;
      free(held);
    }
  }

  private grow(): void {
    const capacity = this.scope.length * 2;
    const scope = new Uint32Array(capacity);
    const address = new Uint16Array(capacity);
    const port = new Uint16Array(capacity);
    const releasedAt = new Float64Array(capacity);
    for (let n = 0; n < this.count; n++) {
      const i = (this.head + n) & (this.scope.length - 1);
      scope[n] = this.scope[i]!;
      address[n] = this.address[i]!;
      port[n] = this.port[i]!;
      releasedAt[n] = this.releasedAt[i]!;
    }
    this.scope = scope;
    this.address = address;
    this.port = port;
    this.releasedAt = releasedAt;
    this.head = 0;
  }
}
