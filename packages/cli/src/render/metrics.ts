import type { Registry, Gauge } from "prom-client";
import { randomUUID } from "node:crypto";
import { dirname, basename, join } from "node:path";
import type { ContextStatus, DrillStatus } from "@paas-backup/core/governance";
import type { FleetStatus } from "@paas-backup/core/repository";
import type { Runtime } from "../runtime.js";

/**
 * Prometheus text format for node_exporter's textfile collector. Rendered by prom-client's
 * Registry (the owner's preferred renderer: it escapes label values and writes HELP/TYPE lines
 * exactly as the exposition format wants, which `promtool check metrics` is strict about).
 * Labels carry context names, kinds and target URLs only; target URLs never hold credentials
 * (those come from the AWS chain), and any user:password@ part is dropped anyway.
 */
export function safeTargetLabel(url: string): string {
  return url.replace(/^([a-z0-9]+:\/\/)[^/@]*@/i, "$1");
}

const seconds = (iso: string | null | undefined) => (iso ? Math.round(Date.parse(iso) / 1000) : 0);

// prom-client loads only when a metrics file is asked for: the other commands start without it.
let promClient: typeof import("prom-client") | null = null;
async function newRegistry(): Promise<Registry> {
  promClient ??= await import("prom-client");
  return new promClient.Registry();
}

function gauge(registry: Registry, name: string, help: string, labelNames: string[] = []): Gauge<string> {
  return new promClient!.Gauge({ name, help, labelNames, registers: [registry] });
}

function drillGauges(registry: Registry, drills: DrillStatus[]): void {
  const overdue = gauge(
    registry,
    "paas_backup_drill_overdue",
    "1 when the context's quarterly restore drill is overdue (or never passed)",
    ["context"],
  );
  const mandatory = gauge(
    registry,
    "paas_backup_drill_mandatory",
    "1 when policy makes the context's quarterly drill mandatory (status alerts only on those)",
    ["context"],
  );
  const lastPassed = gauge(
    registry,
    "paas_backup_drill_last_success_timestamp_seconds",
    "Unix time of the last passing restore drill; 0 when none",
    ["context"],
  );
  const due = gauge(
    registry,
    "paas_backup_drill_next_due_timestamp_seconds",
    "Unix time by which the next drill is due",
    ["context"],
  );
  for (const d of drills) {
    overdue.set({ context: d.context }, d.overdue ? 1 : 0);
    mandatory.set({ context: d.context }, d.mandatory ? 1 : 0);
    lastPassed.set({ context: d.context }, seconds(d.lastPassed));
    due.set({ context: d.context }, seconds(d.nextDue));
  }
}

/**
 * The status gauges: name, help and labels, in the order they are registered, which is the order
 * the file lists them (the drill gauges follow).
 */
const STATUS_GAUGES = {
  lastSuccess: [
    "paas_backup_last_success_timestamp_seconds",
    "Unix time of the context's newest snapshot (full or incremental); 0 when none",
    ["context"],
  ],
  bytes: [
    "paas_backup_last_snapshot_bytes",
    "Size in bytes of the context's newest snapshot of each kind",
    ["context", "kind"],
  ],
  duration: [
    "paas_backup_snapshot_duration_seconds",
    "How long tick took to make the context's last snapshot of each kind",
    ["context", "kind"],
  ],
  ok: [
    "paas_backup_context_ok",
    "1 when the context needs no attention (see paas-backup status); 0 otherwise",
    ["context"],
  ],
  attention: [
    "paas_backup_context_attention_reasons",
    "How many reasons the context needs attention",
    ["context"],
  ],
  age: [
    "paas_backup_newest_full_age_seconds",
    "Age of the context's newest full snapshot; absent when there is none",
    ["context"],
  ],
  chain: [
    "paas_backup_chain_ok",
    "1 when the newest snapshot's chain is complete in the backup root",
    ["context"],
  ],
  blocked: ["paas_backup_blocked", "1 while a post-restore block marker is in the context", ["context"]],
  tickOk: ["paas_backup_last_tick_ok", "1 when the context's last tick succeeded", ["context"]],
  tickAt: ["paas_backup_last_tick_timestamp_seconds", "Unix time of the context's last tick", ["context"]],
  copies: [
    "paas_backup_offsite_copies",
    "Offsite copies per target: confirmed, immutable (lock still holding) and problem (missing or damaged, not yet put back)",
    ["context", "target", "state"],
  ],
  missing: [
    "paas_backup_offsite_newest_full_missing",
    "1 when the newest full has no confirmed copy at the target",
    ["context", "target"],
  ],
  generated: ["paas_backup_metrics_generated_timestamp_seconds", "Unix time this file was written", []],
} as const satisfies Record<string, readonly [string, string, readonly string[]]>;

type StatusGauges = Record<keyof typeof STATUS_GAUGES, Gauge<string>>;

export async function renderStatusMetrics(statuses: ContextStatus[], now: Date): Promise<string> {
  const registry = await newRegistry();
  const g = {} as StatusGauges;
  for (const [key, [name, help, labels]] of Object.entries(STATUS_GAUGES))
    g[key as keyof StatusGauges] = gauge(registry, name, help, [...labels]);
  drillGauges(
    registry,
    statuses.map((s) => s.drill),
  );
  for (const s of statuses) {
    setSnapshotGauges(g, s);
    setHealthGauges(g, s);
    setOffsiteGauges(g, s);
  }
  g.generated.set(Math.round(now.getTime() / 1000));
  return registry.metrics();
}

