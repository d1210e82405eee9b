import type { SnapshotRedaction } from "@paas-backup/core/snapshot";

/** Exit 9's message: what was redacted (never the value) and what the operator does about it. */
export function redactionNotice(redactions: readonly SnapshotRedaction[]): string {
  const list = redactions.slice(0, 10).map((r) => `${r.path}:${r.line} (${r.rule})`);
  return (
    `paas-backup: snapshot taken with redactions: rotate the leaked credential (${list.join(", ")}${redactions.length > 10 ? ` and ${redactions.length - 10} more` : ""}).\n` +
    `  The stored copy holds <redacted> in its place. Once rotated, acknowledge each finding in the config file (secretAcknowledged: [{"path", "line", "rule"}]) so later runs exit 0; a false positive goes in secretAllow.\n`
  );
}
