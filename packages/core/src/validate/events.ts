import type { FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { EVENT_LOGS } from "../policy/selection.js";
import { join } from "../util/paths.js";
import { redactText } from "../policy/secrets.js";
import { lstatInside } from "../util/no-follow.js";

export interface EventRecord {
  timestamp: string;
  source: string;
  command: string;
  status: string;
  severity: string;
  context: string;
  fields: Record<string, unknown>;
  [key: string]: unknown;
}

export interface LogReadReport {
  path: string;
  present: boolean;
  lines: number;
  records: number;
  /** lines that are not JSON objects (si skips them silently) */
  invalidLines: number[];
  /** the last line had no newline: a write in flight when the file was copied */
  tornTail: boolean;
  /** set when the log is a link or sits under one: it was not read (nothing is followed inside a context) */
  notPlainFile?: string;
}

const KNOWN = new Set(["timestamp", "source", "command", "status", "severity", "context", "mode", "target", "message", "guidance", "fields",
  "error_code", "error_stage", "error_target", "error_message", "error_remediation"]);

function inferSeverity(status: string): string {
  const s = status.toLowerCase();
  if (s === "failed" || s === "error") return "critical";
  if (s === "retrying" || s === "degraded") return "warning";
  if (["succeeded", "ok", "sent", "accepted"].includes(s)) return "info";
  return "";
}

function sourceOf(raw: unknown, file: string): string {
  const s = typeof raw === "string" ? raw.toLowerCase() : "";
  if (s === "audit") return "audit";
  if (s.includes("alert")) return "alert";
  if (s === "si paas" || s.includes("deploy")) return "deploy";
  if (file.endsWith("alerts.jsonl")) return "alert";
  if (file.endsWith("audit.jsonl")) return "audit";
  if (file.endsWith("deployments.jsonl")) return "deploy";
  return "event";
}

const REDACT = ["secret", "token", "password", "credential", "private_key", "api_key"];
const REDACT_EXEMPT = ["count", "findings", "guardrail"];

/**
 * si's output redaction (reference §5): a sensitive-looking key prints as <redacted>, at any
 * depth; and beyond si, any secret the scanner finds inside a string (a token in a failed
 * clone's error_message) is replaced too.
 */
export function redactForOutput(value: unknown, key = ""): unknown {
  const k = key.toLowerCase();
  if (key && REDACT.some((w) => k.includes(w)) && !REDACT_EXEMPT.some((w) => k.includes(w)) && (typeof value !== "object" || value === null)) return "<redacted>";
  if (typeof value === "string") return redactText(value);
  if (Array.isArray(value)) return value.map((v) => redactForOutput(v));
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([kk, v]) => [kk, redactForOutput(v, kk)]));
  return value;
}

/** si's normalisation of one record (reference §3). */
export function normaliseEvent(raw: Record<string, unknown>, file: string): EventRecord {
  const source = sourceOf(raw.source, file);
  const status = typeof raw.status === "string" ? raw.status : "";
  const fields: Record<string, unknown> = { ...(raw.fields && typeof raw.fields === "object" ? (raw.fields as Record<string, unknown>) : {}) };
  for (const [k, v] of Object.entries(raw)) if (!KNOWN.has(k)) fields[k] = v;
  return {
    ...Object.fromEntries(Object.entries(raw).filter(([k]) => KNOWN.has(k))),
    timestamp: typeof raw.timestamp === "string" ? raw.timestamp : "",
    source,
    command: typeof raw.command === "string" && raw.command ? raw.command : source,
    status,
    severity: typeof raw.severity === "string" && raw.severity ? raw.severity : inferSeverity(status),
    context: typeof raw.context === "string" ? raw.context : "",
    fields,
  };
}

const TIMESTAMP = /"timestamp"\s*:\s*"([^"]*)"/;

interface RawEvent {
  timestamp: string;
  line: string;
  file: string;
  lineNumber: number;
}

/**
 * Stream one log line by line, as si reads it. Each line is checked to be a JSON object in form
 * ({ … }) and its timestamp read without a full parse: a gigabyte log is checked at the speed of
 * a scan, and only the lines that are listed get parsed. Memory holds one line at a time.
 */
export async function readEventLog(fs: FileSystem, path: string, onLine: (raw: RawEvent) => void): Promise<LogReadReport> {
  const report: LogReadReport = { path, present: true, lines: 0, records: 0, invalidLines: [], tornTail: false };
  let carry = "";
  const handle = (line: string) => {
    report.lines++;
    const t = line.trim();
    if (t === "") return;
    if (!t.startsWith("{") || !t.endsWith("}")) {
      if (report.invalidLines.length < 20) report.invalidLines.push(report.lines);
      return;
    }
    report.records++;
    onLine({ timestamp: TIMESTAMP.exec(t)?.[1] ?? "", line: t, file: path, lineNumber: report.lines });
  };
  try {
    for await (const chunk of fs.createReadStream(path)) {
      const text = carry + (chunk as Buffer).toString("utf8");
      const lines = text.split("\n");
      carry = lines.pop() ?? "";
      for (const line of lines) handle(line);
    }
  } catch (err) {
    if (isNotFound(err)) return { ...report, present: false };
    throw err;
  }
  if (carry !== "") {
    report.tornTail = true;
    const before = report.invalidLines.length;
    handle(carry);
    // si skips a torn last line silently; it is a write in flight, not damage.
    if (report.invalidLines.length > before) report.invalidLines.pop();
  }
  return report;
}

/** `si paas events list --limit N`: the newest N records of the three logs, newest first. */
export async function listEvents(fs: FileSystem, contextDir: string, limit = 50): Promise<{ records: EventRecord[]; logs: LogReadReport[]; paths: string[] }> {
  let newest: RawEvent[] = [];
  const logs: LogReadReport[] = [];
  const paths = EVENT_LOGS.map((p) => join(contextDir, p));
  const byNewest = (a: RawEvent, b: RawEvent) => (a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : 0);
  for (const [i, path] of paths.entries()) {
    // A log under a symlinked events/ (or itself a link) is not read through: reported as not a plain file.
    const inside = await lstatInside(fs, contextDir, EVENT_LOGS[i]!);
    if (inside && (inside.link !== undefined || inside.stat.kind !== "file")) {
      logs.push({ path, present: true, lines: 0, records: 0, invalidLines: [], tornTail: false, notPlainFile: inside.link !== undefined ? `under ${inside.link}, a ${inside.kind}` : `a ${inside.stat.kind}` });
      continue;
    }
    const report = await readEventLog(fs, path, (raw) => {
      newest.push(raw);
      // Keep a bounded window: sort and cut only when it grows, so a large log stays cheap.
      if (newest.length >= limit * 4 + 256) newest = newest.sort(byNewest).slice(0, limit * 2);
    });
    logs.push(report);
  }
  const records: EventRecord[] = [];
  for (const raw of newest.sort(byNewest)) {
    if (records.length >= limit) break;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.line);
    } catch {
      parsed = null;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      const log = logs.find((l) => l.path === raw.file);
      if (log && log.invalidLines.length < 20) log.invalidLines.push(raw.lineNumber);
      continue;
    }
    records.push(redactForOutput(normaliseEvent(parsed as Record<string, unknown>, raw.file)) as EventRecord);
  }
  return { records, logs, paths };
}
