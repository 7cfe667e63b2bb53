/**
 * One terminal connect inside a network namespace the interface test creates: a gateway on
 * 127.0.0.1 with a one-address pool, an outside host, and capa-socket connect()
 * with an interface to configure. Prints the outcome as one JSON object.
 * Usage: node netns-terminal.js <pool address> <interface>
 */
import { connect } from '../../socket-shim/lib/connect.js';
import { peerSeen, startLab, startOutsideTcp, ZONE } from './lab.js';

export type NetnsTerminalOutcome =
  | { ok: true; assigned: string; seen: string; liveAfterClose: number }
  | { ok: false; code: string | undefined; message: string; live: number; peers: number };

const [pool = '', ifname = '', outsideHost = ''] = process.argv.slice(2);
const lab = await startLab({ pool: [pool], hosts: { far: outsideHost } });
const outside = await startOutsideTcp(outsideHost);
const live = (): number => lab.gateway.service.allocator.stats().live;
let outcome: NetnsTerminalOutcome;
try {
  const socket = await connect({ host: `far.${ZONE}`, port: outside.port, capa: { ...lab.terminal('127.10.5.1'), interface: ifname } });
  const seen = await peerSeen(socket);
  socket.destroy();
  await socket.capa!.released;
  outcome = { ok: true, assigned: `${socket.capa!.local.address}:${socket.capa!.local.port}`, seen, liveAfterClose: live() };
} catch (err) {
  const e = err as Error & { code?: string };
  outcome = { ok: false, code: e.code, message: e.message, live: live(), peers: outside.peers.length };
}
await outside.close();
await lab.close();
process.stdout.write(JSON.stringify(outcome));
