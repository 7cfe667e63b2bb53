/** Data planes by name, so a command line can pick one. */
import { CapaError } from '../../../resolver/codec/errors.js';
import type { DataPlane } from '../grm/types.js';
import { LoopbackDataPlane } from './loopback.js';
import { parseLinkSpecs } from './nft-rules.js';
import { NftablesDataPlane } from './nftables.js';

export const DATA_PLANES = ['loopback', 'nftables'] as const;
export type DataPlaneName = (typeof DATA_PLANES)[number];

export interface DataPlaneSettings {
  /** Pool addresses (the nftables driver drops inside-bound traffic to them that matches no state). */
  pool: string[];
  /** nftables: ADDRESS=IFNAME per terminal link (--nft-link). */
  nftLinks?: string[];
  /** Lease of a pending state: loopback looks for a new flow's socket well within it. */
  leaseMs?: number;
}

/** Loopback's longest wait between socket-table reads, and its share of the lease. */
const LOOPBACK_MAX_POLL_MS = 1000;
const LOOPBACK_LEASE_SHARE = 4;

export function createDataPlane(name: DataPlaneName, settings: DataPlaneSettings): DataPlane {
  switch (name) {
    case 'loopback':
      return new LoopbackDataPlane({ pool: settings.pool, maxPollMs: Math.min(LOOPBACK_MAX_POLL_MS, (settings.leaseMs ?? Infinity) / LOOPBACK_LEASE_SHARE) });
    case 'nftables':
      if (!settings.nftLinks?.length) {
        throw new CapaError('ERR_CAPA_CONFIG', '--data-plane nftables needs the terminal links: --nft-link <terminal address>=<gateway-side interface>, one per terminal');
      }
      return new NftablesDataPlane({ links: parseLinkSpecs(settings.nftLinks), pool: settings.pool });
  }
}
