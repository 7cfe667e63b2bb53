/** Wire constants of the CAPA contract (../shared/DESIGN.md, "The CAPA record"). */
import { CapaError } from './errors.js';

/** RR type of CAPA: RFC 6895 private use. Override with the CAPA_RRTYPE environment variable. */
export const DEFAULT_CAPA_RRTYPE = 65280;

export function capaRrtype(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.CAPA_RRTYPE;
  if (raw === undefined || raw === '') return DEFAULT_CAPA_RRTYPE;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    throw new CapaError('ERR_CAPA_CONFIG', `CAPA_RRTYPE must be an RR type number 1-65535, got "${raw}"`);
  }
  return n;
}

const DEFAULT_TYPE_NAME = `UNKNOWN_${DEFAULT_CAPA_RRTYPE}`;

/** dns-packet maps unknown type names to 0, so CAPA is always named by number. */
export function dnsPacketTypeName(rrtype: number): string {
  return rrtype === DEFAULT_CAPA_RRTYPE ? DEFAULT_TYPE_NAME : `UNKNOWN_${rrtype}`;
}

export const IPPROTO = { any: 0, tcp: 6, udp: 17 } as const;
export type Protocol = 'tcp' | 'udp';

export const RDLENGTH_V4 = 8;
export const RDLENGTH_V6 = 20;

/** EDNS(0) payload size advertised in queries (DNS flag day 2020). */
export const EDNS_PAYLOAD = 1232;

/** Extended DNS Error info-codes (RFC 8914) used by CAPA. */
export const EDE = {
  PROHIBITED: 18,
  POOL_EXHAUSTED: 49152,
  QUOTA_EXCEEDED: 49153,
} as const;

export const EDE_OPTION_CODE = 15;

export const EDE_TEXT = {
  [EDE.POOL_EXHAUSTED]: 'CAPA pool exhausted',
  [EDE.QUOTA_EXCEEDED]: 'CAPA quota exceeded',
} as const;
