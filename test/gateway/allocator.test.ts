import { expect } from 'chai';
import fc from 'fast-check';
import { Allocator } from '../../gateway-ref/lib/grm/allocator.js';
import type { Allocation, AllocationEvent, AllocatorOptions, Destination, ProtoNumber } from '../../gateway-ref/lib/grm/types.js';
import { capaThrown } from '../helpers/expect-error.js';

/** Ports per pool address and destination: the contract's 65536 - 1024. */
const PORTS = 65536 - 1024;
const WEB: Destination = { proto: 6, address: '203.0.113.10', port: 443 };
const HOST = '203.0.113.20';

function clock(): { t: number; now: () => number } {
  const c = { t: 0, now: () => c.t };
  return c;
}

function poolOf(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `198.51.100.${i + 1}`);
}

function ports(allocations: Allocation[]): number[] {
  return allocations.map((a) => a.tuple.localPort);
}

describe('gateway Allocator: the bound', () => {
  for (const n of [1, 2]) {
    it(`admits exactly (65536 - 1024) x ${n} flows to one destination socket, then fails "exhausted"; other destinations still succeed`, () => {
      const allocator = new Allocator({ pool: poolOf(n), now: clock().now });
      const used = new Set<string>();
      for (let i = 0; i < PORTS * n; i++) {
        const { tuple } = allocator.allocate(`100.64.0.${1 + (i % 200)}`, WEB);
        used.add(`${tuple.localAddress} ${tuple.localPort}`);
      }
      expect(used.size, 'distinct (aOG, pA)').to.equal(PORTS * n);
      for (const address of poolOf(n)) {
        for (let port = 1024; port < 65536; port++) {
          if (!used.has(`${address} ${port}`)) expect.fail(`${address} port ${port} was never handed out`);
        }
      }
      const err = capaThrown(() => allocator.allocate('100.64.0.1', WEB), 'ERR_CAPA_EXHAUSTED');
      expect(err.message).to.contain('203.0.113.10:443');

      expect(allocator.allocate('100.64.0.1', { ...WEB, port: 80 }).tuple.remotePort).to.equal(80);
      expect(allocator.allocate('100.64.0.1', { ...WEB, address: '203.0.113.11' }).tuple.remoteAddress).to.equal('203.0.113.11');
      expect(allocator.allocate('100.64.0.1', { ...WEB, proto: 17 }).tuple.proto).to.equal(17);
      // A partial state would need an (aOG, pA) unused towards the host for every pB: there is none.
      capaThrown(() => allocator.allocate('100.64.0.1', { proto: 6, address: WEB.address }), 'ERR_CAPA_EXHAUSTED');
      // Hosts are (proto, aOB): tcp .10, tcp .11, udp .10; destinations add pB: tcp .10:443 and :80.
      expect(allocator.stats()).to.include({ live: PORTS * n + 3, pending: PORTS * n + 3, hosts: 3, destinations: 4 });
    });
  }

  it('keeps a released port from the full destination until its hold-down (60 s by default) ends', () => {
    const c = clock();
    const allocator = new Allocator({ pool: poolOf(1), now: c.now });
    const all: Allocation[] = [];
    for (let i = 0; i < PORTS; i++) all.push(allocator.allocate('100.64.0.1', WEB));
    const victim = all[1234]!;
    c.t = 1000;
    allocator.release(victim.id);
    expect(allocator.stats().heldDown).to.equal(1);
    c.t = 1000 + 59_999;
    capaThrown(() => allocator.allocate('100.64.0.2', WEB), 'ERR_CAPA_EXHAUSTED');
    c.t = 1000 + 60_000;
    const again = allocator.allocate('100.64.0.2', WEB);
    expect(again.tuple.localPort).to.equal(victim.tuple.localPort);
    expect(allocator.stats().heldDown).to.equal(0);
  });
});

