/**
 * The state journal as data (gateway-ref/lib/grm/state-records.ts) and the allocator's restore:
 * records round-trip, damage is found and located, folding gives back what the allocator held,
 * and an allocator restored from the fold allocates as the original would have.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import { Allocator } from '../../gateway-ref/lib/grm/allocator.js';
import { crc32Of } from '../../gateway-ref/lib/grm/checksum.js';
import { readFlatArray } from '../../gateway-ref/lib/grm/flat-json.js';
import { SNAPSHOT_MAGIC, SnapshotEncoder } from '../../gateway-ref/lib/grm/snapshot-records.js';
import { StringCache } from '../../gateway-ref/lib/grm/string-cache.js';
import { decodeRecords, encodeRecord, foldRecords, type StateRecord } from '../../gateway-ref/lib/grm/state-records.js';
import type { AllocationEvent, OutsideTuple } from '../../gateway-ref/lib/grm/types.js';

const tuple = (localPort: number, remotePort: number | undefined = 80): OutsideTuple =>
  ({ proto: 6, remoteAddress: '203.0.113.10', remotePort, localAddress: '198.51.100.1', localPort });

const recordOf = (e: AllocationEvent): StateRecord => (e.event === 'allocate' ? { kind: 'allocate', terminal: e.terminal, tuple: e.tuple, createdAt: e.time }
  : e.event === 'confirm' ? { kind: 'confirm', tuple: e.tuple } : { kind: 'end', tuple: e.tuple, at: e.time });

describe('state journal records', () => {
  it('round-trips every kind of record, one line each', () => {
    const records: StateRecord[] = [
      { kind: 'allocate', terminal: '100.64.0.6', tuple: tuple(1024), createdAt: 1000 },
      { kind: 'allocate', terminal: '::ffff:100.64.0.6', tuple: { ...tuple(1025), remotePort: undefined }, createdAt: 1001.5 },
      { kind: 'confirm', tuple: tuple(1025, 443) },
      { kind: 'end', tuple: tuple(1024), at: 2000 },
      { kind: 'state', state: { terminal: 't', tuple: { ...tuple(2000), proto: 17, remoteAddress: '2001:db8::1', localAddress: '2001:db8::7' }, createdAt: 5, complete: true } },
      { kind: 'hold', hold: { tuple: tuple(3000), releasedAt: 7 } },
      { kind: 'inbound', binding: { querier: '203.0.113.10', poolAddress: '198.51.100.1', terminal: '100.64.0.6', expiresAt: 9000 } },
    ];
    const text = records.map(encodeRecord).join('');
    expect(text.split('\n')).to.have.length(records.length + 1);
    expect(decodeRecords(text)).to.deep.equal({ records, problems: [], tornBytes: 0 });
  });

  it('ignores a torn last line and reports a damaged one by its byte offset, reading on', () => {
    const a = encodeRecord({ kind: 'allocate', terminal: 't', tuple: tuple(1024), createdAt: 1 });
    const b = encodeRecord({ kind: 'allocate', terminal: 't', tuple: tuple(1025), createdAt: 2 });
    const c = encodeRecord({ kind: 'end', tuple: tuple(1024), at: 3 });
    const damaged = b.replace('1025', '1026');
    const decoded = decodeRecords(a + damaged + c + c.slice(0, 20));
    expect(decoded.records.map((r) => r.kind)).to.deep.equal(['allocate', 'end']);
    expect(decoded.problems).to.deep.equal([{ offset: Buffer.byteLength(a), why: 'checksum mismatch' }]);
    expect(decoded.tornBytes).to.equal(20);
    const wrongShape = `${(0).toString(16).padStart(8, '0')} x\n`;
    expect(decodeRecords(wrongShape).problems).to.have.length(1);
  });

  it('finds every single-byte change of a record (fuzzed)', () => {
    const line = encodeRecord({ kind: 'allocate', terminal: '100.64.0.6', tuple: tuple(4242), createdAt: 123456 });
    fc.assert(fc.property(fc.integer({ min: 0, max: line.length - 2 }), fc.integer({ min: 32, max: 126 }), (at, code) => {
      const changed = line.slice(0, at) + String.fromCharCode(code) + line.slice(at + 1);
      fc.pre(changed !== line);
      const decoded = decodeRecords(changed);
      return decoded.records.length === 0 && decoded.problems.length === 1;
    }), { seed: 42, numRuns: 500 });
  });

  describe('binary snapshot', () => {
    const snapshot: StateRecord[] = [
      { kind: 'hold', hold: { tuple: tuple(3000), releasedAt: 7.25 } },
      { kind: 'state', state: { terminal: '100.64.0.6', tuple: tuple(1024), createdAt: 1000, complete: true } },
      { kind: 'state', state: { terminal: '100.64.0.6', tuple: { ...tuple(1025), remotePort: undefined }, createdAt: 1001, complete: false } },
      { kind: 'state', state: { terminal: 'tërminal', tuple: { ...tuple(2000), proto: 17, remoteAddress: '2001:db8::1', localAddress: '2001:db8::7' }, createdAt: 5, complete: true } },
      { kind: 'inbound', binding: { querier: '203.0.113.99', poolAddress: '198.51.100.1', terminal: '100.64.0.6', expiresAt: 123.5 } },
    ];
    /** The file compaction writes, in two encode() calls as its chunks are. */
    const file = (): Buffer => {
      const encoder = new SnapshotEncoder();
      return Buffer.concat([SNAPSHOT_MAGIC, encoder.encode(snapshot.slice(0, 2)), encoder.encode(snapshot.slice(2))]);
    };

    it('round-trips states and hold-downs, each string written once', () => {
      const bytes = file();
      expect(decodeRecords(bytes)).to.deep.equal({ records: snapshot, problems: [], tornBytes: 0 });
      expect(bytes.toString('latin1').split('100.64.0.6')).to.have.length(2);
      expect(() => new SnapshotEncoder().encode([{ kind: 'confirm', tuple: tuple(1) }])).to.throw('not "confirm" records');
    });

    it('reports a damaged record by its offset and reads on; a damaged string takes the records naming it; a cut end is torn', () => {
      const bytes = file();
      // The first state record: after the magic, the first chunk's 3 string records (6 + 5 + length each) and the hold.
      const strings = ['203.0.113.10', '198.51.100.1', '100.64.0.6'].reduce((n, s) => n + 11 + s.length, 0);
      const hold = SNAPSHOT_MAGIC.length + strings;
      const firstState = hold + 6 + 23;
      const damaged = Buffer.from(bytes);
      damaged[firstState + 6 + 10]! ^= 0x40;
      const decoded = decodeRecords(damaged);
      expect(decoded.problems).to.deep.equal([{ offset: firstState, why: 'checksum mismatch' }]);
      expect(decoded.records).to.deep.equal([snapshot[0], snapshot[2], snapshot[3], snapshot[4]]);

      const noString = Buffer.from(bytes);
      noString[SNAPSHOT_MAGIC.length + 8]! ^= 0x01; // inside "203.0.113.10", named by every record
      const lost = decodeRecords(noString);
      expect(lost.records).to.deep.equal([snapshot[3], snapshot[4]]);
      expect(lost.problems.map((p) => p.why)).to.deep.equal(['checksum mismatch', 'names a string that was not read', 'names a string that was not read', 'names a string that was not read']);

      const cut = decodeRecords(bytes.subarray(0, bytes.length - 3));
      expect(cut.records).to.deep.equal(snapshot.slice(0, 4));
      expect(cut.tornBytes).to.be.above(0);
      expect(cut.problems).to.deep.equal([]);
    });

    it('finds every single-byte change of a record (fuzzed)', () => {
      const bytes = file();
      fc.assert(fc.property(fc.integer({ min: SNAPSHOT_MAGIC.length, max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const changed = Buffer.from(bytes);
        changed[at]! ^= flip;
        const decoded = decodeRecords(changed);
        // Nothing wrong is ever read back: each record is one of the originals, and something is reported.
        return decoded.records.every((r) => snapshot.some((o) => JSON.stringify(o) === JSON.stringify(r)))
          && decoded.records.length < snapshot.length && (decoded.problems.length > 0 || decoded.tornBytes > 0);
      }), { seed: 5, numRuns: 500 });
    });

    it('still reads a snapshot written as journal lines (before this format)', () => {
      expect(decodeRecords(snapshot.map(encodeRecord).join('')).records).to.deep.equal(snapshot);
    });
  });

  it('checks a line in place with the CRC-32 zlib computes (fuzzed)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), fc.nat(), fc.nat(), (bytes, a, b) => {
      const start = bytes.length === 0 ? 0 : a % bytes.length;
      const end = start + (bytes.length === start ? 0 : b % (bytes.length - start + 1));
      return crc32Of(bytes, start, end) === crc32(bytes.subarray(start, end));
    }), { seed: 7, numRuns: 1000 });
  });

  it('reads the fields of a record as JSON.parse does, or leaves the line to it (fuzzed)', () => {
    const value = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.stringMatching(/^[0-9a-f.:]{0,15}$/), fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.constant(null), fc.constant([1]), fc.constant({}));
    fc.assert(fc.property(fc.array(value, { maxLength: 10 }), fc.boolean(), (values, spaced) => {
      const json = JSON.stringify(values, null, spaced ? 1 : undefined);
      const bytes = Buffer.from(`x${json}y`);
      const read = readFlatArray(bytes, 1, bytes.length - 1, new StringCache());
      const plain = !spaced && values.every((v) => v === null || (typeof v === 'number' && Number.isSafeInteger(v) && !Object.is(v, -0))
        || (typeof v === 'string' && /^[\x20-\x7e]*$/.test(v) && !/["\\]/.test(v)));
      if (plain) expect(read, json).to.deep.equal(JSON.parse(json));
      else if (read !== undefined) expect(read, json).to.deep.equal(JSON.parse(json));
    }), { seed: 11, numRuns: 2000 });
    const strings = new StringCache();
    const line = Buffer.from('["s","100.64.0.6","100.64.0.6","100.64.0.7"]');
    expect(readFlatArray(line, 0, line.length, strings)).to.deep.equal(['s', '100.64.0.6', '100.64.0.6', '100.64.0.7']);
    for (const bad of ['["a",]', '[01]', '[nul]', '["a"', '[1 ]', '["a"x]', '[-]', '[1234567890123456]']) {
      const b = Buffer.from(bad);
      expect(readFlatArray(b, 0, b.length, strings), bad).to.equal(undefined);
    }
  });

  it('folds to the live states and hold-downs: a confirm fills a partial state, an end starts a hold-down, a reallocation ends it', () => {
    const folded = foldRecords([
      { kind: 'allocate', terminal: 'a', tuple: tuple(1024), createdAt: 1 },
      { kind: 'allocate', terminal: 'b', tuple: { ...tuple(1025), remotePort: undefined }, createdAt: 2 },
      { kind: 'confirm', tuple: tuple(1025, 8080) },
      { kind: 'confirm', tuple: tuple(1024) },
      { kind: 'allocate', terminal: 'c', tuple: tuple(1026), createdAt: 3 },
      { kind: 'end', tuple: tuple(1026), at: 4 },
      { kind: 'allocate', terminal: 'd', tuple: tuple(1027), createdAt: 5 },
      { kind: 'end', tuple: tuple(1027), at: 6 },
      { kind: 'allocate', terminal: 'e', tuple: tuple(1027), createdAt: 7 },
      { kind: 'confirm', tuple: tuple(9999) },
    ]);
    expect(folded.live).to.deep.equal([
      { terminal: 'a', tuple: tuple(1024), createdAt: 1, complete: true },
      { terminal: 'b', tuple: tuple(1025, 8080), createdAt: 2, complete: true },
      { terminal: 'e', tuple: tuple(1027), createdAt: 7, complete: false },
    ]);
    expect(folded.holds).to.deep.equal([{ tuple: tuple(1026), releasedAt: 4 }]);
    expect(folded.bindings).to.deep.equal([]);
  });

  it('folds inbound bindings to the latest record of each (querier, pool address)', () => {
    const binding = (querier: string, poolAddress: string, terminal: string, expiresAt: number): StateRecord => ({ kind: 'inbound', binding: { querier, poolAddress, terminal, expiresAt } });
    const folded = foldRecords([
      binding('q1', 'p1', 't1', 10),
      binding('q1', 'p2', 't2', 11),
      binding('q2', 'p1', 't3', 12),
      binding('q1', 'p1', 't1', 20),
      { kind: 'allocate', terminal: 'a', tuple: tuple(1024), createdAt: 1 },
    ], 3);
    expect(folded.bindings).to.deep.equal([
      { querier: 'q1', poolAddress: 'p1', terminal: 't1', expiresAt: 20 },
      { querier: 'q1', poolAddress: 'p2', terminal: 't2', expiresAt: 11 },
      { querier: 'q2', poolAddress: 'p1', terminal: 't3', expiresAt: 12 },
    ]);
  });

  it('a snapshot folds as the records it stands for: entries the tail never names are taken as they are, the rest meet the tail', () => {
    fc.assert(fc.property(fc.array(fc.nat({ max: 40 }), { maxLength: 30 }), fc.array(fc.record({ kind: fc.constantFrom('allocate', 'confirm', 'end'), port: fc.nat({ max: 40 }), at: fc.nat({ max: 99 }) }), { maxLength: 30 }), (ports, tail) => {
      const snapshot: StateRecord[] = [...new Set(ports)].map((p, i) => (i % 3 === 0
        ? { kind: 'hold', hold: { tuple: tuple(1024 + p), releasedAt: i } }
        : { kind: 'state', state: { terminal: `t${i}`, tuple: tuple(1024 + p), createdAt: i, complete: i % 2 === 0 } }));
      const later: StateRecord[] = tail.map(({ kind, port, at }) => (kind === 'allocate'
        ? { kind, terminal: 'x', tuple: tuple(1024 + port), createdAt: 100 + at }
        : kind === 'confirm' ? { kind, tuple: tuple(1024 + port) } : { kind, tuple: tuple(1024 + port), at: 100 + at }));
      const records = [...snapshot, ...later];
      // The same whether or not the fold knows which records are the snapshot.
      const sorted = (f: ReturnType<typeof foldRecords>): string[] => [...f.live.map((x) => JSON.stringify(x)), ...f.holds.map((x) => JSON.stringify(x))].sort();
      expect(sorted(foldRecords(records, snapshot.length))).to.deep.equal(sorted(foldRecords(records)));
    }), { seed: 11, numRuns: 300 });
  });

  it('an allocator restored from its own journal holds the same states and allocates as the original does', () => {
    fc.assert(fc.property(fc.array(fc.record({ op: fc.constantFrom('allocate', 'confirm', 'release', 'tick'), pick: fc.nat(), port: fc.constantFrom(80, 443, undefined) }), { maxLength: 60 }), (ops) => {
      let now = 1000;
      const records: StateRecord[] = [];
      // One pool address: the rotation's position (fairness, not uniqueness) is not journaled.
      const options = { pool: ['198.51.100.1'], portStrategy: 'sequential' as const, holdDownMs: 50, leaseMs: 500, now: () => now };
      const original = new Allocator(options, (e) => records.push(recordOf(e)));
      for (const { op, pick, port } of ops) {
        const live = [...original.allocations()];
        if (op === 'allocate') original.allocate(`t${pick % 3}`, { proto: 6, address: '203.0.113.10', port });
        else if (op === 'tick') { now += 20; original.expire(); }
        else if (live.length > 0) {
          const a = live[pick % live.length]!;
          if (op === 'release') original.release(a.id);
          else original.confirm({ ...a.tuple, remotePort: a.tuple.remotePort ?? 8000 + (pick % 5) });
        }
      }
      const { live, holds } = foldRecords(decodeRecords(records.map(encodeRecord).join('')).records);
      const restored = new Allocator(options);
      for (const h of holds) expect(restored.restoreHoldDown(h)).to.equal(true);
      for (const s of live) expect(restored.restore(s)).to.not.equal(undefined);
      const view = (a: Allocator): string[] => [...a.allocations()].map((x) => `${x.terminal} ${x.state} ${x.tuple.localAddress}:${x.tuple.localPort} ${x.tuple.remotePort}`).sort();
      expect(view(restored)).to.deep.equal(view(original));
      expect(restored.stats().heldDown).to.equal(original.stats().heldDown);
      const next = (a: Allocator): string => { const x = a.allocate('t9', { proto: 6, address: '203.0.113.10', port: 80 }); return `${x.tuple.localAddress}:${x.tuple.localPort}`; };
      expect(next(restored)).to.equal(next(original));
    }), { seed: 7, numRuns: 200 });
  });

  it('refuses to restore a state outside the pool or on a taken (aOG, pA)', () => {
    const allocator = new Allocator({ pool: ['198.51.100.1'] });
    expect(allocator.restore({ terminal: 'a', tuple: { ...tuple(1024), localAddress: '198.51.100.9' }, createdAt: 0, complete: true })).to.equal(undefined);
    expect(allocator.restore({ terminal: 'a', tuple: tuple(1024), createdAt: 0, complete: true })?.state).to.equal('complete');
    expect(allocator.restore({ terminal: 'b', tuple: tuple(1024), createdAt: 0, complete: false })).to.equal(undefined);
    expect(allocator.restoreHoldDown({ tuple: tuple(1024), releasedAt: Date.now() })).to.equal(false);
    expect(allocator.restoreHoldDown({ tuple: tuple(1024), releasedAt: 0 }), 'a hold-down long over: nothing to hold').to.equal(true);
  });
});
