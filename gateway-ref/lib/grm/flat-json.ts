/**
 * A reader for the JSON the state journal writes: one flat array of ASCII strings without
 * escapes, integers and null. It works on the bytes of the line and hands out each distinct
 * string once (string-cache.ts), where JSON.parse made three fresh strings per state for the
 * collector to carry. Anything else (an escape, a fraction, a nested value) is left to JSON.parse.
 */
import type { StringCache } from './string-cache.js';

const QUOTE = 0x22, COMMA = 0x2c, OPEN = 0x5b, CLOSE = 0x5d, MINUS = 0x2d, ZERO = 0x30, NINE = 0x39, N = 0x6e, BACKSLASH = 0x5c;

/** The values of the array in bytes[start..end), or undefined when it is not of the journal's plain kind. */
export function readFlatArray(bytes: Uint8Array, start: number, end: number, strings: StringCache): unknown[] | undefined {
  if (bytes[start] !== OPEN || bytes[end - 1] !== CLOSE) return undefined;
  const values: unknown[] = [];
  let i = start + 1;
  if (i === end - 1) return values;
  for (;;) {
    const c = bytes[i]!;
    if (c === QUOTE) {
      let hash = 0x811c9dc5;
      let j = i + 1;
      for (; j < end; j++) {
        const b = bytes[j]!;
        if (b === QUOTE) break;
        if (b === BACKSLASH || b < 0x20 || b > 0x7e) return undefined;
        hash = Math.imul(hash ^ b, 0x01000193);
      }
      if (j >= end) return undefined;
      values.push(strings.get(bytes, i + 1, j, hash));
      i = j + 1;
    } else if (c === N) {
      if (bytes[i + 1] !== 0x75 || bytes[i + 2] !== 0x6c || bytes[i + 3] !== 0x6c) return undefined;
      values.push(null);
      i += 4;
    } else {
      const negative = c === MINUS;
      let j = negative ? i + 1 : i;
      let value = 0;
      const first = j;
      for (; j < end; j++) {
        const b = bytes[j]!;
        if (b < ZERO || b > NINE) break;
        value = value * 10 + (b - ZERO);
      }
      // No digits, a leading zero, or more digits than a double holds exactly: not ours.
      if (j === first || (bytes[first] === ZERO && j - first > 1) || j - first > 15) return undefined;
      values.push(negative ? -value : value);
      i = j;
    }
    const sep = bytes[i];
    if (sep === CLOSE) return i === end - 1 ? values : undefined;
    if (sep !== COMMA) return undefined;
    i++;
  }
}
