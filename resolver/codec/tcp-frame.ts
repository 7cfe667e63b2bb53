/** DNS over TCP (RFC 1035 §4.2.2, RFC 7766 §8): messages on a byte stream, each after its length. */
/** RFC 7766 §8: each message is preceded by its length as a 2-octet field. */
export function frame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  out.set(message, 2);
  return out;
}

/** Splits complete frames off the front of a TCP byte stream; returns them and the remainder. */
export function unframe(stream: Buffer): { frames: Buffer[]; rest: Buffer } {
  const frames: Buffer[] = [];
  let off = 0;
  while (stream.length - off >= 2) {
    const len = stream.readUInt16BE(off);
    if (stream.length - off - 2 < len) break;
    frames.push(stream.subarray(off + 2, off + 2 + len));
    off += 2 + len;
  }
  return { frames, rest: stream.subarray(off) };
}
