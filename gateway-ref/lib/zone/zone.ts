/** The GRM's zone: A/AAAA/CNAME data by owner, looked up with CNAME chasing inside the zone. Pure. */
import { CapaError } from '../../../resolver/codec/errors.js';
import type { ZoneRecord } from './zone-file.js';
import { BoundedMap } from '../../../resolver/codec/bounded-map.js';

export type AddressType = 'A' | 'AAAA';

export interface ZoneAnswer {
  /** The CNAME chain followed (in order), then the records of the asked type (empty: NODATA). */
  records: ZoneRecord[];
  /** Set when the chain leaves the zone: the name still to be resolved elsewhere. */
  outsideTarget?: string;
}

export class Zone {
  private readonly byName = new Map<string, ZoneRecord[]>();
  /**
   * Answers (null: no such name) by type and by the name as asked, built at their first lookup:
   * the zone never changes, and every CAPA query looks one up. Keyed by the name as given so a
   * lookup builds no string. Bounded, as askers choose the names; a full table starts over.
   */
  private readonly answers: Record<AddressType, BoundedMap<string, Readonly<ZoneAnswer> | null>> = { A: new BoundedMap(4096), AAAA: new BoundedMap(4096) };

  /**
   * Throws ERR_CAPA_CONFIG "<file>:<line>: ..." for a CNAME beside other data (RFC 1034 §3.6.2)
   * and for CNAME loops.
   */
  constructor(records: readonly ZoneRecord[], private readonly file = '<zone>') {
    for (const record of records) {
      const list = this.byName.get(record.name);
      if (list === undefined) { this.byName.set(record.name, [record]); continue; }
      if (record.type === 'CNAME' || list[0]!.type === 'CNAME') {
        throw this.configError(record, `${record.name} has a CNAME and other data; a CNAME must stand alone`);
      }
      list.push(record);
    }
    for (const list of this.byName.values()) if (list[0]!.type === 'CNAME') this.checkChain(list[0]!);
  }

  private configError(record: ZoneRecord, message: string): CapaError {
    return new CapaError('ERR_CAPA_CONFIG', `${this.file}:${record.line}: ${message}`);
  }

  private checkChain(start: ZoneRecord): void {
    const seen = new Set<string>([start.name]);
    for (let cname = this.cnameOf(start.name); cname !== undefined; cname = this.cnameOf(cname.data)) {
      if (seen.has(cname.data)) throw this.configError(start, `CNAME loop through ${cname.data}`);
      seen.add(cname.data);
    }
  }

  private cnameOf(name: string): ZoneRecord | undefined {
    const first = this.byName.get(name)?.[0];
    return first?.type === 'CNAME' ? first : undefined;
  }

  /** Undefined when the zone has no such name (NXDOMAIN here, or a question for the upstream). */
  lookup(name: string, type: AddressType): Readonly<ZoneAnswer> | undefined {
    const known = this.answers[type];
    let answer = known.get(name);
    if (answer === undefined) {
      const owner = (name.endsWith('.') ? name.slice(0, -1) : name).toLowerCase();
      answer = this.byName.has(owner) ? Object.freeze(this.answer(owner, type)) : null;
      known.set(name, answer);
    }
    return answer ?? undefined;
  }

  private answer(owner: string, type: AddressType): ZoneAnswer {
    let current = owner;
    const chain: ZoneRecord[] = [];
    for (let cname = this.cnameOf(current); cname !== undefined; cname = this.cnameOf(current)) {
      chain.push(cname);
      current = cname.data;
    }
    const records = this.byName.get(current);
    if (records === undefined) return { records: chain, outsideTarget: current };
    return { records: [...chain, ...records.filter((r) => r.type === type)] };
  }
}
