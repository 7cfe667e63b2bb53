/**
 * The resolver's `localAddress` option: a GRM knows a terminal by the source address of its
 * queries, so every query and release of one call must leave from that address (UDP and TCP).
 */
import { expect } from 'chai';
import { CapaError } from '../../resolver/codec/errors.js';
import { type CapaRecord } from '../../resolver/codec/rdata.js';
import { release, resolve } from '../../resolver/lib/resolve.js';
import { addressRecord, capaRecord, type FakeDnsServer, type ReceivedQuery, reply, startFakeDnsServer } from '../helpers/fake-dns-server.js';

const HOST = 'plum.example.test';
const ALLOC: CapaRecord = { flags: 0, proto: 6, port: 9100, address: '127.64.9.1' };
const TERMINAL = '127.10.9.9';
const FAST = { timeout: 300, deadline: 1000 };

const name = (q: ReceivedQuery): string => q.message?.questions[0]?.name ?? '';

describe('resolver: localAddress', () => {
  let server: FakeDnsServer;
  afterEach(() => server.close());

  const capaAnswer = (q: ReceivedQuery, tc = false): Buffer => (tc
    ? reply(q, { tc: true })
    : reply(q, { aa: true, answers: [capaRecord(name(q), 30, ALLOC)], additionals: [addressRecord(HOST, 30, '127.1.9.9')] }));

  it('sends the CAPA query and the release from the given address', async () => {
    server = await startFakeDnsServer((q) => (q.message?.opcode === 'UPDATE' ? reply(q) : capaAnswer(q)));
    const endpoint = await resolve({ host: HOST, port: 80, servers: [server.server], localAddress: TERMINAL, ...FAST });
    expect(endpoint.kind).to.equal('capa');
    if (endpoint.kind !== 'capa') return;
    await release(endpoint, { localAddress: TERMINAL, ...FAST });
    expect(server.queries.map((q) => [q.message?.opcode, q.transport, q.from.address])).to.deep.equal([
      ['QUERY', 'udp', TERMINAL],
      ['UPDATE', 'udp', TERMINAL],
    ]);
  });

  it('keeps the address on the TCP retry after a truncated reply', async () => {
    server = await startFakeDnsServer((q) => capaAnswer(q, q.transport === 'udp'));
    await resolve({ host: HOST, port: 80, servers: [server.server], localAddress: TERMINAL, ...FAST });
    expect(server.queries.map((q) => [q.transport, q.from.address])).to.deep.equal([['udp', TERMINAL], ['tcp', TERMINAL]]);
  });

  it('leaves the choice to the kernel without it', async () => {
    server = await startFakeDnsServer((q) => capaAnswer(q));
    await resolve({ host: HOST, port: 80, servers: [server.server], ...FAST });
    expect(server.queries[0]!.from.address).to.equal('127.0.0.1');
  });

  it('rejects an address that is not an IP literal', async () => {
    server = await startFakeDnsServer((q) => capaAnswer(q));
    const err = await resolve({ host: HOST, port: 80, servers: [server.server], localAddress: 'localhost', ...FAST }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(CapaError).with.property('code', 'ERR_CAPA_INVALID_ARG');
    expect(server.queries).to.have.length(0);
  });
});
