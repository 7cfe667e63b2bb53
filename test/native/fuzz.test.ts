/**
 * libFuzzer over the C codec (native/fuzz/fuzz_validate.c) with ASan and UBSan, bounded so it
 * fits the suite. Seeds: the vector messages and presentation texts. Artefacts go to a temp dir.
 * CAPA_FUZZ_C_RUNS / CAPA_FUZZ_C_SECONDS / CAPA_FUZZ_SEED widen or reproduce a run.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CBuild, buildC, requireTool } from '../helpers/c-build.js';
import { messageSeeds, vectors } from '../helpers/vectors.js';

const RUNS = Number(process.env.CAPA_FUZZ_C_RUNS ?? 200_000);
const SECONDS = Number(process.env.CAPA_FUZZ_C_SECONDS ?? 20);
const SEED = Number(process.env.CAPA_FUZZ_SEED ?? 0x5eed);

const FUZZ_FLAGS = ['-g', '-O1', '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=undefined', '-std=c99', '-Wall', '-Wextra', '-Werror'];
const SOURCES = ['native/fuzz/fuzz_validate.c', 'native/core/capa_codec.c', 'native/core/capa_judge.c'];

interface FuzzRun {
  status: number | null;
  output: string;
  executed: number;
  artifacts: string[];
}

function writeCorpus(dir: string): string {
  const corpus = join(dir, 'corpus');
  mkdirSync(corpus);
  messageSeeds.forEach((wire, i) => writeFileSync(join(corpus, `message-${i}`), wire));
  vectors.rdata.valid.forEach((v, i) => {
    writeFileSync(join(corpus, `presentation-${i}`), v.presentation);
    writeFileSync(join(corpus, `generic-${i}`), v.generic);
    writeFileSync(join(corpus, `rdata-${i}`), Buffer.from(v.wire, 'hex'));
  });
  writeFileSync(join(corpus, 'host'), 'apricot.ee.unsw.edu.au');
  return corpus;
}

function fuzz(build: CBuild, inputs: string[], extra: string[]): FuzzRun {
  const artifacts = join(build.dir, 'artifacts');
  mkdirSync(artifacts, { recursive: true });
  const run = spawnSync(build.path, [...inputs, `-seed=${SEED}`, `-artifact_prefix=${artifacts}/`, '-print_final_stats=1', ...extra], {
    encoding: 'utf8',
    timeout: (SECONDS + 60) * 1000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = `${run.stdout}${run.stderr}`;
  const executed = Number(/stat::number_of_executed_units:\s*(\d+)/.exec(output)?.[1] ?? 0);
  return { status: run.status, output, executed, artifacts: readdirSync(artifacts) };
}

describe('native: libFuzzer over the C codec', function () {
  this.timeout((SECONDS + 120) * 1000);
  const builds: CBuild[] = [];

  after(function () {
    for (const b of builds) b.remove();
  });

  function build(ctx: Mocha.Context, defines: string[]): CBuild {
    const clang = requireTool(ctx, 'clang', 'fuzzing the C codec with libFuzzer');
    const b = buildC({ sources: SOURCES, kind: 'executable', compiler: clang, flags: [...FUZZ_FLAGS, ...defines], name: 'fuzz_validate' });
    builds.push(b);
    return b;
  }

  it(`runs ${RUNS} inputs (at most ${SECONDS} s) without a crash, overrun or wrong answer`, function () {
    const b = build(this, []);
    const run = fuzz(b, [writeCorpus(b.dir)], [`-runs=${RUNS}`, `-max_total_time=${SECONDS}`, '-timeout=10', '-rss_limit_mb=2048']);
    if (run.status !== 0 || run.artifacts.length > 0) {
      expect.fail(`libFuzzer failed (exit ${run.status}, seed ${SEED}, artifacts ${run.artifacts.join(', ')} in ${b.dir}):\n${run.output.slice(-6000)}`);
    }
    // Too few executions means the budget was eaten by something else, not that the code is sound.
    expect(run.executed, 'inputs executed').to.be.at.least(Math.min(RUNS, 10_000));
  });

  it('reports a crashing input with an artefact (the check above can fail)', function () {
    const b = build(this, ['-DCAPA_FUZZ_CANARY']);
    const corpus = join(b.dir, 'canary');
    mkdirSync(corpus);
    writeFileSync(join(corpus, 'input'), 'CANARY and the rest');
    const run = fuzz(b, [corpus], ['-runs=100']);
    expect(run.status, run.output.slice(-2000)).to.not.equal(0);
    expect(run.artifacts.filter((a) => a.startsWith('crash-'))).to.have.length(1);
  });
});
