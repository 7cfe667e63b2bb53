/**
 * The C release encoder (native/core/capa_update.c), loaded through koffi, must produce the same
 * bytes as resolver/lib/update.ts encodeRelease for every zone, owner, record and ID.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import koffi, { type LibraryHandle } from 'koffi';
import { ipToBytes } from '../../resolver/codec/ip.js';
import { buildQueryName, normalizeHost } from '../../resolver/codec/qname.js';
import type { CapaRecord } from '../../resolver/codec/rdata.js';
import { decodeRelease } from '../../gateway-ref/lib/dns/release.js';
import { encodeRelease } from '../../resolver/codec/update.js';
import { type CBuild, type CRecord, buildC, requireTool } from '../helpers/c-build.js';

const CAPA_OK = 0;
const CAPA_ENOSPC = -3;

type ReleaseEncode = (id: number, zone: string, qname: string, rec: CRecord, rrtype: number, buf: Uint8Array, len: number, written: number[]) => number;

function toC(r: CapaRecord): CRecord {
  const bytes = ipToBytes(r.address);
  const addr = new Array<number>(16).fill(0);
  bytes.forEach((b, i) => { addr[i] = b; });
  return { flags: r.flags, proto: r.proto, port: r.port, family: bytes.length === 4 ? 4 : 6, addr };
}

describe('preload: C release encoder = encodeRelease', function () {
  let build: CBuild | undefined;
  let lib: LibraryHandle | undefined;
  let encode: ReleaseEncode;

  before(function () {
    this.timeout(60_000);
    requireTool(this, 'cc', 'building the release encoder');
    build = buildC({ sources: ['native/core/capa_update.c', 'native/core/capa_codec.c'], kind: 'shared' });
    lib = koffi.load(build.path);
    koffi.struct('capa_release_record', {
      flags: 'uint8_t', proto: 'uint8_t', port: 'uint16_t', family: 'int', addr: koffi.array('uint8_t', 16, 'Array'),
    });
    encode = lib.func('int capa_release_encode(uint16_t id, const char *zone, const char *qname, const capa_release_record *rec, uint16_t rrtype, _Out_ uint8_t *buf, size_t len, _Out_ size_t *written)');
  });

  after(function () {
    lib?.unload();
    build?.remove();
  });

  function cRelease(id: number, zone: string, qname: string, record: CapaRecord, rrtype: number, room = 600): { rc: number; bytes: Buffer } {
    const buf = new Uint8Array(room);
    const written = [0];
    const rc = encode(id, zone, qname, toC(record), rrtype, buf, room, written);
    return { rc, bytes: Buffer.from(buf.subarray(0, written[0])) };
  }

  it('gives the same bytes for names, reverse names, ports, protocols, records, IDs and RR types', function () {
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
    const host = fc.oneof(fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.')), fc.ipV4(), fc.ipV6());
    const record = fc.record({
      flags: fc.integer({ min: 0, max: 255 }),
      proto: fc.constantFrom(0, 6, 17),
      port: fc.integer({ min: 1, max: 65535 }),
      address: fc.oneof(fc.ipV4(), fc.ipV6()),
    });
    fc.assert(fc.property(
      host, fc.option(fc.integer({ min: 1, max: 65535 })), fc.constantFrom('tcp' as const, 'udp' as const), record,
      fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 65280, max: 65534 }), // private-use types: not typed RDATA
      (h, port, protocol, rec, id, rrtype) => {
        const zone = normalizeHost(h);
        const qname = buildQueryName({ host: h, port: port ?? undefined, protocol });
        const expected = encodeRelease({ id, zone, qname, record: rec, rrtype });
        const { rc, bytes } = cRelease(id, zone, qname, rec, rrtype);
        expect(rc).to.equal(CAPA_OK);
        expect(bytes.toString('hex')).to.equal(expected.toString('hex'));
        expect(decodeRelease(bytes, rrtype)).to.deep.include({ id, zone, qname });
      },
    ), { numRuns: 500 });
  });

  it('reports a buffer too small instead of writing past it', function () {
    const record: CapaRecord = { flags: 0, proto: 6, port: 8500, address: '2001:db8::5' };
    const full = encodeRelease({ id: 1, zone: 'outside.test', qname: '_80._tcp.outside.test', record });
    for (const room of [1, 11, 12, 40, full.length - 1]) {
      expect(cRelease(1, 'outside.test', '_80._tcp.outside.test', record, 65280, room).rc, `room ${room}`).to.equal(CAPA_ENOSPC);
    }
    expect(cRelease(1, 'outside.test', '_80._tcp.outside.test', record, 65280, full.length).bytes).to.deep.equal(full);
  });
});
