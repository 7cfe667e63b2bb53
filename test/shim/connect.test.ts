/**
 * capa-socket TCP end to end on loopback: the real gateway (loopback data plane), two terminals
 * (DNS from two inside addresses) sharing one pool address, an outside host that reports the
 * (address, port) it sees. Failures: quota, exhaustion, failed bind, refused connect, bad input.
 */
import { once } from 'node:events';
import net from 'node:net';
import { expect } from 'chai';
import { connect, createConnection, type CapaSocket, openSocket } from '../../socket-shim/index.js';
import { addressRecord, capaRecord, type FakeDnsServer, type ReceivedQuery, reply, startFakeDnsServer } from '../helpers/fake-dns-server.js';
import { EDE, EDE_TEXT } from '../../resolver/codec/constants.js';
import { rejection } from '../helpers/expect-error.js';
import { eventually, peerSeen, type Lab, type OutsideTcp, peerKey, startLab, startOutsideTcp, ZONE } from './lab.js';

const POOL = '127.64.1.1';
const OUTSIDE = '127.1.1.1';
const INSIDE_HOST = '127.10.1.50';
const TERMINAL_A = '127.10.1.1';
const TERMINAL_B = '127.10.1.2';
const HOST = `echo.${ZONE}`;

function tupleKey(socket: CapaSocket): string {
  const { local, remote } = socket.capa!;
  return `tcp ${remote.address}:${remote.port} ${local.address}:${local.port}`;
}

const closeAll = async (sockets: CapaSocket[]): Promise<void> => {
  for (const s of sockets) s.destroy();
  await Promise.all(sockets.map((s) => s.capa?.released));
};

