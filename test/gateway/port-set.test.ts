import { expect } from 'chai';
import fc from 'fast-check';
import {
  FIRST_PORT,
  PORT_COUNT,
  PortMultiset,
  PortSet,
  popcount32,
  selectBit,
  selectFreeInBoth,
} from '../../gateway-ref/lib/grm/port-set.js';

/** The reference: free ports listed by brute force. */
function freePorts(...sets: Set<number>[]): number[] {
  const free: number[] = [];
  for (let port = FIRST_PORT; port < 65536; port++) if (!sets.some((s) => s.has(port))) free.push(port);
  return free;
}

function expectSameAs(set: PortSet, reference: Set<number>, probes: number[]): void {
  expect(set.size).to.equal(reference.size);
  expect([...set.ports()]).to.deep.equal([...reference].sort((a, b) => a - b));
  const free = freePorts(reference);
  for (const k of [0, 1, free.length >> 1, free.length - 1]) {
    if (k >= 0 && k < free.length) expect(set.selectFree(k), `selectFree(${k})`).to.equal(free[k]);
  }
  for (const port of probes) {
    expect(set.has(port), `has(${port})`).to.equal(reference.has(port));
    expect(set.rank(port), `rank(${port})`).to.equal([...reference].filter((p) => p < port).length);
  }
}

describe('gateway PortSet', () => {
  it('counts and selects bits like a bit-by-bit scan', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.nat(), (word, n) => {
        const positions = [...Array(32).keys()].filter((b) => (word >>> b) & 1);
        expect(popcount32(word)).to.equal(positions.length);
        if (positions.length > 0) expect(selectBit(word, n % positions.length)).to.equal(positions[n % positions.length]);
      }),
    );
  });

  it('answers like a plain Set through growth, the dense form and back', () => {
    // In a window of 4096 ports, a first half of mostly adds fills the set past the dense
    // threshold (2048), a second half of mostly deletes drains it below the sparse one (512),
    // checking against the reference on the way.
    const command = fc.record({ roll: fc.nat({ max: 15 }), offset: fc.nat({ max: 4095 }) });
    fc.assert(
      fc.property(fc.nat({ max: PORT_COUNT - 4096 }), fc.array(command, { minLength: 12000, maxLength: 14000 }), (base, commands) => {
        const set = new PortSet();
        const reference = new Set<number>();
        const half = commands.length >> 1;
        commands.forEach(({ roll, offset }, i) => {
          const filling = i < half;
          const add = filling ? roll < 12 : roll === 0;
          // Draining deletes sweep the window so that they hit members.
          const port = FIRST_PORT + base + (filling || add ? offset : (i - half) % 4096);
          expect(add ? set.add(port) : set.delete(port)).to.equal(add ? !reference.has(port) : reference.has(port));
          if (add) reference.add(port);
          else reference.delete(port);
          if (i % 1000 === 0) expectSameAs(set, reference, [FIRST_PORT, port, port + 1, 65535]);
        });
        expectSameAs(set, reference, [FIRST_PORT, FIRST_PORT + base, FIRST_PORT + base + 2048, 65535]);
      }),
      { numRuns: 5 },
    );
  });

  it('fills every port, then selects the only free one, at both ends', () => {
    const set = new PortSet();
    for (let port = FIRST_PORT; port < 65536; port++) set.add(port);
    expect(set.size).to.equal(PORT_COUNT);
    for (const port of [FIRST_PORT, 40000, 65535]) {
      set.delete(port);
      expect(set.selectFree(0)).to.equal(port);
      set.add(port);
    }
    expect(set.rank(65536)).to.equal(PORT_COUNT);
  });

  it('drains from dense to empty and accepts ports again', () => {
    const set = new PortSet();
    for (let port = 65535; port >= FIRST_PORT + 60000; port--) set.add(port);
    for (let port = FIRST_PORT + 60000; port < 65536; port++) expect(set.delete(port)).to.equal(true);
    expect(set.size).to.equal(0);
    expect(set.delete(2000)).to.equal(false);
    expect(set.selectFree(0)).to.equal(FIRST_PORT);
    expect(set.add(5000)).to.equal(true);
    expect([...set.ports()]).to.deep.equal([5000]);
  });

  it('selects the k-th port free in two disjoint sets', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: FIRST_PORT, max: 65535 }), { maxLength: 3000 }), fc.nat(), (ports, n) => {
        const a = new PortSet();
        const b = new PortSet();
        const half = ports.length >> 1;
        ports.forEach((port, i) => (i < half ? a : b).add(port));
        const free = freePorts(new Set(ports));
        const k = n % free.length;
        expect(selectFreeInBoth(a, b, k)).to.equal(free[k]);
        expect(selectFreeInBoth(a, b, 0)).to.equal(free[0]);
        expect(selectFreeInBoth(a, b, free.length - 1)).to.equal(free[free.length - 1]);
      }),
      { numRuns: 40 },
    );
  });
});

describe('gateway PortMultiset', () => {
  it('keeps a port until every add is matched by a delete', () => {
    const ports = new PortMultiset();
    ports.add(8000);
    ports.add(8000);
    ports.add(8000);
    ports.add(9000);
    expect(ports.distinct.size).to.equal(2);
    ports.delete(8000);
    ports.delete(8000);
    expect(ports.distinct.has(8000)).to.equal(true);
    ports.delete(8000);
    expect(ports.distinct.has(8000)).to.equal(false);
    expect([...ports.distinct.ports()]).to.deep.equal([9000]);
  });
});
