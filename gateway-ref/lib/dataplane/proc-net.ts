/**
 * Parser for the kernel's socket tables /proc/net/{tcp,tcp6,udp,udp6} (readable without
 * privileges). Pure: text in, entries out. Addresses there are hex 32-bit words printed in host
 * byte order (little-endian on x86 and ARM), ports are plain big-endian hex.
 */
import { bytesToIp } from '../../../resolver/lib/ip.js';
import type { ProtoNumber } from '../grm/types.js';
import { unmapIPv4 } from '../dns/realm.js';

export interface SocketEntry {
  proto: ProtoNumber;
  localAddress: string;
  localPort: number;
  /** 0.0.0.0 / :: with port 0 for an unconnected socket. */
  remoteAddress: string;
  remotePort: number;
  /** Kernel state code: 0x01 ESTABLISHED, 0x02 SYN_SENT, 0x06 TIME_WAIT, 0x07 CLOSE, 0x0A LISTEN... */
  state: number;
  /** 0 when no process holds the socket any more (TIME_WAIT, orphaned FIN_WAIT). */
  inode: number;
}

const HEX_ADDRESS = /^(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{32})$/;

function decodeEndpoint(text: string, littleEndian: boolean): { address: string; port: number } | undefined {
  const [hexAddress = '', hexPort = ''] = text.split(':');
  if (!HEX_ADDRESS.test(hexAddress) || !/^[0-9A-Fa-f]{4}$/.test(hexPort)) return undefined;
  const bytes = Buffer.from(hexAddress, 'hex');
  if (littleEndian) for (let w = 0; w < bytes.length; w += 4) bytes.subarray(w, w + 4).reverse();
  return { address: unmapIPv4(bytes.length === 4 ? bytesToIp(bytes, 0, 4) : bytesToIp(bytes, 0, 16)), port: parseInt(hexPort, 16) };
}

/** Parses one table; the header line and lines that do not parse are skipped. */
export function parseProcNet(text: string, proto: ProtoNumber, littleEndian: boolean): SocketEntry[] {
  const out: SocketEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^\d+:$/.test(f[0]!)) continue;
    const local = decodeEndpoint(f[1]!, littleEndian);
    const remote = decodeEndpoint(f[2]!, littleEndian);
    if (local === undefined || remote === undefined || !/^[0-9A-Fa-f]{2}$/.test(f[3]!) || !/^\d+$/.test(f[9]!)) continue;
    out.push({
      proto,
      localAddress: local.address,
      localPort: local.port,
      remoteAddress: remote.address,
      remotePort: remote.port,
      state: parseInt(f[3]!, 16),
      inode: Number(f[9]),
    });
  }
  return out;
}
