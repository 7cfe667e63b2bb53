/**
 * One wire contract, two languages: the C codec (native/core/capa_codec.c), built here with the
 * strict flags and loaded through koffi, must give the TypeScript codec's answers on the shared
 * vectors, on mutants of them, and on the edge cases of addresses, query names and queries.
 */
import { expect } from 'chai';
import type dnsPacket from 'dns-packet';
import koffi from 'koffi';
import { createRequire } from 'node:module';
import { dnsPacketTypeName } from '../../resolver/codec/constants.js';
import { isCapaError } from '../../resolver/codec/errors.js';
import { bytesToIp, canonicalIp, ipToBytes } from '../../resolver/codec/ip.js';
import { type QuerySpec, capaAnswers, decodeMessage, encodeQuery, extendedErrors } from '../../resolver/codec/message.js';
import { parseRdata } from '../../resolver/codec/presentation.js';
import { type QueryTarget, buildQueryName } from '../../resolver/codec/qname.js';
import { type CapaRecord, decode as decodeRdata } from '../../resolver/codec/rdata.js';
import { resolve } from '../../resolver/lib/resolve.js';
import { validateMessage } from '../../resolver/codec/validate.js';
import { type CBuild, type CRecord, buildC, requireTool } from '../helpers/c-build.js';
import { type RecordSpec, addressRecord, capaRecord, reply, startFakeDnsServer } from '../helpers/fake-dns-server.js';
import { FRAMING_CASES, WELL_FORMED, hex, messageSeeds, responseWith, vectors } from '../helpers/vectors.js';
import { Prng, mutate } from '../helpers/wire-fuzz.js';

const CAPA_OK = 0;
const CAPA_EMALFORMED = -1;
const CAPA_EINVAL = -2;
const CAPA_ENOSPC = -3;
const CAPA_EMISMATCH = -4;
const RRTYPE = vectors.rrtype;

const rcodes = createRequire(import.meta.url)('dns-packet/rcodes.js') as { toRcode(name: string): number };

interface CResponse {
  rcode: number;
  aa: number;
  tc: number;
  has_opt: number;
  has_capa: number;
  foreign_capa: number;
  capa: CRecord;
  capa_ttl: number;
  addr_count: number;
  addrs: { family: number; addr: number[] }[];
  ede: number;
  ede_text_off: number;
  ede_text_len: number;
}

interface CodecC {
  rdataEncode(rec: CRecord, buf: Uint8Array, len: number, written: number[]): number;
  rdataDecode(rdata: Uint8Array, len: number, out: Partial<CRecord>): number;
  recordFormat(rec: CRecord, out: Uint8Array, len: number): number;
  recordParse(text: string, out: Partial<CRecord>): number;
  addressParse(text: string, family: number[], addr: Uint8Array): number;
  addressFormat(family: number, addr: Uint8Array, out: Uint8Array, len: number): number;
  validate(msg: Uint8Array, len: number, rrtype: number): number;
  qnameBuild(host: string, port: number, proto: number, out: Uint8Array, len: number): number;
  queryEncode(id: number, qname: string, qtype: number, rd: number, edns: number, buf: Uint8Array, len: number, written: number[]): number;
  responseParse(msg: Uint8Array, len: number, rrtype: number, id: number, qname: string, qtype: number, out: Partial<CResponse>): number;
  answerAddresses(msg: Uint8Array, len: number, rrtype: number, name: string, qtype: number, out: Uint8Array): number;
}