describe('gateway Allocator: partial and complete states', () => {
  it('a partial state blocks its (aOG, pA) for every pB; complete states to different pB share one', () => {
    const allocator = new Allocator({ pool: poolOf(1), portStrategy: 'sequential' });
    const partial = allocator.allocate('100.64.0.1', { proto: 6, address: HOST });
    expect(partial.tuple).to.deep.equal({
      proto: 6, remoteAddress: HOST, remotePort: undefined, localAddress: '198.51.100.1', localPort: 1024,
    });
    const to80 = allocator.allocate('100.64.0.2', { proto: 6, address: HOST, port: 80 });
    const to443 = allocator.allocate('100.64.0.3', { proto: 6, address: HOST, port: 443 });
    expect(ports([to80, to443])).to.deep.equal([1025, 1025]);
    // Another protocol is another tuple space.
    expect(allocator.allocate('100.64.0.4', { proto: 17, address: HOST, port: 80 }).tuple.localPort).to.equal(1024);
    // A complete state blocks a partial one on its (aOG, pA).
    const partial2 = allocator.allocate('100.64.0.1', { proto: 6, address: HOST });
    expect(partial2.tuple.localPort).to.equal(1026);

    // The first packet fixes pB = 80: 1024 is then free for every other pB.
    const confirmed = allocator.confirm({ ...partial.tuple, remotePort: 80 });
    expect(confirmed).to.include({ id: partial.id, state: 'complete', leaseExpiresAt: Infinity });
    expect(confirmed!.tuple).to.include({ remotePort: 80, localPort: 1024 });
    expect(allocator.allocate('100.64.0.3', { proto: 6, address: HOST, port: 443 }).tuple.localPort).to.equal(1024);
    expect(allocator.allocate('100.64.0.2', { proto: 6, address: HOST, port: 80 }).tuple.localPort).to.equal(1027);
    expect(allocator.get(partial2.id)!.tuple.remotePort).to.equal(undefined);
  });

  it('a released partial state holds its (aOG, pA) down for every pB of that host', () => {
    const c = clock();
    const allocator = new Allocator({ pool: poolOf(1), portStrategy: 'sequential', holdDownMs: 1000, now: c.now });
    const partial = allocator.allocate('100.64.0.1', { proto: 6, address: HOST });
    allocator.release(partial.id);
    expect(allocator.allocate('100.64.0.1', { proto: 6, address: HOST, port: 22 }).tuple.localPort).to.equal(1025);
    expect(allocator.allocate('100.64.0.1', { proto: 6, address: '203.0.113.21', port: 22 }).tuple.localPort).to.equal(1024);
    c.t = 1000;
    expect(allocator.allocate('100.64.0.1', { proto: 6, address: HOST, port: 22 }).tuple.localPort).to.equal(1024);
  });

  it('confirm without pB ends the lease of a partial state, which keeps reserving every pB', () => {
    const c = clock();
    const allocator = new Allocator({ pool: poolOf(1), portStrategy: 'sequential', now: c.now });
    const partial = allocator.allocate('100.64.0.1', { proto: 6, address: HOST });
    const confirmed = allocator.confirm(partial.tuple)!;
    expect(confirmed).to.include({ id: partial.id, state: 'complete' });
    expect(confirmed.tuple.remotePort).to.equal(undefined);
    c.t = 5;
    expect(allocator.allocate('100.64.0.2', { proto: 6, address: HOST, port: 80 }).tuple.localPort).to.equal(1025);
    expect(allocator.nextExpiry(), 'only the second one is pending').to.equal(30_005);
  });

  /** Brute-force reference for the ports one (proto, aOB, pB?) may not get on the only pool address. */
  interface ModelState {
    id: number;
    proto: ProtoNumber;
    host: string;
    remotePort: number | undefined;
    localPort: number;
    pending: boolean;
    createdAt: number;
  }
  type Held = Omit<ModelState, 'id' | 'pending' | 'createdAt'> & { releasedAt: number };

  const op = fc.oneof(
    fc.record({
      kind: fc.constant('allocate' as const),
      terminal: fc.nat({ max: 3 }),
      host: fc.constantFrom('203.0.113.1', '2001:db8::7'),
      proto: fc.constantFrom<ProtoNumber>(6, 17),
      port: fc.constantFrom(undefined, 80, 443),
    }),
    fc.record({ kind: fc.constant('confirm' as const), pick: fc.nat(), port: fc.constantFrom(undefined, 80, 8080) }),
    fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('tick' as const), ms: fc.nat({ max: 60 }) }),
    fc.constant({ kind: 'expire' as const }),
  );

  function mulberry32(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
  }

  for (const portStrategy of ['sequential', 'random'] as const) {
    it(`matches a brute-force model of uniqueness, leases and hold-downs (${portStrategy})`, () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 80 }), fc.integer(), (ops, seed) => {
          const c = clock();
          const holdDownMs = 100;
          const leaseMs = 50;
          const allocator = new Allocator({
            pool: ['198.51.100.1', '2001:db8:1::1'], portStrategy, holdDownMs, leaseMs, now: c.now, random: mulberry32(seed),
          });
          let live: ModelState[] = [];
          let held: Held[] = [];
          const clash = (proto: ProtoNumber, host: string, remotePort: number | undefined, port: number) =>
            (s: Omit<Held, 'releasedAt'>) =>
              s.proto === proto && s.host === host && s.localPort === port &&
              (s.remotePort === undefined || remotePort === undefined || s.remotePort === remotePort);
          const blocked = (proto: ProtoNumber, host: string, remotePort: number | undefined, port: number): boolean => {
            const hits = clash(proto, host, remotePort, port);
            return live.some(hits) || held.some((h) => c.t - h.releasedAt < holdDownMs && hits(h));
          };
          const end = (gone: ModelState): void => {
            live = live.filter((s) => s !== gone);
            held.push({ ...gone, releasedAt: c.t });
          };
          for (const step of ops) {
            if (step.kind === 'allocate') {
              const got = allocator.allocate(`100.64.0.${step.terminal}`, { proto: step.proto, address: step.host, port: step.port });
              const port = got.tuple.localPort;
              expect(blocked(step.proto, step.host, step.port, port), `port ${port} collides`).to.equal(false);
              if (portStrategy === 'sequential') {
                let first = 1024;
                while (blocked(step.proto, step.host, step.port, first)) first++;
                expect(port, 'first free port').to.equal(first);
              }
              live.push({ id: got.id, proto: step.proto, host: step.host, remotePort: step.port, localPort: port, pending: true, createdAt: c.t });
            } else if (step.kind === 'confirm' && live.length > 0) {
              const target = live[step.pick % live.length]!;
              const original = allocator.get(target.id)!;
              const got = allocator.confirm({ ...original.tuple, remotePort: target.remotePort ?? step.port });
              expect(got?.id).to.equal(target.id);
              target.remotePort ??= step.port;
              target.pending = false;
            } else if (step.kind === 'release' && live.length > 0) {
              const target = live[step.pick % live.length]!;
              expect(allocator.release(target.id).id).to.equal(target.id);
              end(target);
            } else if (step.kind === 'tick') {
              c.t += step.ms;
            } else if (step.kind === 'expire') {
              const due = live.filter((s) => s.pending && s.createdAt + leaseMs <= c.t);
              expect(allocator.expire().map((a) => a.id).sort()).to.deep.equal(due.map((s) => s.id).sort());
              due.forEach(end);
            }
            held = held.filter((h) => c.t - h.releasedAt < holdDownMs);
            const actual = [...allocator.allocations()].map((a) => [a.id, a.tuple.remotePort, a.tuple.localPort, a.state]);
            const expected = live.map((s) => [s.id, s.remotePort, s.localPort, s.pending ? 'pending' : 'complete']);
            expect(actual.sort()).to.deep.equal(expected.sort());
            expect(allocator.stats()).to.include({ live: live.length, heldDown: held.length });
          }
        }),
        { numRuns: 300 },
      );
    });
  }
});

