/**
 * http.get through CapaAgent / CapaHttpsAgent and fetch() through CapaDispatcher, against local
 * HTTP and HTTPS servers named in the gateway's zone. The servers answer with the peer
 * (address, port) they saw; TLS certificates name secure.outside.example only.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { fetch } from 'undici';
import { CapaAgent, CapaDispatcher, CapaHttpsAgent, type SocketAllocation } from '../../socket-shim/index.js';
import { rejection } from '../helpers/expect-error.js';
import { eventually, type Lab, startLab, ZONE } from './lab.js';

const POOL = '127.64.3.1';
const OUTSIDE = '127.3.3.3';
const TERMINAL = '127.10.3.1';
const FIXTURE = new URL('../../../test/shim/fixtures/secure-outside-example', import.meta.url).pathname;
const CERT = readFileSync(`${FIXTURE}.crt`);
const KEY = readFileSync(`${FIXTURE}.key`);

interface Answer {
  body: string;
  capa: SocketAllocation | undefined;
}

const whoAmI: http.RequestListener = (req, res) => res.end(`${req.socket.remoteAddress}:${req.socket.remotePort}`);

async function listen(server: http.Server): Promise<number> {
  server.listen(0, OUTSIDE);
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function get(url: string, agent: http.Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    (url.startsWith('https:') ? https : http).get(url, { agent }, (res) => {
      // Read now: a kept-alive socket leaves the response when it ends.
      const { capa } = res.socket as { capa?: SocketAllocation };
      let body = '';
      res.on('data', (chunk: Buffer) => { body += String(chunk); });
      res.on('end', () => resolve({ body, capa }));
    }).on('error', reject);
  });
}

describe('shim: http(s) agents and fetch through the real gateway (loopback)', () => {
  let lab: Lab;
  let plain: http.Server;
  let secure: https.Server;
  let httpUrl: string;
  let httpsUrl: (name: string) => string;
  const live = (): number => lab.gateway.service.allocator.stats().live;
  const capa = (): { servers: string[]; terminalAddress: string } => ({ servers: [lab.server], terminalAddress: TERMINAL });

  before(async () => {
    lab = await startLab({ pool: [POOL], hosts: { plain: OUTSIDE, secure: OUTSIDE, alias: OUTSIDE } });
    plain = http.createServer(whoAmI);
    secure = https.createServer({ cert: CERT, key: KEY }, whoAmI);
    httpUrl = `http://plain.${ZONE}:${await listen(plain)}/`;
    const securePort = await listen(secure);
    httpsUrl = (name) => `https://${name}.${ZONE}:${securePort}/`;
  });
  after(async () => {
    plain.closeAllConnections();
    secure.closeAllConnections();
    plain.close();
    secure.close();
    await lab.close();
  });
  afterEach(() => eventually(() => live() === 0, 'the release of every pooled connection'));

  it('http.get with CapaAgent reaches the server from the allocated (address, port), one allocation per pooled socket', async () => {
    const agent = new CapaAgent({ capa: capa(), keepAlive: true, maxSockets: 1 });
    const first = await get(httpUrl, agent);
    const second = await get(httpUrl, agent);
    expect(first.capa!.local.address).to.equal(POOL);
    expect(first.body).to.equal(`${first.capa!.local.address}:${first.capa!.local.port}`);
    expect(second.body).to.equal(first.body, 'the kept-alive socket keeps its allocation');
    expect(live()).to.equal(1);
    agent.destroy();
    expect(await first.capa!.released).to.equal(undefined);
  });

  it('https.get with CapaHttpsAgent checks the certificate against the host name, over the pinned socket', async () => {
    const agent = new CapaHttpsAgent({ capa: capa(), ca: CERT });
    const answer = await get(httpsUrl('secure'), agent);
    expect(answer.body).to.equal(`${answer.capa!.local.address}:${answer.capa!.local.port}`);
    expect(answer.capa!.local.address).to.equal(POOL);
    const wrongName = await rejection(get(httpsUrl('alias'), agent));
    expect(wrongName.code).to.equal('ERR_TLS_CERT_ALTNAME_INVALID');
    agent.destroy();
  });

  it('surfaces CAPA errors as request errors with the resolver code', async () => {
    const agent = new CapaAgent({ capa: capa() });
    const err = await rejection(get(`http://nowhere.${ZONE}/`, agent));
    expect(err.code).to.equal('ERR_CAPA_NOT_FOUND');
    agent.destroy();
  });

  it('fetch() through CapaDispatcher, over http and https', async () => {
    const dispatcher = new CapaDispatcher({ capa: capa(), connect: { ca: CERT } });
    try {
      const overHttp = await (await fetch(httpUrl, { dispatcher })).text();
      const overHttps = await (await fetch(httpsUrl('secure'), { dispatcher })).text();
      for (const seen of [overHttp, overHttps]) expect(seen).to.match(new RegExp(`^${POOL.replace(/\./g, '\\.')}:\\d+$`));
      expect(overHttp).to.not.equal(overHttps, 'two origins, two allocations');
      expect(live()).to.equal(2);
      const wrongName = await rejection(fetch(httpsUrl('alias'), { dispatcher }));
      expect((wrongName.cause as { code?: string }).code).to.equal('ERR_TLS_CERT_ALTNAME_INVALID');
      const missing = await rejection(fetch(`http://nowhere.${ZONE}/`, { dispatcher }));
      expect((missing.cause as { code?: string }).code, 'the resolver code survives fetch').to.equal('ERR_CAPA_NOT_FOUND');
    } finally {
      await dispatcher.close();
    }
  });

  it("Node's built-in fetch() takes CapaDispatcher too", async () => {
    const dispatcher = new CapaDispatcher({ capa: capa() });
    try {
      const seen = await (await globalThis.fetch(httpUrl, { dispatcher } as RequestInit)).text();
      expect(seen.startsWith(`${POOL}:`)).to.equal(true, seen);
    } finally {
      await dispatcher.close();
    }
  });
});
