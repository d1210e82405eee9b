import type { FileSystem } from "../fs/types.js";
import { verifyRecordChain, type RecordLink } from "../records/chain.js";
import { readOffsiteRecordsHead } from "../records/offsite-head.js";
import { listRotations, type RotationRecord } from "../keys/rotate.js";
import { readRepositoryIdentity } from "../repository/identity.js";
import { rootView } from "../offsite/roots.js";
import { readTickRecord } from "./status.js";
import { PaasBackupError, UsageError, isNotFound } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import { backupRootStorage, listSnapshots, type SnapshotRef } from "../repository/repository.js";
import { readSigningRecord, signatureKeys } from "../signing/verify.js";
import { checkSnapshotChecksum } from "../repository/checksum.js";
import type { ObjectStorage } from "../repository/storage.js";
import { parseSnapshotId } from "../repository/ids.js";
import { readHistoryLines, type PruneHistoryLine, type TickHistoryLine } from "../repository/history.js";
import { DEFAULT_RETENTION, retentionHorizonMs, isoWeek, type RetentionPolicy } from "../retention/plan.js";
import { recordedCopies } from "../offsite/record.js";
import type { OffsiteTarget } from "../offsite/types.js";
import { listRecordFiles, type IncidentRecord } from "../records/incident.js";
import { contextDir, join } from "../util/paths.js";
import { listContexts } from "../context/contexts.js";

/**
 * The governance report (issue 24 §1): what auditors ask a backup tool for (SOC 2, ISO 27001
 * A.8.13), per context and over a period, from the records the backup root already holds. Every
 * figure is derived from a record; where no record reaches back, the report says so
 * (`evidence`) rather than counting the time as covered or as missed.
 */
export const REPORT_SCHEMA = "paas-backup/report@1";

export interface ReportPeriod {
  /** what the operator asked for: "2026-Q4", "2026-11", "2026", or "FROM..TO" */
  label: string;
  /** inclusive start and exclusive end, ISO 8601 UTC */
  from: string;
  to: string;
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

function badPeriod(text: string): UsageError {
  return new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", `period ${JSON.stringify(text)} is not understood`, {
    remediation:
      "Give --period as a quarter (2026-Q4), a month (2026-11) or a year (2026), or --from and --to as dates (2026-10-01).",
    stage: "arguments",
  });
}

function parseDay(text: string, endOfDay: boolean): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text.trim());
  if (m) {
    const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
    if (d.getUTCDate() !== Number(m[3])) throw badPeriod(text);
    return endOfDay ? new Date(d.getTime() + DAY) : d;
  }
  const t = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text.trim()) || !Number.isFinite(t)) throw badPeriod(text);
  return new Date(t);
}

/** `--period 2026-Q4 | 2026-11 | 2026`, or `--from`/`--to` (days are inclusive). */
export function parseReportPeriod(input: { period?: string; from?: string; to?: string }): ReportPeriod {
  if (input.period !== undefined) {
    if (input.from !== undefined || input.to !== undefined)
      throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "--period and --from/--to are exclusive", {
        remediation: "Give either --period or --from and --to.",
        stage: "arguments",
      });
    const p = input.period.trim();
    let m: RegExpExecArray | null;
    if ((m = /^(\d{4})-Q([1-4])$/i.exec(p))) {
      const y = Number(m[1]);
      const q = Number(m[2]);
      return {
        label: `${y}-Q${q}`,
        from: new Date(Date.UTC(y, (q - 1) * 3, 1)).toISOString(),
        to: new Date(Date.UTC(y, q * 3, 1)).toISOString(),
      };
    }
    if ((m = /^(\d{4})-(\d{2})$/.exec(p)) && Number(m[2]) >= 1 && Number(m[2]) <= 12) {
      const y = Number(m[1]);
      const mo = Number(m[2]);
      return {
        label: p,
        from: new Date(Date.UTC(y, mo - 1, 1)).toISOString(),
        to: new Date(Date.UTC(y, mo, 1)).toISOString(),
      };
    }
    if ((m = /^(\d{4})$/.exec(p)))
      return {
        label: p,
        from: new Date(Date.UTC(Number(m[1]), 0, 1)).toISOString(),
        to: new Date(Date.UTC(Number(m[1]) + 1, 0, 1)).toISOString(),
      };
    throw badPeriod(p);
  }
  if (input.from === undefined || input.to === undefined)
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "a report needs a period", {
      remediation: "Give --period (2026-Q4, 2026-11, 2026) or both --from and --to (2026-10-01).",
      stage: "arguments",
    });
  const from = parseDay(input.from, false);
  const to = parseDay(input.to, true);
  if (to <= from) throw badPeriod(`${input.from}..${input.to}`);
  return { label: `${input.from}..${input.to}`, from: from.toISOString(), to: to.toISOString() };
}

