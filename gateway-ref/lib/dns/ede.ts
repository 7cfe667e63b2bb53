/** Extended DNS Errors (RFC 8914) as the gateway sends them: the option body of an OPT record. Pure. */
import { EDE_OPTION_CODE } from '../../../resolver/codec/constants.js';
import type { ExtendedError } from '../../../resolver/codec/message.js';

/** Encodes an EDE option body: info-code and UTF-8 text. */
export function encodeExtendedError(ede: ExtendedError): { code: number; data: Buffer } {
  const text = Buffer.from(ede.text, 'utf8');
  const data = Buffer.alloc(2 + text.length);
  data.writeUInt16BE(ede.code, 0);
  text.copy(data, 2);
  return { code: EDE_OPTION_CODE, data };
}
