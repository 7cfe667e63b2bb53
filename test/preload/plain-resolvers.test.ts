/**
 * The terminal against ordinary resolvers that know nothing of CAPA, each started here on
 * loopback: BIND 9 as an authoritative server and as a forwarder, dnsmasq with local records
 * and with an upstream, Knot Resolver forwarding. For every one, capa-run (curl, python3) and
 * capa-socket (connect, fetch) fall back to A/AAAA and reach the server, and a name that does
 * not exist is reported the same way by both. In CI a missing server fails the run.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { fetch } from 'undici';
import { resolve } from '../../resolver/lib/resolve.js';
import { connect, CapaDispatcher } from '../../socket-shim/index.js';
import { requireTool } from '../helpers/c-build.js';
import type { DnsDaemon } from '../helpers/dns-daemon.js';
import { requireDnsmasq, startDnsmasq } from '../helpers/dnsmasq.js';
import { capaRejection } from '../helpers/expect-error.js';
import { requireKresd, startKresd } from '../helpers/kresd.js';
import { requireNamed, startNamed } from '../helpers/named.js';
import { capaRun, LIBRARY, type OutsideServer, type Peer, startTcpOutside } from './lab.js';

const ZONE = 'plain.test';
const HOST = `www.${ZONE}`;
const MISSING = `nowhere.${ZONE}`;
const ADDRESS = '127.67.81.1';
const ZONE_TEXT = `$ORIGIN ${ZONE}.\n$TTL 60\n@ SOA ns admin 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\nwww A ${ADDRESS}\n`;

interface Resolver {
  name: string;
  start(): Promise<DnsDaemon | undefined>;
}

describe('terminal against resolvers that do not know CAPA', function () {
  this.timeout(60_000);
  let tcp: OutsideServer;
  let authority: DnsDaemon | undefined;
  const daemons: DnsDaemon[] = [];

  before(async function () {
    if (!existsSync(LIBRARY)) throw new Error(`${LIBRARY} is missing: build it with "npx node-gyp rebuild"`);
    tcp = await startTcpOutside(ADDRESS);
  });

  after(async function () {
    for (const d of daemons.splice(0)) await d.stop();
    await tcp?.close();
  });

  /** The authoritative named the forwarders ask (started once). */
  async function authoritative(): Promise<DnsDaemon | undefined> {
    if (authority !== undefined) return authority;
    const named = await requireNamed();
    if (named === undefined) return undefined;
    authority = await startNamed(named, { zones: [{ origin: ZONE, text: ZONE_TEXT }] });
    daemons.push(authority);
    return authority;
  }

  const upstreamOf = async (): Promise<{ address: string; port: number } | undefined> => {
    const a = await authoritative();
    return a === undefined ? undefined : { address: a.address, port: a.port };
  };

  const resolvers: Resolver[] = [
    { name: 'BIND 9 named, authoritative', start: authoritative },
    {
      name: 'BIND 9 named, forwarder',
      async start() {
        const [named, upstream] = [await requireNamed(), await upstreamOf()];
        return named === undefined || upstream === undefined ? undefined : startNamed(named, { forwarders: [upstream] });
      },
    },
    {
      name: 'dnsmasq, local records, no upstream',
      async start() {
        const dnsmasq = await requireDnsmasq();
        return dnsmasq === undefined ? undefined : startDnsmasq(dnsmasq, { local: [ZONE], ttl: 30, hostRecords: [{ name: HOST, addresses: [ADDRESS] }] });
      },
    },
    {
      name: 'dnsmasq with an upstream',
      async start() {
        const [dnsmasq, upstream] = [await requireDnsmasq(), await upstreamOf()];
        return dnsmasq === undefined || upstream === undefined ? undefined : startDnsmasq(dnsmasq, { upstream });
      },
    },
    {
      name: 'Knot Resolver, forwarding',
      async start() {
        const [kresd, upstream] = [await requireKresd(), await upstreamOf()];
        return kresd === undefined || upstream === undefined ? undefined : startKresd(kresd, upstream);
      },
    },
  ];

  for (const r of resolvers) {
    describe(r.name, function () {
      let dns: DnsDaemon;
      const capa = (): { servers: string[]; timeout: number; deadline: number } => ({ servers: [dns.server], timeout: 1000, deadline: 4000 });

      before(async function () {
        const started = await r.start();
        if (started === undefined) this.skip();
        dns = started;
        if (started !== authority) daemons.push(started);
      });

      /** The peer the outside server saw for this run's output, which must be a fresh, unpinned one. */
      function expectDirectPeer(peer: Peer): void {
        expect(tcp.peers).to.deep.include(peer);
        expect(peer.address, 'no pool address: nothing was allocated').to.equal('127.0.0.1');
      }

      it('resolve() falls back to the A record', async function () {
        expect(await resolve({ host: HOST, port: tcp.port, ...capa() }), dns.log()).to.deep.equal({ kind: 'plain', addresses: [ADDRESS] });
      });

      it('capa-run curl and python3 fall back and reach the server', async function () {
        const curl = requireTool(this, 'curl', 'plain-resolver tests');
        const python = requireTool(this, 'python3', 'plain-resolver tests');
        const byCurl = await capaRun(dns.server, '/dev/null', [curl, '-sS', `http://${HOST}:${tcp.port}/`]);
        expect(byCurl.code, byCurl.stderr + dns.log()).to.equal(0);
        expectDirectPeer(JSON.parse(byCurl.stdout) as Peer);
        const script = `import json, socket; s = socket.create_connection((${JSON.stringify(HOST)}, ${tcp.port})); a = s.getsockname(); print(json.dumps({"address": a[0], "port": a[1]}))`;
        const byPython = await capaRun(dns.server, '/dev/null', [python, '-c', script]);
        expect(byPython.code, byPython.stderr).to.equal(0);
        expectDirectPeer(JSON.parse(byPython.stdout) as Peer);
      });

      it('capa-socket connect() and fetch() fall back and reach the server', async function () {
        const socket = await connect({ host: HOST, port: tcp.port, capa: capa() });
        try {
          expect(socket.capa).to.equal(undefined);
          expectDirectPeer({ address: socket.localAddress!, port: socket.localPort! });
        } finally {
          socket.destroy();
        }
        const response = await fetch(`http://${HOST}:${tcp.port}/`, { dispatcher: new CapaDispatcher({ capa: capa() }) });
        expectDirectPeer(await response.json() as Peer);
      });

      it('a name that does not exist: both report it as not found', async function () {
        const curl = requireTool(this, 'curl', 'plain-resolver tests');
        const err = await capaRejection(resolve({ host: MISSING, port: tcp.port, ...capa() }));
        expect(err.code).to.equal('ERR_CAPA_NOT_FOUND');
        expect(err.rcode).to.equal('NXDOMAIN');
        expect((await capaRejection(connect({ host: MISSING, port: tcp.port, capa: capa() }))).code).to.equal('ERR_CAPA_NOT_FOUND');
        const byCurl = await capaRun(dns.server, '/dev/null', [curl, '-sS', `http://${MISSING}:${tcp.port}/`]);
        expect(byCurl.code, 'curl: could not resolve host').to.equal(6);
        expect(byCurl.stderr).to.include(`cannot resolve ${MISSING}: name does not exist (NXDOMAIN from ${dns.server}`);
      });
    });
  }
});
