/** The TypeScript codec against the shared vectors and the contract's rules, bad input included. */
import { expect } from 'chai';
import dnsPacket from 'dns-packet';
import { capaRrtype, dnsPacketTypeName } from '../../resolver/codec/constants.js';
import { CapaError, type CapaErrorCode } from '../../resolver/codec/errors.js';
import { addressFromReverseName, bytesToIp, canonicalIp, ipToBytes, reverseName } from '../../resolver/codec/ip.js';
import { encodeExtendedError } from '../../gateway-ref/lib/dns/ede.js';
import { capaAnswers, decodeMessage, encodeQuery, extendedErrors } from '../../resolver/codec/message.js';
import { usualMessage } from '../../resolver/codec/usual-message.js';
import {
  formatGenericRdata, formatRR, formatRdata, parseRR, parseRdata,
} from '../../resolver/codec/presentation.js';
import { buildQueryName, normalizeHost, parseQueryName } from '../../resolver/codec/qname.js';
import { type CapaRecord, decode as decodeRdata, encode as encodeRdata, encodingLength } from '../../resolver/codec/rdata.js';
import { encodeRelease } from '../../resolver/codec/update.js';
import { encodeResponse, QUESTION_NAME, type ResourceRecord } from '../../gateway-ref/lib/dns/wire.js';
import { validateMessage } from '../../resolver/codec/validate.js';
import { FRAMING_CASES, WELL_FORMED, hex, responseWith, vectors } from '../helpers/vectors.js';
import { Prng, mutate, walkMessage } from '../helpers/wire-fuzz.js';

function expectCode(fn: () => unknown, code: CapaErrorCode): void {
  expect(fn).to.throw(CapaError).with.property('code', code);
}

const CAPA = dnsPacketTypeName(65280);

describe('codec: CAPA RDATA vectors', function () {
  for (const v of vectors.rdata.valid) {
    describe(v.name, function () {
      it('wire -> fields', function () {
        expect(decodeRdata(hex(v.wire))).to.deep.equal(v.fields);
      });
      it('fields -> wire', function () {
        expect(Buffer.from(encodeRdata(v.fields)).toString('hex')).to.equal(v.wire);
        expect(encodingLength(v.fields)).to.equal(v.wire.length / 2);
      });
      it('fields <-> presentation', function () {
        expect(formatRdata(v.fields)).to.equal(v.presentation);
        expect(parseRdata(v.presentation)).to.deep.equal(v.fields);
      });
      it('fields <-> RFC 3597 generic form, also split over white space and in lower case', function () {
        expect(formatGenericRdata(v.fields)).to.equal(v.generic);
        expect(parseRdata(v.generic)).to.deep.equal(v.fields);
        const [mark, length, digits] = v.generic.split(' ') as [string, string, string];
        const split = `  ${mark}\t${length}  ${digits.slice(0, 3)} ${digits.slice(3, 10).toLowerCase()}\n${digits.slice(10)} `;
        expect(parseRdata(split)).to.deep.equal(v.fields);
      });
    });
  }

  for (const v of vectors.rdata.malformed) {
    it(`malformed: ${v.name} -> ${v.error}`, function () {
      expectCode(() => decodeRdata(hex(v.wire)), v.error as CapaErrorCode);
    });
  }

  for (const v of vectors.rdata.badPresentation) {
    it(`bad presentation: ${v.name} -> ${v.error}`, function () {
      expectCode(() => parseRdata(v.text), v.error as CapaErrorCode);
    });
  }

  it('decodes RDATA in place inside a larger buffer', function () {
    const v = vectors.rdata.valid[0]!;
    const buf = Buffer.concat([Buffer.from([0xaa, 0xbb]), hex(v.wire), Buffer.from([0xcc])]);
    expect(decodeRdata(buf, 2, 8)).to.deep.equal(v.fields);
    expectCode(() => decodeRdata(buf, 6, 8), 'ERR_CAPA_MALFORMED');
  });

  it('refuses fields it cannot encode', function () {
    const ok = vectors.rdata.valid[0]!.fields;
    for (const bad of [
      { ...ok, flags: 256 }, { ...ok, proto: -1 }, { ...ok, port: 65536 }, { ...ok, port: 1.5 },
      { ...ok, address: '129.94.230' }, { ...ok, address: 'fe80::1%eth0' }, { ...ok, address: 'apricot' },
    ]) {
      expectCode(() => encodeRdata(bad), 'ERR_CAPA_INVALID_ARG');
    }
    expectCode(() => encodeRdata(ok, new Uint8Array(10), 3), 'ERR_CAPA_INVALID_ARG');
  });

  it('rejects more bad presentation text', function () {
    for (const text of ['', '0 6 80 129.94.230.85 extra', '0 6 -1 129.94.230.85', '0 6 0x50 129.94.230.85',
      '0 6 80 fe80::1%eth0', '\\# 8 00062134815EE65', '\\# 8 00062134815EE655ZZ', '\\# 20 00062134815EE655', '\\#']) {
      expectCode(() => parseRdata(text), 'ERR_CAPA_INVALID_ARG');
    }
  });
});