export interface CoverageDay {
  date: string;
  /** 24 flags, hour 00 first: a snapshot was taken in that hour (null: outside the evidence) */
  hours: (boolean | null)[];
  full: boolean;
}

export interface ReportCoverage {
  /** the part of the period the records reach (null when none does) */
  window: { from: string; to: string } | null;
  hours: number;
  hoursWithSnapshot: number;
  shareOfHours: number;
  days: number;
  daysWithFull: number;
  shareOfDays: number;
  largestGap: { hours: number; from: string; to: string } | null;
  calendar: CoverageDay[];
}

export interface RetentionSlot {
  rule: "daily" | "weekly" | "monthly";
  slot: string;
  /** the newest full in the slot, or null */
  snapshot: string | null;
  state: "verified" | "damaged" | "missing" | "before-evidence";
}

export interface ReportDeletion {
  at: string;
  id: string;
  kind: string;
  reason: string;
  where: string;
  /** a deletion recorded but interrupted leaves the snapshot in place */
  stillPresent: boolean;
}

export interface ReportOffsiteCopy {
  id: string;
  confirmed: boolean;
  confirmedAt: string | null;
  lockMode: string | null;
  retainUntil: string | null;
  /** when the policy's retention lets the full go: its date plus the longest rule */
  horizon: string;
  /** retain-until reaches the horizon */
  coversHorizon: boolean;
  lastReadVerify: string | null;
  problem: string | null;
}

export interface ReportRestore {
  file: string;
  kind: IncidentRecord["kind"];
  ticket: string;
  snapshot: string | null;
  sha256: string | null;
  operator: string;
  startedAt: string;
  endedAt: string;
  outcome: IncidentRecord["outcome"];
  doctorOk: boolean | null;
  /** the audit event the restore appended to the live log: found, missing, or not checked (no --state-root) */
  auditEvent: "found" | "missing" | "not-checked" | "not-applicable";
}

export interface ReportDrillQuarter {
  quarter: string;
  passed: boolean;
  drills: { at: string; ok: boolean; snapshot: string | null; restoreSeconds: number | null; file: string }[];
}

export interface ReportException {
  kind: "redaction" | "block" | "failed-tick" | "broken-chain" | "torn-history" | "record-chain" | "unsigned";
  at: string;
  detail: string;
  resolvedAt: string | null;
  hoursToResolve: number | null;
  acknowledged?: boolean;
}

export interface ContextReport {
  context: string;
  evidence: { from: string | null; to: string };
  snapshots: { count: number; fulls: number; incrementals: number };
  coverage: ReportCoverage;
  retention: { policy: RetentionPolicy; slots: RetentionSlot[]; deletions: ReportDeletion[] };
  offsite: { target: string; name: string; copies: ReportOffsiteCopy[]; fullsWithoutCopy: string[] }[];
  restores: ReportRestore[];
  drills: ReportDrillQuarter[];
  exceptions: ReportException[];
  /** the incident and drill records' hash chain, checked from its head and against the head the last tick saw */
  records: { chainOk: boolean; length: number; problems: string[] };
  keys: {
    /** the recipients of the newest encrypted snapshot */
    recipients: string[];
    /** where the recipient set changed from one snapshot to the next */
    changes: { at: string; snapshot: string; added: string[]; removed: string[] }[];
    /** `keys rotate` runs in the period: unfinished ones have finishedAt null */
    rotations: {
      id: string;
      startedAt: string;
      finishedAt: string | null;
      operator: string;
      added: string[];
      removed: string[];
      rotated: number;
      skipped: { id: string; reason: string }[];
      /** copies under COMPLIANCE lock it could not rewrite: exposed to the removed recipients until then */
      offsiteLocked: { target: string; id: string; lockedUntil: string | null }[];
    }[];
  };
}

export interface Report {
  schema: typeof REPORT_SCHEMA;
  generatedAt: string;
  period: ReportPeriod;
  backupRoot: string;
  stateRoot: string | null;
  contexts: ContextReport[];
}

/**
 * Where a report reads its evidence. By default the backup root folder; a repository whose
 * evidence lives elsewhere (the CLI's s3:// root keeps snapshots, tick and prune history and
 * incident records in the bucket) gives its own.
 */
export interface ReportSources {
  snapshots(context: string): Promise<SnapshotRef[]>;
  history<T extends TickHistoryLine | PruneHistoryLine>(
    context: string,
    stream: "ticks" | "prune",
  ): Promise<{ lines: T[]; torn: number }>;
  /** `signed`: a signature stands beside the record (absent: the source cannot tell) */
  records(
    context: string,
    folder: "incidents" | "drills",
  ): Promise<{ file: string; record: IncidentRecord; signed?: boolean }[]>;
  /** the contexts to report for "all" */
  contexts(): Promise<string[]>;
  /** where the offsite push records are (offsite/record.ts recordStoreOf); the backup root's when not given */
  offsiteRecords?: ObjectStorage;
  /** the repository's own storage, where paas-backup.signing.json says when it began signing; the backup root's when not given */
  repository?: ObjectStorage;
  /** keys rotate's records of a context (an s3:// root keeps them in the bucket); the backup root's when not given */
  rotations?(context: string): Promise<RotationRecord[]>;
}

