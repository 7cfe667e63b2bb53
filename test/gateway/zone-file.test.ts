import { expect } from 'chai';
import { parseZoneFile } from '../../gateway-ref/lib/zone/zone-file.js';
import { Zone } from '../../gateway-ref/lib/zone/zone.js';
import type { CapaError } from '../../resolver/codec/errors.js';
import { capaThrown } from '../helpers/expect-error.js';

const configError = (fn: () => unknown): CapaError => capaThrown(fn, 'ERR_CAPA_CONFIG');

const ZONE = `; a zone for the loopback lab
$ORIGIN example.
$TTL 300
@            IN  A     127.0.0.10
www      60  IN  A     127.0.0.80   ; web server
             IN  AAAA  2001:DB8:0:0::80
alias        IN  CNAME www
far          CNAME     www.other.test.
$ORIGIN sub          ; relative to example.
host     1h        A   127.0.0.11
abs.test.    120 IN A  127.0.0.12
`;

describe('gateway zone file (RFC 1035 master-file subset)', () => {
  const records = parseZoneFile(ZONE, 'lab.zone');

  it('reads owners with $ORIGIN, @, relative and absolute names, blank owner = previous owner', () => {
    expect(records.map((r) => `${r.name} ${r.type} ${r.data}`)).to.deep.equal([
      'example A 127.0.0.10',
      'www.example A 127.0.0.80',
      'www.example AAAA 2001:db8::80',
      'alias.example CNAME www.example',
      'far.example CNAME www.other.test',
      'host.sub.example A 127.0.0.11',
      'abs.test A 127.0.0.12',
    ]);
  });

  it('takes the TTL of the record, else $TTL; accepts 1h-style units; TTL and class in either order', () => {
    expect(records.map((r) => r.ttl)).to.deep.equal([300, 60, 300, 300, 300, 3600, 120]);
    expect(parseZoneFile('a.test. IN 30 A 127.0.0.1')[0]!.ttl).to.equal(30);
  });

  it('without $TTL uses the last explicit TTL (RFC 1035), and refuses a first record without any', () => {
    expect(parseZoneFile('a.test. 40 A 127.0.0.1\nb.test. A 127.0.0.2').map((r) => r.ttl)).to.deep.equal([40, 40]);
    expect(configError(() => parseZoneFile('a.test. A 127.0.0.1', 'z')).message).to.match(/^z:1: no TTL/);
  });

  it('keeps the line of each record', () => {
    expect(records.map((r) => r.line)).to.deep.equal([4, 5, 6, 7, 8, 10, 11]);
  });

  const bad: [string, string, RegExp][] = [
    ['unsupported type', '$TTL 60\na.test. IN MX 10 mail.test.', /^f\.zone:2: unsupported record type "MX"/],
    ['bad IPv4', '$TTL 60\n\na.test. A 300.1.1.1', /^f\.zone:3: "300\.1\.1\.1" is not an IPv4 address/],
    ['IPv6 in an A record', '$TTL 60\na.test. A ::1', /^f\.zone:2: .*not an IPv4/],
    ['IPv4 in an AAAA record', '$TTL 60\na.test. AAAA 127.0.0.1', /^f\.zone:2: .*not an IPv6/],
    ['two values', '$TTL 60\na.test. A 127.0.0.1 127.0.0.2', /^f\.zone:2: A takes exactly one value/],
    ['missing value', '$TTL 60\na.test. A', /^f\.zone:2: A takes exactly one value, got 0/],
    ['missing type', '$TTL 60\na.test. 60 IN', /^f\.zone:2: missing record type/],
    ['blank owner first', '$TTL 60\n   A 127.0.0.1', /^f\.zone:2: no owner name/],
    ['bad label', '$TTL 60\nbad!name.test. A 127.0.0.1', /^f\.zone:2: bad DNS label "bad!name"/],
    ['unsupported directive', '$INCLUDE other.zone', /^f\.zone:1: unsupported directive \$INCLUDE/],
    ['bad $TTL', '$TTL soon', /^f\.zone:1: \$TTL "soon" is not a TTL/],
    ['huge TTL', 'a.test. 9999999999 A 127.0.0.1', /^f\.zone:1: TTL 9999999999 is larger/],
    ['other class', 'a.test. 60 CH A 127.0.0.1', /^f\.zone:1: class CH is not served/],
    ['root owner', '$TTL 60\n. A 127.0.0.1', /^f\.zone:2: records at the root/],
  ];
  for (const [what, text, message] of bad) {
    it(`rejects ${what} with file and line`, () => {
      expect(configError(() => parseZoneFile(text, 'f.zone')).message).to.match(message);
    });
  }
});

describe('gateway Zone lookup', () => {
  const zone = new Zone(parseZoneFile(ZONE, 'lab.zone'), 'lab.zone');

  it('answers A and AAAA of a name, case-insensitively and with or without the trailing dot', () => {
    expect(zone.lookup('WWW.Example.', 'A')!.records.map((r) => r.data)).to.deep.equal(['127.0.0.80']);
    expect(zone.lookup('www.example', 'AAAA')!.records.map((r) => r.data)).to.deep.equal(['2001:db8::80']);
  });

  it('is NODATA (empty, not undefined) for a name without that type', () => {
    expect(zone.lookup('host.sub.example', 'AAAA')).to.deep.equal({ records: [] });
  });

  it('is undefined for a name not in the zone', () => {
    expect(zone.lookup('nothere.example', 'A')).to.equal(undefined);
  });

  it('follows a CNAME inside the zone and returns the chain then the data', () => {
    const answer = zone.lookup('alias.example', 'A')!;
    expect(answer.records.map((r) => `${r.name} ${r.type} ${r.data}`)).to.deep.equal([
      'alias.example CNAME www.example',
      'www.example A 127.0.0.80',
    ]);
    expect(answer.outsideTarget).to.equal(undefined);
  });

  it('reports a CNAME target outside the zone for the caller to resolve elsewhere', () => {
    const answer = zone.lookup('far.example', 'A')!;
    expect(answer.records.map((r) => r.type)).to.deep.equal(['CNAME']);
    expect(answer.outsideTarget).to.equal('www.other.test');
  });

  it('refuses a CNAME beside other data, naming file and line', () => {
    const records = parseZoneFile('$TTL 60\na.test. A 127.0.0.1\na.test. CNAME b.test.', 'c.zone');
    expect(configError(() => new Zone(records, 'c.zone')).message).to.match(/^c\.zone:3: a\.test has a CNAME and other data/);
  });

  it('refuses a CNAME loop', () => {
    const records = parseZoneFile('$TTL 60\na.test. CNAME b.test.\nb.test. CNAME c.test.\nc.test. CNAME a.test.', 'l.zone');
    expect(configError(() => new Zone(records, 'l.zone')).message).to.match(/^l\.zone:2: CNAME loop/);
  });
});