describe('codec: message vectors', function () {
  for (const v of vectors.messages) {
    if (v.valid) {
      it(`valid: ${v.name}`, function () {
        const message = decodeMessage(hex(v.wire), vectors.rrtype);
        expect(message.rcode).to.equal(v.rcode);
        expect(capaAnswers(message, vectors.rrtype).map((a) => a.record)).to.deep.equal(v.capa);
        expect(extendedErrors(message)).to.deep.equal(v.ede);
      });
    } else {
      it(`invalid: ${v.name}`, function () {
        expectCode(() => validateMessage(hex(v.wire), vectors.rrtype), 'ERR_CAPA_MALFORMED');
        expectCode(() => decodeMessage(hex(v.wire), vectors.rrtype), 'ERR_CAPA_MALFORMED');
      });
    }
  }

  it('reads the CAPA answer with its owner and TTL (the lease)', function () {
    const [answer] = capaAnswers(decodeMessage(hex(vectors.messages[0]!.wire)));
    expect(answer).to.deep.include({ name: '_80._tcp.apricot.ee.unsw.edu.au', ttl: 30 });
  });

  it('takes the CAPA type number as a parameter: another number makes the vector record opaque', function () {
    const capa7 = vectors.messages.find((m) => m.name.startsWith('CAPA RDLENGTH 7'))!;
    expect(decodeMessage(hex(capa7.wire), 65281).answers[0]!.type).to.equal(CAPA);
    expect(capaAnswers(decodeMessage(hex(vectors.messages[0]!.wire), 65281), 65281)).to.deep.equal([]);
  });

  it('reads CAPA_RRTYPE and rejects values that are not RR type numbers', function () {
    expect(capaRrtype({})).to.equal(65280);
    expect(capaRrtype({ CAPA_RRTYPE: '65281' })).to.equal(65281);
    for (const bad of ['0', '65536', 'CAPA', '1.5']) expect(() => capaRrtype({ CAPA_RRTYPE: bad })).to.throw(CapaError).with.property('code', 'ERR_CAPA_CONFIG');
  });

  it('round-trips an Extended DNS Error through a real OPT record', function () {
    const wire = dnsPacket.encode({
      type: 'response', id: 7, flags: 2, questions: [{ name: 'x', type: 'A', class: 'IN' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [encodeExtendedError({ code: 49153, text: 'CAPA quota exceeded' })] }],
    } as unknown as dnsPacket.Packet);
    const message = decodeMessage(wire);
    expect(message.rcode).to.equal('SERVFAIL');
    expect(extendedErrors(message)).to.deep.equal([{ code: 49153, text: 'CAPA quota exceeded' }]);
  });
});

