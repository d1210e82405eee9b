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

const KNOWN = new Set([
  "timestamp",
  "source",
  "command",
  "status",
  "severity",
  "context",
  "mode",
  "target",
  "message",
  "guidance",
  "fields",
  "error_code",
  "error_stage",
  "error_target",
  "error_message",
  "error_remediation",
]);

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
  if (
    key &&
    REDACT.some((w) => k.includes(w)) &&
    !REDACT_EXEMPT.some((w) => k.includes(w)) &&
    (typeof value !== "object" || value === null)
  )
    return "<redacted>";
  if (typeof value === "string") return redactText(value);
  if (Array.isArray(value)) return value.map((v) => redactForOutput(v));
  if (value && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([kk, v]) => [kk, redactForOutput(v, kk)]));
  return value;
}

/** si's normalisation of one record (reference §3). */
export function normaliseEvent(raw: Record<string, unknown>, file: string): EventRecord {
  const source = sourceOf(raw.source, file);
  const status = typeof raw.status === "string" ? raw.status : "";
  const fields: Record<string, unknown> = {
    ...(raw.fields && typeof raw.fields === "object" ? (raw.fields as Record<string, unknown>) : {}),
  };
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
export async function readEventLog(
  fs: FileSystem,
  path: string,
  onLine: (raw: RawEvent) => void,
): Promise<LogReadReport> {
  const report: LogReadReport = {
    path,
    present: true,
    lines: 0,
    records: 0,
    invalidLines: [],
    tornTail: false,
  };
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

/**
 * Read a log from its end, newest line first, until `wanted` records are in hand or the start is
 * reached: `events list --limit 20` over a gigabyte log reads a few kilobytes, not every line.
 * Lines are checked as readEventLog checks them; line numbers count from the start when the whole
 * log was read, else `invalidLinesFromEnd` counts from its end (1 = the last line).
 */
export async function readEventLogTail(
  fs: FileSystem,
  path: string,
  wanted: number,
  onLine: (raw: RawEvent) => void,
): Promise<LogReadReport & { complete: boolean; invalidLinesFromEnd: number[] }> {
  const report = {
    path,
    present: true,
    lines: 0,
    records: 0,
    invalidLines: [] as number[],
    tornTail: false,
    complete: false,
    invalidLinesFromEnd: [] as number[],
  };
  let size: number;
  try {
    const st = await fs.lstat(path);
    size = st.size;
  } catch (err) {
    if (isNotFound(err)) return { ...report, present: false };
    throw err;
  }
  const WINDOW = 64 * 1024;
  const MAX_LINE = 4 * 1024 * 1024;
  const seen: { fromEnd: number; line: string }[] = [];
  const handle = (bytes: Buffer, torn: boolean): boolean => {
    report.lines++;
    const t = bytes.toString("utf8").trim();
    if (t === "") return false;
    if (!t.startsWith("{") || !t.endsWith("}")) {
      // si skips a torn last line silently; it is a write in flight, not damage.
      if (!torn && report.invalidLinesFromEnd.length < 20) report.invalidLinesFromEnd.push(report.lines);
      return false;
    }
    report.records++;
    seen.push({ fromEnd: report.lines, line: t });
    return report.records >= wanted;
  };
  let pos = size;
  let pending: Buffer = Buffer.alloc(0);
  let first = true;
  let done = false;
  while (!done && pos > 0) {
    const start = Math.max(0, pos - WINDOW);
    const chunk = Buffer.from(await fs.readRange(path, start, pos - start));
    pos = start;
    const buf = pending.length ? Buffer.concat([chunk, pending]) : chunk;
    let end = buf.length;
    if (first) {
      if (buf.length > 0 && buf[buf.length - 1] !== 10) {
        const nl = buf.lastIndexOf(10);
        if (nl < 0 && pos > 0 && buf.length <= MAX_LINE) {
          pending = buf; // the torn last line is longer than a window: read further back first
          continue;
        }
        report.tornTail = true;
        done = handle(buf.subarray(nl + 1), true);
        end = nl;
      } else end = buf.length - 1;
      first = false;
    }
    // buf[0, end) ends just before a newline (or end < 0: nothing complete yet).
    while (!done && end >= 0) {
      const nl = buf.lastIndexOf(10, end - 1);
      if (nl < 0 && pos > 0) break;
      done = handle(buf.subarray(nl + 1, end), false);
      end = nl;
    }
    pending = end > 0 ? buf.subarray(0, end) : Buffer.alloc(0);
    if (!done && pending.length > MAX_LINE) {
      // One line longer than any event: count it as damage and read no further.
      report.lines++;
      report.invalidLinesFromEnd.push(report.lines);
      done = true;
    }
  }
  report.complete = !done && pos === 0;
  const total = report.lines;
  for (const s of seen)
    onLine({
      timestamp: TIMESTAMP.exec(s.line)?.[1] ?? "",
      line: s.line,
      file: path,
      lineNumber: report.complete ? total - s.fromEnd + 1 : -s.fromEnd,
    });
  if (report.complete) {
    report.invalidLines = report.invalidLinesFromEnd.map((n) => total - n + 1).reverse();
    report.invalidLinesFromEnd = [];
  }
  return report;
}

/**
 * `si paas events list --limit N`: the newest N records of the three logs, newest first. Each log
 * is read from its end (logs are appended in time order), so the cost does not grow with the log.
 */
export async function listEvents(
  fs: FileSystem,
  contextDir: string,
  limit = 50,
): Promise<{
  records: EventRecord[];
  logs: (LogReadReport & { complete: boolean; invalidLinesFromEnd: number[] })[];
  paths: string[];
}> {
  const newest: RawEvent[] = [];
  const logs: (LogReadReport & { complete: boolean; invalidLinesFromEnd: number[] })[] = [];
  const paths = EVENT_LOGS.map((p) => join(contextDir, p));
  const byNewest = (a: RawEvent, b: RawEvent) =>
    a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : 0;
  for (const [i, path] of paths.entries()) {
    // A log under a symlinked events/ (or itself a link) is not read through: reported as not a plain file.
    const inside = await lstatInside(fs, contextDir, EVENT_LOGS[i]!);
    if (inside && (inside.link !== undefined || inside.stat.kind !== "file")) {
      logs.push({
        path,
        present: true,
        lines: 0,
        records: 0,
        invalidLines: [],
        tornTail: false,
        complete: false,
        invalidLinesFromEnd: [],
        notPlainFile:
          inside.link !== undefined ? `under ${inside.link}, a ${inside.kind}` : `a ${inside.stat.kind}`,
      });
      continue;
    }
    // A margin over the limit: a line that looks like an object yet does not parse is dropped below.
    logs.push(await readEventLogTail(fs, path, limit * 2, (raw) => newest.push(raw)));
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
      if (log && raw.lineNumber > 0 && log.invalidLines.length < 20) log.invalidLines.push(raw.lineNumber);
      else if (log && raw.lineNumber < 0 && log.invalidLinesFromEnd.length < 20)
        log.invalidLinesFromEnd.push(-raw.lineNumber);
      continue;
    }
    records.push(redactForOutput(normaliseEvent(parsed as Record<string, unknown>, raw.file)) as EventRecord);
  }
  return { records, logs, paths };
}
