import { expect } from 'chai';
import { addressKey, endpointKey, parseProcNet, scanProcNet } from '../../gateway-ref/lib/dataplane/proc-net.js';

// Lines as a little-endian (x86) kernel prints them.
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:14B4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23911 1 0000000000000000 100 0 0 10 0
   1: 0100407F:8E1C 5000007F:0050 01 00000000:00000000 00:00000000 00000000  1000        0 48211 1 0000000000000000 20 4 30 10 -1
   2: 0100407F:8E1D 5000007F:0050 06 00000000:00000000 03:00000F5A 00000000     0        0 0 3 0000000000000000
`;

const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100407F:A001 0000000000000000FFFF00005000007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 7777 1 0000000000000000 20 4 30 10 -1
   2: B80D0120000000000000000001000000:0400 B80D0120000000000000000050000000:01BB 02 00000000:00000000 00:00000000 00000000     0        0 8888 1
`;

const UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0200407F:1389 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9999 2 0000000000000000 0
  101: 0200407F:138A 5000007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 9998 2 0000000000000000 0
`;

describe('gateway /proc/net socket table parser', () => {
  it('decodes little-endian IPv4 addresses, big-endian ports, state and inode', () => {
    const entries = parseProcNet(TCP, 6, true);
    expect(entries).to.have.length(3);
    expect(entries[0]).to.deep.equal({
      proto: 6, localAddress: '127.0.0.1', localPort: 5300, remoteAddress: '0.0.0.0', remotePort: 0, state: 0x0a, inode: 23911,
    });
    expect(entries[1]).to.include({ localAddress: '127.64.0.1', localPort: 36380, remoteAddress: '127.0.0.80', remotePort: 80, state: 1, inode: 48211 });
    expect(entries[2]).to.include({ state: 6, inode: 0 }); // TIME_WAIT: no process holds it
  });

  it('decodes IPv6 words, and IPv4-mapped addresses as plain IPv4', () => {
    const entries = parseProcNet(TCP6, 6, true);
    expect(entries.map((e) => `${e.localAddress} ${e.localPort} ${e.remoteAddress} ${e.remotePort}`)).to.deep.equal([
      '::1 8080 :: 0',
      '127.64.0.1 40961 127.0.0.80 80',
      '2001:db8::1 1024 2001:db8::50 443',
    ]);
  });

  it('reads UDP tables: unconnected (remote 0.0.0.0:0) and connected sockets', () => {
    const entries = parseProcNet(UDP, 17, true);
    expect(entries.map((e) => [e.proto, e.localAddress, e.localPort, e.remoteAddress, e.remotePort])).to.deep.equal([
      [17, '127.64.0.2', 5001, '0.0.0.0', 0],
      [17, '127.64.0.2', 5002, '127.0.0.80', 53],
    ]);
  });

  it('reads words in order on a big-endian kernel', () => {
    const line = '   0: 7F400001:0400 7F000050:0050 01 00000000:00000000 00:00000000 00000000     0        0 1 1\n';
    expect(parseProcNet(line, 6, false)[0]).to.include({ localAddress: '127.64.0.1', remoteAddress: '127.0.0.80' });
  });

  it('skips the header and lines that do not parse, without throwing', () => {
    const junk = [
      'garbage',
      '   0: 0100007F:14B4',
      '   1: 0100007:14B4 00000000:0000 0A 0 0 0 0 0 1 1',
      '   2: 0100007F:14B4 00000000:0000 ZZ 0 0 0 0 0 1 1',
      '   3: 0100007F:14B4 00000000:0000 0A 0 0 0 0 0 x 1',
      '',
    ].join('\n');
    expect(parseProcNet(junk, 6, true)).to.deep.equal([]);
  });

  it('parses the real tables of this machine', async () => {
    const { readFile } = await import('node:fs/promises');
    const { endianness } = await import('node:os');
    const text = await readFile('/proc/net/tcp', 'utf8');
    const lines = text.trim().split('\n').length - 1;
    expect(parseProcNet(text, 6, endianness() === 'LE')).to.have.length(lines);
  });
});

describe('gateway /proc/net scan by local endpoint', () => {
  const bytes = (text: string): Uint8Array => Buffer.from(text, 'latin1');
  const key = (address: string, port: number, littleEndian = true): string | number => endpointKey(addressKey(address, littleEndian), port);
  const scan = (text: string, proto: 6 | 17, keys: (string | number)[], littleEndian = true): string[] =>
    scanProcNet(bytes(text), proto, littleEndian, (k) => keys.includes(k))
      .map(({ socket: s }) => `${s.localAddress} ${s.localPort} ${s.remoteAddress} ${s.remotePort} ${s.inode}`);

  it('parses only the lines bound to a wanted (address, port), as parseProcNet would', () => {
    expect(scan(TCP, 6, [key('127.64.0.1', 36380, true)])).to.deep.equal(['127.64.0.1 36380 127.0.0.80 80 48211']);
    expect(scan(TCP, 6, [key('127.64.0.1', 36382, true)]), 'same address, another port').to.deep.equal([]);
    expect(scan(UDP, 17, [key('127.64.0.2', 5002, true), key('127.64.0.2', 5001, true)])).to.have.length(2);
  });

  it('finds an IPv4 endpoint under its IPv4-mapped form in the IPv6 table, and plain IPv6 endpoints', () => {
    expect(scan(TCP6, 6, [key('127.64.0.1', 40961, true)])).to.deep.equal(['127.64.0.1 40961 127.0.0.80 80 7777']);
    expect(key('::ffff:127.64.0.1', 40961, true)).to.equal(key('127.64.0.1', 40961, true));
    expect(scan(TCP6, 6, [key('2001:db8::1', 1024, true)])).to.deep.equal(['2001:db8::1 1024 2001:db8::50 443 8888']);
    expect(scan(TCP6, 6, [key('::1', 8080, true)])).to.deep.equal(['::1 8080 :: 0 5555']);
  });

  it('keys big-endian tables by their own word order', () => {
    const line = '   0: 7F400001:0400 7F000050:0050 01 00000000:00000000 00:00000000 00000000     0        0 1 1\n';
    expect(scan(line, 6, [key('127.64.0.1', 1024, false)], false)).to.deep.equal(['127.64.0.1 1024 127.0.0.80 80 1']);
    expect(scan(line, 6, [key('127.64.0.1', 1024, true)], false)).to.deep.equal([]);
  });

  it('offers no key for the header or for lines whose endpoint field is not one', () => {
    const offered: (string | number)[] = [];
    scanProcNet(bytes(`${TCP.split('\n')[0]}\ngarbage\n   1: 0100007:14B4 00000000:0000 0A\n   2: 0100007G:14B4 00000000:0000 0A\n   3:\n`), 6, true,
      (k) => { offered.push(k); return true; });
    expect(offered).to.deep.equal([]);
  });

  it('scans the real tables of this machine like parseProcNet', async () => {
    const { readFile } = await import('node:fs/promises');
    const { endianness } = await import('node:os');
    const raw = await readFile('/proc/net/tcp');
    const le = endianness() === 'LE';
    expect(scanProcNet(raw, 6, le, () => true).map((s) => s.socket)).to.deep.equal(parseProcNet(raw.toString('latin1'), 6, le));
  });
});
