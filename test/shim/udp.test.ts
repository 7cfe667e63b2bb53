/**
 * capa-socket UDP end to end on loopback: one pinned, connected dgram socket per destination,
 * through the real gateway; the outside host answers with the (address, port) it saw.
 */
import { once } from 'node:events';
import { expect } from 'chai';
import { type CapaUdpSocket, connectUdp } from '../../socket-shim/index.js';
import { rejection } from '../helpers/expect-error.js';
import { parsePeer } from '../../common/outside-host.js';
import { type Lab, type OutsideUdp, peerKey, startLab, startOutsideUdp, ZONE } from './lab.js';

const POOL = '127.64.2.1';
const OUTSIDE = '127.2.2.2';
const TERMINALS = ['127.10.2.1', '127.10.2.2'];
const HOST = `echo.${ZONE}`;

async function echo(socket: CapaUdpSocket): Promise<string> {
  socket.send('who am I');
  const [message] = (await once(socket, 'message')) as [Buffer];
  return peerKey(parsePeer(String(message)));
}

describe('shim: connectUdp() through the real gateway (loopback)', () => {
  let lab: Lab;
  let outside: OutsideUdp;
  let sockets: CapaUdpSocket[] = [];
  const live = (): number => lab.gateway.service.allocator.stats().live;
  const open = async (terminal: string): Promise<CapaUdpSocket> => {
    const socket = await connectUdp({ host: HOST, port: outside.port, capa: lab.terminal(terminal) });
    sockets.push(socket);
    socket.once('close', () => { sockets = sockets.filter((s) => s !== socket); });
    return socket;
  };
  const closeAll = async (list: CapaUdpSocket[]): Promise<void> => {
    for (const s of list) s.close();
    await Promise.all(list.map((s) => s.capa?.released));
  };

  beforeEach(async () => {
    outside = await startOutsideUdp(OUTSIDE);
    lab = await startLab({ pool: [POOL], hosts: { echo: OUTSIDE }, quota: 12 });
  });
  afterEach(async () => {
    await closeAll(sockets);
    sockets = [];
    await outside.close();
    await lab.close();
  });

  it('pins each socket of two terminals to its own port on the shared address, as the outside host sees it', async () => {
    const opened = await Promise.all(TERMINALS.flatMap((t) => Array.from({ length: 10 }, () => open(t))));
    const seen = await Promise.all(opened.map(echo));
    opened.forEach((socket, i) => {
      const { local, remote } = socket.capa!;
      expect(local.address).to.equal(POOL);
      expect(seen[i]).to.equal(peerKey(local));
      const bound = socket.address();
      expect({ address: bound.address, port: bound.port }).to.deep.equal(local);
      const peer = socket.remoteAddress();
      expect({ address: peer.address, port: peer.port }).to.deep.equal(remote);
    });
    expect(new Set(seen).size).to.equal(opened.length, 'no two live flows share an outside tuple');
    expect(lab.gateway.service.allocator.stats()).to.include({ live: opened.length, terminals: 2 });
  });

  it('releases the allocation when the socket closes', async () => {
    const socket = await open(TERMINALS[0]!);
    await echo(socket);
    socket.close();
    expect(await socket.capa!.released).to.equal(undefined);
    expect(live()).to.equal(0);
  });

  it('closes the socket and releases when the signal aborts', async () => {
    const controller = new AbortController();
    const socket = await connectUdp({ host: HOST, port: outside.port, capa: lab.terminal(TERMINALS[0]!), signal: controller.signal });
    controller.abort();
    expect(await socket.capa!.released).to.equal(undefined);
    expect(live()).to.equal(0);
  });

  it('fails over quota with ERR_CAPA_QUOTA and sends nothing', async () => {
    await Promise.all(Array.from({ length: 12 }, () => open(TERMINALS[0]!)));
    const err = await rejection(open(TERMINALS[0]!));
    expect(err.code).to.equal('ERR_CAPA_QUOTA');
    expect(outside.peers).to.have.length(0);
  });

  it('rejects a bad port before asking the GRM', async () => {
    const err = await rejection(connectUdp({ host: HOST, port: -1, capa: lab.terminal(TERMINALS[0]!) }));
    expect(err.code).to.equal('ERR_CAPA_INVALID_ARG');
    expect(lab.gateway.service.allocator.stats().hosts).to.equal(0);
  });
});