function bind(path: string): { codec: CodecC; unload(): void } {
  const lib = koffi.load(path);
  const record = koffi.struct('capa_record', {
    flags: 'uint8_t', proto: 'uint8_t', port: 'uint16_t', family: 'int', addr: koffi.array('uint8_t', 16, 'Array'),
  });
  const address = koffi.struct('capa_address', { family: 'int', addr: koffi.array('uint8_t', 16, 'Array') });
  koffi.struct('capa_response', {
    rcode: 'int', aa: 'int', tc: 'int', has_opt: 'int', has_capa: 'int', foreign_capa: 'int', capa: record, capa_ttl: 'uint32_t',
    addr_count: 'int', addrs: koffi.array(address, 8, 'Array'), ede: 'int', ede_text_off: 'size_t', ede_text_len: 'size_t',
  });
  const codec: CodecC = {
    rdataEncode: lib.func('int capa_rdata_encode(const capa_record *rec, _Out_ uint8_t *buf, size_t len, _Out_ size_t *written)'),
    rdataDecode: lib.func('int capa_rdata_decode(const uint8_t *rdata, size_t rdlen, _Out_ capa_record *out)'),
    recordFormat: lib.func('int capa_record_format(const capa_record *rec, _Out_ uint8_t *out, size_t len)'),
    recordParse: lib.func('int capa_record_parse(const char *text, _Out_ capa_record *out)'),
    addressParse: lib.func('int capa_address_parse(const char *text, _Out_ int *family, _Out_ uint8_t *addr)'),
    addressFormat: lib.func('int capa_address_format(int family, const uint8_t *addr, _Out_ uint8_t *out, size_t len)'),
    validate: lib.func('int capa_validate_message(const uint8_t *msg, size_t len, uint16_t rrtype)'),
    qnameBuild: lib.func('int capa_qname_build(const char *host, int port, int proto, _Out_ uint8_t *out, size_t len)'),
    queryEncode: lib.func('int capa_query_encode(uint16_t id, const char *qname, uint16_t qtype, int rd, int edns, _Out_ uint8_t *buf, size_t len, _Out_ size_t *written)'),
    responseParse: lib.func('int capa_response_parse(const uint8_t *msg, size_t len, uint16_t rrtype, uint16_t expected_id, const char *qname, uint16_t qtype, _Out_ capa_response *out)'),
    // out: CAPA_MAX_ADDRS struct capa_address as raw bytes, read back by cAddresses().
    answerAddresses: lib.func('int capa_answer_addresses(const uint8_t *msg, size_t len, uint16_t rrtype, const char *name, uint16_t qtype, _Out_ uint8_t *out)'),
  };
  return { codec, unload: () => lib.unload() };
}

function toC(r: CapaRecord): CRecord {
  const bytes = ipToBytes(r.address);
  const addr = new Array<number>(16).fill(0);
  bytes.forEach((b, i) => { addr[i] = b; });
  return { flags: r.flags, proto: r.proto, port: r.port, family: bytes.length === 4 ? 4 : 6, addr };
}

function fromC(r: CRecord): CapaRecord {
  const length = r.family === 4 ? 4 : 16;
  return { flags: r.flags, proto: r.proto, port: r.port, address: bytesToIp(Uint8Array.from(r.addr), 0, length) };
}

/** The NUL-terminated text C wrote into out. */
function cText(out: Uint8Array): string {
  const end = out.indexOf(0);
  return Buffer.from(out.subarray(0, end < 0 ? out.length : end)).toString('latin1');
}

/** TS verdict: 'ok' or the error code, for comparison with the C status. */
function tsOutcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (isCapaError(err)) return err.code;
    throw err;
  }
}

/** struct capa_address: int family, then 16 address octets. */
const C_ADDRESS_SIZE = 20;
const CAPA_MAX_ADDRS = 8;

/** The first `count` (at most CAPA_MAX_ADDRS) struct capa_address of out, as address text. */
function cAddresses(out: Uint8Array, count: number): string[] {
  const view = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  return Array.from({ length: Math.min(count, CAPA_MAX_ADDRS) }, (_, i) => {
    const at = i * C_ADDRESS_SIZE;
    return bytesToIp(out, at + 4, view.readInt32LE(at) === 4 ? 4 : 16);
  });
}

const C_OUTCOME: Record<number, string> = {
  [CAPA_OK]: 'ok', [CAPA_EMALFORMED]: 'ERR_CAPA_MALFORMED', [CAPA_EINVAL]: 'ERR_CAPA_INVALID_ARG',
};

