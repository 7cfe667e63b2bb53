/**
 * The sockets of this host's network namespace that a live process holds, from the kernel's
 * tables /proc/net/{tcp,tcp6,udp,udp6} (readable without privileges; parsed by the gateway's
 * parser). TIME_WAIT and orphaned sockets (inode 0) are left out: no process uses them.
 */
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { parseProcNet, type SocketEntry } from '../../gateway-ref/lib/dataplane/proc-net.js';

export function liveSockets(): SocketEntry[] {
  const littleEndian = endianness() === 'LE';
  const out: SocketEntry[] = [];
  for (const [file, proto] of [['tcp', 6], ['tcp6', 6], ['udp', 17], ['udp6', 17]] as const) {
    let text: string;
    try {
      text = readFileSync(`/proc/net/${file}`, 'utf8');
    } catch {
      continue; // no such table (IPv6 off)
    }
    for (const s of parseProcNet(text, proto, littleEndian)) if (s.inode !== 0) out.push(s);
  }
  return out;
}
