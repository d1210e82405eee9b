import { buildReport, parseReportPeriod } from "@paas-backup/core/report";
import { UsageError } from "@paas-backup/core/errors";
import type { Runtime } from "../runtime.js";
import { table } from "../render/text.js";
import { printEnvelope } from "../envelope.js";
import { renderReportCsv, renderReportHtml } from "../render/report.js";
import { resolveTargets } from "../options/targets.js";
import { randomUUID } from "node:crypto";
import { basename, dirname, join } from "node:path";

const FORMATS = ["json", "html", "csv"] as const;

interface ReportFlags {
  context?: string[] | string;
  allContexts?: boolean;
  period?: string;
  from?: string;
  to?: string;
  format?: string;
  out?: string;
}

/** Steps: check the flags → build the report from the evidence → render it → print it, or write it atomically and summarise. */
export async function reportCommand(rt: Runtime, flags: ReportFlags): Promise<number> {
  const { named, format } = checkReportFlags(flags);
  const period = parseReportPeriod({
    ...(flags.period !== undefined ? { period: flags.period } : {}),
    ...(flags.from !== undefined ? { from: flags.from } : {}),
    ...(flags.to !== undefined ? { to: flags.to } : {}),
  });
  const report = await buildReport({
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    // an s3:// root: the evidence is in the bucket, and the report names the bucket as its root
    ...(rt.shared ? { sources: await (await import("../ops/shared.js")).sharedReportSources(rt) } : {}),
    contexts: flags.allContexts ? "all" : named,
    period,
    clock: rt.clock,
    stateRoot: rt.stateRoot,
    policy: rt.config.retention,
    offsiteTargets: await resolveTargets(rt, {}, false),
    secretAcknowledged: rt.config.secretAcknowledged,
  });
  if (rt.shared) report.backupRoot = rt.shared.url;
  const text =
    format === "html"
      ? renderReportHtml(report)
      : format === "csv"
        ? renderReportCsv(report)
        : `${JSON.stringify(report, null, 2)}\n`;
  if (!flags.out) {
    if (rt.json && format === "json")
      printEnvelope(rt, { ok: true, context: "", mode: "live", data: [report] });
    else rt.write(text);
    return 0;
  }
  await writeAtomically(rt, flags.out, text);
  writeSummary(rt, report, flags.out, format);
  return 0;
}

/** Exactly one of --context and --all-contexts, and a known --format. */
function checkReportFlags(flags: ReportFlags): { named: string[]; format: string } {
  const named =
    flags.context === undefined ? [] : Array.isArray(flags.context) ? flags.context : [flags.context];
  if (named.length > 0 === (flags.allContexts === true))
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "report needs --context or --all-contexts (not both)",
      {
        remediation:
          "Name contexts with --context (repeatable), or report every context with --all-contexts.",
        stage: "arguments",
      },
    );
  const format = (flags.format ?? "json").toLowerCase();
  if (!(FORMATS as readonly string[]).includes(format))
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      `--format ${JSON.stringify(flags.format)} is not json, html or csv`,
      {
        remediation: "Give --format json, html or csv.",
        stage: "arguments",
      },
    );
  return { named, format };
}

/** Write beside the target, flush, rename: a reader (or a crash) never sees half a report. */
async function writeAtomically(rt: Runtime, out: string, text: string): Promise<void> {
  const tmp = join(dirname(out), `.${basename(out)}.${randomUUID().slice(0, 8)}.tmp`);
  try {
    await rt.fs.writeFile(tmp, text, { mode: 0o600 });
    await rt.fs.sync(tmp);
    await rt.fs.rename(tmp, out);
  } finally {
    await rt.fs.rm(tmp, { force: true });
  }
}

/** With --out: what was written, and each context's coverage, restores, drills and exceptions in a line. */
function writeSummary(
  rt: Runtime,
  report: Awaited<ReturnType<typeof buildReport>>,
  out: string,
  format: string,
): void {
  const summary = report.contexts.map((c) => ({
    context: c.context,
    evidenceFrom: c.evidence.from,
    shareOfHours: c.coverage.shareOfHours,
    shareOfDays: c.coverage.shareOfDays,
    largestGapHours: c.coverage.largestGap?.hours ?? null,
    restores: c.restores.length,
    quartersWithPassedDrill: c.drills.filter((q) => q.passed).length,
    quarters: c.drills.length,
    exceptions: c.exceptions.length,
    openExceptions: c.exceptions.filter((e) => e.resolvedAt === null).length,
  }));
  if (rt.json) {
    printEnvelope(rt, {
      ok: true,
      context: "",
      mode: "live",
      data: [{ out, format, schema: report.schema, period: report.period, contexts: summary }],
    });
    return;
  }
  rt.write(
    `wrote the ${format} report for ${report.period.label} to ${out}\n` +
      table([
        ["CONTEXT", "EVIDENCE FROM", "HOURS", "DAYS", "GAP", "RESTORES", "DRILLS", "EXCEPTIONS"],
        ...summary.map((s) => [
          s.context,
          s.evidenceFrom?.slice(0, 10) ?? "none",
          `${(s.shareOfHours * 100).toFixed(1)} %`,
          `${(s.shareOfDays * 100).toFixed(1)} %`,
          s.largestGapHours === null ? "-" : `${s.largestGapHours} h`,
          String(s.restores),
          `${s.quartersWithPassedDrill}/${s.quarters}`,
          `${s.exceptions} (${s.openExceptions} open)`,
        ]),
      ]),
  );
}
