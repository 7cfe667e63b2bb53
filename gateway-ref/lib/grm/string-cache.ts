/**
 * Strings read from journal bytes, each distinct one made once: a million states name a few
 * terminals and addresses, and a restart that made three fresh strings per state spent its
 * time in the collector. One cache per file read.
 */
/** Strings already seen, by an FNV-1a hash of their bytes. */
export class StringCache {
  private readonly byHash = new Map<number, string>();

  /** bytes[start..end) as a string, the same string each time those bytes come. */
  get(bytes: Uint8Array, start: number, end: number, hash: number): string {
    const known = this.byHash.get(hash);
    if (known !== undefined && known.length === end - start && sameBytes(known, bytes, start)) return known;
    const s = Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('latin1');
    if (known === undefined) this.byHash.set(hash, s);
    return s;
  }
}

function sameBytes(s: string, bytes: Uint8Array, start: number): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) !== bytes[start + i]) return false;
  return true;
}