describe('native: C codec = TypeScript codec', function () {
  let build: CBuild | undefined;
  let c: CodecC;
  let unload = (): void => undefined;

  before(function () {
    this.timeout(60_000);
    requireTool(this, 'cc', 'building the C codec');
    build = buildC({ sources: ['native/core/capa_codec.c'], kind: 'shared' });
    ({ codec: c, unload } = bind(build.path));
  });

  after(function () {
    unload();
    build?.remove();
  });

  it('builds without a warning at -O3 too, as node-gyp builds the preload library', function () {
    this.timeout(60_000);
    // -O3 inlines read_rr into the response reader, where GCC's -Wmaybe-uninitialized looks.
    buildC({ sources: ['native/core/capa_codec.c'], kind: 'shared', flags: ['-std=c99', '-O3', '-Wall', '-Wextra', '-Werror'] }).remove();
  });

  function cParse(text: string): { rc: number; record?: CapaRecord } {
    const out: Partial<CRecord> = {};
    const rc = c.recordParse(text, out);
    return rc === CAPA_OK ? { rc, record: fromC(out as CRecord) } : { rc };
  }

  function cFormat(record: CapaRecord): string {
    const out = new Uint8Array(64);
    expect(c.recordFormat(toC(record), out, out.length)).to.equal(CAPA_OK);
    return cText(out);
  }

  describe('RDATA vectors', function () {
    for (const v of vectors.rdata.valid) {
      it(`${v.name}: wire, fields, presentation and generic form`, function () {
        const out: Partial<CRecord> = {};
        expect(c.rdataDecode(hex(v.wire), v.wire.length / 2, out)).to.equal(CAPA_OK);
        expect(fromC(out as CRecord)).to.deep.equal(v.fields);
        const buf = new Uint8Array(20);
        const written = [0];
        expect(c.rdataEncode(toC(v.fields), buf, buf.length, written)).to.equal(CAPA_OK);
        expect(Buffer.from(buf.subarray(0, written[0])).toString('hex')).to.equal(v.wire);
        expect(cFormat(v.fields)).to.equal(v.presentation);
        expect(cParse(v.presentation)).to.deep.equal({ rc: CAPA_OK, record: v.fields });
        expect(cParse(v.generic)).to.deep.equal({ rc: CAPA_OK, record: v.fields });
        const spread = v.generic.replace(/(\w{3})/g, '$1 ').toLowerCase();
        expect(cParse(spread)).to.deep.equal({ rc: CAPA_OK, record: parseRdata(spread) });
      });
    }

    for (const v of vectors.rdata.malformed) {
      it(`malformed: ${v.name}`, function () {
        expect(tsOutcome(() => decodeRdata(hex(v.wire)))).to.equal(v.error);
        expect(C_OUTCOME[c.rdataDecode(hex(v.wire), v.wire.length / 2, {})]).to.equal(v.error);
      });
    }

    for (const v of vectors.rdata.badPresentation) {
      it(`bad presentation: ${v.name}`, function () {
        expect(tsOutcome(() => parseRdata(v.text))).to.equal(v.error);
        expect(C_OUTCOME[cParse(v.text).rc]).to.equal(v.error);
      });
    }

    it('parses presentation edge cases as the TypeScript codec does', function () {
      const texts = ['', ' ', '0 6 80', '0 6 80 1.2.3.4 5', '0 6 65535 ::', ' 7\t17\n0 ::ffff:1.2.3.4 ', '0 6 80 1.2.3.04',
        '0 6 080 1.2.3.4', '00000000001 6 80 1.2.3.4', '0 6 4294967296 1.2.3.4', '0 6 80 fe80::1%eth0', '0 6 80 1:2:3:4:5:6:7:8:9',
        '\\#', '\\# 8', '\\# 0', '\\# 8 0006213 4815ee655', '\\# 8 00062134815ee655 00', '\\# 08 00062134815ee655', '\\# 8 0x062134815ee655',
        '\\# 20 000601bb20010db8000000000000000000000001', '\\#8 00062134815ee655', 'x 6 80 1.2.3.4', '0 6 80 ' + 'a'.repeat(100)];
      for (const text of texts) {
        const ts = tsOutcome(() => parseRdata(text));
        const cResult = cParse(text);
        expect(C_OUTCOME[cResult.rc], JSON.stringify(text)).to.equal(ts);
        if (ts === 'ok') {
          const parsed = parseRdata(text);
          expect(cResult.record, text).to.deep.equal({ ...parsed, address: canonicalIp(parsed.address) });
        }
      }
    });

    it('reports a short buffer and a bad family instead of writing past them', function () {
      const fields = toC(vectors.rdata.valid[4]!.fields);
      expect(c.rdataEncode(fields, new Uint8Array(19), 19, [0])).to.equal(CAPA_ENOSPC);
      expect(c.rdataEncode({ ...fields, family: 5 }, new Uint8Array(20), 20, [0])).to.equal(CAPA_EINVAL);
      expect(c.recordFormat(fields, new Uint8Array(10), 10)).to.equal(CAPA_ENOSPC);
    });
  });

  describe('addresses', function () {
    const texts = ['0.0.0.0', '255.255.255.255', '129.94.230.85', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.1.1.1', '1.2.3.4 ',
      '::', '::1', '1::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1::8', '2001:DB8::1', '2001:db8:0:0:1:0:0:1',
      '::ffff:1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3.4', '1:2:3:4:5:6:7:8:9', '1::2::3', ':1::', '1:::2',
      '12345::', '1:2:3:4:5:6:7', ':', '', 'fe80::1%eth0', '::ffff:1.2.3', '::ffff:01.2.3.4', 'g::1', '0000:0000::00'];
    for (const text of texts) {
      it(`"${text}"`, function () {
        const family = [0];
        const addr = new Uint8Array(16);
        const rc = c.addressParse(text, family, addr);
        let tsBytes: Uint8Array | undefined;
        try {
          tsBytes = ipToBytes(text);
        } catch (err) {
          if (!isCapaError(err, 'ERR_CAPA_INVALID_ARG')) throw err;
        }
        if (tsBytes === undefined) {
          expect(rc).to.equal(CAPA_EINVAL);
          return;
        }
        expect(rc).to.equal(CAPA_OK);
        expect(Buffer.from(addr.subarray(0, tsBytes.length))).to.deep.equal(Buffer.from(tsBytes));
        const out = new Uint8Array(64);
        expect(c.addressFormat(family[0]!, addr, out, out.length)).to.equal(CAPA_OK);
        expect(cText(out)).to.equal(bytesToIp(tsBytes, 0, tsBytes.length as 4 | 16));
      });
    }
  });

  describe('messages', function () {
    for (const v of vectors.messages) {
      it(`${v.valid ? 'valid' : 'invalid'}: ${v.name}`, function () {
        const wire = hex(v.wire);
        expect(c.validate(wire, wire.length, RRTYPE)).to.equal(v.valid ? CAPA_OK : CAPA_EMALFORMED);
        if (!v.valid) return;
        const message = decodeMessage(wire, RRTYPE);
        const question = message.questions[0]!;
        const out: Partial<CResponse> = {};
        expect(c.responseParse(wire, wire.length, RRTYPE, message.id, question.name, RRTYPE, out)).to.equal(CAPA_OK);
        expect(out.rcode).to.equal(rcodes.toRcode(v.rcode!));
        const capa = capaAnswers(message, RRTYPE);
        expect(out.has_capa).to.equal(capa.length > 0 ? 1 : 0);
        if (capa.length > 0) {
          expect(fromC(out.capa!)).to.deep.equal(v.capa![0]);
          expect(out.capa_ttl).to.equal(capa[0]!.ttl);
        }
        const ede = extendedErrors(message);
        expect(out.ede).to.equal(ede.length > 0 ? ede[0]!.code : -1);
        if (ede.length > 0) {
          expect(wire.subarray(out.ede_text_off!, out.ede_text_off! + out.ede_text_len!).toString('utf8')).to.equal(ede[0]!.text);
        }
      });
    }

    it('reads the additional A owned by the host part', function () {
      const wire = hex(vectors.messages[0]!.wire);
      const out: Partial<CResponse> = {};
      expect(c.responseParse(wire, wire.length, RRTYPE, 0x1234, '_80._TCP.Apricot.ee.unsw.edu.au.', RRTYPE, out)).to.equal(CAPA_OK);
      expect(out.addr_count).to.equal(1);
      expect(out.addrs![0]!.family).to.equal(4);
      expect(out.addrs![0]!.addr.slice(0, 4)).to.deep.equal([129, 94, 230, 85]);
      expect(out.aa).to.equal(1);
      expect(out.has_opt).to.equal(1);
    });

    it('refuses a reply that does not answer the query', function () {
      const wire = hex(vectors.messages[0]!.wire);
      const qname = '_80._tcp.apricot.ee.unsw.edu.au';
      expect(c.responseParse(wire, wire.length, RRTYPE, 0x1235, qname, RRTYPE, {})).to.equal(CAPA_EMISMATCH);
      expect(c.responseParse(wire, wire.length, RRTYPE, 0x1234, '_81._tcp.apricot.ee.unsw.edu.au', RRTYPE, {})).to.equal(CAPA_EMISMATCH);
      expect(c.responseParse(wire, wire.length, RRTYPE, 0x1234, 'apricot.ee.unsw.edu.au', RRTYPE, {})).to.equal(CAPA_EMISMATCH);
      expect(c.responseParse(wire, wire.length, RRTYPE, 0x1234, qname, 1, {})).to.equal(CAPA_EMISMATCH);
      const query = Buffer.from(wire);
      query[2] = 0x04; // QR=0
      expect(c.responseParse(query, query.length, RRTYPE, 0x1234, qname, RRTYPE, {})).to.equal(CAPA_EMISMATCH);
      const cut = wire.subarray(0, wire.length - 1);
      expect(c.responseParse(cut, cut.length, RRTYPE, 0x1234, qname, RRTYPE, {})).to.equal(CAPA_EMALFORMED);
    });

    it('ignores CAPA answers and addresses owned by other names', function () {
      const wire = Buffer.from(encodeQuery({ id: 9, name: '_80._tcp.a.example', type: dnsPacketTypeName(RRTYPE) }));
      const reply = Buffer.concat([wire.subarray(0, wire.length - 11), hex(
        '0662616e616e61076578616d706c6500ff000001000000 1e0008 00062134815ee655'.replace(/ /g, '')
        + '046576696c076578616d706c6500 0001 0001 0000001e 0004 01020304'.replace(/ /g, '')
        + 'c015 001c 0001 0000001e 0010 20010db8000000000000000000000002'.replace(/ /g, ''),
      )]);
      reply.writeUInt16BE(0x8400, 2);
      reply.writeUInt16BE(1, 6);
      reply.writeUInt16BE(2, 10);
      const out: Partial<CResponse> = {};
      expect(c.responseParse(reply, reply.length, RRTYPE, 9, '_80._tcp.a.example', RRTYPE, out)).to.equal(CAPA_OK);
      expect(out.has_capa).to.equal(0);
      expect(out.foreign_capa).to.equal(1);
      expect(out.addr_count).to.equal(1);
      expect(out.addrs![0]!.family).to.equal(6);
      expect(decodeMessage(reply).additionals.map((a) => a.name)).to.deep.equal(['evil.example', 'a.example']);
    });

    it('frames every typed RDATA as the TypeScript validator does', function () {
      const wellFormed = responseWith(WELL_FORMED);
      expect(c.validate(wellFormed, wellFormed.length, RRTYPE)).to.equal(CAPA_OK);
      for (const f of FRAMING_CASES) expect(c.validate(f.wire, f.wire.length, RRTYPE), f.name).to.equal(CAPA_EMALFORMED);
    });

    it('gives the TypeScript validator\'s verdict on 20,000 mutants (seeded)', function () {
      const seed = 0xc0dec;
      const rng = new Prng(seed);
      for (let i = 0; i < 20_000; i++) {
        const mutant = mutate(rng.pick(messageSeeds), rng);
        const ts = tsOutcome(() => validateMessage(mutant, RRTYPE));
        const cVerdict = C_OUTCOME[c.validate(mutant, mutant.length, RRTYPE)];
        if (cVerdict !== ts) expect.fail(`mutant ${i} (seed ${seed}) ${mutant.toString('hex')}: C ${cVerdict}, TypeScript ${ts}`);
      }
    });
  });

  describe('answer addresses (an A/AAAA reply, read as resolve.ts reads it)', function () {
    const HOST = 'outside.test';
    const cname = (name: string, target: string): RecordSpec => ({ name, type: 'CNAME', class: 'IN', ttl: 30, data: target });
    const chain = Array.from({ length: 9 }, (_, i) => cname(i === 0 ? HOST : `c${i}.test`, `c${i + 1}.test`));
    const cases: { name: string; capa: string; answers: RecordSpec[]; additionals?: RecordSpec[] }[] = [
      { name: 'A records of the host, first one taken', capa: '127.66.81.1', answers: [addressRecord(HOST, 30, '203.0.113.7'), addressRecord(HOST, 30, '203.0.113.8')] },
      { name: 'a CNAME chain, mixed case and trailing dots', capa: '127.66.81.1',
        answers: [cname('Outside.TEST.', 'Mid.test.'), addressRecord('elsewhere.test', 30, '203.0.113.66'), cname('mid.test', 'END.test'), addressRecord('end.TEST.', 30, '203.0.113.9')] },
      { name: 'a chain longer than 8 hops ends at the 8th target', capa: '127.66.81.1',
        answers: [...chain, addressRecord('c9.test', 30, '203.0.113.99'), addressRecord('c8.test', 30, '203.0.113.88')] },
      { name: 'a CNAME loop', capa: '127.66.81.1',
        answers: [cname(HOST, 'x.test'), cname('x.test', HOST), addressRecord(HOST, 30, '203.0.113.10'), addressRecord('x.test', 30, '203.0.113.11')] },
      { name: 'other owners and the other family are not taken', capa: '127.66.81.1',
        answers: [addressRecord('evil.test', 30, '203.0.113.66'), addressRecord(HOST, 30, '2001:db8::66')] },
      { name: 'addresses in ADDITIONAL are not an answer', capa: '127.66.81.1', answers: [], additionals: [addressRecord(HOST, 30, '203.0.113.12')] },
      { name: 'AAAA for an IPv6 allocation', capa: '2001:db8:ca9a::1',
        answers: [addressRecord(HOST, 30, '203.0.113.13'), addressRecord(HOST, 30, '2001:DB8:0::0:13')] },
    ];
    for (const tc of cases) {
      it(`${tc.name}: the same address as the TypeScript resolver`, async function () {
        let addressReply: Buffer | undefined;
        const dns = await startFakeDnsServer((q) => {
          const question = q.message!.questions[0]!;
          if (question.type === dnsPacketTypeName(RRTYPE)) {
            return reply(q, { aa: true, answers: [capaRecord(question.name, 30, { flags: 0, proto: 6, port: 40000, address: tc.capa })] });
          }
          addressReply = reply(q, { answers: tc.answers, additionals: tc.additionals });
          return addressReply;
        });
        let ts: string;
        try {
          ts = await resolve({ host: HOST, port: 80, servers: [dns.server], rrtype: RRTYPE })
            .then((r) => (r.kind === 'capa' ? r.remote.address : `plain ${r.addresses.join()}`));
        } catch (err) {
          if (!isCapaError(err)) throw err;
          ts = err.code;
        } finally {
          await dns.close();
        }
        expect(addressReply, 'the resolver asked for the address').to.not.equal(undefined);
        const out = new Uint8Array(CAPA_MAX_ADDRS * C_ADDRESS_SIZE);
        const qtype = tc.capa.includes(':') ? 28 : 1;
        const count = c.answerAddresses(addressReply!, addressReply!.length, RRTYPE, HOST, qtype, out);
        expect(count).to.be.at.least(0);
        expect(count === 0 ? 'ERR_CAPA_NOT_FOUND' : cAddresses(out, count)[0]).to.equal(ts);
      });
    }

    it('counts past CAPA_MAX_ADDRS, storing the first ones', function () {
      const addresses = Array.from({ length: 10 }, (_, i) => `203.0.113.${i + 1}`);
      const many = addresses.map((data): dnsPacket.Answer => ({ name: 'a.test', type: 'A', ttl: 30, data }));
      const msg = responseWith(many);
      const out = new Uint8Array(CAPA_MAX_ADDRS * C_ADDRESS_SIZE);
      expect(c.answerAddresses(msg, msg.length, RRTYPE, 'a.test', 1, out)).to.equal(10);
      expect(cAddresses(out, 10)).to.deep.equal(addresses.slice(0, CAPA_MAX_ADDRS));
    });

    it('refuses a malformed message and a type other than A or AAAA', function () {
      const msg = responseWith([{ name: 'a.test', type: 'A', ttl: 30, data: '203.0.113.1' }]);
      const out = new Uint8Array(CAPA_MAX_ADDRS * C_ADDRESS_SIZE);
      expect(c.answerAddresses(msg, msg.length, RRTYPE, 'a.test', 1, out)).to.equal(1);
      expect(c.answerAddresses(msg.subarray(0, msg.length - 1), msg.length - 1, RRTYPE, 'a.test', 1, out)).to.equal(CAPA_EMALFORMED);
      expect(c.answerAddresses(msg, msg.length, RRTYPE, 'a.test', 16, out)).to.equal(CAPA_EINVAL);
      expect(c.answerAddresses(msg, msg.length, RRTYPE, 'a'.repeat(300), 1, out)).to.equal(CAPA_EINVAL);
    });
  });

  describe('query names', function () {
    const targets: QueryTarget[] = [
      { host: 'apricot.ee.unsw.edu.au', port: 80 }, { host: 'Apricot.EE.unsw.edu.au.', port: 8500, protocol: 'udp' },
      { host: 'dns.example' }, { host: '129.94.230.85', port: 443 }, { host: '2001:DB8::1', port: 53, protocol: 'udp' },
      { host: '::ffff:1.2.3.4' }, { host: '*.example', port: 1 }, { host: '_srv.example', port: 65535 },
      { host: 'a'.repeat(63) + '.example', port: 80 }, { host: ['a'.repeat(63), 'a'.repeat(63), 'a'.repeat(63), 'a'.repeat(61)].join('.') },
      { host: ['a'.repeat(63), 'a'.repeat(63), 'a'.repeat(63), 'a'.repeat(61)].join('.'), port: 80 },
      { host: 'a'.repeat(64) + '.example', port: 80 }, { host: '', port: 80 }, { host: '.', port: 80 }, { host: 'a..b', port: 80 },
      { host: '-a.example', port: 80 }, { host: 'a-.example', port: 80 }, { host: 'a.example..', port: 80 }, { host: 'ex ample', port: 80 },
      { host: 'fe80::1%eth0', port: 80 }, { host: '010.1.1.1', port: 80 }, { host: 'a.example', port: 65536 },
    ];
    for (const target of targets) {
      it(`${JSON.stringify(target).slice(0, 70)}`, function () {
        const out = new Uint8Array(256);
        const proto = target.protocol === 'udp' ? 17 : 6;
        const rc = c.qnameBuild(target.host, target.port ?? 0, proto, out, out.length);
        const ts = tsOutcome(() => buildQueryName(target));
        expect(C_OUTCOME[rc]).to.equal(ts);
        if (ts === 'ok') expect(cText(out)).to.equal(buildQueryName(target));
      });
    }

    it('reports a short output buffer and a bad protocol', function () {
      expect(c.qnameBuild('a.example', 80, 6, new Uint8Array(8), 8)).to.equal(CAPA_ENOSPC);
      expect(c.qnameBuild('a.example', 80, 132, new Uint8Array(64), 64)).to.equal(CAPA_EINVAL);
      expect(c.qnameBuild('a.example', -1, 6, new Uint8Array(64), 64)).to.equal(CAPA_EINVAL);
    });
  });

  describe('query encoding', function () {
    const specs: QuerySpec[] = [
      { id: 0x1234, name: '_80._tcp.apricot.ee.unsw.edu.au', type: dnsPacketTypeName(RRTYPE) },
      { id: 0, name: 'apricot.ee.unsw.edu.au.', type: 'A', rd: true, edns: false },
      { id: 65535, name: '_443._udp.1.0.0.2.ip6.arpa', type: 'AAAA', rd: true },
      { id: 7, name: '.', type: 'NS', edns: false },
      { id: 8, name: 'MiXeD.Case.Example', type: dnsPacketTypeName(65281) },
    ];
    const typeNumber: Record<string, number> = { A: 1, AAAA: 28, NS: 2 };
    for (const spec of specs) {
      it(`${spec.name} ${spec.type} rd=${spec.rd ?? false} edns=${spec.edns ?? true}: same bytes as encodeQuery`, function () {
        const buf = new Uint8Array(512);
        const written = [0];
        const qtype = typeNumber[spec.type] ?? Number(spec.type.replace('UNKNOWN_', ''));
        expect(c.queryEncode(spec.id, spec.name, qtype, spec.rd ? 1 : 0, spec.edns === false ? 0 : 1, buf, buf.length, written)).to.equal(CAPA_OK);
        expect(Buffer.from(buf.subarray(0, written[0])).toString('hex')).to.equal(encodeQuery(spec).toString('hex'));
      });
    }

    it('refuses names it cannot encode and buffers too small', function () {
      for (const name of ['a..example', `${'a'.repeat(64)}.example`, Array(128).fill('a').join('.')]) {
        expect(c.queryEncode(1, name, 1, 0, 1, new Uint8Array(512), 512, [0]), name).to.equal(CAPA_EINVAL);
      }
      const full = encodeQuery({ id: 1, name: 'a.example', type: 'A' }).length;
      expect(c.queryEncode(1, 'a.example', 1, 0, 1, new Uint8Array(full - 1), full - 1, [0])).to.equal(CAPA_ENOSPC);
      expect(c.queryEncode(1, 'a.example', 1, 0, 1, new Uint8Array(full), full, [0])).to.equal(CAPA_OK);
    });
  });
});
