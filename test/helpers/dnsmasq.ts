/**
 * Starts a real dnsmasq on a free loopback port for a test, serving the given host records and
 * raw RRs (CAPA as `--dns-rr=<name>,65280,<hex>`), and stops it again. Names under `local`
 * domains that are not configured get NXDOMAIN; everything else goes to `upstream`, or gets
 * REFUSED when there is none.
 */
import { DAEMON_ADDRESS, type DnsDaemon, requireBinary, startDnsDaemon } from './dns-daemon.js';

export interface DnsmasqOptions {
  /** `--host-record=<name>,<addr>[,<addr>]`: A and AAAA records. */
  hostRecords?: { name: string; addresses: string[] }[];
  /** `--dns-rr=<name>,<rrtype>,<hex>`: an RR of every type, as raw RDATA. */
  rawRecords?: { name: string; rrtype: number; hex: string }[];
  /** `--txt-record=<name>,<text>`. */
  txtRecords?: { name: string; text: string }[];
  /** Domains answered only from the records above (`--local=/<domain>/`). */
  local?: string[];
  /** `--server=<ip>#<port>`: where names it has no record for go. */
  upstream?: { address: string; port: number };
  /** TTL of the records above (dnsmasq's default is 0). */
  ttl?: number;
}

export type Dnsmasq = DnsDaemon;

/** dnsmasq's path; undefined when the caller should skip (never with CI=true). */
export const requireDnsmasq = (): Promise<string | undefined> => requireBinary('dnsmasq', 'dnsmasq-base');

function args(options: DnsmasqOptions, port: number, pidFile: string): string[] {
  const out = [
    '--no-daemon', '--no-resolv', '--no-hosts', `--port=${port}`, `--listen-address=${DAEMON_ADDRESS}`, '--bind-interfaces',
    `--pid-file=${pidFile}`, '--conf-file=/dev/null', '--log-facility=-', '--log-queries', `--local-ttl=${options.ttl ?? 0}`,
  ];
  // As root, dnsmasq drops to a user that may not exist on a fresh machine; nobody always does.
  if (process.getuid?.() === 0) out.push('--user=nobody');
  for (const h of options.hostRecords ?? []) out.push(`--host-record=${[h.name, ...h.addresses].join(',')}`);
  for (const r of options.rawRecords ?? []) out.push(`--dns-rr=${r.name},${r.rrtype},${r.hex}`);
  for (const t of options.txtRecords ?? []) out.push(`--txt-record=${t.name},"${t.text}"`);
  for (const d of options.local ?? []) out.push(`--local=/${d}/`);
  if (options.upstream) out.push(`--server=${options.upstream.address}#${options.upstream.port}`);
  return out;
}

export function startDnsmasq(binary: string, options: DnsmasqOptions = {}): Promise<Dnsmasq> {
  return startDnsDaemon('dnsmasq', binary, (port, dir) => args(options, port, `${dir}/dnsmasq.pid`));
}