describe('gateway Allocator: address choice', () => {
  it('rotates over the pool: each new terminal takes the head of the list, which moves to the end', () => {
    const allocator = new Allocator({ pool: poolOf(3) });
    const first = ['100.64.0.1', '100.64.0.2', '100.64.0.3', '100.64.0.4'].map((t) => allocator.allocate(t, WEB));
    expect(first.map((a) => a.tuple.localAddress)).to.deep.equal(['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.1']);
  });

  it('paired pooling: a terminal keeps its address for every destination while it has a free port there', () => {
    const allocator = new Allocator({ pool: poolOf(3) });
    expect(allocator.allocate('100.64.0.1', WEB).tuple.localAddress).to.equal('198.51.100.1');
    expect(allocator.allocate('100.64.0.2', WEB).tuple.localAddress).to.equal('198.51.100.2');
    const again = [
      allocator.allocate('100.64.0.1', { ...WEB, port: 80 }),
      allocator.allocate('100.64.0.1', { proto: 17, address: '203.0.113.53', port: 53 }),
      allocator.allocate('100.64.0.1', { proto: 6, address: HOST }),
      allocator.allocate('100.64.0.1', WEB),
    ];
    expect(again.map((x) => x.tuple.localAddress)).to.deep.equal(Array(4).fill('198.51.100.1'));
    expect(allocator.allocate('100.64.0.3', WEB).tuple.localAddress).to.equal('198.51.100.3');
  });

  it('paired pooling outlives a flow: a terminal making one flow after another keeps one address', () => {
    const allocator = new Allocator({ pool: poolOf(4), holdDownMs: 0 });
    const used: string[] = [];
    for (let i = 0; i < 4; i++) {
      const a = allocator.allocate('100.64.0.1', WEB);
      used.push(a.tuple.localAddress);
      allocator.release(a.id);
    }
    expect(used).to.deep.equal(Array(4).fill('198.51.100.1'));
    // Another terminal still starts at the rotation's next address.
    expect(allocator.allocate('100.64.0.2', WEB).tuple.localAddress).to.equal('198.51.100.2');
  });

  it('moves on to the next address when the held or head address is full for that destination', () => {
    const allocator = new Allocator({ pool: poolOf(2), portStrategy: 'sequential' });
    for (let i = 0; i < PORTS; i++) expect(allocator.allocate('100.64.0.1', WEB).tuple.localAddress).to.equal('198.51.100.1');
    const spill = allocator.allocate('100.64.0.1', WEB);
    expect(spill.tuple).to.include({ localAddress: '198.51.100.2', localPort: 1024 });
    // The terminal now holds both; the first one still has every port free towards another destination.
    expect(allocator.allocate('100.64.0.1', { ...WEB, port: 80 }).tuple.localAddress).to.equal('198.51.100.1');
    // The rotation's head is .1 again, full for WEB: a new terminal gets the next one.
    expect(allocator.allocate('100.64.0.9', WEB).tuple).to.include({ localAddress: '198.51.100.2', localPort: 1025 });
  });

  it('uses pool addresses of the destination family only', () => {
    const allocator = new Allocator({ pool: ['198.51.100.1', '2001:db8:1::1'] });
    expect(allocator.allocate('100.64.0.1', { proto: 6, address: '2001:db8::80', port: 80 }).tuple.localAddress).to.equal('2001:db8:1::1');
    expect(allocator.allocate('100.64.0.1', WEB).tuple.localAddress).to.equal('198.51.100.1');
    const v4only = new Allocator({ pool: poolOf(2) });
    const err = capaThrown(() => v4only.allocate('100.64.0.1', { proto: 6, address: '2001:db8::80', port: 80 }), 'ERR_CAPA_EXHAUSTED');
    expect(err.message).to.contain('no IPv6 address');
    expect(v4only.stats()).to.include({ hosts: 0, destinations: 0, terminals: 0 });
  });
});

