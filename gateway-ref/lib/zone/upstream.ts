/** Forwarding of A/AAAA lookups for names outside the zone to an optional upstream DNS server. */
import { canonicalIp } from '../../../resolver/lib/ip.js';
import { encodeQuery } from '../../../resolver/lib/message.js';
import type { ServerAddress } from '../../../resolver/lib/servers.js';
import { exchange } from '../../../resolver/lib/transport.js';
import type { DataRecord } from './zone-file.js';
import type { AddressType } from './zone.js';

export interface LookupResult {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL';
  /** CNAME chain, then the A/AAAA records (empty with NOERROR: NODATA). */
  records: DataRecord[];
  /** True when the data comes from our own zone. */
  authoritative: boolean;
}

export const DEFAULT_UPSTREAM_TIMEOUT_MS = 2000;

function toDataRecord(rr: { name: string; type: string; ttl?: number; data?: unknown }): DataRecord | undefined {
  if (typeof rr.data !== 'string') return undefined;
  const base = { name: rr.name.replace(/\.$/, '').toLowerCase(), ttl: rr.ttl ?? 0 };
  if (rr.type === 'A' || rr.type === 'AAAA') return { ...base, type: rr.type, data: canonicalIp(rr.data) };
  if (rr.type === 'CNAME') return { ...base, type: 'CNAME', data: rr.data.replace(/\.$/, '').toLowerCase() };
  return undefined;
}

export class Upstream {
  constructor(readonly server: ServerAddress, private readonly timeoutMs = DEFAULT_UPSTREAM_TIMEOUT_MS) {}

  /** Never throws: an unreachable or failing upstream is SERVFAIL, as a forwarder reports it. */
  async lookup(name: string, type: AddressType): Promise<LookupResult> {
    try {
      const reply = await exchange({
        server: this.server,
        encode: (id) => encodeQuery({ id, name, type, rd: true }),
        question: { name, type, class: 'IN' },
        timeoutMs: this.timeoutMs,
      });
      const { rcode, answers } = reply.message;
      if (rcode !== 'NOERROR' && rcode !== 'NXDOMAIN') return { rcode: 'SERVFAIL', records: [], authoritative: false };
      const records = answers.map(toDataRecord).filter((r): r is DataRecord => r !== undefined);
      return { rcode, records, authoritative: false };
    } catch {
      return { rcode: 'SERVFAIL', records: [], authoritative: false };
    }
  }
}
