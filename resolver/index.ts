/** Public API of the CAPA resolver: codec, stub resolver, release, transport and server selection. */
export * from './lib/constants.js';
export * from './lib/errors.js';
export * from './lib/ip.js';
export { type CapaRecord, decode as decodeRdata, encode as encodeRdata, encodingLength as rdataLength } from './lib/rdata.js';
export * from './lib/presentation.js';
export * from './lib/qname.js';
export * from './lib/validate.js';
export * from './lib/message.js';
export * from './lib/servers.js';
export * from './lib/transport.js';
export * from './lib/update.js';
export * from './lib/resolve.js';
