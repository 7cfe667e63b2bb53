#!/usr/bin/env node
/**
 * One terminal of the `npm start` demo: a Node program using capa-socket. It prints "ready",
 * waits for a line on stdin (so all terminals connect at the same time), then makes one HTTP
 * request through CapaAgent and one UDP exchange through connectUdp, naming itself in both, and
 * prints a JSON report of what it was assigned. Exit codes: 0 report printed, 1 a flow failed,
 * 2 bad flags.
 */
import http from 'node:http';
import { once } from 'node:events';
import { commandLine, usageExit } from '../../common/cli.js';
import { isCapaError } from '../../resolver/codec/errors.js';
// The modules themselves rather than ../index.js, which also loads undici: a quicker start.
import { CapaAgent } from '../lib/agent.js';
import type { SocketAllocation } from '../lib/allocation.js';
import type { CapaOptions } from '../lib/options.js';
import { connectUdp } from '../lib/udp.js';
import type { FlowReport, TerminalReport } from './report.js';

const argv = commandLine('capa-demo-terminal', process.argv.slice(2), usageExit('capa-demo-terminal', 2), (y) => y
  .usage('$0 --name <id> --server <ip:port> --terminal-address <ip> --host <name> --http-port <n> --udp-port <n>')
  .epilog('A demo terminal: waits for a line on stdin, then GETs http://<host>:<http-port>/<name> and sends <name> to '
    + 'udp <host>:<udp-port>, both pinned through CAPA, and prints {"name", "flows": [{"proto", "assigned"}]} as one JSON line. '
    + 'Exit codes: 0 report printed, 1 a flow failed, 2 bad flags.')
  .option('name', { type: 'string', demandOption: true, describe: 'Name of this terminal, sent to the outside host so it can tell terminals apart' })
  .option('server', { type: 'string', demandOption: true, describe: 'The CAPA gateway (GRM) DNS front end, ip:port' })
  .option('terminal-address', { type: 'string', demandOption: true, describe: 'Inside address the DNS queries leave from: the GRM tells terminals apart by it' })
  .option('host', { type: 'string', demandOption: true, describe: 'Name of the outside host, served by the gateway' })
  .option('http-port', { type: 'number', demandOption: true, describe: 'Port of the outside HTTP server' })
  .option('udp-port', { type: 'number', demandOption: true, describe: 'Port of the outside UDP echo server' }))
  .parseSync();

const capa: CapaOptions = { servers: [argv.server], terminalAddress: argv['terminal-address'] };

const assigned = (proto: FlowReport['proto'], allocation: SocketAllocation): FlowReport =>
  ({ proto, assigned: `${allocation.local.address}:${allocation.local.port}` });

/** GET /<name>; the pooled socket is closed and its allocation released before this returns. */
async function overHttp(): Promise<FlowReport> {
  const agent = new CapaAgent({ capa });
  const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(`http://${argv.host}:${argv['http-port']}/${encodeURIComponent(argv.name)}`, { agent }, resolve).on('error', reject);
  }).catch((err: unknown) => { agent.destroy(); throw err; });
  const allocation = (response.socket as { capa?: SocketAllocation }).capa;
  response.resume();
  await once(response, 'end');
  agent.destroy();
  if (allocation === undefined) throw new Error('the HTTP connection has no CAPA allocation');
  await allocation.released;
  return assigned('tcp', allocation);
}

/** Sends <name> and waits for the echo; the socket is closed and released before this returns. */
async function overUdp(): Promise<FlowReport> {
  const socket = await connectUdp({ host: argv.host, port: argv['udp-port'], capa });
  try {
    socket.send(argv.name);
    await once(socket, 'message');
  } finally {
    socket.close();
  }
  if (socket.capa === undefined) throw new Error('the UDP socket has no CAPA allocation');
  await socket.capa.released;
  return assigned('udp', socket.capa);
}

function describe(err: unknown): string {
  return isCapaError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
}

async function main(): Promise<void> {
  process.stdout.write('ready\n');
  process.stdin.setEncoding('utf8');
  await once(process.stdin, 'data');
  process.stdin.pause();
  let report: TerminalReport;
  try {
    report = { name: argv.name, flows: await Promise.all([overHttp(), overUdp()]) };
  } catch (err) {
    report = { name: argv.name, error: describe(err) };
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exitCode = 'error' in report ? 1 : 0;
}

void main();
