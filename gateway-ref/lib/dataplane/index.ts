/** Data planes by name, so a command line can pick one (`nftables` joins `loopback` later). */
import type { DataPlane } from '../grm/types.js';
import { LoopbackDataPlane } from './loopback.js';

export const DATA_PLANES = ['loopback'] as const;
export type DataPlaneName = (typeof DATA_PLANES)[number];

export function createDataPlane(name: DataPlaneName): DataPlane {
  switch (name) {
    case 'loopback': return new LoopbackDataPlane();
  }
}