export interface ReportOptions {
  fs: FileSystem;
  backupRoot: string;
  /** where the evidence is read; the backup root folder when not given */
  sources?: ReportSources;
  /** the contexts to report, or "all": every context with a folder in the backup root */
  contexts: string[] | "all";
  period: ReportPeriod;
  clock: () => Date;
  /** with it, every restore is cross-checked against the audit event it appended */
  stateRoot?: string;
  policy?: Partial<RetentionPolicy>;
  offsiteTargets?: OffsiteTarget[];
  secretAcknowledged?: readonly { path: string; line?: number; rule: string }[];
}

export async function buildReport(options: ReportOptions): Promise<Report> {
  const now = options.clock();
  const contexts: ContextReport[] = [];
  const names =
    options.contexts === "all"
      ? options.sources
        ? await options.sources.contexts()
        : await listContexts({ fs: options.fs, backupRoot: options.backupRoot })
      : options.contexts;
  for (const name of names) contexts.push(await reportContext(options, validateContextName(name), now));
  return {
    schema: REPORT_SCHEMA,
    generatedAt: now.toISOString(),
    period: options.period,
    backupRoot: options.backupRoot,
    stateRoot: options.stateRoot ?? null,
    contexts,
  };
}

interface SeenSnapshot {
  id: string;
  time: Date;
  kind: "full" | "incremental";
}

/** The evidence of one context, as the report's steps read it. */
interface ContextEvidence {
  snapshots: SnapshotRef[];
  ticks: { lines: TickHistoryLine[]; torn: number };
  prunes: { lines: PruneHistoryLine[]; torn: number };
  incidents: { file: string; record: IncidentRecord; signed?: boolean }[];
  drillRecords: { file: string; record: IncidentRecord; signed?: boolean }[];
}

/**
 * One context's report as its steps: read the evidence, every snapshot known to have existed and
 * how far back the evidence reaches, then one section each (coverage, retention, offsite,
 * restores, drills, exceptions with the record chain, keys).
 */
async function reportContext(options: ReportOptions, context: string, now: Date): Promise<ContextReport> {
  const policy: RetentionPolicy = { ...DEFAULT_RETENTION, ...(options.policy ?? {}) };
  const from = new Date(options.period.from);
  const to = new Date(Math.min(Date.parse(options.period.to), now.getTime()));
  const evidence = await readEvidence(
    options.sources ?? folderSources(options.fs, options.backupRoot),
    context,
  );
  const { snapshots } = evidence;
  const known = knownSnapshots(evidence);
  const evidenceFrom = evidenceStart(known, evidence);
  const coverage = coverageOf(known, evidenceFrom, from, to);
  const present = new Set(snapshots.map((s) => s.id));
  const inPeriod = (at: string) => {
    const t = Date.parse(at);
    return t >= from.getTime() && t < Date.parse(options.period.to);
  };
  const slots = await retentionSlots(snapshots, policy, to, evidenceFrom);
  const deletions: ReportDeletion[] = evidence.prunes.lines
    .filter((p) => inPeriod(p.at))
    .map((p) => ({
      at: p.at,
      id: p.id,
      kind: p.kind,
      reason: p.reason,
      where: p.where,
      stillPresent: p.where === "local" && present.has(p.id),
    }));
  // every daily full the period had, pruned since or not: its offsite copy may well outlive it
  const dailyFulls = newestFullPerDay(known.filter((s) => s.time >= from && s.time < to));
  const offsite = await offsiteSection(options, context, dailyFulls, retentionHorizonMs(policy));
  const restores = await restoresIn(
    options,
    context,
    evidence.incidents.filter((r) => inPeriod(r.record.startedAt)),
  );
  const drills = drillQuarters(
    evidence.drillRecords.filter((r) => inPeriod(r.record.startedAt)),
    options.period,
    now,
  );
  const chain = await recordChainOf(options, context);
  const exceptions = exceptionsOf(options, evidence, { present, inPeriod, from, to, now, chain });
  exceptions.push(...(await unsignedExceptions(options, evidence, inPeriod, now)));
  exceptions.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  return {
    context,
    evidence: { from: evidenceFrom?.toISOString() ?? null, to: now.toISOString() },
    snapshots: {
      count: snapshots.length,
      fulls: snapshots.filter((s) => s.kind === "full").length,
      incrementals: snapshots.filter((s) => s.kind === "incremental").length,
    },
    coverage,
    retention: { policy, slots, deletions },
    offsite,
    restores,
    drills,
    exceptions,
    records: { chainOk: chain.ok, length: chain.length, problems: chain.problems },
    keys: { ...keysOf(snapshots), rotations: await rotationsIn(options, context, from, to) },
  };
}