describe('gateway Allocator: port choice', () => {
  it('random (default): not in sequence, spread over 1024-65535 (RFC 6056)', () => {
    const allocator = new Allocator({ pool: poolOf(1) });
    const chosen = Array.from({ length: 2000 }, (_, i) => allocator.allocate(`100.64.0.${i % 10}`, WEB).tuple.localPort);
    const rising = chosen.slice(1).filter((port, i) => port > chosen[i]!).length;
    expect(rising, 'rising neighbours (about half when random)').to.be.within(850, 1150);
    const buckets = new Array<number>(16).fill(0);
    for (const port of chosen) buckets[Math.floor((port - 1024) / (PORTS / 16))]!++;
    for (const count of buckets) expect(count, `bucket counts ${buckets.join(' ')}`).to.be.within(60, 190);
  });

  it('sequential: the first free port, as in the patent', () => {
    const c = clock();
    const allocator = new Allocator({ pool: poolOf(1), portStrategy: 'sequential', holdDownMs: 0, now: c.now });
    const first = Array.from({ length: 5 }, () => allocator.allocate('100.64.0.1', WEB));
    expect(ports(first)).to.deep.equal([1024, 1025, 1026, 1027, 1028]);
    allocator.release(first[2]!.id);
    expect(allocator.allocate('100.64.0.1', WEB).tuple.localPort).to.equal(1026);
  });
});

