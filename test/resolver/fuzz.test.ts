/**
 * Mutation fuzzing of validateMessage + decodeMessage. A mutant is either rejected with
 * ERR_CAPA_MALFORMED or accepted; an accepted one must lie exactly inside its buffer, and what
 * dns-packet decoded must be the records the RDLENGTHs frame (no record smuggled past the
 * validator). Seeded: set CAPA_FUZZ_SEED / CAPA_FUZZ_RUNS to reproduce or widen a run.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { createRequire } from 'node:module';
import { DEFAULT_CAPA_RRTYPE } from '../../resolver/codec/constants.js';
import { isCapaError } from '../../resolver/codec/errors.js';
import { bytesToIp, canonicalIp } from '../../resolver/codec/ip.js';
import { type Message, type WireRecord, capaAnswers, decodeMessage, extendedErrors } from '../../resolver/codec/message.js';
import { type CapaRecord, decode as decodeRdata, encode as encodeRdata } from '../../resolver/codec/rdata.js';
import { validateMessage } from '../../resolver/codec/validate.js';
import { messageSeeds } from '../helpers/vectors.js';
import { Prng, type Walk, type WalkedRecord, mutate, walkMessage } from '../helpers/wire-fuzz.js';

/** dns-packet's own type-name table, so every decoded record's type can be compared with the wire. */
const dnsTypes = createRequire(import.meta.url)('dns-packet/types.js') as { toString(type: number): string };

const SEED = Number(process.env.CAPA_FUZZ_SEED ?? 0x5eed_c0de);
const RUNS = Number(process.env.CAPA_FUZZ_RUNS ?? 50_000);

/** What dns-packet's decoded record must show for the bytes the walk framed; undefined when it does. */
function disagreement(buf: Buffer, walked: WalkedRecord, rr: WireRecord): string | undefined {
  const rdata = buf.subarray(walked.rdataOffset, walked.rdataOffset + walked.rdlength);
  if (rr.type !== dnsTypes.toString(walked.type)) return `type ${walked.type} walked, ${rr.type} decoded`;
  if (walked.type === 41) {
    const optionBytes = (rr.options ?? []).reduce((sum, o) => sum + 4 + (o.data?.length ?? 0), 0);
    return optionBytes === walked.rdlength ? undefined : `OPT options cover ${optionBytes} of ${walked.rdlength} octets`;
  }
  if (rr.name !== walked.name) return `owner "${walked.name}" walked, "${rr.name}" decoded`;
  if (walked.type === DEFAULT_CAPA_RRTYPE) {
    return Buffer.isBuffer(rr.data) && rr.data.equals(rdata) ? undefined : 'CAPA RDATA differs from the framed bytes';
  }
  if (walked.type === 1 || walked.type === 28) {
    const want = bytesToIp(rdata, 0, walked.rdlength as 4 | 16);
    return rr.data === want ? undefined : `address ${want} walked, ${String(rr.data)} decoded`;
  }
  return undefined;
}

function checkAccepted(buf: Buffer, message: Message): void {
  const walk: Walk | undefined = walkMessage(buf);
  expect(walk, 'accepted message must lie exactly inside its buffer').to.not.equal(undefined);
  const decoded = [...message.answers, ...message.authorities, ...message.additionals];
  expect(decoded.length, 'records decoded vs records framed').to.equal(walk!.records.length);
  expect(message.questions.map((q) => q.name)).to.deep.equal(walk!.questions.map((q) => q.name));
  walk!.records.forEach((walked, i) => {
    const problem = disagreement(buf, walked, decoded[i]!);
    expect(problem, `record ${i + 1}`).to.equal(undefined);
  });
  // Readers of an accepted message must not throw either.
  for (const a of capaAnswers(message)) expect([8, 20]).to.include(encodeRdata(a.record).length);
  extendedErrors(message);
}

function runMutant(buf: Buffer): 'accepted' | 'rejected' {
  let message: Message;
  try {
    message = decodeMessage(buf);
  } catch (err) {
    if (isCapaError(err, 'ERR_CAPA_MALFORMED')) return 'rejected';
    throw err;
  }
  checkAccepted(buf, message);
  return 'accepted';
}

describe('codec mutation fuzzing', function () {
  this.timeout(60_000);

  it(`decodeMessage takes or rejects ${RUNS} mutants of the vector messages, never overruns`, function () {
    const rng = new Prng(SEED);
    const tally = { accepted: 0, rejected: 0 };
    for (let i = 0; i < RUNS; i++) {
      const mutant = mutate(rng.pick(messageSeeds), rng);
      try {
        tally[runMutant(mutant)]++;
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        throw new Error(`mutant ${i} (CAPA_FUZZ_SEED=${SEED}) ${mutant.toString('hex')}: ${why}`);
      }
    }
    // Both outcomes must occur, or the mutators are not exercising the validator.
    expect(tally.accepted, 'accepted mutants').to.be.greaterThan(RUNS / 100);
    expect(tally.rejected, 'rejected mutants').to.be.greaterThan(RUNS / 10);
  });

  it('validateMessage on arbitrary bytes only ever throws ERR_CAPA_MALFORMED', function () {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        try {
          validateMessage(bytes);
        } catch (err) {
          if (!isCapaError(err, 'ERR_CAPA_MALFORMED')) throw err;
        }
      }),
      { numRuns: 20_000, seed: SEED },
    );
  });

  it('arbitrary header + vector body: decodeMessage only ever throws ERR_CAPA_MALFORMED', function () {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.constantFrom(...messageSeeds), (header, seed) => {
        const buf = Buffer.concat([header, seed.subarray(12)]);
        expect(runMutant(buf)).to.be.oneOf(['accepted', 'rejected']);
      }),
      { numRuns: 5_000, seed: SEED },
    );
  });

  it('any CAPA record survives encode -> decode unchanged', function () {
    const v4 = fc.ipV4();
    const v6 = fc.ipV6().map(canonicalIp); // decode gives RFC 5952 text back
    const record = fc.record({
      flags: fc.integer({ min: 0, max: 255 }),
      proto: fc.integer({ min: 0, max: 255 }),
      port: fc.integer({ min: 0, max: 65535 }),
      address: fc.oneof(v4, v6),
    });
    fc.assert(
      fc.property(record, (r: CapaRecord) => {
        expect(decodeRdata(encodeRdata(r))).to.deep.equal(r);
      }),
      { numRuns: 5_000, seed: SEED },
    );
  });
});