/** The backup root folder as the report's sources, for a repository that keeps its evidence there. */
function folderSources(fs: FileSystem, backupRoot: string): Omit<ReportSources, "contexts"> {
  return {
    snapshots: (context) => listSnapshots(fs, backupRoot, context),
    history: (context, stream) => readHistoryLines(backupRootStorage(fs, backupRoot), context, stream),
    records: (context, folder) => listRecordFiles(fs, backupRoot, context, folder),
  };
}

async function readEvidence(src: Omit<ReportSources, "contexts">, context: string): Promise<ContextEvidence> {
  return {
    snapshots: await src.snapshots(context),
    ticks: await src.history<TickHistoryLine>(context, "ticks"),
    prunes: await src.history<PruneHistoryLine>(context, "prune"),
    incidents: await src.records(context, "incidents"),
    drillRecords: await src.records(context, "drills"),
  };
}

/** Every snapshot known to have existed, oldest first: those here now, those a tick took, those prune removed. */
function knownSnapshots({ snapshots, ticks, prunes }: ContextEvidence): SeenSnapshot[] {
  const seen = new Map<string, SeenSnapshot>();
  const note = (id: string, kind: "full" | "incremental", time?: Date) => {
    const t = time ?? parseSnapshotId(id)?.time;
    if (t && !seen.has(id)) seen.set(id, { id, time: t, kind });
  };
  for (const s of snapshots) note(s.id, s.kind, s.time);
  for (const t of ticks.lines) if (t.ok && t.snapshot) note(t.snapshot.id, t.snapshot.kind);
  for (const p of prunes.lines) note(p.id, p.kind === "incremental" ? "incremental" : "full");
  return [...seen.values()].sort((a, b) => a.time.getTime() - b.time.getTime());
}

/** Where the oldest record reaches: before it the report says "no evidence", not covered nor missed. */
function evidenceStart(known: SeenSnapshot[], evidence: ContextEvidence): Date | null {
  const starts = [
    ...known.map((s) => s.time.getTime()),
    ...evidence.ticks.lines.map((t) => Date.parse(t.at)),
    ...evidence.prunes.lines.map((p) => Date.parse(p.at)),
    ...evidence.incidents.map((r) => Date.parse(r.record.startedAt)),
    ...evidence.drillRecords.map((r) => Date.parse(r.record.startedAt)),
  ].filter(Number.isFinite);
  return starts.length ? new Date(Math.min(...starts)) : null;
}

/** Per target, each daily full's copy as the push record has it, and whether its lock outlasts the retention horizon. */
async function offsiteSection(
  options: ReportOptions,
  context: string,
  dailyFulls: SeenSnapshot[],
  horizonMs: number,
): Promise<ContextReport["offsite"]> {
  const { fs, backupRoot } = options;
  const offsite: ContextReport["offsite"] = [];
  for (const target of options.offsiteTargets ?? []) {
    const records = options.sources?.offsiteRecords;
    const copies = await recordedCopies({ fs, backupRoot, ...(records ? { records } : {}), context, target });
    const byId = new Map(copies.map((c) => [c.id, c]));
    const rows: ReportOffsiteCopy[] = [];
    const without: string[] = [];
    for (const s of dailyFulls) {
      const c = byId.get(s.id);
      const horizon = new Date(s.time.getTime() + horizonMs).toISOString();
      if (!c) without.push(s.id);
      rows.push({
        id: s.id,
        confirmed: c !== undefined && !c.problem,
        confirmedAt: c?.confirmedAt ?? null,
        lockMode: c?.lockMode ?? null,
        retainUntil: c?.retainUntil ?? null,
        horizon,
        coversHorizon: c?.retainUntil ? Date.parse(c.retainUntil) >= Date.parse(horizon) : false,
        lastReadVerify: c?.readVerifiedAt ?? null,
        problem: c?.problem ?? null,
      });
    }
    offsite.push({ target: target.storage.url, name: target.name, copies: rows, fullsWithoutCopy: without });
  }
  return offsite;
}

