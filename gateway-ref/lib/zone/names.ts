/** Name data as the GRM sees it: its own zone first, then the optional upstream. */
import type { LookupResult, Upstream } from './upstream.js';
import type { AddressType, Zone, ZoneAnswer } from './zone.js';

const NOT_IN_ZONE: LookupResult = Object.freeze({ rcode: 'NXDOMAIN', records: [], authoritative: true });

export class Names {
  /** The result of each zone answer, made once: the zone's answers are themselves made once, and a GRM looks one up per query. */
  private readonly results = new WeakMap<Readonly<ZoneAnswer>, LookupResult>();

  constructor(private zone: Zone, private readonly upstream?: Upstream) {}

  /** Serves `zone` from now on (a reload); the GRM's states are not touched. */
  replaceZone(zone: Zone): void {
    this.zone = zone;
  }

  get recursive(): boolean {
    return this.upstream !== undefined;
  }

  /**
   * A/AAAA data of `name`. `forward` allows asking the upstream (for names outside the zone, or a
   * CNAME chain leaving it); without it, or without an upstream, unknown names are NXDOMAIN.
   */
  async lookup(name: string, type: AddressType, forward: boolean): Promise<LookupResult> {
    const local = this.zone.lookup(name, type);
    const upstream = forward ? this.upstream : undefined;
    if (local === undefined) return upstream ? upstream.lookup(name, type) : NOT_IN_ZONE;
    if (local.outsideTarget === undefined || upstream === undefined) {
      let result = this.results.get(local);
      if (result === undefined) {
        result = Object.freeze({ rcode: 'NOERROR', records: local.records, authoritative: true });
        this.results.set(local, result);
      }
      return result;
    }
    const rest = await upstream.lookup(local.outsideTarget, type);
    return { rcode: rest.rcode, records: [...local.records, ...rest.records], authoritative: false };
  }
}
