/**
 * The loopback data plane against the real kernel: sockets pinned to an allocated (aOG, pA) in
 * 127.64/16 talk to local servers standing for outside hosts; the driver reads /proc/net (no
 * privileges) and must confirm the pending state when the socket appears and end the flow when
 * it goes. Polls are driven explicitly, so nothing depends on timing, except the one test of the
 * driver's own timer.
 */
import { expect } from 'chai';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { LoopbackDataPlane } from '../../gateway-ref/lib/dataplane/loopback.js';
import { Realm } from '../../gateway-ref/lib/dns/realm.js';
import { GrmService } from '../../gateway-ref/lib/grm/service.js';
import type { Allocation, AllocatorOptions, Destination } from '../../gateway-ref/lib/grm/types.js';
import { Names } from '../../gateway-ref/lib/zone/names.js';
import { Zone } from '../../gateway-ref/lib/zone/zone.js';

const HOST_B = '127.0.0.80';
const OTHER_HOST = '127.0.0.81';

interface Rig {
  service: GrmService;
  dataPlane: LoopbackDataPlane;
  events: string[];
}

async function rig(pollMs = 3_600_000, allocator: Partial<AllocatorOptions> = {}): Promise<Rig> {
  const dataPlane = new LoopbackDataPlane({ pollMs });
  const events: string[] = [];
  const service = new GrmService({
    allocator: { pool: ['127.64.0.1', '127.64.0.2'], ...allocator },
    dataPlane,
    names: new Names(new Zone([])),
    realm: new Realm(['127.0.0.0/8']),
    journal: (line) => events.push((JSON.parse(line) as { event: string }).event),
    log: (message) => expect.fail(`unexpected GRM error: ${message}`),
  });
  await service.start();
  return { service, dataPlane, events };
}

async function tcpServer(host: string): Promise<{ server: net.Server; port: number; accepted: net.Socket[] }> {
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => { accepted.push(s); s.on('error', () => s.destroy()); });
  server.listen(0, host);
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port, accepted };
}

async function pinnedConnect(allocation: Allocation, host: string, port: number): Promise<net.Socket> {
  const socket = net.connect({ host, port, localAddress: allocation.tuple.localAddress, localPort: allocation.tuple.localPort });
  await once(socket, 'connect');
  return socket;
}

async function closeServer(s: { server: net.Server; accepted: net.Socket[] }): Promise<void> {
  for (const a of s.accepted) a.destroy();
  await new Promise((resolve) => s.server.close(resolve));
}

