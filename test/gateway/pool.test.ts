import { expect } from 'chai';
import { parsePool } from '../../gateway-ref/lib/grm/pool.js';
import { capaThrown } from '../helpers/expect-error.js';

const configMessage = (spec: string | string[]): string => capaThrown(() => parsePool(spec), 'ERR_CAPA_CONFIG').message;

describe('gateway parsePool', () => {
  it('expands ranges, CIDR blocks and single addresses, in order, canonical', () => {
    expect(parsePool('127.64.0.1-127.64.0.4')).to.deep.equal(['127.64.0.1', '127.64.0.2', '127.64.0.3', '127.64.0.4']);
    expect(parsePool('198.51.100.0/30')).to.deep.equal(['198.51.100.0', '198.51.100.1', '198.51.100.2', '198.51.100.3']);
    expect(parsePool('2001:db8::1-2001:db8::4')).to.deep.equal(['2001:db8::1', '2001:db8::2', '2001:db8::3', '2001:db8::4']);
    expect(parsePool(' 198.51.100.9 , 2001:DB8:0::fffe/127,198.51.100.255-198.51.101.0')).to.deep.equal([
      '198.51.100.9', '2001:db8::fffe', '2001:db8::ffff', '198.51.100.255', '198.51.101.0',
    ]);
    expect(parsePool(['198.51.100.1', '198.51.100.2/32'])).to.deep.equal(['198.51.100.1', '198.51.100.2']);
  });

  it('accepts exactly 65536 addresses', () => {
    const pool = parsePool('10.0.0.0/16');
    expect(pool).to.have.length(65536);
    expect(pool[65535]).to.equal('10.0.255.255');
  });

  const bad: [string, string | string[], string][] = [
    ['an empty spec', ' , ', 'empty'],
    ['a name', 'gw.example', 'not an IPv4 or IPv6 address'],
    ['a reversed range', '198.51.100.9-198.51.100.1', 'ends before it starts'],
    ['a range across families', '198.51.100.1-2001:db8::1', 'same address family'],
    ['host bits in a CIDR block', '198.51.100.1/30', 'did you mean 198.51.100.0/30'],
    ['a bad prefix length', '198.51.100.0/33', 'prefix length must be 0-32'],
    ['a non-numeric prefix length', '2001:db8::/x', 'prefix length must be 0-128'],
    ['too many addresses', '2001:db8::/64', 'at most 65536'],
    ['overlapping entries', ['198.51.100.0/30', '198.51.100.3'], 'appears twice'],
    ['a zone index', 'fe80::1%eth0', 'not an IPv4 or IPv6 address'],
    ['two dashes', '1.1.1.1-1.1.1.2-1.1.1.3', 'neither an address, a range a-b nor a CIDR block'],
  ];
  for (const [what, spec, message] of bad) {
    it(`refuses ${what} with an actionable ERR_CAPA_CONFIG`, () => {
      expect(configMessage(spec)).to.contain(message);
    });
  }
});
