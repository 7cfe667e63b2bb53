/**
 * dns-packet's own tables of names, so both codecs agree on every name ('MX', 'UNKNOWN_65280',
 * 'NONE', 'NXDOMAIN', ...), with the two lookups every message makes cached.
 */
import { createRequire } from 'node:module';
import { BoundedMap } from './bounded-map.js';

const require = createRequire(import.meta.url);
const types = require('dns-packet/types.js') as { toType(name: string): number; toString(type: number): string };
export const classes = require('dns-packet/classes.js') as { toString(klass: number): string };
export const rcodes = require('dns-packet/rcodes.js') as { toString(rcode: number): string };
export const opcodes = require('dns-packet/opcodes.js') as { toString(opcode: number): string };
/** Type numbers by name, looked up once: the table is a long switch. */
const typeNumbers = new BoundedMap<string, number>(64);

export function typeNumber(name: string): number {
  let type = typeNumbers.get(name);
  if (type === undefined) {
    type = types.toType(name);
    typeNumbers.set(name, type);
  }
  return type;
}

/** Type names by number, looked up once: the table is a long switch. */
const typeNames = new Map<number, string>();

export function typeName(type: number): string {
  let name = typeNames.get(type);
  if (name === undefined) {
    name = types.toString(type);
    typeNames.set(type, name); // at most 65,536, in practice a handful
  }
  return name;
}
