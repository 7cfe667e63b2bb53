/** The error a call that must fail threw, or a promise that must reject rejected with. */
import { expect } from 'chai';
import { CapaError, type CapaErrorCode, isCapaError } from '../../resolver/codec/errors.js';

/** The error the promise rejects with; fails the test when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected the promise to reject');
}

/** The CapaError the promise rejects with; fails the test when it resolves or rejects with anything else. */
export async function capaRejection(promise: Promise<unknown>): Promise<CapaError> {
  const err = await rejection(promise);
  if (err instanceof CapaError) return err;
  throw err;
}

/** The CapaError `fn` throws, which must carry `code`; fails the test when fn returns or throws anything else. */
export function capaThrown(fn: () => unknown, code: CapaErrorCode): CapaError {
  try {
    fn();
  } catch (err) {
    expect(isCapaError(err, code), `expected ${code}, got ${String(err)}`).to.equal(true);
    return err as CapaError;
  }
  return expect.fail(`expected ${code}, but it succeeded`);
}
