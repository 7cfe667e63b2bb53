/** The address sweep's decision (socket-shim/lib/address-sweep.ts), without netlink. */
import { expect } from 'chai';
import { decideSweep } from '../../socket-shim/lib/address-sweep.js';

describe('address sweep: which CAPA addresses come off an interface', () => {
  const IDLE = 60_000;
  const a1 = { address: '198.51.100.1', created: 500 };
  const a2 = { address: '198.51.100.2', created: 700 };

  it('an address in use is kept, and its idle count starts over', () => {
    expect(decideSweep([a1], new Set(['198.51.100.1']), { '198.51.100.1@500': 0 }, 10 * IDLE, IDLE)).to.deep.equal({ remove: [], idleSince: {} });
  });

  it('first seen unused: counted from now, not removed', () => {
    expect(decideSweep([a1], new Set(), {}, 5000, IDLE)).to.deep.equal({ remove: [], idleSince: { '198.51.100.1@500': 5000 } });
  });

  it('unused at two looks the idle time apart: removed; sooner: kept counting', () => {
    const since = { '198.51.100.1@500': 1000, '198.51.100.2@700': 50_000 };
    expect(decideSweep([a1, a2], new Set(), since, 1000 + IDLE, IDLE))
      .to.deep.equal({ remove: ['198.51.100.1'], idleSince: { '198.51.100.2@700': 50_000 } });
  });

  it('an address added again since the last look (or a reused namespace) starts a new count', () => {
    expect(decideSweep([{ address: '198.51.100.1', created: 900 }], new Set(), { '198.51.100.1@500': 0 }, 10 * IDLE, IDLE))
      .to.deep.equal({ remove: [], idleSince: { '198.51.100.1@900': 10 * IDLE } });
  });

  it('forgets addresses no longer on the interface', () => {
    expect(decideSweep([], new Set(), { '198.51.100.7@1': 1 }, 2, IDLE)).to.deep.equal({ remove: [], idleSince: {} });
  });
});
