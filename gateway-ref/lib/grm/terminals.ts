/**
 * Inside terminals that hold live allocations: how many (for the quota) and on which pool
 * addresses (for paired pooling). A terminal whose last allocation ended is forgotten in a later
 * sweep rather than at once, so one making a flow at a time does not churn the table.
 */
import { CapaError, invalidArg } from '../../../resolver/codec/errors.js';

/** Idle terminals kept at least, before a sweep; beyond it, at most as many idle as in use. */
const IDLE_FLOOR = 1024;

export class Terminal {
  live = 0;
  /** Pool indexes the terminal has held since its record was made, in the order it first got each:
   * paired pooling prefers them, live flows or not, until an idle record is swept. */
  readonly addresses: number[] = [];

  constructor(
    readonly idx: number,
    readonly name: string,
  ) {}
}

export class TerminalRegistry {
  private readonly byName = new Map<string, Terminal>();
  private readonly byIdx: (Terminal | undefined)[] = [];
  private readonly freeIdx: number[] = [];
  private idle = 0;

  /** Terminals holding at least one live allocation. */
  get count(): number {
    return this.byName.size - this.idle;
  }

  find(name: string): Terminal | undefined {
    return this.byName.get(name);
  }

  get(idx: number): Terminal {
    return this.byIdx[idx]!;
  }

  /** Checks that `name` may get one more allocation; its record if it has one. */
  admit(name: string, quota: number): Terminal | undefined {
    const terminal = this.byName.get(name);
    if (!terminal) {
      if (typeof name !== 'string' || name === '') throw invalidArg('terminal must be a non-empty string');
    } else if (terminal.live >= quota) {
      throw new CapaError('ERR_CAPA_QUOTA', `terminal ${name} already holds its quota of ${quota} allocations`);
    }
    return terminal;
  }

  /** Counts a new allocation on pool address `address` of an admitted terminal (`known`: its record). */
  hold(name: string, known: Terminal | undefined, address: number): Terminal {
    let terminal = known;
    if (!terminal) {
      terminal = new Terminal(this.freeIdx.pop() ?? this.byIdx.length, name);
      this.byName.set(name, terminal);
      this.byIdx[terminal.idx] = terminal;
    } else if (terminal.live === 0) {
      this.idle--;
    }
    terminal.live++;
    if (!terminal.addresses.includes(address)) terminal.addresses.push(address);
    return terminal;
  }

  /** Uncounts an allocation. */
  drop(terminal: Terminal): void {
    if (--terminal.live > 0) return;
    this.idle++;
    if (this.idle > IDLE_FLOOR && this.idle * 2 > this.byName.size) this.sweep();
  }

  private sweep(): void {
    for (const terminal of this.byName.values()) {
      if (terminal.live > 0) continue;
      this.byName.delete(terminal.name);
      this.byIdx[terminal.idx] = undefined;
      this.freeIdx.push(terminal.idx);
    }
    this.idle = 0;
  }
}
