import type { SnapshotRedaction } from "@paas-backup/core/snapshot";

/** Exit 9's message: what was redacted (never the value) and what the operator does about it. */
export function redactionNotice(redactions: readonly SnapshotRedaction[], context?: string): string {
  return `paas-backup: ${redactionSummary(redactions, context)}.\n  ${REDACTION_REMEDIATION}\n`;
}

export const REDACTION_REMEDIATION =
  'The stored copy holds <redacted> in its place. Once rotated, acknowledge each finding in the config file (secretAcknowledged: [{"path", "line", "rule"}]) so later runs exit 0; a false positive goes in secretAllow.';

/** "snapshot of C taken with redactions: rotate the leaked credential (path:line (rule), ...)": never a value. */
export function redactionSummary(redactions: readonly SnapshotRedaction[], context?: string): string {
  const list = redactions.slice(0, 10).map((r) => `${r.path}:${r.line} (${r.rule})`);
  return `snapshot ${context ? `of ${context} ` : ""}taken with redactions: rotate the leaked credential (${list.join(", ")}${redactions.length > 10 ? ` and ${redactions.length - 10} more` : ""})`;
}
