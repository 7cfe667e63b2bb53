/**
 * Inside terminals that hold live allocations: how many (for the quota) and on which pool
 * addresses (for paired pooling). A terminal is forgotten when its last allocation ends.
 */
import { CapaError, invalidArg } from '../../../resolver/lib/errors.js';

export class Terminal {
  live = 0;
  /** Live allocations by pool index, in the order the terminal first got each address. */
  readonly addresses = new Map<number, number>();

  constructor(
    readonly idx: number,
    readonly name: string,
  ) {}
}

export class TerminalRegistry {
  private readonly byName = new Map<string, Terminal>();
  private readonly byIdx: (Terminal | undefined)[] = [];
  private readonly freeIdx: number[] = [];

  get count(): number {
    return this.byName.size;
  }

  find(name: string): Terminal | undefined {
    return this.byName.get(name);
  }

  get(idx: number): Terminal {
    return this.byIdx[idx]!;
  }

  /** Checks that `name` may get one more allocation; its record if it already holds some. */
  admit(name: string, quota: number): Terminal | undefined {
    const terminal = this.byName.get(name);
    if (!terminal) {
      if (typeof name !== 'string' || name === '') throw invalidArg('terminal must be a non-empty string');
    } else if (terminal.live >= quota) {
      throw new CapaError('ERR_CAPA_QUOTA', `terminal ${name} already holds its quota of ${quota} allocations`);
    }
    return terminal;
  }

  /** Counts a new allocation of an admitted terminal on pool address `address`. */
  hold(name: string, address: number): Terminal {
    let terminal = this.byName.get(name);
    if (!terminal) {
      terminal = new Terminal(this.freeIdx.pop() ?? this.byIdx.length, name);
      this.byName.set(name, terminal);
      this.byIdx[terminal.idx] = terminal;
    }
    terminal.live++;
    terminal.addresses.set(address, (terminal.addresses.get(address) ?? 0) + 1);
    return terminal;
  }

  /** Uncounts an allocation on `address`. */
  drop(terminal: Terminal, address: number): void {
    const onAddress = terminal.addresses.get(address)!;
    if (onAddress === 1) terminal.addresses.delete(address);
    else terminal.addresses.set(address, onAddress - 1);
    if (--terminal.live > 0) return;
    this.byName.delete(terminal.name);
    this.byIdx[terminal.idx] = undefined;
    this.freeIdx.push(terminal.idx);
  }
}
