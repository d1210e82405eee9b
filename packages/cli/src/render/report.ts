import type { ContextReport, Report } from "@paas-backup/core/report";

/**
 * The governance report as one static HTML file (no external asset: styles inline, no script, no
 * font or image fetched) that reads on screen and on paper, and as CSV for a spreadsheet.
 */

function esc(text: unknown): string {
  return String(text ?? "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

function pct(share: number): string {
  return `${(share * 100).toFixed(1)} %`;
}

function summaryRows(c: ContextReport): [string, string][] {
  const slots = c.retention.slots;
  const drillsPassed = c.drills.filter((q) => q.passed).length;
  const offsite = c.offsite.map(
    (o) => `${o.name}: ${o.copies.filter((x) => x.confirmed).length}/${o.copies.length}`,
  );
  return [
    ["Evidence from", c.evidence.from ?? "none"],
    [
      "Snapshots now",
      `${c.snapshots.count} (${c.snapshots.fulls} full, ${c.snapshots.incrementals} incremental)`,
    ],
    [
      "Hours with a snapshot",
      `${c.coverage.hoursWithSnapshot} of ${c.coverage.hours} (${pct(c.coverage.shareOfHours)})`,
    ],
    ["Days with a full", `${c.coverage.daysWithFull} of ${c.coverage.days} (${pct(c.coverage.shareOfDays)})`],
    [
      "Largest gap",
      c.coverage.largestGap
        ? `${c.coverage.largestGap.hours} h (${c.coverage.largestGap.from} to ${c.coverage.largestGap.to})`
        : "none",
    ],
    [
      "Retention slots",
      `${slots.filter((s) => s.state === "verified").length} verified, ${slots.filter((s) => s.state === "damaged").length} damaged, ${slots.filter((s) => s.state === "missing").length} missing of ${slots.length}`,
    ],
    ["Deletions", String(c.retention.deletions.length)],
    ["Offsite copies confirmed", offsite.length ? offsite.join("; ") : "no target configured"],
    ["Restores and records", String(c.restores.length)],
    ["Quarters with a passed drill", `${drillsPassed} of ${c.drills.length}`],
    ["Exceptions", String(c.exceptions.length)],
    ["Recipients in force", c.keys.recipients.length ? c.keys.recipients.join(", ") : "none (plaintext)"],
  ];
}

function calendar(c: ContextReport): string {
  if (c.coverage.calendar.length === 0) return "<p>No snapshot evidence in this period.</p>";
  const head = Array.from({ length: 24 }, (_, h) => `<th>${String(h).padStart(2, "0")}</th>`).join("");
  const rows = c.coverage.calendar
    .map((d) => {
      const cells = d.hours
        .map(
          (h) =>
            `<td class="${h === null ? "na" : h ? "on" : "off"}">${h === null ? "" : h ? "&#9632;" : "&#183;"}</td>`,
        )
        .join("");
      return `<tr><th>${esc(d.date)}</th>${cells}<td class="${d.full ? "full" : "nofull"}">${d.full ? "full" : "no full"}</td></tr>`;
    })
    .join("\n");
  return `<table class="cal"><thead><tr><th>day (UTC)</th>${head}<th>daily full</th></tr></thead><tbody>\n${rows}\n</tbody></table>`;
}

function timeline(c: ContextReport): string {
  const events = [
    ...c.restores.map((r) => ({
      at: r.startedAt,
      what: `${r.kind} ${r.outcome}`,
      detail: `ticket ${r.ticket}, snapshot ${r.snapshot ?? "-"}, operator ${r.operator}, ended ${r.endedAt || "-"}, doctor ${r.doctorOk === null ? "-" : r.doctorOk ? "ok" : "failed"}, audit event ${r.auditEvent}`,
    })),
    ...c.drills.flatMap((q) =>
      q.drills.map((d) => ({
        at: d.at,
        what: `drill ${d.ok ? "passed" : "failed"}`,
        detail: `snapshot ${d.snapshot ?? "-"}, restore ${d.restoreSeconds ?? "-"} s`,
      })),
    ),
  ].sort((a, b) => (a.at < b.at ? -1 : 1));
  if (events.length === 0) return "<p>No restore or drill in this period.</p>";
  return `<table><thead><tr><th>when (UTC)</th><th>what</th><th>detail</th></tr></thead><tbody>${events
    .map((e) => `<tr><td>${esc(e.at)}</td><td>${esc(e.what)}</td><td>${esc(e.detail)}</td></tr>`)
    .join("")}</tbody></table>`;
}

function listTable(headers: string[], rows: unknown[][], empty: string): string {
  if (rows.length === 0) return `<p>${esc(empty)}</p>`;
  return `<table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((v) => `<td>${esc(v)}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

export function renderReportHtml(report: Report): string {
  const sections = report.contexts.map(contextSection).join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>paas-backup report ${esc(report.period.label)}</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:24px;color:#111}
h1{font-size:20px}h2{font-size:17px;border-bottom:2px solid #333;padding-bottom:2px;margin-top:32px}h3{font-size:14px;margin:18px 0 6px}
table{border-collapse:collapse;margin:4px 0 8px}th,td{border:1px solid #bbb;padding:2px 6px;text-align:left;vertical-align:top}
table.kv th{background:#f2f2f2;width:16em}
table.cal td,table.cal thead th{padding:0;width:14px;height:14px;text-align:center;font-size:9px}
table.cal tbody th{font-weight:normal;white-space:nowrap;padding:0 6px}
td.on{background:#2e7d32;color:#fff}td.off{background:#ffcdd2;color:#b71c1c}td.na{background:#eee}
td.full{background:#c8e6c9;font-size:10px;padding:0 4px;width:auto}td.nofull{background:#ffcdd2;font-size:10px;padding:0 4px;width:auto}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
@media print{body{margin:8mm}section{break-before:page}h2{break-after:avoid}table{break-inside:auto}tr{break-inside:avoid}}
</style></head><body>
<h1>paas-backup governance report: ${esc(report.period.label)}</h1>
<p>Period ${esc(report.period.from)} to ${esc(report.period.to)} (UTC). Generated ${esc(report.generatedAt)} from the backup root ${esc(report.backupRoot)}${report.stateRoot ? ` and the audit events under ${esc(report.stateRoot)}` : ""}. Schema ${esc(report.schema)}.</p>
${sections}
</body></html>
`;
}

/** One context's page: its summary, coverage calendar and timeline, then the evidence tables. */
function contextSection(c: ContextReport): string {
  return `<section>
<h2>Context ${esc(c.context)}</h2>
<table class="kv"><tbody>${summaryRows(c)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)
    .join("")}</tbody></table>
<h3>Coverage (hours × days)</h3>
${calendar(c)}
<h3>Restores and drills (policy §7.3, §7.4)</h3>
${timeline(c)}
<h3>Drills per quarter</h3>
${listTable(
  ["quarter", "passed", "drills"],
  c.drills.map((q) => [q.quarter, q.passed ? "yes" : "NO", q.drills.length]),
  "No quarter in this period.",
)}
${retentionTables(c)}
<h3>Offsite copies of daily fulls</h3>
${offsiteTables(c)}
${exceptionAndKeyTables(c)}
</section>`;
}

/** The retention slots and every deletion of the period (an interrupted one says so). */
function retentionTables(c: ContextReport): string {
  return `<h3>Retention slots</h3>
${listTable(
  ["rule", "slot", "snapshot", "state"],
  c.retention.slots.map((s) => [s.rule, s.slot, s.snapshot ?? "-", s.state]),
  "No slot.",
)}
<h3>Deletions</h3>
${listTable(
  ["when", "snapshot", "kind", "reason", "where"],
  c.retention.deletions.map((d) => [
    d.at,
    d.id,
    d.kind,
    d.reason + (d.stillPresent ? " (interrupted: still present)" : ""),
    d.where,
  ]),
  "No deletion recorded in this period.",
)}`;
}

/** Per offsite target: each daily full's copy, its lock and whether it covers the horizon. */
function offsiteTables(c: ContextReport): string {
  if (c.offsite.length === 0) return "<p>No offsite target configured.</p>";
  return c.offsite
    .map(
      (o) =>
        `<h4>${esc(o.name)} (${esc(o.target)})</h4>` +
        listTable(
          ["full", "confirmed", "lock", "retain until", "horizon", "covers", "last read-verify"],
          o.copies.map((x) => [
            x.id,
            x.confirmed ? "yes" : x.problem ? `NO: ${x.problem}` : "NO",
            x.lockMode ?? "-",
            x.retainUntil ?? "-",
            x.horizon,
            x.coversHorizon ? "yes" : "no",
            x.lastReadVerify ?? "never",
          ]),
          "No daily full in this period.",
        ),
    )
    .join("");
}

/** The exceptions of the period (acknowledged or not, resolved or open) and the changes of recipients. */
function exceptionAndKeyTables(c: ContextReport): string {
  return `<h3>Exceptions</h3>
${listTable(
  ["when", "kind", "detail", "resolved", "hours to resolve"],
  c.exceptions.map((e) => [
    e.at,
    e.kind + (e.acknowledged === undefined ? "" : e.acknowledged ? " (acknowledged)" : " (not acknowledged)"),
    e.detail,
    e.resolvedAt ?? "open",
    e.hoursToResolve ?? "-",
  ]),
  "No exception in this period.",
)}
<h3>Keys</h3>
${listTable(
  ["when", "snapshot", "added", "removed"],
  c.keys.changes.map((k) => [k.at, k.snapshot, k.added.join(", "), k.removed.join(", ")]),
  "No change of recipients in this period.",
)}`;
}

function csvCell(v: unknown): string {
  const s = String(v ?? "");
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Long format: one row per finding, so every section fits one sheet. */
export function renderReportCsv(report: Report): string {
  const rows: unknown[][] = [["context", "section", "item", "at", "value", "detail"]];
  for (const c of report.contexts) {
    const cov = c.coverage;
    rows.push([
      c.context,
      "coverage",
      "hours-with-snapshot",
      report.period.label,
      cov.shareOfHours,
      `${cov.hoursWithSnapshot}/${cov.hours}`,
    ]);
    rows.push([
      c.context,
      "coverage",
      "days-with-full",
      report.period.label,
      cov.shareOfDays,
      `${cov.daysWithFull}/${cov.days}`,
    ]);
    rows.push([
      c.context,
      "coverage",
      "largest-gap-hours",
      cov.largestGap?.from ?? "",
      cov.largestGap?.hours ?? "",
      cov.largestGap ? `to ${cov.largestGap.to}` : "",
    ]);
    for (const s of c.retention.slots)
      rows.push([c.context, "retention-slot", `${s.rule} ${s.slot}`, "", s.state, s.snapshot ?? ""]);
    for (const d of c.retention.deletions)
      rows.push([
        c.context,
        "deletion",
        d.id,
        d.at,
        d.reason,
        d.where + (d.stillPresent ? " (still present)" : ""),
      ]);
    for (const o of c.offsite)
      for (const x of o.copies)
        rows.push([
          c.context,
          "offsite",
          `${o.name} ${x.id}`,
          x.confirmedAt ?? "",
          x.confirmed ? "confirmed" : "missing",
          `lock ${x.lockMode ?? "-"} until ${x.retainUntil ?? "-"}; horizon ${x.horizon}; read-verified ${x.lastReadVerify ?? "never"}`,
        ]);
    for (const r of c.restores)
      rows.push([
        c.context,
        "restore",
        r.ticket,
        r.startedAt,
        r.outcome,
        `${r.kind} ${r.snapshot ?? "-"} sha256 ${r.sha256 ?? "-"} by ${r.operator}, ended ${r.endedAt}, doctor ${r.doctorOk}, audit event ${r.auditEvent}`,
      ]);
    for (const q of c.drills)
      rows.push([
        c.context,
        "drill-quarter",
        q.quarter,
        "",
        q.passed ? "passed" : "not passed",
        `${q.drills.length} drill(s)`,
      ]);
    for (const e of c.exceptions)
      rows.push([c.context, "exception", e.kind, e.at, e.resolvedAt ? "resolved" : "open", e.detail]);
    rows.push([c.context, "keys", "recipients", "", c.keys.recipients.length, c.keys.recipients.join(" ")]);
  }
  return rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
}