describe('gateway loopback data plane (kernel socket table)', function () {
  this.timeout(15_000);
  let r: Rig;
  let b: Awaited<ReturnType<typeof tcpServer>>;

  beforeEach(async () => {
    r = await rig();
    b = await tcpServer(HOST_B);
  });

  afterEach(async () => {
    await r.service.stop();
    await closeServer(b);
  });

  const state = (a: Allocation): string | undefined => r.service.allocator.get(a.id)?.state;

  it('confirms a pending TCP state when the pinned socket connects, and ends the flow when it closes', async () => {
    const allocation = await r.service.allocate('127.0.0.1', { proto: 6, address: HOST_B, port: b.port });
    await r.dataPlane.poll();
    expect(state(allocation), 'no socket yet').to.equal('pending');
    const socket = await pinnedConnect(allocation, HOST_B, b.port);
    await r.dataPlane.poll();
    expect(state(allocation)).to.equal('complete');
    socket.destroy();
    await once(socket, 'close');
    await r.dataPlane.poll();
    expect(state(allocation), 'released once the socket is gone').to.equal(undefined);
    expect(r.dataPlane.size).to.equal(0);
    expect(r.events).to.deep.equal(['allocate', 'confirm', 'release']);
  });

  it('ignores a socket on (aOG, pA) that goes to another destination', async () => {
    const other = await tcpServer(OTHER_HOST);
    try {
      const allocation = await r.service.allocate('127.0.0.1', { proto: 6, address: HOST_B, port: b.port });
      const socket = await pinnedConnect(allocation, OTHER_HOST, other.port);
      await r.dataPlane.poll();
      expect(state(allocation)).to.equal('pending');
      socket.destroy();
    } finally {
      await closeServer(other);
    }
  });

  it('fills in pB of a partial state (bare-host allocation) from the connected socket', async () => {
    const allocation = await r.service.allocate('127.0.0.1', { proto: 6, address: HOST_B });
    expect(allocation.tuple.remotePort).to.equal(undefined);
    const socket = await pinnedConnect(allocation, HOST_B, b.port);
    await r.dataPlane.poll();
    const live = r.service.allocator.get(allocation.id)!;
    expect(live.state).to.equal('complete');
    expect(live.tuple.remotePort).to.equal(b.port);
    socket.destroy();
    await once(socket, 'close');
    await r.dataPlane.poll();
    expect(state(allocation)).to.equal(undefined);
  });

  it('sees an IPv4 allocation used by a dual-stack (IPv6, IPv4-mapped) socket', async () => {
    const allocation = await r.service.allocate('127.0.0.1', { proto: 6, address: HOST_B, port: b.port });
    const socket = net.connect({ host: `::ffff:${HOST_B}`, port: b.port, localAddress: `::ffff:${allocation.tuple.localAddress}`, localPort: allocation.tuple.localPort });
    await once(socket, 'connect');
    await r.dataPlane.poll();
    expect(state(allocation)).to.equal('complete');
    socket.destroy();
    await once(socket, 'close');
    await r.dataPlane.poll();
    expect(state(allocation)).to.equal(undefined);
  });

  it('counts a bound, unconnected UDP socket on (aOG, pA) as the flow, and its close as the end', async () => {
    const destination: Destination = { proto: 17, address: HOST_B, port: 5353 };
    const allocation = await r.service.allocate('127.0.0.1', destination);
    const socket = dgram.createSocket('udp4');
    socket.bind(allocation.tuple.localPort, allocation.tuple.localAddress);
    await once(socket, 'listening');
    await r.dataPlane.poll();
    expect(state(allocation)).to.equal('complete');
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    await r.dataPlane.poll();
    expect(state(allocation)).to.equal(undefined);
  });

  it('keeps watching a TCP state whose socket closes before ever being seen, until its lease reclaims it', async () => {
    const allocation = await r.service.allocate('127.0.0.1', { proto: 6, address: HOST_B, port: b.port });
    const socket = await pinnedConnect(allocation, HOST_B, b.port);
    socket.destroy();
    await once(socket, 'close');
    await r.dataPlane.poll();
    expect(state(allocation), 'never seen: still pending, the lease decides').to.equal('pending');
    expect(r.dataPlane.size).to.equal(1);
  });

  it('hands out no port a wildcard-bound socket holds on every local address (TCP on 0.0.0.0, UDP on ::), until it closes', async () => {
    const seq = await rig(3_600_000, { portStrategy: 'sequential', holdDownMs: 0, pool: ['127.64.0.1'] });
    const servers: { close(cb: () => void): void }[] = [];
    try {
      const web: Destination = { proto: 6, address: HOST_B, port: b.port };
      const dns: Destination = { proto: 17, address: HOST_B, port: 5353 };
      const firstFree = async (destination: Destination): Promise<Allocation> => {
        const allocation = await seq.service.allocate('127.0.0.1', destination);
        await seq.service.release('127.0.0.1', [allocation.tuple]);
        return allocation;
      };
      const tcpPort = (await firstFree(web)).tuple.localPort;
      const udpPort = (await firstFree(dns)).tuple.localPort;
      const listener = net.createServer();
      listener.listen(tcpPort, '0.0.0.0');
      await once(listener, 'listening');
      const udp = dgram.createSocket({ type: 'udp6', ipv6Only: false });
      udp.bind(udpPort, '::');
      await once(udp, 'listening');
      servers.push(listener, udp);
      await seq.dataPlane.refresh();

      const tcp = await seq.service.allocate('127.0.0.1', web);
      expect(tcp.tuple.localPort, 'next TCP port').to.equal(tcpPort + 1);
      (await pinnedConnect(tcp, HOST_B, b.port)).destroy();
      const pinnedUdp = await seq.service.allocate('127.0.0.1', dns);
      expect(pinnedUdp.tuple.localPort, 'next UDP port').to.equal(udpPort + 1);
      const socket = dgram.createSocket('udp4');
      socket.bind(pinnedUdp.tuple.localPort, pinnedUdp.tuple.localAddress);
      await once(socket, 'listening');
      socket.close();

      await new Promise<void>((resolve) => listener.close(() => resolve()));
      servers.shift();
      await seq.dataPlane.refresh();
      expect((await seq.service.allocate('127.0.0.1', web)).tuple.localPort, 'the listener is gone').to.equal(tcpPort);
    } finally {
      for (const server of servers) await new Promise<void>((resolve) => server.close(() => resolve()));
      await seq.service.stop();
    }
  });

  it('polls on its own timer while it has states', async () => {
    const timed = await rig(20);
    try {
      const allocation = await timed.service.allocate('127.0.0.1', { proto: 6, address: HOST_B, port: b.port });
      const socket = await pinnedConnect(allocation, HOST_B, b.port);
      while (timed.events.length < 2) await new Promise((resolve) => setTimeout(resolve, 10)); // bounded by the mocha timeout
      expect(timed.events).to.deep.equal(['allocate', 'confirm']);
      socket.destroy();
      while (timed.events.length < 3) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(timed.events).to.deep.equal(['allocate', 'confirm', 'release']);
      expect(timed.dataPlane.size).to.equal(0);
    } finally {
      await timed.service.stop();
    }
  });
});
