/**
 * The socket-table reader thread (see proc-net-reader.ts). The kernel hands out a /proc/net table
 * one 4 KiB page per read(2): read from the event loop, a table of thousands of TIME_WAIT lines
 * costs hundreds of thread-pool round trips; here it is one message.
 *   <- { id, paths }   -> { id, tables } (null for a table that does not exist) or { id, error }
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

export interface ReadRequest {
  id: number;
  paths: readonly string[];
}

export type ReadReply = { id: number; tables: (Uint8Array | null)[] } | { id: number; error: string };

let scratch = Buffer.allocUnsafe(1 << 20);

/** The whole file, or null when it does not exist (tcp6/udp6 without IPv6). */
function readWhole(path: string): Uint8Array<ArrayBuffer> | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    let length = 0;
    for (;;) {
      if (length === scratch.length) scratch = Buffer.concat([scratch, Buffer.allocUnsafe(scratch.length)]);
      const n = readSync(fd, scratch, length, scratch.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return new Uint8Array(scratch.subarray(0, length)); // a copy the reply can transfer
  } finally {
    closeSync(fd);
  }
}

parentPort?.on('message', (request: ReadRequest) => {
  let reply: ReadReply;
  try {
    const tables = request.paths.map(readWhole);
    reply = { id: request.id, tables };
    parentPort!.postMessage(reply, tables.flatMap((t) => (t === null ? [] : [t.buffer])));
  } catch (err) {
    reply = { id: request.id, error: (err as Error).message };
    parentPort!.postMessage(reply);
  }
});
