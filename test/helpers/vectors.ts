/** The shared wire vectors, test/vectors/capa.json, typed. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CapaRecord } from '../../resolver/lib/rdata.js';
import { repoRoot } from './c-build.js';

export interface RdataVector {
  name: string;
  fields: CapaRecord;
  wire: string;
  presentation: string;
  generic: string;
}

export interface BadVector {
  name: string;
  error: string;
}

export interface MessageVector {
  name: string;
  wire: string;
  valid: boolean;
  rcode?: string;
  capa?: CapaRecord[];
  ede?: { code: number; text: string }[];
}

export interface Vectors {
  rrtype: number;
  rdata: {
    valid: RdataVector[];
    malformed: (BadVector & { wire: string })[];
    badPresentation: (BadVector & { text: string })[];
  };
  messages: MessageVector[];
}

export const vectors: Vectors = JSON.parse(readFileSync(join(repoRoot, 'test/vectors/capa.json'), 'utf8')) as Vectors;

export function hex(text: string): Buffer {
  return Buffer.from(text, 'hex');
}

/** Every message vector's bytes, valid and invalid: the seeds of the mutation fuzzers. */
export const messageSeeds: Buffer[] = vectors.messages.map((m) => hex(m.wire));
