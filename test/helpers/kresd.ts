/**
 * Knot Resolver (`kresd`) for tests, on a free loopback port, forwarding every query to `stub`
 * (policy.STUB: no iteration, no root priming, no trust-anchor or clock probes), so it asks no
 * server but the test's own.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DAEMON_ADDRESS, type DnsDaemon, requireBinary, startDnsDaemon } from './dns-daemon.js';

export const requireKresd = (): Promise<string | undefined> => requireBinary('kresd', 'knot-resolver');

export function startKresd(binary: string, stub: { address: string; port: number }): Promise<DnsDaemon> {
  return startDnsDaemon('kresd', binary, async (port, dir) => {
    const config = join(dir, 'config.lua');
    await writeFile(config, [
      "modules.unload('priming')",
      "modules.unload('detect_time_skew')",
      "modules.unload('detect_time_jump')",
      "trust_anchors.remove('.')",
      `net.listen('${DAEMON_ADDRESS}', ${port}, { kind = 'dns' })`,
      'cache.size = 10 * MB',
      `policy.add(policy.all(policy.STUB({'${stub.address}@${stub.port}'})))`,
      '',
    ].join('\n'));
    return ['-n', '-c', config, dir];
  });
}