/** The period's restores, each cross-checked against the audit event it appended (when the state root is given). */
async function restoresIn(
  options: ReportOptions,
  context: string,
  incidents: { file: string; record: IncidentRecord }[],
): Promise<ReportRestore[]> {
  const audit = options.stateRoot
    ? await readRestoreAuditEvents(options.fs, options.stateRoot, context)
    : null;
  return incidents.map(({ file, record }) => {
    const applicable =
      record.kind === "restore" &&
      !record.dryRun &&
      (record.outcome === "restored" || record.outcome === "blocked");
    const found =
      audit?.some(
        (e) =>
          e.ticket === record.ticket &&
          e.snapshot === (record.snapshot?.id ?? "") &&
          e.at >= record.startedAt,
      ) ?? false;
    return {
      file,
      kind: record.kind,
      ticket: record.ticket,
      snapshot: record.snapshot?.id ?? null,
      sha256: record.snapshot?.sha256 ?? null,
      operator: record.operator,
      startedAt: record.startedAt,
      endedAt: record.endedAt,
      outcome: record.outcome,
      doctorOk: record.doctor ? record.doctor.ok : null,
      auditEvent: !applicable
        ? "not-applicable"
        : audit === null
          ? "not-checked"
          : found
            ? "found"
            : "missing",
    };
  });
}

/**
 * The incident and drill records' hash chain, checked from its head, against the head the last
 * tick saw and the heads pushed offsite (issue 24 §2): a newest record deleted at home, tick
 * record and all, shows there.
 */
async function recordChainOf(options: ReportOptions, context: string) {
  const { fs, backupRoot } = options;
  const identity = await readRepositoryIdentity(fs, backupRoot);
  const offsiteHeads: { where: string; head: RecordLink | null }[] = [];
  if (identity)
    for (const target of options.offsiteTargets ?? []) {
      // a target out of reach leaves its head out; the offsite section says what it can of the copies
      const pushed = await readOffsiteRecordsHead(rootView(target.storage, identity.id), context).catch(
        () => null,
      );
      if (pushed) offsiteHeads.push({ where: target.name, head: pushed.head });
    }
  return verifyRecordChain(
    fs,
    backupRoot,
    context,
    (await readTickRecord(fs, backupRoot, context))?.recordsHead ?? null,
    offsiteHeads,
  );
}

/** Everything an auditor must look at, oldest first: redactions, blocks, failed ticks, broken chains, torn history, record-chain problems. */
function exceptionsOf(
  options: ReportOptions,
  { snapshots, ticks, prunes, incidents }: ContextEvidence,
  at: {
    present: Set<string>;
    inPeriod: (at: string) => boolean;
    from: Date;
    to: Date;
    now: Date;
    chain: { problems: string[] };
  },
): ReportException[] {
  const { present, inPeriod, from, to, now } = at;
  const exceptions: ReportException[] = [];
  exceptions.push(...redactionExceptions(snapshots, options.secretAcknowledged ?? [], from, to));
  exceptions.push(...blockExceptions(incidents.map((r) => r.record)).filter((e) => inPeriod(e.at)));
  exceptions.push(...failedTickExceptions(ticks.lines).filter((e) => inPeriod(e.at)));
  for (const s of snapshots)
    if (s.kind === "incremental" && s.parent && !present.has(s.parent.id))
      exceptions.push({
        kind: "broken-chain",
        at: s.time.toISOString(),
        detail: `incremental ${s.id} needs ${s.parent.id}, which is gone`,
        resolvedAt: null,
        hoursToResolve: null,
      });
  for (const [stream, h] of [
    ["ticks", ticks],
    ["prune", prunes],
  ] as const)
    if (h.torn > 0)
      exceptions.push({
        kind: "torn-history",
        at: now.toISOString(),
        detail: `${h.torn} line(s) of history/${stream}.jsonl do not parse (a run interrupted mid-write)`,
        resolvedAt: null,
        hoursToResolve: null,
      });
  for (const problem of at.chain.problems)
    exceptions.push({
      kind: "record-chain",
      at: now.toISOString(),
      detail: problem,
      resolvedAt: null,
      hoursToResolve: null,
    });
  return exceptions.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
}

/**
 * Issue 24 §2: once a repository signs (paas-backup.signing.json names since when), a snapshot or
 * an incident or drill record dated at or after that without a signature was written by someone
 * other than a signing host, or by one that lost its key: restore refuses such a snapshot without
 * --allow-unsigned, and an auditor must see both. (A signature that does not match is the record
 * chain's exception and verify's refusal.)
 */
