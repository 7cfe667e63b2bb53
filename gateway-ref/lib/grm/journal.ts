/**
 * The operators' journal: one JSON line per allocation, confirm, release and expiry, with what
 * abuse tracing needs (who held which outside address and port towards whom, and when).
 */
import type { AllocationEvent } from './types.js';

/** One journal line, without the trailing newline; `pB` is null for a partial state. */
export function formatEvent(event: AllocationEvent): string {
  const { tuple } = event;
  return JSON.stringify({
    time: new Date(event.time).toISOString(),
    event: event.event,
    terminal: event.terminal,
    proto: tuple.proto,
    aOG: tuple.localAddress,
    pA: tuple.localPort,
    aOB: tuple.remoteAddress,
    pB: tuple.remotePort ?? null,
  });
}
