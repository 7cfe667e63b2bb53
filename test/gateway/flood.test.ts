/**
 * Malformed-input flood: 100,000 mutated DNS messages over real UDP, sent in bounded batches, each
 * batch followed by a valid query that must still be answered. Nothing may crash, stall, or reach
 * the "unexpected error" path of the GRM.
 */
import { expect } from 'chai';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningGateway, startGateway } from '../../gateway-ref/lib/gateway.js';
import { parsePool } from '../../gateway-ref/lib/grm/pool.js';
import { DEFAULT_CAPA_RRTYPE, dnsPacketTypeName } from '../../resolver/codec/constants.js';
import { capaAnswers, decodeMessage, encodeQuery } from '../../resolver/codec/message.js';
import { encodeRelease } from '../../resolver/codec/update.js';
import { Prng, mutate } from '../helpers/wire-fuzz.js';

const PACKETS = 100_000;
/** Small enough that a batch fits the server's socket buffer, so the packets are parsed, not dropped. */
const BATCH = 200;
const SEED = Number(process.env.FLOOD_SEED ?? 0x5eed);
const CAPA = dnsPacketTypeName(DEFAULT_CAPA_RRTYPE);

const SEEDS = [
  encodeQuery({ id: 1, name: '_80._tcp.www.example', type: CAPA }),
  encodeQuery({ id: 2, name: 'www.example', type: CAPA, edns: false }),
  encodeQuery({ id: 3, name: '_53._udp.80.0.0.127.in-addr.arpa', type: CAPA }),
  encodeQuery({ id: 4, name: 'alias.example', type: 'A', rd: true }),
  encodeQuery({ id: 5, name: 'www.example', type: 'AAAA' }),
  encodeRelease({ id: 6, zone: 'www.example', qname: '_80._tcp.www.example', record: { flags: 0, proto: 6, port: 4000, address: '127.64.0.1' } }),
];

describe('gateway under a malformed-input flood', function () {
  this.timeout(120_000);
  let dir: string;
  let gateway: RunningGateway;
  const unexpected: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'capa-flood-'));
    await writeFile(join(dir, 'zone.txt'), '$ORIGIN example.\n$TTL 300\nwww A 127.0.0.80\nalias CNAME www\n');
    gateway = await startGateway({
      listen: { address: '127.0.0.1', port: 0 },
      pool: parsePool('127.64.0.0/24'),
      inside: ['127.0.0.0/8'],
      zoneFile: join(dir, 'zone.txt'),
      log: (line) => unexpected.push(line),
    });
  });

  after(async () => {
    await gateway?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(`answers a valid query after each batch of ${BATCH} and after all ${PACKETS.toLocaleString('en')} mutated packets (seed ${SEED})`, async () => {
    const rng = new Prng(SEED);
    const flood = dgram.createSocket('udp4');
    const probe = dgram.createSocket('udp4');
    let floodReplies = 0;
    flood.on('message', () => { floodReplies++; });
    flood.bind(0, '127.0.0.1');
    probe.bind(0, '127.0.0.1');
    await Promise.all([once(flood, 'listening'), once(probe, 'listening')]);
    // UDP may drop under load, as for any DNS client: a probe is retried, at most 3 x 1 s; a late
    // reply to an earlier probe is told apart by its ID.
    const waiting = new Map<number, (msg: Buffer) => void>();
    probe.on('message', (msg: Buffer) => { if (msg.length >= 2) waiting.get(msg.readUInt16BE(0))?.(msg); });
    const ask = async (id: number): Promise<Buffer> => {
      try {
        for (let attempt = 0; attempt < 3; attempt++) {
          const reply = new Promise<Buffer | undefined>((done) => {
            waiting.set(id, done);
            setTimeout(() => done(undefined), 1000).unref();
          });
          probe.send(encodeQuery({ id, name: '_443._tcp.www.example', type: CAPA }), gateway.listen.port, '127.0.0.1');
          const answer = await reply;
          if (answer) return answer;
        }
        throw new Error(`probe ${id} unanswered after 3 tries of 1 s`);
      } finally {
        waiting.delete(id);
      }
    };
    try {
      for (let sent = 0; sent < PACKETS; sent += BATCH) {
        for (let i = 0; i < BATCH; i++) {
          const packet = rng.below(20) === 0 ? randomBytes(rng) : mutate(rng.pick(SEEDS), rng);
          flood.send(packet, gateway.listen.port, '127.0.0.1');
        }
        await ask(sent / BATCH);
      }
      const last = decodeMessage(await ask(0xffff));
      expect(last.rcode).to.equal('NOERROR');
      expect(capaAnswers(last)).to.have.length(1);
    } finally {
      flood.close();
      probe.close();
    }
    expect(floodReplies, 'the flood itself got answers (FORMERR and others)').to.be.greaterThan(PACKETS / 2);
    expect(unexpected, 'no request reached the unexpected-error path').to.deep.equal([]);
  });
});

function randomBytes(rng: Prng): Buffer {
  const out = Buffer.alloc(rng.below(600));
  for (let i = 0; i < out.length; i++) out[i] = rng.below(256);
  return out;
}
