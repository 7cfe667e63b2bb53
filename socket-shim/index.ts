/**
 * capa-socket: CAPA-aware sockets for Node applications (DESIGN.md "Terminal side").
 * TCP: connect() / createConnection(); UDP: connectUdp(); http(s): CapaAgent / CapaHttpsAgent;
 * fetch: CapaDispatcher / capaConnector (undici). Every socket carries its allocation as
 * `socket.capa` and releases it when it closes. Errors keep the resolver's CapaError codes.
 */
export type { SocketAllocation } from './lib/allocation.js';
export { type CapaOptions } from './lib/options.js';
export { type CapaConnectOptions, type CapaSocket, type ConnectionCallback, connect, createConnection, openSocket } from './lib/connect.js';
export { type CapaUdpOptions, type CapaUdpSocket, connectUdp } from './lib/udp.js';
export { CapaAgent, type CapaAgentOptions, CapaHttpsAgent, type CapaHttpsAgentOptions } from './lib/agent.js';
export { capaConnector, type CapaConnectorOptions, CapaDispatcher, type CapaDispatcherOptions } from './lib/undici.js';
export { CapaError, type CapaErrorCode, isCapaError } from '../resolver/codec/errors.js';
