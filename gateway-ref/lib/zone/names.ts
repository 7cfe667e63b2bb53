/** Name data as the GRM sees it: its own zone first, then the optional upstream. */
import type { LookupResult, Upstream } from './upstream.js';
import type { AddressType, Zone } from './zone.js';

export class Names {
  constructor(private readonly zone: Zone, private readonly upstream?: Upstream) {}

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
    if (local === undefined) {
      return upstream ? upstream.lookup(name, type) : { rcode: 'NXDOMAIN', records: [], authoritative: true };
    }
    if (local.outsideTarget === undefined || upstream === undefined) {
      return { rcode: 'NOERROR', records: local.records, authoritative: true };
    }
    const rest = await upstream.lookup(local.outsideTarget, type);
    return { rcode: rest.rcode, records: [...local.records, ...rest.records], authoritative: false };
  }
}