describe('gateway Allocator: ports the gateway host holds', () => {
  const HELD = [1024, 1026, 2024, 8080, 65535];

  it('sequential: skips them, and the protocol and family they were given for only', () => {
    const allocator = new Allocator({ pool: [...poolOf(1), '2001:db8::1'], portStrategy: 'sequential' });
    allocator.setHostPorts(6, 4, [1026, 1024]);
    expect(ports(Array.from({ length: 3 }, () => allocator.allocate('100.64.0.1', WEB)))).to.deep.equal([1025, 1027, 1028]);
    expect(allocator.allocate('100.64.0.1', { ...WEB, proto: 17 }).tuple.localPort, 'UDP').to.equal(1024);
    expect(allocator.allocate('100.64.0.1', { proto: 6, address: '2001:db8:1::10', port: 443 }).tuple.localPort, 'IPv6').to.equal(1024);
    allocator.setHostPorts(6, 4, []);
    expect(allocator.allocate('100.64.0.1', WEB).tuple.localPort, 'once the host gives them up').to.equal(1024);
  });

  for (const portStrategy of ['random', 'sequential'] as const) {
    it(`${portStrategy}: hands out every other port of every address, never one of them, then "exhausted"`, () => {
      const allocator = new Allocator({ pool: poolOf(2), portStrategy, now: clock().now });
      allocator.setHostPorts(6, 4, HELD);
      // A partial state to the host first: its port blocks the destination too, and both counts must hold.
      const partial = allocator.allocate('100.64.0.9', { proto: 6, address: WEB.address });
      const used = new Set<string>([`${partial.tuple.localAddress} ${partial.tuple.localPort}`]);
      for (let i = 0; i < (PORTS - HELD.length) * 2 - 1; i++) {
        const { tuple } = allocator.allocate(`100.64.0.${1 + (i % 200)}`, WEB);
        const key = `${tuple.localAddress} ${tuple.localPort}`;
        if (HELD.includes(tuple.localPort) || used.has(key)) expect.fail(`handed out ${key}`);
        used.add(key);
      }
      const err = capaThrown(() => allocator.allocate('100.64.0.1', WEB), 'ERR_CAPA_EXHAUSTED');
      expect(err.message).to.contain('held by the gateway host');
    });
  }
});