describe('codec: RDATA framing of the types dns-packet reads field by field', function () {
  it('accepts a well-formed record of every such type, and decodes them all', function () {
    const message = decodeMessage(responseWith(WELL_FORMED));
    expect(message.answers.map((a) => a.type)).to.deep.equal(WELL_FORMED.map((a) => a.type));
  });

  it('the smuggling cases frame as [type, 4660] by RDLENGTH (the construction the cases rely on)', function () {
    for (const c of FRAMING_CASES.filter((f) => f.smuggles !== undefined)) {
      expect(walkMessage(c.wire)!.records.map((r) => r.type), c.name).to.deep.equal([c.smuggles, 0x1234]);
    }
  });

  for (const c of FRAMING_CASES) {
    it(`malformed: ${c.name}`, function () {
      expectCode(() => validateMessage(c.wire), 'ERR_CAPA_MALFORMED');
      expectCode(() => decodeMessage(c.wire), 'ERR_CAPA_MALFORMED');
    });
  }
});

describe('codec: query encoding', function () {
  it('lays out header, question and OPT(1232) as the contract says', function () {
    const wire = encodeQuery({ id: 0xbeef, name: '_80._tcp.apricot.ee.unsw.edu.au', type: CAPA });
    const expected = 'beef00000001000000000001'
      + '035f3830045f7463700761707269636f7402656504756e73770365647502617500' + 'ff000001'
      + '00' + '0029' + '04d0' + '00000000' + '0000';
    expect(wire.toString('hex')).to.equal(expected);
  });

  it('sets RD only when asked and leaves OPT out when edns is false', function () {
    const wire = encodeQuery({ id: 1, name: 'a.example', type: 'A', rd: true, edns: false });
    expect(wire.toString('hex')).to.equal('000101000001000000000000' + '0161076578616d706c6500' + '00010001');
  });

  it('writes the bytes dns-packet writes, odd names and type names included', function () {
    const names = ['', '.', '..', 'a.', '.a', 'a..b', 'MiXeD.Case.Example', 'ünïcödé.example', `${'a'.repeat(63)}.b`, 'x'.repeat(300), '_443._udp.1.0.0.2.ip6.arpa'];
    for (const name of names) {
      for (const type of ['A', 'aaaa', 'MX', CAPA, 'UNKNOWN_65281', 'bogus']) {
        for (const [rd, edns] of [[false, true], [true, false]] as const) {
          const packet = {
            type: 'query' as const, id: 0xa55a, flags: rd ? dnsPacket.RECURSION_DESIRED : 0,
            questions: [{ name, type, class: 'IN' }],
            additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] }] : [],
          };
          const reference = dnsPacket.encode(packet as unknown as dnsPacket.Packet).toString('hex');
          expect(encodeQuery({ id: 0xa55a, name, type, rd, edns }).toString('hex'), `${name} ${type} rd=${rd} edns=${edns}`).to.equal(reference);
        }
      }
    }
  });
});

