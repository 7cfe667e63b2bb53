/** DNS server addresses as people write them (`192.0.2.1`, `[2001:db8::1]:5300`) and back. Pure. */
import { isIP } from 'node:net';
import { invalidArg } from './errors.js';

export const DEFAULT_DNS_PORT = 53;

export interface ServerAddress {
  /** IP literal (IPv6 may carry a %zone, as resolv.conf allows for link-local servers). */
  address: string;
  port: number;
}

function parsePort(text: string, whole: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw invalidArg(`server "${whole}": port must be 1-65535, got "${text}"`);
  }
  return Number(text);
}

function checkAddress(address: string, whole: string): string {
  if (isIP(address) === 0) {
    throw invalidArg(`server "${whole}" is not an IP address (write 192.0.2.1, 192.0.2.1:5300, 2001:db8::1 or [2001:db8::1]:5300)`);
  }
  return address;
}

/** Accepts `host`, `host:port`, `[v6]:port`, `[v6]` and a bare IPv6 `v6` (port 53). */
export function parseServer(text: string, defaultPort = DEFAULT_DNS_PORT): ServerAddress {
  const s = text.trim();
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(s);
  if (bracketed) {
    const port = bracketed[2] === undefined ? defaultPort : parsePort(bracketed[2], s);
    return { address: checkAddress(bracketed[1]!, s), port };
  }
  const colons = s.split(':').length - 1;
  if (colons === 1) {
    const [host, port] = s.split(':') as [string, string];
    return { address: checkAddress(host, s), port: parsePort(port, s) };
  }
  return { address: checkAddress(s, s), port: defaultPort };
}

/** Comma-separated list, as in CAPA_SERVER. Empty items are skipped. */
export function parseServerList(text: string): ServerAddress[] {
  return text.split(',').filter((item) => item.trim() !== '').map((item) => parseServer(item));
}

/** `host:port`, or `[v6]:port`; the form parseServer reads back. */
export function formatServer(server: ServerAddress): string {
  return isIP(server.address) === 6 ? `[${server.address}]:${server.port}` : `${server.address}:${server.port}`;
}
