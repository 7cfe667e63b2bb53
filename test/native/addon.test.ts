/** The native addon on the host's loopback: pinned TCP/UDP sockets, their errors, local-address lookups. */
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { closeSync, copyFileSync, fstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'chai';
import {
  addressAdd, addressCheck, addressRemove, bindPinned, isLocalAddress, type NativeSystemError, type OpenOptions, openPinnable,
  setMmapThreshold,
} from '../../native/addon/index.js';
import { PinnableTcpSocket, pinnedTcpSocket, pinnedUdpSocket } from '../../socket-shim/lib/pinned.js';
import { unavailable } from '../helpers/ci.js';

const LOOPBACK = { 4: '127.0.0.1', 6: '::1' } as const;
/** Pinned sources other than the default 127.0.0.1, so a test can tell pinned from unpinned. */
const PINNED_SOURCE = { 4: '127.0.0.9', 6: '::1' } as const;
/** Never configured anywhere (RFC 5737 / RFC 3849 documentation ranges). */
const UNCONFIGURED = { 4: '198.51.100.7', 6: '2001:db8::7' } as const;

function systemError(fn: () => unknown): NativeSystemError {
  try {
    fn();
  } catch (err: unknown) {
    return err as NativeSystemError;
  }
  throw new Error('expected a throw');
}

/** A port nothing holds right now on (address, protocol). */
async function freePort(address: string, type: 'tcp' | 'udp'): Promise<number> {
  if (type === 'udp') {
    const probe = dgram.createSocket(net.isIP(address) === 4 ? 'udp4' : 'udp6');
    probe.bind(0, address);
    await once(probe, 'listening');
    const { port } = probe.address();
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    return port;
  }
  const probe = net.createServer().listen(0, address);
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** getsockname() of a pinned TCP fd, read by listening on it. */
async function tcpLocalAddress(fd: number): Promise<net.AddressInfo> {
  const server = net.createServer().listen({ fd });
  await once(server, 'listening');
  const info = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return info;
}

/** getsockname() of a pinned UDP fd, read through dgram. */
async function udpLocalAddress(fd: number, family: 4 | 6): Promise<net.AddressInfo> {
  const socket = dgram.createSocket(family === 4 ? 'udp4' : 'udp6').bind({ fd });
  const info = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return info;
}

/** A pinnable socket's settings and the (address, port) it is bound to. */
interface PinOptions extends OpenOptions {
  address: string;
  port: number;
}

/** The one pinning shape: open a pinnable socket, bind it to the allocation; the fd closes if the bind fails. */
function pin(options: PinOptions): number {
  const { address, port, ...open } = options;
  const fd = openPinnable(open);
  try {
    bindPinned(fd, address, port);
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

async function localAddressOf(fd: number, options: PinOptions): Promise<net.AddressInfo> {
  return options.type === 'tcp' ? tcpLocalAddress(fd) : udpLocalAddress(fd, options.family);
}

/** What ip(8) says about the route to an address: the independent oracle of isLocalAddress. */
function routeIsLocal(address: string): boolean {
  try {
    return execFileSync('ip', ['-o', 'route', 'get', address], { encoding: 'utf8', timeout: 5_000 }).startsWith('local ');
  } catch {
    return false; // no route at all
  }
}

describe('native addon: pinned sockets', function () {
  for (const family of [4, 6] as const) {
    for (const type of ['tcp', 'udp'] as const) {
      it(`pins ${type.toUpperCase()} to ${PINNED_SOURCE[family]} and a chosen port`, async function () {
        const port = await freePort(PINNED_SOURCE[family], type);
        const options: PinOptions = { family, type, address: PINNED_SOURCE[family], port };
        const fd = pin(options);
        expect(fd).to.be.a('number').greaterThan(2);
        expect(await localAddressOf(fd, options)).to.deep.include({ address: PINNED_SOURCE[family], port });
      });

      it(`binds ${type.toUpperCase()} to unconfigured ${UNCONFIGURED[family]} thanks to FREEBIND`, async function () {
        const address = UNCONFIGURED[family];
        expect(await isLocalAddress(address), `${address} must not be local on this host`).to.equal(false);
        // Without FREEBIND the kernel refuses that address.
        const plain = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
        const refused = once(plain, 'error');
        plain.bind(40000, address);
        expect((await refused)[0]).to.have.property('code', 'EADDRNOTAVAIL');
        plain.close();

        const options: PinOptions = { family, type, address, port: 40000 };
        const fd = pin(options);
        expect(await localAddressOf(fd, options)).to.deep.include({ address, port: 40000 });
      });
    }
  }

  it('fails EADDRINUSE when a listener holds the TCP port', async function () {
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    try {
      const err = systemError(() => pin({ family: 4, type: 'tcp', address: '127.0.0.1', port }));
      expect(err).to.be.instanceOf(Error);
      expect(err).to.include({ code: 'EADDRINUSE', errno: -98, syscall: 'bind', address: '127.0.0.1', port });
      expect(err.message).to.equal(`bind EADDRINUSE 127.0.0.1:${port}`);
    } finally {
      server.close();
    }
  });

  it('fails EADDRINUSE when a UDP socket without SO_REUSEADDR holds the port', async function () {
    const holder = dgram.createSocket('udp6').bind(0, '::1');
    await once(holder, 'listening');
    const { port } = holder.address();
    try {
      const err = systemError(() => pin({ family: 6, type: 'udp', address: '::1', port }));
      expect(err).to.include({ code: 'EADDRINUSE', syscall: 'bind', address: '::1', port });
      expect(err.message).to.equal(`bind EADDRINUSE [::1]:${port}`);
    } finally {
      holder.close();
    }
  });

  it('fails ENODEV naming the interface when the device does not exist', function () {
    const err = systemError(() => pin({ family: 4, type: 'tcp', address: '127.0.0.1', port: 0, device: 'nope0' }));
    expect(err).to.include({ code: 'ENODEV', errno: -19, syscall: 'setsockopt' });
    expect(err.message).to.equal('setsockopt SO_BINDTODEVICE ENODEV: no network interface named "nope0"');
  });

  describe('bad arguments are TypeErrors', function () {
    const good: OpenOptions = { family: 4, type: 'tcp' };
    const cases: Array<[string, unknown, RegExp]> = [
      ['no options', undefined, /"options" argument must be an object/],
      ['family 5', { ...good, family: 5 }, /"options.family" argument must be 4 or 6, got 5/],
      ['family "4"', { ...good, family: '4' }, /must be 4 or 6, got "4"/],
      ['type sctp', { ...good, type: 'sctp' }, /"options.type" argument must be 'tcp' or 'udp', got "sctp"/],
      ['device ""', { ...good, device: '' }, /"options.device" argument must be an interface name of 1 to 15 characters, got ""/],
      ['device too long', { ...good, device: 'a'.repeat(16) }, /1 to 15 characters/],
      ['mark 2^32', { ...good, mark: 2 ** 32 }, /"options.mark" argument must be an integer from 0 to 4294967295/],
    ];
    for (const [name, options, message] of cases) {
      it(`opening rejects ${name}`, function () {
        expect(() => openPinnable(options as OpenOptions)).to.throw(TypeError, message);
      });
    }
    const bindCases: Array<[string, unknown, unknown, RegExp]> = [
      ['an address not an IP', 'localhost', 0, /"address" argument must be an IP address, got "localhost"/],
      ['no address', undefined, 0, /"address" argument must be an IP address string/],
      ['port 65536', '127.0.0.1', 65536, /"port" argument must be an integer from 0 to 65535, got 65536/],
      ['port -1', '127.0.0.1', -1, /got -1/],
      ['port 80.5', '127.0.0.1', 80.5, /got 80.5/],
      ['port "80"', '127.0.0.1', '80', /got "80"/],
    ];
    for (const [name, address, port, message] of bindCases) {
      it(`binding rejects ${name}, leaving the socket open`, function () {
        const fd = openPinnable(good);
        try {
          expect(() => bindPinned(fd, address as string, port as number)).to.throw(TypeError, message);
          expect(() => fstatSync(fd), 'the fd is still the caller\'s').to.not.throw();
        } finally {
          closeSync(fd);
        }
      });
    }

    it('rejects a bad interface name or address for the netlink calls', function () {
      expect(() => addressAdd('', '198.51.100.7')).to.throw(TypeError, /"ifname" argument must be an interface name/);
      expect(() => addressRemove('lo', '198.51.100.300')).to.throw(TypeError, /"address" argument must be an IP address, got "198.51.100.300"/);
      expect(() => addressCheck('lo', 7 as unknown as string)).to.throw(TypeError, /"address" argument must be an IP address string/);
      expect(() => isLocalAddress('fe80::1%lo')).to.throw(TypeError, /got "fe80::1%lo"/);
    });

    it('gives TypeErrors Node-style codes', function () {
      expect(() => openPinnable(null as unknown as OpenOptions)).to.throw(TypeError).with.property('code', 'ERR_INVALID_ARG_TYPE');
      expect(() => pin({ ...good, address: '127.0.0.1', port: 1e6 })).to.throw(TypeError).with.property('code', 'ERR_INVALID_ARG_VALUE');
    });

    it('rejects a pinned TCP destination that is not an IP literal of the same family', function () {
      expect(() => pinnedTcpSocket({ localAddress: '127.0.0.1', localPort: 0, address: 'localhost', port: 80 }))
        .to.throw(TypeError, /"address" option must be an IPv4 literal/);
      expect(() => pinnedTcpSocket({ localAddress: '127.0.0.1', localPort: 0, address: '::1', port: 80 }))
        .to.throw(TypeError, /IPv4 literal/);
      expect(() => pinnedUdpSocket({ localAddress: 'here', localPort: 0 })).to.throw(TypeError, /"localAddress" option must be an IP address/);
    });
  });

  it('applies SO_BINDTODEVICE and SO_MARK, as ss(8) reports', async function () {
    if (process.getuid?.() !== 0) unavailable(this, 'SO_MARK needs root in CI');
    const server = net.createServer((c) => c.resume()).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const localPort = await freePort('127.0.0.9', 'tcp');
    const client = pinnedTcpSocket({
      localAddress: '127.0.0.9', localPort, address: '127.0.0.1', port: (server.address() as net.AddressInfo).port,
      device: 'lo', mark: 0x2a,
    });
    try {
      await once(client, 'connect');
      const ss = execFileSync('ss', ['-tnHOe', 'src', `127.0.0.9:${localPort}`], { encoding: 'utf8', timeout: 5_000 });
      expect(ss).to.include(`127.0.0.9%lo:${localPort}`);
      expect(ss).to.include('fwmark:0x2a');
    } finally {
      client.destroy();
      server.close();
    }
  });
});

describe('native addon: pinned connections', function () {
  for (const family of [4, 6] as const) {
    it(`a pinned TCP socket connects over IPv${family} and the server sees the pinned source`, async function () {
      const seen: Array<[string | undefined, number | undefined]> = [];
      const server = net.createServer((c) => {
        seen.push([c.remoteAddress, c.remotePort]);
        c.end('hello');
      }).listen(0, LOOPBACK[family]);
      await once(server, 'listening');
      const localPort = await freePort(PINNED_SOURCE[family], 'tcp');
      const client = pinnedTcpSocket({
        localAddress: PINNED_SOURCE[family], localPort,
        address: LOOPBACK[family], port: (server.address() as net.AddressInfo).port,
      });
      try {
        expect(client.connecting).to.equal(true);
        await once(client, 'connect');
        expect([client.localAddress, client.localPort]).to.deep.equal([PINNED_SOURCE[family], localPort]);
        const [data] = (await once(client, 'data')) as [Buffer];
        expect(data.toString()).to.equal('hello');
        expect(seen).to.deep.equal([[PINNED_SOURCE[family], localPort]]);
      } finally {
        client.destroy();
        server.close();
      }
    });

    it(`a pinned UDP socket sends over IPv${family} from the pinned source and gets the reply`, async function () {
      const server = dgram.createSocket(family === 4 ? 'udp4' : 'udp6').bind(0, LOOPBACK[family]);
      await once(server, 'listening');
      server.on('message', (msg, from) => server.send(Buffer.concat([Buffer.from('re:'), msg]), from.port, from.address));
      const localPort = await freePort(PINNED_SOURCE[family], 'udp');
      const client = pinnedUdpSocket({ localAddress: PINNED_SOURCE[family], localPort });
      try {
        expect(client.address()).to.deep.include({ address: PINNED_SOURCE[family], port: localPort });
        const seen = once(server, 'message');
        const reply = once(client, 'message');
        client.send('ping', server.address().port, LOOPBACK[family]);
        const [msg, from] = (await seen) as [Buffer, dgram.RemoteInfo];
        expect([msg.toString(), from.address, from.port]).to.deep.equal(['ping', PINNED_SOURCE[family], localPort]);
        expect(((await reply)[0] as Buffer).toString()).to.equal('re:ping');
      } finally {
        client.close();
        server.close();
      }
    });
  }

  for (const family of [4, 6] as const) {
    it(`a TCP socket made ready before its allocation (IPv${family}) stays quiet while the event loop turns, then pins and connects`, async function () {
      const server = net.createServer((c) => c.end(`${c.remoteAddress} ${c.remotePort}`)).listen(0, LOOPBACK[family]);
      await once(server, 'listening');
      const pinnable = PinnableTcpSocket.open(family);
      try {
        // An unconnected socket that read would fail with ENOTCONN on the next poll.
        await new Promise((resolve) => setTimeout(resolve, 20));
        expect([pinnable.socket.destroyed, pinnable.socket.errored]).to.deep.equal([false, null]);
        const localPort = await freePort(PINNED_SOURCE[family], 'tcp');
        const client = pinnable.connect({ localAddress: PINNED_SOURCE[family], localPort, address: LOOPBACK[family], port: (server.address() as net.AddressInfo).port });
        expect(client).to.equal(pinnable.socket);
        await once(client, 'connect');
        const [data] = (await once(client, 'data')) as [Buffer];
        expect(data.toString()).to.equal(`${PINNED_SOURCE[family]} ${localPort}`);
      } finally {
        pinnable.destroy();
        server.close();
      }
    });
  }

  it('a made-ready socket whose bind fails throws EADDRINUSE (syscall bind), connects nothing, and frees its descriptor', async function () {
    const fds = readdirSync('/proc/self/fd').length;
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    const pinnable = PinnableTcpSocket.open(4);
    try {
      const err = systemError(() => pinnable.connect({ localAddress: '127.0.0.1', localPort: port, address: '127.0.0.1', port }));
      expect(err).to.include({ code: 'EADDRINUSE', syscall: 'bind', address: '127.0.0.1', port });
      expect(err.message).to.equal(`bind EADDRINUSE 127.0.0.1:${port}`);
      expect([pinnable.socket.connecting, pinnable.socket.destroyed]).to.deep.equal([false, true]);
    } finally {
      server.close();
    }
    await Promise.all([once(pinnable.socket, 'close'), once(server, 'close')]);
    expect(readdirSync('/proc/self/fd').length).to.equal(fds);
  });

  it('opening a socket ahead fails without an endpoint to name; binding checks its arguments', function () {
    const err = systemError(() => openPinnable({ family: 4, type: 'tcp', device: 'nope0' }));
    expect(err).to.include({ code: 'ENODEV', syscall: 'setsockopt' });
    expect(err).to.not.have.property('address');
    expect(err.message).to.equal('setsockopt SO_BINDTODEVICE ENODEV: no network interface named "nope0"');
    const fd = openPinnable({ family: 6, type: 'udp' });
    try {
      expect(() => bindPinned(-1, '::1', 0)).to.throw(TypeError, /"fd" argument must be an integer/);
      expect(() => bindPinned(fd, '::1', 65536)).to.throw(TypeError, /"port" argument must be an integer from 0 to 65535/);
      const ebadf = systemError(() => bindPinned(2 ** 30, '::1', 0));
      expect(ebadf).to.include({ code: 'EBADF', syscall: 'setsockopt' });
    } finally {
      closeSync(fd);
    }
    const pinnable = PinnableTcpSocket.open(4);
    expect(() => pinnable.connect({ localAddress: '::1', localPort: 0, address: '127.0.0.1', port: 80 }))
      .to.throw(TypeError, /"localAddress" option must be an IPv4 address for this IPv4 socket, got "::1"/);
    expect(pinnable.socket.destroyed).to.equal(true);
  });

  it('reports a refused pinned connect like net.connect does (syscall connect, socket destroyed)', async function () {
    const port = await freePort('127.0.0.1', 'tcp');
    const localPort = await freePort('127.0.0.9', 'tcp');
    const client = pinnedTcpSocket({ localAddress: '127.0.0.9', localPort, address: '127.0.0.1', port });
    const [err] = (await once(client, 'error')) as [NativeSystemError];
    expect(err).to.include({ code: 'ECONNREFUSED', syscall: 'connect', address: '127.0.0.1', port });
    expect(client.destroyed).to.equal(true);
  });
});

describe('native addon: local addresses', function () {
  for (const address of ['127.0.0.1', '127.0.0.42', '::1', '198.51.100.7', '2001:db8::7', '203.0.113.1']) {
    it(`isLocalAddress(${address}) agrees with ip route get`, async function () {
      expect(await isLocalAddress(address)).to.equal(routeIsLocal(address));
    });
  }

  it('counts every 127/8 address as local and documentation ranges as not', async function () {
    const local = (...addresses: string[]): Promise<boolean[]> => Promise.all(addresses.map(isLocalAddress));
    expect(await local('127.0.0.42', '::1')).to.deep.equal([true, true]);
    expect(await local('198.51.100.7', '2001:db8::7')).to.deep.equal([false, false]);
  });

  it('checks addresses on the host loopback without changing anything, off the JavaScript thread', async function () {
    const check = addressCheck('lo', '127.0.0.1');
    expect(check).to.be.instanceOf(Promise);
    expect(await check).to.equal(true);
    expect(await addressCheck('lo', '127.0.0.42')).to.equal(false);
    const err = (await addressCheck('nope0', '127.0.0.1').then(() => expect.fail('resolved'), (e: unknown) => e)) as NativeSystemError;
    expect(err).to.include({ code: 'ENODEV', syscall: 'netlink' });
    expect(err.message).to.equal('checking 127.0.0.1 on nope0 failed: ENODEV (no such device)');
  });
});

describe('native addon: malloc policy', function () {
  it('sets glibc\'s mmap threshold (what capa-gateway does at start) and checks its argument', function () {
    expect(setMmapThreshold(128 * 1024)).to.equal(true);
    expect(() => setMmapThreshold(-1)).to.throw(TypeError, /"bytes" argument must be an integer from 0 to 33554432/);
    expect(() => setMmapThreshold(64 * 1024 * 1024)).to.throw(TypeError);
  });
});

describe('native addon: loading', function () {
  let root = '';

  /** A copy of the compiled loader in a package whose build/ holds `addon` (or nothing). */
  async function loaderWith(addon: string | undefined): Promise<typeof import('../../native/addon/index.js')> {
    root = mkdtempSync(join(tmpdir(), 'capa-native-'));
    const dist = fileURLToPath(new URL('../../', import.meta.url));
    for (const file of ['native/addon/index.js', 'resolver/codec/errors.js']) {
      mkdirSync(dirname(join(root, 'dist', file)), { recursive: true });
      copyFileSync(join(dist, file), join(root, 'dist', file));
    }
    writeFileSync(join(root, 'package.json'), '{"type":"module"}');
    if (addon !== undefined) {
      mkdirSync(join(root, 'build', 'Release'), { recursive: true });
      writeFileSync(join(root, 'build', 'Release', 'capa.node'), addon);
    }
    return import(pathToFileURL(join(root, 'dist', 'native', 'addon', 'index.js')).href) as Promise<typeof import('../../native/addon/index.js')>;
  }

  afterEach(function () {
    if (root !== '') rmSync(root, { recursive: true, force: true });
  });

  it('says how to build the addon when it is missing, and only when first used', async function () {
    const loader = await loaderWith(undefined);
    expect(() => loader.isLocalAddress('127.0.0.1')).to.throw(
      'the CAPA native addon is not built: run npm install (needs python3, make and a C++ compiler)',
    ).with.property('code', 'ERR_CAPA_CONFIG');
  });

  it('says to rebuild when the addon file does not load', async function () {
    const loader = await loaderWith('not a shared object');
    expect(() => loader.isLocalAddress('127.0.0.1')).to.throw(/native addon at .*capa\.node does not load .*run npm rebuild/)
      .with.property('code', 'ERR_CAPA_CONFIG');
  });
});