describe('codec: the usual message read by hand', function () {
  /** The decoded message, or the error code, as text to compare (JSON keeps the order of the fields). */
  const outcome = (decode: () => unknown): string => {
    try {
      return JSON.stringify(decode());
    } catch (err) {
      return `throws ${(err as CapaError).code}`;
    }
  };
  /** What dns-packet reads from a validated message, in decodeMessage's shape: the reference. */
  const byDnsPacket = (wire: Buffer): unknown => {
    validateMessage(wire, 65280);
    try {
      const p = dnsPacket.decode(wire) as dnsPacket.DecodedPacket & { rcode: string; opcode: string };
      if (dnsPacket.decode.bytes !== wire.length) throw new Error('length');
      return { id: p.id, flags: p.flags, rcode: p.rcode, opcode: p.opcode, questions: p.questions, answers: p.answers, authorities: p.authorities, additionals: p.additionals };
    } catch {
      throw new CapaError('ERR_CAPA_MALFORMED', 'dns-packet could not read it');
    }
  };
  const record: CapaRecord = { flags: 0, proto: 6, port: 8500, address: '129.94.230.85' };
  const capaRr = (): ResourceRecord => ({ name: QUESTION_NAME, type: 65280, ttl: 30, rdata: encodeRdata(record) });
  const aRr = (name: string, address: string): ResourceRecord => ({ name, type: 1, ttl: 60, rdata: ipToBytes(address) });
  const question = (name: string, type: string): Uint8Array => encodeQuery({ id: 0, name, type, edns: false }).subarray(12);
  /** Messages the fast path takes: requests, a GRM's answers, releases. */
  const usual = [
    encodeQuery({ id: 1, name: '_80._tcp.www.example', type: CAPA }),
    encodeQuery({ id: 2, name: 'www.example', type: CAPA, edns: false }),
    encodeQuery({ id: 3, name: '.', type: 'NS', rd: true }),
    encodeQuery({ id: 4, name: 'ünïcödé.Example', type: 'A' }),
    encodeQuery({ id: 5, name: 'www.example', type: 'UNKNOWN_65281' }),
    Buffer.from(dnsPacket.encode({ type: 'query', id: 7, questions: [{ name: 'a.example', type: 'A' }, { name: 'b.example', type: 'A' }] })),
    encodeResponse({ id: 8, flags: 0x0400, question: question('_80._tcp.www.example', CAPA), answers: [capaRr()], additionals: [aRr('www.example', '129.94.230.85')], edns: { extendedRcode: 0, options: [] } }),
    encodeResponse({ id: 9, flags: 0x0503, question: question('gone.example', 'A'), answers: [], additionals: [], edns: { extendedRcode: 0, options: [] } }),
    Buffer.from(dnsPacket.encode({
      type: 'response', id: 10, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'www.example', type: 'A', class: 'IN' }],
      answers: [{ name: 'www.example', type: 'CNAME', ttl: 5, data: 'edge.example' }, { name: 'edge.example', type: 'A', ttl: 7, class: 'CH', flush: true, data: '10.0.0.1' } as dnsPacket.Answer],
    })),
    encodeRelease({ id: 11, zone: 'www.example', qname: '_80._tcp.www.example', record, rrtype: 65280 }),
  ];
  /** Messages left to dns-packet: other types, OPT with options, an OPT not owned by the root. */
  const unusual = [
    Buffer.from(dnsPacket.encode({
      type: 'query', id: 6, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'www.example', type: 'A', class: 'CH' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 1, ednsVersion: 1, flags: dnsPacket.DNSSEC_OK, options: [{ code: 10, data: Buffer.alloc(8, 7) }] } as unknown as dnsPacket.Answer],
    })),
    encodeResponse({ id: 12, flags: 0x0402, question: question('_80._tcp.www.example', CAPA), answers: [], additionals: [], edns: { extendedRcode: 0, options: [encodeExtendedError({ code: 49152, text: 'pool exhausted' })] } }),
    Buffer.from(dnsPacket.encode({ type: 'response', id: 13, questions: [{ name: 'www.example', type: 'AAAA' }], answers: [{ name: 'www.example', type: 'AAAA', data: '2001:db8::1' }] })),
    Buffer.from(dnsPacket.encode({ type: 'response', id: 14, questions: [{ name: 'www.example', type: 'MX' }], answers: [{ name: 'www.example', type: 'MX', data: { preference: 10, exchange: 'mail.example' } }] })),
    ...vectors.messages.map((m) => hex(m.wire)),
  ];

  it('reads the usual messages itself, exactly as dns-packet reads them', function () {
    for (const wire of usual) {
      validateMessage(wire, 65280);
      const hand = usualMessage(wire, 65280);
      expect(hand, wire.toString('hex')).to.not.equal(undefined);
      expect(JSON.stringify(hand), wire.toString('hex')).to.equal(outcome(() => byDnsPacket(wire)));
    }
  });

  it('leaves other messages to dns-packet', function () {
    for (const wire of unusual.slice(0, 4)) expect(usualMessage(wire, 65280), wire.toString('hex')).to.equal(undefined);
  });

  it('gives what dns-packet gives for every message, mutated ones included', function () {
    const rng = new Prng(0xdec0de);
    const seeds = [...usual, ...unusual];
    const cases = [...seeds, ...Array.from({ length: 5000 }, () => mutate(rng.pick(seeds), rng))];
    for (const wire of cases) {
      expect(outcome(() => decodeMessage(wire, 65280)), wire.toString('hex')).to.equal(outcome(() => byDnsPacket(wire)));
    }
  });
});

