import type { FileSystem } from "../fs/types.js";
import { contextDir, join } from "../util/paths.js";
import { redactText } from "../policy/secrets.js";

/** One audit event in si's shape (reference §3), appended the way si appends: one write, one line. */
export async function appendAuditEvent(
  fs: FileSystem,
  stateRoot: string,
  context: string,
  event: {
    timestamp: Date;
    command: string;
    status: "succeeded" | "failed";
    fields: Record<string, string>;
    error?: { code: string; message: string; remediation: string; stage: string };
  },
): Promise<void> {
  const record: Record<string, unknown> = {
    timestamp: event.timestamp.toISOString(),
    context,
    source: "audit",
    command: event.command,
    status: event.status,
    mode: "live",
    severity: event.status === "failed" ? "critical" : "info",
    fields: event.fields,
  };
  if (event.error) {
    record.error_code = event.error.code;
    record.error_stage = event.error.stage;
    record.error_target = context;
    record.error_message = event.error.message;
    record.error_remediation = event.error.remediation;
  }
  const dir = join(contextDir(stateRoot, context), "events");
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // The event quotes error messages: no secret value goes into si's log (the next snapshot would have to redact it).
  await fs.appendFile(join(dir, "audit.jsonl"), redactText(`${JSON.stringify(record)}\n`), { mode: 0o600 });
}
