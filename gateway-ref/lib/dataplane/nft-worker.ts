/**
 * The nft worker: a long-lived process (started inside the gateway's network namespace when
 * there is one) that runs nft scripts through libnftables, one JSON line per request and reply:
 *   -> {"id": 1, "script": "add element inet capa state_tcp4 { ... }\n"}
 *   <- {"id": 1} or {"id": 1, "error": "nft: Error: ...", "code": "ERR_CAPA_SERVER_FAILURE", "errno": "EEXIST"}
 * The first line it writes is {"ready": true} or {"fatal": "..."}.
 */
import { createInterface } from 'node:readline';
import { isCapaError } from '../../../resolver/codec/errors.js';
import { Libnftables } from './libnftables.js';

export interface WorkerRequest {
  id: number;
  script: string;
}

export type WorkerReply =
  | { ready: true }
  | { fatal: string }
  | { id: number; error?: string; code?: string; errno?: string };

function send(reply: WorkerReply): void {
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}

function main(): void {
  let nft: Libnftables;
  try {
    nft = new Libnftables();
  } catch (err) {
    send({ fatal: (err as Error).message });
    process.exitCode = 1;
    return;
  }
  send({ ready: true });
  createInterface({ input: process.stdin }).on('line', (line) => {
    const request = JSON.parse(line) as WorkerRequest;
    try {
      nft.run(request.script);
      send({ id: request.id });
    } catch (err) {
      send({ id: request.id, error: (err as Error).message, code: isCapaError(err) ? err.code : undefined, errno: isCapaError(err) ? err.errno : undefined });
    }
  });
}

main();
