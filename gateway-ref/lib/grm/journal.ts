/**
 * The operators' journal: one JSON line per allocation, confirm, release and expiry, with what
 * abuse tracing needs (who held which outside address and port towards whom, and when).
 */
import type { AllocationEvent } from './types.js';

/** The last time formatted: events come in bursts within one millisecond. */
let lastTime = NaN;
let lastIso = '';

function isoTime(time: number): string {
  if (time !== lastTime) {
    lastTime = time;
    lastIso = new Date(time).toISOString();
  }
  return lastIso;
}

/**
 * One journal line, without the trailing newline; `pB` is null for a partial state. Written as a
 * template (strings still through JSON.stringify): one object per event for JSON.stringify to
 * walk would cost several times more, at two events per allocation.
 */
export function formatEvent(event: AllocationEvent): string {
  const { tuple } = event;
  return `{"time":"${isoTime(event.time)}","event":"${event.event}","terminal":${JSON.stringify(event.terminal)},`
    + `"proto":${tuple.proto},"aOG":${JSON.stringify(tuple.localAddress)},"pA":${tuple.localPort},`
    + `"aOB":${JSON.stringify(tuple.remoteAddress)},"pB":${tuple.remotePort ?? null}}`;
}
