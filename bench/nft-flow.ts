/**
 * Bulk-transfer tool for bench/nft-throughput.ts, run inside the lab's namespaces; both sides
 * stay up for the whole benchmark so a measurement costs no process start.
 *
 *   server <ip:port>          each connection starts with a line: "D <seconds>" (the server sends
 *                             for that long, then ends) or "U" (the server counts what arrives and
 *                             answers {"bytes","seconds"} when the client ends)
 *   client <ip:port>          reads "down|up <bindIp:port> <seconds>" lines on stdin, runs that
 *                             transfer on a fresh connection bound to (bindIp, port), prints one
 *                             {"bytes","seconds"} line (as the receiver measured it)
 */
import net from 'node:net';
import { createInterface } from 'node:readline';
import { parseServer } from '../resolver/codec/server-address.js';

const CHUNK = Buffer.alloc(1 << 20, 0x5a);

interface Result {
  bytes: number;
  seconds: number;
}

function send(socket: net.Socket, seconds: number): void {
  const until = Date.now() + seconds * 1000;
  const pump = (): void => {
    while (Date.now() < until) if (!socket.write(CHUNK)) { socket.once('drain', pump); return; }
    socket.end();
  };
  pump();
}

/** Counts bytes from the first one to the end of the stream. */
function count(socket: net.Socket, done: (result: Result) => void): void {
  let bytes = 0;
  let first = 0n;
  socket.on('data', (d: Buffer) => {
    if (first === 0n) first = process.hrtime.bigint();
    bytes += d.length;
  });
  socket.on('end', () => done({ bytes, seconds: Number(process.hrtime.bigint() - first) / 1e9 }));
}

function serve(at: string): void {
  const where = parseServer(at);
  net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    let head = '';
    const onHead = (d: Buffer): void => {
      head += d.toString('latin1');
      const nl = head.indexOf('\n');
      if (nl < 0) return;
      socket.off('data', onHead);
      const [verb, seconds] = head.slice(0, nl).split(' ');
      if (verb === 'D') { send(socket, Number(seconds)); return; }
      // Bytes after the command line in this first chunk are payload.
      const extra = head.length - nl - 1;
      count(socket, (r) => socket.end(JSON.stringify({ ...r, bytes: r.bytes + extra })));
    };
    socket.on('data', onHead);
  }).listen(where.port, where.address, () => process.stdout.write('listening\n'));
}

function transfer(to: string, line: string): Promise<Result> {
  const [direction = '', bind = '', seconds = '1'] = line.trim().split(/\s+/);
  const local = parseServer(bind);
  const remote = parseServer(to);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: remote.address, port: remote.port, localAddress: local.address, localPort: local.port });
    socket.on('error', reject);
    socket.on('connect', () => {
      if (direction === 'down') {
        socket.write(`D ${seconds}\n`);
        count(socket, resolve);
        return;
      }
      socket.write('U\n');
      let answer = '';
      socket.on('data', (d: Buffer) => { answer += d.toString('utf8'); });
      socket.on('end', () => resolve(JSON.parse(answer) as Result));
      send(socket, Number(seconds));
    });
  });
}

const [role, at = ''] = process.argv.slice(2);
if (role === 'server') serve(at);
else if (role === 'client') {
  const lines = createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  lines.on('line', (line) => {
    queue = queue.then(() => transfer(at, line)).then(
      (r) => { process.stdout.write(`${JSON.stringify(r)}\n`); },
      (err: unknown) => { process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`); },
    );
  });
  lines.on('close', () => { void queue.then(() => process.exit(0)); });
  process.stdout.write('ready\n');
} else {
  process.stderr.write('usage: nft-flow server <ip:port> | client <ip:port>\n');
  process.exit(2);
}
