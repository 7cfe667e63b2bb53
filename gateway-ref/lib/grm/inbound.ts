/**
 * Inbound (public-initiated) bindings, DESIGN.md "Inbound": an A/AAAA query from the outside
 * realm for an inside terminal's name binds a pool address to (querier, terminal), so that the
 * querier's packets to that address reach the terminal. For one querier a pool address names at
 * most one terminal; different queriers may share an address. Pure: injected clock.
 */
import { CapaError, invalidArg } from '../../../resolver/codec/errors.js';
import { ipFamily } from '../../../resolver/codec/ip.js';
import type { JournaledBinding } from './state-records.js';

export interface InboundOptions {
  /** How long a binding lasts after its last query. */
  ttlMs: number;
  now: () => number;
}

interface Binding {
  querier: string;
  terminal: string;
  family: 4 | 6;
  address: string;
  expiresAt: number;
}

function pairKey(querier: string, terminal: string, family: 4 | 6): string {
  return `${family} ${querier} ${terminal}`;
}

export class InboundBindings {
  private readonly pool: Record<4 | 6, string[]> = { 4: [], 6: [] };
  private readonly cursor: Record<4 | 6, number> = { 4: 0, 6: 0 };
  /** querier -> pool address -> binding. */
  private readonly byQuerier = new Map<string, Map<string, Binding>>();
  private readonly byPair = new Map<string, Binding>();

  constructor(
    pool: string[],
    private readonly options: InboundOptions,
  ) {
    for (const address of pool) {
      const family = ipFamily(address);
      if (family === 0) throw new CapaError('ERR_CAPA_CONFIG', `pool entry is not an IP address: "${address}"`);
      this.pool[family].push(address);
    }
    if (!Number.isFinite(options.ttlMs) || options.ttlMs <= 0) {
      throw new CapaError('ERR_CAPA_CONFIG', `inbound binding TTL must be a positive number of milliseconds, got ${options.ttlMs}`);
    }
  }

  /**
   * The pool address (of `family`: 4 answers an A query, 6 an AAAA) through which `querier`
   * reaches `terminal`; binds one, rotating over the pool, or renews the existing binding.
   * Throws ERR_CAPA_EXHAUSTED when every such address is already bound for this querier.
   */
  bind(querier: string, terminal: string, family: 4 | 6 = 4): string {
    if (ipFamily(querier) === 0) throw invalidArg(`querier is not an IP address: "${querier}"`);
    if (typeof terminal !== 'string' || terminal === '') throw invalidArg('terminal must be a non-empty string');
    const now = this.options.now();
    const expiresAt = now + this.options.ttlMs;
    const existing = this.live(this.byPair.get(pairKey(querier, terminal, family)), now);
    if (existing) {
      existing.expiresAt = expiresAt;
      return existing.address;
    }
    const members = this.pool[family];
    for (let tries = 0; tries < members.length; tries++) {
      const address = members[this.cursor[family]]!;
      this.cursor[family] = (this.cursor[family] + 1) % members.length;
      if (this.live(this.byQuerier.get(querier)?.get(address), now)) continue;
      this.insert({ querier, terminal, family, address, expiresAt });
      return address;
    }
    throw new CapaError(
      'ERR_CAPA_EXHAUSTED',
      `every IPv${family} pool address (${members.length}) is already bound to another terminal for querier ${querier}`,
    );
  }

  /** The terminal `querier` reaches through `poolAddress`, if bound and not expired. */
  lookup(querier: string, poolAddress: string): string | undefined {
    return this.live(this.byQuerier.get(querier)?.get(poolAddress), this.options.now())?.terminal;
  }

  /** Forgets the bindings whose TTL has run out. */
  expire(): void {
    const now = this.options.now();
    for (const binding of this.byPair.values()) this.live(binding, now);
  }

  get size(): number {
    return this.byPair.size;
  }

  /** The live bindings, as the state journal keeps them. */
  *bindings(): IterableIterator<JournaledBinding> {
    const now = this.options.now();
    for (const b of this.byPair.values()) if (b.expiresAt > now) yield { querier: b.querier, poolAddress: b.address, terminal: b.terminal, expiresAt: b.expiresAt };
  }

  /**
   * Puts back a binding the state journal remembers, with its expiry; false (nothing done) when
   * it has expired, its address is not in the pool, or the querier's address is bound already.
   */
  restore(binding: JournaledBinding): boolean {
    const family = ipFamily(binding.poolAddress);
    if (family === 0 || binding.expiresAt <= this.options.now() || !this.pool[family].includes(binding.poolAddress)) return false;
    if (this.byQuerier.get(binding.querier)?.has(binding.poolAddress) || this.byPair.has(pairKey(binding.querier, binding.terminal, family))) return false;
    this.insert({ querier: binding.querier, terminal: binding.terminal, family, address: binding.poolAddress, expiresAt: binding.expiresAt });
    return true;
  }

  private insert(binding: Binding): void {
    this.byPair.set(pairKey(binding.querier, binding.terminal, binding.family), binding);
    let addresses = this.byQuerier.get(binding.querier);
    if (!addresses) this.byQuerier.set(binding.querier, (addresses = new Map()));
    addresses.set(binding.address, binding);
  }

  /** The binding if still live; an expired one is forgotten on sight. */
  private live(binding: Binding | undefined, now: number): Binding | undefined {
    if (!binding || binding.expiresAt > now) return binding;
    this.unbind(binding);
    return undefined;
  }

  private unbind(binding: Binding): void {
    this.byPair.delete(pairKey(binding.querier, binding.terminal, binding.family));
    const addresses = this.byQuerier.get(binding.querier)!;
    addresses.delete(binding.address);
    if (addresses.size === 0) this.byQuerier.delete(binding.querier);
  }
}