async function unsignedExceptions(
  options: ReportOptions,
  { snapshots, incidents, drillRecords }: ContextEvidence,
  inPeriod: (at: string) => boolean,
  now: Date,
): Promise<ReportException[]> {
  // the repository's own storage: a context with no snapshot left still has its records judged
  const storage =
    options.sources?.repository ?? snapshots[0]?.storage ?? backupRootStorage(options.fs, options.backupRoot);
  let since: number;
  try {
    const record = await readSigningRecord(storage);
    if (!record) return [];
    since = Date.parse(record.since);
  } catch (err) {
    if (!(err instanceof PaasBackupError)) throw err;
    return [
      {
        kind: "unsigned",
        at: now.toISOString(),
        detail: err.message,
        resolvedAt: null,
        hoursToResolve: null,
      },
    ];
  }
  const sinceIso = new Date(since).toISOString();
  const out: ReportException[] = [];
  const unsigned = (at: string, detail: string) =>
    out.push({ kind: "unsigned", at, detail, resolvedAt: null, hoursToResolve: null });
  for (const s of snapshots) {
    if (s.time.getTime() < since || !inPeriod(s.time.toISOString())) continue;
    const sig = signatureKeys(s);
    if ((await s.storage.head(sig.checksum)) || (await s.storage.head(sig.manifest))) continue;
    unsigned(
      s.time.toISOString(),
      `snapshot ${s.id} has no signature, though this repository signs every snapshot since ${sinceIso} (restore refuses it without --allow-unsigned)`,
    );
  }
  for (const { file, record, signed } of [...incidents, ...drillRecords]) {
    if (signed !== false || Date.parse(record.startedAt) < since || !inPeriod(record.startedAt)) continue;
    unsigned(
      record.startedAt,
      `${record.kind} record ${file} has no signature (${file}.sig), though this repository signs since ${sinceIso}: written by a host without its signing key, or its signature was removed`,
    );
  }
  return out;
}

/** keys rotate's records (issue 24 §3): each rotation the period saw, and copies it could not rewrite. */
async function rotationsIn(
  options: ReportOptions,
  context: string,
  from: Date,
  to: Date,
): Promise<ContextReport["keys"]["rotations"]> {
  const records = options.sources?.rotations
    ? await options.sources.rotations(context)
    : await listRotations(options.fs, options.backupRoot, context);
  return records
    .filter(
      (r) =>
        Date.parse(r.startedAt) < to.getTime() && Date.parse(r.finishedAt ?? r.startedAt) >= from.getTime(),
    )
    .map((r) => ({
      id: r.id,
      startedAt: r.startedAt,
      finishedAt: r.finishedAt,
      operator: r.operator,
      added: r.add,
      removed: r.remove,
      rotated: r.snapshots.filter((x) => x.phase === "done").length,
      skipped: r.snapshots
        .filter((x) => x.phase === "skipped")
        .map((x) => ({ id: x.id, reason: x.reason ?? "" })),
      offsiteLocked: r.offsite
        .filter((o) => o.action === "locked")
        .map((o) => ({ target: o.target, id: o.id, lockedUntil: o.lockedUntil ?? null })),
    }));
}

function hourKey(t: number): number {
  return Math.floor(t / HOUR);
}

