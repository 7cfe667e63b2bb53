/** Coalescing of nft element updates, against a recording stand-in for the kernel. */
import { expect } from 'chai';
import { CapaError } from '../../resolver/codec/errors.js';
import { errnoOf } from '../../gateway-ref/lib/dataplane/libnftables.js';
import { BatchWriter } from '../../gateway-ref/lib/dataplane/nft-batch.js';
import type { ElementOp } from '../../gateway-ref/lib/dataplane/nft-rules.js';

function op(key: string, action: 'add' | 'delete' = 'add'): ElementOp {
  return { action, element: { map: 'state_tcp4', key, value: '1000' } };
}

/** Records each applied batch; `fail` decides which batches the "kernel" refuses; `release` lets a held batch finish. */
class Kernel {
  readonly batches: string[][] = [];
  private readonly held: (() => void)[] = [];
  hold = false;
  constructor(private readonly fail: (keys: string[]) => string | undefined = () => undefined) {}

  readonly apply = (ops: readonly ElementOp[]): Promise<void> => {
    const keys = ops.map((o) => `${o.action} ${o.element.key}`);
    this.batches.push(keys);
    const error = this.fail(keys);
    // Refused as libnftables refuses: the kernel's errno classified where nft's message is read.
    const refusal = (text: string): CapaError => new CapaError('ERR_CAPA_SERVER_FAILURE', text, { errno: errnoOf(text) });
    if (this.hold) return new Promise((resolve, reject) => this.held.push(() => (error ? reject(refusal(error)) : resolve())));
    return error ? Promise.reject(refusal(error)) : Promise.resolve();
  };

  release(): void {
    this.hold = false;
    for (const go of this.held.splice(0)) go();
  }
}

describe('nft batch writer', () => {
  it('sends a lone update at once, and updates arriving meanwhile together in the next batch', async () => {
    const kernel = new Kernel();
    kernel.hold = true;
    const writer = new BatchWriter(kernel.apply);
    const first = writer.submit({ ops: [op('a')] });
    const rest = ['b', 'c', 'd'].map((k) => writer.submit({ ops: [op(k)] }));
    expect(kernel.batches).to.deep.equal([['add a']]);
    kernel.release();
    await Promise.all([first, ...rest]);
    expect(kernel.batches).to.deep.equal([['add a'], ['add b', 'add c', 'add d']]);
  });

  it('keeps batches within the limit without splitting a unit', async () => {
    const kernel = new Kernel();
    kernel.hold = true;
    const writer = new BatchWriter(kernel.apply, 3);
    const all = [writer.submit({ ops: [op('a')] }), writer.submit({ ops: [op('b'), op('c')] }), writer.submit({ ops: [op('d'), op('e')] }), writer.submit({ ops: [op('f')] })];
    kernel.release();
    await Promise.all(all);
    expect(kernel.batches).to.deep.equal([['add a'], ['add b', 'add c'], ['add d', 'add e', 'add f']]);
  });

  it('retries a failed batch unit by unit, so only the bad update fails', async () => {
    const kernel = new Kernel((keys) => (keys.includes('add bad') ? 'Error: Could not process rule: File exists' : undefined));
    kernel.hold = true;
    const writer = new BatchWriter(kernel.apply);
    const warmup = writer.submit({ ops: [op('w')] });
    const good1 = writer.submit({ ops: [op('g1')] });
    const bad = writer.submit({ ops: [op('bad')] });
    const good2 = writer.submit({ ops: [op('g2')] });
    kernel.release();
    await Promise.all([warmup, good1, good2]);
    let failure: unknown;
    await bad.catch((err: unknown) => { failure = err; });
    expect(String(failure)).to.match(/File exists/);
    expect(kernel.batches).to.deep.equal([['add w'], ['add g1', 'add bad', 'add g2'], ['add g1'], ['add bad'], ['add g2']]);
  });

  it('applies the fallback of a unit whose failure matches, and accepts the failure when the fallback is empty', async () => {
    const kernel = new Kernel((keys) => (keys[0] === 'add x' ? 'File exists' : keys[0] === 'delete gone' ? 'No such file or directory' : undefined));
    const writer = new BatchWriter(kernel.apply);
    await writer.submit({ ops: [op('x')], fallback: { when: 'EEXIST', ops: [op('x', 'delete'), op('y')] } });
    await writer.submit({ ops: [op('gone', 'delete')], fallback: { when: 'ENOENT', ops: [] } });
    let failure: unknown;
    await writer.submit({ ops: [op('x')], fallback: { when: 'ENOENT', ops: [] } }).catch((err: unknown) => { failure = err; });
    expect(String(failure)).to.match(/File exists/);
    expect(kernel.batches).to.deep.equal([['add x'], ['delete x', 'add y'], ['delete gone'], ['add x']]);
  });

  it('reports idle only once everything queued is applied', async () => {
    const kernel = new Kernel();
    kernel.hold = true;
    const writer = new BatchWriter(kernel.apply);
    await writer.idle();
    const pending = [writer.submit({ ops: [op('a')] }), writer.submit({ ops: [op('b')] })];
    let idle = false;
    const waiting = writer.idle().then(() => { idle = true; });
    await Promise.resolve();
    expect(idle).to.equal(false);
    kernel.release();
    await Promise.all([...pending, waiting]);
    expect(kernel.batches).to.have.length(2);
  });
});
