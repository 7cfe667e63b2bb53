/** Errors with a stable `.code`, in the style of Node core's errors. */

export type CapaErrorCode =
  | 'ERR_CAPA_MALFORMED'
  | 'ERR_CAPA_INVALID_ARG'
  | 'ERR_CAPA_NOT_FOUND'
  | 'ERR_CAPA_REFUSED'
  | 'ERR_CAPA_EXHAUSTED'
  | 'ERR_CAPA_QUOTA'
  | 'ERR_CAPA_SERVER_FAILURE'
  | 'ERR_CAPA_TIMEOUT'
  | 'ERR_CAPA_NO_SERVERS'
  | 'ERR_CAPA_NO_ALLOCATION'
  | 'ERR_CAPA_NOT_OWNER'
  | 'ERR_CAPA_PERMISSION'
  | 'ERR_CAPA_CONFIG';

export interface CapaErrorDetails {
  /** Extended DNS Error info-code sent by the server, if any. */
  ede?: number;
  /** Extended DNS Error text sent by the server, if any. */
  edeText?: string;
  /** The server that gave the answer, as host:port. */
  server?: string;
  /** DNS rcode name of the answer, if the error came from one. */
  rcode?: string;
  /** The system error behind it (EEXIST, ENOENT, EPERM), when the tool that failed said. */
  errno?: string;
  cause?: unknown;
}

export class CapaError extends Error {
  readonly code: CapaErrorCode;
  readonly ede: number | undefined;
  readonly edeText: string | undefined;
  readonly server: string | undefined;
  readonly rcode: string | undefined;
  readonly errno: string | undefined;

  constructor(code: CapaErrorCode, message: string, details: CapaErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'CapaError';
    this.code = code;
    this.ede = details.ede;
    this.edeText = details.edeText;
    this.server = details.server;
    this.rcode = details.rcode;
    this.errno = details.errno;
  }
}

export function malformed(message: string): CapaError {
  return new CapaError('ERR_CAPA_MALFORMED', message);
}

export function invalidArg(message: string): CapaError {
  return new CapaError('ERR_CAPA_INVALID_ARG', message);
}

export function isCapaError(err: unknown, code?: CapaErrorCode): err is CapaError {
  return err instanceof CapaError && (code === undefined || err.code === code);
}
