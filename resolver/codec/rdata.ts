/** CAPA RDATA: FLAGS(1) PROTO(1) PORT(2) ADDRESS(4|16), network byte order. Pure, no I/O. */
import { RDLENGTH_V4, RDLENGTH_V6 } from './constants.js';
import { invalidArg, malformed } from './errors.js';
import { bytesToIp, ipToBytes } from './ip.js';

export interface CapaRecord {
  /** Sent as 0; unknown bits are ignored by receivers. */
  flags: number;
  /** IANA protocol number: 6 TCP, 17 UDP, 0 any. */
  proto: number;
  /** Source port the terminal must use. */
  port: number;
  /** Source address the terminal must use (IPv4 or IPv6 text). */
  address: string;
}

function checkFields(record: CapaRecord): Uint8Array {
  const { flags, proto, port } = record;
  if (!Number.isInteger(flags) || flags < 0 || flags > 255) throw invalidArg(`CAPA flags must be 0-255, got ${flags}`);
  if (!Number.isInteger(proto) || proto < 0 || proto > 255) throw invalidArg(`CAPA proto must be 0-255, got ${proto}`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalidArg(`CAPA port must be 0-65535, got ${port}`);
  return ipToBytes(record.address);
}

export function encodingLength(record: CapaRecord): number {
  return checkFields(record).length === 4 ? RDLENGTH_V4 : RDLENGTH_V6;
}

/** Writes the RDATA (without the RDLENGTH prefix) into buf at offset, or into a new buffer. */
export function encode(record: CapaRecord, buf?: Uint8Array, offset = 0): Uint8Array {
  const address = checkFields(record);
  const length = 4 + address.length;
  const out = buf ?? new Uint8Array(length);
  if (offset < 0 || offset + length > out.length) throw invalidArg(`CAPA RDATA needs ${length} bytes at offset ${offset}`);
  out[offset] = record.flags;
  out[offset + 1] = record.proto;
  out[offset + 2] = record.port >> 8;
  out[offset + 3] = record.port & 0xff;
  out.set(address, offset + 4);
  return out;
}

/** Decodes exactly `length` bytes of RDATA; any length but 8 or 20 is malformed. */
export function decode(buf: Uint8Array, offset = 0, length = buf.length - offset): CapaRecord {
  if (length !== RDLENGTH_V4 && length !== RDLENGTH_V6) {
    throw malformed(`CAPA RDLENGTH must be ${RDLENGTH_V4} or ${RDLENGTH_V6}, got ${length}`);
  }
  if (offset < 0 || offset + length > buf.length) throw malformed('CAPA RDATA runs past the end of the message');
  return {
    flags: buf[offset]!,
    proto: buf[offset + 1]!,
    port: (buf[offset + 2]! << 8) | buf[offset + 3]!,
    address: bytesToIp(buf, offset + 4, length === RDLENGTH_V4 ? 4 : 16),
  };
}