describe('gateway Allocator: leases, hold-down, quota', () => {
  it('reclaims pending allocations when their lease ends; complete ones stay', () => {
    const c = clock();
    const events: AllocationEvent[] = [];
    const allocator = new Allocator({ pool: poolOf(1), now: c.now }, (e) => events.push(e));
    const a = allocator.allocate('100.64.0.1', WEB);
    c.t = 10_000;
    const b = allocator.allocate('100.64.0.2', WEB);
    const done = allocator.allocate('100.64.0.3', WEB);
    expect(allocator.confirm(done.tuple)!.state).to.equal('complete');
    expect(a).to.include({ state: 'pending', leaseExpiresAt: 30_000, createdAt: 0 });
    expect(allocator.nextExpiry()).to.equal(30_000);
    c.t = 29_999;
    expect(allocator.expire()).to.deep.equal([]);
    c.t = 30_000;
    expect(allocator.expire().map((x) => x.id)).to.deep.equal([a.id]);
    expect(allocator.get(a.id)).to.equal(undefined);
    expect(allocator.confirm(a.tuple)).to.equal(undefined);
    expect(allocator.nextExpiry()).to.equal(40_000);
    c.t = 45_000;
    expect(allocator.expire().map((x) => x.id)).to.deep.equal([b.id]);
    expect(allocator.nextExpiry()).to.equal(undefined);
    expect(allocator.get(done.id)!.state).to.equal('complete');
    expect(allocator.stats()).to.include({ live: 1, pending: 0, complete: 1, heldDown: 2 });
    expect(events.map((e) => e.event)).to.deep.equal(['allocate', 'allocate', 'allocate', 'confirm', 'expire', 'expire']);
    expect(events[4]).to.deep.include({ time: 30_000, terminal: '100.64.0.1', tuple: a.tuple });
  });

  it('confirm is idempotent for a complete allocation and logs once', () => {
    const events: AllocationEvent[] = [];
    const allocator = new Allocator({ pool: poolOf(1) }, (e) => events.push(e));
    const a = allocator.allocate('100.64.0.1', WEB);
    allocator.confirm(a.tuple);
    expect(allocator.confirm(a.tuple)).to.include({ id: a.id, state: 'complete' });
    expect(events.map((e) => e.event)).to.deep.equal(['allocate', 'confirm']);
  });

  it('holds a released (aOG, pA) down for the same destination only', () => {
    const c = clock();
    const allocator = new Allocator({ pool: poolOf(1), portStrategy: 'sequential', holdDownMs: 5000, now: c.now });
    const [a] = [allocator.allocate('100.64.0.1', WEB), allocator.allocate('100.64.0.1', WEB)];
    allocator.release(a!.id);
    expect(allocator.allocate('100.64.0.1', WEB).tuple.localPort).to.equal(1026);
    expect(allocator.allocate('100.64.0.1', { ...WEB, port: 80 }).tuple.localPort).to.equal(1024);
    c.t = 4999;
    expect(allocator.allocate('100.64.0.1', WEB).tuple.localPort).to.equal(1027);
    c.t = 5000;
    expect(allocator.allocate('100.64.0.1', WEB).tuple.localPort).to.equal(1024);
  });

  it('enforces the per-terminal quota on live allocations', () => {
    const c = clock();
    const allocator = new Allocator({ pool: poolOf(2), quota: 3, leaseMs: 1000, now: c.now });
    const mine = [
      allocator.allocate('100.64.0.1', WEB),
      allocator.allocate('100.64.0.1', { ...WEB, port: 80 }),
      allocator.allocate('100.64.0.1', { proto: 17, address: HOST }),
    ];
    const err = capaThrown(() => allocator.allocate('100.64.0.1', WEB), 'ERR_CAPA_QUOTA');
    expect(err.message).to.contain('100.64.0.1');
    expect(allocator.liveFor('100.64.0.1')).to.equal(3);
    expect(allocator.allocate('100.64.0.2', WEB).terminal).to.equal('100.64.0.2');
    allocator.release(mine[0]!.id);
    allocator.allocate('100.64.0.1', WEB);
    capaThrown(() => allocator.allocate('100.64.0.1', WEB), 'ERR_CAPA_QUOTA');
    c.t = 1000;
    expect(allocator.expire()).to.have.length(4);
    expect(allocator.liveFor('100.64.0.1')).to.equal(0);
    allocator.allocate('100.64.0.1', WEB);
  });
});

