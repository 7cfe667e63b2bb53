/** The address sweep's decision (socket-shim/lib/address-sweep.ts), without netlink. */
import { expect } from 'chai';
import { decideSweep } from '../../socket-shim/lib/address-sweep.js';

describe('address sweep: which CAPA addresses come off an interface', () => {
  const IDLE = 60_000;

  it('an address in use is kept, and its idle count starts over', () => {
    expect(decideSweep(['198.51.100.1'], new Set(['198.51.100.1']), { '198.51.100.1': 0 }, 10 * IDLE, IDLE)).to.deep.equal({ remove: [], idleSince: {} });
  });

  it('first seen unused: counted from now, not removed', () => {
    expect(decideSweep(['198.51.100.1'], new Set(), {}, 5000, IDLE)).to.deep.equal({ remove: [], idleSince: { '198.51.100.1': 5000 } });
  });

  it('unused at two looks the idle time apart: removed; sooner: kept counting', () => {
    const since = { '198.51.100.1': 1000, '198.51.100.2': 50_000 };
    expect(decideSweep(['198.51.100.1', '198.51.100.2'], new Set(), since, 1000 + IDLE, IDLE))
      .to.deep.equal({ remove: ['198.51.100.1'], idleSince: { '198.51.100.2': 50_000 } });
  });

  it('forgets addresses no longer on the interface', () => {
    expect(decideSweep([], new Set(), { '198.51.100.7': 1 }, 2, IDLE)).to.deep.equal({ remove: [], idleSince: {} });
  });
});
