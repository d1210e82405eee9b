import {
  backupRootStorage,
  checkSnapshotChecksum,
  compareSnapshotIds,
  openRepository,
} from "@paas-backup/core/repository";
import type { Runtime } from "../runtime.js";
import { humanBytes, table } from "../render/text.js";
import { printEnvelope } from "../envelope.js";
import { requireContext, requireKnownContext } from "../options/context.js";

export async function listCommand(rt: Runtime, flags: { context?: string }): Promise<number> {
  const context = requireContext(flags.context);
  await requireKnownContext(rt, context);
  // An s3:// root: the snapshots committed there (ops/shared.ts loads the rest of core only then).
  const { snapshots, damaged } = await openRepository(
    rt.shared
      ? await (await import("../host/shared-root.js")).committedView(rt.shared, context)
      : backupRootStorage(rt.fs, rt.backupRoot),
  ).scan(context);
  const root = rt.shared?.url ?? rt.backupRoot;
  const data: ListedSnapshot[] = [];
  const ids = new Set(snapshots.map((s) => s.id));
  const warnings: string[] = [];
  for (const s of snapshots) {
    const row = await listedSnapshot(s, ids);
    if (row.parentMissing)
      warnings.push(
        `incremental ${s.id} needs ${s.parent?.id ?? "a parent it does not name"}, which is not in ${root}: it cannot be restored from here (restore --from-offsite <target> fetches the full if a target has it)`,
      );
    data.push(row);
  }
  for (const d of damaged) data.push(await listedDamaged(d));
  data.sort((a, b) => compareSnapshotIds(a.id, b.id));
  if (rt.json) {
    printEnvelope(rt, {
      ok: true,
      command: "list",
      context,
      mode: "live",
      count: data.length,
      warnings,
      data,
    });
    return 0;
  }
  if (data.length === 0) {
    rt.write(`no snapshots of ${context} in ${root}\n`);
    return 0;
  }
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  writeListTable(rt, data);
  return 0;
}

/** One row of `list` (--json's data[]): the same fields for a readable snapshot and a damaged one. */
interface ListedSnapshot {
  id: string;
  kind: string | null;
  /** null, or why this snapshot cannot be used (its manifest is damaged); the others are unaffected */
  error: { code: string; message: string; remediation: string } | null;
  time: string;
  parent: string | null;
  parentMissing: boolean;
  bytes: number;
  files: number | null;
  checksum: string;
  sha256: string;
  encrypted: boolean;
  plaintext: boolean;
  madeBy: string;
  artifact: string;
  warnings: string[];
  tags: string[];
  note: string | null;
}

type Scanned = Awaited<ReturnType<ReturnType<typeof openRepository>["scan"]>>;

/** A readable snapshot, its checksum read; an incremental whose parent is not here is marked. */
async function listedSnapshot(s: Scanned["snapshots"][number], ids: Set<string>): Promise<ListedSnapshot> {
  const parentMissing = s.kind === "incremental" && (!s.parent || !ids.has(s.parent.id));
  const check = await checkSnapshotChecksum(s);
  return {
    id: s.id,
    kind: s.kind,
    error: null,
    time: s.time.toISOString(),
    parent: s.parent?.id ?? null,
    parentMissing,
    bytes: s.bytes,
    files: s.manifest?.totals.files ?? null,
    checksum: check.state,
    sha256: check.actual,
    encrypted: s.encrypted,
    plaintext: !s.encrypted,
    madeBy: s.manifest ? "paas-backup" : "reference-flow",
    artifact: s.artifactPath,
    // e.g. a state file that was not valid JSON when the snapshot was taken (kept as is)
    warnings: (s.manifest?.warnings ?? []).map((w) => `${w.path}: ${w.reason}`),
    tags: s.manifest?.tags ?? [],
    note: s.manifest?.note ?? null,
  };
}

/** A snapshot whose manifest is damaged: listed with its error and checksum, nothing taken from the manifest. */
async function listedDamaged(d: Scanned["damaged"][number]): Promise<ListedSnapshot> {
  const check = await checkSnapshotChecksum(d);
  return {
    id: d.id,
    kind: null,
    error: d.error,
    time: d.time.toISOString(),
    parent: null,
    parentMissing: false,
    bytes: d.bytes,
    files: null,
    checksum: check.state,
    sha256: check.actual,
    encrypted: d.encrypted,
    plaintext: !d.encrypted,
    madeBy: "unknown",
    artifact: d.artifactPath,
    warnings: [],
    tags: [],
    note: null,
  };
}

/** The table, then the long texts below it, once each, not on every row. */
function writeListTable(rt: Runtime, data: ListedSnapshot[]): void {
  rt.write(
    table(
      [
        // No TIME column: an id is its snapshot's UTC time (--json has `time`), and the ids are never cut.
        ["ID", "KIND", "SIZE", "CHECKSUM", "ENCRYPTION", "PARENT", "TAGS"],
        ...data.map((d) => [
          d.id,
          d.error ? "DAMAGED" : d.kind!,
          humanBytes(d.bytes),
          d.checksum,
          d.encrypted ? "age" : "PLAINTEXT",
          d.error
            ? "(manifest damaged)"
            : ((d.parentMissing ? `${d.parent ?? "?"} (MISSING)` : d.parent) ??
              (d.madeBy === "reference-flow" ? "(reference flow)" : "-")),
          d.tags.join(",") || "-",
          d.warnings.length ? `${d.warnings.length} (below)` : "-",
        ]),
      ].map((r, i) => (i === 0 ? [...r.slice(0, 7), "WARNINGS"] : r)),
    ),
  );
  for (const d of data) if (d.note) rt.write(`note: ${d.id}: ${d.note}\n`);
  for (const d of data) for (const w of d.warnings) rt.write(`warning: ${d.id}: ${w}\n`);
  for (const d of data) if (d.error) rt.write(`${d.id}: ${d.error.message}\n  ${d.error.remediation}\n`);
}