describe('gateway Allocator: ids, release, find', () => {
  it('release checks the id and the owner; stale ids never name a later allocation', () => {
    const allocator = new Allocator({ pool: poolOf(1), holdDownMs: 0 });
    const a = allocator.allocate('100.64.0.1', WEB);
    capaThrown(() => allocator.release(a.id, '100.64.0.2'), 'ERR_CAPA_NOT_OWNER');
    expect(allocator.get(a.id)).to.deep.equal(a);
    expect(allocator.release(a.id, '100.64.0.1')).to.deep.equal(a);
    capaThrown(() => allocator.release(a.id), 'ERR_CAPA_NO_ALLOCATION');
    const b = allocator.allocate('100.64.0.1', WEB);
    expect(b.id).to.not.equal(a.id);
    expect(allocator.get(a.id)).to.equal(undefined);
    capaThrown(() => allocator.release(a.id), 'ERR_CAPA_NO_ALLOCATION');
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 60]) capaThrown(() => allocator.release(bad), 'ERR_CAPA_NO_ALLOCATION');
    expect([...allocator.allocations()]).to.deep.equal([b]);
  });

  it('find: exact tuple, the partial state reserving a tuple, any state when pB is not given', () => {
    const allocator = new Allocator({ pool: ['2001:db8:1::1'] });
    const partial = allocator.allocate('100.64.0.1', { proto: 6, address: '2001:db8::5' });
    const complete = allocator.allocate('100.64.0.2', { proto: 6, address: '2001:db8::5', port: 80 });
    expect(allocator.find(partial.tuple)).to.deep.equal(partial);
    expect(allocator.find({ ...partial.tuple, remotePort: 8080 })).to.deep.equal(partial);
    expect(allocator.find(complete.tuple)).to.deep.equal(complete);
    expect(allocator.find({ ...complete.tuple, remotePort: undefined })).to.deep.equal(complete);
    expect(allocator.find({ ...complete.tuple, remotePort: 81 })).to.equal(undefined);
    expect(allocator.find({ ...complete.tuple, proto: 17 })).to.equal(undefined);
    expect(allocator.find({ ...complete.tuple, localAddress: '2001:db8:1::2' })).to.equal(undefined);
    expect(allocator.find({ ...complete.tuple, remoteAddress: 'not an address' })).to.equal(undefined);
    // Other spellings of the same addresses name the same states.
    expect(allocator.find({ ...complete.tuple, remoteAddress: '2001:DB8:0:0::5', localAddress: '2001:0db8:1::0001' })).to.deep.equal(complete);
    expect(allocator.allocate('100.64.0.2', { proto: 6, address: '2001:0DB8::5', port: 80 }).tuple.remoteAddress).to.equal('2001:db8::5');
    expect(allocator.stats()).to.include({ hosts: 1, destinations: 1 });
  });
});

describe('gateway Allocator: bad input', () => {
  const bad: [string, Partial<AllocatorOptions>][] = [
    ['an empty pool', { pool: [] }],
    ['a pool entry that is no address', { pool: ['gateway.example'] }],
    ['an address listed twice', { pool: ['2001:db8::1', '2001:DB8:0::1'] }],
    ['too many pool addresses', { pool: Array.from({ length: 65537 }, (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`) }],
    ['quota 0', { quota: 0 }],
    ['a fractional quota', { quota: 1.5 }],
    ['a negative lease', { leaseMs: -1 }],
    ['a NaN lease', { leaseMs: NaN }],
    ['an infinite hold-down', { holdDownMs: Infinity }],
    ['an unknown port strategy', { portStrategy: 'lowest' as 'random' }],
  ];
  for (const [what, options] of bad) {
    it(`refuses ${what} with ERR_CAPA_CONFIG`, () => {
      capaThrown(() => new Allocator({ pool: poolOf(1), ...options }), 'ERR_CAPA_CONFIG');
    });
  }

  it('refuses bad destinations and terminals with ERR_CAPA_INVALID_ARG, leaving no state behind', () => {
    const allocator = new Allocator({ pool: poolOf(1) });
    const destinations: Destination[] = [
      { proto: 1 as ProtoNumber, address: HOST, port: 80 },
      { proto: 6, address: 'www.example', port: 80 },
      { proto: 6, address: HOST, port: 0 },
      { proto: 6, address: HOST, port: 65536 },
      { proto: 6, address: HOST, port: 80.5 },
    ];
    for (const destination of destinations) {
      capaThrown(() => allocator.allocate('100.64.0.1', destination), 'ERR_CAPA_INVALID_ARG');
    }
    capaThrown(() => allocator.allocate('', WEB), 'ERR_CAPA_INVALID_ARG');
    expect(allocator.stats()).to.include({ live: 0, hosts: 0, destinations: 0, terminals: 0 });
  });
});