describe('codec: IP addresses and reverse names', function () {
  const canonical: [string, string][] = [
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'], ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['0:0:0:0:0:0:0:0', '::'], ['::1', '::1'], ['1::', '1::'], ['::ffff:1.2.3.4', '::ffff:102:304'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'], ['0.0.0.0', '0.0.0.0'],
  ];
  for (const [input, want] of canonical) {
    it(`canonical ${input} -> ${want}`, function () {
      expect(canonicalIp(input)).to.equal(want);
      const bytes = ipToBytes(input);
      expect(bytesToIp(bytes, 0, bytes.length as 4 | 16)).to.equal(want);
    });
  }

  it('rejects text that is not an address', function () {
    for (const bad of ['', '1.2.3', '256.1.1.1', '01.2.3.4', 'fe80::1%eth0', '1:2:3:4:5:6:7:8:9', '::1::', 'example.com', ' 1.2.3.4']) {
      expectCode(() => ipToBytes(bad), 'ERR_CAPA_INVALID_ARG');
    }
  });

  it('builds and reads reverse names both ways', function () {
    expect(reverseName('129.94.230.85')).to.equal('85.230.94.129.in-addr.arpa');
    const v6 = reverseName('2001:db8::1');
    expect(v6).to.equal(`1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.ip6.arpa`);
    expect(addressFromReverseName(v6)).to.equal('2001:db8::1');
    expect(addressFromReverseName('85.230.94.129.IN-ADDR.ARPA.')).to.equal('129.94.230.85');
    expect(addressFromReverseName(v6.toUpperCase())).to.equal('2001:db8::1');
  });

  it('treats incomplete or bad reverse names as ordinary names', function () {
    for (const name of ['1.1.1.in-addr.arpa', '256.1.1.1.in-addr.arpa', '01.1.1.1.in-addr.arpa', '1.1.1.1.1.in-addr.arpa',
      `${'0.'.repeat(31)}ip6.arpa`, `${'0.'.repeat(31)}g.ip6.arpa`, `${'00.'.repeat(32)}ip6.arpa`, 'example.com', 'in-addr.arpa']) {
      expect(addressFromReverseName(name), name).to.equal(undefined);
    }
  });
});

