/** What a demo terminal reports to the demo (one JSON line on its stdout), and how it is read back. */

export type FlowProto = 'tcp' | 'udp';

export interface FlowReport {
  proto: FlowProto;
  /** The (aOG, pA) the GRM assigned, as address:port. */
  assigned: string;
}

export type TerminalReport = { name: string; flows: FlowReport[] } | { name: string; error: string };

/** The last JSON line of a terminal's output, checked; a terminal that said nothing usable is an error. */
export function parseReport(name: string, output: string): TerminalReport {
  const line = output.trim().split('\n').pop() ?? '';
  try {
    const report = JSON.parse(line) as TerminalReport;
    if (typeof report === 'object' && report !== null && report.name === name && ('flows' in report || 'error' in report)) return report;
  } catch {
    // not JSON: reported below with the output
  }
  return { name, error: `no report (output: ${JSON.stringify(output.trim().slice(-200))})` };
}

interface PinEvent {
  event: string;
  proto?: number;
  aOG?: string;
  pA?: number;
}

/** The report of a program run under capa-run, from the "pin" events of its CAPA_LOG (one JSON object a line). */
export function reportFromCapaRunLog(name: string, log: string): TerminalReport {
  const flows: FlowReport[] = [];
  for (const line of log.split('\n')) {
    if (line.trim() === '') continue;
    let event: PinEvent;
    try {
      event = JSON.parse(line) as PinEvent;
    } catch {
      return { name, error: `capa-run log line is not JSON: ${line.slice(0, 120)}` };
    }
    if (event.event === 'pin' && typeof event.aOG === 'string' && typeof event.pA === 'number') {
      flows.push({ proto: event.proto === 17 ? 'udp' : 'tcp', assigned: `${event.aOG}:${event.pA}` });
    }
  }
  return flows.length > 0 ? { name, flows } : { name, error: 'capa-run pinned no socket (see its log and stderr)' };
}
