/**
 * A Map of memoised values that starts over when it reaches `limit` entries: the callers' keys
 * (names, server lists, prefixes) are few and repeat, so this bounds memory at no bookkeeping
 * cost per hit, where an LRU would pay on every one.
 */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();

  constructor(private readonly limit: number) {}

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    if (this.map.size >= this.limit) this.map.clear();
    this.map.set(key, value);
  }
}