describe('codec: CAPA query names', function () {
  it('builds _<port>._<proto>.<host>, lower case, without the trailing dot, TCP by default', function () {
    expect(buildQueryName({ host: 'Apricot.EE.unsw.edu.au.', port: 80 })).to.equal('_80._tcp.apricot.ee.unsw.edu.au');
    expect(buildQueryName({ host: 'dns.example', port: 53, protocol: 'udp' })).to.equal('_53._udp.dns.example');
    expect(buildQueryName({ host: 'x', port: 65535, protocol: 'tcp' })).to.equal('_65535._tcp.x');
  });

  it('a bare host stands for an unknown destination port', function () {
    expect(buildQueryName({ host: 'apricot.ee.unsw.edu.au' })).to.equal('apricot.ee.unsw.edu.au');
    expect(parseQueryName('apricot.ee.unsw.edu.au')).to.deep.equal({ host: 'apricot.ee.unsw.edu.au' });
  });

  it('turns IP literals into reverse names and reads them back', function () {
    const v4 = buildQueryName({ host: '129.94.230.85', port: 80 });
    expect(v4).to.equal('_80._tcp.85.230.94.129.in-addr.arpa');
    expect(parseQueryName(v4)).to.deep.equal({ host: '85.230.94.129.in-addr.arpa', port: 80, protocol: 'tcp', address: '129.94.230.85' });
    const v6 = buildQueryName({ host: '2001:DB8::1', port: 443, protocol: 'udp' });
    expect(v6).to.equal(`_443._udp.${reverseName('2001:db8::1')}`);
    expect(parseQueryName(v6).address).to.equal('2001:db8::1');
    expect(normalizeHost('::1')).to.equal(reverseName('::1'));
  });

  it('parses its own names back, case-insensitively and with a trailing dot', function () {
    expect(parseQueryName('_8500._UDP.Apricot.example.')).to.deep.equal({ host: 'apricot.example', port: 8500, protocol: 'udp' });
  });

  it('rejects bad ports and protocols', function () {
    for (const port of [0, -1, 65536, 1.5, Number.NaN]) expectCode(() => buildQueryName({ host: 'a.example', port }), 'ERR_CAPA_INVALID_ARG');
    expectCode(() => buildQueryName({ host: 'a.example', port: 80, protocol: 'sctp' as 'tcp' }), 'ERR_CAPA_INVALID_ARG');
    for (const name of ['_0._tcp.a.example', '_080._tcp.a.example', '_65536._tcp.a.example', '_80._sctp.a.example', '_x._tcp.a.example']) {
      expectCode(() => parseQueryName(name), 'ERR_CAPA_INVALID_ARG');
    }
  });

  it('rejects bad labels and names that are too long', function () {
    const label63 = 'a'.repeat(63);
    const name253 = [label63, label63, label63, 'a'.repeat(61)].join('.');
    expect(buildQueryName({ host: name253 })).to.equal(name253);
    expectCode(() => buildQueryName({ host: name253, port: 80 }), 'ERR_CAPA_INVALID_ARG');
    for (const host of ['', '.', 'a..b', '-a.example', 'a-.example', `${label63}a.example`, `${name253}a`, 'ex ample.com', 'caf\u00e9.example', 'fe80::1%eth0']) {
      expectCode(() => buildQueryName({ host, port: 80 }), 'ERR_CAPA_INVALID_ARG');
    }
  });
});

describe('codec: presentation lines', function () {
  const fields = vectors.rdata.valid[0]!.fields;

  it('formats and parses `owner TTL IN CAPA rdata`', function () {
    const line = 'apricot.ee.unsw.edu.au. 30 IN CAPA 0 6 8500 129.94.230.85';
    expect(formatRR({ name: 'apricot.ee.unsw.edu.au', ttl: 30, record: fields })).to.equal(line);
    expect(parseRR(line)).to.deep.equal({ name: 'apricot.ee.unsw.edu.au', ttl: 30, record: fields });
    expect(formatRR(parseRR(line))).to.equal(line);
  });

  it('takes TTL and class in either order, either may be missing (TTL 0)', function () {
    for (const line of ['a.example IN 30 CAPA 0 6 8500 129.94.230.85', 'a.example 30 CAPA 0 6 8500 129.94.230.85']) {
      expect(parseRR(line).ttl, line).to.equal(30);
    }
    expect(parseRR('a.example in capa 0 6 8500 129.94.230.85')).to.deep.equal({ name: 'a.example', ttl: 0, record: fields });
  });

  it('reads the generic type and RDATA, split across white space', function () {
    expect(parseRR('a.example. 30 IN TYPE65280 \\# 8 0006 2134\t815E E655').record).to.deep.equal(fields);
    expect(parseRR('a.example 30 IN TYPE65281 0 6 8500 129.94.230.85', 65281).record).to.deep.equal(fields);
  });

  it('rejects other types, empty lines and out-of-range TTLs', function () {
    for (const line of ['', '   ', 'a.example 30 IN A 129.94.230.85', 'a.example 30 IN TYPE65281 0 6 8500 129.94.230.85',
      'a.example 2147483648 IN CAPA 0 6 8500 129.94.230.85', 'a.example 30 IN CAPA 0 6 8500']) {
      expectCode(() => parseRR(line), 'ERR_CAPA_INVALID_ARG');
    }
  });
});
