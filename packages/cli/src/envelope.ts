/** si's envelope (reference §4): the one JSON document a --json run prints on stdout. */
export interface Envelope {
  ok: boolean;
  /** filled in from the command table: whatever a command passes is replaced */
  command?: string;
  context: string;
  mode: string;
  /** always the length of `data` (or of `checks` for doctor): whatever a command passes is replaced */
  count?: number;
  data?: unknown[];
  checks?: unknown[];
  error?: FailureInfo;
  [extra: string]: unknown;
}

export interface FailureInfo {
  code: string;
  stage: string;
  target: string;
  message: string;
  remediation: string;
}

/**
 * A command hands its envelope over; the runner prints it once the command has returned, so a
 * run prints exactly one document whatever the command does (a throw after this replaces it with
 * the failure envelope).
 */
export function printEnvelope(rt: { envelope: Envelope | null }, envelope: Envelope): void {
  rt.envelope = envelope;
}
