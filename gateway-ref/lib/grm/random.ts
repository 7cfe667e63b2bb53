/** Unpredictable numbers in [0, 1) for port choice (RFC 6056), drawn from the CSPRNG in batches. */
import { randomFillSync } from 'node:crypto';

const BATCH = 1024;

export function cryptoRandom(): () => number {
  const words = new Uint32Array(BATCH);
  let next = BATCH;
  return () => {
    if (next === BATCH) {
      randomFillSync(words);
      next = 0;
    }
    return words[next++]! / 2 ** 32;
  };
}