function coverageOf(known: SeenSnapshot[], evidenceFrom: Date | null, from: Date, to: Date): ReportCoverage {
  const empty: ReportCoverage = {
    window: null,
    hours: 0,
    hoursWithSnapshot: 0,
    shareOfHours: 0,
    days: 0,
    daysWithFull: 0,
    shareOfDays: 0,
    largestGap: null,
    calendar: [],
  };
  if (!evidenceFrom) return empty;
  // whole hours from the first hour the evidence reaches to the last hour of the window
  const start = Math.max(hourKey(from.getTime()), hourKey(evidenceFrom.getTime())) * HOUR;
  const end = to.getTime();
  if (end <= start) return empty;
  const inWindow = known.filter((s) => s.time.getTime() >= start && s.time.getTime() < end);
  const hoursTaken = new Set(inWindow.map((s) => hourKey(s.time.getTime())));
  const fullDays = new Set(
    inWindow.filter((s) => s.kind === "full").map((s) => s.time.toISOString().slice(0, 10)),
  );
  const hours = Math.ceil((end - start) / HOUR);
  const calendar: CoverageDay[] = [];
  const firstDay = Math.floor(start / DAY) * DAY;
  for (let d = firstDay; d < end; d += DAY) {
    const date = new Date(d).toISOString().slice(0, 10);
    const flags: (boolean | null)[] = [];
    for (let h = 0; h < 24; h++) {
      const t = d + h * HOUR;
      flags.push(t < start || t >= end ? null : hoursTaken.has(hourKey(t)));
    }
    calendar.push({ date, hours: flags, full: fullDays.has(date) });
  }
  const days = calendar.length;
  let gap: ReportCoverage["largestGap"] = null;
  const points = [start, ...inWindow.map((s) => s.time.getTime()), end];
  for (let i = 1; i < points.length; i++) {
    const g = points[i]! - points[i - 1]!;
    if (!gap || g > gap.hours * HOUR)
      gap = {
        hours: Math.round((g / HOUR) * 10) / 10,
        from: new Date(points[i - 1]!).toISOString(),
        to: new Date(points[i]!).toISOString(),
      };
  }
  return {
    window: { from: new Date(start).toISOString(), to: new Date(end).toISOString() },
    hours,
    hoursWithSnapshot: hoursTaken.size,
    shareOfHours: hours ? round3(hoursTaken.size / hours) : 0,
    days,
    daysWithFull: fullDays.size,
    shareOfDays: days ? round3(fullDays.size / days) : 0,
    largestGap: gap,
    calendar,
  };
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function newestFullPerDay(snapshots: SeenSnapshot[]): SeenSnapshot[] {
  const byDay = new Map<string, SeenSnapshot>();
  for (const s of snapshots)
    if (s.kind === "full") {
      const day = s.time.toISOString().slice(0, 10);
      const prior = byDay.get(day);
      if (!prior || prior.time < s.time) byDay.set(day, s);
    }
  return [...byDay.values()].sort((a, b) => a.time.getTime() - b.time.getTime());
}

/** The slots the policy expects at the end of the period, each against the newest full there and its checksum. */
async function retentionSlots(
  snapshots: SnapshotRef[],
  policy: RetentionPolicy,
  at: Date,
  evidenceFrom: Date | null,
): Promise<RetentionSlot[]> {
  const fulls = snapshots.filter((s) => s.kind === "full" && s.time <= at);
  const slots: RetentionSlot[] = [];
  const verifiedCache = new Map<string, boolean>();
  const verified = async (s: SnapshotRef) => {
    if (!verifiedCache.has(s.id))
      verifiedCache.set(s.id, (await checkSnapshotChecksum(s).catch(() => null))?.state === "verified");
    return verifiedCache.get(s.id)!;
  };
  const fill = async (rule: RetentionSlot["rule"], slot: string, start: number, end: number) => {
    const inSlot = fulls.filter((s) => s.time.getTime() >= start && s.time.getTime() < end);
    const newest = inSlot[inSlot.length - 1];
    let state: RetentionSlot["state"];
    if (newest) state = (await verified(newest)) ? "verified" : "damaged";
    else state = !evidenceFrom || end <= evidenceFrom.getTime() ? "before-evidence" : "missing";
    slots.push({ rule, slot, snapshot: newest?.id ?? null, state });
  };
  const day0 = Math.floor(at.getTime() / DAY) * DAY;
  for (let i = 0; i < policy.daily; i++) {
    const start = day0 - i * DAY;
    await fill("daily", new Date(start).toISOString().slice(0, 10), start, start + DAY);
  }
  const dow = (new Date(day0).getUTCDay() + 6) % 7; // Monday 0
  const week0 = day0 - dow * DAY;
  for (let i = 0; i < policy.weekly; i++) {
    const start = week0 - i * 7 * DAY;
    const w = isoWeek(new Date(start));
    await fill("weekly", `${w.year}-W${String(w.week).padStart(2, "0")}`, start, start + 7 * DAY);
  }
  for (let i = 0; i < policy.monthly; i++) {
    const s = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() - i, 1));
    const e = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() - i + 1, 1));
    await fill("monthly", s.toISOString().slice(0, 7), s.getTime(), e.getTime());
  }
  return slots;
}

async function readRestoreAuditEvents(
  fs: FileSystem,
  stateRoot: string,
  context: string,
): Promise<{ at: string; ticket: string; snapshot: string }[] | null> {
  let text: string;
  try {
    text = Buffer.from(
      await fs.readFile(join(contextDir(stateRoot, context), "events", "audit.jsonl")),
    ).toString("utf8");
  } catch (err) {
    // no live log for this context under that state root: nothing to cross-check against
    if (isNotFound(err)) return null;
    throw err;
  }
  const out: { at: string; ticket: string; snapshot: string }[] = [];
  for (const line of text.split("\n")) {
    if (!line.includes('"backup restore"')) continue;
    try {
      const e = JSON.parse(line) as { timestamp?: string; command?: string; fields?: Record<string, string> };
      if (e.command === "backup restore" && e.fields)
        out.push({
          at: e.timestamp ?? "",
          ticket: e.fields.ticket ?? "",
          snapshot: e.fields.snapshot_id ?? "",
        });
    } catch {
      // a torn line is si's to explain, not evidence either way
    }
  }
  return out;
}

function quarterOf(t: Date): string {
  return `${t.getUTCFullYear()}-Q${Math.floor(t.getUTCMonth() / 3) + 1}`;
}

