#!/usr/bin/env node
/**
 * The lab's gateway process, run by `capa-lab up` inside the gateway namespace: the reference
 * GRM and DNS front end (startGateway) with the `nftables` data plane on the lab's links.
 * Its one argument is the JSON configuration capa-lab wrote (LabGatewayConfig).
 */
import { readFileSync } from 'node:fs';
import { formatServer } from '../../resolver/lib/servers.js';
import { NftablesDataPlane } from '../lib/dataplane/nftables.js';
import { parseLinkSpecs } from '../lib/dataplane/nft-rules.js';
import { parseListen, startGateway } from '../lib/gateway.js';
import { parsePool } from '../lib/grm/pool.js';
import type { PortStrategy } from '../lib/grm/types.js';

export interface LabGatewayConfig {
  listen: string;
  pool: string;
  inside: string[];
  zoneFile: string;
  /** ADDRESS=IFNAME per terminal. */
  links: string[];
  portStrategy: PortStrategy;
  leaseSeconds: number;
  holdDownSeconds: number;
  logFile: string;
}

async function main(): Promise<void> {
  const file = process.argv[2];
  if (file === undefined) throw new Error('usage: lab-gateway <config.json>');
  const config = JSON.parse(readFileSync(file, 'utf8')) as LabGatewayConfig;
  const pool = parsePool(config.pool);
  const gateway = await startGateway({
    listen: parseListen(config.listen),
    pool,
    inside: config.inside,
    zoneFile: config.zoneFile,
    portStrategy: config.portStrategy,
    leaseSeconds: config.leaseSeconds,
    holdDownSeconds: config.holdDownSeconds,
    logFile: config.logFile,
    dataPlane: new NftablesDataPlane({ links: parseLinkSpecs(config.links), pool }),
  });
  process.stdout.write(`capa-gateway listening on ${formatServer(gateway.listen)} (udp+tcp), pool ${pool.length} addresses, data plane nftables\n`);
  const stop = (): void => {
    gateway.close().then(() => process.exit(0), (err: unknown) => {
      process.stderr.write(`lab-gateway: error while stopping: ${(err as Error).message}\n`);
      process.exit(1);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`lab-gateway: ${(err as Error).message}\n`);
  process.exit(1);
});
