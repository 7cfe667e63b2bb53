/**
 * The address sweep's decision (capa_sweep_decide in native/core/address_sweep.c, loaded
 * through koffi), without netlink: which CAPA addresses come off an interface. The shell around
 * it (netlink, the socket table, the state file) is tested end to end in test/preload/interface.test.ts.
 */
import { expect } from 'chai';
import koffi from 'koffi';
import { type CBuild, buildC } from '../helpers/c-build.js';

const AF_INET = 2;
const IDLE = 60_000;

interface Marked {
  address: string;
  created: number;
}

interface Decision {
  remove: string[];
  /** When each kept address was first seen unused, keyed by address@created. */
  idleSince: Record<string, number>;
}

const bytes = (address: string): number[] => [...address.split('.').map(Number), ...new Array<number>(12).fill(0)];
const text = (addr: number[]): string => addr.slice(0, 4).join('.');

describe('address sweep: which CAPA addresses come off an interface', function () {
  let build: CBuild | undefined;
  let decide: (marked: Marked[], inUse: Set<string>, earlier: Record<string, number>, now: number) => Decision;

  before(function () {
    build = buildC({ sources: ['native/core/address_sweep.c', 'native/core/netlink.c', 'native/core/socket_table.c', 'native/core/capa_codec.c'], kind: 'shared' });
    const lib = koffi.load(build.path);
    koffi.struct('capa_nl_address', { family: 'int', addr: koffi.array('uint8_t', 16), prefix: 'unsigned int', created: 'uint32_t' });
    koffi.struct('capa_idle_record', { family: 'int', addr: koffi.array('uint8_t', 16), created: 'uint32_t', since_ms: 'int64_t' });
    const fn = lib.func('size_t capa_sweep_decide(const capa_nl_address *marked, const int *in_use, size_t n, '
      + 'const capa_idle_record *earlier, size_t n_earlier, int64_t now_ms, int64_t idle_ms, _Out_ int *remove, _Out_ capa_idle_record *next)');
    decide = (marked, inUse, earlier, now) => {
      const records = Object.entries(earlier).map(([key, since]) => {
        const [addr, created] = key.split('@') as [string, string];
        return { family: AF_INET, addr: bytes(addr), created: Number(created), since_ms: since };
      });
      const remove = new Array<number>(Math.max(marked.length, 1)).fill(0);
      const next = new Array(Math.max(marked.length, 1)).fill(null).map(() => ({ family: 0, addr: new Array<number>(16).fill(0), created: 0, since_ms: 0 }));
      const kept = Number(fn(marked.map((m) => ({ family: AF_INET, addr: bytes(m.address), prefix: 32, created: m.created })),
        marked.map((m) => (inUse.has(m.address) ? 1 : 0)), marked.length, records, records.length, now, IDLE, remove, next));
      const idleSince: Record<string, number> = {};
      for (const r of (next as { addr: number[]; created: number; since_ms: number }[]).slice(0, kept)) idleSince[`${text(r.addr)}@${r.created}`] = Number(r.since_ms);
      return { remove: marked.filter((_, i) => remove[i] === 1).map((m) => m.address), idleSince };
    };
  });

  after(function () {
    build?.remove();
  });

  const a1 = { address: '198.51.100.1', created: 500 };
  const a2 = { address: '198.51.100.2', created: 700 };

  it('an address in use is kept, and its idle count starts over', function () {
    expect(decide([a1], new Set(['198.51.100.1']), { '198.51.100.1@500': 0 }, 10 * IDLE)).to.deep.equal({ remove: [], idleSince: {} });
  });

  it('first seen unused: counted from now, not removed', function () {
    expect(decide([a1], new Set(), {}, 5000)).to.deep.equal({ remove: [], idleSince: { '198.51.100.1@500': 5000 } });
  });

  it('unused at two looks the idle time apart: removed; sooner: kept counting', function () {
    const since = { '198.51.100.1@500': 1000, '198.51.100.2@700': 50_000 };
    expect(decide([a1, a2], new Set(), since, 1000 + IDLE)).to.deep.equal({ remove: ['198.51.100.1'], idleSince: { '198.51.100.2@700': 50_000 } });
  });

  it('an address added again since the last look (or a reused namespace) starts a new count', function () {
    expect(decide([{ address: '198.51.100.1', created: 900 }], new Set(), { '198.51.100.1@500': 0 }, 10 * IDLE))
      .to.deep.equal({ remove: [], idleSince: { '198.51.100.1@900': 10 * IDLE } });
  });

  it('forgets addresses no longer on the interface', function () {
    expect(decide([], new Set(), { '198.51.100.7@1': 1 }, 2)).to.deep.equal({ remove: [], idleSince: {} });
  });
});
