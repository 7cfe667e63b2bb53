import { expect } from 'chai';
import { InboundBindings } from '../../gateway-ref/lib/grm/inbound.js';
import { isCapaError } from '../../resolver/codec/errors.js';

const POOL = ['198.51.100.1', '198.51.100.2', '2001:db8:1::1'];
const Q1 = '203.0.113.7';
const Q2 = '203.0.113.8';

function setup(ttlMs = 10_000): { bindings: InboundBindings; c: { t: number } } {
  const c = { t: 0 };
  return { bindings: new InboundBindings(POOL, { ttlMs, now: () => c.t }), c };
}

describe('gateway InboundBindings', () => {
  it('binds one pool address per (querier, terminal), distinct for one querier, shared across queriers', () => {
    const { bindings } = setup();
    const a = bindings.bind(Q1, '100.64.0.1');
    const b = bindings.bind(Q1, '100.64.0.2');
    expect([a, b]).to.deep.equal(['198.51.100.1', '198.51.100.2']);
    expect(bindings.bind(Q1, '100.64.0.1')).to.equal(a);
    expect(bindings.lookup(Q1, a)).to.equal('100.64.0.1');
    expect(bindings.lookup(Q1, b)).to.equal('100.64.0.2');
    expect(bindings.lookup(Q2, a)).to.equal(undefined);
    // Another querier may reach another terminal through an address Q1 already uses.
    const c = bindings.bind(Q2, '100.64.0.3');
    expect(POOL.slice(0, 2)).to.include(c);
    expect(bindings.lookup(Q2, c)).to.equal('100.64.0.3');
    expect(bindings.lookup(Q1, c)).to.not.equal('100.64.0.3');
    expect(bindings.bind(Q1, '100.64.0.1', 6)).to.equal('2001:db8:1::1');
    expect(bindings.size).to.equal(4);
  });

  it('fails "exhausted" when every address of the family is bound for that querier', () => {
    const { bindings } = setup();
    bindings.bind(Q1, '100.64.0.1');
    bindings.bind(Q1, '100.64.0.2');
    let code: unknown;
    try {
      bindings.bind(Q1, '100.64.0.3');
    } catch (err) {
      code = isCapaError(err) ? err.code : err;
    }
    expect(code).to.equal('ERR_CAPA_EXHAUSTED');
    expect(bindings.bind(Q2, '100.64.0.3')).to.be.a('string');
  });

  it('forgets a binding its TTL after the last query, and renews it on each query', () => {
    const { bindings, c } = setup(10_000);
    const a = bindings.bind(Q1, '100.64.0.1');
    c.t = 9_000;
    expect(bindings.bind(Q1, '100.64.0.1')).to.equal(a);
    c.t = 18_999;
    expect(bindings.lookup(Q1, a)).to.equal('100.64.0.1');
    c.t = 19_000;
    expect(bindings.lookup(Q1, a)).to.equal(undefined);
    bindings.bind(Q2, '100.64.0.2');
    c.t = 40_000;
    bindings.expire();
    expect(bindings.size).to.equal(0);
  });

  it('an expired binding frees its address for another terminal of that querier', () => {
    const { bindings, c } = setup(1000);
    bindings.bind(Q1, '100.64.0.1');
    bindings.bind(Q1, '100.64.0.2');
    c.t = 1000;
    const address = bindings.bind(Q1, '100.64.0.3');
    expect(bindings.lookup(Q1, address)).to.equal('100.64.0.3');
  });

  it('gives back its live bindings for the state journal, and takes them back after a restart', () => {
    const { bindings, c } = setup(1000);
    const a1 = bindings.bind(Q1, '100.64.0.1');
    c.t = 500;
    const a2 = bindings.bind(Q1, '100.64.0.2');
    const saved = [...bindings.bindings()];
    expect(saved).to.deep.equal([
      { querier: Q1, poolAddress: a1, terminal: '100.64.0.1', expiresAt: 1000 },
      { querier: Q1, poolAddress: a2, terminal: '100.64.0.2', expiresAt: 1500 },
    ]);
    const later = setup(1000);
    later.c.t = 999;
    expect(saved.map((b) => later.bindings.restore(b))).to.deep.equal([true, true]);
    expect(later.bindings.lookup(Q1, a1)).to.equal('100.64.0.1');
    expect(later.bindings.bind(Q1, '100.64.0.2'), 'a renewal keeps the restored address').to.equal(a2);
    expect(later.bindings.restore(saved[0]!), 'already there').to.equal(false);
    later.c.t = 1000;
    expect(later.bindings.lookup(Q1, a1), 'expires when it would have').to.equal(undefined);
    expect(setup(1000).bindings.restore({ ...saved[0]!, poolAddress: '192.0.2.99' }), 'not in the pool').to.equal(false);
    const expired = setup(1000);
    expired.c.t = 2000;
    expect(expired.bindings.restore(saved[1]!)).to.equal(false);
  });

  it('refuses bad arguments and configuration', () => {
    const { bindings } = setup();
    const codeOf = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (err) {
        return isCapaError(err) ? err.code : err;
      }
      return 'accepted';
    };
    expect(codeOf(() => bindings.bind('resolver.example', '100.64.0.1'))).to.equal('ERR_CAPA_INVALID_ARG');
    expect(codeOf(() => bindings.bind(Q1, ''))).to.equal('ERR_CAPA_INVALID_ARG');
    expect(codeOf(() => new InboundBindings(['x'], { ttlMs: 1, now: Date.now }))).to.equal('ERR_CAPA_CONFIG');
    expect(codeOf(() => new InboundBindings(POOL, { ttlMs: 0, now: Date.now }))).to.equal('ERR_CAPA_CONFIG');
  });
});
