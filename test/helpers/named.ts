/**
 * BIND 9 `named` for tests, on a free loopback port: an authoritative server for the zones
 * given (master-file text), or a forward-only recursive resolver that asks `forwarders`. It
 * knows nothing of CAPA and sends no query anywhere else.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DAEMON_ADDRESS, type DnsDaemon, requireBinary, startDnsDaemon } from './dns-daemon.js';

export type NamedOptions =
  | { zones: { origin: string; text: string }[] }
  | { forwarders: { address: string; port: number }[] };

export const requireNamed = (): Promise<string | undefined> => requireBinary('named', 'bind9');

async function configure(options: NamedOptions, port: number, dir: string): Promise<string> {
  const common = [`directory "${dir}";`, 'pid-file none;', `listen-on port ${port} { ${DAEMON_ADDRESS}; };`, 'listen-on-v6 { none; };',
    `session-keyfile "${join(dir, 'session.key')}";`, 'allow-query { any; };'];
  const zones: string[] = [];
  if ('zones' in options) {
    common.push('recursion no;');
    for (const [i, zone] of options.zones.entries()) {
      const file = join(dir, `zone-${i}.txt`);
      await writeFile(file, zone.text);
      zones.push(`zone "${zone.origin}" { type primary; file "${file}"; };`);
    }
  } else {
    const list = options.forwarders.map((f) => `${f.address} port ${f.port};`).join(' ');
    common.push('recursion yes;', 'allow-recursion { any; };', 'forward only;', `forwarders { ${list} };`, 'dnssec-validation no;');
  }
  const conf = join(dir, 'named.conf');
  // controls {}: no rndc channel, so nothing but the DNS port is opened.
  await writeFile(conf, `options {\n  ${common.join('\n  ')}\n};\ncontrols { };\n${zones.join('\n')}\n`);
  return conf;
}

export function startNamed(binary: string, options: NamedOptions): Promise<DnsDaemon> {
  return startDnsDaemon('named', binary, async (port, dir) => ['-g', '-c', await configure(options, port, dir)]);
}
