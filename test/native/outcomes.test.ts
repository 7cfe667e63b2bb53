/**
 * One outcome table, two judges: the TypeScript stub's judgeReply (resolver/lib/resolve.ts) and
 * the C core's capa_judge_reply (native/core/capa_judge.c, built here with the strict flags and
 * loaded through koffi) must give every case of test/vectors/outcomes.json its outcome.
 */
import { expect } from 'chai';
import koffi from 'koffi';
import { judgeReply } from '../../resolver/lib/resolve.js';
import { validateMessage } from '../../resolver/codec/validate.js';
import { type CBuild, buildC } from '../helpers/c-build.js';
import { OUTCOME_RRTYPE, type OutcomeVector, outcomeVectors } from '../helpers/outcome-vectors.js';
import { mutate, Prng } from '../helpers/wire-fuzz.js';

const SERVER = { address: '127.0.0.1', port: 53 };
const VERDICTS = ['capa', 'fallback', 'fail', 'next', 'tcp', 'ignore', 'malformed'];
const IPPROTO = { tcp: 6, udp: 17 } as const;
/** Room for struct capa_response, which the C judge fills and these tests do not read. */
const RESPONSE_BYTES = 1024;

interface CJudgement {
  verdict: number;
  failure: number;
  what: string | null;
}

interface JudgeC {
  qnameBuild(host: string, port: number, proto: number, out: Uint8Array, len: number): number;
  judgeReply(msg: Uint8Array, len: number, rrtype: number, id: number, qname: string, port: number, proto: number,
    response: Uint8Array, out: Partial<CJudgement>): void;
  failureCode(failure: number): string;
}

/** Whether the strict validator (which both sides share) accepts the message's framing. */
function framedWell(bytes: Uint8Array): boolean {
  try {
    validateMessage(bytes, OUTCOME_RRTYPE);
    return true;
  } catch {
    return false;
  }
}

function tsOutcome(v: OutcomeVector): string {
  const port = v.query.port ?? undefined;
  const o = judgeReply(v.reply, { host: v.query.host, port, protocol: v.query.protocol, rrtype: OUTCOME_RRTYPE }, v.query.id, SERVER);
  return o.kind === 'fail' || o.kind === 'next' ? `${o.kind} ${o.error.code}` : o.kind;
}

describe('outcome table: TypeScript and C judges on test/vectors/outcomes.json', function () {
  let build: CBuild | undefined;
  let lib: ReturnType<typeof koffi.load> | undefined;
  let c: JudgeC;

  before(function () {
    build = buildC({ sources: ['native/core/capa_codec.c', 'native/core/capa_judge.c'], kind: 'shared' });
    lib = koffi.load(build.path);
    koffi.struct('capa_judgement', { verdict: 'int', failure: 'int', what: 'const char *' });
    c = {
      qnameBuild: lib.func('int capa_qname_build(const char *host, int port, int proto, _Out_ uint8_t *out, size_t len)'),
      judgeReply: lib.func('void capa_judge_reply(const uint8_t *msg, size_t len, uint16_t rrtype, uint16_t id, const char *qname, uint16_t port, int proto, _Out_ uint8_t *r, _Out_ capa_judgement *out)'),
      failureCode: lib.func('const char *capa_failure_code(int failure)'),
    };
  });

  after(function () {
    lib?.unload();
    build?.remove();
  });

  function cOutcome(v: OutcomeVector): string {
    const proto = IPPROTO[v.query.protocol];
    const qname = new Uint8Array(256);
    expect(c.qnameBuild(v.query.host, v.query.port ?? 0, proto, qname, qname.length)).to.equal(0);
    const text = Buffer.from(qname.subarray(0, qname.indexOf(0))).toString('latin1');
    expect(text, 'both sides ask the same name').to.equal(v.qname);
    const out: Partial<CJudgement> = {};
    c.judgeReply(v.reply, v.reply.length, OUTCOME_RRTYPE, v.query.id, text, v.query.port ?? 0, proto, new Uint8Array(RESPONSE_BYTES), out);
    const verdict = VERDICTS[out.verdict!]!;
    return verdict === 'fail' || verdict === 'next' ? `${verdict} ${c.failureCode(out.failure!)}` : verdict;
  }

  it('covers every verdict and every failure code of the DESIGN table', function () {
    const outcomes = new Set(outcomeVectors.map((v) => v.outcome));
    for (const o of ['capa', 'fallback', 'tcp', 'ignore', 'malformed', 'fail ERR_CAPA_NOT_FOUND', 'fail ERR_CAPA_REFUSED',
      'next ERR_CAPA_EXHAUSTED', 'fail ERR_CAPA_QUOTA', 'next ERR_CAPA_SERVER_FAILURE', 'fail ERR_CAPA_MALFORMED']) {
      expect(outcomes, o).to.include(o);
    }
  });

  for (const v of outcomeVectors) {
    it(`${v.name}: ${v.outcome}`, function () {
      expect(tsOutcome(v), 'TypeScript judge').to.equal(v.outcome);
      expect(cOutcome(v), 'C judge').to.equal(v.outcome);
    });
  }

  it('gives mutants of every case the same outcome in both (a message neither accepts: ignore or malformed alike)', function () {
    const rng = new Prng(Number(process.env.CAPA_FUZZ_SEED ?? 12));
    // Which of two rejections a message gets depends on the order of checks (ID first, or the whole
    // message first); both mean "keep waiting", so they compare as one.
    const rejected = (o: string): string => (o === 'ignore' || o === 'malformed' ? 'rejected' : o);
    let compared = 0;
    for (const v of outcomeVectors) {
      for (let i = 0; i < 200; i++) {
        const mutant = { ...v, reply: mutate(v.reply, rng) };
        const ts = tsOutcome(mutant);
        // dns-packet, which decodes the unusual messages on the TypeScript side, also refuses some
        // well-framed RDATA (a DNSKEY whose protocol is not 3): a difference of decoders, not of tables.
        if (ts === 'malformed' && framedWell(mutant.reply)) continue;
        expect(rejected(cOutcome(mutant)), `${v.name}, mutant ${mutant.reply.toString('hex')}`).to.equal(rejected(ts));
        compared++;
      }
    }
    expect(compared, 'mutants compared').to.be.greaterThan(outcomeVectors.length * 150);
  });
});
