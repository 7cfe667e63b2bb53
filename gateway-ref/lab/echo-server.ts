#!/usr/bin/env node
/**
 * The lab's outside host: an HTTP server and a UDP echo server that tell each client the
 * address and port its packets came from, so a test can see the pinned outside tuple.
 */
import dgram from 'node:dgram';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { commandLine, usageExit } from '../../common/cli.js';
import { type ServerAddress, formatServer, parseServer } from '../../resolver/codec/server-address.js';

/** What the servers answer, one JSON object. */
export interface PeerReport {
  protocol: 'tcp' | 'udp';
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

const argv = commandLine('echo-server', process.argv.slice(2), usageExit('echo-server', 2), (y) => y
  .usage('$0 [--http ip:port ...] [--udp ip:port ...]')
  .epilog('Answers every HTTP request and every UDP datagram with one JSON line naming the peer address and port '
    + 'it came from. Prints "echo-server ready ..." when all listen; stops on SIGINT/SIGTERM.')
  .option('http', { type: 'string', array: true, default: ['0.0.0.0:80'], describe: 'Address and port of an HTTP server; repeat for more' })
  .option('udp', { type: 'string', array: true, default: ['0.0.0.0:7'], describe: 'Address and port of a UDP echo server ([ipv6]:port for IPv6); repeat for more' }))
  .parseSync();

function report(protocol: 'tcp' | 'udp', remote: { address: string; port: number }, local: AddressInfo): string {
  const body: PeerReport = { protocol, remoteAddress: remote.address, remotePort: remote.port, localAddress: local.address, localPort: local.port };
  return `${JSON.stringify(body)}\n`;
}

function listen(server: http.Server, at: ServerAddress): Promise<void> {
  return new Promise((resolve, reject) => { server.once('error', reject).listen(at.port, at.address, resolve); });
}

async function main(): Promise<void> {
  const httpAt = argv.http.map((text) => parseServer(text));
  const udpAt = argv.udp.map((text) => parseServer(text));
  const servers = httpAt.map(() => http.createServer((req, res) => {
    const socket = req.socket;
    const text = report('tcp', { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }, socket.address() as AddressInfo);
    res.writeHead(200, { 'content-type': 'application/json', connection: 'close' }).end(text);
  }));
  const udps = udpAt.map((at) => {
    const udp = dgram.createSocket(at.address.includes(':') ? 'udp6' : 'udp4');
    udp.on('message', (_msg, rinfo) => udp.send(report('udp', rinfo, udp.address()), rinfo.port, rinfo.address));
    return udp;
  });
  await Promise.all(servers.map((server, i) => listen(server, httpAt[i]!)));
  await Promise.all(udps.map((udp, i) => new Promise<void>((resolve, reject) => { udp.once('error', reject).bind(udpAt[i]!.port, udpAt[i]!.address, resolve); })));
  process.stdout.write(`echo-server ready: http ${httpAt.map(formatServer).join(' ')}, udp ${udpAt.map(formatServer).join(' ')}\n`);
  const stop = (): void => {
    for (const udp of udps) udp.close();
    for (const server of servers) { server.close(); server.closeAllConnections(); }
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`echo-server: ${(err as Error).message}\n`);
  process.exit(1);
});