function drillQuarters(
  records: { file: string; record: IncidentRecord }[],
  period: ReportPeriod,
  now: Date,
): ReportDrillQuarter[] {
  const quarters = new Map<string, ReportDrillQuarter>();
  // every quarter the period touches (up to now) appears, drilled or not: a missing drill is the finding
  const end = Math.min(Date.parse(period.to), now.getTime());
  for (
    let t = new Date(period.from);
    t.getTime() < end;
    t = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth() + 3, 1))
  ) {
    const q = quarterOf(t);
    quarters.set(q, { quarter: q, passed: false, drills: [] });
  }
  for (const { file, record } of records) {
    const q = quarterOf(new Date(record.startedAt));
    const entry = quarters.get(q) ?? { quarter: q, passed: false, drills: [] };
    const ok = record.outcome === "drill-passed";
    const seconds =
      record.endedAt && record.startedAt
        ? Math.round((Date.parse(record.endedAt) - Date.parse(record.startedAt)) / 100) / 10
        : null;
    entry.drills.push({
      at: record.startedAt,
      ok,
      snapshot: record.snapshot?.id ?? null,
      restoreSeconds: seconds,
      file,
    });
    entry.passed ||= ok;
    quarters.set(q, entry);
  }
  return [...quarters.values()].sort((a, b) => (a.quarter < b.quarter ? -1 : 1));
}

function hoursBetween(a: string, b: string): number {
  return Math.round(((Date.parse(b) - Date.parse(a)) / HOUR) * 10) / 10;
}

/** A (path, line, rule) redaction is an exception from the first snapshot that stored it. */
function redactionExceptions(
  snapshots: SnapshotRef[],
  acknowledged: readonly { path: string; line?: number; rule: string }[],
  from: Date,
  to: Date,
): ReportException[] {
  const first = new Map<string, { at: string; path: string; line: number; rule: string }>();
  for (const s of snapshots)
    for (const f of s.manifest?.files ?? [])
      for (const r of f.redactions ?? []) {
        const key = `${f.path}\u0000${r.line}\u0000${r.rule}`;
        if (!first.has(key))
          first.set(key, { at: s.time.toISOString(), path: f.path, line: r.line, rule: r.rule });
      }
  return [...first.values()]
    .filter((r) => Date.parse(r.at) >= from.getTime() && Date.parse(r.at) < to.getTime())
    .map((r) => ({
      kind: "redaction" as const,
      at: r.at,
      detail: `${r.path} line ${r.line}: ${r.rule} stored as <redacted>`,
      resolvedAt: null,
      hoursToResolve: null,
      acknowledged: acknowledged.some(
        (a) => a.path === r.path && (a.line === undefined || a.line === r.line) && a.rule === r.rule,
      ),
    }));
}

/** A restore that ended blocked, until an unblock, a later good restore or a rollback. */
function blockExceptions(records: IncidentRecord[]): ReportException[] {
  const sorted = [...records].sort((a, b) => (a.startedAt < b.startedAt ? -1 : 1));
  const out: ReportException[] = [];
  sorted.forEach((r, i) => {
    if (r.outcome !== "blocked") return;
    const end = sorted
      .slice(i + 1)
      .find((n) => n.outcome === "unblocked" || n.outcome === "restored" || n.outcome === "rolled-back");
    const resolvedAt = end ? end.endedAt || end.startedAt : null;
    out.push({
      kind: "block",
      at: r.endedAt || r.startedAt,
      detail: `restore of ${r.snapshot?.id ?? "?"} (ticket ${r.ticket}) blocked by post-restore validation`,
      resolvedAt,
      hoursToResolve: resolvedAt ? hoursBetween(r.endedAt || r.startedAt, resolvedAt) : null,
    });
  });
  return out;
}

/** A failed tick, until the next tick that succeeded. */
function failedTickExceptions(ticks: TickHistoryLine[]): ReportException[] {
  const out: ReportException[] = [];
  ticks.forEach((t, i) => {
    if (t.ok) return;
    // one exception per run of failures
    if (i > 0 && !ticks[i - 1]!.ok) return;
    const next = ticks.slice(i + 1).find((n) => n.ok);
    out.push({
      kind: "failed-tick",
      at: t.at,
      detail: `tick failed: ${t.error?.code ?? "unknown"}${t.error ? `: ${t.error.message}` : ""}`,
      resolvedAt: next?.at ?? null,
      hoursToResolve: next ? hoursBetween(t.at, next.at) : null,
    });
  });
  return out;
}

function keysOf(snapshots: SnapshotRef[]): Omit<ContextReport["keys"], "rotations"> {
  const changes: ContextReport["keys"]["changes"] = [];
  let previous: string[] | null = null;
  let recipients: string[] = [];
  for (const s of snapshots) {
    const enc = s.manifest?.encryption;
    if (!enc || enc.type !== "age") continue;
    const now = [...(enc.recipients ?? [])].sort();
    if (previous) {
      const added = now.filter((r) => !previous!.includes(r));
      const removed = previous.filter((r) => !now.includes(r));
      if (added.length || removed.length)
        changes.push({ at: s.time.toISOString(), snapshot: s.id, added, removed });
    }
    previous = now;
    recipients = now;
  }
  return { recipients, changes };
}