/** The newest snapshots: when, how large, how long tick took for each kind, and the newest full's age. */
function setSnapshotGauges(g: StatusGauges, s: ContextStatus): void {
  const context = s.context;
  const newest = [s.newestFull?.time, s.newestIncremental?.time]
    .filter((t): t is string => !!t)
    .sort()
    .pop();
  g.lastSuccess.set({ context }, seconds(newest));
  if (s.newestFull) {
    g.bytes.set({ context, kind: "full" }, s.newestFull.bytes);
    g.age.set({ context }, s.newestFull.ageSeconds);
  }
  if (s.newestIncremental) g.bytes.set({ context, kind: "incremental" }, s.newestIncremental.bytes);
  for (const kind of ["full", "incremental"] as const) {
    const t = s.lastTick?.lastSnapshots[kind];
    if (t) g.duration.set({ context, kind }, t.durationSeconds);
  }
}

/** Whether the context needs attention, its chain, its block marker and its last tick. */
function setHealthGauges(g: StatusGauges, s: ContextStatus): void {
  const context = s.context;
  g.ok.set({ context }, s.ok ? 1 : 0);
  g.attention.set({ context }, s.attention.length);
  g.chain.set({ context }, s.chain.ok ? 1 : 0);
  g.blocked.set({ context }, s.blocked ? 1 : 0);
  if (s.lastTick) {
    g.tickOk.set({ context }, s.lastTick.ok ? 1 : 0);
    g.tickAt.set({ context }, seconds(s.lastTick.at));
  }
}

/** Per offsite target (its URL without credentials): copies by state, and whether the newest full is there. */
function setOffsiteGauges(g: StatusGauges, s: ContextStatus): void {
  const context = s.context;
  for (const o of s.offsite) {
    const target = safeTargetLabel(o.target);
    g.copies.set({ context, target, state: "confirmed" }, o.confirmed);
    g.copies.set({ context, target, state: "immutable" }, o.immutable);
    g.copies.set({ context, target, state: "problem" }, o.problems.length);
    g.missing.set({ context, target }, o.newestFullMissing ? 1 : 0);
  }
}

/**
 * The fleet as one shared bucket sees it (an s3:// backup root): every host's status object, so a
 * single scrape of any host (or of a monitoring box with read access) covers the whole fleet.
 */
export async function renderFleetMetrics(fleet: FleetStatus, now: Date): Promise<string> {
  const registry = await newRegistry();
  const reported = gauge(
    registry,
    "paas_backup_fleet_host_last_report_timestamp_seconds",
    "Unix time (server clock) the bucket last received the host's status object after a tick",
    ["host"],
  );
  const stale = gauge(
    registry,
    "paas_backup_fleet_host_stale",
    "1 when the host's status object is older than the stale limit: it stopped ticking or cannot reach the bucket",
    ["host"],
  );
  const contextOk = gauge(
    registry,
    "paas_backup_fleet_context_ok",
    "1 when the host's last tick of the context succeeded",
    ["host", "context"],
  );
  const lastSnapshot = gauge(
    registry,
    "paas_backup_fleet_context_last_snapshot_timestamp_seconds",
    "Unix time of the newest snapshot the host committed for the context; 0 when none",
    ["host", "context"],
  );
  const alerts = gauge(
    registry,
    "paas_backup_fleet_alerts",
    "How many alerts the fleet view raises (stale hosts, failed ticks)",
  );
  const generated = gauge(
    registry,
    "paas_backup_metrics_generated_timestamp_seconds",
    "Unix time this file was written",
  );
  const { parseSnapshotId } = await import("@paas-backup/core/repository");
  for (const h of fleet.hosts) {
    reported.set({ host: h.host }, seconds(h.receivedAt));
    stale.set({ host: h.host }, h.stale ? 1 : 0);
    for (const c of h.contexts) {
      contextOk.set({ host: h.host, context: c.context }, c.ok ? 1 : 0);
      const at = c.lastSnapshot ? parseSnapshotId(c.lastSnapshot.id)?.time : undefined;
      lastSnapshot.set({ host: h.host, context: c.context }, at ? Math.round(at.getTime() / 1000) : 0);
    }
  }
  alerts.set(fleet.alerts.length);
  generated.set(Math.round(now.getTime() / 1000));
  return registry.metrics();
}

export async function renderDrillMetrics(drills: DrillStatus[], now: Date): Promise<string> {
  const registry = await newRegistry();
  drillGauges(registry, drills);
  gauge(registry, "paas_backup_metrics_generated_timestamp_seconds", "Unix time this file was written").set(
    Math.round(now.getTime() / 1000),
  );
  return registry.metrics();
}

/**
 * Write the file so the collector never reads half of it: a temporary name in the same folder
 * (node_exporter ignores names not ending in .prom), then rename. World-readable: the collector
 * usually runs as another user, and the file holds no secret.
 */
export async function writeMetricsFile(rt: Runtime, path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomUUID().slice(0, 8)}.tmp`);
  try {
    await rt.fs.writeFile(tmp, text, { mode: 0o644 });
    await rt.fs.sync(tmp);
    await rt.fs.rename(tmp, path);
  } finally {
    await rt.fs.rm(tmp, { force: true });
  }
}
