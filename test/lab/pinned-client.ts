/**
 * Test helper run inside a terminal namespace: a TCP or UDP socket bound to a given (address,
 * port), as a CAPA terminal pins it, talking to the lab's echo servers. One JSON line per event
 * on stdout: {"event":"ready"} once connected (TCP) or bound (UDP); with "hold", it then waits
 * for a line on stdin before sending; {"event":"reply","body":...}, {"event":"timeout"} or
 * {"event":"error","code":...} last. With "repeat" (UDP), it sends that many datagrams everyMs
 * apart instead and ends with {"event":"replies","sent":N,"at":[Unix ms of each reply]}.
 * Argument: one JSON object (ClientSpec).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { createInterface } from 'node:readline';

export interface ClientSpec {
  proto: 'tcp' | 'udp';
  localAddress: string;
  localPort: number;
  host: string;
  port: number;
  hold?: boolean;
  timeoutMs?: number;
  repeat?: { count: number; everyMs: number };
}

const spec = JSON.parse(process.argv[2] ?? '{}') as ClientSpec;

function emit(event: Record<string, unknown>, exitCode?: number): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
  if (exitCode !== undefined) process.exit(exitCode);
}

function afterGo(send: () => void): void {
  emit({ event: 'ready' });
  if (!spec.hold) { send(); return; }
  createInterface({ input: process.stdin }).once('line', send);
}

setTimeout(() => emit({ event: 'timeout' }, 3), spec.timeoutMs ?? 5000);

if (spec.proto === 'tcp') {
  const socket = net.connect({ host: spec.host, port: spec.port, localAddress: spec.localAddress, localPort: spec.localPort });
  let body = '';
  socket.setEncoding('utf8').on('data', (d: string) => { body += d; });
  socket.on('connect', () => afterGo(() => socket.write(`GET / HTTP/1.0\r\nHost: ${spec.host}\r\n\r\n`)));
  socket.on('end', () => emit({ event: 'reply', body: body.slice(body.indexOf('\r\n\r\n') + 4).trim() }, 0));
  socket.on('error', (err: NodeJS.ErrnoException) => emit({ event: 'error', code: err.code ?? err.message }, 1));
} else if (spec.repeat) {
  const { count, everyMs } = spec.repeat;
  const socket = dgram.createSocket('udp4');
  const at: number[] = [];
  socket.on('message', () => at.push(Date.now()));
  socket.on('error', (err: NodeJS.ErrnoException) => emit({ event: 'error', code: err.code ?? err.message }, 1));
  socket.bind(spec.localPort, spec.localAddress, () => afterGo(() => {
    let sent = 0;
    const timer = setInterval(() => {
      if (sent === count) {
        clearInterval(timer);
        setTimeout(() => emit({ event: 'replies', sent, at }, 0), 500);
        return;
      }
      socket.send(`ping ${sent++}`, spec.port, spec.host);
    }, everyMs);
  }));
} else {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg) => emit({ event: 'reply', body: msg.toString('utf8').trim() }, 0));
  socket.on('error', (err: NodeJS.ErrnoException) => emit({ event: 'error', code: err.code ?? err.message }, 1));
  socket.bind(spec.localPort, spec.localAddress, () => afterGo(() => socket.send('ping', spec.port, spec.host)));
}
