import { expect } from 'chai';
import { Allocator } from '../../gateway-ref/lib/grm/allocator.js';
import { formatEvent } from '../../gateway-ref/lib/grm/journal.js';

describe('gateway journal', () => {
  it('writes one JSON line per allocate, confirm, release and expiry with who, what and when', () => {
    const start = Date.UTC(2024, 0, 2, 3, 4, 5, 678);
    let t = start;
    const lines: string[] = [];
    const allocator = new Allocator(
      { pool: ['198.51.100.1', '2001:db8:1::1'], portStrategy: 'sequential', leaseMs: 1000, now: () => t },
      (event) => lines.push(formatEvent(event)),
    );
    const web = allocator.allocate('100.64.0.1', { proto: 6, address: '203.0.113.10', port: 443 });
    allocator.confirm(web.tuple);
    allocator.allocate('100.64.0.2', { proto: 17, address: '2001:db8::53' });
    t += 1000;
    allocator.expire();
    allocator.release(web.id);
    expect(lines.every((line) => !line.includes('\n'))).to.equal(true);
    const at0 = '2024-01-02T03:04:05.678Z';
    const at1 = '2024-01-02T03:04:06.678Z';
    const webFields = { terminal: '100.64.0.1', proto: 6, aOG: '198.51.100.1', pA: 1024, aOB: '203.0.113.10', pB: 443 };
    const dnsFields = { terminal: '100.64.0.2', proto: 17, aOG: '2001:db8:1::1', pA: 1024, aOB: '2001:db8::53', pB: null };
    expect(lines.map((line) => JSON.parse(line) as unknown)).to.deep.equal([
      { time: at0, event: 'allocate', ...webFields },
      { time: at0, event: 'confirm', ...webFields },
      { time: at0, event: 'allocate', ...dnsFields },
      { time: at1, event: 'expire', ...dnsFields },
      { time: at1, event: 'release', ...webFields },
    ]);
  });
});