describe('shim: connect() through the real gateway (loopback)', () => {
  let lab: Lab;
  let outside: OutsideTcp;
  let sockets: CapaSocket[] = [];
  const live = (): number => lab.gateway.service.allocator.stats().live;
  const open = async (terminal: string, extra: Partial<Parameters<typeof connect>[0]> = {}): Promise<CapaSocket> => {
    const socket = await connect({ host: HOST, port: outside.port, capa: lab.terminal(terminal), ...extra });
    sockets.push(socket);
    return socket;
  };

  beforeEach(async () => {
    outside = await startOutsideTcp(OUTSIDE);
  });
  afterEach(async () => {
    await closeAll(sockets);
    sockets = [];
    await outside.close();
    await lab.close();
  });

  describe('with one pool address and no quota', () => {
    beforeEach(async () => {
      lab = await startLab({ pool: [POOL], hosts: { echo: OUTSIDE, peer: INSIDE_HOST } });
    });

    it('gives concurrent connections of two terminals distinct ports on the shared address, as the outside host sees them', async () => {
      const perTerminal = 40;
      const opened = await Promise.all([TERMINAL_A, TERMINAL_B].flatMap((t) => Array.from({ length: perTerminal }, () => open(t))));
      const seen = await Promise.all(opened.map(peerSeen));
      opened.forEach((socket, i) => {
        const { local, remote } = socket.capa!;
        expect(local.address).to.equal(POOL);
        expect(remote).to.deep.equal({ address: OUTSIDE, port: outside.port });
        expect(seen[i]).to.equal(peerKey(local), 'the outside host sees the assigned (aOG, pA)');
        expect({ address: socket.localAddress, port: socket.localPort }).to.deep.equal(local);
      });
      expect(new Set(opened.map(tupleKey)).size).to.equal(opened.length, 'no two live flows share an outside tuple');
      expect(new Set(outside.peers.map(peerKey))).to.deep.equal(new Set(opened.map((s) => peerKey(s.capa!.local))));
      expect(lab.gateway.service.allocator.stats()).to.include({ live: 2 * perTerminal, terminals: 2 });
    });

    it('releases each allocation when its socket closes', async () => {
      const opened = await Promise.all([open(TERMINAL_A), open(TERMINAL_A), open(TERMINAL_B)]);
      expect(live()).to.equal(3);
      opened[0]!.resume().end(); // a graceful close: read to the end, FIN both ways
      expect(await opened[0]!.capa!.released).to.equal(undefined);
      expect(live()).to.equal(2);
      await closeAll(opened);
      expect(live()).to.equal(0);
      expect(lab.gateway.service.allocator.stats().heldDown).to.equal(3, 'released ports wait out their hold-down');
    });

    it('connects plainly, with no allocation, to a destination inside the realm', async () => {
      const inside = await startOutsideTcp(INSIDE_HOST);
      try {
        const socket = await connect({ host: `peer.${ZONE}`, port: inside.port, capa: lab.terminal(TERMINAL_A) });
        sockets.push(socket);
        expect(socket.capa).to.equal(undefined);
        expect(socket.remoteAddress).to.equal(INSIDE_HOST);
        expect(socket.localAddress).to.not.equal(POOL);
        expect(live()).to.equal(0);
      } finally {
        await closeAll(sockets.splice(0));
        await inside.close();
      }
    });

    it('releases the allocation when the destination refuses the connection', async () => {
      const closed = net.createServer().listen(0, OUTSIDE);
      await once(closed, 'listening');
      const port = (closed.address() as net.AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      const socket = await openSocket({ host: HOST, port, capa: lab.terminal(TERMINAL_A) });
      expect(socket.capa!.local.address).to.equal(POOL);
      const err = await rejection(once(socket, 'connect'));
      expect(err.code).to.equal('ECONNREFUSED');
      expect(await socket.capa!.released).to.equal(undefined);
      expect(live()).to.equal(0);
      const viaConnect = await rejection(connect({ host: HOST, port, capa: lab.terminal(TERMINAL_B) }));
      expect(viaConnect.code).to.equal('ECONNREFUSED');
      await eventually(() => live() === 0, 'the release after a refused connect()');
    });

    it('fails unknown names with ERR_CAPA_NOT_FOUND and outside terminals with ERR_CAPA_REFUSED', async () => {
      const missing = await rejection(connect({ host: `nowhere.${ZONE}`, port: outside.port, capa: lab.terminal(TERMINAL_A) }));
      expect(missing.code).to.equal('ERR_CAPA_NOT_FOUND');
      const stranger = await rejection(connect({ host: HOST, port: outside.port, capa: lab.terminal('127.99.0.1') }));
      expect(stranger.code).to.equal('ERR_CAPA_REFUSED');
      expect(outside.peers).to.have.length(0);
    });

    it('rejects options that would bypass the allocation, before asking the GRM', async () => {
      for (const bad of [{ localPort: 4000 }, { localAddress: '127.0.0.1' }, { lookup: () => undefined }, { port: 0 }, { port: 70000 }]) {
        const err = await rejection(connect({ host: HOST, port: outside.port, capa: lab.terminal(TERMINAL_A), ...bad }));
        expect(err.code, JSON.stringify(Object.keys(bad))).to.equal('ERR_CAPA_INVALID_ARG');
      }
      expect(lab.gateway.service.allocator.stats().hosts).to.equal(0, 'nothing was asked');
    });

    it('applies net options to the pinned socket: timeout, and signal (abort destroys and releases)', async () => {
      const controller = new AbortController();
      const socket = await open(TERMINAL_A, { timeout: 12_345, signal: controller.signal });
      expect(socket.timeout).to.equal(12_345);
      controller.abort();
      expect(await socket.capa!.released).to.equal(undefined);
      expect(socket.destroyed).to.equal(true);
      expect(live()).to.equal(0);
      const aborted = await rejection(connect({ host: HOST, port: outside.port, capa: lab.terminal(TERMINAL_A), signal: AbortSignal.abort() }));
      expect(aborted.name).to.equal('AbortError');
    });

    it('createConnection() calls back with a connecting pinned socket, or with the CAPA error', async () => {
      const socket = await new Promise<CapaSocket>((resolve, reject) => {
        createConnection({ host: HOST, port: outside.port, capa: lab.terminal(TERMINAL_A) }, (err, s) => (err ? reject(err) : resolve(s!)));
      });
      sockets.push(socket);
      expect(await peerSeen(socket)).to.equal(peerKey(socket.capa!.local));
      const err = await new Promise<Error | null>((resolve) => {
        createConnection({ host: `nowhere.${ZONE}`, port: 80, capa: lab.terminal(TERMINAL_A) }, (e) => resolve(e));
      });
      expect(err).to.have.property('code', 'ERR_CAPA_NOT_FOUND');
    });
  });

  it('gives a released port back to the pool (sequential ports, no hold-down)', async () => {
    lab = await startLab({ pool: [POOL], hosts: { echo: OUTSIDE }, holdDownSeconds: 0, portStrategy: 'sequential' });
    const first = await open(TERMINAL_A);
    const second = await open(TERMINAL_B);
    expect([first.capa!.local.port, second.capa!.local.port]).to.deep.equal([1024, 1025]);
    first.destroy();
    await first.capa!.released;
    const third = await open(TERMINAL_B);
    expect(third.capa!.local).to.deep.equal({ address: POOL, port: 1024 });
    expect(await peerSeen(third)).to.equal(`${POOL}:1024`);
  });

  it('asks for another allocation when a local socket holds the allocated port', async () => {
    lab = await startLab({ pool: [POOL], hosts: { echo: OUTSIDE }, portStrategy: 'sequential' });
    const squatter = net.createServer().listen(1024, POOL);
    await once(squatter, 'listening');
    try {
      const socket = await open(TERMINAL_A);
      expect(socket.capa!.local).to.deep.equal({ address: POOL, port: 1025 });
      expect(await peerSeen(socket)).to.equal(`${POOL}:1025`);
      expect(lab.gateway.service.allocator.stats()).to.include({ live: 1, heldDown: 1 });
    } finally {
      squatter.close();
    }
  });

  it('surfaces an exhausted quota as ERR_CAPA_QUOTA with nothing connected', async () => {
    lab = await startLab({ pool: [POOL], hosts: { echo: OUTSIDE }, quota: 2 });
    await Promise.all([open(TERMINAL_A), open(TERMINAL_A)]);
    const err = await rejection(open(TERMINAL_A));
    expect(err.code).to.equal('ERR_CAPA_QUOTA');
    expect(outside.peers).to.have.length(2);
    await open(TERMINAL_B);
    expect(outside.peers).to.have.length(3, 'the quota is per terminal');
  });

  it('surfaces a pool with no address for the destination as ERR_CAPA_EXHAUSTED with nothing connected', async () => {
    lab = await startLab({ pool: ['fd00:64::1'], hosts: { echo: OUTSIDE } });
    const err = await rejection(open(TERMINAL_A));
    expect(err.code).to.equal('ERR_CAPA_EXHAUSTED');
    expect(outside.peers).to.have.length(0);
  });
});

describe('shim: connect() against a scripted GRM', () => {
  let fake: FakeDnsServer;
  let outside: OutsideTcp;
  const HOSTNAME = 'scripted.example.test';
  const qtype = (q: ReceivedQuery): string | undefined => q.message?.questions[0]?.type;
  const qname = (q: ReceivedQuery): string => q.message?.questions[0]?.name ?? '';
  const aRecord = (q: ReceivedQuery): Buffer => reply(q, { answers: [addressRecord(HOSTNAME, 30, OUTSIDE)] });
  const ask = (): Promise<CapaSocket> => connect({ host: HOSTNAME, port: outside.port, capa: { servers: [fake.server], dnsTimeout: 300, dnsDeadline: 1000 } });

  beforeEach(async () => { outside = await startOutsideTcp(OUTSIDE); });
  afterEach(async () => {
    await fake.close();
    await outside.close();
  });

  it('fails with ERR_CAPA_EXHAUSTED on SERVFAIL + EDE 49152 and never connects unpinned', async () => {
    fake = await startFakeDnsServer((q) => (qtype(q) === 'A' ? aRecord(q)
      : reply(q, { rcode: 'SERVFAIL', ede: [{ code: EDE.POOL_EXHAUSTED, text: EDE_TEXT[EDE.POOL_EXHAUSTED] }] })));
    const err = await rejection(ask());
    expect(err.code).to.equal('ERR_CAPA_EXHAUSTED');
    expect(fake.queries.map(qtype)).to.deep.equal(['UNKNOWN_65280'], 'no A lookup for a fallback');
    expect(outside.peers).to.have.length(0);
  });

  it('connects plainly when the server does not know CAPA (NODATA)', async () => {
    fake = await startFakeDnsServer((q) => (qtype(q) === 'A' ? aRecord(q) : reply(q)));
    const socket = await ask();
    try {
      expect(socket.capa).to.equal(undefined);
      expect(await peerSeen(socket)).to.equal(`${socket.localAddress}:${socket.localPort}`);
    } finally {
      socket.destroy();
    }
  });

  it('fails the connect when no allocated (address, port) can be bound, releases each, and connects nothing', async () => {
    const squatter = net.createServer().listen(0, '127.64.1.9');
    await once(squatter, 'listening');
    const taken = (squatter.address() as net.AddressInfo).port;
    fake = await startFakeDnsServer((q) => {
      if (q.message?.opcode === 'UPDATE') return reply(q);
      if (qtype(q) === 'A') return aRecord(q);
      return reply(q, { aa: true, answers: [capaRecord(qname(q), 30, { flags: 0, proto: 6, port: taken, address: '127.64.1.9' })],
        additionals: [addressRecord(HOSTNAME, 30, OUTSIDE)] });
    });
    try {
      const err = await rejection(ask());
      expect(err.code).to.equal('EADDRINUSE');
      expect(fake.queries.map((q) => q.message?.opcode)).to.deep.equal(['QUERY', 'UPDATE', 'QUERY', 'UPDATE', 'QUERY', 'UPDATE'],
        'three allocations tried, each handed back');
      expect(outside.peers).to.have.length(0);
    } finally {
      squatter.close();
    }
  });
});
