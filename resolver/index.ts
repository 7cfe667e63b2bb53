/** Public API of the CAPA resolver: codec, stub resolver, release, transport and server selection. */
export * from './codec/constants.js';
export * from './codec/errors.js';
export * from './codec/ip.js';
export { type CapaRecord, decode as decodeRdata, encode as encodeRdata, encodingLength as rdataLength } from './codec/rdata.js';
export * from './codec/presentation.js';
export * from './codec/qname.js';
export * from './codec/validate.js';
export * from './codec/message.js';
export * from './lib/servers.js';
export * from './lib/transport.js';
export * from './codec/update.js';
export * from './lib/resolve.js';
export * from './codec/server-address.js';
export * from './codec/reply-check.js';
export * from './codec/tcp-frame.js';
