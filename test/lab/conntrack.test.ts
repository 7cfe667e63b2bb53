/** The parser of `conntrack -E` lines (format of conntrack-tools 1.4). */
import { expect } from 'chai';
import { parseConntrackLine } from '../../gateway-ref/lib/dataplane/conntrack.js';

describe('conntrack event lines', () => {
  it('reads the original direction of a new TCP flow, not the reply', () => {
    const line = '    [NEW] tcp      6 120 SYN_SENT src=198.51.100.7 dst=203.0.113.10 sport=40001 dport=80 [UNREPLIED] src=203.0.113.10 dst=198.51.100.7 sport=80 dport=40001';
    expect(parseConntrackLine(line)).to.deep.equal({ kind: 'new', proto: 6, src: '198.51.100.7', dst: '203.0.113.10', sport: 40001, dport: 80 });
  });

  it('reads a destroyed UDP flow, and IPv6 addresses in canonical form', () => {
    expect(parseConntrackLine('[DESTROY] udp      17 src=198.51.100.7 dst=203.0.113.10 sport=1024 dport=7 src=203.0.113.10 dst=198.51.100.7 sport=7 dport=1024 id=12'))
      .to.deep.equal({ kind: 'destroy', proto: 17, src: '198.51.100.7', dst: '203.0.113.10', sport: 1024, dport: 7 });
    expect(parseConntrackLine('[DESTROY] tcp      6 src=2001:DB8:0::7 dst=2001:db8::10 sport=5 dport=443 src=2001:db8::10 dst=2001:db8::7 sport=443 dport=5 [ASSURED]'))
      .to.include({ src: '2001:db8::7', dst: '2001:db8::10' });
  });

  it('ignores other events, other protocols, the tool\'s notices and malformed lines', () => {
    for (const line of [
      ' [UPDATE] tcp      6 60 SYN_RECV src=198.51.100.7 dst=203.0.113.10 sport=40001 dport=80 src=203.0.113.10 dst=198.51.100.7 sport=80 dport=40001',
      '    [NEW] icmp     1 30 src=198.51.100.7 dst=203.0.113.10 type=8 code=0 id=7 [UNREPLIED] src=203.0.113.10 dst=198.51.100.7 type=0 code=0 id=7',
      'conntrack v1.4.7 (conntrack-tools): 2 flow events have been shown.',
      '    [NEW] tcp      6 120 SYN_SENT src=198.51.100.7 dst=203.0.113.10 sport=40001',
      '    [NEW] tcp      6 120 SYN_SENT src=198.51.100.7 dst=203.0.113.10 sport=40001 dport=65536',
      '    [NEW] tcp      6 120 SYN_SENT src=198.51.100.7 dst=2001:db8::10 sport=40001 dport=80',
      '',
    ]) expect(parseConntrackLine(line), line).to.equal(undefined);
  });
});
